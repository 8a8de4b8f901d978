//! An HTTP client for rmcp's streamable HTTP transport that adds a credential to every request
//! and the W3C trace context of each message as `traceparent`/`tracestate` headers.
//!
//! The trace context travels in the message's `_meta` (SEP-414), set where the gateway forwards
//! the call; it is lifted into headers here so that HTTP-level tracing at the connector (or a
//! proxy in front of it) joins the same trace. The credential headers are asked of a [`HeaderSource`] per request, not fixed at session start, so a
//! refreshed or rotated credential takes effect on the next request without a new session.
//! Every method of rmcp's client trait is overridden, including the `_with_max_sse_event_size`
//! variants whose defaults would drop the transport's SSE event limit.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetMeta as _, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::{Error as SseError, Sse};

use super::HeaderSource;

/// A pooled reqwest client plus the source of one session's credential headers, if any.
#[derive(Debug, Clone)]
pub(crate) struct InjectingClient {
    http: reqwest::Client,
    source: Option<Arc<dyn HeaderSource>>,
}

type Failure = StreamableHttpError<reqwest::Error>;

impl InjectingClient {
    /// Wraps `http`, adding `source`'s headers (when there is one) to every request.
    pub(crate) fn new(http: reqwest::Client, source: Option<Arc<dyn HeaderSource>>) -> Self {
        Self { http, source }
    }

    /// Adds the credential to `headers`. A missing credential is reported as an I/O error
    /// (rmcp's error type is fixed by the inner client); its source is the typed reason.
    async fn with_credential(
        &self,
        mut headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<HashMap<HeaderName, HeaderValue>, Failure> {
        let Some(source) = &self.source else {
            return Ok(headers);
        };
        let credential = source.headers().await.map_err(|error| {
            StreamableHttpError::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                error,
            ))
        })?;
        headers.extend(credential);
        Ok(headers)
    }

    /// Adds the credential and the trace context `message` carries in its `_meta`.
    async fn for_message(
        &self,
        message: &ClientJsonRpcMessage,
        headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<HashMap<HeaderName, HeaderValue>, Failure> {
        let mut headers = self.with_credential(headers).await?;
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
        Ok(headers)
    }
}

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

impl StreamableHttpClient for InjectingClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        let headers = self.for_message(&message, custom_headers).await?;
        self.http
            .post_message(uri, message, session_id, auth_header, headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, Failure> {
        let headers = self.for_message(&message, custom_headers).await?;
        self.http
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                headers,
                max_sse_event_size,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Failure> {
        let headers = self.with_credential(custom_headers).await?;
        self.http
            .delete_session(uri, session_id, auth_header, headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        let headers = self.with_credential(custom_headers).await?;
        self.http
            .get_stream(uri, session_id, last_event_id, auth_header, headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Failure> {
        let headers = self.with_credential(custom_headers).await?;
        self.http
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                headers,
                max_sse_event_size,
            )
            .await
    }
}
