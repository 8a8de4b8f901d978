//! Online KEK rotation: new writes use the new key at once, the background
//! re-wrap completes while reads go on, and progress is visible.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use vault_svc::credential::Material;
use vault_svc::crypto::Envelope;
use vault_svc::secret::{Owner, SecretText};
use vault_svc::{CredentialOutcome, CredentialQuery};

use crate::backend::{Backend, conformance};
use crate::fixture;

conformance!(rewrap_completes_while_reads_continue);

const CREDENTIALS: usize = 300;

fn token(member: usize) -> Material {
    Material::Bearer {
        token: SecretText::from(format!("token-{member}")),
    }
}

async fn rewrap_completes_while_reads_continue(backend: &Backend) {
    let (vault, _events) = fixture::vault(backend, "http://127.0.0.1:9");
    for member in 0..CREDENTIALS {
        vault
            .store_credential(
                "personal",
                Owner::Member(format!("m-{member}")),
                &token(member),
                None,
                String::new(),
            )
            .await
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    for reader in 0..4 {
        let (vault, stop, reads) = (vault.clone(), stop.clone(), reads.clone());
        readers.push(tokio::spawn(async move {
            let mut member = reader;
            while !stop.load(Ordering::Relaxed) {
                member = (member + 7) % CREDENTIALS;
                let query = CredentialQuery {
                    member_id: Some(format!("m-{member}")),
                    connector: "personal".into(),
                    ..CredentialQuery::default()
                };
                let CredentialOutcome::Released(released) =
                    vault.get_credential(&query).await.unwrap()
                else {
                    panic!("read failed during rotation");
                };
                assert_eq!(released.material, token(member));
                reads.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let before = vault.kek_status().await.unwrap();
    assert_eq!(
        (before.active_version, before.stale, before.credentials),
        (1, 0, CREDENTIALS as u64)
    );
    let version = vault.rotate_kek(25).await.unwrap();
    assert_eq!(version, 2);
    // A write during the re-wrap uses the new key at once.
    let written = vault
        .set_shared("shared", &token(9999), None, String::new())
        .await
        .unwrap();
    assert_eq!(Envelope::kek_version(&written.sealed).unwrap(), 2);
    let reads_at_rotation = reads.load(Ordering::Relaxed);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let progress = vault.rewrap_progress();
        if progress.kek_version == 2 && !progress.running && progress.rewrapped == progress.total {
            assert_eq!(progress.total, CREDENTIALS as u64);
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "re-wrap did not finish: {progress:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.await.unwrap();
    }
    assert!(
        reads.load(Ordering::Relaxed) > reads_at_rotation,
        "reads went on during the re-wrap"
    );
    let after = vault.kek_status().await.unwrap();
    assert_eq!(
        (after.active_version, after.stale, after.credentials),
        (2, 0, CREDENTIALS as u64 + 1),
        "the status counts what the store holds"
    );
    assert_eq!(after.rewrap.rewrapped, CREDENTIALS as u64);
    assert_eq!(vault.store().kek_versions().await.unwrap(), [2]);
}
