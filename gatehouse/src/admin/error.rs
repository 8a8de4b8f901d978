//! The admin API's error, mapped once to HTTP (status + JSON body) and once to gRPC.

use axum::Json;
use axum::response::{IntoResponse, Response};
use svc_kit::{ErrorCode, ServiceError};

use super::model::{DiagnosticView, ErrorBody};

/// Describes why an admin request was refused or failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AdminError {
    /// No bearer token, or one the authorization server did not issue for the admin API.
    #[error("authentication required: {0}")]
    Unauthenticated(&'static str),
    /// A valid token without the `gatehouse:admin` grant.
    #[error("this token does not carry the gatehouse:admin scope for an administrator")]
    InsufficientScope,
    /// Policies that do not parse or validate; nothing changed.
    #[error("invalid policies: {0}")]
    InvalidPolicies(policy::Diagnostics),
    /// A request the caller can fix.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// No virtual server of that name is served.
    #[error("virtual server {0} not found")]
    VirtualServerNotFound(String),
    /// No connector of that name is declared.
    #[error("connector {0} not found")]
    ConnectorNotFound(String),
    /// A connector or virtual server declaration the gateway file's parser refuses, or that
    /// cannot be served; nothing changed.
    #[error("invalid declaration: {0}")]
    InvalidDeclaration(String),
    /// An applied change could not be kept in the data directory; it is served but would not
    /// survive a restart.
    #[error("the applied change could not be kept in the data directory")]
    Persist(#[source] std::io::Error),
    /// The connector has no shared credential to delete.
    #[error("connector {0} has no shared credential")]
    NoSharedCredential(String),
    /// authz-svc refused or failed (agent bundles, policies).
    #[error(transparent)]
    Authz(authz_svc::Error),
    /// vault-svc refused or failed (shared credentials, health).
    #[error(transparent)]
    Vault(vault_svc::Error),
    /// audit-svc refused or failed (search).
    #[error(transparent)]
    Audit(audit_svc::Error),
}

impl From<authz_svc::Error> for AdminError {
    fn from(error: authz_svc::Error) -> Self {
        match error {
            authz_svc::Error::InvalidPolicy(diagnostics) => Self::InvalidPolicies(diagnostics),
            other => Self::Authz(other),
        }
    }
}

impl ServiceError for AdminError {
    fn code(&self) -> ErrorCode {
        match self {
            Self::Unauthenticated(_) => ErrorCode::Unauthenticated,
            Self::InsufficientScope => ErrorCode::PermissionDenied,
            Self::InvalidPolicies(_)
            | Self::InvalidArgument { .. }
            | Self::InvalidDeclaration(_) => ErrorCode::InvalidArgument,
            Self::Persist(_) => ErrorCode::Internal,
            Self::VirtualServerNotFound(_)
            | Self::ConnectorNotFound(_)
            | Self::NoSharedCredential(_) => ErrorCode::NotFound,
            Self::Authz(error) => error.code(),
            Self::Vault(error) => error.code(),
            Self::Audit(error) => error.code(),
        }
    }
}

impl AdminError {
    /// Returns the stable code of the JSON body.
    fn slug(&self) -> &'static str {
        match self {
            Self::Unauthenticated(_) => "invalid_token",
            Self::InsufficientScope => "insufficient_scope",
            Self::InvalidPolicies(_) => "invalid_policies",
            _ => match self.code() {
                ErrorCode::InvalidArgument => "invalid_request",
                ErrorCode::NotFound => "not_found",
                ErrorCode::AlreadyExists => "already_exists",
                ErrorCode::FailedPrecondition => "failed_precondition",
                ErrorCode::Unavailable => "unavailable",
                ErrorCode::Unauthenticated => "invalid_token",
                ErrorCode::PermissionDenied => "forbidden",
                _ => "internal_error",
            },
        }
    }

    /// Returns the JSON body; an internal failure is logged here and shown only as such.
    pub(crate) fn body(&self) -> ErrorBody {
        let message = if self.code() == ErrorCode::Internal {
            tracing::error!(
                error = self as &dyn std::error::Error,
                "admin request failed"
            );
            "internal error".to_owned()
        } else {
            self.to_string()
        };
        let diagnostics = match self {
            Self::InvalidPolicies(diagnostics) => diagnostics
                .0
                .iter()
                .map(|diagnostic| DiagnosticView {
                    policy_id: diagnostic.policy_id.clone(),
                    message: diagnostic.message.clone(),
                    help: diagnostic.help.clone(),
                })
                .collect(),
            _ => Vec::new(),
        };
        ErrorBody {
            error: self.slug().to_owned(),
            message,
            diagnostics,
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        (self.code().http_status(), Json(self.body())).into_response()
    }
}

impl From<AdminError> for tonic::Status {
    fn from(error: AdminError) -> Self {
        if error.code() == ErrorCode::Internal {
            return svc_kit::to_status(&error);
        }
        let body = error.body();
        let mut message = body.message;
        for diagnostic in body.diagnostics {
            message.push_str(&format!("\n{}", diagnostic.message));
        }
        tonic::Status::new(error.code().grpc_code(), message)
    }
}
