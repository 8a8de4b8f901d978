//! The policy crate's error type.

use crate::diagnostic::Diagnostics;

/// Describes why policies could not be loaded or a request could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reports policies (or constraints) that do not parse or validate, with Cedar's
    /// diagnostics, so that an administrator can fix them.
    #[error("invalid policies: {0}")]
    Invalid(Diagnostics),
    /// Reports a request that cannot be evaluated as given (a caller bug, not a denial).
    #[error("invalid policy request: {0}")]
    InvalidRequest(String),
    /// Reports a policy snapshot from the wire that does not decode.
    #[error("malformed policy snapshot: {0}")]
    MalformedSnapshot(String),
    /// Reports a failure of this crate's own invariants (the published schema, entity
    /// construction); never caused by input.
    #[error("policy engine failure: {0}")]
    Internal(String),
}
