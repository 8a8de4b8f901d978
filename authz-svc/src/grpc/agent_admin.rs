//! The `gatehouse.authz.v1.AgentAdmin` service: agent bundles created, listed, shown,
//! rotated and decommissioned by administrators (the admin service token). Secrets
//! are returned once, on create and rotate; every change is audited by the registry.

use proto::authz::v1 as pb;
use proto::common::v1::{PageResponse, Secret};
use secrecy::ExposeSecret as _;
use tonic::{Request, Response, Status};

use super::convert::timestamp;
use super::{Callers, Role};
use crate::agent::{AgentRegistry, NewAgent};
use crate::error::Error;
use crate::store::{
    AgentAuthentication, AgentKey, AgentListQuery, AgentRecord, AgentSecretRecord, WorkloadIssuer,
};

/// May manage agent bundles.
const ADMINS: &[Role] = &[Role::Admin];

/// Is the owner of bundles an administrator creates without naming one.
const ADMIN_OWNER: &str = "admin";

/// Bounds one page of `ListAgents`.
const MAX_PAGE: u32 = 1_000;
/// Is the page size when the caller asks for none.
const DEFAULT_PAGE: u32 = 100;

/// Serves `AgentAdmin` over the agent registry.
#[derive(Debug, Clone)]
pub(crate) struct AgentAdminGrpc {
    agents: AgentRegistry,
    callers: Callers,
}

impl AgentAdminGrpc {
    /// Returns the service over `agents`, admitting `callers` with the admin role.
    pub(crate) fn new(agents: AgentRegistry, callers: Callers) -> Self {
        Self { agents, callers }
    }

    async fn bundle(&self, agent: &AgentRecord) -> Result<pb::AgentBundle, Error> {
        let secrets = match agent.decommissioned_at {
            Some(_) => Vec::new(),
            None => self.agents.secrets(&agent.agent_id).await?,
        };
        Ok(bundle(agent, &secrets))
    }

    async fn create(
        &self,
        request: pb::CreateAgentRequest,
    ) -> Result<pb::CreateAgentResponse, Error> {
        let owner = if request.owner_member_id.is_empty() {
            ADMIN_OWNER.to_owned()
        } else {
            request.owner_member_id
        };
        let created = self
            .agents
            .create(NewAgent {
                name: request.name,
                description: request.description,
                owner,
                virtual_servers: request.virtual_servers,
                scopes: request.scopes,
                authentication: authentication(request.authentication)?,
                quotas: serde_json::Value::Null,
                client_id: None,
            })
            .await?;
        Ok(pb::CreateAgentResponse {
            agent: Some(self.bundle(&created.agent).await?),
            client_secret: created.client_secret.map(|secret| Secret {
                value: secret.expose_secret().to_owned(),
            }),
        })
    }

    async fn list(&self, request: &pb::ListAgentsRequest) -> Result<pb::ListAgentsResponse, Error> {
        let page = request.page.clone().unwrap_or_default();
        let offset = match page.page_token.as_str() {
            "" => 0,
            token => token
                .parse::<u32>()
                .map_err(|_| Error::InvalidRequest("page_token is not usable".to_owned()))?,
        };
        let limit = match page.page_size {
            0 => DEFAULT_PAGE,
            size => size.min(MAX_PAGE),
        };
        let mut agents = self
            .agents
            .list(&AgentListQuery {
                owner: Some(request.owner_member_id.clone()).filter(|owner| !owner.is_empty()),
                include_decommissioned: request.include_decommissioned,
                offset,
                limit: limit.saturating_add(1),
            })
            .await?;
        let more = agents.len() > limit as usize;
        agents.truncate(limit as usize);
        let mut bundles = Vec::with_capacity(agents.len());
        for agent in &agents {
            bundles.push(self.bundle(agent).await?);
        }
        Ok(pb::ListAgentsResponse {
            agents: bundles,
            page: Some(PageResponse {
                next_page_token: if more {
                    offset.saturating_add(limit).to_string()
                } else {
                    String::new()
                },
            }),
        })
    }

    async fn find(&self, request: &pb::GetAgentRequest) -> Result<pb::GetAgentResponse, Error> {
        use pb::get_agent_request::Key;
        let key = match &request.key {
            Some(Key::BundleId(id)) => AgentKey::Id(id),
            Some(Key::ClientId(id)) => AgentKey::ClientId(id),
            None => return Err(Error::InvalidRequest("key is required".to_owned())),
        };
        let agent = self.agents.get(key).await?;
        Ok(pb::GetAgentResponse {
            agent: Some(self.bundle(&agent).await?),
        })
    }

    async fn rotate(
        &self,
        request: &pb::RotateAgentSecretRequest,
    ) -> Result<pb::RotateAgentSecretResponse, Error> {
        let overlap = request
            .overlap
            .map(|overlap| {
                std::time::Duration::try_from(overlap)
                    .map_err(|_| Error::InvalidRequest("overlap must not be negative".to_owned()))
            })
            .transpose()?;
        let rotated = self
            .agents
            .rotate(AgentKey::Id(&request.bundle_id), overlap)
            .await?;
        Ok(pb::RotateAgentSecretResponse {
            agent: Some(self.bundle(&rotated.agent).await?),
            client_secret: Some(Secret {
                value: rotated.client_secret.expose_secret().to_owned(),
            }),
            previous_secret_expires_at: Some(timestamp(rotated.previous_expires_at)),
        })
    }

    async fn decommission(
        &self,
        request: &pb::DecommissionAgentRequest,
    ) -> Result<pb::DecommissionAgentResponse, Error> {
        let agent = self
            .agents
            .decommission(AgentKey::Id(&request.bundle_id), &request.reason)
            .await?;
        Ok(pb::DecommissionAgentResponse {
            agent: Some(self.bundle(&agent).await?),
        })
    }
}

/// Returns how a new bundle authenticates; none chosen means client secrets.
fn authentication(wire: Option<pb::AgentAuthentication>) -> Result<AgentAuthentication, Error> {
    use pb::agent_authentication::Method;
    use pb::private_key_jwt_authentication::Keys;
    match wire.and_then(|authentication| authentication.method) {
        None => Ok(AgentAuthentication::ClientSecret),
        Some(Method::ClientSecret(secret)) if secret.secrets.is_empty() => {
            Ok(AgentAuthentication::ClientSecret)
        }
        Some(Method::ClientSecret(_)) => Err(Error::InvalidRequest(
            "client secrets are generated by Gatehouse; leave secrets empty".to_owned(),
        )),
        Some(Method::PrivateKeyJwt(keys)) => match keys.keys {
            Some(Keys::JwksJson(json)) => Ok(AgentAuthentication::PrivateKeyJwt {
                jwks: serde_json::from_slice(&json)
                    .map_err(|_| Error::InvalidRequest("jwks_json is not JSON".to_owned()))?,
            }),
            Some(Keys::JwksUri(jwks_uri)) => Ok(AgentAuthentication::PrivateKeyJwtUri { jwks_uri }),
            None => Err(Error::InvalidRequest(
                "private_key_jwt needs jwks_json or jwks_uri".to_owned(),
            )),
        },
        Some(Method::WorkloadIdentity(workload)) => {
            Ok(AgentAuthentication::WorkloadIdentity(WorkloadIssuer {
                issuer: workload.issuer,
                jwks_uri: Some(workload.jwks_uri).filter(|uri| !uri.is_empty()),
                jwks: None,
                subject_pattern: workload.subject_pattern,
            }))
        }
    }
}

/// Returns a bundle's metadata with its live secrets' ids and times, never a secret.
fn bundle(agent: &AgentRecord, secrets: &[AgentSecretRecord]) -> pb::AgentBundle {
    use pb::agent_authentication::Method;
    let method = match &agent.authentication {
        AgentAuthentication::ClientSecret => Method::ClientSecret(pb::ClientSecretAuthentication {
            secrets: secrets
                .iter()
                .map(|secret| pb::ClientSecretInfo {
                    secret_id: secret.secret_id.clone(),
                    created_at: Some(timestamp(secret.created_at)),
                    expires_at: secret.expires_at.map(timestamp),
                })
                .collect(),
        }),
        AgentAuthentication::PrivateKeyJwt { jwks } => {
            Method::PrivateKeyJwt(pb::PrivateKeyJwtAuthentication {
                keys: Some(pb::private_key_jwt_authentication::Keys::JwksJson(
                    jwks.to_string().into_bytes(),
                )),
            })
        }
        AgentAuthentication::PrivateKeyJwtUri { jwks_uri } => {
            Method::PrivateKeyJwt(pb::PrivateKeyJwtAuthentication {
                keys: Some(pb::private_key_jwt_authentication::Keys::JwksUri(
                    jwks_uri.clone(),
                )),
            })
        }
        AgentAuthentication::WorkloadIdentity(workload) => {
            Method::WorkloadIdentity(pb::WorkloadIdentityAuthentication {
                issuer: workload.issuer.clone(),
                jwks_uri: workload.jwks_uri.clone().unwrap_or_default(),
                subject_pattern: workload.subject_pattern.clone(),
            })
        }
    };
    let state = match agent.decommissioned_at {
        Some(_) => pb::AgentState::Decommissioned,
        None => pb::AgentState::Active,
    };
    pb::AgentBundle {
        bundle_id: agent.agent_id.clone(),
        name: agent.name.clone(),
        description: agent.description.clone(),
        client_id: agent.client_id.clone(),
        owner_member_id: agent.owner.clone(),
        virtual_servers: agent.virtual_servers.clone(),
        scopes: agent.scopes.clone(),
        authentication: Some(pb::AgentAuthentication {
            method: Some(method),
        }),
        state: state.into(),
        created_at: Some(timestamp(agent.created_at)),
        rotated_at: agent.rotated_at.map(timestamp),
        last_used_at: agent.last_used_at.map(timestamp),
        decommissioned_at: agent.decommissioned_at.map(timestamp),
    }
}

#[tonic::async_trait]
impl pb::agent_admin_server::AgentAdmin for AgentAdminGrpc {
    #[tracing::instrument(skip_all, fields(name = %request.get_ref().name))]
    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        self.callers.admit(&request, ADMINS)?;
        Ok(Response::new(self.create(request.into_inner()).await?))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        self.callers.admit(&request, ADMINS)?;
        Ok(Response::new(self.list(request.get_ref()).await?))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        self.callers.admit(&request, ADMINS)?;
        Ok(Response::new(self.find(request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all, fields(bundle_id = %request.get_ref().bundle_id))]
    async fn rotate_agent_secret(
        &self,
        request: Request<pb::RotateAgentSecretRequest>,
    ) -> Result<Response<pb::RotateAgentSecretResponse>, Status> {
        self.callers.admit(&request, ADMINS)?;
        Ok(Response::new(self.rotate(request.get_ref()).await?))
    }

    #[tracing::instrument(skip_all, fields(bundle_id = %request.get_ref().bundle_id))]
    async fn decommission_agent(
        &self,
        request: Request<pb::DecommissionAgentRequest>,
    ) -> Result<Response<pb::DecommissionAgentResponse>, Status> {
        self.callers.admit(&request, ADMINS)?;
        Ok(Response::new(self.decommission(request.get_ref()).await?))
    }
}
