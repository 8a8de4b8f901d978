//! The sessions of one virtual server's session-era clients: rmcp's in-memory sessions, and
//! beside each what the express lane needs to answer its plain `tools/call` requests itself.
//!
//! rmcp keeps a session's handshake inside the session's worker, out of reach of code that
//! does not go through that worker. [`Sessions`] wraps rmcp's manager and keeps, per session,
//! the client's `initialize` parameters and the protocol version it was answered with, the
//! express lane's calls in flight (so the client's `notifications/cancelled` and `DELETE`
//! reach them), and when the session was last used.
//!
//! A session the lane opened rests: the lane answered its client's `initialize` itself, and
//! rmcp runs no worker for it (a worker's channels cost about 100 KiB, most of a session's
//! memory) until a request that only rmcp answers arrives. rmcp then finds the session in the
//! store this type also is, and replays the handshake into a new worker, as it does for a
//! session another edge opened.
//!
//! The last point moves idle expiry here: rmcp ends a session whose worker has seen nothing
//! for five minutes, and a session whose calls all take the express lane would look idle to
//! it while its client is busy. So rmcp's own timer is off, and a sweep ends a session that
//! no request has touched for [`IDLE`] and that has no reply stream open.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, InitializeRequestParams, ProtocolVersion, RequestId,
    ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::common::server_side_http::{ServerSseMessage, SessionId, session_id};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker, SessionConfig,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, SessionManager, SessionState, SessionStore, SessionStoreError,
};
use rmcp::transport::worker::WorkerTransport;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// How long a session lives without a request and without an open reply stream: rmcp's own
/// default, which clients have come to expect.
pub(crate) const IDLE: Duration = SessionConfig::DEFAULT_KEEP_ALIVE;

/// A reply stream of rmcp's, boxed because its type cannot be named.
type Reply = Pin<Box<dyn Stream<Item = ServerSseMessage> + Send + Sync>>;

/// rmcp's in-memory sessions of one virtual server, with each session's handshake beside it.
pub(crate) struct Sessions {
    local: LocalSessionManager,
    open: RwLock<HashMap<SessionId, Arc<Session>>>,
    idle: Duration,
    /// The instant `Session::last_used` counts milliseconds from.
    epoch: Instant,
    /// Where sessions are shared with the other edges, when there are any.
    shared: Option<Arc<dyn SessionStore>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Sessions")
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// One session as the express lane sees it.
#[derive(Debug, Default)]
pub(crate) struct Session {
    /// Set once the client's `initialize` has been answered.
    handshake: std::sync::OnceLock<Handshake>,
    /// Milliseconds after [`Sessions::epoch`] of the last request that touched the session.
    last_used: AtomicU64,
    /// Reply streams open now (a GET stream, or a request's SSE reply still running).
    streams: AtomicUsize,
    /// The express lane's calls in flight, by their JSON-RPC id.
    calls: Mutex<HashMap<RequestId, CancellationToken>>,
    /// Whether the client asked for log messages (`logging/setLevel`), which only rmcp's road
    /// relays.
    wants_logs: AtomicBool,
    /// Whether rmcp runs a worker for the session: [`RESTING`], [`WAKING`] or [`AWAKE`].
    state: AtomicU8,
    /// Wakes the requests that wait while the session is [`WAKING`], and the lane's GET stream
    /// when the session wakes or ends.
    woken: Notify,
    /// Whether the express lane serves the session's GET stream.
    listening: AtomicBool,
}

/// No worker: the lane opened the session, or rmcp has not restored it yet.
const RESTING: u8 = 0;
/// rmcp is replaying the handshake into a new worker, which takes no other message until it
/// has answered `initialize`.
const WAKING: u8 = 1;
/// rmcp runs the session's worker.
const AWAKE: u8 = 2;

/// What the client said in `initialize` and the version it was answered with.
#[derive(Debug, Clone)]
pub(crate) struct Handshake {
    pub(crate) version: ProtocolVersion,
    /// The client's `initialize` parameters, kept whole to replay them when a resting session
    /// wakes.
    pub(crate) request: InitializeRequestParams,
}

impl Handshake {
    /// Says whether nothing can ever be asked of this client during a call: it declared
    /// neither sampling, elicitation nor roots, so a call's answer is all that travels back
    /// and a plain JSON reply loses nothing.
    pub(crate) fn asks_nothing(&self) -> bool {
        let capabilities = &self.request.capabilities;
        capabilities.sampling.is_none()
            && capabilities.elicitation.is_none()
            && capabilities.roots.is_none()
    }
}

impl Sessions {
    /// Creates the sessions of one virtual server, shared with other edges through `shared`
    /// when given, swept until `ended` is cancelled or the sessions are dropped.
    pub(crate) fn start(
        idle: Duration,
        ended: &CancellationToken,
        shared: Option<Arc<dyn SessionStore>>,
    ) -> Arc<Self> {
        let sessions = Arc::new(Self {
            shared,
            ..Self::new(idle)
        });
        tokio::spawn(sweep(Arc::downgrade(&sessions), idle, ended.clone()));
        sessions
    }

    /// Creates the sessions without their sweep.
    fn new(idle: Duration) -> Self {
        let mut local = LocalSessionManager::default();
        local.session_config.completed_cache_ttl = RESUMABLE_FOR;
        local.session_config.keep_alive = None;
        Self {
            local,
            open: RwLock::default(),
            idle,
            epoch: Instant::now(),
            shared: None,
        }
    }

    /// Returns sessions holding `id`, as if its client's `initialize` had been answered by the
    /// lane (resting) or by rmcp (`awake`).
    #[cfg(test)]
    pub(crate) fn holding(id: &str, handshake: Handshake, awake: bool) -> Arc<Self> {
        let sessions = Self::new(IDLE);
        let session = sessions.entry(&id.into());
        let _ = session.handshake.set(handshake);
        if awake {
            session.set_state(AWAKE);
        }
        Arc::new(sessions)
    }

    /// Opens a resting session for a client whose `initialize` the lane answered with
    /// `handshake`, shares it with the other edges, and returns its id.
    pub(crate) async fn open_resting(&self, handshake: Handshake) -> SessionId {
        let id = session_id();
        let state = SessionState::new(handshake.request.clone());
        let _ = self.entry(&id).handshake.set(handshake);
        if let Some(shared) = &self.shared
            && let Err(error) = shared.store(&id, &state).await
        {
            // As rmcp does: the session goes on here; only another edge cannot continue it.
            tracing::warn!(%error, "could not share a new session with the other edges");
        }
        id
    }

    /// Counts the open sessions as (resting, awake).
    pub(crate) fn count(&self) -> (u64, u64) {
        let open = self.open.read().unwrap_or_else(PoisonError::into_inner);
        let awake = open.values().filter(|session| session.is_awake()).count();
        let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
        (count(open.len() - awake), count(awake))
    }

    /// Returns the session `id`, marking it used now, when this process holds it.
    pub(crate) fn touch(&self, id: &str) -> Option<Arc<Session>> {
        let session = self.get(id)?;
        session.last_used.store(self.now(), Ordering::Relaxed);
        Some(session)
    }

    fn get(&self, id: &str) -> Option<Arc<Session>> {
        self.open
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    fn now(&self) -> u64 {
        millis_since(self.epoch)
    }

    /// Returns the session `id`, adding it when new.
    fn entry(&self, id: &SessionId) -> Arc<Session> {
        let mut open = self.open.write().unwrap_or_else(PoisonError::into_inner);
        let session = open.entry(id.clone()).or_default();
        session.last_used.store(self.now(), Ordering::Relaxed);
        Arc::clone(session)
    }

    /// Says whether the session `id` is open here (it has not ended), without counting the
    /// question as a use.
    pub(crate) fn is_open(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    /// Counts a reply stream of `session` as use of it while the returned guard lives.
    pub(crate) fn hold_open(&self, session: Arc<Session>) -> OpenStream {
        session.streams.fetch_add(1, Ordering::Relaxed);
        OpenStream {
            session,
            epoch: self.epoch,
        }
    }

    /// Wraps a reply stream of `session` so that it keeps the session alive while open.
    fn hold(
        &self,
        session: Option<Arc<Session>>,
        stream: impl Stream<Item = ServerSseMessage> + Send + Sync + 'static,
    ) -> Holding {
        Holding {
            stream: Box::pin(stream),
            _open: session.map(|session| self.hold_open(session)),
        }
    }

    /// Ends every session idle for longer than `idle` with no reply stream open.
    async fn sweep_idle(&self) {
        let cutoff = self
            .now()
            .saturating_sub(u64::try_from(self.idle.as_millis()).unwrap_or(u64::MAX));
        let idle: Vec<SessionId> = self
            .open
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, session)| {
                session.streams.load(Ordering::Relaxed) == 0
                    && session.last_used.load(Ordering::Relaxed) < cutoff
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in idle {
            tracing::debug!(session = %id, "ending an idle session");
            if let Err(error) = self.close_session(&id).await {
                tracing::warn!(%error, "could not end an idle session");
            }
        }
    }
}

impl Session {
    /// The client's handshake, once `initialize` has been answered.
    pub(crate) fn handshake(&self) -> Option<&Handshake> {
        self.handshake.get()
    }

    /// Says whether rmcp runs a worker for the session (it does not for a resting one).
    pub(crate) fn is_awake(&self) -> bool {
        self.state.load(Ordering::Acquire) != RESTING
    }

    /// Says whether rmcp's worker has taken the handshake, so it takes other requests too.
    pub(crate) fn has_worker(&self) -> bool {
        self.state.load(Ordering::Acquire) == AWAKE
    }

    /// Resolves at the session's next change of state (it wakes, or it ends); registered at
    /// once, so a change after this call and before the first poll is not missed.
    pub(crate) fn next_change(&self) -> tokio::sync::futures::Notified<'_> {
        self.woken.notified()
    }

    /// Makes the express lane the server of the session's GET stream; says `false` when it
    /// already serves one (a second is rmcp's to answer, as one stream must carry each message).
    pub(crate) fn start_listening(&self) -> bool {
        !self.listening.swap(true, Ordering::AcqRel)
    }

    /// Says the lane's GET stream of the session has closed.
    pub(crate) fn stop_listening(&self) {
        self.listening.store(false, Ordering::Release);
    }

    /// Moves the session to `state`, waking whoever waited for the handshake's replay.
    fn set_state(&self, state: u8) {
        self.state.store(state, Ordering::Release);
        self.woken.notify_waiters();
    }

    /// Returns once the session is not [`WAKING`].
    async fn awoken(&self) {
        loop {
            let woken = self.woken.notified();
            tokio::pin!(woken);
            // Registered before the check, so a wake between the two is not missed.
            woken.as_mut().enable();
            if self.state.load(Ordering::Acquire) != WAKING {
                return;
            }
            woken.await;
        }
    }

    /// Says whether the lane may answer the session's plain calls: its client can be asked
    /// nothing and asked for no log messages (which only rmcp's road relays), so a call's
    /// answer is all that travels back.
    pub(crate) fn takes_calls(&self) -> bool {
        self.handshake().is_some_and(Handshake::asks_nothing)
            && !self.wants_logs.load(Ordering::Relaxed)
    }

    /// Registers an express-lane call so that a cancellation or the session's end reaches it;
    /// the registration ends when the returned guard is dropped.
    pub(crate) fn begin_call(
        self: &Arc<Self>,
        id: RequestId,
        cancelled: CancellationToken,
    ) -> CallGuard {
        self.calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id.clone(), cancelled);
        CallGuard {
            session: Arc::clone(self),
            id,
        }
    }

    /// Cancels the express-lane call `id`; says whether there was one.
    pub(crate) fn cancel(&self, id: &RequestId) -> bool {
        let call = self
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned();
        call.inspect(CancellationToken::cancel).is_some()
    }

    fn end(&self) {
        let calls = std::mem::take(&mut *self.calls.lock().unwrap_or_else(PoisonError::into_inner));
        calls.values().for_each(CancellationToken::cancel);
    }
}

/// Keeps an express-lane call registered with its session until dropped.
pub(crate) struct CallGuard {
    session: Arc<Session>,
    id: RequestId,
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.session
            .calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// A reply stream that counts as use of its session while it is open.
struct Holding {
    stream: Reply,
    _open: Option<OpenStream>,
}

/// Counts one open reply stream of a session, which the idle sweep leaves alone; when dropped,
/// the stream's end counts as the session's last use.
pub(crate) struct OpenStream {
    session: Arc<Session>,
    epoch: Instant,
}

impl Stream for Holding {
    type Item = ServerSseMessage;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(context)
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        let session = &self.session;
        session.streams.fetch_sub(1, Ordering::Relaxed);
        session
            .last_used
            .store(millis_since(self.epoch), Ordering::Relaxed);
    }
}

/// How long a finished reply stream stays resumable (`Last-Event-ID`) after its reply went out.
///
/// rmcp keeps each finished request stream's messages for 60 s by default: at a thousand calls a
/// second that is sixty thousand replies held in memory, most of them sent as plain JSON that
/// cannot be resumed at all. A client whose stream broke retries after the `retry` interval we
/// announce (3 s), so 10 s covers its reconnect with room to spare.
const RESUMABLE_FOR: Duration = Duration::from_secs(10);

/// Milliseconds since `epoch`, the clock of `Session::last_used`.
fn millis_since(epoch: Instant) -> u64 {
    u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Ends idle sessions every tenth of the idle time until the sessions are gone or `ended`.
async fn sweep(sessions: Weak<Sessions>, idle: Duration, ended: CancellationToken) {
    let mut ticks = tokio::time::interval((idle / 10).max(Duration::from_secs(1)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = ended.cancelled() => return,
        }
        let Some(sessions) = sessions.upgrade() else {
            return;
        };
        sessions.sweep_idle().await;
    }
}

/// Reads the client's half of a handshake from its `initialize` request.
fn client_half(message: &ClientJsonRpcMessage) -> Option<InitializeRequestParams> {
    let ClientJsonRpcMessage::Request(request) = message else {
        return None;
    };
    let ClientRequest::InitializeRequest(initialize) = &request.request else {
        return None;
    };
    Some(initialize.params.clone())
}

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.local.create_session().await?;
        self.entry(&id).set_state(AWAKE);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let client = client_half(&message);
        let answered = self.local.initialize_session(id, message).await;
        // A restored worker takes other messages now (or has failed, and is being closed).
        let session = self.touch(id);
        if let Some(session) = &session
            && session.state.load(Ordering::Acquire) == WAKING
        {
            session.set_state(AWAKE);
        }
        let response = answered?;
        if let (Some(request), ServerJsonRpcMessage::Response(answer)) = (client, &response)
            && let ServerResult::InitializeResult(result) = &answer.result
        {
            let handshake = Handshake {
                version: result.protocol_version.clone(),
                request,
            };
            // A replayed handshake (a restored session) says what the first one said.
            let _ = self.entry(id).handshake.set(handshake);
        }
        Ok(response)
    }

    /// Says whether rmcp runs the session's worker; while rmcp is restoring it, waits until
    /// the worker has taken the replayed `initialize`. Without the wait a request arriving
    /// meanwhile (a client's GET stream and POST together) would reach the worker before the
    /// handshake and end it.
    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        if !self.local.has_session(id).await? {
            return Ok(false);
        }
        let Some(session) = self.touch(id) else {
            return Ok(true);
        };
        if session.state.load(Ordering::Acquire) != WAKING {
            return Ok(true);
        }
        session.awoken().await;
        self.local.has_session(id).await
    }

    /// Ends the session; one being restored ends once its worker has the handshake, so the
    /// request that woke it gets its answer instead of a broken restore.
    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        if let Some(session) = self.get(id) {
            session.awoken().await;
        }
        let session = self
            .open
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(session) = &session {
            session.end();
        }
        let closed = self.local.close_session(id).await;
        // Whoever waited for the worker finds none now.
        if let Some(session) = &session {
            session.set_state(RESTING);
        }
        closed
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let session = self.touch(id);
        if let (Some(session), ClientJsonRpcMessage::Request(request)) = (&session, &message)
            && let ClientRequest::SetLevelRequest(_) = &request.request
        {
            session.wants_logs.store(true, Ordering::Relaxed);
        }
        let stream = self.local.create_stream(id, message).await?;
        Ok(self.hold(session, stream))
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.local.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.local.create_standalone_stream(id).await?;
        Ok(self.hold(self.touch(id), stream))
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        let stream = self.local.resume(id, last_event_id).await?;
        Ok(self.hold(self.touch(id), stream))
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        // Waking before rmcp holds the worker, so no request sees the worker before this.
        let session = self.entry(&id);
        session.set_state(WAKING);
        let outcome = self.local.restore_session(id.clone()).await;
        match &outcome {
            Ok(RestoreOutcome::Restored(_)) => {}
            Ok(RestoreOutcome::AlreadyPresent) => session.set_state(AWAKE),
            _ => session.set_state(RESTING),
        }
        outcome
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.local.event_store()
    }
}

/// The store rmcp restores sessions from: a resting session is found here, any other in the
/// store shared with the other edges.
#[async_trait::async_trait]
impl SessionStore for Sessions {
    async fn load(&self, id: &str) -> Result<Option<SessionState>, SessionStoreError> {
        let resting = self.get(id).and_then(|session| {
            let handshake = session.handshake()?;
            Some(SessionState::new(handshake.request.clone()))
        });
        match (resting, &self.shared) {
            (Some(state), _) => Ok(Some(state)),
            (None, Some(shared)) => shared.load(id).await,
            (None, None) => Ok(None),
        }
    }

    async fn store(&self, id: &str, state: &SessionState) -> Result<(), SessionStoreError> {
        match &self.shared {
            Some(shared) => shared.store(id, state).await,
            None => Ok(()),
        }
    }

    async fn delete(&self, id: &str) -> Result<(), SessionStoreError> {
        match &self.shared {
            Some(shared) => shared.delete(id).await,
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_session_untouched_for_the_idle_time_ends_unless_a_reply_stream_is_open() {
        let idle = Duration::from_secs(1);
        let sessions = Sessions::new(idle);
        let (quiet, listening): (SessionId, SessionId) = ("quiet".into(), "listening".into());
        sessions.entry(&quiet);
        sessions.entry(&listening);
        let stream = sessions.hold(sessions.touch(&listening), futures::stream::pending());

        sessions.sweep_idle().await;
        assert!(
            sessions.is_open(&quiet) && sessions.is_open(&listening),
            "both just used"
        );

        tokio::time::sleep(idle + Duration::from_millis(100)).await;
        sessions.sweep_idle().await;
        assert!(
            !sessions.is_open(&quiet),
            "idle for longer than the idle time"
        );
        assert!(sessions.is_open(&listening), "its GET stream is still open");

        drop(stream);
        tokio::time::sleep(idle + Duration::from_millis(100)).await;
        sessions.sweep_idle().await;
        assert!(
            !sessions.is_open(&listening),
            "idle since its stream closed"
        );
    }

    #[tokio::test]
    async fn a_request_to_a_waking_session_waits_until_its_worker_has_the_handshake() {
        let sessions = Sessions::new(IDLE);
        let session = sessions.entry(&"s".into());
        session.set_state(WAKING);
        let waiting = tokio::spawn({
            let session = Arc::clone(&session);
            async move { session.awoken().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "the replay is still under way");
        assert!(session.is_awake(), "a waking session counts as awake");
        session.set_state(AWAKE);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken")
            .expect("the waiting task");
    }

    #[tokio::test]
    async fn a_lane_call_is_cancelled_by_its_id_or_by_the_sessions_end_and_forgotten_after() {
        let sessions = Sessions::new(IDLE);
        let id: SessionId = "s".into();
        let session = sessions.entry(&id);
        let (first, second) = (CancellationToken::new(), CancellationToken::new());
        let first_call = session.begin_call(RequestId::Number(1), first.clone());
        let _second_call = session.begin_call(RequestId::Number(2), second.clone());

        assert!(
            !session.cancel(&RequestId::Number(3)),
            "no such call on the lane"
        );
        assert!(session.cancel(&RequestId::Number(1)));
        assert!(first.is_cancelled() && !second.is_cancelled());

        drop(first_call);
        assert!(
            !session.cancel(&RequestId::Number(1)),
            "a finished call is forgotten"
        );

        sessions.close_session(&id).await.expect("close");
        assert!(second.is_cancelled(), "the session's end cancels its calls");
        assert!(sessions.touch(&id).is_none());
    }
}
