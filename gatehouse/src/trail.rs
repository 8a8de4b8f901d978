//! The one audit path of `gatehouse up`: authz-svc's token events and vault-svc's credential
//! events are written to edge's durable spool, beside the call events, and reach audit-svc in
//! order by the same never-lost delivery.

use edge_svc::audit::Recorder;
use proto::audit::v1::AuditEvent;
use vault_svc::event::{CredentialEvent, EventSink};

/// Hands authz-svc's token events to edge's spool.
#[derive(Debug)]
pub(crate) struct SpooledAudit(pub(crate) Recorder);

impl authz_svc::AuditSink for SpooledAudit {
    fn record(&self, event: AuditEvent) -> Result<(), String> {
        self.0
            .record_event(event)
            .map_err(|error| error.to_string())
    }
}

/// Hands vault-svc's credential events (identifiers only) to edge's spool.
#[derive(Debug)]
pub(crate) struct CredentialAudit(pub(crate) Recorder);

impl EventSink for CredentialAudit {
    fn record(&self, event: CredentialEvent) {
        let action = event.action;
        if let Err(error) = self.0.record_event(vault_svc::audit::audit_event(event)) {
            tracing::error!(%error, ?action, "a credential event could not be kept in the audit spool");
        }
    }
}
