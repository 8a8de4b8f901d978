//! The standard gRPC server (layers, health, reflection) and client channel.

use http::HeaderName;
use tonic::transport::{Channel, Endpoint, Server};
use tonic_health::ServingStatus;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_reflection::server::v1::{ServerReflection, ServerReflectionServer};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower_http::classify::{GrpcCode, GrpcErrorsAsFailures, SharedClassifier};
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{MakeSpan, TraceLayer};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use anyhow::Context as _;

use crate::config::{GrpcClientConfig, GrpcServerConfig};
use crate::telemetry::propagation::extract_http;

pub use crate::telemetry::propagation::TraceContextInterceptor;

/// Names the gRPC health service, as listed by reflection.
pub const HEALTH_SERVICE_NAME: &str = "grpc.health.v1.Health";

/// Names the gRPC reflection service, as listed by reflection.
pub const REFLECTION_SERVICE_NAME: &str = "grpc.reflection.v1.ServerReflection";

/// Names the header that carries each request's id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Describes the standard server layers, outermost first: request id, trace span
/// (parented on the caller's W3C trace context), request-id echo.
pub type ServerLayers = Stack<
    PropagateRequestIdLayer,
    Stack<
        TraceLayer<SharedClassifier<GrpcErrorsAsFailures>, GrpcMakeSpan>,
        Stack<SetRequestIdLayer<MakeRequestUuid>, Identity>,
    >,
>;

/// Opens one span per gRPC request, named after the RPC, whose parent is the
/// trace context the caller sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct GrpcMakeSpan;

/// Returns a tonic server with the request timeout from `config` and the
/// standard layers of [`layers`]; add services and serve it.
pub fn server(config: &GrpcServerConfig) -> Server<Stack<ServerLayers, Identity>> {
    Server::builder()
        .timeout(config.request_timeout)
        .layer(layers())
}

/// Returns the standard server layers: a request id (kept from the caller or
/// generated), a trace span per request continuing the caller's trace, and the
/// request id echoed in the response.
///
/// Only server-side failures (internal, unavailable, unknown, data loss,
/// unimplemented, deadline exceeded) are logged as failures; statuses that
/// answer a caller's mistake are not.
pub fn layers() -> ServerLayers {
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let classifier = GrpcErrorsAsFailures::new()
        .with_success(GrpcCode::Cancelled)
        .with_success(GrpcCode::InvalidArgument)
        .with_success(GrpcCode::NotFound)
        .with_success(GrpcCode::AlreadyExists)
        .with_success(GrpcCode::PermissionDenied)
        .with_success(GrpcCode::ResourceExhausted)
        .with_success(GrpcCode::FailedPrecondition)
        .with_success(GrpcCode::Aborted)
        .with_success(GrpcCode::OutOfRange)
        .with_success(GrpcCode::Unauthenticated);
    ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
        .layer(TraceLayer::new(SharedClassifier::new(classifier)).make_span_with(GrpcMakeSpan))
        .layer(PropagateRequestIdLayer::new(request_id))
        .into_inner()
}

/// Returns a health reporter and the `grpc.health.v1.Health` service it feeds,
/// with the whole server (service name `""`) reported as SERVING.
pub async fn health() -> (HealthReporter, HealthServer<impl Health>) {
    let (reporter, service) = tonic_health::server::health_reporter();
    reporter
        .set_service_status("", ServingStatus::Serving)
        .await;
    (reporter, service)
}

/// Returns a gRPC reflection (v1) service that describes the health service,
/// itself, and the `services` named (fully qualified, such as
/// `gatehouse.authz.v1.Authz`) from `file_descriptor_set`.
///
/// Only served services are listed, so that a client never discovers an RPC the
/// server does not implement; types of other services remain resolvable.
pub fn reflection(
    file_descriptor_set: &'static [u8],
    services: &[&str],
) -> anyhow::Result<ServerReflectionServer<impl ServerReflection + use<>>> {
    let builder = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(file_descriptor_set)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .with_service_name(HEALTH_SERVICE_NAME)
        .with_service_name(REFLECTION_SERVICE_NAME);
    let builder = services.iter().fold(builder, |builder, service| {
        builder.with_service_name(*service)
    });
    builder
        .build_v1()
        .context("cannot build the reflection service from the descriptor set")
}

/// Returns a lazily connecting channel to `endpoint` (such as
/// `http://127.0.0.1:50051`) with the connect and request timeouts of `config`.
///
/// Nothing is dialled until the first request, so a backend that starts later is
/// not an error here. Wrap the channel with [`TraceContextInterceptor`] so that
/// calls continue the caller's trace. Must be called inside a Tokio runtime.
pub fn channel(endpoint: &str, config: &GrpcClientConfig) -> anyhow::Result<Channel> {
    let endpoint = Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("invalid gRPC endpoint {endpoint:?}"))?
        .connect_timeout(config.connect_timeout)
        .timeout(config.request_timeout)
        .tcp_nodelay(true);
    Ok(endpoint.connect_lazy())
}

impl<B> MakeSpan<B> for GrpcMakeSpan {
    fn make_span(&mut self, request: &http::Request<B>) -> tracing::Span {
        let rpc = request.uri().path().trim_start_matches('/');
        let (rpc_service, rpc_method) = rpc.split_once('/').unwrap_or((rpc, ""));
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        let span = tracing::info_span!(
            "grpc.request",
            otel.name = rpc,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = rpc_service,
            rpc.method = rpc_method,
            request_id,
        );
        // Fails only when no OpenTelemetry layer is installed, where there is
        // no trace to continue.
        let _ = span.set_parent(extract_http(request.headers()));
        span
    }
}

#[cfg(test)]
mod tests;
