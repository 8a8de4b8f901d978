//! The sections a standalone authz-svc reads beyond policies: who may call its gRPC
//! API, where its OAuth HTTP face listens and under which issuer, where its store is,
//! and where its audit events go.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use svc_kit::ConfigError;
use svc_kit::callers::{MIN_TOKEN_LEN, SecretSetting};

use crate::issuer::{Issuer, ProtectedResource};
use crate::store::StoreConfig;

/// Is the address of the OAuth HTTP face unless configured otherwise.
pub const DEFAULT_HTTP_LISTEN_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 8081);

/// Holds the service tokens gRPC callers present in `x-gatehouse-service-token`, one
/// per role; a role without a token admits nobody, so an unconfigured authz-svc
/// answers its token and admin RPCs to no one.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallersConfig {
    /// Identifies edge-svc: policy decisions, token validation, the feeds, exchange.
    pub edge_token: Option<SecretSetting>,
    /// Identifies administrators of agent bundles (`AgentAdmin`).
    pub admin_token: Option<SecretSetting>,
}

/// Configures the OAuth HTTP face of a standalone authz-svc.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OAuthFaceConfig {
    /// Sets the address the OAuth endpoints listen on.
    pub listen_addr: SocketAddr,
    /// Is the issuer (the public origin clients reach the endpoints at); defaults to
    /// `http://{listen_addr}`, which only a loopback address with
    /// `authorization.allow_insecure_http` accepts.
    pub issuer: Option<url::Url>,
    /// Lists the virtual servers (protected resources) tokens are minted for.
    pub resources: Vec<ResourceConfig>,
}

/// Describes one protected resource: a virtual server's name, canonical URL and scopes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceConfig {
    /// Is the virtual server's name.
    pub name: String,
    /// Is its canonical MCP URL, the token audience.
    pub url: String,
    /// Lists the scopes it declares.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Says where the authorization store is: PostgreSQL when `postgres_url` is set,
/// otherwise `authz.db` (and the master key `authz.key`) in `data_dir`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreSection {
    /// Holds the SQLite database and master key file.
    pub data_dir: PathBuf,
    /// Holds the PostgreSQL URL.
    pub postgres_url: Option<SecretSetting>,
}

/// Says where a standalone authz-svc sends its audit events (tokens issued, exchanged
/// and revoked; agent bundle changes): a durable spool on local disk, delivered to
/// audit-svc's gRPC `Append` and kept until acknowledged.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditForwardConfig {
    /// Is audit-svc's gRPC URL; unset, no events are sent (development only).
    pub url: Option<String>,
    /// Is the service token authz-svc presents to audit-svc (its `authz_token`).
    pub token: Option<SecretSetting>,
    /// Is the spool directory, on local disk and private to this replica; unset, it is
    /// `authz-audit-spool` in the store's data directory.
    pub spool_dir: Option<PathBuf>,
    /// Bounds the unacknowledged bytes kept while audit-svc is away; beyond it, tokens
    /// are refused (fail closed, as edge does).
    pub max_spool_bytes: u64,
}

impl Default for OAuthFaceConfig {
    fn default() -> Self {
        Self {
            listen_addr: DEFAULT_HTTP_LISTEN_ADDR,
            issuer: None,
            resources: Vec::new(),
        }
    }
}

impl Default for AuditForwardConfig {
    fn default() -> Self {
        Self {
            url: None,
            token: None,
            spool_dir: None,
            max_spool_bytes: audit_spool::SpoolLimits::default().max_bytes,
        }
    }
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from(".gatehouse"),
            postgres_url: None,
        }
    }
}

impl CallersConfig {
    /// Checks that every configured token is long enough not to be guessed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (field, token) in [
            ("edge_token", &self.edge_token),
            ("admin_token", &self.admin_token),
        ] {
            if token
                .as_ref()
                .is_some_and(|token| token.expose().len() < MIN_TOKEN_LEN)
            {
                return Err(ConfigError::new(field, "must be at least 32 characters"));
            }
        }
        Ok(())
    }
}

impl OAuthFaceConfig {
    /// Returns the issuer identity: the configured origin (or the listener's own
    /// `http://` address) and the resources.
    pub fn issuer(&self) -> Result<Issuer, ConfigError> {
        let issuer = match &self.issuer {
            Some(url) => url.clone(),
            None => url::Url::parse(&format!("http://{}", self.listen_addr))
                .map_err(|_| ConfigError::new("listen_addr", "is not a usable origin"))?,
        };
        Ok(Issuer {
            issuer,
            resources: self
                .resources
                .iter()
                .map(|resource| ProtectedResource {
                    name: resource.name.clone(),
                    url: resource.url.clone(),
                    scopes: resource.scopes.clone(),
                })
                .collect(),
        })
    }
}

impl From<&StoreSection> for StoreConfig {
    fn from(section: &StoreSection) -> Self {
        match &section.postgres_url {
            Some(url) => StoreConfig::Postgres {
                url: secrecy::SecretString::from(url.expose().to_owned()),
            },
            None => StoreConfig::Sqlite {
                path: section.data_dir.join("authz.db"),
            },
        }
    }
}

impl AuditForwardConfig {
    /// Checks that a URL comes with the token audit-svc admits authz-svc by.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.url.is_some() && self.token.is_none() {
            return Err(ConfigError::new(
                "token",
                "is required when url is set (audit-svc admits authz-svc by it)",
            ));
        }
        if self.max_spool_bytes == 0 {
            return Err(ConfigError::new("max_spool_bytes", "must be positive"));
        }
        Ok(())
    }
}
