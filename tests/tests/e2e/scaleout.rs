//! Edge as authz-svc's protected resource across processes: a standalone edge follows
//! authz-svc's revocation and policy feeds (changes reach it within a second), keeps serving
//! on its last state while authz-svc is away, fails closed once its revocation set is stale,
//! and recovers when authz-svc is back.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use edge_svc::auth::upstream::{AuthzConfig, AuthzLink};
use edge_svc::config::HttpFace;
use proto::authz::v1 as pb;
use proto::authz::v1::agent_admin_client::AgentAdminClient;
use reqwest::StatusCode;
use serde_json::Value;
use svc_kit::callers::{PresentToken, SecretSetting};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::audit::{ECHO, echo_dir};
use super::oauth::call_echo;

const EDGE_TOKEN: &str = "scaleout-edge-service-token-0123456789ab";
const ADMIN_TOKEN: &str = "scaleout-admin-service-token-0123456789a";

/// A running authz-svc (gRPC and OAuth face) in this process, and the policy store it publishes.
struct Authz {
    shutdown: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    policies: authz_svc::PolicyStore,
}

impl Authz {
    async fn start(config: &authz_svc::Config, grpc: SocketAddr, http: SocketAddr) -> Self {
        let shutdown = CancellationToken::new();
        let policies = authz_svc::PolicyStore::new(&config.policies).expect("policies");
        let state = authz_svc::open(config).await.expect("authz state");
        let grpc = TcpListener::bind(grpc).await.expect("bind authz grpc");
        let http = TcpListener::bind(http).await.expect("bind authz http");
        let served = {
            let (config, policies, state, shutdown) = (
                config.clone(),
                policies.clone(),
                state.clone(),
                shutdown.clone(),
            );
            tokio::spawn(async move {
                authz_svc::serve_with(&config, policies, state, grpc, shutdown)
                    .await
                    .expect("authz grpc");
            })
        };
        let oauth = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                axum::serve(http, authz_svc::oauth_router(state))
                    .with_graceful_shutdown(shutdown.cancelled_owned())
                    .await
                    .expect("authz http");
            })
        };
        Self {
            shutdown,
            tasks: vec![served, oauth],
            policies,
        }
    }

    /// Stops serving and waits until both listeners are closed.
    async fn stop(self) {
        self.shutdown.cancel();
        for task in self.tasks {
            task.await.expect("authz task");
        }
    }
}

fn authz_config(
    data: &Path,
    grpc: SocketAddr,
    http: SocketAddr,
    resource: &str,
) -> authz_svc::Config {
    let mut config = authz_svc::Config::default();
    config.grpc.listen_addr = grpc;
    config.callers.edge_token = Some(SecretSetting::from(EDGE_TOKEN.to_owned()));
    config.callers.admin_token = Some(SecretSetting::from(ADMIN_TOKEN.to_owned()));
    config.oauth.listen_addr = http;
    config.oauth.resources = vec![authz_svc::ResourceConfig {
        name: "crm".to_owned(),
        url: resource.to_owned(),
        scopes: Vec::new(),
    }];
    config.store.data_dir = data.to_path_buf();
    config
}

/// Starts an edge in this process serving `crm` (auth: oauth) and following authz-svc.
async fn start_edge(
    listener: TcpListener,
    authz: &AuthzConfig,
    shutdown: &CancellationToken,
) -> AuthzLink {
    let dir = echo_dir();
    let yaml = format!(
        "connectors:\n  - name: local\n    stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{dir}\"]}}\n\
         virtual_servers:\n  - name: crm\n    auth: oauth\n    connectors: [{{connector: local, prefix: \"\"}}]\n"
    );
    let spec = edge_svc::GatewaySpec::from_yaml(&yaml, "scaleout").expect("spec");
    let link =
        AuthzLink::start_with_token(authz, &SecretSetting::from(EDGE_TOKEN.to_owned()), shutdown)
            .expect("authz link");
    let gateway = edge_svc::Gateway::start(&spec, shutdown)
        .expect("gateway")
        .with_access(link.access.clone());
    let bound = listener.local_addr().expect("edge addr");
    let face = HttpFace::new(
        url::Url::parse(&format!("http://{bound}")).expect("url"),
        &[],
        &[],
        1 << 20,
    );
    tokio::spawn(edge_svc::serve(
        gateway,
        face,
        Some(link.auth.clone()),
        listener,
        shutdown.clone(),
    ));
    link
}

/// Creates an agent bundle for `crm` and returns a client-credentials access token for it.
async fn agent_token(
    grpc: SocketAddr,
    http: SocketAddr,
    name: &str,
    resource: &str,
) -> (String, String) {
    let channel = svc_kit::grpc::channel(
        &format!("http://{grpc}"),
        &svc_kit::GrpcClientConfig::default(),
    )
    .expect("channel");
    let present =
        PresentToken::new(Some(&SecretSetting::from(ADMIN_TOKEN.to_owned()))).expect("token");
    let mut admin = AgentAdminClient::with_interceptor(channel, present);
    let created = admin
        .create_agent(pb::CreateAgentRequest {
            name: name.to_owned(),
            virtual_servers: vec!["crm".to_owned()],
            ..Default::default()
        })
        .await
        .expect("agent created")
        .into_inner();
    let bundle = created.agent.expect("bundle");
    let secret = created.client_secret.expect("secret").value;
    let response = reqwest::Client::new()
        .post(format!("http://{http}/token"))
        .basic_auth(&bundle.client_id, Some(secret))
        .form(&[("grant_type", "client_credentials"), ("resource", resource)])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("token json");
    (
        body["access_token"]
            .as_str()
            .expect("access token")
            .to_owned(),
        bundle.bundle_id,
    )
}

/// Calls echo until `accept` holds for (status, body), failing after `within`; returns the wait.
async fn until(
    url: &str,
    token: &str,
    within: Duration,
    what: &str,
    accept: impl Fn(StatusCode, &Value) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let response = call_echo(url, token).await;
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        if accept(status, &body) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "{what} not seen within {within:?}: last {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn succeeded(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::OK && body.get("result").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_edge_follows_authz_feeds_and_fails_closed_when_they_go_stale() {
    let dir = tempfile::tempdir().expect("dir");
    let (grpc, http) = (
        super::audit::reserve_port().await,
        super::audit::reserve_port().await,
    );
    let edge_listener = TcpListener::bind("127.0.0.1:0").await.expect("bind edge");
    let resource = format!(
        "http://{}/v/crm/mcp",
        edge_listener.local_addr().expect("addr")
    );
    let config = authz_config(dir.path(), grpc, http, &resource);
    let authz = Authz::start(&config, grpc, http).await;
    let shutdown = CancellationToken::new();
    let staleness = Duration::from_secs(1);
    let link_config = AuthzConfig {
        endpoint: format!("http://{grpc}"),
        service_token_env: "UNUSED".to_owned(),
        issuer: url::Url::parse(&format!("http://{http}")).expect("issuer"),
        jwks_url: None,
        revocation_staleness: staleness,
    };
    let link = start_edge(edge_listener, &link_config, &shutdown).await;

    let (doomed, doomed_bundle) = agent_token(grpc, http, "doomed", &resource).await;
    let (survivor, _) = agent_token(grpc, http, "survivor", &resource).await;
    until(
        &resource,
        &doomed,
        Duration::from_secs(5),
        "first call",
        succeeded,
    )
    .await;

    // A policy change reaches the edge within a second, both ways.
    authz
        .policies
        .replace_cedar(
            r#"@id("forbid-echo") forbid(principal, action == Action::"call_tool", resource is Tool) when { resource.name == "echo" };
               @id("open") permit(principal, action, resource);"#,
        )
        .expect("policy");
    let denied = until(
        &resource,
        &survivor,
        Duration::from_secs(1),
        "policy denial",
        |_, body| body["error"]["code"] == -32003,
    )
    .await;
    authz
        .policies
        .replace_cedar(r#"@id("open") permit(principal, action, resource);"#)
        .expect("policy");
    until(
        &resource,
        &survivor,
        Duration::from_secs(1),
        "policy relaxed",
        succeeded,
    )
    .await;

    // A decommissioned agent is refused within a second; the other agent is not affected.
    let channel = svc_kit::grpc::channel(
        &format!("http://{grpc}"),
        &svc_kit::GrpcClientConfig::default(),
    )
    .expect("channel");
    let present =
        PresentToken::new(Some(&SecretSetting::from(ADMIN_TOKEN.to_owned()))).expect("token");
    AgentAdminClient::with_interceptor(channel, present)
        .decommission_agent(pb::DecommissionAgentRequest {
            bundle_id: doomed_bundle,
            reason: "scaleout e2e".to_owned(),
        })
        .await
        .expect("decommissioned");
    let revoked = until(
        &resource,
        &doomed,
        Duration::from_secs(1),
        "revocation",
        |status, _| status == StatusCode::UNAUTHORIZED,
    )
    .await;
    assert!(succeeded(
        StatusCode::OK,
        &call_echo(&resource, &survivor)
            .await
            .json()
            .await
            .expect("json")
    ));
    tracing::info!(?denied, ?revoked, "policy change and revocation seen");

    // authz-svc goes away: the edge keeps serving on its last state, then fails closed.
    authz.stop().await;
    let lost = Instant::now();
    let response = call_echo(&resource, &survivor).await;
    assert_eq!(
        response.status(),
        StatusCode::OK,
        "served on the last known state"
    );
    until(
        &resource,
        &survivor,
        Duration::from_secs(5),
        "fail closed",
        |status, _| status == StatusCode::SERVICE_UNAVAILABLE,
    )
    .await;
    assert!(
        lost.elapsed() >= staleness,
        "failed closed before the staleness bound"
    );
    assert!(!link.revocations.is_current());

    // authz-svc is back (same store): the feed resumes with its cursor and the edge recovers.
    let authz = Authz::start(&config, grpc, http).await;
    until(
        &resource,
        &survivor,
        Duration::from_secs(5),
        "recovery",
        succeeded,
    )
    .await;
    until(
        &resource,
        &doomed,
        Duration::from_secs(1),
        "revocation kept",
        |status, _| status == StatusCode::UNAUTHORIZED,
    )
    .await;
    authz.stop().await;
    shutdown.cancel();
}
