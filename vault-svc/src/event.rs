//! Credential events: every read, write, refresh, rotation and revocation is
//! emitted as a [`CredentialEvent`] carrying identifiers only, never material,
//! on an [`EventSink`] the embedding process chooses (audit-svc, a channel).

use tokio::sync::mpsc;

use crate::secret::Owner;

/// Says what happened to a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialAction {
    /// Material was released to edge-svc.
    Read,
    /// A read was refused (revoked principal, missing credential, consent needed).
    ReadRefused,
    /// A credential was stored or replaced.
    Write,
    /// A credential was deleted.
    Delete,
    /// An OAuth credential was refreshed.
    Refresh,
    /// A refresh failed.
    RefreshFailed,
    /// A credential's data key was re-wrapped under a new KEK version.
    Rewrap,
    /// The key-encryption key was rotated.
    KekRotated,
    /// A principal was revoked and its credentials purged.
    Revoke,
    /// A per-member consent link was issued.
    ConsentIssued,
    /// A per-member consent completed and its tokens were stored.
    ConsentCompleted,
    /// A shared secret was rotated: the hook's new value is the current version.
    Rotated,
    /// A rotation step failed (retried with backoff, or `needs_attention`).
    RotationFailed,
    /// A rotated-out shared secret was retired after its overlap.
    Retired,
}

/// Is one auditable credential event: identifiers only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialEvent {
    /// Says what happened.
    pub action: CredentialAction,
    /// Holds the tenant.
    pub tenant: String,
    /// Identifies the credential, when one is concerned.
    pub credential_id: Option<String>,
    /// Names the connector, when one is concerned.
    pub connector: Option<String>,
    /// Names the credential's owner or the revoked principal.
    pub owner: Option<Owner>,
    /// Holds the credential version after the event, when known.
    pub version: Option<u64>,
    /// Classifies the outcome, such as `ok`, `revoked` or `invalid_grant`.
    pub outcome: &'static str,
    /// Holds the W3C trace id of the request that caused it, if any.
    pub trace_id: String,
}

/// Receives credential events; implementations must not block the caller.
pub trait EventSink: Send + Sync + std::fmt::Debug {
    /// Records `event`.
    fn record(&self, event: CredentialEvent);
}

/// Logs events at info level, with identifiers only: the default sink until an
/// audit sink is wired in.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogSink;

/// Sends events into a channel, dropping them (with a warning) when it is full
/// or closed, so that a slow consumer never slows a credential read.
#[derive(Debug, Clone)]
pub struct ChannelSink(mpsc::Sender<CredentialEvent>);

impl CredentialEvent {
    /// Returns an event of `action` about `tenant`, with no other identifiers.
    pub fn new(action: CredentialAction, tenant: &str, outcome: &'static str) -> Self {
        Self {
            action,
            tenant: tenant.to_owned(),
            credential_id: None,
            connector: None,
            owner: None,
            version: None,
            outcome,
            trace_id: String::new(),
        }
    }
}

impl EventSink for LogSink {
    fn record(&self, event: CredentialEvent) {
        tracing::info!(
            action = ?event.action,
            tenant = %event.tenant,
            credential_id = event.credential_id.as_deref().unwrap_or(""),
            connector = event.connector.as_deref().unwrap_or(""),
            owner = %event.owner.as_ref().map(ToString::to_string).unwrap_or_default(),
            version = event.version.unwrap_or(0),
            outcome = event.outcome,
            trace_id = %event.trace_id,
            "credential event"
        );
    }
}

impl ChannelSink {
    /// Returns a sink and the receiver its events arrive on, holding up to `capacity`.
    pub fn new(capacity: usize) -> (Self, mpsc::Receiver<CredentialEvent>) {
        let (sender, receiver) = mpsc::channel(capacity);
        (Self(sender), receiver)
    }
}

impl EventSink for ChannelSink {
    fn record(&self, event: CredentialEvent) {
        if self.0.try_send(event).is_err() {
            tracing::warn!("credential event dropped: channel full or closed");
        }
    }
}
