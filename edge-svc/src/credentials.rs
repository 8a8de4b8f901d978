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
pub mod sessions;
pub mod spec;
pub mod template;
mod upstream;

pub use consent::{CONSENT_REQUIRED, ConsentLink};
pub use sessions::ConnectorCredentials;
pub use spec::{
    ApiKeySpec, CredentialMode, CredentialSpec, InjectSpec, OAuthSpec, RotationHookSpec,
    RotationSpec,
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
    vault: upstream::VaultClient,
    cache: moka::future::Cache<(String, Who), Arc<Released>>,
    /// The last member whose credential was released, per connector: whose session reads a
    /// per-member connector's catalogue.
    catalogue: Mutex<HashMap<String, Who>>,
}

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
        Ok(Self {
            inner: Arc::new(Broker {
                vault,
                cache: moka::future::Cache::builder()
                    .max_capacity(100_000)
                    .time_to_live(cache_ttl)
                    .build(),
                catalogue: Mutex::default(),
            }),
        })
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
        let fetched = self.inner.vault.get(who, connector, trace_id).await?;
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
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
