//! Credential events as audit events, and their delivery to audit-svc when vault-svc runs on
//! its own.
//!
//! [`audit_event`] maps a [`CredentialEvent`] (identifiers only) onto the audit schema; the
//! product binary hands the result to edge's durable spool. A standalone vault-svc configured
//! with `audit.endpoint` uses an [`AuditForwarder`] instead: events are written to a durable
//! spool on local disk (so a `kill -9` of vault-svc loses none) and delivered from there to
//! audit-svc's Append RPC, presenting vault's service token (audit-svc's
//! `callers.vault_token`), in order, until audit-svc acknowledges them (audit-svc answers a
//! resent event as a duplicate).

use std::time::SystemTime;

use audit_spool::{Delivery, Spool, SpoolLimits};
use proto::audit::v1::{
    AuditEvent, CredentialDetails, Emitter, ErrorDetail, EventKind, Outcome, audit_event,
};
use proto::common::v1::RequestMetadata;
use svc_kit::ConfigError;
use svc_kit::callers::PresentToken;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::event::{CredentialAction, CredentialEvent, EventSink, LogSink};

/// Is the most events sent to audit-svc in one append.
const BATCH: usize = 500;

/// Returns `event` on the audit schema: kind by action, outcome by its result, and the
/// credential's identifiers (never material).
pub fn audit_event(event: CredentialEvent) -> AuditEvent {
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
        CredentialAction::Rewrap
        | CredentialAction::KekRotated
        | CredentialAction::Rotated
        | CredentialAction::RotationFailed
        | CredentialAction::Retired => EventKind::CredentialRotated,
        CredentialAction::Delete | CredentialAction::Revoke => EventKind::CredentialRevoked,
    };
    let outcome = match (event.action, event.outcome) {
        (CredentialAction::ConsentIssued, _) => Outcome::ConsentRequired,
        (CredentialAction::ReadRefused, _) => Outcome::Denied,
        (CredentialAction::RefreshFailed | CredentialAction::RotationFailed, _) => {
            Outcome::UpstreamError
        }
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

/// Sends credential events to audit-svc from a standalone vault-svc, through its spool; a
/// credential read never waits for audit-svc.
#[derive(Debug, Clone)]
pub struct AuditForwarder {
    spool: Spool,
}

impl AuditForwarder {
    /// Opens the spool (delivering what an earlier run left in it) and delivers it to
    /// `config.audit.endpoint` until `shutdown`.
    pub fn start(config: &Config, shutdown: &CancellationToken) -> anyhow::Result<Self> {
        let audit = &config.audit;
        let token = PresentToken::new(audit.token.as_ref())
            .map_err(|_| ConfigError::new("audit.token", "is not a usable service token"))?;
        let delivery = Delivery {
            endpoint: audit.endpoint.clone().unwrap_or_default(),
            token,
            batch_size: BATCH,
        };
        let dir = audit
            .spool_dir
            .clone()
            .unwrap_or_else(|| config.data_dir.join("vault-audit-spool"));
        let limits = SpoolLimits {
            max_bytes: audit.max_spool_bytes,
            ..SpoolLimits::default()
        };
        let spool = audit_spool::start(&dir, limits, delivery, shutdown)?;
        Ok(Self { spool })
    }
}

impl EventSink for AuditForwarder {
    fn record(&self, event: CredentialEvent) {
        let action = event.action;
        if let Err(error) = self.spool.record(&audit_event(event.clone())) {
            // Still on record in the log, with identifiers only.
            LogSink.record(event);
            tracing::error!(
                ?action,
                %error,
                "credential event not spooled for audit-svc"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use proto::audit::v1::{EventKind, Outcome, audit_event as details};

    use super::audit_event;
    use crate::event::{CredentialAction, CredentialEvent};

    fn event(action: CredentialAction, outcome: &'static str) -> CredentialEvent {
        CredentialEvent {
            credential_id: Some("cred-1".to_owned()),
            connector: Some("crm".to_owned()),
            version: Some(3),
            owner: Some(crate::secret::Owner::Shared),
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
            let audited = audit_event(event(action, result));
            assert_eq!(audited.kind(), kind, "{action:?}");
            assert_eq!(audited.outcome(), outcome, "{action:?}");
            assert_eq!(
                audited.emitter.as_ref().map(|e| e.service.as_str()),
                Some("vault-svc")
            );
            let Some(details::Details::Credential(credential)) = audited.details else {
                panic!("{action:?} has no credential details");
            };
            assert_eq!(credential.credential_id, "cred-1");
            assert_eq!(credential.connector, "crm");
            assert_eq!(credential.version, 3);
            assert_eq!(credential.owner_id, "", "shared credentials name no owner");
        }
        let member = CredentialEvent {
            owner: Some(crate::secret::Owner::Member("alice".to_owned())),
            ..event(CredentialAction::Read, "ok")
        };
        let Some(details::Details::Credential(credential)) = audit_event(member).details else {
            panic!("no credential details");
        };
        assert_eq!(credential.owner_id, "member:alice");
    }
}
