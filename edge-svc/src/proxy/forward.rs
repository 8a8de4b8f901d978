//! Sends one client request to a member connector and brings the answer back.
//!
//! Handles the three things a proxy must not get wrong: routing what the downstream sends
//! during the call back to this caller only, cancelling the downstream call when the client
//! cancels, and multi-round-trip requests (MRTR) across protocol eras — a modern client gets an
//! `input_required` result passed through, a legacy client has the input requests asked of it
//! as ordinary server→client requests and the call retried on its behalf.

#![allow(
    deprecated,
    reason = "sampling and roots are deprecated by SEP-2577 but are live in the legacy era we serve"
)]

use std::sync::{Arc, Mutex, PoisonError};

use opentelemetry::trace::TraceContextExt as _;
use rmcp::model::{
    CallToolRequestParams, CancelledNotificationParam, ClientRequest, ErrorData, InputRequest,
    InputRequiredResult, InputResponses, LoggingLevel, ResultType, ServerResult,
};
use rmcp::service::{PeerRequestOptions, RequestContext};
use rmcp::{Peer, RoleServer, ServiceError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::auth::Caller;
use crate::connector::{Connector, DirectLine};
use crate::credentials::consent;
use crate::credentials::sessions::Route;
use crate::credentials::{CallerToken, CredentialError, Who};
use crate::inbound::Inbound;
use crate::inspect::NotificationMask;
use crate::switchboard::{Switchboard, UpstreamCall};
use crate::vmcp::VirtualServer;

/// How many input rounds a legacy client is driven through before the gateway gives up.
const MAX_INPUT_ROUNDS: usize = rmcp::model::DEFAULT_MRTR_MAX_ROUNDS;

/// The request `_meta` key of the client's capabilities (2026-07-28); rmcp keeps its own private.
const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";

/// Forwards requests of one virtual server's clients to its members.
#[derive(Debug, Clone)]
pub(crate) struct Forwarder {
    server: Arc<VirtualServer>,
    board: Arc<Switchboard>,
    /// The level of log messages a session's client asked for with `logging/setLevel`, which
    /// a 2026-07-28 downstream only hears as each request's `_meta` logLevel.
    session_log_level: Arc<Mutex<Option<LoggingLevel>>>,
}

impl Forwarder {
    pub(crate) fn new(server: Arc<VirtualServer>, board: Arc<Switchboard>) -> Self {
        Self {
            server,
            board,
            session_log_level: Arc::default(),
        }
    }

    /// Returns this forwarder over another definition of its virtual server.
    pub(crate) fn over(&self, server: Arc<VirtualServer>) -> Self {
        Self {
            server,
            ..self.clone()
        }
    }

    /// Notes the level of log messages the session's client asked for.
    pub(crate) fn set_session_log_level(&self, level: LoggingLevel) {
        *self
            .session_log_level
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(level);
    }

    /// The level of log messages the caller asked for: in its request (2026-07-28), or for its
    /// whole session (earlier eras).
    fn log_level(&self, context: &RequestContext<RoleServer>) -> Option<LoggingLevel> {
        if context.is_modern() {
            context.meta.log_level()
        } else {
            *self
                .session_log_level
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        }
    }

    /// Forwards a request that may need input rounds.
    ///
    /// `first` is the client's request as sent (a modern client's retry already carries its
    /// `inputResponses` and `requestState`); `retry` rebuilds it with the answers the gateway
    /// collected from a legacy client.
    pub(crate) async fn rounds(
        &self,
        member: usize,
        context: &RequestContext<RoleServer>,
        first: ClientRequest,
        retry: impl Fn(InputResponses, Option<String>) -> ClientRequest,
    ) -> Result<ServerResult, ErrorData> {
        let modern_client = context.is_modern();
        let mut request = first;
        for _ in 0..MAX_INPUT_ROUNDS {
            match self.once(member, context, request).await? {
                ServerResult::InputRequiredResult(required) if !modern_client => {
                    let responses = ask_client(&context.peer, &required).await?;
                    request = retry(responses, required.request_state);
                }
                result => return Ok(result),
            }
        }
        Err(ErrorData::internal_error(
            "the connector kept asking for input; gave up after too many rounds",
            None,
        ))
    }

    /// Forwards one request and waits for its answer, or for the client to cancel it.
    pub(crate) async fn once(
        &self,
        member: usize,
        context: &RequestContext<RoleServer>,
        request: ClientRequest,
    ) -> Result<ServerResult, ErrorData> {
        let tool_call = matches!(request, ClientRequest::CallToolRequest(_));
        let connector = match self.session(member, context, tool_call).await {
            Ok(connector) => connector,
            Err(answer) => return answer,
        };
        let peer = connector.peer().await.map_err(|error| {
            tracing::warn!(connector = connector.name(), %error, "connector unavailable");
            ErrorData::internal_error(
                format!("connector `{}` is unavailable", connector.name()),
                None,
            )
        })?;
        let mut meta = rmcp::model::RequestMetaObject::default();
        if let Some(capabilities) = context.client_capabilities() {
            // The downstream must only ask for input this very client can give.
            meta.set_client_capabilities(capabilities);
        }
        if let Some(level) = self.log_level(context) {
            // A 2026-07-28 downstream sends a request's log messages only when it asks for them.
            meta.set_log_level(level);
        }
        // SEP-414: the trace continues in `_meta` (stdio too); HTTP connectors also get it as a header.
        let span = downstream_span(connector.name(), request.method(), &mut meta);
        let mut options = PeerRequestOptions::no_options();
        options.meta = Some(meta);
        let registration = self.board.begin();
        let handle = peer
            .send_request_with_option(request, options)
            .instrument(span.clone())
            .await
            .map_err(downstream_error)?;
        let (id, downstream_peer) = (handle.id.clone(), handle.peer.clone());
        let route = registration.register(
            connector.name(),
            handle.id.clone(),
            handle.progress_token.clone(),
            UpstreamCall::new(
                context.peer.clone(),
                context.meta.get_progress_token(),
                !context.is_modern(),
            )
            .with_mask(context.extensions.get::<NotificationMask>().cloned()),
        );
        let modern_client = context.is_modern();
        tokio::select! {
            answer = handle.await_response().instrument(span) => {
                route.settle().await;
                answer.map_err(downstream_error).map(|mut result| {
                    if modern_client {
                        mark_complete(&mut result);
                    }
                    result
                })
            }
            () = context.ct.cancelled() => {
                let params = CancelledNotificationParam::new(Some(id), Some("client cancelled".into()));
                let _ = downstream_peer.notify_cancelled(params).await;
                Err(ErrorData::internal_error("request cancelled by the client", None))
            }
        }
    }
}

impl Forwarder {
    /// Returns the direct line a plain `tools/call` to `member` can take instead of rmcp's
    /// client: only for a member whose calls carry no per-caller credential (those may need
    /// consent or a session of their own) and whose live session offers one.
    pub(crate) fn direct_line(&self, member: usize) -> Option<Arc<DirectLine>> {
        let member = self.server.members().get(member)?;
        if member.credentials.is_some() {
            return None;
        }
        member.connector.direct()
    }

    /// Sends a `tools/call` over `line` and waits for its answer, or for the client to give up.
    ///
    /// The request carries what rmcp's client would put in its `_meta`: the version the
    /// downstream agreed to, the gateway as client, the caller's capabilities (the downstream
    /// must only ask for input this very client can give) and the trace context.
    pub(crate) async fn direct(
        &self,
        line: &DirectLine,
        context: &impl Inbound,
        mut params: CallToolRequestParams,
        cancelled: &CancellationToken,
    ) -> Result<ServerResult, ErrorData> {
        let meta = params.meta.get_or_insert_default();
        meta.extend(line.declared().clone());
        // A modern client's request already carries its capabilities in `_meta`, as they go
        // on; a legacy client's come from its session.
        if !meta.0.contains_key(CLIENT_CAPABILITIES)
            && let Some(capabilities) = context.client_capabilities()
        {
            meta.set_client_capabilities(capabilities);
        }
        let span = downstream_span(line.name(), "tools/call", meta);
        tokio::select! {
            answer = line.call_tool(&params).instrument(span) => match answer {
                Ok(answer) if context.is_modern() => answer.map(|mut result| {
                    mark_complete(&mut result);
                    result
                }),
                Ok(answer) => answer.and_then(|result| for_session(result, line.name())),
                Err(error) => Err(unanswered(&error, CredentialError::find(&error))),
            },
            () = cancelled.cancelled() => {
                Err(ErrorData::internal_error("request cancelled by the client", None))
            }
        }
    }
}

impl Forwarder {
    /// Returns the session that carries this caller's call to `member`, or the answer to give
    /// instead: the first-use link, or why no credential can be injected.
    async fn session(
        &self,
        member: usize,
        context: &impl Inbound,
        tool_call: bool,
    ) -> Result<Connector, Result<ServerResult, ErrorData>> {
        let member = &self.server.members()[member];
        let main = member.for_client(context.is_modern());
        let Some(binding) = &member.credentials else {
            return Ok(main.clone());
        };
        let parts = context.parts();
        let who = Who::of(parts.and_then(|parts| parts.extensions.get::<Caller>()));
        let caller = parts
            .filter(|_| binding.exchanges_caller_tokens())
            .and_then(CallerToken::of);
        let trace_id = svc_kit::telemetry::propagation::current_trace_id().unwrap_or_default();
        let name = member.connector.name();
        match binding.route(&who, caller.as_ref(), &trace_id).await {
            Ok(Route::Main) => Ok(main.clone()),
            Ok(Route::Member(connector)) => Ok(connector),
            Ok(Route::Consent(link)) => Err(
                if tool_call && !consent::opens_urls(context.client_capabilities().as_ref()) {
                    Ok(ServerResult::CallToolResult(link.tool_error(name)))
                } else {
                    Err(link.elicitation(name))
                },
            ),
            Err(error) => {
                tracing::warn!(connector = name, %error, "no credential for a call");
                Err(Err(error.client_error(name)))
            }
        }
    }
}

/// Opens the client span of one downstream request and writes the trace context the connector
/// receives into the request's `meta`. A span of a trace that is not sampled is never recorded,
/// so for one the request's own span stands in (no span is returned) and the connector continues
/// from it: building and dropping a span nobody keeps cost a few percent of every call.
fn downstream_span(
    connector: &str,
    method: &str,
    meta: &mut rmcp::model::RequestMetaObject,
) -> tracing::Span {
    let request = tracing::Span::current().context();
    if !request.span().span_context().is_sampled() {
        continue_trace(meta, &request);
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        target: svc_kit::telemetry::TRACE_ONLY,
        "mcp.downstream",
        otel.name = format!("{method} {connector}"),
        otel.kind = "client",
        mcp.method.name = method,
        gatehouse.connector = connector,
    );
    continue_trace(meta, &span.context());
    span
}

/// Writes `trace` into `meta` as W3C `traceparent`/`tracestate` fields.
fn continue_trace(meta: &mut rmcp::model::RequestMetaObject, trace: &opentelemetry::Context) {
    for (key, value) in svc_kit::telemetry::propagation::w3c_fields(trace) {
        meta.0.0.insert(key.to_owned(), value.into());
    }
}

/// Gives a session's client the answer in the shape it knows (no `resultType`). The express
/// lane takes only sessions whose client declared it can be asked nothing, so a downstream
/// that asks for input anyway asks for what this client cannot give.
fn for_session(mut result: ServerResult, connector: &str) -> Result<ServerResult, ErrorData> {
    if matches!(result, ServerResult::InputRequiredResult(_)) {
        return Err(ErrorData::internal_error(
            format!(
                "connector `{connector}` asked for input, but this client declared no sampling, elicitation or roots"
            ),
            None,
        ));
    }
    result.strip_result_type_for_legacy_peer();
    Ok(result)
}

/// Gives a legacy downstream's final result the `resultType` a 2026-07-28 client requires.
fn mark_complete(result: &mut ServerResult) {
    let result_type = match result {
        ServerResult::CompleteResult(result) => &mut result.result_type,
        ServerResult::GetPromptResult(result) => &mut result.result_type,
        ServerResult::ReadResourceResult(result) => &mut result.result_type,
        ServerResult::CallToolResult(result) => &mut result.result_type,
        _ => return,
    };
    result_type.get_or_insert(ResultType::COMPLETE);
}

/// Keeps a downstream's own JSON-RPC error (it is spec-shaped and the client's to see); names
/// a credential problem (such as a credential the downstream rejected twice); hides other
/// transport detail.
fn downstream_error(error: ServiceError) -> ErrorData {
    match error {
        ServiceError::McpError(error) => error,
        other => {
            // rmcp's `TransportSend` does not expose its transport error as `source()`.
            let found = match &other {
                ServiceError::TransportSend(transport) => CredentialError::find(transport),
                _ => CredentialError::find(&other),
            };
            unanswered(&other, found)
        }
    }
}

/// Names the credential problem behind a call the downstream did not answer, or says only
/// that it did not answer (transport detail stays in the log).
fn unanswered(
    error: &(dyn std::error::Error + 'static),
    credential: Option<&CredentialError>,
) -> ErrorData {
    if let Some(problem) = credential {
        tracing::warn!(error = %problem, "downstream call failed on its credential");
        return problem.client_error(problem.connector().unwrap_or("?"));
    }
    tracing::warn!(error = %crate::connector::report(error), "downstream call failed");
    ErrorData::internal_error("the connector did not answer", None)
}

/// Asks a legacy-era client each input request as a server→client request and collects the answers.
async fn ask_client(
    peer: &Peer<RoleServer>,
    required: &InputRequiredResult,
) -> Result<InputResponses, ErrorData> {
    let mut responses = InputResponses::new();
    for (key, input) in required.input_requests.iter().flatten() {
        let answer = match input {
            InputRequest::CreateMessage(request) => peer
                .create_message(request.params.clone())
                .await
                .map(serde_json::to_value),
            InputRequest::Elicitation(request) => peer
                .create_elicitation(request.params.clone())
                .await
                .map(serde_json::to_value),
            InputRequest::ListRoots(_) => peer.list_roots().await.map(serde_json::to_value),
            _ => {
                return Err(ErrorData::invalid_params(
                    "the connector asked for an input kind this gateway cannot relay",
                    None,
                ));
            }
        };
        let value = answer.map_err(downstream_error)?.map_err(|error| {
            ErrorData::internal_error(
                format!("could not encode the client's answer: {error}"),
                None,
            )
        })?;
        responses.insert(key.clone(), value);
    }
    Ok(responses)
}
