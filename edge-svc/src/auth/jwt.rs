//! Local validation of RFC 9068 JWT access tokens against the authorization server's JWKS.
//!
//! The hot path never calls the authorization server: keys are cached and refetched only when
//! a token names an unknown `kid` (at most once per `REFETCH_INTERVAL`), and verified tokens
//! are cached by their signature until they expire.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::{AgentClaim, TokenClaims, TokenError, TokenVerifier};

/// Shortest pause between two JWKS fetches triggered by unknown key ids.
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Allowed clock skew when checking `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 30;
/// Verified tokens remembered at once.
const CACHE_CAPACITY: u64 = 100_000;

/// Verifies access tokens issued by one authorization server.
#[derive(Debug)]
pub struct JwksVerifier {
    issuer: String,
    jwks_url: url::Url,
    http: reqwest::Client,
    keys: RwLock<Arc<HashMap<String, (Algorithm, DecodingKey)>>>,
    last_fetch: Mutex<Option<Instant>>,
    verified: moka::future::Cache<(String, String), TokenClaims>,
}

#[derive(Debug, Deserialize)]
struct AccessClaims {
    iss: String,
    sub: String,
    client_id: String,
    #[serde(default)]
    scope: String,
    jti: String,
    exp: u64,
    #[serde(default)]
    iat: u64,
    #[serde(default)]
    act: Option<serde_json::Value>,
    #[serde(default)]
    groups: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    sid: Option<String>,
    #[serde(default)]
    agent: Option<AgentClaim>,
}

impl JwksVerifier {
    /// Creates a verifier for tokens whose `iss` is exactly `issuer`, with keys at `jwks_url`.
    pub fn new(issuer: String, jwks_url: url::Url) -> Self {
        Self {
            issuer,
            jwks_url,
            http: reqwest::Client::new(),
            keys: RwLock::new(Arc::default()),
            last_fetch: Mutex::new(None),
            verified: moka::future::Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .time_to_live(Duration::from_secs(300))
                .build(),
        }
    }

    fn key(&self, kid: &str) -> Option<(Algorithm, DecodingKey)> {
        self.keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(kid)
            .cloned()
    }

    /// Fetches the key set again unless that was done within the last `REFETCH_INTERVAL`.
    async fn refresh(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return;
        }
        *last = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => *self.keys.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(keys),
            Err(error) => {
                tracing::warn!(jwks = %self.jwks_url, %error, "cannot fetch the authorization server's keys")
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, (Algorithm, DecodingKey)>, reqwest::Error> {
        let set: JwkSet = self
            .http
            .get(self.jwks_url.clone())
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let (Some(kid), Ok(key)) = (jwk.common.key_id.clone(), DecodingKey::from_jwk(jwk))
            else {
                continue;
            };
            let algorithm = match jwk
                .common
                .key_algorithm
                .map(|alg| alg.to_string())
                .as_deref()
            {
                Some("EdDSA") => Algorithm::EdDSA,
                _ => Algorithm::ES256,
            };
            keys.insert(kid, (algorithm, key));
        }
        Ok(keys)
    }

    async fn decode(&self, resource: &str, token: &str) -> Result<TokenClaims, TokenError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| TokenError::Invalid("malformed access token"))?;
        if !header
            .typ
            .as_deref()
            .is_some_and(|typ| typ.eq_ignore_ascii_case("at+jwt"))
        {
            return Err(TokenError::Invalid(
                "not an access token (typ must be at+jwt)",
            ));
        }
        let kid = header
            .kid
            .ok_or(TokenError::Invalid("access token names no signing key"))?;
        let (algorithm, key) = match self.key(&kid) {
            Some(found) => found,
            None => {
                self.refresh().await;
                self.key(&kid)
                    .ok_or(TokenError::Invalid("access token signed by an unknown key"))?
            }
        };
        if header.alg != algorithm {
            return Err(TokenError::Invalid(
                "access token algorithm does not match its key",
            ));
        }
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[resource]);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<AccessClaims>(token, &key, &validation).map_err(|error| {
                TokenError::Invalid(match error.kind() {
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "access token expired",
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        "access token is for another resource"
                    }
                    jsonwebtoken::errors::ErrorKind::InvalidIssuer => {
                        "access token is from another issuer"
                    }
                    _ => "access token is invalid",
                })
            })?;
        let claims = data.claims;
        Ok(TokenClaims {
            subject: claims.sub,
            client_id: claims.client_id,
            scopes: claims.scope.split_whitespace().map(str::to_owned).collect(),
            token_id: claims.jti,
            expires_at: claims.exp,
            issued_at: claims.iat,
            issuer: claims.iss,
            act: claims.act,
            groups: claims.groups,
            roles: claims.roles,
            grant: claims.sid,
            agent: claims.agent,
        })
    }
}

#[async_trait::async_trait]
impl TokenVerifier for JwksVerifier {
    async fn verify(&self, resource: &str, token: &str) -> Result<TokenClaims, TokenError> {
        // The signature segment identifies a token without being usable as one.
        let signature = token.rsplit('.').next().unwrap_or_default().to_owned();
        let cache_key = (resource.to_owned(), signature);
        if let Some(claims) = self.verified.get(&cache_key).await
            && claims.expires_at + LEEWAY_SECONDS > now()
        {
            return Ok(claims);
        }
        let claims = self.decode(resource, token).await?;
        self.verified.insert(cache_key, claims.clone()).await;
        Ok(claims)
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
