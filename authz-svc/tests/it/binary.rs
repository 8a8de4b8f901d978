use std::path::Path;

use svc_kit::GrpcClientConfig;
use svc_kit::testing::ServiceProcess;
use tonic_health::pb::health_check_response::ServingStatus;

const BINARY: &str = env!("CARGO_BIN_EXE_authz-svc");

#[tokio::test]
async fn invalid_config_exits_64_with_one_line() {
    let env = ("GATEHOUSE_AUTHZ__GRPC__REQUEST_TIMEOUT", "0s");
    svc_kit::testing::assert_refuses_config(Path::new(BINARY), env, "grpc.request_timeout").await;
}

#[tokio::test]
async fn missing_config_file_exits_64() {
    svc_kit::testing::assert_refuses_missing_config_file(Path::new(BINARY)).await;
}

#[tokio::test]
async fn sigterm_stops_a_serving_process_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let process = ServiceProcess::spawn(
        Path::new(BINARY),
        &[],
        &[
            ("GATEHOUSE_AUTHZ__GRPC__LISTEN_ADDR", "127.0.0.1:0"),
            ("GATEHOUSE_AUTHZ__OAUTH__LISTEN_ADDR", "127.0.0.1:0"),
            ("GATEHOUSE_AUTHZ__STORE__DATA_DIR", data_dir),
        ],
    )
    .await
    .unwrap();
    let url = format!("http://{}", process.addr());
    let channel = svc_kit::grpc::channel(&url, &GrpcClientConfig::default()).unwrap();
    let health = svc_kit::testing::health(channel).await.unwrap();
    assert_eq!(health, ServingStatus::Serving);
    let status = process.terminate().await.unwrap();
    assert!(status.success(), "{status:?}");
}
