//! Rate-limit rules changed while the gateway runs: a rule put through the admin API charges
//! the next call, an invalid rule is refused by name and changes nothing, the rules survive a
//! restart, and `gatehouse apply` brings them back to the file's.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{
    ADMIN_SECRET, CALLER_SECRET, OPEN, Up, apply, gateway_file, get_json, http_with, token, up,
};
use crate::audit::call;

/// The JSON-RPC code of a call refused by a rate limit.
const RATE_LIMITED: i64 = -32029;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_rules_change_live_survive_a_restart_and_follow_gatehouse_apply() {
    let dir = tempfile::tempdir().expect("dir");
    let (config, data) = (dir.path().join("gatehouse.yaml"), dir.path().join("data"));
    std::fs::write(&config, gateway_file(OPEN, false)).expect("config");
    let Up {
        mut child, origin, ..
    } = up(&config, &data).await;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{origin}/admin/v1{path}");
    let admin = token(&origin, "admin-bot", ADMIN_SECRET, &api("")).await;
    let tools = format!("{origin}/v/tools/mcp");
    let caller = http_with(&token(&origin, "caller", CALLER_SECRET, &tools).await);
    let echo = |id: u64| call(&caller, &tools, id, "echo", json!({"text": "paced"}));
    assert_eq!(echo(1).await["result"]["content"][0]["text"], "paced");

    let rule = json!({"name": "echo-pace", "per": "agent", "tool": "echo", "rate": "1/hour"});
    let put = http
        .put(api("/rate-limits"))
        .bearer_auth(&admin)
        .json(&json!({"rules": [rule]}))
        .send()
        .await
        .expect("put rules");
    assert_eq!(put.status(), StatusCode::OK);
    // A fresh bucket holds one call (burst 1); the next is refused without a restart.
    assert_eq!(echo(2).await["result"]["content"][0]["text"], "paced");
    let refused = echo(3).await;
    assert_eq!(refused["error"]["code"], RATE_LIMITED, "{refused}");

    let invalid = http
        .put(api("/rate-limits"))
        .bearer_auth(&admin)
        .json(&json!({"rules": [{"name": "broken", "per": "agent", "rate": "fast"}]}))
        .send()
        .await
        .expect("put invalid rules");
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let body: Value = invalid.json().await.expect("error json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|message| message.contains("rate_limits.rules[0].rate")),
        "the refusal names the rule's field: {body}"
    );
    let kept = get_json(&http, &api("/rate-limits"), &admin).await;
    assert_eq!(
        kept["rules"],
        json!([rule]),
        "a refused set changes nothing"
    );

    // A restart serves the rules last applied, over the file's (which has none).
    child.kill().await.expect("gatehouse stopped");
    child.wait().await.expect("gatehouse exited");
    let Up {
        mut child, origin, ..
    } = up(&config, &data).await;
    let api = |path: &str| format!("{origin}/admin/v1{path}");
    let admin = token(&origin, "admin-bot", ADMIN_SECRET, &api("")).await;
    let after = get_json(&http, &api("/rate-limits"), &admin).await;
    assert_eq!(after["rules"], json!([rule]), "{after}");

    let (code, dry) = apply(&origin, &config, &admin, true);
    assert_eq!(code, 0, "{dry}");
    assert!(dry.contains("~ update rate limits"), "{dry}");
    let (code, applied) = apply(&origin, &config, &admin, false);
    assert_eq!(code, 0, "{applied}");
    let tools = format!("{origin}/v/tools/mcp");
    let caller = http_with(&token(&origin, "caller", CALLER_SECRET, &tools).await);
    for id in 4..7 {
        let answered = call(&caller, &tools, id, "echo", json!({"text": "free"})).await;
        assert_eq!(
            answered["result"]["content"][0]["text"], "free",
            "the file's rules (none) are in force again: {answered}"
        );
    }
    let (code, again) = apply(&origin, &config, &admin, false);
    assert_eq!((code, again.trim()), (0, "no changes"), "{again}");
    child.kill().await.expect("gatehouse stopped");
}
