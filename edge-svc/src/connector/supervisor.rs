//! The supervision loop of one connector: open a session, publish it, notice its end,
//! back off, and open the next, until shutdown or (stdio only) a crash loop.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use rmcp::{Peer, RoleClient, model::ProtocolVersion};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use super::{
    ConnectorState, ConnectorStatus, CredentialSource, Error, LandlockState, Relay, RestartPolicy,
    Transport,
    direct::DirectLine,
    handler::RelayHandler,
    http, sandbox,
    session::Session,
    sse,
    status::{Book, StderrTail, lock},
    stdio,
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
    /// Whether callers may hurry a reconnection (HTTP and SSE, which reconnect forever); such a
    /// caller is answered by the attempt it hurried. A stdio crash loop ends in `Failed`, which
    /// its callers wait for instead.
    hurriable: bool,
    /// The credential injected into every HTTP request or stdio launch, for connectors that
    /// inject one.
    credential: Option<Arc<dyn CredentialSource>>,
}

/// Where the supervision loop is; `peer()` waits on changes of this.
#[derive(Debug, Clone)]
enum Phase {
    Connecting,
    /// A live session, and the direct line it offers for plain calls, if any.
    Ready(Peer<RoleClient>, Option<Arc<DirectLine>>),
    /// The last session ended; the next is opened after the backoff.
    Restarting,
    /// The last attempt could not open a session (the downstream is down or refused it).
    Down,
    Failed(String),
    Stopped,
}

impl Supervisor {
    /// Creates the connector state and starts its supervision task.
    pub(crate) fn spawn(
        name: String,
        transport: Transport,
        credential: Option<Arc<dyn CredentialSource>>,
        relay: Arc<dyn Relay>,
        shutdown: CancellationToken,
    ) -> Arc<Self> {
        let kind = transport.kind();
        let hurriable = !matches!(transport, Transport::Stdio(_));
        let supervisor = Arc::new(Self {
            name: name.into(),
            kind,
            connect_timeout: transport.connect_timeout(),
            phase: watch::Sender::new(Phase::Connecting),
            book: Mutex::default(),
            stderr: StderrTail::default(),
            landlock_warned: AtomicBool::new(false),
            wake: Notify::new(),
            hurriable,
            credential,
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

    /// Returns the credential the connector injects, if any.
    pub(crate) fn credential(&self) -> Option<&Arc<dyn CredentialSource>> {
        self.credential.as_ref()
    }

    /// Returns a live session, waiting for one at most the connect timeout; while it waits,
    /// the supervision loop cuts its backoff short (see `supervise`). When the downstream is
    /// down, the caller gets the outcome of that one hurried attempt, not the whole timeout.
    pub(crate) async fn peer(&self) -> Result<Peer<RoleClient>, Error> {
        match tokio::time::timeout(self.connect_timeout, self.session(true)).await {
            Ok(session) => session,
            Err(_) => Err(Error::ConnectTimeout {
                name: self.name.to_string(),
                timeout: self.connect_timeout,
                last_error: lock(&self.book).last_error.clone(),
            }),
        }
    }

    /// Waits as long as it takes for a live session, leaving the backoff as it is: background
    /// work that always waits (the list-changed watcher) would otherwise turn a downstream that
    /// is down into a busy loop of reconnections.
    pub(crate) async fn live(&self) -> Result<Peer<RoleClient>, Error> {
        self.session(false).await
    }

    /// Says whether a session is live now, without waiting.
    pub(crate) fn is_ready(&self) -> bool {
        matches!(&*self.phase.borrow(), Phase::Ready(peer, _) if !peer.is_transport_closed())
    }

    /// Asks the supervision loop to cut its backoff short, without waiting for the session.
    pub(crate) fn hurry(&self) {
        self.wake.notify_one();
    }

    /// Waits for a live session, asking the supervision loop to hurry at each change if `wake`;
    /// such a waiter is answered by the first attempt that fails to open after it began.
    async fn session(&self, wake: bool) -> Result<Peer<RoleClient>, Error> {
        let mut phases = self.phase.subscribe();
        let mut waited = false;
        loop {
            let phase = phases.borrow_and_update().clone();
            match phase {
                Phase::Ready(peer, _) if !peer.is_transport_closed() => return Ok(peer),
                Phase::Down if wake && waited && self.hurriable => {
                    return Err(Error::Unavailable {
                        name: self.name.to_string(),
                        last_error: lock(&self.book).last_error.clone().unwrap_or_default(),
                    });
                }
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
                Phase::Ready(..) | Phase::Connecting | Phase::Restarting | Phase::Down => {
                    if wake {
                        self.wake.notify_one();
                    }
                }
            }
            waited = true;
            if phases.changed().await.is_err() {
                return Err(Error::ShutDown {
                    name: self.name.to_string(),
                });
            }
        }
    }

    /// Returns the direct line of the current session, when it is live and offers one; never
    /// waits (a caller without one takes rmcp's road, which waits for a session).
    pub(crate) fn direct(&self) -> Option<Arc<DirectLine>> {
        match &*self.phase.borrow() {
            Phase::Ready(peer, Some(line)) if !peer.is_transport_closed() => Some(Arc::clone(line)),
            _ => None,
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
            Phase::Ready(..) => ConnectorState::Ready,
            Phase::Restarting | Phase::Down => ConnectorState::Restarting,
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

    fn give_up(&self, failures: u32) {
        let last_error = lock(&self.book).last_error.clone().unwrap_or_default();
        tracing::error!(
            connector = %self.name,
            failures,
            last_error = %last_error,
            "stdio connector keeps crashing; no longer restarting it"
        );
        self.set_phase(Phase::Failed(last_error));
    }

    fn set_phase(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    fn record_error(&self, error: String, opened: bool) {
        let was_down = matches!(&*self.phase.borrow(), Phase::Down);
        let mut book = lock(&self.book);
        // A downstream that stays down fails the same way at every attempt: say so once.
        if was_down && book.last_error.as_ref() == Some(&error) {
            tracing::debug!(connector = %self.name, error = %error, "connector still unavailable");
        } else if opened {
            tracing::warn!(connector = %self.name, error = %error, "connector session ended");
        } else {
            tracing::warn!(connector = %self.name, error = %error, "connector unavailable; retrying with backoff");
        }
        book.last_error = Some(error);
    }

    fn publish(&self, session: &Session) {
        let peer = session.peer();
        let version = peer.peer_info().map(|info| info.protocol_version.clone());
        tracing::info!(connector = %self.name, protocol_version = ?version, "connector session ready");
        lock(&self.book).protocol_version = version;
        self.set_phase(Phase::Ready(peer, session.direct()));
    }
}

async fn open(
    supervisor: &Arc<Supervisor>,
    transport: &Transport,
    handler: RelayHandler,
    session_ct: CancellationToken,
) -> Result<Session, Error> {
    match transport {
        Transport::Stdio(config) => stdio::open(supervisor, config, handler, session_ct).await,
        Transport::Http(config) => {
            http::open(
                &supervisor.name,
                config,
                supervisor.credential.clone(),
                handler,
                session_ct,
            )
            .await
        }
        Transport::Sse(config) => {
            sse::open(
                &supervisor.name,
                config,
                supervisor.credential.clone(),
                handler,
                session_ct,
            )
            .await
        }
    }
}

/// Returns the restart policy of `transport`.
///
/// HTTP and SSE reconnect forever (a remote server comes back); only a stdio program that
/// keeps crashing is given up on.
fn restart_policy(transport: &Transport) -> RestartPolicy {
    match transport {
        Transport::Stdio(config) => config.restart.clone(),
        Transport::Http(_) | Transport::Sse(_) => RestartPolicy {
            max_failures: u32::MAX,
            ..RestartPolicy::default()
        },
    }
}

/// The supervision task: runs until shutdown, or until a stdio crash loop marks it failed.
async fn supervise(
    supervisor: Arc<Supervisor>,
    transport: Transport,
    handler: RelayHandler,
    shutdown: CancellationToken,
) {
    let policy = restart_policy(&transport);
    let mut failures = 0u32;
    let mut first = true;
    while !shutdown.is_cancelled() {
        if !std::mem::take(&mut first) {
            lock(&supervisor.book).restarts += 1;
        }
        let Some(ended) = attempt(&supervisor, &transport, &handler, &shutdown, &policy).await
        else {
            break;
        };
        let quick = ended.quick;
        failures = if quick { failures.saturating_add(1) } else { 1 };
        if failures >= policy.max_failures {
            supervisor.give_up(failures);
            shutdown.cancelled().await;
            break;
        }
        supervisor.set_phase(if ended.opened {
            Phase::Restarting
        } else {
            Phase::Down
        });
        let failed = tokio::time::Instant::now();
        let backoff = policy.backoff(failures);
        // A waiting caller cuts the backoff short, but to no less than its first step: callers
        // of a downstream that is down see a new attempt at that pace, never a busy loop.
        let soonest = failed + backoff.min(policy.initial_backoff);
        let woken = async {
            supervisor.wake.notified().await;
            tokio::time::sleep_until(soonest).await;
        };
        tokio::select! {
            () = tokio::time::sleep_until(failed + backoff) => {}
            () = woken, if supervisor.hurriable => {}
            () = shutdown.cancelled() => {}
        }
    }
    supervisor.set_phase(Phase::Stopped);
}

/// How one attempt ended, short of shutdown.
struct Ended {
    /// Whether it ended before `stable_after`, which counts towards a crash loop.
    quick: bool,
    /// Whether it opened a session (which then ended) rather than failing to open one.
    opened: bool,
}

/// Opens one session and serves it until it ends. Returns None on shutdown.
async fn attempt(
    supervisor: &Arc<Supervisor>,
    transport: &Transport,
    handler: &RelayHandler,
    shutdown: &CancellationToken,
    policy: &RestartPolicy,
) -> Option<Ended> {
    let started = tokio::time::Instant::now();
    let session_ct = shutdown.child_token();
    let (reason, opened) =
        match open(supervisor, transport, handler.clone(), session_ct.clone()).await {
            Ok(session) => {
                supervisor.publish(&session);
                handler.opened();
                (session.run(session_ct, shutdown).await, true)
            }
            Err(error) => (super::error::report(&error), false),
        };
    if shutdown.is_cancelled() {
        return None;
    }
    supervisor.record_error(reason, opened);
    Some(Ended {
        quick: started.elapsed() < policy.stable_after,
        opened,
    })
}
