//! Access tokens: RFC 9068 JWTs signed with ES256, and their verification for
//! introspection and revocation.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::keys::{KeySet, random_bytes};

/// Is the JOSE `typ` of an RFC 9068 access token.
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";

/// Is the RFC 8693 token type identifier of an access token.
pub const ACCESS_TOKEN_TYPE_URI: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Holds the claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Is the issuer.
    pub iss: String,
    /// Is the member, or the client itself for client credentials (RFC 9068 §2.2).
    pub sub: String,
    /// Is the protected resource (canonical MCP URL).
    pub aud: String,
    /// Identifies the client the token was issued to.
    pub client_id: String,
    /// Is the space-separated scope.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// Identifies this token.
    pub jti: String,
    /// Records when the token was issued (unix seconds).
    pub iat: i64,
    /// Records when the token expires (unix seconds).
    pub exp: i64,
    /// Names the grant (refresh family) the token belongs to; revoking the grant revokes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Lists the member's groups, so that resource servers can decide by group without a lookup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Names the actor (RFC 8693 §4.1) acting for `sub`, nested for delegation chains.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<serde_json::Value>,
    /// Names who may act for `sub` (RFC 8693 §4.4); honoured by token exchange.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub may_act: Option<serde_json::Value>,
    /// Names the agent bundle when the token stands for the agent itself (client credentials).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentClaim>,
}

/// Is Gatehouse's private `agent` claim (RFC 7519 §4.3) on an agent's own token: edges
/// audit and decide by bundle, owner and authentication method without a lookup per call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentClaim {
    /// Is the bundle's stable id.
    pub id: String,
    /// Is the bundle's administrator-chosen name, for records people read.
    pub name: String,
    /// Is the member accountable for the bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// Is how the agent authenticated, named as policies name it (`private_key_jwt`, ...).
    pub method: String,
    /// Is the bundle's own budget, which every edge charges the token's calls to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<crate::agent::AgentQuota>,
}

/// Describes what an access token is for, before it gets its id and times.
#[derive(Debug, Clone)]
pub(crate) struct TokenRequest<'a> {
    pub(crate) subject: &'a str,
    pub(crate) audience: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) grant: Option<&'a str>,
    pub(crate) ttl: Duration,
    /// The latest `exp` the token may carry: an exchanged token never outlives its subject
    /// token, even when the clock ticks into the next second between the two reads of it.
    pub(crate) not_after: Option<i64>,
    pub(crate) groups: &'a [String],
    pub(crate) act: Option<serde_json::Value>,
    pub(crate) agent: Option<AgentClaim>,
}

/// Returns the current time in unix seconds.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Returns a signed access token for `request` and its claims.
pub(crate) fn mint(
    keys: &KeySet,
    issuer: &str,
    request: &TokenRequest<'_>,
) -> Result<(String, AccessClaims), Error> {
    let iat = now();
    let claims = AccessClaims {
        iss: issuer.to_owned(),
        sub: request.subject.to_owned(),
        aud: request.audience.to_owned(),
        client_id: request.client_id.to_owned(),
        scope: request.scope.to_owned(),
        jti: URL_SAFE_NO_PAD.encode(random_bytes::<16>()?),
        iat,
        exp: iat
            .saturating_add(i64::try_from(request.ttl.as_secs()).unwrap_or(i64::MAX))
            .min(request.not_after.unwrap_or(i64::MAX)),
        sid: request.grant.map(str::to_owned),
        groups: request.groups.to_vec(),
        act: request.act.clone(),
        may_act: None,
        agent: request.agent.clone(),
    };
    let header = Header {
        typ: Some(ACCESS_TOKEN_TYPE.to_owned()),
        kid: Some(keys.active.kid.clone()),
        ..Header::new(Algorithm::ES256)
    };
    let token = sign(&header, &claims, &keys.active.signer)?;
    Ok((token, claims))
}

/// Returns the JWS compact serialization of `claims` under `header`, signed ES256.
///
/// Written here rather than through `jsonwebtoken::encode` only to sign with a
/// key parsed once (see `SigningKey::signer`); verification stays with
/// jsonwebtoken, and the tests verify these tokens with jsonwebtoken and authlib.
fn sign(
    header: &Header,
    claims: &AccessClaims,
    signer: &aws_lc_rs::signature::EcdsaKeyPair,
) -> Result<String, Error> {
    let header = serde_json::to_vec(header).map_err(|_| Error::Crypto("jws header encoding"))?;
    let claims = serde_json::to_vec(claims).map_err(|_| Error::Crypto("jws claims encoding"))?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    // ECDSA_P256_SHA256_FIXED_SIGNING gives JWS's fixed r||s encoding (RFC 7518 §3.4).
    let signature = signer
        .sign(
            &aws_lc_rs::rand::SystemRandom::new(),
            signing_input.as_bytes(),
        )
        .map_err(|_| Error::Crypto("es256 signing"))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    ))
}

/// Says why a token is not an active access token, coarsely enough to tell a caller
/// what to do about it and never which byte was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Inactive {
    /// Not a well-formed JWT access token.
    Malformed,
    /// The signature, key or algorithm is not accepted.
    BadSignature,
    /// Another issuer's token.
    UnknownIssuer,
    /// Expired, or not valid yet.
    Expired,
    /// Its audience is not the resource it was presented to.
    WrongAudience,
    /// It, its grant or its agent has been revoked.
    Revoked,
}

/// Returns the claims of `token` when it is an unexpired access token this
/// issuer signed with a published key, whatever its audience.
pub(crate) fn verify(keys: &KeySet, issuer: &str, token: &str) -> Option<AccessClaims> {
    check(keys, issuer, token).ok()
}

/// Returns the claims of `token` as [`verify`] does, or why it is not active.
pub(crate) fn check(keys: &KeySet, issuer: &str, token: &str) -> Result<AccessClaims, Inactive> {
    use jsonwebtoken::errors::ErrorKind;
    let header = jsonwebtoken::decode_header(token).map_err(|_| Inactive::Malformed)?;
    if header.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
        return Err(Inactive::Malformed);
    }
    if header.alg != Algorithm::ES256 {
        return Err(Inactive::BadSignature);
    }
    let key = header
        .kid
        .as_deref()
        .and_then(|kid| keys.key(kid))
        .ok_or(Inactive::BadSignature)?;
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_issuer(&[issuer]);
    validation.validate_aud = false;
    validation.leeway = 0;
    validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    jsonwebtoken::decode::<AccessClaims>(token, &key.decoding, &validation)
        .map(|data| data.claims)
        .map_err(|error| match error.kind() {
            ErrorKind::InvalidSignature
            | ErrorKind::InvalidAlgorithm
            | ErrorKind::InvalidEcdsaKey
            | ErrorKind::InvalidKeyFormat => Inactive::BadSignature,
            ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => Inactive::Expired,
            ErrorKind::InvalidIssuer => Inactive::UnknownIssuer,
            _ => Inactive::Malformed,
        })
}
