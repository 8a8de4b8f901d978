//! `POST /register`: RFC 7591 dynamic client registration.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret as _;
use serde_json::json;

use super::{OAuthError, no_store};
use crate::client::ClientRegistration;
use crate::state::AuthzState;

/// Registers a client and answers with its metadata and, once, its secret.
pub(super) async fn register(State(state): State<AuthzState>, body: Bytes) -> Response {
    let request: ClientRegistration = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => {
            return OAuthError::new(
                "invalid_client_metadata",
                "the body is not a client metadata object",
            )
            .into_response();
        }
    };
    let registered = match state.register_client(request).await {
        Ok(Ok(registered)) => registered,
        Ok(Err(refusal)) => {
            return OAuthError::new(refusal.error, refusal.description).into_response();
        }
        Err(error) => return OAuthError::from(error).into_response(),
    };
    let client = &registered.client;
    let mut body = json!({
        "client_id": client.client_id,
        "client_id_issued_at": client.created_at,
        "client_name": client.client_name,
        "redirect_uris": client.redirect_uris,
        "grant_types": client.grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": client.auth_method,
        "application_type": client.application_type,
    });
    if let Some(secret) = &registered.client_secret {
        body["client_secret"] = json!(secret.expose_secret());
        body["client_secret_expires_at"] = json!(0);
    }
    (StatusCode::CREATED, no_store(), Json(body)).into_response()
}
