//! Downstream credentials: fetched from vault-svc per (principal, connector) and injected
//! into the connector's HTTP requests, never shown to the caller.
//!
//! Material lives in [`Secret`]s, which cannot be printed, and is cached only briefly (see
//! [`Credentials`]). A per-member connector gets one downstream session per member (see
//! [`sessions`]), so one member's token can never ride on another member's request.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

pub mod consent;
pub mod exchange;
pub mod sessions;
pub mod spec;
pub mod template;
mod upstream;

pub use consent::{CONSENT_REQUIRED, ConsentLink};
pub use exchange::{CallerToken, Exchanger};
pub use sessions::ConnectorCredentials;
pub use spec::{
    ApiKeySpec, CredentialMode, CredentialSpec, ExchangeSpec, InjectSpec, OAuthSpec,
    RotationHookSpec, RotationSpec,
};
pub use template::Injection;

use crate::audit::Subject;
use crate::auth::Caller;

/// How edge reaches vault-svc: its gRPC endpoint and edge's service token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultConfig {
    /// vault-svc's gRPC endpoint, such as `http://127.0.0.1:50052`.
    pub endpoint: String,
    /// The environment variable holding edge's service token (`callers.edge_token` at vault),
    /// so that the config file holds no secret.
    pub service_token_env: String,
    /// Longest time released material is reused before vault-svc is asked again.
    #[serde(with = "humantime_serde", default = "default_cache_ttl")]
    pub cache_ttl: Duration,
}

fn default_cache_ttl() -> Duration {
    Duration::from_secs(30)
}

/// A secret value: never `Display`ed, `Debug` prints `<redacted>`, zeroed on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(zeroize::Zeroizing<String>);

/// Credential material as vault-svc releases it for injection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    /// A bearer token.
    Bearer(Secret),
    /// An API key and the header vault-svc says carries it.
    ApiKey {
        /// The header name.
        header: String,
        /// The key.
        key: Secret,
    },
    /// A basic-auth pair.
    Basic {
        /// The user name (not secret).
        username: String,
        /// The password.
        password: Secret,
    },
    /// HTTP headers, injected as they are.
    Headers(BTreeMap<String, Secret>),
    /// Environment variables, for stdio connectors.
    Environment(BTreeMap<String, Secret>),
}

/// Material released for one principal and connector, with what bounds its reuse.
#[derive(Debug, Clone)]
pub struct Released {
    /// The stored credential's id, for audit records.
    pub credential_id: String,
    /// The credential's version; it changes on refresh and rotation.
    pub version: u64,
    /// What to inject.
    pub material: Material,
    /// When the material stops working, if known.
    pub expires_at: Option<SystemTime>,
}

/// Who a downstream call is made for, as vault-svc keys credentials.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Who {
    /// A member using an app.
    Member {
        /// The member's subject.
        id: String,
        /// The app's client id.
        client_id: String,
    },
    /// An agent acting as itself.
    Agent {
        /// The agent's client id.
        client_id: String,
    },
    /// The gateway itself: catalogue reads and anonymous (`auth: none`) callers, which can
    /// only ever use a shared credential.
    Gateway,
}

/// What vault-svc answered for a principal and connector.
#[derive(Debug, Clone)]
pub enum Fetched {
    /// Material to inject.
    Released(Arc<Released>),
    /// The member must connect their account first.
    ConsentRequired(ConsentLink),
}

/// Why no credential could be injected (the text never contains material).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// vault-svc could not be reached or failed.
    #[error("vault-svc is unavailable")]
    Unavailable(#[source] tonic::Status),
    /// vault-svc holds no credential this principal may use for the connector.
    #[error("no credential for connector {0}")]
    NotFound(String),
    /// The principal cannot use the connector (an agent on a per-member connector, or revoked).
    #[error("the caller cannot use connector {0}")]
    Refused(String),
    /// vault-svc answered something edge cannot use.
    #[error("vault-svc answered an unusable credential: {0}")]
    Malformed(&'static str),
    /// The material cannot be placed into a request as configured.
    #[error("credential material does not fit connector {connector}: {reason}")]
    Injection {
        /// The connector.
        connector: String,
        /// What does not fit.
        reason: &'static str,
    },
    /// The member has not connected their account yet.
    #[error("the member has not connected connector {0} yet")]
    ConsentRequired(String),
    /// The token exchanged on the caller's last call expired before the session used it.
    #[error("the token exchanged for connector {0} expired")]
    ExchangeExpired(String),
    /// The downstream answered HTTP 401 to the credential, and again to a freshly fetched one.
    #[error("connector {0} rejected its credential twice")]
    Rejected(String),
}

/// Edge's credential broker: a vault-svc client with a short-lived cache; cheap to clone.
///
/// Issue 4 sketched "edge receives a credential for one call and forgets it". Edge instead
/// reuses released material until the earliest of its `expires_at` (minus a safety margin)
/// and `cache_ttl`: a round trip to vault-svc per downstream request (including the
/// session's own handshake and stream requests) would double the gRPC traffic of every call,
/// while a bounded reuse keeps a revocation or refresh at vault-svc effective within
/// `cache_ttl`. Material only ever sits in memory, in [`Secret`]s.
#[derive(Debug, Clone)]
pub struct Credentials {
    inner: Arc<Broker>,
}

struct Broker {
    /// vault-svc, for `shared` and `per_member` connectors (absent: an edge that only exchanges).
    vault: Option<upstream::VaultClient>,
    cache: moka::future::Cache<(String, Who), Arc<Released>>,
    /// authz-svc, for `token_exchange` connectors.
    exchanger: Option<Exchanger>,
    /// Exchanged tokens by (connector, caller token id; empty for the gateway's own), reused
    /// until close to their expiry so that a burst of calls costs one exchange.
    exchanged: moka::future::Cache<(String, String), Arc<Released>>,
    /// The last member whose credential was released, per connector: whose session reads a
    /// per-member connector's catalogue.
    catalogue: Mutex<HashMap<String, Who>>,
    /// How long vault-svc's material is reused.
    cache_ttl: Duration,
}

/// Longest reuse of an exchanged token (its expiry usually comes first).
const MAX_EXCHANGED_REUSE: Duration = Duration::from_secs(3600);

/// Material this close to its expiry is not handed out: the call could outlive it.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);

impl CredentialError {
    /// Finds the credential problem behind a transport failure, looking through the whole
    /// source chain (including `std::io::Error` payloads, which `source()` skips).
    pub fn find<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a Self> {
        let mut current = Some(error);
        while let Some(error) = current {
            if let Some(found) = error.downcast_ref::<Self>() {
                return Some(found);
            }
            if let Some(found) = error
                .downcast_ref::<std::io::Error>()
                .and_then(std::io::Error::get_ref)
                .and_then(|inner| inner.downcast_ref::<Self>())
            {
                return Some(found);
            }
            current = error.source();
        }
        None
    }

    /// Returns the connector the problem is about, when the variant names it.
    pub fn connector(&self) -> Option<&str> {
        match self {
            Self::NotFound(name)
            | Self::Refused(name)
            | Self::ConsentRequired(name)
            | Self::Rejected(name)
            | Self::ExchangeExpired(name)
            | Self::Injection {
                connector: name, ..
            } => Some(name),
            Self::Unavailable(_) | Self::Malformed(_) => None,
        }
    }

    /// Returns the caller's error: what class of problem, never vault-svc's detail.
    pub fn client_error(&self, connector: &str) -> rmcp::model::ErrorData {
        let message = match self {
            Self::NotFound(_) => format!("no credential is set up for connector `{connector}`"),
            Self::Refused(_) => {
                format!(
                    "connector `{connector}` needs a member's own account; this caller cannot use it"
                )
            }
            Self::Rejected(_) => format!(
                "connector `{connector}` rejected its credential even after it was fetched again; \
                 it may have been revoked at the provider: reconnect the account or ask an administrator"
            ),
            Self::ExchangeExpired(_) => {
                format!("the token exchanged for connector `{connector}` expired; retry the call")
            }
            Self::ConsentRequired(_) => format!(
                "connector `{connector}` needs the member to connect their account first; retry the call to get the link"
            ),
            _ => {
                format!("connector `{connector}` cannot get its credential right now; retry later")
            }
        };
        rmcp::model::ErrorData::internal_error(message, None)
    }
}

impl Secret {
    /// Returns the value for its one consumer (a header being built); never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(zeroize::Zeroizing::new(value))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Released {
    /// Says whether the material may still be handed out at `now`.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        self.expires_at
            .is_none_or(|expires| now + EXPIRY_MARGIN < expires)
    }
}

impl Who {
    /// Reads the caller the bearer-token gate left in the request (`None`: no gate ran), as
    /// the audit record names it.
    pub fn of(caller: Option<&Caller>) -> Self {
        match Subject::of(caller) {
            Subject::Member { id, client_id } => Self::Member { id, client_id },
            Subject::Agent { client_id, .. } => Self::Agent { client_id },
            Subject::Anonymous => Self::Gateway,
        }
    }

    /// Returns the member id, for a member.
    pub fn member_id(&self) -> Option<&str> {
        match self {
            Self::Member { id, .. } => Some(id),
            Self::Agent { .. } | Self::Gateway => None,
        }
    }
}

impl Credentials {
    /// Connects (lazily) to vault-svc as `config` says, reading the service token from its
    /// environment variable.
    pub fn connect(config: &VaultConfig) -> anyhow::Result<Self> {
        let token = std::env::var(&config.service_token_env).map_err(|_| {
            anyhow::anyhow!(
                "vault.service_token_env: environment variable {} is not set",
                config.service_token_env
            )
        })?;
        Self::with_token(&config.endpoint, &token, config.cache_ttl)
    }

    /// Connects (lazily) to vault-svc at `endpoint` presenting `service_token`.
    pub fn with_token(
        endpoint: &str,
        service_token: &str,
        cache_ttl: Duration,
    ) -> anyhow::Result<Self> {
        let vault = upstream::VaultClient::new(endpoint, service_token)?;
        Ok(Self::broker(Some(vault), None, cache_ttl))
    }

    /// Returns a broker with no vault-svc: it serves `token_exchange` connectors only.
    pub fn exchange_only(exchanger: Exchanger) -> Self {
        Self::broker(None, Some(exchanger), default_cache_ttl())
    }

    /// Returns this broker, also exchanging tokens for `token_exchange` connectors.
    #[must_use]
    pub fn with_exchanger(self, exchanger: Exchanger) -> Self {
        let inner = &self.inner;
        Self::broker(inner.vault.clone(), Some(exchanger), inner.cache_ttl)
    }

    fn broker(
        vault: Option<upstream::VaultClient>,
        exchanger: Option<Exchanger>,
        cache_ttl: Duration,
    ) -> Self {
        Self {
            inner: Arc::new(Broker {
                vault,
                cache: moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(cache_ttl)
                    .build(),
                exchanger,
                exchanged: moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(MAX_EXCHANGED_REUSE)
                    .build(),
                cache_ttl,
                catalogue: Mutex::default(),
            }),
        }
    }

    /// Returns a token for `connector` exchanged from `caller`'s (one exchange per caller
    /// token while the result stays fresh).
    pub async fn exchange(
        &self,
        caller: &CallerToken,
        connector: &str,
        trace_id: &str,
    ) -> Result<Arc<Released>, CredentialError> {
        let exchanger = self.exchanger(connector)?;
        let key = (connector.to_owned(), caller.token_id.clone());
        self.exchanged_or(key, exchanger.exchange(caller, connector, trace_id))
            .await
    }

    /// Returns the gateway's own token for reading `connector`'s catalogue.
    pub async fn catalogue_token(
        &self,
        connector: &str,
        trace_id: &str,
    ) -> Result<Arc<Released>, CredentialError> {
        let exchanger = self.exchanger(connector)?;
        let key = (connector.to_owned(), String::new());
        self.exchanged_or(key, exchanger.catalogue(connector, trace_id))
            .await
    }

    fn exchanger(&self, connector: &str) -> Result<&Exchanger, CredentialError> {
        self.inner
            .exchanger
            .as_ref()
            .ok_or_else(|| CredentialError::Injection {
                connector: connector.to_owned(),
                reason: "`token_exchange` needs an edge linked to authz-svc",
            })
    }

    /// Returns the fresh cached token under `key`, or mints one with `mint` and keeps it.
    async fn exchanged_or(
        &self,
        key: (String, String),
        mint: impl std::future::Future<Output = Result<Released, CredentialError>>,
    ) -> Result<Arc<Released>, CredentialError> {
        if let Some(hit) = self.inner.exchanged.get(&key).await
            && hit.is_fresh(SystemTime::now())
        {
            return Ok(hit);
        }
        let minted = Arc::new(mint.await?);
        if minted.is_fresh(SystemTime::now()) {
            self.inner.exchanged.insert(key, Arc::clone(&minted)).await;
        }
        Ok(minted)
    }

    /// Forgets the gateway's own token for `connector` (the connector rejected it).
    pub async fn forget_catalogue_token(&self, connector: &str) {
        self.forget_exchanged(connector, "").await;
    }

    /// Forgets the token exchanged for `connector` from caller token `token_id`, so that the
    /// caller's next call is exchanged afresh.
    pub async fn forget_exchanged(&self, connector: &str, token_id: &str) {
        self.inner
            .exchanged
            .invalidate(&(connector.to_owned(), token_id.to_owned()))
            .await;
    }

    /// Returns the material `who` may inject into a call to `connector`, or the consent link.
    pub async fn fetch(
        &self,
        who: &Who,
        connector: &str,
        trace_id: &str,
    ) -> Result<Fetched, CredentialError> {
        let key = (connector.to_owned(), who.clone());
        if let Some(hit) = self.inner.cache.get(&key).await {
            if hit.is_fresh(SystemTime::now()) {
                return Ok(Fetched::Released(hit));
            }
            self.inner.cache.invalidate(&key).await;
        }
        let vault = self
            .inner
            .vault
            .as_ref()
            .ok_or_else(|| CredentialError::Injection {
                connector: connector.to_owned(),
                reason: "this edge has no vault-svc client (set `vault`)",
            })?;
        let fetched = vault.get(who, connector, trace_id).await?;
        if let Fetched::Released(released) = &fetched {
            if released.is_fresh(SystemTime::now()) {
                self.inner.cache.insert(key, Arc::clone(released)).await;
            }
            if who.member_id().is_some() {
                self.catalogue()
                    .entry(connector.to_owned())
                    .or_insert_with(|| who.clone());
            }
        }
        Ok(fetched)
    }

    /// Forgets the cached material of `who` for `connector`, so the next fetch asks vault-svc.
    pub async fn forget(&self, who: &Who, connector: &str) {
        self.inner
            .cache
            .invalidate(&(connector.to_owned(), who.clone()))
            .await;
    }

    /// Returns whose credential reads a per-member connector's catalogue: the first member
    /// whose credential was released, or the gateway itself before anyone connected.
    pub fn catalogue_reader(&self, connector: &str) -> Who {
        self.catalogue()
            .get(connector)
            .cloned()
            .unwrap_or(Who::Gateway)
    }

    fn catalogue(&self) -> std::sync::MutexGuard<'_, HashMap<String, Who>> {
        self.inner
            .catalogue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("cached", &self.cache.entry_count())
            .field("exchanged", &self.exchanged.entry_count())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
