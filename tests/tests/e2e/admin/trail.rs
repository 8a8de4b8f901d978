//! The audit log through the admin API of a real `gatehouse up`: verification reports an
//! intact log after real calls, an inclusion proof served over HTTP verifies offline against
//! the log's key read from the data directory (not the copy the server sends), a tail over
//! HTTP (NDJSON) and over gRPC (a server stream) receives a call recorded after it started,
//! each of these is an audited admin action, and a token without the admin grant is refused
//! each of them. Requests refused before any operation ran (an unreadable body or query, no
//! valid token) are audited too, without the value that was refused.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{
    ADMIN_SECRET, CALLER_SECRET, OPEN, Up, VIEWER_SECRET, authorized, gateway_file, http_with,
    search_until, token, up,
};
use crate::audit::call;

/// A value that must never come back: sent as a forged token and inside an unreadable body.
const FORGED: &str = "forged-7c1e4b";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_is_verified_proven_and_tailed_through_the_admin_api() {
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("gatehouse.yaml");
    let data = dir.path().join("data");
    std::fs::write(&config, gateway_file(OPEN, false)).expect("config");
    let Up {
        mut child,
        origin,
        grpc,
    } = up(&config, &data).await;
    let http = reqwest::Client::new();
    let api = |path: &str| format!("{origin}/admin/v1{path}");
    let admin = token(&origin, "admin-bot", ADMIN_SECRET, &api("")).await;
    let viewer = token(&origin, "viewer", VIEWER_SECRET, &api("")).await;
    let tools = format!("{origin}/v/tools/mcp");
    let caller = http_with(&token(&origin, "caller", CALLER_SECRET, &tools).await);

    let answered = call(&caller, &tools, 1, "echo", json!({"text": "proven"})).await;
    assert_eq!(answered["result"]["content"][0]["text"], "proven");
    let recorded = search_until(
        &http,
        &api("/audit/events?agent=caller&kind=EVENT_KIND_MCP_REQUEST"),
        &admin,
        |page| page["events"].get(0).cloned(),
    )
    .await
    .expect("the call reaches the audit log");
    let sequence = recorded["sequence"].as_u64().expect("sequence");
    let event_id = recorded["event"]["eventId"]
        .as_str()
        .expect("event id")
        .to_owned();

    let verified = http
        .post(api("/audit/verify"))
        .bearer_auth(&admin)
        .json(&json!({}))
        .send()
        .await
        .expect("verify");
    assert_eq!(verified.status(), StatusCode::OK);
    let report: Value = verified.json().await.expect("report");
    assert_eq!(report["intact"], true, "{report}");
    assert!(report["problem"].is_null(), "{report}");
    assert!(report["checked"].as_u64() >= Some(sequence), "{report}");
    let signed = report["checkpoint"]["tree_size"]
        .as_u64()
        .expect("checkpoint");
    assert!(
        signed >= sequence,
        "the checkpoint covers the call: {report}"
    );
    let trusted = report["checkpoint"]["signed_note"]
        .as_str()
        .expect("note")
        .to_owned();
    let extended: Value = http
        .post(api("/audit/verify"))
        .bearer_auth(&admin)
        .json(&json!({"from_checkpoint": trusted}))
        .send()
        .await
        .expect("verify from a checkpoint")
        .json()
        .await
        .expect("report");
    assert_eq!(extended["intact"], true, "{extended}");
    let forged = http
        .post(api("/audit/verify"))
        .bearer_auth(&admin)
        .json(&json!({"from_checkpoint": trusted.replace("\n\n", "\nforged\n\n")}))
        .send()
        .await
        .expect("verify from a forged checkpoint");
    assert_eq!(forged.status(), StatusCode::BAD_REQUEST);

    // The proof is checked with the key the log keeps in its data directory.
    let audit = audit_svc::Config::load(svc_kit::config_sources(audit_svc::ENV_PREFIX, None))
        .expect("audit config")
        .with_data_dir(&data);
    let signer =
        audit_svc::Signer::load_or_generate(audit.checkpoint.origin.clone(), &audit.key_file())
            .expect("the log's key");
    let key = signer.verifying_key();
    let proof: Value = http
        .get(api(&format!("/audit/events/{event_id}/proof")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("proof")
        .json()
        .await
        .expect("proof json");
    assert_eq!(
        proof["verifier_key"],
        audit_svc::verifier_key(signer.origin(), &key),
        "{proof}"
    );
    let canonical = proof["canonical_json"].as_str().expect("canonical json");
    let event: Value = serde_json::from_str(canonical).expect("event");
    assert_eq!(event["eventId"], event_id.as_str(), "{proof}");
    let path: Vec<audit_svc::Hash> = proof["audit_path"]
        .as_array()
        .expect("audit path")
        .iter()
        .map(|hash| {
            let bytes = STANDARD
                .decode(hash.as_str().expect("hash"))
                .expect("base64");
            audit_svc::Hash::try_from(bytes.as_slice()).expect("32 bytes")
        })
        .collect();
    let index = proof["leaf_index"].as_u64().expect("leaf index");
    assert_eq!(index, sequence - 1);
    let note = proof["checkpoint"]["signed_note"].as_str().expect("note");
    let checkpoint = audit_svc::verify_inclusion(canonical.as_bytes(), index, &path, note, &key)
        .expect("the proof verifies against the pinned key");
    assert_eq!(
        Some(checkpoint.tree_size),
        proof["checkpoint"]["tree_size"].as_u64()
    );
    let tampered = canonical.replacen('{', "{ ", 1);
    assert!(
        audit_svc::verify_inclusion(tampered.as_bytes(), index, &path, note, &key).is_err(),
        "an altered event does not verify"
    );

    let tail = http
        .get(api("/audit/tail?agent=caller&kind=EVENT_KIND_MCP_REQUEST"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("tail");
    assert_eq!(tail.status(), StatusCode::OK);
    assert_eq!(tail.headers()["content-type"], "application/x-ndjson");
    let mut grpc_client = proto::admin::v1::admin_client::AdminClient::connect(grpc.clone())
        .await
        .expect("admin grpc");
    let mut grpc_tail = grpc_client
        .tail_audit(authorized(
            &admin,
            proto::admin::v1::TailAuditRequest {
                agent: "caller".to_owned(),
                kinds: vec!["EVENT_KIND_MCP_REQUEST".to_owned()],
                ..Default::default()
            },
        ))
        .await
        .expect("grpc tail")
        .into_inner();
    let answered = call(&caller, &tools, 2, "echo", json!({"text": "tailed"})).await;
    assert_eq!(answered["result"]["content"][0]["text"], "tailed");
    let streamed = tokio::time::timeout(Duration::from_secs(10), first_line(tail))
        .await
        .expect("the tail streams the call within 10 s");
    assert!(
        streamed["sequence"].as_u64() > Some(sequence),
        "only what was recorded after the tail started: {streamed}"
    );
    assert_eq!(
        streamed["event"]["kind"], "EVENT_KIND_MCP_REQUEST",
        "{streamed}"
    );
    let pushed = tokio::time::timeout(Duration::from_secs(10), grpc_tail.message())
        .await
        .expect("the gRPC tail streams the call within 10 s")
        .expect("stream")
        .expect("a record")
        .record
        .expect("record");
    assert_eq!(
        Some(pushed.sequence),
        streamed["sequence"].as_u64(),
        "both faces stream the same record"
    );

    for (method, path) in [
        ("POST", "/audit/verify".to_owned()),
        ("GET", format!("/audit/events/{event_id}/proof")),
        ("GET", "/audit/tail".to_owned()),
    ] {
        let refused = http
            .request(method.parse().expect("method"), api(&path))
            .bearer_auth(&viewer)
            .json(&json!({}))
            .send()
            .await
            .expect("viewer request");
        assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{method} {path}");
    }
    let denied = grpc_client
        .verify_audit(authorized(
            &viewer,
            proto::admin::v1::VerifyAuditRequest::default(),
        ))
        .await
        .expect_err("the viewer may not verify");
    assert_eq!(denied.code(), tonic::Code::PermissionDenied, "{denied:?}");

    // Input the API cannot read is refused with the same JSON error body, naming no value.
    let unreadable = http
        .post(api("/audit/verify"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(format!("{{\"from_checkpoint\": [\"{FORGED}\"]}}"))
        .send()
        .await
        .expect("unreadable body");
    assert_eq!(unreadable.status(), StatusCode::BAD_REQUEST);
    let body: Value = unreadable.json().await.expect("error json");
    assert_eq!(body["error"], "invalid_request", "{body}");
    assert!(!body.to_string().contains(FORGED), "{body}");
    let unparsed = http
        .get(api("/audit/tail?after=minus-one"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("unparsed query");
    assert_eq!(unparsed.status(), StatusCode::BAD_REQUEST);
    let body: Value = unparsed.json().await.expect("error json");
    assert_eq!(body["error"], "invalid_request", "{body}");
    let anonymous = http
        .post(api("/audit/verify"))
        .bearer_auth(FORGED)
        .json(&json!({}))
        .send()
        .await
        .expect("forged token");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let audited = search_until(
        &http,
        &api("/audit/events?agent=admin-bot&kind=EVENT_KIND_ADMIN_CHANGE&newest_first=true&limit=100"),
        &admin,
        |page| {
            let text = page.to_string();
            [
                "\"verify\"",
                "\"prove\"",
                "\"tail\"",
                "POST /admin/v1/audit/verify",
                "GET /admin/v1/audit/tail",
            ]
            .iter()
            .all(|action| text.contains(action))
            .then_some(text)
        },
    )
    .await
    .expect("verifying, proving, tailing and unreadable requests are audited admin actions");
    assert!(!audited.contains(&admin), "no token reaches the audit log");
    assert!(
        !audited.contains(FORGED),
        "no body value reaches the audit log"
    );
    let attempts = search_until(
        &http,
        &api("/audit/events?kind=EVENT_KIND_ADMIN_CHANGE&newest_first=true&limit=100"),
        &admin,
        |page| {
            let unauthenticated: Vec<Value> = page["events"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|record| record["event"]["outcome"] == "OUTCOME_UNAUTHENTICATED")
                .cloned()
                .collect();
            (!unauthenticated.is_empty()).then_some(unauthenticated)
        },
    )
    .await
    .expect("an attempt without a valid token is an audited admin action");
    let text = serde_json::to_string(&attempts).expect("json");
    assert!(
        !text.contains(FORGED),
        "the presented token is not recorded: {text}"
    );
    child.kill().await.expect("gatehouse stopped");
}

/// Reads an NDJSON response until its first complete line and returns that line's document.
async fn first_line(mut response: reqwest::Response) -> Value {
    let mut buffer = Vec::new();
    loop {
        if let Some(end) = buffer.iter().position(|byte| *byte == b'\n') {
            return serde_json::from_slice(&buffer[..end]).expect("a JSON line");
        }
        let chunk = response
            .chunk()
            .await
            .expect("tail chunk")
            .expect("the tail stays open");
        buffer.extend_from_slice(&chunk);
    }
}
