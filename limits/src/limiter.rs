//! The limiter: one all-or-nothing check over the buckets a call touches.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{BackendConfig, FailureMode};
use crate::error::Error;
use crate::quota::Quota;

mod memory;
mod redis;

pub use memory::InProcess;
pub use redis::RedisBackend;

/// One bucket a call consumes from: its key and its limits.
#[derive(Debug, Clone, Copy)]
pub struct Check<'a> {
    /// Names the bucket; equal keys share one budget, so keys should name rule and subject.
    pub key: &'a str,
    /// The bucket's rate and burst.
    pub quota: Quota,
}

/// The answer for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Every bucket had room; each was charged one call.
    Allowed,
    /// At least one bucket was full; none was charged.
    Limited {
        /// The index, in the checks given, of the bucket that frees up last.
        check: usize,
        /// How long until that bucket (and so every one) admits this call.
        retry_after: Duration,
    },
}

/// A bucket store: charges every bucket of a call, or none of them.
///
/// All-or-nothing matters: a call refused by one rule must not spend the budget of the others.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug + 'static {
    /// Charges one call to every bucket in `checks` when all have room.
    async fn acquire(&self, checks: &[Check<'_>]) -> Result<Decision, Error>;
}

/// A bucket store with its failure policy; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Limiter {
    backend: Arc<dyn Backend>,
    on_error: FailureMode,
    /// Set while the store is failing, so the outage is logged once on entry and once on exit.
    degraded: AtomicBool,
}

impl Limiter {
    /// Returns a limiter over `backend` that treats store failures as `on_error` says.
    pub fn new(backend: Arc<dyn Backend>, on_error: FailureMode) -> Self {
        Self {
            backend,
            on_error,
            degraded: AtomicBool::new(false),
        }
    }

    /// Opens the configured store; Redis is connected now, so a wrong address fails the start.
    pub async fn open(config: &BackendConfig, on_error: FailureMode) -> Result<Self, Error> {
        let backend: Arc<dyn Backend> = match &config.redis {
            None => Arc::new(InProcess::default()),
            Some(redis) => Arc::new(RedisBackend::connect(redis).await?),
        };
        Ok(Self::new(backend, on_error))
    }

    /// Charges one call to every bucket in `checks`, or says how long to wait.
    ///
    /// A store failure becomes [`Decision::Allowed`] or [`Error::Unavailable`] per the failure
    /// mode; it is never returned raw.
    pub async fn acquire(&self, checks: &[Check<'_>]) -> Result<Decision, Error> {
        if checks.is_empty() {
            return Ok(Decision::Allowed);
        }
        match self.backend.acquire(checks).await {
            Ok(decision) => {
                if self.degraded.swap(false, Ordering::Relaxed) {
                    tracing::error!("rate-limit store answers again: rate limits are enforced");
                }
                Ok(decision)
            }
            Err(error) => {
                if !self.degraded.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        on_backend_error = ?self.on_error,
                        "RATE-LIMIT STORE FAILED: calls are {} until it answers again",
                        match self.on_error {
                            FailureMode::Allow => "let through unmetered",
                            FailureMode::Refuse => "refused",
                        }
                    );
                }
                match self.on_error {
                    FailureMode::Allow => Ok(Decision::Allowed),
                    FailureMode::Refuse => Err(Error::Unavailable),
                }
            }
        }
    }
}
