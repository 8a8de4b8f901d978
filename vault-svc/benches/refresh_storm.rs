//! The refresh storm: 10,000 OAuth credentials whose refreshes all fall due
//! within one minute, refreshed by one vault-svc refresh engine against an
//! in-process OAuth token endpoint that rotates refresh tokens and detects
//! reuse. Prints, per store: how many grants were redeemed exactly once, how
//! many were redeemed only after their access token expired, reuse detections,
//! the refresh rate, and how late refreshes ran behind their due time
//! (p50/p99/max). On SQLite, and on PostgreSQL when `DATABASE_URL` is set.
//!
//! `cargo bench -p vault-svc --bench refresh_storm` (`STORM_CREDENTIALS=N` to
//! change the count).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::routing::post;
use axum::{Form, Json};
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use tokio_util::sync::CancellationToken;
use vault_svc::credential::{Material, OAuthGrant, now_micros};
use vault_svc::crypto::{Envelope, LocalKeyring};
use vault_svc::event::LogSink;
use vault_svc::lock::InProcessLock;
use vault_svc::secret::{DataKey, Owner, SecretText};
use vault_svc::store::{PostgresStore, SqliteStore, Store};
use vault_svc::{
    ConnectorConfig, ConsentIssuer, CredentialMode, RefreshConfig, RefreshEngine, Vault,
};

/// Is the provider's view: the current refresh-token generation per grant, the
/// redemptions per grant with their times, and reuse detections.
#[derive(Default)]
struct Provider {
    generation: HashMap<String, u64>,
    redeemed: HashMap<String, Vec<i64>>,
    reuse: u64,
}

type Shared = Arc<Mutex<Provider>>;

#[derive(serde::Deserialize)]
struct TokenForm {
    grant_type: String,
    refresh_token: String,
}

async fn token(
    State(provider): State<Shared>,
    Form(form): Form<TokenForm>,
) -> Result<Json<serde_json::Value>, (axum::http::StatusCode, Json<serde_json::Value>)> {
    let rejected = |error: &str| {
        (
            axum::http::StatusCode::BAD_REQUEST,
            Json(serde_json::json!({"error": error})),
        )
    };
    if form.grant_type != "refresh_token" {
        return Err(rejected("unsupported_grant_type"));
    }
    let (grant, generation) = form
        .refresh_token
        .rsplit_once('.')
        .ok_or_else(|| rejected("invalid_grant"))?;
    let generation: u64 = generation.parse().map_err(|_| rejected("invalid_grant"))?;
    let mut state = provider.lock().unwrap();
    let current = state.generation.get(grant).copied().unwrap_or(0);
    if generation != current {
        state.reuse += 1;
        return Err(rejected("invalid_grant"));
    }
    state.generation.insert(grant.to_owned(), current + 1);
    state
        .redeemed
        .entry(grant.to_owned())
        .or_default()
        .push(now_micros());
    Ok(Json(serde_json::json!({
        "access_token": format!("at-{grant}-{}", current + 1),
        "token_type": "bearer",
        "expires_in": 3600,
        "refresh_token": format!("{grant}.{}", current + 1),
    })))
}

async fn start_provider() -> (String, Shared) {
    let provider = Shared::default();
    let router = axum::Router::new()
        .route("/token", post(token))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (format!("http://{addr}"), provider)
}

fn vault(store: Arc<dyn Store>) -> Vault {
    let keyring = Arc::new(LocalKeyring::from_keys([(1, DataKey::from_bytes([7; 32]))]));
    let mut connectors = BTreeMap::new();
    connectors.insert(
        "crm".to_owned(),
        ConnectorConfig::new(CredentialMode::PerMember),
    );
    let consent = ConsentIssuer::new(
        "http://127.0.0.1:1/vault",
        Duration::from_secs(60),
        Duration::from_secs(5),
    )
    .unwrap();
    Vault::new(
        "acme".into(),
        store,
        Envelope::new(keyring),
        connectors,
        Arc::new(LogSink),
        consent,
    )
}

fn percentile(sorted: &[i64], q: f64) -> f64 {
    let index = ((sorted.len() as f64 * q) as usize).min(sorted.len() - 1);
    sorted[index] as f64 / 1000.0
}

async fn storm(name: &str, store: Arc<dyn Store>, count: usize) {
    let (provider_url, provider) = start_provider().await;
    let vault = vault(store);
    // Lifetimes of 60–90 s: refreshes fall due at ⅔ of them minus jitter, i.e.
    // all within the same minute.
    let seeding = Instant::now();
    let mut due = HashMap::with_capacity(count);
    let mut expires = HashMap::with_capacity(count);
    for n in 0..count {
        let grant = format!("g{n}");
        let material = Material::OauthGrant(OAuthGrant {
            access_token: SecretText::from(format!("at-{grant}-0")),
            refresh_token: Some(SecretText::from(format!("{grant}.0"))),
            token_endpoint: format!("{provider_url}/token"),
            client_id: "vault".into(),
            client_secret: None,
            resource: None,
            revocation_endpoint: None,
        });
        let lifetime = 60_000_000 + i64::try_from(n % 30_000).unwrap() * 1000;
        let expires_at = now_micros() + lifetime;
        let record = vault
            .store_credential(
                "crm",
                Owner::Member(format!("m{n}")),
                &material,
                Some(expires_at),
                String::new(),
            )
            .await
            .unwrap();
        expires.insert(grant.clone(), expires_at);
        due.insert(grant, record.refresh_due_at.unwrap());
    }
    let first_due = *due.values().min().unwrap();
    let last_due = *due.values().max().unwrap();
    eprintln!(
        "storm {name}: seeded {count} credentials in {:?}; due window {:.1} s, first due in {:.1} s",
        seeding.elapsed(),
        (last_due - first_due) as f64 / 1e6,
        (first_due - now_micros()) as f64 / 1e6
    );
    let config = RefreshConfig {
        concurrency: 32,
        batch: 500,
        ..RefreshConfig::default()
    };
    let engine =
        RefreshEngine::new(vault.clone(), Arc::new(InProcessLock::default()), config).unwrap();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(engine.run(shutdown.clone()));
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let done = provider.lock().unwrap().redeemed.len();
        if done >= count || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Let any duplicate redemption surface before counting.
    tokio::time::sleep(Duration::from_secs(2)).await;
    shutdown.cancel();
    running.await.unwrap();
    let state = provider.lock().unwrap();
    let once = state
        .redeemed
        .values()
        .filter(|times| times.len() == 1)
        .count();
    let more = state
        .redeemed
        .values()
        .filter(|times| times.len() > 1)
        .count();
    let mut lateness: Vec<i64> = state
        .redeemed
        .iter()
        .map(|(grant, times)| times[0] - due[grant])
        .collect();
    lateness.sort_unstable();
    let after_expiry = state
        .redeemed
        .iter()
        .filter(|(grant, times)| times[0] > expires[*grant])
        .count();
    // The busiest second shows the engine's capacity when the due rate outran it.
    let mut per_second: HashMap<i64, u32> = HashMap::new();
    for times in state.redeemed.values() {
        *per_second.entry(times[0] / 1_000_000).or_default() += 1;
    }
    let busiest = per_second.values().copied().max().unwrap_or(0);
    let first = state.redeemed.values().map(|times| times[0]).min().unwrap();
    let last = state.redeemed.values().map(|times| times[0]).max().unwrap();
    eprintln!(
        "storm {name}: {once}/{count} grants refreshed exactly once, {more} more than once, \
         {} never, {after_expiry} after expiry, {} reuse detections; {:.0} refreshes/s while busy \
         ({:.1} s from first to last), {busiest} in the busiest second; lateness behind due time \
         p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        count - state.redeemed.len(),
        state.reuse,
        state.redeemed.len() as f64 / ((last - first).max(1) as f64 / 1e6),
        (last - first) as f64 / 1e6,
        percentile(&lateness, 0.5),
        percentile(&lateness, 0.99),
        *lateness.last().unwrap() as f64 / 1000.0,
    );
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing: run
    // the storm only when benchmarking.
    if !std::env::args().any(|arg| arg == "--bench") {
        return;
    }
    let count: usize = std::env::var("STORM_CREDENTIALS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    runtime.block_on(async {
        let sqlite: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("vault.db"))
                .await
                .unwrap(),
        );
        storm("sqlite", sqlite, count).await;
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            eprintln!("SKIPPED: DATABASE_URL is not set; PostgreSQL refresh storm did not run");
            return;
        };
        let database = format!("vault_storm_{}", std::process::id());
        let mut admin = PgConnection::connect(&admin_url).await.unwrap();
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {database}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let (base, _) = admin_url.rsplit_once('/').unwrap();
        let postgres: Arc<dyn Store> = Arc::new(
            PostgresStore::connect(&format!("{base}/{database}"))
                .await
                .unwrap(),
        );
        storm("postgres", postgres, count).await;
        sqlx::raw_sql(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
        )))
        .execute(&mut admin)
        .await
        .unwrap();
    });
}
