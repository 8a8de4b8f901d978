//! The sessions of one virtual server's session-era clients: rmcp's in-memory sessions, and
//! beside each what the express lane needs to answer its plain `tools/call` requests itself.
//!
//! rmcp keeps a session's handshake inside the session's worker, out of reach of code that
//! does not go through that worker. [`Sessions`] wraps rmcp's manager and keeps, per session,
//! the client's `initialize` parameters and the protocol version it was answered with, the
//! express lane's calls in flight (so the client's `notifications/cancelled` and `DELETE`
//! reach them), and when the session was last used.
//!
//! The last point moves idle expiry here: rmcp ends a session whose worker has seen nothing
//! for five minutes, and a session whose calls all take the express lane would look idle to
//! it while its client is busy. So rmcp's own timer is off, and a sweep ends a session that
//! no request has touched for [`IDLE`] and that has no reply stream open.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use rmcp::model::{
    ClientCapabilities, ClientJsonRpcMessage, ClientRequest, Implementation, ProtocolVersion,
    RequestId, ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::common::server_side_http::{ServerSseMessage, SessionId};
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker, SessionConfig,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, SessionManager,
};
use rmcp::transport::worker::WorkerTransport;
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
}

/// What the client said in `initialize` and the version it was answered with.
#[derive(Debug, Clone)]
pub(crate) struct Handshake {
    pub(crate) version: ProtocolVersion,
    pub(crate) client_info: Implementation,
    pub(crate) capabilities: ClientCapabilities,
}

impl Handshake {
    /// Says whether nothing can ever be asked of this client during a call: it declared
    /// neither sampling, elicitation nor roots, so a call's answer is all that travels back
    /// and a plain JSON reply loses nothing.
    pub(crate) fn asks_nothing(&self) -> bool {
        let capabilities = &self.capabilities;
        capabilities.sampling.is_none()
            && capabilities.elicitation.is_none()
            && capabilities.roots.is_none()
    }
}

impl Sessions {
    /// Creates the sessions of one virtual server, swept until `ended` is cancelled or the
    /// sessions are dropped.
    pub(crate) fn start(idle: Duration, ended: &CancellationToken) -> Arc<Self> {
        let sessions = Arc::new(Self::new(idle));
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
        }
    }

    /// Returns sessions holding `id`, as if its client's `initialize` had been answered.
    #[cfg(test)]
    pub(crate) fn holding(id: &str, handshake: Handshake) -> Arc<Self> {
        let sessions = Self::new(IDLE);
        let _ = sessions.entry(&id.into()).handshake.set(handshake);
        Arc::new(sessions)
    }

    /// Returns the session `id`, marking it used now, when this process holds it.
    pub(crate) fn touch(&self, id: &str) -> Option<Arc<Session>> {
        let session = self
            .open
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()?;
        session.last_used.store(self.now(), Ordering::Relaxed);
        Some(session)
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

    /// Wraps a reply stream of `session` so that it keeps the session alive while open.
    fn hold(
        &self,
        session: Option<Arc<Session>>,
        stream: impl Stream<Item = ServerSseMessage> + Send + Sync + 'static,
    ) -> Holding {
        if let Some(session) = &session {
            session.streams.fetch_add(1, Ordering::Relaxed);
        }
        Holding {
            stream: Box::pin(stream),
            session,
            epoch: self.epoch,
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

    /// Says whether the client asked for log messages in this session.
    pub(crate) fn wants_logs(&self) -> bool {
        self.wants_logs.load(Ordering::Relaxed)
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
    session: Option<Arc<Session>>,
    epoch: Instant,
}

impl Stream for Holding {
    type Item = ServerSseMessage;

    fn poll_next(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.stream.as_mut().poll_next(context)
    }
}

impl Drop for Holding {
    fn drop(&mut self) {
        if let Some(session) = &self.session {
            session.streams.fetch_sub(1, Ordering::Relaxed);
            session
                .last_used
                .store(millis_since(self.epoch), Ordering::Relaxed);
        }
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
fn client_half(message: &ClientJsonRpcMessage) -> Option<(Implementation, ClientCapabilities)> {
    let ClientJsonRpcMessage::Request(request) = message else {
        return None;
    };
    let ClientRequest::InitializeRequest(initialize) = &request.request else {
        return None;
    };
    Some((
        initialize.params.client_info.clone(),
        initialize.params.capabilities.clone(),
    ))
}

impl SessionManager for Sessions {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        let (id, transport) = self.local.create_session().await?;
        self.entry(&id);
        Ok((id, transport))
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        let client = client_half(&message);
        let response = self.local.initialize_session(id, message).await?;
        if let (Some((client_info, capabilities)), ServerJsonRpcMessage::Response(answer)) =
            (client, &response)
            && let ServerResult::InitializeResult(result) = &answer.result
        {
            let handshake = Handshake {
                version: result.protocol_version.clone(),
                client_info,
                capabilities,
            };
            // A replayed handshake (a restored session) says what the first one said.
            let _ = self.entry(id).handshake.set(handshake);
        }
        Ok(response)
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        let held = self.local.has_session(id).await?;
        if held {
            self.touch(id);
        }
        Ok(held)
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let session = self
            .open
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id);
        if let Some(session) = session {
            session.end();
        }
        self.local.close_session(id).await
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
        let outcome = self.local.restore_session(id.clone()).await?;
        if matches!(outcome, RestoreOutcome::Restored(_)) {
            self.entry(&id);
        }
        Ok(outcome)
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.local.event_store()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Sessions {
        /// Says whether the session `id` is open, without counting the question as a use.
        fn holds(&self, id: &str) -> bool {
            self.open
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains_key(id)
        }
    }

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
            sessions.holds(&quiet) && sessions.holds(&listening),
            "both just used"
        );

        tokio::time::sleep(idle + Duration::from_millis(100)).await;
        sessions.sweep_idle().await;
        assert!(
            !sessions.holds(&quiet),
            "idle for longer than the idle time"
        );
        assert!(sessions.holds(&listening), "its GET stream is still open");

        drop(stream);
        tokio::time::sleep(idle + Duration::from_millis(100)).await;
        sessions.sweep_idle().await;
        assert!(!sessions.holds(&listening), "idle since its stream closed");
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
