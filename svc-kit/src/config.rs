//! Layered configuration: serde defaults, then an optional TOML file, then
//! environment variables; plus the configuration shared by every service.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Reports a configuration value that parses but cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ConfigError {
    /// Names the offending key, dotted from the configuration root.
    pub field: String,
    /// Says what is wrong with its value.
    pub reason: String,
}

/// Configures logging and tracing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Selects the log line format.
    pub log_format: LogFormat,
    /// Filters logs and spans, in `RUST_LOG` syntax (for example `info,tower=warn`).
    pub log_filter: String,
    /// Names the OTLP/gRPC collector that spans are exported to; no export when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// Sets the OpenTelemetry `service.namespace` resource attribute.
    pub service_namespace: String,
}

/// Configures a Prometheus scrape listener for a service with no HTTP listener of its own
/// (standalone vault-svc and audit-svc); edge and authz serve `/metrics` on theirs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serves `GET /metrics` on this address; no listener when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_addr: Option<SocketAddr>,
}

/// Selects how log lines are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Writes one JSON object per line, for machines.
    #[default]
    Json,
    /// Writes human-readable multi-line records, for terminals.
    Pretty,
}

/// Configures a service's gRPC listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpcServerConfig {
    /// Sets the address the gRPC server binds.
    pub listen_addr: SocketAddr,
    /// Bounds how long one unary request (or a stream's first response) may take.
    #[serde(with = "humantime_serde", default = "default_server_request_timeout")]
    pub request_timeout: Duration,
    /// Bounds how long in-flight requests may run on after shutdown begins.
    #[serde(with = "humantime_serde", default = "default_shutdown_grace")]
    pub shutdown_grace: Duration,
}

/// Configures a gRPC client channel to another Gatehouse service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcClientConfig {
    /// Bounds how long establishing a connection may take.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Bounds how long a request may wait for its response headers; server
    /// streams are not cut off once their headers have arrived.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
}

/// Returns the configuration sources of a service: an optional TOML file, then
/// environment variables starting with `env_prefix`, later sources winning.
///
/// Environment keys are split on `__` for nesting, so with the prefix
/// `GATEHOUSE_AUTHZ__` the variable `GATEHOUSE_AUTHZ__GRPC__LISTEN_ADDR` sets
/// `grpc.listen_addr`. A named file that cannot be read is an error at
/// extraction. Serde defaults fill whatever no source sets; [`extract`] also
/// fills nested keys from the type's `Default`.
pub fn config_sources(env_prefix: &str, file: Option<&Path>) -> Figment {
    let figment = match file {
        Some(path) => Figment::from(Toml::file_exact(path)),
        None => Figment::new(),
    };
    figment.merge(Env::prefixed(env_prefix).split("__"))
}

/// Returns the configuration extracted from `figment`, with every key that no
/// source sets taken from `T::default()`, however deeply nested.
///
/// Plain `Figment::extract` would fall back to a nested struct's own defaults as
/// soon as one of its keys is set; joining the defaults keeps each service's own
/// defaults (such as its listen port) in that case.
#[expect(
    clippy::result_large_err,
    reason = "figment's error is what callers hand to exit_on_invalid, once, at startup"
)]
pub fn extract<T>(figment: Figment) -> Result<T, figment::Error>
where
    T: Serialize + DeserializeOwned + Default,
{
    figment.join(Serialized::defaults(T::default())).extract()
}

/// Returns the value of `result`, or prints the configuration error on one line
/// to stderr and exits the process with status 64 (`EX_USAGE`).
pub fn exit_on_invalid<T>(result: Result<T, figment::Error>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => {
            let messages: Vec<String> = error
                .into_iter()
                .map(|error| error.to_string().replace('\n', " "))
                .collect();
            eprintln!("invalid configuration: {}", messages.join("; "));
            std::process::exit(64)
        }
    }
}

impl ConfigError {
    /// Returns an error for `field` with the given reason.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Returns the same error with its field placed under `parent`.
    #[must_use]
    pub fn nested(self, parent: &str) -> Self {
        Self {
            field: format!("{parent}.{}", self.field),
            reason: self.reason,
        }
    }
}

impl From<ConfigError> for figment::Error {
    fn from(error: ConfigError) -> Self {
        figment::Error::from(error.to_string())
    }
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_format: LogFormat::Json,
            // rmcp logs every MCP session it opens and closes at info: per call on the data plane.
            // Its service logs a WARN for every error answered to a client (an unknown tool, a
            // malformed request), quoting the error: a log any client could flood, with whatever
            // it sent; the audit trail and the metrics already count refusals. Its transport
            // worker logs an ERROR each time a downstream cannot be reached, at every
            // reconnection attempt; edge reports the same failure with its cause, once.
            log_filter: "info,rmcp=warn,rmcp::service=error,rmcp::transport::worker=off".to_owned(),
            otlp_endpoint: None,
            service_namespace: "gatehouse".to_owned(),
        }
    }
}

impl TelemetryConfig {
    /// Checks that the filter parses and the OTLP endpoint is an http(s) URL.
    pub fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::builder()
            .parse(&self.log_filter)
            .map_err(|error| ConfigError::new("log_filter", error.to_string()))?;
        if let Some(endpoint) = &self.otlp_endpoint {
            let uri: http::Uri = endpoint
                .parse()
                .map_err(|_| ConfigError::new("otlp_endpoint", "not a URL"))?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(ConfigError::new(
                    "otlp_endpoint",
                    "must be an http:// or https:// URL with a host",
                ));
            }
        }
        if self.service_namespace.is_empty() {
            return Err(ConfigError::new("service_namespace", "must not be empty"));
        }
        Ok(())
    }
}

impl GrpcServerConfig {
    /// Returns a configuration listening on `listen_addr` with default timeouts.
    pub fn with_listen_addr(listen_addr: SocketAddr) -> Self {
        Self {
            listen_addr,
            request_timeout: default_server_request_timeout(),
            shutdown_grace: default_shutdown_grace(),
        }
    }

    /// Checks that the request timeout is positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new("request_timeout", "must be positive"));
        }
        Ok(())
    }
}

impl Default for GrpcClientConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
        }
    }
}

impl GrpcClientConfig {
    /// Checks that both timeouts are positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.connect_timeout.is_zero() {
            return Err(ConfigError::new("connect_timeout", "must be positive"));
        }
        if self.request_timeout.is_zero() {
            return Err(ConfigError::new("request_timeout", "must be positive"));
        }
        Ok(())
    }
}

fn default_server_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

#[cfg(test)]
mod tests;
