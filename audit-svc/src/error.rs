//! audit-svc's error type and its mapping to gRPC statuses.

use std::path::PathBuf;

use svc_kit::{ConfigError, ErrorCode, ServiceError};

use crate::event::EventId;

/// Describes everything that can go wrong in audit-svc.
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
    /// Reports an event id unknown to the log.
    #[error("event {0} not found")]
    EventNotFound(EventId),
    /// Reports a sequence number beyond the log's head.
    #[error("sequence {0} not found")]
    SequenceNotFound(u64),
    /// Reports a checkpoint size that was never signed.
    #[error("checkpoint of tree size {0} not found")]
    CheckpointNotFound(u64),
    /// Reports that no checkpoint has been signed yet.
    #[error("no checkpoint has been made yet")]
    NoCheckpoint,
    /// Reports an event that the requested checkpoint does not cover yet.
    #[error("sequence {sequence} is not covered by the checkpoint of tree size {tree_size}")]
    NotCovered {
        /// Holds the event's sequence.
        sequence: u64,
        /// Holds the checkpoint's tree size.
        tree_size: u64,
    },
    /// Reports a request for events retention already archived and removed.
    #[error("events up to sequence {0} were archived and removed from the log")]
    Pruned(u64),
    /// Reports that the database cannot be reached; retrying later may succeed.
    #[error("audit store unavailable")]
    StoreUnavailable(#[source] sqlx::Error),
    /// Reports any other failed store query.
    #[error("audit store query failed")]
    Store(#[source] sqlx::Error),
    /// Reports failed schema migrations.
    #[error("audit store migration failed")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Reports a stored value that violates the store's own invariants.
    #[error("audit store holds a malformed {0}")]
    Corrupt(&'static str),
    /// Reports an unreadable or unwritable checkpoint signing key file.
    #[error("checkpoint key file {path} is unusable")]
    KeyFile {
        /// Holds the key file's path.
        path: PathBuf,
        /// Holds the I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reports a data directory that cannot be created.
    #[error("data directory {path} cannot be created")]
    DataDir {
        /// Holds the directory's path.
        path: PathBuf,
        /// Holds the I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Reports a key file whose content is not an Ed25519 seed.
    #[error("checkpoint key file {0} does not hold a base64 Ed25519 seed")]
    InvalidKey(PathBuf),
    /// Reports that the operating system gave no randomness for a new key.
    #[error("no randomness for a new checkpoint key")]
    Randomness,
    /// Reports a sink that cannot be set up (an unreadable CA file, a bad URL).
    #[error("sink {field} is unusable: {reason}")]
    SinkSetup {
        /// Names the configuration key.
        field: &'static str,
        /// Says what is wrong, without secrets.
        reason: String,
    },
    /// Reports a retention run that could not archive or prune.
    #[error("retention failed: {0}")]
    Retention(String),
    /// Reports the failed group commit an append was part of (shared by every
    /// batch in it).
    #[error(transparent)]
    Commit(std::sync::Arc<Error>),
    /// Reports an append whose group commit ended without an answer (its task
    /// failed); whether it committed is unknown, and a resend is idempotent.
    #[error("the append ended before its commit was confirmed")]
    AppendAbandoned,
    /// Reports a signed note that does not parse or whose signature fails.
    #[error("invalid checkpoint note: {0}")]
    InvalidNote(&'static str),
}

impl Error {
    /// Says whether this is another process holding the SQLite file (busy, locked) or
    /// migrating it at the same moment: both pass once that process is done.
    pub(crate) fn is_contention(&self) -> bool {
        match self {
            Self::Migrate(_) => true,
            Self::Store(sqlx::Error::Database(error)) => error
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                // The primary result code is the low byte: SQLITE_BUSY 5, SQLITE_LOCKED 6.
                .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
            _ => false,
        }
    }

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
            Self::Commit(shared) => shared.code(),
            // Exhaustive on purpose: a new variant forces a decision.
            Self::InvalidArgument { .. } | Self::InvalidNote(_) => ErrorCode::InvalidArgument,
            Self::EventNotFound(_)
            | Self::SequenceNotFound(_)
            | Self::CheckpointNotFound(_)
            | Self::NoCheckpoint => ErrorCode::NotFound,
            Self::NotCovered { .. } | Self::Pruned(_) => ErrorCode::FailedPrecondition,
            Self::StoreUnavailable(_) | Self::AppendAbandoned => ErrorCode::Unavailable,
            Self::Config(_)
            | Self::Store(_)
            | Self::Migrate(_)
            | Self::Corrupt(_)
            | Self::KeyFile { .. }
            | Self::DataDir { .. }
            | Self::InvalidKey(_)
            | Self::Randomness
            | Self::SinkSetup { .. }
            | Self::Retention(_) => ErrorCode::Internal,
        }
    }
}

impl From<Error> for tonic::Status {
    fn from(error: Error) -> Self {
        svc_kit::to_status(&error)
    }
}
