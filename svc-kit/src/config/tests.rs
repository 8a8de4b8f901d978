#![allow(
    clippy::result_large_err,
    reason = "figment's Jail and extract return its error by value"
)]

use std::path::Path;
use std::time::Duration;

use figment::Figment;
use figment::providers::{Format as _, Toml};
use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct SampleConfig {
    grpc: GrpcServerConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
}

impl Default for SampleConfig {
    fn default() -> Self {
        Self {
            grpc: GrpcServerConfig::with_listen_addr(([127, 0, 0, 1], 50099).into()),
            telemetry: TelemetryConfig::default(),
        }
    }
}

fn from_toml(toml: &str) -> Result<SampleConfig, figment::Error> {
    extract(Figment::from(Toml::string(toml)))
}

#[test]
fn defaults_fill_an_empty_source() {
    let config = from_toml("").unwrap();
    assert_eq!(config.grpc.listen_addr.port(), 50099);
    assert_eq!(config.grpc.request_timeout, Duration::from_secs(30));
    assert_eq!(config.telemetry, TelemetryConfig::default());
}

#[test]
fn partial_nested_table_keeps_the_service_defaults() {
    let config = from_toml("[grpc]\nrequest_timeout = \"250ms\"\n").unwrap();
    assert_eq!(config.grpc.request_timeout, Duration::from_millis(250));
    assert_eq!(config.grpc.listen_addr.port(), 50099);
    assert_eq!(config.grpc.shutdown_grace, Duration::from_secs(10));
}

#[test]
fn later_source_wins_over_earlier() {
    let figment = Figment::from(Toml::string("[telemetry]\nlog_filter = \"debug\"\n"))
        .merge(Toml::string("[telemetry]\nlog_format = \"pretty\"\n"))
        .merge(Toml::string("[telemetry]\nlog_filter = \"warn\"\n"));
    let config: SampleConfig = extract(figment).unwrap();
    assert_eq!(config.telemetry.log_filter, "warn");
    assert_eq!(config.telemetry.log_format, LogFormat::Pretty);
}

#[test]
fn environment_overrides_the_file_and_nests_on_double_underscore() {
    figment::Jail::expect_with(|jail| {
        jail.create_file(
            "svc.toml",
            "[grpc]\nlisten_addr = \"127.0.0.1:7000\"\nrequest_timeout = \"5s\"\n",
        )?;
        jail.set_env("GATEHOUSE_SAMPLE__GRPC__REQUEST_TIMEOUT", "7s");
        jail.set_env("GATEHOUSE_SAMPLE__TELEMETRY__LOG_FORMAT", "pretty");
        jail.set_env("GATEHOUSE_OTHER__GRPC__REQUEST_TIMEOUT", "9s");
        let sources = config_sources("GATEHOUSE_SAMPLE__", Some(Path::new("svc.toml")));
        let config: SampleConfig = extract(sources)?;
        assert_eq!(config.grpc.listen_addr.port(), 7000);
        assert_eq!(config.grpc.request_timeout, Duration::from_secs(7));
        assert_eq!(config.telemetry.log_format, LogFormat::Pretty);
        Ok(())
    });
}

#[test]
fn missing_named_file_is_an_error() {
    figment::Jail::expect_with(|_jail| {
        let sources = config_sources("GATEHOUSE_SAMPLE__", Some(Path::new("absent.toml")));
        assert!(extract::<SampleConfig>(sources).is_err());
        Ok(())
    });
}

#[test]
fn unknown_key_is_an_error_naming_it() {
    let error = from_toml("[telemetry]\nlog_fromat = \"json\"\n").unwrap_err();
    assert!(error.to_string().contains("log_fromat"), "{error}");
}

#[test]
fn malformed_duration_is_an_error() {
    assert!(from_toml("[grpc]\nrequest_timeout = \"soon\"\n").is_err());
}

#[test]
fn invalid_log_filter_is_rejected() {
    let telemetry = TelemetryConfig {
        log_filter: "info,[".to_owned(),
        ..TelemetryConfig::default()
    };
    assert_eq!(telemetry.validate().unwrap_err().field, "log_filter");
}

/// Keeps the target and level of every event that reaches it.
#[derive(Clone, Default)]
struct Recorder(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let meta = event.metadata();
        let seen = format!("{} {}", meta.target(), meta.level());
        self.0.lock().expect("lock").push(seen);
    }
}

/// The target and level of each event `emit` sends that the default filter lets through.
fn passed_by_the_default_filter(emit: impl FnOnce()) -> Vec<String> {
    use tracing_subscriber::layer::SubscriberExt as _;

    let filter = tracing_subscriber::EnvFilter::builder()
        .parse(TelemetryConfig::default().log_filter)
        .expect("the default filter parses");
    let recorder = Recorder::default();
    let subscriber = tracing_subscriber::registry()
        .with(filter)
        .with(recorder.clone());
    tracing::subscriber::with_default(subscriber, emit);
    recorder.0.lock().expect("lock").clone()
}

#[test]
fn the_default_filter_logs_info_and_rmcp_s_own_problems_but_not_its_per_request_chatter() {
    let passed = passed_by_the_default_filter(|| {
        tracing::error!(target: "rmcp::transport::worker", "worker quit with fatal");
        tracing::info!(target: "rmcp::service", "session opened");
        tracing::warn!(target: "rmcp::service", "response error");
        tracing::error!(target: "rmcp::service", "fail to close sink");
        tracing::warn!(target: "rmcp::transport::streamable_http_server", "rejected request");
        tracing::info!(target: "edge_svc::connector", "connector session ready");
    });
    assert_eq!(
        passed,
        [
            "rmcp::service ERROR",
            "rmcp::transport::streamable_http_server WARN",
            "edge_svc::connector INFO"
        ]
    );
}

#[test]
fn otlp_endpoint_must_be_http_url() {
    let mut telemetry = TelemetryConfig {
        otlp_endpoint: Some("collector:4317".to_owned()),
        ..TelemetryConfig::default()
    };
    assert_eq!(telemetry.validate().unwrap_err().field, "otlp_endpoint");
    telemetry.otlp_endpoint = Some("http://127.0.0.1:4317".to_owned());
    assert_eq!(telemetry.validate(), Ok(()));
}

#[test]
fn zero_timeouts_are_rejected() {
    let mut grpc = GrpcServerConfig::with_listen_addr(([127, 0, 0, 1], 1).into());
    grpc.request_timeout = Duration::ZERO;
    let error = grpc.validate().unwrap_err().nested("grpc");
    assert_eq!(error.field, "grpc.request_timeout");
    let client = GrpcClientConfig {
        connect_timeout: Duration::ZERO,
        ..GrpcClientConfig::default()
    };
    assert_eq!(client.validate().unwrap_err().field, "connect_timeout");
}

#[test]
fn config_error_converts_to_a_figment_error_with_its_text() {
    let error = figment::Error::from(ConfigError::new("grpc.listen_addr", "port taken"));
    assert!(
        error
            .to_string()
            .contains("invalid grpc.listen_addr: port taken")
    );
}
