//! The JSON log layer: one object per line with the event's fields, the fields of the span it
//! happened in and that span's OpenTelemetry ids, so a log line leads to its trace.
//!
//! Written here rather than taken from `json-subscriber` (which wrote the same lines before):
//! that layer keeps every span's fields as a map of `serde_json::Value`s and serializes the map,
//! on the creation of every span, whether or not a line is ever logged inside it. Requests log
//! nothing when all goes well, yet that was 19,000 instructions of a 250,000-instruction call
//! through edge. Here a span's fields are written once as JSON text, which the rare line logged
//! inside the span copies.

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

/// Writes each event as one JSON object per line to the writers `W` makes.
pub(crate) struct JsonLog<W> {
    make_writer: W,
    /// The subscriber this layer is part of, which knows each span's OpenTelemetry context;
    /// weak, as the subscriber owns the layer.
    dispatch: OnceLock<WeakDispatch>,
}

impl<W> JsonLog<W> {
    /// Creates the layer writing lines to `make_writer`'s writers.
    pub(crate) fn new(make_writer: W) -> Self {
        Self {
            make_writer,
            dispatch: OnceLock::new(),
        }
    }
}

/// A span's fields as the members of a JSON object, without the braces: `"name":"…","k":v`.
struct SpanFields(Vec<u8>);

impl<S, W> tracing_subscriber::Layer<S> for JsonLog<W>
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
        members.extend_from_slice(b"\"name\":");
        push_json(&mut members, attrs.metadata().name());
        attrs.record(&mut Members(&mut members));
        span.extensions_mut().insert(SpanFields(members));
    }

    /// Merges recorded values into the span's fields, a later value replacing an earlier one
    /// of the same name. Rare (request spans give every field at creation), so done plainly.
    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let mut extensions = span.extensions_mut();
        let Some(SpanFields(members)) = extensions.get_mut::<SpanFields>() else {
            return;
        };
        let mut recorded = Vec::new();
        values.record(&mut Members(&mut recorded));
        let mut merged = object_of(members);
        merged.extend(object_of(&recorded));
        let Ok(text) = serde_json::to_vec(&merged) else {
            return;
        };
        members.clear();
        members.extend_from_slice(&text[1..text.len() - 1]);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let metadata = event.metadata();
        let mut line = Vec::with_capacity(512);
        line.extend_from_slice(b"{\"timestamp\":");
        push_json(
            &mut line,
            &humantime::format_rfc3339_micros(SystemTime::now()).to_string(),
        );
        line.extend_from_slice(b",\"level\":");
        push_json(&mut line, metadata.level().as_str());
        line.extend_from_slice(b",\"target\":");
        push_json(&mut line, metadata.target());
        line.extend_from_slice(b",\"fields\":{");
        let mut fields = Vec::with_capacity(128);
        event.record(&mut Members(&mut fields));
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
                    Utf8(&mut line),
                    ",\"openTelemetry\":{{\"traceId\":\"{trace_id}\",\"spanId\":\"{span_id}\"}}"
                );
            }
        }
        line.extend_from_slice(b"}\n");
        let _ = self.make_writer.make_writer_for(metadata).write_all(&line);
    }
}

impl<W> JsonLog<W> {
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

/// Writes each recorded field as `,"name":value`.
struct Members<'a>(&'a mut Vec<u8>);

impl Members<'_> {
    fn member(&mut self, field: &Field, value: &(impl Serialize + ?Sized)) {
        self.0.push(b',');
        push_json(self.0, field.name());
        self.0.push(b':');
        push_json(self.0, value);
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

    fn record_str(&mut self, field: &Field, value: &str) {
        self.member(field, value);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.member(field, &value.to_string());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.member(field, &text);
    }
}

/// Lets `write!` append formatted UTF-8 text to a byte buffer.
struct Utf8<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8<'_> {
    fn write_str(&mut self, text: &str) -> std::fmt::Result {
        self.0.extend_from_slice(text.as_bytes());
        Ok(())
    }
}
