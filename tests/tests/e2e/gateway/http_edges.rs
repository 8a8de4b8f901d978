//! What the HTTP face answers to requests that are not well-behaved MCP clients.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{COMBINED, RunningGateway};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

fn post(url: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_and_malformed_requests_get_spec_shaped_refusals() {
    let gateway = RunningGateway::start(COMBINED).await;
    let url = gateway.url("combined");

    let rebinding = post(&url)
        .header("host", "evil.example.com")
        .body(INITIALIZE)
        .send()
        .await
        .expect("send");
    assert!(
        rebinding.status().is_client_error(),
        "foreign Host: {}",
        rebinding.status()
    );

    let foreign_origin = post(&url)
        .header("origin", "https://evil.example.com")
        .body(INITIALIZE)
        .send()
        .await
        .expect("send");
    assert_eq!(
        foreign_origin.status(),
        StatusCode::FORBIDDEN,
        "foreign Origin"
    );

    let local_origin = post(&url)
        .header("origin", format!("http://{}", gateway.addr))
        .body(INITIALIZE)
        .send()
        .await
        .expect("send");
    assert!(
        local_origin.status().is_success(),
        "own Origin: {}",
        local_origin.status()
    );

    let oversized = post(&url)
        .body(vec![b' '; 128 * 1024])
        .send()
        .await
        .expect("send");
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = oversized.json().await.expect("a JSON-RPC error body");
    assert_eq!(body["error"]["code"], json!(-32600), "{body}");

    let garbage = post(&url).body("{not json").send().await.expect("send");
    assert_eq!(garbage.status(), StatusCode::BAD_REQUEST);
    let body: Value = garbage.json().await.expect("a JSON-RPC error body");
    assert_eq!(body["error"]["code"], json!(-32700), "parse error: {body}");

    let batch = post(&url).body("[1, 2]").send().await.expect("send");
    assert_eq!(batch.status(), StatusCode::BAD_REQUEST);
    let body: Value = batch.json().await.expect("a JSON-RPC error body");
    assert_eq!(
        body["error"]["code"],
        json!(-32600),
        "invalid request: {body}"
    );

    let no_session = post(&url)
        .body(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(
        no_session.status(),
        StatusCode::BAD_REQUEST,
        "legacy request without a session"
    );
    let body: Value = no_session.json().await.expect("a JSON-RPC error body");
    assert_eq!(body["jsonrpc"], json!("2.0"), "{body}");

    let nowhere = post(&format!("http://{}/v/nope/mcp", gateway.addr))
        .body(INITIALIZE)
        .send()
        .await
        .expect("send");
    assert_eq!(nowhere.status(), StatusCode::NOT_FOUND);
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_protected_virtual_server_challenges_without_leaking_the_token() {
    let gateway = RunningGateway::start(COMBINED).await;
    let url = gateway.url("locked");
    let anonymous = post(&url).body(INITIALIZE).send().await.expect("send");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        anonymous.headers()["connection"],
        "close",
        "the unread body ends the connection"
    );
    let challenge = anonymous.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let metadata = format!(
        "http://{}/.well-known/oauth-protected-resource/v/locked/mcp",
        gateway.addr
    );
    assert!(
        challenge.starts_with("Bearer ") && challenge.contains(&metadata),
        "{challenge}"
    );

    let with_token = post(&url)
        .bearer_auth("canary-token-ffa1")
        .body(INITIALIZE)
        .send()
        .await
        .expect("send");
    assert_eq!(
        with_token.status(),
        StatusCode::UNAUTHORIZED,
        "no verifier yet: fail closed"
    );
    let headers = format!("{:?}", with_token.headers());
    let echoed = format!("{headers}{}", with_token.text().await.unwrap_or_default());
    assert!(
        !echoed.contains("canary-token-ffa1"),
        "the token must never be echoed: {echoed}"
    );
    gateway.stop().await;
}

/// Returns the JSON-RPC message of a response, sent as JSON or as the last event of a stream.
async fn answer(response: reqwest::Response) -> Value {
    let text = response.text().await.expect("a body");
    serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .next_back()
            .unwrap_or_else(|| panic!("no JSON-RPC message in {text:?}"))
    })
}

/// JSON-RPC 2.0: a request whose params do not fit its method is `-32602 Invalid params`, not
/// "method not found"; the answer names the field and what was expected there, and never
/// quotes the value that did not fit (a client may have put a secret in the wrong place).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn params_that_do_not_fit_their_method_are_invalid_params_in_both_eras() {
    const CANARY: &str = "sk-live-canary-5a1d";
    let gateway = RunningGateway::start(COMBINED).await;
    let url = gateway.url("combined");

    let initialized = post(&url).body(INITIALIZE).send().await.expect("send");
    assert!(initialized.status().is_success());
    let session = initialized.headers()["mcp-session-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    let legacy = |body: String| {
        post(&url)
            .header("mcp-session-id", &session)
            .header("mcp-protocol-version", "2025-11-25")
            .body(body)
    };
    let notified = legacy(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.into())
        .send()
        .await
        .expect("send");
    assert!(notified.status().is_success());

    let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}"#;
    // 2026-07-28 asks for `Mcp-Name` when the body names a tool, and edge checks it first.
    let modern = |method: &str, name: Option<&str>, body: String| {
        let request = post(&url)
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", method);
        match name {
            Some(name) => request.header("mcp-name", name),
            None => request,
        }
        .body(body)
    };

    let cases = [
        (
            "tools/call",
            Some("echo"),
            format!(r#"{{"name":"echo","arguments":"{CANARY}""#),
            -32602,
            "invalid params for tools/call: `arguments`: expected a map",
        ),
        (
            "tools/call",
            None,
            r#"{"name":5"#.to_owned(),
            -32602,
            "invalid params for tools/call: `name`: expected a string",
        ),
        (
            "tools/call",
            None,
            r#"{"arguments":{}"#.to_owned(),
            -32602,
            "invalid params for tools/call: missing field `name`",
        ),
        (
            "resources/read",
            None,
            r#"{"uri":42"#.to_owned(),
            -32602,
            "invalid params for resources/read: `uri`: expected a string",
        ),
        (
            "bogus/method",
            None,
            "{".to_owned(),
            -32601,
            "method not found: `bogus/method`",
        ),
    ];
    for (id, (method, name, params, code, message)) in cases.iter().enumerate() {
        let legacy_body =
            format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}}}"#);
        let modern_body = format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}{comma}{meta}}}}}"#,
            comma = if params.len() > 1 { "," } else { "" },
        );
        for (era, request) in [
            ("2025-11-25", legacy(legacy_body)),
            ("2026-07-28", modern(method, *name, modern_body)),
        ] {
            let body = answer(request.send().await.expect("send")).await;
            assert_eq!(body["id"], json!(id), "{era} {method}: {body}");
            assert_eq!(body["error"]["code"], json!(code), "{era} {method}: {body}");
            assert_eq!(
                body["error"]["message"],
                json!(message),
                "{era} {method}: {body}"
            );
            assert!(!body.to_string().contains(CANARY), "{era}: {body}");
        }
    }
    gateway.stop().await;
}
