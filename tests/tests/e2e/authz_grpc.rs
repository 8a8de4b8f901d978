//! authz-svc's gRPC side end to end: agent bundles managed with
//! `gatehouse agents --endpoint` against a running `gatehouse up` (a decommissioned
//! agent's next call fails), the local CLI's changes reaching the audit trail, and
//! authz-svc standalone with its own OAuth listener, auditing to a standalone audit-svc.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proto::audit::v1::audit_client::AuditClient;
use proto::authz::v1 as pb;
use proto::authz::v1::agent_admin_client::AgentAdminClient;
use proto::authz::v1::authz_client::AuthzClient;
use proto::common::v1::Secret;
use reqwest::StatusCode;
use serde_json::Value;
use svc_kit::callers::{PresentToken, SecretSetting};

use super::audit::ECHO;
use super::oauth::call_echo;

const ADMIN_TOKEN: &str = "e2e-admin-service-token-0123456789abcdef";
const EDGE_TOKEN: &str = "e2e-edge-service-token-0123456789abcdefg";
const AUTHZ_TOKEN: &str = "e2e-authz-service-token-0123456789abcdef";
const AUDITOR_TOKEN: &str = "e2e-auditor-service-token-0123456789abcd";

fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(ECHO).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build --workspace --bins`)",
        path.display()
    );
    path
}

fn gateway_yaml() -> String {
    let dir = Path::new(ECHO)
        .parent()
        .expect("bin dir")
        .display()
        .to_string();
    format!(
        "connectors:\n  - name: local\n    stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{dir}\"]}}\n\
         virtual_servers:\n  - name: crm\n    auth: oauth\n    connectors: [{{connector: local, prefix: \"\"}}]\n"
    )
}

/// Is a running `gatehouse up`: its origin and its authz-svc gRPC URL.
struct Up {
    _child: tokio::process::Child,
    origin: String,
    authz: String,
}

async fn gatehouse_up(dir: &Path) -> Up {
    let (config, data) = (dir.join("gatehouse.yaml"), dir.join("data"));
    std::fs::write(&config, gateway_yaml()).expect("config");
    let started = super::launch::Launch::new(&config, &data)
        .env("GATEHOUSE_AUTHZ__CALLERS__ADMIN_TOKEN", ADMIN_TOKEN)
        .start()
        .await;
    let authz = started.grpc("authz-svc");
    Up {
        _child: started.child,
        origin: started.origin,
        authz,
    }
}

/// Runs `gatehouse agents ARGS` and returns its JSON output.
async fn agents(args: &[&str]) -> Value {
    let output = tokio::process::Command::new(binary("gatehouse"))
        .arg("agents")
        .args(args)
        .env("E2E_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .expect("gatehouse agents");
    assert!(
        output.status.success(),
        "gatehouse agents {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("json output")
}

async fn client_credentials(token_url: &str, resource: &str, agent: &Value) -> reqwest::Response {
    reqwest::Client::new()
        .post(token_url)
        .basic_auth(
            agent["client_id"].as_str().expect("client id"),
            agent["client_secret"].as_str(),
        )
        .form(&[("grant_type", "client_credentials"), ("resource", resource)])
        .send()
        .await
        .expect("token request")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decommissioning_through_the_admin_endpoint_refuses_the_agents_next_call() {
    let dir = tempfile::tempdir().expect("dir");
    let up = gatehouse_up(dir.path()).await;
    let crm = format!("{}/v/crm/mcp", up.origin);
    let remote = [
        "--endpoint",
        up.authz.as_str(),
        "--token-env",
        "E2E_ADMIN_TOKEN",
    ];

    let created = agents(
        &[
            &["create", "reporter", "--virtual-server", "crm"],
            &remote[..],
        ]
        .concat(),
    )
    .await;
    assert_eq!(created["state"], "active");
    let response = client_credentials(&format!("{}/token", up.origin), &crm, &created).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("token json");
    let token = body["access_token"].as_str().expect("access token");
    assert_eq!(call_echo(&crm, token).await.status(), StatusCode::OK);

    let shown = agents(&[&["show", "reporter"], &remote[..]].concat()).await;
    assert_eq!(shown["client_id"], created["client_id"]);
    assert!(
        shown.get("client_secret").is_none(),
        "show never prints a secret"
    );
    let gone = agents(
        &[
            &["decommission", "reporter", "--reason", "e2e"],
            &remote[..],
        ]
        .concat(),
    )
    .await;
    assert_eq!(gone["state"], "decommissioned");
    let refused = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if call_echo(&crm, token).await.status() == StatusCode::UNAUTHORIZED {
                return;
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the agent's token still worked a second after decommissioning"
    );

    let no_token = tokio::process::Command::new(binary("gatehouse"))
        .args([
            "agents",
            "list",
            "--endpoint",
            up.authz.as_str(),
            "--token-env",
            "E2E_UNSET_TOKEN",
        ])
        .output()
        .await
        .expect("gatehouse agents");
    assert_eq!(no_token.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_changes_made_by_the_local_cli_reach_the_audit_trail() {
    let dir = tempfile::tempdir().expect("dir");
    let _up = gatehouse_up(dir.path()).await;
    let data = dir.path().join("data");
    let data = data.to_str().expect("utf-8 path");
    let created = agents(&[
        "create",
        "local-agent",
        "--virtual-server",
        "crm",
        "--data",
        data,
    ])
    .await;
    let secret = created["client_secret"]
        .as_str()
        .expect("secret")
        .to_owned();
    agents(&["decommission", "local-agent", "--data", data]).await;
    let bundle = created["bundle_id"].as_str().expect("bundle id");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let output = tokio::process::Command::new(binary("gatehouse"))
            .args(["audit", "search", "--limit", "1000", "--data", data])
            .output()
            .await
            .expect("gatehouse audit search");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            !text.contains(&secret),
            "a client secret reached the audit trail"
        );
        let changes = text.matches(bundle).count();
        if changes >= 2 && text.contains("decommission") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the CLI's agent changes were not audited: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn reserve_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

async fn wait_listening(addr: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn spawn(name: &str, env: &[(&str, &str)], args: &[&str]) -> tokio::process::Child {
    tokio::process::Command::new(binary(name))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("service process")
}

fn token(value: &str) -> PresentToken {
    PresentToken::new(Some(&SecretSetting::from(value.to_owned()))).expect("token")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_authz_svc_serves_oauth_and_grpc_and_audits_to_audit_svc() {
    let dir = tempfile::tempdir().expect("dir");
    let (audit_addr, grpc_addr, http_addr) = (reserve_port(), reserve_port(), reserve_port());
    let audit_data = dir.path().join("audit");
    let _audit = spawn(
        "audit-svc",
        &[
            ("GATEHOUSE_AUDIT__GRPC__LISTEN_ADDR", &audit_addr),
            (
                "GATEHOUSE_AUDIT__DATA_DIR",
                audit_data.to_str().expect("utf-8"),
            ),
            ("GATEHOUSE_AUDIT__CALLERS__AUTHZ_TOKEN", AUTHZ_TOKEN),
            ("GATEHOUSE_AUDIT__CALLERS__AUDITOR_TOKEN", AUDITOR_TOKEN),
        ],
        &[],
    );
    let resource = format!("http://{http_addr}/v/crm/mcp");
    let config = dir.path().join("authz.toml");
    std::fs::write(
        &config,
        format!(
            "[grpc]\nlisten_addr = \"{grpc_addr}\"\n[callers]\nedge_token = \"{EDGE_TOKEN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
             [oauth]\nlisten_addr = \"{http_addr}\"\n[[oauth.resources]]\nname = \"crm\"\nurl = \"{resource}\"\n\
             [store]\ndata_dir = \"{}\"\n[audit]\nurl = \"http://{audit_addr}\"\ntoken = \"{AUTHZ_TOKEN}\"\n",
            dir.path().join("authz").display()
        ),
    )
    .expect("authz config");
    let _authz = spawn(
        "authz-svc",
        &[],
        &["--config", config.to_str().expect("utf-8")],
    );
    for addr in [&audit_addr, &grpc_addr, &http_addr] {
        wait_listening(addr).await;
    }
    let channel = |addr: &str| {
        svc_kit::grpc::channel(
            &format!("http://{addr}"),
            &svc_kit::GrpcClientConfig::default(),
        )
        .expect("channel")
    };
    let mut admin = AgentAdminClient::with_interceptor(channel(&grpc_addr), token(ADMIN_TOKEN));
    let created = admin
        .create_agent(pb::CreateAgentRequest {
            name: "standalone".to_owned(),
            virtual_servers: vec!["crm".to_owned()],
            ..Default::default()
        })
        .await
        .expect("agent created")
        .into_inner();
    let bundle = created.agent.expect("bundle");
    let secret = created.client_secret.expect("secret").value;
    let agent = serde_json::json!({"client_id": bundle.client_id, "client_secret": secret});
    let response =
        client_credentials(&format!("http://{http_addr}/token"), &resource, &agent).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("token json");
    let access_token = body["access_token"].as_str().expect("token").to_owned();

    let mut edge = AuthzClient::with_interceptor(channel(&grpc_addr), token(EDGE_TOKEN));
    let verdict = edge
        .validate_token(pb::ValidateTokenRequest {
            token: Some(Secret {
                value: access_token.clone(),
            }),
            resource: resource.clone(),
            metadata: None,
        })
        .await
        .expect("validated")
        .into_inner();
    assert!(verdict.active);
    admin
        .decommission_agent(pb::DecommissionAgentRequest {
            bundle_id: bundle.bundle_id.clone(),
            reason: "e2e".to_owned(),
        })
        .await
        .expect("decommissioned");

    let mut auditor = AuditClient::with_interceptor(channel(&audit_addr), token(AUDITOR_TOKEN));
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let found = auditor
            .search(proto::audit::v1::SearchRequest::default())
            .await
            .expect("search")
            .into_inner();
        let text = format!("{:?}", found.events);
        assert!(
            !text.contains(&secret) && !text.contains(&access_token),
            "a secret reached audit-svc"
        );
        let kinds: Vec<i32> = found
            .events
            .iter()
            .filter_map(|stored| stored.event.as_ref().map(|event| event.kind))
            .collect();
        let agent_changes = kinds
            .iter()
            .filter(|kind| **kind == proto::audit::v1::EventKind::AgentChanged as i32)
            .count();
        let issued = kinds.contains(&(proto::audit::v1::EventKind::TokenIssued as i32));
        if agent_changes == 2 && issued {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "authz-svc's events did not reach audit-svc: {kinds:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
