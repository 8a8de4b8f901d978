//! What an SRE sees of each MCP request: its span (with the MCP semantic-convention attributes)
//! and its request metrics per virtual server, method, tool and connector.
//!
//! rmcp runs a session's handlers in tasks spawned under the request that opened the session, so
//! the span of a later request would land in the wrong trace. The HTTP layer therefore leaves the
//! trace context of each HTTP request in the request's extensions ([`stash_trace_context`]) and
//! the MCP span is parented on it explicitly.

use std::sync::LazyLock;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram};
use proto::audit::v1::Outcome;

use crate::audit::Spool;
use crate::inbound::Inbound;
use rmcp::model::{ProtocolVersion, RequestId};
use tracing::field::Empty;
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

/// The request instruments, made once (after telemetry is installed) and shared by every request.
struct Instruments {
    requests: Counter<u64>,
    duration: Histogram<f64>,
}

static INSTRUMENTS: LazyLock<Instruments> = LazyLock::new(|| {
    let meter = svc_kit::telemetry::metrics::meter("edge-svc");
    Instruments {
        requests: meter
            .u64_counter("gatehouse.edge.requests")
            .with_description(
                "MCP requests answered, by virtual server, method, item, connector and outcome",
            )
            .build(),
        duration: meter
            .f64_histogram("gatehouse.edge.request.duration")
            .with_unit("s")
            .with_description("Time from a request's decision start to its answer")
            .with_boundaries(svc_kit::telemetry::metrics::LATENCY_BOUNDS.to_vec())
            .build(),
    }
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

/// Leaves the current (HTTP request) span's trace context in the request for the MCP handler.
pub async fn stash_trace_context(mut request: Request<Body>, next: Next) -> Response {
    let context = tracing::Span::current().context();
    request.extensions_mut().insert(HttpTraceContext(context));
    next.run(request).await
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
    /// Opens the span of `method` on `virtual_server`, child of the HTTP request it came on.
    pub fn begin(virtual_server: &str, method: &'static str, context: &impl Inbound) -> Self {
        let parts = context.parts();
        let session = parts
            .and_then(|parts| parts.headers.get("mcp-session-id"))
            .and_then(|value| value.to_str().ok());
        let version = context.protocol_version();
        let span = tracing::info_span!(
            "mcp.request",
            otel.name = method,
            otel.kind = "server",
            otel.status_code = Empty,
            mcp.method.name = method,
            mcp.session.id = session,
            mcp.protocol.version = version.as_ref().map(ProtocolVersion::as_str),
            jsonrpc.request.id = %RequestIdField(context.request_id()),
            gen_ai.operation.name = Empty,
            gen_ai.tool.name = Empty,
            network.transport = "tcp",
            network.protocol.name = "http",
            gatehouse.virtual_server = virtual_server,
            gatehouse.connector = Empty,
            gatehouse.outcome = Empty,
            error.type = Empty,
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

    /// Names the tool called and the connector that serves it.
    pub fn tool(&mut self, exposed: &str, connector: &str) {
        record_all(
            &self.span,
            [
                ("otel.name", &format_args!("{} {exposed}", self.method)),
                ("gen_ai.tool.name", &exposed),
                ("gen_ai.operation.name", &"execute_tool"),
                ("gatehouse.connector", &connector),
            ],
        );
        self.name(exposed, connector);
    }

    /// Names the prompt fetched, or (with an empty name, as URIs are unbounded labels) the
    /// resource read, and the connector that serves it.
    pub fn item(&mut self, name: &str, connector: &str) {
        self.span.record("gatehouse.connector", connector);
        self.name(name, connector);
    }

    fn name(&mut self, item: &str, connector: &str) {
        item.clone_into(&mut self.item);
        connector.clone_into(&mut self.connector);
    }

    /// Ends the request: counts it and its latency under its labels, and closes the span.
    pub fn finish(self, outcome: Outcome, elapsed: Duration) {
        let outcome = outcome_label(outcome);
        if matches!(outcome, "success" | "tool_error") {
            self.span.record("gatehouse.outcome", outcome);
        } else {
            record_all(
                &self.span,
                [
                    ("gatehouse.outcome", &outcome),
                    ("otel.status_code", &"ERROR"),
                    ("error.type", &outcome),
                ],
            );
        }
        let labels = [
            KeyValue::new("virtual_server", self.virtual_server),
            KeyValue::new("method", self.method),
            KeyValue::new("item", self.item),
            KeyValue::new("connector", self.connector),
            KeyValue::new("outcome", outcome),
        ];
        let instruments = &*INSTRUMENTS;
        instruments.requests.add(1, &labels);
        instruments.duration.record(elapsed.as_secs_f64(), &labels);
    }
}

/// Records `values` on `span` in one step: every `record` makes each layer redo its work for
/// the span (the JSON log layer serializes all of the span's fields again), so a request
/// records once per step rather than once per field. Names the span does not declare are
/// skipped, as `Span::record` skips them.
fn record_all<const N: usize>(span: &tracing::Span, values: [(&str, &dyn tracing::Value); N]) {
    let Some(metadata) = span.metadata() else {
        return;
    };
    let fields = metadata.fields();
    let Some(first) = fields.iter().next() else {
        return;
    };
    // A value without a field is left out: it stands on any field with no value to record.
    let found = values.map(|(name, value)| match fields.field(name) {
        Some(field) => (field, Some(value)),
        None => (first.clone(), None),
    });
    let pairs = found.each_ref().map(|(field, value)| (field, *value));
    span.record_all(&fields.value_set(&pairs));
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};

    use super::*;

    /// One `record` as a layer received it: each field's name and debug value.
    type Recorded = Vec<(String, String)>;

    /// Keeps every `record` a span receives.
    #[derive(Clone, Default)]
    struct Records(Arc<Mutex<Vec<Recorded>>>);

    struct Fields(Recorded);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
    }

    impl<S: tracing::Subscriber> Layer<S> for Records {
        fn on_new_span(&self, _: &Attributes<'_>, _: &Id, _: Context<'_, S>) {}

        fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
            let mut fields = Fields(Vec::new());
            values.record(&mut fields);
            self.0.lock().expect("records").push(fields.0);
        }
    }

    #[test]
    fn fields_recorded_together_reach_the_layers_in_one_record_and_undeclared_names_are_left_out() {
        let records = Records::default();
        let subscriber = tracing_subscriber::registry().with(records.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", otel.name = "tools/call", outcome = Empty);
            record_all(
                &span,
                [
                    ("otel.name", &format_args!("tools/call {}", "echo")),
                    ("not.declared", &"lost"),
                    ("outcome", &"denied"),
                ],
            );
        });
        let records = records.0.lock().expect("records");
        assert_eq!(
            *records,
            vec![vec![
                ("otel.name".to_owned(), "tools/call echo".to_owned()),
                ("outcome".to_owned(), "\"denied\"".to_owned()),
            ]]
        );
    }
}
