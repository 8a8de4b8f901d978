//! The admin API of `gatehouse up`: one set of operations over the running gateway (policies,
//! virtual servers, connectors, shared credentials, agent bundles, connector health, and the
//! audit log's search, verification, inclusion proofs and tail), served as gRPC ([`grpc`]) and
//! as HTTP/JSON with a generated OpenAPI document ([`http`]). Each operation is audited through
//! the recorder every service of the process writes to, naming the administrator and the
//! object, never a secret.

use std::sync::Arc;
use std::time::SystemTime;

use audit_svc::AuditLog;
use authz_svc::AgentRegistry;
use edge_svc::audit::Recorder;
use proto::audit::v1::{AdminDetails, AuditEvent, Emitter, ErrorDetail, EventKind, Outcome};
use proto::common::v1::Principal;

mod agents;
mod audit;
mod credentials;
mod declared;
mod error;
pub(crate) mod grpc;
mod guard;
pub(crate) mod http;
mod members;
pub(crate) mod model;
pub(crate) mod policies;
mod servers;

pub(crate) use agents::Steward;
pub(crate) use declared::{Declarations, Declared};
pub(crate) use error::AdminError;
pub(crate) use guard::{ADMIN_RESOURCE_NAME, ADMIN_SCOPE, AdminCaller, DEFAULT_ADMIN_GROUP, Guard};

/// Returns the admin API's resource URL, `{public origin}/admin/v1`: the token audience.
pub(crate) fn resource_url(face: &edge_svc::config::HttpFace) -> String {
    format!(
        "{}/admin/v1",
        face.public_url.as_str().trim_end_matches('/')
    )
}

/// Returns the admin API as a protected resource of Gatehouse's authorization server.
pub(crate) fn protected_resource(
    face: &edge_svc::config::HttpFace,
) -> authz_svc::ProtectedResource {
    authz_svc::ProtectedResource {
        name: ADMIN_RESOURCE_NAME.to_owned(),
        url: resource_url(face),
        scopes: vec![ADMIN_SCOPE.to_owned()],
    }
}

/// The running gateway's administrable parts; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Admin {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    guard: Guard,
    issuer: String,
    policies: authz_svc::PolicyStore,
    routing: servers::Routing,
    agents: AgentRegistry,
    authz: authz_svc::AuthzState,
    vault: vault_svc::Vault,
    audit_log: AuditLog,
    recorder: Recorder,
    shutdown: tokio_util::sync::CancellationToken,
}

/// What `gatehouse up` hands the admin API.
#[derive(Debug)]
pub(crate) struct AdminParts {
    pub(crate) guard: Guard,
    /// The authorization server's issuer, advertised in the admin resource's metadata.
    pub(crate) issuer: String,
    pub(crate) policies: authz_svc::PolicyStore,
    /// The connectors and virtual servers in force (the file, then the API's changes).
    pub(crate) declarations: Declarations,
    /// The running gateway whose routing table the API changes.
    pub(crate) gateway: edge_svc::Gateway,
    /// The public face: resource URLs of the virtual servers.
    pub(crate) face: edge_svc::config::HttpFace,
    /// The data directory, where applied changes are kept across restarts.
    pub(crate) data: std::path::PathBuf,
    /// The authorization server: its member directory and its protected resources.
    pub(crate) authz: authz_svc::AuthzState,
    pub(crate) vault: vault_svc::Vault,
    pub(crate) audit_log: AuditLog,
    pub(crate) recorder: Recorder,
    /// Cancelled when the gateway stops: ends the audit tails still being followed.
    pub(crate) shutdown: tokio_util::sync::CancellationToken,
}

/// What one audited admin action touched.
struct Action<'a> {
    kind: EventKind,
    verb: &'a str,
    object_type: &'a str,
    object_id: &'a str,
    changed_fields: &'a [&'a str],
    reason: &'a str,
}

impl Admin {
    /// Returns the admin API over the parts of a started gateway.
    pub(crate) fn new(parts: AdminParts) -> Result<Self, String> {
        let agents = parts.guard.agents.clone();
        let routing =
            servers::Routing::new(parts.declarations, parts.gateway, parts.face, parts.data)?;
        Ok(Self {
            inner: Arc::new(Inner {
                guard: parts.guard,
                issuer: parts.issuer,
                policies: parts.policies,
                routing,
                agents,
                authz: parts.authz,
                vault: parts.vault,
                audit_log: parts.audit_log,
                recorder: parts.recorder,
                shutdown: parts.shutdown,
            }),
        })
    }

    /// Returns the administrator `bearer` proves. Every refusal is audited: a valid token
    /// without the grant under its holder, a missing or invalid one with no principal (the
    /// security team sees attempts on the admin API, never the token presented).
    pub(crate) async fn admit(&self, bearer: Option<&str>) -> Result<AdminCaller, AdminError> {
        self.inner
            .guard
            .admit(bearer)
            .await
            .map_err(|refusal| self.refused_access(refusal.caller.as_ref(), refusal.error))
    }

    /// Returns who may manage agent bundles with `bearer`: an administrator, or a member (with
    /// the admin scope, outside the admin group) for the bundles they own. Refusals are
    /// audited as in [`Self::admit`].
    pub(crate) async fn steward(&self, bearer: Option<&str>) -> Result<Steward, AdminError> {
        match self.inner.guard.admit(bearer).await {
            Ok(caller) => Ok(Steward::Administrator(caller)),
            Err(refusal) => match refusal.caller {
                Some(AdminCaller::Member { id, client_id }) if refusal.owner_eligible => {
                    Ok(Steward::Owner(AdminCaller::Member { id, client_id }))
                }
                caller => Err(self.refused_access(caller.as_ref(), refusal.error)),
            },
        }
    }

    /// Records a refused access to the API (under its holder when the token was valid) and
    /// returns the refusal.
    fn refused_access(&self, caller: Option<&AdminCaller>, error: AdminError) -> AdminError {
        let action = Action::read(EventKind::AdminChange, "access", "admin_api", "");
        let principal = caller.map(AdminCaller::principal).unwrap_or_default();
        self.write(admin_event(principal, &action, Some(&error)));
        error
    }

    /// Records a request refused before its operation ran (a body or query the API cannot
    /// read) as a denied admin action on `target` (method and path), and returns the refusal.
    pub(crate) fn refuse(
        &self,
        caller: &AdminCaller,
        target: &str,
        error: AdminError,
    ) -> AdminError {
        let action = Action::read(EventKind::AdminChange, "request", "admin_api", target);
        self.record(caller, &action, Some(&error));
        error
    }

    /// Returns the guard, for the console: it tells administrators from other members on
    /// every page view without auditing each member's view as a refused admin access.
    pub(crate) fn guard(&self) -> &Guard {
        &self.inner.guard
    }

    /// Returns the admin resource's URL (the token audience).
    pub(crate) fn resource(&self) -> &str {
        &self.inner.guard.resource
    }

    /// Returns the data directory applied changes are kept in.
    fn data(&self) -> &std::path::Path {
        self.inner.routing.data()
    }

    /// Returns the authorization server's issuer.
    pub(crate) fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Records `action` with its outcome and passes the outcome on.
    fn audited<T>(
        &self,
        caller: &AdminCaller,
        action: &Action<'_>,
        outcome: Result<T, AdminError>,
    ) -> Result<T, AdminError> {
        self.record(caller, action, outcome.as_ref().err());
        outcome
    }

    /// Writes one admin event to the process's audit spool (identifiers only).
    fn record(&self, caller: &AdminCaller, action: &Action<'_>, error: Option<&AdminError>) {
        self.write(admin_event(caller.principal(), action, error));
    }

    /// Hands one admin event to the process's audit spool.
    fn write(&self, event: AuditEvent) {
        if let Err(error) = self.inner.recorder.record_event(event) {
            tracing::error!(%error, "an admin event could not be kept in the audit spool");
        }
    }
}

impl<'a> Action<'a> {
    /// Returns an action with no changed fields and no reason.
    fn read(kind: EventKind, verb: &'a str, object_type: &'a str, object_id: &'a str) -> Self {
        Self {
            kind,
            verb,
            object_type,
            object_id,
            changed_fields: &[],
            reason: "",
        }
    }

    /// Returns the action naming the fields it changed.
    fn changing(self, changed_fields: &'a [&'a str]) -> Self {
        Self {
            changed_fields,
            ..self
        }
    }
}

impl AdminCaller {
    /// Names the administrator for descriptions.
    fn name(&self) -> &str {
        match self {
            Self::Member { id, .. } => id,
            Self::Agent { client_id } => client_id,
        }
    }
}

/// Builds the audit event of one admin action; the outcome class comes from the error's code.
fn admin_event(
    principal: Principal,
    action: &Action<'_>,
    error: Option<&AdminError>,
) -> AuditEvent {
    let outcome = match error.map(svc_kit::ServiceError::code) {
        None => Outcome::Success,
        Some(svc_kit::ErrorCode::Unauthenticated) => Outcome::Unauthenticated,
        Some(svc_kit::ErrorCode::Internal | svc_kit::ErrorCode::Unavailable) => {
            Outcome::InternalError
        }
        // Refused and nothing changed: the error detail says why (scope, invalid input, unknown object).
        Some(_) => Outcome::Denied,
    };
    let event_id = uuid::Uuid::now_v7().to_string();
    AuditEvent {
        call_id: event_id.clone(),
        event_id,
        kind: action.kind.into(),
        time: Some(prost_types::Timestamp::from(SystemTime::now())),
        emitter: Some(Emitter {
            service: "gatehouse-admin".to_owned(),
            instance_id: std::process::id().to_string(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }),
        principal: Some(principal),
        outcome: outcome.into(),
        error: error.map(|error| ErrorDetail {
            message: error.body().message,
            ..ErrorDetail::default()
        }),
        details: Some(proto::audit::v1::audit_event::Details::Admin(
            AdminDetails {
                action: action.verb.to_owned(),
                object_type: action.object_type.to_owned(),
                object_id: action.object_id.to_owned(),
                changed_fields: action
                    .changed_fields
                    .iter()
                    .map(|field| (*field).to_owned())
                    .collect(),
                reason: action.reason.to_owned(),
            },
        )),
        ..AuditEvent::default()
    }
}
