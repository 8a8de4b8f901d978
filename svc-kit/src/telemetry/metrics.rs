//! Metrics: one OpenTelemetry meter provider per process, read by a Prometheus registry for
//! `/metrics` scrapes and, when an OTLP endpoint is configured, pushed over OTLP/gRPC too.
//!
//! Services create their instruments once from [`meter`] (after [`crate::telemetry::init`]) and
//! keep them; recording is then a lock-free aggregation in the SDK, cheap enough for the hot path.

use std::sync::OnceLock;

use anyhow::Context as _;
use opentelemetry::metrics::Meter;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use prometheus::{Encoder as _, TextEncoder};

use crate::config::TelemetryConfig;

/// The instrument and attribute types services record with, so they need no OpenTelemetry dependency.
pub use opentelemetry::KeyValue;
pub use opentelemetry::metrics::{Counter, Gauge, Histogram, UpDownCounter};

/// The media type of the Prometheus text exposition format that [`scrape`] writes.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Bucket bounds, in seconds, for request latencies: sub-millisecond gateway work up to slow
/// downstream tools (the SDK's default bounds are made for milliseconds).
pub const LATENCY_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0,
];

/// The registry the process's meter provider feeds; set once by telemetry init (a telemetry global).
static REGISTRY: OnceLock<prometheus::Registry> = OnceLock::new();

/// Returns a meter for `scope` (a crate name, such as `edge-svc`) from the process's provider.
///
/// Instruments made before telemetry is installed record nowhere, so make them after
/// [`crate::telemetry::init`] (a `LazyLock` first touched by a request is late enough).
pub fn meter(scope: &'static str) -> Meter {
    opentelemetry::global::meter(scope)
}

/// Renders every metric of this process in the Prometheus text format; empty before telemetry
/// is installed.
pub fn scrape() -> Result<String, prometheus::Error> {
    let Some(registry) = REGISTRY.get() else {
        return Ok(String::new());
    };
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut buffer)?;
    String::from_utf8(buffer).map_err(|error| prometheus::Error::Msg(error.to_string()))
}

/// Answers a `GET /metrics` scrape; usable directly as an axum handler.
pub async fn scrape_response() -> http::Response<String> {
    let (status, body) = match scrape() {
        Ok(text) => (http::StatusCode::OK, text),
        Err(error) => {
            tracing::warn!(%error, "cannot render metrics");
            (
                http::StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render metrics".to_owned(),
            )
        }
    };
    let mut response = http::Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(CONTENT_TYPE),
    );
    response
}

/// Serves `GET /metrics` where `config` says until `shutdown`, in the background; returns
/// the bound address, or `None` when no listener is configured.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve_scrapes(
    config: &crate::config::MetricsConfig,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(addr) = config.listen_addr else {
        return Ok(None);
    };
    let router = axum::Router::new().route("/metrics", axum::routing::get(scrape_response));
    let (bound, _serving) =
        crate::http::serve_in_background("metrics", addr, router, shutdown).await?;
    Ok(Some(bound))
}

/// Builds the process's meter provider: the Prometheus reader on the process registry, plus a
/// periodic OTLP exporter when `config.otlp_endpoint` is set (interval from
/// `OTEL_METRIC_EXPORT_INTERVAL`, 60 s by default).
pub(crate) fn meter_provider(
    resource: Resource,
    config: &TelemetryConfig,
) -> anyhow::Result<SdkMeterProvider> {
    let registry = REGISTRY.get_or_init(prometheus::Registry::new);
    provider_on(registry, resource, config)
}

/// Builds a meter provider as [`meter_provider`] does, on `registry`: tests give each provider a
/// registry of its own, as the process registry takes one provider's collector only once.
pub(super) fn provider_on(
    registry: &prometheus::Registry,
    resource: Resource,
    config: &TelemetryConfig,
) -> anyhow::Result<SdkMeterProvider> {
    let prometheus = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .scope_info_enabled(false)
        .build()
        .context("cannot build the Prometheus metrics reader")?;
    let builder = SdkMeterProvider::builder()
        .with_resource(resource)
        .with_reader(prometheus);
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok(builder.build());
    };
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .with_context(|| format!("cannot build the OTLP metric exporter for {endpoint}"))?;
    Ok(builder
        .with_reader(PeriodicReader::builder(exporter).build())
        .build())
}

#[cfg(test)]
mod tests {
    use opentelemetry::KeyValue;
    use opentelemetry::metrics::MeterProvider as _;

    use super::*;

    #[test]
    fn counter_and_histogram_render_in_prometheus_text() {
        let registry = prometheus::Registry::new();
        let provider = provider_on(
            &registry,
            Resource::builder()
                .with_service_name("svc-kit-test")
                .build(),
            &TelemetryConfig::default(),
        )
        .unwrap();
        let meter = provider.meter("svc-kit-test");
        let calls = meter.u64_counter("gatehouse.test.calls").build();
        let latency = meter
            .f64_histogram("gatehouse.test.duration")
            .with_unit("s")
            .with_boundaries(LATENCY_BOUNDS.to_vec())
            .build();
        let labels = [KeyValue::new("outcome", "success")];
        calls.add(3, &labels);
        latency.record(0.0003, &labels);
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&registry.gather(), &mut buffer)
            .unwrap();
        let text = String::from_utf8(buffer).unwrap();
        assert!(
            text.contains("gatehouse_test_calls_total{outcome=\"success\"") && text.contains("} 3"),
            "{text}"
        );
        assert!(
            text.contains(
                "gatehouse_test_duration_seconds_bucket{outcome=\"success\",le=\"0.0005\"} 1"
            ),
            "{text}"
        );
        provider.shutdown().unwrap();
    }
}
