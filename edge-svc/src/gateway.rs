//! The running data plane: supervised connectors and the virtual servers built on them.
//!
//! The set of both is the live [`routing`](crate::routing) table: an administrator may add,
//! change or remove servers and connectors while clients are connected.

use std::sync::Arc;

use arc_swap::ArcSwap;
use rmcp::transport::streamable_http_server::session::SessionStore;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::audit::Recorder;
use crate::connector::Connector;
use crate::credentials::Credentials;
use crate::inspect::Inspector;
use crate::quota::Quotas;
use crate::routing::{Applied, Builder, Changed, ServerSlot, Table};
use crate::spec::GatewaySpec;
use crate::switchboard::Switchboard;
use crate::vmcp::VirtualServer;

/// Every connector and virtual server of one gateway description, started; cheap to clone.
#[derive(Debug, Clone)]
pub struct Gateway {
    table: Arc<ArcSwap<Table>>,
    // One change at a time: each is computed from the table the previous one left.
    changing: Arc<tokio::sync::Mutex<()>>,
    credentials: Option<Credentials>,
    shutdown: CancellationToken,
    board: Arc<Switchboard>,
    recorder: Recorder,
    access: Access,
    quotas: Quotas,
    inspector: Inspector,
    sessions: Option<Arc<dyn SessionStore>>,
}

impl Gateway {
    /// Spawns each connector once (shared by every virtual server that lists it) and builds the servers.
    ///
    /// The spec was validated when parsed, so a transport or curation error here is reported
    /// as the same message rather than trusted away.
    pub fn start(spec: &GatewaySpec, shutdown: &CancellationToken) -> Result<Self, String> {
        Self::start_with(spec, None, shutdown)
    }

    /// Like [`Gateway::start`], fetching connectors' downstream credentials through `credentials`.
    ///
    /// A connector that declares credentials cannot start without a vault-svc client: the
    /// gateway fails closed rather than call it unauthenticated.
    pub fn start_with(
        spec: &GatewaySpec,
        credentials: Option<&Credentials>,
        shutdown: &CancellationToken,
    ) -> Result<Self, String> {
        let board = Arc::new(Switchboard::default());
        let builder = Builder {
            board: &board,
            credentials,
            shutdown,
        };
        let (table, _, _) = builder.build(&Table::default(), spec, &Changed::default())?;
        // The spec's `dlp:` section was compiled once when validated; this is the same input.
        let inspector = if spec.dlp.rules.is_empty() {
            Inspector::disabled()
        } else {
            Inspector::new(dlp::Dlp::new(&spec.dlp).map_err(|error| error.to_string())?)
        };
        Ok(Self {
            table: Arc::new(ArcSwap::from_pointee(table)),
            changing: Arc::default(),
            credentials: credentials.cloned(),
            shutdown: shutdown.clone(),
            board,
            recorder: Recorder::disabled(),
            access: Access::unrestricted(),
            quotas: Quotas::unlimited(),
            inspector,
            sessions: None,
        })
    }

    /// Makes `spec`'s connectors and virtual servers the served ones, at once.
    ///
    /// Connectors and servers `changed` does not name are kept running as they are; a refused
    /// description (unknown connector, bad curation, transport) changes nothing. The spec's
    /// rate-limit rules take effect with it (their bucket store stays as the gateway started);
    /// its DLP section is not re-read.
    pub async fn apply(&self, spec: &GatewaySpec, changed: &Changed) -> Result<Applied, String> {
        let _one_at_a_time = self.changing.lock().await;
        let old = self.table.load_full();
        let builder = Builder {
            board: &self.board,
            credentials: self.credentials.as_ref(),
            shutdown: &self.shutdown,
        };
        let (table, applied, retired) = builder.build(&old, spec, changed)?;
        // Rules the spec's own validation compiled; after the table, so a refusal changes nothing.
        if self.quotas.is_enforced() {
            self.quotas
                .replace_rules(&spec.rate_limits.rules)
                .map_err(|error| error.to_string())?;
        }
        for name in &applied.updated {
            if let Some(slot) = table.server(name) {
                crate::routing::announce_change(&slot.load()).await;
            }
        }
        self.table.store(Arc::new(table));
        for running in retired {
            crate::routing::retire(running, Arc::clone(&self.board));
        }
        tracing::info!(?applied, "routing table changed");
        Ok(applied)
    }

    /// Keeps MCP sessions in `store` too, so that another edge can continue them (sessions
    /// stay in this process without one).
    #[must_use]
    pub fn with_session_store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(store);
        self
    }

    /// Returns the shared session store, when sessions outlive this process.
    pub fn session_store(&self) -> Option<&Arc<dyn SessionStore>> {
        self.sessions.as_ref()
    }

    /// Records every decided request through `recorder` (the gateway keeps no audit trail without one).
    #[must_use]
    pub fn with_audit(mut self, recorder: Recorder) -> Self {
        self.recorder = recorder;
        self
    }

    /// Enforces `access` on every list and call (curation alone decides without one).
    #[must_use]
    pub fn with_access(mut self, access: Access) -> Self {
        self.access = access;
        self
    }

    /// Charges every call to the rate limits of `quotas` (no limits without one).
    #[must_use]
    pub fn with_quotas(mut self, quotas: Quotas) -> Self {
        self.quotas = quotas;
        self
    }

    /// Returns the rate limits every handler enforces.
    pub fn quotas(&self) -> &Quotas {
        &self.quotas
    }

    /// Returns the policy every handler enforces.
    pub fn access(&self) -> &Access {
        &self.access
    }

    /// Returns the DLP inspection every handler applies (from the spec's `dlp:` section).
    pub fn inspector(&self) -> &Inspector {
        &self.inspector
    }

    /// Returns the audit recorder every handler writes to.
    pub fn recorder(&self) -> &Recorder {
        &self.recorder
    }

    /// Returns the virtual servers now served, in declaration order.
    pub fn servers(&self) -> Vec<Arc<VirtualServer>> {
        self.table
            .load()
            .servers
            .iter()
            .map(|(_, slot)| slot.load())
            .collect()
    }

    /// Returns the slot serving the virtual server `name`, if it is served.
    pub fn server(&self, name: &str) -> Option<Arc<ServerSlot>> {
        self.table.load().server(name).cloned()
    }

    /// Returns the supervised connectors now running, in declaration order.
    pub fn connectors(&self) -> Vec<Connector> {
        self.table
            .load()
            .connectors
            .iter()
            .map(|(_, running)| running.connector.clone())
            .collect()
    }

    /// Returns the routing table shared by every connector.
    pub fn switchboard(&self) -> &Arc<Switchboard> {
        &self.board
    }
}
