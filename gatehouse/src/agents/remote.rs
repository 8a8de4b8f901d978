//! `gatehouse agents --endpoint URL`: the same commands over authz-svc's `AgentAdmin`
//! gRPC API, authenticated by the admin service token from an environment variable.

use anyhow::Context as _;
use proto::authz::v1 as pb;
use proto::authz::v1::agent_admin_client::AgentAdminClient;
use proto::common::v1::PageRequest;
use serde_json::{Value, json};
use svc_kit::callers::{PresentToken, SecretSetting};
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use super::AgentsCommand;

type Client = AgentAdminClient<InterceptedService<Channel, PresentToken>>;

/// Runs `command` against the authz-svc at `endpoint`.
pub(super) async fn execute(
    endpoint: &str,
    token_env: &str,
    command: AgentsCommand,
) -> anyhow::Result<Value> {
    let token = std::env::var(token_env)
        .map(SecretSetting::from)
        .with_context(|| format!("{token_env} must hold the admin service token"))?;
    let channel = svc_kit::grpc::channel(endpoint, &svc_kit::GrpcClientConfig::default())?;
    let mut client = AgentAdminClient::with_interceptor(channel, PresentToken::new(Some(&token))?);
    match command {
        AgentsCommand::Create {
            name,
            virtual_servers,
            scopes,
            jwks,
            jwks_uri,
            owner,
            description,
            ..
        } => {
            let authentication = match (jwks, jwks_uri) {
                (Some(file), _) => Some(private_key_jwt(&file)?),
                (None, Some(uri)) => Some(private_key_jwt_keys(
                    pb::private_key_jwt_authentication::Keys::JwksUri(uri),
                )),
                (None, None) => None,
            };
            let request = pb::CreateAgentRequest {
                name,
                description,
                owner_member_id: owner,
                virtual_servers,
                scopes,
                authentication,
            };
            let created = client
                .create_agent(request)
                .await
                .map_err(refused)?
                .into_inner();
            let mut output = describe(created.agent.as_ref());
            if let Some(secret) = created.client_secret {
                output["client_secret"] = json!(secret.value);
            }
            Ok(output)
        }
        AgentsCommand::List { owner, all, .. } => {
            let agents = list(&mut client, owner.unwrap_or_default(), all).await?;
            Ok(
                json!({ "agents": agents.iter().map(|agent| describe(Some(agent))).collect::<Vec<_>>() }),
            )
        }
        AgentsCommand::Show { agent, .. } => Ok(describe(Some(&find(&mut client, &agent).await?))),
        AgentsCommand::Rotate { agent, overlap, .. } => rotate(&mut client, &agent, overlap).await,
        AgentsCommand::Decommission { agent, reason, .. } => {
            let bundle_id = find(&mut client, &agent).await?.bundle_id;
            let request = pb::DecommissionAgentRequest { bundle_id, reason };
            let gone = client.decommission_agent(request).await.map_err(refused)?;
            Ok(describe(gone.into_inner().agent.as_ref()))
        }
    }
}

/// Rotates the secret of the bundle `key` names; prints the new one once.
async fn rotate(
    client: &mut Client,
    key: &str,
    overlap: Option<std::time::Duration>,
) -> anyhow::Result<Value> {
    let agent = find(client, key).await?;
    let overlap = overlap
        .map(prost_types::Duration::try_from)
        .transpose()
        .context("overlap is too long")?;
    let rotated = client
        .rotate_agent_secret(pb::RotateAgentSecretRequest {
            bundle_id: agent.bundle_id,
            overlap,
        })
        .await
        .map_err(refused)?
        .into_inner();
    let mut output = describe(rotated.agent.as_ref());
    output["client_secret"] = json!(rotated.client_secret.map(|secret| secret.value));
    output["previous_secret_expires_at"] =
        json!(rotated.previous_secret_expires_at.map(|at| at.seconds));
    Ok(output)
}

/// Returns the authentication of a bundle whose keys are the JWK Set in `file`.
fn private_key_jwt(file: &std::path::Path) -> anyhow::Result<pb::AgentAuthentication> {
    let jwks = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    Ok(private_key_jwt_keys(
        pb::private_key_jwt_authentication::Keys::JwksJson(jwks),
    ))
}

/// Returns the authentication of a bundle whose keys are `keys` (by value or by URL).
fn private_key_jwt_keys(keys: pb::private_key_jwt_authentication::Keys) -> pb::AgentAuthentication {
    pb::AgentAuthentication {
        method: Some(pb::agent_authentication::Method::PrivateKeyJwt(
            pb::PrivateKeyJwtAuthentication { keys: Some(keys) },
        )),
    }
}

/// Returns a refusal as the status code and message authz-svc gave.
fn refused(status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("authz-svc: {:?}: {}", status.code(), status.message())
}

async fn list(
    client: &mut Client,
    owner: String,
    all: bool,
) -> anyhow::Result<Vec<pb::AgentBundle>> {
    let mut agents = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_agents(pb::ListAgentsRequest {
                page: Some(PageRequest {
                    page_size: 0,
                    page_token,
                }),
                owner_member_id: owner.clone(),
                include_decommissioned: all,
            })
            .await
            .map_err(refused)?
            .into_inner();
        agents.extend(page.agents);
        page_token = page
            .page
            .map(|page| page.next_page_token)
            .unwrap_or_default();
        if page_token.is_empty() {
            return Ok(agents);
        }
    }
}

/// Returns the bundle `key` names: by bundle id, else by client id, else by name.
async fn find(client: &mut Client, key: &str) -> anyhow::Result<pb::AgentBundle> {
    use pb::get_agent_request::Key;
    for lookup in [Key::BundleId(key.to_owned()), Key::ClientId(key.to_owned())] {
        match client
            .get_agent(pb::GetAgentRequest { key: Some(lookup) })
            .await
        {
            Ok(found) => {
                if let Some(agent) = found.into_inner().agent {
                    return Ok(agent);
                }
            }
            Err(status) if status.code() == tonic::Code::NotFound => {}
            Err(status) => return Err(refused(status)),
        }
    }
    list(client, String::new(), true)
        .await?
        .into_iter()
        .find(|agent| agent.name == key)
        .with_context(|| format!("agent {key} not found"))
}

/// Returns the bundle as the local commands print it; secrets appear only as ids and times.
fn describe(agent: Option<&pb::AgentBundle>) -> Value {
    use pb::agent_authentication::Method;
    let Some(agent) = agent else {
        return Value::Null;
    };
    let method = agent
        .authentication
        .as_ref()
        .and_then(|auth| auth.method.as_ref());
    let secrets = match method {
        Some(Method::ClientSecret(secrets)) => secrets
            .secrets
            .iter()
            .map(|secret| {
                json!({
                    "secret_id": secret.secret_id,
                    "created_at": seconds(secret.created_at.as_ref()),
                    "expires_at": seconds(secret.expires_at.as_ref()),
                })
            })
            .collect(),
        _ => Vec::new(),
    };
    json!({
        "bundle_id": agent.bundle_id,
        "client_id": agent.client_id,
        "name": agent.name,
        "description": agent.description,
        "owner": agent.owner_member_id,
        "virtual_servers": agent.virtual_servers,
        "scopes": agent.scopes,
        "token_endpoint_auth_method": match method {
            Some(Method::PrivateKeyJwt(_)) => "private_key_jwt",
            Some(Method::WorkloadIdentity(_)) => "workload_identity",
            _ => "client_secret_basic",
        },
        "state": if agent.state() == pb::AgentState::Decommissioned { "decommissioned" } else { "active" },
        "created_at": seconds(agent.created_at.as_ref()),
        "rotated_at": seconds(agent.rotated_at.as_ref()),
        "last_used_at": seconds(agent.last_used_at.as_ref()),
        "decommissioned_at": seconds(agent.decommissioned_at.as_ref()),
        "secrets": secrets,
    })
}

fn seconds(at: Option<&prost_types::Timestamp>) -> Option<i64> {
    at.map(|at| at.seconds)
}
