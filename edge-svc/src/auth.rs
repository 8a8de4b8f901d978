//! The bearer-token seam in front of every virtual server.
//!
//! A virtual server with `auth: none` is open (development and the conformance run only). Every
//! other one requires a token that a [`TokenVerifier`] accepts; until the authorization server
//! provides a verifier, no token is accepted and every request gets the RFC 6750 challenge —
//! the gateway fails closed rather than open.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::spec::AuthMode;

/// The authenticated caller, inserted into request extensions for the MCP handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// Nobody authenticated: the virtual server runs with `auth: none`.
    Anonymous,
    /// A verified bearer token's subject and client.
    Token {
        /// The member (`sub`), when a human is involved.
        subject: Option<String>,
        /// The OAuth client (`client_id`), the agent or app acting.
        client_id: String,
    },
}

/// Why a bearer token was refused (the text is safe to show: it never contains the token).
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The token is malformed, expired, revoked or for another audience.
    #[error("{0}")]
    Invalid(&'static str),
}

/// Checks bearer tokens for one virtual server; filled by the authorization issue.
pub trait TokenVerifier: Send + Sync + std::fmt::Debug + 'static {
    /// Returns the caller a token proves, or why it does not.
    fn verify(&self, virtual_server: &str, token: &str) -> Result<Caller, TokenError>;
}

/// The per-virtual-server authentication policy applied before the MCP handler.
#[derive(Debug, Clone)]
pub struct Gate {
    virtual_server: String,
    mode: AuthMode,
    verifier: Option<Arc<dyn TokenVerifier>>,
    resource_metadata: String,
}

impl Gate {
    /// Creates the gate for a virtual server; `resource_metadata` is its RFC 9728 metadata URL.
    pub fn new(
        virtual_server: String,
        mode: AuthMode,
        verifier: Option<Arc<dyn TokenVerifier>>,
        resource_metadata: String,
    ) -> Self {
        Self {
            virtual_server,
            mode,
            verifier,
            resource_metadata,
        }
    }

    /// Admits the request with its caller attached, or answers the challenge itself.
    pub fn admit(&self, mut request: Request<Body>) -> Result<Request<Body>, Box<Response>> {
        let caller = match self.mode {
            AuthMode::None => Caller::Anonymous,
            AuthMode::Oauth => self.authenticate(&request)?,
        };
        request.extensions_mut().insert(caller);
        Ok(request)
    }

    fn authenticate(&self, request: &Request<Body>) -> Result<Caller, Box<Response>> {
        let header = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok());
        let Some(token) = header
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return Err(self.challenge(None));
        };
        let Some(verifier) = &self.verifier else {
            return Err(self.challenge(Some("this gateway has no token verifier configured")));
        };
        verifier
            .verify(&self.virtual_server, token)
            .map_err(|error| self.challenge(Some(&error.to_string())))
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
        Box::new(response)
    }
}

#[cfg(test)]
mod tests;
