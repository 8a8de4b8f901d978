//! Every service replicated, on the scale-out backends, behind a real load balancer: three
//! edge-svc, two authz-svc, two vault-svc and two audit-svc processes share one PostgreSQL
//! server (a database per service, made for this test) and Redis, with HAProxy spreading MCP
//! traffic over the edges round-robin and each service's gRPC over its replicas.
//!
//! Under load from Rust session-era clients and the Python `mcp` SDK in both eras, a replica
//! of each service, picked at random, is killed with SIGKILL in turn. Afterwards every
//! answered call is in the audit log exactly once, `gatehouse audit verify` passes on the
//! shared log, client-visible errors stay bounded, one rate budget holds across the edges
//! throughout, members' expiring grants at a real provider (authlib, rotating refresh tokens)
//! were each refreshed once per cycle by the vault replicas, calls succeed again, and a
//! decommissioned agent is refused on every edge within a second.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use proto::vault::v1 as vault_pb;
use proto::vault::v1::vault_client::VaultClient;
use reqwest::StatusCode;
use serde_json::{Value, json};
use svc_kit::callers::{PresentToken, SecretSetting};
use tokio::process::{Child, Command};

use super::audit::{ECHO, reserve_port};
use super::scaleout::{
    ADMIN_TOKEN, EDGE_TOKEN, Replica, SESSION_ERA, agent_token,
    decommission_and_expect_refusal_on_every_edge, session_post, sibling_binary, succeeded, until,
    wait_listening,
};

/// Is the token authz-svc presents to audit-svc.
const AUTHZ_AUDIT_TOKEN: &str = "replicas-authz-audit-token-0123456789abcd";
/// Is the token vault-svc presents to audit-svc.
const VAULT_AUDIT_TOKEN: &str = "replicas-vault-audit-token-0123456789abcd";
/// Is the token edge presents to audit-svc.
const EDGE_AUDIT_TOKEN: &str = "replicas-edge-audit-token-0123456789abcdef";
/// Is the shared downstream credential; it must never reach a client or the audit log.
const TEAM_TOKEN: &str = "canary-replicas-team-4f9e1c";
/// Is authz-svc's master key (base64 of 32 bytes), the same for both replicas.
const AUTHZ_MASTER_KEY: &str = "cmVwbGljYXMtYXV0aHotbWFzdGVyLWtleS0wMTIzNDU=";
/// Is vault-svc's key-encryption key (`version:base64` of 32 bytes), the same for both replicas.
const VAULT_KEK: &str = "1:cmVwbGljYXMtdmF1bHQta2V5LWVuY3J5cHRpb24tazE=";
/// How many members' grants at the provider the vault replicas keep fresh through the chaos.
const GRANTS: usize = 16;
/// Is each access token's lifetime at the provider, in seconds: the first refresh (due after
/// two thirds, less jitter) lands around the vault kill, the next on the surviving replica.
const GRANT_LIFETIME: u64 = 6;
/// Bounds the whole harness so a hung replica fails the test instead of CI.
const DEADLINE: Duration = Duration::from_secs(150);

/// One PostgreSQL database made for this test, dropped at the end. Its name is made of the
/// test's process id and a port number only, so it is safe to splice into DDL.
struct Database {
    admin_url: String,
    name: String,
}

impl Database {
    async fn create(admin_url: &str, name: String) -> Self {
        let pool = Self::admin(admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&pool)
        .await
        .expect("drop a leftover database");
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&pool)
            .await
            .expect("create the database");
        pool.close().await;
        Self {
            admin_url: admin_url.to_owned(),
            name,
        }
    }

    async fn admin(admin_url: &str) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(admin_url)
            .await
            .expect("DATABASE_URL is set but PostgreSQL cannot be reached")
    }

    fn url(&self) -> String {
        let mut url = url::Url::parse(&self.admin_url).expect("DATABASE_URL");
        url.set_path(&self.name);
        url.to_string()
    }

    async fn drop(self) {
        let pool = Self::admin(&self.admin_url).await;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&pool)
        .await
        .expect("drop the database");
        pool.close().await;
    }
}

/// Where each service is reached through the balancer.
#[derive(Clone, Copy)]
struct Fronts {
    mcp: SocketAddr,
    authz_http: SocketAddr,
    authz_grpc: SocketAddr,
    vault_grpc: SocketAddr,
    audit_grpc: SocketAddr,
}

impl Fronts {
    fn reserve() -> Self {
        Self {
            mcp: reserve_port().release(),
            authz_http: reserve_port().release(),
            authz_grpc: reserve_port().release(),
            vault_grpc: reserve_port().release(),
            audit_grpc: reserve_port().release(),
        }
    }

    fn resource(&self) -> String {
        format!("http://{}/v/crm/mcp", self.mcp)
    }
}

/// Is what the harness needs to (re)start processes.
struct Harness {
    dir: PathBuf,
    fronts: Fronts,
    redis: String,
    prefix: String,
    authz_db: String,
    vault_db: String,
    audit_db: String,
}

/// Spawns a service binary with its settings in `config` (when given) and the environment,
/// logging to `log`.
fn spawn(binary: &str, log: &Path, env: &[(&str, String)], config: Option<&Path>) -> Child {
    let log = std::fs::File::create(log).expect("log file");
    let mut command = Command::new(sibling_binary(binary));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    if let Some(config) = config {
        command.arg("--config").arg(config);
    }
    command.spawn().expect(binary)
}

/// Waits until `child` listens on `addr`; if it exits first, fails with its log.
async fn ready(addr: SocketAddr, child: &mut Child, log: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        if child.try_wait().expect("child state").is_some() || Instant::now() > deadline {
            panic!(
                "{} did not listen on {addr}; its log:\n{}",
                log.display(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

impl Harness {
    /// Is the Redis key prefix the vault replicas share (their refresh locks live under it).
    fn vault_prefix(&self) -> String {
        format!("{}vault:", self.prefix)
    }

    async fn audit(&self, index: usize) -> Replica {
        let addr = reserve_port().release();
        let data = self.dir.join(format!("audit{index}"));
        let log = self.dir.join(format!("audit{index}.log"));
        let mut child = spawn(
            "audit-svc",
            &log,
            &[
                ("GATEHOUSE_AUDIT__GRPC__LISTEN_ADDR", addr.to_string()),
                ("GATEHOUSE_AUDIT__DATA_DIR", data.display().to_string()),
                (
                    "GATEHOUSE_AUDIT__STORE__POSTGRES_URL",
                    self.audit_db.clone(),
                ),
                (
                    "GATEHOUSE_AUDIT__CHECKPOINT__KEY_FILE",
                    self.dir.join("checkpoint.key").display().to_string(),
                ),
                ("GATEHOUSE_AUDIT__CHECKPOINT__INTERVAL", "1s".to_owned()),
                (
                    "GATEHOUSE_AUDIT__CALLERS__EDGE_TOKEN",
                    EDGE_AUDIT_TOKEN.into(),
                ),
                (
                    "GATEHOUSE_AUDIT__CALLERS__AUTHZ_TOKEN",
                    AUTHZ_AUDIT_TOKEN.into(),
                ),
                (
                    "GATEHOUSE_AUDIT__CALLERS__VAULT_TOKEN",
                    VAULT_AUDIT_TOKEN.into(),
                ),
            ],
            None,
        );
        ready(addr, &mut child, &log).await;
        Replica {
            name: format!("audit{index}"),
            addr,
            child,
        }
    }

    async fn authz(&self, index: usize) -> (Replica, SocketAddr) {
        let (grpc, http) = (reserve_port().release(), reserve_port().release());
        let config = self.dir.join(format!("authz{index}.toml"));
        std::fs::write(
            &config,
            format!(
                "[grpc]\nlisten_addr = \"{grpc}\"\n\
                 [callers]\nedge_token = \"{EDGE_TOKEN}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n\
                 [oauth]\nlisten_addr = \"{http}\"\nissuer = \"http://{issuer}\"\n\
                 [[oauth.resources]]\nname = \"crm\"\nurl = \"{resource}\"\n\
                 [store]\ndata_dir = \"{data}\"\npostgres_url = \"{db}\"\n\
                 [authorization]\nallow_insecure_http = true\n\
                 [audit]\nurl = \"http://{audit}\"\ntoken = \"{AUTHZ_AUDIT_TOKEN}\"\n",
                issuer = self.fronts.authz_http,
                resource = self.fronts.resource(),
                data = self.dir.join(format!("authz{index}")).display(),
                db = self.authz_db,
                audit = self.fronts.audit_grpc,
            ),
        )
        .expect("authz config");
        let log = self.dir.join(format!("authz{index}.log"));
        let mut child = spawn(
            "authz-svc",
            &log,
            &[("GATEHOUSE_AUTHZ_MASTER_KEY", AUTHZ_MASTER_KEY.into())],
            Some(&config),
        );
        ready(grpc, &mut child, &log).await;
        ready(http, &mut child, &log).await;
        (
            Replica {
                name: format!("authz{index}"),
                addr: grpc,
                child,
            },
            http,
        )
    }

    async fn vault(&self, index: usize) -> Replica {
        let addr = reserve_port().release();
        let log = self.dir.join(format!("vault{index}.log"));
        let mut child = spawn(
            "vault-svc",
            &log,
            &[
                ("GATEHOUSE_VAULT__GRPC__LISTEN_ADDR", addr.to_string()),
                (
                    "GATEHOUSE_VAULT__DATA_DIR",
                    self.dir.join(format!("vault{index}")).display().to_string(),
                ),
                ("GATEHOUSE_VAULT__TENANT", "acme".into()),
                (
                    "GATEHOUSE_VAULT__STORE__POSTGRES_URL",
                    self.vault_db.clone(),
                ),
                ("GATEHOUSE_VAULT__KEK__ENV_VAR", "REPLICAS_KEK".into()),
                ("REPLICAS_KEK", VAULT_KEK.into()),
                ("GATEHOUSE_VAULT__REFRESH__REDIS_URL", self.redis.clone()),
                (
                    "GATEHOUSE_VAULT__REFRESH__REDIS_KEY_PREFIX",
                    self.vault_prefix(),
                ),
                ("GATEHOUSE_VAULT__REFRESH__POLL_INTERVAL", "100ms".into()),
                ("GATEHOUSE_VAULT__REFRESH__LOCK_TTL", "2s".into()),
                ("GATEHOUSE_VAULT__REFRESH__HTTP_TIMEOUT", "800ms".into()),
                ("GATEHOUSE_VAULT__CALLERS__EDGE_TOKEN", EDGE_TOKEN.into()),
                ("GATEHOUSE_VAULT__CALLERS__ADMIN_TOKEN", ADMIN_TOKEN.into()),
                (
                    "GATEHOUSE_VAULT__CONNECTORS__TEAM__CREDENTIAL",
                    "shared".into(),
                ),
                (
                    "GATEHOUSE_VAULT__AUDIT__ENDPOINT",
                    format!("http://{}", self.fronts.audit_grpc),
                ),
                ("GATEHOUSE_VAULT__AUDIT__TOKEN", VAULT_AUDIT_TOKEN.into()),
            ],
            None,
        );
        ready(addr, &mut child, &log).await;
        Replica {
            name: format!("vault{index}"),
            addr,
            child,
        }
    }

    /// Starts edge `index` on its own spool directory (kept across restarts, as a volume).
    async fn edge(&self, index: usize) -> Replica {
        let addr = reserve_port().release();
        let config = self.dir.join(format!("edge{index}.toml"));
        std::fs::write(
            &config,
            format!(
                "listen_addr = \"{addr}\"\npublic_url = \"http://{public}\"\ngateway = \"{gateway}\"\n\
                 [authz]\nendpoint = \"http://{authz_grpc}\"\nservice_token_env = \"REPLICAS_EDGE_TOKEN\"\n\
                 issuer = \"http://{authz_http}\"\nrevocation_staleness = \"5s\"\n\
                 [vault]\nendpoint = \"http://{vault}\"\nservice_token_env = \"REPLICAS_EDGE_TOKEN\"\n\
                 [audit]\nendpoint = \"http://{audit}\"\nspool_dir = \"{spool}\"\n\
                 instance_id = \"edge{index}\"\ntoken = \"{EDGE_AUDIT_TOKEN}\"\n\
                 [sessions]\nredis_url_env = \"REDIS_URL\"\nkey_prefix = \"{prefix}session:\"\n",
                public = self.fronts.mcp,
                gateway = self.dir.join("gateway.yaml").display(),
                authz_grpc = self.fronts.authz_grpc,
                authz_http = self.fronts.authz_http,
                vault = self.fronts.vault_grpc,
                audit = self.fronts.audit_grpc,
                spool = self.dir.join(format!("spool{index}")).display(),
                prefix = self.prefix,
            ),
        )
        .expect("edge config");
        let log = self.dir.join(format!("edge{index}.log"));
        let mut child = spawn(
            "edge-svc",
            &log,
            &[
                ("REPLICAS_EDGE_TOKEN", EDGE_TOKEN.into()),
                ("REDIS_URL", self.redis.clone()),
            ],
            Some(&config),
        );
        ready(addr, &mut child, &log).await;
        Replica {
            name: format!("edge{index}"),
            addr,
            child,
        }
    }
}

/// Starts HAProxy: MCP over HTTP round-robin across the edges (naming the edge that answered
/// in `x-gatehouse-edge`, retrying a refused connection elsewhere), the authorization
/// server's HTTP face, and each service's gRPC as TCP (a connection sticks to one replica
/// until it dies; the client then reconnects to a live one).
async fn balancer(
    binary: &str,
    dir: &Path,
    fronts: Fronts,
    pools: &BTreeMap<&str, Vec<SocketAddr>>,
) -> Replica {
    let servers = |pool: &str| -> String {
        pools[pool]
            .iter()
            .enumerate()
            .map(|(index, addr)| {
                format!("  server {pool}{index} {addr} check inter 200ms fall 1 rise 2\n")
            })
            .collect()
    };
    let config = dir.join("haproxy.cfg");
    std::fs::write(
        &config,
        format!(
            "global\n  maxconn 1024\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 60s\n  timeout server 60s\n  retries 3\n  option redispatch 1\n\
             frontend mcp\n  bind {mcp}\n  default_backend edge\n\
             backend edge\n  balance roundrobin\n  http-response set-header x-gatehouse-edge %[srv_name]\n{edge}\
             frontend authz_http\n  bind {authz_http}\n  default_backend authz_http\n\
             backend authz_http\n  balance roundrobin\n{authz_http_servers}\
             frontend authz_grpc\n  mode tcp\n  bind {authz_grpc}\n  default_backend authz_grpc\n\
             backend authz_grpc\n  mode tcp\n  balance roundrobin\n{authz_grpc_servers}\
             frontend vault_grpc\n  mode tcp\n  bind {vault_grpc}\n  default_backend vault_grpc\n\
             backend vault_grpc\n  mode tcp\n  balance roundrobin\n{vault_grpc_servers}\
             frontend audit_grpc\n  mode tcp\n  bind {audit_grpc}\n  default_backend audit_grpc\n\
             backend audit_grpc\n  mode tcp\n  balance roundrobin\n{audit_grpc_servers}",
            mcp = fronts.mcp,
            edge = servers("edge"),
            authz_http = fronts.authz_http,
            authz_http_servers = servers("authz_http"),
            authz_grpc = fronts.authz_grpc,
            authz_grpc_servers = servers("authz_grpc"),
            vault_grpc = fronts.vault_grpc,
            vault_grpc_servers = servers("vault_grpc"),
            audit_grpc = fronts.audit_grpc,
            audit_grpc_servers = servers("audit_grpc"),
        ),
    )
    .expect("haproxy config");
    let mut child = Command::new(binary)
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
    for front in [
        fronts.mcp,
        fronts.authz_http,
        fronts.authz_grpc,
        fronts.vault_grpc,
        fronts.audit_grpc,
    ] {
        wait_listening(front, &mut child).await;
    }
    Replica {
        name: "haproxy".to_owned(),
        addr: fronts.mcp,
        child,
    }
}

/// What one Rust load worker saw: its session and the JSON-RPC ids of its answered calls.
struct Worker {
    session: String,
    answered: Vec<String>,
    failed: u32,
}

/// Calls `echo` in one session-era session until `stop`, each call with a unique id; a call
/// counts as answered only when it comes back with the echoed text.
async fn rust_worker(
    resource: String,
    token: String,
    worker: usize,
    stop: tokio_util::sync::CancellationToken,
) -> Worker {
    let initialize = json!({"jsonrpc": "2.0", "id": format!("w{worker}-init"), "method": "initialize",
        "params": {"protocolVersion": SESSION_ERA, "capabilities": {},
                   "clientInfo": {"name": "replicas-rust", "version": "1"}}});
    let (status, _, session, body) = session_post(&resource, &token, None, initialize).await;
    assert_eq!(status, StatusCode::OK, "initialize: {body}");
    let session = session.expect("a session id");
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    let (status, ..) = session_post(&resource, &token, Some(&session), initialized).await;
    assert!(status.is_success(), "initialized: {status}");
    let (mut answered, mut failed) = (Vec::new(), 0);
    let mut call = 0;
    while !stop.is_cancelled() {
        call += 1;
        let id = format!("w{worker}-{call}");
        let text = format!("replicas {id}");
        let message = json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": "echo", "arguments": {"text": text}}});
        let (status, _, _, body) = session_post(&resource, &token, Some(&session), message).await;
        let echoed = body["result"]["content"][0]["text"].as_str() == Some(text.as_str());
        if status == StatusCode::OK && echoed {
            answered.push(id);
        } else {
            failed += 1;
        }
    }
    Worker {
        session,
        answered,
        failed,
    }
}

/// Is the rate budget of `add` for the whole virtual server, shared by every edge through Redis.
const LIMITED_BUDGET: u32 = 8;

/// What the rate-limited worker saw: calls allowed, refused with 429, and failed otherwise.
#[derive(Debug, Default)]
struct Limits {
    allowed: u32,
    limited: u32,
    failed: u32,
}

/// Calls `add` statelessly through the balancer until `stop`, spreading the calls over every
/// edge, and counts how many the shared budget let through.
async fn limited_worker(
    resource: String,
    token: String,
    stop: tokio_util::sync::CancellationToken,
) -> Limits {
    let mut limits = Limits::default();
    while !stop.is_cancelled() {
        let call = super::oauth::call_tool(&resource, &token, "add", json!({"a": 1, "b": 2}));
        match tokio::time::timeout(Duration::from_secs(10), call).await {
            Ok(response) if response.status() == StatusCode::OK => limits.allowed += 1,
            Ok(response) if response.status() == StatusCode::TOO_MANY_REQUESTS => {
                limits.limited += 1;
            }
            _ => limits.failed += 1,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    limits
}

/// The Python SDK load client, under way.
struct PythonLoad {
    mode: &'static str,
    child: Child,
    stdout: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl PythonLoad {
    /// Starts the client in `mode`, calling until `stop` exists, and waits for its first
    /// answered call.
    async fn start(python: &str, url: &str, token: &str, mode: &'static str, stop: &Path) -> Self {
        use tokio::io::AsyncBufReadExt as _;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scaleout/py_load.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--mode", mode, "--stop"])
            .arg(stop)
            .arg(url)
            .env("SCALEOUT_TOKEN", token)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("python load client");
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("python {mode} answered no call within 60 s"))
            .expect("python stdout");
        assert_eq!(first.as_deref(), Some("ready"), "python {mode}");
        Self {
            mode,
            child,
            stdout,
        }
    }

    /// Waits for the client to stop (each call it makes is bounded by 10 s) and returns
    /// (answered, failed).
    async fn finish(mut self) -> (u64, u64) {
        let line = tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("python {} did not stop within 30 s", self.mode))
            .expect("python stdout");
        let status = self.child.wait().await.expect("python exit");
        let report: Value = line
            .as_deref()
            .and_then(|line| serde_json::from_str(line).ok())
            .unwrap_or_else(|| panic!("python {} printed no counts: {line:?}", self.mode));
        assert!(status.success(), "python {}: {report}", self.mode);
        let (ok, failed) = (
            report["ok"].as_u64().unwrap_or(0),
            report["failed"].as_u64().unwrap_or(0),
        );
        assert!(
            failed <= 8,
            "python {}: bounded errors through the kills: {report}",
            self.mode
        );
        (ok, failed)
    }
}

/// Which replica of each service the chaos kills: two audit, two authz, two vault, three edges.
struct Victims {
    audit: usize,
    authz: usize,
    vault: usize,
    edge: usize,
}

impl Victims {
    /// Picks each at random: std's randomly keyed SipHash over the clock and the process id.
    fn pick() -> Self {
        use std::hash::{BuildHasher as _, Hasher as _};
        let keys = std::collections::hash_map::RandomState::new();
        let pick = |service: &str, replicas: u64| {
            let mut hasher = keys.build_hasher();
            hasher.write(service.as_bytes());
            hasher.write_u32(std::process::id());
            hasher.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |since| since.as_nanos()),
            );
            usize::try_from(hasher.finish() % replicas).expect("a small index")
        };
        Self {
            audit: pick("audit", 2),
            authz: pick("authz", 2),
            vault: pick("vault", 2),
            edge: pick("edge", 3),
        }
    }
}

/// Kills a replica with SIGKILL and waits for it to be gone.
async fn kill(replica: &mut Replica) {
    replica.child.start_kill().expect("kill -9");
    let _ = replica.child.wait().await;
    tracing::info!(replica = %replica.name, "killed");
}

/// Runs the `gatehouse` CLI against the shared audit log.
async fn gatehouse_audit(harness: &Harness, args: &[&str]) -> std::process::Output {
    Command::new(sibling_binary("gatehouse"))
        .arg("audit")
        .args(args)
        .arg("--data")
        .arg(harness.dir.join("audit0"))
        .env("GATEHOUSE_AUDIT__STORE__POSTGRES_URL", &harness.audit_db)
        .env(
            "GATEHOUSE_AUDIT__CHECKPOINT__KEY_FILE",
            harness.dir.join("checkpoint.key"),
        )
        .output()
        .await
        .expect("gatehouse audit")
}

/// Returns every recorded event the `gatehouse audit search` filter `filter` selects.
async fn recorded_events(harness: &Harness, filter: &[&str]) -> Vec<Value> {
    let mut events = Vec::new();
    let mut page_token = String::new();
    loop {
        let mut args = vec!["search", "--limit", "1000", "--page-token", &page_token];
        args.extend_from_slice(filter);
        let output = gatehouse_audit(harness, &args).await;
        assert!(
            output.status.success(),
            "audit search: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let page: Value = serde_json::from_slice(&output.stdout).expect("search json");
        events.extend(page["events"].as_array().into_iter().flatten().cloned());
        match page["next_page_token"].as_str() {
            Some(next) if !next.is_empty() => page_token = next.to_owned(),
            _ => return events,
        }
    }
}

/// Returns every recorded `tools/call` event of `crm` as (session, JSON-RPC id) → outcomes.
async fn recorded_calls(harness: &Harness) -> BTreeMap<(String, String), Vec<Value>> {
    let mut calls: BTreeMap<(String, String), Vec<Value>> = BTreeMap::new();
    for event in recorded_events(harness, &["--virtual-server", "crm"]).await {
        let metadata = &event["event"]["metadata"];
        if metadata["mcpMethod"] != "tools/call" {
            continue;
        }
        let key = (
            metadata["mcpSessionId"].as_str().unwrap_or("").to_owned(),
            metadata["jsonrpcId"].as_str().unwrap_or("").to_owned(),
        );
        calls.entry(key).or_default().push(event);
    }
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_service_replicated_survives_kill_9_of_one_replica_of_each_under_load() {
    let (Ok(database), Ok(redis), Ok(haproxy), Ok(python)) = (
        std::env::var("DATABASE_URL"),
        std::env::var("REDIS_URL"),
        std::env::var("GATEHOUSE_HAPROXY"),
        std::env::var("GATEHOUSE_INTEROP_PYTHON"),
    ) else {
        eprintln!(
            "SKIPPED: DATABASE_URL, REDIS_URL, GATEHOUSE_HAPROXY or GATEHOUSE_INTEROP_PYTHON is not \
             set (tests/run.sh sets all four); the replicated-services harness did not run"
        );
        return;
    };
    tokio::time::timeout(DEADLINE, harness(&database, &redis, &haproxy, &python))
        .await
        .expect("the replicated harness finished within its deadline");
}

/// Says how far the harness got, on stderr: a run that misses its deadline shows its last stage.
struct Progress(Instant);

impl Progress {
    fn stage(&self, what: &str) {
        eprintln!("replicas: {:6.1} s  {what}", self.0.elapsed().as_secs_f64());
    }
}

async fn harness(database: &str, redis: &str, haproxy: &str, python: &str) {
    let progress = Progress(Instant::now());
    let dir = tempfile::tempdir().expect("dir");
    let fronts = Fronts::reserve();
    let tag = format!("gh_replicas_{}_{}", std::process::id(), fronts.mcp.port());
    let databases = [
        Database::create(database, format!("{tag}_authz")).await,
        Database::create(database, format!("{tag}_vault")).await,
        Database::create(database, format!("{tag}_audit")).await,
    ];
    let harness = Harness {
        dir: dir.path().to_path_buf(),
        fronts,
        redis: redis.to_owned(),
        prefix: format!("gatehouse:e2e:{tag}:"),
        authz_db: databases[0].url(),
        vault_db: databases[1].url(),
        audit_db: databases[2].url(),
    };

    // The downstream accepts only the team's credential, which only vault-svc holds.
    let accepted = dir.path().join("accepted-tokens");
    std::fs::write(&accepted, TEAM_TOKEN).expect("accepted tokens");
    let mut echo = Command::new(ECHO);
    echo.args(["http", "--listen", "127.0.0.1:0", "--accept-tokens"])
        .arg(&accepted);
    let downstream = super::connector::UrlServer::start(echo).await;
    std::fs::write(
        dir.path().join("gateway.yaml"),
        format!(
            "connectors:\n  - name: team\n    http: {{url: \"{}\"}}\n    credentials: {{mode: shared}}\n\
             virtual_servers:\n  - name: crm\n    auth: oauth\n    connectors: [{{connector: team, prefix: \"\"}}]\n\
             rate_limits:\n  backend: {{redis: {{url: \"{redis}\", key_prefix: \"{prefix}limit:\"}}}}\n  \
             rules: [{{name: add-total, per: virtual_server, tool: add, rate: 1/hour, burst: {LIMITED_BUDGET}}}]\n",
            downstream.url,
            redis = harness.redis,
            prefix = harness.prefix,
        ),
    )
    .expect("gateway yaml");

    // Audit first (the others append to it), one replica at a time so the first creates the
    // shared checkpoint key; then authz and vault; the edges last.
    progress.stage("databases and downstream ready; starting replicas");
    let mut audit = vec![harness.audit(0).await, harness.audit(1).await];
    let mut authz = Vec::new();
    let mut authz_http = Vec::new();
    for index in 0..2 {
        let (replica, http) = harness.authz(index).await;
        authz.push(replica);
        authz_http.push(http);
    }
    let mut vault = vec![harness.vault(0).await, harness.vault(1).await];
    let mut edges = Vec::new();
    for index in 0..3 {
        edges.push(harness.edge(index).await);
    }
    let pools = BTreeMap::from([
        ("edge", edges.iter().map(|edge| edge.addr).collect()),
        ("authz_http", authz_http.clone()),
        (
            "authz_grpc",
            authz.iter().map(|replica| replica.addr).collect(),
        ),
        (
            "vault_grpc",
            vault.iter().map(|replica| replica.addr).collect(),
        ),
        (
            "audit_grpc",
            audit.iter().map(|replica| replica.addr).collect(),
        ),
    ]);
    progress.stage("9 replicas started; starting the balancer");
    let lb = balancer(haproxy, dir.path(), fronts, &pools).await;

    // The administrator stores the team credential through the balanced vault API.
    let channel = svc_kit::grpc::channel(
        &format!("http://{}", fronts.vault_grpc),
        &svc_kit::GrpcClientConfig::default(),
    )
    .expect("vault channel");
    let admin =
        PresentToken::new(Some(&SecretSetting::from(ADMIN_TOKEN.to_owned()))).expect("token");
    let mut balanced_vault = VaultClient::with_interceptor(channel, admin);
    let request = vault_pb::SetSharedCredentialRequest {
        connector: "team".to_owned(),
        secret: Some(vault_pb::set_shared_credential_request::Secret::Material(
            vault_pb::CredentialMaterial {
                kind: Some(vault_pb::credential_material::Kind::Bearer(
                    vault_pb::BearerToken {
                        token: Some(proto::common::v1::Secret {
                            value: TEAM_TOKEN.to_owned(),
                        }),
                    },
                )),
            },
        )),
        description: "team account".to_owned(),
        ..Default::default()
    };
    // Setting it is idempotent, and the balancer may reset a connection while its first health
    // checks settle on a loaded box, as any client's first call would meet: try again briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match balanced_vault.set_shared_credential(request.clone()).await {
            Err(status) if status.code() == tonic::Code::Unknown && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            stored => {
                stored.expect("shared credential stored");
                break;
            }
        }
    }

    progress.stage("shared credential stored");
    let resource = fronts.resource();
    let (token, bundle) =
        agent_token(fronts.authz_grpc, fronts.authz_http, "load", &resource).await;
    for edge in &edges {
        let direct = format!("http://{}/v/crm/mcp", edge.addr);
        let ready = until(
            &direct,
            &token,
            Duration::from_secs(10),
            "edge ready",
            succeeded,
        );
        // An edge that never answers says why only in its log: show it with the failure.
        if let Err(failure) = std::panic::AssertUnwindSafe(ready).catch_unwind().await {
            let log = dir.path().join(format!("{}.log", edge.name));
            eprintln!(
                "{}:\n{}",
                log.display(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::panic::resume_unwind(failure);
        }
    }

    let grants = Grants::store(&harness).await;
    progress.stage("every edge answers; members' grants stored; starting the load");
    // Load: three Rust session-era workers and the Python SDK in both eras.
    let stop = tokio_util::sync::CancellationToken::new();
    let stop_file = dir.path().join("stop-python");
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..3 {
        workers.spawn(rust_worker(
            resource.clone(),
            token.clone(),
            worker,
            stop.clone(),
        ));
    }
    let limited = tokio::spawn(limited_worker(
        resource.clone(),
        token.clone(),
        stop.clone(),
    ));
    let mut pythons = Vec::new();
    for mode in ["modern", "legacy"] {
        pythons.push(PythonLoad::start(python, &resource, &token, mode, &stop_file).await);
    }

    // Chaos: a replica of each service, picked at random, dies in turn while the load runs.
    let victim = Victims::pick();
    progress.stage(&format!(
        "load under way; killing audit{}, authz{}, vault{} and edge{}",
        victim.audit, victim.authz, victim.vault, victim.edge
    ));
    let pause = Duration::from_millis(1500);
    tokio::time::sleep(pause).await;
    kill(&mut audit[victim.audit]).await;
    tokio::time::sleep(pause).await;
    kill(&mut authz[victim.authz]).await;
    tokio::time::sleep(pause).await;
    kill_between_refreshes(
        &mut vault[victim.vault],
        &harness.redis,
        &harness.vault_prefix(),
    )
    .await;
    tokio::time::sleep(pause).await;
    kill(&mut edges[victim.edge]).await;
    tokio::time::sleep(pause).await;
    stop.cancel();
    std::fs::write(&stop_file, "").expect("stop file");

    progress.stage("load stopped; waiting for the clients");
    let mut expected: BTreeSet<(String, String)> = BTreeSet::new();
    let mut failed = 0;
    for worker in workers.join_all().await {
        failed += worker.failed;
        expected.extend(
            worker
                .answered
                .into_iter()
                .map(|id| (worker.session.clone(), id)),
        );
    }
    let mut python_ok = 0;
    for python in pythons {
        let (ok, errors) = python.finish().await;
        python_ok += ok;
        failed += u32::try_from(errors).unwrap_or(u32::MAX);
    }
    let answered = expected.len();
    assert!(answered > 0, "the Rust workers got answers");
    let limits = limited.await.expect("rate-limited worker");
    assert!(
        limits.allowed <= LIMITED_BUDGET
            && limits.allowed + limits.failed >= LIMITED_BUDGET
            && limits.limited > 0,
        "one budget of {LIMITED_BUDGET} across the edges while replicas died: {limits:?}"
    );
    assert!(
        failed <= 24,
        "client-visible errors while a replica of each service died: {failed} of {}",
        answered + usize::try_from(python_ok).unwrap_or(0)
    );

    progress.stage("clients done; calling through the survivors");
    // Every service still answers through its surviving replicas.
    for _ in 0..6 {
        let response =
            super::oauth::call_tool(&resource, &token, "echo", json!({"text": "after"})).await;
        assert_eq!(response.status(), StatusCode::OK, "a call after the kills");
    }

    // The killed edge comes back on its spool (a volume) and delivers what it had answered.
    progress.stage("restarting the killed edge");
    edges[victim.edge] = harness.edge(victim.edge).await;
    progress.stage("reading the audit log back");

    // Every answered call is recorded exactly once, allowed, and the shared log verifies.
    let started = Instant::now();
    let missing = loop {
        let recorded = recorded_calls(&harness).await;
        let missing: Vec<_> = expected
            .iter()
            .filter(|key| !recorded.contains_key(*key))
            .cloned()
            .collect();
        for key in &expected {
            if let Some(events) = recorded.get(key) {
                assert_eq!(events.len(), 1, "recorded once: {key:?} {events:?}");
                let shown = events[0].to_string();
                assert!(
                    !shown.contains(TEAM_TOKEN) && !shown.contains(&token),
                    "no secret in {shown}"
                );
            }
        }
        if missing.is_empty() || started.elapsed() > Duration::from_secs(30) {
            break missing;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    if !missing.is_empty() {
        let recorded = recorded_calls(&harness).await;
        panic!(
            "{} of {answered} answered calls are missing from the audit log, e.g. {:?}; recorded \
             {} calls, e.g. {:?}",
            missing.len(),
            missing.iter().take(3).collect::<Vec<_>>(),
            recorded.len(),
            recorded.iter().take(2).collect::<Vec<_>>()
        );
    }
    progress.stage("every answered call recorded once; verifying the log");
    let verify = gatehouse_audit(&harness, &["verify"]).await;
    assert!(
        verify.status.success(),
        "gatehouse audit verify on the shared log: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    progress.stage("log verified; checking the members' grants");
    let refreshed = grants.expect_each_refreshed_once_per_cycle().await;
    let log = recorded_events(&harness, &[]).await;
    let log = serde_json::to_string(&log).expect("log text");
    for token in grants.issued_tokens().await {
        assert!(
            !log.contains(&token),
            "a provider token reached the audit log"
        );
    }

    // A decommissioned agent is refused on every live edge within a second, through the
    // surviving authz replica.
    progress.stage(&format!("{refreshed}; decommissioning the agent"));
    decommission_and_expect_refusal_on_every_edge(fronts.authz_grpc, bundle, &token, &edges).await;
    progress.stage("refused on every edge; stopping");
    tracing::info!(answered, python_ok, failed, "replicated harness");

    drop(lb);
    drop(edges);
    drop(vault);
    drop(authz);
    drop(audit);
    downstream.stop().await;
    grants.provider.stop().await;
    drop(grants.vault);
    for database in databases {
        database.drop().await;
    }
}

/// Members' grants at a real provider (authlib: rotating refresh tokens, and a refresh token
/// redeemed twice revokes its grant), stored in the shared vault database as each member's
/// consent would have stored them, for the vault replicas to keep fresh.
struct Grants {
    provider: super::connector::UrlServer,
    /// Reads the shared store as one more vault-svc would, without running a refresh engine.
    vault: vault_svc::Vault,
    members: Vec<String>,
    stored: Instant,
    http: reqwest::Client,
}

impl Grants {
    async fn store(harness: &Harness) -> Self {
        let provider = super::credentials::provider(GRANT_LIFETIME)
            .await
            .expect("the interop Python runs the provider");
        let http = reqwest::Client::new();
        let lifetime = i64::try_from(GRANT_LIFETIME).expect("seconds") * 1_000_000;
        let expires_at = vault_svc::credential::now_micros() + lifetime;
        let seeded: Value = http
            .post(format!("{}/admin/seed", provider.url))
            .json(&json!({"count": GRANTS, "prefix": "member"}))
            .send()
            .await
            .expect("seed")
            .json()
            .await
            .expect("seeded grants");
        let store = vault_svc::store::PostgresStore::connect(&harness.vault_db)
            .await
            .expect("the vault replicas' store");
        let keyring =
            vault_svc::crypto::LocalKeyring::from_env_value(VAULT_KEK).expect("the shared KEK");
        let consent = vault_svc::ConsentIssuer::new(
            "http://127.0.0.1:9/vault",
            Duration::from_secs(60),
            Duration::from_secs(5),
        )
        .expect("consent");
        let connector = vault_svc::ConnectorConfig {
            credential: vault_svc::CredentialMode::PerMember,
            oauth: Some(vault_svc::OAuthProviderConfig {
                client_id: "vault-client".to_owned(),
                client_secret: Some("vault-client-secret".to_owned().into()),
                authorization_endpoint: Some(format!("{}/authorize", provider.url)),
                token_endpoint: Some(format!("{}/token", provider.url)),
                resource: None,
                scopes: vec!["read".to_owned()],
                revocation_endpoint: None,
            }),
            api_key: None,
            rotation: None,
        };
        let vault = vault_svc::Vault::new(
            "acme".to_owned(),
            std::sync::Arc::new(store),
            vault_svc::crypto::Envelope::new(std::sync::Arc::new(keyring)),
            BTreeMap::from([("personal".to_owned(), connector)]),
            std::sync::Arc::new(vault_svc::event::LogSink),
            consent,
        );
        let mut members = Vec::new();
        for grant in seeded["grants"].as_array().expect("grants") {
            let member = grant["user"].as_str().expect("user").to_owned();
            let secret = |field: &str| {
                vault_svc::secret::SecretText::from(grant[field].as_str().expect("token"))
            };
            let material =
                vault_svc::credential::Material::OauthGrant(vault_svc::credential::OAuthGrant {
                    access_token: secret("access_token"),
                    refresh_token: Some(secret("refresh_token")),
                    token_endpoint: format!("{}/token", provider.url),
                    client_id: "vault-client".to_owned(),
                    client_secret: Some(vault_svc::secret::SecretText::from("vault-client-secret")),
                    resource: None,
                    revocation_endpoint: None,
                });
            vault
                .store_credential(
                    "personal",
                    vault_svc::secret::Owner::Member(member.clone()),
                    &material,
                    Some(expires_at),
                    String::new(),
                )
                .await
                .expect("grant stored");
            members.push(member);
        }
        Self {
            provider,
            vault,
            members,
            stored: Instant::now(),
            http,
        }
    }

    /// Reads one of the provider's admin documents (`stats`, `tokens`).
    async fn admin(&self, document: &str) -> Value {
        self.http
            .get(format!("{}/admin/{document}", self.provider.url))
            .send()
            .await
            .expect(document)
            .json()
            .await
            .expect(document)
    }

    /// Waits until every grant was refreshed twice (the first refresh falls around the vault
    /// kill, the second on the survivor), then checks that no refresh token was ever redeemed
    /// twice, no grant was revoked, none was refreshed more often than its schedule, and each
    /// member's credential as the vault releases it is accepted by the provider. Returns a
    /// summary of the provider's counts.
    async fn expect_each_refreshed_once_per_cycle(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(30);
        let stats = loop {
            let stats = self.admin("stats").await;
            let counts: Vec<u64> = stats["refreshes"]
                .as_object()
                .into_iter()
                .flat_map(|counts| counts.values().filter_map(Value::as_u64))
                .collect();
            if counts.len() == GRANTS && counts.iter().all(|count| *count >= 2) {
                break stats;
            }
            assert!(
                Instant::now() < deadline,
                "every grant refreshed twice within 30 s: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            stats["reuse_detected"], 0,
            "a refresh token redeemed twice: {stats}"
        );
        assert_eq!(stats["revoked_grants"], 0, "a grant revoked: {stats}");
        // Refreshes come at least two thirds of a lifetime, less 10 % jitter, apart.
        let shortest = GRANT_LIFETIME as f64 * (2.0 / 3.0 - 0.1);
        let most = (self.stored.elapsed().as_secs_f64() / shortest).floor() as u64 + 1;
        let counts = stats["refreshes"].as_object().expect("refreshes");
        assert!(
            counts.values().all(|count| count.as_u64() <= Some(most)),
            "a grant refreshed more than {most} times: {stats}"
        );
        let total: u64 = counts.values().filter_map(Value::as_u64).sum();
        let summary = format!(
            "{} grants refreshed {total} times in {:.1} s (each at most {most}), {} after expiry, \
             none reused",
            counts.len(),
            self.stored.elapsed().as_secs_f64(),
            stats["late_refreshes"]
        );
        for member in &self.members {
            let query = vault_svc::CredentialQuery {
                member_id: Some(member.clone()),
                connector: "personal".to_owned(),
                ..vault_svc::CredentialQuery::default()
            };
            let vault_svc::CredentialOutcome::Released(released) = self
                .vault
                .get_credential(&query)
                .await
                .expect("the member's credential")
            else {
                panic!("{member}'s grant is connected");
            };
            let vault_svc::credential::Material::Bearer { token } = released.material else {
                panic!("{member}'s grant is released as a bearer token");
            };
            let whoami: Value = self
                .http
                .get(format!("{}/whoami", self.provider.url))
                .bearer_auth(token.expose())
                .send()
                .await
                .expect("whoami")
                .json()
                .await
                .expect("whoami json");
            assert_eq!(
                whoami["user"].as_str(),
                Some(member.as_str()),
                "the provider accepts {member}'s current token: {whoami}"
            );
        }
        summary
    }

    /// Returns every access and refresh token the provider issued, for the canary check.
    async fn issued_tokens(&self) -> Vec<String> {
        self.admin("tokens").await["tokens"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect()
    }
}

/// SIGKILLs a vault replica at a moment it holds no refresh lock: it is stopped (SIGSTOP)
/// until a look at the shared locks finds none of its own. A SIGKILL while a token request
/// is in flight can lose the provider's answer, which no client can fence (the provider then
/// sees the next redemption of that refresh token as reuse); every such request runs under a
/// held lock, so a stopped replica holding none has nothing in flight.
async fn kill_between_refreshes(replica: &mut Replica, redis: &str, prefix: &str) {
    use nix::sys::signal::{Signal, kill as signal};
    let id = replica.child.id().expect("a running replica");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(id).expect("pid"));
    let mut locks = redis::Client::open(redis)
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let own = format!("{id}:");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        signal(pid, Signal::SIGSTOP).expect("kill -STOP");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}lock:*"))
            .query_async(&mut locks)
            .await
            .expect("lock keys");
        let mut holds = false;
        for key in keys {
            let holder: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut locks)
                .await
                .expect("lock holder");
            holds |= holder.is_some_and(|holder| holder.starts_with(&own));
        }
        if !holds {
            break;
        }
        signal(pid, Signal::SIGCONT).expect("kill -CONT");
        assert!(
            Instant::now() < deadline,
            "{} never stopped holding refresh locks",
            replica.name
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    kill(replica).await;
}
