//! One conformance suite for the `Store` trait, run against SQLite and PostgreSQL.
//! PostgreSQL runs when `DATABASE_URL` is set (each test in its own database);
//! unset, those tests print SKIPPED and pass.

use std::sync::Arc;

use authz_svc::{
    AgentAuthentication, AgentKey, AgentListQuery, AgentRecord, AgentSecretRecord, ClientRecord,
    CodeRecord, KeyRecord, KeyStatus, NewRefresh, PostgresStore, Redemption, RevocationKind,
    SqliteStore, Store,
};
use sqlx::{Connection as _, Executor as _, PgConnection};

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.to_owned(),
        secret_hash: Some(vec![1, 2, 3]),
        client_name: "App".to_owned(),
        redirect_uris: vec!["https://app.example/cb".to_owned()],
        grant_types: vec!["authorization_code".to_owned()],
        auth_method: "client_secret_basic".to_owned(),
        application_type: "web".to_owned(),
        created_at: 1,
    }
}

fn code(hash: &[u8], family: &str, expires_at: i64) -> CodeRecord {
    CodeRecord {
        code_hash: hash.to_vec(),
        client_id: "c1".to_owned(),
        redirect_uri: "https://app.example/cb".to_owned(),
        code_challenge: "challenge".to_owned(),
        resource: "https://gw.example/v/a/mcp".to_owned(),
        scope: "tools".to_owned(),
        subject: "alice".to_owned(),
        family_id: family.to_owned(),
        expires_at,
        used: false,
    }
}

fn refresh(hash: &[u8]) -> NewRefresh {
    NewRefresh {
        token_hash: hash.to_vec(),
        expires_at: 10_000,
    }
}

async fn clients_round_trip_and_ids_are_unique(store: Arc<dyn Store>) {
    store.insert_client(&client("c1")).await.unwrap();
    assert_eq!(store.client("c1").await.unwrap(), Some(client("c1")));
    assert_eq!(store.client("nope").await.unwrap(), None);
    assert!(store.insert_client(&client("c1")).await.is_err());
}

async fn code_redeems_once_and_replay_revokes_its_grant(store: Arc<dyn Store>) {
    store.insert_client(&client("c1")).await.unwrap();
    store
        .insert_code(&code(b"code-1", "fam-1", 1_000))
        .await
        .unwrap();
    let Redemption::Redeemed(family) = store
        .redeem_code(b"code-1", &refresh(b"rt-1"), 500)
        .await
        .unwrap()
    else {
        panic!("first redemption failed");
    };
    assert_eq!((family.subject.as_str(), family.revoked), ("alice", false));
    assert!(store.code(b"code-1").await.unwrap().unwrap().used);
    assert!(store.refresh_family(b"rt-1", 500).await.unwrap().is_some());
    assert_eq!(
        store
            .redeem_code(b"code-1", &refresh(b"rt-2"), 500)
            .await
            .unwrap(),
        Redemption::Replayed
    );
    assert!(store.family("fam-1").await.unwrap().unwrap().revoked);
    assert!(store.refresh_family(b"rt-1", 500).await.unwrap().is_none());
    assert_eq!(
        store
            .redeem_code(b"unknown", &refresh(b"rt-3"), 500)
            .await
            .unwrap(),
        Redemption::Invalid
    );
    store
        .insert_code(&code(b"code-2", "fam-2", 1_000))
        .await
        .unwrap();
    assert_eq!(
        store
            .redeem_code(b"code-2", &refresh(b"rt-4"), 1_000)
            .await
            .unwrap(),
        Redemption::Invalid
    );
    assert!(
        store.family("fam-2").await.unwrap().is_none(),
        "an expired code opened a grant"
    );
}

async fn refresh_rotation_and_reuse_revoke_the_family(store: Arc<dyn Store>) {
    store.insert_client(&client("c1")).await.unwrap();
    store
        .insert_code(&code(b"code", "fam", 1_000))
        .await
        .unwrap();
    store
        .redeem_code(b"code", &refresh(b"rt-0"), 1)
        .await
        .unwrap();
    assert!(matches!(
        store
            .rotate_refresh(b"rt-0", &refresh(b"rt-1"), 2)
            .await
            .unwrap(),
        Redemption::Redeemed(_)
    ));
    assert!(store.refresh_family(b"rt-0", 2).await.unwrap().is_none());
    assert!(store.refresh_family(b"rt-1", 2).await.unwrap().is_some());
    assert_eq!(
        store
            .rotate_refresh(b"rt-0", &refresh(b"rt-2"), 3)
            .await
            .unwrap(),
        Redemption::Replayed
    );
    assert!(store.family("fam").await.unwrap().unwrap().revoked);
    assert_eq!(
        store
            .rotate_refresh(b"rt-1", &refresh(b"rt-3"), 3)
            .await
            .unwrap(),
        Redemption::Replayed
    );
    assert_eq!(
        store
            .rotate_refresh(b"unknown", &refresh(b"rt-4"), 3)
            .await
            .unwrap(),
        Redemption::Invalid
    );
    assert_eq!(
        store
            .rotate_refresh(b"rt-4", &refresh(b"rt-5"), 3)
            .await
            .unwrap(),
        Redemption::Invalid
    );
}

async fn concurrent_rotations_of_one_token_leave_one_winner_and_a_revoked_family(
    store: Arc<dyn Store>,
) {
    store.insert_client(&client("c1")).await.unwrap();
    store
        .insert_code(&code(b"code", "fam", 1_000))
        .await
        .unwrap();
    store
        .redeem_code(b"code", &refresh(b"rt-0"), 1)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..8u8)
        .map(|index| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .rotate_refresh(b"rt-0", &refresh(&[b'n', index]), 2)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for task in tasks {
        match task.await.unwrap() {
            Redemption::Redeemed(_) => winners += 1,
            Redemption::Replayed => {}
            Redemption::Invalid => panic!("a racing rotation saw an invalid token"),
        }
    }
    assert_eq!(winners, 1);
    assert!(store.family("fam").await.unwrap().unwrap().revoked);
}

async fn revoked_jtis_are_remembered_idempotently(store: Arc<dyn Store>) {
    assert!(!store.jti_revoked("j1").await.unwrap());
    store.revoke_jti("j1", 100).await.unwrap();
    store.revoke_jti("j1", 100).await.unwrap();
    assert!(store.jti_revoked("j1").await.unwrap());
}

fn key(kid: &str, status: KeyStatus) -> KeyRecord {
    KeyRecord {
        kid: kid.to_owned(),
        status,
        sealed_private_key: vec![9; 16],
        public_x: "x".to_owned(),
        public_y: "y".to_owned(),
        created_at: 1,
        retired_until: None,
    }
}

fn statuses(keys: &[KeyRecord]) -> Vec<(String, KeyStatus, Option<i64>)> {
    keys.iter()
        .map(|key| (key.kid.clone(), key.status, key.retired_until))
        .collect()
}

async fn key_rotation_retires_promotes_and_deletes_expired_keys_once(store: Arc<dyn Store>) {
    store
        .insert_initial_keys(&key("a1", KeyStatus::Active), &key("n1", KeyStatus::Next))
        .await
        .unwrap();
    let n2 = KeyRecord {
        created_at: 100,
        ..key("n2", KeyStatus::Next)
    };
    assert!(store.rotate_keys("a1", &n2, 1_000, 100).await.unwrap());
    // A second replica that saw a1 active loses and changes nothing.
    let loser = KeyRecord {
        created_at: 100,
        ..key("lost", KeyStatus::Next)
    };
    assert!(!store.rotate_keys("a1", &loser, 1_000, 100).await.unwrap());
    assert_eq!(
        statuses(&store.keys().await.unwrap()),
        [
            ("a1".to_owned(), KeyStatus::Retired, Some(1_000)),
            ("n1".to_owned(), KeyStatus::Active, None),
            ("n2".to_owned(), KeyStatus::Next, None),
        ]
    );
    // The next rotation, after a1's tokens have all expired, deletes a1.
    let n3 = KeyRecord {
        created_at: 2_000,
        ..key("n3", KeyStatus::Next)
    };
    assert!(store.rotate_keys("n1", &n3, 3_000, 2_000).await.unwrap());
    assert_eq!(
        statuses(&store.keys().await.unwrap()),
        [
            ("n1".to_owned(), KeyStatus::Retired, Some(3_000)),
            ("n2".to_owned(), KeyStatus::Active, None),
            ("n3".to_owned(), KeyStatus::Next, None),
        ]
    );
}

async fn first_key_pair_wins(store: Arc<dyn Store>) {
    assert!(
        store
            .insert_initial_keys(&key("a1", KeyStatus::Active), &key("n1", KeyStatus::Next))
            .await
            .unwrap()
    );
    assert!(
        !store
            .insert_initial_keys(&key("a2", KeyStatus::Active), &key("n2", KeyStatus::Next))
            .await
            .unwrap()
    );
    let kids: Vec<String> = store
        .keys()
        .await
        .unwrap()
        .into_iter()
        .map(|key| key.kid)
        .collect();
    assert_eq!(kids, ["a1", "n1"]);
}

pub(crate) async fn sqlite() -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("authz.db"))
        .await
        .unwrap();
    (Arc::new(store), dir)
}

/// A PostgreSQL database created for one test and dropped after it.
pub(crate) struct TestDatabase {
    admin_url: String,
    name: String,
}

impl TestDatabase {
    pub(crate) async fn create() -> Option<(Arc<dyn Store>, Self)> {
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            eprintln!("SKIPPED: DATABASE_URL is unset; the PostgreSQL store was not tested");
            return None;
        };
        let name = format!("authz_test_{}", uuid_like());
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .expect("DATABASE_URL is set but unreachable");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&name);
        let store = PostgresStore::open(&url.as_str().to_owned().into())
            .await
            .unwrap();
        Some((Arc::new(store), Self { admin_url, name }))
    }

    pub(crate) async fn drop_database(self, store: Arc<dyn Store>) {
        drop(store);
        let mut admin = PgConnection::connect(&self.admin_url).await.unwrap();
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await
            .unwrap();
    }
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}_{}", std::process::id())
}

fn agent(id: &str, name: &str, created_at: i64) -> AgentRecord {
    AgentRecord {
        agent_id: id.to_owned(),
        client_id: format!("client-{id}"),
        name: name.to_owned(),
        description: "nightly reports".to_owned(),
        owner: "alice".to_owned(),
        virtual_servers: vec!["crm".to_owned()],
        scopes: vec!["tools".to_owned()],
        authentication: AgentAuthentication::ClientSecret,
        quotas: serde_json::json!({ "rate": "60/minute", "burst": 1 }),
        created_at,
        rotated_at: None,
        last_used_at: None,
        decommissioned_at: None,
        managed_by: Some(authz_svc::MANAGED_BY_GATEWAY_FILE.to_owned()),
    }
}

fn secret(id: &str, agent_id: &str, created_at: i64) -> AgentSecretRecord {
    AgentSecretRecord {
        secret_id: id.to_owned(),
        agent_id: agent_id.to_owned(),
        secret_hash: id.as_bytes().to_vec(),
        created_at,
        expires_at: None,
    }
}

async fn agents_round_trip_by_every_key_and_names_are_unique(store: Arc<dyn Store>) {
    let first = agent("a1", "reporter", 10);
    store
        .insert_agent(&first, Some(&secret("s1", "a1", 10)))
        .await
        .unwrap();
    for key in [
        AgentKey::Id("a1"),
        AgentKey::ClientId("client-a1"),
        AgentKey::Name("reporter"),
    ] {
        assert_eq!(store.agent(key).await.unwrap(), Some(first.clone()));
    }
    assert_eq!(store.agent(AgentKey::Name("nobody")).await.unwrap(), None);
    let taken = store
        .insert_agent(&agent("a2", "reporter", 11), None)
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("already exists"), "{taken}");
    assert_eq!(
        store.agent(AgentKey::Id("a2")).await.unwrap(),
        None,
        "nothing half-inserted"
    );
    store
        .insert_agent(&agent("a2", "second", 11), None)
        .await
        .unwrap();
    let mut other = agent("a3", "third", 12);
    other.owner = "bob".to_owned();
    store.insert_agent(&other, None).await.unwrap();
    let page = |owner: Option<&str>, offset, limit| AgentListQuery {
        owner: owner.map(str::to_owned),
        include_decommissioned: false,
        offset,
        limit,
    };
    let names = |agents: Vec<AgentRecord>| agents.into_iter().map(|a| a.name).collect::<Vec<_>>();
    assert_eq!(
        names(store.list_agents(&page(None, 0, 10)).await.unwrap()),
        ["third", "second", "reporter"]
    );
    assert_eq!(
        names(store.list_agents(&page(None, 1, 1)).await.unwrap()),
        ["second"]
    );
    assert_eq!(
        names(store.list_agents(&page(Some("bob"), 0, 10)).await.unwrap()),
        ["third"]
    );
}

async fn rotation_keeps_at_most_two_live_secrets(store: Arc<dyn Store>) {
    store
        .insert_agent(&agent("a1", "reporter", 10), Some(&secret("s1", "a1", 10)))
        .await
        .unwrap();
    assert!(
        store
            .rotate_agent_secret(&secret("s2", "a1", 100), 1_000, 100)
            .await
            .unwrap()
    );
    let live = store.live_agent_secrets("a1", 100).await.unwrap();
    let ids: Vec<_> = live
        .iter()
        .map(|s| (s.secret_id.as_str(), s.expires_at))
        .collect();
    assert_eq!(ids, [("s2", None), ("s1", Some(1_000))]);
    assert!(
        store
            .live_agent_secrets("a1", 1_000)
            .await
            .unwrap()
            .iter()
            .all(|s| s.secret_id == "s2")
    );
    // A second rotation inside the overlap ends the oldest secret at once.
    assert!(
        store
            .rotate_agent_secret(&secret("s3", "a1", 200), 2_000, 200)
            .await
            .unwrap()
    );
    let live = store.live_agent_secrets("a1", 200).await.unwrap();
    let ids: Vec<_> = live.iter().map(|s| s.secret_id.as_str()).collect();
    assert_eq!(ids, ["s3", "s2"]);
    let stored = store.agent(AgentKey::Id("a1")).await.unwrap().unwrap();
    assert_eq!(stored.rotated_at, Some(200));
}

async fn decommissioning_deletes_secrets_logs_once_and_blocks_rotation(store: Arc<dyn Store>) {
    store
        .insert_agent(&agent("a1", "reporter", 10), Some(&secret("s1", "a1", 10)))
        .await
        .unwrap();
    let head = store.revocation_head().await.unwrap();
    assert!(store.decommission_agent("a1", 100, 2_000).await.unwrap());
    assert!(
        !store.decommission_agent("a1", 101, 2_000).await.unwrap(),
        "repeating is harmless"
    );
    assert!(
        store
            .live_agent_secrets("a1", 100)
            .await
            .unwrap()
            .is_empty()
    );
    let log = store.revocations_after(head, 100, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].kind, log[0].subject.as_str(), log[0].expires_at),
        (RevocationKind::Agent, "client-a1", 2_000)
    );
    assert!(
        store
            .revocations_after(head, 2_000, 10)
            .await
            .unwrap()
            .is_empty(),
        "expired entries are not replayed"
    );
    assert!(
        !store
            .rotate_agent_secret(&secret("s2", "a1", 200), 300, 200)
            .await
            .unwrap()
    );
    assert!(
        store
            .live_agent_secrets("a1", 200)
            .await
            .unwrap()
            .is_empty()
    );
    let stored = store.agent(AgentKey::Id("a1")).await.unwrap().unwrap();
    assert_eq!(stored.decommissioned_at, Some(100));
    let listed = store
        .list_agents(&AgentListQuery {
            limit: 10,
            ..AgentListQuery::default()
        })
        .await
        .unwrap();
    assert!(
        listed.is_empty(),
        "decommissioned agents are listed only on request"
    );
}

async fn last_use_is_written_coarsely(store: Arc<dyn Store>) {
    store
        .insert_agent(&agent("a1", "reporter", 10), None)
        .await
        .unwrap();
    store.touch_agent("a1", 100, 40).await.unwrap();
    store.touch_agent("a1", 130, 70).await.unwrap();
    let used = |store: Arc<dyn Store>| async move {
        store
            .agent(AgentKey::Id("a1"))
            .await
            .unwrap()
            .unwrap()
            .last_used_at
    };
    assert_eq!(
        used(store.clone()).await,
        Some(100),
        "a recent use is not rewritten"
    );
    store.touch_agent("a1", 200, 140).await.unwrap();
    assert_eq!(used(store.clone()).await, Some(200));
}

async fn assertion_ids_are_accepted_once_until_they_expire(store: Arc<dyn Store>) {
    assert!(
        store
            .remember_assertion("iss-a", "jti-1", 500, 100)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remember_assertion("iss-a", "jti-1", 500, 200)
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_assertion("iss-b", "jti-1", 500, 200)
            .await
            .unwrap(),
        "ids are per issuer"
    );
    assert!(
        store
            .remember_assertion("iss-a", "jti-1", 900, 600)
            .await
            .unwrap(),
        "an expired entry is forgotten"
    );
}

async fn revocation_log_is_read_in_order_after_a_cursor(store: Arc<dyn Store>) {
    let start = store.revocation_head().await.unwrap();
    store
        .log_revocation(RevocationKind::Token, "jti-1", 10, 1_000)
        .await
        .unwrap();
    store
        .log_revocation(RevocationKind::Grant, "grant-1", 11, 1_000)
        .await
        .unwrap();
    let all = store.revocations_after(start, 100, 10).await.unwrap();
    let seen: Vec<_> = all
        .iter()
        .map(|entry| (entry.kind, entry.subject.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            (RevocationKind::Token, "jti-1"),
            (RevocationKind::Grant, "grant-1")
        ]
    );
    assert!(all[0].seq < all[1].seq);
    let rest = store.revocations_after(all[0].seq, 100, 10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(store.revocation_head().await.unwrap(), all[1].seq);
}

async fn audit_outbox_keeps_events_in_order_until_dequeued(store: Arc<dyn Store>) {
    store.enqueue_audit(b"first").await.unwrap();
    store.enqueue_audit(b"second").await.unwrap();
    store.enqueue_audit(b"third").await.unwrap();
    let queued = store.queued_audit(2).await.unwrap();
    let events: Vec<&[u8]> = queued.iter().map(|(_, event)| event.as_slice()).collect();
    assert_eq!(events, [b"first".as_slice(), b"second".as_slice()]);
    assert!(queued[0].0 < queued[1].0);
    store.dequeue_audit(queued[1].0).await.unwrap();
    let rest = store.queued_audit(10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].1, b"third");
    store.dequeue_audit(rest[0].0).await.unwrap();
    assert!(store.queued_audit(10).await.unwrap().is_empty());
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = super::sqlite().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((store, database)) = super::TestDatabase::create().await else { return };
                    super::$case(store.clone()).await;
                    database.drop_database(store).await;
                }
            )*
        }
    };
}

conformance!(
    clients_round_trip_and_ids_are_unique,
    code_redeems_once_and_replay_revokes_its_grant,
    refresh_rotation_and_reuse_revoke_the_family,
    concurrent_rotations_of_one_token_leave_one_winner_and_a_revoked_family,
    revoked_jtis_are_remembered_idempotently,
    first_key_pair_wins,
    key_rotation_retires_promotes_and_deletes_expired_keys_once,
    agents_round_trip_by_every_key_and_names_are_unique,
    rotation_keeps_at_most_two_live_secrets,
    decommissioning_deletes_secrets_logs_once_and_blocks_rotation,
    last_use_is_written_coarsely,
    assertion_ids_are_accepted_once_until_they_expire,
    revocation_log_is_read_in_order_after_a_cursor,
    audit_outbox_keeps_events_in_order_until_dequeued,
);
