//! Keeps a `subscriptions/listen` stream open on every modern-era downstream session.
//!
//! On 2026-07-28 a server only announces list changes to clients that listen for them, so
//! without this the gateway's cached catalogue would go stale and its own listening clients
//! would never hear that a downstream's tools, prompts or resources changed.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ProtocolVersion, SubscriptionFilter};
use tokio_util::sync::CancellationToken;

use crate::connector::{Connector, Relay};

/// Pause before listening again after a stream ends or cannot be opened.
const RELISTEN_DELAY: Duration = Duration::from_secs(1);

/// Spawns the watcher of one connector; it stops when `shutdown` is cancelled.
pub fn spawn(connector: Connector, relay: Arc<dyn Relay>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        while !shutdown.is_cancelled() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = listen_once(&connector, relay.as_ref()) => {}
            }
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(RELISTEN_DELAY) => {}
            }
        }
    });
}

/// Listens until the stream ends; returns at once when the session is legacy or the connector
/// stopped. Waits for a session without hurrying one: the watcher always waits, and a
/// downstream that is down must still back off.
async fn listen_once(connector: &Connector, relay: &dyn Relay) {
    let Ok(peer) = connector.live().await else {
        return;
    };
    let modern = connector
        .protocol_version()
        .is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str());
    if !modern {
        return;
    }
    let filter = SubscriptionFilter::builder()
        .tools_list_changed()
        .prompts_list_changed()
        .resources_list_changed()
        .build();
    let mut subscription = match peer.listen(filter).await {
        Ok(subscription) => subscription,
        Err(error) => {
            tracing::debug!(connector = connector.name(), %error, "downstream does not accept subscriptions/listen");
            return;
        }
    };
    while let Ok(Some(notification)) = subscription.next().await {
        relay.notify(connector.name(), None, notification).await;
    }
}
