//! Downstream MCP servers that edge-svc reaches as a client.
//!
//! A [`Connector`] supervises one downstream: it keeps an rmcp client session open over
//! streamable HTTP (either era), legacy SSE, or a sandboxed stdio child process, replaces a
//! dead session on demand, restarts a crashed child with backoff, and relays whatever the
//! downstream sends during a call back to the caller through a [`Relay`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use ::http::{HeaderName, HeaderValue};
use rmcp::{
    ErrorData,
    model::{ClientResult, ProtocolVersion, RequestId, ServerNotification, ServerRequest},
};
use tokio_util::sync::CancellationToken;

mod config;
mod direct;
mod error;
mod handler;
mod http;
mod inject;
mod origin;
pub mod sandbox;
mod session;
mod sse;
mod status;
mod stdio;
mod supervisor;

pub use config::{
    Era, HttpConfig, Limits, RestartPolicy, SandboxConfig, SseConfig, StdioConfig, Transport,
    redact,
};
pub use direct::{DirectLine, LineError};
pub use error::Error;
pub(crate) use error::report;
pub(crate) use origin::RelayTicket;
pub use status::{ConnectorState, ConnectorStatus, LandlockState};

/// Routes what a downstream sends during a call back to the upstream caller that made it.
///
/// `origin` is the id of Gatehouse's own outbound request the message belongs to, when known:
/// for server→client requests on streamable HTTP it is the request whose response stream
/// carried them; for progress notifications on every transport it is the request that
/// issued the progress token. It is `None` otherwise (stdio requests, the GET stream,
/// logging and list-changed notifications).
#[async_trait::async_trait]
pub trait Relay: Send + Sync + std::fmt::Debug + 'static {
    /// Answers a server→client request (sampling, elicitation, roots); pings are answered
    /// by the connector itself and never reach the relay.
    async fn request(
        &self,
        connector: &str,
        origin: Option<RequestId>,
        request: ServerRequest,
    ) -> Result<ClientResult, ErrorData>;

    /// Delivers a notification (progress, logging, list_changed, resource updated, cancelled).
    async fn notify(
        &self,
        connector: &str,
        origin: Option<RequestId>,
        notification: ServerNotification,
    );

    /// Hears that a connector opened a session (its first, or one after a restart). The gateway
    /// lists a member it had left out of a catalogue again; a client of the gateway has nothing
    /// to do.
    async fn session_opened(&self, _connector: &str) {}
}

/// Supplies the credential of one downstream session: headers for every HTTP request (streamable
/// HTTP and legacy SSE), or the environment of a stdio program at each launch.
#[async_trait::async_trait]
pub trait CredentialSource: Send + Sync + std::fmt::Debug + 'static {
    /// Returns the headers to add, as current at the moment of the request.
    async fn headers(
        &self,
    ) -> Result<HashMap<HeaderName, HeaderValue>, crate::credentials::CredentialError>;

    /// Returns the environment variables of a stdio program launched now.
    async fn environment(
        &self,
    ) -> Result<BTreeMap<String, crate::credentials::Secret>, crate::credentials::CredentialError>;

    /// Forgets material the downstream just rejected (HTTP 401), so that the next
    /// [`headers`](Self::headers) asks vault-svc again instead of reusing a cached copy.
    async fn rejected(&self);
}

/// A supervised downstream MCP server; cheap to clone.
#[derive(Debug, Clone)]
pub struct Connector {
    inner: Arc<supervisor::Supervisor>,
}

impl Connector {
    /// Starts supervising at once and returns; the first session connects in the background.
    ///
    /// Must be called inside a Tokio runtime. Cancelling `shutdown` closes the session and,
    /// for stdio, terminates the whole process group and reaps it.
    pub fn spawn(
        name: String,
        transport: Transport,
        relay: Arc<dyn Relay>,
        shutdown: CancellationToken,
    ) -> Self {
        Self::spawn_with_credential(name, transport, None, relay, shutdown)
    }

    /// Like [`Connector::spawn`], injecting `credential` into every HTTP request, or into the
    /// environment of every launch of a stdio program.
    pub fn spawn_with_credential(
        name: String,
        transport: Transport,
        credential: Option<Arc<dyn CredentialSource>>,
        relay: Arc<dyn Relay>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            inner: supervisor::Supervisor::spawn(name, transport, credential, relay, shutdown),
        }
    }

    /// Returns a live client session, (re)connecting or restarting if needed, waiting at most
    /// the connect timeout.
    pub async fn peer(&self) -> Result<rmcp::Peer<rmcp::RoleClient>, Error> {
        self.inner.peer().await
    }

    /// Waits, however long it takes, for a live session without hurrying a reconnection: for
    /// background work, which must not keep a downstream that is down from backing off.
    pub(crate) async fn live(&self) -> Result<rmcp::Peer<rmcp::RoleClient>, Error> {
        self.inner.live().await
    }

    /// Says whether a session is live now, without waiting or connecting.
    pub(crate) fn is_ready(&self) -> bool {
        self.inner.is_ready()
    }

    /// Asks for the next reconnection attempt soon (HTTP and SSE), without waiting for it.
    pub(crate) fn hurry(&self) {
        self.inner.hurry();
    }

    /// Returns a direct line to the downstream for plain calls, when its live session is
    /// stateless streamable HTTP (2026-07-28); `None` means use [`Connector::peer`].
    pub fn direct(&self) -> Option<Arc<DirectLine>> {
        self.inner.direct()
    }

    /// Returns the protocol version the current session negotiated (None before the first).
    pub fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.inner.protocol_version()
    }

    /// Returns health for administrators: state, restarts, last error, stdio stderr tail.
    pub fn status(&self) -> ConnectorStatus {
        self.inner.status()
    }

    /// Returns the connector's configured name.
    pub fn name(&self) -> &str {
        self.inner.name()
    }

    /// Waits until supervision has ended after shutdown: the session is closed and any child
    /// process group is killed and reaped.
    pub async fn stopped(&self) {
        self.inner.stopped().await;
    }
}
