//! audit-svc's configuration.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use serde::{Deserialize, Serialize};
use svc_kit::callers::{MIN_TOKEN_LEN, SecretSetting};
use svc_kit::{ConfigError, GrpcServerConfig, MetricsConfig, TelemetryConfig};

use crate::error::Error;
use crate::retention::RetentionConfig;
use crate::sinks::SinkConfig;

/// Prefixes the environment variables that configure audit-svc, such as
/// `GATEHOUSE_AUDIT__GRPC__LISTEN_ADDR`.
pub const ENV_PREFIX: &str = "GATEHOUSE_AUDIT__";

/// Is the address audit-svc's gRPC server binds unless configured otherwise.
pub const DEFAULT_LISTEN_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 50053);

/// Configures audit-svc.
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
    /// Holds the data directory: the SQLite file and the checkpoint key live here
    /// unless configured elsewhere.
    pub data_dir: PathBuf,
    /// Chooses the event store.
    pub store: StoreConfig,
    /// Configures signed checkpoints.
    pub checkpoint: CheckpointConfig,
    /// Lists the SIEM sinks, each a durable cursor over the log (`[[sinks]]`).
    pub sinks: Vec<SinkConfig>,
    /// Configures archiving and removing old events.
    pub retention: RetentionConfig,
    /// Holds the service tokens that identify callers; a role without a token
    /// admits nobody, so an unconfigured audit-svc serves no one.
    pub callers: CallersConfig,
}

/// Holds the service tokens callers present in the `x-gatehouse-service-token`
/// metadata, one per role.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CallersConfig {
    /// Identifies edge-svc, which appends call events.
    pub edge_token: Option<SecretSetting>,
    /// Identifies authz-svc, which appends token and grant events.
    pub authz_token: Option<SecretSetting>,
    /// Identifies vault-svc, which appends credential events.
    pub vault_token: Option<SecretSetting>,
    /// Identifies auditors and administrators, who search, tail and prove.
    pub auditor_token: Option<SecretSetting>,
}

/// Chooses the event store: PostgreSQL when `postgres_url` is set, otherwise a
/// SQLite file (`sqlite_path`, default `<data_dir>/audit.db`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Holds the SQLite database file; defaults to `<data_dir>/audit.db`.
    pub sqlite_path: Option<PathBuf>,
    /// Holds the PostgreSQL URL, such as `postgres://audit@db/gatehouse`.
    pub postgres_url: Option<DatabaseUrl>,
}

/// Holds a database URL, which may carry a password: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

/// Configures signed checkpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Holds how often a checkpoint of new events is signed.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Names the log in checkpoints (the note's first line and key name).
    pub origin: String,
    /// Holds the Ed25519 key file; defaults to `<data_dir>/audit-checkpoint.key`
    /// and is generated on first start.
    pub key_file: Option<PathBuf>,
}

/// Names where the log is kept, resolved against the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreLocation {
    /// Holds a SQLite file path.
    Sqlite(PathBuf),
    /// Holds a PostgreSQL URL.
    Postgres(DatabaseUrl),
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc: GrpcServerConfig::with_listen_addr(DEFAULT_LISTEN_ADDR),
            telemetry: TelemetryConfig::default(),
            metrics: MetricsConfig::default(),
            data_dir: PathBuf::from(".gatehouse"),
            store: StoreConfig::default(),
            checkpoint: CheckpointConfig::default(),
            sinks: Vec::new(),
            retention: RetentionConfig::default(),
            callers: CallersConfig::default(),
        }
    }
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(10),
            origin: "gatehouse.local/audit".to_owned(),
            key_file: None,
        }
    }
}

impl DatabaseUrl {
    /// Returns the URL for a database client; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for DatabaseUrl {
    fn from(url: String) -> Self {
        Self(url)
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("DatabaseUrl(<redacted>)")
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
        if self.checkpoint.interval.is_zero() {
            return Err(ConfigError::new("checkpoint.interval", "must be positive").into());
        }
        let origin = &self.checkpoint.origin;
        if origin.is_empty() || origin.chars().any(|c| c.is_whitespace() || c == '+') {
            return Err(ConfigError::new(
                "checkpoint.origin",
                "must be non-empty, without spaces or '+'",
            )
            .into());
        }
        if self.retention.interval.is_zero() {
            return Err(ConfigError::new("retention.interval", "must be positive").into());
        }
        if self
            .retention
            .max_age
            .is_some_and(|age| age < self.checkpoint.interval)
        {
            return Err(ConfigError::new(
                "retention.max_age",
                "must be at least checkpoint.interval (a prune ends at a checkpoint)",
            )
            .into());
        }
        for (field, token) in [
            ("callers.edge_token", &self.callers.edge_token),
            ("callers.authz_token", &self.callers.authz_token),
            ("callers.vault_token", &self.callers.vault_token),
            ("callers.auditor_token", &self.callers.auditor_token),
        ] {
            if token
                .as_ref()
                .is_some_and(|token| token.expose().len() < MIN_TOKEN_LEN)
            {
                return Err(ConfigError::new(
                    field,
                    format!("must be at least {MIN_TOKEN_LEN} characters"),
                )
                .into());
            }
        }
        let mut names = std::collections::HashSet::new();
        for (index, sink) in self.sinks.iter().enumerate() {
            sink.validate()
                .map_err(|error| error.nested(&format!("sinks[{index}]")))?;
            if !names.insert(sink.name.as_str()) {
                return Err(ConfigError::new(
                    format!("sinks[{index}].name"),
                    "must be unique: each name owns a cursor",
                )
                .into());
            }
        }
        Ok(())
    }

    /// Returns the configuration with `dir` as its data directory, so that the
    /// default SQLite file and checkpoint key are kept there
    /// (`gatehouse up --data DIR`).
    #[must_use]
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = dir.into();
        self
    }

    /// Returns where the log is kept.
    pub fn store_location(&self) -> StoreLocation {
        match (&self.store.postgres_url, &self.store.sqlite_path) {
            (Some(url), _) => StoreLocation::Postgres(url.clone()),
            (None, Some(path)) => StoreLocation::Sqlite(path.clone()),
            (None, None) => StoreLocation::Sqlite(self.data_dir.join("audit.db")),
        }
    }

    /// Returns the retention archive directory.
    pub fn archive_dir(&self) -> PathBuf {
        self.retention
            .archive_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("archive"))
    }

    /// Returns the checkpoint signing key file.
    pub fn key_file(&self) -> PathBuf {
        self.checkpoint
            .key_file
            .clone()
            .unwrap_or_else(|| crate::checkpoint::default_key_path(Path::new(&self.data_dir)))
    }
}

#[cfg(test)]
mod tests {
    use figment::providers::{Format as _, Toml};

    use super::*;

    #[test]
    fn defaults_listen_on_the_audit_port() {
        let config = Config::load(Figment::new()).unwrap();
        assert_eq!(config.grpc.listen_addr, DEFAULT_LISTEN_ADDR);
    }

    #[test]
    fn data_dir_holds_the_default_sqlite_file() {
        let config = Config::load(Figment::new())
            .unwrap()
            .with_data_dir("/tmp/gh");
        assert_eq!(
            config.store_location(),
            StoreLocation::Sqlite(PathBuf::from("/tmp/gh/audit.db"))
        );
        assert_eq!(
            config.key_file(),
            PathBuf::from("/tmp/gh/audit-checkpoint.key")
        );
    }

    #[test]
    fn postgres_url_is_redacted_in_debug() {
        let sources = Figment::from(Toml::string(
            "[store]\npostgres_url = \"postgres://u:canary-pw@h/db\"\n",
        ));
        let config = Config::load(sources).unwrap();
        assert!(!format!("{config:?}").contains("canary-pw"));
        assert!(matches!(
            config.store_location(),
            StoreLocation::Postgres(_)
        ));
    }

    #[test]
    fn sinks_and_retention_parse() {
        let sources = Figment::from(Toml::string(
            "[retention]\nmax_age = \"30d\"\n\
             [[sinks]]\nname = \"splunk\"\nshape = \"ocsf\"\n\
             [sinks.splunk_hec]\nurl = \"https://s:8088\"\ntoken = \"t\"\nack = true\n\
             [[sinks]]\nname = \"syslog\"\nshape = \"cef\"\n\
             [sinks.syslog]\naddress = \"s:6514\"\n[sinks.syslog.tls]\nca_file = \"/ca.pem\"\n",
        ));
        let config = Config::load(sources).unwrap();
        assert_eq!(config.sinks.len(), 2);
        assert_eq!(config.sinks[0].shape, crate::sinks::Shape::Ocsf);
        assert!(config.sinks[0].splunk_hec.as_ref().unwrap().ack);
        assert_eq!(config.sinks[1].batch_size, 500);
        assert_eq!(
            config.retention.max_age,
            Some(std::time::Duration::from_secs(30 * 86_400))
        );
        assert_eq!(config.archive_dir(), PathBuf::from(".gatehouse/archive"));
    }

    #[test]
    fn a_sink_needs_exactly_one_transport_and_a_unique_name() {
        for toml in [
            "[[sinks]]\nname = \"x\"\n",
            "[[sinks]]\nname = \"x\"\n[sinks.jsonl]\npath = \"a\"\n\
             [sinks.otlp]\nendpoint = \"http://c:4318\"\n",
            "[[sinks]]\nname = \"x\"\n[sinks.jsonl]\npath = \"a\"\n\
             [[sinks]]\nname = \"x\"\n[sinks.jsonl]\npath = \"b\"\n",
            "[[sinks]]\nname = \"bad name\"\n[sinks.jsonl]\npath = \"a\"\n",
            "[[sinks]]\nname = \"x\"\nshape = \"xml\"\n[sinks.jsonl]\npath = \"a\"\n",
        ] {
            let error = Config::load(Figment::from(Toml::string(toml))).unwrap_err();
            assert!(error.to_string().contains("sinks"), "{toml}: {error}");
        }
    }

    #[test]
    fn retention_shorter_than_a_checkpoint_interval_is_refused() {
        let sources = Figment::from(Toml::string("[retention]\nmax_age = \"1s\"\n"));
        let error = Config::load(sources).unwrap_err();
        assert!(error.to_string().contains("retention.max_age"), "{error}");
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
