//! RFC 8414 authorization server metadata (also served as OIDC discovery) and the JWKS.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use crate::state::AuthzState;

/// Serves the authorization server metadata.
pub(super) async fn metadata(State(state): State<AuthzState>) -> impl IntoResponse {
    Json(document(&state))
}

/// Serves the published signing keys; caches may keep them briefly.
pub(super) async fn jwks(State(state): State<AuthzState>) -> impl IntoResponse {
    (
        [(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        )],
        Json(state.jwks()),
    )
}

fn document(state: &AuthzState) -> Value {
    let issuer = &state.issuer;
    // Agent bundles use client credentials and token exchange whatever registration allows.
    let mut grant_types = vec![
        "authorization_code",
        "refresh_token",
        "client_credentials",
        crate::client::TOKEN_EXCHANGE,
    ];
    if !state.config.enterprise_idps.is_empty() {
        grant_types.push(crate::client::JWT_BEARER);
    }
    json!({
        "issuer": issuer.issuer,
        "authorization_endpoint": issuer.endpoint("/authorize"),
        "token_endpoint": issuer.endpoint("/token"),
        "registration_endpoint": issuer.endpoint("/register"),
        "revocation_endpoint": issuer.endpoint("/revoke"),
        "introspection_endpoint": issuer.endpoint("/introspect"),
        "jwks_uri": issuer.endpoint("/jwks.json"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": grant_types,
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["ES256", "RS256", "EdDSA"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
        "client_id_metadata_document_supported": state.config.client_metadata_documents.enabled,
        "scopes_supported": issuer.all_scopes(),
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}
