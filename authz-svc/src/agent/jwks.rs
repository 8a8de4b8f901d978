//! The JWK Sets agent bundles publish at a URL (`private_key_jwt` with a `jwks_uri`):
//! fetched through [`Egress`] (SSRF-safe: https, public addresses only, no redirects,
//! size and time caps) and cached for as long as their HTTP cache headers allow, within
//! bounds, so that the token endpoint's hot path rarely leaves the process.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use moka::Expiry;
use moka::future::Cache;
use tokio::time::Instant;
use url::Url;

use crate::egress::{Egress, EgressPolicy, FetchError};

/// Caps a JWK Set document.
const MAX_JWKS_BYTES: usize = 64 * 1024;
/// Is the shortest time fetched keys are reused, whatever the headers say (`no-store`
/// included): a burst of assertions must not become a burst of fetches.
const MIN_FRESHNESS: Duration = Duration::from_secs(60);
/// Is the longest time fetched keys are reused, so that a withdrawn key stops working
/// within the hour even when the headers promised longer.
const MAX_FRESHNESS: Duration = Duration::from_secs(3600);
/// Is the shortest pause between fetches of one URL when an assertion names a key the
/// cached set lacks (the agent rotated): bounds what unknown `kid`s can make us fetch.
const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// Bounds the number of cached sets.
const CACHE_CAPACITY: u64 = 10_000;

/// Caches agents' published JWK Sets by URL; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AgentJwks {
    egress: Egress,
    cache: Cache<String, Cached>,
}

/// Is a fetched set, when it was fetched and how long it stays fresh.
#[derive(Debug, Clone)]
struct Cached {
    keys: Arc<JwkSet>,
    fetched: Instant,
    fresh_for: Duration,
}

/// Expires each cached set when its own freshness lifetime ends.
#[derive(Debug)]
struct Freshness;

impl Expiry<String, Cached> for Freshness {
    fn expire_after_create(
        &self,
        _key: &String,
        value: &Cached,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.fresh_for)
    }
}

/// Explains why an agent's keys are unavailable; never carries the body.
#[derive(Debug, thiserror::Error)]
pub(crate) enum KeysError {
    /// The URL cannot be fetched, or the fetch failed.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The document is not a JWK Set.
    #[error("the document is not a JWK Set")]
    NotJwks,
    /// The stored URL does not parse (it was checked when the agent was created).
    #[error("the jwks_uri is not a URL")]
    Url,
}

impl AgentJwks {
    /// Returns a cache fetching under `policy`, also trusting the CA certificates in `ca_file`.
    pub(crate) fn new(
        policy: EgressPolicy,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Self, crate::Error> {
        Ok(Self {
            egress: Egress::new(policy, ca_file)?,
            cache: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(Freshness)
                .build(),
        })
    }

    /// Returns the key set at `url`: the cached one while fresh, unless it lacks `kid`
    /// and was fetched more than [`REFETCH_INTERVAL`] ago (then it is fetched again).
    pub(crate) async fn get(&self, url: &str, kid: Option<&str>) -> Result<Arc<JwkSet>, KeysError> {
        if let Some(cached) = self.cache.get(url).await {
            let lacks_kid = kid.is_some_and(|kid| cached.keys.find(kid).is_none());
            if !lacks_kid || cached.fetched.elapsed() < REFETCH_INTERVAL {
                return Ok(cached.keys);
            }
        }
        let parsed = Url::parse(url).map_err(|_| KeysError::Url)?;
        let fetched = self
            .egress
            .get(
                &parsed,
                "application/jwk-set+json, application/json",
                MAX_JWKS_BYTES,
            )
            .await?;
        let keys: JwkSet = serde_json::from_slice(&fetched.body).map_err(|_| KeysError::NotJwks)?;
        let keys = Arc::new(keys);
        let fresh_for = fetched.fresh_for.clamp(MIN_FRESHNESS, MAX_FRESHNESS);
        let cached = Cached {
            keys: keys.clone(),
            fetched: Instant::now(),
            fresh_for,
        };
        self.cache.insert(url.to_owned(), cached).await;
        tracing::info!(
            jwks_uri = url,
            fresh_secs = fresh_for.as_secs(),
            "agent keys fetched"
        );
        Ok(keys)
    }
}
