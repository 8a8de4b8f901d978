//! The express lane: plain `tools/call` requests answered without rmcp's server.
//!
//! rmcp serves every stateless request by building a service, a task and channels for it and
//! decoding the body through its message enum, and every session's request through the
//! session's worker task and an SSE reply stream; for the one request that dominates a
//! gateway's traffic that machinery cost more than the HTTP hop itself (`bench/floor.sh`). The
//! endpoint's last step before rmcp reads such a request once and hands it to the same
//! [`Proxy`] code that rmcp's road runs (records, policy, quotas, DLP), which posts it over the
//! member's direct line.
//!
//! Only a request the lane can answer exactly as rmcp would is taken. In the 2026-07-28 era:
//! valid `MCP-Protocol-Version`, `Mcp-Method` and `Mcp-Name` headers that match the body, the
//! required `_meta`, neither progress nor logs asked for, no `Mcp-Param-*` headers. In a
//! session (2025-06-18, 2025-11-25): a session this process holds, the version it negotiated
//! in the `MCP-Protocol-Version` header, no `_meta` (so no progress token), a client that
//! declared it can be asked nothing (no sampling, elicitation or roots) and asked for no log
//! messages, so the answer is all that travels back and plain JSON, which the transport
//! allows, loses nothing. Both: a `Host`
//! on the allowed list and no `Origin` to check. Anything else, including every malformed
//! request, continues to rmcp unchanged, which answers it with the spec's error.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use rmcp::model::{
    CallToolRequestParams, CancelledNotificationParam, ClientCapabilities, ErrorCode, ErrorData,
    Implementation, ProtocolVersion, RequestId, RequestMetaObject, ServerJsonRpcMessage,
    ServerResult,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::sessions::{Session, Sessions};
use crate::inbound::Inbound;
use crate::proxy::Proxy;

/// What the lane needs to answer a request of one virtual server.
pub(crate) struct Lane {
    /// Builds the handler of one request, over the virtual server as it is now.
    proxy: Box<dyn Fn() -> Proxy + Send + Sync>,
    /// The `Host` values rmcp accepts, as (lowercase name, port) read once here rather than on
    /// every request; `None` when any host is; the lane takes only requests rmcp would.
    allowed_hosts: Option<Vec<(String, Option<u16>)>>,
    /// The virtual server's sessions, whose plain calls the lane answers too.
    sessions: Arc<Sessions>,
}

/// Whose request the lane has taken, as its headers say.
enum Road {
    /// A 2026-07-28 request: everything about the client is in the request itself.
    Stateless,
    /// A request in a session this process holds, whose client can be asked nothing and
    /// wants no log messages.
    Session(Arc<Session>),
}

impl Lane {
    /// Creates the lane of one virtual server.
    pub(crate) fn new(
        proxy: impl Fn() -> Proxy + Send + Sync + 'static,
        allowed_hosts: Vec<String>,
        sessions: Arc<Sessions>,
    ) -> Self {
        Self {
            proxy: Box::new(proxy),
            allowed_hosts: allowed(&allowed_hosts),
            sessions,
        }
    }

    /// Says whether the request's method and headers let the lane take it, and on which road.
    fn road(&self, method: &Method, headers: &HeaderMap) -> Option<Road> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let plain = method == Method::POST
            && headers.get(header::ORIGIN).is_none()
            && accepts_json_and_sse(headers)
            && header(header::CONTENT_TYPE.as_str()).is_some_and(is_json_media_type)
            && !headers
                .keys()
                .any(|name| name.as_str().starts_with("mcp-param-"))
            && header(header::HOST.as_str()).is_some_and(|host| self.allows_host(host));
        if !plain {
            return None;
        }
        let version = header("mcp-protocol-version");
        let Some(id) = header("mcp-session-id") else {
            let stateless = version == Some(ProtocolVersion::V_2026_07_28.as_str())
                && header("mcp-method") == Some("tools/call");
            return stateless.then_some(Road::Stateless);
        };
        // Standard headers in a session are rmcp's to check against the body.
        if headers.contains_key("mcp-method") || headers.contains_key("mcp-name") {
            return None;
        }
        let session = self.sessions.touch(id)?;
        let handshake = session.handshake()?;
        let plain_session = handshake.asks_nothing()
            && !session.wants_logs()
            && version == Some(handshake.version.as_str());
        plain_session.then_some(Road::Session(session))
    }

    /// Says whether `host` is on the allowed list, compared as rmcp compares it (host name
    /// without case, and the port when the entry names one).
    fn allows_host(&self, host: &str) -> bool {
        let Some(allowed) = &self.allowed_hosts else {
            return true;
        };
        let Some(host) = authority(host) else {
            return false;
        };
        allowed
            .iter()
            .any(|(name, port)| *name == host.0 && port.is_none_or(|port| host.1 == Some(port)))
    }
}

/// Reads the allowed `Host` values as rmcp compares them; `None` (any host) when there are none.
fn allowed(hosts: &[impl AsRef<str>]) -> Option<Vec<(String, Option<u16>)>> {
    (!hosts.is_empty()).then(|| {
        hosts
            .iter()
            .filter_map(|allowed| authority(allowed.as_ref().trim()))
            .collect()
    })
}

/// Splits a `Host`-style value into its lowercase host name and port.
fn authority(value: &str) -> Option<(String, Option<u16>)> {
    let authority = http::uri::Authority::try_from(value).ok()?;
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    Some((name, authority.port_u16()))
}

fn accepts_json_and_sse(headers: &HeaderMap) -> bool {
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        for media in value.to_str().unwrap_or_default().split(',') {
            let essence = media.split(';').next().unwrap_or_default().trim();
            json |= essence.eq_ignore_ascii_case("application/json");
            sse |= essence.eq_ignore_ascii_case("text/event-stream");
        }
    }
    json && sse
}

fn is_json_media_type(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// A `tools/call` request as the lane reads it.
#[derive(Debug, Deserialize)]
struct Envelope {
    jsonrpc: String,
    id: RequestId,
    method: String,
    params: CallToolRequestParams,
}

/// Reads `body` as a plain 2026-07-28 `tools/call` whose `Mcp-Name` header is `name`, or says
/// it is not one (`None`: rmcp's road answers it).
fn plain_call(
    body: &[u8],
    name: &str,
) -> Option<(RequestId, CallToolRequestParams, RequestMetaObject)> {
    let envelope: Envelope = serde_json::from_slice(body).ok()?;
    let meta = envelope.params.meta.clone()?;
    let plain = envelope.jsonrpc == "2.0"
        && envelope.method == "tools/call"
        && envelope.params.name == name
        && meta.protocol_version() == Some(ProtocolVersion::V_2026_07_28)
        // Required: the protocol version and the client's capabilities.
        && meta
            .missing_required_keys(&ProtocolVersion::V_2026_07_28)
            .is_empty()
        && meta.get_progress_token().is_none()
        && !meta.0.contains_key("io.modelcontextprotocol/logLevel");
    plain.then_some((envelope.id, envelope.params, meta))
}

/// A session's request as the lane reads it first: the members that say what it is.
#[derive(Debug, Deserialize)]
struct SessionEnvelope {
    jsonrpc: String,
    id: Option<RequestId>,
    method: String,
    params: Option<Box<RawValue>>,
}

/// A session's request the lane answers.
#[derive(Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "read and taken apart at once; boxing the call would cost an allocation per call"
)]
enum SessionRequest {
    /// A plain `tools/call`.
    Call(RequestId, CallToolRequestParams),
    /// The client gives up on a request, perhaps one on the lane.
    Cancel(RequestId),
}

/// Reads `body` as a session's plain `tools/call` or a cancellation, or says it is neither
/// (`None`: rmcp's road answers it).
fn session_request(body: &[u8]) -> Option<SessionRequest> {
    let envelope: SessionEnvelope = serde_json::from_slice(body).ok()?;
    if envelope.jsonrpc != "2.0" {
        return None;
    }
    let params = envelope.params?;
    match (envelope.method.as_str(), envelope.id) {
        ("tools/call", Some(id)) => {
            let params: CallToolRequestParams = serde_json::from_str(params.get()).ok()?;
            // `_meta` may carry a progress token or a per-request version: rmcp's to handle.
            let plain = params.meta.is_none()
                && params.input_responses.is_none()
                && params.request_state.is_none();
            plain.then_some(SessionRequest::Call(id, params))
        }
        ("notifications/cancelled", None) => {
            let params: CancelledNotificationParam = serde_json::from_str(params.get()).ok()?;
            params.request_id.map(SessionRequest::Cancel)
        }
        _ => None,
    }
}

/// Who sent a request on the lane, as its records and its downstream call need to know.
enum Client {
    /// A 2026-07-28 client, described by the request's `_meta`.
    Stateless(RequestMetaObject),
    /// A session's client, described by its handshake.
    Session(Arc<Session>),
}

/// A request on the lane, as edge's checks and records read it.
struct Express {
    parts: http::request::Parts,
    id: RequestId,
    client: Client,
    cancelled: CancellationToken,
}

impl Inbound for Express {
    fn parts(&self) -> Option<&http::request::Parts> {
        Some(&self.parts)
    }

    fn request_id(&self) -> &RequestId {
        &self.id
    }

    fn protocol_version(&self) -> Option<ProtocolVersion> {
        match &self.client {
            Client::Stateless(_) => Some(ProtocolVersion::V_2026_07_28),
            Client::Session(session) => session
                .handshake()
                .map(|handshake| handshake.version.clone()),
        }
    }

    fn client_info(&self) -> Option<Implementation> {
        match &self.client {
            Client::Stateless(meta) => meta.client_info(),
            Client::Session(session) => session
                .handshake()
                .map(|handshake| handshake.client_info.clone()),
        }
    }

    fn client_capabilities(&self) -> Option<ClientCapabilities> {
        match &self.client {
            Client::Stateless(meta) => meta.client_capabilities(),
            Client::Session(session) => session
                .handshake()
                .map(|handshake| handshake.capabilities.clone()),
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.is_cancelled()
    }
}

/// Answers a plain `tools/call` (or a session's cancellation of one) on the lane; hands every
/// other request on.
pub(crate) async fn serve(
    lane: &Lane,
    request: Request<Body>,
    next: impl AsyncFnOnce(Request<Body>) -> Response,
) -> Response {
    let Some(road) = lane.road(request.method(), request.headers()) else {
        return next(request).await;
    };
    let (parts, body) = request.into_parts();
    // The body was read whole and checked by the step before this one; reading it again
    // takes the buffer it left.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let taken = match road {
        Road::Stateless => {
            let name = parts
                .headers
                .get("mcp-name")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default();
            plain_call(&bytes, name).map(|(id, params, meta)| (id, params, Client::Stateless(meta)))
        }
        Road::Session(session) => match session_request(&bytes) {
            Some(SessionRequest::Call(id, params)) => Some((id, params, Client::Session(session))),
            // Accepted as rmcp accepts a notification; rmcp never saw the request.
            Some(SessionRequest::Cancel(id)) if session.cancel(&id) => {
                return StatusCode::ACCEPTED.into_response();
            }
            Some(SessionRequest::Cancel(_)) | None => None,
        },
    };
    let Some((id, params, client)) = taken else {
        return next(Request::from_parts(parts, Body::from(bytes))).await;
    };
    let proxy = (lane.proxy)();
    let cancelled = CancellationToken::new();
    // A session's client cancels with a notification, or by ending the session.
    let registered = match &client {
        Client::Session(session) => Some(session.begin_call(id.clone(), cancelled.clone())),
        Client::Stateless(_) => None,
    };
    // The call runs on its own task so that a client hanging up cancels it (and its record
    // says so) instead of dropping it half-recorded.
    let hang_up = cancelled.clone().drop_guard();
    let call = tokio::spawn(async move {
        let express = Express {
            parts,
            id,
            client,
            cancelled,
        };
        let answer = proxy
            .call_tool_direct(params, &express, &express.cancelled)
            .await;
        drop(registered);
        let modern = express.is_modern();
        match answer {
            Ok(answer) => Ok(reply(express.id, answer.map(ServerResult::from), modern)),
            Err(_) => Err(express.parts),
        }
    });
    let outcome = call.await;
    hang_up.disarm();
    match outcome {
        Ok(Ok(response)) => response,
        Ok(Err(parts)) => next(Request::from_parts(parts, Body::from(bytes))).await,
        Err(failed) => {
            tracing::error!(error = %failed, "a tools/call on the express lane failed");
            let error = ErrorData::internal_error("the gateway failed to answer this call", None);
            encode(StatusCode::OK, &ServerJsonRpcMessage::error(error, None))
        }
    }
}

/// Writes a JSON-RPC answer with the HTTP status rmcp gives it: in the 2026-07-28 era by the
/// error's code, in a session always 200 (its clients read errors from the body only).
fn reply(id: RequestId, answer: Result<ServerResult, ErrorData>, modern: bool) -> Response {
    let (status, message) = match answer {
        Ok(result) => (StatusCode::OK, ServerJsonRpcMessage::response(result, id)),
        Err(error) if modern => (
            status_of(error.code),
            ServerJsonRpcMessage::error(error, Some(id)),
        ),
        Err(error) => (StatusCode::OK, ServerJsonRpcMessage::error(error, Some(id))),
    };
    encode(status, &message)
}

fn encode(status: StatusCode, message: &ServerJsonRpcMessage) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            Bytes::from(body),
        )
            .into_response(),
        Err(error) => {
            tracing::error!(%error, "could not encode a tools/call answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// The HTTP status of a JSON-RPC error in the 2026-07-28 era: protocol-level refusals are 400,
/// an unknown method 404, and everything a handler answers is 200 with the error in the body.
fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::UNSUPPORTED_PROTOCOL_VERSION
        | ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
        | ErrorCode::HEADER_MISMATCH => StatusCode::BAD_REQUEST,
        ErrorCode::METHOD_NOT_FOUND => StatusCode::NOT_FOUND,
        _ => StatusCode::OK,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CALL: &str = r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}}}"#;

    const SESSION: &str = "0f3c";

    fn lane(allowed_hosts: &[&str]) -> Lane {
        lane_holding(allowed_hosts, ClientCapabilities::default())
    }

    /// A lane whose virtual server holds the 2025-11-25 session [`SESSION`] of a client that
    /// declared `capabilities`.
    fn lane_holding(allowed_hosts: &[&str], capabilities: ClientCapabilities) -> Lane {
        let handshake = super::super::sessions::Handshake {
            version: ProtocolVersion::V_2025_11_25,
            client_info: Implementation::new("t", "1"),
            capabilities,
        };
        Lane {
            proxy: Box::new(|| unreachable!("header checks build no handler")),
            allowed_hosts: allowed(allowed_hosts),
            sessions: Sessions::holding(SESSION, handshake),
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, http::HeaderValue::from_static(value));
        }
        headers
    }

    /// `pairs` with the header `name` set to `value`, or removed when there is none.
    fn varied(
        mut pairs: Vec<(&'static str, &'static str)>,
        name: &'static str,
        value: Option<&'static str>,
    ) -> HeaderMap {
        pairs.retain(|(existing, _)| *existing != name);
        pairs.extend(value.map(|value| (name, value)));
        headers(&pairs)
    }

    fn plain_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "127.0.0.1:8080"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "echo"),
        ]
    }

    #[test]
    fn a_plain_2026_07_28_tools_call_takes_the_lane() {
        let lane = lane(&["127.0.0.1", "localhost"]);
        assert!(matches!(
            lane.road(&Method::POST, &headers(&plain_headers())),
            Some(Road::Stateless)
        ));
        let (id, params, _) = plain_call(CALL.as_bytes(), "echo").expect("a plain call");
        assert_eq!(id, RequestId::Number(7));
        assert_eq!(params.name, "echo");
    }

    #[test]
    fn a_request_whose_headers_rmcp_must_judge_continues_to_rmcp() {
        let lane = lane(&["127.0.0.1"]);
        // Each case sets one header (or, with no value, removes it).
        let cases: [(&str, &'static str, Option<&'static str>); 9] = [
            ("legacy era", "mcp-protocol-version", Some("2025-11-25")),
            ("another method", "mcp-method", Some("tools/list")),
            ("no method header", "mcp-method", None),
            ("a session", "mcp-session-id", Some("abc")),
            ("an Origin to check", "origin", Some("http://127.0.0.1")),
            ("promoted arguments", "mcp-param-region", Some("eu")),
            ("a host not allowed", "host", Some("evil.example:8080")),
            ("JSON only accepted", "accept", Some("application/json")),
            ("not JSON", "content-type", Some("text/plain")),
        ];
        for (case, name, value) in cases {
            let varied = varied(plain_headers(), name, value);
            assert!(lane.road(&Method::POST, &varied).is_none(), "{case}");
        }
        assert!(
            lane.road(&Method::GET, &headers(&plain_headers()))
                .is_none(),
            "a GET stream"
        );
    }

    fn session_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "127.0.0.1:8080"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-session-id", SESSION),
        ]
    }

    #[test]
    fn a_call_in_a_held_session_whose_client_can_be_asked_nothing_takes_the_lane() {
        let lane = lane(&["127.0.0.1"]);
        assert!(matches!(
            lane.road(&Method::POST, &headers(&session_headers())),
            Some(Road::Session(_))
        ));
        let body = r#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}"#;
        let Some(SessionRequest::Call(id, params)) = session_request(body.as_bytes()) else {
            panic!("a plain call");
        };
        assert_eq!(id, RequestId::String("a".into()));
        assert_eq!(params.name, "echo");
        let cancel = r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"a","reason":"no"}}"#;
        assert!(matches!(
            session_request(cancel.as_bytes()),
            Some(SessionRequest::Cancel(RequestId::String(id))) if &*id == "a"
        ));
    }

    #[test]
    fn a_session_request_rmcp_must_judge_continues_to_rmcp() {
        let lane = lane(&["127.0.0.1"]);
        let cases: [(&str, &'static str, Option<&'static str>); 6] = [
            (
                "a session this process does not hold",
                "mcp-session-id",
                Some("elsewhere"),
            ),
            (
                "another version than negotiated",
                "mcp-protocol-version",
                Some("2025-06-18"),
            ),
            ("no version header", "mcp-protocol-version", None),
            ("a method header to check", "mcp-method", Some("tools/call")),
            ("a name header to check", "mcp-name", Some("echo")),
            ("an Origin to check", "origin", Some("http://127.0.0.1")),
        ];
        for (case, name, value) in cases {
            let varied = varied(session_headers(), name, value);
            assert!(lane.road(&Method::POST, &varied).is_none(), "{case}");
        }
        let asks = |capabilities: ClientCapabilities| {
            lane_holding(&["127.0.0.1"], capabilities)
                .road(&Method::POST, &headers(&session_headers()))
                .is_none()
        };
        let mut elicits = ClientCapabilities::default();
        elicits.elicitation = Some(Default::default());
        let mut samples = ClientCapabilities::default();
        samples.sampling = Some(Default::default());
        let mut roots = ClientCapabilities::default();
        roots.roots = Some(Default::default());
        assert!(asks(elicits), "a client that answers elicitations");
        assert!(asks(samples), "a client that samples");
        assert!(asks(roots), "a client with roots");
    }

    #[test]
    fn a_session_body_rmcp_must_judge_continues_to_rmcp() {
        let cases = [
            (
                "progress asked for",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"progressToken":"p"}}}"#,
            ),
            (
                "another method",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}"#,
            ),
            (
                "a notification named tools/call",
                r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo"}}"#,
            ),
            (
                "no params",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#,
            ),
            (
                "not JSON-RPC 2.0",
                r#"{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#,
            ),
            (
                "a cancellation without a request id",
                r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}"#,
            ),
            ("a response", r#"{"jsonrpc":"2.0","id":1,"result":{}}"#),
            ("not JSON", "tools/call"),
        ];
        for (case, body) in cases {
            assert!(session_request(body.as_bytes()).is_none(), "{case}");
        }
    }

    #[test]
    fn hosts_compare_as_rmcp_compares_them() {
        let listed = lane(&["LocalHost", "example.com:8443"]);
        assert!(listed.allows_host("localhost:3000"));
        assert!(listed.allows_host("example.com:8443"));
        assert!(!listed.allows_host("example.com:9000"));
        assert!(!listed.allows_host("example.org"));
        assert!(
            lane(&[]).allows_host("any.host"),
            "an empty list allows any host"
        );
    }

    #[test]
    fn a_body_rmcp_must_judge_continues_to_rmcp() {
        let meta = r#""io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}"#;
        let cases = [
            ("progress asked for", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","_meta":{{{meta},"progressToken":"p"}}}}}}"#)),
            ("logs asked for", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"echo","_meta":{{{meta},"io.modelcontextprotocol/logLevel":"info"}}}}}}"#)),
            ("a name that is not the header's", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"other","_meta":{{{meta}}}}}}}"#)),
            ("no capabilities", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#.to_owned()),
            ("another version in _meta", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25","io.modelcontextprotocol/clientCapabilities":{}}}}"#.to_owned()),
            ("no _meta", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}"#.to_owned()),
            ("not JSON-RPC 2.0", format!(r#"{{"jsonrpc":"1.0","id":1,"method":"tools/call","params":{{"name":"echo","_meta":{{{meta}}}}}}}"#)),
            ("a notification", format!(r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"echo","_meta":{{{meta}}}}}}}"#)),
            ("another method in the body", format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"name":"echo","_meta":{{{meta}}}}}}}"#)),
        ];
        for (case, body) in cases {
            assert!(plain_call(body.as_bytes(), "echo").is_none(), "{case}");
        }
    }

    #[test]
    fn errors_get_the_http_status_rmcp_gives_them() {
        assert_eq!(
            status_of(ErrorCode::HEADER_MISMATCH),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            status_of(ErrorCode::METHOD_NOT_FOUND),
            StatusCode::NOT_FOUND
        );
        assert_eq!(status_of(ErrorCode::INVALID_PARAMS), StatusCode::OK);
        assert_eq!(status_of(ErrorCode::INTERNAL_ERROR), StatusCode::OK);
    }
}
