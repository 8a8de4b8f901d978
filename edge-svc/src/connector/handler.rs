//! The rmcp client service of every connector session: forwards downstream traffic to the relay.

use std::sync::Arc;

use rmcp::{
    ErrorData, Service,
    model::{
        ClientCapabilities, ClientConfig, ClientResult, ElicitationCapability, Extensions,
        FormElicitationCapability, GetExtensions, GetMeta, Implementation, ProtocolVersion,
        RequestId, ServerNotification, ServerRequest, UrlElicitationCapability,
    },
    service::{InboundStreamOrigin, NotificationContext, RequestContext, RoleClient},
};

use super::Relay;

/// Forwards server→client requests and notifications of one connector to its [`Relay`].
#[derive(Debug, Clone)]
pub(crate) struct RelayHandler {
    connector: Arc<str>,
    relay: Arc<dyn Relay>,
}

impl RelayHandler {
    /// Returns a handler relaying on behalf of `connector`.
    pub(crate) fn new(connector: Arc<str>, relay: Arc<dyn Relay>) -> Self {
        Self { connector, relay }
    }

    /// Tells the relay that a session of this connector is open, from a task of its own: the
    /// supervision loop goes on serving the session meanwhile.
    pub(crate) fn opened(&self) {
        let connector = Arc::clone(&self.connector);
        let relay = Arc::clone(&self.relay);
        tokio::spawn(async move { relay.session_opened(&connector).await });
    }
}

impl Service<RoleClient> for RelayHandler {
    async fn handle_request(
        &self,
        mut request: ServerRequest,
        context: RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        if matches!(request, ServerRequest::PingRequest(_)) {
            // A ping checks this hop; the upstream caller has nothing to add.
            return Ok(ClientResult::empty(()));
        }
        let origin = origin(&context.extensions);
        // rmcp moves `_meta` into the context; put it back so the relay sees the whole message.
        *request.get_meta_mut() = context.meta;
        self.relay.request(&self.connector, origin, request).await
    }

    async fn handle_notification(
        &self,
        mut notification: ServerNotification,
        context: NotificationContext<RoleClient>,
    ) -> Result<(), ErrorData> {
        let origin = origin(&context.extensions);
        // Put back what rmcp moved into the context: the relay needs the ticket that orders
        // this call's progress messages (`RelayTicket`) as well as `_meta`.
        *notification.get_meta_mut() = context.meta;
        *notification.extensions_mut() = context.extensions;
        self.relay
            .notify(&self.connector, origin, notification)
            .await;
        Ok(())
    }

    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(capabilities(), client_info())
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
    }
}

/// Names the gateway as the client of its downstreams, on rmcp's road and the direct line alike.
pub(crate) fn client_info() -> Implementation {
    Implementation::new("gatehouse", env!("CARGO_PKG_VERSION"))
}

/// Returns the outbound request a message belongs to, from the marker rmcp or
/// [`OriginTracking`](super::origin::OriginTracking) left in its extensions.
fn origin(extensions: &Extensions) -> Option<RequestId> {
    match extensions.get::<InboundStreamOrigin>() {
        Some(InboundStreamOrigin::OutboundRequest(id)) => Some(id.clone()),
        Some(InboundStreamOrigin::Unassociated) | None => None,
    }
}

/// Declares everything a gateway can relay, so downstreams offer their full feature set.
#[expect(
    deprecated,
    reason = "sampling and roots are deprecated by SEP-2577 but still relayed on the legacy era"
)]
fn capabilities() -> ClientCapabilities {
    ClientCapabilities::builder()
        .enable_roots()
        .enable_roots_list_changed()
        .enable_sampling()
        .enable_elicitation_with(
            ElicitationCapability::new()
                .with_form(FormElicitationCapability::new())
                .with_url(UrlElicitationCapability::new()),
        )
        .build()
}
