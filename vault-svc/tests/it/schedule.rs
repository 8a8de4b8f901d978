//! Scheduled rotation of shared secrets, on SQLite and PostgreSQL: the
//! schedule's store operations (fenced claims, atomic secret + schedule
//! writes), and the engine driving a real hook command — two replicas rotate
//! once, the previous value is retired only after the overlap, and a failing
//! hook backs off until the schedule needs attention.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use vault_svc::credential::{Material, now_micros};
use vault_svc::crypto::{Envelope, LocalKeyring};
use vault_svc::event::{ChannelSink, CredentialAction, CredentialEvent};
use vault_svc::lock::{InProcessLock, RedisLock, RefreshLock};
use vault_svc::secret::SecretText;
use vault_svc::secret_rotation::{RotatedSecret, RotationState, RotationUpdate};
use vault_svc::{
    ConnectorConfig, ConsentIssuer, CredentialMode, CredentialOutcome, CredentialQuery,
    HealthState, RotationConfig, RotationEngine, RotationHook, Vault,
};

use crate::backend::{Backend, conformance};

conformance!(
    a_schedule_is_claimed_with_a_fence_and_a_rotation_is_stored_atomically,
    two_replicas_rotate_once_and_retire_the_old_value_after_the_overlap,
    a_failing_hook_backs_off_then_needs_attention_until_an_operator_acts,
);

const INITIAL: &str = "initial-key-canary-51c2";

/// Writes the hook: it logs `ACTION MILLIS [VALUE]` to `log` and, for `rotate`,
/// answers `rotated-key-N` (N = rotations so far); with `fail`, it logs and exits 1.
fn hook_script(dir: &Path, fail: bool) -> (PathBuf, PathBuf) {
    let script = dir.join(if fail { "failing-hook.sh" } else { "hook.sh" });
    let log = dir.join(if fail { "failing.log" } else { "hook.log" });
    let body = if fail {
        "#!/bin/sh\ncat >/dev/null\necho \"fail $(date +%s%3N)\" >> \"$1\"\nexit 1\n"
    } else {
        "#!/bin/sh\ninput=$(cat)\ncase \"$input\" in\n  *'\"action\":\"retire\"'*) action=retire ;;\n  *) action=rotate ;;\nesac\n\
         current=$(printf '%s' \"$input\" | sed 's/.*\"current\":\"\\([^\"]*\\)\".*/\\1/')\n\
         echo \"$action $(date +%s%3N) $current\" >> \"$1\"\n\
         if [ \"$action\" = rotate ]; then\n  n=$(grep -c '^rotate' \"$1\")\n  echo \"{\\\"value\\\": \\\"rotated-key-$n\\\"}\"\nfi\n"
    };
    std::fs::write(&script, body).unwrap();
    (script, log)
}

fn rotation(script: &Path, log: &Path, overlap: Duration, max_attempts: u32) -> RotationConfig {
    RotationConfig {
        every: Duration::from_secs(3600),
        overlap,
        hook: RotationHook::Command(vec![
            "sh".to_owned(),
            script.display().to_string(),
            log.display().to_string(),
        ]),
        max_attempts,
        backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        timeout: Duration::from_secs(10),
    }
}

/// Returns a vault over `backend`'s store with a shared connector `team`
/// rotated by `rotation`, and its events.
fn vault(
    backend: &Backend,
    rotation: Option<RotationConfig>,
) -> (Vault, mpsc::Receiver<CredentialEvent>) {
    let (sink, events) = ChannelSink::new(10_000);
    (replica(backend, rotation, &sink), events)
}

/// Returns one replica's vault over `backend`'s store, emitting on `sink`.
fn replica(backend: &Backend, rotation: Option<RotationConfig>, sink: &ChannelSink) -> Vault {
    let keyring =
        Arc::new(LocalKeyring::load_or_generate(&backend.dir().join("vault.kek")).unwrap());
    let mut connectors = BTreeMap::new();
    connectors.insert(
        "team".to_owned(),
        ConnectorConfig {
            rotation,
            ..ConnectorConfig::new(CredentialMode::Shared)
        },
    );
    let consent = ConsentIssuer::new(
        "http://127.0.0.1:9/vault",
        Duration::from_secs(60),
        Duration::from_secs(5),
    )
    .unwrap();
    Vault::new(
        "acme".to_owned(),
        backend.store(),
        Envelope::new(keyring),
        connectors,
        Arc::new(sink.clone()),
        consent,
    )
}

fn bearer(token: &str) -> Material {
    Material::Bearer {
        token: SecretText::from(token),
    }
}

async fn current(vault: &Vault) -> String {
    let query = CredentialQuery {
        connector: "team".to_owned(),
        ..CredentialQuery::default()
    };
    let CredentialOutcome::Released(released) = vault.get_credential(&query).await.unwrap() else {
        panic!("the shared credential is released");
    };
    let Material::Bearer { token } = released.material else {
        panic!("a bearer token");
    };
    token.expose().to_owned()
}

/// Returns the lock both replicas share: Redis when the backend is PostgreSQL
/// and REDIS_URL is set, else one in-process lock.
async fn shared_lock(backend: &Backend) -> Arc<dyn RefreshLock> {
    if let (Backend::Postgres { database, .. }, Some(url)) =
        (backend, std::env::var("REDIS_URL").ok())
    {
        let prefix = format!("gatehouse:vault-it:{database}:");
        return Arc::new(RedisLock::connect(&url, &prefix).await.unwrap());
    }
    Arc::new(InProcessLock::default())
}

/// Polls `vault`'s schedule until `done` holds, for at most 60 s.
async fn wait_for(vault: &Vault, what: &str, done: impl Fn(RotationState) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(schedule) = vault.rotation_status("team").await.unwrap()
            && done(schedule.state)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn log_lines(log: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(|line| line.split(' ').map(str::to_owned).collect())
        .collect()
}

async fn a_schedule_is_claimed_with_a_fence_and_a_rotation_is_stored_atomically(backend: &Backend) {
    let (vault, _events) = vault(backend, None);
    let store = vault.store();
    let record = vault
        .set_shared("team", &bearer(INITIAL), None, String::new())
        .await
        .unwrap();
    assert!(store.rotation("acme", "team").await.unwrap().is_none());
    let created = store.schedule_rotation("acme", "team", 42).await.unwrap();
    assert_eq!(
        (
            created.state,
            created.next_at,
            created.attempts,
            created.cycle
        ),
        (RotationState::Scheduled, 42, 0, 0)
    );
    // Creating again keeps the existing schedule.
    let again = store.schedule_rotation("acme", "team", 99).await.unwrap();
    assert_eq!(again, created);

    // A claim needs the current version and a fence newer than any before.
    assert!(
        !store
            .claim_rotation("acme", "team", created.version + 1, 10)
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_rotation("acme", "team", created.version, 10)
            .await
            .unwrap()
    );
    let claimed = created.version + 1;
    assert!(
        !store
            .claim_rotation("acme", "team", claimed, 9)
            .await
            .unwrap()
    );

    let overlap = RotationUpdate {
        state: RotationState::Overlap,
        next_at: 1_000,
        attempts: 0,
        cycle: 1,
        previous_sealed: Some(vec![1, 2, 3]),
        last_error: String::new(),
    };
    let sealed = bearer("rotated-1")
        .seal(vault.envelope(), &record.key)
        .await
        .unwrap();
    let rotated = RotatedSecret {
        credential_id: record.id.clone(),
        credential_version: record.version,
        sealed,
    };
    // A stale fence writes nothing, neither the schedule nor the secret.
    assert_eq!(
        store
            .store_rotated("acme", "team", claimed, 9, &overlap, &rotated)
            .await
            .unwrap(),
        None
    );
    // A stale credential version rolls the schedule's write back too.
    let stale = RotatedSecret {
        credential_version: record.version + 7,
        ..rotated.clone()
    };
    assert_eq!(
        store
            .store_rotated("acme", "team", claimed, 10, &overlap, &stale)
            .await
            .unwrap(),
        None
    );
    let unchanged = store.rotation("acme", "team").await.unwrap().unwrap();
    assert_eq!(
        (unchanged.state, unchanged.version),
        (RotationState::Scheduled, claimed)
    );
    assert_eq!(current(&vault).await, INITIAL);

    let version = store
        .store_rotated("acme", "team", claimed, 10, &overlap, &rotated)
        .await
        .unwrap();
    assert_eq!(version, Some(record.version + 1));
    assert_eq!(current(&vault).await, "rotated-1");
    let stored = store.rotation("acme", "team").await.unwrap().unwrap();
    assert_eq!(
        (
            stored.state,
            stored.next_at,
            stored.cycle,
            stored.previous_sealed.as_deref()
        ),
        (RotationState::Overlap, 1_000, 1, Some(&[1u8, 2, 3][..]))
    );

    // A plain update is fenced the same way.
    let retired = RotationUpdate {
        state: RotationState::Retired,
        previous_sealed: None,
        ..overlap
    };
    assert!(
        store
            .update_rotation("acme", "team", stored.version, 9, &retired)
            .await
            .unwrap()
            .is_none()
    );
    let done = store
        .update_rotation("acme", "team", stored.version, 10, &retired)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.state, done.previous_sealed),
        (RotationState::Retired, None)
    );

    // A reset (a secret set by hand) schedules afresh with no failures.
    let reset = store.reset_rotation("acme", "team", 5_000).await.unwrap();
    assert_eq!(
        (reset.state, reset.next_at, reset.attempts),
        (RotationState::Scheduled, 5_000, 0)
    );
}

async fn two_replicas_rotate_once_and_retire_the_old_value_after_the_overlap(backend: &Backend) {
    let (script, log) = hook_script(backend.dir(), false);
    let overlap = Duration::from_millis(1500);
    let config = rotation(&script, &log, overlap, 3);
    let (sink, mut events) = ChannelSink::new(10_000);
    let first = replica(backend, Some(config.clone()), &sink);
    let second = replica(backend, Some(config), &sink);
    first
        .set_shared("team", &bearer(INITIAL), None, String::new())
        .await
        .unwrap();
    let lock = shared_lock(backend).await;
    let shutdown = CancellationToken::new();
    for replica in [&first, &second] {
        let engine =
            RotationEngine::new(replica.clone(), lock.clone(), Duration::from_millis(10)).unwrap();
        tokio::spawn(engine.run(shutdown.clone()));
    }
    // Setting the secret scheduled the first rotation `every` later.
    wait_for(&first, "the schedule", |state| {
        state == RotationState::Scheduled
    })
    .await;
    let scheduled = first.rotation_status("team").await.unwrap().unwrap();
    assert!(scheduled.next_at > now_micros() + 3_000_000_000);

    first.rotate_now("team").await.unwrap();
    wait_for(&first, "the overlap", |state| {
        state != RotationState::Scheduled
    })
    .await;
    // Reads return the new value at once, on both replicas.
    assert_eq!(current(&first).await, "rotated-key-1");
    assert_eq!(current(&second).await, "rotated-key-1");
    wait_for(&first, "the retirement", |state| {
        state == RotationState::Retired
    })
    .await;
    shutdown.cancel();

    let calls = log_lines(&log);
    let actions: Vec<&str> = calls.iter().map(|call| call[0].as_str()).collect();
    assert_eq!(actions, ["rotate", "retire"], "{calls:?}");
    // The hook was given the value it rotates, then the one it retires.
    assert_eq!(calls[0][2], INITIAL);
    assert_eq!(calls[1][2], INITIAL);
    let millis = |call: &Vec<String>| call[1].parse::<u64>().unwrap();
    assert!(
        millis(&calls[1]) - millis(&calls[0]) >= 1500,
        "the old value was retired before the overlap ended: {calls:?}"
    );
    let schedule = first.rotation_status("team").await.unwrap().unwrap();
    assert_eq!((schedule.cycle, schedule.attempts), (1, 0));
    assert!(schedule.previous_sealed.is_none());
    assert!(schedule.next_at > now_micros() + 3_000_000_000);
    assert_eq!(current(&first).await, "rotated-key-1");

    let mut seen = Vec::new();
    while let Ok(event) = events.try_recv() {
        seen.push(event);
    }
    let count = |action| seen.iter().filter(|event| event.action == action).count();
    assert_eq!(
        (
            count(CredentialAction::Rotated),
            count(CredentialAction::Retired)
        ),
        (1, 1),
        "{seen:?}"
    );
    let printed = format!("{seen:?}");
    assert!(!printed.contains(INITIAL) && !printed.contains("rotated-key"));
}

async fn a_failing_hook_backs_off_then_needs_attention_until_an_operator_acts(backend: &Backend) {
    let (script, log) = hook_script(backend.dir(), true);
    let config = rotation(&script, &log, Duration::ZERO, 3);
    let (vault, mut events) = vault(backend, Some(config.clone()));
    vault
        .set_shared("team", &bearer(INITIAL), None, String::new())
        .await
        .unwrap();
    let lock = shared_lock(backend).await;
    let engine = RotationEngine::new(vault.clone(), lock, Duration::from_millis(10)).unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(engine.clone().run(shutdown.clone()));
    vault.rotate_now("team").await.unwrap();
    wait_for(&vault, "needs_attention", |state| {
        state == RotationState::NeedsAttention
    })
    .await;
    shutdown.cancel();

    let calls = log_lines(&log);
    assert_eq!(calls.len(), 3, "one call per attempt: {calls:?}");
    let millis: Vec<u64> = calls.iter().map(|call| call[1].parse().unwrap()).collect();
    assert!(millis[1] - millis[0] >= 100, "first backoff: {millis:?}");
    assert!(millis[2] - millis[1] >= 200, "doubled backoff: {millis:?}");
    let schedule = vault.rotation_status("team").await.unwrap().unwrap();
    assert_eq!(
        (schedule.attempts, schedule.last_error.as_str()),
        (3, "hook_failed")
    );
    // The secret is untouched, and the engine leaves the schedule alone now.
    assert_eq!(current(&vault).await, INITIAL);
    assert_eq!(
        engine.step("team", &config).await.unwrap(),
        vault_svc::secret_rotation::RotationStep::Idle
    );
    assert_eq!(log_lines(&log).len(), 3);
    let health = vault.health(&["team".to_owned()]).await.unwrap();
    assert_eq!(health[0].state, HealthState::RefreshFailing);
    assert!(health[0].shared_credential_failing);
    assert!(
        health[0].detail.contains("rotation needs attention"),
        "{}",
        health[0].detail
    );

    // The operator fixes the hook and asks again: the schedule starts over.
    let reset = vault.rotate_now("team").await.unwrap();
    assert_eq!((reset.state, reset.attempts), (RotationState::Scheduled, 0));
    let healthy = vault.health(&["team".to_owned()]).await.unwrap();
    assert_eq!(healthy[0].state, HealthState::Healthy);

    let mut outcomes = Vec::new();
    while let Ok(event) = events.try_recv() {
        if event.action == CredentialAction::RotationFailed {
            outcomes.push(event.outcome);
        }
    }
    assert_eq!(outcomes, ["hook_failed", "hook_failed", "needs_attention"]);
}
