use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TraceId};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus as WireStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tower_http::trace::MakeSpan as _;

use super::*;
use crate::config::{GrpcClientConfig, GrpcServerConfig, LogFormat, TelemetryConfig};

async fn start() -> (
    String,
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let config = GrpcServerConfig::with_listen_addr(listener.local_addr().unwrap());
    let (_reporter, health_service) = health().await;
    let reflection_service = reflection(tonic_health::pb::FILE_DESCRIPTOR_SET, &[]).unwrap();
    let shutdown = CancellationToken::new();
    let router = server(&config)
        .add_service(health_service)
        .add_service(reflection_service);
    let signal = shutdown.clone().cancelled_owned();
    let task = tokio::spawn(async move {
        router
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), signal)
            .await?;
        Ok(())
    });
    (url, shutdown, task)
}

#[tokio::test]
async fn health_reports_serving_through_the_standard_layers() {
    let (url, shutdown, task) = start().await;
    let channel = channel(&url, &GrpcClientConfig::default()).unwrap();
    let mut client = HealthClient::with_interceptor(channel, TraceContextInterceptor);
    let response = client
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert!(response.metadata().get(REQUEST_ID_HEADER).is_some());
    assert_eq!(response.into_inner().status(), WireStatus::Serving);
    drop(client);
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("server stops within the deadline")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn reflection_lists_only_served_services() {
    let (url, shutdown, task) = start().await;
    let channel = channel(&url, &GrpcClientConfig::default()).unwrap();
    let mut client = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let mut names: Vec<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    names.sort();
    assert_eq!(names, [HEALTH_SERVICE_NAME, REFLECTION_SERVICE_NAME]);
    drop(responses);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn invalid_endpoint_is_an_error() {
    assert!(channel("not a uri", &GrpcClientConfig::default()).is_err());
}

#[tokio::test]
async fn request_span_continues_the_callers_trace() {
    let config = TelemetryConfig {
        log_format: LogFormat::Pretty,
        ..TelemetryConfig::default()
    };
    let _guard = crate::telemetry::install("svc-kit-test", &config, true).unwrap();
    let request = http::Request::builder()
        .uri("/gatehouse.authz.v1.Authz/Decide")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(())
        .unwrap();
    let span = GrpcMakeSpan.make_span(&request);
    assert_eq!(
        span.context().span().span_context().trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
}
