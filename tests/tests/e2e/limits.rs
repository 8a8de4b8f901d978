//! Rate limits through the real HTTP face: a caller over budget is refused with a retry hint
//! (HTTP 429 on the modern era, a JSON-RPC error in HTTP 200 on a legacy session), the refused
//! call never reaches the downstream and is audited as rate limited; anonymous callers are paced
//! per address; two edges sharing Redis enforce one global budget.

use edge_svc::access::Access;
use edge_svc::audit::Recorder;
use edge_svc::config::HttpFace;
use edge_svc::quota::{Quotas, RateLimitsSpec};
use edge_svc::{Gateway, GatewaySpec};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::audit::{audited, call, spec_yaml, wait_for_events};
use super::oauth::{call_tool, start_limited, token_for};

async fn quotas(yaml: &str) -> Quotas {
    let spec: RateLimitsSpec = serde_norway::from_str(yaml).expect("rate_limits section");
    Quotas::open(&spec).await.expect("bucket store")
}

/// Returns how many `echo` calls the gateway's downstream has answered (`echoes` is unmetered).
async fn downstream_echoes(url: &str, token: &str) -> u64 {
    let response: Value = call_tool(url, token, "echoes", json!({}))
        .await
        .json()
        .await
        .expect("json-rpc");
    response["result"]["content"][0]["text"]
        .as_str()
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("echoes answered: {response}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_over_budget_is_refused_with_a_retry_hint_audited_and_never_forwarded() {
    let shutdown = CancellationToken::new();
    let trail = audited(&shutdown).await;
    let limits =
        quotas("rules: [{name: echo-per-member, per: member, tool: echo, rate: 1/hour, burst: 2}]")
            .await;
    let gateway = start_limited(trail.recorder, Access::unrestricted(), limits).await;
    let crm = format!("{}/v/crm/mcp", gateway.origin);
    let token = token_for(&gateway.origin, &crm).await;

    for call in 1..=2 {
        let response = call_tool(&crm, &token, "echo", json!({"text": "within budget"})).await;
        assert_eq!(response.status(), 200, "call {call} is within the burst");
    }
    let refused = call_tool(&crm, &token, "echo", json!({"text": "over budget"})).await;
    assert_eq!(refused.status(), 429, "the modern era hears it in HTTP too");
    let header: u64 = refused.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("Retry-After in seconds");
    let body: Value = refused.json().await.expect("a JSON-RPC error body");
    assert_eq!(body["error"]["code"], -32029, "{body}");
    assert_eq!(body["error"]["data"]["retryAfterSeconds"], header, "{body}");
    assert!(
        header > 3500 && header <= 3600,
        "one interval of an hourly budget: {header}"
    );
    let message = body["error"]["message"].as_str().expect("message");
    assert!(
        message.contains("per member") && message.contains("`echo`"),
        "names the rule class and the tool: {message}"
    );
    assert_eq!(
        downstream_echoes(&crm, &token).await,
        2,
        "the refused call never reached the downstream"
    );

    let events = wait_for_events(&trail.config, "the token and four calls", |events| {
        events.len() >= 5
    })
    .await;
    let outcomes: Vec<&str> = events
        .iter()
        .filter(|(_, event)| event["kind"] == "EVENT_KIND_MCP_REQUEST")
        .map(|(_, event)| event["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        outcomes,
        [
            "OUTCOME_SUCCESS",
            "OUTCOME_SUCCESS",
            "OUTCOME_RATE_LIMITED",
            "OUTCOME_SUCCESS"
        ]
    );
    let (_, limited) = events
        .iter()
        .find(|(_, event)| event["outcome"] == "OUTCOME_RATE_LIMITED")
        .expect("the refusal's event");
    assert_eq!(limited["target"]["tool"]["name"], "echo");
    assert_eq!(limited["error"]["jsonrpcCode"], -32029);
    for (_, event) in &events {
        let text = event.to_string();
        assert!(
            !text.contains("over budget"),
            "an argument value leaked: {text}"
        );
        assert!(!text.contains(&token), "the access token leaked: {text}");
    }
    gateway.shutdown.cancel();
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_sharing_redis_enforce_one_global_budget() {
    let Ok(redis) = std::env::var("REDIS_URL") else {
        eprintln!(
            "SKIPPED: REDIS_URL is not set; the shared-budget test across two edges did not run"
        );
        return;
    };
    let budget = 5;
    let section = format!(
        "backend: {{redis: {{url: \"{redis}\", key_prefix: \"gatehouse:e2e:{}:\"}}}}\n\
         rules: [{{name: crm-total, per: virtual_server, tool: echo, rate: 1/hour, burst: {budget}}}]",
        std::process::id()
    );
    let mut edges = Vec::new();
    for _ in 0..2 {
        let gateway = start_limited(
            Recorder::disabled(),
            Access::unrestricted(),
            quotas(&section).await,
        )
        .await;
        let url = format!("{}/v/crm/mcp", gateway.origin);
        let token = token_for(&gateway.origin, &url).await;
        edges.push((gateway, url, token));
    }

    let mut calls = tokio::task::JoinSet::new();
    for call in 0..16 {
        let (_, url, token) = &edges[call % 2];
        let (url, token) = (url.clone(), token.clone());
        calls.spawn(async move {
            call_tool(&url, &token, "echo", json!({"text": "shared"}))
                .await
                .status()
        });
    }
    let statuses = calls.join_all().await;
    let allowed = statuses
        .iter()
        .filter(|status| status.as_u16() == 200)
        .count();
    let limited = statuses
        .iter()
        .filter(|status| status.as_u16() == 429)
        .count();
    assert_eq!(
        (allowed, limited),
        (budget, 16 - budget),
        "one budget across both edges: {statuses:?}"
    );
    let mut forwarded = 0;
    for (_, url, token) in &edges {
        forwarded += downstream_echoes(url, token).await;
    }
    assert_eq!(
        forwarded, budget as u64,
        "only admitted calls reached a downstream"
    );
    for (gateway, _, _) in edges {
        gateway.shutdown.cancel();
    }
}

/// Serves the `tools` server of [`spec_yaml`] (`auth: none`) with `limits`, unrecorded.
async fn serve_anonymous(limits: Quotas, shutdown: &CancellationToken) -> String {
    let spec = GatewaySpec::from_yaml(&spec_yaml(), "limits.yaml").expect("spec");
    let gateway = Gateway::start(&spec, shutdown)
        .expect("gateway")
        .with_audit(Recorder::disabled())
        .with_quotas(limits);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let face = HttpFace::new(origin.parse().expect("url"), &[], &[], 1 << 20);
    tokio::spawn(edge_svc::serve(
        gateway,
        face,
        None,
        listener,
        shutdown.clone(),
    ));
    format!("{origin}/v/tools/mcp")
}

/// Posts one legacy-era (2025-11-25) message and returns the HTTP status and the JSON-RPC
/// answer, read from a JSON body or from the SSE stream's `data:` lines.
async fn legacy_post(
    http: &reqwest::Client,
    url: &str,
    session: Option<&str>,
    message: Value,
) -> (u16, Option<String>, Option<Value>) {
    let mut request = http
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .json(&message);
    if let Some(session) = session {
        request = request
            .header("mcp-session-id", session)
            .header("mcp-protocol-version", "2025-11-25");
    }
    let response = request.send().await.expect("edge answers");
    let status = response.status().as_u16();
    let session = response
        .headers()
        .get("mcp-session-id")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.expect("body");
    let answer = std::iter::once(text.as_str())
        .chain(text.lines().filter_map(|line| line.strip_prefix("data:")))
        .filter_map(|candidate| serde_json::from_str::<Value>(candidate.trim()).ok())
        .find(|value| value.get("id").is_some());
    (status, session, answer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_callers_are_paced_per_address_and_a_legacy_session_hears_it_in_json_rpc() {
    let shutdown = CancellationToken::new();
    let limits = quotas(
        "rules: [{name: anonymous, per: source_ip, callers: anonymous, tool: echo, rate: 1/hour, burst: 2}]",
    )
    .await;
    let url = serve_anonymous(limits, &shutdown).await;
    let http = reqwest::Client::new();

    let (status, session, _) = legacy_post(
        &http,
        &url,
        None,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "limits-e2e", "version": "1"}}}),
    )
    .await;
    assert_eq!(status, 200, "initialize");
    let session = session.expect("a legacy session id");
    let (status, _, _) = legacy_post(
        &http,
        &url,
        Some(&session),
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202, "initialized");

    let echo = |id: u64| {
        json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"text": format!("call-{id}")}}})
    };
    for id in 2..=3 {
        let (status, _, answer) = legacy_post(&http, &url, Some(&session), echo(id)).await;
        let answer = answer.expect("an answer");
        assert_eq!(status, 200);
        assert_eq!(
            answer["result"]["content"][0]["text"],
            format!("call-{id}"),
            "{answer}"
        );
    }
    let (status, _, refused) = legacy_post(&http, &url, Some(&session), echo(4)).await;
    let refused = refused.expect("the refusal");
    assert_eq!(
        status, 200,
        "a legacy session hears it in the JSON-RPC body only"
    );
    assert_eq!(refused["error"]["code"], -32029, "{refused}");
    assert_eq!(refused["error"]["data"]["limit"], "source_ip", "{refused}");
    assert!(
        refused["error"]["data"]["retryAfterSeconds"]
            .as_u64()
            .is_some_and(|seconds| seconds > 3500),
        "{refused}"
    );

    // The budget belongs to the address, whichever era or session the caller uses.
    let modern = call(&http, &url, 5, "echo", json!({"text": "other era"})).await;
    assert_eq!(modern["error"]["code"], -32029, "{modern}");
    let unmetered = call(&http, &url, 6, "echoes", json!({})).await;
    assert_eq!(
        unmetered["result"]["content"][0]["text"], "2",
        "only the two calls within budget reached the downstream: {unmetered}"
    );
    shutdown.cancel();
}
