//! Client assertions (RFC 7523 §2.2, `private_key_jwt`): an agent bundle proves who it
//! is with a short-lived JWT signed by a key it registered, or minted by an external
//! workload issuer it trusts (secretless agents). Each assertion is accepted once.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use proto::common::v1::AuthenticationMethod;
use serde::Deserialize;

use super::caller::AuthenticatedAgent;
use super::{OAuthError, Params};
use crate::agent::subject_matches;
use crate::state::AuthzState;
use crate::store::{AgentAuthentication, AgentRecord};
use crate::token::now;

/// Is the only client assertion type (RFC 7523 §2.2).
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Bounds how long an assertion may live (and how old it may be): five minutes.
const MAX_ASSERTION_AGE: i64 = 300;
/// Tolerates this much clock skew between the signer and us.
const LEEWAY: u64 = 30;
/// Lists the signature algorithms accepted; `none` and HMAC never are.
const ALGORITHMS: [Algorithm; 3] = [Algorithm::ES256, Algorithm::RS256, Algorithm::EdDSA];

#[derive(Debug, Deserialize)]
struct Unverified {
    #[serde(default)]
    iss: String,
}

#[derive(Debug, Deserialize)]
struct AssertionClaims {
    sub: String,
    exp: i64,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    jti: Option<String>,
}

/// What the assertion of one agent must satisfy.
struct Expected<'a> {
    issuer: &'a str,
    method: AuthenticationMethod,
}

fn refused(description: &'static str) -> OAuthError {
    OAuthError::new("invalid_client", description)
}

/// Returns the agent a valid, unreplayed client assertion authenticates.
pub(super) async fn authenticate(
    state: &AuthzState,
    params: &Params,
) -> Result<AuthenticatedAgent, OAuthError> {
    let kind = params.require("client_assertion_type", "client_assertion_type is required")?;
    if kind != ASSERTION_TYPE {
        return Err(OAuthError::invalid_request(
            "unsupported client_assertion_type",
        ));
    }
    let assertion = params.require("client_assertion", "client_assertion is required")?;
    let header = jsonwebtoken::decode_header(assertion)
        .map_err(|_| refused("the client assertion is not a JWT"))?;
    if !ALGORITHMS.contains(&header.alg) {
        return Err(refused("the client assertion algorithm is not accepted"));
    }
    // A private_key_jwt assertion names its client in `iss`; a workload token names its
    // issuer there, so its agent must say `client_id`.
    let client_id = match params.get("client_id") {
        Some(client_id) => client_id.to_owned(),
        None => {
            unverified_issuer(assertion).ok_or_else(|| refused("client authentication failed"))?
        }
    };
    let agent = state
        .agents
        .live(&client_id)
        .await?
        .ok_or_else(|| refused("client authentication failed"))?;
    let (keys, expected) = keys_for(state, &agent, header.kid.as_deref()).await?;
    let claims = verify(state, assertion, &header, &keys, &expected)?;
    match &agent.authentication {
        AgentAuthentication::WorkloadIdentity(issuer)
            if !subject_matches(&issuer.subject_pattern, &claims.sub) =>
        {
            return Err(refused(
                "the workload subject is not trusted for this agent",
            ));
        }
        AgentAuthentication::PrivateKeyJwt { .. }
        | AgentAuthentication::PrivateKeyJwtUri { .. }
            if claims.sub != agent.client_id =>
        {
            return Err(refused("the client assertion sub must be the client_id"));
        }
        _ => {}
    }
    let at = now();
    if claims.exp.saturating_sub(at) > MAX_ASSERTION_AGE
        || claims
            .iat
            .is_some_and(|iat| at.saturating_sub(iat) > MAX_ASSERTION_AGE)
    {
        return Err(refused(
            "the client assertion lives longer than five minutes",
        ));
    }
    let jti = claims
        .jti
        .as_deref()
        .ok_or_else(|| refused("the client assertion has no jti"))?;
    if !state
        .store
        .remember_assertion(
            expected.issuer,
            jti,
            claims.exp.saturating_add(LEEWAY as i64),
            at,
        )
        .await?
    {
        tracing::warn!(client_id = %agent.client_id, "client assertion replayed");
        return Err(refused("the client assertion was used before"));
    }
    let method = expected.method;
    Ok(AuthenticatedAgent { agent, method })
}

fn unverified_issuer(assertion: &str) -> Option<String> {
    let payload = assertion.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: Unverified = serde_json::from_slice(&bytes).ok()?;
    (!claims.iss.is_empty()).then_some(claims.iss)
}

/// Returns the keys that may sign the agent's assertions and what they must say.
async fn keys_for<'a>(
    state: &AuthzState,
    agent: &'a AgentRecord,
    kid: Option<&str>,
) -> Result<(std::sync::Arc<JwkSet>, Expected<'a>), OAuthError> {
    match &agent.authentication {
        AgentAuthentication::PrivateKeyJwt { jwks } => {
            let keys: JwkSet = serde_json::from_value(jwks.clone())
                .map_err(|_| refused("client authentication failed"))?;
            Ok((
                std::sync::Arc::new(keys),
                Expected {
                    issuer: &agent.client_id,
                    method: AuthenticationMethod::PrivateKeyJwt,
                },
            ))
        }
        AgentAuthentication::PrivateKeyJwtUri { jwks_uri } => {
            let keys = state.agent_jwks.get(jwks_uri, kid).await.map_err(|why| {
                tracing::warn!(%why, client_id = %agent.client_id, "agent keys unavailable");
                OAuthError::new(
                    "invalid_client",
                    "the agent's published keys are unavailable",
                )
            })?;
            Ok((
                keys,
                Expected {
                    issuer: &agent.client_id,
                    method: AuthenticationMethod::PrivateKeyJwt,
                },
            ))
        }
        AgentAuthentication::WorkloadIdentity(issuer) => {
            let expected = Expected {
                issuer: &issuer.issuer,
                method: AuthenticationMethod::WorkloadIdentity,
            };
            if let Some(jwks) = &issuer.jwks {
                let keys: JwkSet = serde_json::from_value(jwks.clone())
                    .map_err(|_| refused("client authentication failed"))?;
                return Ok((std::sync::Arc::new(keys), expected));
            }
            let url = issuer
                .jwks_uri
                .as_deref()
                .ok_or_else(|| refused("client authentication failed"))?;
            let mut keys = state.workload_keys.get(url, false).await;
            let unknown = |keys: &JwkSet| kid.is_some_and(|kid| keys.find(kid).is_none());
            if keys.as_ref().is_ok_and(|keys| unknown(keys)) {
                keys = state.workload_keys.get(url, true).await;
            }
            let keys = keys.map_err(|why| {
                tracing::warn!(%why, client_id = %agent.client_id, "workload issuer keys unavailable");
                OAuthError::new("invalid_client", "the workload issuer's keys are unavailable")
            })?;
            Ok((keys, expected))
        }
        AgentAuthentication::ClientSecret => Err(refused("client authentication failed")),
    }
}

fn verify(
    state: &AuthzState,
    assertion: &str,
    header: &jsonwebtoken::Header,
    keys: &JwkSet,
    expected: &Expected<'_>,
) -> Result<AssertionClaims, OAuthError> {
    let jwk = match &header.kid {
        Some(kid) => keys.find(kid),
        None if keys.keys.len() == 1 => keys.keys.first(),
        None => None,
    }
    .ok_or_else(|| refused("no registered key verifies the client assertion"))?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| refused("client authentication failed"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[expected.issuer]);
    let issuer = state.issuer();
    let token_endpoint = state.issuer.endpoint("/token");
    validation.set_audience(&[issuer, token_endpoint.as_str()]);
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    validation.leeway = LEEWAY;
    validation.validate_nbf = true;
    jsonwebtoken::decode::<AssertionClaims>(assertion, &key, &validation)
        .map(|data| data.claims)
        .map_err(|_| refused("the client assertion does not verify"))
}
