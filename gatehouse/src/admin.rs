//! The admin API of `gatehouse up`: one set of operations over the running gateway (policies,
//! virtual servers, connectors, shared credentials, agent bundles, audit search, connector
//! health), served as gRPC ([`grpc`]) and as HTTP/JSON with a generated OpenAPI document
//! ([`http`]). Each operation is audited through the recorder every service of the process
//! writes to, naming the administrator and the object, never a secret.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use audit_svc::{AuditLog, Filter, SearchQuery};
use authz_svc::{AgentAuthentication, AgentKey, AgentRecord, AgentRegistry, NewAgent};
use edge_svc::audit::Recorder;
use policy::{PolicyDocument, PolicyOrigin};
use proto::audit::v1::{AdminDetails, AuditEvent, Emitter, ErrorDetail, EventKind, Outcome};
use secrecy::ExposeSecret as _;
use serde_json::Value;
use vault_svc::credential::Material;
use vault_svc::secret::{Owner, SecretText};

mod declared;
mod error;
pub(crate) mod grpc;
mod guard;
pub(crate) mod http;
pub(crate) mod model;

pub(crate) use declared::Declared;
pub(crate) use error::AdminError;
pub(crate) use guard::{ADMIN_RESOURCE_NAME, ADMIN_SCOPE, AdminCaller, Guard};
use model::{
    AgentFilter, AgentView, AgentWithSecret, AuditPage, AuditQuery, AuditRecordView, ConnectorView,
    CredentialKind, CredentialRef, HealthView, NewAgentInput, OnceSecret, PolicySet, PolicySource,
    PolicyState, SharedCredentialInput, VirtualServerView,
};

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
    declared: Declared,
    agents: AgentRegistry,
    vault: vault_svc::Vault,
    audit_log: AuditLog,
    recorder: Recorder,
}

/// What `gatehouse up` hands the admin API.
#[derive(Debug)]
pub(crate) struct AdminParts {
    pub(crate) guard: Guard,
    /// The authorization server's issuer, advertised in the admin resource's metadata.
    pub(crate) issuer: String,
    pub(crate) policies: authz_svc::PolicyStore,
    pub(crate) declared: Declared,
    pub(crate) vault: vault_svc::Vault,
    pub(crate) audit_log: AuditLog,
    pub(crate) recorder: Recorder,
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
    pub(crate) fn new(parts: AdminParts) -> Self {
        let agents = parts.guard.agents.clone();
        Self {
            inner: Arc::new(Inner {
                guard: parts.guard,
                issuer: parts.issuer,
                policies: parts.policies,
                declared: parts.declared,
                agents,
                vault: parts.vault,
                audit_log: parts.audit_log,
                recorder: parts.recorder,
            }),
        }
    }

    /// Returns the administrator `bearer` proves; a valid token without the grant is audited.
    pub(crate) async fn admit(&self, bearer: Option<&str>) -> Result<AdminCaller, AdminError> {
        self.inner.guard.admit(bearer).await.map_err(|refusal| {
            if let Some(caller) = &refusal.caller {
                let action = Action::read(EventKind::AdminChange, "access", "admin_api", "");
                self.record(caller, &action, Some(&refusal.error));
            }
            refusal.error
        })
    }

    /// Returns the admin resource's URL (the token audience).
    pub(crate) fn resource(&self) -> &str {
        &self.inner.guard.resource
    }

    /// Returns the authorization server's issuer.
    pub(crate) fn issuer(&self) -> &str {
        &self.inner.issuer
    }

    /// Returns the policy set in force.
    pub(crate) fn policies(&self, caller: &AdminCaller) -> PolicyState {
        let action = Action::read(EventKind::PolicyChanged, "read", "policy", "");
        self.record(caller, &action, None);
        PolicyState {
            version: self.inner.policies.current().version(),
            policies: PolicySet::from(&self.inner.policies.admin()),
        }
    }

    /// Replaces the whole policy set; invalid policies change nothing.
    pub(crate) fn set_policies(
        &self,
        caller: &AdminCaller,
        set: PolicySet,
    ) -> Result<PolicyState, AdminError> {
        let outcome = PolicyDocument::try_from(&set).and_then(|document| {
            let version = self.inner.policies.replace(document)?;
            Ok(version)
        });
        let action = Action {
            changed_fields: &["sources", "virtual_servers"],
            ..Action::read(EventKind::PolicyChanged, "update", "policy", "")
        };
        self.audited(caller, &action, outcome)
            .map(|version| PolicyState {
                version,
                policies: PolicySet::from(&self.inner.policies.admin()),
            })
    }

    /// Returns the virtual servers in force.
    pub(crate) fn virtual_servers(&self, caller: &AdminCaller) -> Vec<VirtualServerView> {
        let action = Action::read(EventKind::AdminChange, "list", "virtual_server", "");
        self.record(caller, &action, None);
        self.inner.declared.virtual_servers.clone()
    }

    /// Returns one virtual server.
    pub(crate) fn virtual_server(
        &self,
        caller: &AdminCaller,
        name: &str,
    ) -> Result<VirtualServerView, AdminError> {
        let found = self
            .inner
            .declared
            .virtual_servers
            .iter()
            .find(|server| server.name == name)
            .cloned()
            .ok_or_else(|| AdminError::VirtualServerNotFound(name.to_owned()));
        let action = Action::read(EventKind::AdminChange, "read", "virtual_server", name);
        self.audited(caller, &action, found)
    }

    /// Returns the connectors in force.
    pub(crate) fn connectors(&self, caller: &AdminCaller) -> Vec<ConnectorView> {
        let action = Action::read(EventKind::AdminChange, "list", "connector", "");
        self.record(caller, &action, None);
        self.inner.declared.connectors.clone()
    }

    /// Returns one connector.
    pub(crate) fn connector(
        &self,
        caller: &AdminCaller,
        name: &str,
    ) -> Result<ConnectorView, AdminError> {
        let found = self
            .inner
            .declared
            .connectors
            .iter()
            .find(|connector| connector.name == name)
            .cloned()
            .ok_or_else(|| AdminError::ConnectorNotFound(name.to_owned()));
        let action = Action::read(EventKind::AdminChange, "read", "connector", name);
        self.audited(caller, &action, found)
    }

    /// Stores or replaces `connector`'s shared credential (write-only).
    pub(crate) async fn set_shared_credential(
        &self,
        caller: &AdminCaller,
        connector: &str,
        input: SharedCredentialInput,
    ) -> Result<CredentialRef, AdminError> {
        let outcome = async {
            if input.value.is_empty() {
                return Err(AdminError::InvalidArgument {
                    field: "value",
                    reason: "must not be empty".to_owned(),
                });
            }
            let value = SecretText::from(input.value);
            let material = match input.kind {
                CredentialKind::Bearer => Material::Bearer { token: value },
                CredentialKind::ApiKey => Material::ApiKey {
                    header_name: input.header.unwrap_or_else(|| "X-Api-Key".to_owned()),
                    key: value,
                },
            };
            let description = format!("set through the admin API by {}", caller.name());
            let record = self
                .inner
                .vault
                .set_shared(connector, &material, None, description)
                .await
                .map_err(AdminError::Vault)?;
            Ok(CredentialRef {
                connector: connector.to_owned(),
                credential_id: record.id,
                version: record.version,
            })
        }
        .await;
        let action = Action {
            changed_fields: &["material"],
            ..Action::read(
                EventKind::AdminChange,
                "update",
                "shared_credential",
                connector,
            )
        };
        self.audited(caller, &action, outcome)
    }

    /// Deletes `connector`'s shared credential.
    pub(crate) async fn delete_shared_credential(
        &self,
        caller: &AdminCaller,
        connector: &str,
    ) -> Result<CredentialRef, AdminError> {
        let outcome = async {
            let query = vault_svc::store::ListQuery {
                connector: Some(connector.to_owned()),
                limit: 1000,
                ..vault_svc::store::ListQuery::default()
            };
            let records = self
                .inner
                .vault
                .list(query)
                .await
                .map_err(AdminError::Vault)?;
            let shared = records
                .into_iter()
                .find(|record| record.key.owner == Owner::Shared)
                .ok_or_else(|| AdminError::NoSharedCredential(connector.to_owned()))?;
            let deleted = self
                .inner
                .vault
                .delete(&shared.id)
                .await
                .map_err(AdminError::Vault)?;
            Ok(CredentialRef {
                connector: connector.to_owned(),
                credential_id: deleted.id,
                version: deleted.version,
            })
        }
        .await;
        let action = Action::read(
            EventKind::AdminChange,
            "delete",
            "shared_credential",
            connector,
        );
        self.audited(caller, &action, outcome)
    }

    /// Lists agent bundles, newest first.
    pub(crate) async fn agents(
        &self,
        caller: &AdminCaller,
        filter: AgentFilter,
    ) -> Result<Vec<AgentView>, AdminError> {
        let query = authz_svc::AgentListQuery {
            owner: filter.owner,
            include_decommissioned: filter.include_decommissioned,
            offset: 0,
            limit: 10_000,
        };
        let outcome = self
            .inner
            .agents
            .list(&query)
            .await
            .map_err(AdminError::from);
        let action = Action::read(EventKind::AdminChange, "list", "agent_bundle", "");
        self.audited(caller, &action, outcome)
            .map(|agents| agents.iter().map(AgentView::from).collect())
    }

    /// Creates an agent bundle authenticating with a client secret, shown this once.
    pub(crate) async fn create_agent(
        &self,
        caller: &AdminCaller,
        input: NewAgentInput,
    ) -> Result<AgentWithSecret, AdminError> {
        let name = input.name.clone();
        let outcome = self
            .inner
            .agents
            .create(NewAgent {
                name: input.name,
                description: input.description,
                owner: input.owner,
                virtual_servers: input.virtual_servers,
                scopes: input.scopes,
                authentication: AgentAuthentication::ClientSecret,
                quotas: Value::Null,
                client_id: None,
            })
            .await
            .map_err(AdminError::from);
        let action = Action {
            changed_fields: &["name", "owner", "virtual_servers", "scopes", "description"],
            ..Action::read(EventKind::AgentChanged, "create", "agent_bundle", &name)
        };
        self.audited(caller, &action, outcome)
            .map(|created| AgentWithSecret {
                agent: AgentView::from(&created.agent),
                client_secret: created
                    .client_secret
                    .map(|secret| OnceSecret(secret.expose_secret().to_owned())),
                previous_secret_expires_at: None,
            })
    }

    /// Returns one bundle by name, bundle id or client id.
    pub(crate) async fn agent(
        &self,
        caller: &AdminCaller,
        key: &str,
    ) -> Result<AgentView, AdminError> {
        let outcome = self.find_agent(key).await;
        let action = Action::read(EventKind::AdminChange, "read", "agent_bundle", key);
        self.audited(caller, &action, outcome)
            .map(|agent| AgentView::from(&agent))
    }

    /// Issues a new client secret; the previous one works until `overlap` ends.
    pub(crate) async fn rotate_agent(
        &self,
        caller: &AdminCaller,
        key: &str,
        overlap: Option<Duration>,
    ) -> Result<AgentWithSecret, AdminError> {
        let outcome = async {
            let agent = self.find_agent(key).await?;
            Ok(self
                .inner
                .agents
                .rotate(AgentKey::Id(&agent.agent_id), overlap)
                .await?)
        }
        .await;
        let action = Action {
            changed_fields: &["client_secret"],
            ..Action::read(EventKind::AgentChanged, "rotate", "agent_bundle", key)
        };
        self.audited(caller, &action, outcome)
            .map(|rotated| AgentWithSecret {
                agent: AgentView::from(&rotated.agent),
                client_secret: Some(OnceSecret(rotated.client_secret.expose_secret().to_owned())),
                previous_secret_expires_at: Some(rotated.previous_expires_at),
            })
    }

    /// Disables a bundle for good; its tokens stop working at edge within a second.
    pub(crate) async fn decommission_agent(
        &self,
        caller: &AdminCaller,
        key: &str,
        reason: &str,
    ) -> Result<AgentView, AdminError> {
        let outcome = async {
            let agent = self.find_agent(key).await?;
            Ok(self
                .inner
                .agents
                .decommission(AgentKey::Id(&agent.agent_id), reason)
                .await?)
        }
        .await;
        let action = Action {
            changed_fields: &["state"],
            reason,
            ..Action::read(EventKind::AgentChanged, "decommission", "agent_bundle", key)
        };
        self.audited(caller, &action, outcome)
            .map(|agent| AgentView::from(&agent))
    }

    /// Searches the audit log, one page at a time.
    pub(crate) async fn search_audit(
        &self,
        caller: &AdminCaller,
        query: AuditQuery,
    ) -> Result<AuditPage, AdminError> {
        let outcome = async {
            let filter = Filter {
                member_ids: query.member.into_iter().collect(),
                agent_client_ids: query.agent.into_iter().collect(),
                virtual_servers: query.virtual_server.into_iter().collect(),
                tools: query.tool.into_iter().collect(),
                ..Filter::default()
            };
            let search = SearchQuery::new(
                filter,
                query.limit.unwrap_or(100),
                query.page_token.as_deref().unwrap_or(""),
                query.newest_first,
            )
            .map_err(AdminError::Audit)?;
            let page = self
                .inner
                .audit_log
                .search(&search)
                .await
                .map_err(AdminError::Audit)?;
            Ok(AuditPage {
                events: page
                    .events
                    .iter()
                    .map(|stored| AuditRecordView {
                        sequence: stored.sequence,
                        event: serde_json::from_slice(&stored.event.canonical_json)
                            .unwrap_or(Value::Null),
                    })
                    .collect(),
                next_page_token: page.next_page_token,
            })
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "search", "audit_log", "");
        self.audited(caller, &action, outcome)
    }

    /// Reports each connector's credential health.
    pub(crate) async fn connector_health(
        &self,
        caller: &AdminCaller,
    ) -> Result<Vec<HealthView>, AdminError> {
        let outcome = self
            .inner
            .vault
            .health(&[])
            .await
            .map_err(AdminError::Vault);
        let action = Action::read(EventKind::AdminChange, "read", "connector_health", "");
        self.audited(caller, &action, outcome).map(|reports| {
            reports
                .into_iter()
                .map(|report| HealthView {
                    connector: report.connector,
                    state: match report.state {
                        vault_svc::HealthState::Healthy => "healthy",
                        vault_svc::HealthState::AuthFailing => "auth_failing",
                        vault_svc::HealthState::RefreshFailing => "refresh_failing",
                    }
                    .to_owned(),
                    shared_credential_failing: report.shared_credential_failing,
                    failing_member_ids: report.failing_member_ids,
                    detail: report.detail,
                })
                .collect()
        })
    }

    /// Returns the bundle `key` names: by name, else by bundle id, else by client id.
    async fn find_agent(&self, key: &str) -> Result<AgentRecord, AdminError> {
        for lookup in [
            AgentKey::Name(key),
            AgentKey::Id(key),
            AgentKey::ClientId(key),
        ] {
            if let Ok(agent) = self.inner.agents.get(lookup).await {
                return Ok(agent);
            }
        }
        Err(AdminError::Authz(authz_svc::Error::AgentNotFound(
            key.to_owned(),
        )))
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
        let event = admin_event(caller, action, error);
        if let Err(error) = self.inner.recorder.record_event(event) {
            tracing::error!(%error, verb = action.verb, object = action.object_type, "an admin event could not be kept in the audit spool");
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
    caller: &AdminCaller,
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
        principal: Some(caller.principal()),
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

impl From<&PolicyDocument> for PolicySet {
    fn from(document: &PolicyDocument) -> Self {
        Self {
            sources: document
                .cedar
                .iter()
                .map(|source| PolicySource {
                    name: source.name.clone(),
                    text: source.text.clone(),
                })
                .collect(),
            virtual_servers: document
                .virtual_servers
                .iter()
                .map(|(name, policy)| {
                    (
                        name.clone(),
                        serde_json::to_value(policy).unwrap_or(Value::Null),
                    )
                })
                .collect(),
        }
    }
}

impl TryFrom<&PolicySet> for PolicyDocument {
    type Error = AdminError;

    fn try_from(set: &PolicySet) -> Result<Self, AdminError> {
        let mut document = Self::default();
        for source in &set.sources {
            document.add_cedar(&source.name, &source.text, PolicyOrigin::AdminApi);
        }
        let mut servers = BTreeMap::new();
        for (name, value) in &set.virtual_servers {
            let policy = serde_json::from_value(value.clone()).map_err(|error| {
                AdminError::InvalidArgument {
                    field: "virtual_servers",
                    reason: format!("{name}: {error}"),
                }
            })?;
            servers.insert(name.clone(), policy);
        }
        document.virtual_servers = servers;
        Ok(document)
    }
}

impl From<&AgentRecord> for AgentView {
    fn from(agent: &AgentRecord) -> Self {
        Self {
            bundle_id: agent.agent_id.clone(),
            client_id: agent.client_id.clone(),
            name: agent.name.clone(),
            description: agent.description.clone(),
            owner: agent.owner.clone(),
            virtual_servers: agent.virtual_servers.clone(),
            scopes: agent.scopes.clone(),
            state: if agent.decommissioned_at.is_some() {
                "decommissioned"
            } else {
                "active"
            }
            .to_owned(),
            created_at: agent.created_at,
            rotated_at: agent.rotated_at,
            last_used_at: agent.last_used_at,
        }
    }
}
