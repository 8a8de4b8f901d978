//! Routes what downstream servers send back to the upstream clients whose calls caused it.
//!
//! Downstream sessions are shared by every client of a virtual server, so a progress
//! notification, a log line or a sampling request coming from a downstream must be matched to
//! the one upstream call that triggered it — never broadcast, which would leak one member's
//! traffic to another. The match uses the id of our outbound request (carried by the HTTP
//! response stream it arrived on) or the progress token rmcp put on that request.

#![allow(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577 but are live in the legacy era we serve"
)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{
    ClientResult, ErrorCode, ErrorData, ProgressNotificationParam, ProgressToken, RequestId,
    ServerNotification, ServerRequest,
};
use rmcp::{Peer, RoleServer};
use tokio::sync::Notify;

use crate::connector::{Relay, RelayTicket};
use crate::inspect::NotificationMask;
use crate::vmcp::VirtualServer;

/// How long a downstream message may wait for its call to finish registering.
///
/// rmcp assigns the outbound id while sending, so a fast downstream can answer before the
/// route is stored; the wait closes that window without delaying unrelated traffic.
const REGISTRATION_GRACE: Duration = Duration::from_millis(500);

/// The upstream side of one in-flight downstream call.
#[derive(Debug)]
pub struct UpstreamCall {
    /// The client session (or stateless request channel) to send related messages to.
    pub peer: Peer<RoleServer>,
    /// The progress token the upstream client chose, if it asked for progress.
    pub progress_token: Option<ProgressToken>,
    /// Whether the upstream may receive server→client requests on this call (legacy era only).
    pub accepts_requests: bool,
    /// Notifications of this call being relayed right now.
    relaying: AtomicUsize,
    /// Wakes [`RouteGuard::settle`] when the last relay in flight finishes.
    settled: Notify,
    /// Masks the call's progress and log messages as its output is masked.
    mask: Option<NotificationMask>,
}

impl UpstreamCall {
    /// Describes the upstream side of a call about to be forwarded.
    pub fn new(
        peer: Peer<RoleServer>,
        progress_token: Option<ProgressToken>,
        accepts_requests: bool,
    ) -> Self {
        Self {
            peer,
            progress_token,
            accepts_requests,
            relaying: AtomicUsize::new(0),
            settled: Notify::new(),
            mask: None,
        }
    }

    /// Masks this call's relayed progress and log messages with `mask`.
    #[must_use]
    pub fn with_mask(mut self, mask: Option<NotificationMask>) -> Self {
        self.mask = mask;
        self
    }

    /// Relays one notification of this call, counted so the call's answer can wait for it.
    async fn relaying<F: std::future::Future<Output = ()>>(&self, relay: F) {
        self.relaying.fetch_add(1, Ordering::AcqRel);
        relay.await;
        if self.relaying.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.settled.notify_waiters();
        }
    }
}

/// Longest a call's answer waits for its own notifications still being relayed.
const SETTLE_LIMIT: Duration = Duration::from_millis(100);

/// The gateway-wide routing table shared by every connector's relay.
#[derive(Debug, Default)]
pub struct Switchboard {
    routes: Mutex<Routes>,
    registered: Notify,
    servers: Mutex<Vec<Arc<VirtualServer>>>,
}

#[derive(Debug, Default)]
struct Routes {
    by_request: HashMap<(String, RequestId), Arc<UpstreamCall>>,
    by_progress: HashMap<(String, ProgressToken), Arc<UpstreamCall>>,
    registering: usize,
}

/// Removes a call's routes when the call ends, however it ends.
#[derive(Debug)]
pub struct RouteGuard {
    board: Arc<Switchboard>,
    connector: String,
    request: Option<RequestId>,
    progress: Option<ProgressToken>,
    call: Arc<UpstreamCall>,
}

impl RouteGuard {
    /// Lets the call's notifications that arrived before its answer reach the client first,
    /// including those a notification mask held back.
    ///
    /// rmcp hands each downstream notification to its own task but resolves the response
    /// directly. The connector's transport holds a response until the progress of its request
    /// is relayed (`connector::origin`); a log message carries no request, so
    /// one sent just before the result can still be on its way here, and answering first would
    /// close the stream under it.
    pub async fn settle(&self) {
        self.relays_done().await;
        if let Some(mask) = &self.call.mask {
            mask.flush(&self.call.peer).await;
        }
    }

    async fn relays_done(&self) {
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        let limit = tokio::time::sleep(SETTLE_LIMIT);
        tokio::pin!(limit);
        loop {
            let settled = self.call.settled.notified();
            if self.call.relaying.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::select! {
                () = settled => {}
                () = &mut limit => return,
            }
        }
    }
}

impl Switchboard {
    /// Makes `servers` the ones whose clients hear list-changed notifications from their
    /// connectors (every served server, after each change of the routing table).
    pub fn set_servers(&self, servers: Vec<Arc<VirtualServer>>) {
        *self.servers.lock().unwrap_or_else(PoisonError::into_inner) = servers;
    }

    /// Counts the calls in flight on the downstream session named `connector`.
    pub fn in_flight(&self, connector: &str) -> usize {
        self.routes()
            .by_request
            .keys()
            .filter(|(name, _)| name == connector)
            .count()
    }

    /// Announces that a call is about to be sent, so early replies wait for its route.
    pub fn begin(self: &Arc<Self>) -> Registration {
        self.routes().registering += 1;
        Registration {
            board: Arc::clone(self),
            done: false,
        }
    }

    fn routes(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn lookup(
        &self,
        connector: &str,
        request: Option<&RequestId>,
        progress: Option<&ProgressToken>,
    ) -> Option<Arc<UpstreamCall>> {
        let deadline = tokio::time::Instant::now() + REGISTRATION_GRACE;
        loop {
            let notified = self.registered.notified();
            {
                let routes = self.routes();
                let found = request
                    .and_then(|id| routes.by_request.get(&(connector.to_owned(), id.clone())))
                    .or_else(|| {
                        progress.and_then(|token| {
                            routes
                                .by_progress
                                .get(&(connector.to_owned(), token.clone()))
                        })
                    });
                if let Some(call) = found {
                    return Some(Arc::clone(call));
                }
                if routes.registering == 0 {
                    return None;
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    /// Returns the only call in flight on a downstream session, if exactly one is.
    ///
    /// rmcp does not say which HTTP stream a notification arrived on, so a log message without
    /// an origin can only be attributed when no other caller could own it; otherwise it is
    /// dropped rather than risk showing one member another member's traffic.
    fn sole_call(&self, connector: &str) -> Option<Arc<UpstreamCall>> {
        let routes = self.routes();
        let mut calls = routes
            .by_request
            .iter()
            .filter(|((name, _), _)| name == connector);
        match (calls.next(), calls.next()) {
            (Some((_, call)), None) => Some(Arc::clone(call)),
            _ => None,
        }
    }

    fn servers_with(&self, connector: &str) -> Vec<Arc<VirtualServer>> {
        self.servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|server| server.has_connector(connector))
            .cloned()
            .collect()
    }
}

/// A call between `begin` and `register`: while it lives, early downstream replies wait.
#[derive(Debug)]
pub struct Registration {
    board: Arc<Switchboard>,
    done: bool,
}

impl Registration {
    /// Stores the routes of a sent call and returns the guard that removes them.
    pub fn register(
        mut self,
        connector: &str,
        request: RequestId,
        progress: ProgressToken,
        call: UpstreamCall,
    ) -> RouteGuard {
        let call = Arc::new(call);
        {
            let mut routes = self.board.routes();
            routes
                .by_request
                .insert((connector.to_owned(), request.clone()), Arc::clone(&call));
            routes
                .by_progress
                .insert((connector.to_owned(), progress.clone()), Arc::clone(&call));
            routes.registering -= 1;
        }
        self.done = true;
        self.board.registered.notify_waiters();
        RouteGuard {
            board: Arc::clone(&self.board),
            connector: connector.to_owned(),
            request: Some(request),
            progress: Some(progress),
            call,
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if !self.done {
            self.board.routes().registering -= 1;
            self.board.registered.notify_waiters();
        }
    }
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        let mut routes = self.board.routes();
        if let Some(id) = self.request.take() {
            routes.by_request.remove(&(self.connector.clone(), id));
        }
        if let Some(token) = self.progress.take() {
            routes.by_progress.remove(&(self.connector.clone(), token));
        }
    }
}

#[async_trait::async_trait]
impl Relay for Switchboard {
    async fn request(
        &self,
        connector: &str,
        origin: Option<RequestId>,
        request: ServerRequest,
    ) -> Result<ClientResult, ErrorData> {
        if let ServerRequest::PingRequest(_) = request {
            return Ok(ClientResult::empty(()));
        }
        let call = self.lookup(connector, origin.as_ref(), None).await;
        let Some(call) = call.filter(|call| call.accepts_requests) else {
            return Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "the gateway cannot relay this request: no legacy-era client call is waiting for it",
                None,
            ));
        };
        relay_request(&call.peer, request).await
    }

    async fn notify(
        &self,
        connector: &str,
        origin: Option<RequestId>,
        notification: ServerNotification,
    ) {
        match notification {
            ServerNotification::ProgressNotification(progress) => {
                let token = progress.params.progress_token.clone();
                let ticket = progress.extensions.get::<RelayTicket>().cloned();
                if let Some(call) = self.lookup(connector, origin.as_ref(), Some(&token)).await {
                    if let Some(ticket) = &ticket {
                        ticket.turn().await;
                    }
                    call.relaying(forward_progress(&call, progress.params))
                        .await;
                }
            }
            ServerNotification::LoggingMessageNotification(message) => {
                let call = match origin {
                    Some(id) => self.lookup(connector, Some(&id), None).await,
                    None => self.sole_call(connector),
                };
                if let Some(call) = call {
                    call.relaying(async {
                        match &call.mask {
                            Some(mask) => mask.relay_log(&call.peer, message.params).await,
                            None => {
                                let _ = call.peer.notify_logging_message(message.params).await;
                            }
                        }
                    })
                    .await;
                }
            }
            ServerNotification::ToolListChangedNotification(_)
            | ServerNotification::PromptListChangedNotification(_)
            | ServerNotification::ResourceListChangedNotification(_) => {
                for server in self.servers_with(connector) {
                    server.catalogue_changed(&notification).await;
                }
            }
            ServerNotification::ResourceUpdatedNotification(updated) => {
                for server in self.servers_with(connector) {
                    server.resource_updated(&updated.params.uri).await;
                }
            }
            _ => tracing::debug!(connector, "downstream notification not relayed"),
        }
    }

    async fn session_opened(&self, connector: &str) {
        for server in self.servers_with(connector) {
            server.member_back(connector).await;
        }
    }
}

async fn forward_progress(call: &UpstreamCall, mut params: ProgressNotificationParam) {
    let Some(token) = call.progress_token.clone() else {
        return;
    };
    params.progress_token = token;
    match &call.mask {
        Some(mask) => mask.relay_progress(&call.peer, params).await,
        None => {
            let _ = call.peer.notify_progress(params).await;
        }
    }
}

async fn relay_request(
    peer: &Peer<RoleServer>,
    request: ServerRequest,
) -> Result<ClientResult, ErrorData> {
    let upstream_error = |error: rmcp::ServiceError| match error {
        rmcp::ServiceError::McpError(error) => error,
        other => ErrorData::internal_error(
            format!("client did not answer the relayed request: {other}"),
            None,
        ),
    };
    match request {
        ServerRequest::CreateMessageRequest(request) => peer
            .create_message(request.params)
            .await
            .map(|result| ClientResult::CreateMessageResult(Box::new(result)))
            .map_err(upstream_error),
        ServerRequest::ElicitRequest(request) => peer
            .create_elicitation(request.params)
            .await
            .map(ClientResult::ElicitResult)
            .map_err(upstream_error),
        ServerRequest::ListRootsRequest(_) => peer
            .list_roots()
            .await
            .map(ClientResult::ListRootsResult)
            .map_err(upstream_error),
        _ => Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            "the gateway does not relay this request",
            None,
        )),
    }
}
