//! What authz-svc tells the audit trail: tokens issued and revoked, by identifiers only.
//!
//! authz-svc does not keep its own spool: it hands events to an [`AuditSink`], which under
//! `gatehouse up` is edge's durable spool, so token events and call events reach audit-svc by
//! the same never-lost path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::audit::v1::{AuditEvent, Emitter, EventKind, Outcome, TokenDetails, audit_event};
use proto::common::v1::{Agent, AuthenticationMethod, Member, Principal};

use crate::token::AccessClaims;

/// Receives authz-svc's audit events.
pub trait AuditSink: Send + Sync + std::fmt::Debug + 'static {
    /// Keeps `event` durably, or says why it cannot (the token is then not issued).
    fn record(&self, event: AuditEvent) -> Result<(), String>;
}

/// Learns of every revocation at once, so that resource servers refuse revoked tokens before
/// they expire (edge verifies tokens locally and would otherwise accept them until `exp`).
pub trait RevocationListener: Send + Sync + std::fmt::Debug + 'static {
    /// The access token `jti`, valid until `expires_at` (unix seconds), is revoked.
    fn token_revoked(&self, jti: &str, expires_at: i64);
    /// Every token of the grant (refresh family) `grant_id` is revoked.
    fn grant_revoked(&self, grant_id: &str);
}

/// Returns the event of an access token just minted under `grant_type`.
pub(crate) fn token_issued(claims: &AccessClaims, grant_type: &str) -> AuditEvent {
    let mut event = base(EventKind::TokenIssued, &claims.sub, &claims.client_id);
    event.details = Some(audit_event::Details::Token(TokenDetails {
        jti: claims.jti.clone(),
        grant_id: claims.sid.clone().unwrap_or_default(),
        grant_type: grant_type.to_owned(),
        audiences: vec![claims.aud.clone()],
        scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
        expires_at: Some(timestamp(claims.exp)),
    }));
    event
}

/// Returns the event of a revoked access token (`jti`) or grant (`grant_id`).
pub(crate) fn token_revoked(
    subject: &str,
    client_id: &str,
    jti: Option<&str>,
    grant_id: Option<&str>,
) -> AuditEvent {
    let mut event = base(EventKind::TokenRevoked, subject, client_id);
    event.details = Some(audit_event::Details::Token(TokenDetails {
        jti: jti.unwrap_or_default().to_owned(),
        grant_id: grant_id.unwrap_or_default().to_owned(),
        ..TokenDetails::default()
    }));
    event
}

fn base(kind: EventKind, subject: &str, client_id: &str) -> AuditEvent {
    let event_id = uuid::Uuid::now_v7().to_string();
    let agent = subject == client_id;
    AuditEvent {
        call_id: event_id.clone(),
        event_id,
        kind: kind.into(),
        time: Some(prost_types::Timestamp::from(SystemTime::now())),
        emitter: Some(Emitter {
            service: "authz-svc".to_owned(),
            instance_id: std::process::id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
        principal: Some(Principal {
            member: (!agent).then(|| Member {
                id: subject.to_owned(),
                subject: subject.to_owned(),
                ..Member::default()
            }),
            agent: agent.then(|| Agent {
                client_id: client_id.to_owned(),
                ..Agent::default()
            }),
            client_id: client_id.to_owned(),
            authentication_method: if agent {
                AuthenticationMethod::ClientSecret
            } else {
                AuthenticationMethod::AuthorizationCode
            }
            .into(),
            ..Principal::default()
        }),
        outcome: Outcome::Success.into(),
        ..AuditEvent::default()
    }
}

fn timestamp(unix_seconds: i64) -> prost_types::Timestamp {
    let seconds = u64::try_from(unix_seconds).unwrap_or(0);
    prost_types::Timestamp::from(UNIX_EPOCH + Duration::from_secs(seconds))
}
