//! The audit trail end to end: every decided call reaches audit-svc in order, nothing answered
//! is lost when audit-svc is away or the whole gateway is killed, and a full spool fails closed.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_svc::audit::{AuditConfig, Recorder};
use edge_svc::config::HttpFace;
use edge_svc::{Gateway, GatewaySpec};
use nix::sys::signal::{Signal, kill as signal};
use nix::unistd::Pid;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use svc_kit::callers::SecretSetting;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub(super) const ECHO: &str = env!("CARGO_BIN_EXE_mcp-echo");

pub(super) fn echo_dir() -> String {
    Path::new(ECHO)
        .parent()
        .expect("binary dir")
        .display()
        .to_string()
}

pub(super) fn spec_yaml() -> String {
    let dir = echo_dir();
    spec_yaml_over(&format!(
        "stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{dir}\"]}}"
    ))
}

/// The gateway of [`spec_yaml`] with its connector `local` reached as `transport` (YAML flow).
pub(super) fn spec_yaml_over(transport: &str) -> String {
    format!(
        "connectors:\n  - name: local\n    {transport}\n\
         virtual_servers:\n  - name: tools\n    auth: none\n    connectors: [{{connector: local, prefix: \"\"}}]\n"
    )
}

/// Lists the tools statelessly (2026-07-28): a listing needs the connector's session, so once
/// it is answered plain calls to an HTTP connector take edge's direct line. Records nothing.
pub(super) async fn list_tools(http: &reqwest::Client, url: &str) -> Value {
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {}});
    http.post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/list")
        .json(
            &json!({"jsonrpc": "2.0", "id": 0, "method": "tools/list", "params": {"_meta": meta}}),
        )
        .send()
        .await
        .expect("tools/list")
        .json()
        .await
        .expect("a JSON-RPC response")
}

/// The digest edge records for `arguments`: SHA-256 of their RFC 8785 form.
pub(super) fn digest(arguments: &Value) -> String {
    let canonical = serde_json_canonicalizer::to_vec(arguments).expect("canonical");
    format!("sha256:{:x}", Sha256::digest(&canonical))
}

/// Calls a tool statelessly (2026-07-28) and returns the JSON-RPC response.
pub(super) async fn call(
    http: &reqwest::Client,
    url: &str,
    id: u64,
    tool: &str,
    arguments: Value,
) -> Value {
    try_call(http, url, id, tool, arguments)
        .await
        .expect("a JSON-RPC response")
}

/// Like [`call`], but `None` when the gateway cannot be reached or answers no JSON (killed).
async fn try_call(
    http: &reqwest::Client,
    url: &str,
    id: u64,
    tool: &str,
    arguments: Value,
) -> Option<Value> {
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "audit-e2e", "version": "1"}});
    http.post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool)
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": tool, "arguments": arguments, "_meta": meta}}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()
}

/// Serves the echo virtual server in process, recording through `recorder`; returns its MCP URL.
async fn serve_edge(recorder: Recorder, shutdown: &CancellationToken) -> String {
    serve_spec(&spec_yaml(), recorder, shutdown).await
}

/// Serves the gateway `yaml` describes in process (its one virtual server is `tools`).
pub(super) async fn serve_spec(
    yaml: &str,
    recorder: Recorder,
    shutdown: &CancellationToken,
) -> String {
    let spec = GatewaySpec::from_yaml(yaml, "audit.yaml").expect("spec");
    let gateway = Gateway::start(&spec, shutdown)
        .expect("gateway")
        .with_audit(recorder);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let origin = format!("http://{}", listener.local_addr().expect("addr"));
    let face = HttpFace::new(origin.parse().expect("url"), &[], &[], 1 << 20);
    tokio::spawn(edge_svc::serve(
        gateway,
        face,
        None,
        listener,
        shutdown.clone(),
    ));
    format!("{origin}/v/tools/mcp")
}

fn result_text(response: &Value) -> Option<&str> {
    response["result"]["content"][0]["text"].as_str()
}

/// Reads every stored event's canonical JSON, in sequence order.
pub(super) async fn stored(config: &audit_svc::Config) -> Vec<(u64, Value)> {
    // The store alone: the log's signing key is audit-svc's to create, possibly right now.
    let log = audit_svc::open_store(&config.store_location())
        .await
        .expect("audit store");
    let mut events = Vec::new();
    loop {
        let after = events.last().map_or(0, |(sequence, _)| *sequence);
        let page = log.read(after, 500).await.expect("read");
        if page.is_empty() {
            return events;
        }
        for stored in page {
            let document = serde_json::from_slice(&stored.event.canonical_json).expect("json");
            events.push((stored.sequence, document));
        }
    }
}

/// Waits until `done` holds for the stored events, or fails after a deadline.
pub(super) async fn wait_for_events(
    config: &audit_svc::Config,
    what: &str,
    done: impl Fn(&[(u64, Value)]) -> bool,
) -> Vec<(u64, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = stored(config).await;
        if done(&events) {
            return events;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Returns the JSON-RPC ids of the calls `events` record, in the log's order.
fn jsonrpc_ids(events: &[(u64, Value)]) -> Vec<String> {
    events
        .iter()
        .map(|(_, event)| {
            event["metadata"]["jsonrpcId"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
        .collect()
}

/// Is the service token edge presents to audit-svc in these tests.
pub(super) fn edge_token() -> SecretSetting {
    SecretSetting::from("edge-audit-e2e-".repeat(3))
}

/// Returns audit-svc's settings with its log in `data`, admitting edge.
pub(super) fn audit_svc_config(data: &Path) -> audit_svc::Config {
    let mut config = audit_svc::Config::default().with_data_dir(data);
    config.callers.edge_token = Some(edge_token());
    config
}

/// Returns edge's audit settings: a spool in `spool_dir` delivering to `audit_addr`.
pub(super) fn edge_spool(audit_addr: std::net::SocketAddr, spool_dir: &Path) -> AuditConfig {
    AuditConfig::new(format!("http://{audit_addr}"), spool_dir).with_token(edge_token())
}

/// A loopback port held bound but not listening: connections to it are refused, and neither
/// another test's listener nor an outgoing connection can take it meanwhile. (A port that is
/// merely looked up and released can be taken by a parallel test's audit-svc, which then
/// acknowledges this test's spool under the shared test token.)
pub(super) struct ReservedPort {
    socket: tokio::net::TcpSocket,
    addr: std::net::SocketAddr,
}

impl ReservedPort {
    pub(super) fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// Starts listening on the held port: audit-svc "comes up" here.
    pub(super) fn listen(self) -> TcpListener {
        self.socket
            .listen(1024)
            .expect("listen on the reserved port")
    }

    /// Lets go of the port for a child process to bind; racy, so only for child processes.
    pub(super) fn release(self) -> std::net::SocketAddr {
        self.addr
    }
}

pub(super) fn reserve_port() -> ReservedPort {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
        .expect("bind");
    let addr = socket.local_addr().expect("addr");
    ReservedPort { socket, addr }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_are_spooled_while_audit_svc_is_away_refused_when_the_spool_is_full_and_delivered_in_order()
 {
    let audit_port = reserve_port();
    let audit_addr = audit_port.addr();
    let spool_dir = tempfile::tempdir().expect("spool");
    let audit_dir = tempfile::tempdir().expect("audit data");
    let shutdown = CancellationToken::new();
    let mut audit = edge_spool(audit_addr, spool_dir.path());
    audit.max_spool_bytes = 4 * 1024;
    audit.sync_interval = Duration::ZERO;
    let recorder = Recorder::start(&audit, &shutdown).expect("recorder");
    let url = serve_edge(recorder, &shutdown).await;
    let http = reqwest::Client::new();

    // audit-svc is not running: calls are answered from the spool's room, then refused.
    let mut answered = Vec::new();
    let refusal = loop {
        let id = answered.len() as u64 + 1;
        let response = call(
            &http,
            &url,
            id,
            "echo",
            json!({"text": format!("call-{id}")}),
        )
        .await;
        if let Some(text) = result_text(&response) {
            assert_eq!(text, format!("call-{id}"));
            answered.push(id.to_string());
        } else {
            break response;
        }
        assert!(answered.len() < 200, "the spool never filled");
    };
    assert!(
        !answered.is_empty(),
        "calls are answered while the spool has room"
    );
    assert_eq!(refusal["error"]["code"], -32603, "{refusal}");
    let message = refusal["error"]["message"].as_str().expect("message");
    assert!(message.contains("audit trail"), "{message}");

    // audit-svc comes up: the backlog is delivered in call order and calls flow again.
    let audit_config = audit_svc_config(audit_dir.path());
    let audit_listener = audit_port.listen();
    let server = tokio::spawn(audit_svc::serve(
        audit_config.clone(),
        audit_listener,
        shutdown.clone(),
    ));
    let events = tokio::select! {
        events = wait_for_events(&audit_config, "the spooled events", |events| {
            events.len() >= answered.len()
        }) => events,
        ended = server => panic!("audit-svc stopped before the backlog arrived: {ended:?}"),
    };
    let recorded = jsonrpc_ids(&events);
    assert_eq!(
        recorded, answered,
        "delivered once each, in the order answered"
    );
    let sequences: Vec<u64> = events.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(sequences, (1..=events.len() as u64).collect::<Vec<_>>());

    let mut echoes = None;
    for attempt in 0..50 {
        let response = call(&http, &url, 1000 + attempt, "echoes", json!({})).await;
        if let Some(text) = result_text(&response) {
            echoes = Some(text.parse::<usize>().expect("count"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        echoes,
        Some(answered.len()),
        "the refused call never reached the connector"
    );
    shutdown.cancel();
}

/// An audit-svc running in this process and an edge recorder spooling to it.
pub(super) struct Audited {
    pub(super) recorder: Recorder,
    /// Where audit-svc stores events, for [`wait_for_events`].
    pub(super) config: audit_svc::Config,
    pub(super) _dirs: (tempfile::TempDir, tempfile::TempDir),
}

/// Starts audit-svc and a recorder delivering to it, both stopped by `shutdown`.
pub(super) async fn audited(shutdown: &CancellationToken) -> Audited {
    let audit_listener = TcpListener::bind("127.0.0.1:0").await.expect("audit port");
    let audit_addr = audit_listener.local_addr().expect("audit addr");
    let dirs = (
        tempfile::tempdir().expect("spool"),
        tempfile::tempdir().expect("audit"),
    );
    let config = audit_svc_config(dirs.1.path());
    tokio::spawn(audit_svc::serve(
        config.clone(),
        audit_listener,
        shutdown.clone(),
    ));
    let spool = edge_spool(audit_addr, dirs.0.path());
    let recorder = Recorder::start(&spool, shutdown).expect("recorder");
    Audited {
        recorder,
        config,
        _dirs: dirs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_call_names_who_what_and_how_it_ended_but_never_a_value() {
    let shutdown = CancellationToken::new();
    let trail = audited(&shutdown).await;
    let protected = super::oauth::start_with(
        trail.recorder.clone(),
        edge_svc::access::Access::unrestricted(),
    )
    .await;
    let crm = format!("{}/v/crm/mcp", protected.origin);
    let token = super::oauth::token_for(&protected.origin, &crm).await;
    records_who_what_and_how_but_never_a_value(&trail, &crm, &token).await;
    protected.shutdown.cancel();
    shutdown.cancel();
}

/// The OAuth-protected gateway over a stateless HTTP echo, whose calls can take the direct line.
struct OverHttpEcho {
    _echo: tokio::process::Child,
    shutdown: CancellationToken,
    trail: Audited,
    protected: super::oauth::Protected,
    crm: String,
    token: String,
}

impl OverHttpEcho {
    async fn start() -> Self {
        let (echo, echo_url) = super::gateway::start_http_echo().await;
        let shutdown = CancellationToken::new();
        let trail = audited(&shutdown).await;
        let protected = super::oauth::start_over_http(
            &echo_url,
            trail.recorder.clone(),
            edge_svc::access::Access::unrestricted(),
        )
        .await;
        let crm = format!("{}/v/crm/mcp", protected.origin);
        let token = super::oauth::token_for(&protected.origin, &crm).await;
        Self {
            _echo: echo,
            shutdown,
            trail,
            protected,
            crm,
            token,
        }
    }

    fn stop(&self) {
        self.protected.shutdown.cancel();
        self.shutdown.cancel();
    }
}

/// Calls `arrival` until a call reaches the downstream over the direct line, which opens with
/// the connector's session (until then calls take rmcp's road); returns what that call saw.
async fn until_direct(mut call_arrival: impl AsyncFnMut() -> Value) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answer = call_arrival().await;
        let text = result_text(&answer).expect("arrival answers");
        let arrival: Value = serde_json::from_str(text).expect("arrival is JSON");
        if arrival["id"].as_i64().is_some_and(|id| id < 0) || Instant::now() > deadline {
            return arrival;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_on_edges_direct_line_is_recorded_as_one_through_rmcp_is() {
    let gateway = OverHttpEcho::start().await;
    let (crm, token) = (&gateway.crm, &gateway.token);
    let arrival = until_direct(async || {
        let response = super::oauth::call_tool(crm, token, "arrival", json!({})).await;
        response.json().await.expect("json-rpc answer")
    })
    .await;
    assert!(
        arrival["id"].as_i64().is_some_and(|id| id < 0),
        "the call reached the downstream with one of the direct line's own (negative) ids: {arrival}"
    );
    assert_eq!(arrival["method"], "tools/call", "{arrival}");
    assert_eq!(arrival["name"], "arrival", "{arrival}");
    assert_eq!(
        arrival["client"], "gatehouse",
        "the gateway is the downstream's client: {arrival}"
    );
    assert_eq!(arrival["version"], "2026-07-28", "{arrival}");
    // The downstream may only ask for input this very caller can give: its capabilities go on.
    let capabilities = json!({"elicitation": {"form": {}}, "roots": {}});
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": capabilities,
                      "io.modelcontextprotocol/clientInfo": {"name": "e2e", "version": "1"}});
    let body: Value = reqwest::Client::new()
        .post(crm)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", "arrival")
        .json(&json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
                      "params": {"name": "arrival", "arguments": {}, "_meta": meta}}))
        .send()
        .await
        .expect("call")
        .json()
        .await
        .expect("json-rpc answer");
    let arrival: Value =
        serde_json::from_str(result_text(&body).expect("arrival answers")).expect("JSON");
    assert!(arrival["id"].as_i64().is_some_and(|id| id < 0), "{arrival}");
    assert_eq!(arrival["capabilities"], capabilities, "{arrival}");
    assert_eq!(arrival["client"], "gatehouse", "{arrival}");

    records_who_what_and_how_but_never_a_value(&gateway.trail, crm, token).await;
    gateway.stop();
}

/// A 2025-11-25 session opened over HTTP, spoken to with raw requests so each answer's shape shows.
pub(super) struct RawSession {
    url: String,
    token: String,
    id: String,
    http: reqwest::Client,
}

impl RawSession {
    /// Initializes a session whose client declares `capabilities`.
    pub(super) async fn open(url: &str, token: &str, capabilities: Value) -> Self {
        let http = reqwest::Client::new();
        let response = http
            .post(url)
            .bearer_auth(token)
            .header("accept", "application/json, text/event-stream")
            .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize",
                          "params": {"protocolVersion": "2025-11-25", "capabilities": capabilities,
                                     "clientInfo": {"name": "e2e-session", "version": "1"}}}))
            .send()
            .await
            .expect("initialize");
        let id = super::header_of(&response, "mcp-session-id").expect("a session id");
        let session = Self {
            url: url.to_owned(),
            token: token.to_owned(),
            id,
            http,
        };
        let initialized = session
            .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await;
        assert_eq!(initialized.status(), 202);
        session
    }

    /// Ends the session with `DELETE`; returns the answer's status.
    async fn end(&self) -> reqwest::StatusCode {
        self.http
            .delete(&self.url)
            .bearer_auth(&self.token)
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &self.id)
            .send()
            .await
            .expect("delete")
            .status()
    }

    async fn post(&self, body: Value) -> reqwest::Response {
        self.http
            .post(&self.url)
            .bearer_auth(&self.token)
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &self.id)
            .json(&body)
            .send()
            .await
            .expect("post in the session")
    }

    /// Calls `tool`; returns the answer's media type and its JSON-RPC response.
    async fn call(&self, id: u64, tool: &str, arguments: Value) -> (String, Value) {
        self.call_method(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
        .await
    }

    /// Sends the request `method`; returns the answer's media type and its JSON-RPC response.
    pub(super) async fn call_method(
        &self,
        id: u64,
        method: &str,
        params: Value,
    ) -> (String, Value) {
        let response = self
            .post(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await;
        assert_eq!(response.status(), 200);
        let media = response
            .headers()
            .get("content-type")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.expect("body");
        (media, answer_to(&text, id))
    }
}

/// Returns the JSON-RPC response to request `id` in an HTTP body: the body itself, or in an SSE
/// reply the data line that answers the request.
fn answer_to(text: &str, id: u64) -> Value {
    text.lines()
        .filter_map(|line| line.strip_prefix("data:"))
        .chain(std::iter::once(text))
        .filter_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        .find(|message| message["id"] == id)
        .expect("the JSON-RPC response")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sessions_plain_call_takes_the_direct_line_is_cancellable_and_is_recorded_as_one_through_rmcp_is()
 {
    let gateway = OverHttpEcho::start().await;
    let (crm, token) = (&gateway.crm, &gateway.token);
    let plain = Arc::new(RawSession::open(crm, token, json!({})).await);
    let arrival = until_direct(async || plain.call(1, "arrival", json!({})).await.1).await;
    assert!(
        arrival["id"].as_i64().is_some_and(|id| id < 0),
        "the session's call reached the downstream over the direct line: {arrival}"
    );
    assert_eq!(arrival["version"], "2026-07-28", "{arrival}");
    assert_eq!(
        arrival["capabilities"],
        json!({}),
        "the session's own capabilities go on: {arrival}"
    );
    let (media, answer) = plain.call(1, "arrival", json!({})).await;
    assert_eq!(
        media, "application/json",
        "nothing but the answer travels back"
    );
    assert!(
        answer["result"].get("resultType").is_none(),
        "a 2025-11-25 client gets the result shape it knows: {answer}"
    );

    // A client that answers elicitations may be asked one mid-call: rmcp's road streams it.
    let asking = RawSession::open(crm, token, json!({"elicitation": {}})).await;
    let (media, answer) = asking.call(1, "arrival", json!({})).await;
    let arrival: Value =
        serde_json::from_str(result_text(&answer).expect("arrival answers")).expect("JSON");
    assert_eq!(media, "text/event-stream", "{answer}");
    assert!(
        arrival["id"].as_i64().is_some_and(|id| id >= 0),
        "{arrival}"
    );

    // The client's cancellation reaches a call on the lane, which rmcp never saw.
    let slow = tokio::spawn({
        let plain = Arc::clone(&plain);
        async move { plain.call(2, "slow", json!({"ms": 20_000})).await }
    });
    let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                        "params": {"requestId": 2, "reason": "changed my mind"}});
    while !slow.is_finished() {
        assert_eq!(plain.post(cancel.clone()).await.status(), 202);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let (_, cancelled) = slow.await.expect("the slow call");
    assert!(
        cancelled["error"]["message"]
            .as_str()
            .is_some_and(|message| message.contains("cancelled")),
        "{cancelled}"
    );

    // Ending the session ends it for the lane too.
    let ended = plain.end().await;
    assert!(ended.is_success(), "{ended}");
    let gone = plain
        .post(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                     "params": {"name": "arrival", "arguments": {}}}))
        .await;
    assert_eq!(gone.status(), 404, "a call in an ended session");

    let in_session = |event: &Value, outcome: &str| {
        event["metadata"]["mcpSessionId"] == plain.id.as_str() && event["outcome"] == outcome
    };
    let events = wait_for_events(&gateway.trail.config, "the session's two calls", |events| {
        events
            .iter()
            .any(|(_, event)| in_session(event, "OUTCOME_SUCCESS"))
            && events
                .iter()
                .any(|(_, event)| in_session(event, "OUTCOME_CANCELLED"))
    })
    .await;
    let (_, called) = events
        .iter()
        .rev()
        .find(|(_, event)| in_session(event, "OUTCOME_SUCCESS"))
        .expect("the arrival call's event");
    assert_eq!(called["target"]["tool"]["name"], "arrival");
    assert_eq!(called["metadata"]["protocolEra"], "PROTOCOL_ERA_LEGACY");
    assert_eq!(called["metadata"]["protocolVersion"], "2025-11-25");
    assert_eq!(called["metadata"]["mcpClientName"], "e2e-session");
    assert_eq!(called["metadata"]["jsonrpcId"], "1");
    assert!(
        called["principal"]["clientId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    let (_, gave_up) = events
        .iter()
        .find(|(_, event)| in_session(event, "OUTCOME_CANCELLED"))
        .expect("the slow call's event");
    assert_eq!(gave_up["target"]["tool"]["name"], "slow");
    assert_eq!(gave_up["metadata"]["jsonrpcId"], "2");
    gateway.stop();
}

/// Sends `initialize` for a 2025-11-25 session, with `_meta` when asked (which rmcp's road
/// answers); returns the session id, the headers that describe the answer, and its body.
async fn handshake(url: &str, token: &str, meta: bool) -> (String, [Option<String>; 3], String) {
    let mut params = json!({"protocolVersion": "2025-11-25", "capabilities": {},
                            "clientInfo": {"name": "e2e-session", "version": "1"}});
    if meta {
        params["_meta"] = json!({});
    }
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .json(&json!({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params}))
        .send()
        .await
        .expect("initialize");
    assert_eq!(response.status(), 200);
    let header = |name: &str| super::header_of(&response, name);
    let session = header("mcp-session-id").expect("a session id");
    let described = [
        header("content-type"),
        header("cache-control"),
        header("x-accel-buffering"),
    ];
    (session, described, response.text().await.expect("body"))
}

/// A session's GET stream, read one SSE event at a time.
pub(super) struct EventStream {
    response: reqwest::Response,
    read: String,
}

impl EventStream {
    /// Opens `session`'s GET stream; the answer must be an event stream.
    pub(super) async fn open(session: &RawSession) -> Self {
        let response = session
            .http
            .get(&session.url)
            .bearer_auth(&session.token)
            .header("accept", "text/event-stream")
            .header("mcp-protocol-version", "2025-11-25")
            .header("mcp-session-id", &session.id)
            .send()
            .await
            .expect("GET stream");
        assert_eq!(response.status(), 200, "the GET stream opens");
        let media = super::header_of(&response, "content-type");
        assert_eq!(media.as_deref(), Some("text/event-stream"));
        Self {
            response,
            read: String::new(),
        }
    }

    /// Returns the next event, keep-alive comments skipped; `None` once the stream has ended.
    async fn next(&mut self) -> Option<String> {
        let within = Duration::from_secs(10);
        loop {
            if let Some(end) = self.read.find("\n\n") {
                let event: String = self.read.drain(..end + 2).collect();
                if !event.starts_with(':') {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout(within, self.response.chunk())
                .await
                .expect("an event or the stream's end within 10 s")
                .expect("the stream reads");
            self.read.push_str(&String::from_utf8_lossy(&chunk?));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resting_sessions_get_stream_is_the_lanes_and_goes_on_hearing_list_changes_once_the_session_wakes()
 {
    let gateway = OverHttpEcho::start().await;
    let (crm, token) = (&gateway.crm, &gateway.token);
    let listener = RawSession::open(crm, token, json!({})).await;
    let announcer = RawSession::open(crm, token, json!({})).await;
    let mut stream = EventStream::open(&listener).await;
    assert_eq!(
        stream.next().await.as_deref(),
        Some("data: \nid: 0\nretry: 3000\n\n"),
        "the stream starts with rmcp's priming event"
    );
    // The downstream announces through rmcp's road (a call with `_meta`) of another session.
    let announce = async || {
        let (_, answer) = announcer
            .call_method(
                1,
                "tools/call",
                json!({"name": "announce", "arguments": {}, "_meta": {}}),
            )
            .await;
        assert!(answer["result"].is_object(), "{answer}");
    };
    let list_changed = async |stream: &mut EventStream| {
        let event = stream.next().await.expect("an event");
        assert!(
            event.contains(r#""method":"notifications/tools/list_changed""#),
            "{event}"
        );
    };
    announce().await;
    list_changed(&mut stream).await;

    // A request only rmcp answers wakes the session; its worker now speaks on the same stream.
    let (_, level) = listener
        .call_method(2, "logging/setLevel", json!({"level": "info"}))
        .await;
    assert!(level["result"].is_object(), "{level}");
    announce().await;
    list_changed(&mut stream).await;

    assert!(listener.end().await.is_success());
    let mut after_end = Vec::new();
    while let Some(event) = stream.next().await {
        after_end.push(event);
    }
    assert!(
        after_end.iter().all(|event| event.contains("list_changed")),
        "the stream ends with its session, carrying nothing else: {after_end:?}"
    );
    gateway.stop();
}

/// The methods that list a catalogue, each of which the express lane answers when plain.
const LISTINGS: [&str; 4] = [
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
];

/// Lists a catalogue statelessly (2026-07-28) with `token`, with a progress token when asked
/// (which rmcp's road answers); returns the HTTP status and the JSON-RPC response.
async fn list_stateless(url: &str, token: &str, method: &str, progress: bool) -> (u16, Value) {
    let mut meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                          "io.modelcontextprotocol/clientCapabilities": {}});
    if progress {
        meta["progressToken"] = json!("p");
    }
    let response = reqwest::Client::new()
        .post(url)
        .bearer_auth(token)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", method)
        .json(&json!({"jsonrpc": "2.0", "id": 5, "method": method, "params": {"_meta": meta}}))
        .send()
        .await
        .expect("tools/list");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, answer_to(&text, 5))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stateless_listing_on_the_lane_is_rmcps_listing_with_its_caching_hints() {
    let gateway = OverHttpEcho::start().await;
    let (crm, token) = (&gateway.crm, &gateway.token);
    for method in LISTINGS {
        let (status, by_lane) = list_stateless(crm, token, method, false).await;
        let (rmcp_status, by_rmcp) = list_stateless(crm, token, method, true).await;
        assert_eq!((status, rmcp_status), (200, 200), "{method}");
        assert_eq!(by_lane, by_rmcp, "the lane lists {method} as rmcp lists it");
        assert_eq!(by_lane["result"]["resultType"], "complete", "{by_lane}");
        assert!(by_lane["result"]["ttlMs"].is_u64(), "{by_lane}");
        assert!(by_lane["result"]["cacheScope"].is_string(), "{by_lane}");
    }
    let (_, tools) = list_stateless(crm, token, "tools/list", false).await;
    assert!(
        tools.to_string().contains("\"arrival\""),
        "the connector's tools: {tools}"
    );
    gateway.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lane_opens_and_lists_a_session_as_rmcp_would_and_rmcps_own_requests_wake_it() {
    let gateway = OverHttpEcho::start().await;
    let (crm, token) = (&gateway.crm, &gateway.token);
    let (rested, lane_headers, lane_body) = handshake(crm, token, false).await;
    let (_, rmcp_headers, rmcp_body) = handshake(crm, token, true).await;
    assert_eq!(lane_headers, rmcp_headers, "the same kind of answer");
    assert_eq!(
        lane_body, rmcp_body,
        "the same priming event and result, byte for byte"
    );
    assert!(
        lane_body.starts_with("data: \nid: 0\nretry: 3000\n\n"),
        "{lane_body}"
    );

    let session = RawSession {
        url: crm.clone(),
        token: token.clone(),
        id: rested,
        http: reqwest::Client::new(),
    };
    let initialized = session
        .post(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
        .await;
    assert_eq!(initialized.status(), 202);
    let arrival = until_direct(async || session.call(1, "arrival", json!({})).await.1).await;
    assert!(
        arrival["id"].as_i64().is_some_and(|id| id < 0),
        "a resting session's calls take the direct line: {arrival}"
    );
    assert_eq!(arrival["capabilities"], json!({}), "{arrival}");

    // A plain listing is the lane's too; one with `_meta` is rmcp's, and wakes the session with
    // the handshake the client sent. Both list the same tools the same way.
    let (media, listed) = session.call_method(2, "tools/list", json!({})).await;
    assert!(media.starts_with("application/json"), "{media}");
    let names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(|tool| tool["name"].as_str())
        .collect();
    assert!(names.contains(&"arrival"), "{listed}");
    for method in LISTINGS {
        let (media, by_lane) = session.call_method(2, method, json!({})).await;
        assert!(media.starts_with("application/json"), "{method}: {media}");
        let (_, by_rmcp) = session.call_method(2, method, json!({"_meta": {}})).await;
        assert_eq!(by_lane, by_rmcp, "the lane lists {method} as rmcp lists it");
    }
    drop(EventStream::open(&session).await);
    let (_, after) = session.call(3, "arrival", json!({})).await;
    let arrival: Value =
        serde_json::from_str(result_text(&after).expect("arrival answers")).expect("JSON");
    assert!(
        arrival["id"].as_i64().is_some_and(|id| id < 0),
        "an awake session's plain calls still take the direct line: {arrival}"
    );

    // A resting session ends like any other.
    let (rested, _, _) = handshake(crm, token, false).await;
    let resting = RawSession {
        id: rested,
        ..session
    };
    let ended = resting.end().await;
    assert_eq!(
        ended, 200,
        "a session's end is answered 200, which SDK clients read as done"
    );
    let gone = resting
        .post(json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list", "params": {}}))
        .await;
    assert_eq!(gone.status(), 404, "a request in an ended session");
    gateway.stop();
}

/// Calls `echo` with a canary value and an unknown tool on `url`, then checks the events the
/// trail holds for them: who called, what, how it was decided and ended, and no value or token.
async fn records_who_what_and_how_but_never_a_value(trail: &Audited, url: &str, token: &str) {
    let canary = "canary-value-7f3a9c";
    let response = super::oauth::call_tool(url, token, "echo", json!({"text": canary})).await;
    assert_eq!(response.status(), 200);
    let unknown = super::oauth::call_tool(url, token, "drop_tables", json!({})).await;
    assert_eq!(unknown.status(), 200, "a JSON-RPC error, not an HTTP one");

    let is_echo = |event: &Value| event["target"]["tool"]["name"] == "echo";
    let is_denied = |event: &Value| event["outcome"] == "OUTCOME_DENIED";
    let events = wait_for_events(&trail.config, "the token and both calls", |events| {
        events.iter().any(|(_, event)| is_echo(event))
            && events.iter().any(|(_, event)| is_denied(event))
    })
    .await;
    let (_, issued) = &events[0];
    assert_eq!(issued["kind"], "EVENT_KIND_TOKEN_ISSUED");
    assert_eq!(issued["emitter"]["service"], "authz-svc");
    assert_eq!(issued["token"]["grantType"], "authorization_code");
    assert!(
        issued["token"]["jti"]
            .as_str()
            .is_some_and(|jti| !jti.is_empty())
    );
    assert_eq!(issued["token"]["audiences"][0], url);
    let (_, allowed) = events
        .iter()
        .find(|(_, event)| is_echo(event))
        .expect("the echo call's event");
    assert_eq!(allowed["kind"], "EVENT_KIND_MCP_REQUEST");
    assert_eq!(allowed["emitter"]["service"], "edge-svc");
    assert!(
        allowed["principal"]["member"]["id"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert!(
        allowed["principal"]["clientId"]
            .as_str()
            .is_some_and(|id| !id.is_empty())
    );
    assert_eq!(allowed["target"]["virtualServer"], "crm");
    assert_eq!(allowed["target"]["connector"], "local");
    assert_eq!(allowed["metadata"]["mcpMethod"], "tools/call");
    assert_eq!(allowed["metadata"]["protocolEra"], "PROTOCOL_ERA_MODERN");
    assert_eq!(allowed["metadata"]["protocolVersion"], "2026-07-28");
    assert_eq!(allowed["metadata"]["jsonrpcId"], "1");
    assert_eq!(allowed["metadata"]["mcpClientName"], "e2e");
    assert!(
        allowed["metadata"]["sourceAddress"]
            .as_str()
            .is_some_and(|address| address.starts_with("127.0.0.1:"))
    );
    assert_eq!(allowed["decision"]["verdict"], "VERDICT_ALLOW");
    assert_eq!(allowed["outcome"], "OUTCOME_SUCCESS");
    assert_eq!(allowed["payload"]["arguments"][0]["name"], "text");
    assert_eq!(
        allowed["payload"]["argumentsDigest"],
        digest(&json!({"text": canary}))
    );
    assert!(allowed["latency"].is_string());

    let (_, denied) = events
        .iter()
        .find(|(_, event)| is_denied(event))
        .expect("the unknown tool's event");
    assert_eq!(denied["decision"]["verdict"], "VERDICT_DENY");
    assert_eq!(denied["target"]["tool"], Value::Null);

    for (_, event) in &events {
        let text = event.to_string();
        assert!(!text.contains(canary), "an argument value leaked: {text}");
        assert!(!text.contains(token), "the access token leaked: {text}");
    }
}

/// Starts `gatehouse up` on `data` with `extra` arguments and returns the child and its MCP URL.
pub(super) async fn gatehouse_up(
    config: &Path,
    data: &Path,
    extra: &[&str],
) -> (tokio::process::Child, String) {
    let started = super::launch::Launch::new(config, data)
        .args(extra)
        .start()
        .await;
    (started.child, format!("{}/v/tools/mcp", started.origin))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_event_whose_call_was_answered_and_leaves_no_gap() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    let siem_file = dir.path().join("siem.jsonl");
    let with_sink = format!(
        "{}audit:\n  sinks:\n    - name: siem-file\n      shape: ocsf\n      poll_interval: 100ms\n      jsonl: {{path: \"{}\"}}\n",
        spec_yaml(),
        siem_file.display()
    );
    std::fs::write(&config, with_sink).expect("config");
    let data = dir.path().join("data");
    let (mut child, url) = gatehouse_up(&config, &data, &[]).await;

    let answered = Arc::new(Mutex::new(BTreeSet::new()));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let workers: Vec<_> = (0..8)
        .map(|worker| {
            let (http, url, answered) = (http.clone(), url.clone(), Arc::clone(&answered));
            tokio::spawn(async move {
                for i in 0_u64.. {
                    let arguments = json!({"text": format!("w{worker}-{i}")});
                    let Some(body) = try_call(&http, &url, i, "echo", arguments.clone()).await
                    else {
                        return;
                    };
                    if result_text(&body).is_some() {
                        answered.lock().expect("lock").insert(digest(&arguments));
                    }
                }
            })
        })
        .collect();
    // Kill once a few hundred calls were answered, while the workers keep calling.
    let deadline = Instant::now() + Duration::from_secs(30);
    while answered.lock().expect("lock").len() < 300 {
        assert!(Instant::now() < deadline, "no load got through");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id().expect("pid")).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill -9");
    child.wait().await.expect("reaped");
    for worker in workers {
        worker.await.expect("worker");
    }
    let answered = answered.lock().expect("lock").clone();

    let (_restarted, _) = gatehouse_up(&config, &data, &[]).await;
    let audit_config = audit_svc_config(&data);
    let events = wait_for_events(&audit_config, "every answered call's event", |events| {
        records_all(events, &answered)
    })
    .await;
    let sequences: Vec<u64> = events.iter().map(|(sequence, _)| *sequence).collect();
    assert_eq!(
        sequences,
        (1..=events.len() as u64).collect::<Vec<_>>(),
        "no gaps"
    );
    let store = audit_svc::open_store(&audit_config.store_location())
        .await
        .expect("store");
    let report = audit_svc::verify(store.as_ref(), None)
        .await
        .expect("verify");
    assert_eq!(
        report.problem, None,
        "the chain and tree verify after kill -9"
    );
    assert_eq!(report.tree_size, events.len() as u64);
    cli_verifies_searches_and_proves(&data, &events[0].1);

    // The gatehouse file's `audit:` section streams the same events to the SIEM, as OCSF.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let streamed = std::fs::read_to_string(&siem_file).unwrap_or_default();
        let api_activity = streamed
            .lines()
            .filter(|line| line.contains("\"class_uid\":6003"))
            .count();
        if api_activity >= events.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{api_activity} of {} events reached the SIEM file",
            events.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let sinks = gatehouse_cli(&["audit", "sinks", "--data", data.to_str().expect("utf-8")]);
    assert!(sinks.status.success(), "{sinks:?}");
    let sinks = json_stdout(&sinks);
    let siem = &sinks["sinks"][0];
    assert_eq!(siem["sink"], "siem-file", "{sinks}");
    assert_eq!(siem["dead_letters"], 0, "{sinks}");
    assert!(
        siem["delivered"].as_u64() <= siem["head"].as_u64() && siem["head"].as_u64() > Some(0),
        "{sinks}"
    );
}

/// Returns `gatehouse audit search` over the data directory `data` once its output holds
/// `needle` (the record awaited is delivered asynchronously); panics after 30 s.
pub(super) async fn search_until(data: &std::path::Path, needle: &str) -> String {
    let data = data.to_str().expect("utf-8 path");
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let search = gatehouse_cli(&["audit", "search", "--data", data]);
            let text = String::from_utf8_lossy(&search.stdout).into_owned();
            if text.contains(needle) {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no audit record holds {needle:?}"))
}

/// `SCHED_IDLE`'s number in a thread's `/proc/.../stat` (`sched(7)`).
const SCHED_IDLE: u32 = 5;

/// The scheduling policy of each of `pid`'s threads, by thread name (`proc(5)`: field 41 of
/// `stat`, counted after the parenthesised name, which may hold spaces).
fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .flatten()
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("stat")).ok()?;
            let (head, tail) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            let policy = tail.split_whitespace().nth(38)?.parse().ok()?;
            Some((name, policy))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_trail_runs_behind_the_data_plane_and_still_records_every_call() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    std::fs::write(&config, spec_yaml()).expect("config");
    let data = dir.path().join("data");
    let (child, url) = gatehouse_up(&config, &data, &[]).await;
    let http = reqwest::Client::new();
    let mut digests = BTreeSet::new();
    for id in 0..50 {
        let arguments = json!({"text": format!("behind-{id}")});
        let answer = try_call(&http, &url, id, "echo", arguments.clone())
            .await
            .expect("an answer");
        assert!(result_text(&answer).is_some(), "answered: {answer}");
        digests.insert(digest(&arguments));
    }

    let policies = thread_policies(child.id().expect("running"));
    let of = |prefix: &str| -> Vec<u32> {
        policies
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, policy)| *policy)
            .collect()
    };
    let trail = of("audit-trail");
    assert!(!trail.is_empty(), "an audit-trail thread: {policies:?}");
    assert!(
        trail.iter().all(|policy| *policy == SCHED_IDLE),
        "the audit trail's runtime is SCHED_IDLE: {policies:?}"
    );
    assert!(
        of("audit-sqlite-").contains(&SCHED_IDLE),
        "the store's SQLite threads, started by that runtime, inherit it: {policies:?}"
    );
    let workers = of("tokio-rt-worker");
    assert!(
        !workers.is_empty() && workers.iter().all(|policy| *policy != SCHED_IDLE),
        "the data plane's workers keep the process's policy: {policies:?}"
    );

    wait_for_events(&audit_svc_config(&data), "every call's event", |events| {
        records_all(events, &digests)
    })
    .await;
}

/// Says whether `events` hold a call event for each of the arguments' `digests`.
fn records_all(events: &[(u64, Value)], digests: &BTreeSet<String>) -> bool {
    let recorded: BTreeSet<&str> = events
        .iter()
        .filter_map(|(_, event)| event["payload"]["argumentsDigest"].as_str())
        .collect();
    digests
        .iter()
        .all(|digest| recorded.contains(digest.as_str()))
}

fn gatehouse_cli(args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(PathBuf::from(ECHO).with_file_name("gatehouse"))
        .args(args)
        .output()
        .expect("gatehouse cli");
    assert!(
        output.status.code().is_some(),
        "gatehouse {args:?} was killed: {output:?}"
    );
    output
}

fn json_stdout(output: &std::process::Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|error| {
        panic!(
            "not JSON ({error}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

/// `gatehouse audit verify`, `search`, `proof` and `check-proof` against the log just written.
fn cli_verifies_searches_and_proves(data: &Path, first: &Value) {
    let data = data.to_str().expect("utf-8 path");
    let verify = gatehouse_cli(&["audit", "verify", "--data", data]);
    assert!(verify.status.success(), "{verify:?}");
    assert_eq!(json_stdout(&verify)["intact"], true);

    let search = gatehouse_cli(&[
        "audit",
        "search",
        "--data",
        data,
        "--tool",
        "echo",
        "--decision",
        "allow",
        "--limit",
        "5",
    ]);
    assert!(search.status.success(), "{search:?}");
    let page = json_stdout(&search);
    assert_eq!(page["events"].as_array().map(Vec::len), Some(5));
    assert_eq!(page["events"][0]["event"]["target"]["tool"]["name"], "echo");
    let token = page["next_page_token"].as_str().expect("more pages");
    let next = gatehouse_cli(&[
        "audit",
        "search",
        "--data",
        data,
        "--tool",
        "echo",
        "--decision",
        "allow",
        "--limit",
        "5",
        "--page-token",
        token,
    ]);
    assert_eq!(json_stdout(&next)["events"][0]["sequence"], 6);
    let nobody = gatehouse_cli(&["audit", "search", "--data", data, "--tool", "no_such_tool"]);
    assert_eq!(json_stdout(&nobody)["events"], json!([]));

    let mut tail = std::process::Command::new(PathBuf::from(ECHO).with_file_name("gatehouse"))
        .args([
            "audit", "tail", "--data", data, "--after", "0", "--tool", "echo",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("gatehouse audit tail");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(tail.stdout.take().expect("stdout")),
        &mut line,
    )
    .expect("a tailed event");
    tail.kill().expect("stop tail");
    tail.wait().expect("reap tail");
    let tailed: Value = serde_json::from_str(&line).expect("tail prints JSON lines");
    assert_eq!(tailed["sequence"], 1);
    assert_eq!(tailed["event"]["eventId"], first["eventId"]);

    let event_id = first["eventId"].as_str().expect("event id");
    let proof = gatehouse_cli(&["audit", "proof", "--data", data, event_id]);
    assert!(proof.status.success(), "{proof:?}");
    let bundle = json_stdout(&proof);
    let key = bundle["verifier_key"].as_str().expect("key").to_owned();
    let file = Path::new(data).join("proof.json");
    std::fs::write(&file, &proof.stdout).expect("proof file");
    let file = file.to_str().expect("utf-8 path");
    let checked = gatehouse_cli(&["audit", "check-proof", file, "--key", &key]);
    assert!(checked.status.success(), "{checked:?}");
    assert_eq!(json_stdout(&checked)["valid"], true);

    // The same proof for an edited event, or under another log's key, does not verify.
    let mut forged = bundle.clone();
    let edited = bundle["canonical_json"]
        .as_str()
        .expect("json")
        .replace("echo", "exit");
    forged["canonical_json"] = json!(edited);
    std::fs::write(file, forged.to_string()).expect("forged proof");
    let refused = gatehouse_cli(&["audit", "check-proof", file, "--key", &key]);
    assert!(
        !refused.status.success(),
        "a forged event verified: {refused:?}"
    );
    std::fs::write(file, bundle.to_string()).expect("proof again");
    // A well-formed Ed25519 key (the curve's base point) that did not sign this log.
    let foreign = "other+00000000+AVhmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZmZm";
    let wrong_key = gatehouse_cli(&["audit", "check-proof", file, "--key", foreign]);
    assert!(
        !wrong_key.status.success(),
        "verified under a foreign key: {wrong_key:?}"
    );
}

/// Starts the standalone audit-svc binary on `addr` with its log in `data`.
fn audit_svc_process(addr: std::net::SocketAddr, data: &Path) -> std::process::Child {
    let binary = PathBuf::from(ECHO).with_file_name("audit-svc");
    assert!(
        binary.is_file(),
        "{} is missing: build it first (`cargo build --workspace --bins`)",
        binary.display()
    );
    std::process::Command::new(binary)
        .env("GATEHOUSE_AUDIT__GRPC__LISTEN_ADDR", addr.to_string())
        .env("GATEHOUSE_AUDIT__DATA_DIR", data)
        .env(
            "GATEHOUSE_AUDIT__CALLERS__EDGE_TOKEN",
            edge_token().expose(),
        )
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("audit-svc")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trail_behind_but_connected_slows_calls_instead_of_refusing_them() {
    let audit_addr = reserve_port().release();
    let (spool_dir, audit_dir) = (
        tempfile::tempdir().expect("spool"),
        tempfile::tempdir().expect("audit"),
    );
    let mut audit = audit_svc_process(audit_addr, audit_dir.path());
    let audit_pid = Pid::from_raw(i32::try_from(audit.id()).expect("pid"));
    let shutdown = CancellationToken::new();
    let mut config = edge_spool(audit_addr, spool_dir.path());
    // Calls are paced past an eighth of the bound: 8 KiB, a few dozen events.
    config.max_spool_bytes = 64 * 1024;
    let mark = config.max_spool_bytes / 8;
    config.pace_patience = Duration::from_secs(120);
    let recorder = Recorder::start(&config, &shutdown).expect("recorder");
    let spool = recorder.spool().expect("a spool").clone();
    let url = serve_edge(recorder, &shutdown).await;
    let http = reqwest::Client::new();

    // audit-svc is up and acknowledging: its delivery stream is open and nothing is behind.
    let first = call(&http, &url, 1, "echo", json!({"text": "call-1"})).await;
    assert_eq!(result_text(&first), Some("call-1"), "{first}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(spool.is_delivering() && spool.backlog() == 0) {
        assert!(Instant::now() < deadline, "audit-svc never acknowledged");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // audit-svc stops acknowledging with its stream still open (a trail starved of CPU looks
    // the same to edge): calls run until the backlog passes the mark.
    signal(audit_pid, Signal::SIGSTOP).expect("kill -STOP audit-svc");
    let mut id = 1;
    while spool.backlog() <= mark {
        id += 1;
        let text = format!("call-{id}");
        let answered = call(&http, &url, id, "echo", json!({"text": text})).await;
        assert_eq!(result_text(&answered), Some(text.as_str()), "{answered}");
        assert!(id < 500, "the backlog never passed the mark");
    }

    // The next call waits for the trail: it neither runs nor is refused meanwhile.
    id += 1;
    let paced = tokio::spawn({
        let (http, url) = (http.clone(), url.clone());
        async move { call(&http, &url, id, "echo", json!({"text": "paced"})).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !paced.is_finished(),
        "a call past the mark waits while audit-svc does not acknowledge"
    );

    // audit-svc resumes: its acknowledgements bring the backlog under the mark and the call runs.
    signal(audit_pid, Signal::SIGCONT).expect("kill -CONT audit-svc");
    let answered = paced.await.expect("the paced call");
    assert_eq!(result_text(&answered), Some("paced"), "{answered}");
    let audit_config = audit_svc_config(audit_dir.path());
    let events = wait_for_events(&audit_config, "every answered call", |events| {
        events.len() as u64 >= id
    })
    .await;
    let recorded = jsonrpc_ids(&events);
    let answered: Vec<String> = (1..=id).map(|id| id.to_string()).collect();
    assert_eq!(recorded, answered, "each answered call once, in order");
    audit.kill().expect("stop audit-svc");
    audit.wait().expect("reaped");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_audit_svc_under_load_loses_nothing_and_the_chain_stays_gapless() {
    let audit_addr = reserve_port().release();
    let (spool_dir, audit_dir) = (
        tempfile::tempdir().expect("spool"),
        tempfile::tempdir().expect("audit"),
    );
    let mut audit = audit_svc_process(audit_addr, audit_dir.path());
    let shutdown = CancellationToken::new();
    let recorder =
        Recorder::start(&edge_spool(audit_addr, spool_dir.path()), &shutdown).expect("recorder");
    let url = serve_edge(recorder, &shutdown).await;
    let http = reqwest::Client::new();
    let audit_config = audit_svc_config(audit_dir.path());

    // Calls keep coming while audit-svc is killed mid-stream and started again.
    let answered = Arc::new(Mutex::new(Vec::new()));
    let load = {
        let answered = Arc::clone(&answered);
        tokio::spawn(async move {
            for id in 1..=300_u64 {
                let text = format!("call-{id}");
                let response = call(&http, &url, id, "echo", json!({"text": text})).await;
                assert_eq!(result_text(&response), Some(text.as_str()), "{response}");
                answered.lock().expect("lock").push(id.to_string());
            }
        })
    };
    let answered_count = || answered.lock().expect("lock").len();
    let deadline = Instant::now() + Duration::from_secs(60);
    while answered_count() < 50 {
        assert!(Instant::now() < deadline, "no load got through");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    audit.kill().expect("kill -9 audit-svc");
    audit.wait().expect("reaped");
    while answered_count() < 150 {
        assert!(
            Instant::now() < deadline,
            "calls stopped while audit-svc was down"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    audit = audit_svc_process(audit_addr, audit_dir.path());
    load.await.expect("load");
    let answered = answered.lock().expect("lock").clone();
    let events = wait_for_events(
        &audit_config,
        "every answered call after the kill",
        |events| events.len() >= answered.len(),
    )
    .await;
    let recorded = jsonrpc_ids(&events);
    assert_eq!(recorded, answered, "each answered call once, in order");
    let store = audit_svc::open_store(&audit_config.store_location())
        .await
        .expect("store");
    let report = audit_svc::verify(store.as_ref(), None)
        .await
        .expect("verify");
    assert_eq!(report.problem, None);
    assert_eq!(report.tree_size, answered.len() as u64);
    audit.kill().expect("stop audit-svc");
    audit.wait().expect("reaped");
    shutdown.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_archive_accepts_a_retention_batch_and_names_the_record_after_one_byte_is_edited() {
    let shutdown = CancellationToken::new();
    let (spool_dir, data) = (
        tempfile::tempdir().expect("spool"),
        tempfile::tempdir().expect("audit"),
    );
    let mut config = audit_svc_config(data.path());
    config.checkpoint.interval = Duration::from_millis(200);
    config.retention.max_age = Some(Duration::from_millis(500));
    config.retention.interval = Duration::from_millis(200);
    let audit_listener = TcpListener::bind("127.0.0.1:0").await.expect("audit port");
    let audit_addr = audit_listener.local_addr().expect("audit addr");
    tokio::spawn(audit_svc::serve(
        config.clone(),
        audit_listener,
        shutdown.clone(),
    ));
    let recorder =
        Recorder::start(&edge_spool(audit_addr, spool_dir.path()), &shutdown).expect("recorder");
    let url = serve_edge(recorder, &shutdown).await;
    let http = reqwest::Client::new();
    for id in 1..=5 {
        let response = call(
            &http,
            &url,
            id,
            "echo",
            json!({"text": format!("call-{id}")}),
        )
        .await;
        assert!(result_text(&response).is_some(), "{response}");
    }

    // Retention archives the calls as a signed batch once they are older than max_age.
    let archive_dir = config.archive_dir();
    let deadline = Instant::now() + Duration::from_secs(30);
    let archive = loop {
        let batch = std::fs::read_dir(&archive_dir)
            .into_iter()
            .flatten()
            .find_map(|entry| {
                let path = entry.ok()?.path();
                (path.extension()? == "jsonl").then_some(path)
            });
        if let Some(batch) = batch {
            break batch;
        }
        assert!(
            Instant::now() < deadline,
            "no archive batch in {}",
            archive_dir.display()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    shutdown.cancel();
    let data_arg = data.path().to_str().expect("utf-8 path");
    let file = archive.to_str().expect("utf-8 path");
    let intact = gatehouse_cli(&["audit", "verify-archive", file, "--data", data_arg]);
    assert!(intact.status.success(), "{intact:?}");
    let report = json_stdout(&intact);
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["first"], 1, "{report}");
    let last = report["last"].as_u64().expect("last");
    assert!(last >= 1, "{report}");

    // Edit one byte of one archived event: the CLI fails and names that record.
    let text = std::fs::read_to_string(&archive).expect("archive");
    let (line, edited) = text
        .lines()
        .enumerate()
        .find_map(|(line, content)| {
            content
                .contains("\"mcpMethod\":\"tools/call\"")
                .then(|| (line, content.replacen("tools/call", "tools/cell", 1)))
        })
        .expect("an archived tools/call event");
    let sequence: Value = serde_json::from_str(&edited).expect("still JSON");
    let sequence = sequence["sequence"].as_str().expect("sequence").to_owned();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[line] = &edited;
    std::fs::write(&archive, lines.join("\n") + "\n").expect("edit the archive");
    let broken = gatehouse_cli(&["audit", "verify-archive", file, "--data", data_arg]);
    assert!(
        !broken.status.success(),
        "an edited archive verified: {broken:?}"
    );
    let report = json_stdout(&broken);
    assert_eq!(report["intact"], false, "{report}");
    let problem = report["problem"].as_str().expect("problem");
    assert!(
        problem.contains(&format!("record {sequence} ")),
        "{problem}"
    );
}

/// Starts the standalone vault-svc binary on `addr`, sending its events to audit-svc at `audit`.
fn vault_svc_process(
    addr: std::net::SocketAddr,
    data: &Path,
    audit: std::net::SocketAddr,
) -> std::process::Child {
    let binary = PathBuf::from(ECHO).with_file_name("vault-svc");
    assert!(
        binary.is_file(),
        "{} is missing: build it first (`cargo build --workspace --bins`)",
        binary.display()
    );
    let config = data.join("vault.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{}\"\n[grpc]\nlisten_addr = \"{addr}\"\n\
             [callers]\nedge_token = \"{}\"\nadmin_token = \"{}\"\n\
             [audit]\nendpoint = \"http://{audit}\"\ntoken = \"{}\"\n\
             [connectors.crm]\ncredential = \"shared\"\n",
            data.display(),
            VAULT_EDGE_TOKEN,
            VAULT_ADMIN_TOKEN,
            vault_audit_token().expose(),
        ),
    )
    .expect("vault config");
    std::process::Command::new(binary)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("vault-svc")
}

const VAULT_EDGE_TOKEN: &str = "vault-edge-e2e-token-0123456789abcdef";
const VAULT_ADMIN_TOKEN: &str = "vault-admin-e2e-token-0123456789abcdef";
/// Is the shared credential's value: it must never reach the audit log.
const CANARY: &str = "canary-bearer-9f3c2a7e";

/// Is the token vault-svc presents to audit-svc (audit-svc's `callers.vault_token`).
fn vault_audit_token() -> SecretSetting {
    SecretSetting::from("vault-audit-e2e-".repeat(3))
}

/// Returns `message` as a request carrying the service token `token`.
fn as_caller<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        svc_kit::callers::SERVICE_TOKEN_METADATA,
        token.parse().expect("ascii token"),
    );
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_vault_svc_delivers_its_credential_events_to_a_standalone_audit_svc() {
    use proto::common::v1 as common;
    use proto::vault::v1 as pb;

    let (audit_addr, vault_addr) = (reserve_port().release(), reserve_port().release());
    let (vault_dir, audit_dir) = (
        tempfile::tempdir().expect("vault"),
        tempfile::tempdir().expect("audit"),
    );
    // vault-svc starts first: what it records before audit-svc is up waits and arrives later.
    let mut vault = vault_svc_process(vault_addr, vault_dir.path(), audit_addr);
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{vault_addr}"))
        .expect("endpoint")
        .connect_lazy();
    let mut client = pb::vault_client::VaultClient::new(channel);
    let material = pb::CredentialMaterial {
        kind: Some(pb::credential_material::Kind::Bearer(pb::BearerToken {
            token: Some(common::Secret {
                value: CANARY.to_owned(),
            }),
        })),
    };
    let set = pb::SetSharedCredentialRequest {
        connector: "crm".to_owned(),
        secret: Some(pb::set_shared_credential_request::Secret::Material(
            material,
        )),
        expires_at: None,
        description: "team token".to_owned(),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let stored = loop {
        match client
            .set_shared_credential(as_caller(VAULT_ADMIN_TOKEN, set.clone()))
            .await
        {
            Ok(response) => break response.into_inner().credential.expect("credential"),
            Err(status) => assert!(Instant::now() < deadline, "vault-svc not up: {status}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut audit = {
        let binary = PathBuf::from(ECHO).with_file_name("audit-svc");
        std::process::Command::new(binary)
            .env("GATEHOUSE_AUDIT__GRPC__LISTEN_ADDR", audit_addr.to_string())
            .env("GATEHOUSE_AUDIT__DATA_DIR", audit_dir.path())
            .env(
                "GATEHOUSE_AUDIT__CALLERS__VAULT_TOKEN",
                vault_audit_token().expose(),
            )
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("audit-svc")
    };
    let read = pb::GetCredentialRequest {
        principal: Some(common::Principal {
            agent: Some(common::Agent {
                client_id: "bot".to_owned(),
                ..common::Agent::default()
            }),
            ..common::Principal::default()
        }),
        connector: "crm".to_owned(),
        metadata: Some(common::RequestMetadata {
            trace_id: "0af7651916cd43dd8448eb211c80319c".to_owned(),
            ..common::RequestMetadata::default()
        }),
    };
    client
        .get_credential(as_caller(VAULT_EDGE_TOKEN, read))
        .await
        .expect("credential read");
    let delete = pb::DeleteCredentialRequest {
        credential_id: stored.credential_id.clone(),
    };
    client
        .delete_credential(as_caller(VAULT_ADMIN_TOKEN, delete))
        .await
        .expect("credential deleted");

    let audit_config = audit_svc_config(audit_dir.path());
    let events = wait_for_events(&audit_config, "the credential events", |events| {
        events.len() >= 3
    })
    .await;
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, event)| event["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "EVENT_KIND_CREDENTIAL_WRITTEN",
            "EVENT_KIND_CREDENTIAL_READ",
            "EVENT_KIND_CREDENTIAL_REVOKED"
        ],
        "written, read and deleted, in order"
    );
    for (_, event) in &events {
        assert_eq!(event["emitter"]["service"], "vault-svc", "{event}");
        assert_eq!(
            event["credential"]["credentialId"], stored.credential_id,
            "{event}"
        );
        assert!(
            !event.to_string().contains(CANARY),
            "a secret reached the audit log: {event}"
        );
    }
    assert_eq!(
        events[1].1["metadata"]["traceId"],
        "0af7651916cd43dd8448eb211c80319c"
    );
    vault.kill().expect("stop vault-svc");
    vault.wait().expect("reaped");
    audit.kill().expect("stop audit-svc");
    audit.wait().expect("reaped");
}

const AUTHZ_EDGE_TOKEN: &str = "authz-edge-e2e-token-0123456789abcdef";
const AUTHZ_ADMIN_TOKEN: &str = "authz-admin-e2e-token-0123456789abcdef";

/// Is the token authz-svc presents to audit-svc (audit-svc's `callers.authz_token`).
fn authz_audit_token() -> SecretSetting {
    SecretSetting::from("authz-audit-e2e-".repeat(3))
}

/// Starts the standalone authz-svc binary from its config file `config`.
fn authz_svc_process(config: &Path) -> std::process::Child {
    let binary = PathBuf::from(ECHO).with_file_name("authz-svc");
    assert!(
        binary.is_file(),
        "{} is missing: build it first (`cargo build --workspace --bins`)",
        binary.display()
    );
    std::process::Command::new(binary)
        .arg("--config")
        .arg(config)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("authz-svc")
}

/// Waits until something accepts connections on `addr`, failing if `child` exits first.
async fn wait_listening(addr: std::net::SocketAddr, child: &mut std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(
            child.try_wait().expect("child status").is_none(),
            "the service exited before listening on {addr}"
        );
        assert!(Instant::now() < deadline, "nothing listens on {addr}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asks authz-svc's token endpoint for an agent token; returns the status.
async fn agent_token(http: &reqwest::Client, origin: &str, agent: &(String, String)) -> u16 {
    http.post(format!("{origin}/token"))
        .basic_auth(&agent.0, Some(&agent.1))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", &format!("{origin}/v/crm/mcp")),
        ])
        .send()
        .await
        .expect("token request")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standalone_authz_svc_killed_with_audit_svc_away_delivers_its_token_event_once_after_restart()
 {
    use proto::authz::v1 as pb;

    let audit_port = reserve_port();
    let (grpc, http_addr) = (reserve_port().release(), reserve_port().release());
    let (authz_dir, audit_dir) = (
        tempfile::tempdir().expect("authz"),
        tempfile::tempdir().expect("audit"),
    );
    let origin = format!("http://{http_addr}");
    let config = authz_dir.path().join("authz.toml");
    std::fs::write(
        &config,
        format!(
            "[grpc]\nlisten_addr = \"{grpc}\"\n\
             [callers]\nedge_token = \"{AUTHZ_EDGE_TOKEN}\"\nadmin_token = \"{AUTHZ_ADMIN_TOKEN}\"\n\
             [oauth]\nlisten_addr = \"{http_addr}\"\n\
             [[oauth.resources]]\nname = \"crm\"\nurl = \"{origin}/v/crm/mcp\"\n\
             [store]\ndata_dir = \"{data}\"\n\
             [audit]\nurl = \"http://{audit}\"\ntoken = \"{token}\"\n",
            data = authz_dir.path().join("data").display(),
            audit = audit_port.addr(),
            token = authz_audit_token().expose(),
        ),
    )
    .expect("authz config");
    let mut authz = authz_svc_process(&config);
    wait_listening(grpc, &mut authz).await;
    wait_listening(http_addr, &mut authz).await;

    // audit-svc is away: the agent's creation and its token are spooled, and the token issued.
    let channel = svc_kit::grpc::channel(
        &format!("http://{grpc}"),
        &svc_kit::GrpcClientConfig::default(),
    )
    .expect("channel");
    let admin_token = svc_kit::callers::PresentToken::new(Some(&SecretSetting::from(
        AUTHZ_ADMIN_TOKEN.to_owned(),
    )))
    .expect("token");
    let created = pb::agent_admin_client::AgentAdminClient::with_interceptor(channel, admin_token)
        .create_agent(pb::CreateAgentRequest {
            name: "spooled".to_owned(),
            virtual_servers: vec!["crm".to_owned()],
            ..Default::default()
        })
        .await
        .expect("agent created")
        .into_inner();
    let agent = (
        created.agent.expect("bundle").client_id,
        created.client_secret.expect("secret").value,
    );
    let http = reqwest::Client::new();
    assert_eq!(agent_token(&http, &origin, &agent).await, 200);

    // kill -9 before audit-svc ever acknowledged anything, then start authz-svc again.
    authz.kill().expect("kill -9 authz-svc");
    authz.wait().expect("reaped");
    let mut authz = authz_svc_process(&config);
    wait_listening(http_addr, &mut authz).await;

    // audit-svc comes up on the port authz-svc was told about.
    let shutdown = CancellationToken::new();
    let mut audit_config = audit_svc::Config::default().with_data_dir(audit_dir.path());
    audit_config.callers.authz_token = Some(authz_audit_token());
    let server = tokio::spawn(audit_svc::serve(
        audit_config.clone(),
        audit_port.listen(),
        shutdown.clone(),
    ));
    // A token issued after the restart arrives behind the spooled ones: once it is stored,
    // everything spooled before the kill has been delivered.
    assert_eq!(agent_token(&http, &origin, &agent).await, 200);
    let events = tokio::select! {
        events = wait_for_events(&audit_config, "authz-svc's spooled events", |events| {
            events.len() >= 3
        }) => events,
        ended = server => panic!("audit-svc stopped: {ended:?}"),
    };
    let kinds: Vec<&str> = events
        .iter()
        .map(|(_, event)| event["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        kinds,
        [
            "EVENT_KIND_AGENT_CHANGED",
            "EVENT_KIND_TOKEN_ISSUED",
            "EVENT_KIND_TOKEN_ISSUED"
        ],
        "the spooled events once each, in order, then the new token"
    );
    let jtis: BTreeSet<&str> = events[1..]
        .iter()
        .map(|(_, event)| event["token"]["jti"].as_str().expect("jti"))
        .collect();
    assert_eq!(jtis.len(), 2, "two distinct tokens: {events:?}");
    for (_, event) in &events {
        assert_eq!(event["emitter"]["service"], "authz-svc", "{event}");
        assert!(
            !event.to_string().contains(&agent.1),
            "a secret reached the audit log: {event}"
        );
    }
    authz.kill().expect("stop authz-svc");
    authz.wait().expect("reaped");
    shutdown.cancel();
}
