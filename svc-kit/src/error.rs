//! The closed set of error classes and the one mapping from a service error to a
//! gRPC status or an HTTP status.

use http::StatusCode;

/// Classifies a service error; the class alone decides what the caller is told.
///
/// The set is closed on purpose: a new class needs a decision about its gRPC code,
/// its HTTP status and whether its text may leave the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed or violates a constraint; the caller can fix it.
    InvalidArgument,
    /// The caller did not prove who it is.
    Unauthenticated,
    /// The caller is known but may not perform the operation.
    PermissionDenied,
    /// The resource does not exist, or the caller may not know that it does.
    NotFound,
    /// The resource the caller wants to create exists already.
    AlreadyExists,
    /// The system is not in the state the operation needs.
    FailedPrecondition,
    /// A quota or rate limit is exhausted.
    ResourceExhausted,
    /// A dependency is temporarily unavailable; retrying later may succeed.
    Unavailable,
    /// A bug or an unexpected failure; its details stay in the logs.
    Internal,
}

/// Gives a service's error type its class, so that it maps to a status in one way.
pub trait ServiceError: std::error::Error {
    /// Returns the error's class.
    fn code(&self) -> ErrorCode;
}

impl ErrorCode {
    /// Returns the gRPC status code of this class.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::NotFound => tonic::Code::NotFound,
            Self::AlreadyExists => tonic::Code::AlreadyExists,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// Returns the HTTP status of this class.
    pub fn http_status(self) -> StatusCode {
        match self {
            Self::InvalidArgument => StatusCode::BAD_REQUEST,
            Self::Unauthenticated => StatusCode::UNAUTHORIZED,
            Self::PermissionDenied => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::AlreadyExists | Self::FailedPrecondition => StatusCode::CONFLICT,
            Self::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Returns the gRPC status for `error`.
///
/// Internal errors are logged with their whole source chain and answered with a
/// fixed message, so that driver or system text never reaches a caller; every
/// other class carries the error's own message.
pub fn to_status<E: ServiceError>(error: &E) -> tonic::Status {
    let code = error.code();
    if code == ErrorCode::Internal {
        tracing::error!(error = %source_chain(error), "request failed");
        return tonic::Status::internal("internal error");
    }
    tonic::Status::new(code.grpc_code(), error.to_string())
}

// Renders "outer: cause: root cause", the way the error would be reported.
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut chain = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        chain.push_str(": ");
        chain.push_str(&cause.to_string());
        source = cause.source();
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum SampleError {
        #[error("widget {0} not found")]
        WidgetNotFound(&'static str),
        #[error("widget store query failed")]
        Store(#[source] std::io::Error),
    }

    impl ServiceError for SampleError {
        fn code(&self) -> ErrorCode {
            match self {
                Self::WidgetNotFound(_) => ErrorCode::NotFound,
                Self::Store(_) => ErrorCode::Internal,
            }
        }
    }

    #[test]
    fn internal_error_text_is_hidden() {
        let error = SampleError::Store(std::io::Error::other("password=hunter2 at db:5432"));
        let status = to_status(&error);
        assert_eq!(status.code(), tonic::Code::Internal);
        assert_eq!(status.message(), "internal error");
    }

    #[test]
    fn source_chain_names_every_cause() {
        let error = SampleError::Store(std::io::Error::other("connection reset"));
        assert_eq!(
            source_chain(&error),
            "widget store query failed: connection reset"
        );
    }

    #[test]
    fn client_error_keeps_its_message() {
        let status = to_status(&SampleError::WidgetNotFound("w-1"));
        assert_eq!(status.code(), tonic::Code::NotFound);
        assert_eq!(status.message(), "widget w-1 not found");
    }

    #[test]
    fn every_code_maps_to_matching_grpc_and_http_classes() {
        let cases = [
            (
                ErrorCode::InvalidArgument,
                tonic::Code::InvalidArgument,
                400,
            ),
            (
                ErrorCode::Unauthenticated,
                tonic::Code::Unauthenticated,
                401,
            ),
            (
                ErrorCode::PermissionDenied,
                tonic::Code::PermissionDenied,
                403,
            ),
            (ErrorCode::NotFound, tonic::Code::NotFound, 404),
            (ErrorCode::AlreadyExists, tonic::Code::AlreadyExists, 409),
            (
                ErrorCode::FailedPrecondition,
                tonic::Code::FailedPrecondition,
                409,
            ),
            (
                ErrorCode::ResourceExhausted,
                tonic::Code::ResourceExhausted,
                429,
            ),
            (ErrorCode::Unavailable, tonic::Code::Unavailable, 503),
            (ErrorCode::Internal, tonic::Code::Internal, 500),
        ];
        for (code, grpc, http) in cases {
            assert_eq!(code.grpc_code(), grpc, "{code:?}");
            assert_eq!(code.http_status().as_u16(), http, "{code:?}");
        }
    }
}
