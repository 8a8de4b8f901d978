//! SIEM sinks end to end: a log over a real store, sinks started as `serve`
//! starts them, and real receivers (rsyslog, rotel, moto) where they can run
//! here; the Splunk HEC test receiver implements the documented protocol.

use std::path::{Path, PathBuf};
use std::time::Duration;

use audit_svc::{AuditLog, Config, Signer, SinkConfig, SinkHandle, SinkLag};
use figment::Figment;
use figment::providers::{Format as _, Toml};
use tokio_util::sync::CancellationToken;

use crate::backend::{Backend, event};

mod cursor;
mod hec;
pub(crate) mod hec_receiver;
mod otlp;
mod s3;
mod syslog;

/// Returns the signer every sink test's log uses.
pub(crate) fn signer() -> Signer {
    Signer::new("gatehouse.test/audit".to_owned(), &[7u8; 32])
}

/// Returns a log over `backend`'s store.
pub(crate) async fn log_over(backend: &Backend) -> AuditLog {
    AuditLog::new(backend.store(), signer()).await.unwrap()
}

/// Returns the sinks of a `[[sinks]]` TOML document, parsed and validated as
/// audit-svc's configuration.
pub(crate) fn sinks(toml: &str) -> Vec<SinkConfig> {
    Config::load(Figment::from(Toml::string(toml)))
        .unwrap()
        .sinks
}

/// Appends `count` events (ids `<prefix>-<n>`, n from `from`) to `log`.
pub(crate) async fn append(log: &AuditLog, prefix: &str, from: u32, count: u32) {
    let events: Vec<_> = (from..from + count)
        .map(|n| {
            event(
                &format!("{prefix}-{n}"),
                "alice",
                "echo",
                "VERDICT_ALLOW",
                n % 60,
            )
        })
        .collect();
    log.append(events).await.unwrap();
}

/// Is sinks running over a log, stopped by `stop`.
pub(crate) struct Running {
    pub(crate) handles: Vec<SinkHandle>,
    shutdown: CancellationToken,
}

impl Running {
    pub(crate) fn start(log: &AuditLog, configs: &[SinkConfig]) -> Self {
        let shutdown = CancellationToken::new();
        let handles = audit_svc::sinks::start(log, configs, &shutdown).unwrap();
        Self { handles, shutdown }
    }

    /// Waits until the first sink has accepted `sequence` (20 s at most).
    pub(crate) async fn delivered(&self, sequence: u64) -> SinkLag {
        let mut lag = self.handles[0].subscribe();
        let waited = tokio::time::timeout(
            Duration::from_secs(20),
            lag.wait_for(|lag| lag.delivered >= sequence),
        )
        .await;
        let last = self.handles[0].lag();
        assert!(waited.is_ok(), "sink did not deliver {sequence}: {last:?}");
        last
    }

    /// Waits until the first sink has retried `count` times (20 s at most).
    pub(crate) async fn retried(&self, count: u64) -> SinkLag {
        let mut lag = self.handles[0].subscribe();
        let waited = tokio::time::timeout(
            Duration::from_secs(20),
            lag.wait_for(|lag| lag.retries >= count),
        )
        .await;
        let last = self.handles[0].lag();
        assert!(waited.is_ok(), "sink did not retry {count} times: {last:?}");
        last
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        for handle in self.handles {
            tokio::time::timeout(Duration::from_secs(10), handle.join())
                .await
                .expect("sink did not stop");
        }
    }
}

/// Returns the receiver program named by `variable`, or `None` after saying
/// loudly that the tests needing it were skipped.
pub(crate) fn receiver(variable: &str) -> Option<PathBuf> {
    match std::env::var_os(variable) {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            eprintln!(
                "SKIPPED: {variable} is not set; run audit-svc/tests/install-receivers.sh and \
                 source its env.sh to test against the real receiver"
            );
            None
        }
    }
}

/// Returns a loopback port that was free a moment ago (for receivers that
/// cannot report an ephemeral port back).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until something listens on `port` (20 s at most).
pub(crate) async fn wait_for_port(port: u16, what: &str) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} did not listen on port {port}");
}

/// Waits until `path` holds `needle` `count` times (20 s at most); returns it.
pub(crate) async fn wait_for_text(path: &Path, needle: &str, count: usize) -> String {
    let mut text = String::new();
    for _ in 0..200 {
        text = tokio::fs::read_to_string(path).await.unwrap_or_default();
        if text.matches(needle).count() >= count {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "{} holds {needle:?} {} times, expected {count}:\n{text}",
        path.display(),
        text.matches(needle).count()
    );
}

/// `serve` starts the configured sinks (so `gatehouse up` does too): events
/// appended over gRPC reach a JSONL sink, followed by a signed checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_starts_the_configured_sinks() {
    let mut service = crate::service::start_with(|config, data| {
        config.sinks = sinks(&format!(
            "[[sinks]]\nname = \"file\"\n[sinks.jsonl]\npath = \"{}\"\n",
            data.join("sink.jsonl").display()
        ));
    })
    .await;
    let (sender, mut acks) = crate::service::append_stream(&mut service.client).await;
    let allow = proto::common::v1::Verdict::Allow;
    let events = (0..3)
        .map(|n| crate::service::wire_event(&format!("served-{n}"), "alice", "echo", allow))
        .collect();
    crate::service::append(&sender, &mut acks, events).await;
    let path = service.data.path().join("sink.jsonl");
    let text = wait_for_text(&path, "served-", 3).await;
    assert_eq!(text.lines().count(), 3, "{text}");
    let notes = service.data.path().join("sink.jsonl.checkpoints");
    wait_for_text(&notes, "\n3\n", 1).await;
    drop(sender);
    service.server.stop().await.unwrap();
}
