//! The one error type of the connector module.

use std::time::Duration;

/// Why a connector could not provide a session or a transport operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Gatehouse is shutting down and the connector no longer connects.
    #[error("connector {name} is shut down")]
    ShutDown {
        /// Connector name.
        name: String,
    },
    /// No session became ready within the connect timeout.
    #[error("connector {name} not ready within {timeout:?}: {}", last_error.as_deref().unwrap_or("still connecting"))]
    ConnectTimeout {
        /// Connector name.
        name: String,
        /// The configured connect timeout.
        timeout: Duration,
        /// The most recent connect or crash error, if any.
        last_error: Option<String>,
    },
    /// The attempt made for this caller could not open a session: the downstream is down.
    #[error("connector {name} is unavailable: {last_error}")]
    Unavailable {
        /// Connector name.
        name: String,
        /// Why the attempt failed.
        last_error: String,
    },
    /// A stdio program crashed repeatedly and is no longer restarted.
    #[error("connector {name} failed: {last_error}")]
    Failed {
        /// Connector name.
        name: String,
        /// The error that ended the last attempt.
        last_error: String,
    },
    /// The program (or the sandbox launcher) could not be started.
    #[error("cannot launch {command}")]
    Launch {
        /// The program that could not be started.
        command: String,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// The program exited before the MCP handshake completed.
    #[error("program ended before the mcp handshake completed ({status})")]
    ExitedEarly {
        /// How the program ended (exit status or signal).
        status: String,
    },
    /// The sandbox launcher binary could not be found.
    #[error(
        "sandbox launcher gatehouse-sandbox not found (set sandbox.launcher or GATEHOUSE_SANDBOX_LAUNCHER)"
    )]
    LauncherNotFound,
    /// A connector working directory could not be prepared.
    #[error("cannot prepare working directory {path}")]
    WorkingDirectory {
        /// The directory.
        path: String,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// A configured HTTP header has an invalid name or value.
    #[error("invalid http header {name}")]
    InvalidHeader {
        /// The header name as configured.
        name: String,
    },
    /// The MCP handshake (`server/discover` or `initialize`) failed.
    #[error("mcp handshake failed")]
    Handshake(#[source] Box<rmcp::service::ClientInitializeError>),
    /// The MCP handshake did not finish within the connect timeout.
    #[error("mcp handshake unfinished after {timeout:?}")]
    HandshakeTimeout {
        /// The connect timeout.
        timeout: Duration,
    },
    /// The HTTP client of a streamable HTTP connector could not be built.
    #[error("cannot build the http client")]
    HttpClient(#[source] reqwest::Error),
    /// The TLS set-up of a direct line (the platform's trust roots) could not be built.
    #[error("cannot set up tls for the direct line")]
    LineTls(#[source] tokio_rustls::rustls::Error),
    /// A connector URL that `http::Uri` does not accept.
    #[error("connector url {url} is not a valid request target")]
    LineUri {
        /// The URL configured.
        url: String,
    },
    /// An HTTP request of the legacy SSE transport failed.
    #[error("sse request to {url} failed")]
    SseRequest {
        /// The URL requested.
        url: String,
        /// The HTTP client error.
        #[source]
        source: reqwest::Error,
    },
    /// A legacy SSE server answered with an unexpected HTTP status.
    #[error("sse request to {url} answered http {status}")]
    SseStatus {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
    },
    /// The SSE stream ended or broke before the server announced its message endpoint.
    #[error("sse stream of {url} announced no message endpoint")]
    SseNoEndpoint {
        /// The SSE URL.
        url: String,
    },
    /// The server announced a message endpoint that is not a URL on the same origin.
    #[error("sse endpoint {endpoint} is not a url on the origin of the sse stream")]
    SseEndpoint {
        /// The announced endpoint.
        endpoint: String,
    },
    /// A message could not be encoded as JSON.
    #[error("cannot encode json-rpc message")]
    Encode(#[source] serde_json::Error),
    /// The connector's credential could not be injected, or the downstream rejected it.
    #[error("connector credential unusable")]
    Credential(#[source] crate::credentials::CredentialError),
}
