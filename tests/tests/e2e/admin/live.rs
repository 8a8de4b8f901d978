//! Live changes through the admin API of a real `gatehouse up`: a virtual server and a
//! connector created over HTTP are served at once (tokens for the new server are minted by the
//! authorization server without a restart), removing the connector makes its tools vanish,
//! an invalid declaration changes nothing, a restart keeps what was applied, a deleted server
//! answers 404; over gRPC, a server is created and deleted, and deactivating a member refuses
//! its token at edge within a second.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::super::audit::{ECHO, echo_dir};
use super::{ADMIN_SECRET, OPEN, Up, authorized, gateway_file, get_json, search_until, token, up};

/// Sends one stateless (2026-07-28) JSON-RPC request and returns the HTTP response.
async fn rpc(
    http: &reqwest::Client,
    url: &str,
    token: &str,
    method: &str,
    mut params: Value,
) -> reqwest::Response {
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientCapabilities": {},
                             "io.modelcontextprotocol/clientInfo": {"name": "admin-live-e2e", "version": "1"}});
    let mut request = http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = params["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    request
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
        .send()
        .await
        .expect("mcp request")
}

/// Returns the tool names `tools/list` shows at `url`.
async fn tool_names(http: &reqwest::Client, url: &str, token: &str) -> Vec<String> {
    let response = rpc(http, url, token, "tools/list", json!({})).await;
    assert_eq!(response.status(), StatusCode::OK, "tools/list at {url}");
    let body: Value = response.json().await.expect("tools/list json");
    body["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {body}"))
        .iter()
        .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
        .collect()
}

/// Sends `body` to the admin API with `method`; returns the status and the JSON answer.
async fn admin_call(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = http.request(method, url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("admin call");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates an agent bundle for `servers` through the admin API; returns its client id and secret.
async fn agent_for(
    http: &reqwest::Client,
    origin: &str,
    admin: &str,
    name: &str,
    servers: &[&str],
) -> (String, String) {
    let (status, created) = admin_call(
        http,
        reqwest::Method::POST,
        &format!("{origin}/admin/v1/agents"),
        admin,
        Some(json!({"name": name, "owner": "ops", "virtual_servers": servers})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    (
        created["agent"]["client_id"]
            .as_str()
            .expect("client id")
            .to_owned(),
        created["client_secret"]
            .as_str()
            .expect("secret")
            .to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servers_and_connectors_change_live_and_a_restart_keeps_them() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file(OPEN, false)).expect("config");
    let data = dir.path().join("data");
    let Up {
        mut child, origin, ..
    } = up(&config, &data).await;
    let http = reqwest::Client::new();
    let admin = token(
        &origin,
        "admin-bot",
        ADMIN_SECRET,
        &format!("{origin}/admin/v1"),
    )
    .await;
    let api = |path: &str| format!("{origin}/admin/v1{path}");
    let echo_dir = echo_dir();

    let (status, second) = admin_call(
        &http,
        reqwest::Method::PUT,
        &api("/connectors/second"),
        &admin,
        Some(json!({"stdio": {"command": ECHO, "args": ["stdio"], "paths": [echo_dir]}})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    assert_eq!(second["transport"], "stdio", "{second}");
    let (status, server) = admin_call(
        &http,
        reqwest::Method::PUT,
        &api("/virtual-servers/extra"),
        &admin,
        Some(
            json!({"connectors": [{"connector": "local", "prefix": "a__"},
                                   {"connector": "second", "prefix": "b__"}]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{server}");
    let (status, refused) = admin_call(
        &http,
        reqwest::Method::PUT,
        &api("/virtual-servers/broken"),
        &admin,
        Some(json!({"connectors": [{"connector": "nope"}]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["message"]
            .as_str()
            .is_some_and(|message| message.contains("unknown connector `nope`")),
        "{refused}"
    );
    let (status, _) = admin_call(
        &http,
        reqwest::Method::GET,
        &api("/virtual-servers/broken"),
        &admin,
        None,
    )
    .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "a refused declaration changes nothing"
    );

    // The authorization server knows the new server at once: an agent may be bound to it and
    // get a token for its URL.
    let (client_id, secret) = agent_for(&http, &origin, &admin, "extra-user", &["extra"]).await;
    let extra = format!("{origin}/v/extra/mcp");
    let caller = token(&origin, &client_id, &secret, &extra).await;
    let names = tool_names(&http, &extra, &caller).await;
    assert!(
        names.contains(&"a__echo".to_owned()) && names.contains(&"b__echo".to_owned()),
        "{names:?}"
    );
    let called: Value = rpc(
        &http,
        &extra,
        &caller,
        "tools/call",
        json!({"name": "b__echo", "arguments": {"text": "through second"}}),
    )
    .await
    .json()
    .await
    .expect("call json");
    assert_eq!(
        called["result"]["content"][0]["text"], "through second",
        "{called}"
    );

    let (status, removed) = admin_call(
        &http,
        reqwest::Method::DELETE,
        &api("/connectors/second"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{removed}");
    let started = Instant::now();
    let names = loop {
        let names = tool_names(&http, &extra, &caller).await;
        if !names.iter().any(|name| name.starts_with("b__")) {
            break names;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the removed connector's tools are still listed: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(names.contains(&"a__echo".to_owned()), "{names:?}");
    let connectors: Value = get_json(&http, &api("/connectors"), &admin).await;
    assert!(!connectors.to_string().contains("second"), "{connectors}");
    // The trail reaches audit-svc through the spool, a moment after the change answered.
    search_until(
        &http,
        &api("/audit/events?agent=admin-bot&newest_first=true&limit=200"),
        &admin,
        |page| {
            let text = page.to_string();
            (text.contains("virtual_server") && text.contains("\"put\"")).then_some(text)
        },
    )
    .await
    .expect("every change is audited");
    child.kill().await.expect("gatehouse stopped");

    // A restart with the same file serves what was applied, not the file's seed.
    let Up {
        mut child, origin, ..
    } = up(&config, &data).await;
    let admin = token(
        &origin,
        "admin-bot",
        ADMIN_SECRET,
        &format!("{origin}/admin/v1"),
    )
    .await;
    let extra = format!("{origin}/v/extra/mcp");
    let caller = token(&origin, &client_id, &secret, &extra).await;
    let names = tool_names(&http, &extra, &caller).await;
    assert!(
        names.contains(&"a__echo".to_owned()) && !names.iter().any(|name| name.starts_with("b__")),
        "{names:?}"
    );
    let api = |path: &str| format!("{origin}/admin/v1{path}");
    let (status, _) = admin_call(
        &http,
        reqwest::Method::DELETE,
        &api("/virtual-servers/extra"),
        &admin,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let gone = rpc(&http, &extra, &caller, "tools/list", json!({})).await;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    let body: Value = gone.json().await.expect("json-rpc error body");
    assert!(body["error"]["code"].is_i64(), "{body}");
    child.kill().await.expect("gatehouse stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_changes_servers_and_a_deactivated_member_is_refused_within_a_second() {
    use proto::admin::v1::admin_client::AdminClient;
    use proto::admin::v1::{
        CreateGroupRequest, DeactivateMemberRequest, DeleteVirtualServerRequest, GetMemberRequest,
        GetVirtualServerRequest, GroupInput, ListVirtualServersRequest, PutVirtualServerRequest,
    };

    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file(OPEN, false)).expect("config");
    let Up {
        mut child,
        origin,
        grpc,
    } = up(&config, &dir.path().join("data")).await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let admin = token(
        &origin,
        "admin-bot",
        ADMIN_SECRET,
        &format!("{origin}/admin/v1"),
    )
    .await;
    let mut client = AdminClient::connect(grpc).await.expect("admin grpc");

    let put = client
        .put_virtual_server(authorized(
            &admin,
            PutVirtualServerRequest {
                name: "grpc-made".to_owned(),
                declaration_json: json!({"connectors": [{"connector": "local"}]}).to_string(),
            },
        ))
        .await
        .expect("put virtual server")
        .into_inner();
    assert_eq!(put.virtual_server.expect("server").name, "grpc-made");
    let listed = client
        .list_virtual_servers(authorized(&admin, ListVirtualServersRequest {}))
        .await
        .expect("list")
        .into_inner();
    assert_eq!(listed.virtual_servers.len(), 2);
    let invalid = client
        .put_virtual_server(authorized(
            &admin,
            PutVirtualServerRequest {
                name: "bad".to_owned(),
                declaration_json: "{not json".to_owned(),
            },
        ))
        .await
        .expect_err("invalid json");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument);
    client
        .delete_virtual_server(authorized(
            &admin,
            DeleteVirtualServerRequest {
                name: "grpc-made".to_owned(),
            },
        ))
        .await
        .expect("delete");
    let gone = client
        .get_virtual_server(authorized(
            &admin,
            GetVirtualServerRequest {
                name: "grpc-made".to_owned(),
            },
        ))
        .await
        .expect_err("deleted");
    assert_eq!(gone.code(), tonic::Code::NotFound);

    let password = "dana-password-4c7e9a1b3d5f";
    let (status, created) = admin_call(
        &http,
        reqwest::Method::POST,
        &format!("{origin}/admin/v1/members"),
        &admin,
        Some(json!({"user_name": "dana", "display_name": "Dana", "password": password})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert!(!created.to_string().contains(password), "{created}");
    client
        .create_group(authorized(
            &admin,
            CreateGroupRequest {
                group: Some(GroupInput {
                    name: "eng".to_owned(),
                    external_id: String::new(),
                    members: vec!["dana".to_owned()],
                }),
            },
        ))
        .await
        .expect("create group");
    let member = client
        .get_member(authorized(
            &admin,
            GetMemberRequest {
                member: "dana".to_owned(),
            },
        ))
        .await
        .expect("member")
        .into_inner()
        .member
        .expect("member");
    assert_eq!(member.groups, ["eng"]);

    let tools = format!("{origin}/v/tools/mcp");
    let member_token = super::super::scim::login(&http, &origin, &tools, "dana", password).await;
    let answered: Value = rpc(
        &http,
        &tools,
        &member_token,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
    )
    .await
    .json()
    .await
    .expect("call json");
    assert_eq!(answered["result"]["content"][0]["text"], "hi", "{answered}");

    let deactivated = client
        .deactivate_member(authorized(
            &admin,
            DeactivateMemberRequest {
                member: "dana".to_owned(),
            },
        ))
        .await
        .expect("deactivate")
        .into_inner()
        .member
        .expect("member");
    assert!(!deactivated.active);
    let started = Instant::now();
    loop {
        let response = rpc(
            &http,
            &tools,
            &member_token,
            "tools/call",
            json!({"name": "echo", "arguments": {"text": "hi"}}),
        )
        .await;
        if response.status() == StatusCode::UNAUTHORIZED {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "the deactivated member's token still works: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The trail reaches audit-svc through the spool, a moment after the change answered.
    let audited = search_until(
        &http,
        &format!("{origin}/admin/v1/audit/events?agent=admin-bot&newest_first=true&limit=200"),
        &admin,
        |page| {
            let text = page.to_string();
            text.contains("deactivate").then_some(text)
        },
    )
    .await
    .expect("the member changes are audited");
    assert!(
        !audited.contains(password),
        "the member changes are audited, never the password: {audited}"
    );
    child.kill().await.expect("gatehouse stopped");
}
