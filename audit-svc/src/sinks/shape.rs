//! Renders stored events for sinks: the canonical JSON as hashed, OCSF 1.8.0 API
//! Activity (class 6003), or CEF. The mappings read the proto3 JSON names of
//! `gatehouse.audit.v1.AuditEvent`.

use serde_json::Value;

use crate::event::StoredEvent;
use crate::sinks::config::Shape;

mod cef;
mod ocsf;
#[cfg(test)]
mod tests;

pub(crate) use cef::cef;
pub(crate) use ocsf::ocsf;

/// Is the OCSF schema version the mapping follows.
pub(crate) const OCSF_VERSION: &str = "1.8.0";

/// Is one event rendered for a sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rendered {
    /// Holds the rendering: a JSON document (native, OCSF) or a CEF line.
    pub(crate) text: String,
    /// Says whether `text` is a JSON document (HEC embeds it as an object).
    pub(crate) is_json: bool,
}

/// Returns `record` rendered in `shape`.
pub(crate) fn render(shape: Shape, record: &StoredEvent) -> Rendered {
    match shape {
        Shape::Native => Rendered {
            text: String::from_utf8_lossy(&record.event.canonical_json).into_owned(),
            is_json: true,
        },
        Shape::Ocsf => Rendered {
            text: ocsf(record).to_string(),
            is_json: true,
        },
        Shape::Cef => Rendered {
            text: cef(record),
            is_json: false,
        },
    }
}

/// Returns the event's proto3 JSON document (`Null` if the bytes are not JSON,
/// which the store's own checks rule out).
pub(crate) fn document(record: &StoredEvent) -> Value {
    serde_json::from_slice(&record.event.canonical_json).unwrap_or(Value::Null)
}

/// Returns the string at `path` in `document`, or "".
pub(crate) fn text<'a>(document: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(document, |value, key| value.get(key))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn at<'a>(document: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(document, |value, key| value.get(key))
}

/// Returns a proto3 JSON 64-bit integer (a string) or 32-bit one (a number).
fn integer(document: &Value, path: &[&str]) -> Option<i64> {
    match at(document, path)? {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_i64(),
        _ => None,
    }
}

/// Returns a proto3 JSON duration ("1.5s") in milliseconds.
fn duration_ms(document: &Value, path: &[&str]) -> Option<f64> {
    let text = at(document, path)?.as_str()?;
    let seconds: f64 = text.strip_suffix('s')?.parse().ok()?;
    Some(seconds * 1000.0)
}

/// Returns the exposed name of the target item (tool, resource or prompt) and its
/// OCSF resource type.
fn target_item(document: &Value) -> (&str, &'static str) {
    if let Some(tool) = at(document, &["target", "tool"]) {
        return (text(tool, &["name"]), "mcp_tool");
    }
    if let Some(resource) = at(document, &["target", "resource"]) {
        return (text(resource, &["uri"]), "mcp_resource");
    }
    if let Some(prompt) = at(document, &["target", "prompt"]) {
        return (text(prompt, &["name"]), "mcp_prompt");
    }
    ("", "")
}

/// Says whether the outcome is a success (`None` when the event has none).
fn succeeded(document: &Value) -> Option<bool> {
    match text(document, &["outcome"]) {
        "" | "OUTCOME_UNSPECIFIED" => None,
        outcome => Some(outcome == "OUTCOME_SUCCESS"),
    }
}

fn denied(document: &Value) -> bool {
    text(document, &["decision", "verdict"]) == "VERDICT_DENY"
        || matches!(
            text(document, &["outcome"]),
            "OUTCOME_DENIED" | "OUTCOME_BLOCKED_BY_DLP" | "OUTCOME_RATE_LIMITED"
        )
}
