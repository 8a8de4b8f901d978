//! The outcome of one evaluation, with what may be shown to whom.

/// Is one policy decision and its explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Says whether the action is allowed.
    pub allowed: bool,
    /// Classifies a denial; `None` when allowed. Safe to show a client.
    pub reason: Option<DenyReason>,
    /// Are the ids of the policies that determined the verdict (the permits that
    /// allowed it or the forbids that denied it); empty for a default deny.
    pub policy_ids: Vec<String>,
    /// Are the scopes any one of which would grant the action, when the denial is
    /// [`DenyReason::InsufficientScope`] (for a step-up challenge).
    pub required_scopes: Vec<String>,
    /// Is the full explanation for the audit record; never shown to clients.
    pub explanation: String,
    /// Is the version of the snapshot evaluated.
    pub policy_version: u64,
}

/// Classifies why an action was denied, in terms a client may be told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DenyReason {
    /// No policy permits the action (default deny).
    NoPermit,
    /// A policy explicitly forbids the action.
    Forbidden,
    /// The token lacks a scope the action needs.
    InsufficientScope,
    /// An argument violates a constraint declared for the tool.
    ArgumentConstraint,
    /// The request falls outside an allowed time window.
    OutsideTimeWindow,
    /// The request comes from a source network that is not allowed.
    SourceNotAllowed,
    /// The principal has been revoked.
    Revoked,
    /// A policy could not be evaluated; Gatehouse fails closed.
    EvaluationError,
}

impl Decision {
    /// Says whether the target belongs in the caller's `tools/list` (and the other
    /// lists): allowed, or denied only for a missing scope, which the client can
    /// obtain by step-up before calling.
    pub fn is_listed(&self) -> bool {
        self.allowed || self.reason == Some(DenyReason::InsufficientScope)
    }
}

impl DenyReason {
    /// Returns the reason's name: the value of a policy's `@reason` annotation and of
    /// audit records.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoPermit => "no_permit",
            Self::Forbidden => "forbidden",
            Self::InsufficientScope => "insufficient_scope",
            Self::ArgumentConstraint => "argument_constraint",
            Self::OutsideTimeWindow => "outside_time_window",
            Self::SourceNotAllowed => "source_not_allowed",
            Self::Revoked => "revoked",
            Self::EvaluationError => "evaluation_error",
        }
    }

    /// Returns the reason named `name` (as written in `@reason("…")`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "no_permit" => Self::NoPermit,
            "forbidden" => Self::Forbidden,
            "insufficient_scope" => Self::InsufficientScope,
            "argument_constraint" => Self::ArgumentConstraint,
            "outside_time_window" => Self::OutsideTimeWindow,
            "source_not_allowed" => Self::SourceNotAllowed,
            "revoked" => Self::Revoked,
            "evaluation_error" => Self::EvaluationError,
            _ => return None,
        })
    }

    /// Returns a sentence a client may be shown about a denied item, such as the
    /// `tool` or `prompt` called `name`; it never quotes policy text or ids.
    pub fn client_message(self, kind: &str, name: &str) -> String {
        let why = match self {
            Self::NoPermit | Self::Forbidden => "is not permitted for you",
            Self::InsufficientScope => "needs a scope your token does not carry",
            Self::ArgumentConstraint => "was called with an argument value that is not allowed",
            Self::OutsideTimeWindow => "is not available at this time",
            Self::SourceNotAllowed => "is not available from your network",
            Self::Revoked => "is not available: your access has been revoked",
            Self::EvaluationError => "could not be authorized",
        };
        format!("{kind} {name} {why}")
    }
}
