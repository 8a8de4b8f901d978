//! Policy at the edge through the real HTTP face: what a member sees in `tools/list` is what
//! they may call, constraints narrow the advertised schema and refuse bad values, and a denied
//! client learns the tool and the reason class — never policy text.

use edge_svc::access::Access;
use edge_svc::audit::Recorder;
use serde_json::{Value, json};

const POLICIES: &str = r#"
@id("members-may-use-crm")
permit(principal is Member, action, resource);

@id("nobody-adds")
forbid(principal, action == Action::"call_tool", resource is Tool)
when { resource.name == "add" };
"#;

/// Sends one stateless (2026-07-28) request and returns its JSON-RPC response.
async fn rpc(url: &str, token: &str, method: &str, params: Value) -> Value {
    let mut params = params;
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                             "io.modelcontextprotocol/clientCapabilities": {},
                             "io.modelcontextprotocol/clientInfo": {"name": "policy-e2e", "version": "1"}});
    let mut request = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method);
    if let Some(name) = params["name"].as_str() {
        request = request.header("mcp-name", name);
    }
    request
        .json(&json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json-rpc response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_only_what_policy_lets_them_call_with_constrained_arguments() {
    member_sees_only_what_policy_lets_them_call(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_decides_calls_on_edges_direct_line_as_it_does_through_rmcp() {
    let (_echo, echo_url) = super::gateway::start_http_echo().await;
    member_sees_only_what_policy_lets_them_call(Some(&echo_url)).await;
}

/// Lists and calls as a member under [`POLICIES`], with `mcp-echo` over stdio or, given its
/// URL, over streamable HTTP (whose plain calls take edge's direct line once it is listed).
async fn member_sees_only_what_policy_lets_them_call(http_echo: Option<&str>) {
    let config: authz_svc::PolicyConfig = serde_json::from_value(json!({
        "cedar": POLICIES,
        "virtual_servers": {"crm": {"constraints": {"echo": {"text": {"max_length": 10}}}}}
    }))
    .expect("policy config");
    let store = authz_svc::PolicyStore::new(&config).expect("valid policies");
    let access = Access::live(store.subscribe());
    let protected = match http_echo {
        Some(url) => super::oauth::start_over_http(url, Recorder::disabled(), access).await,
        None => super::oauth::start_with(Recorder::disabled(), access).await,
    };
    let crm = format!("{}/v/crm/mcp", protected.origin);
    let token = super::oauth::token_for(&protected.origin, &crm).await;

    let listed = rpc(&crm, &token, "tools/list", json!({})).await;
    let tools = listed["result"]["tools"].as_array().expect("tools");
    let names: Vec<&str> = tools
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");
    assert!(
        !names.contains(&"add"),
        "a forbidden tool is not listed: {names:?}"
    );
    let echo = tools
        .iter()
        .find(|tool| tool["name"] == "echo")
        .expect("echo");
    assert_eq!(
        echo["inputSchema"]["properties"]["text"]["maxLength"], 10,
        "the constraint narrows the advertised schema: {echo}"
    );

    let by_name = rpc(
        &crm,
        &token,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    )
    .await;
    assert_eq!(by_name["error"]["code"], -32003, "{by_name}");
    let message = by_name["error"]["message"].as_str().expect("message");
    assert!(message.contains("add"), "names the tool: {message}");
    assert!(
        !by_name.to_string().contains("nobody-adds") && !by_name.to_string().contains("forbid("),
        "no policy text or id reaches the client: {by_name}"
    );

    let short = rpc(
        &crm,
        &token,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "short"}}),
    )
    .await;
    assert_eq!(short["result"]["content"][0]["text"], "short", "{short}");
    let long = rpc(
        &crm,
        &token,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "much longer than ten"}}),
    )
    .await;
    assert_eq!(long["error"]["code"], -32003, "{long}");
    assert_eq!(
        long["error"]["data"]["reason"], "argument_constraint",
        "{long}"
    );

    // A policy change reaches the running edge without a restart.
    store
        .replace_cedar(
            r#"@id("admin-forbids-echo")
               forbid(principal, action == Action::"call_tool", resource is Tool)
               when { resource.name == "echo" };"#,
        )
        .expect("valid replacement");
    let after = rpc(
        &crm,
        &token,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "short"}}),
    )
    .await;
    assert_eq!(after["error"]["code"], -32003, "{after}");
    let relisted = rpc(&crm, &token, "tools/list", json!({})).await;
    assert!(
        !relisted.to_string().contains("\"echo\""),
        "echo disappears from the list too: {relisted}"
    );
    protected.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_needing_a_scope_the_token_lacks_gets_the_step_up_challenge() {
    let config: authz_svc::PolicyConfig = serde_json::from_value(json!({
        "cedar": "@id(\"open\") permit(principal, action, resource);",
        "virtual_servers": {"crm": {"scopes": {"crm:read": ["echo"], "crm:write": ["add"]}}}
    }))
    .expect("policy config");
    let store = authz_svc::PolicyStore::new(&config).expect("valid policies");
    let protected =
        super::oauth::start_with(Recorder::disabled(), Access::live(store.subscribe())).await;
    let crm = format!("{}/v/crm/mcp", protected.origin);

    let metadata: Value = reqwest::get(format!(
        "{}/.well-known/oauth-protected-resource/v/crm/mcp",
        protected.origin
    ))
    .await
    .expect("metadata")
    .json()
    .await
    .expect("metadata json");
    assert_eq!(
        metadata["scopes_supported"],
        json!(["crm:read", "crm:write"])
    );

    let (reader, _, _) =
        super::oauth::grant_with_scope(&protected.origin, &crm, Some("crm:read")).await;
    let read = rpc(
        &crm,
        &reader,
        "tools/call",
        json!({"name": "echo", "arguments": {"text": "hi"}}),
    )
    .await;
    assert_eq!(read["result"]["content"][0]["text"], "hi", "{read}");

    let write = super::oauth::call_tool(&crm, &reader, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(write.status(), 403);
    let challenge = write.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"crm:write\""), "{challenge}");
    assert!(challenge.contains("resource_metadata="), "{challenge}");

    let (writer, _, _) =
        super::oauth::grant_with_scope(&protected.origin, &crm, Some("crm:read crm:write")).await;
    let stepped_up = rpc(
        &crm,
        &writer,
        "tools/call",
        json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
    )
    .await;
    assert_eq!(
        stepped_up["result"]["content"][0]["text"], "3",
        "{stepped_up}"
    );
    protected.shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consent_screen_shows_the_scopes_in_the_words_the_virtual_server_declares() {
    use authz_svc::{AuthorizationConfig, AuthzState, Issuer, ProtectedResource, StoreConfig};

    let config: authz_svc::PolicyConfig = serde_json::from_value(json!({
        "cedar": "@id(\"open\") permit(principal, action, resource);",
        "virtual_servers": {"crm": {"scopes": {
            "crm:read": {"description": "Look up your contacts & accounts", "tools": ["echo"]},
            "crm:write": {"description": "Change <opportunities>", "tools": ["add"]},
            "crm:admin": ["add"]
        }}}
    }))
    .expect("policy config");
    let store = authz_svc::PolicyStore::new(&config).expect("valid policies");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let resource = format!("{origin}/v/crm/mcp");
    let data = tempfile::tempdir().expect("data dir");
    let issuer = Issuer {
        issuer: origin.parse().expect("origin"),
        resources: vec![ProtectedResource {
            name: "crm".to_owned(),
            url: resource.clone(),
            scopes: vec![
                "crm:admin".to_owned(),
                "crm:read".to_owned(),
                "crm:write".to_owned(),
            ],
        }],
    };
    // A real consent page: no auto-approval.
    let authorization = AuthorizationConfig {
        allow_insecure_http: true,
        ..Default::default()
    };
    let state = AuthzState::open(
        authorization,
        issuer,
        StoreConfig::Sqlite {
            path: data.path().join("authz.db"),
        },
    )
    .await
    .expect("authorization server")
    .with_policies(store);
    let shutdown = tokio_util::sync::CancellationToken::new();
    tokio::spawn(edge_svc::serve_router(
        authz_svc::oauth_router(state),
        listener,
        shutdown.clone(),
    ));

    let http = reqwest::Client::new();
    let registration: Value = http
        .post(format!("{origin}/register"))
        .json(
            &json!({"redirect_uris": ["http://127.0.0.1:9/callback"], "client_name": "consent e2e",
                      "token_endpoint_auth_method": "none", "application_type": "native",
                      "grant_types": ["authorization_code"]}),
        )
        .send()
        .await
        .expect("register")
        .json()
        .await
        .expect("registration json");
    let client_id = registration["client_id"].as_str().expect("client_id");
    let page = http
        .get(format!("{origin}/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", client_id),
            ("redirect_uri", "http://127.0.0.1:9/callback"),
            ("state", "s1"),
            (
                "code_challenge",
                "28djaMl0uObRimedfV6yyCsXAKfXuh07Fck65KYoJwE",
            ),
            ("code_challenge_method", "S256"),
            ("resource", &resource),
            ("scope", "crm:read crm:write crm:admin"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), reqwest::StatusCode::OK);
    let html = page.text().await.expect("consent page");
    let list = html
        .split_once("<ul>")
        .and_then(|(_, rest)| rest.split_once("</ul>"))
        .map(|(list, _)| list)
        .expect("a list of what is asked");
    assert!(
        list.contains(">Look up your contacts &amp; accounts</li>"),
        "crm:read in words, escaped: {list}"
    );
    assert!(
        list.contains(">Change &lt;opportunities&gt;</li>"),
        "crm:write in words, escaped: {list}"
    );
    assert!(
        !list.contains(">crm:read<") && !list.contains(">crm:write<"),
        "a described scope is not shown as its raw string: {list}"
    );
    assert!(
        list.contains("<li>crm:admin</li>"),
        "a scope without a description falls back to its name: {list}"
    );
    shutdown.cancel();
}
