//! Client ID metadata documents (draft-ietf-oauth-client-id-metadata-document; MCP
//! 2025-11-25 "Client ID Metadata Documents"): a client whose `client_id` is an https
//! URL publishes its metadata there instead of registering. The document is fetched
//! through [`Egress`] (SSRF-safe), checked like a registration, and cached for as long
//! as its HTTP cache headers allow.

use std::time::Duration;

use moka::Expiry;
use moka::future::Cache;
use serde::Deserialize;
use url::Url;

use super::{ClientRegistration, RegistrationError, RegistrationPolicy, check, refuse};
use crate::egress::{Egress, EgressPolicy, FetchError};
use crate::store::ClientRecord;

/// Caps a metadata document (the draft recommends 5 KB; a little headroom for long names).
const MAX_DOCUMENT_BYTES: usize = 16 * 1024;
/// Caps how long a document is reused, whatever its cache headers say, so that a
/// changed redirect URI or a withdrawn document takes effect within the hour.
const MAX_FRESHNESS: Duration = Duration::from_secs(3600);
/// Bounds the number of cached documents.
const CACHE_CAPACITY: u64 = 10_000;

/// Configures URL client ids (`authorization.client_metadata_documents`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClientDocumentsConfig {
    /// Accepts https URL client ids and advertises `client_id_metadata_document_supported`.
    pub enabled: bool,
    /// Allows `http://` documents on loopback and private addresses: development and
    /// tests only (the fetcher otherwise refuses them as SSRF).
    pub allow_local: bool,
    /// Names a PEM file of extra CA certificates to trust for document servers
    /// (a test's self-signed https server); the system roots stay trusted.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Resolves URL client ids to clients, fetching and caching their documents; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ClientDocuments {
    egress: Egress,
    cache: Cache<String, Cached>,
    allow_local: bool,
}

/// Is a checked client and how long its document stays fresh.
#[derive(Debug, Clone)]
struct Cached {
    client: ClientRecord,
    fresh_for: Duration,
}

/// Expires each cached document when its own freshness lifetime ends.
#[derive(Debug)]
struct Freshness;

/// Is a metadata document: registration metadata plus the fields it must carry or must not.
#[derive(Debug, Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    client_secret: Option<serde_json::Value>,
    #[serde(default)]
    client_secret_expires_at: Option<serde_json::Value>,
    #[serde(flatten)]
    registration: ClientRegistration,
}

impl Default for ClientDocumentsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            allow_local: false,
            ca_file: None,
        }
    }
}

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

/// Reports whether `client_id` names a metadata document rather than a registered client
/// (registered ids are random base64url tokens, which never contain `://`).
pub(crate) fn is_document_url(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

impl ClientDocuments {
    pub(crate) fn new(config: &ClientDocumentsConfig) -> Result<Self, crate::Error> {
        let policy = EgressPolicy {
            allow_local: config.allow_local,
        };
        Ok(Self {
            egress: Egress::new(policy, config.ca_file.as_deref())?,
            cache: Cache::builder()
                .max_capacity(CACHE_CAPACITY)
                .expire_after(Freshness)
                .build(),
            allow_local: config.allow_local,
        })
    }

    /// Returns the client `client_id` (a document URL) describes, from the cache while
    /// its document is fresh (then `false`: nothing new) or just fetched (`true`); a
    /// refusal says why the document cannot be used.
    pub(crate) async fn resolve(
        &self,
        client_id: &str,
        registration: RegistrationPolicy,
        now: i64,
    ) -> Result<(ClientRecord, bool), RegistrationError> {
        if let Some(cached) = self.cache.get(client_id).await {
            return Ok((cached.client, false));
        }
        let url = self.document_url(client_id)?;
        let fetched = self
            .egress
            .get(&url, "application/json", MAX_DOCUMENT_BYTES)
            .await
            .map_err(|error| {
                tracing::info!(client_id, %error, "client metadata document not fetched");
                refuse("invalid_client_metadata", fetch_refusal(&error))
            })?;
        let client = client_from(client_id, &fetched.body, registration, now)?;
        let fresh_for = fetched.fresh_for.min(MAX_FRESHNESS);
        if !fresh_for.is_zero() {
            let cached = Cached {
                client: client.clone(),
                fresh_for,
            };
            self.cache.insert(client_id.to_owned(), cached).await;
        }
        tracing::info!(
            client_id,
            fresh_secs = fresh_for.as_secs(),
            "client metadata document fetched"
        );
        Ok((client, true))
    }

    /// Returns the URL of a well-formed document client id: https (http only under the
    /// dev opt-out), with a path, no fragment, no credentials, no dot segments (a URL
    /// that normalises to another string is refused, so the id compares exactly).
    fn document_url(&self, client_id: &str) -> Result<Url, RegistrationError> {
        let malformed = || {
            refuse(
                "invalid_client_metadata",
                "the client_id is not a valid metadata document URL (https, with a path)",
            )
        };
        let url = Url::parse(client_id).map_err(|_| malformed())?;
        let scheme_ok = url.scheme() == "https" || (self.allow_local && url.scheme() == "http");
        if !scheme_ok
            || url.as_str() != client_id
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
            || url.path() == "/"
            || url.host().is_none()
        {
            return Err(malformed());
        }
        Ok(url)
    }
}

fn fetch_refusal(error: &FetchError) -> &'static str {
    match error {
        FetchError::Scheme | FetchError::Address => {
            "the client metadata document URL may not be fetched (https on a public address only)"
        }
        FetchError::Status(_) | FetchError::Redirect => {
            "the client metadata document URL did not answer 200"
        }
        FetchError::TooLarge(_) => "the client metadata document is too large",
        FetchError::Timeout | FetchError::Transport(_) => {
            "the client metadata document could not be fetched"
        }
    }
}

/// Checks a fetched document against its URL and the registration rules, and returns
/// the public client it describes.
fn client_from(
    client_id: &str,
    body: &[u8],
    policy: RegistrationPolicy,
    now: i64,
) -> Result<ClientRecord, RegistrationError> {
    let mut document: Document = serde_json::from_slice(body).map_err(|_| {
        refuse(
            "invalid_client_metadata",
            "the client metadata document is not a JSON object with client_id and redirect_uris",
        )
    })?;
    if document.client_id != client_id {
        return Err(refuse(
            "invalid_client_metadata",
            "the document's client_id is not its URL",
        ));
    }
    if document.client_secret.is_some() || document.client_secret_expires_at.is_some() {
        return Err(refuse(
            "invalid_client_metadata",
            "a client metadata document must not carry a client secret",
        ));
    }
    let registration = &mut document.registration;
    if registration
        .client_name
        .as_deref()
        .is_none_or(str::is_empty)
    {
        return Err(refuse("invalid_client_metadata", "client_name is required"));
    }
    if registration.redirect_uris.is_empty() {
        return Err(refuse("invalid_redirect_uri", "redirect_uris is required"));
    }
    let method = registration
        .token_endpoint_auth_method
        .get_or_insert_with(|| "none".to_owned());
    if method != "none" {
        // Shared secrets cannot be published; private_key_jwt documents are not supported yet.
        return Err(refuse(
            "invalid_client_metadata",
            "a client metadata document client must use token_endpoint_auth_method none",
        ));
    }
    let policy = RegistrationPolicy {
        allow_client_credentials: false,
        ..policy
    };
    let (auth_method, grant_types, application_type) = check(registration, policy)?;
    Ok(ClientRecord {
        client_id: client_id.to_owned(),
        secret_hash: None,
        client_name: registration.client_name.clone().unwrap_or_default(),
        redirect_uris: registration.redirect_uris.clone(),
        grant_types,
        auth_method,
        application_type,
        created_at: now,
    })
}

#[cfg(test)]
mod tests;
