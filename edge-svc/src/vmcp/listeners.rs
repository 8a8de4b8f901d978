//! Clients that asked to hear about catalogue changes: legacy sessions, the GET streams of
//! resting sessions, and modern listen streams.

use std::sync::{Arc, Mutex, PoisonError};

use rmcp::model::{ServerJsonRpcMessage, ServerNotification};
use rmcp::service::{SubscriptionSendError, SubscriptionSink};
use rmcp::{Peer, RoleServer};
use tokio::sync::broadcast;

/// How many list changes a resting session's GET stream may fall behind by; one that falls
/// further skips the oldest, which only say again that a list changed.
const RESTING_BACKLOG: usize = 16;

/// Everyone to tell when a virtual server's tools, prompts or resources change.
#[derive(Debug)]
pub struct Listeners {
    sessions: Mutex<Vec<Peer<RoleServer>>>,
    streams: Mutex<Vec<SubscriptionSink>>,
    /// The GET streams of resting sessions, which the express lane serves without an rmcp
    /// worker: each holds a receiver, so a change is encoded once for all of them.
    resting: broadcast::Sender<Arc<str>>,
}

impl Default for Listeners {
    fn default() -> Self {
        Self {
            sessions: Mutex::default(),
            streams: Mutex::default(),
            resting: broadcast::Sender::new(RESTING_BACKLOG),
        }
    }
}

impl Listeners {
    /// Returns what a resting session's GET stream hears: each list change as the JSON of its
    /// notification.
    pub fn listen_resting(&self) -> broadcast::Receiver<Arc<str>> {
        self.resting.subscribe()
    }

    /// Adds a legacy-era session; it hears every list change until its transport closes.
    pub fn add_session(&self, peer: Peer<RoleServer>) {
        self.sessions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(peer);
    }

    /// Adds a modern-era `subscriptions/listen` stream; its filter decides what it hears.
    pub fn add_stream(&self, sink: SubscriptionSink) {
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(sink);
    }

    /// Sends a list-changed notification to every live listener, forgetting closed ones.
    pub async fn broadcast(&self, notification: &ServerNotification) {
        if self.resting.receiver_count() > 0 {
            let message = ServerJsonRpcMessage::notification(notification.clone());
            match serde_json::to_string(&message) {
                // Sent only when someone listens; a stream gone meanwhile is no error.
                Ok(json) => {
                    let _ = self.resting.send(json.into());
                }
                Err(error) => tracing::warn!(%error, "could not encode a list change"),
            }
        }
        for peer in self.live_sessions() {
            let sent = match notification {
                ServerNotification::ToolListChangedNotification(_) => {
                    peer.notify_tool_list_changed().await
                }
                ServerNotification::PromptListChangedNotification(_) => {
                    peer.notify_prompt_list_changed().await
                }
                ServerNotification::ResourceListChangedNotification(_) => {
                    peer.notify_resource_list_changed().await
                }
                _ => Ok(()),
            };
            if let Err(error) = sent {
                tracing::debug!(%error, "list-changed notification not delivered");
            }
        }
        self.each_stream(|sink| {
            let notification = notification.clone();
            async move { sink.send(notification).await }
        })
        .await;
    }

    /// Tells modern listen streams that subscribed to `uri` that the resource changed.
    pub async fn resource_updated(&self, uri: &str) {
        self.each_stream(|sink| async move { sink.notify_resource_updated(uri).await })
            .await;
    }

    /// Sends to every stream and keeps only those whose subscription is still open.
    async fn each_stream<F, Fut>(&self, send: F)
    where
        F: Fn(SubscriptionSink) -> Fut,
        Fut: std::future::Future<Output = Result<(), SubscriptionSendError>>,
    {
        let streams =
            std::mem::take(&mut *self.streams.lock().unwrap_or_else(PoisonError::into_inner));
        let mut open = Vec::with_capacity(streams.len());
        for sink in streams {
            match send(sink.clone()).await {
                Err(SubscriptionSendError::SubscriptionClosed) => continue,
                Err(error) => tracing::debug!(%error, "notification filtered or not delivered"),
                Ok(()) => {}
            }
            open.push(sink);
        }
        self.streams
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(open);
    }

    fn live_sessions(&self) -> Vec<Peer<RoleServer>> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|peer| !peer.is_transport_closed());
        sessions.clone()
    }
}
