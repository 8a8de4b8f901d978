//! `gatehouse apply` decommissions the agent bundles the file stops declaring: the dry run
//! shows the deletion, applying it makes the bundle's token refused within a second, and the
//! bundles the file still declares, and one created through the admin API, are untouched.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ADMIN_SECRET, OPEN, Up, apply_with, gateway_file, get_json, http_with, token, up};
use crate::audit::call;

const ALPHA_SECRET: &str = "alpha-secret-3d5f7a9c1e2b4d6f8a0c2e4b";
const BETA_SECRET: &str = "beta-secret-9c7a5e3d1b0f2d4c6e8a0b2d";

/// The gateway file with `extra` agents declared after the three the gateway starts with.
fn with_agents(extra: &[&str]) -> String {
    let lines: String = extra
        .iter()
        .map(|name| {
            let variable = format!("E2E_{}_SECRET", name.to_uppercase());
            format!(
                "    - {{name: {name}, owner: ops, virtual_servers: [tools], secret_env: {variable}}}\n"
            )
        })
        .collect();
    gateway_file(OPEN, false).replacen("policies:\n", &format!("{lines}policies:\n"), 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_decommissions_the_agents_the_file_drops_and_nothing_else() {
    let dir = tempfile::tempdir().expect("dir");
    let (seed, both, alpha_only) = (
        dir.path().join("seed.yaml"),
        dir.path().join("both.yaml"),
        dir.path().join("alpha.yaml"),
    );
    std::fs::write(&seed, gateway_file(OPEN, false)).expect("seed");
    std::fs::write(&both, with_agents(&["alpha", "beta"])).expect("both");
    std::fs::write(&alpha_only, with_agents(&["alpha"])).expect("alpha");
    let Up {
        mut child, origin, ..
    } = up(&seed, &dir.path().join("data")).await;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{origin}/admin/v1{path}");
    let admin = token(&origin, "admin-bot", ADMIN_SECRET, &api("")).await;
    let tools = format!("{origin}/v/tools/mcp");
    let secrets = [
        ("E2E_ALPHA_SECRET", ALPHA_SECRET),
        ("E2E_BETA_SECRET", BETA_SECRET),
    ];

    let created: Value = http
        .post(api("/agents"))
        .bearer_auth(&admin)
        .json(&json!({"name": "handmade", "owner": "alice", "virtual_servers": ["tools"]}))
        .send()
        .await
        .expect("create agent")
        .json()
        .await
        .expect("json");
    let handmade_secret = created["client_secret"].as_str().expect("secret");
    let handmade_id = created["agent"]["client_id"].as_str().expect("client id");
    assert!(
        created["agent"].get("managed_by").is_none(),
        "an agent created through the API is not the file's: {created}"
    );

    let (code, applied) = apply_with(&origin, &both, &admin, false, &secrets);
    assert_eq!(code, 0, "{applied}");
    assert!(
        applied.contains("+ create agent alpha") && applied.contains("+ create agent beta"),
        "{applied}"
    );
    assert!(!applied.contains("handmade"), "{applied}");
    let alpha: Value = get_json(&http, &api("/agents/alpha"), &admin).await;
    assert_eq!(alpha["managed_by"], "gateway-file", "{alpha}");
    let beta = token(&origin, "beta", BETA_SECRET, &tools).await;
    let answered = call(&http_with(&beta), &tools, 1, "echo", json!({"text": "hi"})).await;
    assert_eq!(answered["result"]["content"][0]["text"], "hi", "{answered}");
    let handmade = token(&origin, handmade_id, handmade_secret, &tools).await;

    let (code, dry) = apply_with(&origin, &alpha_only, &admin, true, &secrets);
    assert_eq!(code, 0, "{dry}");
    assert!(dry.contains("- delete agent beta"), "{dry}");
    assert!(dry.contains("dry run: nothing applied"), "{dry}");
    for untouched in ["alpha", "handmade", "admin-bot", "viewer", "caller"] {
        assert!(!dry.contains(&format!("agent {untouched}")), "{dry}");
    }
    let still: Value = get_json(&http, &api("/agents/beta"), &admin).await;
    assert_eq!(
        still["state"], "active",
        "a dry run changes nothing: {still}"
    );

    let (code, removed) = apply_with(&origin, &alpha_only, &admin, false, &secrets);
    assert_eq!(code, 0, "{removed}");
    assert!(
        removed.contains("- delete agent beta") && removed.contains("applied 1 change(s)"),
        "{removed}"
    );
    let refused = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let response = http
                .post(&tools)
                .bearer_auth(&beta)
                .header("accept", "application/json, text/event-stream")
                .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
                .send()
                .await
                .expect("call");
            if response.status() == StatusCode::UNAUTHORIZED {
                return;
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the dropped agent's token still worked after a second"
    );
    let fresh = http
        .post(format!("{origin}/token"))
        .basic_auth("beta", Some(BETA_SECRET))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", tools.as_str()),
        ])
        .send()
        .await
        .expect("token request");
    assert!(
        fresh.status().is_client_error(),
        "a decommissioned agent gets no new token: {}",
        fresh.status()
    );
    let beta_view: Value = get_json(&http, &api("/agents/beta"), &admin).await;
    assert_eq!(beta_view["state"], "decommissioned", "{beta_view}");

    for (name, client) in [("alpha", "alpha"), ("handmade", handmade_id)] {
        let view: Value = get_json(&http, &api(&format!("/agents/{client}")), &admin).await;
        assert_eq!(view["state"], "active", "{name} is untouched: {view}");
    }
    let answered = call(
        &http_with(&handmade),
        &tools,
        2,
        "echo",
        json!({"text": "hi"}),
    )
    .await;
    assert_eq!(
        answered["result"]["content"][0]["text"], "hi",
        "the agent created through the API still calls: {answered}"
    );
    let alpha = token(&origin, "alpha", ALPHA_SECRET, &tools).await;
    assert!(!alpha.is_empty());

    let (code, settled) = apply_with(&origin, &alpha_only, &admin, false, &secrets);
    assert_eq!((code, settled.trim()), (0, "no changes"), "{settled}");
    for output in [&applied, &dry, &removed] {
        assert!(
            !output.contains(ALPHA_SECRET) && !output.contains(BETA_SECRET),
            "{output}"
        );
    }
    child.kill().await.expect("gatehouse stopped");
}
