//! The member directory's store contract, run against SQLite and PostgreSQL (PostgreSQL
//! when `DATABASE_URL` is set; unset, those tests print SKIPPED and pass).

use std::sync::Arc;

use authz_svc::{
    ClientRecord, CodeRecord, DirectoryFilter, DirectoryGroup, DirectoryUser, Error, MemberState,
    NewRefresh, Redemption, RevocationKind, Store,
};
use serde_json::json;

fn user(id: &str, name: &str, created_at: i64) -> DirectoryUser {
    DirectoryUser {
        id: id.to_owned(),
        user_name: name.to_owned(),
        external_id: Some(format!("ext-{id}")),
        display_name: Some(format!("Display {name}")),
        active: true,
        password_hash: None,
        attributes: json!({"name": {"givenName": name}}),
        version: 1,
        created_at,
        updated_at: created_at,
    }
}

fn group(id: &str, name: &str, members: &[&str]) -> DirectoryGroup {
    DirectoryGroup {
        id: id.to_owned(),
        display_name: name.to_owned(),
        external_id: None,
        members: members.iter().map(|member| (*member).to_owned()).collect(),
        version: 1,
        created_at: 1,
        updated_at: 1,
    }
}

async fn users_round_trip_filter_and_page(store: Arc<dyn Store>) {
    for (index, name) in ["Alice", "bob", "carol"].into_iter().enumerate() {
        let index = i64::try_from(index).unwrap();
        store
            .insert_user(&user(&format!("u{index}"), name, index))
            .await
            .unwrap();
    }
    assert_eq!(
        store.user("u0").await.unwrap(),
        Some(user("u0", "Alice", 0))
    );
    assert_eq!(store.user_by_name("ALICE").await.unwrap().unwrap().id, "u0");
    assert!(
        matches!(
            store.insert_user(&user("u9", "aLiCe", 9)).await,
            Err(Error::DirectoryConflict("userName"))
        ),
        "userName is unique ignoring case"
    );
    let page = store.list_users(&DirectoryFilter::All, 1, 1).await.unwrap();
    assert_eq!((page.total, page.items.len()), (3, 1));
    assert_eq!(page.items[0].id, "u1", "oldest first, after the offset");
    let by = |filter| {
        let store = store.clone();
        async move {
            let page = store.list_users(&filter, 0, 10).await.unwrap();
            page.items
                .into_iter()
                .map(|user| user.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(by(DirectoryFilter::UserName("BOB".into())).await, ["u1"]);
    assert_eq!(
        by(DirectoryFilter::ExternalId("ext-u2".into())).await,
        ["u2"]
    );
    assert!(
        by(DirectoryFilter::ExternalId("EXT-U2".into()))
            .await
            .is_empty(),
        "externalId is case-exact"
    );
    assert_eq!(
        by(DirectoryFilter::DisplayName("display carol".into())).await,
        ["u2"]
    );
}

async fn updates_are_optimistic_and_move_the_revision(store: Arc<dyn Store>) {
    let before = store.directory_revision().await.unwrap();
    store.insert_user(&user("u1", "alice", 1)).await.unwrap();
    let mut changed = user("u1", "alice2", 1);
    changed.version = 2;
    changed.active = false;
    assert!(store.update_user(&changed, 1).await.unwrap());
    assert!(
        !store.update_user(&changed, 1).await.unwrap(),
        "a stale version changes nothing"
    );
    let stored = store.user("u1").await.unwrap().unwrap();
    assert_eq!(
        (stored.user_name.as_str(), stored.active, stored.version),
        ("alice2", false, 2)
    );
    assert!(store.directory_revision().await.unwrap() > before);
    assert!(store.delete_user("u1").await.unwrap());
    assert!(!store.delete_user("u1").await.unwrap());
    assert_eq!(store.user("u1").await.unwrap(), None);
}

async fn groups_hold_users_and_feed_member_states(store: Arc<dyn Store>) {
    store.insert_user(&user("u1", "alice", 1)).await.unwrap();
    store.insert_user(&user("u2", "bob", 2)).await.unwrap();
    assert!(matches!(
        store.insert_group(&group("g0", "ghosts", &["nobody"])).await,
        Err(Error::DirectoryReference(member)) if member == "nobody"
    ));
    assert_eq!(
        store.group("g0").await.unwrap(),
        None,
        "the failed insert left nothing"
    );
    store
        .insert_group(&group("g1", "eng", &["u1", "u2"]))
        .await
        .unwrap();
    store
        .insert_group(&group("g2", "ops", &["u1"]))
        .await
        .unwrap();
    assert!(matches!(
        store.insert_group(&group("g3", "eng", &[])).await,
        Err(Error::DirectoryConflict("displayName"))
    ));
    assert_eq!(
        store.group("g1").await.unwrap().unwrap().members,
        ["u1", "u2"]
    );
    assert_eq!(
        store.user_groups("u1").await.unwrap(),
        [
            ("g1".to_owned(), "eng".to_owned()),
            ("g2".to_owned(), "ops".to_owned())
        ]
    );
    let mut smaller = group("g1", "eng", &["u2"]);
    smaller.version = 2;
    assert!(store.update_group(&smaller, 1).await.unwrap());
    let found = store
        .list_groups(&DirectoryFilter::DisplayName("OPS".into()), 0, 10)
        .await
        .unwrap();
    assert_eq!((found.total, found.items[0].id.as_str()), (1, "g2"));
    store.delete_user("u2").await.unwrap();
    let states = store.member_states().await.unwrap();
    assert_eq!(
        states,
        [MemberState {
            id: "u1".into(),
            active: true,
            groups: vec!["ops".into()]
        }]
    );
    assert!(store.delete_group("g2").await.unwrap());
    assert!(store.user_groups("u1").await.unwrap().is_empty());
}

async fn revoking_a_member_revokes_its_grants_and_logs_it(store: Arc<dyn Store>) {
    store
        .insert_client(&ClientRecord {
            client_id: "c1".into(),
            secret_hash: None,
            client_name: "App".into(),
            redirect_uris: vec!["https://app.example/cb".into()],
            grant_types: vec!["authorization_code".into()],
            auth_method: "none".into(),
            application_type: "web".into(),
            created_at: 1,
        })
        .await
        .unwrap();
    store
        .insert_code(&CodeRecord {
            code_hash: b"code".to_vec(),
            client_id: "c1".into(),
            redirect_uri: "https://app.example/cb".into(),
            code_challenge: "challenge".into(),
            resource: "https://gw.example/v/a/mcp".into(),
            scope: "tools".into(),
            subject: "u1".into(),
            family_id: "fam".into(),
            expires_at: 1_000,
            used: false,
        })
        .await
        .unwrap();
    let refresh = NewRefresh {
        token_hash: b"rt".to_vec(),
        expires_at: 10_000,
    };
    assert!(matches!(
        store.redeem_code(b"code", &refresh, 10).await.unwrap(),
        Redemption::Redeemed(_)
    ));
    let head = store.revocation_head().await.unwrap();
    store.revoke_member("u1", 20, 920).await.unwrap();
    assert!(store.family("fam").await.unwrap().unwrap().revoked);
    assert!(store.refresh_family(b"rt", 30).await.unwrap().is_none());
    let log = store.revocations_after(head, 30, 10).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(
        (
            log[0].kind,
            log[0].subject.as_str(),
            log[0].revoked_at,
            log[0].expires_at
        ),
        (RevocationKind::Member, "u1", 20, 920)
    );
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let (store, _dir) = crate::store::sqlite().await;
                    super::$case(store).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some((store, database)) = crate::store::TestDatabase::create().await else { return };
                    super::$case(store.clone()).await;
                    database.drop_database(store).await;
                }
            )*
        }
    };
}

conformance!(
    users_round_trip_filter_and_page,
    updates_are_optimistic_and_move_the_revision,
    groups_hold_users_and_feed_member_states,
    revoking_a_member_revokes_its_grants_and_logs_it,
);
