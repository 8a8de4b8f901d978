//! What authz-svc tells the audit trail: tokens issued, exchanged and revoked, and agent
//! bundle changes, by identifiers only.
//!
//! authz-svc does not keep its own spool: it hands events to an [`AuditSink`], which under
//! `gatehouse up` is edge's durable spool, so token events and call events reach audit-svc by
//! the same never-lost path.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::audit::v1::{
    AdminDetails, AuditEvent, Emitter, EventKind, Outcome, TokenDetails, audit_event,
};
use proto::common::v1::{Agent, AuthenticationMethod, Member, Principal};

use crate::store::AgentRecord;
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
    /// Every token issued to the agent `client_id` (decommissioned) is revoked; none of
    /// them outlives `expires_at` (unix seconds).
    fn agent_revoked(&self, client_id: &str, expires_at: i64);
    /// Every token of the member `member_id` (deactivated or deleted) issued at or before
    /// `revoked_at` is revoked; none of them outlives `expires_at` (unix seconds).
    fn member_revoked(&self, member_id: &str, revoked_at: i64, expires_at: i64);
}

/// Purges an offboarded member's per-user credentials (vault-svc's `RevokePrincipal`).
#[async_trait::async_trait]
pub trait CredentialPurge: Send + Sync + std::fmt::Debug + 'static {
    /// Deletes every credential of the member `member_id`, or says why it could not.
    async fn purge_member(&self, member_id: &str) -> Result<(), String>;
}

/// Returns the principal of a member's token obtained by `client_id`.
pub(crate) fn member(subject: &str, client_id: &str) -> Principal {
    Principal {
        member: Some(Member {
            id: subject.to_owned(),
            subject: subject.to_owned(),
            ..Member::default()
        }),
        client_id: client_id.to_owned(),
        authentication_method: AuthenticationMethod::AuthorizationCode.into(),
        ..Principal::default()
    }
}

/// Returns the principal of an agent bundle that authenticated with `method`.
pub(crate) fn agent(agent: &AgentRecord, method: AuthenticationMethod) -> Principal {
    Principal {
        agent: Some(Agent {
            client_id: agent.client_id.clone(),
            bundle_id: agent.agent_id.clone(),
            bundle_name: agent.name.clone(),
            owner_member_id: agent.owner.clone(),
            ..Agent::default()
        }),
        client_id: agent.client_id.clone(),
        authentication_method: method.into(),
        ..Principal::default()
    }
}

/// Returns the principal of a registered client acting as itself (client credentials).
pub(crate) fn client(client_id: &str) -> Principal {
    Principal {
        agent: Some(Agent {
            client_id: client_id.to_owned(),
            ..Agent::default()
        }),
        client_id: client_id.to_owned(),
        authentication_method: AuthenticationMethod::ClientSecret.into(),
        ..Principal::default()
    }
}

/// Returns the event of an access token just minted under `grant_type` for `principal`.
pub(crate) fn token_issued(
    claims: &AccessClaims,
    grant_type: &str,
    principal: Principal,
) -> AuditEvent {
    let kind = if grant_type == crate::client::TOKEN_EXCHANGE {
        EventKind::TokenExchanged
    } else {
        EventKind::TokenIssued
    };
    let mut event = base(kind, principal);
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
    let principal = if subject == client_id {
        client(client_id)
    } else {
        member(subject, client_id)
    };
    let mut event = base(EventKind::TokenRevoked, principal);
    event.details = Some(audit_event::Details::Token(TokenDetails {
        jti: jti.unwrap_or_default().to_owned(),
        grant_id: grant_id.unwrap_or_default().to_owned(),
        ..TokenDetails::default()
    }));
    event
}

/// Returns the event of a change (`create`, `rotate`, `decommission`) to an agent bundle.
pub(crate) fn agent_changed(bundle: &AgentRecord, action: &str, reason: &str) -> AuditEvent {
    let mut event = base(
        EventKind::AgentChanged,
        agent(bundle, AuthenticationMethod::Unspecified),
    );
    event.details = Some(audit_event::Details::Admin(AdminDetails {
        action: action.to_owned(),
        object_type: "agent_bundle".to_owned(),
        object_id: bundle.agent_id.clone(),
        changed_fields: Vec::new(),
        reason: reason.to_owned(),
    }));
    event
}

/// Returns the event of a SCIM change (`create`, `update`, `deactivate`, `delete`) to a
/// provisioned member or group, made by the identity provider (the SCIM client).
pub(crate) fn directory_changed(object_type: &str, object_id: &str, action: &str) -> AuditEvent {
    let mut event = base(EventKind::AdminChange, client(SCIM_CLIENT));
    event.details = Some(audit_event::Details::Admin(AdminDetails {
        action: action.to_owned(),
        object_type: object_type.to_owned(),
        object_id: object_id.to_owned(),
        changed_fields: Vec::new(),
        reason: "scim provisioning".to_owned(),
    }));
    event
}

/// Names the identity provider's SCIM client in audit records (it holds no OAuth client id).
const SCIM_CLIENT: &str = "scim";

fn base(kind: EventKind, principal: Principal) -> AuditEvent {
    let event_id = uuid::Uuid::now_v7().to_string();
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
        principal: Some(principal),
        outcome: Outcome::Success.into(),
        ..AuditEvent::default()
    }
}

fn timestamp(unix_seconds: i64) -> prost_types::Timestamp {
    let seconds = u64::try_from(unix_seconds).unwrap_or(0);
    prost_types::Timestamp::from(UNIX_EPOCH + Duration::from_secs(seconds))
}
