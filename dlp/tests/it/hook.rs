//! The external inspection hook against a small inspection service this test runs.
//!
//! The service blocks payloads mentioning `forbidden`, replaces those mentioning `secret`,
//! never answers `slow` ones (so the timeout decides), fails on `broken` ones, and allows the
//! rest; it keeps every request it received.

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dlp::{Direction, Target, Verdict};
use serde_json::{Value, json};

type Received = Arc<Mutex<Vec<(Value, Option<String>)>>>;

async fn inspect(
    State(received): State<Received>,
    headers: axum::http::HeaderMap,
    Json(request): Json<Value>,
) -> Response {
    let authorization = headers
        .get("authorization")
        .map(|value| value.to_str().unwrap().to_owned());
    received
        .lock()
        .unwrap()
        .push((request.clone(), authorization));
    let payload = request["payload"].to_string();
    if payload.contains("slow") {
        std::future::pending::<()>().await;
    }
    if payload.contains("broken") {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let answer = if payload.contains("forbidden") {
        json!({"action": "block"})
    } else if payload.contains("secret") {
        json!({"action": "replace", "payload": {"text": "masked by the service"}})
    } else {
        json!({"action": "allow"})
    };
    Json(answer).into_response()
}

async fn inspection_service() -> (String, Received) {
    let received = Received::default();
    let router = axum::Router::new()
        .route("/inspect", axum::routing::post(inspect))
        .with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/inspect", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, received)
}

const TARGET: Target<'static> = Target {
    virtual_server: "crm",
    connector: "db",
    tool: Some("lookup"),
};

#[tokio::test]
async fn the_service_verdict_is_acted_on_and_failures_follow_on_error() {
    let (url, received) = inspection_service().await;
    let dlp = super::dlp(json!({"rules": [
        {"virtual_server": "crm", "hook": {"url": url, "timeout_ms": 300, "on_error": "fail_closed", "directions": ["input"]}},
        {"virtual_server": "crm", "connector": "db", "tool": "open_*", "hook": {"url": url, "timeout_ms": 300, "on_error": "fail_open"}}
    ]}));
    let closed = dlp.hook(&TARGET, Direction::Input).expect("input hook");
    assert!(
        dlp.hook(&TARGET, Direction::Output).is_none(),
        "only input is sent"
    );
    let open_target = Target {
        tool: Some("open_file"),
        ..TARGET
    };
    let open = dlp
        .hook(&open_target, Direction::Output)
        .expect("narrower hook covers output");

    for (payload, on_closed, on_open) in [
        (json!({"text": "hello"}), Verdict::Allow, Verdict::Allow),
        (
            json!({"text": "forbidden words"}),
            Verdict::Block,
            Verdict::Block,
        ),
        (
            json!({"text": "a secret"}),
            Verdict::Replace(json!({"text": "masked by the service"})),
            Verdict::Replace(json!({"text": "masked by the service"})),
        ),
        (json!({"text": "broken"}), Verdict::Block, Verdict::Allow),
        (json!({"text": "slow"}), Verdict::Block, Verdict::Allow),
    ] {
        assert_eq!(
            closed.verdict(Direction::Input, &TARGET, &payload).await,
            on_closed,
            "fail_closed: {payload}"
        );
        assert_eq!(
            open.verdict(Direction::Output, &open_target, &payload)
                .await,
            on_open,
            "fail_open: {payload}"
        );
    }
    let error = closed
        .ask(Direction::Input, &TARGET, &json!("slow"))
        .await
        .unwrap_err();
    assert!(matches!(error, dlp::HookError::Timeout), "{error}");

    let received = received.lock().unwrap();
    let (first, authorization) = &received[0];
    assert_eq!(
        first,
        &json!({"direction": "input", "virtual_server": "crm", "connector": "db", "tool": "lookup", "payload": {"text": "hello"}})
    );
    assert_eq!(authorization, &None, "nothing of the gateway's own is sent");
    assert_eq!(received[1].0["direction"], "output");
}

#[tokio::test]
async fn an_unreachable_service_fails_as_configured() {
    let (url, _) = inspection_service().await;
    let dead = url.replace("/inspect", "/nowhere");
    let dlp = super::dlp(json!({"rules": [
        {"virtual_server": "crm", "hook": {"url": dead, "on_error": "fail_closed"}},
        {"virtual_server": "crm", "tool": "lookup", "hook": {"url": "http://127.0.0.1:9/", "on_error": "fail_open"}}
    ]}));
    let narrow = dlp.hook(&TARGET, Direction::Input).unwrap();
    assert_eq!(
        narrow.verdict(Direction::Input, &TARGET, &json!("x")).await,
        Verdict::Allow
    );
    let other = Target {
        tool: Some("search"),
        ..TARGET
    };
    let broad = dlp.hook(&other, Direction::Input).unwrap();
    assert_eq!(
        broad.verdict(Direction::Input, &other, &json!("x")).await,
        Verdict::Block,
        "a 404 is a failure"
    );
}
