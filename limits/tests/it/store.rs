//! The two stores the suite runs against, each able to hand out several handles (replicas).

use std::sync::Arc;

use limits::{Backend, InProcess, RedisBackend, RedisConfig};

/// One bucket store under test.
pub(crate) enum Store {
    /// One process's memory: every handle is the same limiter.
    InProcess(Arc<InProcess>),
    /// A Redis; every handle is a new connection, as each replica has its own.
    Redis(RedisConfig),
}

/// Returns REDIS_URL, or `None` (printed loudly) when unset.
pub(crate) fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("SKIPPED: REDIS_URL is not set; Redis rate-limit tests did not run");
            None
        }
    }
}

impl Store {
    pub(crate) async fn in_process(_case: &str) -> Option<Self> {
        Some(Self::InProcess(Arc::new(InProcess::default())))
    }

    /// A Redis store whose keys are unique to this run and `case`; `None` without REDIS_URL.
    pub(crate) async fn redis(case: &str) -> Option<Self> {
        let mut config = RedisConfig::new(redis_url()?);
        config.key_prefix = format!("gatehouse:limits-it:{}:{case}:", std::process::id());
        Some(Self::Redis(config))
    }

    /// Returns one more handle on the same buckets.
    pub(crate) async fn handle(&self) -> Arc<dyn Backend> {
        match self {
            Self::InProcess(limiter) => limiter.clone(),
            Self::Redis(config) => Arc::new(
                RedisBackend::connect(config)
                    .await
                    .expect("REDIS_URL is set but Redis is unreachable"),
            ),
        }
    }
}
