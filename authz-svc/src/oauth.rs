//! The HTTP face of the authorization server: metadata, JWKS, authorize, token,
//! register, revoke and introspect, all relative to the issuer's origin root.

use std::borrow::Cow;
use std::collections::HashMap;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use crate::error::Error;
use crate::state::AuthzState;
use crate::store::ClientRecord;

mod assertion;
mod authorize;
mod caller;
mod consent;
mod federation;
mod metadata;
mod register;
mod revocation;
mod session;
mod token;

/// Caps request bodies: OAuth requests are small.
const BODY_LIMIT: usize = 64 * 1024;

pub(crate) use federation::{PendingLogins, pending_logins};

/// Returns the router of every OAuth endpoint, paths relative to the origin root.
pub fn oauth_router(state: AuthzState) -> Router {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata::metadata),
        )
        .route("/.well-known/openid-configuration", get(metadata::metadata))
        .route("/jwks.json", get(metadata::jwks))
        .route("/authorize", get(authorize::show).post(authorize::decide))
        .route(federation::CALLBACK_PATH, get(federation::callback))
        .route("/token", post(token::token))
        .route("/register", post(register::register))
        .route("/revoke", post(revocation::revoke))
        .route("/introspect", post(revocation::introspect))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Is an RFC 6749 §5.2 error response.
#[derive(Debug)]
pub(crate) struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: Cow<'static, str>,
    basic_challenge: bool,
}

impl OAuthError {
    pub(crate) fn new(error: &'static str, description: impl Into<Cow<'static, str>>) -> Self {
        let status = match error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        Self {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
        }
    }

    pub(crate) fn invalid_request(description: &'static str) -> Self {
        Self::new("invalid_request", description)
    }

    fn with_basic_challenge(mut self) -> Self {
        self.basic_challenge = true;
        self
    }
}

impl From<Error> for OAuthError {
    fn from(error: Error) -> Self {
        tracing::error!(
            error = &error as &dyn std::error::Error,
            "oauth request failed"
        );
        Self::new("server_error", "internal error")
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        let mut response = (self.status, no_store(), axum::Json(body)).into_response();
        if self.basic_challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"gatehouse\", charset=\"UTF-8\""),
            );
        }
        response
    }
}

/// Returns the headers that keep token responses out of caches.
pub(crate) fn no_store() -> [(header::HeaderName, HeaderValue); 2] {
    [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        (header::PRAGMA, HeaderValue::from_static("no-cache")),
    ]
}

/// Holds form or query parameters, each present at most once (RFC 6749 §3.1).
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    /// Returns the parameters of a form body or query string; a repeated
    /// parameter is `invalid_request`.
    pub(crate) fn parse(encoded: &[u8]) -> Result<Self, OAuthError> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(encoded)
            .map_err(|_| OAuthError::invalid_request("malformed form encoding"))?;
        let mut map = HashMap::with_capacity(pairs.len());
        for (name, value) in pairs {
            if map.insert(name, value).is_some() {
                return Err(OAuthError::invalid_request("a parameter is repeated"));
            }
        }
        Ok(Self(map))
    }

    /// Returns the non-empty value of `name` (an empty value counts as absent).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    /// Returns the value of `name`, or `invalid_request` naming it.
    pub(crate) fn require(&self, name: &str, missing: &'static str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(missing))
    }
}

/// Returns the client that authenticated the request: HTTP Basic, `client_secret`
/// in the body, or a public client naming itself with `client_id`.
pub(crate) async fn authenticate_client(
    state: &AuthzState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<ClientRecord, OAuthError> {
    if let Some(authorization) = headers.get(header::AUTHORIZATION) {
        if params.get("client_secret").is_some() {
            return Err(OAuthError::invalid_request(
                "more than one client authentication method",
            ));
        }
        let (client_id, secret) = basic_credentials(authorization).ok_or_else(|| {
            OAuthError::new("invalid_client", "malformed basic credentials").with_basic_challenge()
        })?;
        if params.get("client_id").is_some_and(|id| id != client_id) {
            return Err(OAuthError::invalid_request(
                "client_id differs from the authenticated client",
            ));
        }
        return confidential(state, &client_id, &secret)
            .await?
            .ok_or_else(|| {
                OAuthError::new("invalid_client", "client authentication failed")
                    .with_basic_challenge()
            });
    }
    let client_id = params.require("client_id", "client_id is required")?;
    if let Some(secret) = params.get("client_secret") {
        return confidential(state, client_id, secret)
            .await?
            .ok_or_else(|| OAuthError::new("invalid_client", "client authentication failed"));
    }
    match state.client(client_id).await? {
        Ok(client) if !client.is_confidential() => Ok(client),
        // A metadata document that cannot be used is a client that cannot authenticate.
        Err(refusal) if crate::client::is_document_url(client_id) => {
            Err(OAuthError::new("invalid_client", refusal.description))
        }
        _ => Err(OAuthError::new(
            "invalid_client",
            "client authentication failed",
        )),
    }
}

async fn confidential(
    state: &AuthzState,
    client_id: &str,
    secret: &str,
) -> Result<Option<ClientRecord>, Error> {
    let client = match state.known_clients.get(client_id).await {
        Some(client) => Some(client),
        None => {
            let client = state.store.client(client_id).await?;
            if let Some(client) = &client {
                state
                    .known_clients
                    .insert(client_id.to_owned(), client.clone())
                    .await;
            }
            client
        }
    };
    Ok(client.filter(|client| {
        client
            .secret_hash
            .as_deref()
            .is_some_and(|stored| state.secrets.verify(secret, stored))
    }))
}

/// Returns the client id and secret of an HTTP Basic header, form-decoded (RFC 6749 §2.3.1).
pub(super) fn basic_credentials(value: &HeaderValue) -> Option<(String, String)> {
    let encoded = value.to_str().ok()?.strip_prefix("Basic ")?;
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let id = form_decode(id)?;
    let secret = form_decode(secret)?;
    (!id.is_empty()).then_some((id, secret))
}

fn form_decode(value: &str) -> Option<String> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(&format!("v={value}")).ok()?;
    pairs.into_iter().next().map(|(_, value)| value)
}
