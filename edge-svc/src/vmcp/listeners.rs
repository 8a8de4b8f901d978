//! Clients that asked to hear about catalogue changes: legacy sessions and modern listen streams.

use std::sync::{Mutex, PoisonError};

use rmcp::model::ServerNotification;
use rmcp::service::SubscriptionSink;
use rmcp::{Peer, RoleServer};

/// Everyone to tell when a virtual server's tools, prompts or resources change.
#[derive(Debug, Default)]
pub struct Listeners {
    sessions: Mutex<Vec<Peer<RoleServer>>>,
    streams: Mutex<Vec<SubscriptionSink>>,
}

impl Listeners {
    /// Adds a legacy-era session; it hears every list change until its transport closes.
    pub fn add_session(&self, peer: Peer<RoleServer>) {
        self.sessions.lock().unwrap_or_else(PoisonError::into_inner).push(peer);
    }

    /// Adds a modern-era `subscriptions/listen` stream; its filter decides what it hears.
    pub fn add_stream(&self, sink: SubscriptionSink) {
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).push(sink);
    }

    /// Sends a list-changed notification to every live listener, forgetting closed ones.
    pub async fn broadcast(&self, notification: &ServerNotification) {
        for peer in self.live_sessions() {
            let sent = match notification {
                ServerNotification::ToolListChangedNotification(_) => peer.notify_tool_list_changed().await,
                ServerNotification::PromptListChangedNotification(_) => peer.notify_prompt_list_changed().await,
                ServerNotification::ResourceListChangedNotification(_) => peer.notify_resource_list_changed().await,
                _ => Ok(()),
            };
            if let Err(error) = sent {
                tracing::debug!(%error, "list-changed notification not delivered");
            }
        }
        for sink in self.live_streams() {
            let sent = match notification {
                ServerNotification::ToolListChangedNotification(_) => sink.notify_tool_list_changed().await,
                ServerNotification::PromptListChangedNotification(_) => sink.notify_prompt_list_changed().await,
                ServerNotification::ResourceListChangedNotification(_) => sink.notify_resource_list_changed().await,
                _ => Ok(()),
            };
            if let Err(error) = sent {
                tracing::debug!(%error, "list-changed notification filtered or not delivered");
            }
        }
    }

    /// Tells modern listen streams that subscribed to `uri` that the resource changed.
    pub async fn resource_updated(&self, uri: &str) {
        for sink in self.live_streams() {
            if let Err(error) = sink.notify_resource_updated(uri).await {
                tracing::debug!(%error, "resource update filtered or not delivered");
            }
        }
    }

    fn live_sessions(&self) -> Vec<Peer<RoleServer>> {
        let mut sessions = self.sessions.lock().unwrap_or_else(PoisonError::into_inner);
        sessions.retain(|peer| !peer.is_transport_closed());
        sessions.clone()
    }

    fn live_streams(&self) -> Vec<SubscriptionSink> {
        let mut streams = self.streams.lock().unwrap_or_else(PoisonError::into_inner);
        streams.retain(|sink| !sink.is_closed());
        streams.clone()
    }
}
