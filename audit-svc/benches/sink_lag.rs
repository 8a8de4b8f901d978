//! Sink lag under load: appends batches of events at a fixed total rate from
//! several concurrent streams for a while and measures, for each batch, the
//! time from its commit (the append returning) to a sink accepting its last
//! event; prints the rate achieved, p50, p99 and max.
//!
//! The sink is a JSONL file rendering OCSF (fsync per delivered batch), so the
//! figure covers the store read, the rendering and a durable write, not a
//! network receiver. The streams share the rate and append through the log as
//! edge replicas do, so their batches share group commits; one stream alone is
//! bounded by one commit's round trip. Knobs (environment): `SINK_LAG_RATE`
//! events/s in all (default 20000), `SINK_LAG_SECONDS` (default 10),
//! `SINK_LAG_BATCH` events per append (default 100), `SINK_LAG_STREAMS`
//! concurrent appenders (default 4), `SINK_LAG_BACKEND` `sqlite` (default) or
//! `postgres` (uses `DATABASE_URL`, in a scratch database).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    missing_docs
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_svc::{
    AppendOutcome, AuditEvent, AuditLog, Config, PostgresStore, Signer, SqliteStore, Store,
};
use figment::Figment;
use figment::providers::{Format as _, Toml};
use hdrhistogram::Histogram;
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio_util::sync::CancellationToken;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn event(n: u64) -> AuditEvent {
    AuditEvent::from_document(&json!({
        "eventId": format!("lag-{n:012}"),
        "kind": "EVENT_KIND_MCP_REQUEST",
        "time": "2026-11-22T03:00:00Z",
        "principal": {"member": {"id": format!("member-{}", n % 97)}, "agent": {"clientId": "agent-1"}},
        "target": {"virtualServer": "demo", "connector": "echo", "tool": {"name": "echo"}},
        "decision": {"verdict": "VERDICT_ALLOW", "policyIds": ["p1"]},
        "outcome": "OUTCOME_SUCCESS",
        "latency": "0.000015s",
        "payload": {"arguments": [{"name": "text", "sizeBytes": "42"}], "requestBytes": "180"},
        "metadata": {"traceId": format!("{n:032x}"), "mcpMethod": "tools/call"},
    }))
    .unwrap()
}

async fn store(backend: &str, dir: &std::path::Path) -> (Arc<dyn Store>, Option<(String, String)>) {
    if backend != "postgres" {
        let store = SqliteStore::open(&dir.join("audit.db")).await.unwrap();
        return (Arc::new(store), None);
    }
    let admin_url =
        std::env::var("DATABASE_URL").expect("SINK_LAG_BACKEND=postgres needs DATABASE_URL");
    let database = format!("audit_sink_lag_{}", std::process::id());
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let store = PostgresStore::connect(&format!("{base}/{database}"))
        .await
        .unwrap();
    (Arc::new(store), Some((admin_url, database)))
}

/// Is one appender's share of the load.
#[derive(Clone, Copy)]
struct Stream {
    index: u64,
    streams: u64,
    batch: u64,
    interval: Duration,
    start: tokio::time::Instant,
    until: Instant,
}

/// Appends a batch every `interval` until `until`; returns, per batch, the
/// highest sequence it got and when its append returned (committed).
async fn stream(log: AuditLog, stream: Stream) -> Vec<(u64, Instant)> {
    // Streams start spread over one interval, as independent clients would.
    let offset = stream
        .interval
        .mul_f64(stream.index as f64 / stream.streams as f64);
    let mut ticker = tokio::time::interval_at(stream.start + offset, stream.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut committed = Vec::new();
    let mut round = 0u64;
    while Instant::now() < stream.until {
        ticker.tick().await;
        let first = (round * stream.streams + stream.index) * stream.batch;
        let events: Vec<AuditEvent> = (first..first + stream.batch).map(event).collect();
        let outcomes = log.append(events).await.unwrap();
        let last = outcomes
            .iter()
            .filter_map(|outcome| match outcome {
                AppendOutcome::Stored(sequence) => Some(*sequence),
                _ => None,
            })
            .max()
            .expect("fresh events are stored");
        committed.push((last, Instant::now()));
        round += 1;
    }
    committed
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let rate = knob("SINK_LAG_RATE", 20_000).max(1);
    let seconds = knob("SINK_LAG_SECONDS", 10);
    let batch = knob("SINK_LAG_BATCH", 100).max(1);
    let streams = knob("SINK_LAG_STREAMS", 4).max(1);
    let backend = std::env::var("SINK_LAG_BACKEND").unwrap_or_else(|_| "sqlite".to_owned());
    let dir = tempfile::tempdir().unwrap();
    let (store, scratch) = store(&backend, dir.path()).await;
    let log = AuditLog::new(store, Signer::new("bench/audit".to_owned(), &[1u8; 32]))
        .await
        .unwrap();
    let config = Config::load(Figment::from(Toml::string(&format!(
        "[[sinks]]\nname = \"bench\"\nshape = \"ocsf\"\nbatch_size = 2000\n\
         [sinks.jsonl]\npath = \"{}\"\n",
        dir.path().join("sink.jsonl").display()
    ))))
    .unwrap();
    let shutdown = CancellationToken::new();
    let handles = audit_svc::sinks::start(&log, &config.sinks, &shutdown).unwrap();
    let mut lag = handles[0].subscribe();

    // Records when the sink passed each sequence, as the lag feed reports it.
    let (seen_tx, seen_rx) = std::sync::mpsc::channel::<(u64, Instant)>();
    let watcher = tokio::spawn(async move {
        while lag.changed().await.is_ok() {
            let delivered = lag.borrow_and_update().delivered;
            if seen_tx.send((delivered, Instant::now())).is_err() {
                break;
            }
        }
    });

    let started = Instant::now();
    let appenders: Vec<_> = (0..streams)
        .map(|index| {
            let share = Stream {
                index,
                streams,
                batch,
                interval: Duration::from_secs_f64((batch * streams) as f64 / rate as f64),
                start: tokio::time::Instant::now(),
                until: started + Duration::from_secs(seconds),
            };
            tokio::spawn(stream(log.clone(), share))
        })
        .collect();
    let mut committed: Vec<(u64, Instant)> = Vec::new();
    for appender in appenders {
        committed.extend(appender.await.unwrap());
    }
    let load_time = started.elapsed();
    let stored = committed.len() as u64 * batch;
    let head = committed.iter().map(|(last, _)| *last).max().unwrap_or(0);
    let mut feed = handles[0].subscribe();
    tokio::time::timeout(
        Duration::from_secs(60),
        feed.wait_for(|lag| lag.delivered >= head),
    )
    .await
    .expect("sink did not catch up within 60 s")
    .unwrap();
    shutdown.cancel();
    for handle in handles {
        handle.join().await;
    }
    watcher.abort();
    let seen: Vec<(u64, Instant)> = seen_rx.try_iter().collect();

    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for (last, at) in &committed {
        // The feed's sequences only grow: the first entry at or past `last`.
        let index = seen.partition_point(|(delivered, _)| delivered < last);
        let delivered_at = seen.get(index).map_or(Instant::now(), |(_, when)| *when);
        let lag = delivered_at.saturating_duration_since(*at);
        histogram.record(lag.as_micros() as u64).unwrap();
    }
    let ms = |micros: u64| micros as f64 / 1000.0;
    println!(
        "sink lag ({backend}, jsonl+ocsf sink): {stored} events in {:.1} s = {:.0} events/s \
         achieved, offered {rate}/s from {streams} streams in batches of {batch}; \
         lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        load_time.as_secs_f64(),
        stored as f64 / load_time.as_secs_f64(),
        ms(histogram.value_at_quantile(0.50)),
        ms(histogram.value_at_quantile(0.99)),
        ms(histogram.max()),
    );
    if let Some((admin_url, database)) = scratch {
        drop(log);
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    }
}
