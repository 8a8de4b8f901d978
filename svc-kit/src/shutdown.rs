//! Graceful shutdown: cancellation on SIGINT or SIGTERM, and a bounded drain.

use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{SignalKind, signal};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Cancels `token` when the process receives SIGINT or SIGTERM.
///
/// The signal handlers are registered before this returns, so a signal that
/// arrives at any later moment is caught; it must be called inside a Tokio
/// runtime. If the handlers cannot be registered, the failure is logged as an
/// error and the token is left alone.
pub fn cancel_on_signal(token: CancellationToken) {
    let (mut interrupt, mut terminate) = match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(interrupt), Ok(terminate)) => (interrupt, terminate),
        (Err(error), _) | (_, Err(error)) => {
            tracing::error!(%error, "cannot listen for shutdown signals");
            return;
        }
    };
    tokio::spawn(async move {
        let received = tokio::select! {
            _ = interrupt.recv() => "SIGINT",
            _ = terminate.recv() => "SIGTERM",
            () = token.cancelled() => return,
        };
        tracing::info!(signal = received, "shutting down");
        token.cancel();
    });
}

/// Waits for `task` to finish for at most `grace`, returning its result.
///
/// A task that outlives the grace period is aborted, a warning is logged and
/// `Ok(())` is returned: shutdown proceeds without it. A task that panicked
/// yields an error.
pub async fn drain(
    mut task: JoinHandle<anyhow::Result<()>>,
    grace: Duration,
) -> anyhow::Result<()> {
    match tokio::time::timeout(grace, &mut task).await {
        Ok(joined) => joined.context("task panicked or was cancelled")?,
        Err(_) => {
            task.abort();
            tracing::warn!(?grace, "in-flight work outlived the grace period");
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn drain_returns_the_task_result() {
        let ok = tokio::spawn(async { Ok(()) });
        drain(ok, Duration::from_secs(1)).await.unwrap();
        let failed = tokio::spawn(async { Err(anyhow::anyhow!("bind failed")) });
        let error = drain(failed, Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(error.to_string(), "bind failed");
    }

    #[tokio::test(start_paused = true)]
    async fn drain_gives_up_after_the_grace_period() {
        let started = tokio::time::Instant::now();
        let stuck = tokio::spawn(std::future::pending::<anyhow::Result<()>>());
        drain(stuck, Duration::from_secs(5)).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_reports_a_panicked_task() {
        let panicked = tokio::spawn(async { panic!("boom") });
        assert!(drain(panicked, Duration::from_secs(1)).await.is_err());
    }

    #[tokio::test]
    async fn sigterm_cancels_the_token() {
        let token = CancellationToken::new();
        cancel_on_signal(token.clone());
        let status = tokio::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .await
            .unwrap();
        assert!(status.success());
        tokio::time::timeout(Duration::from_secs(10), token.cancelled())
            .await
            .expect("token cancelled within the deadline");
    }
}
