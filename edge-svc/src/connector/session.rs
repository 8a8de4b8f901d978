//! One client session with a downstream: the rmcp service, and for stdio the program.

use std::sync::Arc;
use std::time::Duration;

use rmcp::{
    ClientLifecycleMode, Peer, RoleClient,
    model::ProtocolVersion,
    service::{QuitReason, RunningService, serve_client_with_lifecycle_and_ct},
    transport::IntoTransport,
};
use tokio_util::sync::CancellationToken;

use super::{Era, Error, direct::DirectLine, handler::RelayHandler, stdio::Process};

/// An open session and, for stdio, the program behind it.
#[derive(Debug)]
pub(crate) struct Session {
    service: RunningService<RoleClient, RelayHandler>,
    process: Option<Process>,
    direct: Option<Arc<DirectLine>>,
}

impl Session {
    /// Wraps an open rmcp client service and its program, if any.
    pub(crate) fn new(
        service: RunningService<RoleClient, RelayHandler>,
        process: Option<Process>,
    ) -> Self {
        Self {
            service,
            process,
            direct: None,
        }
    }

    /// Offers `direct` for plain calls while this session is ready (stateless HTTP only).
    pub(crate) fn with_direct(mut self, direct: Option<Arc<DirectLine>>) -> Self {
        self.direct = direct;
        self
    }

    /// Returns the direct line this session offers, if any.
    pub(crate) fn direct(&self) -> Option<Arc<DirectLine>> {
        self.direct.clone()
    }

    /// Returns the client handle of this session.
    pub(crate) fn peer(&self) -> Peer<RoleClient> {
        self.service.peer().clone()
    }

    /// Waits until the session ends or shutdown, closes it, and says why it ended.
    pub(crate) async fn run(
        self,
        session_ct: CancellationToken,
        shutdown: &CancellationToken,
    ) -> String {
        let Self {
            service, process, ..
        } = self;
        let waiting = service.waiting();
        tokio::pin!(waiting);
        let (reason, transport_done) = match process {
            Some(mut process) => {
                let (transport_done, shut_down) = tokio::select! {
                    _ = &mut waiting => (true, false),
                    () = process.wait() => (false, false),
                    () = shutdown.cancelled() => (false, true),
                };
                let status = process.terminate().await;
                let reason = if shut_down {
                    "shut down".to_owned()
                } else {
                    status
                };
                (reason, transport_done)
            }
            None => tokio::select! {
                quit = &mut waiting => (describe(quit), true),
                () = shutdown.cancelled() => ("shut down".to_owned(), false),
            },
        };
        if !transport_done {
            session_ct.cancel();
            let _ = waiting.await;
        }
        reason
    }
}

/// Runs the MCP handshake for `era` over `transport`, returning the running client service.
///
/// A handshake still unfinished after `timeout` is abandoned (the transport is dropped).
pub(crate) async fn handshake<T, E, A>(
    handler: RelayHandler,
    transport: T,
    era: Era,
    timeout: Duration,
    session_ct: CancellationToken,
) -> Result<RunningService<RoleClient, RelayHandler>, Error>
where
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let serve = serve_client_with_lifecycle_and_ct(handler, transport, lifecycle(era), session_ct);
    match tokio::time::timeout(timeout, serve).await {
        Ok(served) => served.map_err(|error| Error::Handshake(Box::new(error))),
        Err(_) => Err(Error::HandshakeTimeout { timeout }),
    }
}

/// Returns how rmcp should start a session of `era`.
fn lifecycle(era: Era) -> ClientLifecycleMode {
    let modern = vec![ProtocolVersion::V_2026_07_28];
    match era {
        Era::Auto => ClientLifecycleMode::Auto {
            preferred_versions: modern,
            legacy_version: Some(ProtocolVersion::LATEST_WITH_INITIALIZE),
        },
        Era::Modern => ClientLifecycleMode::Discover {
            preferred_versions: modern,
        },
        Era::Legacy => ClientLifecycleMode::Initialize,
    }
}

fn describe(quit: Result<QuitReason, tokio::task::JoinError>) -> String {
    match quit {
        Ok(QuitReason::Closed) => "transport closed".to_owned(),
        Ok(QuitReason::Cancelled) => "session cancelled".to_owned(),
        Ok(reason) => format!("session ended: {reason:?}"),
        Err(error) => format!("session task failed: {error}"),
    }
}
