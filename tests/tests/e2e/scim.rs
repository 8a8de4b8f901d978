//! SCIM provisioning against a running `gatehouse up`: a provisioned member signs in, a group
//! change changes what `tools/list` shows at once, and deactivating or deleting the member
//! makes its MCP calls fail within a second.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const ECHO: &str = env!("CARGO_BIN_EXE_mcp-echo");
const TOKEN_ENV: &str = "GATEHOUSE_E2E_SCIM_TOKEN";
const TOKEN: &str = "e2e-scim-token-0123456789abcdef0123456789abcdef";
const VERIFIER: &str = "pkce-verifier-0123456789abcdefghijklmnopqrstuvwxyz-ABCDEF";
/// BASE64URL(SHA256(VERIFIER)).
const CHALLENGE: &str = "28djaMl0uObRimedfV6yyCsXAKfXuh07Fck65KYoJwE";
const REDIRECT: &str = "http://127.0.0.1:9/callback";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Members see every tool but `add`, which only the `eng` group may use.
const POLICIES: &str = r#"
    @id("members-use-tools")
    permit(principal is Member, action, resource);
    @id("add-is-for-eng")
    forbid(principal, action, resource is Tool)
      when { resource.name == "add" } unless { principal in Group::"eng" };
"#;

/// Is a running `gatehouse up` with SCIM open to [`TOKEN`].
struct Running {
    origin: String,
    mcp: String,
    http: reqwest::Client,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Running {
    async fn start() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let config = dir.path().join("gatehouse.yaml");
        std::fs::write(&config, config_yaml()).expect("config");
        let (child, origin) = spawn(&config, &dir.path().join("data")).await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client");
        Self {
            mcp: format!("{origin}/v/tools/mcp"),
            origin,
            http,
            _child: child,
            _dir: dir,
        }
    }

    /// Sends a SCIM request with the identity provider's token and returns status and body.
    async fn scim(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/scim/v2{path}", self.origin))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("scim request");
        let status = response.status();
        let text = response.text().await.expect("scim body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn patch(&self, path: &str, operations: Value) {
        let (status, body) = self
            .scim(
                reqwest::Method::PATCH,
                path,
                Some(json!({"schemas": [PATCH], "Operations": operations})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Signs `user_name` in through the built-in login form; returns an access token.
    async fn login(&self, user_name: &str, password: &str) -> String {
        login(&self.http, &self.origin, &self.mcp, user_name, password).await
    }

    /// Returns the tool names `tools/list` shows the holder of `token`.
    async fn tool_names(&self, token: &str) -> Vec<String> {
        let response = self.rpc(token, "tools/list", json!({})).await;
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.expect("tools/list");
        body["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools: {body}"))
            .iter()
            .filter_map(|tool| tool["name"].as_str().map(str::to_owned))
            .collect()
    }

    async fn rpc(&self, token: &str, method: &str, params: Value) -> reqwest::Response {
        let mut params = params;
        params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                 "io.modelcontextprotocol/clientCapabilities": {},
                                 "io.modelcontextprotocol/clientInfo": {"name": "scim-e2e", "version": "1"}});
        let mut request = self
            .http
            .post(&self.mcp)
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

    /// Returns how long after now the member's `echo` call is first refused with 401.
    async fn refused_within(&self, token: &str, limit: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let response = self
                .rpc(
                    token,
                    "tools/call",
                    json!({"name": "echo", "arguments": {"text": "hi"}}),
                )
                .await;
            if response.status() == StatusCode::UNAUTHORIZED {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < limit,
                "still accepted after {limit:?}: {}",
                response.status()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn create_user(&self, user_name: &str, password: &str) -> String {
        let (status, user) = self
            .scim(
                reqwest::Method::POST,
                "/Users",
                Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                            "userName": user_name, "password": password, "externalId": format!("idp-{user_name}")})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{user}");
        user["id"].as_str().expect("id").to_owned()
    }
}

fn config_yaml() -> String {
    let dir = Path::new(ECHO)
        .parent()
        .expect("binary dir")
        .display()
        .to_string();
    let policies: String = POLICIES
        .lines()
        .map(|line| format!("    {line}\n"))
        .collect();
    format!(
        "connectors:\n  - name: local\n    stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{dir}\"]}}\n\
         virtual_servers:\n  - name: tools\n    auth: oauth\n    connectors: [{{connector: local, prefix: \"\"}}]\n\
         authorization:\n  scim: {{bearer_token_env: {TOKEN_ENV}}}\n\
         policies:\n  cedar: |\n{policies}"
    )
}

/// Starts `gatehouse up` with the SCIM token in its environment; returns the child and origin.
async fn spawn(config: &Path, data: &Path) -> (tokio::process::Child, String) {
    let binary = PathBuf::from(ECHO).with_file_name("gatehouse");
    assert!(
        binary.is_file(),
        "{} is missing: build it first",
        binary.display()
    );
    let mut child = tokio::process::Command::new(binary)
        .args(["up", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .env(TOKEN_ENV, TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("gatehouse up");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let origin = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("stdout line") {
            if let Some(origin) = line.strip_prefix("gatehouse ready at ") {
                return origin.trim().to_owned();
            }
        }
        panic!("gatehouse exited before it was ready");
    })
    .await
    .expect("gatehouse ready in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, origin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn group_changes_apply_at_once_and_deactivation_stops_calls_within_a_second() {
    let gateway = Running::start().await;
    let member = gateway
        .create_user("dana@example.com", "dana-password-1")
        .await;
    let (status, group) = gateway
        .scim(
            reqwest::Method::POST,
            "/Groups",
            Some(json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "eng", "members": []})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{group}");
    let group = format!("/Groups/{}", group["id"].as_str().expect("group id"));
    let token = gateway.login("dana@example.com", "dana-password-1").await;

    let before = gateway.tool_names(&token).await;
    assert!(
        before.contains(&"echo".to_owned()) && !before.contains(&"add".to_owned()),
        "{before:?}"
    );
    gateway
        .patch(
            &group,
            json!([{"op": "add", "path": "members", "value": [{"value": member}]}]),
        )
        .await;
    let joined = gateway.tool_names(&token).await;
    assert!(
        joined.contains(&"add".to_owned()),
        "joining eng shows add with the same token: {joined:?}"
    );
    let added = gateway
        .rpc(
            &token,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 2, "b": 3}}),
        )
        .await;
    let added: Value = added.json().await.expect("add result");
    assert!(added["result"].is_object(), "{added}");
    gateway
        .patch(
            &group,
            json!([{"op": "remove", "path": format!("members[value eq \"{member}\"]")}]),
        )
        .await;
    let left = gateway.tool_names(&token).await;
    assert!(
        !left.contains(&"add".to_owned()),
        "leaving eng hides add: {left:?}"
    );

    gateway
        .patch(
            &format!("/Users/{member}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    let refused = gateway.refused_within(&token, Duration::from_secs(1)).await;
    assert!(refused < Duration::from_secs(1), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_member_stops_its_calls_and_a_reactivated_one_signs_in_again() {
    let gateway = Running::start().await;
    let erin = gateway.create_user("erin", "erin-password-1").await;
    let frank = gateway.create_user("frank", "frank-password-1").await;
    let erin_token = gateway.login("erin", "erin-password-1").await;
    let frank_token = gateway.login("frank", "frank-password-1").await;
    assert!(
        gateway
            .tool_names(&erin_token)
            .await
            .contains(&"echo".to_owned())
    );

    let (status, _) = gateway
        .scim(reqwest::Method::DELETE, &format!("/Users/{erin}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    gateway
        .refused_within(&erin_token, Duration::from_secs(1))
        .await;
    assert!(
        gateway
            .tool_names(&frank_token)
            .await
            .contains(&"echo".to_owned()),
        "other members are unaffected"
    );

    gateway
        .patch(
            &format!("/Users/{frank}"),
            json!([{"op": "replace", "value": {"active": false}}]),
        )
        .await;
    gateway
        .refused_within(&frank_token, Duration::from_secs(1))
        .await;
    // Tokens issued at or before the revocation stay refused; a later sign-in works again.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    gateway
        .patch(
            &format!("/Users/{frank}"),
            json!([{"op": "replace", "path": "active", "value": true}]),
        )
        .await;
    let fresh = gateway.login("frank", "frank-password-1").await;
    assert!(
        gateway
            .tool_names(&fresh)
            .await
            .contains(&"echo".to_owned())
    );
    let old = gateway.rpc(&frank_token, "tools/list", json!({})).await;
    assert_eq!(
        old.status(),
        StatusCode::UNAUTHORIZED,
        "the old token stays revoked"
    );
}

/// Signs `user_name` in through the built-in login (authorization code + PKCE) and returns an
/// access token for the virtual server at `mcp`; `http` must not follow redirects.
pub(super) async fn login(
    http: &reqwest::Client,
    origin: &str,
    mcp: &str,
    user_name: &str,
    password: &str,
) -> String {
    let registration: Value = http
            .post(format!("{origin}/register"))
            .json(&json!({"redirect_uris": [REDIRECT], "client_name": "scim-e2e", "token_endpoint_auth_method": "none",
                          "application_type": "native", "grant_types": ["authorization_code"]}))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("registration");
    let client_id = registration["client_id"]
        .as_str()
        .expect("client_id")
        .to_owned();
    let params = vec![
        ("response_type", "code".to_owned()),
        ("client_id", client_id.clone()),
        ("redirect_uri", REDIRECT.to_owned()),
        ("state", "s1".to_owned()),
        ("code_challenge", CHALLENGE.to_owned()),
        ("code_challenge_method", "S256".to_owned()),
        ("resource", mcp.to_owned()),
    ];
    let page = http
        .get(format!("{origin}/authorize"))
        .query(&params)
        .send()
        .await
        .expect("authorize");
    assert_eq!(page.status(), StatusCode::OK, "the login page");
    let cookie = page.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .split(';')
        .next()
        .expect("cookie")
        .to_owned();
    let html = page.text().await.expect("html");
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("csrf")
        .to_owned();
    let mut form = params;
    form.extend([
        ("csrf", csrf),
        ("username", user_name.to_owned()),
        ("password", password.to_owned()),
        ("decision", "approve".to_owned()),
    ]);
    let approved = http
        .post(format!("{origin}/authorize"))
        .header("cookie", cookie)
        .form(&form)
        .send()
        .await
        .expect("login");
    assert!(
        approved.status().is_redirection(),
        "login refused: {}",
        approved.status()
    );
    let location: url::Url = approved.headers()["location"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("location");
    let code = location
        .query_pairs()
        .find(|(name, _)| name == "code")
        .expect("code")
        .1
        .into_owned();
    let token: Value = http
        .post(format!("{origin}/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", client_id.as_str()),
            ("code_verifier", VERIFIER),
            ("resource", mcp),
        ])
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token json");
    token["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}
