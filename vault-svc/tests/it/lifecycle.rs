use svc_kit::GrpcClientConfig;
use svc_kit::testing::{TestServer, init_test_tracing};
use tonic_health::pb::health_check_response::ServingStatus;

async fn start() -> (TestServer, tempfile::TempDir) {
    init_test_tracing();
    let dir = tempfile::tempdir().unwrap();
    let config = vault_svc::Config::default().with_data_dir(dir.path());
    let server =
        TestServer::start(|listener, shutdown| vault_svc::serve(config, listener, shutdown)).await;
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
async fn reflection_lists_health_and_vault() {
    let (server, _dir) = start().await;
    let channel = svc_kit::grpc::channel(&server.url(), &GrpcClientConfig::default()).unwrap();
    let names = svc_kit::testing::reflected_services(channel).await.unwrap();
    for service in ["grpc.health.v1.Health", vault_svc::SERVICE_NAME] {
        assert!(names.iter().any(|name| name == service), "{names:?}");
    }
    server.stop().await.unwrap();
}
