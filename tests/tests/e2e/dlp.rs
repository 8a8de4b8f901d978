//! DLP through the real HTTP face: a card number in a tool result comes back masked, an input
//! with a blocked detector is refused and never reaches the downstream (which counts what it
//! received), an inspection service's replacement is what the client gets, and the audit
//! record carries the findings — detector names and counts, never the values.

use axum::Json;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::audit::{
    Audited, audited, call, digest, list_tools, serve_spec, spec_yaml, spec_yaml_over,
    wait_for_events,
};

const CARD: &str = "4111 1111 1111 1111";
const SSN: &str = "123-45-6789";

/// An inspection service that replaces every payload it is sent.
async fn replacing_service() -> String {
    let router = axum::Router::new().route(
        "/inspect",
        axum::routing::post(|Json(_): Json<Value>| async {
            Json(json!({"action": "replace",
                        "payload": {"content": [{"type": "text", "text": "replaced by the service"}]}}))
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/inspect", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

fn findings(event: &Value) -> Vec<(String, u64, String, String)> {
    event["dlpFindings"]
        .as_array()
        .map(|findings| {
            findings
                .iter()
                .map(|finding| {
                    (
                        finding["detectorType"]
                            .as_str()
                            .unwrap_or_default()
                            .to_owned(),
                        finding["count"].as_u64().unwrap_or_default(),
                        finding["direction"].as_str().unwrap_or_default().to_owned(),
                        finding["action"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cards_are_masked_blocked_inputs_never_arrive_and_audit_keeps_no_value() {
    masks_blocks_and_keeps_no_value(&spec_yaml(), false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlp_screens_calls_on_edges_direct_line_as_it_does_through_rmcp() {
    let (_echo, echo_url) = super::gateway::start_http_echo().await;
    let spec = spec_yaml_over(&format!("http: {{url: \"{echo_url}\"}}"));
    masks_blocks_and_keeps_no_value(&spec, true).await;
}

/// Masks, blocks and replaces through the gateway `spec` describes; `direct` waits for the
/// connector's session first, so that every call to an HTTP connector takes edge's direct line.
async fn masks_blocks_and_keeps_no_value(spec: &str, direct: bool) {
    let hook = replacing_service().await;
    let yaml = format!(
        "{spec}dlp:\n  rules:\n\
         \x20   - virtual_server: tools\n\
         \x20     input: {{action: block, detectors: [ssn]}}\n\
         \x20     output: {{action: mask}}\n\
         \x20   - virtual_server: tools\n\
         \x20     tool: add\n\
         \x20     hook: {{url: \"{hook}\", timeout_ms: 2000, on_error: fail_closed, directions: [output]}}\n"
    );
    let shutdown = CancellationToken::new();
    let Audited {
        config: audit_config,
        recorder,
        _dirs,
    } = audited(&shutdown).await;
    let url = serve_spec(&yaml, recorder, &shutdown).await;
    let http = reqwest::Client::new();
    if direct {
        let listed = list_tools(&http, &url).await;
        assert!(listed["result"]["tools"].is_array(), "{listed}");
    }

    let masked = call(
        &http,
        &url,
        1,
        "echo",
        json!({"text": format!("card {CARD} on file")}),
    )
    .await;
    assert_eq!(
        masked["result"]["content"][0]["text"], "card [REDACTED:card] on file",
        "{masked}"
    );

    let refused = call(
        &http,
        &url,
        2,
        "echo",
        json!({"text": format!("ssn {SSN}")}),
    )
    .await;
    assert_eq!(refused["error"]["code"], -32004, "{refused}");
    let message = refused["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("echo") && message.contains("ssn"),
        "names tool and detector: {message}"
    );
    assert!(
        !refused.to_string().contains(SSN),
        "the value is not echoed back: {refused}"
    );

    let received = call(&http, &url, 3, "echoes", json!({})).await;
    assert_eq!(
        received["result"]["content"][0]["text"], "1",
        "the downstream answered only the first echo: {received}"
    );

    let replaced = call(&http, &url, 4, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(
        replaced["result"]["content"][0]["text"], "replaced by the service",
        "{replaced}"
    );

    let events = wait_for_events(&audit_config, "four calls", |events| events.len() >= 4).await;
    let (_, masked_event) = &events[0];
    assert_eq!(masked_event["outcome"], "OUTCOME_SUCCESS");
    assert_eq!(
        findings(masked_event),
        [(
            "card".into(),
            1,
            "DLP_DIRECTION_OUTPUT".into(),
            "DLP_ACTION_MASK".into()
        )]
    );
    let (_, blocked_event) = &events[1];
    assert_eq!(blocked_event["outcome"], "OUTCOME_BLOCKED_BY_DLP");
    assert_eq!(
        findings(blocked_event),
        [(
            "ssn".into(),
            1,
            "DLP_DIRECTION_INPUT".into(),
            "DLP_ACTION_BLOCK".into()
        )]
    );
    assert_eq!(
        blocked_event["payload"]["argumentsDigest"],
        digest(&json!({"text": "ssn [REDACTED:ssn]"})),
        "the digest is of the masked arguments"
    );
    assert_eq!(findings(&events[2].1), []);
    assert_eq!(
        findings(&events[3].1),
        [(
            "inspection_hook".into(),
            1,
            "DLP_DIRECTION_OUTPUT".into(),
            "DLP_ACTION_MASK".into()
        )]
    );
    for (_, event) in &events {
        let text = event.to_string();
        assert!(
            !text.contains(CARD) && !text.contains("4111111111111111"),
            "{text}"
        );
        assert!(!text.contains(SSN), "{text}");
    }
    shutdown.cancel();
}
