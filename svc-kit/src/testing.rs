//! Test support, behind the `testing` feature: tracing for tests, ephemeral
//! ports and a server handle that stops cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStderr, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::config::{LogFormat, TelemetryConfig};

/// Runs a server task on an ephemeral loopback port until [`TestServer::stop`].
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Runs a service binary as a child process, for tests of `main`.
#[derive(Debug)]
pub struct ServiceProcess {
    child: Child,
    addr: SocketAddr,
}

/// Bounds every wait on a test server or child process.
const DEADLINE: Duration = Duration::from_secs(30);

/// Installs telemetry for tests once per process: logs through the test harness
/// writer, filtered by `RUST_LOG` (default `info`), and spans with trace ids so
/// that propagation can be asserted. Later calls do nothing.
pub fn init_test_tracing() {
    let config = TelemetryConfig {
        log_format: LogFormat::Pretty,
        log_filter: std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
        ..TelemetryConfig::default()
    };
    if let Err(error) = crate::telemetry::install("test", &config, true) {
        panic!("cannot install test telemetry: {error:#}");
    }
}

/// Returns a listener bound to an ephemeral loopback port, and its address.
///
/// Binding before the server starts means clients can connect at once, with no
/// port race.
pub async fn bind_ephemeral() -> (TcpListener, SocketAddr) {
    let listener = match TcpListener::bind("127.0.0.1:0").await {
        Ok(listener) => listener,
        Err(error) => panic!("cannot bind an ephemeral port: {error}"),
    };
    match listener.local_addr() {
        Ok(addr) => (listener, addr),
        Err(error) => panic!("cannot read the bound address: {error}"),
    }
}

impl TestServer {
    /// Binds an ephemeral port and spawns `serve(listener, shutdown)` on it.
    pub async fn start<F, Fut>(serve: F) -> Self
    where
        F: FnOnce(TcpListener, CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (listener, addr) = bind_ephemeral().await;
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, shutdown.clone()));
        Self {
            addr,
            shutdown,
            task,
        }
    }

    /// Returns the address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Returns the server's `http://` URL, for a gRPC channel.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Cancels the server and returns its result; an error if it failed, panicked
    /// or did not stop within 30 seconds.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .context("server did not stop within 30 s of cancellation")?
            .context("server task panicked")?
    }
}

/// Returns a loopback address free a moment ago, for a listener a child process binds itself
/// (one it cannot be handed); a test that uses it may race another for the port.
pub fn free_port() -> SocketAddr {
    let listener = match std::net::TcpListener::bind("127.0.0.1:0") {
        Ok(listener) => listener,
        Err(error) => panic!("cannot bind an ephemeral port: {error}"),
    };
    match listener.local_addr() {
        Ok(addr) => addr,
        Err(error) => panic!("cannot read the bound address: {error}"),
    }
}

/// Scrapes `http://{addr}/metrics` until the body names `metric`, for at most 30 s; returns
/// the body.
pub async fn scrape_until(addr: SocketAddr, metric: &str) -> String {
    let url = format!("http://{addr}/metrics");
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Ok(response) = reqwest::get(&url).await
            && response.status().is_success()
            && let Ok(body) = response.text().await
            && body.contains(metric)
        {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} did not show {metric} within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asks a server's standard gRPC health service how the whole server is (`service: ""`).
/// Takes the channel by value so that a caller keeping a clone keeps the connection open.
pub async fn health(channel: Channel) -> anyhow::Result<ServingStatus> {
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await?;
    Ok(response.into_inner().status())
}

/// Returns the service names a server's gRPC reflection lists.
pub async fn reflected_services(channel: Channel) -> anyhow::Result<Vec<String>> {
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::iter([request]))
        .await?
        .into_inner();
    let response = responses
        .message()
        .await?
        .context("reflection closed the stream without an answer")?;
    match response.message_response {
        Some(MessageResponse::ListServicesResponse(list)) => Ok(list
            .service
            .into_iter()
            .map(|service| service.name)
            .collect()),
        other => anyhow::bail!("reflection answered a service list with {other:?}"),
    }
}

/// Checks a service binary's promise for a configuration value it refuses: it starts with
/// `env` set, exits 64 (`EX_USAGE`) and says why on exactly one stderr line that names `field`.
pub async fn assert_refuses_config(binary: &Path, env: (&str, &str), field: &str) {
    let (code, stderr) = run_to_exit(Command::new(binary).env(env.0, env.1)).await;
    assert_eq!(code, Some(64), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(field), "{stderr}");
}

/// Checks that a service binary given a configuration file that does not exist exits 64.
pub async fn assert_refuses_missing_config_file(binary: &Path) {
    let mut command = Command::new(binary);
    command.args(["--config", "/nonexistent/gatehouse-service.toml"]);
    let (code, stderr) = run_to_exit(&mut command).await;
    assert_eq!(code, Some(64), "{stderr}");
}

/// Runs a service binary until it exits; returns its exit code and what it wrote on stderr.
async fn run_to_exit(command: &mut Command) -> (Option<i32>, String) {
    match command.output().await {
        Ok(output) => (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        ),
        Err(error) => panic!("cannot run {:?}: {error}", command.as_std().get_program()),
    }
}

impl ServiceProcess {
    /// Starts `program` with `args` and extra environment `env`, and waits until
    /// it logs (on stderr, where svc-kit writes logs) the address it listens on.
    ///
    /// The service must log JSON lines with a `listen_addr` field (svc-kit's
    /// default log format); the rest of its output is discarded.
    pub async fn spawn(
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stderr = child.stderr.take().context("child stderr is not piped")?;
        let addr = tokio::time::timeout(DEADLINE, listen_addr(stderr))
            .await
            .context("service did not log its listen address within 30 s")??;
        Ok(Self { child, addr })
    }

    /// Returns the address the service listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends SIGTERM and returns the exit status once the process has exited.
    pub async fn terminate(mut self) -> anyhow::Result<ExitStatus> {
        let pid = self.child.id().context("service exited before SIGTERM")?;
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await
            .context("cannot run kill")?;
        anyhow::ensure!(sent.success(), "kill -TERM {pid} failed");
        tokio::time::timeout(DEADLINE, self.child.wait())
            .await
            .context("service did not exit within 30 s of SIGTERM")?
            .context("cannot wait for the service")
    }
}

// Reads log lines until one carries `"listen_addr":"…"`, then keeps draining the
// pipe in the background so that the child never blocks on a full pipe.
async fn listen_addr(stderr: ChildStderr) -> anyhow::Result<SocketAddr> {
    const FIELD: &str = "\"listen_addr\":\"";
    let mut lines = BufReader::new(stderr).lines();
    while let Some(line) = lines.next_line().await? {
        let Some(start) = line.find(FIELD).map(|index| index + FIELD.len()) else {
            continue;
        };
        let value = line[start..].split('"').next().unwrap_or_default();
        let addr = value
            .parse()
            .with_context(|| format!("unparsable listen address {value:?}"))?;
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        return Ok(addr);
    }
    anyhow::bail!("service exited without logging its listen address")
}
