//! The CEF mapping (ArcSight Common Event Format, as Sentinel's
//! CommonSecurityLog, QRadar and ArcSight read it).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{denied, document, duration_ms, succeeded, target_item, text};
use crate::event::StoredEvent;

/// Escapes a CEF header field: `\` and `|`.
pub(crate) fn cef_header(value: &str) -> String {
    value.replace('\\', "\\\\").replace('|', "\\|")
}

/// Escapes a CEF extension value: `\`, `=`, newlines.
pub(crate) fn cef_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('=', "\\=")
        .replace('\r', "\\r")
        .replace('\n', "\\n")
}

/// Returns the event as one CEF line.
pub(crate) fn cef(record: &StoredEvent) -> String {
    let doc = document(record);
    let kind = text(&doc, &["kind"]);
    let short_kind = kind
        .strip_prefix("EVENT_KIND_")
        .unwrap_or(kind)
        .to_ascii_lowercase();
    let verdict = text(&doc, &["decision", "verdict"]);
    let short_verdict = verdict
        .strip_prefix("VERDICT_")
        .unwrap_or(verdict)
        .to_ascii_lowercase();
    let signature = if short_verdict.is_empty() {
        short_kind.clone()
    } else {
        format!("{short_kind}.{short_verdict}")
    };
    let (item, _) = target_item(&doc);
    let severity = if denied(&doc) {
        6
    } else if succeeded(&doc) == Some(false) {
        4
    } else {
        2
    };
    let version = match text(&doc, &["emitter", "version"]) {
        "" => env!("CARGO_PKG_VERSION"),
        version => version,
    };
    let mut extension: Vec<(&str, String)> = vec![
        ("rt", (record.event.time_micros / 1000).to_string()),
        ("externalId", record.event.id.as_str().to_owned()),
        (
            "suid",
            text(&doc, &["principal", "member", "id"]).to_owned(),
        ),
        (
            "suser",
            match text(&doc, &["principal", "member", "displayName"]) {
                "" => text(&doc, &["principal", "member", "subject"]),
                name => name,
            }
            .to_owned(),
        ),
        (
            "duser",
            text(&doc, &["principal", "agent", "clientId"]).to_owned(),
        ),
        ("act", verdict.to_owned()),
        ("outcome", text(&doc, &["outcome"]).to_owned()),
        ("request", item.to_owned()),
        (
            "requestMethod",
            text(&doc, &["metadata", "mcpMethod"]).to_owned(),
        ),
        (
            "requestClientApplication",
            text(&doc, &["metadata", "userAgent"]).to_owned(),
        ),
    ];
    let source = text(&doc, &["metadata", "sourceAddress"]);
    if source.parse::<std::net::IpAddr>().is_ok() {
        extension.push(("src", source.to_owned()));
    }
    let labelled = [
        (
            "cs1",
            "virtualServer",
            text(&doc, &["target", "virtualServer"]).to_owned(),
        ),
        (
            "cs2",
            "connector",
            text(&doc, &["target", "connector"]).to_owned(),
        ),
        (
            "cs3",
            "traceId",
            text(&doc, &["metadata", "traceId"]).to_owned(),
        ),
        ("cs4", "leafHash", STANDARD.encode(record.leaf_hash)),
        ("cs5", "callId", text(&doc, &["callId"]).to_owned()),
        (
            "cs6",
            "denyReason",
            text(&doc, &["decision", "reason"]).to_owned(),
        ),
        ("cn1", "sequence", record.sequence.to_string()),
        (
            "cn2",
            "latencyMs",
            duration_ms(&doc, &["latency"])
                .map_or_else(String::new, |ms| (ms.round() as i64).to_string()),
        ),
    ];
    let mut parts: Vec<String> = extension
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(key, value)| format!("{key}={}", cef_value(&value)))
        .collect();
    for (key, label, value) in labelled {
        if !value.is_empty() {
            parts.push(format!("{key}Label={label}"));
            parts.push(format!("{key}={}", cef_value(&value)));
        }
    }
    let name = match (short_kind.as_str(), short_verdict.as_str()) {
        (kind, "") => format!("gatehouse {}", kind.replace('_', " ")),
        (kind, verdict) => format!("gatehouse {} {verdict}", kind.replace('_', " ")),
    };
    format!(
        "CEF:0|Gatehouse|Gatehouse|{}|{}|{}|{severity}|{}",
        cef_header(version),
        cef_header(&signature),
        cef_header(&name),
        parts.join(" ")
    )
}
