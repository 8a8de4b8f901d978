//! Client credentials for agent bundles: `sub` is the agent's client id (RFC 9068 §2.2)
//! with the bundle named in the `agent` claim, the audience one of its virtual servers,
//! the scope within what the bundle and the virtual server allow.

use axum::response::Response;

use super::token_response;
use crate::client::CLIENT_CREDENTIALS;
use crate::config::MAX_AGENT_TOKEN_TTL;
use crate::issuer::ProtectedResource;
use crate::oauth::caller::AuthenticatedAgent;
use crate::oauth::{OAuthError, Params};
use crate::state::AuthzState;
use crate::store::AgentRecord;
use crate::token::{AgentClaim, TokenRequest};

/// Issues an agent's access token for the requested (or its only) virtual server.
pub(super) async fn client_credentials(
    state: &AuthzState,
    caller: &AuthenticatedAgent,
    params: &Params,
) -> Result<Response, OAuthError> {
    let agent = &caller.agent;
    let resource = allowed_resource(state, agent, params.get("resource"))?;
    let allowed = allowed_scopes(agent, &resource);
    let scope = match params.get("scope") {
        // Scopes only another resource declares are dropped, as for registered clients
        // (RFC 6749 §3.3; MCP SDKs fall back to the server-wide scopes_supported).
        Some(requested) => {
            let declared = state
                .issuer
                .scope_for(&resource, Some(requested))
                .ok_or_else(|| {
                    OAuthError::new(
                        "invalid_scope",
                        "a requested scope is not offered by the resource",
                    )
                })?;
            down_scope(&declared, &allowed)?
        }
        None => allowed.join(" "),
    };
    let request = TokenRequest {
        subject: &agent.client_id,
        audience: &resource.url,
        client_id: &agent.client_id,
        scope: &scope,
        grant: None,
        ttl: state.config.access_token_ttl.min(MAX_AGENT_TOKEN_TTL),
        not_after: None,
        groups: &[],
        act: None,
        agent: Some(AgentClaim {
            id: agent.agent_id.clone(),
            name: agent.name.clone(),
            owner: Some(agent.owner.clone()).filter(|owner| !owner.is_empty()),
            method: policy::AuthenticationMethod::from(caller.method)
                .as_str()
                .to_owned(),
            quota: quota(agent),
        }),
    };
    state.agents.used(agent).await?;
    let principal = crate::events::agent(agent, caller.method);
    token_response(state, &request, None, CLIENT_CREDENTIALS, principal)
}

/// Returns the bundle's own budget; one stored before quotas were checked on write and
/// unreadable now is left out of the token (and said in the log) rather than refusing the agent.
fn quota(agent: &AgentRecord) -> Option<crate::agent::AgentQuota> {
    crate::agent::parse_quota(&agent.quotas).unwrap_or_else(|error| {
        tracing::warn!(agent_id = %agent.agent_id, %error, "agent quota ignored");
        None
    })
}

/// Returns the protected resource at `requested` (or the agent's only virtual server)
/// when the agent may use it; anything else is `invalid_target`.
pub(super) fn allowed_resource(
    state: &AuthzState,
    agent: &AgentRecord,
    requested: Option<&str>,
) -> Result<ProtectedResource, OAuthError> {
    let resource = match requested {
        Some(url) => state.issuer.resource(url),
        None => match agent.virtual_servers.as_slice() {
            [only] => state.issuer.named(only),
            _ => None,
        },
    };
    resource
        .filter(|resource| agent.virtual_servers.contains(&resource.name))
        .ok_or_else(|| {
            OAuthError::new(
                "invalid_target",
                "resource is not a virtual server this agent may use",
            )
        })
}

/// Returns the scopes the agent may hold at `resource`: its own, as far as the resource declares them.
pub(super) fn allowed_scopes(agent: &AgentRecord, resource: &ProtectedResource) -> Vec<String> {
    agent
        .scopes
        .iter()
        .filter(|scope| resource.scopes.contains(scope))
        .cloned()
        .collect()
}

/// Returns `requested` when every scope in it is in `allowed` (down-scoping only).
pub(super) fn down_scope(requested: &str, allowed: &[String]) -> Result<String, OAuthError> {
    let mut scopes: Vec<&str> = requested.split_whitespace().collect();
    if scopes
        .iter()
        .any(|scope| !allowed.iter().any(|allowed| allowed == scope))
    {
        return Err(OAuthError::new(
            "invalid_scope",
            "a requested scope is not granted to this agent",
        ));
    }
    scopes.dedup();
    Ok(scopes.join(" "))
}
