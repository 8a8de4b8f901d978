//! The admin API's gRPC face (`gatehouse.admin.v1.Admin`): decode, call the same operations as
//! the HTTP face, encode. It listens on a loopback port like the backends of `gatehouse up`.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context as _;
use proto::admin::v1 as pb;
use proto::common::v1::Secret;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};

use super::guard::bearer_token;
use super::model::{
    AgentDeclarationInput, AgentFilter, AuditQuery, PolicySet, RateLimits, SharedCredentialInput,
};
use super::{Admin, AdminCaller, AdminError, Steward};

mod audit;
mod convert;
mod members;

use convert::declaration;

/// Is the fully qualified name of the admin gRPC service.
pub(crate) const SERVICE_NAME: &str = "gatehouse.admin.v1.Admin";

/// Starts the admin gRPC API on a loopback port, as the backends of `gatehouse up` listen.
pub(crate) async fn start(
    admin: Admin,
    shutdown: &CancellationToken,
) -> anyhow::Result<crate::backends::Backend> {
    let (listener, addr) = crate::backends::loopback().await?;
    Ok(crate::backends::Backend {
        name: "admin",
        addr,
        task: tokio::spawn(serve(admin, listener, shutdown.child_token())),
    })
}

/// Serves the admin gRPC API (with health and reflection) on `listener` until `shutdown`.
pub(crate) async fn serve(
    admin: Admin,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (health, health_service) = svc_kit::grpc::health().await;
    health
        .set_serving::<pb::admin_server::AdminServer<AdminGrpc>>()
        .await;
    let reflection = svc_kit::grpc::reflection(proto::FILE_DESCRIPTOR_SET, &[SERVICE_NAME])?;
    let config = svc_kit::GrpcServerConfig {
        listen_addr: listener.local_addr()?,
        request_timeout: Duration::from_secs(30),
        shutdown_grace: Duration::from_secs(10),
    };
    svc_kit::grpc::server(&config)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(pb::admin_server::AdminServer::new(AdminGrpc(admin)))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown.cancelled_owned())
        .await
        .context("admin grpc server failed")
}

/// The tonic adapter over [`Admin`].
#[derive(Debug, Clone)]
pub(crate) struct AdminGrpc(Admin);

impl AdminGrpc {
    /// Returns the administrator the request's `authorization` metadata proves.
    async fn caller<T>(&self, request: &Request<T>) -> Result<AdminCaller, Status> {
        Ok(self.0.admit(presented(request)).await?)
    }

    /// Returns the administrator, or the agents' owner, the request's metadata proves.
    async fn steward<T>(&self, request: &Request<T>) -> Result<Steward, Status> {
        Ok(self.0.steward(presented(request)).await?)
    }
}

/// Renders rate-limit rules as the gRPC face carries them: one JSON array.
fn rules_json(limits: &RateLimits) -> String {
    serde_json::to_string(&limits.rules).unwrap_or_else(|_| "[]".to_owned())
}

/// Returns the bearer token of the request's `authorization` metadata.
fn presented<T>(request: &Request<T>) -> Option<&str> {
    request
        .metadata()
        .get("authorization")
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminGrpc {
    type TailAuditStream = audit::TailStream;

    async fn get_policies(
        &self,
        request: Request<pb::GetPoliciesRequest>,
    ) -> Result<Response<pb::GetPoliciesResponse>, Status> {
        let caller = self.caller(&request).await?;
        let state = self.0.policies(&caller);
        Ok(Response::new(pb::GetPoliciesResponse {
            version: state.version,
            policies: Some(pb::PolicySet::from(state.policies)),
        }))
    }

    async fn set_policies(
        &self,
        request: Request<pb::SetPoliciesRequest>,
    ) -> Result<Response<pb::SetPoliciesResponse>, Status> {
        let caller = self.caller(&request).await?;
        let set = PolicySet::try_from(request.into_inner().policies.unwrap_or_default())?;
        let state = self.0.set_policies(&caller, set)?;
        Ok(Response::new(pb::SetPoliciesResponse {
            version: state.version,
        }))
    }

    async fn list_virtual_servers(
        &self,
        request: Request<pb::ListVirtualServersRequest>,
    ) -> Result<Response<pb::ListVirtualServersResponse>, Status> {
        let caller = self.caller(&request).await?;
        let servers = self.0.virtual_servers(&caller);
        Ok(Response::new(pb::ListVirtualServersResponse {
            virtual_servers: servers.into_iter().map(pb::VirtualServer::from).collect(),
        }))
    }

    async fn get_virtual_server(
        &self,
        request: Request<pb::GetVirtualServerRequest>,
    ) -> Result<Response<pb::GetVirtualServerResponse>, Status> {
        let caller = self.caller(&request).await?;
        let server = self.0.virtual_server(&caller, &request.get_ref().name)?;
        Ok(Response::new(pb::GetVirtualServerResponse {
            virtual_server: Some(server.into()),
        }))
    }

    async fn list_connectors(
        &self,
        request: Request<pb::ListConnectorsRequest>,
    ) -> Result<Response<pb::ListConnectorsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let connectors = self.0.connectors(&caller);
        Ok(Response::new(pb::ListConnectorsResponse {
            connectors: connectors.into_iter().map(pb::Connector::from).collect(),
        }))
    }

    async fn get_connector(
        &self,
        request: Request<pb::GetConnectorRequest>,
    ) -> Result<Response<pb::GetConnectorResponse>, Status> {
        let caller = self.caller(&request).await?;
        let connector = self.0.connector(&caller, &request.get_ref().name)?;
        Ok(Response::new(pb::GetConnectorResponse {
            connector: Some(connector.into()),
        }))
    }

    async fn set_shared_credential(
        &self,
        request: Request<pb::SetSharedCredentialRequest>,
    ) -> Result<Response<pb::SetSharedCredentialResponse>, Status> {
        let caller = self.caller(&request).await?;
        let mut message = request.into_inner();
        let connector = std::mem::take(&mut message.connector);
        let input = shared_credential_input(message)?;
        let stored = self
            .0
            .set_shared_credential(&caller, &connector, input)
            .await?;
        Ok(Response::new(pb::SetSharedCredentialResponse {
            credential_id: stored.credential_id,
            version: stored.version,
        }))
    }

    async fn delete_shared_credential(
        &self,
        request: Request<pb::DeleteSharedCredentialRequest>,
    ) -> Result<Response<pb::DeleteSharedCredentialResponse>, Status> {
        let caller = self.caller(&request).await?;
        let deleted = self
            .0
            .delete_shared_credential(&caller, &request.get_ref().connector)
            .await?;
        Ok(Response::new(pb::DeleteSharedCredentialResponse {
            credential_id: deleted.credential_id,
        }))
    }

    async fn delete_member_credential(
        &self,
        request: Request<pb::DeleteMemberCredentialRequest>,
    ) -> Result<Response<pb::DeleteMemberCredentialResponse>, Status> {
        let caller = self.caller(&request).await?;
        let message = request.get_ref();
        let deleted = self
            .0
            .delete_member_credential(&caller, &message.connector, &message.member_id)
            .await?;
        Ok(Response::new(pb::DeleteMemberCredentialResponse {
            credential_id: deleted.credential_id,
        }))
    }

    async fn get_rate_limits(
        &self,
        request: Request<pb::GetRateLimitsRequest>,
    ) -> Result<Response<pb::GetRateLimitsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let limits = self.0.rate_limits(&caller);
        Ok(Response::new(pb::GetRateLimitsResponse {
            rules_json: rules_json(&limits),
        }))
    }

    async fn set_rate_limits(
        &self,
        request: Request<pb::SetRateLimitsRequest>,
    ) -> Result<Response<pb::SetRateLimitsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let rules = serde_json::from_str(&request.get_ref().rules_json).map_err(|_| {
            self.0.refuse(
                &caller,
                "SetRateLimits",
                AdminError::InvalidArgument {
                    field: "rules_json",
                    reason: "must be a JSON array of rules".to_owned(),
                },
            )
        })?;
        let limits = self
            .0
            .set_rate_limits(&caller, RateLimits { rules })
            .await?;
        Ok(Response::new(pb::SetRateLimitsResponse {
            rules_json: rules_json(&limits),
        }))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let steward = self.steward(&request).await?;
        let message = request.into_inner();
        let filter = AgentFilter {
            owner: (!message.owner.is_empty()).then_some(message.owner),
            include_decommissioned: message.include_decommissioned,
        };
        let agents = self.0.agents(&steward, filter).await?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.into_iter().map(pb::Agent::from).collect(),
        }))
    }

    async fn create_agent(
        &self,
        request: Request<pb::CreateAgentRequest>,
    ) -> Result<Response<pb::CreateAgentResponse>, Status> {
        let caller = self.caller(&request).await?;
        let message = request.into_inner();
        let input = super::model::NewAgentInput {
            name: message.name,
            description: message.description,
            owner: message.owner,
            virtual_servers: message.virtual_servers,
            scopes: message.scopes,
            quota: convert::quota(message.quota),
        };
        let created = self.0.create_agent(&caller, input).await?;
        Ok(Response::new(pb::CreateAgentResponse {
            agent: Some(created.agent.into()),
            client_secret: created
                .client_secret
                .map(|secret| Secret { value: secret.0 }),
        }))
    }

    async fn get_agent(
        &self,
        request: Request<pb::GetAgentRequest>,
    ) -> Result<Response<pb::GetAgentResponse>, Status> {
        let steward = self.steward(&request).await?;
        let agent = self.0.agent(&steward, &request.get_ref().agent).await?;
        Ok(Response::new(pb::GetAgentResponse {
            agent: Some(agent.into()),
        }))
    }

    async fn rotate_agent_secret(
        &self,
        request: Request<pb::RotateAgentSecretRequest>,
    ) -> Result<Response<pb::RotateAgentSecretResponse>, Status> {
        let steward = self.steward(&request).await?;
        let message = request.into_inner();
        let overlap = message.overlap_seconds.map(Duration::from_secs);
        let rotated = self
            .0
            .rotate_agent(&steward, &message.agent, overlap)
            .await?;
        Ok(Response::new(pb::RotateAgentSecretResponse {
            agent: Some(rotated.agent.into()),
            client_secret: rotated
                .client_secret
                .map(|secret| Secret { value: secret.0 }),
            previous_secret_expires_at: rotated.previous_secret_expires_at.unwrap_or(0),
        }))
    }

    async fn decommission_agent(
        &self,
        request: Request<pb::DecommissionAgentRequest>,
    ) -> Result<Response<pb::DecommissionAgentResponse>, Status> {
        let steward = self.steward(&request).await?;
        let message = request.into_inner();
        let agent = self
            .0
            .decommission_agent(&steward, &message.agent, &message.reason)
            .await?;
        Ok(Response::new(pb::DecommissionAgentResponse {
            agent: Some(agent.into()),
        }))
    }

    async fn search_audit(
        &self,
        request: Request<pb::SearchAuditRequest>,
    ) -> Result<Response<pb::SearchAuditResponse>, Status> {
        let caller = self.caller(&request).await?;
        let message = request.into_inner();
        let query = AuditQuery {
            member: (!message.member.is_empty()).then_some(message.member),
            agent: (!message.agent.is_empty()).then_some(message.agent),
            virtual_server: (!message.virtual_server.is_empty()).then_some(message.virtual_server),
            tool: (!message.tool.is_empty()).then_some(message.tool),
            kind: (!message.kinds.is_empty()).then(|| message.kinds.join(",")),
            limit: (message.limit > 0).then_some(message.limit),
            page_token: (!message.page_token.is_empty()).then_some(message.page_token),
            newest_first: message.newest_first,
        };
        let page = self.0.search_audit(&caller, query).await?;
        Ok(Response::new(pb::SearchAuditResponse {
            events: page
                .events
                .into_iter()
                .map(|record| pb::AuditRecord {
                    sequence: record.sequence,
                    event_json: record.event.to_string(),
                })
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }))
    }

    async fn verify_audit(
        &self,
        request: Request<pb::VerifyAuditRequest>,
    ) -> Result<Response<pb::VerifyAuditResponse>, Status> {
        audit::verify_audit(self, request).await
    }

    async fn prove_audit_event(
        &self,
        request: Request<pb::ProveAuditEventRequest>,
    ) -> Result<Response<pb::ProveAuditEventResponse>, Status> {
        audit::prove_audit_event(self, request).await
    }

    async fn tail_audit(
        &self,
        request: Request<pb::TailAuditRequest>,
    ) -> Result<Response<Self::TailAuditStream>, Status> {
        audit::tail_audit(self, request).await
    }

    async fn connector_health(
        &self,
        request: Request<pb::ConnectorHealthRequest>,
    ) -> Result<Response<pb::ConnectorHealthResponse>, Status> {
        let caller = self.caller(&request).await?;
        let reports = self.0.connector_health(&caller).await?;
        Ok(Response::new(pb::ConnectorHealthResponse {
            connectors: reports
                .into_iter()
                .map(|report| pb::ConnectorHealthReport {
                    connector: report.connector,
                    state: report.state,
                    shared_credential_failing: report.shared_credential_failing,
                    failing_member_ids: report.failing_member_ids,
                    detail: report.detail,
                })
                .collect(),
        }))
    }

    async fn kek_status(
        &self,
        request: Request<pb::KekStatusRequest>,
    ) -> Result<Response<pb::KekStatusResponse>, Status> {
        let caller = self.caller(&request).await?;
        let status = self.0.kek_status(&caller).await?;
        Ok(Response::new(pb::KekStatusResponse {
            active_version: status.active_version,
            credentials: status.credentials,
            stale: status.stale,
            rewrap_running: status.rewrap_running,
            rewrapped: status.rewrapped,
            rewrap_total: status.rewrap_total,
        }))
    }

    async fn put_virtual_server(
        &self,
        request: Request<pb::PutVirtualServerRequest>,
    ) -> Result<Response<pb::PutVirtualServerResponse>, Status> {
        let caller = self.caller(&request).await?;
        let message = request.into_inner();
        let declared = declaration(&message.declaration_json)?;
        let server = self
            .0
            .put_virtual_server(&caller, &message.name, declared)
            .await?;
        Ok(Response::new(pb::PutVirtualServerResponse {
            virtual_server: Some(server.into()),
        }))
    }

    async fn delete_virtual_server(
        &self,
        request: Request<pb::DeleteVirtualServerRequest>,
    ) -> Result<Response<pb::DeleteVirtualServerResponse>, Status> {
        let caller = self.caller(&request).await?;
        let server = self
            .0
            .delete_virtual_server(&caller, &request.get_ref().name)
            .await?;
        Ok(Response::new(pb::DeleteVirtualServerResponse {
            virtual_server: Some(server.into()),
        }))
    }

    async fn put_connector(
        &self,
        request: Request<pb::PutConnectorRequest>,
    ) -> Result<Response<pb::PutConnectorResponse>, Status> {
        let caller = self.caller(&request).await?;
        let message = request.into_inner();
        let declared = declaration(&message.declaration_json)?;
        let connector = self
            .0
            .put_connector(&caller, &message.name, declared)
            .await?;
        Ok(Response::new(pb::PutConnectorResponse {
            connector: Some(connector.into()),
        }))
    }

    async fn delete_connector(
        &self,
        request: Request<pb::DeleteConnectorRequest>,
    ) -> Result<Response<pb::DeleteConnectorResponse>, Status> {
        let caller = self.caller(&request).await?;
        let connector = self
            .0
            .delete_connector(&caller, &request.get_ref().name)
            .await?;
        Ok(Response::new(pb::DeleteConnectorResponse {
            connector: Some(connector.into()),
        }))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        members::list_members(self, request).await
    }

    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::GetMemberResponse>, Status> {
        members::get_member(self, request).await
    }

    async fn create_member(
        &self,
        request: Request<pb::CreateMemberRequest>,
    ) -> Result<Response<pb::CreateMemberResponse>, Status> {
        members::create_member(self, request).await
    }

    async fn update_member(
        &self,
        request: Request<pb::UpdateMemberRequest>,
    ) -> Result<Response<pb::UpdateMemberResponse>, Status> {
        members::update_member(self, request).await
    }

    async fn deactivate_member(
        &self,
        request: Request<pb::DeactivateMemberRequest>,
    ) -> Result<Response<pb::DeactivateMemberResponse>, Status> {
        members::deactivate_member(self, request).await
    }

    async fn list_groups(
        &self,
        request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        members::list_groups(self, request).await
    }

    async fn get_group(
        &self,
        request: Request<pb::GetGroupRequest>,
    ) -> Result<Response<pb::GetGroupResponse>, Status> {
        members::get_group(self, request).await
    }

    async fn create_group(
        &self,
        request: Request<pb::CreateGroupRequest>,
    ) -> Result<Response<pb::CreateGroupResponse>, Status> {
        members::create_group(self, request).await
    }

    async fn update_group(
        &self,
        request: Request<pb::UpdateGroupRequest>,
    ) -> Result<Response<pb::UpdateGroupResponse>, Status> {
        members::update_group(self, request).await
    }

    async fn delete_group(
        &self,
        request: Request<pb::DeleteGroupRequest>,
    ) -> Result<Response<pb::DeleteGroupResponse>, Status> {
        members::delete_group(self, request).await
    }

    async fn put_agent(
        &self,
        request: Request<pb::PutAgentRequest>,
    ) -> Result<Response<pb::PutAgentResponse>, Status> {
        let caller = self.caller(&request).await?;
        let message = request.into_inner();
        let name = message.name.clone();
        let input = AgentDeclarationInput::try_from(message)?;
        let declared = self.0.put_agent(&caller, &name, input).await?;
        Ok(Response::new(pb::PutAgentResponse {
            agent: Some(declared.agent.into()),
            client_secret: declared
                .client_secret
                .map(|secret| Secret { value: secret.0 }),
        }))
    }
}

/// Returns the shared credential a request describes; a field another kind uses is refused
/// by name, so a misplaced secret is never silently dropped (nor echoed).
fn shared_credential_input(
    message: pb::SetSharedCredentialRequest,
) -> Result<SharedCredentialInput, AdminError> {
    let used: &[&str] = match message.kind.as_str() {
        "bearer" => &["value"],
        "api_key" => &["header", "value"],
        "basic" => &["username", "value"],
        "client_credentials" => &["client_id", "value", "token_endpoint", "scopes", "audience"],
        "env" => &["variables"],
        "headers" => &["headers"],
        _ => {
            return Err(AdminError::InvalidArgument {
                field: "kind",
                reason: "must be bearer, api_key, basic, client_credentials, env or headers"
                    .to_owned(),
            });
        }
    };
    let present = [
        ("header", !message.header.is_empty()),
        ("value", message.value.is_some()),
        ("username", !message.username.is_empty()),
        ("client_id", !message.client_id.is_empty()),
        ("token_endpoint", !message.token_endpoint.is_empty()),
        ("scopes", !message.scopes.is_empty()),
        ("audience", !message.audience.is_empty()),
        ("variables", !message.variables.is_empty()),
        ("headers", !message.headers.is_empty()),
    ];
    if let Some(&(field, _)) = present
        .iter()
        .find(|(field, set)| *set && !used.contains(field))
    {
        return Err(AdminError::InvalidArgument {
            field,
            reason: format!("does not apply to kind {}", message.kind),
        });
    }
    let value = message.value.map(|secret| secret.value).unwrap_or_default();
    Ok(match message.kind.as_str() {
        "bearer" => SharedCredentialInput::Bearer { value },
        "api_key" => SharedCredentialInput::ApiKey {
            header: (!message.header.is_empty()).then_some(message.header),
            value,
        },
        "basic" => SharedCredentialInput::Basic {
            username: message.username,
            password: value,
        },
        "client_credentials" => SharedCredentialInput::ClientCredentials {
            client_id: message.client_id,
            client_secret: value,
            token_endpoint: message.token_endpoint,
            scopes: message.scopes,
            audience: (!message.audience.is_empty()).then_some(message.audience),
        },
        "env" => SharedCredentialInput::Env {
            variables: values(message.variables),
        },
        _ => SharedCredentialInput::Headers {
            headers: values(message.headers),
        },
    })
}

/// Returns name → value pairs of wire secrets.
fn values(pairs: impl IntoIterator<Item = (String, Secret)>) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(name, secret)| (name, secret.value))
        .collect()
}
