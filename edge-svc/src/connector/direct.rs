//! A direct line to a stateless (2026-07-28) streamable-HTTP downstream: one POST per call.
//!
//! rmcp's client runs every request of a session through one worker task that re-serializes
//! each message to compute its headers; with hundreds of calls a second that worker, its
//! channels and the per-request tasks were most of what edge spent on the connector side. A
//! stateless downstream keeps no session, so a plain `tools/call` can be posted straight from
//! the caller's task over the same pooled, credential-injecting HTTP client. Everything else
//! (the handshake, list changes, server→client traffic, other eras) stays with rmcp.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use futures::StreamExt as _;
use http::{HeaderName, HeaderValue};
use rmcp::model::{
    ClientJsonRpcMessage, ClientRequest, ErrorData, ProtocolVersion, RequestId,
    ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient as _, StreamableHttpError, StreamableHttpPostResponse,
};

use super::inject::InjectingClient;

/// Why a call over a direct line got no answer from the downstream.
pub type LineError = StreamableHttpError<reqwest::Error>;

/// A stateless downstream reachable by plain POSTs, published while its session is ready.
#[derive(Debug)]
pub struct DirectLine {
    name: Arc<str>,
    uri: Arc<str>,
    headers: HashMap<HeaderName, HeaderValue>,
    client: InjectingClient,
    version: ProtocolVersion,
    /// Ids of this line's own requests; negative, so they never meet the ids rmcp's worker
    /// gives the session's other requests (counting up from zero).
    next_id: AtomicI64,
}

impl DirectLine {
    /// Describes the line to connector `name` at `uri`, which negotiated `version`.
    pub(crate) fn new(
        name: Arc<str>,
        uri: &str,
        headers: HashMap<HeaderName, HeaderValue>,
        client: InjectingClient,
        version: ProtocolVersion,
    ) -> Self {
        Self {
            name,
            uri: uri.into(),
            headers,
            client,
            version,
            next_id: AtomicI64::new(-1),
        }
    }

    /// Returns the connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns the protocol version the downstream agreed to, which each request declares.
    pub fn protocol_version(&self) -> &ProtocolVersion {
        &self.version
    }

    /// Posts `request` (method `method`, about `name`) and returns the downstream's answer: its
    /// result or its own JSON-RPC error (`Ok`), or why there was none (`Err`).
    ///
    /// A downstream that streams its answer may send notifications before it; the caller asked
    /// for neither progress nor logs (or the call would not be on this line), so they are
    /// logged and not relayed. A server-to-client request is an error: the 2026-07-28 era asks
    /// for input with an `input_required` result instead.
    pub async fn call(
        &self,
        method: &str,
        name: &str,
        request: ClientRequest,
    ) -> Result<Result<ServerResult, ErrorData>, LineError> {
        let id = RequestId::Number(self.next_id.fetch_sub(1, Ordering::Relaxed));
        let mut headers = self.headers.clone();
        for (header, value) in [
            ("mcp-protocol-version", self.version.as_str()),
            ("mcp-method", method),
            ("mcp-name", name),
        ] {
            let value = HeaderValue::from_str(value).map_err(|_| {
                StreamableHttpError::UnexpectedServerResponse(
                    format!("`{name}` cannot be sent as a header value").into(),
                )
            })?;
            headers.insert(HeaderName::from_static(header), value);
        }
        let message = ClientJsonRpcMessage::request(request, id.clone());
        let response = self
            .client
            .post_message(Arc::clone(&self.uri), message, None, None, headers)
            .await?;
        match response {
            StreamableHttpPostResponse::Json(message, _) => answer_to(message, &id),
            StreamableHttpPostResponse::Sse(mut events, _) => {
                while let Some(event) = events.next().await {
                    let data = event?.data.unwrap_or_default();
                    if data.trim().is_empty() {
                        continue;
                    }
                    let message: ServerJsonRpcMessage = serde_json::from_str(&data)?;
                    if matches!(message, ServerJsonRpcMessage::Notification(_)) {
                        tracing::debug!(connector = %self.name, "a notification the caller did not ask for was not relayed");
                        continue;
                    }
                    return answer_to(message, &id);
                }
                Err(StreamableHttpError::UnexpectedServerResponse(
                    "the response stream ended without an answer".into(),
                ))
            }
            _ => Err(StreamableHttpError::UnexpectedServerResponse(
                "the downstream accepted a request without answering it".into(),
            )),
        }
    }
}

/// Reads `message` as the answer to request `id`; anything else is reported as unexpected.
fn answer_to(
    message: ServerJsonRpcMessage,
    id: &RequestId,
) -> Result<Result<ServerResult, ErrorData>, LineError> {
    match message {
        ServerJsonRpcMessage::Response(response) if &response.id == id => Ok(Ok(response.result)),
        ServerJsonRpcMessage::Error(error) if error.id.as_ref().is_none_or(|of| of == id) => {
            Ok(Err(error.error))
        }
        other => Err(StreamableHttpError::UnexpectedServerResponse(
            format!("{} instead of the answer", describe(&other)).into(),
        )),
    }
}

/// Names a message by kind, never by content.
fn describe(message: &ServerJsonRpcMessage) -> &'static str {
    match message {
        ServerJsonRpcMessage::Notification(_) => "a notification",
        ServerJsonRpcMessage::Request(_) => "a server-to-client request",
        ServerJsonRpcMessage::Response(_) => "another request's result",
        ServerJsonRpcMessage::Error(_) => "another request's error",
    }
}
