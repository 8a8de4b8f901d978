//! The CEF mapping (ArcSight Common Event Format, as Sentinel's
//! CommonSecurityLog, QRadar and ArcSight read it).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::view::View;
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
    let view = View::of(record);
    let kind = &*view.kind;
    let short_kind = kind
        .strip_prefix("EVENT_KIND_")
        .unwrap_or(kind)
        .to_ascii_lowercase();
    let verdict = &*view.decision.verdict;
    let short_verdict = verdict
        .strip_prefix("VERDICT_")
        .unwrap_or(verdict)
        .to_ascii_lowercase();
    let signature = if short_verdict.is_empty() {
        short_kind.clone()
    } else {
        format!("{short_kind}.{short_verdict}")
    };
    let (item, _) = view.item();
    let severity = if view.denied() {
        6
    } else if view.succeeded() == Some(false) {
        4
    } else {
        2
    };
    let version = match &*view.emitter.version {
        "" => env!("CARGO_PKG_VERSION"),
        version => version,
    };
    let member = &view.principal.member;
    let mut extension: Vec<(&str, String)> = vec![
        ("rt", (record.event.time_micros / 1000).to_string()),
        ("externalId", record.event.id.as_str().to_owned()),
        ("suid", member.id.to_string()),
        ("suser", member.name().to_owned()),
        ("duser", view.principal.agent.client_id.to_string()),
        ("act", verdict.to_owned()),
        ("outcome", view.outcome.to_string()),
        ("request", item.to_owned()),
        ("requestMethod", view.metadata.mcp_method.to_string()),
        (
            "requestClientApplication",
            view.metadata.user_agent.to_string(),
        ),
    ];
    let source = &*view.metadata.source_address;
    if source.parse::<std::net::IpAddr>().is_ok() {
        extension.push(("src", source.to_owned()));
    }
    let labelled = [
        (
            "cs1",
            "virtualServer",
            view.target.virtual_server.to_string(),
        ),
        ("cs2", "connector", view.target.connector.to_string()),
        ("cs3", "traceId", view.metadata.trace_id.to_string()),
        ("cs4", "leafHash", STANDARD.encode(record.leaf_hash)),
        ("cs5", "callId", view.call_id.to_string()),
        ("cs6", "denyReason", view.decision.reason.to_string()),
        ("cn1", "sequence", record.sequence.to_string()),
        (
            "cn2",
            "latencyMs",
            view.latency_ms()
                .map_or_else(String::new, |ms| ms.to_string()),
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
