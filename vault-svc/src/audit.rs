//! Credential events as audit events, and their delivery to audit-svc when vault-svc runs on
//! its own.
//!
//! [`audit_event`] maps a [`CredentialEvent`] (identifiers only) onto the audit schema; the
//! product binary hands the result to edge's durable spool. A standalone vault-svc configured
//! with `audit.endpoint` uses an [`AuditForwarder`] instead: events queue in memory (bounded)
//! and one task streams them to audit-svc's Append RPC, presenting vault's service token
//! (audit-svc's `callers.vault_token`), in order, resending a batch until audit-svc
//! acknowledges it (audit-svc answers a resent event as a duplicate).

use std::time::{Duration, SystemTime};

use proto::audit::v1::audit_client::AuditClient;
use proto::audit::v1::{
    AppendRequest, AppendStatus, AuditEvent, CredentialDetails, Emitter, ErrorDetail, EventKind,
    Outcome, audit_event,
};
use proto::common::v1::RequestMetadata;
use svc_kit::ConfigError;
use svc_kit::callers::PresentToken;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::config::AuditConfig;
use crate::error::Error;
use crate::event::{CredentialAction, CredentialEvent, EventSink, LogSink};

/// Is the most events sent to audit-svc in one append.
const BATCH: usize = 500;
/// Is the longest pause between delivery attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bounds the last delivery attempt at shutdown.
const FINAL_ATTEMPT: Duration = Duration::from_secs(2);

type Client = AuditClient<InterceptedService<Channel, PresentToken>>;

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

/// Sends credential events to audit-svc from a standalone vault-svc; a credential read never
/// waits for audit-svc.
#[derive(Debug, Clone)]
pub struct AuditForwarder {
    queue: mpsc::Sender<AuditEvent>,
}

impl AuditForwarder {
    /// Starts delivery to `config.endpoint` until `shutdown` (then one last bounded attempt).
    pub fn start(config: &AuditConfig, shutdown: &CancellationToken) -> Result<Self, Error> {
        let endpoint = config.endpoint.clone().unwrap_or_default();
        let channel = tonic::transport::Endpoint::from_shared(endpoint)
            .map_err(|_| ConfigError::new("audit.endpoint", "must be an absolute URL"))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .connect_lazy();
        let token = PresentToken::new(config.token.as_ref())
            .map_err(|_| ConfigError::new("audit.token", "is not a usable service token"))?;
        let client = AuditClient::with_interceptor(channel, token);
        let (queue, events) = mpsc::channel(config.queue_capacity.max(1));
        tokio::spawn(deliver(client, events, shutdown.clone()));
        Ok(Self { queue })
    }
}

impl EventSink for AuditForwarder {
    fn record(&self, event: CredentialEvent) {
        let action = event.action;
        if self.queue.try_send(audit_event(event.clone())).is_err() {
            // Still on record in the log, with identifiers only.
            LogSink.record(event);
            tracing::error!(
                ?action,
                "credential event not queued for audit-svc: the queue is full or closed"
            );
        }
    }
}

/// Delivers queued events in order, batch by batch, until `shutdown`.
async fn deliver(
    mut client: Client,
    mut events: mpsc::Receiver<AuditEvent>,
    shutdown: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut backoff = Duration::from_millis(100);
    loop {
        if batch.is_empty() {
            tokio::select! {
                received = events.recv_many(&mut batch, BATCH) => if received == 0 { return },
                () = shutdown.cancelled() => break,
            }
        }
        match append(&mut client, &batch).await {
            Ok(()) => {
                batch.clear();
                backoff = Duration::from_millis(100);
            }
            Err(status) => {
                tracing::warn!(
                    error = %status.message(),
                    code = ?status.code(),
                    queued = batch.len() + events.len(),
                    retry_in = ?backoff,
                    "credential events wait for audit-svc"
                );
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    while let Ok(event) = events.try_recv() {
        batch.push(event);
    }
    if !batch.is_empty() {
        let last = tokio::time::timeout(FINAL_ATTEMPT, append(&mut client, &batch)).await;
        if !matches!(last, Ok(Ok(()))) {
            tracing::error!(
                lost = batch.len(),
                "credential events not delivered to audit-svc before shutdown"
            );
        }
    }
}

/// Appends `batch` in one request and waits for every acknowledgement.
async fn append(client: &mut Client, batch: &[AuditEvent]) -> Result<(), tonic::Status> {
    let request = AppendRequest {
        events: batch.to_vec(),
    };
    let mut acks = client
        .append(tokio_stream::once(request))
        .await?
        .into_inner();
    let mut acknowledged = 0;
    while acknowledged < batch.len() {
        let Some(response) = acks.message().await? else {
            return Err(tonic::Status::unavailable(
                "audit-svc closed the stream early",
            ));
        };
        for ack in &response.acks {
            if ack.status() == AppendStatus::Rejected {
                tracing::error!(
                    event_id = %ack.event_id,
                    reason = %ack.rejection_reason,
                    "audit-svc rejected a credential event for good"
                );
            }
        }
        acknowledged += response.acks.len();
    }
    Ok(())
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
