//! Why a limiter could not decide.

/// A limiter failure; the text never contains the Redis URL (it may hold a password).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Redis settings are unusable (bad URL scheme, for example).
    #[error("invalid redis settings for rate limits")]
    Config(#[source] redis::RedisError),
    /// Redis did not answer, or answered something the script never returns.
    #[error("the rate-limit store is unavailable")]
    Store(#[source] redis::RedisError),
    /// The store failed and the limiter is configured to refuse rather than let calls through.
    #[error("the rate-limit store is unavailable and rate limits fail closed")]
    Unavailable,
}
