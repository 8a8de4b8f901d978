use std::path::Path;

use svc_kit::GrpcClientConfig;
use svc_kit::testing::ServiceProcess;
use tonic_health::pb::health_check_response::ServingStatus;

const BINARY: &str = env!("CARGO_BIN_EXE_audit-svc");

#[tokio::test]
async fn invalid_config_exits_64_with_one_line() {
    let env = ("GATEHOUSE_AUDIT__GRPC__REQUEST_TIMEOUT", "0s");
    svc_kit::testing::assert_refuses_config(Path::new(BINARY), env, "grpc.request_timeout").await;
}

#[tokio::test]
async fn missing_config_file_exits_64() {
    svc_kit::testing::assert_refuses_missing_config_file(Path::new(BINARY)).await;
}

#[tokio::test]
async fn sigterm_stops_a_serving_process_cleanly() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let process = ServiceProcess::spawn(
        Path::new(BINARY),
        &[],
        &[
            ("GATEHOUSE_AUDIT__GRPC__LISTEN_ADDR", "127.0.0.1:0"),
            ("GATEHOUSE_AUDIT__DATA_DIR", data_dir),
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
    assert!(data.path().join("audit.db").is_file());
    assert!(data.path().join("audit-checkpoint.key").is_file());
}

#[tokio::test]
async fn prometheus_scrapes_are_served_on_the_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("audit.toml");
    std::fs::write(
        &config,
        format!(
            "[[sinks]]\nname = \"siem\"\n[sinks.jsonl]\npath = \"{}\"\n",
            dir.path().join("siem.jsonl").display()
        ),
    )
    .unwrap();
    let metrics = svc_kit::testing::free_port();
    let process = ServiceProcess::spawn(
        Path::new(BINARY),
        &["--config", config.to_str().unwrap()],
        &[
            ("GATEHOUSE_AUDIT__GRPC__LISTEN_ADDR", "127.0.0.1:0"),
            ("GATEHOUSE_AUDIT__DATA_DIR", dir.path().to_str().unwrap()),
            (
                "GATEHOUSE_AUDIT__METRICS__LISTEN_ADDR",
                &metrics.to_string(),
            ),
        ],
    )
    .await
    .unwrap();
    // Each sink reports its lag as it starts following the log.
    let scraped = svc_kit::testing::scrape_until(metrics, "gatehouse_audit_sink_lag_events").await;
    assert!(scraped.contains("sink=\"siem\""), "{scraped}");
    assert!(process.terminate().await.unwrap().success());
}
