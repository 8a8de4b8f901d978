//! The live routing table: which virtual servers are served and which connectors run.
//!
//! An administrator's change builds a whole new table next to the running one and swaps it in
//! at once, so a request sees either the old or the new gateway, never half of each. Unchanged
//! connectors and servers are carried over as they are (their sessions and caches survive);
//! a changed server is swapped inside its [`ServerSlot`], so clients already connected to it
//! see the new catalogue and hear `list_changed`; a removed connector stops once its in-flight
//! calls are done.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use rmcp::model::{
    PromptListChangedNotification, ResourceListChangedNotification, ServerNotification,
    ToolListChangedNotification,
};
use tokio_util::sync::CancellationToken;

use crate::catalogue::Curation;
use crate::connector::{Connector, Era, Relay, Transport};
use crate::credentials::{ConnectorCredentials, CredentialMode, Credentials};
use crate::spec::{AuthMode, ConnectorSpec, GatewaySpec, VirtualServerSpec};
use crate::switchboard::Switchboard;
use crate::vmcp::{Member, VirtualServer};

/// Longest a removed connector keeps running for the calls it is still answering.
const RETIRE_GRACE: Duration = Duration::from_secs(30);

/// How often a retiring connector checks whether its last call has finished.
const RETIRE_POLL: Duration = Duration::from_millis(50);

/// One served virtual server under a stable name; its definition is swapped in place.
///
/// Handlers hold the slot, not the server, so a client connected before a change is answered
/// from the new definition at its next request.
#[derive(Debug)]
pub struct ServerSlot {
    current: ArcSwap<VirtualServer>,
    sessions: CancellationToken,
}

impl ServerSlot {
    /// Serves `server` until the slot's `sessions` token is cancelled.
    pub fn new(server: Arc<VirtualServer>, sessions: CancellationToken) -> Self {
        Self {
            current: ArcSwap::new(server),
            sessions,
        }
    }

    /// Returns the server's current definition.
    pub fn load(&self) -> Arc<VirtualServer> {
        self.current.load_full()
    }

    /// Returns the token that ends every session of this server when it is deleted.
    pub fn sessions(&self) -> &CancellationToken {
        &self.sessions
    }
}

/// What changed in a new gateway description, by name; the caller compares declarations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changed {
    /// Connectors whose declaration changed: they are restarted.
    pub connectors: BTreeSet<String>,
    /// Virtual servers whose declaration changed: they are rebuilt and their clients told.
    pub servers: BTreeSet<String>,
}

/// What applying a description did, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Connectors started (new or restarted).
    pub started: Vec<String>,
    /// Connectors stopping once their in-flight calls finish.
    pub retired: Vec<String>,
    /// Virtual servers now served that were not.
    pub created: Vec<String>,
    /// Virtual servers rebuilt in place.
    pub updated: Vec<String>,
    /// Virtual servers no longer served; their sessions ended.
    pub deleted: Vec<String>,
}

/// A running connector: its sessions, credential binding and the token that stops them.
#[derive(Debug, Clone)]
pub(crate) struct Running {
    pub(crate) connector: Connector,
    legacy: Option<Connector>,
    credentials: Option<Arc<ConnectorCredentials>>,
    stop: CancellationToken,
}

/// The served servers and running connectors, both in declaration order.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub(crate) servers: Vec<(String, Arc<ServerSlot>)>,
    pub(crate) connectors: Vec<(String, Running)>,
}

/// What building a new table needs from the gateway.
pub(crate) struct Builder<'a> {
    pub(crate) board: &'a Arc<Switchboard>,
    pub(crate) credentials: Option<&'a Credentials>,
    pub(crate) shutdown: &'a CancellationToken,
}

impl Table {
    /// Returns the slot serving `name`.
    pub(crate) fn server(&self, name: &str) -> Option<&Arc<ServerSlot>> {
        self.servers
            .iter()
            .find(|(served, _)| served == name)
            .map(|(_, slot)| slot)
    }

    fn connector(&self, name: &str) -> Option<&Running> {
        self.connectors
            .iter()
            .find(|(running, _)| running == name)
            .map(|(_, running)| running)
    }
}

impl Builder<'_> {
    /// Builds the table `spec` describes from `old`, reusing what `changed` leaves alone.
    ///
    /// Everything is checked before anything starts, so a refused description leaves the
    /// running table untouched. Returns the new table, what it did, and the connectors to retire.
    pub(crate) fn build(
        &self,
        old: &Table,
        spec: &GatewaySpec,
        changed: &Changed,
    ) -> Result<(Table, Applied, Vec<Running>), String> {
        check(spec, self.credentials.is_some())?;
        let mut swaps = Vec::new();
        let mut applied = Applied::default();
        let mut table = Table::default();
        let mut restarted = BTreeSet::new();
        for declared in &spec.connectors {
            let running = match old.connector(&declared.name) {
                Some(running) if !changed.connectors.contains(&declared.name) => running.clone(),
                _ => {
                    restarted.insert(declared.name.clone());
                    applied.started.push(declared.name.clone());
                    self.start(declared)?
                }
            };
            table.connectors.push((declared.name.clone(), running));
        }
        let retired: Vec<Running> = old
            .connectors
            .iter()
            .filter(|(name, _)| restarted.contains(name) || table.connector(name).is_none())
            .map(|(name, running)| {
                applied.retired.push(name.clone());
                running.clone()
            })
            .collect();
        for declared in &spec.virtual_servers {
            let rebuild = changed.servers.contains(&declared.name)
                || declared
                    .connectors
                    .iter()
                    .any(|member| restarted.contains(&member.connector));
            let slot = match old.server(&declared.name) {
                Some(slot) if !rebuild => Arc::clone(slot),
                Some(slot) => {
                    let server = virtual_server(declared, &table, Some(&slot.load()))?;
                    swaps.push((Arc::clone(slot), server));
                    applied.updated.push(declared.name.clone());
                    Arc::clone(slot)
                }
                None => {
                    let server = virtual_server(declared, &table, None)?;
                    applied.created.push(declared.name.clone());
                    Arc::new(ServerSlot::new(server, self.shutdown.child_token()))
                }
            };
            table.servers.push((declared.name.clone(), slot));
        }
        // Nothing below can fail: the running servers change only now.
        for (slot, server) in swaps {
            slot.current.store(server);
        }
        for (name, slot) in &old.servers {
            if table.server(name).is_none() {
                slot.sessions.cancel();
                applied.deleted.push(name.clone());
            }
        }
        self.board
            .set_servers(table.servers.iter().map(|(_, slot)| slot.load()).collect());
        Ok((table, applied, retired))
    }

    /// Starts one connector (and its legacy twin) under its own stop token.
    fn start(&self, declared: &ConnectorSpec) -> Result<Running, String> {
        let relay: Arc<dyn Relay> = self.board.clone();
        let stop = self.shutdown.child_token();
        let transport = declared
            .transport()
            .map_err(|reason| format!("connector `{}`: {reason}", declared.name))?;
        let credentials = bind(declared, self.credentials, &transport, &relay, &stop)?;
        let source = credentials.as_ref().map(ConnectorCredentials::main_source);
        let spawn = |name: String, transport| {
            Connector::spawn_with_credential(
                name,
                transport,
                source.clone(),
                Arc::clone(&relay),
                stop.child_token(),
            )
        };
        let legacy =
            legacy_twin(&transport).map(|twin| spawn(format!("{}@legacy", declared.name), twin));
        let connector = spawn(declared.name.clone(), transport);
        crate::watch::spawn(connector.clone(), Arc::clone(&relay), stop.child_token());
        Ok(Running {
            connector,
            legacy,
            credentials,
            stop,
        })
    }
}

/// Stops `running` once no call is in flight on it any more, or after [`RETIRE_GRACE`].
pub(crate) fn retire(running: Running, board: Arc<Switchboard>) {
    tokio::spawn(async move {
        let name = running.connector.name().to_owned();
        let deadline = tokio::time::Instant::now() + RETIRE_GRACE;
        while board.in_flight(&name) > 0 && tokio::time::Instant::now() < deadline {
            tokio::select! {
                () = running.stop.cancelled() => break,
                () = tokio::time::sleep(RETIRE_POLL) => {}
            }
        }
        running.stop.cancel();
        tracing::info!(connector = %name, "connector stopped: it is no longer declared");
    });
}

/// Refuses a description whose transports or curation cannot be built, before anything starts.
fn check(spec: &GatewaySpec, vault: bool) -> Result<(), String> {
    let mut names = HashMap::new();
    for declared in &spec.connectors {
        declared
            .transport()
            .map_err(|reason| format!("connector `{}`: {reason}", declared.name))?;
        if declared.credentials.mode != CredentialMode::None && !vault {
            return Err(format!(
                "connector `{}` declares credentials but this edge has no vault-svc client (set `vault`)",
                declared.name
            ));
        }
        names.insert(declared.name.as_str(), ());
    }
    for declared in &spec.virtual_servers {
        for member in &declared.connectors {
            if !names.contains_key(member.connector.as_str()) {
                return Err(format!(
                    "virtual server `{}`: unknown connector `{}`",
                    declared.name, member.connector
                ));
            }
            Curation::try_from(member)
                .map_err(|reason| format!("virtual server `{}`: {reason}", declared.name))?;
        }
    }
    Ok(())
}

/// Tells the server's connected clients that its tools, prompts and resources may have changed.
pub(crate) async fn announce_change(server: &VirtualServer) {
    for notification in [
        ServerNotification::ToolListChangedNotification(ToolListChangedNotification::default()),
        ServerNotification::PromptListChangedNotification(PromptListChangedNotification::default()),
        ServerNotification::ResourceListChangedNotification(
            ResourceListChangedNotification::default(),
        ),
    ] {
        server.catalogue_changed(&notification).await;
    }
}

fn virtual_server(
    declared: &VirtualServerSpec,
    table: &Table,
    predecessor: Option<&VirtualServer>,
) -> Result<Arc<VirtualServer>, String> {
    let mut members = Vec::new();
    for member in &declared.connectors {
        let running = table.connector(&member.connector).ok_or_else(|| {
            format!(
                "virtual server `{}`: unknown connector `{}`",
                declared.name, member.connector
            )
        })?;
        let curation = Curation::try_from(member)
            .map_err(|reason| format!("virtual server `{}`: {reason}", declared.name))?;
        members.push(Member {
            connector: running.connector.clone(),
            legacy: running.legacy.clone(),
            curation,
            credentials: running.credentials.clone(),
        });
    }
    if declared.auth == AuthMode::None {
        tracing::warn!(
            virtual_server = %declared.name,
            "AUTHENTICATION IS OFF for this virtual server (auth: none): anyone who can reach it can call its tools; use only for local development"
        );
    }
    Ok(VirtualServer::new(
        declared.name.clone(),
        declared.description.clone(),
        declared.auth,
        members,
        predecessor,
    ))
}

/// Binds a connector that declares credentials to the vault-svc client.
fn bind(
    declared: &ConnectorSpec,
    credentials: Option<&Credentials>,
    transport: &Transport,
    relay: &Arc<dyn Relay>,
    shutdown: &CancellationToken,
) -> Result<Option<Arc<ConnectorCredentials>>, String> {
    if declared.credentials.mode == CredentialMode::None {
        return Ok(None);
    }
    let broker = credentials.ok_or_else(|| {
        let missing = if declared.credentials.mode == CredentialMode::TokenExchange {
            "authz-svc link (set `authz`)"
        } else {
            "vault-svc client (set `vault`)"
        };
        format!(
            "connector `{}` declares credentials but this edge has no {missing}",
            declared.name
        )
    })?;
    Ok(Some(ConnectorCredentials::new(
        &declared.name,
        &declared.credentials,
        broker.clone(),
        transport,
        relay,
        shutdown,
    )))
}

/// Returns a legacy-pinned copy of an HTTP transport that may negotiate the modern era.
///
/// A stdio program has one session, and SSE and legacy-pinned HTTP are already legacy.
fn legacy_twin(transport: &Transport) -> Option<Transport> {
    match transport {
        Transport::Http(http) if http.era == Era::Auto => {
            let mut twin = http.clone();
            twin.era = Era::Legacy;
            Some(Transport::Http(twin))
        }
        _ => None,
    }
}
