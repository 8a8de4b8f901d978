//! The admin API of a real `gatehouse up`: only an administrator's token is admitted (401 with
//! a challenge, 403 `insufficient_scope`), the OpenAPI document lists exactly the routes served,
//! `gatehouse apply` shows the diff of a changed policy and applies it so that an MCP call flips
//! from allowed to denied within a second, re-applying shows no changes, invalid policies are
//! refused with Cedar's diagnostics, agent bundles are managed through the API, and every admin
//! action lands in the audit log without a secret. [`live`] changes servers, connectors and
//! members while the gateway runs; [`trail`] verifies, proves and tails the audit log through
//! the API; [`decommission`] has `gatehouse apply` decommission the bundles a file drops.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::audit::{ECHO, call, echo_dir};
use super::launch::{self, Launch};

mod decommission;
mod limits;
mod live;
mod owners;
mod trail;

pub(super) const ADMIN_SECRET: &str = "admin-bot-secret-7f3a9c1e5d0b2d4f6a8c0e";
const VIEWER_SECRET: &str = "viewer-secret-0b2d4f6a8c1e3a5c7e9b1d3f";
const CALLER_SECRET: &str = "caller-secret-1c3e5a7b9d2f4b6d8a0c2e4a";
const SHARED_VALUE: &str = "shared-credential-value-5e8f";

const OPEN: &str = "@id(\"members-and-agents\")\npermit(principal, action, resource);\n";
const NO_ECHO: &str = "@id(\"members-and-agents\")\npermit(principal, action, resource);\n\n@id(\"no-echo\")\nforbid(principal, action == Action::\"call_tool\", resource is Tool)\nwhen { resource.name == \"echo\" };\n";

/// The gateway file: one echo virtual server, three declared agents, `cedar` as the policy.
fn gateway_file(cedar: &str, extra_server: bool) -> String {
    let dir = echo_dir();
    let cedar: String = cedar.lines().map(|line| format!("    {line}\n")).collect();
    let mut text = format!(
        "connectors:\n\
         \x20 - name: local\n    stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{dir}\"]}}\n\
         \x20 - name: vaulted\n    http: {{url: \"http://127.0.0.1:9/mcp\"}}\n    credentials: {{mode: shared}}\n\
         virtual_servers:\n\
         \x20 - name: tools\n    connectors: [{{connector: local, prefix: \"\"}}]\n"
    );
    if extra_server {
        text.push_str("  - name: more\n    connectors: [{connector: local}]\n");
    }
    // With the extra server, the caller agent may use it too (`gatehouse apply` updates it).
    let caller_servers = if extra_server { "tools, more" } else { "tools" };
    text.push_str(&format!(
        "authorization:\n  agents:\n\
         \x20   - {{name: admin-bot, owner: ops, virtual_servers: [gatehouse-admin], scopes: [\"gatehouse:admin\"], secret_env: E2E_ADMIN_SECRET}}\n\
         \x20   - {{name: viewer, owner: ops, virtual_servers: [gatehouse-admin], secret_env: E2E_VIEWER_SECRET}}\n\
         \x20   - {{name: caller, owner: ops, virtual_servers: [{caller_servers}], secret_env: E2E_CALLER_SECRET}}\n",
    ));
    text.push_str(&format!("policies:\n  cedar: |\n{cedar}"));
    text
}

/// A running `gatehouse up`: the process, its public origin and its admin gRPC address.
pub(super) struct Up {
    pub(super) child: tokio::process::Child,
    pub(super) origin: String,
    pub(super) grpc: String,
}

/// Starts `gatehouse up` with the agents' secrets in its environment.
pub(super) async fn up(config: &Path, data: &Path) -> Up {
    let started = Launch::new(config, data)
        .env("E2E_ADMIN_SECRET", ADMIN_SECRET)
        .env("E2E_VIEWER_SECRET", VIEWER_SECRET)
        .env("E2E_CALLER_SECRET", CALLER_SECRET)
        .start()
        .await;
    let grpc = started.grpc("admin");
    Up {
        child: started.child,
        origin: started.origin,
        grpc,
    }
}

/// Returns a client-credentials token of `client` for `resource` (with its granted scopes).
pub(super) async fn token(origin: &str, client: &str, secret: &str, resource: &str) -> String {
    let response = reqwest::Client::new()
        .post(format!("{origin}/token"))
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("resource", resource)])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK, "token for {client}");
    let body: Value = response.json().await.expect("token json");
    body["access_token"]
        .as_str()
        .expect("access token")
        .to_owned()
}

/// Runs `gatehouse apply` against `origin`; returns its exit code and standard output.
fn apply(origin: &str, file: &Path, token: &str, dry_run: bool) -> (i32, String) {
    apply_with(origin, file, token, dry_run, &[])
}

/// Runs `gatehouse apply` with `env` (the declared agents' secret variables) set.
fn apply_with(
    origin: &str,
    file: &Path,
    token: &str,
    dry_run: bool,
    env: &[(&str, &str)],
) -> (i32, String) {
    let mut command = std::process::Command::new(launch::gatehouse());
    command
        .arg("apply")
        .arg("-f")
        .arg(file)
        .args(["--endpoint", origin, "--token-env", "E2E_ADMIN_TOKEN"])
        .env("E2E_ADMIN_TOKEN", token)
        .envs(env.iter().copied());
    if dry_run {
        command.arg("--dry-run");
    }
    let output = command.output().expect("gatehouse apply ran");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    (
        output.status.code().unwrap_or(-1),
        format!("{stdout}{stderr}"),
    )
}

async fn echo_allowed(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let http = http.clone();
    let response = http
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "echo")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": "hi"},
              "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                        "io.modelcontextprotocol/clientCapabilities": {},
                        "io.modelcontextprotocol/clientInfo": {"name": "admin-e2e", "version": "1"}}}}))
        .send()
        .await
        .expect("call");
    response.json().await.expect("json-rpc response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatehouse_apply_diffs_and_applies_a_policy_that_flips_a_call_to_denied() {
    let dir = tempfile::tempdir().expect("dir");
    let (v1, v2, v3) = (
        dir.path().join("v1.yaml"),
        dir.path().join("v2.yaml"),
        dir.path().join("v3.yaml"),
    );
    std::fs::write(&v1, gateway_file(OPEN, false)).expect("v1");
    std::fs::write(&v2, gateway_file(NO_ECHO, false)).expect("v2");
    std::fs::write(&v3, gateway_file(NO_ECHO, true)).expect("v3");
    let Up {
        mut child, origin, ..
    } = up(&v1, &dir.path().join("data")).await;
    let http = reqwest::Client::new();
    let tools = format!("{origin}/v/tools/mcp");
    let admin_resource = format!("{origin}/admin/v1");
    let admin = token(&origin, "admin-bot", ADMIN_SECRET, &admin_resource).await;
    let caller = token(&origin, "caller", CALLER_SECRET, &tools).await;

    let before = echo_allowed(&http, &tools, &caller).await;
    assert_eq!(before["result"]["content"][0]["text"], "hi", "{before}");

    let (code, unchanged) = apply(&origin, &v1, &admin, false);
    assert_eq!((code, unchanged.trim()), (0, "no changes"), "{unchanged}");

    let (code, dry) = apply(&origin, &v2, &admin, true);
    assert_eq!(code, 0, "{dry}");
    assert!(dry.contains("~ update policy source config"), "{dry}");
    assert!(dry.contains("+ @id(\"no-echo\")"), "{dry}");
    assert!(dry.contains("dry run: nothing applied"), "{dry}");
    let still = echo_allowed(&http, &tools, &caller).await;
    assert_eq!(
        still["result"]["content"][0]["text"], "hi",
        "a dry run changes nothing: {still}"
    );

    let (code, applied) = apply(&origin, &v2, &admin, false);
    assert_eq!(code, 0, "{applied}");
    assert!(applied.contains("applied 1 change(s)"), "{applied}");
    let denied = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let response = echo_allowed(&http, &tools, &caller).await;
            if response["error"]["code"] == -32003 {
                return response;
            }
        }
    })
    .await
    .expect("the call is denied within a second of apply");
    assert!(
        !denied.to_string().contains("no-echo"),
        "no policy id reaches the client: {denied}"
    );

    let (code, again) = apply(&origin, &v2, &admin, false);
    assert_eq!((code, again.trim()), (0, "no changes"), "{again}");

    let servers = format!("{origin}/admin/v1/virtual-servers");
    let (code, dry_server) = apply(&origin, &v3, &admin, true);
    assert_eq!(code, 0, "{dry_server}");
    assert!(
        dry_server.contains("+ create virtual server more")
            && dry_server.contains("~ update agent caller"),
        "{dry_server}"
    );
    let listed: Value = get_json(&http, &servers, &admin).await;
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "dry run: {listed}"
    );

    let (code, structural) = apply(&origin, &v3, &admin, false);
    assert_eq!(code, 0, "a virtual server is created live: {structural}");
    let more = format!("{origin}/v/more/mcp");
    let served = http
        .post(&more)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .expect("more");
    assert_eq!(
        served.status(),
        StatusCode::UNAUTHORIZED,
        "the new server is served (and asks for a token) without a restart"
    );
    // The applied agent update binds `caller` to the new server: a token is minted for it.
    let caller_more = token(&origin, "caller", CALLER_SECRET, &more).await;
    assert!(!caller_more.is_empty());

    // A `directory:` section: members and groups are created, and re-applying changes nothing.
    let v4 = dir.path().join("v4.yaml");
    let directory = "directory:\n  members:\n    - {user_name: erin, display_name: Erin}\n  groups:\n    - {name: ops-team, members: [erin]}\n";
    std::fs::write(&v4, format!("{}{directory}", gateway_file(NO_ECHO, true))).expect("v4");
    let (code, provisioned) = apply(&origin, &v4, &admin, false);
    assert_eq!(code, 0, "{provisioned}");
    assert!(
        provisioned.contains("+ create member erin")
            && provisioned.contains("+ create group ops-team"),
        "{provisioned}"
    );
    let groups: Value = get_json(&http, &format!("{origin}/admin/v1/members/erin"), &admin).await;
    assert_eq!(groups["groups"], json!(["ops-team"]), "{groups}");
    let (code, settled) = apply(&origin, &v4, &admin, false);
    assert_eq!((code, settled.trim()), (0, "no changes"), "{settled}");
    for output in [&unchanged, &dry, &applied, &again, &dry_server, &structural] {
        assert!(
            !output.contains(&admin) && !output.contains(ADMIN_SECRET),
            "{output}"
        );
    }
    child.kill().await.expect("gatehouse stopped");

    // The file is only the seed: what was applied is served again after a restart with v1.
    let Up {
        mut child, origin, ..
    } = up(&v1, &dir.path().join("data")).await;
    let admin = token(
        &origin,
        "admin-bot",
        ADMIN_SECRET,
        &format!("{origin}/admin/v1"),
    )
    .await;
    let listed: Value =
        get_json(&http, &format!("{origin}/admin/v1/virtual-servers"), &admin).await;
    let names: Vec<&str> = listed
        .as_array()
        .expect("servers")
        .iter()
        .filter_map(|server| server["name"].as_str())
        .collect();
    assert_eq!(names, ["tools", "more"], "{listed}");
    let (code, back) = apply(&origin, &v1, &admin, false);
    assert_eq!(code, 0, "{back}");
    assert!(back.contains("- delete virtual server more"), "{back}");
    child.kill().await.expect("gatehouse stopped");
}

/// Returns the JSON document at `url`, read with `token`.
async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> Value {
    let response = http.get(url).bearer_auth(token).send().await.expect("get");
    assert_eq!(response.status(), StatusCode::OK, "{url}");
    response.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_an_administrator_is_admitted_and_the_openapi_document_lists_every_route() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file(OPEN, false)).expect("config");
    let Up {
        mut child, origin, ..
    } = up(&config, &dir.path().join("data")).await;
    let http = reqwest::Client::new();
    let admin_resource = format!("{origin}/admin/v1");
    let policies = format!("{origin}/admin/v1/policies");

    let anonymous = http.get(&policies).send().await.expect("anonymous");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let challenge = anonymous.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.contains("resource_metadata=\"")
            && challenge.contains("/.well-known/oauth-protected-resource/admin/v1"),
        "{challenge}"
    );
    let metadata: Value = http
        .get(format!(
            "{origin}/.well-known/oauth-protected-resource/admin/v1"
        ))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("metadata json");
    assert_eq!(metadata["resource"], admin_resource.as_str());
    assert_eq!(metadata["scopes_supported"], json!(["gatehouse:admin"]));

    let tools = format!("{origin}/v/tools/mcp");
    let caller = token(&origin, "caller", CALLER_SECRET, &tools).await;
    let wrong_audience = http
        .get(&policies)
        .bearer_auth(&caller)
        .send()
        .await
        .expect("caller");
    assert_eq!(
        wrong_audience.status(),
        StatusCode::UNAUTHORIZED,
        "a virtual server's token is not an admin token"
    );

    let viewer = token(&origin, "viewer", VIEWER_SECRET, &admin_resource).await;
    let scopeless = http
        .get(&policies)
        .bearer_auth(&viewer)
        .send()
        .await
        .expect("viewer");
    assert_eq!(scopeless.status(), StatusCode::FORBIDDEN);
    let challenge = scopeless.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(
        challenge.contains("error=\"insufficient_scope\"")
            && challenge.contains("scope=\"gatehouse:admin\""),
        "{challenge}"
    );
    let body: Value = scopeless.json().await.expect("error json");
    assert_eq!(body["error"], "insufficient_scope");

    let document: Value = http
        .get(format!("{origin}/admin/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("openapi json");
    let paths = document["paths"].as_object().expect("paths");
    assert!(paths.len() >= 17, "{paths:?}");
    for (path, method) in [
        ("/admin/v1/audit/events", "get"),
        ("/admin/v1/audit/verify", "post"),
        ("/admin/v1/audit/events/{event_id}/proof", "get"),
        ("/admin/v1/audit/tail", "get"),
        ("/admin/v1/vault/kek", "get"),
    ] {
        assert!(
            paths
                .get(path)
                .is_some_and(|item| item.get(method).is_some()),
            "the document lists {method} {path}"
        );
    }
    for (path, item) in paths {
        let concrete = path
            .replace("{name}", "local")
            .replace("{agent}", "admin-bot")
            .replace("{member}", "nobody")
            .replace("{group}", "nobody")
            .replace("{event_id}", "nothing");
        for method in ["get", "put", "post", "delete", "patch"] {
            let request = http.request(
                method.to_uppercase().parse().expect("method"),
                format!("{origin}{concrete}"),
            );
            let status = request
                .json(&json!({}))
                .send()
                .await
                .expect("request")
                .status();
            let documented = item.get(method).is_some();
            let public = path.ends_with("openapi.json") || path.starts_with("/.well-known");
            let expected = match (documented, public) {
                (true, true) => StatusCode::OK,
                (true, false) => StatusCode::UNAUTHORIZED,
                (false, _) => StatusCode::METHOD_NOT_ALLOWED,
            };
            assert_eq!(status, expected, "{method} {path}");
            if documented && !public {
                let operation = &item[method];
                assert!(
                    operation["responses"]["403"].is_object(),
                    "{method} {path} documents 403"
                );
            }
        }
    }
    let undocumented = http
        .get(format!("{origin}/admin/v1/widgets"))
        .send()
        .await
        .expect("widgets");
    assert_eq!(
        undocumented.status(),
        StatusCode::NOT_FOUND,
        "nothing is served that is not documented"
    );
    child.kill().await.expect("gatehouse stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_manages_policies_agents_and_credentials_and_audits_each_action() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, gateway_file(OPEN, false)).expect("config");
    let Up {
        mut child,
        origin,
        grpc,
    } = up(&config, &dir.path().join("data")).await;
    let http = reqwest::Client::new();
    let admin = token(
        &origin,
        "admin-bot",
        ADMIN_SECRET,
        &format!("{origin}/admin/v1"),
    )
    .await;
    let api = |path: &str| format!("{origin}/admin/v1{path}");

    let invalid = http
        .put(api("/policies"))
        .bearer_auth(&admin)
        .json(&json!({"sources": [{"name": "broken", "text": "permit(principal, action == Action::\"fly\", resource);"}]}))
        .send()
        .await
        .expect("invalid put");
    assert_eq!(invalid.status(), StatusCode::BAD_REQUEST);
    let body: Value = invalid.json().await.expect("error json");
    assert_eq!(body["error"], "invalid_policies", "{body}");
    assert!(
        !body["diagnostics"]
            .as_array()
            .expect("diagnostics")
            .is_empty(),
        "{body}"
    );
    let current: Value = http
        .get(api("/policies"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(
        current["policies"]["sources"][0]["text"], OPEN,
        "a refused set changes nothing: {current}"
    );

    grpc_face(&grpc, &admin).await;

    let servers: Value = http
        .get(api("/virtual-servers"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("servers")
        .json()
        .await
        .expect("json");
    assert_eq!(servers[0]["name"], "tools", "{servers}");
    let connector: Value = http
        .get(api("/connectors/vaulted"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("connector")
        .json()
        .await
        .expect("json");
    assert_eq!(connector["credentials"], "shared", "{connector}");
    let missing = http
        .get(api("/virtual-servers/nope"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("missing");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);

    let stored = http
        .put(api("/connectors/vaulted/shared-credential"))
        .bearer_auth(&admin)
        .json(&json!({"kind": "bearer", "value": SHARED_VALUE}))
        .send()
        .await
        .expect("set credential");
    assert_eq!(stored.status(), StatusCode::OK);
    let stored = stored.text().await.expect("body");
    assert!(!stored.contains(SHARED_VALUE), "{stored}");
    let health = http
        .get(api("/connector-health"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("health")
        .text()
        .await
        .expect("body");
    assert!(
        health.contains("vaulted") && !health.contains(SHARED_VALUE),
        "{health}"
    );
    let keys: Value = http
        .get(api("/vault/kek"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("kek status")
        .json()
        .await
        .expect("json");
    assert!(keys["active_version"].as_u64() >= Some(1), "{keys}");
    assert!(keys["credentials"].as_u64() >= Some(1), "{keys}");
    assert_eq!(
        keys["stale"], 0,
        "every credential is on the active KEK: {keys}"
    );
    let deleted = http
        .delete(api("/connectors/vaulted/shared-credential"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::OK);

    let created: Value = http
        .post(api("/agents"))
        .bearer_auth(&admin)
        .json(&json!({"name": "reporter", "owner": "alice", "virtual_servers": ["tools"]}))
        .send()
        .await
        .expect("create agent")
        .json()
        .await
        .expect("json");
    let secret = created["client_secret"]
        .as_str()
        .expect("secret shown once")
        .to_owned();
    let client_id = created["agent"]["client_id"]
        .as_str()
        .expect("client id")
        .to_owned();
    let tools = format!("{origin}/v/tools/mcp");
    let reporter = token(&origin, &client_id, &secret, &tools).await;
    let answered = call(
        &http_with(&reporter),
        &tools,
        1,
        "echo",
        json!({"text": "hi"}),
    )
    .await;
    assert_eq!(answered["result"]["content"][0]["text"], "hi", "{answered}");
    let shown: Value = http
        .get(api("/agents/reporter"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("get agent")
        .json()
        .await
        .expect("json");
    assert!(
        shown.get("client_secret").is_none() && !shown.to_string().contains(&secret),
        "{shown}"
    );
    let decommissioned = http
        .post(api("/agents/reporter/decommission"))
        .bearer_auth(&admin)
        .json(&json!({"reason": "e2e"}))
        .send()
        .await
        .expect("decommission");
    assert_eq!(decommissioned.status(), StatusCode::OK);
    let refused = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            let response = http
                .post(&tools)
                .bearer_auth(&reporter)
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
        "a decommissioned agent's token still worked after a second"
    );

    let audited = search_until(
        &http,
        &api("/audit/events?agent=admin-bot&newest_first=true&limit=100"),
        &admin,
        |page| {
            let text = page.to_string();
            (text.contains("decommission") && text.contains("shared_credential")).then_some(text)
        },
    )
    .await
    .expect("the admin actions reach the audit log");
    for secret in [SHARED_VALUE, secret.as_str(), ADMIN_SECRET, admin.as_str()] {
        assert!(!audited.contains(secret), "a secret reached the audit log");
    }
    child.kill().await.expect("gatehouse stopped");
}

/// Searches the audit log at `url` (an admin API search) until `found` picks something out of
/// a page, for at most 30 s: records reach the log shortly after the action, from a trail that
/// runs under `SCHED_IDLE` and so waits out every busy thread of a loaded test machine.
pub(super) async fn search_until<T>(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    found: impl Fn(&Value) -> Option<T>,
) -> Option<T> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let page = get_json(http, url, admin).await;
        if let Some(found) = found(&page) {
            return Some(found);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns a client that presents `token` on every request.
fn http_with(token: &str) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .expect("client")
}

/// The gRPC face: the same guard (no token is UNAUTHENTICATED) and the same operations.
async fn grpc_face(endpoint: &str, admin: &str) {
    use proto::admin::v1::admin_client::AdminClient;
    use proto::admin::v1::{
        GetPoliciesRequest, ListConnectorsRequest, PolicySet, PolicySource, SearchAuditRequest,
        SetPoliciesRequest,
    };

    let mut client = AdminClient::connect(endpoint.to_owned())
        .await
        .expect("admin grpc");
    let anonymous = client
        .get_policies(GetPoliciesRequest {})
        .await
        .expect_err("no token");
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    let policies = client
        .get_policies(authorized(admin, GetPoliciesRequest {}))
        .await
        .expect("policies")
        .into_inner();
    assert_eq!(
        policies.policies.expect("set").sources[0].text,
        OPEN,
        "the same policy set as the HTTP face"
    );
    let connectors = client
        .list_connectors(authorized(admin, ListConnectorsRequest {}))
        .await
        .expect("connectors")
        .into_inner();
    assert_eq!(connectors.connectors.len(), 2);
    let invalid = client
        .set_policies(authorized(
            admin,
            SetPoliciesRequest {
                policies: Some(PolicySet {
                    sources: vec![PolicySource {
                        name: "broken".to_owned(),
                        text: "permit(principal, action == Action::\"fly\", resource);".to_owned(),
                    }],
                    virtual_servers_json: String::new(),
                }),
            },
        ))
        .await
        .expect_err("invalid policies");
    assert_eq!(invalid.code(), tonic::Code::InvalidArgument, "{invalid:?}");

    // Audit search by kind: the policy read above, and nothing of another kind.
    let by_kind = SearchAuditRequest {
        kinds: vec!["EVENT_KIND_POLICY_CHANGED".to_owned()],
        limit: 1000,
        newest_first: true,
        ..SearchAuditRequest::default()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let kinds = loop {
        let found = client
            .search_audit(authorized(admin, by_kind.clone()))
            .await
            .expect("search by kind")
            .into_inner();
        let kinds: Vec<String> = found
            .events
            .iter()
            .map(|record| {
                let event: Value = serde_json::from_str(&record.event_json).expect("event json");
                event["kind"].as_str().unwrap_or_default().to_owned()
            })
            .collect();
        if !kinds.is_empty() || std::time::Instant::now() > deadline {
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(!kinds.is_empty(), "the policy read is audited");
    assert!(
        kinds.iter().all(|kind| kind == "EVENT_KIND_POLICY_CHANGED"),
        "{kinds:?}"
    );
    let misspelt = client
        .search_audit(authorized(
            admin,
            SearchAuditRequest {
                kinds: vec!["EVENT_KIND_POLICY".to_owned()],
                ..SearchAuditRequest::default()
            },
        ))
        .await
        .expect_err("an unknown kind");
    assert_eq!(
        misspelt.code(),
        tonic::Code::InvalidArgument,
        "{misspelt:?}"
    );
}

/// Returns `message` with the admin token in its `authorization` metadata.
pub(super) fn authorized<T>(admin: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {admin}").parse().expect("metadata"),
    );
    request
}
