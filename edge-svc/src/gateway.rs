//! The running data plane: supervised connectors and the virtual servers built on them.

use std::collections::HashMap;
use std::sync::Arc;

use rmcp::transport::streamable_http_server::session::SessionStore;
use tokio_util::sync::CancellationToken;

use crate::access::Access;
use crate::audit::Recorder;
use crate::catalogue::Curation;
use crate::connector::{Connector, Era, Relay, Transport};
use crate::credentials::{ConnectorCredentials, CredentialMode, Credentials};
use crate::inspect::Inspector;
use crate::quota::Quotas;
use crate::spec::{AuthMode, ConnectorSpec, GatewaySpec, VirtualServerSpec};
use crate::switchboard::Switchboard;
use crate::vmcp::{Member, VirtualServer};

/// Every connector and virtual server of one gateway description, started.
#[derive(Debug, Clone)]
pub struct Gateway {
    servers: Vec<Arc<VirtualServer>>,
    connectors: Vec<Connector>,
    board: Arc<Switchboard>,
    recorder: Recorder,
    access: Access,
    quotas: Quotas,
    inspector: Inspector,
    sessions: Option<Arc<dyn SessionStore>>,
}

/// A declared connector's sessions: the main one and, for dual-era HTTP, a legacy twin, with
/// the credential binding of a connector that injects one.
type Sessions = (
    Connector,
    Option<Connector>,
    Option<Arc<ConnectorCredentials>>,
);

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
        let relay: Arc<dyn Relay> = board.clone();
        let mut by_name = HashMap::new();
        let mut connectors = Vec::new();
        for declared in &spec.connectors {
            let transport = declared
                .transport()
                .map_err(|reason| format!("connector `{}`: {reason}", declared.name))?;
            let binding = bind(declared, credentials, &transport, &relay, shutdown)?;
            let source = binding.as_ref().map(ConnectorCredentials::main_source);
            let spawn = |name: String, transport| {
                Connector::spawn_with_headers(
                    name,
                    transport,
                    source.clone(),
                    Arc::clone(&relay),
                    shutdown.child_token(),
                )
            };
            let legacy = legacy_twin(&transport)
                .map(|twin| spawn(format!("{}@legacy", declared.name), twin));
            let connector = spawn(declared.name.clone(), transport);
            crate::watch::spawn(
                connector.clone(),
                Arc::clone(&relay),
                shutdown.child_token(),
            );
            by_name.insert(declared.name.clone(), (connector.clone(), legacy, binding));
            connectors.push(connector);
        }
        let mut servers = Vec::new();
        for declared in &spec.virtual_servers {
            let server = Arc::new(virtual_server(declared, &by_name)?);
            board.attach(Arc::clone(&server));
            servers.push(server);
        }
        // The spec's `dlp:` section was compiled once when validated; this is the same input.
        let inspector = if spec.dlp.rules.is_empty() {
            Inspector::disabled()
        } else {
            Inspector::new(dlp::Dlp::new(&spec.dlp).map_err(|error| error.to_string())?)
        };
        Ok(Self {
            servers,
            connectors,
            board,
            recorder: Recorder::disabled(),
            access: Access::unrestricted(),
            quotas: Quotas::unlimited(),
            inspector,
            sessions: None,
        })
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

    /// Returns the virtual servers in declaration order.
    pub fn servers(&self) -> &[Arc<VirtualServer>] {
        &self.servers
    }

    /// Returns the supervised connectors in declaration order.
    pub fn connectors(&self) -> &[Connector] {
        &self.connectors
    }

    /// Returns the routing table shared by every connector.
    pub fn switchboard(&self) -> &Arc<Switchboard> {
        &self.board
    }
}

fn virtual_server(
    declared: &VirtualServerSpec,
    by_name: &HashMap<String, Sessions>,
) -> Result<VirtualServer, String> {
    let mut members = Vec::new();
    for member in &declared.connectors {
        let (connector, legacy, credentials) =
            by_name.get(&member.connector).cloned().ok_or_else(|| {
                format!(
                    "virtual server `{}`: unknown connector `{}`",
                    declared.name, member.connector
                )
            })?;
        let curation = Curation::try_from(member)
            .map_err(|reason| format!("virtual server `{}`: {reason}", declared.name))?;
        members.push(Member {
            connector,
            legacy,
            curation,
            credentials,
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
        format!(
            "connector `{}` declares credentials but this edge has no vault-svc client (set `vault`)",
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
