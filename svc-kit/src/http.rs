//! The standard HTTP server tracing: one span per request that continues the caller's trace,
//! and the side HTTP listeners of services whose main face is gRPC.

use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, TraceLayer};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::telemetry::propagation::extract_http;

/// Serves `router` (traced) on `addr` until `shutdown`, in the background: a gRPC service's
/// side listener (`face` names it in logs). Returns the bound address and the serving task.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve_in_background(
    face: &'static str,
    addr: std::net::SocketAddr,
    router: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> anyhow::Result<(std::net::SocketAddr, tokio::task::JoinHandle<()>)> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind the {face} listener on {addr}"))?;
    let bound = listener.local_addr()?;
    tracing::info!(face, address = %bound, "serving a side http listener");
    let router = router.layer(trace_layer());
    let task = tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
        {
            tracing::error!(face, %error, "a side http listener failed");
        }
    });
    Ok((bound, task))
}

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
            http.request.method = request.method().as_str(),
            url.path = request.uri().path(),
        );
        // Fails only when no OpenTelemetry layer is installed, where there is no trace to continue.
        let _ = span.set_parent(extract_http(request.headers()));
        span
    }
}
