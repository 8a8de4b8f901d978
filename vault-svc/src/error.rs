//! vault-svc's error type and its mapping to gRPC statuses.

use svc_kit::{ConfigError, ErrorCode, ServiceError};

/// Describes everything that can go wrong in vault-svc.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reports an unusable configuration value.
    #[error(transparent)]
    Config(#[from] ConfigError),
}

impl ServiceError for Error {
    fn code(&self) -> ErrorCode {
        match self {
            // Exhaustive on purpose: a new variant forces a decision.
            Self::Config(_) => ErrorCode::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        svc_kit::to_status(&error)
    }
}
