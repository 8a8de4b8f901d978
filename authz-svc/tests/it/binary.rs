use std::path::Path;

use svc_kit::GrpcClientConfig;
use svc_kit::testing::ServiceProcess;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const BINARY: &str = env!("CARGO_BIN_EXE_authz-svc");

#[tokio::test]
async fn invalid_config_exits_64_with_one_line() {
    let output = tokio::process::Command::new(BINARY)
        .env("GATEHOUSE_AUTHZ__GRPC__REQUEST_TIMEOUT", "0s")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("grpc.request_timeout"), "{stderr}");
}

#[tokio::test]
async fn missing_config_file_exits_64() {
    let output = tokio::process::Command::new(BINARY)
        .args(["--config", "/nonexistent/authz.toml"])
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(64));
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
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
    let status = process.terminate().await.unwrap();
    assert!(status.success(), "{status:?}");
}
