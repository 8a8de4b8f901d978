//! `POST /token`: authorization code (PKCE), refresh token rotation with reuse
//! detection, client credentials (registered clients and agent bundles) and RFC 8693
//! token exchange.

use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::caller::{Caller, authenticate_caller};
use super::{OAuthError, Params, no_store};
use crate::client::{
    AUTHORIZATION_CODE, CLIENT_CREDENTIALS, JWT_BEARER, REFRESH_TOKEN, TOKEN_EXCHANGE,
};
use crate::config::MAX_AGENT_TOKEN_TTL;
use crate::grant::{hash_token, scopes_within, verify_pkce};
use crate::keys::random_token;
use crate::state::AuthzState;
use crate::store::{ClientRecord, FamilyRecord, NewRefresh, Redemption};
use crate::token::{TokenRequest, now};

mod agent;
mod exchange;
mod identity_assertion;

/// Serves the token endpoint.
pub(super) async fn token(
    State(state): State<AuthzState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut grant = "other";
    let answer = exchange(&state, &headers, &body, &mut grant).await;
    crate::metrics::token_answered(grant, answer.as_ref().err().map(|error| error.error));
    match answer {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// Answers a token request; `grant` is set to its grant type's metric label once it is known.
async fn exchange(
    state: &AuthzState,
    headers: &HeaderMap,
    body: &[u8],
    grant: &mut &'static str,
) -> Result<Response, OAuthError> {
    let params = Params::parse(body)?;
    let grant_type = params
        .require("grant_type", "grant_type is required")?
        .to_owned();
    *grant = crate::metrics::grant_label(&grant_type);
    let caller = authenticate_caller(state, headers, &params).await?;
    if !matches!(
        grant_type.as_str(),
        AUTHORIZATION_CODE | REFRESH_TOKEN | CLIENT_CREDENTIALS | TOKEN_EXCHANGE | JWT_BEARER
    ) {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            "the grant type is not supported",
        ));
    }
    let client = match caller {
        Caller::Agent(agent) => {
            return match grant_type.as_str() {
                CLIENT_CREDENTIALS => agent::client_credentials(state, &agent, &params).await,
                TOKEN_EXCHANGE => exchange::exchange(state, &agent, &params).await,
                _ => Err(OAuthError::new(
                    "unauthorized_client",
                    "agents may use client_credentials and token exchange only",
                )),
            };
        }
        Caller::Client(client) => client,
    };
    if !client.allows_grant(&grant_type) {
        return Err(OAuthError::new(
            "unauthorized_client",
            "the client may not use this grant type",
        ));
    }
    match grant_type.as_str() {
        AUTHORIZATION_CODE => authorization_code(state, &client, &params).await,
        REFRESH_TOKEN => refresh_token(state, &client, &params).await,
        JWT_BEARER => identity_assertion::jwt_bearer(state, &client, &params).await,
        _ => client_credentials(state, &client, &params),
    }
}

async fn authorization_code(
    state: &AuthzState,
    client: &ClientRecord,
    params: &Params,
) -> Result<Response, OAuthError> {
    let code = params.require("code", "code is required")?;
    let verifier = params.require("code_verifier", "code_verifier is required (PKCE)")?;
    let hash = hash_token(code);
    let invalid = || {
        OAuthError::new(
            "invalid_grant",
            "the code is invalid, expired, spent or not issued to this client",
        )
    };
    let record = state.store.code(&hash).await?.ok_or_else(invalid)?;
    if record.client_id != client.client_id {
        return Err(invalid());
    }
    if !record.used {
        if params
            .get("redirect_uri")
            .is_some_and(|uri| uri != record.redirect_uri)
        {
            return Err(OAuthError::new(
                "invalid_grant",
                "redirect_uri differs from the authorization request",
            ));
        }
        if params
            .get("resource")
            .is_some_and(|resource| resource != record.resource)
        {
            return Err(OAuthError::new(
                "invalid_target",
                "resource differs from the authorization request",
            ));
        }
        if !verify_pkce(verifier, &record.code_challenge) {
            return Err(OAuthError::new(
                "invalid_grant",
                "code_verifier does not match the code challenge",
            ));
        }
    }
    let refresh = random_token()?;
    let successor = new_refresh(state, &refresh);
    match state.store.redeem_code(&hash, &successor, now()).await? {
        Redemption::Redeemed(family) => {
            grant_response(state, &family, Some(&refresh), AUTHORIZATION_CODE).await
        }
        Redemption::Replayed => {
            tracing::warn!(client_id = %client.client_id, grant = %record.family_id, "authorization code replayed: grant revoked");
            state.grant_revoked(&record.family_id).await?;
            Err(invalid())
        }
        Redemption::Invalid => Err(invalid()),
    }
}

async fn refresh_token(
    state: &AuthzState,
    client: &ClientRecord,
    params: &Params,
) -> Result<Response, OAuthError> {
    let presented = params.require("refresh_token", "refresh_token is required")?;
    let hash = hash_token(presented);
    let invalid = || {
        OAuthError::new(
            "invalid_grant",
            "the refresh token is invalid, expired or revoked",
        )
    };
    // Checked before spending: a token presented by the wrong client must not burn it.
    let owner = state.store.refresh_family(&hash, now()).await?;
    if owner
        .as_ref()
        .is_some_and(|family| family.client_id != client.client_id)
    {
        return Err(invalid());
    }
    if let Some(family) = &owner {
        check_narrowing(params, family)?;
    }
    let refresh = random_token()?;
    let successor = new_refresh(state, &refresh);
    match state.store.rotate_refresh(&hash, &successor, now()).await? {
        Redemption::Redeemed(mut family) if family.client_id == client.client_id => {
            if let Some(scope) = params.get("scope") {
                scope.clone_into(&mut family.scope);
            }
            grant_response(state, &family, Some(&refresh), REFRESH_TOKEN).await
        }
        Redemption::Replayed => {
            tracing::warn!(client_id = %client.client_id, "refresh token reused: grant revoked");
            if let Some(family) = &owner {
                state.grant_revoked(&family.family_id).await?;
            }
            Err(invalid())
        }
        Redemption::Redeemed(_) | Redemption::Invalid => Err(invalid()),
    }
}

fn check_narrowing(params: &Params, family: &FamilyRecord) -> Result<(), OAuthError> {
    if params
        .get("resource")
        .is_some_and(|resource| resource != family.resource)
    {
        return Err(OAuthError::new(
            "invalid_target",
            "resource differs from the original grant",
        ));
    }
    if params
        .get("scope")
        .is_some_and(|scope| !scopes_within(scope, &family.scope))
    {
        return Err(OAuthError::new(
            "invalid_scope",
            "the scope exceeds the original grant",
        ));
    }
    Ok(())
}

fn client_credentials(
    state: &AuthzState,
    client: &ClientRecord,
    params: &Params,
) -> Result<Response, OAuthError> {
    if !client.is_confidential() {
        return Err(OAuthError::new(
            "unauthorized_client",
            "client credentials need a confidential client",
        ));
    }
    let resource = match params.get("resource") {
        Some(url) => state.issuer.resource(url),
        None => state.issuer.sole(),
    }
    .ok_or_else(|| {
        OAuthError::new(
            "invalid_target",
            "resource is not a protected resource of this server",
        )
    })?;
    let scope = state
        .issuer
        .scope_for(&resource, params.get("scope"))
        .ok_or_else(|| {
            OAuthError::new(
                "invalid_scope",
                "a requested scope is not offered by the resource",
            )
        })?;
    let ttl = state.config.access_token_ttl.min(MAX_AGENT_TOKEN_TTL);
    let request = TokenRequest {
        subject: &client.client_id,
        audience: &resource.url,
        client_id: &client.client_id,
        scope: &scope,
        grant: None,
        ttl,
        not_after: None,
        groups: &[],
        act: None,
        agent: None,
    };
    let principal = crate::events::client(&client.client_id);
    token_response(state, &request, None, CLIENT_CREDENTIALS, principal)
}

fn new_refresh(state: &AuthzState, token: &str) -> NewRefresh {
    let ttl = i64::try_from(state.config.refresh_token_ttl.as_secs()).unwrap_or(i64::MAX);
    NewRefresh {
        token_hash: hash_token(token),
        expires_at: now().saturating_add(ttl),
    }
}

async fn grant_response(
    state: &AuthzState,
    family: &FamilyRecord,
    refresh: Option<&str>,
    grant_type: &str,
) -> Result<Response, OAuthError> {
    let groups = state.member_groups(&family.subject).await?;
    let request = TokenRequest {
        subject: &family.subject,
        audience: &family.resource,
        client_id: &family.client_id,
        scope: &family.scope,
        grant: Some(&family.family_id),
        ttl: state.config.access_token_ttl,
        not_after: None,
        groups: &groups,
        act: None,
        agent: None,
    };
    let principal = crate::events::member(&family.subject, &family.client_id);
    token_response(state, &request, refresh, grant_type, principal)
}

/// Mints, audits and answers the token `request` describes.
fn token_response(
    state: &AuthzState,
    request: &TokenRequest<'_>,
    refresh: Option<&str>,
    grant_type: &str,
    principal: proto::common::v1::Principal,
) -> Result<Response, OAuthError> {
    // A token the audit trail cannot show is not issued (fail closed, like edge's calls).
    let (access_token, claims) = match state.issue(request, grant_type, principal) {
        Ok(issued) => issued,
        Err(crate::error::Error::AuditUnavailable) => {
            return Err(OAuthError::new(
                "temporarily_unavailable",
                "try again later",
            ));
        }
        Err(error) => return Err(error.into()),
    };
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": Duration::from_secs(u64::try_from(claims.exp - claims.iat).unwrap_or(0)).as_secs(),
        "scope": claims.scope,
    });
    if let Some(refresh) = refresh {
        body["refresh_token"] = json!(refresh);
    }
    if grant_type == TOKEN_EXCHANGE {
        body["issued_token_type"] = json!(crate::token::ACCESS_TOKEN_TYPE_URI);
    }
    Ok((no_store(), Json(body)).into_response())
}
