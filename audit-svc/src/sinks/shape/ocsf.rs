//! The OCSF 1.8.0 API Activity (class 6003) mapping.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};

use super::{
    OCSF_VERSION, at, denied, document, duration_ms, integer, succeeded, target_item, text,
};
use crate::event::StoredEvent;

/// Returns the OCSF activity (id, name) of an event: reads are Read, issuing and
/// writing Create, rotation and changes Update, revocation Delete; a tool call is
/// Read only when the tool declares `readOnlyHint`.
pub(crate) fn activity(document: &Value) -> (u32, &'static str) {
    match text(document, &["kind"]) {
        "EVENT_KIND_TOKEN_ISSUED" | "EVENT_KIND_CREDENTIAL_WRITTEN" => (1, "Create"),
        "EVENT_KIND_CREDENTIAL_READ" => (2, "Read"),
        "EVENT_KIND_TOKEN_EXCHANGED"
        | "EVENT_KIND_CREDENTIAL_REFRESHED"
        | "EVENT_KIND_CREDENTIAL_ROTATED"
        | "EVENT_KIND_AGENT_CHANGED"
        | "EVENT_KIND_POLICY_CHANGED"
        | "EVENT_KIND_ADMIN_CHANGE" => (3, "Update"),
        "EVENT_KIND_TOKEN_REVOKED" | "EVENT_KIND_CREDENTIAL_REVOKED" => (4, "Delete"),
        "EVENT_KIND_MCP_REQUEST" => {
            let read_only = at(document, &["target", "tool", "annotations", "readOnlyHint"])
                .and_then(Value::as_bool)
                == Some(true);
            let method = text(document, &["metadata", "mcpMethod"]);
            let reading = matches!(
                method,
                "tools/list" | "resources/list" | "resources/read" | "prompts/list" | "prompts/get"
            );
            if read_only || reading {
                (2, "Read")
            } else {
                (99, "Other")
            }
        }
        _ => (99, "Other"),
    }
}

/// Returns the OCSF severity (id, name): a denial is Medium, a failure Low,
/// everything else Informational.
fn severity(document: &Value) -> (u32, &'static str) {
    if denied(document) {
        (3, "Medium")
    } else if succeeded(document) == Some(false) {
        (2, "Low")
    } else {
        (1, "Informational")
    }
}

fn put(object: &mut Map<String, Value>, key: &str, value: Value) {
    let empty = match &value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(fields) => fields.is_empty(),
        _ => false,
    };
    if !empty {
        object.insert(key.to_owned(), value);
    }
}

fn object(pairs: Vec<(&str, Value)>) -> Value {
    let mut map = Map::new();
    for (key, value) in pairs {
        put(&mut map, key, value);
    }
    Value::Object(map)
}

fn string(value: &str) -> Value {
    Value::String(value.to_owned())
}

/// Returns the event as an OCSF 1.8.0 API Activity (class 6003) document.
pub(crate) fn ocsf(record: &StoredEvent) -> Value {
    let doc = document(record);
    let (activity_id, activity_name) = activity(&doc);
    let (severity_id, severity_name) = severity(&doc);
    let member = at(&doc, &["principal", "member"])
        .cloned()
        .unwrap_or_default();
    let agent = at(&doc, &["principal", "agent"])
        .cloned()
        .unwrap_or_default();
    let (item, item_type) = target_item(&doc);
    let connector = text(&doc, &["target", "connector"]);
    let verdict = text(&doc, &["decision", "verdict"]);
    let groups: Vec<Value> = at(&member, &["groups"])
        .and_then(Value::as_array)
        .map(|groups| groups.iter().map(|g| json!({ "name": g })).collect())
        .unwrap_or_default();
    let user_name = match text(&member, &["displayName"]) {
        "" => text(&member, &["subject"]),
        name => name,
    };
    let authorization = match verdict {
        "VERDICT_ALLOW" => Some("Allowed"),
        "VERDICT_DENY" => Some("Denied"),
        _ => None,
    }
    .map(|decision| {
        object(vec![
            ("decision", string(decision)),
            (
                "policy",
                object(vec![
                    (
                        "uid",
                        at(&doc, &["decision", "policyIds"])
                            .and_then(Value::as_array)
                            .map(|ids| {
                                let ids: Vec<&str> = ids.iter().filter_map(Value::as_str).collect();
                                Value::String(ids.join(","))
                            })
                            .unwrap_or(Value::Null),
                    ),
                    (
                        "version",
                        integer(&doc, &["decision", "policyVersion"])
                            .map_or(Value::Null, |v| string(&v.to_string())),
                    ),
                    ("desc", string(text(&doc, &["decision", "explanation"]))),
                ]),
            ),
        ])
    });
    let actor = object(vec![
        (
            "user",
            if text(&member, &["id"]).is_empty() {
                Value::Null
            } else {
                object(vec![
                    ("uid", string(text(&member, &["id"]))),
                    ("name", string(user_name)),
                    ("type_id", json!(1)),
                    ("type", string("User")),
                    ("groups", Value::Array(groups)),
                ])
            },
        ),
        (
            "idp",
            object(vec![("uid", string(text(&member, &["issuer"])))]),
        ),
        ("app_uid", string(text(&agent, &["clientId"]))),
        (
            "app_name",
            string(match text(&agent, &["bundleName"]) {
                "" => text(&agent, &["bundleId"]),
                name => name,
            }),
        ),
        ("invoked_by", string(text(&doc, &["principal", "clientId"]))),
        (
            "session",
            object(vec![(
                "uid",
                string(text(&doc, &["metadata", "mcpSessionId"])),
            )]),
        ),
        (
            "authorizations",
            Value::Array(authorization.into_iter().collect()),
        ),
    ]);
    let operation = match text(&doc, &["metadata", "mcpMethod"]) {
        "" => text(&doc, &["kind"]),
        method => method,
    };
    let api = object(vec![
        ("operation", string(operation)),
        (
            "version",
            string(text(&doc, &["metadata", "protocolVersion"])),
        ),
        (
            "service",
            object(vec![(
                "name",
                string(text(&doc, &["target", "virtualServer"])),
            )]),
        ),
        ("group", object(vec![("name", string(connector))])),
        (
            "request",
            object(vec![(
                "uid",
                string(text(&doc, &["metadata", "jsonrpcId"])),
            )]),
        ),
        (
            "response",
            object(vec![
                (
                    "code",
                    integer(&doc, &["error", "jsonrpcCode"]).map_or(Value::Null, |c| json!(c)),
                ),
                ("error_message", string(text(&doc, &["error", "message"]))),
            ]),
        ),
    ]);
    let source = text(&doc, &["metadata", "sourceAddress"]);
    let src_endpoint = if source.parse::<std::net::IpAddr>().is_ok() {
        json!({ "ip": source })
    } else if !source.is_empty() {
        json!({ "name": source })
    } else {
        // The class requires one endpoint attribute: name the emitting service.
        json!({ "svc_name": match text(&doc, &["emitter", "service"]) { "" => "gatehouse", s => s } })
    };
    let resources = if item.is_empty() {
        Value::Null
    } else {
        json!([object(vec![
            ("type", string(item_type)),
            ("name", string(item)),
            (
                "uid",
                string(text(&doc, &["target", "tool", "upstreamName"]))
            ),
            ("group", object(vec![("name", string(connector))])),
        ])])
    };
    let status = succeeded(&doc);
    let mut event = Map::new();
    for (key, value) in [
        ("class_uid", json!(6003)),
        ("class_name", string("API Activity")),
        ("category_uid", json!(6)),
        ("category_name", string("Application Activity")),
        ("activity_id", json!(activity_id)),
        ("activity_name", string(activity_name)),
        ("type_uid", json!(6003 * 100 + activity_id)),
        (
            "type_name",
            string(&format!("API Activity: {activity_name}")),
        ),
        ("severity_id", json!(severity_id)),
        ("severity", string(severity_name)),
        ("time", json!(record.event.time_micros / 1000)),
        (
            "status_id",
            json!(match status {
                Some(true) => 1,
                Some(false) => 2,
                None => 0,
            }),
        ),
        (
            "status",
            string(match status {
                Some(true) => "Success",
                Some(false) => "Failure",
                None => "Unknown",
            }),
        ),
        ("status_code", string(text(&doc, &["outcome"]))),
        ("status_detail", string(text(&doc, &["decision", "reason"]))),
        ("message", string(&summary(&doc, item))),
        (
            "duration",
            duration_ms(&doc, &["latency"]).map_or(Value::Null, |ms| json!(ms.round() as i64)),
        ),
        ("metadata", ocsf_metadata(record, &doc)),
        ("actor", actor),
        ("api", api),
        ("src_endpoint", src_endpoint),
        ("resources", resources),
        (
            "http_request",
            object(vec![(
                "user_agent",
                string(text(&doc, &["metadata", "userAgent"])),
            )]),
        ),
        (
            "trace",
            object(vec![("uid", string(text(&doc, &["metadata", "traceId"])))]),
        ),
        ("unmapped", ocsf_unmapped(record, &doc)),
    ] {
        put(&mut event, key, value);
    }
    Value::Object(event)
}

fn ocsf_metadata(record: &StoredEvent, doc: &Value) -> Value {
    object(vec![
        ("version", string(OCSF_VERSION)),
        (
            "product",
            object(vec![
                ("name", string("Gatehouse")),
                ("vendor_name", string("Gatehouse")),
                ("version", string(text(doc, &["emitter", "version"]))),
            ]),
        ),
        ("uid", string(record.event.id.as_str())),
        ("sequence", json!(record.sequence)),
        ("log_name", string("gatehouse-audit")),
        ("correlation_uid", string(text(doc, &["callId"]))),
        ("original_time", string(text(doc, &["time"]))),
        ("logged_time", json!(record.recorded_at_micros / 1000)),
    ])
}

fn ocsf_unmapped(record: &StoredEvent, doc: &Value) -> Value {
    let copy = |path: &[&str]| at(doc, path).cloned().unwrap_or(Value::Null);
    object(vec![
        ("kind", string(text(doc, &["kind"]))),
        ("agent", copy(&["principal", "agent"])),
        ("delegation", copy(&["principal", "act"])),
        (
            "authentication_method",
            copy(&["principal", "authenticationMethod"]),
        ),
        ("member_roles", copy(&["principal", "member", "roles"])),
        ("protocol_era", copy(&["metadata", "protocolEra"])),
        (
            "mcp_client",
            object(vec![
                ("name", string(text(doc, &["metadata", "mcpClientName"]))),
                (
                    "version",
                    string(text(doc, &["metadata", "mcpClientVersion"])),
                ),
            ]),
        ),
        ("dlp_findings", copy(&["dlpFindings"])),
        ("payload", copy(&["payload"])),
        ("required_scopes", copy(&["decision", "requiredScopes"])),
        (
            "upstream_http_status",
            copy(&["error", "upstreamHttpStatus"]),
        ),
        ("token", copy(&["token"])),
        ("credential", copy(&["credential"])),
        ("admin", copy(&["admin"])),
        (
            "integrity",
            json!({
                "leaf_hash": STANDARD.encode(record.leaf_hash),
                "chain_hash": STANDARD.encode(record.chain_hash),
            }),
        ),
    ])
}

/// Returns a one-line human summary, such as `tools/call echo: VERDICT_DENY`.
fn summary(doc: &Value, item: &str) -> String {
    let operation = match text(doc, &["metadata", "mcpMethod"]) {
        "" => text(doc, &["kind"]),
        method => method,
    };
    let result = match text(doc, &["decision", "verdict"]) {
        "" => text(doc, &["outcome"]),
        verdict => verdict,
    };
    match (item.is_empty(), result.is_empty()) {
        (true, true) => operation.to_owned(),
        (true, false) => format!("{operation}: {result}"),
        (false, true) => format!("{operation} {item}"),
        (false, false) => format!("{operation} {item}: {result}"),
    }
}
