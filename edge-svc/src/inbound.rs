//! What the gateway reads of a client's request, whichever road it came by.
//!
//! Most requests reach edge's handler through rmcp's server, as a `RequestContext`; plain
//! 2026-07-28 `tools/call` requests take the express lane ([`crate::http`]) and never build one.
//! Records, policy, quotas and credentials read the request through this trait, so both roads
//! decide and record a call the same way.

use rmcp::RoleServer;
use rmcp::model::{ClientCapabilities, Implementation, ProtocolVersion, RequestId};
use rmcp::service::RequestContext;

/// A client's request as edge's checks and records read it.
pub trait Inbound {
    /// The HTTP request it came on (its headers, and the caller the token gate found).
    fn parts(&self) -> Option<&http::request::Parts>;

    /// Its JSON-RPC id.
    fn request_id(&self) -> &RequestId;

    /// The protocol version it speaks (the session's, or the request's own in 2026-07-28).
    fn protocol_version(&self) -> Option<ProtocolVersion>;

    /// The client's name and version, when it said.
    fn client_info(&self) -> Option<Implementation>;

    /// What the client can do (answer elicitations, open URLs, ...), when it said.
    fn client_capabilities(&self) -> Option<ClientCapabilities>;

    /// Says whether the client has given up on the request.
    fn is_cancelled(&self) -> bool;

    /// Says whether the client speaks the stateless 2026-07-28 era, whose results carry a
    /// `resultType` and whose input requests travel back as results.
    fn is_modern(&self) -> bool {
        self.protocol_version()
            .is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
    }
}

impl Inbound for RequestContext<RoleServer> {
    fn parts(&self) -> Option<&http::request::Parts> {
        self.extensions.get::<http::request::Parts>()
    }

    fn request_id(&self) -> &RequestId {
        &self.id
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        RequestContext::protocol_version(self)
    }

    fn client_info(&self) -> Option<Implementation> {
        RequestContext::client_info(self)
    }

    fn client_capabilities(&self) -> Option<ClientCapabilities> {
        RequestContext::client_capabilities(self)
    }

    fn is_cancelled(&self) -> bool {
        self.ct.is_cancelled()
    }
}
