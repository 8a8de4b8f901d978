//! A virtual MCP server: a curated set of connectors behind one endpoint.
//!
//! The aggregated catalogue (tools, prompts, resources) is cached and rebuilt when a
//! downstream announces a list change, after which every connected client is told too.
//! A member that is down is left out of the cached catalogue until it is back, so one
//! downstream that is down never holds up the calls and listings of the others; when it is
//! back, the catalogue is built again and listening clients are told. A member whose listing
//! fails while it is up is listed again after [`RELIST_AFTER`], not on every call, and in the
//! background while nobody calls (waiting twice as long each time it fails again, up to
//! [`MEND_AT_MOST`]), so listening clients hear of its items without anyone's request.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use futures::future::join_all;
use rmcp::model::{
    Prompt, PromptListChangedNotification, Resource, ResourceListChangedNotification,
    ResourceTemplate, ServerNotification, Tool, ToolListChangedNotification,
};
use rmcp::service::SubscriptionSink;
use rmcp::{Peer, RoleClient, RoleServer};
use tokio::time::Instant;

use crate::catalogue::{Curation, ToolCatalogue};
use crate::connector::Connector;
use crate::credentials::ConnectorCredentials;
use crate::spec::AuthMode;

mod listeners;

pub use listeners::Listeners;

/// How long a catalogue that misses items of a member whose listing failed is served before
/// that member is listed again: a failure that passes heals soon, and one that lasts (a server
/// that advertises prompts but cannot list them) costs one listing of each member per interval
/// instead of one on every call.
pub const RELIST_AFTER: Duration = Duration::from_secs(1);

/// The longest wait between background listings of a member whose listing keeps failing: an
/// idle gateway then lists such a member once a minute, not once a second, forever.
pub const MEND_AT_MOST: Duration = Duration::from_secs(60);

/// One connector as a virtual server sees it.
#[derive(Debug)]
pub struct Member {
    /// The supervised downstream (modern era when the downstream speaks it).
    pub connector: Connector,
    /// A second session pinned to the legacy era, for legacy clients of a dual-era downstream.
    ///
    /// Legacy-only features (resources/subscribe, server→client requests on the call's own
    /// stream, log notifications) then work end to end instead of being translated.
    pub legacy: Option<Connector>,
    /// Its curated view.
    pub curation: Curation,
    /// The credential its calls carry, when the connector injects one.
    pub credentials: Option<Arc<ConnectorCredentials>>,
}

impl Member {
    /// Returns the session that matches a client's era.
    pub fn for_client(&self, modern_client: bool) -> &Connector {
        match (&self.legacy, modern_client) {
            (Some(legacy), false) => legacy,
            _ => &self.connector,
        }
    }

    /// Returns whether `name` is one of this member's sessions.
    pub fn is_named(&self, name: &str) -> bool {
        self.connector.name() == name
            || self
                .legacy
                .as_ref()
                .is_some_and(|legacy| legacy.name() == name)
    }
}

/// A curated MCP endpoint served at `/v/{name}/mcp`.
#[derive(Debug)]
pub struct VirtualServer {
    name: String,
    description: Option<String>,
    auth: AuthMode,
    members: Vec<Member>,
    snapshot: RwLock<Option<Arc<Snapshot>>>,
    rebuild: tokio::sync::Mutex<()>,
    // The server itself, for the task that lists failed members again; weak, so a server
    // replaced or removed is not kept alive by it.
    me: Weak<VirtualServer>,
    // Whether that task is running: one per server at most.
    mending: AtomicBool,
    // Shared with the server's successors, so a live change keeps its clients' subscriptions.
    listeners: Arc<Listeners>,
    subscriptions: Arc<Mutex<Subscriptions>>,
}

/// Resource URI → the legacy sessions (numbered by their handler) subscribed to it.
type Subscriptions = HashMap<String, Vec<(u64, Peer<RoleServer>)>>;

/// Everything a virtual server lists, with the route back to each item's member.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Curated tools and their routes.
    pub tools: ToolCatalogue,
    /// Prompts with exposed (prefixed) names.
    pub prompts: Vec<Prompt>,
    /// Exposed prompt name → (member index, original name).
    pub prompt_routes: HashMap<String, (usize, String)>,
    /// Concrete resources, URIs unchanged.
    pub resources: Vec<Resource>,
    /// Resource URI → member index.
    pub resource_routes: HashMap<String, usize>,
    /// Resource templates, URIs unchanged, each with its member index.
    pub templates: Vec<(ResourceTemplate, usize)>,
    /// Indices of members left out because they had no session: the catalogue is built again
    /// as soon as one of them has one, and a name not found can say why.
    pub unavailable: Vec<usize>,
    /// Indices of members whose listing failed while they were up: some of their items may be
    /// missing until the catalogue is built again at `relist_at`.
    pub incomplete: Vec<usize>,
    /// When the catalogue is built again because a member's listing failed.
    pub relist_at: Option<Instant>,
}

/// One member's items. A member whose listing failed (`complete` false) or that was down
/// (`unavailable`) leaves items out of the snapshot until it is listed again.
#[derive(Debug)]
struct Listing {
    tools: Vec<Tool>,
    prompts: Vec<Prompt>,
    resources: Vec<Resource>,
    templates: Vec<ResourceTemplate>,
    complete: bool,
    unavailable: bool,
}

impl VirtualServer {
    /// Creates a virtual server over already-spawned connectors; one that replaces
    /// `predecessor` under the same name takes over its listening clients and resource
    /// subscriptions, since its clients must hear about the change.
    pub fn new(
        name: String,
        description: Option<String>,
        auth: AuthMode,
        members: Vec<Member>,
        predecessor: Option<&VirtualServer>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|me| Self {
            name,
            description,
            auth,
            members,
            snapshot: RwLock::new(None),
            rebuild: tokio::sync::Mutex::new(()),
            me: me.clone(),
            mending: AtomicBool::new(false),
            listeners: predecessor
                .map_or_else(Arc::default, |previous| Arc::clone(&previous.listeners)),
            subscriptions: predecessor
                .map_or_else(Arc::default, |previous| Arc::clone(&previous.subscriptions)),
        })
    }

    /// Returns the name used in the URL.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the description given to clients as instructions.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// Returns how clients must authenticate.
    pub fn auth(&self) -> AuthMode {
        self.auth
    }

    /// Returns the member connectors in declaration order.
    pub fn members(&self) -> &[Member] {
        &self.members
    }

    /// Returns whether the named connector is part of this virtual server.
    pub fn has_connector(&self, connector: &str) -> bool {
        self.members.iter().any(|member| member.is_named(connector))
    }

    /// Returns the registry of clients that want list-changed notifications.
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }

    /// Returns the cached catalogue, building it from the downstreams when missing.
    pub async fn snapshot(&self) -> Arc<Snapshot> {
        if let Some(snapshot) = self.cached() {
            return snapshot;
        }
        let _single_flight = self.rebuild.lock().await;
        if let Some(snapshot) = self.cached() {
            return snapshot;
        }
        let previous = self
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let listings = join_all(self.members.iter().enumerate().map(|(index, member)| {
            // A failure the previous catalogue already met was reported then.
            let reported = previous
                .as_ref()
                .is_some_and(|previous| previous.incomplete.contains(&index));
            list_member(&member.connector, reported)
        }))
        .await;
        let snapshot = Arc::new(self.assemble(&listings));
        *self
            .snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&snapshot));
        if let Some(previous) = previous {
            self.announce_returns(&previous, &snapshot, &listings);
        }
        if !snapshot.incomplete.is_empty() {
            self.mend();
        }
        snapshot
    }

    /// Starts the task that lists again, while nobody calls, the members whose listing
    /// failed, unless it runs already. It waits [`RELIST_AFTER`], then twice as long after
    /// each listing that fails again, up to [`MEND_AT_MOST`]; the rebuild it causes tells
    /// listening clients what came back.
    fn mend(&self) {
        if self.mending.swap(true, Ordering::AcqRel) {
            return;
        }
        let me = self.me.clone();
        tokio::spawn(async move {
            let mut wait = RELIST_AFTER;
            loop {
                tokio::time::sleep(wait).await;
                let Some(server) = me.upgrade() else {
                    return;
                };
                if !server.snapshot().await.incomplete.is_empty() {
                    wait = (wait * 2).min(MEND_AT_MOST);
                    continue;
                }
                server.mending.store(false, Ordering::Release);
                // A rebuild between the listing above and the store may have found a
                // member failing again and left it to this task.
                if !server.stored_incomplete() || server.mending.swap(true, Ordering::AcqRel) {
                    return;
                }
                wait = RELIST_AFTER;
            }
        });
    }

    /// Tells whether the stored catalogue misses items of a member whose listing failed.
    fn stored_incomplete(&self) -> bool {
        self.snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|snapshot| !snapshot.incomplete.is_empty())
    }

    /// Builds the catalogue again when it left out `connector`, which has just opened a
    /// session: clients that keep their own copy of the lists then hear that it is back,
    /// instead of seeing its items only when they happen to list again.
    pub async fn member_back(&self, connector: &str) {
        let left_out = self
            .snapshot
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|snapshot| {
                snapshot.unavailable.iter().any(|index| {
                    self.members
                        .get(*index)
                        .is_some_and(|member| member.connector.name() == connector)
                })
            });
        if left_out {
            self.snapshot().await;
        }
    }

    /// Tells listening clients which lists grew because members left out of `previous` (down,
    /// or their listing failed) are listed in full in `current`. Whichever rebuild notices first
    /// announces it (a call's, or the one `member_back` starts), and only once: the stored
    /// catalogue no longer leaves them out. Sent from a task of its own, so the call that
    /// rebuilt is not held up by slow listeners.
    fn announce_returns(&self, previous: &Snapshot, current: &Snapshot, listings: &[Listing]) {
        let returned: Vec<&Listing> = previous
            .unavailable
            .iter()
            .chain(&previous.incomplete)
            .filter(|index| {
                !current.unavailable.contains(index) && !current.incomplete.contains(index)
            })
            .filter_map(|index| listings.get(*index))
            .collect();
        let mut changes = Vec::new();
        if returned.iter().any(|listing| !listing.tools.is_empty()) {
            changes.push(ServerNotification::ToolListChangedNotification(
                ToolListChangedNotification::default(),
            ));
        }
        if returned.iter().any(|listing| !listing.prompts.is_empty()) {
            changes.push(ServerNotification::PromptListChangedNotification(
                PromptListChangedNotification::default(),
            ));
        }
        if returned
            .iter()
            .any(|listing| !listing.resources.is_empty() || !listing.templates.is_empty())
        {
            changes.push(ServerNotification::ResourceListChangedNotification(
                ResourceListChangedNotification::default(),
            ));
        }
        if changes.is_empty() {
            return;
        }
        let listeners = Arc::clone(&self.listeners);
        tokio::spawn(async move {
            for change in &changes {
                listeners.broadcast(change).await;
            }
        });
    }

    /// Returns an exposed tool from the cached catalogue without waiting (used to validate
    /// `Mcp-Param-*` headers before dispatch); `None` when unknown or not yet listed.
    pub fn cached_tool(&self, name: &str) -> Option<Tool> {
        let snapshot = self.cached()?;
        snapshot
            .tools
            .tools()
            .iter()
            .find(|tool| tool.name == name)
            .cloned()
    }

    /// Returns the cached catalogue unless a member left out of it is back, or the time to list
    /// again a member whose listing failed has come. The members still down are asked to
    /// reconnect soon: calls keep coming, so someone wants them.
    fn cached(&self) -> Option<Arc<Snapshot>> {
        let cached = self.snapshot.read().unwrap_or_else(PoisonError::into_inner);
        let snapshot = cached.as_ref()?;
        if snapshot
            .relist_at
            .is_some_and(|relist_at| Instant::now() >= relist_at)
        {
            return None;
        }
        let down = snapshot
            .unavailable
            .iter()
            .filter_map(|index| self.members.get(*index));
        if down.clone().any(|member| member.connector.is_ready()) {
            return None;
        }
        down.for_each(|member| member.connector.hurry());
        Some(Arc::clone(snapshot))
    }

    fn assemble(&self, listings: &[Listing]) -> Snapshot {
        let tools = ToolCatalogue::build(
            self.members
                .iter()
                .zip(listings)
                .map(|(member, listing)| (&member.curation, listing.tools.as_slice())),
        );
        let mut snapshot = Snapshot {
            tools,
            ..Snapshot::default()
        };
        for (index, (member, listing)) in self.members.iter().zip(listings).enumerate() {
            if listing.unavailable {
                snapshot.unavailable.push(index);
            }
            if !listing.complete {
                snapshot.incomplete.push(index);
            }
            for prompt in &listing.prompts {
                let exposed = format!("{}{}", member.curation.prefix(), prompt.name);
                if snapshot.prompt_routes.contains_key(&exposed) {
                    continue;
                }
                snapshot
                    .prompt_routes
                    .insert(exposed.clone(), (index, prompt.name.to_string()));
                let mut prompt = prompt.clone();
                prompt.name = exposed;
                snapshot.prompts.push(prompt);
            }
            for resource in &listing.resources {
                if snapshot
                    .resource_routes
                    .insert(resource.uri.to_string(), index)
                    .is_none()
                {
                    snapshot.resources.push(resource.clone());
                }
            }
            for template in &listing.templates {
                snapshot.templates.push((template.clone(), index));
            }
        }
        if !snapshot.incomplete.is_empty() {
            snapshot.relist_at = Some(Instant::now() + RELIST_AFTER);
        }
        snapshot
    }

    /// Drops the cached catalogue and tells every listening client what changed.
    pub async fn catalogue_changed(&self, notification: &ServerNotification) {
        self.snapshot
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.listeners.broadcast(notification).await;
    }

    /// Records that a legacy session (numbered by its handler) subscribed to a resource URI.
    pub fn subscribe(&self, uri: &str, session: u64, peer: Peer<RoleServer>) {
        self.subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(uri.to_owned())
            .or_default()
            .push((session, peer));
    }

    /// Forgets a session's subscription to a URI, and any subscription of closed sessions.
    pub fn unsubscribe(&self, uri: &str, session: u64) {
        let mut subscriptions = self
            .subscriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(peers) = subscriptions.get_mut(uri) {
            peers.retain(|(known, peer)| *known != session && !peer.is_transport_closed());
        }
    }

    /// Tells the subscribers of a resource (legacy sessions and modern listeners) that it changed.
    pub async fn resource_updated(&self, uri: &str) {
        let peers = {
            let mut subscriptions = self
                .subscriptions
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let peers = subscriptions.entry(uri.to_owned()).or_default();
            peers.retain(|(_, peer)| !peer.is_transport_closed());
            peers.clone()
        };
        for (_, peer) in peers {
            let params = rmcp::model::ResourceUpdatedNotificationParam::new(uri);
            let _ = peer.notify_resource_updated(params).await;
        }
        self.listeners.resource_updated(uri).await;
    }

    /// Returns the member that serves a resource URI: listed URIs first, then templates.
    pub fn resource_member(&self, snapshot: &Snapshot, uri: &str) -> Option<usize> {
        if let Some(member) = snapshot.resource_routes.get(uri) {
            return Some(*member);
        }
        let by_template = snapshot
            .templates
            .iter()
            .find(|(template, _)| template_matches(&template.uri_template, uri))
            .map(|(_, member)| *member);
        by_template.or_else(|| (self.members.len() == 1).then_some(0))
    }
}

/// Registers a modern-era `subscriptions/listen` stream; kept here so `proxy` needs one import.
pub fn listen(server: &VirtualServer, sink: SubscriptionSink) {
    server.listeners.add_stream(sink);
}

/// Matches a URI against an RFC 6570 level-1 template (`{var}` matches one or more characters but not `/`).
fn template_matches(template: &str, uri: &str) -> bool {
    let mut rest = uri;
    let mut parts = template.split('{');
    let Some(head) = parts.next() else {
        return false;
    };
    let Some(after_head) = rest.strip_prefix(head) else {
        return false;
    };
    rest = after_head;
    for part in parts {
        let Some((_, literal)) = part.split_once('}') else {
            return false;
        };
        let end = if literal.is_empty() {
            rest.find('/').unwrap_or(rest.len())
        } else {
            match rest.find(literal) {
                Some(end) => end,
                None => return false,
            }
        };
        if end == 0 || rest[..end].contains('/') {
            return false;
        }
        rest = &rest[end + literal.len()..];
    }
    rest.is_empty()
}

/// Lists one member's items; `reported` says its last listing failed and was logged, so a
/// failure that lasts is logged once at warn, then at debug.
async fn list_member(connector: &Connector, reported: bool) -> Listing {
    let mut listing = Listing {
        tools: vec![],
        prompts: vec![],
        resources: vec![],
        templates: vec![],
        complete: true,
        unavailable: false,
    };
    let peer: Peer<RoleClient> = match connector.peer().await {
        Ok(peer) => peer,
        Err(error) => {
            tracing::warn!(connector = connector.name(), %error, "connector unavailable; its items are missing from the listing until it is back");
            listing.unavailable = true;
            return listing;
        }
    };
    let capabilities = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let name = connector.name();
    if capabilities.tools.is_some() {
        listing.tools = settle(
            name,
            "tools",
            peer.list_all_tools().await,
            &mut listing.complete,
            reported,
        );
    }
    if capabilities.prompts.is_some() {
        listing.prompts = settle(
            name,
            "prompts",
            peer.list_all_prompts().await,
            &mut listing.complete,
            reported,
        );
    }
    if capabilities.resources.is_some() {
        listing.resources = settle(
            name,
            "resources",
            peer.list_all_resources().await,
            &mut listing.complete,
            reported,
        );
        listing.templates = settle(
            name,
            "resource templates",
            peer.list_all_resource_templates().await,
            &mut listing.complete,
            reported,
        );
    }
    listing
}

/// Keeps a listing's items, or logs its failure and marks the whole listing incomplete.
fn settle<T>(
    connector: &str,
    what: &str,
    result: Result<Vec<T>, rmcp::ServiceError>,
    complete: &mut bool,
    reported: bool,
) -> Vec<T> {
    result.unwrap_or_else(|error| {
        if reported {
            tracing::debug!(connector, what, %error, "listing still fails");
        } else {
            tracing::warn!(connector, what, %error, "listing failed; listed again shortly");
        }
        *complete = false;
        Vec::new()
    })
}

#[cfg(test)]
mod tests;
