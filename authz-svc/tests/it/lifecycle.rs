use svc_kit::GrpcClientConfig;
use svc_kit::testing::{TestServer, init_test_tracing};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

async fn start() -> (TestServer, tempfile::TempDir) {
    init_test_tracing();
    let dir = tempfile::tempdir().unwrap();
    let mut config = authz_svc::Config::default();
    config.store.data_dir = dir.path().to_owned();
    let server =
        TestServer::start(|listener, shutdown| authz_svc::serve(config, listener, shutdown)).await;
    (server, dir)
}

#[tokio::test]
async fn health_is_serving_and_shutdown_is_clean() {
    let (server, _dir) = start().await;
    let channel = svc_kit::grpc::channel(&server.url(), &GrpcClientConfig::default()).unwrap();
    let mut health = HealthClient::new(channel);
    let response = health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    // The client's connection stays open: graceful shutdown must not wait on it.
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reflection_lists_the_health_service() {
    let (server, _dir) = start().await;
    let channel = svc_kit::grpc::channel(&server.url(), &GrpcClientConfig::default()).unwrap();
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection answer: {response:?}");
    };
    let names: Vec<String> = list
        .service
        .into_iter()
        .map(|service| service.name)
        .collect();
    assert!(
        names.iter().any(|name| name == "grpc.health.v1.Health"),
        "{names:?}"
    );
    drop(responses);
    server.stop().await.unwrap();
}
