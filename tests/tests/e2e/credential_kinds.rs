//! Every kind of shared credential through a real `gatehouse up`: a basic-auth pair set over
//! the admin API's HTTP face and a header set over its gRPC face reach the downstream; stdio
//! variables set by `gatehouse credentials set --env` (from standard input) and then replaced
//! over the admin API reach the program's environment; an OAuth client-credentials pair set by
//! the CLI is exchanged at a real provider. Malformed material is refused with the field's
//! name, connector health shows an unreachable downstream, and no secret ever appears in a
//! response, a refusal, the health report or the audit log.

use std::path::Path;
use std::time::Duration;

use proto::admin::v1::SetSharedCredentialRequest;
use proto::admin::v1::admin_client::AdminClient;
use proto::common::v1::Secret;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::admin::{ADMIN_SECRET, authorized, token, up};
use super::audit::{ECHO, echo_dir};
use super::connector::UrlServer;
use super::credentials::{call, call_with_arguments, digest, provider, text};

const PASSWORD: &str = "basic-password-canary-71f3";
const HEADER_TOKEN: &str = "header-token-canary-4a9e";
const CLI_ENV: &str = "cli-env-canary-0d62";
const API_ENV: &str = "api-env-canary-93b5";
const CLIENT_SECRET: &str = "vault-client-secret";

/// The gateway file: `team` (basic), `hdr` (headers), `cc` (client credentials) and `gone`
/// (nothing listens) over HTTP, `local` (environment) over stdio, each in its own server.
fn gateway_file(downstream: &str, whoami_downstream: &str, gone: &str) -> String {
    let server = |name: &str| {
        format!(
            "  - {{name: {name}, auth: none, connectors: [{{connector: {name}, prefix: \"\"}}]}}\n"
        )
    };
    let mut servers = String::new();
    for name in ["team", "hdr", "cc", "local", "gone"] {
        servers.push_str(&server(name));
    }
    format!(
        "connectors:\n\
         \x20 - {{name: team, http: {{url: \"{downstream}\"}}, credentials: {{mode: shared}}}}\n\
         \x20 - {{name: hdr, http: {{url: \"{downstream}\"}}, credentials: {{mode: shared}}}}\n\
         \x20 - {{name: cc, http: {{url: \"{whoami_downstream}\"}}, credentials: {{mode: shared}}}}\n\
         \x20 - {{name: gone, http: {{url: \"{gone}\"}}, credentials: {{mode: shared}}}}\n\
         \x20 - name: local\n    stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{}\"]}}\n    \
         credentials: {{mode: shared}}\n\
         virtual_servers:\n{servers}\
         authorization:\n  agents:\n\
         \x20   - {{name: admin-bot, owner: ops, virtual_servers: [gatehouse-admin], scopes: [\"gatehouse:admin\"], secret_env: E2E_ADMIN_SECRET}}\n",
        echo_dir()
    )
}

/// Runs `gatehouse credentials set CONNECTOR ARGS…` with `env` and `stdin`; returns stdout.
fn cli_set(config: &Path, data: &Path, args: &[&str], env: &[(&str, &str)], stdin: &str) -> String {
    let gatehouse = Path::new(ECHO).with_file_name("gatehouse");
    let mut set = std::process::Command::new(gatehouse)
        .args(["credentials", "set"])
        .args(args)
        .arg("-c")
        .arg(config)
        .arg("--data")
        .arg(data)
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("credentials set");
    std::io::Write::write_all(&mut set.stdin.take().expect("stdin"), stdin.as_bytes())
        .expect("stdin");
    let output = set.wait_with_output().expect("credentials set ran");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Returns the `Authorization` value a basic-auth pair makes.
fn basic(username: &str, password: &str) -> String {
    let request = reqwest::Client::new()
        .get("http://127.0.0.1/")
        .basic_auth(username, Some(password))
        .build()
        .expect("request");
    request.headers()["authorization"]
        .to_str()
        .expect("ascii")
        .to_owned()
}

/// Polls `probe` until it returns `Some`, for at most 30 s.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} in time"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shared_credential_kind_reaches_its_connector_and_no_secret_leaks() {
    let dir = tempfile::tempdir().expect("dir");
    let mut echo = tokio::process::Command::new(ECHO);
    echo.args(["http", "--listen", "127.0.0.1:0"]);
    let downstream = UrlServer::start(echo).await;
    // The client-credentials downstream asks the provider whose token it is shown.
    let provider = provider(600).await;
    let whoami_downstream = match &provider {
        Some(provider) => {
            let base = provider.url.trim_end_matches('/').to_owned();
            let mut echo = tokio::process::Command::new(ECHO);
            echo.args(["http", "--listen", "127.0.0.1:0", "--whoami"])
                .arg(format!("{base}/whoami"));
            Some((UrlServer::start(echo).await, base))
        }
        None => None,
    };
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("port");
    let gone = format!("http://{}/mcp", closed.local_addr().expect("addr"));
    drop(closed);
    let config = dir.path().join("gatehouse.yaml");
    let cc_url = whoami_downstream
        .as_ref()
        .map_or_else(|| downstream.url.clone(), |(server, _)| server.url.clone());
    std::fs::write(&config, gateway_file(&downstream.url, &cc_url, &gone)).expect("config");
    let data = dir.path().join("data");
    let mut seen = Vec::new();

    // The CLI: stdio variables from standard input, a client secret from the environment.
    seen.push(cli_set(
        &config,
        &data,
        &["local", "--env", "API_TOKEN"],
        &[],
        &format!("API_TOKEN={CLI_ENV}\n"),
    ));
    if let Some((_, base)) = &whoami_downstream {
        seen.push(cli_set(
            &config,
            &data,
            &[
                "cc",
                "--client-id",
                "vault-client",
                "--token-endpoint",
                &format!("{base}/token"),
                "--scope",
                "read",
                "--client-secret-env",
                "E2E_CC_SECRET",
            ],
            &[("E2E_CC_SECRET", CLIENT_SECRET)],
            "",
        ));
    }

    let mut gatehouse = up(&config, &data).await;
    let origin = gatehouse.origin.clone();
    let admin = token(
        &origin,
        "admin-bot",
        ADMIN_SECRET,
        &format!("{origin}/admin/v1"),
    )
    .await;
    let http = reqwest::Client::new();
    let put = |connector: &str, body: Value| {
        http.put(format!(
            "{origin}/admin/v1/connectors/{connector}/shared-credential"
        ))
        .bearer_auth(&admin)
        .json(&body)
        .send()
    };

    // Malformed material is refused by field name, never echoing a value.
    let refusals = [
        (
            "team",
            json!({"kind": "basic", "username": "svc-bot"}),
            "password",
        ),
        (
            "team",
            json!({"kind": "basic", "username": "svc:bot", "password": PASSWORD}),
            "material.basic.username",
        ),
        (
            "local",
            json!({"kind": "env", "variables": {"1BAD": API_ENV}}),
            "material.environment.variables",
        ),
        (
            "local",
            json!({"kind": "env", "variables": format!("API_TOKEN={API_ENV}")}),
            "body",
        ),
        (
            "cc",
            json!({"kind": "client_credentials", "client_id": "c", "client_secret": PASSWORD,
                   "token_endpoint": "not a url"}),
            "material.client_credentials.token_endpoint",
        ),
        (
            "team",
            json!({"kind": "kerberos", "value": PASSWORD}),
            "kind",
        ),
    ];
    for (connector, body, field) in refusals {
        let refused = put(connector, body.clone()).await.expect("put");
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{body}");
        let refused = refused.text().await.expect("body");
        assert!(refused.contains(field), "{field} not named: {refused}");
        seen.push(refused);
    }

    // The admin API's HTTP face: a basic-auth pair, and new stdio variables.
    let stored = put(
        "team",
        json!({"kind": "basic", "username": "svc-bot", "password": PASSWORD}),
    )
    .await
    .expect("put basic");
    assert_eq!(stored.status(), StatusCode::OK);
    seen.push(stored.text().await.expect("body"));
    // Its gRPC face: a header sent as it is (and a misplaced field refused by name).
    let mut client = AdminClient::connect(gatehouse.grpc.clone())
        .await
        .expect("admin grpc");
    let header = || SetSharedCredentialRequest {
        connector: "hdr".to_owned(),
        kind: "headers".to_owned(),
        headers: [(
            "Authorization".to_owned(),
            Secret {
                value: format!("Token {HEADER_TOKEN}"),
            },
        )]
        .into(),
        ..SetSharedCredentialRequest::default()
    };
    let misplaced = client
        .set_shared_credential(authorized(
            &admin,
            SetSharedCredentialRequest {
                value: Some(Secret {
                    value: HEADER_TOKEN.to_owned(),
                }),
                ..header()
            },
        ))
        .await
        .expect_err("a value does not belong to headers");
    assert_eq!(misplaced.code(), tonic::Code::InvalidArgument);
    assert!(misplaced.message().contains("value"), "{misplaced:?}");
    seen.push(format!("{misplaced:?}"));
    let stored = client
        .set_shared_credential(authorized(&admin, header()))
        .await
        .expect("grpc headers")
        .into_inner();
    seen.push(format!("{stored:?}"));

    let url = |server: &str| format!("{origin}/v/{server}/mcp");
    let response = call(&url("team"), "unused", "authorization_digest", json!({})).await;
    assert_eq!(
        text(&response),
        digest(&basic("svc-bot", PASSWORD)),
        "{response}"
    );
    seen.push(response.to_string());
    let response = call(&url("hdr"), "unused", "authorization_digest", json!({})).await;
    assert_eq!(
        text(&response),
        digest(&format!("Token {HEADER_TOKEN}")),
        "{response}"
    );
    seen.push(response.to_string());
    let env_of = |url: String| async move {
        let response = call_with_arguments(
            &url,
            "unused",
            "env",
            json!({"name": "API_TOKEN"}),
            json!({}),
        )
        .await;
        Some(text(&response)).filter(|value| !value.is_empty())
    };
    assert_eq!(
        eventually("the stdio program", || env_of(url("local"))).await,
        CLI_ENV
    );
    if whoami_downstream.is_some() {
        let owner = eventually("a client-credentials token", || async {
            let response = call(&url("cc"), "unused", "whoami", json!({})).await;
            Some(text(&response)).filter(|owner| owner == "client:vault-client")
        })
        .await;
        seen.push(owner);
    }

    // Health: the downstream nobody listens on is unreachable; the others are healthy.
    let health = eventually("gone reported unreachable", || async {
        let health: Value = http
            .get(format!("{origin}/admin/v1/connector-health"))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("health")
            .json()
            .await
            .expect("json");
        let state = |name: &str| {
            health
                .as_array()
                .and_then(|reports| reports.iter().find(|report| report["connector"] == name))
                .map(|report| report["state"].clone())
        };
        (state("gone") == Some(json!("unreachable")) && state("team") == Some(json!("healthy")))
            .then_some(health)
    })
    .await;
    seen.push(health.to_string());

    // Stdio variables replaced over the admin API reach the program from its next launch.
    let stored = put(
        "local",
        json!({"kind": "env", "variables": {"API_TOKEN": API_ENV}}),
    )
    .await
    .expect("put env");
    assert_eq!(stored.status(), StatusCode::OK);
    seen.push(stored.text().await.expect("body"));

    // Every write and refusal is in the audit log, by identifiers only.
    let audited = eventually("the writes audited", || async {
        let page: Value = http
            .get(format!(
                "{origin}/admin/v1/audit/events?agent=admin-bot&newest_first=true&limit=200"
            ))
            .bearer_auth(&admin)
            .send()
            .await
            .expect("search")
            .json()
            .await
            .expect("json");
        let events = page.to_string();
        ["material.basic", "material.headers", "material.env"]
            .iter()
            .all(|field| events.contains(field))
            .then_some(events)
    })
    .await;
    seen.push(audited);
    gatehouse.child.kill().await.expect("gatehouse stopped");

    let mut gatehouse = up(&config, &data).await;
    let url = format!("{}/v/local/mcp", gatehouse.origin);
    assert_eq!(
        eventually("the relaunched program", || env_of(url.clone())).await,
        API_ENV
    );
    gatehouse.child.kill().await.expect("gatehouse stopped");

    for text in &seen {
        for secret in [
            PASSWORD,
            HEADER_TOKEN,
            CLI_ENV,
            API_ENV,
            CLIENT_SECRET,
            ADMIN_SECRET,
        ] {
            assert!(!text.contains(secret), "a secret leaked: {text}");
        }
    }
    downstream.stop().await;
    if let Some((server, _)) = whoami_downstream {
        server.stop().await;
    }
    if let Some(provider) = provider {
        provider.stop().await;
    }
}
