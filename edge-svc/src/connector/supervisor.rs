//! The supervision loop of one connector: open a session, publish it, notice its end,
//! back off, and open the next, until shutdown or (stdio only) a crash loop.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rmcp::{
    ClientLifecycleMode, Peer, RoleClient,
    model::ProtocolVersion,
    service::{QuitReason, RunningService, serve_client_with_lifecycle_and_ct},
    transport::IntoTransport,
};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{
    ConnectorState, ConnectorStatus, Era, Error, LandlockState, Relay, RestartPolicy, Transport,
    handler::RelayHandler,
    http, sandbox, sse,
    status::{Book, StderrTail, lock},
    stdio::{self, Process},
};

/// Shared state of one connector, owned by its handles and its supervision task.
#[derive(Debug)]
pub(crate) struct Supervisor {
    name: Arc<str>,
    kind: &'static str,
    connect_timeout: Duration,
    phase: watch::Sender<Phase>,
    book: Mutex<Book>,
    stderr: StderrTail,
    landlock_warned: AtomicBool,
    wake: Notify,
}

/// Where the supervision loop is; `peer()` waits on changes of this.
#[derive(Debug, Clone)]
enum Phase {
    Connecting,
    Ready(Peer<RoleClient>),
    Restarting,
    Failed(String),
    Stopped,
}

/// An open session and, for stdio, the program behind it.
#[derive(Debug)]
pub(crate) struct Session {
    service: RunningService<RoleClient, RelayHandler>,
    process: Option<Process>,
}

impl Supervisor {
    /// Creates the connector state and starts its supervision task.
    pub(crate) fn spawn(
        name: String,
        transport: Transport,
        relay: Arc<dyn Relay>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let kind = match &transport {
            Transport::Stdio(_) => "stdio",
            Transport::Http(_) => "http",
            Transport::Sse(_) => "sse",
        };
        let supervisor = Arc::new(Self {
            name: name.into(),
            kind,
            connect_timeout: transport.connect_timeout(),
            phase: watch::Sender::new(Phase::Connecting),
            book: Mutex::default(),
            stderr: StderrTail::default(),
            landlock_warned: AtomicBool::new(false),
            wake: Notify::new(),
        });
        supervisor.warn_about_sandbox(&transport);
        let handler = RelayHandler::new(Arc::clone(&supervisor.name), relay);
        tokio::spawn(supervise(
            Arc::clone(&supervisor),
            transport,
            handler,
            shutdown,
        ));
        supervisor
    }

    /// Returns the connector name.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Returns a live session, waiting for one at most the connect timeout.
    pub(crate) async fn peer(&self) -> Result<Peer<RoleClient>, Error> {
        let mut phases = self.phase.subscribe();
        let deadline = tokio::time::Instant::now() + self.connect_timeout;
        loop {
            let phase = phases.borrow_and_update().clone();
            match phase {
                Phase::Ready(peer) if !peer.is_transport_closed() => return Ok(peer),
                Phase::Failed(last_error) => {
                    return Err(Error::Failed {
                        name: self.name.to_string(),
                        last_error,
                    });
                }
                Phase::Stopped => {
                    return Err(Error::ShutDown {
                        name: self.name.to_string(),
                    });
                }
                Phase::Ready(_) | Phase::Connecting | Phase::Restarting => self.wake.notify_one(),
            }
            match tokio::time::timeout_at(deadline, phases.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    return Err(Error::ShutDown {
                        name: self.name.to_string(),
                    });
                }
                Err(_) => {
                    return Err(Error::ConnectTimeout {
                        name: self.name.to_string(),
                        timeout: self.connect_timeout,
                        last_error: lock(&self.book).last_error.clone(),
                    });
                }
            }
        }
    }

    /// Returns the protocol version of the current (or last) session.
    pub(crate) fn protocol_version(&self) -> Option<ProtocolVersion> {
        lock(&self.book).protocol_version.clone()
    }

    /// Returns the administrators' view of this connector.
    pub(crate) fn status(&self) -> ConnectorStatus {
        let state = match &*self.phase.borrow() {
            Phase::Connecting => ConnectorState::Connecting,
            Phase::Ready(_) => ConnectorState::Ready,
            Phase::Restarting => ConnectorState::Restarting,
            Phase::Failed(_) => ConnectorState::Failed,
            Phase::Stopped => ConnectorState::Stopped,
        };
        let book = lock(&self.book);
        ConnectorStatus {
            name: self.name.to_string(),
            transport: self.kind,
            state,
            restarts: book.restarts,
            last_error: book.last_error.clone(),
            protocol_version: book.protocol_version.as_ref().map(ToString::to_string),
            pid: book.pid,
            landlock: book.landlock,
            stderr_tail: self.stderr.snapshot(),
        }
    }

    /// Waits until the supervision task has finished after shutdown.
    pub(crate) async fn stopped(&self) {
        let mut phases = self.phase.subscribe();
        // An error means the task is gone, which is just as final.
        let _ = phases
            .wait_for(|phase| matches!(phase, Phase::Stopped))
            .await;
    }

    /// Records a freshly spawned stdio program.
    pub(crate) fn launched(&self, pid: Option<u32>, landlock: Option<LandlockState>) {
        let mut book = lock(&self.book);
        book.pid = pid;
        book.landlock = landlock;
    }

    /// Takes one stderr line of the stdio program: keeps it, and reads the launcher's status.
    pub(crate) fn stderr_line(&self, line: &str) {
        tracing::debug!(connector = %self.name, line, "stdio connector stderr");
        if let Some(state) = line
            .strip_prefix(sandbox::STATUS_PREFIX)
            .and_then(LandlockState::from_word)
        {
            lock(&self.book).landlock = Some(state);
            if state != LandlockState::Enforced
                && !self.landlock_warned.swap(true, Ordering::Relaxed)
            {
                tracing::warn!(
                    connector = %self.name,
                    landlock = state.word(),
                    "landlock is not fully enforced by this kernel: the stdio connector can read and write \
                     outside its working directory and declared paths (limits and clean environment still apply)"
                );
            }
        }
        self.stderr.push(line);
    }

    fn warn_about_sandbox(&self, transport: &Transport) {
        let Transport::Stdio(config) = transport else {
            return;
        };
        if !config.sandbox.enabled {
            tracing::warn!(connector = %self.name, "sandbox disabled: the stdio connector runs unconfined");
        } else if sandbox::running_as_root() {
            tracing::warn!(
                connector = %self.name,
                "gatehouse runs as root: the kernel does not enforce the process limit (RLIMIT_NPROC)"
            );
        }
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    fn record_error(&self, error: String) {
        tracing::warn!(connector = %self.name, error = %error, "connector session ended");
        lock(&self.book).last_error = Some(error);
    }

    fn publish(&self, session: &Session) {
        let peer = session.service.peer().clone();
        let version = peer.peer_info().map(|info| info.protocol_version.clone());
        tracing::info!(connector = %self.name, protocol_version = ?version, "connector session ready");
        lock(&self.book).protocol_version = version;
        self.set_phase(Phase::Ready(peer));
    }
}

impl Session {
    /// Wraps an open rmcp client service and its program, if any.
    pub(crate) fn new(
        service: RunningService<RoleClient, RelayHandler>,
        process: Option<Process>,
    ) -> Self {
        Self { service, process }
    }

    /// Waits until the session ends or shutdown, closes it, and says why it ended.
    async fn run(self, session_ct: CancellationToken, shutdown: &CancellationToken) -> String {
        let Self { service, process } = self;
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
pub(crate) async fn handshake<T, E, A>(
    handler: RelayHandler,
    transport: T,
    era: Era,
    session_ct: CancellationToken,
) -> Result<RunningService<RoleClient, RelayHandler>, Error>
where
    T: IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    serve_client_with_lifecycle_and_ct(handler, transport, lifecycle(era), session_ct)
        .await
        .map_err(|error| Error::Handshake(Box::new(error)))
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

/// Formats an error with its whole source chain, for the status page.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn open(
    supervisor: &Arc<Supervisor>,
    transport: &Transport,
    handler: RelayHandler,
    session_ct: CancellationToken,
) -> Result<Session, Error> {
    match transport {
        Transport::Stdio(config) => stdio::open(supervisor, config, handler, session_ct).await,
        Transport::Http(config) => http::open(config, handler, session_ct).await,
        Transport::Sse(config) => sse::open(config, handler, session_ct).await,
    }
}

/// The supervision task: runs until shutdown, or until a stdio crash loop marks it failed.
async fn supervise(
    supervisor: Arc<Supervisor>,
    transport: Transport,
    handler: RelayHandler,
    shutdown: CancellationToken,
) {
    let (policy, wakeable) = match &transport {
        Transport::Stdio(config) => (config.restart.clone(), false),
        Transport::Http(_) | Transport::Sse(_) => (
            RestartPolicy {
                max_failures: u32::MAX,
                ..RestartPolicy::default()
            },
            true,
        ),
    };
    let mut failures = 0u32;
    let mut attempts = 0u64;
    while !shutdown.is_cancelled() {
        if attempts > 0 {
            lock(&supervisor.book).restarts += 1;
        }
        attempts += 1;
        let started = tokio::time::Instant::now();
        let session_ct = shutdown.child_token();
        match open(&supervisor, &transport, handler.clone(), session_ct.clone()).await {
            Ok(session) => {
                supervisor.publish(&session);
                let reason = session.run(session_ct, &shutdown).await;
                if shutdown.is_cancelled() {
                    break;
                }
                supervisor.record_error(reason);
                failures = if started.elapsed() >= policy.stable_after {
                    1
                } else {
                    failures + 1
                };
            }
            Err(error) => {
                if shutdown.is_cancelled() {
                    break;
                }
                supervisor.record_error(chain(&error));
                failures += 1;
            }
        }
        if failures >= policy.max_failures {
            let last_error = lock(&supervisor.book)
                .last_error
                .clone()
                .unwrap_or_default();
            tracing::error!(connector = %supervisor.name, failures, last_error = %last_error, "stdio connector crash loop; giving up");
            supervisor.set_phase(Phase::Failed(last_error));
            shutdown.cancelled().await;
            break;
        }
        supervisor.set_phase(Phase::Restarting);
        let delay = policy.backoff(failures);
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = supervisor.wake.notified(), if wakeable => {}
            () = shutdown.cancelled() => {}
        }
    }
    supervisor.set_phase(Phase::Stopped);
}
