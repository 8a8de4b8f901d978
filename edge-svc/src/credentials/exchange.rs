//! Tokens for `token_exchange` connectors, minted by authz-svc: an RFC 8693 exchange of the
//! caller's own access token per call, and the gateway's own token for catalogue reads.

use std::time::SystemTime;

use proto::authz::v1 as pb;
use proto::common::v1 as common;
use svc_kit::callers::PresentToken;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use super::{CredentialError, Material, Released, Secret};
use crate::auth::Caller;

/// The authz-svc client edge uses for exchanges, authenticated by edge's service token.
pub type AuthzClient = pb::authz_client::AuthzClient<InterceptedService<Channel, PresentToken>>;

/// The access token a caller presented, with its id: what an exchange starts from.
#[derive(Debug, Clone)]
pub struct CallerToken {
    /// The bearer token itself (a secret).
    pub token: Secret,
    /// Its `jti`: exchanged tokens are reused per caller token, never across two.
    pub token_id: String,
}

/// Asks authz-svc for connector tokens; cheap to clone.
#[derive(Clone)]
pub struct Exchanger {
    client: AuthzClient,
}

impl CallerToken {
    /// Reads the bearer token of a request the gate let through (`None` for anonymous callers).
    pub fn of(parts: &http::request::Parts) -> Option<Self> {
        let Some(Caller::Token(claims)) = parts.extensions.get::<Caller>() else {
            return None;
        };
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)?
            .to_str()
            .ok()?;
        let (scheme, token) = token.split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| Self {
            token: Secret::from(token.trim().to_owned()),
            token_id: claims.token_id.clone(),
        })
    }
}

impl Exchanger {
    /// Wraps a client of authz-svc's data-plane API.
    pub fn new(client: AuthzClient) -> Self {
        Self { client }
    }

    /// Exchanges `caller`'s token for one whose audience is `connector` (RFC 8693).
    pub(super) async fn exchange(
        &self,
        caller: &CallerToken,
        connector: &str,
        trace_id: &str,
    ) -> Result<Released, CredentialError> {
        let request = pb::ExchangeTokenRequest {
            subject_token: Some(common::Secret {
                value: caller.token.expose().to_owned(),
            }),
            connector: connector.to_owned(),
            audience: String::new(),
            scopes: Vec::new(),
            metadata: Some(metadata(trace_id)),
        };
        let response = self
            .client
            .clone()
            .exchange_token(request)
            .await
            .map_err(|status| classify(status, connector))?;
        released(response.into_inner())
    }

    /// Returns the gateway's own token for reading `connector`'s catalogue.
    pub(super) async fn catalogue(
        &self,
        connector: &str,
        trace_id: &str,
    ) -> Result<Released, CredentialError> {
        let request = pb::IssueCatalogueTokenRequest {
            connector: connector.to_owned(),
            metadata: Some(metadata(trace_id)),
        };
        let response = self
            .client
            .clone()
            .issue_catalogue_token(request)
            .await
            .map_err(|status| classify(status, connector))?;
        released(response.into_inner())
    }
}

impl std::fmt::Debug for Exchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exchanger").finish_non_exhaustive()
    }
}

fn metadata(trace_id: &str) -> common::RequestMetadata {
    common::RequestMetadata {
        trace_id: trace_id.to_owned(),
        ..common::RequestMetadata::default()
    }
}

/// Maps authz-svc's `ExchangeToken` codes (see `authz.proto`) onto edge's reasons: a
/// connector authz-svc does not exchange for is set up wrongly, a caller it refuses cannot
/// use the connector.
fn classify(status: tonic::Status, connector: &str) -> CredentialError {
    match status.code() {
        tonic::Code::NotFound => CredentialError::NotFound(connector.to_owned()),
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            CredentialError::Refused(connector.to_owned())
        }
        _ => CredentialError::Unavailable(status),
    }
}

fn released(response: pb::ExchangeTokenResponse) -> Result<Released, CredentialError> {
    let token = response
        .access_token
        .map(|secret| secret.value)
        .filter(|token| !token.is_empty())
        .ok_or(CredentialError::Malformed("empty exchanged token"))?;
    let expires_at = response
        .expires_at
        .and_then(|at| SystemTime::try_from(at).ok())
        .ok_or(CredentialError::Malformed("exchanged token without expiry"))?;
    Ok(Released {
        credential_id: response.jti,
        version: 0,
        material: Material::Bearer(Secret::from(token)),
        expires_at: Some(expires_at),
    })
}
