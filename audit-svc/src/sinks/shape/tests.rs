use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::cef::{cef_header, cef_value};
use super::ocsf::activity;
use super::view::View;
use super::*;
use crate::event::AuditEvent;
use crate::store::{GENESIS, Tail};

/// Returns a fully populated MCP-request event (every field of `AuditEvent`
/// the mappings read), stored at sequence 1.
fn stored(document: &Value) -> StoredEvent {
    let event = AuditEvent::from_document(document).unwrap();
    let mut tail = Tail {
        sequence: 0,
        chain_hash: GENESIS,
    };
    let leaf_hash = event.leaf_hash();
    let (sequence, chain_hash) = tail.link(&leaf_hash);
    StoredEvent {
        sequence,
        recorded_at_micros: 1_764_000_000_123_456,
        event,
        leaf_hash,
        chain_hash,
    }
}

/// Returns the OCSF rendering of `record` read back as a document.
fn ocsf(record: &StoredEvent) -> Value {
    serde_json::from_str(&super::ocsf(record)).unwrap()
}

fn denied_call() -> Value {
    json!({
        "eventId": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "callId": "call-7",
        "kind": "EVENT_KIND_MCP_REQUEST",
        "time": "2026-11-22T03:04:05.678901Z",
        "emitter": {"service": "edge-svc", "instanceId": "edge-1", "version": "0.3.1"},
        "principal": {
            "member": {
                "id": "m-alice", "issuer": "https://idp.example", "subject": "alice-sub",
                "groups": ["eng", "sre"], "roles": ["admin"], "displayName": "Alice A."
            },
            "agent": {"clientId": "agent-42", "bundleId": "b-1", "bundleName": "Release bot",
                      "ownerMemberId": "m-bob"},
            "clientId": "agent-42",
            "act": [{"subject": "agent-42", "clientId": "agent-42", "issuer": "https://gh"}],
            "authenticationMethod": "AUTHENTICATION_METHOD_TOKEN_EXCHANGE"
        },
        "metadata": {
            "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
            "sourceAddress": "203.0.113.9",
            "virtualServer": "prod",
            "mcpMethod": "tools/call",
            "protocolEra": "PROTOCOL_ERA_MODERN",
            "protocolVersion": "2025-11-25",
            "mcpSessionId": "sess-9",
            "jsonrpcId": "17",
            "userAgent": "claude-code/2.0",
            "mcpClientName": "claude-code",
            "mcpClientVersion": "2.0"
        },
        "target": {
            "virtualServer": "prod",
            "connector": "github",
            "tool": {"name": "gh_delete_repo", "upstreamName": "delete_repo",
                     "annotations": {"destructiveHint": true}}
        },
        "decision": {
            "verdict": "VERDICT_DENY", "reason": "DENY_REASON_FORBIDDEN",
            "policyIds": ["p-1", "p-2"], "explanation": "forbid destructive|tools = on prod",
            "policyVersion": "12"
        },
        "outcome": "OUTCOME_DENIED",
        "dlpFindings": [{"detectorType": "aws_key", "count": 2,
                         "direction": "DLP_DIRECTION_INPUT", "action": "DLP_ACTION_MASK"}],
        "latency": "0.012500s",
        "payload": {"arguments": [{"name": "repo", "sizeBytes": "12"}],
                    "argumentsDigest": "sha256:ab", "requestBytes": "120"},
        "error": {"jsonrpcCode": -32001, "message": "denied by policy"}
    })
}

#[test]
fn native_is_the_canonical_bytes() {
    let record = stored(&denied_call());
    let rendered = render(Shape::Native, &record);
    assert!(rendered.is_json);
    assert_eq!(
        rendered.text.as_bytes(),
        record.event.canonical_json.as_slice()
    );
}

#[test]
fn ocsf_maps_the_class_and_the_base_event() {
    let record = stored(&denied_call());
    let ocsf = ocsf(&record);
    assert_eq!(ocsf["class_uid"], 6003);
    assert_eq!(ocsf["category_uid"], 6);
    // A tool without readOnlyHint is "Other".
    assert_eq!(ocsf["activity_id"], 99);
    assert_eq!(ocsf["type_uid"], 600_399);
    assert_eq!(ocsf["severity_id"], 3);
    assert_eq!(ocsf["time"], json!(record.event.time_micros / 1000));
    assert_eq!(ocsf["time"], 1_795_316_645_678_i64);
    assert_eq!(ocsf["status_id"], 2);
    assert_eq!(ocsf["status"], "Failure");
    assert_eq!(ocsf["status_code"], "OUTCOME_DENIED");
    assert_eq!(ocsf["status_detail"], "DENY_REASON_FORBIDDEN");
    assert_eq!(ocsf["duration"], 13);
    assert_eq!(ocsf["message"], "tools/call gh_delete_repo: VERDICT_DENY");
    let metadata = &ocsf["metadata"];
    assert_eq!(metadata["version"], "1.8.0");
    assert_eq!(metadata["product"]["name"], "Gatehouse");
    assert_eq!(metadata["product"]["version"], "0.3.1");
    assert_eq!(metadata["uid"], "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b");
    assert_eq!(metadata["sequence"], 1);
    assert_eq!(metadata["correlation_uid"], "call-7");
    assert_eq!(metadata["original_time"], "2026-11-22T03:04:05.678901Z");
    assert_eq!(metadata["logged_time"], 1_764_000_000_123_i64);
}

#[test]
fn ocsf_maps_actor_api_endpoint_and_resources() {
    let ocsf = ocsf(&stored(&denied_call()));
    let actor = &ocsf["actor"];
    assert_eq!(actor["user"]["uid"], "m-alice");
    assert_eq!(actor["user"]["name"], "Alice A.");
    assert_eq!(actor["user"]["type_id"], 1);
    assert_eq!(
        actor["user"]["groups"],
        json!([{"name": "eng"}, {"name": "sre"}])
    );
    assert_eq!(actor["idp"]["uid"], "https://idp.example");
    assert_eq!(actor["app_uid"], "agent-42");
    assert_eq!(actor["app_name"], "Release bot");
    assert_eq!(actor["invoked_by"], "agent-42");
    assert_eq!(actor["session"]["uid"], "sess-9");
    assert_eq!(actor["authorizations"][0]["decision"], "Denied");
    assert_eq!(actor["authorizations"][0]["policy"]["uid"], "p-1,p-2");
    assert_eq!(actor["authorizations"][0]["policy"]["version"], "12");
    assert_eq!(
        actor["authorizations"][0]["policy"]["desc"],
        "forbid destructive|tools = on prod"
    );
    let api = &ocsf["api"];
    assert_eq!(api["operation"], "tools/call");
    assert_eq!(api["version"], "2025-11-25");
    assert_eq!(api["service"]["name"], "prod");
    assert_eq!(api["group"]["name"], "github");
    assert_eq!(api["request"]["uid"], "17");
    assert_eq!(api["response"]["code"], -32001);
    assert_eq!(api["response"]["error_message"], "denied by policy");
    assert_eq!(ocsf["src_endpoint"], json!({"ip": "203.0.113.9"}));
    assert_eq!(
        ocsf["resources"],
        json!([{"type": "mcp_tool", "name": "gh_delete_repo", "uid": "delete_repo",
                "group": {"name": "github"}}])
    );
    assert_eq!(ocsf["http_request"]["user_agent"], "claude-code/2.0");
    assert_eq!(ocsf["trace"]["uid"], "4bf92f3577b34da6a3ce929d0e0e4736");
}

#[test]
fn ocsf_keeps_unmapped_fields_and_integrity() {
    let record = stored(&denied_call());
    let unmapped = &ocsf(&record)["unmapped"];
    assert_eq!(unmapped["kind"], "EVENT_KIND_MCP_REQUEST");
    assert_eq!(unmapped["agent"]["ownerMemberId"], "m-bob");
    assert_eq!(unmapped["delegation"][0]["issuer"], "https://gh");
    assert_eq!(
        unmapped["authentication_method"],
        "AUTHENTICATION_METHOD_TOKEN_EXCHANGE"
    );
    assert_eq!(unmapped["member_roles"], json!(["admin"]));
    assert_eq!(unmapped["protocol_era"], "PROTOCOL_ERA_MODERN");
    assert_eq!(unmapped["mcp_client"]["name"], "claude-code");
    assert_eq!(unmapped["dlp_findings"][0]["detectorType"], "aws_key");
    assert_eq!(unmapped["dlp_findings"][0]["count"], 2);
    assert_eq!(unmapped["payload"]["argumentsDigest"], "sha256:ab");
    assert_eq!(
        unmapped["integrity"]["leaf_hash"],
        STANDARD.encode(record.leaf_hash)
    );
    assert_eq!(
        unmapped["integrity"]["chain_hash"],
        STANDARD.encode(record.chain_hash)
    );
}

#[test]
fn ocsf_without_a_source_names_the_emitter_and_reads_are_read() {
    let mut document = denied_call();
    document["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("sourceAddress");
    document["target"]["tool"]["annotations"] = json!({"readOnlyHint": true});
    document["decision"] = json!({"verdict": "VERDICT_ALLOW"});
    document["outcome"] = json!("OUTCOME_SUCCESS");
    let ocsf = ocsf(&stored(&document));
    assert_eq!(ocsf["src_endpoint"], json!({"svc_name": "edge-svc"}));
    assert_eq!(ocsf["activity_id"], 2);
    assert_eq!(ocsf["type_uid"], 600_302);
    assert_eq!(ocsf["severity_id"], 1);
    assert_eq!(ocsf["status_id"], 1);
    assert_eq!(ocsf["actor"]["authorizations"][0]["decision"], "Allowed");
}

#[test]
fn ocsf_reads_escaped_strings_and_treats_unnamed_enum_values_as_absent() {
    let mut document = denied_call();
    document["principal"]["member"]["displayName"] = json!("Alice \"A.\" Lefèvre\\ops");
    document["decision"]["verdict"] = json!(7);
    document["outcome"] = json!(42);
    let ocsf = ocsf(&stored(&document));
    assert_eq!(ocsf["actor"]["user"]["name"], "Alice \"A.\" Lefèvre\\ops");
    assert!(ocsf.get("status_code").is_none(), "{ocsf}");
    assert_eq!(ocsf["status_id"], 0);
    assert_eq!(ocsf["severity_id"], 1);
    assert!(ocsf["actor"].get("authorizations").is_none(), "{ocsf}");
    assert_eq!(ocsf["message"], "tools/call gh_delete_repo");
}

#[test]
fn ocsf_leaves_out_what_the_event_does_not_have() {
    let record = stored(&json!({
        "eventId": "e2", "kind": "EVENT_KIND_TOKEN_ISSUED", "time": "2026-11-22T03:04:05Z",
        "principal": {"clientId": "cli-1"},
        "token": {"jti": "j-1", "scopes": []}
    }));
    let ocsf = ocsf(&record);
    for absent in [
        "status_code",
        "status_detail",
        "duration",
        "resources",
        "http_request",
        "trace",
    ] {
        assert!(ocsf.get(absent).is_none(), "{absent} in {ocsf}");
    }
    assert_eq!(ocsf["api"], json!({"operation": "EVENT_KIND_TOKEN_ISSUED"}));
    assert_eq!(ocsf["actor"], json!({"invoked_by": "cli-1"}));
    assert_eq!(ocsf["message"], "EVENT_KIND_TOKEN_ISSUED");
    assert_eq!(ocsf["src_endpoint"], json!({"svc_name": "gatehouse"}));
    assert_eq!(
        ocsf["unmapped"]["token"],
        json!({"jti": "j-1", "scopes": []})
    );
    assert!(ocsf["unmapped"].get("payload").is_none(), "{ocsf}");
}

#[test]
fn ocsf_activity_follows_the_event_kind() {
    for (kind, id) in [
        ("EVENT_KIND_TOKEN_ISSUED", 1),
        ("EVENT_KIND_CREDENTIAL_READ", 2),
        ("EVENT_KIND_CREDENTIAL_ROTATED", 3),
        ("EVENT_KIND_TOKEN_REVOKED", 4),
        ("EVENT_KIND_CHECKPOINT", 99),
    ] {
        let record =
            stored(&json!({"eventId": "e1", "kind": kind, "time": "2026-11-22T03:04:05Z"}));
        assert_eq!(activity(&View::of(&record)).0, id, "{kind}");
    }
}

#[test]
fn cef_maps_header_and_extensions() {
    let record = stored(&denied_call());
    let line = cef(&record);
    let (header, extension) = line.split_at(line.match_indices('|').nth(6).unwrap().0 + 1);
    assert_eq!(
        header,
        "CEF:0|Gatehouse|Gatehouse|0.3.1|mcp_request.deny|gatehouse mcp request deny|6|"
    );
    let fields: Vec<&str> = extension.split(' ').collect();
    for expected in [
        "rt=1795316645678",
        "externalId=0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b",
        "suid=m-alice",
        "duser=agent-42",
        "act=VERDICT_DENY",
        "outcome=OUTCOME_DENIED",
        "request=gh_delete_repo",
        "requestMethod=tools/call",
        "requestClientApplication=claude-code/2.0",
        "src=203.0.113.9",
        "cs1Label=virtualServer",
        "cs1=prod",
        "cs2Label=connector",
        "cs2=github",
        "cs3=4bf92f3577b34da6a3ce929d0e0e4736",
        "cs5=call-7",
        "cs6=DENY_REASON_FORBIDDEN",
        "cn1Label=sequence",
        "cn1=1",
        "cn2=13",
    ] {
        assert!(fields.contains(&expected), "{expected} missing in {line}");
    }
    assert!(line.contains("suser=Alice A."), "{line}");
    let leaf = format!("cs4={}", cef_value(&STANDARD.encode(record.leaf_hash)));
    assert!(fields.contains(&leaf.as_str()), "{line}");
}

#[test]
fn cef_escapes_header_and_extension_values() {
    assert_eq!(cef_header(r"a|b\c"), r"a\|b\\c");
    assert_eq!(cef_value("k=v\\x\r\ny|z"), r"k\=v\\x\r\ny|z");
    let mut document = denied_call();
    document["emitter"]["version"] = json!("1|2");
    document["principal"]["member"]["displayName"] = json!("a=b\nc");
    let line = cef(&stored(&document));
    assert!(line.contains("|1\\|2|"), "{line}");
    assert!(line.contains(r"suser=a\=b\nc"), "{line}");
    assert!(!line.contains('\n'));
}
