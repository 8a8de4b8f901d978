//! `token_exchange` connectors through `gatehouse up`: a downstream that accepts only tokens
//! Gatehouse's issuer signed for its own audience (`mcp-echo --trust-issuer`, verifying each
//! against the issuer's JWKS) lists its tools through the gateway's own catalogue token, and
//! each call carries a token authz-svc exchanged from the caller's (RFC 8693): a member's
//! names the member, an agent's the agent, and a delegated one the member with `act` naming
//! the agent. No token ever appears in a response or in the gateway's log. A connector that
//! declares no audience is known by its URL cut to a resource identifier: its query, which may
//! hold an API key, reaches neither the tokens nor the log nor the audit trail.

use std::path::Path;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::process::Command;

use super::audit::ECHO;
use super::connector::UrlServer;
use super::console::{BOB_HASH, BOB_PASSWORD};
use super::oauth::call_tool;

/// The connector's resource identifier: the `aud` it checks.
const AUDIENCE: &str = "https://crm.internal.example/mcp";
const AGENT_SECRET: &str = "exchange-agent-secret-canary-5e8c1a93";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";

fn gateway_yaml(downstream: &str) -> String {
    gateway_yaml_with(
        &format!("{{mode: token_exchange, exchange: {{audience: \"{AUDIENCE}\"}}}}"),
        downstream,
    )
}

/// Returns the gateway file with the `crm` connector at `downstream` holding `credentials`.
fn gateway_yaml_with(credentials: &str, downstream: &str) -> String {
    format!(
        "connectors:\n\
         \x20 - name: crm\n    http: {{url: \"{downstream}\"}}\n\
         \x20   credentials: {credentials}\n\
         virtual_servers:\n\
         \x20 - name: tools\n    connectors: [{{connector: crm, prefix: \"\"}}]\n\
         authorization:\n\
         \x20 members:\n\
         \x20   - {{username: bob, groups: [staff], password_hash: \"{BOB_HASH}\"}}\n\
         \x20 agents:\n\
         \x20   - {{name: reporter, owner: bob, virtual_servers: [tools], secret_env: E2E_EXCHANGE_AGENT_SECRET}}\n"
    )
}

/// Starts `gatehouse up` on `port` (the issuer the downstream trusts is known before it
/// starts); its log goes to `gatehouse.log` in `dir`.
async fn up(dir: &Path, port: u16) -> tokio::process::Child {
    let (config, data) = (dir.join("gatehouse.yaml"), dir.join("data"));
    super::launch::Launch::new(&config, &data)
        .listen(format!("127.0.0.1:{port}"))
        .env("E2E_EXCHANGE_AGENT_SECRET", AGENT_SECRET)
        .log_to(dir.join("gatehouse.log"), "info")
        .start()
        .await
        .child
}

/// Calls `token_claims` with `token` and returns what the downstream verified.
async fn downstream_claims(mcp: &str, token: &str) -> Value {
    let response = call_tool(mcp, token, "token_claims", json!({})).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    let text = body["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no claims: {body}"));
    serde_json::from_str(text).unwrap_or_else(|_| panic!("not claims: {text}"))
}

/// Has `agent` exchange `member`'s token for one naming the agent as actor (RFC 8693 §2.1).
async fn delegated(origin: &str, mcp: &str, member: &str, agent: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{origin}/token"))
        .basic_auth("reporter", Some(AGENT_SECRET))
        .form(&[
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", member),
            ("subject_token_type", ACCESS_TOKEN),
            ("actor_token", agent),
            ("actor_token_type", ACCESS_TOKEN),
            ("resource", mcp),
        ])
        .send()
        .await
        .expect("token exchange");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_trusting_gatehouse_sees_each_caller_through_an_exchanged_token() {
    let dir = tempfile::tempdir().expect("dir");
    let port = super::audit::reserve_port().release().port();
    let origin = format!("http://127.0.0.1:{port}");
    let mut echo = Command::new(ECHO);
    echo.args(["http", "--listen", "127.0.0.1:0", "--trust-issuer"])
        .args([&origin, "--audience", AUDIENCE]);
    let downstream = UrlServer::start(echo).await;
    std::fs::write(
        dir.path().join("gatehouse.yaml"),
        gateway_yaml(&downstream.url),
    )
    .expect("config");
    let mut gatehouse = up(dir.path(), port).await;
    let mcp = format!("{origin}/v/tools/mcp");

    let agent = super::oauth::client_credentials(&origin, "reporter", AGENT_SECRET, &mcp).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let member = super::scim::login(&http, &origin, &mcp, "bob", BOB_PASSWORD).await;
    let acting = delegated(&origin, &mcp, &member, &agent).await;

    // The catalogue was read with the gateway's own token: the tool is there to call.
    let as_agent = downstream_claims(&mcp, &agent).await;
    assert_eq!(as_agent["aud"], AUDIENCE, "{as_agent}");
    assert_eq!(as_agent["sub"], "reporter", "the agent itself: {as_agent}");
    assert_eq!(as_agent["agent"]["name"], "reporter", "{as_agent}");
    assert!(as_agent["act"].is_null(), "{as_agent}");

    let as_member = downstream_claims(&mcp, &member).await;
    assert_eq!(as_member["aud"], AUDIENCE, "{as_member}");
    assert_eq!(as_member["sub"], "bob", "{as_member}");
    assert!(as_member["act"].is_null() && as_member["agent"].is_null());

    let as_delegate = downstream_claims(&mcp, &acting).await;
    assert_eq!(as_delegate["sub"], "bob", "{as_delegate}");
    assert_eq!(
        as_delegate["act"]["client_id"], "reporter",
        "act names the agent: {as_delegate}"
    );

    // Each caller's token is exchanged once and reused while fresh.
    let again = downstream_claims(&mcp, &member).await;
    assert_eq!(again, as_member);

    // A token the gateway would not accept never reaches an exchange.
    let refused = call_tool(&mcp, "not-a-token", "token_claims", json!({})).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);

    gatehouse.kill().await.expect("gatehouse stopped");
    downstream.stop().await;
    let log = std::fs::read_to_string(dir.path().join("gatehouse.log")).expect("log");
    assert!(log.contains("access token issued"), "the log was written");
    for secret in [&agent, &member, &acting, &AGENT_SECRET.to_owned()] {
        assert!(!log.contains(secret.as_str()), "a token reached the log");
    }
    // Nor did any exchanged or catalogue token: every JWT starts with `eyJ`.
    assert!(!log.contains("eyJ"), "a JWT reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_without_a_declared_audience_is_known_by_its_url_without_the_query() {
    const CANARY: &str = "exchange-url-query-canary-81b4e0d2";
    let dir = tempfile::tempdir().expect("dir");
    let port = super::audit::reserve_port().release().port();
    let origin = format!("http://127.0.0.1:{port}");
    let echo_port = super::audit::reserve_port().release().port();
    let resource = format!("http://127.0.0.1:{echo_port}/mcp");
    let mut echo = Command::new(ECHO);
    echo.args(["http", "--listen", &format!("127.0.0.1:{echo_port}")])
        .args(["--trust-issuer", &origin, "--audience", &resource]);
    let downstream = UrlServer::start(echo).await;
    assert_eq!(downstream.url, resource);
    std::fs::write(
        dir.path().join("gatehouse.yaml"),
        gateway_yaml_with(
            "{mode: token_exchange}",
            &format!("{resource}?api_key={CANARY}"),
        ),
    )
    .expect("config");
    let mut gatehouse = up(dir.path(), port).await;
    let mcp = format!("{origin}/v/tools/mcp");

    let agent = super::oauth::client_credentials(&origin, "reporter", AGENT_SECRET, &mcp).await;
    let claims = downstream_claims(&mcp, &agent).await;
    assert_eq!(
        claims["aud"], resource,
        "the audience is the URL without its query (RFC 8707 §2): {claims}"
    );

    // The exchanges are audited, without the query.
    let audited = super::audit::search_until(&dir.path().join("data"), &resource).await;
    assert!(
        !audited.contains(CANARY),
        "an audit record names the URL's query: {audited}"
    );

    gatehouse.kill().await.expect("gatehouse stopped");
    downstream.stop().await;
    let log = std::fs::read_to_string(dir.path().join("gatehouse.log")).expect("log");
    assert!(log.contains("access token issued"), "the log was written");
    let leaked = log.lines().find(|line| line.contains(CANARY));
    assert!(
        leaked.is_none(),
        "a log line names the URL's query: {leaked:?}"
    );
}
