//! The OTLP logs sink against rotel (PyPI `rotel`, a Rust OTLP collector), which
//! prints every decoded log record.

use std::process::Stdio;

use super::{Running, append, free_port, log_over, receiver, sinks, wait_for_port, wait_for_text};
use crate::backend::Backend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_logs_reach_rotel_with_body_and_attributes() {
    logs_reach_rotel(Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_logs_reach_rotel_with_body_and_attributes() {
    logs_reach_rotel(Protocol::Grpc).await;
}

/// Is the OTLP transport a test exports over.
#[derive(Debug, Clone, Copy)]
enum Protocol {
    HttpProtobuf,
    Grpc,
}

async fn logs_reach_rotel(protocol: Protocol) {
    let Some(rotel) = receiver("ROTEL") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (grpc, http) = (free_port(), free_port());
    let output = dir.path().join("rotel.out");
    let mut child = tokio::process::Command::new(&rotel)
        .args([
            "start",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{grpc}"),
            "--otlp-http-endpoint",
            &format!("127.0.0.1:{http}"),
            "--exporter",
            "blackhole",
            "--debug-log",
            "logs",
            "--debug-log-verbosity",
            "detailed",
        ])
        .stdout(std::fs::File::create(&output).unwrap())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ROTEL is set but does not start");
    wait_for_port(http, "rotel").await;
    wait_for_port(grpc, "rotel").await;
    let backend = Backend::sqlite().await;
    let log = log_over(&backend).await;
    append(&log, "otlp", 0, 3).await;
    let (port, protocol) = match protocol {
        Protocol::HttpProtobuf => (http, "http_protobuf"),
        Protocol::Grpc => (grpc, "grpc"),
    };
    let config = sinks(&format!(
        "[[sinks]]\nname = \"otel\"\nshape = \"cef\"\n[sinks.otlp]\n\
         endpoint = \"http://127.0.0.1:{port}\"\nprotocol = \"{protocol}\"\n"
    ));
    let running = Running::start(&log, &config);
    running.delivered(3).await;
    let text = wait_for_text(&output, "LogRecord #", 3).await;
    running.stop().await;
    child.kill().await.unwrap();
    assert!(
        text.contains("service.name: Str(gatehouse-audit)"),
        "{text}"
    );
    for n in 0..3 {
        assert!(
            text.contains(&format!("gatehouse.audit.event_id: Str(otlp-{n})")),
            "{text}"
        );
    }
    assert!(
        text.contains("Body: Str(CEF:0|Gatehouse|Gatehouse|"),
        "{text}"
    );
    assert!(text.contains("gatehouse.audit.sequence: Str(3)"), "{text}");
    assert!(text.contains("gen_ai.tool.name: Str(echo)"), "{text}");
}
