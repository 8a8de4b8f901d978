//! The standard HTTP server tracing: one span per request that continues the caller's trace.

use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, TraceLayer};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry::propagation::extract_http;

/// Opens one span per HTTP request whose parent is the W3C `traceparent` the caller sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct HttpMakeSpan;

/// The tracing layer every HTTP face uses; only 5xx answers are logged as failures.
pub type HttpTraceLayer = TraceLayer<SharedClassifier<ServerErrorsAsFailures>, HttpMakeSpan>;

/// Returns the tracing layer for an HTTP server.
pub fn trace_layer() -> HttpTraceLayer {
    TraceLayer::new_for_http().make_span_with(HttpMakeSpan)
}

impl<B> MakeSpan<B> for HttpMakeSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> tracing::Span {
        let span = tracing::info_span!(
            "http.request",
            otel.kind = "server",
            http.request.method = %request.method(),
            url.path = request.uri().path(),
        );
        // Fails only when no OpenTelemetry layer is installed, where there is no trace to continue.
        let _ = span.set_parent(extract_http(request.headers()));
        span
    }
}
