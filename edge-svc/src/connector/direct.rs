//! A direct line to a stateless (2026-07-28) streamable-HTTP downstream: one POST per call.
//!
//! rmcp's client runs every request of a session through one worker task that re-serializes
//! each message to compute its headers; with hundreds of calls a second that worker, its
//! channels and the per-request tasks were most of what edge spent on the connector side. A
//! stateless downstream keeps no session, so a plain `tools/call` can be posted straight from
//! the caller's task, with the session's credential. Everything else (the handshake, list
//! changes, server→client traffic, other eras) stays with rmcp.
//!
//! The line posts with hyper's pooled client rather than reqwest: reqwest parses the request's
//! URL twice per request for its redirect bookkeeping (even with redirects off) and clones the
//! headers for it, which was 14 % of edge's instructions per call; the line's target is
//! parsed once here and a connector's URL is never redirected anyway. TLS is set up as reqwest
//! sets it up (aws-lc-rs, the platform's trust roots, HTTP/1.1).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::body::Bytes;
use futures::StreamExt as _;
use http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{Client, connect::HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rmcp::model::{
    CallToolRequestParams, ErrorData, ProtocolVersion, RequestId, RequestMetaObject, ServerResult,
};
use rmcp::transport::streamable_http_client::StreamableHttpError;
use rustls_platform_verifier::BuilderVerifierExt as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sse_stream::{Error as SseError, SseStream};
use tokio_rustls::rustls::ClientConfig;

use super::Error;
use super::config::HttpConfig;
use super::inject::InjectingClient;

/// Why a call over a direct line got no answer from the downstream.
pub type LineError = StreamableHttpError<Exchange>;

/// Why an HTTP exchange on a direct line failed below JSON-RPC.
#[derive(Debug, thiserror::Error)]
pub enum Exchange {
    /// The request could not be sent, or no response came.
    #[error("request to the connector failed")]
    Send(#[source] hyper_util::client::legacy::Error),
    /// The response's body broke off.
    #[error("response body from the connector broke off")]
    Receive(#[source] hyper::Error),
    /// The answer went past [`MAX_ANSWER_BYTES`]; the rest was not read.
    #[error("the connector's answer exceeds {} MiB", MAX_ANSWER_BYTES >> 20)]
    TooLarge,
}

/// A direct line's pooled client, plain or TLS by the URL's scheme.
pub(crate) type LineClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The most of a downstream's answer the line reads, JSON body or SSE stream: the bound rmcp's
/// session puts on a JSON answer and on each SSE event (a line's stream carries one answer), so
/// a runaway downstream cannot fill edge's memory on either road.
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// Idle pooled connections close after this, as the session's reqwest client's do.
const POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Builds a direct line's client: keep-alive connections with `TCP_NODELAY` (as the session's
/// client has them), TLS verified against the platform's roots. HTTP/2 as
/// [`HttpConfig::http2`] says (cleartext has no ALPN, so there it is spoken without asking);
/// otherwise each call in flight holds an HTTP/1.1 connection.
pub(crate) fn line_client(config: &HttpConfig) -> Result<LineClient, Error> {
    let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    // An explicit provider: with several enabled in the build, rustls cannot pick a process
    // default and `ClientConfig::builder()` would panic.
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .and_then(|builder| builder.with_platform_verifier())
        .map_err(Error::LineTls)?
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    let connector = if config.http2 {
        connector.enable_all_versions().wrap_connector(http)
    } else {
        connector.enable_http1().wrap_connector(http)
    };
    Ok(Client::builder(TokioExecutor::new())
        .http2_only(config.h2c())
        .pool_idle_timeout(POOL_IDLE)
        .pool_timer(TokioTimer::new())
        .build(connector))
}

/// A stateless downstream reachable by plain POSTs, published while its session is ready.
pub struct DirectLine {
    name: Arc<str>,
    target: Uri,
    headers: HashMap<HeaderName, HeaderValue>,
    http: LineClient,
    /// The session's client, whose credential (fetched afresh on a 401) the line's calls carry
    /// and whose turns they share with the session's requests.
    credential: InjectingClient,
    version: ProtocolVersion,
    /// What every request's `_meta` declares on this line (the version the downstream agreed
    /// to, the gateway as its client), built once rather than serialized per call.
    declared: RequestMetaObject,
    /// Ids of this line's own requests; negative, so they never meet the ids rmcp's worker
    /// gives the session's other requests (counting up from zero).
    next_id: AtomicI64,
}

/// Shows the connector, where its URL points (without user info or query, which may hold a
/// key) and the names of its headers, never their values.
impl std::fmt::Debug for DirectLine {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let host = self.target.host().unwrap_or_default();
        let port = self.target.port_u16().map(|port| format!(":{port}"));
        formatter
            .debug_struct("DirectLine")
            .field("name", &self.name)
            .field(
                "target",
                &format_args!(
                    "{}://{host}{}{}",
                    self.target.scheme_str().unwrap_or_default(),
                    port.unwrap_or_default(),
                    self.target.path()
                ),
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl DirectLine {
    /// Describes the line to connector `name` at `url`, which negotiated `version`, posting
    /// over `http` with the credential and the turns of `credential`.
    pub(crate) fn new(
        name: Arc<str>,
        url: &url::Url,
        headers: HashMap<HeaderName, HeaderValue>,
        http: LineClient,
        credential: InjectingClient,
        version: ProtocolVersion,
    ) -> Result<Self, Error> {
        let target = url.as_str().parse().map_err(|_| Error::LineUri {
            url: super::config::redact(url),
        })?;
        let mut declared = RequestMetaObject::default();
        declared.set_protocol_version(version.clone());
        declared.set_client_info(super::handler::client_info());
        Ok(Self {
            name,
            target,
            headers,
            http,
            credential,
            version,
            declared,
            next_id: AtomicI64::new(-1),
        })
    }

    /// Returns the connector's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Returns what each request's `_meta` declares: the protocol version the downstream
    /// agreed to and the client the gateway is to it.
    pub fn declared(&self) -> &RequestMetaObject {
        &self.declared
    }

    /// Posts a `tools/call` with `params` and returns the downstream's answer: its result or
    /// its own JSON-RPC error (`Ok`), or why there was none (`Err`).
    ///
    /// A downstream that streams its answer may send notifications before it; the caller asked
    /// for neither progress nor logs (or the call would not be on this line), so they are
    /// logged and not relayed. A server-to-client request is an error: the 2026-07-28 era asks
    /// for input with an `input_required` result instead.
    pub async fn call_tool(
        &self,
        params: &CallToolRequestParams,
    ) -> Result<Result<ServerResult, ErrorData>, LineError> {
        // A turn among the connector's requests in flight, held until the answer is read (and
        // the connection goes back to the pool), so a crowd of callers holds no more HTTP/1.1
        // connections to the downstream than the connector's `max_in_flight`.
        let _turn = self.credential.turn().await;
        let id = self.next_id.fetch_sub(1, Ordering::Relaxed);
        let mut headers = self.headers.clone();
        let trace = params.meta.as_ref().map(|meta| {
            [
                ("traceparent", meta.get_traceparent()),
                ("tracestate", meta.get_tracestate()),
            ]
        });
        let fields = [
            ("mcp-protocol-version", Some(self.version.as_str())),
            ("mcp-method", Some("tools/call")),
            ("mcp-name", Some(params.name.as_ref())),
        ];
        for (header, value) in fields.into_iter().chain(trace.into_iter().flatten()) {
            let Some(value) = value else { continue };
            let value = HeaderValue::from_str(value).map_err(|_| {
                StreamableHttpError::UnexpectedServerResponse(
                    format!("`{header}` cannot carry this call's value").into(),
                )
            })?;
            headers.insert(HeaderName::from_static(header), value);
        }
        let body = serde_json::to_vec(&Outbound {
            jsonrpc: "2.0",
            id,
            method: "tools/call",
            params,
        })?;
        let response = self.post(headers, Bytes::from(body)).await?;
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_ascii_lowercase();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES).map_err(cut);
        if content_type.starts_with("text/event-stream") && status.is_success() {
            let mut events = SseStream::new(body);
            while let Some(event) = events.next().await {
                let data = event.map_err(unwrapped)?.data.unwrap_or_default();
                if data.trim().is_empty() {
                    continue;
                }
                let message: Inbound = serde_json::from_str(&data)?;
                if message.method.is_some() && message.id.is_none() {
                    tracing::debug!(connector = %self.name, "a notification the caller did not ask for was not relayed");
                    continue;
                }
                return answer_to(message, id);
            }
            return Err(StreamableHttpError::UnexpectedServerResponse(
                "the response stream ended without an answer".into(),
            ));
        }
        if !content_type.starts_with("application/json") {
            return Err(StreamableHttpError::UnexpectedServerResponse(
                format!("HTTP {status} without a JSON-RPC answer").into(),
            ));
        }
        // A JSON body is read whatever the status: the 2026-07-28 era sends some JSON-RPC
        // errors with 4xx statuses.
        let body = body
            .collect()
            .await
            .map_err(StreamableHttpError::Client)?
            .to_bytes();
        answer_to(serde_json::from_slice(&body)?, id)
    }

    /// POSTs a JSON-RPC request `body` with `headers` and the credential (once more with fresh
    /// material on a 401, as every request of the session is), and returns the response as the
    /// downstream sent it.
    async fn post(
        &self,
        headers: HashMap<HeaderName, HeaderValue>,
        body: Bytes,
    ) -> Result<http::Response<Incoming>, LineError> {
        self.credential
            .send(headers, |headers| {
                let mut request = http::Request::new(Full::new(body.clone()));
                *request.method_mut() = Method::POST;
                *request.uri_mut() = self.target.clone();
                let fields = request.headers_mut();
                fields.insert(header::ACCEPT, ACCEPTED.clone());
                fields.insert(header::CONTENT_TYPE, JSON.clone());
                fields.extend(headers);
                let sent = self.http.request(request);
                async move {
                    let response = sent
                        .await
                        .map_err(|error| StreamableHttpError::Client(Exchange::Send(error)))?;
                    if response.status() == StatusCode::UNAUTHORIZED {
                        return Err(StreamableHttpError::UnexpectedServerResponse(
                            "HTTP 401 Unauthorized".into(),
                        ));
                    }
                    Ok(response)
                }
            })
            .await
    }
}

/// Names why reading an answer's body stopped: the bounded body's errors are hyper's, or its
/// own when the answer is too large.
fn cut(error: Box<dyn std::error::Error + Send + Sync>) -> Exchange {
    match error.downcast::<hyper::Error>() {
        Ok(broken) => Exchange::Receive(*broken),
        Err(_) => Exchange::TooLarge,
    }
}

/// Takes the line's own [`Exchange`] back out of an SSE error that carries it, so a stream cut
/// short reads as the JSON body's would.
fn unwrapped(error: SseError) -> LineError {
    match error {
        SseError::Body(error) => match error.downcast::<Exchange>() {
            Ok(exchange) => StreamableHttpError::Client(*exchange),
            Err(error) => SseError::Body(error).into(),
        },
        error => error.into(),
    }
}

const ACCEPTED: HeaderValue = HeaderValue::from_static("application/json, text/event-stream");
const JSON: HeaderValue = HeaderValue::from_static("application/json");

/// A request as the direct line writes it.
#[derive(Serialize)]
struct Outbound<'a> {
    jsonrpc: &'static str,
    id: i64,
    method: &'static str,
    params: &'a CallToolRequestParams,
}

/// A message from the downstream as the direct line reads it: the result stays raw until its
/// `resultType` says which result it is (rmcp's untagged result enum tries every kind in turn).
#[derive(Deserialize)]
struct Inbound {
    id: Option<RequestId>,
    method: Option<String>,
    result: Option<Box<RawValue>>,
    error: Option<ErrorData>,
}

/// The `resultType` of a result (2026-07-28; absent before).
#[derive(Deserialize)]
struct Kind {
    #[serde(rename = "resultType")]
    result_type: Option<String>,
}

/// Reads `message` as the answer to request `id`; anything else is reported as unexpected.
fn answer_to(message: Inbound, id: i64) -> Result<Result<ServerResult, ErrorData>, LineError> {
    let ours = message
        .id
        .as_ref()
        .is_none_or(|of| *of == RequestId::Number(id));
    match message {
        Inbound {
            method: Some(_), ..
        } => Err(StreamableHttpError::UnexpectedServerResponse(
            "a server-to-client request instead of the answer".into(),
        )),
        Inbound {
            error: Some(error), ..
        } if ours => Ok(Err(error)),
        Inbound {
            result: Some(result),
            ..
        } if ours && message.id.is_some() => Ok(read_result(result.get())),
        _ => Err(StreamableHttpError::UnexpectedServerResponse(
            "another request's answer instead of this one's".into(),
        )),
    }
}

/// Reads a `tools/call` result by its `resultType`.
fn read_result(text: &str) -> Result<ServerResult, ErrorData> {
    let wrong = |_| {
        ErrorData::internal_error(
            "connector answered `tools/call` with the wrong result type",
            None,
        )
    };
    let kind: Kind = serde_json::from_str(text).map_err(wrong)?;
    match kind.result_type.as_deref() {
        Some("input_required") => serde_json::from_str(text)
            .map(ServerResult::InputRequiredResult)
            .map_err(wrong),
        Some("task") => serde_json::from_str(text)
            .map(ServerResult::CreateTaskResult)
            .map_err(wrong),
        _ => serde_json::from_str(text)
            .map(ServerResult::CallToolResult)
            .map_err(wrong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<Result<ServerResult, ErrorData>, LineError> {
        answer_to(serde_json::from_str(text).expect("a JSON-RPC message"), -3)
    }

    #[test]
    fn a_lines_debug_form_shows_neither_user_info_query_nor_header_values() {
        let url = url::Url::parse("https://user:hunter2@mcp.example.com:8443/mcp?api_key=k-secret")
            .expect("url");
        let headers = HashMap::from([(
            HeaderName::from_static("x-api-key"),
            HeaderValue::from_static("h-secret"),
        )]);
        let line = DirectLine::new(
            "crm".into(),
            &url,
            headers,
            line_client(&HttpConfig::new(url.clone())).expect("client"),
            InjectingClient::new(
                reqwest::Client::new(),
                None,
                "crm".into(),
                std::num::NonZeroUsize::MIN,
            ),
            ProtocolVersion::V_2026_07_28,
        )
        .expect("line");
        let shown = format!("{line:?}");
        assert!(
            shown.contains("https://mcp.example.com:8443/mcp"),
            "{shown}"
        );
        assert!(shown.contains("x-api-key"), "{shown}");
        for secret in ["hunter2", "k-secret", "h-secret"] {
            assert!(!shown.contains(secret), "{shown}");
        }
    }

    #[test]
    fn a_result_is_read_as_the_kind_its_result_type_names() {
        let complete =
            read(r#"{"jsonrpc":"2.0","id":-3,"result":{"content":[{"type":"text","text":"hi"}]}}"#);
        assert!(
            matches!(complete, Ok(Ok(ServerResult::CallToolResult(_)))),
            "{complete:?}"
        );
        let input = read(
            r#"{"jsonrpc":"2.0","id":-3,"result":{"resultType":"input_required","inputRequests":{}}}"#,
        );
        assert!(
            matches!(input, Ok(Ok(ServerResult::InputRequiredResult(_)))),
            "{input:?}"
        );
    }

    #[test]
    fn the_downstreams_own_error_is_its_answer() {
        let answer =
            read(r#"{"jsonrpc":"2.0","id":-3,"error":{"code":-32602,"message":"unknown tool"}}"#);
        let Ok(Err(error)) = answer else {
            panic!("the downstream's error: {answer:?}");
        };
        assert_eq!(error.code, rmcp::model::ErrorCode::INVALID_PARAMS);
    }

    #[test]
    fn what_is_not_this_calls_answer_is_unexpected() {
        for text in [
            r#"{"jsonrpc":"2.0","id":-4,"result":{"content":[]}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{}}"#,
        ] {
            assert!(read(text).is_err(), "{text}");
        }
        let wrong = read(r#"{"jsonrpc":"2.0","id":-3,"result":{"content":"not a list"}}"#);
        assert!(
            matches!(wrong, Ok(Err(_))),
            "a malformed result is the downstream's fault: {wrong:?}"
        );
    }
}
