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

pub(super) const EDGE_TOKEN: &str = "scaleout-edge-service-token-0123456789ab";
pub(super) const ADMIN_TOKEN: &str = "scaleout-admin-service-token-0123456789a";

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
pub(super) async fn agent_token(
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
    let token = super::oauth::client_credentials(
        &format!("http://{http}"),
        &bundle.client_id,
        &secret,
        resource,
    )
    .await;
    (token, bundle.bundle_id)
}

/// Calls echo until `accept` holds for (status, body), failing after `within`; returns the wait.
pub(super) async fn until(
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

pub(super) fn succeeded(status: StatusCode, body: &Value) -> bool {
    status == StatusCode::OK && body.get("result").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_edge_follows_authz_feeds_and_fails_closed_when_they_go_stale() {
    let dir = tempfile::tempdir().expect("dir");
    let (grpc, http) = (
        super::audit::reserve_port().release(),
        super::audit::reserve_port().release(),
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
    // The edge may notice the lost feed while the stop is still under way, never before it.
    let lost = Instant::now();
    authz.stop().await;
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

/// The protocol version of the session era the harness speaks (`Mcp-Session-Id`).
pub(super) const SESSION_ERA: &str = "2025-11-25";

/// A process started by the harness, killed (SIGKILL) when dropped.
pub(super) struct Replica {
    pub(super) name: String,
    pub(super) addr: SocketAddr,
    pub(super) child: tokio::process::Child,
}

pub(super) fn sibling_binary(name: &str) -> std::path::PathBuf {
    let path = Path::new(ECHO).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is missing: build it first (`cargo build -p edge-svc --bins`)",
        path.display()
    );
    path
}

pub(super) async fn wait_listening(addr: SocketAddr, child: &mut tokio::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            child.try_wait().expect("child state").is_none(),
            "the process for {addr} exited"
        );
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Starts an edge-svc process serving `gateway_yaml` behind the balancer at `public`.
async fn edge_process(
    dir: &Path,
    index: usize,
    public: SocketAddr,
    grpc: SocketAddr,
    http: SocketAddr,
    key_prefix: &str,
) -> Replica {
    let addr = super::audit::reserve_port().release();
    let config = dir.join(format!("edge{index}.toml"));
    std::fs::write(
        &config,
        format!(
            "listen_addr = \"{addr}\"\npublic_url = \"http://{public}\"\ngateway = \"{}\"\n\
             [authz]\nendpoint = \"http://{grpc}\"\nservice_token_env = \"SCALEOUT_EDGE_TOKEN\"\n\
             issuer = \"http://{http}\"\nrevocation_staleness = \"5s\"\n\
             [sessions]\nredis_url_env = \"REDIS_URL\"\nkey_prefix = \"{key_prefix}session:\"\n",
            dir.join("gateway.yaml").display()
        ),
    )
    .expect("edge config");
    let mut child = tokio::process::Command::new(sibling_binary("edge-svc"))
        .arg("--config")
        .arg(&config)
        .env("SCALEOUT_EDGE_TOKEN", EDGE_TOKEN)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("edge-svc");
    wait_listening(addr, &mut child).await;
    Replica {
        name: format!("edge{index}"),
        addr,
        child,
    }
}

/// Starts HAProxy spreading requests round-robin over `edges`, naming the edge that answered
/// in `x-gatehouse-edge`; a refused connection is retried on another edge.
async fn haproxy(haproxy: &str, dir: &Path, public: SocketAddr, edges: &[Replica]) -> Replica {
    let servers: String = edges
        .iter()
        .map(|edge| {
            format!(
                "  server {} {} check inter 200ms fall 1 rise 2\n",
                edge.name, edge.addr
            )
        })
        .collect();
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 512\ndefaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n  retries 3\n  option redispatch 1\n\
             frontend mcp\n  bind {public}\n  default_backend edges\n\
             backend edges\n  balance roundrobin\n  http-response set-header x-gatehouse-edge %[srv_name]\n{servers}"
        ),
    )
    .expect("haproxy config");
    let mut child = tokio::process::Command::new(haproxy)
        .arg("-db")
        .arg("-f")
        .arg(&config)
        .env(
            "LD_LIBRARY_PATH",
            std::env::var("GATEHOUSE_HAPROXY_LIBS").unwrap_or_default(),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("haproxy");
    wait_listening(public, &mut child).await;
    Replica {
        name: "haproxy".to_owned(),
        addr: public,
        child,
    }
}

/// Posts a JSON-RPC message in the session era and returns (status, edge, session id, body).
pub(super) async fn session_post(
    url: &str,
    token: &str,
    session: Option<&str>,
    message: Value,
) -> (StatusCode, String, Option<String>, Value) {
    // A bounded wait: a request stuck behind a killed replica is a failed call, not a hung test.
    let mut request = reqwest::Client::new()
        .post(url)
        .timeout(Duration::from_secs(10))
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", SESSION_ERA)
        .json(&message);
    if let Some(session) = session {
        request = request.header("mcp-session-id", session);
    }
    // A replica killed mid-request breaks the exchange; that is a failed call, not a panic.
    let Ok(response) = request.send().await else {
        return (StatusCode::BAD_GATEWAY, String::new(), None, Value::Null);
    };
    let status = response.status();
    let header = |name: &str| super::header_of(&response, name);
    let (edge, session) = (
        header("x-gatehouse-edge").unwrap_or_default(),
        header("mcp-session-id"),
    );
    let text = response.text().await.unwrap_or_default();
    // A reply comes as plain JSON or as SSE events (an empty priming event, then the reply).
    let reply = serde_json::from_str(&text).unwrap_or_else(|_| {
        text.lines()
            .rev()
            .filter_map(|line| line.strip_prefix("data:"))
            .find_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
            .unwrap_or(Value::Null)
    });
    (status, edge, session, reply)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_edges_behind_haproxy_share_sessions_revocations_and_one_rate_limit() {
    let (Ok(redis), Ok(haproxy_bin)) = (
        std::env::var("REDIS_URL"),
        std::env::var("GATEHOUSE_HAPROXY"),
    ) else {
        eprintln!(
            "SKIPPED: REDIS_URL or GATEHOUSE_HAPROXY is not set (source ~/.cache/gatehouse-scaleout/env.sh \
             after tests/scaleout/install-haproxy.sh); the multi-replica harness did not run"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let (grpc, http, public) = (
        super::audit::reserve_port().release(),
        super::audit::reserve_port().release(),
        super::audit::reserve_port().release(),
    );
    let resource = format!("http://{public}/v/crm/mcp");
    let authz = Authz::start(&authz_config(dir.path(), grpc, http, &resource), grpc, http).await;
    let key_prefix = format!(
        "gatehouse:e2e:scaleout:{}:{}:",
        std::process::id(),
        public.port()
    );
    let budget = 5;
    let echo_dir = echo_dir();
    std::fs::write(
        dir.path().join("gateway.yaml"),
        format!(
            "connectors:\n  - name: local\n    stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{echo_dir}\"], era: legacy}}\n\
             virtual_servers:\n  - name: crm\n    auth: oauth\n    connectors: [{{connector: local, prefix: \"\"}}]\n\
             rate_limits:\n  backend: {{redis: {{url: \"{redis}\", key_prefix: \"{key_prefix}limit:\"}}}}\n  \
             rules: [{{name: add-total, per: virtual_server, tool: add, rate: 1/hour, burst: {budget}}}]\n"
        ),
    )
    .expect("gateway yaml");
    let mut edges = Vec::new();
    for index in 0..3 {
        edges.push(edge_process(dir.path(), index, public, grpc, http, &key_prefix).await);
    }
    let balancer = haproxy(&haproxy_bin, dir.path(), public, &edges).await;
    let (token, bundle) = agent_token(grpc, http, "load", &resource).await;
    // Every edge has its first policy snapshot and revocation set.
    for edge in &edges {
        let direct = format!("http://{}/v/crm/mcp", edge.addr);
        until(
            &direct,
            &token,
            Duration::from_secs(5),
            "edge ready",
            succeeded,
        )
        .await;
    }

    // A session-era session started through the balancer continues on every edge.
    let initialize = serde_json::json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
        "params": {"protocolVersion": SESSION_ERA, "capabilities": {}, "clientInfo": {"name": "scaleout", "version": "1"}}});
    let (status, created_on, session, body) =
        session_post(&resource, &token, None, initialize).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = session.expect("a session id");
    let initialized = serde_json::json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, initialized_on, ..) =
        session_post(&resource, &token, Some(&session), initialized).await;
    assert!(status.is_success(), "initialized: {status}");

    // Its standalone GET stream opens on an edge that has not seen it yet, and carries what
    // that edge's downstream announces.
    let elsewhere = edges
        .iter()
        .find(|edge| edge.name != created_on && edge.name != initialized_on)
        .expect("a third edge");
    expect_list_changed_on_get_stream(elsewhere, &token, &session).await;
    let mut served_by = std::collections::BTreeSet::new();
    for id in 1..=9 {
        let call = serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": format!("call {id}")}}});
        let (status, edge, _, body) = session_post(&resource, &token, Some(&session), call).await;
        assert_eq!(status, StatusCode::OK, "call {id} on {edge}: {body}");
        assert!(body["result"].is_object(), "call {id} on {edge}: {body}");
        served_by.insert(edge);
    }
    assert_eq!(
        served_by.len(),
        3,
        "round-robin reached every edge: {served_by:?}"
    );

    // One rate limit across the three edges.
    let mut statuses = Vec::new();
    for _ in 0..12 {
        let response = super::oauth::call_tool(
            &resource,
            &token,
            "add",
            serde_json::json!({"a": 1, "b": 2}),
        )
        .await;
        statuses.push(response.status().as_u16());
    }
    let allowed = statuses.iter().filter(|status| **status == 200).count();
    let limited = statuses.iter().filter(|status| **status == 429).count();
    assert_eq!(
        (allowed, limited),
        (budget, 12 - budget),
        "one budget: {statuses:?}"
    );

    // Chaos: one edge is killed during load; the balancer retries elsewhere, the session
    // continues, and client-visible errors stay bounded.
    let mut load = tokio::task::JoinSet::new();
    for worker in 0..4 {
        let (resource, token, session) = (resource.clone(), token.clone(), session.clone());
        load.spawn(async move {
            let (mut ok, mut failed) = (0_u32, 0_u32);
            for call in 0..25 {
                let message = serde_json::json!({"jsonrpc": "2.0", "id": 100 + worker * 100 + call,
                    "method": "tools/call", "params": {"name": "echo", "arguments": {"text": "load"}}});
                let (status, _, _, body) = session_post(&resource, &token, Some(&session), message).await;
                if status == StatusCode::OK && body["result"].is_object() {
                    ok += 1;
                } else {
                    failed += 1;
                }
            }
            (ok, failed)
        });
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut victim = edges.remove(1);
    victim.child.start_kill().expect("kill -9 edge1");
    let _ = victim.child.wait().await;
    let (mut ok, mut failed) = (0, 0);
    for (worker_ok, worker_failed) in load.join_all().await {
        ok += worker_ok;
        failed += worker_failed;
    }
    assert!(
        failed <= 4,
        "client-visible errors while an edge died: {failed} of {}",
        ok + failed
    );
    tracing::info!(ok, failed, "load through an edge kill");

    // A decommissioned agent is refused on every surviving edge within a second.
    decommission_and_expect_refusal_on_every_edge(grpc, bundle, &token, &edges).await;
    drop(balancer);
    drop(edges);
    authz.stop().await;
}

/// Opens `session`'s standalone GET stream directly on `edge`, has that edge's downstream
/// announce a tool-list change, and expects `notifications/tools/list_changed` on the stream.
async fn expect_list_changed_on_get_stream(edge: &Replica, token: &str, session: &str) {
    let direct = format!("http://{}/v/crm/mcp", edge.addr);
    let mut stream = reqwest::Client::new()
        .get(&direct)
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", session)
        .header("mcp-protocol-version", SESSION_ERA)
        .send()
        .await
        .expect("GET stream");
    assert_eq!(
        stream.status(),
        StatusCode::OK,
        "GET stream on {}",
        edge.name
    );
    let announce = serde_json::json!({"jsonrpc": "2.0", "id": "announce", "method": "tools/call",
        "params": {"name": "announce", "arguments": {}}});
    let (status, _, _, body) = session_post(&direct, token, Some(session), announce).await;
    assert_eq!(status, StatusCode::OK, "announce on {}: {body}", edge.name);
    let mut seen = String::new();
    let heard = tokio::time::timeout(Duration::from_secs(5), async {
        while let Ok(Some(chunk)) = stream.chunk().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("notifications/tools/list_changed") {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        heard,
        Ok(true),
        "{}'s GET stream carried the announcement: {seen:?}",
        edge.name
    );
}

/// Decommissions `bundle` through AgentAdmin at `grpc` and waits until `token` is refused
/// (401) by every edge in `edges`, failing if that takes more than a second in all.
pub(super) async fn decommission_and_expect_refusal_on_every_edge(
    grpc: SocketAddr,
    bundle: String,
    token: &str,
    edges: &[Replica],
) {
    let channel = svc_kit::grpc::channel(
        &format!("http://{grpc}"),
        &svc_kit::GrpcClientConfig::default(),
    )
    .expect("channel");
    let present =
        PresentToken::new(Some(&SecretSetting::from(ADMIN_TOKEN.to_owned()))).expect("token");
    AgentAdminClient::with_interceptor(channel, present)
        .decommission_agent(pb::DecommissionAgentRequest {
            bundle_id: bundle,
            reason: "scale-out harness".to_owned(),
        })
        .await
        .expect("decommissioned");
    let started = Instant::now();
    for edge in edges {
        let direct = format!("http://{}/v/crm/mcp", edge.addr);
        let remaining = Duration::from_secs(1).saturating_sub(started.elapsed());
        until(
            &direct,
            token,
            remaining.max(Duration::from_millis(1)),
            "refused on every edge",
            |status, _| status == StatusCode::UNAUTHORIZED,
        )
        .await;
    }
}
