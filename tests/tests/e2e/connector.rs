//! Connector scenarios: edge-svc's downstream clients against real MCP servers.
//!
//! Everything runs real processes: the Rust `mcp-echo` server (stdio and HTTP), the sandbox
//! launcher, and for the interop cases Node's server-everything and Python's FastMCP.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test helpers fail the test by panicking"
)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use edge_svc::connector::{Connector, Relay, StdioConfig, Transport};
use rmcp::{
    ErrorData,
    model::{
        CallToolRequestParams, CallToolResult, ClientResult, RequestId, ServerNotification,
        ServerRequest,
    },
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    sync::watch,
};
use tokio_util::sync::CancellationToken;

mod http;
mod interop;
mod sandbox;
mod stdio;

/// Longest wait for anything in these tests.
const DEADLINE: Duration = Duration::from_secs(30);

/// A [`Relay`] that records every notification it is given.
#[derive(Debug)]
struct Recorder {
    notifications: watch::Sender<Vec<(Option<RequestId>, ServerNotification)>>,
}

impl Recorder {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            notifications: watch::Sender::new(Vec::new()),
        })
    }

    /// Waits until a recorded notification satisfies `matches`, and returns a copy of it.
    async fn wait_for(
        &self,
        matches: impl Fn(&Option<RequestId>, &ServerNotification) -> bool,
    ) -> (Option<RequestId>, ServerNotification) {
        let mut receiver = self.notifications.subscribe();
        let seen = tokio::time::timeout(
            DEADLINE,
            receiver.wait_for(|all| all.iter().any(|(origin, n)| matches(origin, n))),
        )
        .await
        .expect("notification within the deadline")
        .expect("recorder alive");
        seen.iter()
            .find(|(origin, n)| matches(origin, n))
            .cloned()
            .expect("matched above")
    }
}

#[async_trait::async_trait]
impl Relay for Recorder {
    async fn request(
        &self,
        _connector: &str,
        _origin: Option<RequestId>,
        _request: ServerRequest,
    ) -> Result<ClientResult, ErrorData> {
        Err(ErrorData::internal_error(
            "the test relay answers no requests",
            None,
        ))
    }

    async fn notify(
        &self,
        _connector: &str,
        origin: Option<RequestId>,
        notification: ServerNotification,
    ) {
        self.notifications
            .send_modify(|all| all.push((origin, notification)));
    }
}

/// A connector under test with its shutdown token; shuts down (and waits) on `stop`.
struct Running {
    connector: Connector,
    shutdown: CancellationToken,
    relay: Arc<Recorder>,
}

impl Running {
    fn spawn(name: &str, transport: Transport) -> Self {
        let relay = Recorder::new();
        let shutdown = CancellationToken::new();
        let connector =
            Connector::spawn(name.to_owned(), transport, relay.clone(), shutdown.clone());
        Self {
            connector,
            shutdown,
            relay,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.connector.stopped())
            .await
            .expect("connector stops in time");
    }
}

/// Builds a connector config from JSON, as the YAML config would declare it.
fn config<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("valid connector config")
}

/// Returns a stdio config running `mcp-echo stdio` through the built sandbox launcher.
fn echo_stdio(cwd: &std::path::Path) -> StdioConfig {
    let mut config = StdioConfig::new(env!("CARGO_BIN_EXE_mcp-echo"), ["stdio"]);
    sandboxed(&mut config, cwd);
    config
}

/// Points `config` at the built sandbox launcher and a test-owned working directory.
fn sandboxed(config: &mut StdioConfig, cwd: &std::path::Path) {
    config.sandbox.launcher = Some(env!("CARGO_BIN_EXE_e2e-sandbox").into());
    config.cwd = Some(cwd.to_owned());
    // The test binaries live under the target directory, which the sandbox must let us run.
    config.paths.push(
        std::path::Path::new(env!("CARGO_BIN_EXE_mcp-echo"))
            .parent()
            .expect("bin dir")
            .to_owned(),
    );
}

/// Calls `tool` with JSON `arguments` on the connector's current session.
async fn call(
    connector: &Connector,
    tool: &str,
    arguments: serde_json::Value,
) -> Result<CallToolResult, rmcp::ServiceError> {
    let peer = connector.peer().await.expect("session");
    let arguments = arguments.as_object().cloned().unwrap_or_default();
    peer.call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(arguments))
        .await
}

/// Returns the text of the first content block of a tool result.
fn text(result: &CallToolResult) -> String {
    result
        .content
        .first()
        .and_then(|content| content.as_text())
        .map(|text| text.text.clone())
        .unwrap_or_default()
}

/// Re-evaluates `condition` until it holds, failing after [`DEADLINE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A child process that prints its URL on its first stdout line (mcp-echo http, FastMCP).
pub(super) struct UrlServer {
    pub(super) url: String,
    child: Child,
}

impl UrlServer {
    pub(super) async fn start(mut command: Command) -> Self {
        let mut child = command
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("server starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        tokio::time::timeout(DEADLINE, BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("url line within the deadline")
            .expect("readable stdout");
        let url = line.trim().to_owned();
        assert!(
            url.starts_with("http://"),
            "server printed a url, got {line:?}"
        );
        Self { url, child }
    }

    /// Kills the server and waits until it is gone.
    pub(super) async fn stop(mut self) {
        self.child.kill().await.expect("server killed");
    }
}
