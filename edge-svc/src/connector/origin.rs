//! Marks progress notifications with the outbound request that issued their progress token.
//!
//! rmcp marks server→client *requests* with the HTTP stream they arrived on, but not
//! notifications, and stdio has no streams at all. rmcp gives every outbound request its own
//! progress token, so remembering token → request id while a request is in flight names the
//! request a progress notification belongs to, on every transport.
//!
//! rmcp also relays each notification on a task of its own but hands a response to its caller
//! at once, so a response can overtake the progress sent before it, and one progress message
//! another. The wrapper therefore gives each progress message a [`RelayTicket`] with its place
//! in its request's order, and holds a response back until the progress of its request it has
//! already passed on is relayed.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use rmcp::{
    model::{
        ClientJsonRpcMessage, ClientNotification, GetMeta, JsonRpcMessage, ProgressToken,
        RequestId, ServerJsonRpcMessage, ServerNotification,
    },
    service::{InboundStreamOrigin, RoleClient},
    transport::Transport,
};
use tokio::{sync::Notify, time::Instant};

use super::status::lock;

/// Longest a response waits for the progress of its request to be relayed, so a relay stuck on
/// a slow upstream client cannot stall the connector's other traffic for long.
const RELAY_LIMIT: Duration = Duration::from_millis(100);

/// A client transport wrapper that attaches [`InboundStreamOrigin`] to progress notifications.
#[derive(Debug)]
pub(crate) struct OriginTracking<T> {
    inner: T,
    in_flight: Arc<Mutex<InFlight>>,
    /// A response received but not yet handed on, kept here so a `receive` that rmcp's loop
    /// drops while it waits loses nothing.
    held: Option<Held>,
}

/// A message about to be handed on; a response first waits for the progress of its request to
/// be relayed, until the deadline.
#[derive(Debug)]
struct Held {
    message: ServerJsonRpcMessage,
    unrelayed: Option<(Arc<Unrelayed>, Instant)>,
}

/// Progress tokens of requests still awaiting their response, both ways round.
#[derive(Debug, Default)]
struct InFlight {
    by_token: HashMap<ProgressToken, RequestId>,
    by_id: HashMap<RequestId, ProgressToken>,
    unrelayed: HashMap<RequestId, Arc<Unrelayed>>,
}

/// The progress notifications of one request that rmcp has but has not finished relaying.
#[derive(Debug, Default)]
struct Unrelayed {
    /// Tickets issued so far; the next one gets this number.
    issued: AtomicU64,
    /// Tickets still alive.
    count: AtomicUsize,
    /// The lowest number whose turn it is: every ticket below it is done.
    turn: AtomicU64,
    /// Wakes whoever waits on `count` or `turn` when a ticket is done.
    changed: Notify,
}

/// A progress notification's place among its request's, riding in its extensions from the
/// transport to the relay; the notification counts as relayed once every clone is dropped.
///
/// rmcp relays each notification on a task of its own, so two of one call's can reach the
/// relay in either order; a masked call's relay must see them in the order they were sent.
#[derive(Debug, Clone)]
pub(crate) struct RelayTicket(Arc<Ticket>);

#[derive(Debug)]
struct Ticket {
    request: Arc<Unrelayed>,
    number: u64,
}

impl<T> OriginTracking<T> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            in_flight: Arc::default(),
            held: None,
        }
    }
}

impl Unrelayed {
    fn ticket(self: &Arc<Self>) -> RelayTicket {
        self.count.fetch_add(1, Ordering::AcqRel);
        let number = self.issued.fetch_add(1, Ordering::AcqRel);
        RelayTicket(Arc::new(Ticket {
            request: Arc::clone(self),
            number,
        }))
    }

    /// Returns once `done` holds or at `deadline`, whichever comes first.
    async fn until(&self, done: impl Fn(&Self) -> bool, deadline: Instant) {
        loop {
            let changed = self.changed.notified();
            if done(self) {
                return;
            }
            if tokio::time::timeout_at(deadline, changed).await.is_err() {
                return;
            }
        }
    }
}

impl RelayTicket {
    /// Returns once every earlier notification of the same request is relayed, or after
    /// [`RELAY_LIMIT`], so one lost on its way cannot hold the others back for long.
    pub(crate) async fn turn(&self) {
        let ticket = &self.0;
        let deadline = Instant::now() + RELAY_LIMIT;
        let mine = |request: &Unrelayed| request.turn.load(Ordering::Acquire) >= ticket.number;
        ticket.request.until(mine, deadline).await;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let request = &self.request;
        request.turn.fetch_max(self.number + 1, Ordering::AcqRel);
        request.count.fetch_sub(1, Ordering::AcqRel);
        request.changed.notify_waiters();
    }
}

impl InFlight {
    fn insert(&mut self, token: ProgressToken, id: RequestId) {
        self.by_id.insert(id.clone(), token.clone());
        self.by_token.insert(token, id);
    }

    /// Forgets a finished request, returning what of its progress is still being relayed.
    fn remove(&mut self, id: &RequestId) -> Option<Arc<Unrelayed>> {
        if let Some(token) = self.by_id.remove(id) {
            self.by_token.remove(&token);
        }
        self.unrelayed
            .remove(id)
            .filter(|unrelayed| unrelayed.count.load(Ordering::Acquire) > 0)
    }

    fn observe_outbound(&mut self, message: &ClientJsonRpcMessage) {
        match message {
            JsonRpcMessage::Request(request) => {
                if let Some(token) = request.request.get_meta().get_progress_token() {
                    self.insert(token, request.id.clone());
                }
            }
            JsonRpcMessage::Notification(notification) => {
                if let ClientNotification::CancelledNotification(cancelled) =
                    &notification.notification
                    && let Some(id) = &cancelled.params.request_id
                {
                    self.remove(id);
                }
            }
            _ => {}
        }
    }

    /// Marks a request's progress with its origin and a ticket; for a response, returns what
    /// of its request's progress is still being relayed.
    fn observe_inbound(&mut self, message: &mut ServerJsonRpcMessage) -> Option<Arc<Unrelayed>> {
        match message {
            JsonRpcMessage::Response(response) => self.remove(&response.id),
            JsonRpcMessage::Error(error) => error.id.as_ref().and_then(|id| self.remove(id)),
            JsonRpcMessage::Notification(notification) => {
                if let ServerNotification::ProgressNotification(progress) =
                    &mut notification.notification
                    && let Some(id) = self.by_token.get(&progress.params.progress_token)
                {
                    let ticket = self.unrelayed.entry(id.clone()).or_default().ticket();
                    progress.extensions.insert(ticket);
                    if progress.extensions.get::<InboundStreamOrigin>().is_none() {
                        let origin = InboundStreamOrigin::OutboundRequest(id.clone());
                        progress.extensions.insert(origin);
                    }
                }
                None
            }
            JsonRpcMessage::Request(_) => None,
        }
    }
}

impl<T> Transport<RoleClient> for OriginTracking<T>
where
    T: Transport<RoleClient>,
{
    type Error = T::Error;

    fn name() -> Cow<'static, str> {
        T::name()
    }

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        lock(&self.in_flight).observe_outbound(&item);
        self.inner.send(item)
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let held = match &mut self.held {
            Some(held) => held,
            None => {
                let mut message = self.inner.receive().await?;
                let unrelayed = lock(&self.in_flight).observe_inbound(&mut message);
                let unrelayed =
                    unrelayed.map(|unrelayed| (unrelayed, Instant::now() + RELAY_LIMIT));
                self.held.insert(Held { message, unrelayed })
            }
        };
        if let Some((unrelayed, deadline)) = &held.unrelayed {
            let relayed = |request: &Unrelayed| request.count.load(Ordering::Acquire) == 0;
            unrelayed.until(relayed, *deadline).await;
        }
        self.held.take().map(|held| held.message)
    }

    fn close(&mut self) -> impl Future<Output = Result<(), Self::Error>> + Send {
        self.inner.close()
    }
}

#[cfg(test)]
mod tests {
    use rmcp::model::{
        CallToolRequestParams, ClientRequest, JsonRpcMessage, NumberOrString, ProgressNotification,
        ProgressNotificationParam, ProgressToken, Request, RequestId, ServerNotification,
        ServerResult,
    };

    use std::collections::VecDeque;

    use futures::FutureExt;
    use rmcp::{service::RoleClient, transport::Transport};

    use super::{
        ClientJsonRpcMessage, InFlight, InboundStreamOrigin, OriginTracking, RelayTicket,
        ServerJsonRpcMessage,
    };

    /// A downstream that has already sent `inbound` and accepts whatever is sent to it.
    struct Sent {
        inbound: VecDeque<ServerJsonRpcMessage>,
    }

    impl Transport<RoleClient> for Sent {
        type Error = std::convert::Infallible;

        fn send(
            &mut self,
            _: ClientJsonRpcMessage,
        ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
            std::future::ready(Ok(()))
        }

        async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
            self.inbound.pop_front()
        }

        async fn close(&mut self) -> Result<(), Self::Error> {
            Ok(())
        }
    }

    const TOKEN: ProgressToken = ProgressToken(NumberOrString::Number(7));
    const CALL: RequestId = RequestId::Number(3);

    fn answer() -> ServerJsonRpcMessage {
        JsonRpcMessage::response(ServerResult::empty(()), CALL)
    }

    /// A transport that has sent the call `CALL` asking for progress as `TOKEN`, and will
    /// receive `inbound` for it.
    async fn calling(inbound: VecDeque<ServerJsonRpcMessage>) -> OriginTracking<Sent> {
        let mut transport = OriginTracking::new(Sent { inbound });
        let sent = transport.send(call_with_progress(&TOKEN, &CALL)).await;
        assert!(sent.is_ok());
        transport
    }

    fn call_with_progress(token: &ProgressToken, id: &RequestId) -> ClientJsonRpcMessage {
        let mut request =
            ClientRequest::CallToolRequest(Request::new(CallToolRequestParams::new("t")));
        rmcp::model::GetMeta::get_meta_mut(&mut request).set_progress_token(token.clone());
        JsonRpcMessage::request(request, id.clone())
    }

    fn progress(token: &ProgressToken) -> ServerJsonRpcMessage {
        let notification =
            ProgressNotification::new(ProgressNotificationParam::new(token.clone(), 1.0));
        JsonRpcMessage::notification(ServerNotification::ProgressNotification(notification))
    }

    /// What the transport attached to a progress message, of type `T`.
    fn attached<T: Clone + Send + Sync + 'static>(message: &ServerJsonRpcMessage) -> Option<T> {
        match message {
            JsonRpcMessage::Notification(n) => match &n.notification {
                ServerNotification::ProgressNotification(p) => p.extensions.get().cloned(),
                _ => None,
            },
            _ => None,
        }
    }

    #[test]
    fn progress_is_marked_with_its_request_until_the_response() {
        let token = ProgressToken(NumberOrString::Number(7));
        let id = RequestId::Number(3);
        let mut in_flight = InFlight::default();
        in_flight.observe_outbound(&call_with_progress(&token, &id));

        let mut message = progress(&token);
        in_flight.observe_inbound(&mut message);
        assert_eq!(
            attached::<InboundStreamOrigin>(&message),
            Some(InboundStreamOrigin::OutboundRequest(id.clone()))
        );

        in_flight.observe_inbound(&mut JsonRpcMessage::response(ServerResult::empty(()), id));
        let mut late = progress(&token);
        in_flight.observe_inbound(&mut late);
        assert_eq!(attached::<InboundStreamOrigin>(&late), None);
    }

    #[tokio::test]
    async fn a_response_waits_until_the_progress_before_it_is_relayed_and_a_dropped_wait_loses_nothing()
     {
        let mut transport = calling(VecDeque::from([progress(&TOKEN), answer()])).await;

        let relaying = transport.receive().await;
        assert!(matches!(relaying, Some(JsonRpcMessage::Notification(_))));
        assert!(
            transport.receive().now_or_never().is_none(),
            "the response must wait while its progress is being relayed"
        );

        drop(relaying);
        let response = transport.receive().now_or_never().flatten();
        assert!(
            matches!(response, Some(JsonRpcMessage::Response(r)) if r.id == CALL),
            "the response held by the dropped wait is handed on once its progress is relayed"
        );
    }

    #[tokio::test]
    async fn a_response_waits_for_a_stuck_relay_only_a_bounded_time() {
        let mut transport = calling(VecDeque::from([progress(&TOKEN), answer()])).await;

        let _stuck = transport.receive().await;
        let response = tokio::time::timeout(10 * super::RELAY_LIMIT, transport.receive()).await;
        assert!(matches!(response, Ok(Some(JsonRpcMessage::Response(_)))));
    }

    #[tokio::test]
    async fn a_response_without_progress_in_flight_is_handed_on_at_once() {
        let mut transport = calling(VecDeque::from([progress(&TOKEN), answer()])).await;

        drop(transport.receive().await);
        let response = transport.receive().now_or_never().flatten();
        assert!(matches!(response, Some(JsonRpcMessage::Response(_))));
    }

    #[tokio::test]
    async fn a_progress_message_waits_its_turn_behind_the_one_sent_before_it() {
        let mut transport = calling(VecDeque::from([progress(&TOKEN), progress(&TOKEN)])).await;
        let first = transport
            .receive()
            .await
            .as_ref()
            .and_then(attached::<RelayTicket>);
        let second = transport
            .receive()
            .await
            .as_ref()
            .and_then(attached::<RelayTicket>);
        let (Some(first), Some(second)) = (first, second) else {
            panic!("each progress message of a request in flight carries a ticket");
        };

        assert!(
            first.turn().now_or_never().is_some(),
            "the first goes at once"
        );
        let mut second_turn = std::pin::pin!(second.turn());
        assert!(
            second_turn.as_mut().now_or_never().is_none(),
            "the second waits for the first"
        );
        drop(first);
        assert!(
            second_turn.now_or_never().is_some(),
            "and goes once the first is relayed"
        );
    }
}
