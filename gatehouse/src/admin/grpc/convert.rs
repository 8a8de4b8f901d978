//! Conversions between the admin API's JSON documents and its gRPC messages; invalid input
//! becomes `AdminError::InvalidArgument`.

use proto::admin::v1 as pb;

use super::super::AdminError;
use super::super::model::{
    AgentDeclarationInput, AgentQuotaInput, AgentView, ConnectorView, GroupInput, GroupView,
    MemberInput, MemberView, PolicySet, PolicySource, VirtualServerView,
};

impl From<PolicySet> for pb::PolicySet {
    fn from(set: PolicySet) -> Self {
        Self {
            sources: set
                .sources
                .into_iter()
                .map(|source| pb::PolicySource {
                    name: source.name,
                    text: source.text,
                })
                .collect(),
            virtual_servers_json: serde_json::to_string(&set.virtual_servers).unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::PolicySet> for PolicySet {
    type Error = AdminError;

    fn try_from(set: pb::PolicySet) -> Result<Self, AdminError> {
        let virtual_servers = if set.virtual_servers_json.trim().is_empty() {
            std::collections::BTreeMap::new()
        } else {
            serde_json::from_str(&set.virtual_servers_json).map_err(|error| {
                AdminError::InvalidArgument {
                    field: "virtual_servers_json",
                    reason: error.to_string(),
                }
            })?
        };
        Ok(Self {
            sources: set
                .sources
                .into_iter()
                .map(|source| PolicySource {
                    name: source.name,
                    text: source.text,
                })
                .collect(),
            virtual_servers,
        })
    }
}

impl From<VirtualServerView> for pb::VirtualServer {
    fn from(server: VirtualServerView) -> Self {
        Self {
            name: server.name,
            declaration_json: server.declaration.to_string(),
        }
    }
}

impl From<ConnectorView> for pb::Connector {
    fn from(connector: ConnectorView) -> Self {
        Self {
            name: connector.name,
            transport: connector.transport,
            target: connector.target,
            credentials: connector.credentials,
            fingerprint: connector.fingerprint,
        }
    }
}

impl From<AgentView> for pb::Agent {
    fn from(agent: AgentView) -> Self {
        Self {
            bundle_id: agent.bundle_id,
            client_id: agent.client_id,
            name: agent.name,
            description: agent.description,
            owner: agent.owner,
            virtual_servers: agent.virtual_servers,
            scopes: agent.scopes,
            state: agent.state,
            created_at: agent.created_at,
            rotated_at: agent.rotated_at.unwrap_or(0),
            last_used_at: agent.last_used_at.unwrap_or(0),
            quota: agent.quota.map(pb::AgentQuota::from),
            managed_by: agent.managed_by.unwrap_or_default(),
        }
    }
}

impl From<AgentQuotaInput> for pb::AgentQuota {
    fn from(quota: AgentQuotaInput) -> Self {
        Self {
            rate: quota.rate,
            burst: quota.burst,
        }
    }
}

/// Reads a quota off the wire, where a zero burst is the unset default of 1.
pub(super) fn quota(message: Option<pb::AgentQuota>) -> Option<AgentQuotaInput> {
    message.map(|quota| AgentQuotaInput {
        rate: quota.rate,
        burst: quota.burst.max(1),
    })
}

impl From<MemberView> for pb::Member {
    fn from(member: MemberView) -> Self {
        Self {
            id: member.id,
            user_name: member.user_name,
            display_name: member.display_name.unwrap_or_default(),
            external_id: member.external_id.unwrap_or_default(),
            active: member.active,
            groups: member.groups,
            created_at: member.created_at,
            updated_at: member.updated_at,
        }
    }
}

impl From<pb::MemberInput> for MemberInput {
    fn from(input: pb::MemberInput) -> Self {
        Self {
            user_name: input.user_name,
            display_name: non_empty(input.display_name),
            external_id: non_empty(input.external_id),
            active: input.active,
            password: input.password.map(|secret| secret.value),
        }
    }
}

impl From<GroupView> for pb::Group {
    fn from(group: GroupView) -> Self {
        Self {
            id: group.id,
            name: group.name,
            external_id: group.external_id.unwrap_or_default(),
            members: group.members,
            created_at: group.created_at,
            updated_at: group.updated_at,
        }
    }
}

impl From<pb::GroupInput> for GroupInput {
    fn from(input: pb::GroupInput) -> Self {
        Self {
            name: input.name,
            external_id: non_empty(input.external_id),
            members: input.members,
        }
    }
}

/// Parses a declaration sent as JSON text.
pub(super) fn declaration(json: &str) -> Result<serde_json::Value, AdminError> {
    serde_json::from_str(json).map_err(|error| AdminError::InvalidArgument {
        field: "declaration_json",
        reason: error.to_string(),
    })
}

fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

impl TryFrom<pb::PutAgentRequest> for AgentDeclarationInput {
    type Error = AdminError;

    fn try_from(message: pb::PutAgentRequest) -> Result<Self, AdminError> {
        let jwks = if message.jwks_json.trim().is_empty() {
            None
        } else {
            Some(serde_json::from_str(&message.jwks_json).map_err(|error| {
                AdminError::InvalidArgument {
                    field: "jwks_json",
                    reason: error.to_string(),
                }
            })?)
        };
        Ok(Self {
            client_id: non_empty(message.client_id),
            description: message.description,
            owner: message.owner,
            virtual_servers: message.virtual_servers,
            scopes: message.scopes,
            jwks,
            secret: message.secret.map(|secret| secret.value),
            quota: quota(message.quota),
        })
    }
}
