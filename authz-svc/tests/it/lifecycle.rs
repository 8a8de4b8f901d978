use svc_kit::GrpcClientConfig;
use svc_kit::testing::{TestServer, init_test_tracing};
use tonic_health::pb::health_check_response::ServingStatus;

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
    let status = svc_kit::testing::health(channel.clone()).await.unwrap();
    assert_eq!(status, ServingStatus::Serving);
    // The client's connection stays open: graceful shutdown must not wait on it.
    server.stop().await.unwrap();
}

#[tokio::test]
async fn reflection_lists_the_health_service() {
    let (server, _dir) = start().await;
    let channel = svc_kit::grpc::channel(&server.url(), &GrpcClientConfig::default()).unwrap();
    let names = svc_kit::testing::reflected_services(channel).await.unwrap();
    assert!(
        names.iter().any(|name| name == "grpc.health.v1.Health"),
        "{names:?}"
    );
    server.stop().await.unwrap();
}
