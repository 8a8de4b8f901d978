//! Conversions between this crate's types and the wire (`proto`), so that
//! authz-svc's gRPC layer and edge-svc's `WatchPolicy` client share them.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proto::authz::v1 as pb;
use proto::common::v1 as common;

use crate::constraint::Constraints;
use crate::decision::{Decision, DenyReason};
use crate::error::Error;
use crate::principal::{Actor, Agent, AuthenticationMethod, Member, Principal};
use crate::request::{Action, Annotations, Item, RequestContext, Target, Tool};
use crate::schema::SCHEMA;
use crate::scope::{ScopeGrant, Scopes};
use crate::snapshot::{PolicyOrigin, PolicyText, Snapshot, VirtualServerPolicy};

impl From<&Snapshot> for pb::PolicySnapshot {
    fn from(snapshot: &Snapshot) -> Self {
        let constraints: BTreeMap<&String, &Constraints> = snapshot
            .virtual_servers
            .iter()
            .filter(|(_, server)| !server.constraints.is_empty())
            .map(|(name, server)| (name, &server.constraints))
            .collect();
        Self {
            version: snapshot.version,
            cedar_schema: SCHEMA.to_owned(),
            policies: snapshot.policies.iter().map(pb::Policy::from).collect(),
            entities_json: snapshot.entities_json.clone().into_bytes(),
            scopes: snapshot
                .virtual_servers
                .iter()
                .filter(|(_, server)| !server.scopes.is_empty())
                .map(|(name, server)| pb::VirtualServerScopes {
                    virtual_server: name.clone(),
                    scopes: server
                        .scopes
                        .iter()
                        .map(|(scope, grant)| pb::ScopeGrant {
                            scope: scope.clone(),
                            description: grant.description().to_owned(),
                            tools: grant.tools().to_vec(),
                        })
                        .collect(),
                })
                .collect(),
            created_at: Some(timestamp(snapshot.created_at)),
            // Serializing plain maps of strings and numbers cannot fail.
            constraints_json: serde_json::to_vec(&constraints).unwrap_or_default(),
        }
    }
}

impl TryFrom<&pb::PolicySnapshot> for Snapshot {
    type Error = Error;

    fn try_from(snapshot: &pb::PolicySnapshot) -> Result<Self, Error> {
        let malformed = |what: &str, error: &dyn std::fmt::Display| {
            Error::MalformedSnapshot(format!("{what}: {error}"))
        };
        let mut virtual_servers: BTreeMap<String, VirtualServerPolicy> =
            if snapshot.constraints_json.is_empty() {
                BTreeMap::new()
            } else {
                serde_json::from_slice::<BTreeMap<String, Constraints>>(&snapshot.constraints_json)
                    .map_err(|error| malformed("constraints_json", &error))?
                    .into_iter()
                    .map(|(name, constraints)| {
                        (
                            name,
                            VirtualServerPolicy {
                                constraints,
                                scopes: Scopes::new(),
                            },
                        )
                    })
                    .collect()
            };
        for server in &snapshot.scopes {
            let scopes = &mut virtual_servers
                .entry(server.virtual_server.clone())
                .or_default()
                .scopes;
            for grant in &server.scopes {
                let value = if grant.description.is_empty() {
                    ScopeGrant::Tools(grant.tools.clone())
                } else {
                    ScopeGrant::Described {
                        description: grant.description.clone(),
                        tools: grant.tools.clone(),
                    }
                };
                scopes.insert(grant.scope.clone(), value);
            }
        }
        let entities_json = String::from_utf8(snapshot.entities_json.clone())
            .map_err(|error| malformed("entities_json", &error))?;
        Ok(Self {
            version: snapshot.version,
            policies: snapshot.policies.iter().map(PolicyText::from).collect(),
            entities_json: if entities_json.is_empty() {
                "[]".to_owned()
            } else {
                entities_json
            },
            virtual_servers,
            created_at: snapshot.created_at.map_or(UNIX_EPOCH, system_time),
        })
    }
}

impl From<&PolicyText> for pb::Policy {
    fn from(policy: &PolicyText) -> Self {
        let source = match policy.origin {
            PolicyOrigin::Unspecified => pb::PolicySource::Unspecified,
            PolicyOrigin::Config => pb::PolicySource::Config,
            PolicyOrigin::AdminApi => pb::PolicySource::AdminApi,
            PolicyOrigin::Generated => pb::PolicySource::Generated,
        };
        Self {
            id: policy.id.clone(),
            text: policy.text.clone(),
            source: source.into(),
        }
    }
}

impl From<&pb::Policy> for PolicyText {
    fn from(policy: &pb::Policy) -> Self {
        let origin = match policy.source() {
            pb::PolicySource::Unspecified => PolicyOrigin::Unspecified,
            pb::PolicySource::Config => PolicyOrigin::Config,
            pb::PolicySource::AdminApi => PolicyOrigin::AdminApi,
            pb::PolicySource::Generated => PolicyOrigin::Generated,
        };
        Self {
            id: policy.id.clone(),
            text: policy.text.clone(),
            origin,
        }
    }
}

impl TryFrom<&common::Principal> for Principal {
    type Error = Error;

    fn try_from(principal: &common::Principal) -> Result<Self, Error> {
        if principal.member.is_none() && principal.agent.is_none() {
            return Err(Error::InvalidRequest(
                "principal has neither a member nor an agent".to_owned(),
            ));
        }
        Ok(Self {
            member: principal.member.as_ref().map(|member| Member {
                id: member.id.clone(),
                issuer: member.issuer.clone(),
                subject: member.subject.clone(),
                groups: member.groups.clone(),
                roles: member.roles.clone(),
                authentication_methods: member.authentication_methods.clone(),
            }),
            agent: principal.agent.as_ref().map(|agent| Agent {
                client_id: agent.client_id.clone(),
                bundle_id: agent.bundle_id.clone(),
                bundle_name: agent.bundle_name.clone(),
                owner_member_id: Some(agent.owner_member_id.clone()).filter(|id| !id.is_empty()),
            }),
            client_id: principal.client_id.clone(),
            act: principal
                .act
                .iter()
                .map(|actor| Actor {
                    subject: actor.subject.clone(),
                    client_id: Some(actor.client_id.clone()).filter(|id| !id.is_empty()),
                })
                .collect(),
            authentication_method: principal.authentication_method().into(),
        })
    }
}

impl From<&Principal> for common::Principal {
    fn from(principal: &Principal) -> Self {
        Self {
            member: principal.member.as_ref().map(|member| common::Member {
                id: member.id.clone(),
                issuer: member.issuer.clone(),
                subject: member.subject.clone(),
                groups: member.groups.clone(),
                roles: member.roles.clone(),
                authentication_methods: member.authentication_methods.clone(),
                display_name: String::new(),
            }),
            agent: principal.agent.as_ref().map(|agent| common::Agent {
                client_id: agent.client_id.clone(),
                bundle_id: agent.bundle_id.clone(),
                bundle_name: agent.bundle_name.clone(),
                owner_member_id: agent.owner_member_id.clone().unwrap_or_default(),
                workload_subject: String::new(),
            }),
            client_id: principal.client_id.clone(),
            act: principal
                .act
                .iter()
                .map(|actor| common::Actor {
                    subject: actor.subject.clone(),
                    client_id: actor.client_id.clone().unwrap_or_default(),
                    issuer: String::new(),
                })
                .collect(),
            authentication_method: common::AuthenticationMethod::from(
                principal.authentication_method,
            )
            .into(),
        }
    }
}

impl From<common::AuthenticationMethod> for AuthenticationMethod {
    fn from(method: common::AuthenticationMethod) -> Self {
        use common::AuthenticationMethod as Wire;
        match method {
            Wire::Unspecified => Self::Unspecified,
            Wire::AuthorizationCode => Self::AuthorizationCode,
            Wire::ClientSecret => Self::ClientSecret,
            Wire::PrivateKeyJwt => Self::PrivateKeyJwt,
            Wire::WorkloadIdentity => Self::WorkloadIdentity,
            Wire::TokenExchange => Self::TokenExchange,
            Wire::JwtBearer => Self::JwtBearer,
            Wire::None => Self::None,
        }
    }
}

impl From<AuthenticationMethod> for common::AuthenticationMethod {
    fn from(method: AuthenticationMethod) -> Self {
        match method {
            AuthenticationMethod::Unspecified => Self::Unspecified,
            AuthenticationMethod::AuthorizationCode => Self::AuthorizationCode,
            AuthenticationMethod::ClientSecret => Self::ClientSecret,
            AuthenticationMethod::PrivateKeyJwt => Self::PrivateKeyJwt,
            AuthenticationMethod::WorkloadIdentity => Self::WorkloadIdentity,
            AuthenticationMethod::TokenExchange => Self::TokenExchange,
            AuthenticationMethod::JwtBearer => Self::JwtBearer,
            AuthenticationMethod::None => Self::None,
        }
    }
}

impl TryFrom<pb::Action> for Action {
    type Error = Error;

    fn try_from(action: pb::Action) -> Result<Self, Error> {
        Ok(match action {
            pb::Action::Unspecified => {
                return Err(Error::InvalidRequest("action is unspecified".to_owned()));
            }
            pb::Action::Connect => Self::Connect,
            pb::Action::ListTools => Self::ListTools,
            pb::Action::CallTool => Self::CallTool,
            pb::Action::ReadResource => Self::ReadResource,
            pb::Action::GetPrompt => Self::GetPrompt,
        })
    }
}

impl From<Action> for pb::Action {
    fn from(action: Action) -> Self {
        match action {
            Action::Connect => Self::Connect,
            Action::ListTools => Self::ListTools,
            Action::CallTool => Self::CallTool,
            Action::ReadResource => Self::ReadResource,
            Action::GetPrompt => Self::GetPrompt,
        }
    }
}

impl From<&common::Target> for Target {
    fn from(target: &common::Target) -> Self {
        use common::target::Item as Wire;
        Self {
            virtual_server: target.virtual_server.clone(),
            connector: Some(target.connector.clone()).filter(|name| !name.is_empty()),
            item: target.item.as_ref().map(|item| match item {
                Wire::Tool(tool) => Item::Tool(Tool {
                    name: tool.name.clone(),
                    upstream_name: tool.upstream_name.clone(),
                    annotations: tool
                        .annotations
                        .as_ref()
                        .map(|hints| Annotations {
                            read_only: hints.read_only_hint,
                            destructive: hints.destructive_hint,
                            idempotent: hints.idempotent_hint,
                            open_world: hints.open_world_hint,
                        })
                        .unwrap_or_default(),
                }),
                Wire::Resource(resource) => Item::Resource {
                    uri: resource.uri.clone(),
                },
                Wire::Prompt(prompt) => Item::Prompt {
                    name: prompt.name.clone(),
                },
            }),
        }
    }
}

impl From<&Target> for common::Target {
    fn from(target: &Target) -> Self {
        use common::target::Item as Wire;
        Self {
            virtual_server: target.virtual_server.clone(),
            connector: target.connector.clone().unwrap_or_default(),
            item: target.item.as_ref().map(|item| match item {
                Item::Tool(tool) => Wire::Tool(common::Tool {
                    name: tool.name.clone(),
                    upstream_name: tool.upstream_name.clone(),
                    annotations: Some(common::ToolAnnotations {
                        title: String::new(),
                        read_only_hint: tool.annotations.read_only,
                        destructive_hint: tool.annotations.destructive,
                        idempotent_hint: tool.annotations.idempotent,
                        open_world_hint: tool.annotations.open_world,
                    }),
                }),
                Item::Resource { uri } => Wire::Resource(common::Resource {
                    uri: uri.clone(),
                    upstream_uri: String::new(),
                }),
                Item::Prompt { name } => Wire::Prompt(common::Prompt {
                    name: name.clone(),
                    upstream_name: String::new(),
                }),
            }),
        }
    }
}

impl TryFrom<&pb::DecisionContext> for RequestContext {
    type Error = Error;

    /// Empty `arguments_json` is list time; `time` defaults to now when unset.
    fn try_from(context: &pb::DecisionContext) -> Result<Self, Error> {
        let arguments = if context.arguments_json.is_empty() {
            None
        } else {
            match serde_json::from_slice(&context.arguments_json) {
                Ok(serde_json::Value::Object(arguments)) => Some(arguments),
                Ok(_) => {
                    return Err(Error::InvalidRequest(
                        "arguments_json is not a JSON object".to_owned(),
                    ));
                }
                Err(error) => {
                    return Err(Error::InvalidRequest(format!("arguments_json: {error}")));
                }
            }
        };
        let source_address = if context.source_address.is_empty() {
            None
        } else {
            Some(context.source_address.parse().map_err(|_| {
                Error::InvalidRequest("source_address is not an IP address".to_owned())
            })?)
        };
        Ok(Self {
            arguments,
            time: context.time.map_or_else(SystemTime::now, system_time),
            source_address,
        })
    }
}

impl From<&Decision> for common::Decision {
    fn from(decision: &Decision) -> Self {
        let verdict = if decision.allowed {
            common::Verdict::Allow
        } else {
            common::Verdict::Deny
        };
        Self {
            verdict: verdict.into(),
            reason: decision
                .reason
                .map_or(common::DenyReason::Unspecified, common::DenyReason::from)
                .into(),
            policy_ids: decision.policy_ids.clone(),
            required_scopes: decision.required_scopes.clone(),
            explanation: decision.explanation.clone(),
            policy_version: decision.policy_version,
        }
    }
}

impl From<DenyReason> for common::DenyReason {
    fn from(reason: DenyReason) -> Self {
        match reason {
            DenyReason::NoPermit => Self::NoPermit,
            DenyReason::Forbidden => Self::Forbidden,
            DenyReason::InsufficientScope => Self::InsufficientScope,
            DenyReason::ArgumentConstraint => Self::ArgumentConstraint,
            DenyReason::OutsideTimeWindow => Self::OutsideTimeWindow,
            DenyReason::SourceNotAllowed => Self::SourceNotAllowed,
            DenyReason::Revoked => Self::Revoked,
            DenyReason::EvaluationError => Self::EvaluationError,
        }
    }
}

fn timestamp(time: SystemTime) -> prost_types::Timestamp {
    let elapsed = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(elapsed.subsec_nanos()).unwrap_or(0),
    }
}

fn system_time(timestamp: prost_types::Timestamp) -> SystemTime {
    let seconds = u64::try_from(timestamp.seconds).unwrap_or(0);
    let nanos = u32::try_from(timestamp.nanos).unwrap_or(0);
    UNIX_EPOCH + Duration::new(seconds, nanos)
}
