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
    /// Reports policies that do not parse or validate, with Cedar's diagnostics, so
    /// that the administrator who supplied them can fix them.
    #[error("invalid policies: {0}")]
    InvalidPolicy(policy::Diagnostics),
    /// Reports a policy file that cannot be read.
    #[error("cannot read policy file {}", path.display())]
    PolicyFile {
        /// Names the file.
        path: std::path::PathBuf,
        /// Is the read failure.
        #[source]
        source: std::io::Error,
    },
    /// Reports a request the caller can fix (a missing principal, an unknown action).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// Reports an agent bundle name or client id that is taken.
    #[error("agent {0} already exists")]
    AgentExists(String),
    /// Reports an agent bundle that does not exist, or that the caller may not see.
    #[error("agent {0} not found")]
    AgentNotFound(String),
    /// Reports an operation the agent's state or authentication method does not allow.
    #[error("agent {agent}: {reason}")]
    AgentPrecondition {
        /// Names the agent.
        agent: String,
        /// Says what is not possible.
        reason: &'static str,
    },
    /// Reports a directory attribute value another user or group already holds.
    #[error("directory {0} is already taken")]
    DirectoryConflict(&'static str),
    /// Reports a group member that is not a provisioned user.
    #[error("group member {0} is not a user")]
    DirectoryReference(String),
    /// Reports a directory member (by id or user name) that does not exist.
    #[error("member {0} not found")]
    MemberNotFound(String),
    /// Reports a directory group (by id or name) that does not exist.
    #[error("group {0} not found")]
    GroupNotFound(String),
    /// Reports a directory entry that changed while it was being updated; retry.
    #[error("{0} changed concurrently; retry")]
    DirectoryStale(String),
    /// Reports a caller without a valid service or admin token.
    #[error("caller is not authenticated")]
    Unauthenticated,
    /// Reports that an event could not be handed to the audit trail, so the change
    /// it records (a token) is refused.
    #[error("the audit trail is unavailable")]
    AuditUnavailable,
    /// Reports a subject token that is invalid, expired or revoked (token exchange).
    #[error("subject token is invalid, expired or revoked")]
    SubjectTokenInvalid,
    /// Reports a connector that does not accept exchanged tokens, or that the subject
    /// may not reach: the same answer, so that existence is not revealed.
    #[error("connector {0} not found")]
    ConnectorNotFound(String),
    /// Reports an exchange outside what the subject or connector allows.
    #[error("exchange refused: {0}")]
    ExchangeForbidden(&'static str),
    /// Reports a caller whose service token does not hold a role this method allows.
    #[error("this caller may not use this method")]
    PermissionDenied,
    /// Reports a failure of the policy engine's own invariants.
    #[error("policy engine failure: {0}")]
    PolicyEngine(String),
}

impl From<policy::Error> for Error {
    fn from(error: policy::Error) -> Self {
        match error {
            policy::Error::Invalid(diagnostics) => Self::InvalidPolicy(diagnostics),
            policy::Error::InvalidRequest(reason) => Self::InvalidRequest(reason),
            policy::Error::MalformedSnapshot(reason) | policy::Error::Internal(reason) => {
                Self::PolicyEngine(reason)
            }
        }
    }
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
            | Self::Corrupt(_)
            | Self::PolicyFile { .. }
            | Self::PolicyEngine(_) => ErrorCode::Internal,
            Self::InvalidPolicy(_) | Self::InvalidRequest(_) => ErrorCode::InvalidArgument,
            Self::AgentExists(_) | Self::DirectoryConflict(_) => ErrorCode::AlreadyExists,
            Self::DirectoryReference(_) => ErrorCode::InvalidArgument,
            Self::AgentNotFound(_) | Self::MemberNotFound(_) | Self::GroupNotFound(_) => {
                ErrorCode::NotFound
            }
            Self::DirectoryStale(_) => ErrorCode::FailedPrecondition,
            Self::AgentPrecondition { .. } => ErrorCode::FailedPrecondition,
            Self::Unauthenticated | Self::SubjectTokenInvalid => ErrorCode::Unauthenticated,
            Self::AuditUnavailable => ErrorCode::Unavailable,
            Self::ConnectorNotFound(_) => ErrorCode::NotFound,
            Self::ExchangeForbidden(_) | Self::PermissionDenied => ErrorCode::PermissionDenied,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        svc_kit::to_status(&error)
    }
}
