//! Events per second durably stored (committed) on SQLite and PostgreSQL, in
//! batches of 500 as edge-svc's Append stream sends them: from one stream
//! (`append`, the store alone: one transaction per batch) and from
//! [`STREAMS`] concurrent streams through the log (`append_streams`, whose
//! batches share group commits, as several edge replicas' do). Also events per
//! second that `verify` re-checks.
//!
//! PostgreSQL runs when `DATABASE_URL` is set (a scratch database is created and
//! dropped); otherwise it prints "SKIPPED".
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use audit_svc::{AuditEvent, AuditLog, PostgresStore, Signer, SqliteStore, Store};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

const BATCH: u64 = 500;
/// Is how many appenders `append_streams` runs at once.
const STREAMS: u64 = 4;

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn batch() -> Vec<AuditEvent> {
    (0..BATCH)
        .map(|_| {
            let n = NEXT_ID.fetch_add(1, Ordering::Relaxed);
            AuditEvent::from_document(&json!({
                "eventId": format!("bench-{n:012}"),
                "kind": "EVENT_KIND_MCP_REQUEST",
                "time": "2026-11-22T03:00:00Z",
                "principal": {"member": {"id": format!("member-{}", n % 97)}},
                "target": {"virtualServer": "demo", "connector": "echo", "tool": {"name": "echo"}},
                "decision": {"verdict": "VERDICT_ALLOW", "policyIds": ["p1"]},
                "outcome": "OUTCOME_SUCCESS",
                "latency": "0.000015s",
                "payload": {"arguments": [{"name": "text", "sizeBytes": "42"}], "requestBytes": "180"},
                "metadata": {"traceId": format!("{n:032x}"), "mcpMethod": "tools/call"},
            }))
            .unwrap()
        })
        .collect()
}

fn bench_store(
    c: &mut Criterion,
    name: &str,
    runtime: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
) {
    let mut group = c.benchmark_group("append");
    group.throughput(Throughput::Elements(BATCH));
    group.sample_size(20);
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            batch,
            |events| {
                let store = store.clone();
                async move { store.append(&events).await.unwrap() }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
    let log = runtime
        .block_on(AuditLog::new(
            store,
            Signer::new("bench/audit".to_owned(), &[1u8; 32]),
        ))
        .unwrap();
    let mut group = c.benchmark_group("append_streams");
    group.throughput(Throughput::Elements(BATCH * STREAMS));
    group.sample_size(20);
    group.bench_function(name, |b| {
        b.to_async(runtime).iter_batched(
            || (0..STREAMS).map(|_| batch()).collect::<Vec<_>>(),
            |batches| {
                let log = log.clone();
                async move {
                    let appends: Vec<_> = batches
                        .into_iter()
                        .map(|events| {
                            tokio::spawn({
                                let log = log.clone();
                                async move { log.append(events).await.unwrap() }
                            })
                        })
                        .collect();
                    for append in appends {
                        append.await.unwrap();
                    }
                }
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

fn append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = runtime
        .block_on(SqliteStore::open(&dir.path().join("audit.db")))
        .unwrap();
    bench_store(c, "sqlite", &runtime, Arc::new(sqlite));
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        eprintln!("SKIPPED: DATABASE_URL is not set; PostgreSQL append bench did not run");
        return;
    };
    let database = format!("audit_bench_{}", std::process::id());
    let admin = |statement: String| {
        let admin_url = admin_url.clone();
        async move {
            let mut connection = PgConnection::connect(&admin_url).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(statement))
                .execute(&mut connection)
                .await
                .unwrap();
        }
    };
    runtime.block_on(admin(format!("CREATE DATABASE {database}")));
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let postgres = runtime
        .block_on(PostgresStore::connect(&format!("{base}/{database}")))
        .unwrap();
    bench_store(c, "postgres", &runtime, Arc::new(postgres.clone()));
    runtime.block_on(postgres.pool().close());
    runtime.block_on(admin(format!("DROP DATABASE {database} WITH (FORCE)")));
}

/// Recomputes chain and tree over a 20,000-event SQLite log.
fn verify(c: &mut Criterion) {
    const EVENTS: u64 = 20_000;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = runtime
        .block_on(SqliteStore::open(&dir.path().join("audit.db")))
        .unwrap();
    for _ in 0..EVENTS / BATCH {
        runtime.block_on(store.append(&batch())).unwrap();
    }
    let mut group = c.benchmark_group("verify");
    group.throughput(Throughput::Elements(EVENTS));
    group.sample_size(10);
    group.bench_function("sqlite", |b| {
        b.to_async(&runtime).iter(|| async {
            let report = audit_svc::verify(&store, None).await.unwrap();
            assert!(report.problem.is_none());
        });
    });
    group.finish();
}

criterion_group!(benches, append, verify);
criterion_main!(benches);
