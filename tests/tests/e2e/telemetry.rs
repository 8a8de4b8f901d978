//! What an SRE sees: one trace per MCP request from the client through `gatehouse up` to both
//! kinds of connector, exported over OTLP to a real collector (rotel, from PyPI, printing every
//! span it receives), and the Prometheus metrics of the same calls.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};

const ECHO: &str = env!("CARGO_BIN_EXE_mcp-echo");
const CALLER_SECRET: &str = "telemetry-e2e-caller-secret-5f1c2a";
/// The client's own trace: every span of the call must join it.
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
/// A trace the client does not sample: the gateway records no span of it, yet passes it on.
const UNSAMPLED_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

/// One span as rotel's detailed debug log prints it.
#[derive(Debug, Clone)]
struct Span {
    trace_id: String,
    parent_id: String,
    id: String,
    name: String,
    status: String,
    attributes: HashMap<String, String>,
}

/// A running `gatehouse up` and the origin it serves.
struct Up {
    child: tokio::process::Child,
    origin: String,
}

fn config(http_echo: &str) -> String {
    let dir = Path::new(ECHO).parent().expect("bin dir").display();
    format!(
        "connectors:\n\
         \x20 - name: web\n    http: {{url: \"{http_echo}\"}}\n\
         \x20 - name: local\n    stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{dir}\"]}}\n\
         virtual_servers:\n\
         \x20 - name: traced\n    auth: oauth\n    connectors: [{{connector: web}}, {{connector: local}}]\n\
         authorization:\n  agents:\n\
         \x20   - {{name: caller, owner: ops, virtual_servers: [traced], secret_env: E2E_CALLER_SECRET}}\n"
    )
}

async fn start_http_echo() -> (tokio::process::Child, String) {
    let mut child = tokio::process::Command::new(ECHO)
        .args(["http", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mcp-echo http");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let url = lines
        .next_line()
        .await
        .expect("read")
        .expect("mcp-echo prints its url");
    (child, url)
}

/// Starts `gatehouse up` on `config`, exporting to `otlp` when given.
async fn up(config: &Path, data: &Path, otlp: Option<&str>) -> Up {
    let mut command = tokio::process::Command::new(PathBuf::from(ECHO).with_file_name("gatehouse"));
    command
        .args(["up", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .env("E2E_CALLER_SECRET", CALLER_SECRET)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    if let Some(endpoint) = otlp {
        command.env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint);
    }
    let mut child = command.spawn().expect("gatehouse up");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let origin = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("stdout line") {
            if let Some(ready) = line.strip_prefix("gatehouse ready at ") {
                return ready.trim().to_owned();
            }
        }
        panic!("gatehouse exited before it was ready");
    })
    .await
    .expect("gatehouse ready in time");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Up { child, origin }
}

impl Up {
    /// Stops the gateway with SIGTERM, so that it flushes its spans, and waits for it.
    async fn terminate(mut self) {
        let pid = self.child.id().expect("running") as i32;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM");
        tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("gatehouse stops within 20 s")
            .expect("reaped");
    }
}

async fn token(origin: &str, resource: &str) -> String {
    super::oauth::client_credentials(origin, "caller", CALLER_SECRET, resource).await
}

/// Calls `tool` statelessly (2026-07-28) with `token`, as part of the trace `traceparent` names.
async fn call(
    url: &str,
    token: Option<&str>,
    id: u64,
    tool: &str,
    traceparent: Option<&str>,
) -> Value {
    let meta = json!({"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "telemetry-e2e", "version": "1"}});
    let mut request = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream")
        .header("mcp-protocol-version", "2026-07-28")
        .header("mcp-method", "tools/call")
        .header("mcp-name", tool);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(traceparent) = traceparent {
        request = request.header("traceparent", traceparent);
    }
    request
        .json(&json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                      "params": {"name": tool, "arguments": {"text": "hi"}, "_meta": meta}}))
        .send()
        .await
        .expect("tools/call")
        .json()
        .await
        .expect("JSON-RPC response")
}

/// The gateway's Prometheus metrics as text.
async fn scrape(origin: &str) -> String {
    reqwest::get(format!("{origin}/metrics"))
        .await
        .expect("scrape")
        .text()
        .await
        .expect("metrics text")
}

/// Sums the samples of `name` in the Prometheus `text` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(name) && labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Returns what `trace_context` reported: the `traceparent` header and `_meta.traceparent`.
fn reported(response: &Value) -> (Option<String>, Option<String>) {
    let text = response["result"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("a tool result: {response}"));
    let seen: Value = serde_json::from_str(text).expect("trace_context JSON");
    let field = |name: &str| seen[name].as_str().map(str::to_owned);
    (field("header"), field("meta"))
}

/// Parses rotel's detailed debug log into spans.
fn spans(text: &str) -> Vec<Span> {
    text.split("Span #")
        .skip(1)
        .filter_map(|block| {
            let field = |label: &str| {
                block.lines().find_map(|line| {
                    let (key, value) = line.split_once(':')?;
                    (key.trim() == label).then(|| value.trim().to_owned())
                })
            };
            let attributes = block
                .lines()
                .filter_map(|line| line.trim().strip_prefix("-> "))
                .filter_map(|line| {
                    let (key, value) = line.split_once(": ")?;
                    let value = value
                        .split_once('(')
                        .map_or(value, |(_, rest)| rest.trim_end_matches(')'));
                    Some((key.to_owned(), value.to_owned()))
                })
                .collect();
            Some(Span {
                trace_id: field("Trace ID")?,
                parent_id: field("Parent ID").unwrap_or_default(),
                id: field("ID")?,
                name: field("Name")?,
                status: field("Status code").unwrap_or_default(),
                attributes,
            })
        })
        .collect()
}

/// Returns the MCP span of the JSON-RPC request `id`.
fn mcp_span<'a>(spans: &'a [Span], id: &str) -> &'a Span {
    spans
        .iter()
        .find(|span| {
            span.attributes
                .get("jsonrpc.request.id")
                .map(String::as_str)
                == Some(id)
        })
        .unwrap_or_else(|| panic!("no MCP span for request {id}: {spans:#?}"))
}

fn child_named<'a>(spans: &'a [Span], parent: &Span, name: &str) -> &'a Span {
    spans
        .iter()
        .find(|span| span.parent_id == parent.id && span.name == name)
        .unwrap_or_else(|| panic!("no `{name}` span under {parent:?} in {spans:#?}"))
}

/// Waits until rotel printed at least `count` spans of the client's trace (20 s at most).
async fn trace_spans(output: &Path, count: usize) -> (String, Vec<Span>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let text = tokio::fs::read_to_string(output).await.unwrap_or_default();
        let ours: Vec<Span> = spans(&text)
            .into_iter()
            .filter(|span| span.trace_id == TRACE_ID)
            .collect();
        if ours.len() >= count || tokio::time::Instant::now() > deadline {
            return (text, ours);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn wait_for_port(port: u16) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "rotel did not listen on {port}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_runs_from_the_client_through_edge_to_http_and_stdio_connectors() {
    let Some(rotel) = std::env::var_os("ROTEL") else {
        eprintln!(
            "SKIPPED: ROTEL is not set; run audit-svc/tests/install-receivers.sh and source its \
             env.sh to test traces against a real OTLP collector"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let (grpc, http) = (free_port(), free_port());
    let output = dir.path().join("rotel.out");
    let _rotel = tokio::process::Command::new(rotel)
        .args([
            "start",
            "--otlp-grpc-endpoint",
            &format!("127.0.0.1:{grpc}"),
        ])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
        .args(["--exporter", "blackhole", "--debug-log", "traces"])
        .args(["--debug-log-verbosity", "detailed"])
        .stdout(std::fs::File::create(&output).expect("rotel output"))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("ROTEL is set but does not start");
    wait_for_port(grpc).await;
    let (_echo, echo_url) = start_http_echo().await;
    let config_path = dir.path().join("gatehouse.yaml");
    std::fs::write(&config_path, config(&echo_url)).expect("config");
    let otlp = format!("http://127.0.0.1:{grpc}");
    let gateway = up(&config_path, &dir.path().join("data"), Some(&otlp)).await;
    let url = format!("{}/v/traced/mcp", gateway.origin);
    let token = token(&gateway.origin, &url).await;
    let sampled = format!("00-{TRACE_ID}-{CLIENT_SPAN}-01");
    let traced = Some(sampled.as_str());
    let over_http = call(&url, Some(&token), 7, "web__trace_context", traced).await;
    let over_stdio = call(&url, Some(&token), 8, "local__trace_context", traced).await;
    let refused = call(&url, Some(&token), 9, "web__not_listed", traced).await;
    let unsampled = format!("00-{UNSAMPLED_TRACE_ID}-{CLIENT_SPAN}-00");
    let unsampled_call = call(
        &url,
        Some(&token),
        10,
        "web__trace_context",
        Some(&unsampled),
    )
    .await;
    assert!(refused["error"].is_object(), "{refused}");
    gateway.terminate().await;

    // http.request ×3, mcp.request ×3, mcp.downstream ×2 at least.
    let (text, spans) = trace_spans(&output, 8).await;
    for secret in [token.as_str(), CALLER_SECRET] {
        assert!(!text.contains(secret), "a secret reached the collector");
    }
    assert!(
        !text.contains(UNSAMPLED_TRACE_ID),
        "no span of a trace the client does not sample is exported"
    );
    // An unsampled trace still reaches the connector, continued from the gateway's request.
    let (header, meta) = reported(&unsampled_call);
    let passed_on = meta.expect("_meta.traceparent of an unsampled call");
    assert_eq!(
        header.as_deref(),
        Some(passed_on.as_str()),
        "header and _meta agree"
    );
    let parts: Vec<&str> = passed_on.split('-').collect();
    assert_eq!(parts.len(), 4, "{passed_on}");
    assert_eq!(
        (parts[0], parts[1], parts[3]),
        ("00", UNSAMPLED_TRACE_ID, "00"),
        "{passed_on}"
    );
    assert!(
        parts[2].len() == 16 && parts[2] != CLIENT_SPAN && parts[2] != "0000000000000000",
        "the parent is a span of the gateway's: {passed_on}"
    );
    let http_spans: Vec<&Span> = spans
        .iter()
        .filter(|span| span.parent_id == CLIENT_SPAN)
        .collect();
    assert_eq!(
        http_spans.len(),
        3,
        "three HTTP server spans under the client's: {spans:#?}"
    );
    for (id, tool, connector, response) in [
        ("7", "web__trace_context", "web", &over_http),
        ("8", "local__trace_context", "local", &over_stdio),
    ] {
        let mcp = mcp_span(&spans, id);
        assert!(
            http_spans.iter().any(|http| http.id == mcp.parent_id),
            "the MCP span is a child of an HTTP span: {mcp:?}"
        );
        assert_eq!(mcp.name, format!("tools/call {tool}"));
        for (key, value) in [
            ("mcp.method.name", "tools/call"),
            ("gen_ai.tool.name", tool),
            ("gen_ai.operation.name", "execute_tool"),
            ("mcp.protocol.version", "2026-07-28"),
            ("network.transport", "tcp"),
            ("gatehouse.virtual_server", "traced"),
            ("gatehouse.connector", connector),
            ("gatehouse.outcome", "success"),
        ] {
            assert_eq!(
                mcp.attributes.get(key).map(String::as_str),
                Some(value),
                "{key} of {mcp:?}"
            );
        }
        let downstream = child_named(&spans, mcp, &format!("tools/call {connector}"));
        let expected = format!("00-{TRACE_ID}-{}-01", downstream.id);
        let (header, meta) = reported(response);
        assert_eq!(
            meta.as_deref(),
            Some(expected.as_str()),
            "{connector}: _meta"
        );
        let header_expected = (connector == "web").then_some(expected.as_str());
        assert_eq!(header.as_deref(), header_expected, "{connector}: header");
        assert_ne!(mcp.status, "STATUS_CODE_ERROR", "{mcp:?}");
    }
    let refused = mcp_span(&spans, "9");
    assert_eq!(refused.name, "tools/call web__not_listed");
    for (key, value) in [
        ("gen_ai.tool.name", "web__not_listed"),
        ("gatehouse.outcome", "denied"),
        ("error.type", "denied"),
    ] {
        assert_eq!(
            refused.attributes.get(key).map(String::as_str),
            Some(value),
            "{key} of {refused:?}"
        );
    }
    assert_eq!(
        refused.status, "STATUS_CODE_ERROR",
        "an error span: {refused:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_calls_denials_and_latency_per_server_tool_and_connector() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_echo, echo_url) = start_http_echo().await;
    let config_path = dir.path().join("gatehouse.yaml");
    std::fs::write(&config_path, config(&echo_url)).expect("config");
    let gateway = up(&config_path, &dir.path().join("data"), None).await;
    let url = format!("{}/v/traced/mcp", gateway.origin);
    let token = token(&gateway.origin, &url).await;
    for id in 0..3 {
        let answer = call(&url, Some(&token), id, "web__echo", None).await;
        assert_eq!(answer["result"]["content"][0]["text"], "hi", "{answer}");
    }
    let refused = call(&url, Some(&token), 9, "web__no_such_tool", None).await;
    assert!(refused["error"].is_object(), "{refused}");

    // A session the express lane opened rests (no rmcp worker) until a request only rmcp
    // answers wakes it.
    let session = super::audit::RawSession::open(&url, &token, json!({})).await;
    let sessions = |text: &str, state: &str| {
        sample(
            text,
            "gatehouse_edge_sessions{",
            &["virtual_server=\"traced\"", &format!("state=\"{state}\"")],
        )
    };
    let text = scrape(&gateway.origin).await;
    assert_eq!(
        (sessions(&text, "resting"), sessions(&text, "awake")),
        (1.0, 0.0),
        "{text}"
    );
    let (_, listed) = session.call_method(1, "tools/list", json!({})).await;
    assert!(listed.to_string().contains("web__echo"), "{listed}");
    let (_, prompts) = session.call_method(2, "prompts/list", json!({})).await;
    assert!(prompts["result"]["prompts"].is_array(), "{prompts}");
    let _stream = super::audit::EventStream::open(&session).await;
    let listing = scrape(&gateway.origin).await;
    assert_eq!(
        (sessions(&listing, "resting"), sessions(&listing, "awake")),
        (1.0, 0.0),
        "a plain listing and a GET stream are the lane's: {listing}"
    );
    let (_, level) = session
        .call_method(3, "logging/setLevel", json!({"level": "info"}))
        .await;
    assert!(level["result"].is_object(), "{level}");
    let awake = scrape(&gateway.origin).await;
    assert_eq!(
        (sessions(&awake, "resting"), sessions(&awake, "awake")),
        (0.0, 1.0),
        "{awake}"
    );
    // Requests rmcp cannot parse reach no tool, and rmcp's warning for each is filtered out of
    // the logs: a counter is what shows a broken or probing client.
    let (_, malformed) = session
        .call_method(4, "tools/call", json!({"name": 5}))
        .await;
    assert_eq!(malformed["error"]["code"], -32602, "{malformed}");
    let (_, unknown) = session.call_method(5, "bogus/method", json!({})).await;
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    let refusals = scrape(&gateway.origin).await;
    let unparsed = |error: &str| {
        sample(
            &refusals,
            "gatehouse_edge_request_unparsed_total{",
            &[
                "virtual_server=\"traced\"",
                &format!("error_type=\"{error}\""),
            ],
        )
    };
    assert_eq!(
        (unparsed("invalid_params"), unparsed("method_not_found")),
        (1.0, 1.0),
        "{refusals}"
    );
    gateway.terminate().await;
    let sample = |name: &str, labels: &[&str]| sample(&text, name, labels);
    let echo = [
        "virtual_server=\"traced\"",
        "method=\"tools/call\"",
        "item=\"web__echo\"",
        "connector=\"web\"",
        "outcome=\"success\"",
    ];
    assert_eq!(
        sample("gatehouse_edge_request_duration_seconds_count{", &echo),
        3.0,
        "{text}"
    );
    assert_eq!(
        sample(
            "gatehouse_edge_request_duration_seconds_count{",
            &["outcome=\"denied\""]
        ),
        1.0,
        "{text}"
    );
    assert_eq!(
        sample(
            "gatehouse_authz_tokens_issued_total{",
            &["grant_type=\"client_credentials\""]
        ),
        1.0,
        "{text}"
    );
    assert!(!text.contains(&token) && !text.contains(CALLER_SECRET));
}
