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

/// Renders `error` and its causes as "outer: cause: root cause", for logs and the status page.
///
/// rmcp's transport errors hold their cause without offering it as `source()` and name Rust
/// types in their text (`Transport [rmcp::transport::worker::WorkerTransport<…>] error`), so a
/// downstream refusing connections read "error sending request", its reason only in rmcp's
/// own log line; they are looked through here. A cause whose text its message already ends
/// with (thiserror's `#[error("… {0}")]` over a `#[from]` field) is not repeated.
pub(crate) fn report(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = String::new();
    let mut next = Some(error);
    while let Some(current) = next {
        let (own, cause) = look_through(current);
        if let Some(own) = own.filter(|own| !text.ends_with(own.as_str())) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&own);
        }
        next = cause;
    }
    text
}

/// Returns what `error` says of itself and its cause, reaching into rmcp's wrappers.
fn look_through<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> (
    Option<String>,
    Option<&'a (dyn std::error::Error + 'static)>,
) {
    use rmcp::service::{ClientInitializeError, ServiceError};
    use rmcp::transport::DynamicTransportError;
    use rmcp::transport::streamable_http_client::StreamableHttpError;

    // `Error::Handshake` boxes it, and thiserror offers the box itself as the source.
    if let Some(boxed) = error.downcast_ref::<Box<ClientInitializeError>>() {
        return look_through(&**boxed);
    }
    if let Some(ClientInitializeError::TransportError { error, context }) = error.downcast_ref() {
        return (Some(context.to_string()), Some(&*error.error));
    }
    if let Some(ServiceError::TransportSend(error)) = error.downcast_ref() {
        return (Some("sending failed".to_owned()), Some(&*error.error));
    }
    if let Some(error) = error.downcast_ref::<DynamicTransportError>() {
        return (None, Some(&*error.error));
    }
    if let Some(StreamableHttpError::Client(inner)) =
        error.downcast_ref::<StreamableHttpError<reqwest::Error>>()
    {
        return (None, Some(inner));
    }
    if let Some(StreamableHttpError::Client(inner)) =
        error.downcast_ref::<StreamableHttpError<super::direct::Exchange>>()
    {
        return (None, Some(inner));
    }
    (Some(error.to_string()), error.source())
}

#[cfg(test)]
mod tests {
    use super::report;

    #[derive(Debug, thiserror::Error)]
    enum Outer {
        /// Names its cause in its own text and offers it as `source()` too.
        #[error("reading failed: {0}")]
        Echoing(#[from] std::io::Error),
        /// Names only itself; the cause follows.
        #[error("mcp handshake failed")]
        Plain(#[source] std::io::Error),
    }

    fn refused() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused")
    }

    #[test]
    fn a_report_names_every_cause_once_in_order() {
        assert_eq!(
            report(&Outer::Plain(refused())),
            "mcp handshake failed: connection refused"
        );
        assert_eq!(
            report(&Outer::Echoing(refused())),
            "reading failed: connection refused"
        );
    }
}
