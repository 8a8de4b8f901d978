//! SIEM sinks: one runner per configured sink, each a durable cursor over the
//! log. A runner reads committed events in sequence order, renders them in the
//! sink's shape, delivers them in batches, retries with full-jitter exponential
//! backoff (honouring `Retry-After`), dead-letters what the receiver refuses for
//! good, and writes each new signed checkpoint to the receiver as an external
//! anchor once the events it covers are delivered.
//!
//! Delivery is at least once: the cursor advances only after the receiver
//! accepted a batch, so a crash in between resends it; receivers deduplicate by
//! event id. Two replicas running the same sink both deliver (duplicates, never
//! gaps); run sinks on one replica if that matters.

use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::event::StoredEvent;
use crate::log::AuditLog;
use crate::store::{DeadLetter, SinkCursor, Store, now_micros};

pub(crate) mod config;
mod file;
mod hec;
mod otlp;
mod s3;
pub(crate) mod shape;
mod syslog;

pub use config::{
    HecConfig, JsonlConfig, OtlpConfig, RetryConfig, S3Config, Secret, Shape, SinkConfig,
    SyslogConfig, SyslogTlsConfig,
};
use shape::Rendered;

/// Is how far a sink is behind the log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SinkLag {
    /// Names the sink.
    pub sink: String,
    /// Holds the log's head when measured.
    pub head: u64,
    /// Holds the last sequence the sink accepted.
    pub delivered: u64,
    /// Holds how many committed events the sink has not accepted yet.
    pub events_behind: u64,
    /// Holds how long ago the oldest undelivered event was committed (zero when
    /// nothing is pending).
    pub oldest_undelivered_age: Duration,
    /// Counts retried deliveries since start.
    pub retries: u64,
    /// Counts events dead-lettered since start.
    pub dead_lettered: u64,
}

/// Is a running sink: its lag feed and its task.
#[derive(Debug)]
pub struct SinkHandle {
    name: String,
    lag: watch::Receiver<SinkLag>,
    task: JoinHandle<()>,
}

/// Is a receiver's answer to a delivery that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Failure {
    /// Reports a transient failure (connection, 429, 5xx): retry, after `after`
    /// when the receiver said so.
    Retry {
        /// Holds the receiver's `Retry-After`.
        after: Option<Duration>,
        /// Says what failed, without secrets.
        reason: String,
    },
    /// Reports a permanent refusal (a 4xx other than 429): resending the same
    /// bytes cannot succeed.
    Reject {
        /// Says why, without secrets.
        reason: String,
    },
}

/// Is one rendered event of a batch.
#[derive(Debug, Clone)]
pub(crate) struct Record<'a> {
    /// Holds the stored event (sequence, id, hashes, facets).
    pub(crate) event: &'a StoredEvent,
    /// Holds its rendering in the sink's shape.
    pub(crate) rendered: Rendered,
}

/// Sends records and checkpoints to one receiver.
#[async_trait]
pub(crate) trait Transport: Send + std::fmt::Debug {
    /// Delivers `batch` in order; `Ok` only once the receiver accepted all of it.
    async fn deliver(&mut self, batch: &[Record<'_>]) -> Result<(), Failure>;

    /// Writes a signed checkpoint to the receiver as an external anchor.
    async fn anchor(&mut self, checkpoint: &Checkpoint) -> Result<(), Failure>;

    /// Releases the receiver at shutdown (closes a connection cleanly).
    async fn close(&mut self) {}
}

impl SinkHandle {
    /// Returns the sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the sink's latest lag measurement.
    pub fn lag(&self) -> SinkLag {
        self.lag.borrow().clone()
    }

    /// Returns a receiver of the sink's lag, updated after each delivery.
    pub fn subscribe(&self) -> watch::Receiver<SinkLag> {
        self.lag.clone()
    }

    /// Waits for the sink's task to end (after its shutdown token is cancelled).
    pub async fn join(self) {
        if let Err(error) = self.task.await {
            tracing::warn!(sink = %self.name, error = &error as &dyn std::error::Error, "audit sink task failed");
        }
    }
}

/// Starts one runner per configured sink over `log`; each stops when `shutdown`
/// is cancelled. Fails before starting any if a sink's transport cannot be built
/// (an unreadable CA file, say).
pub fn start(
    log: &AuditLog,
    sinks: &[SinkConfig],
    shutdown: &CancellationToken,
) -> Result<Vec<SinkHandle>, Error> {
    let mut runners = Vec::with_capacity(sinks.len());
    for config in sinks {
        runners.push(Runner::new(log.clone(), config.clone(), transport(config)?));
    }
    Ok(runners
        .into_iter()
        .map(|runner| runner.spawn(shutdown.child_token()))
        .collect())
}

/// Returns `sink`'s lag measured from the store (for the CLI, or another replica).
pub async fn lag(store: &dyn Store, sink: &str) -> Result<SinkLag, Error> {
    let cursor = store.sink_cursor(sink).await?;
    measure(store, sink, cursor).await
}

/// Returns the dead letters of `sink`.
pub async fn dead_letters(store: &dyn Store, sink: &str) -> Result<Vec<DeadLetter>, Error> {
    store.dead_letters(sink).await
}

async fn measure(store: &dyn Store, sink: &str, cursor: SinkCursor) -> Result<SinkLag, Error> {
    let head = store.head().await?;
    let oldest = store.read(cursor.delivered, 1).await?;
    let oldest_undelivered_age = oldest.first().map_or(Duration::ZERO, |event| {
        let micros = now_micros().saturating_sub(event.recorded_at_micros);
        Duration::from_micros(u64::try_from(micros).unwrap_or(0))
    });
    Ok(SinkLag {
        sink: sink.to_owned(),
        head,
        delivered: cursor.delivered,
        events_behind: head.saturating_sub(cursor.delivered),
        oldest_undelivered_age,
        retries: 0,
        dead_lettered: 0,
    })
}

fn transport(config: &SinkConfig) -> Result<Box<dyn Transport>, Error> {
    let built: Box<dyn Transport> = if let Some(syslog) = &config.syslog {
        Box::new(syslog::SyslogTransport::new(syslog)?)
    } else if let Some(hec) = &config.splunk_hec {
        Box::new(hec::HecTransport::new(hec, config.shape)?)
    } else if let Some(otlp) = &config.otlp {
        Box::new(otlp::OtlpTransport::new(otlp)?)
    } else if let Some(jsonl) = &config.jsonl {
        Box::new(file::JsonlTransport::new(jsonl))
    } else if let Some(s3) = &config.s3 {
        Box::new(s3::S3Transport::new(s3, config.shape)?)
    } else {
        return Err(svc_kit::ConfigError::new(
            "sinks",
            "each sink needs exactly one of syslog, splunk_hec, otlp, jsonl, s3",
        )
        .into());
    };
    Ok(built)
}

/// Reports why a delivery loop stopped without delivering.
#[derive(Debug)]
enum Stop {
    Shutdown,
    Store(Error),
}

#[derive(Debug)]
struct Runner {
    log: AuditLog,
    config: SinkConfig,
    transport: Box<dyn Transport>,
    lag: watch::Sender<SinkLag>,
    retries: u64,
    dead_lettered: u64,
    metrics: metrics::SinkMetrics,
}

impl Runner {
    fn new(log: AuditLog, config: SinkConfig, transport: Box<dyn Transport>) -> Self {
        let lag = watch::Sender::new(SinkLag {
            sink: config.name.clone(),
            ..SinkLag::default()
        });
        let metrics = metrics::SinkMetrics::new(&config.name);
        Self {
            log,
            config,
            transport,
            lag,
            retries: 0,
            dead_lettered: 0,
            metrics,
        }
    }

    fn spawn(self, shutdown: CancellationToken) -> SinkHandle {
        let name = self.config.name.clone();
        let lag = self.lag.subscribe();
        let task = tokio::spawn(self.run(shutdown));
        SinkHandle { name, lag, task }
    }

    async fn run(mut self, shutdown: CancellationToken) {
        let mut head = self.log.subscribe();
        let mut failures = 0u32;
        tracing::info!(sink = %self.config.name, shape = ?self.config.shape, "audit sink started");
        while !shutdown.is_cancelled() {
            match self.step(&shutdown).await {
                Ok(true) => failures = 0,
                Ok(false) => {
                    failures = 0;
                    tokio::select! {
                        _ = head.changed() => {}
                        () = tokio::time::sleep(self.config.poll_interval) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(Stop::Shutdown) => break,
                Err(Stop::Store(error)) => {
                    tracing::warn!(sink = %self.config.name, error = &error as &dyn std::error::Error, "audit sink cannot read its store");
                    let delay = backoff(&self.config.retry, failures, None);
                    failures = failures.saturating_add(1);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
            }
        }
        self.transport.close().await;
        tracing::info!(sink = %self.config.name, "audit sink stopped");
    }

    /// Delivers the next batch, if any; returns whether there was one.
    async fn step(&mut self, shutdown: &CancellationToken) -> Result<bool, Stop> {
        let log = self.log.clone();
        let store = log.store();
        let mut cursor = store
            .sink_cursor(&self.config.name)
            .await
            .map_err(Stop::Store)?;
        let events = store
            .read(cursor.delivered, self.config.batch_size)
            .await
            .map_err(Stop::Store)?;
        if let Some(last) = events.last() {
            let records: Vec<Record<'_>> = events
                .iter()
                .map(|event| Record {
                    event,
                    rendered: shape::render(self.config.shape, event),
                })
                .collect();
            self.deliver(&records, shutdown).await?;
            cursor.delivered = last.sequence;
            store
                .set_sink_cursor(&self.config.name, cursor)
                .await
                .map_err(Stop::Store)?;
        }
        self.anchor_if_due(&mut cursor, shutdown).await?;
        self.publish_lag(cursor).await;
        Ok(!events.is_empty())
    }

    /// Delivers `records`; on a permanent refusal of a batch, delivers its events
    /// one by one and dead-letters those refused alone.
    async fn deliver(
        &mut self,
        records: &[Record<'_>],
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let Err(reason) = self.deliver_retrying(records, shutdown).await? else {
            return Ok(());
        };
        if let [single] = records {
            return self.dead_letter(single, reason).await;
        }
        for record in records {
            if let Err(reason) = self
                .deliver_retrying(std::slice::from_ref(record), shutdown)
                .await?
            {
                self.dead_letter(record, reason).await?;
            }
        }
        Ok(())
    }

    /// Retries transient failures until delivered, refused (the reason) or shut down.
    async fn deliver_retrying(
        &mut self,
        records: &[Record<'_>],
        shutdown: &CancellationToken,
    ) -> Result<Result<(), String>, Stop> {
        let mut attempt = 0u32;
        loop {
            match self.transport.deliver(records).await {
                Ok(()) => return Ok(Ok(())),
                Err(Failure::Reject { reason }) => return Ok(Err(reason)),
                Err(Failure::Retry { after, reason }) => {
                    self.count_retry();
                    let delay = backoff(&self.config.retry, attempt, after);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(sink = %self.config.name, %reason, attempt, delay_ms = delay.as_millis() as u64, "audit sink delivery failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Err(Stop::Shutdown),
                    }
                }
            }
        }
    }

    fn count_retry(&mut self) {
        self.retries += 1;
        self.metrics.retried();
        let retries = self.retries;
        self.lag.send_modify(|lag| lag.retries = retries);
    }

    async fn dead_letter(&mut self, record: &Record<'_>, reason: String) -> Result<(), Stop> {
        tracing::error!(sink = %self.config.name, sequence = record.event.sequence, event_id = %record.event.event.id, %reason, "audit sink refused an event; dead-lettered");
        let letter = DeadLetter {
            sequence: record.event.sequence,
            event_id: record.event.event.id.as_str().to_owned(),
            reason,
            failed_at_micros: now_micros(),
        };
        self.log
            .store()
            .put_dead_letters(&self.config.name, &[letter])
            .await
            .map_err(Stop::Store)?;
        self.dead_lettered += 1;
        self.metrics.dead_lettered();
        Ok(())
    }

    /// Writes the latest checkpoint to the receiver once every event it covers is
    /// delivered and it was not written before.
    async fn anchor_if_due(
        &mut self,
        cursor: &mut SinkCursor,
        shutdown: &CancellationToken,
    ) -> Result<(), Stop> {
        let log = self.log.clone();
        let store = log.store();
        let Some(checkpoint) = store.checkpoint(None).await.map_err(Stop::Store)? else {
            return Ok(());
        };
        if checkpoint.tree_size <= cursor.anchored || checkpoint.tree_size > cursor.delivered {
            return Ok(());
        }
        let mut attempt = 0u32;
        loop {
            match self.transport.anchor(&checkpoint).await {
                Ok(()) => break,
                Err(Failure::Reject { reason }) => {
                    // A refused anchor is skipped: the next checkpoint covers it.
                    tracing::error!(sink = %self.config.name, tree_size = checkpoint.tree_size, %reason, "audit sink refused a checkpoint");
                    break;
                }
                Err(Failure::Retry { after, reason }) => {
                    self.count_retry();
                    let delay = backoff(&self.config.retry, attempt, after);
                    attempt = attempt.saturating_add(1);
                    tracing::warn!(sink = %self.config.name, %reason, attempt, "audit sink checkpoint failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = shutdown.cancelled() => return Err(Stop::Shutdown),
                    }
                }
            }
        }
        cursor.anchored = checkpoint.tree_size;
        store
            .set_sink_cursor(&self.config.name, *cursor)
            .await
            .map_err(Stop::Store)
    }

    async fn publish_lag(&mut self, cursor: SinkCursor) {
        match measure(self.log.store(), &self.config.name, cursor).await {
            Ok(mut lag) => {
                lag.retries = self.retries;
                lag.dead_lettered = self.dead_lettered;
                self.metrics.record(&lag);
                self.lag.send_replace(lag);
            }
            Err(error) => {
                tracing::debug!(sink = %self.config.name, error = &error as &dyn std::error::Error, "audit sink lag not measured");
            }
        }
    }
}

/// Returns the delay before retry `attempt` (0-based): `Retry-After` when the
/// receiver gave one (capped at `max`), otherwise full jitter over
/// `initial × 2^attempt` capped at `max`.
pub(crate) fn backoff(retry: &RetryConfig, attempt: u32, after: Option<Duration>) -> Duration {
    if let Some(after) = after {
        return after.min(retry.max);
    }
    let ceiling = retry
        .initial
        .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX))
        .min(retry.max);
    let mut bytes = [0u8; 8];
    // Without randomness the full delay is used: slower, never faster.
    let fraction = match getrandom::fill(&mut bytes) {
        Ok(()) => (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 1.0,
    };
    ceiling.mul_f64(fraction).max(Duration::from_millis(1))
}

/// Returns the delay a `Retry-After` header asks for (seconds or an HTTP date).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    if let Ok(seconds) = value.trim().parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let when = httpdate::parse_http_date(value.trim()).ok()?;
    Some(
        when.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// Returns the failure an HTTP status means: 429 and 5xx are transient (with
/// `Retry-After`), 408 too; every other non-success status is a refusal.
pub(crate) fn classify_status(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> Failure {
    let reason = format!("http {}: {}", status.as_u16(), truncate(body, 200));
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        Failure::Retry {
            after: retry_after(headers),
            reason,
        }
    } else {
        Failure::Reject { reason }
    }
}

/// Returns a transport error as a transient failure; reqwest's message names the
/// URL but never headers, so no token reaches it.
pub(crate) fn transient(error: reqwest::Error) -> Failure {
    Failure::Retry {
        after: None,
        reason: format!("request failed: {}", error.without_url()),
    }
}

fn truncate(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// Exports sink lag as OpenTelemetry instruments (no-ops without a meter provider).
mod metrics {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::{Counter, Gauge};

    use super::SinkLag;

    #[derive(Debug)]
    pub(super) struct SinkMetrics {
        attributes: [KeyValue; 1],
        events_behind: Gauge<u64>,
        oldest_age: Gauge<f64>,
        retries: Counter<u64>,
        dead_letters: Counter<u64>,
    }

    impl SinkMetrics {
        pub(super) fn new(sink: &str) -> Self {
            let meter = opentelemetry::global::meter("audit-svc");
            Self {
                attributes: [KeyValue::new("sink", sink.to_owned())],
                events_behind: meter
                    .u64_gauge("gatehouse.audit.sink.lag.events")
                    .with_description("committed audit events the sink has not accepted yet")
                    .build(),
                oldest_age: meter
                    .f64_gauge("gatehouse.audit.sink.lag.seconds")
                    .with_unit("s")
                    .with_description("age of the oldest undelivered audit event")
                    .build(),
                retries: meter
                    .u64_counter("gatehouse.audit.sink.retries")
                    .with_description("retried sink deliveries")
                    .build(),
                dead_letters: meter
                    .u64_counter("gatehouse.audit.sink.dead_letters")
                    .with_description("audit events a sink refused for good")
                    .build(),
            }
        }

        pub(super) fn record(&self, lag: &SinkLag) {
            self.events_behind
                .record(lag.events_behind, &self.attributes);
            self.oldest_age
                .record(lag.oldest_undelivered_age.as_secs_f64(), &self.attributes);
        }

        pub(super) fn retried(&self) {
            self.retries.add(1, &self.attributes);
        }

        pub(super) fn dead_lettered(&self) {
            self.dead_letters.add(1, &self.attributes);
        }
    }
}
