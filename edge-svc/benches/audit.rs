//! What recording costs a call at edge: building, encoding and spooling one tools/call event,
//! against the same call path with no audit trail, measured in one run.
//!
//! `cargo bench -p edge-svc --bench audit`; the ratio of the two is the added latency.

#![allow(clippy::expect_used, clippy::unwrap_used, missing_docs)]

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use edge_svc::audit::{AuditConfig, CallRecord, Recorder, Subject};
use proto::audit::v1::Outcome;
use proto::common::v1::{ProtocolEra, RequestMetadata};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn facts() -> (Subject, RequestMetadata) {
    (
        Subject::Member {
            id: "member-0193".to_owned(),
            client_id: "claude-desktop".to_owned(),
        },
        RequestMetadata {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
            source_address: "10.0.3.17:53122".to_owned(),
            virtual_server: "crm".to_owned(),
            mcp_method: "tools/call".to_owned(),
            protocol_era: ProtocolEra::Modern.into(),
            protocol_version: "2026-07-28".to_owned(),
            jsonrpc_id: "42".to_owned(),
            user_agent: "python-httpx/0.28".to_owned(),
            mcp_client_name: "mcp".to_owned(),
            mcp_client_version: "2.3.0".to_owned(),
            ..RequestMetadata::default()
        },
    )
}

fn one_call(recorder: &Recorder, arguments: &rmcp::model::JsonObject) {
    let mut record = CallRecord::open(recorder, "crm", facts).expect("admitted");
    record.arguments(Some(arguments));
    record.tool("crm__search_contacts", "crm", "search_contacts");
    record
        .finish(Outcome::Success, None, 512)
        .expect("recorded");
}

fn audit(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let _guard = runtime.enter();
    let dir = tempfile::tempdir().expect("spool dir");
    let shutdown = CancellationToken::new();
    // Nothing listens here: the spool keeps everything, which is the cost a call pays anyway.
    let mut config = AuditConfig::new("http://127.0.0.1:9", dir.path());
    config.max_spool_bytes = u64::MAX / 2;
    let recorder = Recorder::start(&config, &shutdown).expect("recorder");
    let arguments =
        json!({"query": "acme corp", "limit": 25, "fields": ["name", "email", "owner"]})
            .as_object()
            .cloned()
            .expect("object");
    let mut group = c.benchmark_group("tools_call_audit");
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("off", |b| {
        b.iter(|| one_call(&Recorder::disabled(), &arguments));
    });
    group.bench_function("spooled", |b| b.iter(|| one_call(&recorder, &arguments)));
    group.finish();
    shutdown.cancel();
}

criterion_group!(benches, audit);
criterion_main!(benches);
