//! The runner with a receiver in memory: delivery stays in log order and at
//! least once while reads run ahead, a restart resumes from the durable cursor,
//! and a refused batch is dead-lettered event by event.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use figment::Figment;
use figment::providers::{Format as _, Toml};
use serde_json::json;

use super::*;
use crate::checkpoint::{Checkpoint, Signer};
use crate::event::AuditEvent;
use crate::store::SqliteStore;

/// Is a receiver in memory: it records the sequences of each batch it accepts,
/// refuses any batch holding an event whose id starts with "poison", and fails
/// transiently once it has accepted `budget` batches.
#[derive(Debug, Clone, Default)]
struct Receiver(Arc<Mutex<Received>>);

#[derive(Debug, Default)]
struct Received {
    batches: Vec<Vec<u64>>,
    budget: Option<usize>,
}

impl Receiver {
    fn with_budget(batches: usize) -> Self {
        let receiver = Self::default();
        receiver.0.lock().unwrap().budget = Some(batches);
        receiver
    }

    fn batches(&self) -> Vec<Vec<u64>> {
        self.0.lock().unwrap().batches.clone()
    }

    fn sequences(&self) -> Vec<u64> {
        self.batches().concat()
    }
}

#[async_trait]
impl Transport for Receiver {
    async fn deliver(&mut self, batch: &[Record<'_>]) -> Result<(), Failure> {
        // A round trip, so that the reader gets ahead of delivery.
        tokio::time::sleep(Duration::from_millis(2)).await;
        let mut received = self.0.lock().unwrap();
        if received.budget == Some(0) {
            return Err(Failure::Retry {
                after: None,
                reason: "receiver down".to_owned(),
            });
        }
        if batch
            .iter()
            .any(|record| record.event.event.id.as_str().starts_with("poison"))
        {
            return Err(Failure::Reject {
                reason: "http 400: poison".to_owned(),
            });
        }
        received.budget = received.budget.map(|budget| budget - 1);
        received
            .batches
            .push(batch.iter().map(|record| record.event.sequence).collect());
        Ok(())
    }

    async fn anchor(&mut self, _checkpoint: &Checkpoint) -> Result<(), Failure> {
        Ok(())
    }
}

async fn log_in(dir: &tempfile::TempDir) -> AuditLog {
    let store = SqliteStore::open(&dir.path().join("audit.db"))
        .await
        .unwrap();
    AuditLog::new(
        std::sync::Arc::new(store),
        Signer::new("test/audit".to_owned(), &[7u8; 32]),
    )
    .await
    .unwrap()
}

fn event(id: &str) -> AuditEvent {
    AuditEvent::from_document(&json!({
        "eventId": id,
        "kind": "EVENT_KIND_MCP_REQUEST",
        "time": "2026-11-22T03:00:00Z",
    }))
    .unwrap()
}

async fn append(log: &AuditLog, ids: impl IntoIterator<Item = String>) {
    log.append(ids.into_iter().map(|id| event(&id)).collect())
        .await
        .unwrap();
}

/// Returns a sink named "memory" carrying `batch_size` events per delivery,
/// retrying within milliseconds.
fn config(batch_size: u32) -> SinkConfig {
    crate::Config::load(Figment::from(Toml::string(&format!(
        "[[sinks]]\nname = \"memory\"\nbatch_size = {batch_size}\n\
         [sinks.retry]\ninitial = \"1ms\"\nmax = \"5ms\"\n\
         [sinks.jsonl]\npath = \"unused.jsonl\"\n"
    ))))
    .unwrap()
    .sinks
    .remove(0)
}

/// Is a runner over `log` delivering to `receiver`, stopped by `stop`.
struct Running {
    handle: SinkHandle,
    shutdown: CancellationToken,
}

impl Running {
    fn start(log: &AuditLog, batch_size: u32, receiver: &Receiver) -> Self {
        let shutdown = CancellationToken::new();
        let runner = Runner::new(log.clone(), config(batch_size), Box::new(receiver.clone()));
        let handle = runner.spawn(shutdown.clone());
        Self { handle, shutdown }
    }

    /// Waits (20 s at most) until the lag feed satisfies `done`; returns it.
    async fn until(&self, done: impl FnMut(&SinkLag) -> bool) -> SinkLag {
        let mut lag = self.handle.subscribe();
        tokio::time::timeout(Duration::from_secs(20), lag.wait_for(done))
            .await
            .unwrap_or_else(|_| panic!("sink did not get there: {:?}", self.handle.lag()))
            .unwrap()
            .clone()
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle.join())
            .await
            .expect("sink did not stop");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivers_every_event_once_in_log_order_while_reading_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(&dir).await;
    let receiver = Receiver::default();
    let running = Running::start(&log, 5, &receiver);
    // Three appenders at once, so batches arrive while earlier ones are delivered.
    let appenders: Vec<_> = (0..3)
        .map(|stream| {
            let log = log.clone();
            tokio::spawn(async move {
                for round in 0..4 {
                    append(&log, (0..10).map(|n| format!("s{stream}-r{round}-{n}"))).await;
                }
            })
        })
        .collect();
    for appender in appenders {
        appender.await.unwrap();
    }
    let lag = running.until(|lag| lag.delivered >= 120).await;
    running.stop().await;
    assert_eq!(receiver.sequences(), (1..=120).collect::<Vec<u64>>());
    assert!(receiver.batches().iter().all(|batch| batch.len() <= 5));
    assert_eq!(lag.events_behind, 0);
    let cursor = log.store().sink_cursor("memory").await.unwrap();
    assert_eq!(cursor.delivered, 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_durable_cursor_not_from_the_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(&dir).await;
    append(&log, (1..=20).map(|n| format!("e-{n}"))).await;
    // The receiver takes two batches of five, then fails while the reader has
    // read the rest ahead.
    let down = Receiver::with_budget(2);
    let running = Running::start(&log, 5, &down);
    running.until(|lag| lag.retries >= 3).await;
    running.stop().await;
    assert_eq!(down.sequences(), (1..=10).collect::<Vec<u64>>());
    let cursor = log.store().sink_cursor("memory").await.unwrap();
    assert_eq!(cursor.delivered, 10, "read-ahead never moves the cursor");
    let up = Receiver::default();
    let running = Running::start(&log, 5, &up);
    running.until(|lag| lag.delivered >= 20).await;
    running.stop().await;
    assert_eq!(up.sequences(), (11..=20).collect::<Vec<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_does_not_wait_for_the_cursor_write_and_a_stop_writes_the_last_cursor() {
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(&dir).await;
    append(&log, (1..=20).map(|n| format!("e-{n}"))).await;
    // Another connection holds SQLite's write lock, as a long append would.
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let mut writer = sqlx::SqliteConnection::connect(&url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut writer)
        .await
        .unwrap();
    let receiver = Receiver::default();
    let running = Running::start(&log, 5, &receiver);
    let lag = running.until(|lag| lag.delivered >= 20).await;
    assert_eq!(receiver.sequences(), (1..=20).collect::<Vec<u64>>());
    assert_eq!(lag.events_behind, 0);
    assert_eq!(
        log.store().sink_cursor("memory").await.unwrap().delivered,
        0,
        "the cursor write waits for the lock"
    );
    sqlx::query("COMMIT").execute(&mut writer).await.unwrap();
    running.stop().await;
    let cursor = log.store().sink_cursor("memory").await.unwrap();
    assert_eq!(cursor.delivered, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_is_dead_lettered_event_by_event() {
    let dir = tempfile::tempdir().unwrap();
    let log = log_in(&dir).await;
    let ids = ["ok-1", "ok-2", "poison-3", "ok-4", "ok-5", "ok-6", "ok-7"];
    append(&log, ids.map(str::to_owned)).await;
    let receiver = Receiver::default();
    let running = Running::start(&log, 5, &receiver);
    let lag = running.until(|lag| lag.delivered >= 7).await;
    running.stop().await;
    // The refused batch went again one event at a time; the next one whole.
    assert_eq!(
        receiver.batches(),
        [vec![1], vec![2], vec![4], vec![5], vec![6, 7]]
    );
    assert_eq!((lag.dead_lettered, lag.events_behind), (1, 0));
    let letters = log.store().dead_letters("memory").await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].sequence, letters[0].event_id.as_str()),
        (3, "poison-3")
    );
    assert!(letters[0].reason.contains("400"), "{}", letters[0].reason);
}
