//! Why a DLP configuration was refused, or an inspection hook could not give a verdict.

/// A `dlp:` section that cannot be used; the field path says where.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A field holds a value that cannot be used.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field path, such as `dlp.custom[0].pattern`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A built-in pattern failed to compile (a defect in this crate, not in the config).
    #[error("built-in DLP detectors failed to compile: {0}")]
    Builtin(String),
}

impl ConfigError {
    pub(crate) fn invalid(field: String, reason: String) -> Self {
        Self::Invalid { field, reason }
    }
}

/// Why an inspection hook gave no verdict; its `on_error` setting then decides.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    /// The hook did not answer within its timeout.
    #[error("the inspection hook did not answer in time")]
    Timeout,
    /// The hook could not be reached or the exchange failed.
    #[error("the inspection hook could not be reached")]
    Unreachable(#[source] reqwest::Error),
    /// The hook answered with an HTTP error status.
    #[error("the inspection hook answered HTTP {0}")]
    Status(u16),
    /// The hook's answer is not a verdict this gateway understands.
    #[error("the inspection hook answered something that is not a verdict: {0}")]
    Verdict(String),
}
