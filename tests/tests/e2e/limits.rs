//! Rate limits through the real HTTP face: a caller over budget is refused with a retry hint
//! (HTTP 429 on the modern era), the refused call never reaches the downstream and is audited
//! as rate limited; two edges sharing Redis enforce one global budget.

use edge_svc::access::Access;
use edge_svc::audit::Recorder;
use edge_svc::quota::{Quotas, RateLimitsSpec};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::audit::{audited, wait_for_events};
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
