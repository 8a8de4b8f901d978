//! The refresh engine against a real third-party provider (authlib) that
//! rotates refresh tokens and revokes a grant on reuse: in-process locks on
//! SQLite, Redis locks on PostgreSQL, and three vault-svc processes sharing
//! PostgreSQL and Redis with one killed by SIGKILL mid-run.

use std::sync::Arc;
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;
use vault_svc::credential::{Material, OAuthGrant, now_micros, random_id};
use vault_svc::crypto::LocalKeyring;
use vault_svc::lock::{InProcessLock, RedisLock, RefreshLock};
use vault_svc::secret::{Owner, SecretText};
use vault_svc::store::{PostgresStore, Store};
use vault_svc::{CredentialOutcome, CredentialQuery, RefreshConfig, RefreshEngine, Vault};

use crate::backend::{Backend, drop_database, fresh_database, redis_url};
use crate::fixture;
use crate::peer::{Provider, SeededGrant};

/// Is every access token's lifetime at the provider, in seconds.
const LIFETIME: u64 = 3;
const KEK: &str = "1:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

fn refresh_config(redis_prefix: &str) -> RefreshConfig {
    RefreshConfig {
        enabled: true,
        redis_url: None,
        redis_key_prefix: redis_prefix.to_owned(),
        poll_interval: Duration::from_millis(100),
        lock_ttl: Duration::from_secs(2),
        http_timeout: Duration::from_millis(800),
        concurrency: 32,
        batch: 500,
    }
}

async fn store_grants(vault: &Vault, provider: &Provider, grants: &[SeededGrant]) {
    let expires_at = now_micros() + i64::try_from(LIFETIME).unwrap() * 1_000_000;
    for grant in grants {
        let material = Material::OauthGrant(OAuthGrant {
            access_token: SecretText::from(grant.access_token.as_str()),
            refresh_token: Some(SecretText::from(grant.refresh_token.as_str())),
            token_endpoint: format!("{}/token", provider.url),
            client_id: "vault-client".to_owned(),
            client_secret: Some(SecretText::from("vault-client-secret")),
            resource: None,
        });
        vault
            .store_credential(
                "personal",
                Owner::Member(grant.user.clone()),
                &material,
                Some(expires_at),
                String::new(),
            )
            .await
            .unwrap();
    }
}

/// Waits until every one of `grants` grants was refreshed `cycles` times.
async fn wait_for_cycles(
    provider: &Provider,
    grants: usize,
    cycles: u64,
    deadline: Duration,
) -> serde_json::Value {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let stats = provider.stats().await;
        if Provider::min_refreshes(&stats, grants) >= cycles {
            return stats;
        }
        assert!(
            tokio::time::Instant::now() < until,
            "refresh cycles not reached in {deadline:?}: {stats}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Asserts the provider saw each refresh token redeemed once, each before its
/// access token expired, and no grant refreshed more often than its schedule.
fn assert_exactly_once_per_cycle(stats: &serde_json::Value, elapsed: Duration) {
    assert_eq!(stats["reuse_detected"], 0, "{stats}");
    assert_eq!(stats["revoked_grants"], 0, "{stats}");
    assert_eq!(stats["late_refreshes"], 0, "{stats}");
    // Refreshes come at least 2/3 of a lifetime minus 10 % jitter apart.
    let shortest = LIFETIME as f64 * (2.0 / 3.0 - 0.1);
    let most = (elapsed.as_secs_f64() / shortest).floor() as u64 + 1;
    let counts = stats["refreshes"].as_object().unwrap();
    let total: u64 = counts.values().map(|count| count.as_u64().unwrap()).sum();
    eprintln!(
        "refreshes: {} grants, {total} refreshes in {elapsed:?}, none reused or late",
        counts.len()
    );
    assert!(
        counts.values().all(|count| count.as_u64().unwrap() <= most),
        "more than {most} refreshes: {stats}"
    );
}

async fn assert_readable_and_valid(vault: &Vault, provider: &Provider, grants: &[SeededGrant]) {
    for grant in grants.iter().step_by(17) {
        let query = CredentialQuery {
            member_id: Some(grant.user.clone()),
            connector: "personal".into(),
            ..CredentialQuery::default()
        };
        let CredentialOutcome::Released(released) = vault.get_credential(&query).await.unwrap()
        else {
            panic!("credential not released");
        };
        let Material::Bearer { token } = released.material else {
            panic!("not a bearer token")
        };
        assert_ne!(token.expose(), grant.access_token, "never refreshed");
        assert_eq!(
            provider.whoami(token.expose()).await.as_deref(),
            Some(grant.user.as_str())
        );
    }
}

/// Runs two engines over one store, each with its own lock handle.
async fn two_engines_refresh_once_per_cycle(backend: &Backend, locks: [Arc<dyn RefreshLock>; 2]) {
    let Some(provider) = Provider::start(LIFETIME).await else {
        return;
    };
    let (vault, _events) = fixture::vault(backend, &provider.url);
    let grants = provider.seed("member", 40).await;
    let started = tokio::time::Instant::now();
    store_grants(&vault, &provider, &grants).await;
    let shutdown = CancellationToken::new();
    let mut engines = Vec::new();
    for lock in locks {
        let engine = RefreshEngine::new(vault.clone(), lock, refresh_config("")).unwrap();
        engines.push(tokio::spawn(engine.run(shutdown.child_token())));
    }
    let stats = wait_for_cycles(&provider, grants.len(), 3, Duration::from_secs(40)).await;
    assert_exactly_once_per_cycle(&stats, started.elapsed());
    assert_readable_and_valid(&vault, &provider, &grants).await;
    shutdown.cancel();
    for engine in engines {
        engine.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_locks_refresh_each_grant_once_per_cycle() {
    let backend = Backend::sqlite().await;
    let lock: Arc<dyn RefreshLock> = Arc::new(InProcessLock::default());
    two_engines_refresh_once_per_cycle(&backend, [lock.clone(), lock]).await;
    backend.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_locks_refresh_each_grant_once_per_cycle() {
    let Some(url) = redis_url() else { return };
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let prefix = format!("vault-it:{}:", random_id("").unwrap());
    let one: Arc<dyn RefreshLock> = Arc::new(RedisLock::connect(&url, &prefix).await.unwrap());
    let two: Arc<dyn RefreshLock> = Arc::new(RedisLock::connect(&url, &prefix).await.unwrap());
    two_engines_refresh_once_per_cycle(&backend, [one, two]).await;
    backend.finish().await;
}

const BINARY: &str = env!("CARGO_BIN_EXE_vault-svc");

fn replica(database_url: &str, redis_url: &str, prefix: &str, data_dir: &std::path::Path) -> Child {
    Command::new(BINARY)
        .env("GATEHOUSE_VAULT__GRPC__LISTEN_ADDR", "127.0.0.1:0")
        .env("GATEHOUSE_VAULT__DATA_DIR", data_dir)
        .env("GATEHOUSE_VAULT__TENANT", "acme")
        .env("GATEHOUSE_VAULT__STORE__POSTGRES_URL", database_url)
        .env("GATEHOUSE_VAULT__KEK__ENV_VAR", "GATEHOUSE_IT_KEK")
        .env("GATEHOUSE_IT_KEK", KEK)
        .env("GATEHOUSE_VAULT__REFRESH__REDIS_URL", redis_url)
        .env("GATEHOUSE_VAULT__REFRESH__REDIS_KEY_PREFIX", prefix)
        .env("GATEHOUSE_VAULT__REFRESH__POLL_INTERVAL", "100ms")
        .env("GATEHOUSE_VAULT__REFRESH__LOCK_TTL", "2s")
        .env("GATEHOUSE_VAULT__REFRESH__HTTP_TIMEOUT", "800ms")
        .env("GATEHOUSE_VAULT__REFRESH__CONCURRENCY", "32")
        .env("GATEHOUSE_VAULT__TELEMETRY__LOG_FILTER", "warn")
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Three vault-svc processes share PostgreSQL and Redis; one is killed with
/// SIGKILL between refresh bursts. A SIGKILL while a token request is in
/// flight can lose the provider's answer, which no client can fence (the
/// provider then sees the next redemption as reuse), so the kill waits for a
/// moment with nothing due within 400 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_one_killed_refresh_each_grant_once_per_cycle() {
    let Some(redis) = redis_url() else { return };
    let Some(provider) = Provider::start(LIFETIME).await else {
        return;
    };
    let Some((admin_url, database, database_url)) = fresh_database().await else {
        return;
    };
    let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&database_url).await.unwrap());
    let keyring = Arc::new(LocalKeyring::from_env_value(KEK).unwrap());
    let (vault, _events) = fixture::vault_over(
        store.clone(),
        keyring,
        &provider.url,
        "http://127.0.0.1:9/vault",
    );
    let grants = provider.seed("member", 200).await;
    let started = tokio::time::Instant::now();
    store_grants(&vault, &provider, &grants).await;
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("vault-it:{}:", random_id("").unwrap());
    let mut replicas: Vec<Child> = (0..3)
        .map(|_| replica(&database_url, &redis, &prefix, dir.path()))
        .collect();
    wait_for_cycles(&provider, grants.len(), 1, Duration::from_secs(30)).await;
    let quiet_by = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let soon = now_micros() + 400_000;
        if store.due_for_refresh(soon, 1).await.unwrap().is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < quiet_by,
            "no quiet moment to kill a replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    replicas[0].start_kill().unwrap();
    let status = replicas[0].wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let stats = wait_for_cycles(&provider, grants.len(), 4, Duration::from_secs(60)).await;
    assert_exactly_once_per_cycle(&stats, started.elapsed());
    assert_readable_and_valid(&vault, &provider, &grants).await;
    for replica in &mut replicas[1..] {
        assert!(
            replica.try_wait().unwrap().is_none(),
            "a surviving replica exited"
        );
    }
    drop(replicas);
    drop(vault);
    drop(store);
    drop_database(&admin_url, &database).await;
}
