//! The one audit path of `gatehouse up`: authz-svc's token events and vault-svc's credential
//! events are written to edge's durable spool, beside the call events, and reach audit-svc in
//! order by the same never-lost delivery.

use std::time::SystemTime;

use edge_svc::audit::Recorder;
use proto::audit::v1::{
    AuditEvent, CredentialDetails, Emitter, ErrorDetail, EventKind, Outcome, audit_event,
};
use proto::common::v1::RequestMetadata;
use vault_svc::event::{CredentialAction, CredentialEvent, EventSink};

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
        if let Err(error) = self.0.record_event(credential_event(event)) {
            tracing::error!(%error, ?action, "a credential event could not be kept in the audit spool");
        }
    }
}

/// Maps a credential event onto the audit schema: kind by action, outcome by its result.
fn credential_event(event: CredentialEvent) -> AuditEvent {
    let kind = match event.action {
        CredentialAction::Read
        | CredentialAction::ReadRefused
        | CredentialAction::ConsentIssued => EventKind::CredentialRead,
        CredentialAction::Write | CredentialAction::ConsentCompleted => {
            EventKind::CredentialWritten
        }
        CredentialAction::Refresh | CredentialAction::RefreshFailed => {
            EventKind::CredentialRefreshed
        }
        CredentialAction::Rewrap | CredentialAction::KekRotated => EventKind::CredentialRotated,
        CredentialAction::Delete | CredentialAction::Revoke => EventKind::CredentialRevoked,
    };
    let outcome = match (event.action, event.outcome) {
        (CredentialAction::ConsentIssued, _) => Outcome::ConsentRequired,
        (CredentialAction::ReadRefused, _) => Outcome::Denied,
        (CredentialAction::RefreshFailed, _) => Outcome::UpstreamError,
        (_, "ok") => Outcome::Success,
        _ => Outcome::InternalError,
    };
    let event_id = uuid::Uuid::now_v7().to_string();
    AuditEvent {
        call_id: event_id.clone(),
        event_id,
        kind: kind.into(),
        time: Some(prost_types::Timestamp::from(SystemTime::now())),
        emitter: Some(Emitter {
            service: "vault-svc".to_owned(),
            instance_id: std::process::id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
        metadata: Some(RequestMetadata {
            trace_id: event.trace_id,
            ..RequestMetadata::default()
        }),
        outcome: outcome.into(),
        error: (outcome != Outcome::Success).then(|| ErrorDetail {
            message: event.outcome.to_owned(),
            ..ErrorDetail::default()
        }),
        details: Some(audit_event::Details::Credential(CredentialDetails {
            credential_id: event.credential_id.unwrap_or_default(),
            connector: event.connector.unwrap_or_default(),
            // The audit schema leaves the owner empty for a shared credential.
            owner_id: event
                .owner
                .map(|owner| owner.to_string())
                .filter(|owner| owner != "shared")
                .unwrap_or_default(),
            version: event.version.unwrap_or(0),
        })),
        ..AuditEvent::default()
    }
}

#[cfg(test)]
mod tests {
    use proto::audit::v1::{EventKind, Outcome, audit_event};
    use vault_svc::event::{CredentialAction, CredentialEvent};

    use super::credential_event;

    fn event(action: CredentialAction, outcome: &'static str) -> CredentialEvent {
        CredentialEvent {
            credential_id: Some("cred-1".to_owned()),
            connector: Some("crm".to_owned()),
            version: Some(3),
            owner: Some(vault_svc::secret::Owner::Shared),
            ..CredentialEvent::new(action, "default", outcome)
        }
    }

    #[test]
    fn credential_events_keep_their_identifiers_and_map_kind_and_outcome() {
        let cases = [
            (
                CredentialAction::Read,
                "ok",
                EventKind::CredentialRead,
                Outcome::Success,
            ),
            (
                CredentialAction::ReadRefused,
                "revoked",
                EventKind::CredentialRead,
                Outcome::Denied,
            ),
            (
                CredentialAction::ConsentIssued,
                "ok",
                EventKind::CredentialRead,
                Outcome::ConsentRequired,
            ),
            (
                CredentialAction::Write,
                "ok",
                EventKind::CredentialWritten,
                Outcome::Success,
            ),
            (
                CredentialAction::RefreshFailed,
                "invalid_grant",
                EventKind::CredentialRefreshed,
                Outcome::UpstreamError,
            ),
            (
                CredentialAction::KekRotated,
                "ok",
                EventKind::CredentialRotated,
                Outcome::Success,
            ),
            (
                CredentialAction::Revoke,
                "ok",
                EventKind::CredentialRevoked,
                Outcome::Success,
            ),
        ];
        for (action, result, kind, outcome) in cases {
            let audited = credential_event(event(action, result));
            assert_eq!(audited.kind(), kind, "{action:?}");
            assert_eq!(audited.outcome(), outcome, "{action:?}");
            assert_eq!(
                audited.emitter.as_ref().map(|e| e.service.as_str()),
                Some("vault-svc")
            );
            let Some(audit_event::Details::Credential(details)) = audited.details else {
                panic!("{action:?} has no credential details");
            };
            assert_eq!(details.credential_id, "cred-1");
            assert_eq!(details.connector, "crm");
            assert_eq!(details.version, 3);
            assert_eq!(details.owner_id, "", "shared credentials name no owner");
        }
        let member = CredentialEvent {
            owner: Some(vault_svc::secret::Owner::Member("alice".to_owned())),
            ..event(CredentialAction::Read, "ok")
        };
        let Some(audit_event::Details::Credential(details)) = credential_event(member).details
        else {
            panic!("no credential details");
        };
        assert_eq!(details.owner_id, "member:alice");
    }
}
