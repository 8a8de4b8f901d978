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

use crate::backend::{Backend, drop_database, forget_redis_prefix, fresh_database, redis_url};
use crate::fixture;
use crate::peer::{Provider, SeededGrant};

/// Serializes these tests: each drives a provider, engines and a database hard
/// enough on two cores that running them together would measure contention
/// (late refreshes), not the engine.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Is every access token's lifetime at the provider, in seconds.
const LIFETIME: u64 = 3;
/// Is the lifetime in the three-process test, as the issue asks: five processes (three
/// replicas, the provider, PostgreSQL) share two cores with the rest of the suite, and the
/// third of a lifetime left after a refresh is due (20 s) absorbs that load (at 5 s and 8 s,
/// a fully loaded CI machine saw refreshes land after expiry).
const PROCESS_LIFETIME: u64 = 60;
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

/// Stores `grants` as member credentials, 16 at a time: a sequential store of the
/// storm's 10,000 grants outlasts their one-minute lifetime on a loaded machine.
async fn store_grants(vault: &Vault, provider: &Provider, grants: &[SeededGrant], lifetime: u64) {
    let expires_at = now_micros() + i64::try_from(lifetime).unwrap() * 1_000_000;
    let mut writers = tokio::task::JoinSet::new();
    for chunk in grants.chunks(grants.len().div_ceil(16).max(1)) {
        let materials: Vec<(String, Material)> = chunk
            .iter()
            .map(|grant| {
                let material = Material::OauthGrant(OAuthGrant {
                    access_token: SecretText::from(grant.access_token.as_str()),
                    refresh_token: Some(SecretText::from(grant.refresh_token.as_str())),
                    token_endpoint: format!("{}/token", provider.url),
                    client_id: "vault-client".to_owned(),
                    client_secret: Some(SecretText::from("vault-client-secret")),
                    resource: None,
                    revocation_endpoint: Some(format!("{}/revoke", provider.url)),
                });
                (grant.user.clone(), material)
            })
            .collect();
        let vault = vault.clone();
        writers.spawn(async move {
            for (user, material) in materials {
                vault
                    .store_credential(
                        "personal",
                        Owner::Member(user),
                        &material,
                        Some(expires_at),
                        String::new(),
                    )
                    .await
                    .unwrap();
            }
        });
    }
    while let Some(written) = writers.join_next().await {
        written.unwrap();
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
fn assert_exactly_once_per_cycle(stats: &serde_json::Value, elapsed: Duration, lifetime: u64) {
    assert_eq!(stats["reuse_detected"], 0, "{stats}");
    assert_eq!(stats["revoked_grants"], 0, "{stats}");
    assert_eq!(stats["late_refreshes"], 0, "{stats}");
    // Refreshes come at least 2/3 of a lifetime minus 10 % jitter apart.
    let shortest = lifetime as f64 * (2.0 / 3.0 - 0.1);
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
    store_grants(&vault, &provider, &grants, LIFETIME).await;
    let shutdown = CancellationToken::new();
    let mut engines = Vec::new();
    for lock in locks {
        let engine = RefreshEngine::new(vault.clone(), lock, refresh_config("")).unwrap();
        engines.push(tokio::spawn(engine.run(shutdown.child_token())));
    }
    let stats = wait_for_cycles(&provider, grants.len(), 3, Duration::from_secs(40)).await;
    assert_exactly_once_per_cycle(&stats, started.elapsed(), LIFETIME);
    assert_readable_and_valid(&vault, &provider, &grants).await;
    shutdown.cancel();
    for engine in engines {
        engine.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_process_locks_refresh_each_grant_once_per_cycle() {
    let _heavy = HEAVY.lock().await;
    let backend = Backend::sqlite().await;
    let lock: Arc<dyn RefreshLock> = Arc::new(InProcessLock::default());
    two_engines_refresh_once_per_cycle(&backend, [lock.clone(), lock]).await;
    backend.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_locks_refresh_each_grant_once_per_cycle() {
    let _heavy = HEAVY.lock().await;
    let Some(url) = redis_url() else { return };
    let Some(backend) = Backend::postgres().await else {
        return;
    };
    let prefix = format!("vault-it:{}:", random_id("").unwrap());
    let one: Arc<dyn RefreshLock> = Arc::new(RedisLock::connect(&url, &prefix).await.unwrap());
    let two: Arc<dyn RefreshLock> = Arc::new(RedisLock::connect(&url, &prefix).await.unwrap());
    two_engines_refresh_once_per_cycle(&backend, [one, two]).await;
    backend.finish().await;
    forget_redis_prefix(&url, &prefix).await;
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
        .env(
            "GATEHOUSE_VAULT__TELEMETRY__LOG_FILTER",
            "warn,vault_svc=info",
        )
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// Waits until `replica` logs that it serves (it has migrated, passed its KEK
/// self-test and started its refresh engine), then drains its log.
async fn wait_until_serving(replica: &mut Child) {
    use tokio::io::AsyncBufReadExt as _;
    let stderr = replica.stderr.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stderr).lines();
    tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("listen_addr") {
                return;
            }
        }
        panic!("replica exited before serving");
    })
    .await
    .expect("replica did not serve within 30 s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
}

/// Stops `replica` (SIGSTOP) at a moment it holds no refresh lock, then kills
/// it with SIGKILL. A SIGKILL while a token request is in flight can lose the
/// provider's answer, which no client can fence (the provider then sees the
/// next redemption as reuse); every request runs under a held lock, so a
/// stopped replica holding none has nothing in flight.
async fn kill_between_refreshes(replica: &mut Child, redis_url: &str, prefix: &str) {
    let pid = replica.id().unwrap().to_string();
    let mut redis = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        assert!(
            Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .await
                .unwrap()
                .success()
        );
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}lock:*"))
            .query_async(&mut redis)
            .await
            .unwrap();
        let mut holds = false;
        for key in keys {
            let holder: Option<String> = redis::cmd("GET")
                .arg(&key)
                .query_async(&mut redis)
                .await
                .unwrap();
            holds |= holder.is_some_and(|holder| holder.starts_with(&format!("{pid}:")));
        }
        if !holds {
            break;
        }
        assert!(
            Command::new("kill")
                .args(["-CONT", &pid])
                .status()
                .await
                .unwrap()
                .success()
        );
        assert!(
            tokio::time::Instant::now() < until,
            "the replica never stopped holding locks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    replica.start_kill().unwrap();
}

/// How big one three-process run is: grants, their lifetime in seconds, and the
/// refresh cycles each grant must go through.
#[derive(Debug, Clone, Copy)]
struct Scale {
    grants: usize,
    lifetime: u64,
    cycles: u64,
}

/// Three vault-svc processes share PostgreSQL and Redis; one is killed with
/// SIGKILL mid-run, between two of its refreshes. The scale: 1,000 credentials
/// with 60-second lifetimes, two refresh cycles (about 90 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_one_killed_refresh_each_grant_once_per_cycle() {
    let scale = Scale {
        grants: 1_000,
        lifetime: PROCESS_LIFETIME,
        cycles: 2,
    };
    three_processes_one_killed(scale).await;
}

async fn three_processes_one_killed(scale: Scale) {
    let _heavy = HEAVY.lock().await;
    let Some(redis) = redis_url() else { return };
    let Some(provider) = Provider::start(scale.lifetime).await else {
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
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("vault-it:{}:", random_id("").unwrap());
    let mut replicas: Vec<Child> = (0..3)
        .map(|_| replica(&database_url, &redis, &prefix, dir.path()))
        .collect();
    for replica in &mut replicas {
        wait_until_serving(replica).await;
    }
    let grants = provider.seed("member", scale.grants).await;
    let started = tokio::time::Instant::now();
    store_grants(&vault, &provider, &grants, scale.lifetime).await;
    eprintln!("stored {} grants in {:?}", grants.len(), started.elapsed());
    let cycle = Duration::from_secs(scale.lifetime);
    if scale.cycles > 1 {
        wait_for_cycles(&provider, grants.len(), 1, cycle + Duration::from_secs(30)).await;
    }
    kill_between_refreshes(&mut replicas[0], &redis, &prefix).await;
    let status = replicas[0].wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let deadline = cycle * u32::try_from(scale.cycles).unwrap() + Duration::from_secs(60);
    let stats = wait_for_cycles(&provider, grants.len(), scale.cycles, deadline).await;
    eprintln!(
        "{} grants x {} s lifetimes: {} cycle(s) reached in {:?}",
        grants.len(),
        scale.lifetime,
        scale.cycles,
        started.elapsed()
    );
    assert_exactly_once_per_cycle(&stats, started.elapsed(), scale.lifetime);
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
    forget_redis_prefix(&redis, &prefix).await;
}

/// A shared client-credentials pair: the engine obtains a token at once, then
/// renews it before expiry; edge receives only the access token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_are_exchanged_and_renewed() {
    let _heavy = HEAVY.lock().await;
    let Some(provider) = Provider::start(LIFETIME).await else {
        return;
    };
    let backend = Backend::sqlite().await;
    let (vault, _events) = fixture::vault(&backend, &provider.url);
    let material = Material::OauthClientCredentials(vault_svc::credential::ClientCredentials {
        token_endpoint: format!("{}/token", provider.url),
        client_id: "vault-client".to_owned(),
        client_secret: SecretText::from("vault-client-secret"),
        scopes: vec!["read".to_owned()],
        audience: Some("https://mcp.example.com/shared".to_owned()),
        access_token: None,
    });
    vault
        .set_shared("shared", &material, None, "service account".into())
        .await
        .unwrap();
    let query = CredentialQuery {
        agent_client_id: Some("bot".into()),
        connector: "shared".into(),
        ..CredentialQuery::default()
    };
    assert!(
        matches!(
            vault.get_credential(&query).await,
            Err(vault_svc::Error::RefreshFailing)
        ),
        "no token before the first exchange"
    );
    let shutdown = CancellationToken::new();
    let engine = RefreshEngine::new(
        vault.clone(),
        Arc::new(InProcessLock::default()),
        refresh_config(""),
    )
    .unwrap();
    let running = tokio::spawn(engine.run(shutdown.child_token()));
    let mut seen = std::collections::HashSet::new();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 3 {
        assert!(
            tokio::time::Instant::now() < until,
            "tokens seen: {}",
            seen.len()
        );
        if let Ok(CredentialOutcome::Released(released)) = vault.get_credential(&query).await {
            let Material::Bearer { token } = released.material else {
                panic!("not a bearer token")
            };
            if seen.insert(token.expose().to_owned()) {
                assert_eq!(
                    provider.whoami(token.expose()).await.as_deref(),
                    Some("client:vault-client")
                );
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    running.await.unwrap();
}
