//! Identities asserted by other issuers: members signing in through an upstream OpenID
//! Connect provider (discovery, authorization code with PKCE, `state` and `nonce`, a strictly
//! checked ID token), and the signed JWTs of enterprise IdPs (ID-JAGs) the token endpoint
//! redeems. Both verify a JWT against an issuer's JWK Set with an algorithm allow-list.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use tokio::time::Instant;
use url::Url;

use crate::config::{IdentityProviderConfig, algorithms};
use crate::error::Error;
use crate::workload::WorkloadKeys;

/// Bounds each request to a provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(10);
/// Is how long a provider's discovery document is used before it is fetched again.
const DISCOVERY_TTL: Duration = Duration::from_secs(3600);
/// Caps a provider's discovery and token responses.
const MAX_RESPONSE_BYTES: usize = 256 * 1024;
/// Tolerates this much clock skew between a provider and us.
pub(crate) const LEEWAY: u64 = 60;

/// Explains why a signed JWT from another issuer was refused; safe to show the caller
/// (never carries the token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JwtRefusal {
    /// The token is not a compact JWS.
    #[error("the token is not a signed JWT")]
    Malformed,
    /// The `alg` is not on the issuer's allow-list (`none` and HMAC never are).
    #[error("the token's signature algorithm {0} is not accepted")]
    Algorithm(String),
    /// The header's `typ` is not the one this kind of token must carry.
    #[error("the token's typ must be {0}")]
    Type(&'static str),
    /// The issuer's keys could not be fetched.
    #[error("the issuer's keys are unavailable")]
    KeysUnavailable,
    /// No key of the issuer's JWK Set has the token's `kid`.
    #[error("no key of the issuer verifies the token")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature does not verify")]
    Signature,
    /// `iss` is not the expected issuer.
    #[error("the token's iss is not the expected issuer")]
    Issuer,
    /// `aud` does not name us.
    #[error("the token's aud does not name this server")]
    Audience,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// A claim the token must carry is missing or malformed.
    #[error("the token's {0} claim is missing or malformed")]
    Claim(String),
}

/// Says what a JWT from another issuer must satisfy.
pub(crate) struct Expectation<'a> {
    /// Is the exact issuer.
    pub(crate) issuer: &'a str,
    /// Lists the accepted audiences (any one suffices).
    pub(crate) audiences: &'a [&'a str],
    /// Lists the accepted signature algorithms.
    pub(crate) algorithms: &'a [Algorithm],
    /// Is the `typ` header the token must carry, if any.
    pub(crate) typ: Option<&'static str>,
    /// Lists the claims that must be present besides `iss`, `aud` and `exp`.
    pub(crate) required: &'a [&'a str],
}

#[derive(Deserialize)]
struct RawHeader {
    #[serde(default)]
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

/// Returns the claims of `token` once its header, signature (with a key of `jwks_uri`,
/// refetched once on an unknown `kid`), issuer, audience and lifetime check out.
pub(crate) async fn verify_jwt(
    keys: &WorkloadKeys,
    jwks_uri: &str,
    token: &str,
    expected: &Expectation<'_>,
) -> Result<serde_json::Map<String, Value>, JwtRefusal> {
    // The header is read by hand first so that `alg: none` (which jsonwebtoken cannot even
    // represent) is refused with a message naming it.
    let raw: RawHeader = token
        .split('.')
        .next()
        .and_then(|part| URL_SAFE_NO_PAD.decode(part).ok())
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(JwtRefusal::Malformed)?;
    let alg = raw
        .alg
        .parse::<Algorithm>()
        .ok()
        .filter(|alg| expected.algorithms.contains(alg))
        .ok_or_else(|| JwtRefusal::Algorithm(raw.alg.clone()))?;
    if let Some(typ) = expected.typ {
        let matches = raw.typ.as_deref().is_some_and(|actual| {
            actual.eq_ignore_ascii_case(typ)
                || actual.eq_ignore_ascii_case(&format!("application/{typ}"))
        });
        if !matches {
            return Err(JwtRefusal::Type(typ));
        }
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| JwtRefusal::Malformed)?;
    let set = keys
        .get(jwks_uri, false)
        .await
        .map_err(|_| JwtRefusal::KeysUnavailable)?;
    let known = find_key(&set, header.kid.as_deref()).is_some();
    let set = if known {
        set
    } else {
        keys.get(jwks_uri, true)
            .await
            .map_err(|_| JwtRefusal::KeysUnavailable)?
    };
    let jwk = find_key(&set, header.kid.as_deref()).ok_or(JwtRefusal::UnknownKey)?;
    let key = DecodingKey::from_jwk(jwk).map_err(|_| JwtRefusal::UnknownKey)?;
    let mut validation = Validation::new(alg);
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(expected.audiences);
    let mut required = vec!["exp", "iss", "aud"];
    required.extend_from_slice(expected.required);
    validation.set_required_spec_claims(&required);
    validation.leeway = LEEWAY;
    validation.validate_nbf = true;
    jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|error| match error.into_kind() {
            ErrorKind::InvalidIssuer => JwtRefusal::Issuer,
            ErrorKind::InvalidAudience => JwtRefusal::Audience,
            ErrorKind::ExpiredSignature => JwtRefusal::Expired,
            ErrorKind::ImmatureSignature => JwtRefusal::NotYetValid,
            ErrorKind::MissingRequiredClaim(claim) | ErrorKind::InvalidClaimFormat(claim) => {
                JwtRefusal::Claim(claim)
            }
            ErrorKind::InvalidAlgorithm => JwtRefusal::Algorithm(raw.alg.clone()),
            _ => JwtRefusal::Signature,
        })
}

fn find_key<'a>(set: &'a JwkSet, kid: Option<&str>) -> Option<&'a jsonwebtoken::jwk::Jwk> {
    match kid {
        Some(kid) => set.find(kid),
        None if set.keys.len() == 1 => set.keys.first(),
        None => None,
    }
}

/// Explains why a federated sign-in failed; shown to the member (never a secret or token).
#[derive(Debug, thiserror::Error)]
pub(crate) enum FederationError {
    /// The provider's discovery document could not be fetched or is unusable.
    #[error("the identity provider's discovery document is unusable: {0}")]
    Discovery(&'static str),
    /// The discovery document names another issuer (OIDC Discovery §4.3).
    #[error("the identity provider's discovery document names another issuer")]
    DiscoveryIssuer,
    /// The callback's `state` is unknown, expired or was used before.
    #[error("unknown, expired or already used sign-in state; start again")]
    State,
    /// The callback came to another browser than the one that started the sign-in.
    #[error("the sign-in was started in another browser; start again")]
    Browser,
    /// The provider answered the authorization request with an error.
    #[error("the identity provider refused the sign-in")]
    Denied,
    /// The authorization response names another issuer (RFC 9207 mix-up defence).
    #[error("the authorization response comes from another issuer")]
    ResponseIssuer,
    /// The provider's token endpoint refused or failed the code exchange.
    #[error("the identity provider did not redeem the code: {0}")]
    Exchange(String),
    /// The ID token failed a check.
    #[error("the ID token was refused: {0}")]
    IdToken(JwtRefusal),
    /// The ID token's `nonce` is not the one this sign-in sent.
    #[error("the ID token was refused: its nonce does not match the sign-in")]
    Nonce,
    /// The ID token's `azp` is not our client id.
    #[error("the ID token was refused: it was issued to another party (azp)")]
    AuthorizedParty,
    /// Something on our side failed.
    #[error("internal error")]
    Internal(#[from] Error),
}

/// Is a member as an upstream provider identified them.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    /// Is the provider's issuer.
    pub(crate) issuer: String,
    /// Is the provider's `sub`.
    pub(crate) subject: String,
    /// Lists the Gatehouse groups the provider's groups map to.
    pub(crate) groups: Vec<String>,
}

/// Is what a provider's discovery document says that sign-in needs.
#[derive(Debug, Clone, Deserialize)]
struct Discovery {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
}

/// Is a fetched discovery document and when it was fetched.
type Discovered = (Instant, Arc<Discovery>);

/// Is one configured provider with its secret and parsed algorithms.
#[derive(Debug)]
pub(crate) struct Provider {
    pub(crate) config: IdentityProviderConfig,
    secret: SecretString,
    algorithms: Vec<Algorithm>,
}

impl Provider {
    /// Returns the login page's label for the provider.
    pub(crate) fn label(&self) -> &str {
        self.config
            .display_name
            .as_deref()
            .unwrap_or(&self.config.name)
    }
}

/// Is where a sign-in goes and what its callback must match.
#[derive(Debug)]
pub(crate) struct Started {
    /// Is the provider's authorization URL with every parameter.
    pub(crate) url: Url,
    /// Is the `state` sent.
    pub(crate) state: String,
    /// Is the `nonce` sent.
    pub(crate) nonce: String,
    /// Is the PKCE verifier.
    pub(crate) verifier: String,
}

/// Holds the configured providers, their discovery documents and an HTTP client; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Federation {
    providers: Arc<Vec<Provider>>,
    http: reqwest::Client,
    discovered: Arc<RwLock<HashMap<String, Discovered>>>,
}

impl Federation {
    /// Returns the providers `configs` describe, each with its secret from the environment.
    pub(crate) fn new(configs: &[IdentityProviderConfig]) -> Result<Self, Error> {
        let mut providers = Vec::with_capacity(configs.len());
        for (index, config) in configs.iter().enumerate() {
            providers.push(Provider {
                secret: config.client_secret(index)?,
                algorithms: algorithms(
                    &config.algorithms,
                    &format!("identity_providers[{index}].algorithms"),
                )?,
                config: config.clone(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(PROVIDER_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| Error::Crypto("identity provider http client"))?;
        Ok(Self {
            providers: Arc::new(providers),
            http,
            discovered: Arc::default(),
        })
    }

    /// Lists the providers, in configuration order.
    pub(crate) fn providers(&self) -> &[Provider] {
        &self.providers
    }

    /// Returns the provider named `name`.
    pub(crate) fn provider(&self, name: &str) -> Option<&Provider> {
        self.providers
            .iter()
            .find(|provider| provider.config.name == name)
    }

    /// Returns the authorization request that starts a sign-in at `provider`, sending the
    /// member back to `redirect_uri`.
    pub(crate) async fn start(
        &self,
        provider: &Provider,
        redirect_uri: &str,
    ) -> Result<Started, FederationError> {
        let discovery = self.discovery(provider).await?;
        let mut url = Url::parse(&discovery.authorization_endpoint)
            .map_err(|_| FederationError::Discovery("authorization_endpoint is not a URL"))?;
        let state = crate::keys::random_token()?;
        let nonce = crate::keys::random_token()?;
        let verifier = crate::keys::random_token()?;
        let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        let mut scopes: Vec<&str> = vec!["openid"];
        scopes.extend(
            provider
                .config
                .scopes
                .iter()
                .map(String::as_str)
                .filter(|scope| *scope != "openid"),
        );
        url.query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", &provider.config.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("scope", &scopes.join(" "))
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256");
        Ok(Started {
            url,
            state,
            nonce,
            verifier,
        })
    }

    /// Redeems `code` at `provider` and returns the member its ID token identifies, once
    /// the token's signature, `iss`, `aud`, `azp`, `exp` and `nonce` check out.
    pub(crate) async fn finish(
        &self,
        keys: &WorkloadKeys,
        provider: &Provider,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Identity, FederationError> {
        let discovery = self.discovery(provider).await?;
        let id_token = self
            .redeem(provider, &discovery, code, redirect_uri, verifier)
            .await?;
        let client_id = provider.config.client_id.as_str();
        let claims = verify_jwt(
            keys,
            &discovery.jwks_uri,
            &id_token,
            &Expectation {
                issuer: &provider.config.issuer,
                audiences: &[client_id],
                algorithms: &provider.algorithms,
                typ: None,
                required: &["sub"],
            },
        )
        .await
        .map_err(FederationError::IdToken)?;
        // OIDC Core §3.1.3.7: several audiences need an azp, which must be us.
        let audiences = match claims.get("aud") {
            Some(Value::Array(list)) => list.len(),
            _ => 1,
        };
        match claims.get("azp").and_then(Value::as_str) {
            Some(azp) if azp != client_id => return Err(FederationError::AuthorizedParty),
            None if audiences > 1 => return Err(FederationError::AuthorizedParty),
            _ => {}
        }
        let sent = claims.get("nonce").and_then(Value::as_str).unwrap_or("");
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            nonce.as_bytes(),
        )) {
            return Err(FederationError::Nonce);
        }
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty())
            .ok_or_else(|| FederationError::IdToken(JwtRefusal::Claim("sub".to_owned())))?;
        Ok(Identity {
            issuer: provider.config.issuer.clone(),
            subject: subject.to_owned(),
            groups: mapped_groups(&provider.config, claims.get(&provider.config.groups_claim)),
        })
    }

    async fn redeem(
        &self,
        provider: &Provider,
        discovery: &Discovery,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<String, FederationError> {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        // RFC 6749 §2.3.1: the client id and secret are form-encoded inside Basic.
        let encode = |value: &str| {
            url::form_urlencoded::byte_serialize(value.as_bytes()).collect::<String>()
        };
        let response =
            self.http
                .post(&discovery.token_endpoint)
                .basic_auth(
                    encode(&provider.config.client_id),
                    Some(encode(provider.secret.expose_secret())),
                )
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(serde_urlencoded::to_string(form).map_err(|_| {
                    FederationError::Exchange("the code cannot be encoded".to_owned())
                })?)
                .send()
                .await
                .map_err(|_| {
                    FederationError::Exchange("the token endpoint is unreachable".to_owned())
                })?;
        let status = response.status();
        let body = read_capped(response)
            .await
            .map_err(FederationError::Exchange)?;
        let body: Value = serde_json::from_slice(&body).map_err(|_| {
            FederationError::Exchange(format!("the token endpoint answered {status} without JSON"))
        })?;
        if !status.is_success() {
            let error = body
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("unknown");
            return Err(FederationError::Exchange(format!(
                "the token endpoint answered {status} {error}"
            )));
        }
        body.get("id_token")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                FederationError::Exchange("the token response has no id_token".to_owned())
            })
    }

    async fn discovery(&self, provider: &Provider) -> Result<Arc<Discovery>, FederationError> {
        let issuer = &provider.config.issuer;
        let cached = self
            .discovered
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(issuer)
            .cloned();
        if let Some((fetched, discovery)) = cached
            && fetched.elapsed() < DISCOVERY_TTL
        {
            return Ok(discovery);
        }
        let url = format!(
            "{}/.well-known/openid-configuration",
            issuer.trim_end_matches('/')
        );
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|_| FederationError::Discovery("unreachable"))?;
        if !response.status().is_success() {
            return Err(FederationError::Discovery("not found"));
        }
        let body = read_capped(response)
            .await
            .map_err(|_| FederationError::Discovery("unreadable"))?;
        let discovery: Discovery = serde_json::from_slice(&body)
            .map_err(|_| FederationError::Discovery("missing endpoints"))?;
        if discovery.issuer != *issuer {
            return Err(FederationError::DiscoveryIssuer);
        }
        let discovery = Arc::new(discovery);
        self.discovered
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(issuer.clone(), (Instant::now(), discovery.clone()));
        Ok(discovery)
    }
}

async fn read_capped(response: reqwest::Response) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_RESPONSE_BYTES as u64)
    {
        return Err("the response is too large".to_owned());
    }
    let body = response
        .bytes()
        .await
        .map_err(|_| "the response could not be read".to_owned())?;
    if body.len() > MAX_RESPONSE_BYTES {
        return Err("the response is too large".to_owned());
    }
    Ok(body.to_vec())
}

/// Returns the Gatehouse groups the provider's `claim` (a list, or one string) maps to,
/// sorted and without repeats.
fn mapped_groups(config: &IdentityProviderConfig, claim: Option<&Value>) -> Vec<String> {
    let names: Vec<&str> = match claim {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).collect(),
        Some(Value::String(one)) => vec![one.as_str()],
        _ => Vec::new(),
    };
    names
        .into_iter()
        .filter_map(|name| config.group_mapping.get(name))
        .flatten()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Returns the member id of the member `issuer` knows as `subject`: stable, and distinct
/// for every (issuer, subject) pair, so that two providers' equal `sub`s never collide.
pub(crate) fn member_id(issuer: &str, subject: &str) -> String {
    let mut digest = Sha256::new();
    digest.update(issuer.as_bytes());
    digest.update([0]);
    digest.update(subject.as_bytes());
    format!(
        "{MEMBER_PREFIX}{}",
        URL_SAFE_NO_PAD.encode(digest.finalize())
    )
}

/// Starts every federated member id, so that token minting looks up only those in the store.
pub(crate) const MEMBER_PREFIX: &str = "fed-";
