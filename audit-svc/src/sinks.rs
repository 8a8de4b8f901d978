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
mod metrics;
mod otlp;
mod runner;
mod s3;
pub(crate) mod shape;
mod syslog;

pub use config::{
    HecConfig, JsonlConfig, OtlpConfig, OtlpProtocol, RetryConfig, S3Config, Secret, Shape,
    SinkConfig, SyslogConfig, SyslogTlsConfig,
};
use runner::Runner;
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

    /// Learns the checkpoint anchored last before a restart.
    fn resume(&mut self, _checkpoint: &Checkpoint) {}

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

/// Returns at most `limit` characters of a receiver's answer, for failure reasons.
pub(crate) fn truncate(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}
