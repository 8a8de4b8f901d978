//! The express lane: plain `tools/call` requests and listings answered without rmcp's server.
//!
//! rmcp serves every stateless request by building a service, a task and channels for it and
//! decoding the body through its message enum, and every session's request through the
//! session's worker task and an SSE reply stream; for the one request that dominates a
//! gateway's traffic that machinery cost more than the HTTP hop itself (`bench/floor.sh`). The
//! endpoint's last step before rmcp reads such a request once and hands it to the same
//! [`Proxy`] code that rmcp's road runs (records, policy, quotas, DLP), which posts it over the
//! member's direct line. A plain listing (`tools/list`, `prompts/list`, `resources/list`,
//! `resources/templates/list`: what clients send before their calls) is answered here from the
//! same catalogues and policy as on rmcp's road.
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
//!
//! The lane also opens sessions: it answers a plain `initialize` (no `_meta`, a version this
//! server speaks) as rmcp would, bytes and all, and the session rests without rmcp's worker
//! (see [`Sessions`]); the client's `notifications/initialized` to a resting session is
//! accepted here too, a session's plain listings (what clients send next) answered, and its
//! GET stream served ([`listen`]). The first request only rmcp answers wakes the session.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, StatusCode, header};
use rmcp::ServerHandler as _;
use rmcp::model::{
    CallToolRequestParams, CancelledNotificationParam, ClientCapabilities, ErrorCode, ErrorData,
    Implementation, InitializeRequestParams, InitializeResult, PaginatedRequestParams,
    ProtocolVersion, RequestId, RequestMetaObject, ServerJsonRpcMessage, ServerResult,
};
use rmcp::transport::common::server_side_http::SessionId;
use rmcp::transport::streamable_http_server::StreamableHttpServerConfig;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio_util::sync::CancellationToken;

use super::sessions::{Handshake, Session, Sessions};
use crate::inbound::Inbound;
use crate::proxy::{Catalogue, Proxy};

mod detach;
mod listen;

/// What the lane needs to answer a request of one virtual server.
pub(crate) struct Lane {
    /// Builds the handler of one request, over the virtual server as it is now.
    proxy: Box<dyn Fn() -> Proxy + Send + Sync>,
    /// The `Host` values rmcp accepts, as (lowercase name, port) read once here rather than on
    /// every request; `None` when any host is; the lane takes only requests rmcp would.
    allowed_hosts: Option<Vec<(String, Option<u16>)>>,
    /// The virtual server's sessions, whose plain calls the lane answers too.
    sessions: Arc<Sessions>,
    /// The reconnection delay rmcp announces at the start of each SSE reply.
    sse_retry: Option<Duration>,
    /// The longest silence on a GET stream before rmcp sends a keep-alive comment.
    keep_alive: Option<Duration>,
    /// Cancelled when the virtual server's sessions end, which ends their GET streams.
    ended: CancellationToken,
}

/// Whose request the lane has taken, as its headers say.
enum Road {
    /// A 2026-07-28 request: everything about the client is in the request itself.
    Stateless,
    /// A request in a session this process holds, in the version the session negotiated.
    Session(Arc<Session>),
    /// A request without a session, which only an `initialize` may be.
    Initialize,
}

impl Lane {
    /// Creates the lane of one virtual server.
    pub(crate) fn new(
        proxy: impl Fn() -> Proxy + Send + Sync + 'static,
        allowed_hosts: Vec<String>,
        sessions: Arc<Sessions>,
        streams: &StreamableHttpServerConfig,
    ) -> Self {
        Self {
            proxy: Box::new(proxy),
            allowed_hosts: allowed(&allowed_hosts),
            sessions,
            sse_retry: streams.sse_retry,
            keep_alive: streams.sse_keep_alive,
            ended: streams.cancellation_token.clone(),
        }
    }

    /// Says whether the lane serves this GET, and for which session: a resting session's
    /// stream asked for anew (no `Last-Event-ID` to resume from, which is rmcp's), in the
    /// version the session negotiated, while the lane serves no other stream of it.
    fn listener(&self, headers: &HeaderMap) -> Option<(SessionId, Arc<Session>)> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
        let plain = headers.get(header::ORIGIN).is_none()
            && accepted(headers).1
            && !headers.contains_key("last-event-id")
            && header(header::HOST.as_str()).is_some_and(|host| self.allows_host(host));
        if !plain {
            return None;
        }
        let id = header("mcp-session-id")?;
        let session = self.sessions.touch(id)?;
        let negotiated =
            header("mcp-protocol-version") == Some(session.handshake()?.version.as_str());
        // Marked last: only a stream the lane goes on to serve counts.
        (negotiated && !session.is_awake() && session.start_listening())
            .then(|| (id.into(), session))
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
        let standard_headers =
            headers.contains_key("mcp-method") || headers.contains_key("mcp-name");
        let Some(id) = header("mcp-session-id") else {
            if version == Some(ProtocolVersion::V_2026_07_28.as_str()) {
                let stateless = header("mcp-method").is_some_and(|method| {
                    method == "tools/call" || Catalogue::listed_by(method).is_some()
                });
                return stateless.then_some(Road::Stateless);
            }
            // Standard headers on a handshake are rmcp's to check against the body.
            return (!standard_headers).then_some(Road::Initialize);
        };
        // Standard headers in a session are rmcp's to check against the body.
        if standard_headers {
            return None;
        }
        let session = self.sessions.touch(id)?;
        let negotiated = version == Some(session.handshake()?.version.as_str());
        // An awake session whose calls keep to rmcp's road has nothing for the lane: its body
        // is not read twice.
        let lane_work = session.takes_calls() || !session.is_awake();
        (negotiated && lane_work).then_some(Road::Session(session))
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
    accepted(headers) == (true, true)
}

/// Says whether the `Accept` headers name JSON and the event stream, as rmcp reads them.
fn accepted(headers: &HeaderMap) -> (bool, bool) {
    let (mut json, mut sse) = (false, false);
    for value in headers.get_all(header::ACCEPT) {
        for media in value.to_str().unwrap_or_default().split(',') {
            let essence = media.split(';').next().unwrap_or_default().trim();
            json |= essence.eq_ignore_ascii_case("application/json");
            sse |= essence.eq_ignore_ascii_case("text/event-stream");
        }
    }
    (json, sse)
}

fn is_json_media_type(value: &str) -> bool {
    value
        .split(';')
        .next()
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// A request (`tools/call`, a listing, `initialize`) as the lane reads it, its `params` as `P`.
#[derive(Debug, Deserialize)]
struct Envelope<P> {
    jsonrpc: String,
    id: RequestId,
    method: String,
    params: P,
}

/// Reads `body` as a plain 2026-07-28 `tools/call` whose `Mcp-Name` header is `name`, or says
/// it is not one (`None`: rmcp's road answers it).
fn plain_call(
    body: &[u8],
    name: &str,
) -> Option<(RequestId, CallToolRequestParams, RequestMetaObject)> {
    let envelope: Envelope<CallToolRequestParams> = serde_json::from_slice(body).ok()?;
    let meta = envelope.params.meta.clone()?;
    let plain = envelope.jsonrpc == "2.0"
        && envelope.method == "tools/call"
        && envelope.params.name == name
        && is_plain_meta(&meta);
    plain.then_some((envelope.id, envelope.params, meta))
}

/// Says whether a 2026-07-28 request's `_meta` leaves the lane nothing to do but answer: this
/// version, what it requires (the protocol version and the client's capabilities), and neither
/// progress nor log messages asked for.
fn is_plain_meta(meta: &RequestMetaObject) -> bool {
    meta.protocol_version() == Some(ProtocolVersion::V_2026_07_28)
        && meta
            .missing_required_keys(&ProtocolVersion::V_2026_07_28)
            .is_empty()
        && meta.get_progress_token().is_none()
        && !meta.0.contains_key("io.modelcontextprotocol/logLevel")
}

/// Reads `body` as a plain 2026-07-28 listing whose `Mcp-Method` header is `method`, or says it
/// is not one (`None`: rmcp's road answers it). Its cursor is not read: rmcp's road lists every
/// item at once too.
fn plain_listing(body: &[u8], method: &str) -> Option<(RequestId, RequestMetaObject)> {
    let envelope: Envelope<PaginatedRequestParams> = serde_json::from_slice(body).ok()?;
    let meta = envelope.params.meta?;
    let plain = envelope.jsonrpc == "2.0" && envelope.method == method && is_plain_meta(&meta);
    plain.then_some((envelope.id, meta))
}

/// A session's request as the lane reads it first: the members that say what it is.
#[derive(Debug, Deserialize)]
struct SessionEnvelope {
    jsonrpc: String,
    id: Option<RequestId>,
    method: String,
    params: Option<Box<RawValue>>,
}

/// Reads `body` as a plain `initialize` whose `MCP-Protocol-Version` header, if any, is
/// `header`, or says it is not one (`None`: rmcp's road answers it).
fn plain_initialize(
    body: &[u8],
    header: Option<&str>,
) -> Option<(RequestId, InitializeRequestParams)> {
    let envelope: Envelope<InitializeRequestParams> = serde_json::from_slice(body).ok()?;
    let params = envelope.params;
    // `_meta` may carry a progress token or a per-request version: rmcp's to handle.
    let plain = envelope.jsonrpc == "2.0"
        && envelope.method == "initialize"
        && params.meta.is_none()
        && header.is_none_or(|header| header == params.protocol_version.as_str());
    plain.then_some((envelope.id, params))
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
    /// A plain listing of a catalogue, which never asks the client anything.
    List(Catalogue, RequestId),
    /// The client gives up on a request, perhaps one on the lane.
    Cancel(RequestId),
    /// The client's `notifications/initialized`.
    Initialized,
}

/// Reads `body` as a session's plain `tools/call` or a cancellation, or says it is neither
/// (`None`: rmcp's road answers it).
fn session_request(body: &[u8]) -> Option<SessionRequest> {
    let envelope: SessionEnvelope = serde_json::from_slice(body).ok()?;
    if envelope.jsonrpc != "2.0" {
        return None;
    }
    let params = envelope.params;
    match (envelope.method.as_str(), envelope.id) {
        ("notifications/initialized", None) => {
            let empty = params.is_none_or(|params| params.get().trim() == "{}");
            empty.then_some(SessionRequest::Initialized)
        }
        ("tools/call", Some(id)) => {
            let params: CallToolRequestParams = serde_json::from_str(params?.get()).ok()?;
            // `_meta` may carry a progress token or a per-request version: rmcp's to handle.
            let plain = params.meta.is_none()
                && params.input_responses.is_none()
                && params.request_state.is_none();
            plain.then_some(SessionRequest::Call(id, params))
        }
        (method, Some(id)) if let Some(catalogue) = Catalogue::listed_by(method) => {
            // rmcp's road lists every item at once whatever the cursor says; `_meta` may carry
            // a progress token or a per-request version, which are rmcp's to handle.
            let plain = match params {
                None => true,
                Some(params) => serde_json::from_str::<PaginatedRequestParams>(params.get())
                    .is_ok_and(|params| params.meta.is_none()),
            };
            plain.then_some(SessionRequest::List(catalogue, id))
        }
        ("notifications/cancelled", None) => {
            let params: CancelledNotificationParam = serde_json::from_str(params?.get()).ok()?;
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
                .map(|handshake| handshake.request.client_info.clone()),
        }
    }

    fn client_capabilities(&self) -> Option<ClientCapabilities> {
        match &self.client {
            Client::Stateless(meta) => meta.client_capabilities(),
            Client::Session(session) => session
                .handshake()
                .map(|handshake| handshake.request.capabilities.clone()),
        }
    }

    fn is_cancelled(&self) -> bool {
        self.cancelled.is_cancelled()
    }
}

/// Answers a plain `tools/call` (or a session's cancellation of one), a plain listing, or a
/// resting session's `notifications/initialized` on the lane; hands every other request on.
pub(crate) async fn serve(
    lane: &Lane,
    request: Request<Body>,
    next: impl AsyncFnOnce(Request<Body>) -> Response,
) -> Response {
    if request.method() == Method::GET
        && let Some((id, session)) = lane.listener(request.headers())
    {
        return listen::open(lane, id, session);
    }
    let Some(road) = lane.road(request.method(), request.headers()) else {
        return next(request).await;
    };
    let (mut parts, body) = request.into_parts();
    // The body was read whole and checked by the step before this one; reading it again
    // takes the buffer it left.
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let taken = match road {
        Road::Stateless => {
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .and_then(|value| value.to_str().ok())
            };
            let name = header("mcp-name");
            let method = header("mcp-method").unwrap_or_default();
            if let Some(catalogue) = Catalogue::listed_by(method) {
                // A listing names nothing; an `Mcp-Name` on one is rmcp's to refuse.
                if let Some((id, meta)) = plain_listing(&bytes, method).filter(|_| name.is_none()) {
                    let client = Client::Stateless(meta);
                    return Box::pin(list(lane, parts, id, client, catalogue)).await;
                }
                None
            } else {
                plain_call(&bytes, name.unwrap_or_default())
                    .map(|(id, params, meta)| (id, params, Client::Stateless(meta)))
            }
        }
        Road::Session(session) => match session_request(&bytes) {
            Some(SessionRequest::Call(id, params)) if session.takes_calls() => {
                Some((id, params, Client::Session(session)))
            }
            // Accepted as rmcp accepts a notification; rmcp never saw the request.
            Some(SessionRequest::Cancel(id)) if session.cancel(&id) => {
                return StatusCode::ACCEPTED.into_response();
            }
            // A resting session's worker would only have noted it; waking it would undo the
            // rest.
            Some(SessionRequest::Initialized) if !session.is_awake() => {
                return StatusCode::ACCEPTED.into_response();
            }
            // Listing is what SDK clients do right after the handshake; answered here, a
            // resting session stays at rest. Boxed, as the rarer step it is.
            Some(SessionRequest::List(catalogue, id)) => {
                let client = Client::Session(session);
                return Box::pin(list(lane, parts, id, client, catalogue)).await;
            }
            Some(_) | None => None,
        },
        Road::Initialize => {
            let header = parts
                .headers
                .get("mcp-protocol-version")
                .and_then(|value| value.to_str().ok());
            // Boxed: opening a session is a rare, several-kilobyte future that would otherwise
            // size the future of every request, held for the whole of each call.
            if let Some((id, request)) = plain_initialize(&bytes, header)
                && let Some(response) = Box::pin(open(lane, id, request)).await
            {
                return response;
            }
            None
        }
    };
    let Some((id, params, client)) = taken else {
        return next(Request::from_parts(parts, Body::from(bytes))).await;
    };
    let bytes = rehome(&mut parts, bytes);
    let proxy = (lane.proxy)();
    let cancelled = CancellationToken::new();
    // A session's client cancels with a notification, or by ending the session.
    let registered = match &client {
        Client::Session(session) => Some(session.begin_call(id.clone(), cancelled.clone())),
        Client::Stateless(_) => None,
    };
    // A client hanging up cancels the call (and its record says so) instead of dropping it
    // half-recorded: the call is detached, and then sees the cancellation.
    let hang_up = cancelled.clone().drop_guard();
    let call = detach::Detachable::new(async move {
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
        Err(_panic) => {
            tracing::error!("a tools/call on the express lane panicked");
            let error = ErrorData::internal_error("the gateway failed to answer this call", None);
            encode(StatusCode::OK, &ServerJsonRpcMessage::error(error, None))
        }
    }
}

/// Answers a plain listing as rmcp's road would: what its caller may see of `catalogue`, with
/// the caching hints the 2026-07-28 era requires, or in the shape a session's client knows (no
/// `resultType`).
async fn list(
    lane: &Lane,
    parts: http::request::Parts,
    id: RequestId,
    client: Client,
    catalogue: Catalogue,
) -> Response {
    let express = Express {
        parts,
        id,
        client,
        cancelled: CancellationToken::new(),
    };
    let mut result = (lane.proxy)().list_for(catalogue, &express).await;
    let modern = express.is_modern();
    if modern {
        result.fill_missing_cache_hints();
    } else {
        result.strip_result_type_for_legacy_peer();
    }
    reply(express.id, Ok(result), modern)
}

/// Moves a call's request head and body out of hyper's read buffer into one small allocation
/// of their own, and returns the body's copy. hyper hands out the URI, every header value and
/// the body as slices of the connection's 8 KiB read buffer, and while a call is in flight it
/// reads on into a fresh buffer (to notice a client hanging up), so a call holding its request
/// as hyper gave it would keep two buffers per connection for as long as the downstream takes.
/// The body is taken so that its slice is gone too. hyper offers no setting for this; what
/// cannot be copied exactly stays as it was.
fn rehome(parts: &mut http::request::Parts, body: Bytes) -> Bytes {
    let target = origin_form(&parts.uri);
    let target_len = target.map_or(0, str::len);
    let values: usize = parts.headers.values().map(|value| value.len()).sum();
    let mut arena = Vec::with_capacity(body.len() + values + target_len);
    arena.extend_from_slice(&body);
    for value in parts.headers.values() {
        arena.extend_from_slice(value.as_bytes());
    }
    arena.extend_from_slice(target.unwrap_or_default().as_bytes());
    let arena = Bytes::from(arena);
    let mut at = body.len();
    for value in parts.headers.values_mut() {
        let end = at + value.len();
        if let Ok(mut copy) = http::HeaderValue::from_maybe_shared(arena.slice(at..end)) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
        at = end;
    }
    if target_len > 0
        && let Ok(uri) = http::Uri::from_maybe_shared(arena.slice(at..))
    {
        // axum's router keeps a clone of the URI as it arrived, which would hold the buffer too.
        if let Some(original) = parts.extensions.get_mut::<axum::extract::OriginalUri>()
            && original.0 == parts.uri
        {
            original.0 = uri.clone();
        }
        parts.uri = uri;
    }
    arena.slice(..body.len())
}

/// A request target in origin form (a path and query: all the lane sees), or `None`; a URI in
/// any other form is left as it came.
fn origin_form(uri: &http::Uri) -> Option<&str> {
    match (uri.authority(), uri.path_and_query()) {
        (None, Some(target)) => Some(target.as_str()),
        _ => None,
    }
}

/// Answers a plain `initialize` as rmcp would, opening a resting session, or says it is rmcp's
/// to answer (`None`): a version this server does not speak gets rmcp's refusal.
async fn open(lane: &Lane, id: RequestId, request: InitializeRequestParams) -> Option<Response> {
    let proxy = (lane.proxy)();
    let version = &request.protocol_version;
    if !version.has_initialize() || !proxy.supported_protocol_versions().contains(version) {
        return None;
    }
    let result = proxy.negotiate_initialize(&request).ok()?;
    let handshake = Handshake {
        version: result.protocol_version.clone(),
        request,
    };
    let session = lane.sessions.open_resting(handshake).await;
    Some(opened(&session, id, result, lane.sse_retry))
}

/// Writes the answer to `initialize` as rmcp writes it: an SSE stream of a priming event
/// (when reconnection is announced) and the result, with the new session's id. Written here
/// because rmcp's SSE writer is private to it; the e2e test compares the bytes with rmcp's.
fn opened(
    session: &str,
    id: RequestId,
    result: InitializeResult,
    sse_retry: Option<Duration>,
) -> Response {
    let message = ServerJsonRpcMessage::response(ServerResult::InitializeResult(result), id);
    let json = match serde_json::to_string(&message) {
        Ok(json) => json,
        Err(error) => {
            tracing::error!(%error, "could not encode an initialize answer");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    let mut events = String::with_capacity(json.len() + 40);
    if let Some(retry) = sse_retry {
        let _ = write!(events, "data: \nid: 0\nretry: {}\n\n", retry.as_millis());
    }
    let _ = write!(events, "data: {json}\n\n");
    let Ok(session) = http::HeaderValue::from_str(session) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    event_stream(Body::from(events), Some(session))
}

/// Answers with an SSE stream under the headers rmcp gives one, and the session's id when the
/// answer opens the session.
fn event_stream(events: Body, session: Option<http::HeaderValue>) -> Response {
    let mut response = (
        [
            (
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/event-stream"),
            ),
            (
                header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-cache"),
            ),
            (
                http::HeaderName::from_static("x-accel-buffering"),
                http::HeaderValue::from_static("no"),
            ),
        ],
        events,
    )
        .into_response();
    if let Some(session) = session {
        let name = http::HeaderName::from_static("mcp-session-id");
        response.headers_mut().insert(name, session);
    }
    response
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
        lane_holding(allowed_hosts, ClientCapabilities::default(), false)
    }

    /// A lane whose virtual server holds the 2025-11-25 session [`SESSION`] of a client that
    /// declared `capabilities`.
    fn lane_holding(allowed_hosts: &[&str], capabilities: ClientCapabilities, awake: bool) -> Lane {
        let handshake = Handshake {
            version: ProtocolVersion::V_2025_11_25,
            request: InitializeRequestParams::new(capabilities, Implementation::new("t", "1"))
                .with_protocol_version(ProtocolVersion::V_2025_11_25),
        };
        Lane {
            proxy: Box::new(|| unreachable!("header checks build no handler")),
            allowed_hosts: allowed(allowed_hosts),
            sessions: Sessions::holding(SESSION, handshake, awake),
            sse_retry: Some(Duration::from_secs(3)),
            keep_alive: Some(Duration::from_secs(15)),
            ended: CancellationToken::new(),
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
    fn a_plain_2026_07_28_listing_takes_the_lane_and_one_rmcp_must_judge_does_not() {
        let lane = lane(&["127.0.0.1"]);
        for method in [
            "tools/list",
            "prompts/list",
            "resources/list",
            "resources/templates/list",
        ] {
            let listing = varied(plain_headers(), "mcp-method", Some(method));
            assert!(
                matches!(lane.road(&Method::POST, &listing), Some(Road::Stateless)),
                "{method}"
            );
            let plain = format!(
                r#"{{"jsonrpc":"2.0","id":4,"method":"{method}","params":{{"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
            );
            assert!(
                plain_listing(plain.as_bytes(), method).is_some(),
                "{method}"
            );
        }
        let meta = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}}"#;
        let body = |params: &str| {
            format!(r#"{{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{{{params}}}}}"#)
        };
        for plain in [body(meta), body(&format!(r#"{meta},"cursor":"c""#))] {
            let (id, _) = plain_listing(plain.as_bytes(), "tools/list").expect("a plain listing");
            assert_eq!(id, RequestId::Number(4));
        }
        let progress = meta.replace(r#""_meta":{"#, r#""_meta":{"progressToken":1,"#);
        let logs = meta.replace(
            r#""_meta":{"#,
            r#""_meta":{"io.modelcontextprotocol/logLevel":"debug","#,
        );
        let incapable = meta.replace(r#""io.modelcontextprotocol/clientCapabilities":{},"#, "");
        let cases = [
            ("no _meta", body("")),
            ("progress asked for", body(&progress)),
            ("log messages asked for", body(&logs)),
            ("no client capabilities", body(&incapable)),
            (
                "another version",
                body(&meta.replace("2026-07-28", "2025-11-25")),
            ),
            (
                "a method the header does not name",
                body(meta).replace("tools/list", "prompts/list"),
            ),
            ("a notification", body(meta).replace(r#""id":4,"#, "")),
        ];
        for (case, body) in cases {
            assert!(
                plain_listing(body.as_bytes(), "tools/list").is_none(),
                "{case}"
            );
        }
    }

    #[test]
    fn a_request_whose_headers_rmcp_must_judge_continues_to_rmcp() {
        let lane = lane(&["127.0.0.1"]);
        // Each case sets one header (or, with no value, removes it).
        let cases: [(&str, &'static str, Option<&'static str>); 9] = [
            ("legacy era", "mcp-protocol-version", Some("2025-11-25")),
            ("another method", "mcp-method", Some("prompts/get")),
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
    fn a_sessions_plain_listing_takes_the_lane_whatever_its_cursor() {
        let listings = [
            ("tools/list", Catalogue::Tools),
            ("prompts/list", Catalogue::Prompts),
            ("resources/list", Catalogue::Resources),
            ("resources/templates/list", Catalogue::ResourceTemplates),
        ];
        for (method, catalogue) in listings {
            let bodies = [
                format!(r#"{{"jsonrpc":"2.0","id":3,"method":"{method}"}}"#),
                format!(r#"{{"jsonrpc":"2.0","id":3,"method":"{method}","params":{{}}}}"#),
                format!(
                    r#"{{"jsonrpc":"2.0","id":3,"method":"{method}","params":{{"cursor":"c"}}}}"#
                ),
            ];
            for body in bodies {
                assert!(
                    matches!(
                        session_request(body.as_bytes()),
                        Some(SessionRequest::List(listed, RequestId::Number(3))) if listed == catalogue
                    ),
                    "{body}"
                );
            }
        }
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
        // Resting, the lane still reads the session's requests (its `initialized` is the
        // lane's to accept) but leaves its calls to rmcp; awake, it leaves it all to rmcp.
        let asks = |capabilities: ClientCapabilities| {
            let resting = match lane_holding(&["127.0.0.1"], capabilities.clone(), false)
                .road(&Method::POST, &headers(&session_headers()))
            {
                Some(Road::Session(session)) => !session.takes_calls(),
                _ => panic!("a held session's request"),
            };
            let awake = lane_holding(&["127.0.0.1"], capabilities, true)
                .road(&Method::POST, &headers(&session_headers()))
                .is_none();
            resting && awake
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
                r#"{"jsonrpc":"2.0","id":1,"method":"logging/setLevel","params":{"level":"info"}}"#,
            ),
            (
                "a listing with _meta",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"progressToken":"p"}}}"#,
            ),
            (
                "a listing as a notification",
                r#"{"jsonrpc":"2.0","method":"tools/list","params":{}}"#,
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

    fn handshake_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "127.0.0.1:8080"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
        ]
    }

    const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

    fn get_stream_headers() -> Vec<(&'static str, &'static str)> {
        vec![
            ("host", "127.0.0.1:8080"),
            ("accept", "text/event-stream"),
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-session-id", SESSION),
        ]
    }

    #[test]
    fn a_resting_sessions_get_stream_takes_the_lane_once_at_a_time() {
        let lane = lane(&["127.0.0.1"]);
        let Some((id, session)) = lane.listener(&headers(&get_stream_headers())) else {
            panic!("a resting session's plain GET stream is the lane's");
        };
        assert_eq!(&*id, SESSION);
        assert!(
            lane.listener(&headers(&get_stream_headers())).is_none(),
            "a second stream is rmcp's, so each message travels on one stream only"
        );
        session.stop_listening();
        assert!(
            lane.listener(&headers(&get_stream_headers())).is_some(),
            "once the first has closed, the next is the lane's again"
        );
    }

    #[test]
    fn a_get_stream_rmcp_must_judge_or_resume_continues_to_rmcp() {
        let awake = lane_holding(&["127.0.0.1"], ClientCapabilities::default(), true);
        assert!(
            awake.listener(&headers(&get_stream_headers())).is_none(),
            "an awake session's stream is its worker's"
        );
        for (name, value) in [
            ("last-event-id", Some("0")),
            ("origin", Some("http://127.0.0.1:8080")),
            ("accept", Some("application/json")),
            ("accept", None),
            ("host", Some("evil.example")),
            ("mcp-protocol-version", Some("2025-06-18")),
            ("mcp-protocol-version", None),
            ("mcp-session-id", Some("unknown")),
            ("mcp-session-id", None),
        ] {
            let lane = lane(&["127.0.0.1"]);
            let request = varied(get_stream_headers(), name, value);
            assert!(
                lane.listener(&request).is_none(),
                "{name}: {value:?} is rmcp's to answer"
            );
        }
    }

    #[test]
    fn a_plain_initialize_takes_the_lane_and_its_initialized_notification_too() {
        let lane = lane(&["127.0.0.1"]);
        assert!(matches!(
            lane.road(&Method::POST, &headers(&handshake_headers())),
            Some(Road::Initialize)
        ));
        let (id, params) = plain_initialize(INITIALIZE.as_bytes(), None).expect("plain");
        assert_eq!(id, RequestId::Number(0));
        assert_eq!(params.protocol_version, ProtocolVersion::V_2025_11_25);
        assert!(
            plain_initialize(INITIALIZE.as_bytes(), Some("2025-11-25")).is_some(),
            "a version header that matches the body"
        );
        for initialized in [
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized","params":{}}"#,
        ] {
            assert!(matches!(
                session_request(initialized.as_bytes()),
                Some(SessionRequest::Initialized)
            ));
        }
    }

    #[test]
    fn a_handshake_rmcp_must_judge_continues_to_rmcp() {
        let lane = lane(&["127.0.0.1"]);
        let cases: [(&str, &'static str, Option<&'static str>); 3] = [
            ("a method header to check", "mcp-method", Some("initialize")),
            ("a name header to check", "mcp-name", Some("x")),
            ("an Origin to check", "origin", Some("http://127.0.0.1")),
        ];
        for (case, name, value) in cases {
            let varied = varied(handshake_headers(), name, value);
            assert!(lane.road(&Method::POST, &varied).is_none(), "{case}");
        }
        let bodies = [
            (
                "_meta to read",
                INITIALIZE.replace(r#""capabilities""#, r#""_meta":{},"capabilities""#),
            ),
            (
                "not JSON-RPC 2.0",
                INITIALIZE.replace(r#""2.0""#, r#""1.0""#),
            ),
            (
                "another method",
                INITIALIZE.replace(r#""initialize""#, r#""tools/list""#),
            ),
            ("a notification", INITIALIZE.replace(r#""id":0,"#, "")),
        ];
        for (case, body) in bodies {
            assert!(plain_initialize(body.as_bytes(), None).is_none(), "{case}");
        }
        assert!(
            plain_initialize(INITIALIZE.as_bytes(), Some("2025-06-18")).is_none(),
            "a version header that contradicts the body"
        );
        assert!(
            session_request(
                br#"{"jsonrpc":"2.0","method":"notifications/initialized","params":{"x":1}}"#
            )
            .is_none(),
            "an initialized notification with parameters"
        );
    }

    #[tokio::test]
    async fn an_initialize_answer_is_written_as_rmcp_writes_it() {
        let result = InitializeResult::new(rmcp::model::ServerCapabilities::default());
        let response = opened(
            "s-1",
            RequestId::Number(0),
            result.clone(),
            Some(Duration::from_secs(3)),
        );
        assert_eq!(response.status(), StatusCode::OK);
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned)
        };
        assert_eq!(header("content-type").as_deref(), Some("text/event-stream"));
        assert_eq!(header("cache-control").as_deref(), Some("no-cache"));
        assert_eq!(header("x-accel-buffering").as_deref(), Some("no"));
        assert_eq!(header("mcp-session-id").as_deref(), Some("s-1"));
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let json = serde_json::to_string(&ServerJsonRpcMessage::response(
            ServerResult::InitializeResult(result),
            RequestId::Number(0),
        ))
        .expect("json");
        assert_eq!(
            String::from_utf8_lossy(&body),
            format!("data: \nid: 0\nretry: 3000\n\ndata: {json}\n\n"),
            "a priming event, then the result"
        );
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

    #[test]
    fn a_call_keeps_its_request_in_memory_of_its_own_not_in_the_connections_read_buffer() {
        // As hyper hands a request over: URI, header values and body are slices of one buffer.
        let mut buffer = Vec::from(&b"/v/demo/mcp?x=1 application/json Bearer t0k"[..]);
        buffer.extend_from_slice(CALL.as_bytes());
        let buffer = Bytes::from(buffer);
        let (mut parts, ()) = http::Request::builder()
            .uri(http::Uri::from_maybe_shared(buffer.slice(0..15)).expect("uri"))
            .header(
                header::CONTENT_TYPE,
                http::HeaderValue::from_maybe_shared(buffer.slice(16..32)).expect("value"),
            )
            .header(header::AUTHORIZATION, {
                let mut value =
                    http::HeaderValue::from_maybe_shared(buffer.slice(33..43)).expect("value");
                value.set_sensitive(true);
                value
            })
            .header(header::ACCEPT, "application/json")
            .header(header::ACCEPT, "text/event-stream")
            .body(())
            .expect("request")
            .into_parts();
        // axum's router keeps the URI as it arrived.
        let original = axum::extract::OriginalUri(parts.uri.clone());
        parts.extensions.insert(original);
        let body = buffer.slice(43..);
        // Owned copies: a clone of a header value would hold the buffer too.
        let text = |parts: &http::request::Parts| {
            let headers = parts.headers.iter();
            let headers = headers.map(|(name, value)| format!("{name}: {value:?}"));
            (parts.uri.to_string(), headers.collect::<Vec<_>>())
        };
        let before = text(&parts);

        let copied = rehome(&mut parts, body);

        assert!(
            buffer.is_unique(),
            "nothing of the call still holds the read buffer"
        );
        assert_eq!(copied, CALL.as_bytes());
        assert_eq!(text(&parts), before);
        let original = parts.extensions.get::<axum::extract::OriginalUri>();
        assert_eq!(
            original.map(|uri| uri.to_string()).as_deref(),
            Some("/v/demo/mcp?x=1")
        );
        assert_eq!(parts.headers[header::AUTHORIZATION], "Bearer t0k");
        assert!(parts.headers[header::AUTHORIZATION].is_sensitive());
        assert_eq!(
            parts
                .headers
                .get_all(header::ACCEPT)
                .iter()
                .collect::<Vec<_>>(),
            ["application/json", "text/event-stream"]
        );
    }
}
