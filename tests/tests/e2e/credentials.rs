//! Downstream credentials from vault-svc, injected by edge: a shared credential reaches the
//! shared connector, each member's own credential reaches only that member's calls, a member
//! who has not connected gets the first-use link, and no credential ever appears in a response,
//! an audit record or a vault event.
//!
//! Identities come from a token table standing in for authz-svc's login (which the oauth
//! module exercises): what is under test is edge ↔ vault, keyed by the verified subject.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use edge_svc::audit::Recorder;
use edge_svc::auth::{TokenClaims, TokenError, TokenVerifier};
use edge_svc::config::HttpFace;
use edge_svc::credentials::Credentials;
use edge_svc::http::ResourceAuth;
use edge_svc::{Gateway, GatewaySpec};
use serde_json::{Value, json};
use sha2::Digest as _;
use tokio::net::TcpListener;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use vault_svc::credential::Material;
use vault_svc::secret::Owner;

use super::connector::UrlServer;

pub(super) const EDGE_TOKEN: &str = "edge-service-token-0123456789abcdef";
const SHARED: &str = "canary-shared-7c1d";
const ALICE: &str = "canary-alice-4e2b";
const BOB: &str = "canary-bob-9a0f";

/// Members by access token, as a verified token would name them.
#[derive(Debug)]
struct Members(HashMap<&'static str, &'static str>);

#[async_trait::async_trait]
impl TokenVerifier for Members {
    async fn verify(&self, _resource: &str, token: &str) -> Result<TokenClaims, TokenError> {
        let member = self
            .0
            .get(token)
            .ok_or(TokenError::Invalid("unknown token"))?;
        Ok(TokenClaims {
            subject: (*member).to_owned(),
            client_id: "desktop-app".to_owned(),
            scopes: Vec::new(),
            token_id: format!("jti-{member}"),
            expires_at: u64::MAX,
            issued_at: 0,
            issuer: "http://issuer.test".to_owned(),
            act: None,
            groups: Vec::new(),
            roles: Vec::new(),
            grant: None,
            agent: None,
        })
    }
}

pub(super) fn digest(authorization: &str) -> String {
    format!("{:x}", sha2::Sha256::digest(authorization.as_bytes()))
}

/// Calls a tool statelessly (2026-07-28) as `token`, declaring `capabilities`.
pub(super) async fn call(url: &str, token: &str, tool: &str, capabilities: Value) -> Value {
    call_with_arguments(url, token, tool, json!({}), capabilities).await
}

/// Like [`call`], passing `arguments` to the tool.
pub(super) async fn call_with_arguments(
    url: &str,
    token: &str,
    tool: &str,
    arguments: Value,
    capabilities: Value,
) -> Value {
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": capabilities,
                      "io.modelcontextprotocol/clientInfo": {"name": "credentials-e2e", "version": "1"}});
    reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                      "params": {"name": tool, "arguments": arguments, "_meta": meta}}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json-rpc response")
}

pub(super) fn text(response: &Value) -> String {
    response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {response}"))
        .to_owned()
}

/// Starts vault-svc with a shared and a per-member connector and their credentials stored.
async fn start_vault(dir: &std::path::Path, shutdown: &CancellationToken) -> (String, VaultEvents) {
    let mut config = vault_svc::Config::default().with_data_dir(dir);
    let oauth = vault_svc::OAuthProviderConfig {
        client_id: "gatehouse".to_owned(),
        client_secret: None,
        authorization_endpoint: Some("http://127.0.0.1:9/authorize".to_owned()),
        token_endpoint: Some("http://127.0.0.1:9/token".to_owned()),
        resource: None,
        scopes: vec!["crm".to_owned()],
        revocation_endpoint: None,
    };
    config.connectors.insert(
        "team".to_owned(),
        vault_svc::ConnectorConfig {
            credential: vault_svc::CredentialMode::Shared,
            oauth: None,
            api_key: None,
            rotation: None,
        },
    );
    config.connectors.insert(
        "own".to_owned(),
        vault_svc::ConnectorConfig {
            credential: vault_svc::CredentialMode::PerMember,
            oauth: Some(oauth),
            api_key: None,
            rotation: None,
        },
    );
    let (endpoint, vault, events) = run_vault(config, shutdown).await;
    let bearer = |token: &str| Material::Bearer {
        token: token.into(),
    };
    vault
        .set_shared("team", &bearer(SHARED), None, "team account".into())
        .await
        .expect("shared credential");
    for (member, token) in [("alice", ALICE), ("bob", BOB)] {
        vault
            .store_credential(
                "own",
                Owner::Member(member.into()),
                &bearer(token),
                None,
                String::new(),
            )
            .await
            .expect("member credential");
    }
    (endpoint, events)
}

pub(super) type VaultEvents = tokio::sync::mpsc::Receiver<vault_svc::event::CredentialEvent>;

/// Opens and serves vault-svc per `config`, admitting edge by [`EDGE_TOKEN`].
pub(super) async fn run_vault(
    mut config: vault_svc::Config,
    shutdown: &CancellationToken,
) -> (String, vault_svc::Vault, VaultEvents) {
    config.callers.edge_token = Some(EDGE_TOKEN.to_owned().into());
    let (sink, events) = vault_svc::event::ChannelSink::new(10_000);
    let vault = vault_svc::open(&config, Arc::new(sink))
        .await
        .expect("vault");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    let served = vault.clone();
    let vault_shutdown = shutdown.clone();
    tokio::spawn(
        async move { vault_svc::serve_vault(served, &config, listener, vault_shutdown).await },
    );
    (endpoint, vault, events)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_call_carries_the_right_credential_and_none_ever_leaks() {
    let dirs = (
        tempfile::tempdir().expect("vault"),
        tempfile::tempdir().expect("spool"),
        tempfile::tempdir().expect("audit"),
    );
    let shutdown = CancellationToken::new();
    let (vault, mut vault_events) = start_vault(dirs.0.path(), &shutdown).await;
    let audit_listener = TcpListener::bind("127.0.0.1:0").await.expect("audit port");
    let audit_addr = audit_listener.local_addr().expect("audit addr");
    let audit_config = super::audit::audit_svc_config(dirs.2.path());
    tokio::spawn(audit_svc::serve(
        audit_config.clone(),
        audit_listener,
        shutdown.clone(),
    ));
    let audit = super::audit::edge_spool(audit_addr, dirs.1.path());
    let recorder = Recorder::start(&audit, &shutdown).expect("recorder");

    let mut echo = Command::new(env!("CARGO_BIN_EXE_mcp-echo"));
    echo.args(["http", "--listen", "127.0.0.1:0"]);
    let downstream = UrlServer::start(echo).await;
    let yaml = format!(
        "connectors:\n\
         \x20 - name: team\n    http: {{url: \"{url}\"}}\n    credentials: {{mode: shared}}\n\
         \x20 - name: own\n    http: {{url: \"{url}\"}}\n    credentials:\n      mode: per_member\n      \
         inject: {{headers: {{Authorization: \"Bearer {{token}}\"}}}}\n      \
         oauth: {{client_id: gatehouse, authorization_endpoint: \"http://127.0.0.1:9/authorize\", token_endpoint: \"http://127.0.0.1:9/token\"}}\n\
         virtual_servers:\n  - name: crm\n    connectors: [{{connector: team}}, {{connector: own}}]\n",
        url = downstream.url
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = serve_edge(listener, &yaml, &vault, recorder, None, &shutdown);
    let mut seen = Vec::new();

    // The shared connector carries the shared credential, whoever calls.
    for token in ["t-alice", "t-bob"] {
        let response = call(&url, token, "team__authorization_digest", json!({})).await;
        assert_eq!(
            text(&response),
            digest(&format!("Bearer {SHARED}")),
            "{response}"
        );
        seen.push(response.to_string());
    }
    // The per-member connector carries each member's own, also when their calls interleave.
    let rounds = (0..4).map(|_| async {
        let (alice, bob) = tokio::join!(
            call(&url, "t-alice", "own__authorization_digest", json!({})),
            call(&url, "t-bob", "own__authorization_digest", json!({})),
        );
        (alice, bob)
    });
    for (alice, bob) in futures_join(rounds).await {
        assert_eq!(
            text(&alice),
            digest(&format!("Bearer {ALICE}")),
            "alice got {alice}"
        );
        assert_eq!(
            text(&bob),
            digest(&format!("Bearer {BOB}")),
            "bob got {bob}"
        );
        seen.extend([alice.to_string(), bob.to_string()]);
    }
    // Carol has not connected: a URL-capable client gets the elicitation error, others a tool error.
    let elicited = call(
        &url,
        "t-carol",
        "own__authorization_digest",
        json!({"elicitation": {"url": {}}}),
    )
    .await;
    assert_eq!(elicited["error"]["code"], -32042, "{elicited}");
    let link = elicited["error"]["data"]["elicitations"][0]["url"]
        .as_str()
        .expect("a link");
    assert!(link.starts_with("http://127.0.0.1:9/authorize?"), "{link}");
    let plain = call(&url, "t-carol", "own__authorization_digest", json!({})).await;
    assert_eq!(plain["result"]["isError"], true, "{plain}");
    assert!(
        text(&plain).contains("http://127.0.0.1:9/authorize?"),
        "{plain}"
    );
    seen.extend([elicited.to_string(), plain.to_string()]);

    let events =
        super::audit::wait_for_events(&audit_config, "the calls", |events| events.len() >= 12)
            .await;
    let outcomes: Vec<&str> = events
        .iter()
        .filter_map(|(_, event)| event["outcome"].as_str())
        .collect();
    assert_eq!(
        outcomes
            .iter()
            .filter(|outcome| **outcome == "OUTCOME_CONSENT_REQUIRED")
            .count(),
        2,
        "{outcomes:?}"
    );
    seen.extend(events.iter().map(|(_, event)| event.to_string()));
    shutdown.cancel();
    vault_events.close();
    while let Some(event) = vault_events.recv().await {
        seen.push(format!("{event:?}"));
    }
    for secret in [SHARED, ALICE, BOB] {
        assert!(
            seen.iter().all(|text| !text.contains(secret)),
            "a credential leaked into a response, an audit record or a vault event"
        );
    }
    assert!(
        events
            .iter()
            .all(|(_, event)| !event.to_string().contains("127.0.0.1:9/authorize")),
        "the member-bound link stays out of the audit trail"
    );
    downstream.stop().await;
}

/// Serves `yaml`'s virtual server `crm` on `listener` with credentials from the vault-svc at
/// `vault_endpoint` (and its consent callback under `/vault`, when given); returns its MCP URL.
fn serve_edge(
    listener: TcpListener,
    yaml: &str,
    vault_endpoint: &str,
    recorder: Recorder,
    consent: Option<vault_svc::Vault>,
    shutdown: &CancellationToken,
) -> String {
    let credentials = Credentials::with_token(
        vault_endpoint,
        EDGE_TOKEN,
        std::time::Duration::from_secs(30),
    )
    .expect("vault client");
    serve_edge_with(listener, yaml, &credentials, recorder, consent, shutdown)
}

/// Like [`serve_edge`], fetching credentials through `credentials`.
pub(super) fn serve_edge_with(
    listener: TcpListener,
    yaml: &str,
    credentials: &Credentials,
    recorder: Recorder,
    consent: Option<vault_svc::Vault>,
    shutdown: &CancellationToken,
) -> String {
    let spec = GatewaySpec::from_yaml(yaml, "credentials.yaml").expect("spec");
    let gateway = Gateway::start_with(&spec, Some(credentials), shutdown)
        .expect("gateway")
        .with_audit(recorder);
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let face = HttpFace::new(origin.parse().expect("url"), &[], &[], 1 << 20);
    let tokens = [("t-alice", "alice"), ("t-bob", "bob"), ("t-carol", "carol")];
    let auth = ResourceAuth {
        verifier: Arc::new(Members(tokens.into_iter().collect())),
        issuer: "http://issuer.test".to_owned(),
    };
    let mut router = edge_svc::http::router(&gateway, &face, Some(auth), shutdown);
    if let Some(vault) = consent {
        router = router.nest("/vault", vault_svc::http::router(vault));
    }
    tokio::spawn(edge_svc::serve_router(router, listener, shutdown.clone()));
    format!("{origin}/v/crm/mcp")
}

/// Runs the rounds one after another (each round's two calls run at once).
async fn futures_join<F: std::future::Future<Output = (Value, Value)>>(
    rounds: impl Iterator<Item = F>,
) -> Vec<(Value, Value)> {
    let mut results = Vec::new();
    for round in rounds {
        results.push(round.await);
    }
    results
}

/// The authlib provider of vault-svc's tests with access tokens living `expires_in` seconds,
/// or `None` (printed loudly) without its Python.
pub(super) async fn provider(expires_in: u64) -> Option<UrlServer> {
    let python = std::env::var("GATEHOUSE_VAULT_PEERS_PYTHON")
        .or_else(|_| std::env::var("GATEHOUSE_INTEROP_PYTHON"));
    let Ok(python) = python else {
        eprintln!(
            "SKIPPED: no Python with authlib+flask (set GATEHOUSE_VAULT_PEERS_PYTHON); the \
             first-use flow through a real OAuth provider did not run"
        );
        return None;
    };
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vault-svc/tests/peers/oauth_provider.py"
    );
    let mut command = Command::new(python);
    command.args([
        script,
        "--expires-in",
        &expires_in.to_string(),
        "--print-url",
    ]);
    Some(UrlServer::start(command).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_connect_their_own_accounts_at_a_real_provider_and_retry() {
    let Some(provider) = provider(600).await else {
        return;
    };
    let base = provider.url.clone();
    let dir = tempfile::tempdir().expect("vault");
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = vault_svc::Config::default().with_data_dir(dir.path());
    config.http.public_url = format!("{origin}/vault");
    config.connectors.insert(
        "idp".to_owned(),
        vault_svc::ConnectorConfig {
            credential: vault_svc::CredentialMode::PerMember,
            oauth: Some(vault_svc::OAuthProviderConfig {
                client_id: "vault-client".to_owned(),
                client_secret: Some("vault-client-secret".to_owned().into()),
                authorization_endpoint: Some(format!("{base}/authorize")),
                token_endpoint: Some(format!("{base}/token")),
                resource: None,
                scopes: vec!["read".to_owned()],
                revocation_endpoint: None,
            }),
            api_key: None,
            rotation: None,
        },
    );
    let (vault_endpoint, vault, mut vault_events) = run_vault(config, &shutdown).await;
    let mut echo = Command::new(env!("CARGO_BIN_EXE_mcp-echo"));
    let whoami = format!("{base}/whoami");
    echo.args(["http", "--listen", "127.0.0.1:0", "--whoami", &whoami]);
    let downstream = UrlServer::start(echo).await;
    let yaml = format!(
        "connectors:\n  - name: idp\n    http: {{url: \"{}\"}}\n    credentials:\n      mode: per_member\n      \
         oauth: {{client_id: vault-client, authorization_endpoint: \"{base}/authorize\", token_endpoint: \"{base}/token\"}}\n\
         virtual_servers:\n  - name: crm\n    connectors: [{{connector: idp, prefix: \"\"}}]\n",
        downstream.url
    );
    let url = serve_edge(
        listener,
        &yaml,
        &vault_endpoint,
        Recorder::disabled(),
        Some(vault.clone()),
        &shutdown,
    );
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("browser");
    let mut seen = Vec::new();
    for (token, member) in [("t-alice", "alice"), ("t-bob", "bob")] {
        let first = call(&url, token, "whoami", json!({})).await;
        assert_eq!(first["result"]["isError"], true, "{first}");
        let message = text(&first);
        let link = message
            .split_whitespace()
            .find(|word| word.starts_with(&format!("{base}/authorize?")))
            .unwrap_or_else(|| panic!("the tool error carries the link: {message}"));
        // The member logs in at the provider (auto-approved as `user`), which sends the browser
        // to vault-svc's callback on the gateway's origin.
        let authorized = browser
            .get(format!("{link}&user={member}"))
            .send()
            .await
            .expect("authorize");
        assert_eq!(authorized.status(), 302);
        let callback = authorized.headers()["location"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(
            callback.starts_with(&format!("{origin}/vault/oauth/callback?")),
            "{callback}"
        );
        let page = browser.get(&callback).send().await.expect("callback");
        assert_eq!(page.status(), 200);
        seen.push(page.text().await.expect("page"));
        let retried = call(&url, token, "whoami", json!({})).await;
        assert_eq!(text(&retried), member, "the downstream saw {retried}");
        seen.extend([first.to_string(), retried.to_string()]);
    }
    let again = call(&url, "t-alice", "whoami", json!({})).await;
    assert_eq!(text(&again), "alice", "{again}");
    seen.push(again.to_string());
    let mut tokens = Vec::new();
    for member in ["alice", "bob"] {
        let query = vault_svc::CredentialQuery {
            member_id: Some(member.to_owned()),
            connector: "idp".to_owned(),
            ..vault_svc::CredentialQuery::default()
        };
        let vault_svc::CredentialOutcome::Released(released) =
            vault.get_credential(&query).await.expect("credential")
        else {
            panic!("{member} connected");
        };
        let Material::Bearer { token } = released.material else {
            panic!("a bearer token");
        };
        tokens.push(token.expose().to_owned());
    }
    shutdown.cancel();
    vault_events.close();
    while let Some(event) = vault_events.recv().await {
        seen.push(format!("{event:?}"));
    }
    for token in &tokens {
        assert!(
            seen.iter().all(|text| !text.contains(token.as_str())),
            "a member's token leaked into a response, a page or a vault event"
        );
    }
    downstream.stop().await;
    provider.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gatehouse_up_injects_a_shared_credential_set_through_the_cli() {
    let dir = tempfile::tempdir().expect("dir");
    let mut echo = Command::new(env!("CARGO_BIN_EXE_mcp-echo"));
    echo.args(["http", "--listen", "127.0.0.1:0"]);
    let downstream = UrlServer::start(echo).await;
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(
        &config,
        format!(
            "connectors:\n  - name: team\n    http: {{url: \"{}\"}}\n    credentials: {{mode: shared}}\n\
             virtual_servers:\n  - name: tools\n    auth: none\n    connectors: [{{connector: team, prefix: \"\"}}]\n",
            downstream.url
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let gatehouse =
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_mcp-echo")).with_file_name("gatehouse");
    let place = [
        "-c",
        config.to_str().expect("utf-8"),
        "--data",
        data.to_str().expect("utf-8"),
    ];
    // The value comes from standard input, never from the command line.
    let mut set = std::process::Command::new(&gatehouse)
        .args([
            "credentials",
            "set",
            "team",
            "--bearer-env",
            "GATEHOUSE_E2E_UNSET_TOKEN",
        ])
        .args(place)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("credentials set");
    std::io::Write::write_all(&mut set.stdin.take().expect("stdin"), SHARED.as_bytes())
        .expect("secret on stdin");
    let stored = set.wait_with_output().expect("credentials set ran");
    assert!(stored.status.success(), "{stored:?}");
    let printed = String::from_utf8_lossy(&stored.stdout).into_owned();
    assert!(printed.contains("stored shared credential"), "{printed}");
    let status = std::process::Command::new(&gatehouse)
        .args(["connectors", "status"])
        .args(place)
        .output()
        .expect("connectors status");
    let report = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(
        report.contains("team") && report.contains("healthy"),
        "{report}"
    );

    let (mut up, url) = super::audit::gatehouse_up(&config, &data, &[]).await;
    let response = call(&url, "unused", "authorization_digest", json!({})).await;
    assert_eq!(
        text(&response),
        digest(&format!("Bearer {SHARED}")),
        "{response}"
    );
    for text in [printed, report, response.to_string()] {
        assert!(!text.contains(SHARED), "the credential was echoed");
    }
    up.kill().await.expect("gatehouse stopped");
    downstream.stop().await;
}

/// Returns the value of hidden input `name` in an HTML form.
fn hidden_input(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {page}"))
        + marker.len();
    page[start..]
        .split('"')
        .next()
        .expect("closing quote")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_paste_their_own_api_keys_through_the_link_and_retry() {
    const ALICE_KEY: &str = "ak-canary-alice-3f9d";
    const BOB_KEY: &str = "ak-canary-bob-81c7";
    let dir = tempfile::tempdir().expect("vault");
    let shutdown = CancellationToken::new();
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let mut config = vault_svc::Config::default().with_data_dir(dir.path());
    config.http.public_url = format!("{origin}/vault");
    config.connectors.insert(
        "keyed".to_owned(),
        vault_svc::ConnectorConfig {
            api_key: Some(vault_svc::ApiKeyConfig {
                header: "X-Api-Key".to_owned(),
            }),
            ..vault_svc::ConnectorConfig::new(vault_svc::CredentialMode::PerMember)
        },
    );
    let (vault_endpoint, vault, mut vault_events) = run_vault(config, &shutdown).await;
    // The downstream reports the digest of the Authorization header it received, so the key
    // travels there (through the connector's template) and is proven without being echoed.
    let mut echo = Command::new(env!("CARGO_BIN_EXE_mcp-echo"));
    echo.args(["http", "--listen", "127.0.0.1:0"]);
    let downstream = UrlServer::start(echo).await;
    let yaml = format!(
        "connectors:\n  - name: keyed\n    http: {{url: \"{}\"}}\n    credentials:\n      mode: per_member\n      \
         api_key: {{header: X-Api-Key}}\n      inject: {{headers: {{Authorization: \"Key {{key}}\"}}}}\n\
         virtual_servers:\n  - name: crm\n    connectors: [{{connector: keyed, prefix: \"\"}}]\n",
        downstream.url
    );
    let url = serve_edge(
        listener,
        &yaml,
        &vault_endpoint,
        Recorder::disabled(),
        Some(vault.clone()),
        &shutdown,
    );
    let browser = reqwest::Client::new();
    let page_url = format!("{origin}/vault/api-key?state=");
    let mut seen = Vec::new();

    // A client that opens URLs gets the link as a URL elicitation.
    let elicited = call(
        &url,
        "t-carol",
        "authorization_digest",
        json!({"elicitation": {"url": {}}}),
    )
    .await;
    assert_eq!(elicited["error"]["code"], -32042, "{elicited}");
    let carol_link = elicited["error"]["data"]["elicitations"][0]["url"]
        .as_str()
        .expect("a link");
    assert!(carol_link.starts_with(&page_url), "{carol_link}");
    seen.push(elicited.to_string());

    for (token, key) in [("t-alice", ALICE_KEY), ("t-bob", BOB_KEY)] {
        let first = call(&url, token, "authorization_digest", json!({})).await;
        assert_eq!(first["result"]["isError"], true, "{first}");
        let message = text(&first);
        let link = message
            .split_whitespace()
            .find(|word| word.starts_with(&page_url))
            .unwrap_or_else(|| panic!("the tool error carries the link: {message}"));
        let page = browser.get(link).send().await.expect("page");
        assert_eq!(page.status(), 200);
        let cookie = page.headers()["set-cookie"]
            .to_str()
            .expect("ascii")
            .split(';')
            .next()
            .expect("cookie")
            .to_owned();
        let form = page.text().await.expect("form");
        let fields = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("state", hidden_input(&form, "state")),
                ("csrf", hidden_input(&form, "csrf")),
                ("key", key.to_owned()),
            ])
            .finish();
        let saved = browser
            .post(format!("{origin}/vault/api-key"))
            .header("cookie", cookie)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(fields)
            .send()
            .await
            .expect("submit");
        assert_eq!(saved.status(), 200);
        seen.push(saved.text().await.expect("page"));
        let retried = call(&url, token, "authorization_digest", json!({})).await;
        assert_eq!(
            text(&retried),
            digest(&format!("Key {key}")),
            "the downstream received {retried}"
        );
        seen.extend([first.to_string(), retried.to_string()]);
    }
    // Interleaved calls keep each member on their own key.
    let (alice, bob) = tokio::join!(
        call(&url, "t-alice", "authorization_digest", json!({})),
        call(&url, "t-bob", "authorization_digest", json!({})),
    );
    assert_eq!(text(&alice), digest(&format!("Key {ALICE_KEY}")));
    assert_eq!(text(&bob), digest(&format!("Key {BOB_KEY}")));
    seen.extend([alice.to_string(), bob.to_string()]);
    // Carol never pasted one: she still gets a link, never someone else's key.
    let carol = call(&url, "t-carol", "authorization_digest", json!({})).await;
    assert_eq!(carol["result"]["isError"], true, "{carol}");
    seen.push(carol.to_string());

    shutdown.cancel();
    vault_events.close();
    while let Some(event) = vault_events.recv().await {
        seen.push(format!("{event:?}"));
    }
    for key in [ALICE_KEY, BOB_KEY] {
        assert!(
            seen.iter().all(|text| !text.contains(key)),
            "a pasted key leaked into a response, a page or a vault event"
        );
    }
    downstream.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_api_deletes_a_members_own_credential_over_http_and_grpc_and_audits_it() {
    use proto::admin::v1::DeleteMemberCredentialRequest;
    use proto::admin::v1::admin_client::AdminClient;
    use reqwest::StatusCode;

    const ALICE_KEY: &str = "ak-admin-delete-alice-6d1e";
    const BOB_KEY: &str = "ak-admin-delete-bob-2b7c";
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(
        &config,
        "connectors:\n  - name: keyed\n    http: {url: \"http://127.0.0.1:9/mcp\"}\n    credentials:\n      \
         mode: per_member\n      api_key: {header: X-Api-Key}\n\
         virtual_servers:\n  - name: tools\n    connectors: [{connector: keyed, prefix: \"\"}]\n\
         authorization:\n  agents:\n    - {name: admin-bot, owner: ops, virtual_servers: [gatehouse-admin], \
         scopes: [\"gatehouse:admin\"], secret_env: E2E_ADMIN_SECRET}\n",
    )
    .expect("config");
    let data = dir.path().join("data");
    // Alice and Bob pasted their keys earlier (the link flow is tested above); the store is
    // the one `gatehouse up` opens from the data directory.
    let mut vault_config = vault_svc::Config::default().with_data_dir(&data);
    vault_config.connectors.insert(
        "keyed".to_owned(),
        vault_svc::ConnectorConfig {
            api_key: Some(vault_svc::ApiKeyConfig {
                header: "X-Api-Key".to_owned(),
            }),
            ..vault_svc::ConnectorConfig::new(vault_svc::CredentialMode::PerMember)
        },
    );
    std::fs::create_dir_all(&data).expect("data dir");
    let mut stored = HashMap::new();
    {
        let vault = vault_svc::open(&vault_config, Arc::new(vault_svc::event::LogSink))
            .await
            .expect("vault");
        for (member, key) in [("alice", ALICE_KEY), ("bob", BOB_KEY)] {
            let material = Material::ApiKey {
                header_name: "X-Api-Key".to_owned(),
                key: key.into(),
            };
            let record = vault
                .store_credential(
                    "keyed",
                    Owner::Member(member.to_owned()),
                    &material,
                    None,
                    String::new(),
                )
                .await
                .expect("stored");
            stored.insert(member, record.id);
        }
    }
    let super::admin::Up {
        mut child,
        origin,
        grpc,
    } = super::admin::up(&config, &data).await;
    let admin = super::admin::token(
        &origin,
        "admin-bot",
        super::admin::ADMIN_SECRET,
        &format!("{origin}/admin/v1"),
    )
    .await;
    let http = reqwest::Client::new();
    let alice = format!("{origin}/admin/v1/connectors/keyed/members/alice/credential");
    let anonymous = http.delete(&alice).send().await.expect("anonymous");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let deleted = http
        .delete(&alice)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), StatusCode::OK);
    let deleted: Value = deleted.json().await.expect("json");
    assert_eq!(deleted["credential_id"], stored["alice"], "{deleted}");
    assert!(!deleted.to_string().contains(ALICE_KEY), "{deleted}");
    let again = http
        .delete(&alice)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("delete again");
    assert_eq!(again.status(), StatusCode::NOT_FOUND);

    let mut client = AdminClient::connect(grpc).await.expect("admin grpc");
    let bob = || DeleteMemberCredentialRequest {
        connector: "keyed".to_owned(),
        member_id: "bob".to_owned(),
    };
    let refused = client
        .delete_member_credential(bob())
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let deleted = client
        .delete_member_credential(super::admin::authorized(&admin, bob()))
        .await
        .expect("grpc delete")
        .into_inner();
    assert_eq!(deleted.credential_id, stored["bob"]);
    let again = client
        .delete_member_credential(super::admin::authorized(&admin, bob()))
        .await
        .expect_err("gone");
    assert_eq!(again.code(), tonic::Code::NotFound, "{again:?}");

    // Each deletion, and each refused one, is in the audit log by identifiers only.
    let audited = super::admin::search_until(
        &http,
        &format!("{origin}/admin/v1/audit/events?agent=admin-bot&newest_first=true&limit=100"),
        &admin,
        |page| {
            let events = page.to_string();
            (events.contains("keyed/alice") && events.contains("keyed/bob")).then_some(events)
        },
    )
    .await
    .expect("the deletions reach the audit log");
    assert!(audited.contains("member_credential"), "{audited}");
    for secret in [ALICE_KEY, BOB_KEY, admin.as_str()] {
        assert!(!audited.contains(secret), "a secret reached the audit log");
    }
    child.kill().await.expect("gatehouse stopped");
}

/// The rotation hook of [`a_rotated_shared_secret_reaches_the_downstream_and_no_call_fails`]:
/// the downstream's key management. `rotate` issues a new key, adds it to the keys the
/// downstream accepts and answers it; `retire` withdraws the previous key. Every file is
/// replaced by a rename, so the downstream never reads half a list.
const ROTATION_HOOK: &str = r#"#!/bin/sh
set -eu
dir="$1"
input=$(cat)
field() { printf '%s' "$input" | sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }
action=$(field action)
case "$action" in
  rotate)
    new="rotated-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
    cp "$dir/accepted" "$dir/accepted.next"
    printf '%s\n' "$new" >> "$dir/accepted.next"
    mv "$dir/accepted.next" "$dir/accepted"
    printf '%s\n' "$new" >> "$dir/issued"
    echo rotate >> "$dir/hook.log"
    printf '{"value": "%s"}\n' "$new"
    ;;
  retire)
    grep -vxF "$(field current)" "$dir/accepted" > "$dir/accepted.next" || true
    mv "$dir/accepted.next" "$dir/accepted"
    echo retire >> "$dir/hook.log"
    ;;
  *) exit 1 ;;
esac
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_shared_secret_reaches_the_downstream_and_no_call_fails() {
    const ORIGINAL: &str = "canary-rotation-original-5a3e";
    let dir = tempfile::tempdir().expect("dir");
    let keys = dir.path().join("keys");
    std::fs::create_dir_all(&keys).expect("keys dir");
    std::fs::write(keys.join("accepted"), format!("{ORIGINAL}\n")).expect("accepted");
    std::fs::write(keys.join("issued"), "").expect("issued");
    std::fs::write(keys.join("hook.log"), "").expect("hook log");
    let hook = dir.path().join("hook.sh");
    std::fs::write(&hook, ROTATION_HOOK).expect("hook");
    // The downstream answers 401 to any bearer token not currently in `accepted`.
    let mut echo = Command::new(env!("CARGO_BIN_EXE_mcp-echo"));
    echo.args(["http", "--listen", "127.0.0.1:0", "--accept-tokens"])
        .arg(keys.join("accepted"));
    let downstream = UrlServer::start(echo).await;
    // Rotation 6 s after the secret was set, the previous key valid 4 s more, then every 6 s:
    // edge keeps released material up to 30 s, so each retirement meets a cached old key.
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(
        &config,
        format!(
            "connectors:\n  - name: team\n    http: {{url: \"{}\"}}\n    credentials:\n      mode: shared\n      \
             rotation:\n        every: 6s\n        overlap: 4s\n        hook: {{command: [\"/bin/sh\", \"{}\", \"{}\"]}}\n\
             virtual_servers:\n  - name: tools\n    auth: none\n    connectors: [{{connector: team, prefix: \"\"}}]\n",
            downstream.url,
            hook.display(),
            keys.display()
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let gatehouse =
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_mcp-echo")).with_file_name("gatehouse");
    let place = [
        "-c",
        config.to_str().expect("utf-8"),
        "--data",
        data.to_str().expect("utf-8"),
    ];
    let mut set = std::process::Command::new(&gatehouse)
        .args([
            "credentials",
            "set",
            "team",
            "--bearer-env",
            "GATEHOUSE_E2E_UNSET_TOKEN",
        ])
        .args(place)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("credentials set");
    std::io::Write::write_all(&mut set.stdin.take().expect("stdin"), ORIGINAL.as_bytes())
        .expect("secret on stdin");
    assert!(set.wait_with_output().expect("set ran").status.success());

    let (mut up, url) = super::audit::gatehouse_up(&config, &data, &[]).await;
    let retirements = || {
        std::fs::read_to_string(keys.join("hook.log"))
            .expect("hook log")
            .lines()
            .filter(|line| *line == "retire")
            .count()
    };
    // Calls run back to back through two rotations and both retirements.
    let mut digests = Vec::new();
    let mut last = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "two rotations did not complete within 60 s: hook log {:?}",
            std::fs::read_to_string(keys.join("hook.log"))
        );
        let response = call(&url, "unused", "authorization_digest", json!({})).await;
        assert_ne!(
            response["result"]["isError"], true,
            "a call failed during rotation: {response}"
        );
        let received = text(&response);
        assert!(!received.contains(ORIGINAL), "{response}");
        if received != last {
            digests.push(received.clone());
            last = received;
        }
        if retirements() >= 2 {
            // One more call after the second retirement, which must carry the newest key.
            let response = call(&url, "unused", "authorization_digest", json!({})).await;
            let received = text(&response);
            if received != last {
                digests.push(received);
            }
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    up.kill().await.expect("gatehouse stopped");
    let issued: Vec<String> = std::fs::read_to_string(keys.join("issued"))
        .expect("issued")
        .lines()
        .map(str::to_owned)
        .collect();
    let log = std::fs::read_to_string(keys.join("hook.log")).expect("hook log");
    assert!(
        log.starts_with("rotate\nretire\nrotate\nretire\n"),
        "the hook ran out of order: {log}"
    );
    // The downstream received the original key, then each rotated key in turn.
    let expected: Vec<String> = std::iter::once(ORIGINAL)
        .chain(issued.iter().map(String::as_str))
        .map(|key| digest(&format!("Bearer {key}")))
        .collect();
    assert_eq!(
        digests[0], expected[0],
        "the first calls carry the original key"
    );
    assert!(
        digests.iter().all(|seen| expected.contains(seen)),
        "the downstream received a key nobody issued"
    );
    assert_eq!(
        digests.last(),
        expected.get(2),
        "after the second retirement calls carry the second rotated key"
    );
    let status = std::process::Command::new(&gatehouse)
        .args(["connectors", "status"])
        .args(place)
        .output()
        .expect("connectors status");
    let report = String::from_utf8_lossy(&status.stdout).into_owned();
    assert!(report.contains("rotation: "), "{report}");
    for key in std::iter::once(ORIGINAL).chain(issued.iter().map(String::as_str)) {
        assert!(!report.contains(key), "a key reached the status report");
    }
    downstream.stop().await;
}
