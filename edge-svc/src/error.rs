//! edge-svc's typed error, mapped once to HTTP and gRPC at the service edge.

use svc_kit::{ErrorCode, ServiceError};

/// What can stop edge-svc from starting or serving.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The gateway description could not be read.
    #[error("cannot read gateway description {path}")]
    ReadSpec {
        /// The file that failed.
        path: String,
        /// The I/O failure.
        #[source]
        source: std::io::Error,
    },
    /// The gateway description is invalid (the message names the field and line).
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    /// A connector or virtual server could not be started.
    #[error("cannot start the gateway: {0}")]
    Start(String),
    /// The rate-limit store could not be opened (Redis unreachable at start, for example).
    #[error("cannot open the rate-limit store")]
    RateLimits(#[source] limits::Error),
}

impl ServiceError for Error {
    fn code(&self) -> ErrorCode {
        match self {
            Self::ReadSpec { .. } => ErrorCode::FailedPrecondition,
            Self::Spec(_) => ErrorCode::InvalidArgument,
            Self::Start(_) | Self::RateLimits(_) => ErrorCode::Internal,
        }
    }
}
