//! The bearer-token seam in front of every virtual server.
//!
//! A virtual server with `auth: none` is open (development and the conformance run only). Every
//! other one requires an access token that the [`TokenVerifier`] accepts for that virtual
//! server's resource URL; with no verifier configured every request gets the RFC 6750
//! challenge — the gateway fails closed rather than open.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::access::Access;
use crate::spec::AuthMode;

mod jwt;
mod revocation;
pub mod upstream;

pub use jwt::JwksVerifier;
pub use revocation::Revocations;

/// The authenticated caller, inserted into request extensions for the MCP handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nobody authenticated: the virtual server runs with `auth: none`.
    Anonymous,
    /// A verified access token's identities and grant.
    Token(Box<TokenClaims>),
}

/// What a verified access token says about its holder (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    /// The subject: the member for user tokens, the client for agent tokens.
    pub subject: String,
    /// The OAuth client (`client_id`): the app or agent bundle acting.
    pub client_id: String,
    /// Granted scopes.
    pub scopes: Vec<String>,
    /// The token id, for revocation and audit.
    pub token_id: String,
    /// Expiry, seconds since the Unix epoch.
    pub expires_at: u64,
    /// Issue time (`iat`), seconds since the Unix epoch; a member revocation refuses the
    /// tokens issued at or before it.
    pub issued_at: u64,
    /// The issuer that signed the token.
    pub issuer: String,
    /// The RFC 8693 `act` claim: the agent acting for the subject, when delegated.
    pub act: Option<serde_json::Value>,
    /// The member's groups, as the issuer asserted them.
    pub groups: Vec<String>,
    /// The member's roles, as the issuer asserted them.
    pub roles: Vec<String>,
    /// The grant (refresh family, `sid`) the token belongs to; revoking the grant revokes it.
    pub grant: Option<String>,
    /// The agent bundle, when the token stands for an agent itself (client credentials).
    pub agent: Option<AgentClaim>,
}

/// The issuer's `agent` claim: which bundle a client-credentials token stands for, so the
/// audit record and policy name the bundle and its owner without a lookup per call.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct AgentClaim {
    /// The bundle's stable id.
    pub id: String,
    /// The bundle's administrator-chosen name.
    #[serde(default)]
    pub name: String,
    /// The member accountable for the bundle.
    #[serde(default)]
    pub owner: Option<String>,
    /// How the agent authenticated, as policies name it (`client_secret`, `private_key_jwt`, ...).
    #[serde(default)]
    pub method: String,
    /// The bundle's own budget, charged at every edge.
    #[serde(default)]
    pub quota: Option<AgentQuota>,
}

/// A bundle's own rate limit as its token carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
pub struct AgentQuota {
    /// The sustained rate.
    pub rate: limits::Rate,
    /// Calls allowed at once after a quiet spell.
    #[serde(default = "one")]
    pub burst: u32,
}

fn one() -> u32 {
    1
}

/// Why a bearer token was refused (the text is safe to show: it never contains the token).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is malformed, expired, revoked, for another audience or signed by an unknown key.
    #[error("{0}")]
    Invalid(&'static str),
    /// The token cannot be checked now (the revocation state is stale): retry later.
    #[error("{0}")]
    Unavailable(&'static str),
}

/// Checks access tokens presented to a virtual server.
#[async_trait::async_trait]
pub trait TokenVerifier: Send + Sync + std::fmt::Debug + 'static {
    /// Returns what a token proves when it was issued for `resource` (the virtual server's URL).
    async fn verify(&self, resource: &str, token: &str) -> Result<TokenClaims, TokenError>;
}

/// The per-virtual-server authentication policy applied before the MCP handler.
#[derive(Debug, Clone)]
pub struct Gate {
    resource: String,
    mode: AuthMode,
    verifier: Option<Arc<dyn TokenVerifier>>,
    resource_metadata: String,
    /// The policy and virtual server whose tool scopes are checked before the handler.
    scopes: Option<(Access, String)>,
}

impl Gate {
    /// Creates the gate for the virtual server at `resource`, whose RFC 9728 metadata is at `resource_metadata`.
    pub fn new(
        resource: String,
        mode: AuthMode,
        verifier: Option<Arc<dyn TokenVerifier>>,
        resource_metadata: String,
    ) -> Self {
        Self {
            resource,
            mode,
            verifier,
            resource_metadata,
            scopes: None,
        }
    }

    /// Answers `tools/call` requests that name a tool whose scope the token lacks with the
    /// RFC 6750 `insufficient_scope` challenge (step-up), per `access` for `virtual_server`.
    #[must_use]
    pub fn with_scopes(mut self, access: Access, virtual_server: &str) -> Self {
        self.scopes = Some((access, virtual_server.to_owned()));
        self
    }

    /// Admits the request with its caller attached, or answers the challenge itself.
    pub async fn admit(&self, mut request: Request<Body>) -> Result<Request<Body>, Box<Response>> {
        let caller = match self.mode {
            AuthMode::None => Caller::Anonymous,
            AuthMode::Oauth => {
                // Owned before awaiting: a borrowed request body is not `Sync`, so it cannot cross the await.
                let presented = request
                    .headers()
                    .get(header::AUTHORIZATION)
                    .and_then(|value| value.to_str().ok())
                    .and_then(bearer_token)
                    .map(str::to_owned);
                let claims = self.authenticate(presented.as_deref()).await?;
                if let Some(required) = self.missing_scopes(&request, &claims) {
                    return Err(self.insufficient_scope(&required));
                }
                Caller::Token(Box::new(claims))
            }
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }

    async fn authenticate(&self, presented: Option<&str>) -> Result<TokenClaims, Box<Response>> {
        let Some(token) = presented else {
            return Err(self.challenge(None));
        };
        let Some(verifier) = &self.verifier else {
            return Err(self.challenge(Some("this gateway has no token verifier configured")));
        };
        verifier
            .verify(&self.resource, token)
            .await
            .map_err(|error| match error {
                TokenError::Invalid(reason) => self.challenge(Some(reason)),
                TokenError::Unavailable(reason) => unavailable(reason),
            })
    }

    /// Returns the scopes a `tools/call` named in `Mcp-Name` needs and the token lacks.
    fn missing_scopes(&self, request: &Request<Body>, claims: &TokenClaims) -> Option<Vec<String>> {
        let (access, virtual_server) = self.scopes.as_ref()?;
        let header = |name: &str| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        if header("mcp-method") != Some("tools/call") {
            return None;
        }
        access.missing_scopes(virtual_server, header("mcp-name")?, &claims.scopes)
    }

    /// Builds the 403 step-up challenge naming the scopes to ask for.
    fn insufficient_scope(&self, required: &[String]) -> Box<Response> {
        let value = format!(
            "Bearer error=\"insufficient_scope\", scope=\"{}\", resource_metadata=\"{}\", error_description=\"this tool needs another scope\"",
            required.join(" "),
            self.resource_metadata
        );
        let mut response = (StatusCode::FORBIDDEN, "insufficient scope").into_response();
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Box::new(response)
    }

    /// Builds the 401 with `WWW-Authenticate` pointing at the protected-resource metadata.
    fn challenge(&self, description: Option<&str>) -> Box<Response> {
        let mut value = format!("Bearer resource_metadata=\"{}\"", self.resource_metadata);
        if let Some(description) = description {
            value.push_str(&format!(
                ", error=\"invalid_token\", error_description=\"{description}\""
            ));
        }
        let mut response = (StatusCode::UNAUTHORIZED, "authentication required").into_response();
        if let Ok(value) = HeaderValue::from_str(&value) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        // The refused request's body is never read, so the connection cannot carry another
        // request; saying so lets clients open a fresh one instead of failing on a dead socket.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        Box::new(response)
    }
}

/// Builds the 503 of a token that cannot be checked now: the client should retry, not re-authorize.
fn unavailable(reason: &'static str) -> Box<Response> {
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, reason).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Box::new(response)
}

/// Extracts the token of an RFC 6750 `Authorization: Bearer` header (scheme is case-insensitive).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests;
