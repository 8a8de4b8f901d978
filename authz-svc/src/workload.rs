//! The keys of external workload issuers (Kubernetes service-account issuers, SPIFFE
//! trust domains, cloud OIDC issuers), fetched from their JWKS URL and cached, so that
//! the token endpoint's hot path rarely leaves the process.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use tokio::time::Instant;

use crate::error::Error;

/// Is how long fetched keys are used before they are fetched again.
const KEYS_TTL: Duration = Duration::from_secs(300);
/// Is the shortest pause between fetches of one URL (an unknown `kid` refetches at most this often).
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Bounds one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// Caps a JWK Set document.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Is a fetched key set and when it was fetched.
type Fetched = (Instant, Arc<JwkSet>);

/// Caches JWK Sets by URL; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct WorkloadKeys {
    http: reqwest::Client,
    cached: Arc<RwLock<HashMap<String, Fetched>>>,
}

impl WorkloadKeys {
    pub(crate) fn new() -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| Error::Crypto("workload key http client"))?;
        Ok(Self {
            http,
            cached: Arc::default(),
        })
    }

    /// Returns the key set at `url`: the cached one while fresh and, unless `refresh`
    /// asks for newer keys (an unknown `kid`), fetched again at most every few seconds.
    pub(crate) async fn get(&self, url: &str, refresh: bool) -> Result<Arc<JwkSet>, String> {
        let cached = self
            .cached
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(url)
            .cloned();
        if let Some((fetched, keys)) = &cached {
            let age = fetched.elapsed();
            if age < KEYS_TTL && (!refresh || age < REFETCH_INTERVAL) {
                return Ok(keys.clone());
            }
        }
        let keys = Arc::new(self.fetch(url).await?);
        self.cached
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(url.to_owned(), (Instant::now(), keys.clone()));
        Ok(keys)
    }

    async fn fetch(&self, url: &str) -> Result<JwkSet, String> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|error| format!("cannot fetch workload issuer keys: {error}"))?;
        if response
            .content_length()
            .is_some_and(|length| length > MAX_JWKS_BYTES as u64)
        {
            return Err("workload issuer keys exceed the size limit".to_owned());
        }
        let body = response
            .bytes()
            .await
            .map_err(|error| format!("cannot read workload issuer keys: {error}"))?;
        if body.len() > MAX_JWKS_BYTES {
            return Err("workload issuer keys exceed the size limit".to_owned());
        }
        serde_json::from_slice(&body)
            .map_err(|_| "workload issuer keys are not a JWK Set".to_owned())
    }
}
