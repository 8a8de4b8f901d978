//! Where buckets live and what a call gets when that store fails.

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

/// The bucket store: this process's memory by default (exact for one edge, one budget per
/// replica for several), or a Redis every replica shares.
///
/// A struct with one optional member, not an enum, so YAML writes `{redis: {url: …}}`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendConfig {
    /// Buckets in Redis, decided by one atomic script, so N replicas share one budget.
    #[serde(default)]
    pub redis: Option<RedisConfig>,
}

/// How to reach the Redis that holds the buckets.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`; secret because it may carry a password.
    pub url: SecretString,
    /// Prepended to every bucket key, so several gateways can share one Redis.
    #[serde(default = "default_key_prefix")]
    pub key_prefix: String,
    /// Longest wait for a connection or an answer before the check counts as failed.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// What a call gets when the bucket store cannot answer.
///
/// The default is `allow` (fail open): a rate limit protects capacity and cost, not
/// confidentiality — policy, which does, always fails closed — so a Redis outage should not
/// take every tool down with it. Each switch into and out of that degraded state is logged at
/// error level. Choose `refuse` where a budget must hold even at the price of availability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureMode {
    /// Let the call through unmetered (fail open).
    #[default]
    Allow,
    /// Refuse the call (fail closed).
    Refuse,
}

impl RedisConfig {
    /// Returns the settings for `url` with the default prefix and timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: SecretString::from(url.into()),
            key_prefix: default_key_prefix(),
            timeout: default_timeout(),
        }
    }
}

fn default_key_prefix() -> String {
    "gatehouse:limits:".to_owned()
}

fn default_timeout() -> Duration {
    Duration::from_millis(500)
}
