//! authz-svc's error type and its mapping to gRPC statuses.

use svc_kit::{ConfigError, ErrorCode, ServiceError};

/// Describes everything that can go wrong in authz-svc outside a single OAuth request.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reports an unusable configuration value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reports a failed query against the authorization store.
    #[error("authorization store query failed")]
    Store(#[source] sqlx::Error),
    /// Reports a failed schema migration of the authorization store.
    #[error("authorization store migration failed")]
    Migrate(#[source] sqlx::migrate::MigrateError),
    /// Reports that the master key could not be read, created or parsed.
    #[error("master key {location}: {reason}")]
    MasterKey {
        /// Names the file or variable the key comes from.
        location: String,
        /// Says what is wrong with it.
        reason: &'static str,
    },
    /// Reports a failure of a cryptographic primitive (key decoding, sealing, opening).
    #[error("cryptographic operation failed: {0}")]
    Crypto(&'static str),
    /// Reports a stored row that does not decode into the domain type.
    #[error("stored {0} is malformed")]
    Corrupt(&'static str),
}

impl ServiceError for Error {
    fn code(&self) -> ErrorCode {
        match self {
            // Exhaustive on purpose: a new variant forces a decision.
            Self::Config(_)
            | Self::Store(_)
            | Self::Migrate(_)
            | Self::MasterKey { .. }
            | Self::Crypto(_)
            | Self::Corrupt(_) => ErrorCode::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        svc_kit::to_status(&error)
    }
}
