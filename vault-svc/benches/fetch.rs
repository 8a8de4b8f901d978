//! Credential fetch latency as edge-svc sees it: the revoked-principal check,
//! the row read and the envelope decryption (data key unwrap + payload), on
//! SQLite and PostgreSQL: in-process, through the gRPC service on loopback, and
//! through edge-svc's own vault client (`Credentials::fetch`, its cache
//! bypassed) — the figure edge sees on a cache miss.
//! Besides criterion's means, prints p50/p99/p99.9 from 20,000 sequential
//! fetches per case.
//!
//! PostgreSQL runs when `DATABASE_URL` is set (a scratch database is created
//! and dropped); otherwise it prints "SKIPPED".
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use edge_svc::credentials::{Credentials, Fetched, Who};
use proto::common::v1 as common;
use proto::vault::v1 as pb;
use proto::vault::v1::vault_client::VaultClient;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tonic::transport::Channel;
use vault_svc::credential::Material;
use vault_svc::crypto::{Envelope, LocalKeyring};
use vault_svc::event::LogSink;
use vault_svc::secret::{DataKey, Owner, SecretText};
use vault_svc::store::{PostgresStore, SqliteStore, Store};
use vault_svc::{
    CallersConfig, Config, ConnectorConfig, ConsentIssuer, CredentialMode, CredentialOutcome,
    CredentialQuery, SERVICE_TOKEN_METADATA, Vault,
};

const MEMBERS: usize = 1000;
const EDGE: &str = "edge-bench-token-0123456789";

async fn vault(store: Arc<dyn Store>) -> Vault {
    let keyring = Arc::new(LocalKeyring::from_keys([(1, DataKey::from_bytes([9; 32]))]));
    let mut connectors = BTreeMap::new();
    connectors.insert(
        "github".to_owned(),
        ConnectorConfig {
            credential: CredentialMode::PerMember,
            oauth: None,
            api_key: None,
            rotation: None,
        },
    );
    let consent = ConsentIssuer::new(
        "http://127.0.0.1:1/vault",
        Duration::from_secs(60),
        Duration::from_secs(5),
    )
    .unwrap();
    // Events are logged by default; no subscriber is installed here, so the
    // sink's cost is the event construction only.
    let vault = Vault::new(
        "acme".into(),
        store,
        Envelope::new(keyring),
        connectors,
        Arc::new(LogSink),
        consent,
    );
    for member in 0..MEMBERS {
        let material = Material::Bearer {
            token: SecretText::from(format!("ghp_{member:036}")),
        };
        vault
            .store_credential(
                "github",
                Owner::Member(format!("member-{member}")),
                &material,
                None,
                String::new(),
            )
            .await
            .unwrap();
    }
    vault
}

fn query(n: usize) -> CredentialQuery {
    CredentialQuery {
        member_id: Some(format!("member-{}", n % MEMBERS)),
        agent_client_id: Some("agent-1".into()),
        connector: "github".into(),
        trace_id: String::new(),
    }
}

fn request(n: usize) -> tonic::Request<pb::GetCredentialRequest> {
    let mut request = tonic::Request::new(pb::GetCredentialRequest {
        principal: Some(common::Principal {
            member: Some(common::Member {
                id: format!("member-{}", n % MEMBERS),
                ..Default::default()
            }),
            agent: Some(common::Agent {
                client_id: "agent-1".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        connector: "github".into(),
        metadata: None,
    });
    request
        .metadata_mut()
        .insert(SERVICE_TOKEN_METADATA, EDGE.parse().unwrap());
    request
}

async fn grpc(vault: Vault) -> (VaultClient<Channel>, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut config = Config {
        callers: CallersConfig {
            edge_token: Some(EDGE.to_owned().into()),
            ..Default::default()
        },
        ..Config::default()
    };
    config.refresh.enabled = false;
    tokio::spawn(async move {
        vault_svc::serve_vault(
            vault,
            &config,
            listener,
            tokio_util::sync::CancellationToken::new(),
        )
        .await
        .unwrap();
    });
    let endpoint = format!("http://{addr}");
    let channel = Channel::from_shared(endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    (VaultClient::new(channel), endpoint)
}

fn who(n: usize) -> Who {
    Who::Member {
        id: format!("member-{}", n % MEMBERS),
        client_id: "agent-1".into(),
    }
}

fn report(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    eprintln!(
        "fetch {name}: p50 {:?} p99 {:?} p99.9 {:?} max {:?} ({} fetches)",
        at(0.5),
        at(0.99),
        at(0.999),
        samples[samples.len() - 1],
        samples.len()
    );
}

fn bench_backend(
    c: &mut Criterion,
    name: &str,
    runtime: &tokio::runtime::Runtime,
    store: Arc<dyn Store>,
) {
    let vault = runtime.block_on(vault(store));
    let (client, endpoint) = runtime.block_on(grpc(vault.clone()));
    // Its gRPC channel spawns its connection task: it must be made inside the runtime.
    let edge = {
        let _runtime = runtime.enter();
        Credentials::with_token(&endpoint, EDGE, Duration::from_secs(30)).unwrap()
    };
    let mut samples = Vec::with_capacity(20_000);
    runtime.block_on(async {
        for n in 0..20_000 {
            let started = Instant::now();
            let outcome = vault.get_credential(&query(n)).await.unwrap();
            samples.push(started.elapsed());
            assert!(matches!(outcome, CredentialOutcome::Released(_)));
        }
    });
    report(&format!("{name} in-process"), &mut samples);
    samples.clear();
    runtime.block_on(async {
        let mut client = client.clone();
        for n in 0..20_000 {
            let started = Instant::now();
            client.get_credential(request(n)).await.unwrap();
            samples.push(started.elapsed());
        }
    });
    report(&format!("{name} grpc"), &mut samples);
    samples.clear();
    runtime.block_on(async {
        for n in 0..20_000 {
            let who = who(n);
            edge.forget(&who, "github").await;
            let started = Instant::now();
            let fetched = edge.fetch(&who, "github", "").await.unwrap();
            samples.push(started.elapsed());
            assert!(matches!(fetched, Fetched::Released(_)));
        }
    });
    report(&format!("{name} edge client (cache miss)"), &mut samples);
    let mut group = c.benchmark_group("fetch");
    let mut n = 0;
    group.bench_function(format!("{name}/in-process"), |b| {
        b.to_async(runtime).iter(|| {
            n += 1;
            let (vault, query) = (vault.clone(), query(n));
            async move { vault.get_credential(&query).await.unwrap() }
        });
    });
    group.bench_function(format!("{name}/grpc"), |b| {
        b.to_async(runtime).iter(|| {
            n += 1;
            let (mut client, request) = (client.clone(), request(n));
            async move { client.get_credential(request).await.unwrap() }
        });
    });
    group.finish();
}

fn fetch(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(
        runtime
            .block_on(SqliteStore::open(&dir.path().join("vault.db")))
            .unwrap(),
    );
    bench_backend(c, "sqlite", &runtime, sqlite);
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        eprintln!("SKIPPED: DATABASE_URL is not set; PostgreSQL fetch bench did not run");
        return;
    };
    let database = format!("vault_bench_{}", std::process::id());
    runtime.block_on(async {
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .unwrap();
    });
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let postgres: Arc<dyn Store> = Arc::new(
        runtime
            .block_on(PostgresStore::connect(&format!("{base}/{database}")))
            .unwrap(),
    );
    bench_backend(c, "postgres", &runtime, postgres);
    runtime.block_on(async {
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    });
}

criterion_group!(benches, fetch);
criterion_main!(benches);
