//! What an SRE sees of each MCP request: its span (with the MCP semantic-convention attributes)
//! and its request metrics per virtual server, method, tool and connector.
//!
//! rmcp runs a session's handlers in tasks spawned under the request that opened the session, so
//! the span of a later request would land in the wrong trace. The MCP endpoint therefore leaves the
//! trace context of each HTTP request in the request's extensions ([`stash_trace_context`]) and
//! the MCP span is parented on it explicitly.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use opentelemetry::trace::Status;
use proto::audit::v1::Outcome;

use crate::audit::Spool;
use crate::inbound::Inbound;
use rmcp::model::{ProtocolVersion, RequestId};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The OpenTelemetry context of the HTTP request an MCP message arrived on.
#[derive(Debug, Clone)]
pub struct HttpTraceContext(opentelemetry::Context);

/// One MCP request as telemetry sees it: its span and the labels its metrics are recorded under.
#[derive(Debug)]
pub struct Observed {
    span: tracing::Span,
    virtual_server: String,
    method: &'static str,
    item: String,
    connector: String,
}

/// The request instrument, made once (after telemetry is installed) and shared by every request.
/// Its count is the number of requests answered: a counter beside it would say the same again
/// and cost every request a second sort and hash of its labels.
static DURATION: LazyLock<Histogram<f64>> = LazyLock::new(|| {
    svc_kit::telemetry::metrics::meter("edge-svc")
        .f64_histogram("gatehouse.edge.request.duration")
        .with_unit("s")
        .with_description(
            "Time from a request's decision start to its answer, by virtual server, method, item, \
             connector and outcome; its count is the requests answered",
        )
        .with_boundaries(svc_kit::telemetry::metrics::LATENCY_BOUNDS.to_vec())
        .build()
});

/// Reports the audit spool's backlog (bytes written, not yet acknowledged by audit-svc) as a
/// gauge read at each collection, so the hot path pays nothing for it.
pub fn watch_spool(spool: Spool) {
    svc_kit::telemetry::metrics::meter("edge-svc")
        .u64_observable_gauge("gatehouse.edge.audit.spool.backlog")
        .with_unit("By")
        .with_description("Audit events spooled at edge and not yet acknowledged by audit-svc")
        .with_callback(move |observer| observer.observe(spool.backlog(), &[]))
        .build();
}

/// Calls that waited for the audit trail to catch up before they ran ([`crate::audit::Recorder::paced`]).
static PACED: LazyLock<Counter<u64>> = LazyLock::new(|| {
    svc_kit::telemetry::metrics::meter("edge-svc")
        .u64_counter("gatehouse.edge.audit.paced")
        .with_description(
            "Calls that waited for audit-svc's acknowledgements because the audit spool's backlog \
             was past its pacing mark (the trail behind the data plane, not away)",
        )
        .build()
});

/// Counts one call that waited for the audit trail.
pub fn count_paced() {
    PACED.add(1, &[]);
}

/// Requests refused because rmcp could not parse them: an unknown method, or params that do not
/// fit the method. They reach no tool, so neither the request histogram nor the audit trail
/// sees them, and rmcp's own warning for each is filtered out of the logs.
static UNPARSED: LazyLock<Counter<u64>> = LazyLock::new(|| {
    svc_kit::telemetry::metrics::meter("edge-svc")
        .u64_counter("gatehouse.edge.request.unparsed")
        .with_description(
            "Requests refused as an unknown method or with params that do not fit their method, \
             by virtual server and JSON-RPC error",
        )
        .build()
});

/// Counts one request refused as unparsed; `error` is `method_not_found` or `invalid_params`
/// (the client's method name is no label: a client could mint any number of them).
pub fn count_unparsed(virtual_server: &str, error: &'static str) {
    UNPARSED.add(
        1,
        &[
            KeyValue::new("virtual_server", virtual_server.to_owned()),
            KeyValue::new("error.type", error),
        ],
    );
}

/// Counts one virtual server's open sessions as (resting, awake), or `None` once they are gone.
pub type SessionCount = Box<dyn Fn() -> Option<(u64, u64)> + Send + Sync>;

/// The sessions of every served virtual server, counted at each collection.
static SESSIONS: LazyLock<Mutex<Vec<(String, SessionCount)>>> = LazyLock::new(|| {
    svc_kit::telemetry::metrics::meter("edge-svc")
        .u64_observable_gauge("gatehouse.edge.sessions")
        .with_description(
            "Open session-era MCP sessions by virtual server and state: a resting session holds \
             no rmcp worker (about 100 KiB each) until a request only rmcp answers wakes it",
        )
        .with_callback(|observer| {
            let mut counted: BTreeMap<String, (u64, u64)> = BTreeMap::new();
            SESSIONS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|(server, count)| {
                    let Some((resting, awake)) = count() else {
                        return false;
                    };
                    let total = counted.entry(server.clone()).or_default();
                    *total = (total.0 + resting, total.1 + awake);
                    true
                });
            for (server, (resting, awake)) in counted {
                for (state, count) in [("resting", resting), ("awake", awake)] {
                    let labels = [
                        KeyValue::new("virtual_server", server.clone()),
                        KeyValue::new("state", state),
                    ];
                    observer.observe(count, &labels);
                }
            }
        })
        .build();
    Mutex::default()
});

/// Reports the sessions of `virtual_server` as counted by `count` until it answers `None`
/// (several endpoints of one name, an old one still ending its sessions, add up).
pub fn watch_sessions(virtual_server: &str, count: SessionCount) {
    SESSIONS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push((virtual_server.to_owned(), count));
}

/// Leaves the current (HTTP request) span's trace context in the request for the MCP handler.
///
/// Called by the MCP endpoint itself, the one reader, rather than as a middleware layer, which
/// would clone the router's service and box a future on every request to every route.
pub fn stash_trace_context(request: &mut Request<Body>) {
    let context = tracing::Span::current().context();
    request.extensions_mut().insert(HttpTraceContext(context));
}

/// Runs `work` with the trace context of the HTTP request `context` came on made current, so
/// what it reads of the current trace (the audit record's trace id) is that request's, not the
/// session-opening request's that rmcp's handler task runs under.
pub fn in_request_trace<R>(context: &impl Inbound, work: impl FnOnce() -> R) -> R {
    let stashed = context
        .parts()
        .and_then(|parts| parts.extensions.get::<HttpTraceContext>());
    match stashed {
        Some(trace) => {
            let _attached = trace.0.clone().attach();
            work()
        }
        None => work(),
    }
}

impl Observed {
    /// Opens the span of `method` on `virtual_server` (calling `tool`, when it is a tool call),
    /// child of the HTTP request it came on. Everything the request says of itself is given at
    /// the start: each later `record` makes the JSON log layer serialize all the span's fields
    /// again, so what is learnt later goes to the OpenTelemetry span alone.
    pub fn begin(
        virtual_server: &str,
        method: &'static str,
        tool: Option<&str>,
        context: &impl Inbound,
    ) -> Self {
        let parts = context.parts();
        let session = parts
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|value| value.to_str().ok());
        let version = context.protocol_version();
        let span = tracing::info_span!(
            "mcp.request",
            otel.name = %SpanName(method, tool),
            otel.kind = "server",
            mcp.method.name = method,
            mcp.session.id = session,
            mcp.protocol.version = version.as_ref().map(ProtocolVersion::as_str),
            jsonrpc.request.id = %RequestIdField(context.request_id()),
            gen_ai.operation.name = tool.map(|_| "execute_tool"),
            gen_ai.tool.name = tool,
            network.transport = "tcp",
            network.protocol.name = "http",
            gatehouse.virtual_server = virtual_server,
        );
        if let Some(parent) = parts.and_then(|parts| parts.extensions.get::<HttpTraceContext>()) {
            // Fails only when no OpenTelemetry layer is installed, where there is no trace.
            let _ = span.set_parent(parent.0.clone());
        }
        Self {
            span,
            ..Self::unobserved(virtual_server, method)
        }
    }

    /// Returns an observation without a span, for records made outside an MCP request.
    pub fn unobserved(virtual_server: &str, method: &'static str) -> Self {
        Self {
            span: tracing::Span::none(),
            virtual_server: virtual_server.to_owned(),
            method,
            item: String::new(),
            connector: String::new(),
        }
    }

    /// Returns the request's span, under which its downstream work runs.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Names the tool called or prompt fetched, or (with an empty name, as URIs are unbounded
    /// labels) the resource read, and the connector that serves it.
    pub fn item(&mut self, name: &str, connector: &str) {
        self.span
            .set_attribute("gatehouse.connector", connector.to_owned());
        name.clone_into(&mut self.item);
        connector.clone_into(&mut self.connector);
    }

    /// Ends the request: counts it and its latency under its labels, and closes the span.
    pub fn finish(self, outcome: Outcome, elapsed: Duration) {
        let outcome = outcome_label(outcome);
        self.span.set_attribute("gatehouse.outcome", outcome);
        if !matches!(outcome, "success" | "tool_error") {
            self.span.set_status(Status::error(""));
            self.span.set_attribute("error.type", outcome);
        }
        let labels = [
            KeyValue::new("virtual_server", self.virtual_server),
            KeyValue::new("method", self.method),
            KeyValue::new("item", self.item),
            KeyValue::new("connector", self.connector),
            KeyValue::new("outcome", outcome),
        ];
        DURATION.record(elapsed.as_secs_f64(), &labels);
    }
}

/// Writes a span's name: the method, followed by the tool's name in a tool call.
struct SpanName<'a>(&'static str, Option<&'a str>);

impl std::fmt::Display for SpanName<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.1 {
            Some(tool) => write!(f, "{} {tool}", self.0),
            None => f.write_str(self.0),
        }
    }
}

/// Writes a JSON-RPC id without quotes, as `jsonrpc.request.id` wants it.
struct RequestIdField<'a>(&'a RequestId);

impl std::fmt::Display for RequestIdField<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            RequestId::Number(number) => write!(f, "{number}"),
            RequestId::String(text) => f.write_str(text),
        }
    }
}

/// Returns the metric label of an outcome: fixed, lowercase, bounded.
fn outcome_label(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Unspecified => "unspecified",
        Outcome::Success => "success",
        Outcome::ToolError => "tool_error",
        Outcome::Denied => "denied",
        Outcome::RateLimited => "rate_limited",
        Outcome::BlockedByDlp => "blocked_by_dlp",
        Outcome::ConsentRequired => "consent_required",
        Outcome::UpstreamError => "upstream_error",
        Outcome::Timeout => "timeout",
        Outcome::Cancelled => "cancelled",
        Outcome::Unauthenticated => "unauthenticated",
        Outcome::InternalError => "internal_error",
    }
}
