//! limits: Gatehouse's rate limits, as GCRA buckets with burst.
//!
//! A [`Limiter`] answers whether a call may consume one unit from each of a set of buckets, all
//! or nothing, and how long to wait when it may not. It keeps its buckets in this process (the
//! embedded default) or in Redis, where one atomic script makes the budget global across
//! replicas. Which buckets a call touches is the caller's business (edge maps rules to keys).

mod config;
mod error;
mod limiter;
mod quota;

pub use config::{BackendConfig, FailureMode, RedisConfig};
pub use error::Error;
pub use limiter::{Backend, Check, Decision, InProcess, Limiter, RedisBackend};
pub use quota::{Quota, Rate};
