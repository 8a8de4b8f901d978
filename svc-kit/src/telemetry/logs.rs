//! The log layer, in two styles. JSON: one object per line with the event's fields, the fields
//! of the span it happened in and that span's OpenTelemetry ids, so a log line leads to its
//! trace. Readable (`gatehouse up` on a terminal): `time LEVEL span{k=v}:…: target: message k=v`.
//!
//! Written here rather than taken from `json-subscriber` and `tracing_subscriber::fmt` (which
//! wrote the same lines before): those keep every span's fields, formatted (a map of
//! `serde_json::Value`s and its serialization; a `String` through `fmt`), built on the creation of
//! every span whether or not a line is ever logged inside it. Requests log nothing when all goes
//! well, yet that was 19,000 (JSON) and 18,000 (readable) instructions of a call through edge
//! (~250,000). Here a span's fields are written once, straight into one buffer, which the rare
//! line logged inside the span copies.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::OnceLock;
use std::time::SystemTime;

use opentelemetry::trace::TraceContextExt as _;
use serde::Serialize;
use tracing::dispatcher::WeakDispatch;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Style {
    /// One JSON object per line, for machines.
    Json,
    /// One line of text per event, for people; the level coloured when `ansi`.
    Readable {
        /// Whether the output is a terminal that shows ANSI colours.
        ansi: bool,
    },
}

/// Writes each event as one line, in `style`, to the writers `W` makes.
pub(crate) struct LogLayer<W> {
    make_writer: W,
    style: Style,
    /// The subscriber this layer is part of, which knows each span's OpenTelemetry context;
    /// weak, as the subscriber owns the layer.
    dispatch: OnceLock<WeakDispatch>,
}

impl<W> LogLayer<W> {
    /// Creates the layer writing lines in `style` to `make_writer`'s writers.
    pub(crate) fn new(make_writer: W, style: Style) -> Self {
        Self {
            make_writer,
            style,
            dispatch: OnceLock::new(),
        }
    }
}

/// A span's fields as written when it was created: in JSON, the members of an object without
/// the braces (`"name":"…","k":v`); readable, ` k=v` pairs.
struct SpanFields(Vec<u8>);

impl<S, W> tracing_subscriber::Layer<S> for LogLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: for<'w> MakeWriter<'w> + 'static,
{
    fn on_register_dispatch(&self, subscriber: &tracing::Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut members = Vec::with_capacity(256);
        if self.style == Style::Json {
            members.extend_from_slice(b"\"name\":");
            push_json(&mut members, attrs.metadata().name());
        }
        attrs.record(&mut Members::new(&mut members, self.style));
        span.extensions_mut().insert(SpanFields(members));
    }

    /// Adds recorded values to the span's fields. In JSON a later value replaces an earlier one
    /// of the same name; rare (request spans give every field at creation), so done plainly.
    /// Readable, it follows the earlier one, as `tracing_subscriber::fmt` shows it.
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let Some(SpanFields(members)) = extensions.get_mut::<SpanFields>() else {
            return;
        };
        if self.style != Style::Json {
            values.record(&mut Members::new(members, self.style));
            return;
        }
        let mut recorded = Vec::new();
        values.record(&mut Members::new(&mut recorded, self.style));
        let mut merged = object_of(members);
        merged.extend(object_of(&recorded));
        let Ok(text) = serde_json::to_vec(&merged) else {
            return;
        };
        members.clear();
        members.extend_from_slice(&text[1..text.len() - 1]);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut line = Vec::with_capacity(512);
        match self.style {
            Style::Json => self.json_line(&mut line, event, &ctx),
            Style::Readable { ansi } => readable_line(&mut line, event, &ctx, ansi),
        }
        let _ = self
            .make_writer
            .make_writer_for(event.metadata())
            .write_all(&line);
    }
}

impl<W> LogLayer<W> {
    /// Writes `event` as a JSON object and a newline to `line`.
    fn json_line<S>(&self, line: &mut Vec<u8>, event: &Event<'_>, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let metadata = event.metadata();
        line.extend_from_slice(b"{\"timestamp\":");
        push_json(line, &now());
        line.extend_from_slice(b",\"level\":");
        push_json(line, metadata.level().as_str());
        line.extend_from_slice(b",\"target\":");
        push_json(line, metadata.target());
        line.extend_from_slice(b",\"fields\":{");
        let mut fields = Vec::with_capacity(128);
        event.record(&mut Members::new(&mut fields, self.style));
        // Every member is written with a leading comma; the first one's is dropped.
        line.extend_from_slice(fields.strip_prefix(b",").unwrap_or(&fields));
        line.push(b'}');
        if let Some(span) = ctx.event_span(event) {
            if let Some(SpanFields(members)) = span.extensions().get::<SpanFields>() {
                line.extend_from_slice(b",\"span\":{");
                line.extend_from_slice(members);
                line.push(b'}');
            }
            if let Some((trace_id, span_id)) = self.ids(&span.id()) {
                let _ = write!(
                    line,
                    ",\"openTelemetry\":{{\"traceId\":\"{trace_id}\",\"spanId\":\"{span_id}\"}}"
                );
            }
        }
        line.extend_from_slice(b"}\n");
    }

    /// Returns the OpenTelemetry trace and span id of span `id`, when it has a valid context.
    fn ids(
        &self,
        id: &Id,
    ) -> Option<(opentelemetry::trace::TraceId, opentelemetry::trace::SpanId)> {
        let dispatch = self.dispatch.get()?.upgrade()?;
        let context = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
        let span = context.span();
        let span_context = span.span_context();
        span_context
            .is_valid()
            .then(|| (span_context.trace_id(), span_context.span_id()))
    }
}

/// Writes `event` as one line of text to `line`: time, level, the spans it happened in with
/// their fields (outermost first), target, message and fields.
fn readable_line<S>(line: &mut Vec<u8>, event: &Event<'_>, ctx: &Context<'_, S>, ansi: bool)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let level = event.metadata().level();
    let colour = match *level {
        tracing::Level::ERROR => "31",
        tracing::Level::WARN => "33",
        tracing::Level::INFO => "32",
        tracing::Level::DEBUG => "34",
        tracing::Level::TRACE => "35",
    };
    let level = level.as_str();
    let _ = match ansi {
        true => write!(line, "{} \x1b[{colour}m{level:>5}\x1b[0m ", now()),
        false => write!(line, "{} {level:>5} ", now()),
    };
    for span in ctx
        .event_scope(event)
        .into_iter()
        .flat_map(|scope| scope.from_root())
    {
        line.extend_from_slice(span.name().as_bytes());
        if let Some(SpanFields(fields)) = span.extensions().get::<SpanFields>()
            && let Some(fields) = fields.strip_prefix(b" ")
        {
            line.push(b'{');
            line.extend_from_slice(fields);
            line.push(b'}');
        }
        line.push(b':');
    }
    if line.last() == Some(&b':') {
        line.push(b' ');
    }
    line.extend_from_slice(event.metadata().target().as_bytes());
    line.push(b':');
    event.record(&mut Members::new(line, Style::Readable { ansi }));
    line.push(b'\n');
}

/// Returns the time now as RFC 3339 UTC with microseconds.
fn now() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

/// Reads members written by [`Members`] back as an object (for the rare merge on record).
fn object_of(members: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    let mut text = Vec::with_capacity(members.len() + 2);
    text.push(b'{');
    text.extend_from_slice(members.strip_prefix(b",").unwrap_or(members));
    text.push(b'}');
    serde_json::from_slice(&text).unwrap_or_default()
}

/// Appends `value` as JSON; values written here (strings, numbers, booleans) always serialize.
fn push_json(out: &mut Vec<u8>, value: &(impl Serialize + ?Sized)) {
    let _ = serde_json::to_writer(out, value);
}

/// Writes each recorded field: `,"name":value` in JSON; ` name=value` readable (strings quoted,
/// the message bare), as `tracing_subscriber::fmt` writes them.
struct Members<'a> {
    out: &'a mut Vec<u8>,
    json: bool,
}

impl<'a> Members<'a> {
    fn new(out: &'a mut Vec<u8>, style: Style) -> Self {
        Self {
            out,
            json: style == Style::Json,
        }
    }

    fn member(&mut self, field: &Field, value: &(impl Serialize + std::fmt::Debug + ?Sized)) {
        if self.json {
            self.out.push(b',');
            push_json(self.out, field.name());
            self.out.push(b':');
            push_json(self.out, value);
        } else {
            let _ = write!(self.out, " {}={value:?}", field.name());
        }
    }
}

impl Visit for Members<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.member(field, &value);
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.member(field, &value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.member(field, &value);
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.member(field, &value);
    }

    /// Readable, a value of printable ASCII without quotes or backslashes is written between
    /// quotes as it is: what `{:?}` writes for it, without formatting it one character at a
    /// time (a request span's strings went through `fmt` on every call).
    fn record_str(&mut self, field: &Field, value: &str) {
        let plain = |byte: &u8| matches!(byte, b' '..=b'~') && !matches!(byte, b'"' | b'\\');
        if self.json || !value.as_bytes().iter().all(plain) {
            self.member(field, value);
            return;
        }
        self.out.push(b' ');
        self.out.extend_from_slice(field.name().as_bytes());
        self.out.extend_from_slice(b"=\"");
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if self.json {
            let mut text = String::new();
            let _ = write!(text, "{value:?}");
            self.member(field, &text);
        } else if field.name() == "message" {
            let _ = write!(self.out, " {value:?}");
        } else {
            let _ = write!(self.out, " {}={value:?}", field.name());
        }
    }
}
