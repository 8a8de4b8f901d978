//! An HTTP client for rmcp's streamable HTTP transport that adds a credential to every request
//! and the W3C trace context of each message as `traceparent`/`tracestate` headers.
//!
//! The trace context travels in the message's `_meta` (SEP-414), set where the gateway forwards
//! the call; it is lifted into headers here so that HTTP-level tracing at the connector (or a
//! proxy in front of it) joins the same trace.
//! The headers are asked of a [`CredentialSource`] per request, not fixed at session start, so
//! a refreshed or rotated credential takes effect on the next request without a new session.
//! A request the downstream answers with HTTP 401 is sent once more with material fetched
//! afresh from vault-svc (the cached copy may be stale); a second 401 is reported as
//! [`CredentialError::Rejected`], which the forwarder turns into a clear error for the caller.
//! Every method of rmcp's client trait is overridden, including the
//! `_with_max_sse_event_size` variants whose defaults would drop the transport's SSE event limit.
//! The client also keeps the connector's turns: at most [`HttpConfig::max_in_flight`] requests
//! in flight at once, on rmcp's session and the direct line together, the rest waiting in order
//! (rmcp's own limit stops counting a request once its answer streams, and the direct line has
//! none). Replies and notifications never wait for a turn, so a call waiting on its client's
//! answer to the downstream's question cannot hold that answer up.
//!
//! [`HttpConfig::max_in_flight`]: super::config::HttpConfig::max_in_flight

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use futures::StreamExt as _;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetMeta as _, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Error as SseError, Sse};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::CredentialSource;
use crate::credentials::CredentialError;

/// A pooled reqwest client plus the source of one session's credential headers, if any, and
/// the connector's turns for requests in flight.
#[derive(Debug, Clone)]
pub(crate) struct InjectingClient {
    http: reqwest::Client,
    source: Option<Arc<dyn CredentialSource>>,
    connector: Arc<str>,
    turns: Arc<Semaphore>,
}

type Failure = StreamableHttpError<reqwest::Error>;
type Headers = HashMap<HeaderName, HeaderValue>;

impl InjectingClient {
    /// Wraps `http`, adding `source`'s headers (when there is one) to every request of
    /// connector `connector`, with `in_flight` turns.
    pub(crate) fn new(
        http: reqwest::Client,
        source: Option<Arc<dyn CredentialSource>>,
        connector: Arc<str>,
        in_flight: NonZeroUsize,
    ) -> Self {
        Self {
            http,
            source,
            connector,
            turns: Arc::new(Semaphore::new(in_flight.get())),
        }
    }

    /// Waits, in order, for a turn to have one more request in flight; the request holds it
    /// until its answer is read. The semaphore is never closed, so this is always a turn.
    pub(crate) async fn turn(&self) -> Option<OwnedSemaphorePermit> {
        Arc::clone(&self.turns).acquire_owned().await.ok()
    }

    /// Takes a turn for `message` if it is a request; replies and notifications go at once.
    async fn turn_for(&self, message: &ClientJsonRpcMessage) -> Option<OwnedSemaphorePermit> {
        match message {
            JsonRpcMessage::Request(_) => self.turn().await,
            _ => None,
        }
    }

    /// Adds the credential to `headers`. A missing credential is reported as an I/O error
    /// (rmcp's error type is fixed by the inner client); its payload is the typed reason.
    async fn with_credential<E>(
        &self,
        mut headers: Headers,
    ) -> Result<Headers, StreamableHttpError<E>>
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let Some(source) = &self.source else {
            return Ok(headers);
        };
        let credential = source.headers().await.map_err(credential_failure)?;
        headers.extend(credential);
        Ok(headers)
    }

    /// Sends one request with the credential; on a 401, once more with fresh material (a
    /// connector without a credential gets the downstream's answer as it is). Generic over the
    /// HTTP client's error: rmcp's transport sends with reqwest, a direct line with hyper.
    pub(crate) async fn send<T, E, F, Fut>(
        &self,
        headers: Headers,
        send: F,
    ) -> Result<T, StreamableHttpError<E>>
    where
        E: std::error::Error + Send + Sync + 'static,
        F: Fn(Headers) -> Fut,
        Fut: Future<Output = Result<T, StreamableHttpError<E>>>,
    {
        let Some(source) = &self.source else {
            return send(headers).await;
        };
        match send(self.with_credential(headers.clone()).await?).await {
            Err(error) if is_rejection(&error) => {
                tracing::info!(connector = %self.connector, "downstream rejected its credential; fetching it again");
                source.rejected().await;
                match send(self.with_credential(headers).await?).await {
                    Err(error) if is_rejection(&error) => {
                        tracing::warn!(connector = %self.connector, "downstream rejected a freshly fetched credential");
                        Err(credential_failure(CredentialError::Rejected(
                            self.connector.to_string(),
                        )))
                    }
                    other => other,
                }
            }
            other => other,
        }
    }
}

/// Adds the trace context `message` carries in its `_meta` to `headers`.
fn with_trace(message: &ClientJsonRpcMessage, mut headers: Headers) -> Headers {
    if let JsonRpcMessage::Request(request) = message {
        let meta = request.request.get_meta();
        let fields = [
            (TRACEPARENT, meta.get_traceparent()),
            (TRACESTATE, meta.get_tracestate()),
        ];
        for (name, value) in fields {
            if let Some(value) = value.and_then(|value| HeaderValue::try_from(value).ok()) {
                headers.insert(name, value);
            }
        }
    }
    headers
}

/// Keeps a request's `turn` while its answer streams; a JSON answer has been read already.
fn holding(
    response: StreamableHttpPostResponse,
    turn: Option<OwnedSemaphorePermit>,
) -> StreamableHttpPostResponse {
    match (response, turn) {
        (StreamableHttpPostResponse::Sse(events, session), Some(turn)) => {
            let events = events.map(move |event| {
                let _held = &turn;
                event
            });
            StreamableHttpPostResponse::Sse(Box::pin(events), session)
        }
        (response, _) => response,
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// Wraps a credential problem into rmcp's error type, keeping it findable by
/// [`CredentialError::find`].
fn credential_failure<E>(error: CredentialError) -> StreamableHttpError<E>
where
    E: std::error::Error + Send + Sync + 'static,
{
    StreamableHttpError::Io(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        error,
    ))
}

/// Drops the request's URL from a transport error: a connector's URL may carry a credential in
/// its query, and rmcp logs these errors and edge logs, reports and audits them.
fn without_url(error: Failure) -> Failure {
    match error {
        StreamableHttpError::Client(error) => StreamableHttpError::Client(error.without_url()),
        other => other,
    }
}

/// Says whether the downstream answered HTTP 401. rmcp reports a 401 with a challenge as
/// `AuthRequired` and one without as an unexpected response whose text starts with the status.
fn is_rejection<E>(error: &StreamableHttpError<E>) -> bool
where
    E: std::error::Error + Send + Sync + 'static,
{
    match error {
        StreamableHttpError::AuthRequired(_) => true,
        StreamableHttpError::UnexpectedServerResponse(text) => text.starts_with("HTTP 401"),
        _ => false,
    }
}

impl StreamableHttpClient for InjectingClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        let turn = self.turn_for(&message).await;
        let custom_headers = with_trace(&message, custom_headers);
        let response = self
            .send(custom_headers, |headers| {
                self.http.post_message(
                    uri.clone(),
                    message.clone(),
                    session_id.clone(),
                    auth_header.clone(),
                    headers,
                )
            })
            .await
            .map_err(without_url)?;
        Ok(holding(response, turn))
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        let turn = self.turn_for(&message).await;
        let custom_headers = with_trace(&message, custom_headers);
        let response = self
            .send(custom_headers, |headers| {
                self.http.post_message_with_max_sse_event_size(
                    uri.clone(),
                    message.clone(),
                    session_id.clone(),
                    auth_header.clone(),
                    headers,
                    max_sse_event_size,
                )
            })
            .await
            .map_err(without_url)?;
        Ok(holding(response, turn))
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<(), Failure> {
        self.send(custom_headers, |headers| {
            self.http.delete_session(
                uri.clone(),
                session_id.clone(),
                auth_header.clone(),
                headers,
            )
        })
        .await
        .map_err(without_url)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        self.send(custom_headers, |headers| {
            self.http.get_stream(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                auth_header.clone(),
                headers,
            )
        })
        .await
        .map_err(without_url)
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: Headers,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        self.send(custom_headers, |headers| {
            self.http.get_stream_with_max_sse_event_size(
                uri.clone(),
                session_id.clone(),
                last_event_id.clone(),
                auth_header.clone(),
                headers,
                max_sse_event_size,
            )
        })
        .await
        .map_err(without_url)
    }
}
