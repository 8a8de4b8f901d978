use std::path::Path;

use svc_kit::GrpcClientConfig;
use svc_kit::testing::ServiceProcess;
use tonic_health::pb::health_check_response::ServingStatus;

const BINARY: &str = env!("CARGO_BIN_EXE_vault-svc");

#[tokio::test]
async fn invalid_config_exits_64_with_one_line() {
    let env = ("GATEHOUSE_VAULT__GRPC__REQUEST_TIMEOUT", "0s");
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
            ("GATEHOUSE_VAULT__GRPC__LISTEN_ADDR", "127.0.0.1:0"),
            ("GATEHOUSE_VAULT__DATA_DIR", data_dir),
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

#[tokio::test]
async fn missing_kek_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(BINARY)
        .env("GATEHOUSE_VAULT__GRPC__LISTEN_ADDR", "127.0.0.1:0")
        .env("GATEHOUSE_VAULT__DATA_DIR", dir.path())
        .env(
            "GATEHOUSE_VAULT__KEK__ENV_VAR",
            "GATEHOUSE_TEST_KEK_THAT_IS_NOT_SET",
        )
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("cannot open the vault"), "{stderr}");
}

#[tokio::test]
async fn kek_from_the_environment_serves_and_a_corrupt_key_file_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let process = ServiceProcess::spawn(
        Path::new(BINARY),
        &[],
        &[
            ("GATEHOUSE_VAULT__GRPC__LISTEN_ADDR", "127.0.0.1:0"),
            ("GATEHOUSE_VAULT__DATA_DIR", data_dir),
            ("GATEHOUSE_VAULT__KEK__ENV_VAR", "GATEHOUSE_TEST_KEK"),
            (
                "GATEHOUSE_TEST_KEK",
                "1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=",
            ),
        ],
    )
    .await
    .unwrap();
    assert!(process.terminate().await.unwrap().success());
    let key_file = dir.path().join("vault.kek");
    std::fs::write(&key_file, "1:not-base64\n").unwrap();
    std::fs::set_permissions(
        &key_file,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let output = tokio::process::Command::new(BINARY)
        .env("GATEHOUSE_VAULT__GRPC__LISTEN_ADDR", "127.0.0.1:0")
        .env("GATEHOUSE_VAULT__DATA_DIR", dir.path())
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(!stderr.contains("not-base64"), "{stderr}");
}

#[tokio::test]
async fn prometheus_scrapes_are_served_on_the_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let metrics = svc_kit::testing::free_port();
    let process = ServiceProcess::spawn(
        Path::new(BINARY),
        &[],
        &[
            ("GATEHOUSE_VAULT__GRPC__LISTEN_ADDR", "127.0.0.1:0"),
            ("GATEHOUSE_VAULT__DATA_DIR", data_dir),
            (
                "GATEHOUSE_VAULT__METRICS__LISTEN_ADDR",
                &metrics.to_string(),
            ),
            ("GATEHOUSE_VAULT__CONNECTORS__TEAM__CREDENTIAL", "shared"),
        ],
    )
    .await
    .unwrap();
    // The refresh loop records every connector's health as it starts.
    let scraped = svc_kit::testing::scrape_until(metrics, "gatehouse_vault_connector_health").await;
    assert!(scraped.contains("connector=\"team\""), "{scraped}");
    assert!(process.terminate().await.unwrap().success());
}

#[tokio::test]
async fn run_on_its_own_it_serves_the_consent_callback_and_the_api_key_page() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let http = svc_kit::testing::free_port();
    let public_url = format!("http://{http}");
    let process = ServiceProcess::spawn(
        Path::new(BINARY),
        &[],
        &[
            ("GATEHOUSE_VAULT__GRPC__LISTEN_ADDR", "127.0.0.1:0"),
            ("GATEHOUSE_VAULT__DATA_DIR", data_dir),
            ("GATEHOUSE_VAULT__HTTP__LISTEN_ADDR", &http.to_string()),
            ("GATEHOUSE_VAULT__HTTP__PUBLIC_URL", &public_url),
        ],
    )
    .await
    .unwrap();
    // A link that was never issued is refused with a page saying so, never a server error.
    for path in [
        "/oauth/callback?code=c&state=never-issued",
        "/api-key?state=never-issued",
    ] {
        let response = reqwest::get(format!("{public_url}{path}")).await.unwrap();
        assert_eq!(response.status(), 400, "{path}");
        let page = response.text().await.unwrap();
        assert!(page.contains("invalid, used or expired"), "{path}: {page}");
    }
    assert!(process.terminate().await.unwrap().success());
}
