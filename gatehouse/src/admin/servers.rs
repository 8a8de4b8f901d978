//! Virtual servers and connectors through the admin API, changed while the gateway runs.
//!
//! A change is validated as the gateway file would be, applied to edge's routing table at once
//! (clients of a changed server hear `list_changed`), kept in the data directory, and the
//! authorization server's protected resources follow it.

use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use edge_svc::GatewaySpec;
use edge_svc::config::HttpFace;
use edge_svc::routing::Changed;
use proto::audit::v1::EventKind;
use serde_json::Value;

use super::declared::{Declarations, Edit};
use super::model::{ConnectorView, RateLimits, VirtualServerView};
use super::{Action, Admin, AdminCaller, AdminError, Declared};

/// Names the declarations in validation messages.
const SOURCE: &str = "admin api";

/// The live connectors and virtual servers, and what changes them.
#[derive(Debug)]
pub(super) struct Routing {
    gateway: edge_svc::Gateway,
    face: HttpFace,
    data: PathBuf,
    live: RwLock<Arc<Live>>,
    // One change at a time: each starts from the declarations the previous one left.
    changing: tokio::sync::Mutex<()>,
}

/// The declarations in force, parsed, and as the API shows them.
#[derive(Debug)]
struct Live {
    declarations: Declarations,
    spec: GatewaySpec,
    view: Declared,
}

impl Routing {
    /// Returns the running connectors' statuses, as edge sees them.
    pub(super) fn connector_statuses(&self) -> Vec<edge_svc::connector::ConnectorStatus> {
        let connectors = self.gateway.connectors();
        connectors
            .iter()
            .map(edge_svc::connector::Connector::status)
            .collect()
    }

    /// Starts from the declarations the gateway was started with.
    pub(super) fn new(
        declarations: Declarations,
        gateway: edge_svc::Gateway,
        face: HttpFace,
        data: PathBuf,
    ) -> Result<Self, String> {
        let spec = declarations.spec(SOURCE)?;
        let view = declarations.view(&spec);
        Ok(Self {
            gateway,
            face,
            data,
            live: RwLock::new(Arc::new(Live {
                declarations,
                spec,
                view,
            })),
            changing: tokio::sync::Mutex::new(()),
        })
    }

    /// Returns the data directory applied changes are kept in.
    pub(super) fn data(&self) -> &std::path::Path {
        &self.data
    }

    fn live(&self) -> Arc<Live> {
        Arc::clone(&self.live.read().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Admin {
    /// Returns the virtual servers in force.
    pub(crate) fn virtual_servers(&self, caller: &AdminCaller) -> Vec<VirtualServerView> {
        let action = Action::read(EventKind::AdminChange, "list", "virtual_server", "");
        self.record(caller, &action, None);
        self.inner.routing.live().view.virtual_servers.clone()
    }

    /// Returns one virtual server.
    pub(crate) fn virtual_server(
        &self,
        caller: &AdminCaller,
        name: &str,
    ) -> Result<VirtualServerView, AdminError> {
        let found = self
            .inner
            .routing
            .live()
            .view
            .virtual_servers
            .iter()
            .find(|server| server.name == name)
            .cloned()
            .ok_or_else(|| AdminError::VirtualServerNotFound(name.to_owned()));
        let action = Action::read(EventKind::AdminChange, "read", "virtual_server", name);
        self.audited(caller, &action, found)
    }

    /// Returns the connectors in force.
    pub(crate) fn connectors(&self, caller: &AdminCaller) -> Vec<ConnectorView> {
        let action = Action::read(EventKind::AdminChange, "list", "connector", "");
        self.record(caller, &action, None);
        self.inner.routing.live().view.connectors.clone()
    }

    /// Returns the names of the connectors in force, unaudited: a member's own page (the
    /// console's connected accounts) needs them, and names are no administrative secret.
    pub(crate) fn connector_names(&self) -> Vec<String> {
        self.inner
            .routing
            .live()
            .view
            .connectors
            .iter()
            .map(|connector| connector.name.clone())
            .collect()
    }

    /// Returns one connector.
    pub(crate) fn connector(
        &self,
        caller: &AdminCaller,
        name: &str,
    ) -> Result<ConnectorView, AdminError> {
        let found = self
            .inner
            .routing
            .live()
            .view
            .connectors
            .iter()
            .find(|connector| connector.name == name)
            .cloned()
            .ok_or_else(|| AdminError::ConnectorNotFound(name.to_owned()));
        let action = Action::read(EventKind::AdminChange, "read", "connector", name);
        self.audited(caller, &action, found)
    }

    /// Creates or replaces the virtual server `name`; it is served (or changed for its
    /// connected clients) when this returns.
    pub(crate) async fn put_virtual_server(
        &self,
        caller: &AdminCaller,
        name: &str,
        declaration: Value,
    ) -> Result<VirtualServerView, AdminError> {
        let outcome = async {
            let declaration = named(declaration, name)?;
            let live = self
                .change(|current| Ok(current.with_server(name, Some(declaration))))
                .await?;
            live.view
                .virtual_servers
                .iter()
                .find(|server| server.name == name)
                .cloned()
                .ok_or_else(|| AdminError::VirtualServerNotFound(name.to_owned()))
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "put", "virtual_server", name)
            .changing(&["declaration"]);
        self.audited(caller, &action, outcome)
    }

    /// Stops serving the virtual server `name`; its sessions end and its URL answers 404.
    pub(crate) async fn delete_virtual_server(
        &self,
        caller: &AdminCaller,
        name: &str,
    ) -> Result<VirtualServerView, AdminError> {
        let outcome = async {
            let existing = self.inner.routing.live().view.virtual_servers.clone();
            let server = existing
                .into_iter()
                .find(|server| server.name == name)
                .ok_or_else(|| AdminError::VirtualServerNotFound(name.to_owned()))?;
            self.change(|current| Ok(current.with_server(name, None)))
                .await?;
            Ok(server)
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "delete", "virtual_server", name);
        self.audited(caller, &action, outcome)
    }

    /// Creates or replaces the connector `name`; a changed one is restarted, and the calls
    /// in flight on its previous session finish first.
    pub(crate) async fn put_connector(
        &self,
        caller: &AdminCaller,
        name: &str,
        declaration: Value,
    ) -> Result<ConnectorView, AdminError> {
        let outcome = async {
            let declaration = named(declaration, name)?;
            let live = self
                .change(|current| Ok(current.with_connector(name, Some(declaration))))
                .await?;
            live.view
                .connectors
                .iter()
                .find(|connector| connector.name == name)
                .cloned()
                .ok_or_else(|| AdminError::ConnectorNotFound(name.to_owned()))
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "put", "connector", name)
            .changing(&["declaration"]);
        self.audited(caller, &action, outcome)
    }

    /// Removes the connector `name` and its tools from every virtual server that lists it
    /// (refused when a server would be left without connectors); it stops once idle.
    pub(crate) async fn delete_connector(
        &self,
        caller: &AdminCaller,
        name: &str,
    ) -> Result<ConnectorView, AdminError> {
        let outcome = async {
            let existing = self.inner.routing.live().view.connectors.clone();
            let connector = existing
                .into_iter()
                .find(|connector| connector.name == name)
                .ok_or_else(|| AdminError::ConnectorNotFound(name.to_owned()))?;
            self.change(|current| Ok(current.with_connector(name, None)))
                .await?;
            Ok(connector)
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "delete", "connector", name);
        self.audited(caller, &action, outcome)
    }

    /// Applies one edit of the declarations: validated, served, kept, and followed by the
    /// authorization server's resources. A refused edit changes nothing.
    async fn change(
        &self,
        edit: impl FnOnce(&Declarations) -> Result<Edit, AdminError>,
    ) -> Result<Arc<Live>, AdminError> {
        let routing = &self.inner.routing;
        let _one_at_a_time = routing.changing.lock().await;
        let current = routing.live();
        let (declarations, changed) = edit(&current.declarations)?;
        self.install(declarations, &changed).await
    }

    /// Serves `declarations` (already holding the change lock) and makes them the live ones.
    async fn install(
        &self,
        declarations: Declarations,
        changed: &Changed,
    ) -> Result<Arc<Live>, AdminError> {
        let routing = &self.inner.routing;
        let spec = declarations
            .spec(SOURCE)
            .map_err(AdminError::InvalidDeclaration)?;
        routing
            .gateway
            .apply(&spec, changed)
            .await
            .map_err(AdminError::InvalidDeclaration)?;
        let view = declarations.view(&spec);
        let live = Arc::new(Live {
            declarations,
            spec,
            view,
        });
        *routing.live.write().unwrap_or_else(PoisonError::into_inner) = Arc::clone(&live);
        self.refresh_resources();
        live.declarations
            .persist(&routing.data)
            .map_err(AdminError::Persist)?;
        Ok(live)
    }

    /// Makes the authorization server's protected resources the served virtual servers, with
    /// the scopes their policies declare now.
    pub(super) fn refresh_resources(&self) {
        let routing = &self.inner.routing;
        let live = routing.live();
        let resources =
            crate::oauth::resources(&live.spec, &routing.face, routing.gateway.access());
        if let Err(error) = self.inner.authz.set_resources(resources) {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "the authorization server kept its previous resources"
            );
        }
    }
}

impl Admin {
    /// Returns the rate-limit rules in force.
    pub(crate) fn rate_limits(&self, caller: &AdminCaller) -> RateLimits {
        let action = Action::read(EventKind::PolicyChanged, "read", "rate_limits", "");
        self.record(caller, &action, None);
        RateLimits {
            rules: self.inner.routing.live().declarations.rate_rules(),
        }
    }

    /// Replaces the rate-limit rules; every call from now on is charged by the new ones (a
    /// bucket keeps its level while its rule keeps its name). Invalid rules change nothing.
    pub(crate) async fn set_rate_limits(
        &self,
        caller: &AdminCaller,
        limits: RateLimits,
    ) -> Result<RateLimits, AdminError> {
        let outcome = self
            .change(|current| Ok(current.with_rate_rules(Value::Array(limits.rules))))
            .await
            .map(|live| RateLimits {
                rules: live.declarations.rate_rules(),
            });
        let action = Action::read(EventKind::PolicyChanged, "update", "rate_limits", "")
            .changing(&["rules"]);
        self.audited(caller, &action, outcome)
    }
}

/// Returns `declaration` with its `name` set to `name` (the path names the object); a
/// declaration naming another object is refused.
fn named(declaration: Value, name: &str) -> Result<Value, AdminError> {
    let Value::Object(mut object) = declaration else {
        return Err(AdminError::InvalidArgument {
            field: "declaration",
            reason: "must be an object".to_owned(),
        });
    };
    match object.get("name").and_then(Value::as_str) {
        Some(given) if given != name => Err(AdminError::InvalidArgument {
            field: "name",
            reason: format!("the declaration names {given}, the path {name}"),
        }),
        _ => {
            object.insert("name".to_owned(), Value::String(name.to_owned()));
            Ok(Value::Object(object))
        }
    }
}
