//! The running data plane: supervised connectors and the virtual servers built on them.

use std::collections::HashMap;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::catalogue::Curation;
use crate::connector::{Connector, Relay};
use crate::spec::{AuthMode, GatewaySpec};
use crate::switchboard::Switchboard;
use crate::vmcp::{Member, VirtualServer};

/// Every connector and virtual server of one gateway description, started.
#[derive(Debug, Clone)]
pub struct Gateway {
    servers: Vec<Arc<VirtualServer>>,
    connectors: Vec<Connector>,
    board: Arc<Switchboard>,
}

impl Gateway {
    /// Spawns each connector once (shared by every virtual server that lists it) and builds the servers.
    ///
    /// The spec was validated when parsed, so a transport or curation error here is reported
    /// as the same message rather than trusted away.
    pub fn start(spec: &GatewaySpec, shutdown: &CancellationToken) -> Result<Self, String> {
        let board = Arc::new(Switchboard::default());
        let relay: Arc<dyn Relay> = board.clone();
        let mut by_name = HashMap::new();
        let mut connectors = Vec::new();
        for declared in &spec.connectors {
            let transport = declared.transport().map_err(|reason| format!("connector `{}`: {reason}", declared.name))?;
            let connector = Connector::spawn(declared.name.clone(), transport, Arc::clone(&relay), shutdown.child_token());
            by_name.insert(declared.name.clone(), connector.clone());
            connectors.push(connector);
        }
        let mut servers = Vec::new();
        for declared in &spec.virtual_servers {
            let mut members = Vec::new();
            for member in &declared.connectors {
                let connector = by_name
                    .get(&member.connector)
                    .cloned()
                    .ok_or_else(|| format!("virtual server `{}`: unknown connector `{}`", declared.name, member.connector))?;
                let curation = Curation::try_from(member).map_err(|reason| format!("virtual server `{}`: {reason}", declared.name))?;
                members.push(Member { connector, curation });
            }
            if declared.auth == AuthMode::None {
                tracing::warn!(
                    virtual_server = %declared.name,
                    "AUTHENTICATION IS OFF for this virtual server (auth: none): anyone who can reach it can call its tools; use only for local development"
                );
            }
            let server = Arc::new(VirtualServer::new(declared.name.clone(), declared.description.clone(), declared.auth, members));
            board.attach(Arc::clone(&server));
            servers.push(server);
        }
        Ok(Self { servers, connectors, board })
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
