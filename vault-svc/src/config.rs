//! vault-svc's configuration.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use figment::Figment;
use serde::{Deserialize, Serialize};
pub use svc_kit::callers::SecretSetting;
use svc_kit::{ConfigError, GrpcServerConfig, MetricsConfig, TelemetryConfig};

use crate::error::Error;

/// Prefixes the environment variables that configure vault-svc, such as
/// `GATEHOUSE_VAULT__GRPC__LISTEN_ADDR`.
pub const ENV_PREFIX: &str = "GATEHOUSE_VAULT__";

/// Is the address vault-svc's gRPC server binds unless configured otherwise.
pub const DEFAULT_LISTEN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50052);

/// Configures vault-svc.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Configures the gRPC listener: address, request timeout, shutdown grace.
    pub grpc: GrpcServerConfig,
    /// Configures logs and traces.
    pub telemetry: TelemetryConfig,
    /// Serves Prometheus scrapes on `metrics.listen_addr` (this service has no HTTP listener
    /// of its own); the same instruments also go out over OTLP when configured.
    pub metrics: MetricsConfig,
    /// Holds the data directory: the SQLite file and the generated key file live
    /// here unless configured elsewhere.
    pub data_dir: PathBuf,
    /// Names the tenant every credential and ciphertext is bound to.
    pub tenant: String,
    /// Chooses the credential store.
    pub store: StoreConfig,
    /// Chooses the key-encryption key source.
    pub kek: KekConfig,
    /// Holds the service tokens that identify callers.
    pub callers: CallersConfig,
    /// Configures the refresh engine and its locks.
    pub refresh: RefreshConfig,
    /// Configures vault-svc's HTTP face (per-member consent).
    pub http: HttpConfig,
    /// Declares the connectors vault-svc holds credentials for, by name.
    pub connectors: BTreeMap<String, ConnectorConfig>,
    /// Sends credential events to audit-svc (standalone vault-svc; the product
    /// binary routes them through edge's spool instead).
    pub audit: AuditConfig,
}

/// Configures delivery of credential events to audit-svc, through a durable spool on
/// local disk; without `endpoint` they are only logged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Holds audit-svc's gRPC endpoint, such as `http://audit-svc:50053`.
    pub endpoint: Option<String>,
    /// Holds the service token vault-svc presents (audit-svc's `callers.vault_token`).
    pub token: Option<SecretSetting>,
    /// Holds the spool directory, on local disk and private to this replica; defaults
    /// to `<data_dir>/vault-audit-spool`.
    pub spool_dir: Option<PathBuf>,
    /// Bounds the unacknowledged bytes kept while audit-svc is unreachable.
    pub max_spool_bytes: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            token: None,
            spool_dir: None,
            max_spool_bytes: audit_spool::SpoolLimits::default().max_bytes,
        }
    }
}

/// Chooses the store: PostgreSQL when `postgres_url` is set, otherwise a SQLite
/// file (`sqlite_path`, default `<data_dir>/vault.db`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Holds the SQLite database file; defaults to `<data_dir>/vault.db`.
    pub sqlite_path: Option<PathBuf>,
    /// Holds the PostgreSQL URL.
    pub postgres_url: Option<SecretSetting>,
}

/// Chooses where the key-encryption keys come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KekConfig {
    /// Reads the keyring (`VERSION:BASE64,…`) from this environment variable
    /// instead of a key file, when set. Such a keyring is rotated by the
    /// operator (add a version, restart); vault-svc re-wraps on start.
    pub env_var: Option<String>,
    /// Holds the key file; defaults to `<data_dir>/vault.kek`, generated (mode
    /// 0600) on first start.
    pub key_file: Option<PathBuf>,
    /// Bounds how many credentials one re-wrap batch touches.
    pub rewrap_batch: u32,
}

/// Holds the service tokens callers present in the `x-gatehouse-service-token`
/// metadata. A caller whose token matches none is refused; a role without a
/// token configured has no caller at all (fail closed).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallersConfig {
    /// Identifies edge-svc, the only caller that receives material.
    pub edge_token: Option<SecretSetting>,
    /// Identifies authz-svc, which may revoke principals.
    pub authz_token: Option<SecretSetting>,
    /// Identifies the admin surface (CLI, admin API).
    pub admin_token: Option<SecretSetting>,
}

/// Configures the refresh engine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RefreshConfig {
    /// Runs the refresh engine in this process.
    pub enabled: bool,
    /// Holds the Redis URL for cross-replica locks; in-process locks without it.
    pub redis_url: Option<SecretSetting>,
    /// Prefixes every Redis key vault-svc writes.
    pub redis_key_prefix: String,
    /// Bounds how long the engine sleeps between scans for due credentials.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Holds a lock's lease; must far exceed `http_timeout`.
    #[serde(with = "humantime_serde")]
    pub lock_ttl: Duration,
    /// Bounds one call to a provider's token endpoint.
    #[serde(with = "humantime_serde")]
    pub http_timeout: Duration,
    /// Bounds how many refreshes run at once in this process.
    pub concurrency: usize,
    /// Bounds how many due credentials one scan reads.
    pub batch: u32,
}

/// Configures the HTTP face.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Holds the public base URL of the HTTP face, such as
    /// `https://gatehouse.example.com/vault`; consent links and OAuth redirect
    /// URIs are built from it.
    pub public_url: String,
    /// Bounds how long a consent link stays usable.
    #[serde(with = "humantime_serde")]
    pub consent_ttl: Duration,
    /// Serves the HTTP face (`/oauth/callback`, `/api-key`) on this address when vault-svc runs
    /// on its own; `gatehouse up` serves it on its public listener instead. None by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_addr: Option<SocketAddr>,
}

/// Declares one connector's credential model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorConfig {
    /// Says whose credential a call uses.
    pub credential: CredentialMode,
    /// Configures the downstream OAuth provider for per-member consent.
    #[serde(default)]
    pub oauth: Option<OAuthProviderConfig>,
    /// Lets members paste their own API key through the consent link (`per_member` only).
    #[serde(default)]
    pub api_key: Option<ApiKeyConfig>,
    /// Rotates the shared secret on a schedule through a hook (`shared` only).
    #[serde(default)]
    pub rotation: Option<RotationConfig>,
}

/// Declares a per-member API key: members paste it on vault-svc's page, and edge sends it in
/// `header` unless the connector's injection template says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// Names the header the key travels in, such as `X-Api-Key`.
    #[serde(default = "default_api_key_header")]
    pub header: String,
}

fn default_api_key_header() -> String {
    "X-Api-Key".to_owned()
}

/// Declares how a shared secret is rotated: every `every`, a hook produces the next value,
/// the previous one stays valid for `overlap`, then the hook is told to retire it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationConfig {
    /// Holds the time between rotations, such as `30d`.
    #[serde(with = "humantime_serde")]
    pub every: Duration,
    /// Holds how long the previous value stays valid after a rotation.
    #[serde(with = "humantime_serde", default)]
    pub overlap: Duration,
    /// Holds what produces a new value and retires the old one.
    pub hook: RotationHook,
    /// Bounds consecutive failed attempts before the rotation needs attention.
    #[serde(default = "default_rotation_attempts")]
    pub max_attempts: u32,
    /// Holds the first retry delay; it doubles per failure up to `max_backoff`.
    #[serde(with = "humantime_serde", default = "default_rotation_backoff")]
    pub backoff: Duration,
    /// Caps the retry delay.
    #[serde(with = "humantime_serde", default = "default_rotation_max_backoff")]
    pub max_backoff: Duration,
    /// Bounds one hook call.
    #[serde(with = "humantime_serde", default = "default_rotation_timeout")]
    pub timeout: Duration,
}

/// Is a rotation hook: a command run without a shell, or an HTTP endpoint called with POST.
///
/// Either receives `{"action": "rotate" | "retire", "connector", "rotation_id", "current"}`
/// as JSON (on standard input, or as the body), `current` being the secret value the action
/// is about; `rotate` answers the new value (standard output, or the body; `{"value": …}` or
/// plain text). The secret never travels in arguments or URLs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RotationHook {
    /// Runs `command[0]` with the rest as arguments.
    Command(Vec<String>),
    /// Posts to an HTTP endpoint.
    Http {
        /// Holds the endpoint.
        url: String,
        /// Holds a bearer token presented to the endpoint, if it wants one.
        #[serde(default)]
        bearer: Option<SecretSetting>,
    },
}

fn default_rotation_attempts() -> u32 {
    5
}

fn default_rotation_backoff() -> Duration {
    Duration::from_secs(30)
}

fn default_rotation_max_backoff() -> Duration {
    Duration::from_secs(3600)
}

fn default_rotation_timeout() -> Duration {
    Duration::from_secs(60)
}

/// Says whose credential a connector's calls use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialMode {
    /// The connector's shared service-account credential.
    Shared,
    /// The calling member's own credential.
    PerMember,
}

/// Configures a downstream OAuth provider: static endpoints, or discovery from
/// the connector's RFC 9728 resource metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthProviderConfig {
    /// Holds the client id vault-svc registered at the provider.
    pub client_id: String,
    /// Holds the client secret, for confidential clients.
    #[serde(default)]
    pub client_secret: Option<SecretSetting>,
    /// Holds the authorization endpoint (static configuration).
    #[serde(default)]
    pub authorization_endpoint: Option<String>,
    /// Holds the token endpoint (static configuration).
    #[serde(default)]
    pub token_endpoint: Option<String>,
    /// Holds the connector's resource URL; with no static endpoints, its RFC 9728
    /// metadata names the authorization server (RFC 8414). Sent as `resource`.
    #[serde(default)]
    pub resource: Option<String>,
    /// Holds the scopes to request.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Holds the RFC 7009 revocation endpoint; grants are revoked there when
    /// deleted or when their member is revoked.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

impl AuditConfig {
    /// Checks that an endpoint comes with a usable token and room to spool.
    fn validate(&self) -> Result<(), Error> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(());
        };
        url::Url::parse(endpoint)
            .map_err(|_| ConfigError::new("audit.endpoint", "must be an absolute URL"))?;
        if self
            .token
            .as_ref()
            .is_none_or(|token| token.expose().len() < svc_kit::callers::MIN_TOKEN_LEN)
        {
            return Err(ConfigError::new(
                "audit.token",
                "must be set, at least 32 characters, with audit.endpoint",
            )
            .into());
        }
        if self.max_spool_bytes == 0 {
            return Err(ConfigError::new("audit.max_spool_bytes", "must be positive").into());
        }
        Ok(())
    }
}

impl ConnectorConfig {
    /// Returns a connector of `credential` mode with nothing else declared.
    pub fn new(credential: CredentialMode) -> Self {
        Self {
            credential,
            oauth: None,
            api_key: None,
            rotation: None,
        }
    }

    /// Checks that the declared blocks fit the mode and each other.
    fn validate(&self, name: &str) -> Result<(), Error> {
        let invalid = |field: &str, reason: &str| -> Result<(), Error> {
            Err(ConfigError::new(format!("connectors.{name}.{field}"), reason).into())
        };
        if let Some(api_key) = &self.api_key {
            if self.credential != CredentialMode::PerMember {
                return invalid("api_key", "applies to per_member connectors");
            }
            if self.oauth.is_some() {
                return invalid("api_key", "set api_key or oauth, not both");
            }
            if http::HeaderName::try_from(api_key.header.as_str()).is_err() {
                return invalid("api_key.header", "is not a header name");
            }
        }
        if let Some(rotation) = &self.rotation {
            if self.credential != CredentialMode::Shared {
                return invalid("rotation", "applies to shared connectors");
            }
            if rotation.every.is_zero() || rotation.max_attempts == 0 {
                return invalid("rotation", "every and max_attempts must be positive");
            }
            if rotation.overlap >= rotation.every {
                return invalid("rotation.overlap", "must be shorter than rotation.every");
            }
            if rotation.backoff.is_zero() || rotation.timeout.is_zero() {
                return invalid("rotation", "backoff and timeout must be positive");
            }
            match &rotation.hook {
                RotationHook::Command(command) if command.is_empty() => {
                    return invalid("rotation.hook.command", "must name a program");
                }
                RotationHook::Http { url, .. } if url::Url::parse(url).is_err() => {
                    return invalid("rotation.hook.http.url", "must be an absolute URL");
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Names where credentials are kept, resolved against the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// Holds a SQLite file path.
    Sqlite(PathBuf),
    /// Holds a PostgreSQL URL.
    Postgres(SecretSetting),
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc: GrpcServerConfig::with_listen_addr(DEFAULT_LISTEN_ADDR),
            telemetry: TelemetryConfig::default(),
            metrics: MetricsConfig::default(),
            data_dir: PathBuf::from(".gatehouse"),
            tenant: "default".to_owned(),
            store: StoreConfig::default(),
            kek: KekConfig::default(),
            callers: CallersConfig::default(),
            refresh: RefreshConfig::default(),
            http: HttpConfig::default(),
            connectors: BTreeMap::new(),
            audit: AuditConfig::default(),
        }
    }
}

impl Default for KekConfig {
    fn default() -> Self {
        Self {
            env_var: None,
            key_file: None,
            rewrap_batch: 100,
        }
    }
}

impl Default for RefreshConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            redis_url: None,
            redis_key_prefix: "gatehouse:vault:".to_owned(),
            poll_interval: Duration::from_secs(1),
            lock_ttl: Duration::from_secs(30),
            http_timeout: Duration::from_secs(10),
            concurrency: 16,
            batch: 200,
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            public_url: "http://127.0.0.1:8080/vault".to_owned(),
            consent_ttl: Duration::from_secs(600),
            listen_addr: None,
        }
    }
}

impl Config {
    /// Returns the configuration from `sources` over the defaults, validated.
    #[expect(
        clippy::result_large_err,
        reason = "figment's error is what svc_kit::exit_on_invalid takes, once, at startup"
    )]
    pub fn load(sources: Figment) -> Result<Self, figment::Error> {
        let config: Self = svc_kit::extract(sources)?;
        config
            .validate()
            .map_err(|error| figment::Error::from(error.to_string()))?;
        Ok(config)
    }

    /// Checks the values that parse but cannot be used.
    pub fn validate(&self) -> Result<(), Error> {
        self.grpc.validate().map_err(|error| error.nested("grpc"))?;
        self.telemetry
            .validate()
            .map_err(|error| error.nested("telemetry"))?;
        if self.store.sqlite_path.is_some() && self.store.postgres_url.is_some() {
            return Err(
                ConfigError::new("store", "set sqlite_path or postgres_url, not both").into(),
            );
        }
        if self.tenant.is_empty() {
            return Err(ConfigError::new("tenant", "must not be empty").into());
        }
        let refresh = &self.refresh;
        if refresh.poll_interval.is_zero() || refresh.concurrency == 0 || refresh.batch == 0 {
            return Err(ConfigError::new(
                "refresh",
                "poll_interval, concurrency and batch must be positive",
            )
            .into());
        }
        if refresh.lock_ttl < refresh.http_timeout * 2 {
            return Err(ConfigError::new(
                "refresh.lock_ttl",
                "must be at least twice refresh.http_timeout",
            )
            .into());
        }
        if self.kek.rewrap_batch == 0 {
            return Err(ConfigError::new("kek.rewrap_batch", "must be positive").into());
        }
        for token in [
            &self.callers.edge_token,
            &self.callers.authz_token,
            &self.callers.admin_token,
        ]
        .into_iter()
        .flatten()
        {
            if token.expose().len() < 16 {
                return Err(ConfigError::new(
                    "callers",
                    "service tokens must be at least 16 characters",
                )
                .into());
            }
        }
        url::Url::parse(&self.http.public_url)
            .map_err(|_| ConfigError::new("http.public_url", "must be an absolute URL"))?;
        self.audit.validate()?;
        for (name, connector) in &self.connectors {
            connector.validate(name)?;
            if let Some(oauth) = &connector.oauth {
                let static_endpoints =
                    oauth.authorization_endpoint.is_some() && oauth.token_endpoint.is_some();
                if !static_endpoints && oauth.resource.is_none() {
                    return Err(ConfigError::new(
                        format!("connectors.{name}.oauth"),
                        "set authorization_endpoint and token_endpoint, or resource for discovery",
                    )
                    .into());
                }
            }
        }
        Ok(())
    }

    /// Returns the configuration with `dir` as its data directory, so that the
    /// default SQLite file and key file are kept there (`gatehouse up --data DIR`).
    #[must_use]
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// Returns where credentials are kept.
    pub fn store_location(&self) -> StoreLocation {
        match (&self.store.postgres_url, &self.store.sqlite_path) {
            (Some(url), _) => StoreLocation::Postgres(url.clone()),
            (None, Some(path)) => StoreLocation::Sqlite(path.clone()),
            (None, None) => StoreLocation::Sqlite(self.data_dir.join("vault.db")),
        }
    }

    /// Returns the key file.
    pub fn key_file(&self) -> PathBuf {
        self.kek
            .key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("vault.kek"))
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format as _, Toml};

    use super::*;

    #[test]
    fn defaults_listen_on_the_vault_port() {
        let config = Config::load(Figment::new()).unwrap();
        assert_eq!(config.grpc.listen_addr, DEFAULT_LISTEN_ADDR);
    }

    #[test]
    fn secrets_are_redacted_and_data_dir_holds_the_defaults() {
        let sources = Figment::from(Toml::string(
            "[store]\npostgres_url = \"postgres://u:canary-pw@h/db\"\n\
             [callers]\nedge_token = \"canary-edge-token-0123\"\n",
        ));
        let config = Config::load(sources).unwrap().with_data_dir("/tmp/gh");
        let debug = format!("{config:?}");
        assert!(!debug.contains("canary"), "{debug}");
        assert_eq!(config.key_file(), PathBuf::from("/tmp/gh/vault.kek"));
        assert!(matches!(
            config.store_location(),
            StoreLocation::Postgres(_)
        ));
    }

    #[test]
    fn short_service_token_is_refused() {
        let sources = Figment::from(Toml::string("[callers]\nedge_token = \"short\"\n"));
        assert!(
            Config::load(sources)
                .unwrap_err()
                .to_string()
                .contains("callers")
        );
    }

    #[test]
    fn oauth_connector_needs_endpoints_or_a_resource() {
        let sources = Figment::from(Toml::string(
            "[connectors.github]\ncredential = \"per_member\"\n[connectors.github.oauth]\nclient_id = \"c\"\n",
        ));
        let error = Config::load(sources).unwrap_err();
        assert!(
            error.to_string().contains("connectors.github.oauth"),
            "{error}"
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let sources = Figment::from(Toml::string("listen_adr = \"127.0.0.1:1\"\n"));
        assert!(Config::load(sources).is_err());
    }

    #[test]
    fn invalid_value_names_its_key() {
        let sources = Figment::from(Toml::string("[telemetry]\nlog_filter = \"info,[\"\n"));
        let error = Config::load(sources).unwrap_err();
        assert!(
            error.to_string().contains("telemetry.log_filter"),
            "{error}"
        );
    }
}
