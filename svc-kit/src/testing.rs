//! Test support, behind the `testing` feature: tracing for tests, ephemeral
//! ports and a server handle that stops cleanly.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{LogFormat, TelemetryConfig};

/// Runs a server task on an ephemeral loopback port until [`TestServer::stop`].
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
}

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
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .context("server did not stop within 30 s of cancellation")?
            .context("server task panicked")?
    }
}
