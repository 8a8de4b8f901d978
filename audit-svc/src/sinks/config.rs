//! The configuration of SIEM sinks: one `[[sinks]]` table per sink, each naming
//! its event shape, batching, retry bounds and exactly one transport table.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use svc_kit::ConfigError;

/// Configures one sink: a named cursor over the log delivering to one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Names the sink; its cursor and dead letters are stored under this name, so
    /// renaming a sink starts it again from the beginning of the log.
    pub name: String,
    /// Chooses how events are rendered for this sink.
    #[serde(default)]
    pub shape: Shape,
    /// Holds how many events one delivery carries at most.
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Holds how often the sink looks for events appended by other replicas
    /// (local appends wake it at once).
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll_interval: Duration,
    /// Bounds the exponential backoff between retries.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Sends RFC 5424 syslog over TCP or TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub syslog: Option<SyslogConfig>,
    /// Sends to a Splunk HTTP Event Collector.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub splunk_hec: Option<HecConfig>,
    /// Sends OTLP logs over HTTP/protobuf.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp: Option<OtlpConfig>,
    /// Appends JSON lines to a local file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jsonl: Option<JsonlConfig>,
    /// Writes gzip JSONL batches to S3-compatible object storage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Config>,
}

/// Chooses an event's rendering.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// Is the event's canonical proto3 JSON, byte for byte as hashed, so a
    /// receiver can recompute its leaf hash.
    #[default]
    Native,
    /// Is OCSF 1.8.0 API Activity (class 6003).
    Ocsf,
    /// Is ArcSight CEF (for CommonSecurityLog, QRadar and the like).
    Cef,
}

/// Bounds retries: full-jitter exponential backoff from `initial` up to `max`;
/// a receiver's `Retry-After` overrides the computed delay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Holds the first backoff.
    #[serde(with = "humantime_serde")]
    pub initial: Duration,
    /// Caps the backoff (and any `Retry-After`).
    #[serde(with = "humantime_serde")]
    pub max: Duration,
}

/// Configures a syslog receiver (RFC 5424 messages, RFC 6587 octet counting).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogConfig {
    /// Holds the receiver as `host:port`.
    pub address: String,
    /// Switches to TLS (RFC 5425) when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<SyslogTlsConfig>,
    /// Holds the APP-NAME header field.
    #[serde(default = "default_app_name")]
    pub app_name: String,
    /// Holds the HOSTNAME header field; `-` (nil) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Holds the IANA private enterprise number of the structured-data id
    /// (`gatehouse@PEN`); 32473 is the documentation number of RFC 5612.
    #[serde(default = "default_pen")]
    pub enterprise_number: u32,
    /// Bounds connecting and writing one batch.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// Configures TLS to a syslog receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyslogTlsConfig {
    /// Holds the PEM CA bundle that signs the receiver's certificate.
    pub ca_file: PathBuf,
    /// Holds the name the receiver's certificate must carry; defaults to the
    /// host part of `address` (an IP address is matched as one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// Holds a PEM client certificate chain for mutual TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// Holds the PEM private key of `client_cert_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

/// Configures a Splunk HTTP Event Collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HecConfig {
    /// Holds the collector's base URL, such as `https://splunk:8088`.
    pub url: String,
    /// Holds the HEC token (sent as `Authorization: Splunk <token>`).
    pub token: Secret,
    /// Holds the target index; the token's default index when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<String>,
    /// Holds the events' `source`.
    #[serde(default = "default_app_name")]
    pub source: String,
    /// Holds the events' `sourcetype`; defaults by shape (`gatehouse:audit:v1`,
    /// `gatehouse:audit:ocsf`, `gatehouse:audit:cef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sourcetype: Option<String>,
    /// Waits for indexer acknowledgement of each request (the token must have
    /// `useACK` on); without it a 200 counts as delivered.
    #[serde(default)]
    pub ack: bool,
    /// Holds how often pending acknowledgements are polled.
    #[serde(default = "default_ack_poll", with = "humantime_serde")]
    pub ack_poll: Duration,
    /// Holds how long an acknowledgement is awaited before the batch is resent.
    #[serde(default = "default_ack_timeout", with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Bounds one request body (Splunk Cloud refuses bodies over 1 MB).
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Bounds one HTTP request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// Configures an OTLP logs receiver (OTLP/HTTP protobuf or OTLP/gRPC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// Holds the receiver's base URL: for `http_protobuf` such as
    /// `http://collector:4318` (logs go to `<endpoint>/v1/logs`), for `grpc` such as
    /// `http://collector:4317`.
    pub endpoint: String,
    /// Chooses the OTLP transport; collectors commonly accept both.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// Holds the `service.name` resource attribute.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Bounds one export request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// Chooses how OTLP logs travel (the two transports of the OTLP specification).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OtlpProtocol {
    /// Is OTLP/HTTP with binary protobuf bodies.
    #[default]
    HttpProtobuf,
    /// Is OTLP/gRPC (`LogsService/Export`).
    Grpc,
}

/// Configures a local JSON-lines file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonlConfig {
    /// Holds the file events are appended to (one rendered event per line);
    /// signed checkpoints go to `<path>.checkpoints`.
    pub path: PathBuf,
}

/// Configures S3-compatible object storage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    /// Holds the service URL, such as `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    /// Holds the bucket.
    pub bucket: String,
    /// Holds the signing region.
    #[serde(default = "default_region")]
    pub region: String,
    /// Prefixes every object key.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// Holds the access key id.
    pub access_key_id: String,
    /// Holds the secret access key.
    pub secret_access_key: Secret,
    /// Addresses the bucket in the path (`endpoint/bucket/key`) rather than as a
    /// subdomain; S3-compatible servers usually need this.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Bounds one HTTP request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// Holds a credential from configuration: `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Returns the value for the one header or signature that needs it; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Secret(<redacted>)")
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(30),
        }
    }
}

impl SinkConfig {
    /// Checks the values that parse but cannot be used.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let valid_name = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.".contains(&byte));
        if !valid_name {
            return Err(ConfigError::new(
                "name",
                "must be 1 to 64 of [A-Za-z0-9-_.]",
            ));
        }
        let transports = [
            self.syslog.is_some(),
            self.splunk_hec.is_some(),
            self.otlp.is_some(),
            self.jsonl.is_some(),
            self.s3.is_some(),
        ];
        if transports.iter().filter(|set| **set).count() != 1 {
            return Err(ConfigError::new(
                "sinks",
                "each sink needs exactly one of syslog, splunk_hec, otlp, jsonl, s3",
            ));
        }
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(ConfigError::new("batch_size", "must be 1 to 10000"));
        }
        if self.poll_interval.is_zero() {
            return Err(ConfigError::new("poll_interval", "must be positive"));
        }
        if self.retry.initial.is_zero() || self.retry.max < self.retry.initial {
            return Err(ConfigError::new(
                "retry",
                "initial must be positive and not above max",
            ));
        }
        if let Some(tls) = self.syslog.as_ref().and_then(|syslog| syslog.tls.as_ref())
            && tls.client_cert_file.is_some() != tls.client_key_file.is_some()
        {
            return Err(ConfigError::new(
                "syslog.tls",
                "set client_cert_file and client_key_file together",
            ));
        }
        Ok(())
    }
}

fn default_batch_size() -> u32 {
    500
}

fn default_poll() -> Duration {
    Duration::from_millis(500)
}

fn default_app_name() -> String {
    "gatehouse".to_owned()
}

fn default_service_name() -> String {
    "gatehouse-audit".to_owned()
}

fn default_pen() -> u32 {
    32473
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_ack_poll() -> Duration {
    Duration::from_millis(500)
}

fn default_ack_timeout() -> Duration {
    Duration::from_secs(300)
}

fn default_max_body() -> usize {
    900_000
}

fn default_region() -> String {
    "us-east-1".to_owned()
}

fn default_prefix() -> String {
    "audit/v1".to_owned()
}

fn default_true() -> bool {
    true
}
