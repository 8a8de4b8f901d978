//! RFC 8693 token exchange for agent bundles: from a Gatehouse access token (the
//! subject), a token for one of the agent's virtual servers, scopes narrowed only, with
//! `act` naming the agent on top of any earlier actors.
//!
//! Which subject tokens an agent may exchange: those whose audience is one of its own
//! virtual servers (tokens presented to what the agent serves), and, when the subject
//! token carries `may_act`, only if it names the agent.

use axum::response::Response;
use serde_json::{Value, json};

use super::agent::{allowed_resource, allowed_scopes, down_scope};
use super::token_response;
use crate::client::TOKEN_EXCHANGE;
use crate::config::MAX_AGENT_TOKEN_TTL;
use crate::oauth::caller::AuthenticatedAgent;
use crate::oauth::{OAuthError, Params};
use crate::state::AuthzState;
use crate::token::{ACCESS_TOKEN_TYPE_URI, AccessClaims, TokenRequest, now};

/// Bounds a delegation chain: a token may carry at most this many nested actors.
pub(crate) const MAX_ACT_DEPTH: usize = 4;

/// Exchanges the subject token for a token of the requested virtual server.
pub(super) async fn exchange(
    state: &AuthzState,
    caller: &AuthenticatedAgent,
    params: &Params,
) -> Result<Response, OAuthError> {
    let agent = &caller.agent;
    let subject_token = params.require("subject_token", "subject_token is required")?;
    let subject_type = params.require("subject_token_type", "subject_token_type is required")?;
    if subject_type != ACCESS_TOKEN_TYPE_URI {
        return Err(OAuthError::invalid_request(
            "unsupported subject_token_type",
        ));
    }
    if params
        .get("requested_token_type")
        .is_some_and(|kind| kind != ACCESS_TOKEN_TYPE_URI)
    {
        return Err(OAuthError::invalid_request(
            "unsupported requested_token_type",
        ));
    }
    let actor_token = match (params.get("actor_token"), params.get("actor_token_type")) {
        (Some(token), Some(ACCESS_TOKEN_TYPE_URI)) => Some(token),
        (Some(_), Some(_)) => {
            return Err(OAuthError::invalid_request("unsupported actor_token_type"));
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type is required with actor_token",
            ));
        }
        (None, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "actor_token_type without actor_token",
            ));
        }
        (None, None) => None,
    };
    let target = target(params)?;
    let subject = state
        .verify_access_token(subject_token)
        .await?
        .ok_or_else(|| invalid_grant("subject_token is invalid, expired or revoked"))?;
    if let Some(actor_token) = actor_token {
        let actor = state
            .verify_access_token(actor_token)
            .await?
            .ok_or_else(|| invalid_grant("actor_token is invalid, expired or revoked"))?;
        if actor.client_id != agent.client_id || actor.sub != agent.client_id {
            return Err(invalid_grant(
                "actor_token does not name the authenticated agent",
            ));
        }
    }
    let subject_resource = state.issuer.resource(&subject.aud);
    if !subject_resource.is_some_and(|resource| agent.virtual_servers.contains(&resource.name)) {
        return Err(invalid_grant(
            "subject_token was not issued for this agent's virtual servers",
        ));
    }
    if let Some(may_act) = &subject.may_act
        && !names(may_act, &agent.agent_id, &agent.client_id)
    {
        return Err(invalid_grant(
            "subject_token's may_act does not name this agent",
        ));
    }
    let act = delegation(&subject, &agent.agent_id, &agent.client_id)?;
    let resource = allowed_resource(state, agent, target)?;
    let allowed: Vec<String> = allowed_scopes(agent, &resource)
        .into_iter()
        .filter(|scope| subject.scope.split_whitespace().any(|held| held == scope))
        .collect();
    let scope = match params.get("scope") {
        Some(requested) => down_scope(requested, &allowed)?,
        None => allowed.join(" "),
    };
    let remaining = u64::try_from(subject.exp.saturating_sub(now())).unwrap_or(0);
    let ttl = state
        .config
        .access_token_ttl
        .min(MAX_AGENT_TOKEN_TTL)
        .min(std::time::Duration::from_secs(remaining));
    if ttl.is_zero() {
        return Err(invalid_grant("subject_token is expired"));
    }
    let request = TokenRequest {
        subject: &subject.sub,
        audience: &resource.url,
        client_id: &agent.client_id,
        scope: &scope,
        // Revoking the subject's grant revokes what was exchanged from it.
        grant: subject.sid.as_deref(),
        ttl,
        not_after: Some(subject.exp),
        groups: &subject.groups,
        act: Some(act),
        agent: None,
    };
    state.agents.used(agent).await?;
    let mut principal = crate::events::agent(agent, caller.method);
    principal.member = crate::events::member(&subject.sub, &subject.client_id).member;
    token_response(state, &request, None, TOKEN_EXCHANGE, principal)
}

fn invalid_grant(description: &'static str) -> OAuthError {
    OAuthError::new("invalid_grant", description)
}

/// Returns the requested target: `resource` (a URL) or `audience` (taken as a resource
/// URL too); both at once is ambiguous.
fn target(params: &Params) -> Result<Option<&str>, OAuthError> {
    match (params.get("resource"), params.get("audience")) {
        (Some(resource), Some(audience)) if resource != audience => Err(OAuthError::new(
            "invalid_target",
            "resource and audience name different targets",
        )),
        (Some(target), _) | (None, Some(target)) => Ok(Some(target)),
        (None, None) => Ok(None),
    }
}

/// Returns the `act` claim naming the agent, with the subject's own chain nested inside.
pub(crate) fn delegation(
    subject: &AccessClaims,
    agent_id: &str,
    client_id: &str,
) -> Result<Value, OAuthError> {
    if depth(subject.act.as_ref()) >= MAX_ACT_DEPTH {
        return Err(OAuthError::invalid_request(
            "the delegation chain is too long",
        ));
    }
    let mut act = json!({ "sub": agent_id, "client_id": client_id });
    if let Some(earlier) = &subject.act {
        act["act"] = earlier.clone();
    }
    Ok(act)
}

fn depth(act: Option<&Value>) -> usize {
    let mut depth = 0;
    let mut current = act;
    while let Some(actor) = current {
        depth += 1;
        current = actor.get("act");
    }
    depth
}

/// Reports whether a `may_act` claim names the agent (by `sub` or `client_id`).
fn names(may_act: &Value, agent_id: &str, client_id: &str) -> bool {
    may_act.get("sub").and_then(Value::as_str) == Some(agent_id)
        || may_act.get("client_id").and_then(Value::as_str) == Some(client_id)
}
