//! `POST /revoke` (RFC 7009) and `POST /introspect` (RFC 7662), both for
//! authenticated clients, about their own tokens only.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{OAuthError, Params, authenticate_client, no_store};
use crate::grant::hash_token;
use crate::state::AuthzState;
use crate::token::{self, now};

/// Revokes a refresh token (its whole grant) or an access token; unknown
/// tokens are answered 200 like known ones (no oracle).
pub(super) async fn revoke(
    State(state): State<AuthzState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match revoke_token(&state, &headers, &body).await {
        Ok(()) => (StatusCode::OK, no_store()).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn revoke_token(
    state: &AuthzState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), OAuthError> {
    let params = Params::parse(body)?;
    let client = authenticate_client(state, headers, &params).await?;
    let presented = params.require("token", "token is required")?;
    if let Some(family) = state
        .store
        .refresh_family(&hash_token(presented), now())
        .await?
    {
        if family.client_id == client.client_id {
            state.store.revoke_family(&family.family_id).await?;
            state.grant_revoked(&family.family_id).await?;
            // Revoking the grant withdraws the consent behind it: the next
            // authorization of this client asks the member again.
            state
                .store
                .forget_consent(&family.subject, &client.client_id, &family.resource)
                .await?;
            tracing::info!(client_id = %client.client_id, grant = %family.family_id, "grant revoked");
            record(
                state,
                crate::events::token_revoked(
                    &family.subject,
                    &client.client_id,
                    None,
                    Some(&family.family_id),
                ),
            );
        }
        return Ok(());
    }
    if let Some(claims) = token::verify(&state.keys.load(), state.issuer(), presented)
        && claims.client_id == client.client_id
    {
        state.store.revoke_jti(&claims.jti, claims.exp).await?;
        state.token_revoked(&claims.jti, claims.exp).await?;
        tracing::info!(client_id = %client.client_id, jti = %claims.jti, "access token revoked");
        record(
            state,
            crate::events::token_revoked(&claims.sub, &client.client_id, Some(&claims.jti), None),
        );
    }
    Ok(())
}

/// Records a revocation; the revocation itself already happened and stands either way.
fn record(state: &AuthzState, event: proto::audit::v1::AuditEvent) {
    if let Err(why) = state.audit(event) {
        tracing::error!(%why, "a revocation could not be recorded in the audit trail");
    }
}

/// Tells an authenticated confidential client whether its token is active.
pub(super) async fn introspect(
    State(state): State<AuthzState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match introspection(&state, &headers, &body).await {
        Ok(answer) => (no_store(), Json(answer)).into_response(),
        Err(error) => error.into_response(),
    }
}

async fn introspection(
    state: &AuthzState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Value, OAuthError> {
    let params = Params::parse(body)?;
    let client = authenticate_client(state, headers, &params).await?;
    if !client.is_confidential() {
        return Err(OAuthError::new(
            "invalid_client",
            "introspection needs client authentication",
        ));
    }
    let presented = params.require("token", "token is required")?;
    let inactive = json!({ "active": false });
    if let Some(claims) = state.verify_access_token(presented).await? {
        if claims.client_id != client.client_id {
            return Ok(inactive);
        }
        let mut answer = json!({
            "active": true,
            "token_type": "Bearer",
            "client_id": claims.client_id,
            "sub": claims.sub,
            "aud": claims.aud,
            "iss": claims.iss,
            "jti": claims.jti,
            "iat": claims.iat,
            "exp": claims.exp,
            "scope": claims.scope,
        });
        if let Some(grant) = claims.sid {
            answer["sid"] = json!(grant);
        }
        return Ok(answer);
    }
    match state
        .store
        .refresh_family(&hash_token(presented), now())
        .await?
    {
        Some(family) if family.client_id == client.client_id && !family.revoked => Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "client_id": family.client_id,
            "sub": family.subject,
            "aud": family.resource,
            "iss": state.issuer(),
            "scope": family.scope,
        })),
        _ => Ok(inactive),
    }
}
