//! An agent's owner manages their own bundles through the admin API without being an
//! administrator: a member outside the admin group, signed in through the built-in login with
//! the admin scope, lists, shows, rotates and decommissions the bundles naming them as owner,
//! sees nothing of any other bundle, and can do nothing else; each action is audited under
//! the member.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{ADMIN_SECRET, CALLER_SECRET, OPEN, Up, gateway_file, search_until, token, up};
use crate::console::{BOB_HASH, BOB_PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agents_owner_rotates_and_decommissions_their_own_bundle_and_nothing_else() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    let file = gateway_file(OPEN, false).replace(
        "authorization:\n",
        &format!(
            "authorization:\n  members:\n    - {{username: bob, groups: [staff], password_hash: \"{BOB_HASH}\"}}\n"
        ),
    );
    std::fs::write(&config, file).expect("config");
    let Up {
        mut child, origin, ..
    } = up(&config, &dir.path().join("data")).await;
    let api = |path: &str| format!("{origin}/admin/v1{path}");
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let admin = token(&origin, "admin-bot", ADMIN_SECRET, &api("")).await;
    let bob = crate::scim::login(&http, &origin, &api(""), "bob", BOB_PASSWORD).await;
    let member = subject(&bob);

    let created: Value = http
        .post(api("/agents"))
        .bearer_auth(&admin)
        .json(&json!({"name": "bobs-agent", "owner": member, "virtual_servers": ["tools"]}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let client_id = created["agent"]["client_id"]
        .as_str()
        .expect("client id")
        .to_owned();

    // Not an administrator: the rest of the API stays closed, creating agents too.
    let policies = http
        .get(api("/policies"))
        .bearer_auth(&bob)
        .send()
        .await
        .expect("policies");
    assert_eq!(policies.status(), StatusCode::FORBIDDEN);
    let create = http
        .post(api("/agents"))
        .bearer_auth(&bob)
        .json(&json!({"name": "another", "owner": member, "virtual_servers": ["tools"]}))
        .send()
        .await
        .expect("create as owner");
    assert_eq!(create.status(), StatusCode::FORBIDDEN);

    // Their own bundles only, whatever owner they ask for; others' are not found.
    for query in ["", "?owner=ops"] {
        let listed: Value = http
            .get(api(&format!("/agents{query}")))
            .bearer_auth(&bob)
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        let names: Vec<&str> = listed
            .as_array()
            .expect("agents")
            .iter()
            .filter_map(|agent| agent["name"].as_str())
            .collect();
        assert_eq!(names, ["bobs-agent"], "{listed}");
    }
    for (method, path) in [
        ("GET", "/agents/caller"),
        ("POST", "/agents/caller/rotate"),
        ("POST", "/agents/caller/decommission"),
    ] {
        let refused = http
            .request(method.parse().expect("method"), api(path))
            .bearer_auth(&bob)
            .json(&json!({"reason": "not mine"}))
            .send()
            .await
            .expect("someone else's bundle");
        assert_eq!(refused.status(), StatusCode::NOT_FOUND, "{method} {path}");
    }
    token(
        &origin,
        "caller",
        CALLER_SECRET,
        &format!("{origin}/v/tools/mcp"),
    )
    .await;

    // A rotation: the new secret works at once.
    let rotated: Value = http
        .post(api("/agents/bobs-agent/rotate"))
        .bearer_auth(&bob)
        .json(&json!({"overlap_seconds": 0}))
        .send()
        .await
        .expect("rotate")
        .json()
        .await
        .expect("json");
    let secret = rotated["client_secret"]
        .as_str()
        .expect("the new secret, once")
        .to_owned();
    let tools = format!("{origin}/v/tools/mcp");
    token(&origin, &client_id, &secret, &tools).await;

    let decommissioned = http
        .post(api("/agents/bobs-agent/decommission"))
        .bearer_auth(&bob)
        .json(&json!({"reason": "retired by its owner"}))
        .send()
        .await
        .expect("decommission");
    assert_eq!(decommissioned.status(), StatusCode::OK);
    let refused = reqwest::Client::new()
        .post(format!("{origin}/token"))
        .basic_auth(&client_id, Some(&secret))
        .form(&[("grant_type", "client_credentials"), ("resource", &tools)])
        .send()
        .await
        .expect("token after decommission");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    let audited = search_until(
        &http,
        &api(&format!(
            "/audit/events?member={member}&kind=EVENT_KIND_AGENT_CHANGED&limit=100"
        )),
        &admin,
        |page| {
            let text = page.to_string();
            (text.contains("\"rotate\"") && text.contains("retired by its owner")).then_some(text)
        },
    )
    .await
    .expect("the owner's rotation and decommissioning are audited under the member");
    assert!(!audited.contains(&secret) && !audited.contains(&bob));
    child.kill().await.expect("gatehouse stopped");
}

/// Returns the `sub` of a JWT access token (its signature is the server's business here).
fn subject(token: &str) -> String {
    let payload = token.split('.').nth(1).expect("a JWT");
    let claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
            .expect("claims");
    claims["sub"].as_str().expect("sub").to_owned()
}
