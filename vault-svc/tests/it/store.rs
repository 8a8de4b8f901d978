//! The store conformance suite: the same tests on SQLite and PostgreSQL.

use vault_svc::credential::{
    CredentialKey, CredentialKind, CredentialStatus, CredentialUpdate, Material, NewCredential,
    now_micros,
};
use vault_svc::secret::{Owner, SecretText};
use vault_svc::store::{ConsentRecord, ListQuery};
use vault_svc::{CredentialOutcome, CredentialQuery, Error};

use crate::backend::{Backend, conformance};
use crate::fixture;

conformance!(
    replacing_a_credential_bumps_its_version_and_keeps_its_id,
    writes_are_compare_and_swap_on_version_and_fence,
    revocation_purges_and_is_checked_on_every_read,
    ciphertext_copied_to_another_row_does_not_decrypt,
    listing_filters_pages_and_never_carries_material_fields,
    consent_state_is_single_use_and_expires,
    due_credentials_come_earliest_first,
);

fn bearer(token: &str) -> Material {
    Material::Bearer {
        token: SecretText::from(token),
    }
}

fn member_query(member: &str, connector: &str) -> CredentialQuery {
    CredentialQuery {
        member_id: Some(member.to_owned()),
        connector: connector.to_owned(),
        ..CredentialQuery::default()
    }
}

async fn replacing_a_credential_bumps_its_version_and_keeps_its_id(backend: &Backend) {
    let (vault, _events) = fixture::vault(backend, "http://127.0.0.1:9");
    let first = vault
        .set_shared("shared", &bearer("one"), None, "first".into())
        .await
        .unwrap();
    assert_eq!(first.version, 1);
    let second = vault
        .set_shared("shared", &bearer("two"), None, "second".into())
        .await
        .unwrap();
    assert_eq!((second.id.as_str(), second.version), (first.id.as_str(), 2));
    let CredentialOutcome::Released(released) = vault
        .get_credential(&member_query("m-1", "shared"))
        .await
        .unwrap()
    else {
        panic!("expected material");
    };
    assert_eq!(released.material, bearer("two"));
    assert_eq!(released.version, 2);
    assert!(matches!(
        vault
            .set_shared("nope", &bearer("x"), None, String::new())
            .await,
        Err(Error::ConnectorNotFound(_))
    ));
    assert!(matches!(
        vault
            .set_shared("shared", &bearer(""), None, String::new())
            .await,
        Err(Error::InvalidArgument { .. })
    ));
}

async fn writes_are_compare_and_swap_on_version_and_fence(backend: &Backend) {
    let (vault, _events) = fixture::vault(backend, "http://127.0.0.1:9");
    let store = vault.store();
    let record = vault
        .set_shared("shared", &bearer("one"), None, String::new())
        .await
        .unwrap();
    let update = CredentialUpdate {
        sealed: None,
        status: CredentialStatus::RefreshFailing,
        expires_at: None,
        refresh_due_at: None,
        refresh_failures: 1,
    };
    // A claim by token 10, then a newer claim by 20: 10 can no longer claim or write.
    assert!(store.claim(&record.id, record.version, 10).await.unwrap());
    assert!(store.claim(&record.id, record.version, 20).await.unwrap());
    assert!(!store.claim(&record.id, record.version, 15).await.unwrap());
    assert!(
        store
            .update(&record.id, record.version, Some(10), &update)
            .await
            .unwrap()
            .is_none()
    );
    let written = store
        .update(&record.id, record.version, Some(20), &update)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(written.version, record.version + 1);
    assert_eq!(written.status, CredentialStatus::RefreshFailing);
    // The old version is gone: the same write again loses, fenced or not.
    assert!(
        store
            .update(&record.id, record.version, Some(20), &update)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .update(&record.id, record.version, None, &update)
            .await
            .unwrap()
            .is_none()
    );
    assert!(!store.claim(&record.id, record.version, 30).await.unwrap());
}

async fn revocation_purges_and_is_checked_on_every_read(backend: &Backend) {
    let (vault, _events) = fixture::vault(backend, "http://127.0.0.1:9");
    vault
        .set_shared("shared", &bearer("team"), None, String::new())
        .await
        .unwrap();
    let member = Owner::Member("m-1".into());
    vault
        .store_credential(
            "personal",
            member.clone(),
            &bearer("mine"),
            None,
            String::new(),
        )
        .await
        .unwrap();
    vault
        .store_credential(
            "shared",
            Owner::Agent("bot".into()),
            &bearer("bot's"),
            None,
            String::new(),
        )
        .await
        .unwrap();
    let report = vault
        .revoke_principal(member.clone(), "offboarded")
        .await
        .unwrap();
    assert_eq!(report.credentials_revoked, 1);
    // Even the shared credential is refused to a revoked member; other principals keep theirs.
    assert!(matches!(
        vault.get_credential(&member_query("m-1", "shared")).await,
        Err(Error::PrincipalRevoked)
    ));
    assert!(matches!(
        vault.get_credential(&member_query("m-2", "shared")).await,
        Ok(CredentialOutcome::Released(_))
    ));
    // Revocation is idempotent, and storing for a revoked member is refused.
    assert_eq!(
        vault
            .revoke_principal(member.clone(), "again")
            .await
            .unwrap()
            .credentials_revoked,
        0
    );
    assert!(matches!(
        vault
            .store_credential("personal", member, &bearer("again"), None, String::new())
            .await,
        Err(Error::PrincipalRevoked)
    ));
    let agent = CredentialQuery {
        agent_client_id: Some("bot".into()),
        connector: "shared".into(),
        ..CredentialQuery::default()
    };
    assert!(vault.get_credential(&agent).await.is_ok());
    assert_eq!(
        vault
            .revoke_principal(Owner::Agent("bot".into()), "decommissioned")
            .await
            .unwrap()
            .credentials_revoked,
        1
    );
    assert!(matches!(
        vault.get_credential(&agent).await,
        Err(Error::PrincipalRevoked)
    ));
}

async fn ciphertext_copied_to_another_row_does_not_decrypt(backend: &Backend) {
    let (vault, _events) = fixture::vault(backend, "http://127.0.0.1:9");
    let alice = vault
        .store_credential(
            "personal",
            Owner::Member("alice".into()),
            &bearer("alice-token"),
            None,
            String::new(),
        )
        .await
        .unwrap();
    let bob = vault
        .store_credential(
            "personal",
            Owner::Member("bob".into()),
            &bearer("bob-token"),
            None,
            String::new(),
        )
        .await
        .unwrap();
    backend
        .execute(&format!(
            "UPDATE vault_credential SET sealed = (SELECT sealed FROM vault_credential WHERE id = '{}') WHERE id = '{}'",
            alice.id, bob.id
        ))
        .await;
    let result = vault.get_credential(&member_query("bob", "personal")).await;
    assert!(matches!(result, Err(Error::Decrypt)), "{result:?}");
    let CredentialOutcome::Released(own) = vault
        .get_credential(&member_query("alice", "personal"))
        .await
        .unwrap()
    else {
        panic!("alice keeps her credential");
    };
    assert_eq!(own.material, bearer("alice-token"));
}

async fn listing_filters_pages_and_never_carries_material_fields(backend: &Backend) {
    let (vault, _events) = fixture::vault(backend, "http://127.0.0.1:9");
    vault
        .set_shared("shared", &bearer("team"), None, String::new())
        .await
        .unwrap();
    for member in ["a", "b", "c"] {
        vault
            .store_credential(
                "personal",
                Owner::Member(member.into()),
                &bearer(member),
                None,
                String::new(),
            )
            .await
            .unwrap();
    }
    let all = vault
        .list(ListQuery {
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    let first = vault
        .list(ListQuery {
            connector: Some("personal".into()),
            limit: 2,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(first.len(), 2);
    let rest = vault
        .list(ListQuery {
            connector: Some("personal".into()),
            after: first[1].id.clone(),
            limit: 2,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.len(), 1);
    let mine = vault
        .list(ListQuery {
            owner_id: Some("b".into()),
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].key.owner, Owner::Member("b".into()));
    let failing = vault
        .list(ListQuery {
            statuses: vec![CredentialStatus::RefreshFailing],
            limit: 10,
            ..ListQuery::default()
        })
        .await
        .unwrap();
    assert!(failing.is_empty());
}

async fn consent_state_is_single_use_and_expires(backend: &Backend) {
    let (vault, _events) = fixture::vault(backend, "http://127.0.0.1:9");
    let store = vault.store();
    let now = now_micros();
    let consent = |hash: &[u8], expires_at| ConsentRecord {
        state_hash: hash.to_vec(),
        tenant: "acme".into(),
        connector: "personal".into(),
        member_id: "m-1".into(),
        sealed: vec![1, 2, 3],
        expires_at,
    };
    store
        .put_consent(&consent(b"live", now + 60_000_000))
        .await
        .unwrap();
    store.put_consent(&consent(b"dead", now - 1)).await.unwrap();
    assert_eq!(
        store.take_consent(b"live", now).await.unwrap(),
        Some(consent(b"live", now + 60_000_000))
    );
    assert_eq!(store.take_consent(b"live", now).await.unwrap(), None);
    assert_eq!(store.take_consent(b"dead", now).await.unwrap(), None);
}

async fn due_credentials_come_earliest_first(backend: &Backend) {
    let (vault, _events) = fixture::vault(backend, "http://127.0.0.1:9");
    let store = vault.store();
    let now = now_micros();
    for (member, due) in [
        ("late", now + 60_000_000),
        ("second", now - 1_000),
        ("first", now - 2_000),
    ] {
        let key = CredentialKey {
            tenant: "acme".into(),
            connector: "personal".into(),
            owner: Owner::Member(member.into()),
        };
        let sealed = bearer(member).seal(vault.envelope(), &key).await.unwrap();
        store
            .put(&NewCredential {
                key,
                kind: CredentialKind::Bearer,
                sealed,
                description: String::new(),
                expires_at: None,
                refresh_due_at: Some(due),
            })
            .await
            .unwrap();
    }
    let due = store.due_for_refresh(now, 10).await.unwrap();
    let owners: Vec<String> = due
        .iter()
        .map(|record| record.key.owner.id().to_owned())
        .collect();
    assert_eq!(owners, ["first", "second"]);
    assert_eq!(store.next_refresh_due().await.unwrap(), Some(now - 2_000));
}
