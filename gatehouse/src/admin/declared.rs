//! The virtual servers and connectors a gateway file declares, as the admin API shows them.
//!
//! Built from the same text `gatehouse up` started from (and by `gatehouse apply` from the
//! file it reconciles), so the served and the declared state compare field by field.

use edge_svc::GatewaySpec;
use edge_svc::credentials::CredentialMode;
use serde_json::Value;

use super::model::{ConnectorView, VirtualServerView};

/// The declared virtual servers (with their curation) and connectors (without secrets).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Declared {
    pub(crate) virtual_servers: Vec<VirtualServerView>,
    pub(crate) connectors: Vec<ConnectorView>,
}

impl Declared {
    /// Returns what `text` declares; `spec` is the same text, parsed and validated.
    pub(crate) fn new(text: &str, spec: &GatewaySpec) -> Result<Self, String> {
        let file: Value = serde_norway::from_str(text).map_err(|error| error.to_string())?;
        let virtual_servers = file
            .get("virtual_servers")
            .and_then(Value::as_array)
            .map(|servers| {
                servers
                    .iter()
                    .map(|declaration| VirtualServerView {
                        name: declaration
                            .get("name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                            .to_owned(),
                        declaration: declaration.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let connectors = spec.connectors.iter().map(connector_view).collect();
        Ok(Self {
            virtual_servers,
            connectors,
        })
    }
}

/// Shows a connector's transport and target; headers and environment may hold secrets.
fn connector_view(connector: &edge_svc::spec::ConnectorSpec) -> ConnectorView {
    let (transport, target) = match (&connector.stdio, &connector.http, &connector.sse) {
        (Some(stdio), _, _) => ("stdio", stdio.command.clone()),
        (_, Some(http), _) => ("http", http.url.to_string()),
        (_, _, Some(sse)) => ("sse", sse.url.to_string()),
        (None, None, None) => ("none", String::new()),
    };
    let credentials = match connector.credentials.mode {
        CredentialMode::None => "none",
        CredentialMode::Shared => "shared",
        CredentialMode::PerMember => "per_member",
    };
    ConnectorView {
        name: connector.name.clone(),
        transport: transport.to_owned(),
        target,
        credentials: credentials.to_owned(),
    }
}
