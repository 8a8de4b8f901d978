//! Process-wide telemetry: structured logs, OpenTelemetry spans (exported over
//! OTLP when configured) and the W3C trace-context propagator.

use anyhow::Context as _;
use opentelemetry::KeyValue;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::config::{LogFormat, TelemetryConfig};

/// The target of spans that exist for the trace alone, such as a call to a downstream: the log
/// layer leaves them out, so a log line inside one carries the span around it (same trace id),
/// and no request pays for formatting the fields of a span that no log line shows. The log
/// filter still decides whether they exist, by this target (`gatehouse::trace_only=info`).
pub const TRACE_ONLY: &str = "gatehouse::trace_only";

mod logs;
pub mod metrics;
pub mod propagation;

/// Flushes exported spans and metrics when the process is done; returned by [`init`].
#[derive(Debug)]
#[must_use = "call `shutdown().await` before exiting, or buffered spans are lost"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
    meters: Option<SdkMeterProvider>,
}

/// Installs the process-wide telemetry for `service`: a `tracing` subscriber
/// (filtered by `config.log_filter`, writing JSON or pretty lines to stderr, so stdout stays for what a command prints), an
/// OpenTelemetry layer so that every span has a trace id (JSON lines carry it as
/// `openTelemetry.traceId`), an OTLP/gRPC span and metric exporter when `config.otlp_endpoint`
/// is set, the meter provider behind [`metrics::scrape`], and the W3C trace-context
/// propagator.
///
/// Spans carry trace ids even without an exporter, so that ids can be propagated
/// and recorded. The first call in a process installs everything; a later call
/// (tests, or several services in one process) leaves it in place and returns a
/// guard with nothing to flush. With an OTLP endpoint it must run inside a Tokio
/// runtime.
pub fn init(service: &'static str, config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    install(service, config, false)
}

pub(crate) fn install(
    service: &'static str,
    config: &TelemetryConfig,
    test_writer: bool,
) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::builder()
        .parse(&config.log_filter)
        .with_context(|| format!("invalid log filter {:?}", config.log_filter))?;
    if tracing::dispatcher::has_been_set() {
        tracing::debug!(service, "telemetry already installed in this process");
        return Ok(TelemetryGuard::empty());
    }
    let provider = tracer_provider(service, config)?;
    let meters = metrics::meter_provider(resource(service, config), config)?;
    // Set before the subscriber exists, so the SDK's own notice is not logged.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    opentelemetry::global::set_tracer_provider(provider.clone());
    opentelemetry::global::set_meter_provider(meters.clone());
    let fmt_layer = match (config.log_format, test_writer) {
        (LogFormat::Json, false) => json_layer(std::io::stderr).boxed(),
        (LogFormat::Pretty, false) => logs::LogLayer::new(
            std::io::stderr,
            logs::Style::Readable {
                ansi: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            },
        )
        .boxed(),
        (_, true) => tracing_subscriber::fmt::layer().with_test_writer().boxed(),
    };
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(fmt_layer.with_filter(logged()))
        .with(trace_layer(provider.tracer(service)))
        .try_init();
    if installed.is_err() {
        // Another thread installed a subscriber since the check above; keep it.
        return Ok(TelemetryGuard::empty());
    }
    Ok(TelemetryGuard {
        provider: Some(provider),
        meters: Some(meters),
    })
}

/// Returns the layer that gives every `tracing` span an OpenTelemetry span of `tracer`.
///
/// Spans carry what their code gives them, not the source file and line, the thread or busy and
/// idle times: those cost two clocks per poll and five attributes per span on every request, and
/// say nothing about an MCP call that its own attributes do not. Entering a span does not make
/// its context OpenTelemetry's current one either: that clones and attaches a context on every
/// poll of every instrumented future, and what reads the current trace here
/// (`propagation::current_trace_id`) asks the entered span itself.
fn trace_layer<S>(
    tracer: opentelemetry_sdk::trace::Tracer,
) -> tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    tracing_opentelemetry::layer()
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_context_activation(false)
        .with_tracer(tracer)
}

/// Returns what the log layer sees: every event, and every span but the [`TRACE_ONLY`] ones.
fn logged() -> tracing_subscriber::filter::FilterFn {
    tracing_subscriber::filter::filter_fn(|metadata| {
        !(metadata.is_span() && metadata.target() == TRACE_ONLY)
    })
}

/// Returns the JSON log layer writing to `writer`: one object per line with the current span's
/// fields and the OpenTelemetry ids (`openTelemetry.traceId`, `openTelemetry.spanId`), so a log
/// line leads to its trace.
fn json_layer<W>(writer: W) -> logs::LogLayer<W>
where
    W: for<'w> tracing_subscriber::fmt::MakeWriter<'w> + 'static,
{
    logs::LogLayer::new(writer, logs::Style::Json)
}

/// Returns the resource every span and metric of `service` carries.
fn resource(service: &'static str, config: &TelemetryConfig) -> Resource {
    Resource::builder()
        .with_service_name(service)
        .with_attribute(KeyValue::new(
            "service.namespace",
            config.service_namespace.clone(),
        ))
        .build()
}

fn tracer_provider(
    service: &'static str,
    config: &TelemetryConfig,
) -> anyhow::Result<SdkTracerProvider> {
    let builder = SdkTracerProvider::builder().with_resource(resource(service, config));
    let Some(endpoint) = &config.otlp_endpoint else {
        // With nowhere to export to, a span is recorded only when the caller's trace asks for it
        // (so its sampled flag travels on as it came); the others still get trace and span ids
        // for logs, records and propagation, but the SDK does not build their data on every
        // request only to drop it.
        let unexported = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        return Ok(builder.with_sampler(unexported).build());
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .with_endpoint(endpoint.clone())
        .build()
        .with_context(|| format!("cannot build the OTLP exporter for {endpoint}"))?;
    Ok(builder.with_batch_exporter(exporter).build())
}

impl TelemetryGuard {
    fn empty() -> Self {
        Self {
            provider: None,
            meters: None,
        }
    }

    /// Flushes buffered spans and metrics to the exporter and stops it.
    pub async fn shutdown(self) {
        let Self { provider, meters } = self;
        // The SDK's shutdowns block until the export threads have drained.
        let flushed = tokio::task::spawn_blocking(move || {
            let spans = provider.map(|provider| provider.shutdown());
            let metrics = meters.map(|meters| meters.shutdown());
            (spans, metrics)
        })
        .await;
        match flushed {
            Ok((spans, metrics)) => {
                if let Some(Err(error)) = spans {
                    tracing::warn!(%error, "flushing spans failed");
                }
                if let Some(Err(error)) = metrics {
                    tracing::warn!(%error, "flushing metrics failed");
                }
            }
            Err(error) => tracing::warn!(%error, "flushing telemetry panicked"),
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::trace::TraceContextExt as _;
    use tonic::service::Interceptor as _;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::propagation::TraceContextInterceptor;
    use super::*;

    fn test_config() -> TelemetryConfig {
        TelemetryConfig {
            log_format: LogFormat::Pretty,
            ..TelemetryConfig::default()
        }
    }

    #[tokio::test]
    async fn second_init_keeps_the_first_installation() {
        let first = init("svc-kit-test", &TelemetryConfig::default()).unwrap();
        let second = init("svc-kit-test", &TelemetryConfig::default()).unwrap();
        assert!(second.provider.is_none());
        second.shutdown().await;
        first.shutdown().await;
    }

    #[tokio::test]
    async fn otlp_exporter_builds_without_a_collector_and_shuts_down() {
        let config = TelemetryConfig {
            otlp_endpoint: Some("http://127.0.0.1:9".to_owned()),
            ..test_config()
        };
        let guard = TelemetryGuard {
            provider: Some(tracer_provider("svc-kit-test", &config).unwrap()),
            meters: Some(
                metrics::provider_on(
                    &prometheus::Registry::new(),
                    resource("svc-kit-test", &config),
                    &config,
                )
                .unwrap(),
            ),
        };
        guard.shutdown().await;
    }

    /// Collects what a layer writes, for assertions.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Runs `work` under the OpenTelemetry layer and the log layer in `style` as `install`
    /// filters it; returns what the log layer wrote and what `work` returned.
    fn logged_text<R>(style: logs::Style, work: impl FnOnce() -> R) -> (String, R) {
        let captured = Captured::default();
        let writer = captured.clone();
        let provider = SdkTracerProvider::builder().build();
        let subscriber = tracing_subscriber::registry()
            .with(trace_layer(provider.tracer("svc-kit-test")))
            .with(logs::LogLayer::new(move || writer.clone(), style).with_filter(logged()));
        let returned = tracing::subscriber::with_default(subscriber, work);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        (text, returned)
    }

    /// Runs `work` as [`logged_text`] does with JSON lines; returns the one line it wrote.
    fn one_json_line<R>(work: impl FnOnce() -> R) -> (serde_json::Value, R) {
        let (text, returned) = logged_text(logs::Style::Json, work);
        let line = serde_json::from_str(text.trim()).unwrap_or_else(|_| panic!("{text}"));
        (line, returned)
    }

    #[test]
    fn without_an_exporter_only_a_trace_the_caller_sampled_is_recorded_and_every_span_has_ids() {
        use opentelemetry::trace::{Span as _, Tracer as _};
        let provider = tracer_provider("svc-kit-test", &TelemetryConfig::default()).unwrap();
        let tracer = provider.tracer("svc-kit-test");

        let root = tracer.start("request");
        assert!(!root.is_recording(), "nobody asked for this trace");
        assert!(
            root.span_context().is_valid(),
            "its ids still go to logs and downstreams"
        );
        assert!(!root.span_context().is_sampled());

        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            ),
        );
        let parent = propagation::extract_http(&headers);
        let child = tracer.start_with_context("request", &parent);
        assert!(child.is_recording(), "the caller sampled its trace");
        assert!(
            child.span_context().is_sampled(),
            "and downstreams are told so"
        );
        assert_eq!(
            child.span_context().trace_id(),
            parent.span().span_context().trace_id()
        );
    }

    #[test]
    fn json_log_lines_carry_the_trace_id_of_their_span() {
        let (line, trace_id) = one_json_line(|| {
            let span = tracing::info_span!("request", mcp.method.name = "tools/call");
            let _entered = span.enter();
            tracing::info!(answered = true, "request answered");
            span.context().span().span_context().trace_id()
        });
        assert_eq!(
            line["openTelemetry"]["traceId"],
            trace_id.to_string(),
            "{line}"
        );
        assert_eq!(line["span"]["mcp.method.name"], "tools/call", "{line}");
        assert_eq!(line["fields"]["answered"], true, "{line}");
    }

    #[test]
    fn a_log_line_inside_a_trace_only_span_carries_the_span_around_it() {
        let (line, (trace_id, downstream)) = one_json_line(|| {
            let request = tracing::info_span!("request", mcp.method.name = "tools/call");
            let _request = request.enter();
            let downstream = tracing::info_span!(target: TRACE_ONLY, "downstream", peer = "echo");
            let _downstream = downstream.enter();
            tracing::warn!("downstream slow");
            (
                request.context().span().span_context().trace_id(),
                downstream.context().span().span_context().clone(),
            )
        });
        assert_eq!(
            line["openTelemetry"]["traceId"],
            trace_id.to_string(),
            "{line}"
        );
        assert_eq!(line["span"]["name"], "request", "{line}");
        // OpenTelemetry still traces it: a span of its own in the request's trace.
        assert!(downstream.is_valid());
        assert_eq!(downstream.trace_id(), trace_id);
    }

    #[test]
    fn a_log_line_is_one_json_object_whatever_its_values_hold() {
        let awkward = "a \"quoted\"\nline\twith \\ and ü";
        let (line, span_id) = one_json_line(|| {
            let span = tracing::info_span!("request", text = awkward, shown = %awkward, n = -3);
            let _entered = span.enter();
            let error = std::io::Error::other(awkward);
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                ok = false,
                "said {awkward:?}"
            );
            span.context().span().span_context().span_id()
        });
        assert_eq!(line["level"], "WARN", "{line}");
        assert_eq!(line["target"], module_path!(), "{line}");
        let stamp = line["timestamp"].as_str().unwrap_or_default();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "RFC 3339: {line}");
        assert_eq!(
            line["fields"]["message"],
            format!("said {awkward:?}"),
            "{line}"
        );
        assert_eq!(line["fields"]["error"], awkward, "{line}");
        assert_eq!(line["fields"]["ok"], false, "{line}");
        assert_eq!(line["span"]["name"], "request", "{line}");
        assert_eq!(line["span"]["text"], awkward, "{line}");
        assert_eq!(line["span"]["shown"], awkward, "{line}");
        assert_eq!(line["span"]["n"], -3, "{line}");
        assert_eq!(
            line["openTelemetry"]["spanId"],
            span_id.to_string(),
            "{line}"
        );
    }

    #[test]
    fn a_value_recorded_later_replaces_the_spans_earlier_one() {
        let (line, ()) = one_json_line(|| {
            let span =
                tracing::info_span!("request", step = "started", outcome = tracing::field::Empty);
            span.record("step", "answered");
            span.record("outcome", 200);
            let _entered = span.enter();
            tracing::info!("done");
        });
        let span = line["span"].as_object().cloned().unwrap_or_default();
        assert_eq!(
            serde_json::Value::Object(span),
            serde_json::json!({"name": "request", "step": "answered", "outcome": 200}),
            "{line}"
        );
    }

    #[test]
    fn a_line_outside_any_span_has_its_fields_alone() {
        let (line, ()) = one_json_line(|| tracing::info!(port = 8080_u64, "listening"));
        assert_eq!(line["fields"]["port"], 8080, "{line}");
        assert!(line.get("span").is_none(), "{line}");
        assert!(line.get("openTelemetry").is_none(), "{line}");
    }

    #[test]
    fn a_readable_line_shows_the_spans_it_happened_in_outermost_first() {
        let (text, ()) = logged_text(logs::Style::Readable { ansi: false }, || {
            let request = tracing::info_span!("http.request", url.path = "/v/crm/mcp");
            let _request = request.enter();
            let call = tracing::info_span!("mcp.request", gen_ai.tool.name = "search", n = 2);
            let _call = call.enter();
            let hidden = tracing::info_span!(target: TRACE_ONLY, "mcp.downstream");
            let _hidden = hidden.enter();
            tracing::warn!(connector = "crm", "downstream slow");
        });
        let line = text.trim_end();
        let (stamp, rest) = line.split_once(' ').unwrap_or_default();
        assert!(humantime::parse_rfc3339(stamp).is_ok(), "{line}");
        assert_eq!(
            rest.trim_start(),
            format!(
                "WARN http.request{{url.path=\"/v/crm/mcp\"}}:mcp.request{{gen_ai.tool.name=\"search\" n=2}}: \
                 {}: downstream slow connector=\"crm\"",
                module_path!()
            ),
            "{line}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");
    }

    #[test]
    fn a_readable_value_is_quoted_as_debug_quotes_it_plain_or_not() {
        let values = [
            "crm",
            "",
            "a \"quoted\" line",
            "back\\slash",
            "new\nline",
            "ü",
            "\u{7f}",
        ];
        for value in values {
            let (text, ()) = logged_text(logs::Style::Readable { ansi: false }, || {
                let span = tracing::info_span!("request", value);
                let _entered = span.enter();
                tracing::info!(value, "seen");
            });
            let expected = format!("request{{value={value:?}}}:");
            assert!(text.contains(&expected), "{expected} in {text}");
            assert!(
                text.trim_end().ends_with(&format!("seen value={value:?}")),
                "{text}"
            );
        }
    }

    #[tokio::test]
    async fn invalid_filter_is_an_error() {
        let config = TelemetryConfig {
            log_filter: "info,[".to_owned(),
            ..test_config()
        };
        assert!(init("svc-kit-test", &config).is_err());
    }

    #[test]
    fn interceptor_injects_the_current_span() {
        // Under a subscriber of its own: the process-wide one may belong to another test, whose
        // tracer provider that test has already shut down.
        let (_, (traceparent, trace_id)) = logged_text(logs::Style::Json, || {
            let span = tracing::info_span!("outgoing");
            let request = span.in_scope(|| {
                TraceContextInterceptor
                    .call(tonic::Request::new(()))
                    .unwrap()
            });
            let traceparent = request
                .metadata()
                .get("traceparent")
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            (traceparent, span.context().span().span_context().trace_id())
        });
        assert!(trace_id != opentelemetry::trace::TraceId::INVALID);
        assert!(traceparent.contains(&trace_id.to_string()), "{traceparent}");
    }

    #[test]
    fn the_current_trace_is_the_entered_spans_unless_a_context_is_attached() {
        let (_, (inside, outside, attached, span_trace)) = logged_text(logs::Style::Json, || {
            let span = tracing::info_span!("request");
            let inside = span.in_scope(propagation::current_trace_id);
            let outside = propagation::current_trace_id();
            let mut headers = http::HeaderMap::new();
            headers.insert(
                "traceparent",
                http::HeaderValue::from_static(
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            );
            let attached = span.in_scope(|| {
                let _attached = propagation::extract_http(&headers).attach();
                propagation::current_trace_id()
            });
            let span_trace = span.context().span().span_context().trace_id();
            (inside, outside, attached, span_trace)
        });
        assert_eq!(inside, Some(span_trace.to_string()));
        assert_eq!(outside, None, "outside every span and context");
        assert_eq!(
            attached.as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736"),
            "a context attached inside the span is the one the caller meant"
        );
    }
}
