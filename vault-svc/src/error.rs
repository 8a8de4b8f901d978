//! vault-svc's error type and its mapping to gRPC statuses.
//!
//! No variant carries secret material; messages name identifiers only.

use std::path::PathBuf;

use svc_kit::{ConfigError, ErrorCode, ServiceError};

/// Describes everything that can go wrong in vault-svc.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reports an unusable configuration value.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Reports a request value the caller can fix.
    #[error("invalid {field}: {reason}")]
    InvalidArgument {
        /// Names the offending field.
        field: &'static str,
        /// Says what is wrong with it, without echoing its value.
        reason: &'static str,
    },
    /// Reports a connector vault-svc is not configured for.
    #[error("connector {0} not found")]
    ConnectorNotFound(String),
    /// Reports a credential that does not exist or that the caller may not see.
    #[error("credential not found")]
    CredentialNotFound,
    /// Reports a per-member connector called without a member.
    #[error("connector {0} needs a member's own credential; the request has no member")]
    MemberRequired(String),
    /// Reports a principal whose credentials were revoked.
    #[error("principal revoked")]
    PrincipalRevoked,
    /// Reports a credential whose refresh is failing; retrying later may succeed.
    #[error("credential refresh is failing")]
    RefreshFailing,
    /// Reports a write that lost a compare-and-swap on the credential version.
    #[error("credential changed concurrently")]
    VersionConflict,
    /// Reports a consent link that is unknown, used or expired.
    #[error("authorization link is invalid or expired")]
    ConsentInvalid,
    /// Reports that the downstream OAuth provider refused or failed a request.
    #[error("downstream provider refused the request: {0}")]
    Provider(String),
    /// Reports that the downstream provider cannot be reached.
    #[error("downstream provider unreachable")]
    ProviderUnreachable,
    /// Reports that the refresh-lock backend cannot be reached.
    #[error("refresh lock unavailable")]
    Lock(#[source] redis::RedisError),
    /// Reports a KEK version the keyring does not hold.
    #[error("key-encryption key version {0} unavailable")]
    KekUnavailable(u32),
    /// Reports a key source that cannot rotate (it is managed outside vault-svc).
    #[error("this key-encryption key source cannot rotate")]
    RotationUnsupported,
    /// Reports a ciphertext that does not authenticate (tampered or moved).
    #[error("credential does not decrypt")]
    Decrypt,
    /// Reports an encryption failure.
    #[error("credential encryption failed")]
    Encrypt,
    /// Reports that the operating system gave no randomness.
    #[error("no randomness available")]
    Randomness,
    /// Reports an unreadable or unwritable key file.
    #[error("key file {path} is unusable")]
    KeyFile {
        /// Holds the key file's path.
        path: PathBuf,
        /// Holds the I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reports a key file whose content or permissions are unusable.
    #[error("key file {0} {1}")]
    InvalidKeyFile(PathBuf, &'static str),
    /// Reports an unusable KEK environment variable (the reason names no key).
    #[error("key-encryption key environment variable {0}")]
    InvalidKekEnv(&'static str),
    /// Reports a data directory that cannot be created.
    #[error("data directory {path} cannot be created")]
    DataDir {
        /// Holds the directory's path.
        path: PathBuf,
        /// Holds the I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reports that the database cannot be reached; retrying later may succeed.
    #[error("credential store unavailable")]
    StoreUnavailable(#[source] sqlx::Error),
    /// Reports any other failed store query.
    #[error("credential store query failed")]
    Store(#[source] sqlx::Error),
    /// Reports failed schema migrations.
    #[error("credential store migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Reports a stored value that violates the store's own invariants.
    #[error("credential store holds a malformed {0}")]
    Corrupt(&'static str),
}

impl Error {
    /// Returns the error for a driver error, classified where code meets the driver.
    pub(crate) fn from_sqlx(error: sqlx::Error) -> Self {
        match error {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => {
                Self::StoreUnavailable(error)
            }
            other => Self::Store(other),
        }
    }
}

impl ServiceError for Error {
    fn code(&self) -> ErrorCode {
        match self {
            // Exhaustive on purpose: a new variant forces a decision.
            Self::InvalidArgument { .. } => ErrorCode::InvalidArgument,
            Self::ConnectorNotFound(_) | Self::CredentialNotFound | Self::ConsentInvalid => {
                ErrorCode::NotFound
            }
            Self::MemberRequired(_) | Self::PrincipalRevoked | Self::VersionConflict => {
                ErrorCode::FailedPrecondition
            }
            Self::RefreshFailing
            | Self::Provider(_)
            | Self::ProviderUnreachable
            | Self::Lock(_)
            | Self::StoreUnavailable(_) => ErrorCode::Unavailable,
            Self::Config(_)
            | Self::KekUnavailable(_)
            | Self::RotationUnsupported
            | Self::Decrypt
            | Self::Encrypt
            | Self::Randomness
            | Self::KeyFile { .. }
            | Self::InvalidKeyFile(..)
            | Self::InvalidKekEnv(_)
            | Self::DataDir { .. }
            | Self::Store(_)
            | Self::Migrate(_)
            | Self::Corrupt(_) => ErrorCode::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        svc_kit::to_status(&error)
    }
}
