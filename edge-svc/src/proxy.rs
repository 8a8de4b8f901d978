//! The MCP server a client talks to: one virtual server, answered by forwarding to its connectors.
//!
//! rmcp creates one `Proxy` per legacy session (or per stateless request); all of them share the
//! virtual server and its downstream sessions. Only `tools/list`-style reads come from the cached
//! catalogue; everything else is forwarded to the one member that owns the named item.

#![allow(
    deprecated,
    reason = "logging and resources/subscribe are deprecated by SEP-2577 but are live in the legacy era we serve"
)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequest,
    CompleteRequestParams, CompleteResult, CustomRequest, CustomResult, ErrorData,
    GetPromptRequest, GetPromptRequestParams, GetPromptResponse, Implementation, ListPromptsResult,
    ListResourceTemplatesResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
    ProtocolVersion, ReadResourceRequest, ReadResourceRequestParams, ReadResourceResponse,
    Reference, ServerCapabilities, ServerConfig, ServerResult, SetLevelRequest,
    SetLevelRequestParams, SubscribeRequest, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{RoleServer, ServerHandler};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use policy::{Action, Evaluator, Item};
use proto::audit::v1::Outcome;
use rmcp::model::JsonObject;

use crate::access::{self, Access, Subject};
use crate::audit::{CallRecord, Recorder, Unrecordable};
use crate::credentials::consent;
use crate::inbound::Inbound;
use crate::inspect::{self, Inspector, NotificationMask};
use crate::quota::{Charge, Quotas};
use crate::switchboard::Switchboard;
use crate::vmcp::{self, Snapshot, VirtualServer};

mod forward;
mod live;
mod unparsed;

use forward::Forwarder;
pub use live::LiveProxy;

/// Numbers handler instances so resource subscriptions can be removed per session.
static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// A catalogue a client lists, by the method that lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Catalogue {
    /// `tools/list`.
    Tools,
    /// `prompts/list`.
    Prompts,
    /// `resources/list`.
    Resources,
    /// `resources/templates/list`.
    ResourceTemplates,
}

impl Catalogue {
    /// Returns the catalogue `method` lists, if it is a listing.
    pub(crate) fn listed_by(method: &str) -> Option<Self> {
        match method {
            "tools/list" => Some(Self::Tools),
            "prompts/list" => Some(Self::Prompts),
            "resources/list" => Some(Self::Resources),
            "resources/templates/list" => Some(Self::ResourceTemplates),
            _ => None,
        }
    }
}

/// One client's view of a virtual server.
#[derive(Debug, Clone)]
pub struct Proxy {
    server: Arc<VirtualServer>,
    forwarder: Forwarder,
    recorder: Recorder,
    access: Access,
    quotas: Quotas,
    inspector: Inspector,
    session: u64,
}

impl Proxy {
    /// Creates the handler rmcp runs for one session or stateless request.
    pub fn new(
        server: Arc<VirtualServer>,
        board: Arc<Switchboard>,
        recorder: Recorder,
        access: Access,
        quotas: Quotas,
    ) -> Self {
        Self {
            forwarder: Forwarder::new(Arc::clone(&server), board),
            server,
            recorder,
            access,
            quotas,
            inspector: Inspector::disabled(),
            session: NEXT_SESSION.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// Returns this session's handler over another definition of its virtual server.
    fn over(&self, server: Arc<VirtualServer>) -> Self {
        Self {
            forwarder: self.forwarder.over(Arc::clone(&server)),
            server,
            ..self.clone()
        }
    }

    /// The clients of the virtual server that hear about its list changes.
    pub fn listeners(&self) -> &crate::vmcp::Listeners {
        self.server.listeners()
    }

    /// Inspects inputs and masks outputs as `inspector`'s DLP rules say.
    #[must_use]
    pub fn with_inspector(mut self, inspector: Inspector) -> Self {
        self.inspector = inspector;
        self
    }

    /// Inspects a call's arguments; the record of a blocked call is finished here.
    async fn screen_input(
        &self,
        mut record: CallRecord,
        target: &dlp::Target<'_>,
        item: inspect::Item<'_>,
        arguments: &mut Option<JsonObject>,
    ) -> Result<CallRecord, ErrorData> {
        match self
            .inspector
            .input(target, item, arguments, &mut record)
            .await
        {
            Ok(()) => Ok(record),
            Err(error) => Err(blocked(record, error)),
        }
    }

    /// Inspects a result; the record of a withheld result is finished here.
    async fn screen_output<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        mut record: CallRecord,
        target: &dlp::Target<'_>,
        item: inspect::Item<'_>,
        result: &mut T,
    ) -> Result<CallRecord, ErrorData> {
        match self
            .inspector
            .output(target, item, result, &mut record)
            .await
        {
            Ok(()) => Ok(record),
            Err(error) => Err(blocked(record, error)),
        }
    }

    fn target<'a>(&'a self, member: usize, tool: Option<&'a str>) -> dlp::Target<'a> {
        dlp::Target {
            virtual_server: self.server.name(),
            connector: self.connector_name(member),
            tool,
        }
    }

    async fn begin(
        &self,
        method: &'static str,
        tool: Option<&str>,
        context: &impl Inbound,
    ) -> Result<CallRecord, ErrorData> {
        self.recorder.paced().await;
        crate::telemetry::in_request_trace(context, || {
            CallRecord::begin(&self.recorder, self.server.name(), method, tool, context)
        })
        .map_err(unrecorded)
    }

    /// Decides, forwards and records one `tools/call`, whichever road it came by.
    ///
    /// `forward` carries the vetted request (the downstream's tool name, screened arguments) to
    /// the member that serves the tool, with the mask for the call's progress and log messages.
    pub(crate) async fn call_tool_by<F, Fut>(
        &self,
        request: CallToolRequestParams,
        context: &impl Inbound,
        forward: F,
    ) -> Result<CallToolResponse, ErrorData>
    where
        F: FnOnce(usize, CallToolRequestParams, Option<NotificationMask>) -> Fut,
        Fut: Future<Output = Result<ServerResult, ErrorData>>,
    {
        let mut record = self
            .begin("tools/call", Some(&request.name), context)
            .await?;
        record.arguments(request.arguments.as_ref());
        let snapshot = self.server.snapshot().await;
        let Some(route) = snapshot.tools.route(&request.name).cloned() else {
            record.not_listed();
            let names = |members: &[usize]| -> Vec<&str> {
                members
                    .iter()
                    .map(|member| self.connector_name(*member))
                    .collect()
            };
            let error = unlisted_tool(
                &request.name,
                &names(&snapshot.unavailable),
                &names(&snapshot.incomplete),
            );
            return Err(refused(record, error));
        };
        let connector = self.connector_name(route.member);
        record.tool(&request.name, connector, &route.original);
        if let Some((evaluator, subject)) = self.access.subject(context) {
            let tool = self.server.cached_tool(&request.name).unwrap_or_else(|| {
                rmcp::model::Tool::new(request.name.clone(), "", JsonObject::new())
            });
            let verdict = subject.decide(
                &evaluator,
                Action::CallTool,
                self.server.name(),
                connector,
                access::tool_item(&tool, &route.original),
                request.arguments.as_ref(),
            );
            record.decision((&verdict.decision).into());
            if let Some(error) = verdict.refusal {
                return Err(refused(record, error));
            }
        }
        let charge = Charge::tool(self.server.name(), &request.name);
        if let Err(error) = self.quotas.admit(context, charge).await {
            return Err(limited(record, error));
        }
        let mut downstream = request;
        let exposed = std::mem::replace(&mut downstream.name, route.original.into());
        let target = self.target(route.member, Some(&exposed));
        let item = inspect::Item {
            kind: "tool",
            name: &exposed,
        };
        let mut record = self
            .screen_input(record, &target, item, &mut downstream.arguments)
            .await?;
        let mask = self.inspector.notifications(&target);
        let result = forward(route.member, downstream, mask)
            .instrument(record.span().clone())
            .await;
        let answer = match result {
            Ok(ServerResult::CallToolResult(mut result)) => {
                record = self
                    .screen_output(record, &target, item, &mut result)
                    .await?;
                Ok(CallToolResponse::Complete(result))
            }
            Ok(ServerResult::InputRequiredResult(result)) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            Ok(ServerResult::CreateTaskResult(result)) => Ok(CallToolResponse::Task(result)),
            Ok(_) => Err(unexpected("tools/call")),
            Err(error) => Err(error),
        };
        settle(
            record,
            answer,
            context,
            |response, measured| match response {
                CallToolResponse::Complete(result) if consent::is_consent_answer(result) => {
                    (Outcome::ConsentRequired, json_size(result, measured))
                }
                CallToolResponse::Complete(result) if result.is_error == Some(true) => {
                    (Outcome::ToolError, json_size(result, measured))
                }
                CallToolResponse::Complete(result) => {
                    (Outcome::Success, json_size(result, measured))
                }
                CallToolResponse::InputRequired(result) => {
                    (Outcome::Success, json_size(result, measured))
                }
                CallToolResponse::Task(result) => (Outcome::Success, json_size(result, measured)),
                _ => (Outcome::Success, 0),
            },
        )
    }

    /// Lists the virtual server's tools as `context`'s caller may see them.
    async fn list_tools_for(&self, context: &impl Inbound) -> ListToolsResult {
        let snapshot = self.server.snapshot().await;
        let subject = self.access.subject(context);
        let visible = listed_tools(&self.server, &snapshot, subject.as_ref());
        ListToolsResult::with_all_items(visible)
    }

    /// Lists `catalogue` as `context`'s caller may see it, whichever road the request came by.
    pub(crate) async fn list_for(
        &self,
        catalogue: Catalogue,
        context: &impl Inbound,
    ) -> ServerResult {
        match catalogue {
            Catalogue::Tools => ServerResult::ListToolsResult(self.list_tools_for(context).await),
            Catalogue::Prompts => {
                ServerResult::ListPromptsResult(self.list_prompts_for(context).await)
            }
            Catalogue::Resources => {
                ServerResult::ListResourcesResult(self.list_resources_for(context).await)
            }
            Catalogue::ResourceTemplates => {
                ServerResult::ListResourceTemplatesResult(self.list_resource_templates_now().await)
            }
        }
    }

    /// Lists the prompts `context`'s caller may fetch.
    async fn list_prompts_for(&self, context: &impl Inbound) -> ListPromptsResult {
        let snapshot = self.server.snapshot().await;
        let Some((evaluator, subject)) = self.access.subject(context) else {
            return ListPromptsResult::with_all_items(snapshot.prompts.clone());
        };
        let visible = snapshot
            .prompts
            .iter()
            .filter(|prompt| {
                snapshot
                    .prompt_routes
                    .get(&prompt.name)
                    .is_some_and(|(member, _)| {
                        subject.lists(
                            &evaluator,
                            Action::GetPrompt,
                            self.server.name(),
                            self.connector_name(*member),
                            Item::Prompt {
                                name: prompt.name.clone(),
                            },
                        )
                    })
            })
            .cloned()
            .collect();
        ListPromptsResult::with_all_items(visible)
    }

    /// Lists the resources `context`'s caller may read.
    async fn list_resources_for(&self, context: &impl Inbound) -> ListResourcesResult {
        let snapshot = self.server.snapshot().await;
        let Some((evaluator, subject)) = self.access.subject(context) else {
            return ListResourcesResult::with_all_items(snapshot.resources.clone());
        };
        let visible = snapshot
            .resources
            .iter()
            .filter(|resource| {
                self.server
                    .resource_member(&snapshot, &resource.uri)
                    .is_some_and(|member| {
                        subject.lists(
                            &evaluator,
                            Action::ReadResource,
                            self.server.name(),
                            self.connector_name(member),
                            Item::Resource {
                                uri: resource.uri.clone(),
                            },
                        )
                    })
            })
            .cloned()
            .collect();
        ListResourcesResult::with_all_items(visible)
    }

    /// Lists the resource templates; a read through one is judged by its URI when it happens.
    async fn list_resource_templates_now(&self) -> ListResourceTemplatesResult {
        let snapshot = self.server.snapshot().await;
        let templates = snapshot
            .templates
            .iter()
            .map(|(template, _)| template.clone())
            .collect();
        ListResourceTemplatesResult::with_all_items(templates)
    }

    /// Answers a plain 2026-07-28 `tools/call` over its member's direct line, skipping rmcp's
    /// client; hands the request back (`Err`) when the call must take rmcp's road instead: an
    /// unknown tool, arguments promoted to headers, a name that needs encoding in a header, or
    /// a member without a direct line. Nothing is recorded or decided before that answer.
    pub(crate) async fn call_tool_direct(
        &self,
        request: CallToolRequestParams,
        context: &impl Inbound,
        cancelled: &CancellationToken,
    ) -> Result<Result<CallToolResponse, ErrorData>, CallToolRequestParams> {
        let snapshot = self.server.snapshot().await;
        let direct = snapshot.tools.route(&request.name).is_some_and(|route| {
            !route.headed
                && is_plain_header_value(&route.original)
                && self.forwarder.direct_line(route.member).is_some()
        });
        if !direct {
            return Err(request);
        }
        let forwarder = &self.forwarder;
        let answer = self
            .call_tool_by(request, context, |member, downstream, _mask| async move {
                // The line was there a moment ago; a session that ended since fails the call
                // as an unavailable connector would.
                let Some(line) = forwarder.direct_line(member) else {
                    return Err(ErrorData::internal_error(
                        "the connector is unavailable",
                        None,
                    ));
                };
                forwarder
                    .direct(&line, context, downstream, cancelled)
                    .await
            })
            .await;
        Ok(answer)
    }

    fn connector_name(&self, member: usize) -> &str {
        self.server
            .members()
            .get(member)
            .map_or("", |member| member.connector.name())
    }
}

/// Returns the tools `server` lists to `subject` (every curated tool when no policy applies),
/// with input schemas narrowed to the values policy allows: `tools/list`'s answer, and the
/// console's preview of what a role sees.
pub fn listed_tools(
    server: &VirtualServer,
    snapshot: &Snapshot,
    subject: Option<&(Arc<Evaluator>, Subject)>,
) -> Vec<rmcp::model::Tool> {
    let tools = snapshot.tools.tools();
    let Some((evaluator, subject)) = subject else {
        return tools.to_vec();
    };
    let name = server.name();
    tools
        .iter()
        .filter_map(|tool| {
            let route = snapshot.tools.route(&tool.name)?;
            let item = access::tool_item(tool, &route.original);
            let connector = server
                .members()
                .get(route.member)
                .map_or("", |member| member.connector.name());
            if !subject.lists(evaluator, Action::CallTool, name, connector, item) {
                return None;
            }
            let schema = serde_json::Value::Object(tool.input_schema.as_ref().clone());
            let mut narrowed = tool.clone();
            if let serde_json::Value::Object(object) =
                evaluator.narrow_input_schema(name, &tool.name, &schema)
            {
                narrowed.input_schema = Arc::new(object);
            }
            Some(narrowed)
        })
        .collect()
}

/// Says whether `value` goes into an `Mcp-Name` header as it is (SEP-2243 wraps names with
/// surrounding blanks, control or non-ASCII characters in Base64, which rmcp's road handles).
fn is_plain_header_value(value: &str) -> bool {
    let blank_edge = value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']);
    let looks_encoded = value.starts_with("=?base64?") && value.ends_with("?=");
    let printable = value.chars().all(|c| (' '..='~').contains(&c));
    !value.is_empty() && printable && !blank_edge && !looks_encoded
}

/// Refuses a call whose audit event cannot be kept (fail-closed), without saying more than that.
fn unrecorded(error: Unrecordable) -> ErrorData {
    tracing::error!(%error, "refusing a call that cannot be audited");
    ErrorData::internal_error(
        "the gateway cannot record this call in its audit trail right now; retry later",
        None,
    )
}

/// Ends a record for a request refused before it reached a connector.
fn refused(record: CallRecord, error: ErrorData) -> ErrorData {
    refused_as(record, Outcome::Denied, error)
}

/// Ends a record for a request a rate limit stopped before it reached a connector.
fn limited(record: CallRecord, error: ErrorData) -> ErrorData {
    refused_as(record, Outcome::RateLimited, error)
}

fn refused_as(record: CallRecord, outcome: Outcome, error: ErrorData) -> ErrorData {
    match record.finish(outcome, Some(&error), 0) {
        Ok(()) => error,
        Err(unkept) => unrecorded(unkept),
    }
}

/// Ends a record for a request that inspection refused (its input, or its result).
fn blocked(record: CallRecord, error: ErrorData) -> ErrorData {
    match record.finish(Outcome::BlockedByDlp, Some(&error), 0) {
        Ok(()) => error,
        Err(unkept) => unrecorded(unkept),
    }
}

/// Classifies a failed forward: the client hung up, the downstream failed, or the downstream said no.
fn failure_outcome(context: &impl Inbound, error: &ErrorData) -> Outcome {
    if consent::is_consent_error(error) {
        Outcome::ConsentRequired
    } else if context.is_cancelled() {
        Outcome::Cancelled
    } else {
        Outcome::UpstreamError
    }
}

/// Writes a finished request's event; the answer is withheld when the event cannot be kept.
///
/// `describe` gives a successful answer's outcome and, when the event is kept, its size in bytes
/// (measuring means serializing the result once more, which an unaudited edge skips).
fn settle<T>(
    record: CallRecord,
    answer: Result<T, ErrorData>,
    context: &impl Inbound,
    describe: impl FnOnce(&T, bool) -> (Outcome, u64),
) -> Result<T, ErrorData> {
    let kept = match &answer {
        Ok(result) => {
            let (outcome, bytes) = describe(result, record.is_recording());
            record.finish(outcome, None, bytes)
        }
        Err(error) => record.finish(failure_outcome(context, error), Some(error), 0),
    };
    kept.map_err(unrecorded)?;
    answer
}

/// Returns the JSON size of a result, as the audit record reports it, when `measured`.
fn json_size(value: &impl serde::Serialize, measured: bool) -> u64 {
    if !measured {
        return 0;
    }
    crate::audit::json_len(value)
}

/// Refuses a tool the catalogue does not list, saying which members may be hiding it: those
/// that are down and those whose listing failed.
fn unlisted_tool(name: &str, unavailable: &[&str], incomplete: &[&str]) -> ErrorData {
    let mut reasons = Vec::new();
    if !unavailable.is_empty() {
        let (subject, verb, its) = grammar(unavailable);
        reasons.push(format!(
            "{subject} {verb} unavailable: {its} tools are listed again once back"
        ));
    }
    if !incomplete.is_empty() {
        let (subject, _, its) = grammar(incomplete);
        reasons.push(format!(
            "{subject} could not list all {its} items: listed again shortly"
        ));
    }
    if reasons.is_empty() {
        return unknown("tool", name);
    }
    ErrorData::invalid_params(
        format!("unknown tool `{name}` ({})", reasons.join("; ")),
        None,
    )
}

/// Names connectors as the subject of a sentence: "connector `a`" or "connectors `a`, `b`",
/// with the verb and possessive that agree.
fn grammar(connectors: &[&str]) -> (String, &'static str, &'static str) {
    let named = connectors
        .iter()
        .map(|connector| format!("`{connector}`"))
        .collect::<Vec<_>>()
        .join(", ");
    match connectors {
        [_] => (format!("connector {named}"), "is", "its"),
        _ => (format!("connectors {named}"), "are", "their"),
    }
}

fn unknown(kind: &str, name: &str) -> ErrorData {
    ErrorData::invalid_params(format!("unknown {kind} `{name}`"), None)
}

fn unexpected(method: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("connector answered `{method}` with the wrong result type"),
        None,
    )
}

impl ServerHandler for Proxy {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_logging()
            .enable_completions()
            .build();
        let mut info = ServerConfig::new(capabilities);
        info.server_info = Implementation::new(
            format!("gatehouse/{}", self.server.name()),
            env!("CARGO_PKG_VERSION"),
        );
        info.instructions = self.server.description().map(str::to_owned);
        info.protocol_version = ProtocolVersion::LATEST;
        info
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.server.cached_tool(name)
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.server.listeners().add_session(context.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(self.list_tools_for(&context).await)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let forwarder = &self.forwarder;
        let context = &context;
        self.call_tool_by(request, context, |member, downstream, mask| async move {
            let mut context = context.clone();
            if let Some(mask) = mask {
                context.extensions.insert(mask);
            }
            let first = ClientRequest::CallToolRequest(CallToolRequest::new(downstream.clone()));
            forwarder
                .rounds(member, &context, first, |responses, state| {
                    let mut params = downstream.clone();
                    params.input_responses = Some(responses);
                    params.request_state = state;
                    ClientRequest::CallToolRequest(CallToolRequest::new(params))
                })
                .await
        })
        .await
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(self.list_prompts_for(&context).await)
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let mut record = self.begin("prompts/get", None, &context).await?;
        record.arguments(request.arguments.as_ref());
        let snapshot = self.server.snapshot().await;
        let Some((member, original)) = snapshot.prompt_routes.get(&request.name).cloned() else {
            record.not_listed();
            return Err(refused(record, unknown("prompt", &request.name)));
        };
        record.prompt(&request.name, self.connector_name(member), &original);
        if let Some((evaluator, subject)) = self.access.subject(&context) {
            let verdict = subject.decide(
                &evaluator,
                Action::GetPrompt,
                self.server.name(),
                self.connector_name(member),
                Item::Prompt {
                    name: request.name.clone(),
                },
                request.arguments.as_ref(),
            );
            record.decision((&verdict.decision).into());
            if let Some(error) = verdict.refusal {
                return Err(refused(record, error));
            }
        }
        let charge = Charge::prompt(self.server.name(), &request.name);
        if let Err(error) = self.quotas.admit(&context, charge).await {
            return Err(limited(record, error));
        }
        let mut downstream = request;
        let exposed = std::mem::replace(&mut downstream.name, original);
        let target = self.target(member, None);
        let item = inspect::Item {
            kind: "prompt",
            name: &exposed,
        };
        let mut record = self
            .screen_input(record, &target, item, &mut downstream.arguments)
            .await?;
        let first = ClientRequest::GetPromptRequest(GetPromptRequest::new(downstream.clone()));
        let result = self
            .forwarder
            .rounds(member, &context, first, |responses, state| {
                let mut params = downstream.clone();
                params.input_responses = Some(responses);
                params.request_state = state;
                ClientRequest::GetPromptRequest(GetPromptRequest::new(params))
            })
            .instrument(record.span().clone())
            .await;
        let answer = match result {
            Ok(ServerResult::GetPromptResult(mut result)) => {
                record = self
                    .screen_output(record, &target, item, &mut result)
                    .await?;
                Ok(GetPromptResponse::Complete(result))
            }
            Ok(ServerResult::InputRequiredResult(result)) => {
                Ok(GetPromptResponse::InputRequired(result))
            }
            Ok(_) => Err(unexpected("prompts/get")),
            Err(error) => Err(error),
        };
        settle(
            record,
            answer,
            &context,
            |response, measured| match response {
                GetPromptResponse::Complete(result) => {
                    (Outcome::Success, json_size(result, measured))
                }
                GetPromptResponse::InputRequired(result) => {
                    (Outcome::Success, json_size(result, measured))
                }
                _ => (Outcome::Success, 0),
            },
        )
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(self.list_resources_for(&context).await)
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        Ok(self.list_resource_templates_now().await)
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let mut record = self.begin("resources/read", None, &context).await?;
        let snapshot = self.server.snapshot().await;
        let Some(member) = self.server.resource_member(&snapshot, &request.uri) else {
            record.not_listed();
            let error =
                ErrorData::resource_not_found(format!("unknown resource `{}`", request.uri), None);
            return Err(refused(record, error));
        };
        record.resource(&request.uri, self.connector_name(member));
        if let Some((evaluator, subject)) = self.access.subject(&context) {
            let verdict = subject.decide(
                &evaluator,
                Action::ReadResource,
                self.server.name(),
                self.connector_name(member),
                Item::Resource {
                    uri: request.uri.clone(),
                },
                None,
            );
            record.decision((&verdict.decision).into());
            if let Some(error) = verdict.refusal {
                return Err(refused(record, error));
            }
        }
        let charge = Charge::resource(self.server.name(), &request.uri);
        if let Err(error) = self.quotas.admit(&context, charge).await {
            return Err(limited(record, error));
        }
        let first = ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request.clone()));
        let result = self
            .forwarder
            .rounds(member, &context, first, |responses, state| {
                let mut params = request.clone();
                params.input_responses = Some(responses);
                params.request_state = state;
                ClientRequest::ReadResourceRequest(ReadResourceRequest::new(params))
            })
            .instrument(record.span().clone())
            .await;
        let answer = match result {
            Ok(ServerResult::ReadResourceResult(mut result)) => {
                let item = inspect::Item {
                    kind: "resource",
                    name: &request.uri,
                };
                record = self
                    .screen_output(record, &self.target(member, None), item, &mut result)
                    .await?;
                Ok(ReadResourceResponse::Complete(result))
            }
            Ok(ServerResult::InputRequiredResult(result)) => {
                Ok(ReadResourceResponse::InputRequired(result))
            }
            Ok(_) => Err(unexpected("resources/read")),
            Err(error) => Err(error),
        };
        settle(
            record,
            answer,
            &context,
            |response, measured| match response {
                ReadResourceResponse::Complete(result) => {
                    (Outcome::Success, json_size(result, measured))
                }
                ReadResourceResponse::InputRequired(result) => {
                    (Outcome::Success, json_size(result, measured))
                }
                _ => (Outcome::Success, 0),
            },
        )
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let snapshot = self.server.snapshot().await;
        let member = self
            .server
            .resource_member(&snapshot, &request.uri)
            .ok_or_else(|| {
                ErrorData::resource_not_found(format!("unknown resource `{}`", request.uri), None)
            })?;
        let uri = request.uri.clone();
        self.forwarder
            .once(
                member,
                &context,
                ClientRequest::SubscribeRequest(SubscribeRequest::new(request)),
            )
            .await?;
        self.server.subscribe(&uri, self.session, context.peer);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.server.unsubscribe(&request.uri, self.session);
        let snapshot = self.server.snapshot().await;
        if let Some(member) = self.server.resource_member(&snapshot, &request.uri) {
            self.forwarder
                .once(
                    member,
                    &context,
                    ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(request)),
                )
                .await?;
        }
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(requested.clone())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        vmcp::listen(&self.server, context.sink().clone());
        context.cancelled().await;
        Ok(())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let snapshot = self.server.snapshot().await;
        let mut downstream = request;
        let member = match &mut downstream.r#ref {
            Reference::Prompt(prompt) => {
                let (member, original) = snapshot
                    .prompt_routes
                    .get(&prompt.name)
                    .cloned()
                    .ok_or_else(|| unknown("prompt", &prompt.name))?;
                prompt.name = original;
                member
            }
            Reference::Resource(resource) => self
                .server
                .resource_member(&snapshot, &resource.uri)
                .ok_or_else(|| unknown("resource template", &resource.uri))?,
            _ => {
                return Err(ErrorData::invalid_params(
                    "unsupported completion reference",
                    None,
                ));
            }
        };
        match self
            .forwarder
            .once(
                member,
                &context,
                ClientRequest::CompleteRequest(CompleteRequest::new(downstream)),
            )
            .await?
        {
            ServerResult::CompleteResult(result) => Ok(result),
            _ => Err(unexpected("completion/complete")),
        }
    }

    /// Answers a request rmcp could not parse: an unknown method, or parameters that do not
    /// fit a method MCP defines.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, ErrorData> {
        Err(unparsed::refuse(
            self.server.name(),
            &request.method,
            request.params,
            context.is_modern(),
        ))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        self.forwarder.set_session_log_level(request.level);
        for member in 0..self.server.members().len() {
            let request = ClientRequest::SetLevelRequest(SetLevelRequest::new(request.clone()));
            if let Err(error) = self.forwarder.once(member, &context, request).await {
                tracing::debug!(member, %error, "connector did not accept logging/setLevel");
            }
        }
        Ok(())
    }
}
