//! The Agents page: each bundle's facts, and a rotation whose new secret is shown on its one
//! response page and nowhere else (no other page, no audit record, no log line); the feed shows
//! the rotation, the agent's token and its call with their kinds.

use reqwest::StatusCode;

use super::activity::{event_pages, feed_with};
use super::{
    ADMIN_BOT_SECRET, ADMIN_PAGES, AGENT_SECRET, ALICE_PASSWORD, Browser, agent_token,
    gateway_file, up,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_secret_is_shown_once_and_never_logged_audited_or_shown_again() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file()).expect("config");
    let data = dir.path().join("data");
    let (mut child, origin) = up(&config, &data).await;
    let tools = format!("{origin}/v/tools/mcp");
    let mut alice = Browser::sign_in(&origin, "alice", ALICE_PASSWORD).await;
    let rotate = format!("{origin}/console/agents/reporter/rotate");
    let confirm = alice.get(&rotate).await;
    assert_eq!(
        confirm.status(),
        StatusCode::OK,
        "a confirmation step first"
    );
    let csrf = alice.csrf(&origin).await;
    let rotated = alice.post(&rotate, &[("csrf", &csrf)]).await;
    assert_eq!(rotated.status(), StatusCode::OK);
    let html = rotated.text().await.expect("rotated page");
    let secret = html
        .split("<code class=\"secret\">")
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .expect("the new secret on the response page")
        .to_owned();
    assert!(secret.len() >= 32 && secret != AGENT_SECRET, "{secret}");

    // The new secret is real: the agent gets a token with it and calls a tool.
    let token = agent_token(&origin, "reporter", &secret, &tools)
        .await
        .expect("a token with the new secret");
    let called = super::super::oauth::call_tool(
        &tools,
        &token,
        "echo",
        serde_json::json!({"text": "rotated"}),
    )
    .await;
    assert_eq!(called.status(), StatusCode::OK);

    // The feed shows the rotation, the agent's token and its call, each with its kind.
    let feed = feed_with(
        &mut alice,
        &origin,
        "all",
        &[
            "agent changed <code>rotate agent bundle reporter</code>",
            "token issued <code>client credentials</code>",
            "mcp request <code>tools/call</code>",
        ],
    )
    .await;
    assert!(
        !feed.contains("<code>list ") && !feed.contains("<code>search "),
        "the console's own reads stay out of the feed: {feed}"
    );
    let admin = feed_with(&mut alice, &origin, "admin", &["rotate agent bundle"]).await;
    assert!(!admin.contains("tools/call"), "the admin feed: {admin}");

    // Agents page: owner, scopes and a fresh secret age; rotate and decommission offered.
    let agents = alice
        .get(&format!("{origin}/console/agents"))
        .await
        .text()
        .await
        .expect("agents");
    let row = agents
        .split("<th scope=\"row\">reporter")
        .nth(1)
        .and_then(|rest| rest.split("</tr>").next())
        .expect("a row for reporter");
    assert!(row.contains("<td>bob</td>"), "owner: {row}");
    assert!(row.contains("/console/agents/reporter/rotate"), "{row}");
    assert!(
        row.contains("/console/agents/reporter/decommission"),
        "{row}"
    );
    assert!(
        row.contains(" s</td>"),
        "the secret's age counts from the rotation: {row}"
    );
    // Needs agent calls audited with the agent (the client id): one tool call, no errors.
    assert!(
        row.contains("<td class=\"num\">1</td>") && row.contains("<td class=\"num\">0 %</td>"),
        "call volume and error rate: {row}"
    );

    // Nowhere else: no other console page, no audit record, no log line.
    let mut pages: Vec<String> = ADMIN_PAGES
        .iter()
        .map(|page| format!("{origin}{page}"))
        .collect();
    for show in ["all", "calls", "tokens", "credentials", "admin"] {
        pages.push(format!("{origin}/console/activity?show={show}"));
        pages.extend(event_pages(&mut alice, &origin, show).await);
    }
    pages.push(rotate.clone());
    for page in &pages {
        let html = alice.get(page).await.text().await.expect("page");
        assert!(!html.contains(&secret), "{page} shows the rotated secret");
    }
    let bot = agent_token(
        &origin,
        "admin-bot",
        ADMIN_BOT_SECRET,
        &format!("{origin}/admin/v1"),
    )
    .await
    .expect("admin token");
    let audit = reqwest::Client::new()
        .get(format!(
            "{origin}/admin/v1/audit/events?limit=1000&kind=EVENT_KIND_AGENT_CHANGED,EVENT_KIND_TOKEN_ISSUED"
        ))
        .bearer_auth(&bot)
        .send()
        .await
        .expect("audit search");
    assert_eq!(audit.status(), StatusCode::OK);
    let audit: serde_json::Value = audit.json().await.expect("audit json");
    let kinds: Vec<&str> = audit["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|record| record["event"]["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"EVENT_KIND_AGENT_CHANGED"), "{kinds:?}");
    assert!(
        kinds
            .iter()
            .all(|kind| ["EVENT_KIND_AGENT_CHANGED", "EVENT_KIND_TOKEN_ISSUED"].contains(kind)),
        "the kind filter: {kinds:?}"
    );
    let everything = reqwest::Client::new()
        .get(format!("{origin}/admin/v1/audit/events?limit=1000"))
        .bearer_auth(&bot)
        .send()
        .await
        .expect("audit search")
        .text()
        .await
        .expect("audit text");
    assert!(everything.contains("rotate"), "the rotation is audited");
    assert!(
        !everything.contains(&secret),
        "an audit record holds the secret"
    );
    let misspelt = reqwest::Client::new()
        .get(format!(
            "{origin}/admin/v1/audit/events?kind=EVENT_KIND_TOKEN"
        ))
        .bearer_auth(&bot)
        .send()
        .await
        .expect("audit search");
    assert_eq!(misspelt.status(), StatusCode::BAD_REQUEST);
    child.kill().await.expect("stop gatehouse");
    let log = std::fs::read_to_string(data.with_file_name("gatehouse.log")).expect("log");
    assert!(!log.is_empty(), "gatehouse logged something");
    assert!(!log.contains(&secret), "the log holds the secret");
}
