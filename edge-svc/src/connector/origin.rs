//! Marks progress notifications with the outbound request that issued their progress token.
//!
//! rmcp marks server→client *requests* with the HTTP stream they arrived on, but not
//! notifications, and stdio has no streams at all. rmcp gives every outbound request its own
//! progress token, so remembering token → request id while a request is in flight names the
//! request a progress notification belongs to, on every transport.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{Arc, Mutex},
};

use rmcp::{
    model::{
        ClientJsonRpcMessage, ClientNotification, GetMeta, JsonRpcMessage, ProgressToken,
        RequestId, ServerJsonRpcMessage, ServerNotification,
    },
    service::{InboundStreamOrigin, RoleClient},
    transport::Transport,
};

use super::status::lock;

/// A client transport wrapper that attaches [`InboundStreamOrigin`] to progress notifications.
#[derive(Debug)]
pub(crate) struct OriginTracking<T> {
    inner: T,
    in_flight: Arc<Mutex<InFlight>>,
}

/// Progress tokens of requests still awaiting their response, both ways round.
#[derive(Debug, Default)]
struct InFlight {
    by_token: HashMap<ProgressToken, RequestId>,
    by_id: HashMap<RequestId, ProgressToken>,
}

impl<T> OriginTracking<T> {
    /// Wraps `inner`.
    pub(crate) fn new(inner: T) -> Self {
        Self {
            inner,
            in_flight: Arc::default(),
        }
    }
}

impl InFlight {
    fn insert(&mut self, token: ProgressToken, id: RequestId) {
        self.by_id.insert(id.clone(), token.clone());
        self.by_token.insert(token, id);
    }

    fn remove(&mut self, id: &RequestId) {
        if let Some(token) = self.by_id.remove(id) {
            self.by_token.remove(&token);
        }
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

    fn observe_inbound(&mut self, message: &mut ServerJsonRpcMessage) {
        match message {
            JsonRpcMessage::Response(response) => self.remove(&response.id),
            JsonRpcMessage::Error(error) => {
                if let Some(id) = &error.id {
                    self.remove(id);
                }
            }
            JsonRpcMessage::Notification(notification) => {
                if let ServerNotification::ProgressNotification(progress) =
                    &mut notification.notification
                    && let Some(id) = self.by_token.get(&progress.params.progress_token)
                    && progress.extensions.get::<InboundStreamOrigin>().is_none()
                {
                    let origin = InboundStreamOrigin::OutboundRequest(id.clone());
                    progress.extensions.insert(origin);
                }
            }
            JsonRpcMessage::Request(_) => {}
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
        let mut message = self.inner.receive().await?;
        lock(&self.in_flight).observe_inbound(&mut message);
        Some(message)
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

    use super::{InFlight, InboundStreamOrigin, ServerJsonRpcMessage};

    fn progress(token: &ProgressToken) -> ServerJsonRpcMessage {
        let notification =
            ProgressNotification::new(ProgressNotificationParam::new(token.clone(), 1.0));
        JsonRpcMessage::notification(ServerNotification::ProgressNotification(notification))
    }

    fn origin_of(message: &ServerJsonRpcMessage) -> Option<InboundStreamOrigin> {
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
        let mut request =
            ClientRequest::CallToolRequest(Request::new(CallToolRequestParams::new("t")));
        rmcp::model::GetMeta::get_meta_mut(&mut request).set_progress_token(token.clone());
        let mut in_flight = InFlight::default();
        in_flight.observe_outbound(&JsonRpcMessage::request(request, id.clone()));

        let mut message = progress(&token);
        in_flight.observe_inbound(&mut message);
        assert_eq!(
            origin_of(&message),
            Some(InboundStreamOrigin::OutboundRequest(id.clone()))
        );

        in_flight.observe_inbound(&mut JsonRpcMessage::response(ServerResult::empty(()), id));
        let mut late = progress(&token);
        in_flight.observe_inbound(&mut late);
        assert_eq!(origin_of(&late), None);
    }
}
