//! The Activity page's records: each MCP call's audit record carries the W3C trace id of its
//! own request, and the page shows it.

use std::time::Duration;

use reqwest::StatusCode;

use super::{AGENT_SECRET, ALICE_PASSWORD, Browser, agent_token, gateway_file, up};

/// The client's trace ids: each call's audit record must carry its own.
const TRACE_ONE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const TRACE_TWO: &str = "0af7651916cd43dd8448eb211c80319c";

/// Calls `echo` statelessly as part of the client's trace `trace_id`.
pub(super) async fn traced_echo(url: &str, token: &str, trace_id: &str) {
    let meta = serde_json::json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {},
        "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}});
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(
            &serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": trace_id}, "_meta": meta}}),
        )
        .send()
        .await
        .expect("call");
    assert_eq!(response.status(), StatusCode::OK, "the traced call");
}

/// Returns the event pages the feed (`show`) links, newest first.
pub(super) async fn event_pages(browser: &mut Browser, origin: &str, show: &str) -> Vec<String> {
    let feed = browser
        .get(&format!("{origin}/console/activity/feed?show={show}"))
        .await
        .text()
        .await
        .expect("feed");
    feed.split("href=\"/console/activity/")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .filter(|sequence| !sequence.is_empty() && sequence.chars().all(|c| c.is_ascii_digit()))
        .map(|sequence| format!("{origin}/console/activity/{sequence}"))
        .collect()
}

/// Polls the feed (`show`) until its rows contain every one of `needles` (10 s at most); returns
/// the rows.
pub(super) async fn feed_with(
    browser: &mut Browser,
    origin: &str,
    show: &str,
    needles: &[&str],
) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let feed = browser
            .get(&format!("{origin}/console/activity/feed?show={show}"))
            .await
            .text()
            .await
            .expect("feed");
        if needles.iter().all(|needle| feed.contains(needle)) {
            return feed;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the {show} feed lacks one of {needles:?}: {feed}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activity_record_shows_the_trace_id_of_its_request() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file()).expect("config");
    let (mut child, origin) = up(&config, &dir.path().join("data")).await;
    let tools = format!("{origin}/v/tools/mcp");
    let token = agent_token(&origin, "reporter", AGENT_SECRET, &tools)
        .await
        .expect("agent token");
    traced_echo(&tools, &token, TRACE_ONE).await;
    traced_echo(&tools, &token, TRACE_TWO).await;

    let mut alice = Browser::sign_in(&origin, "alice", ALICE_PASSWORD).await;
    feed_with(&mut alice, &origin, "calls", &[TRACE_ONE, TRACE_TWO]).await;
    let mut seen = Vec::new();
    for page in event_pages(&mut alice, &origin, "calls").await {
        let html = alice.get(&page).await.text().await.expect("event page");
        let shown = html
            .split("<code id=\"trace-id\">")
            .nth(1)
            .and_then(|rest| rest.split('<').next())
            .expect("a trace id on the record page")
            .to_owned();
        if html.contains("tools/call") {
            assert!(
                html.contains("traceId") && html.matches(shown.as_str()).count() >= 2,
                "the page shows the record's own trace id: {html}"
            );
            seen.push(shown);
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        vec![TRACE_TWO.to_owned(), TRACE_ONE.to_owned()],
        "each call's record carries the trace id its traceparent gave"
    );
    child.kill().await.expect("stop gatehouse");
}
