use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn envelope() -> Envelope {
    Envelope::new(Arc::new(LocalKeyring::from_keys([(
        1,
        DataKey::from_bytes([1; 32]),
    )])))
}

fn binding<'a>(owner: &'a Owner, connector: &'a str, field: &'a str) -> Binding<'a> {
    Binding {
        tenant: "acme",
        owner,
        connector,
        field,
    }
}

#[tokio::test]
async fn sealed_value_opens_with_its_binding() {
    let envelope = envelope();
    let owner = Owner::Member("m-1".into());
    let sealed = envelope
        .seal(binding(&owner, "github", "material"), b"tok-canary")
        .await
        .unwrap();
    assert!(!sealed.windows(10).any(|window| window == b"tok-canary"));
    assert_eq!(Envelope::kek_version(&sealed).unwrap(), 1);
    let opened = envelope
        .open(binding(&owner, "github", "material"), &sealed)
        .await
        .unwrap();
    assert_eq!(opened.as_slice(), b"tok-canary");
}

#[tokio::test]
async fn ciphertext_moved_to_another_row_or_field_does_not_decrypt() {
    let envelope = envelope();
    let owner = Owner::Member("m-1".into());
    let other = Owner::Member("m-2".into());
    let sealed = envelope
        .seal(binding(&owner, "github", "material"), b"secret")
        .await
        .unwrap();
    for wrong in [
        binding(&other, "github", "material"),
        binding(&Owner::Shared, "github", "material"),
        binding(&Owner::Agent("m-1".into()), "github", "material"),
        binding(&owner, "gitlab", "material"),
        binding(&owner, "github", "pkce_verifier"),
        Binding {
            tenant: "other",
            owner: &owner,
            connector: "github",
            field: "material",
        },
    ] {
        assert!(
            matches!(envelope.open(wrong, &sealed).await, Err(Error::Decrypt)),
            "{wrong:?}"
        );
    }
}

#[tokio::test]
async fn tampered_ciphertext_or_header_is_refused() {
    let envelope = envelope();
    let owner = Owner::Shared;
    let sealed = envelope
        .seal(binding(&owner, "c", "material"), b"secret")
        .await
        .unwrap();
    for index in [1, 7, 20, sealed.len() - 1] {
        let mut tampered = sealed.clone();
        tampered[index] ^= 1;
        assert!(
            envelope
                .open(binding(&owner, "c", "material"), &tampered)
                .await
                .is_err(),
            "{index}"
        );
    }
    assert!(
        envelope
            .open(binding(&owner, "c", "material"), &sealed[..10])
            .await
            .is_err()
    );
}

#[tokio::test]
async fn data_keys_are_fresh_per_value() {
    let envelope = envelope();
    let owner = Owner::Shared;
    let one = envelope
        .seal(binding(&owner, "c", "material"), b"same")
        .await
        .unwrap();
    let two = envelope
        .seal(binding(&owner, "c", "material"), b"same")
        .await
        .unwrap();
    assert_ne!(one[7..67], two[7..67]);
}

#[tokio::test]
async fn rotation_keeps_old_values_readable_and_rewrap_moves_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.kek");
    let keyring = Arc::new(LocalKeyring::load_or_generate(&path).unwrap());
    let envelope = Envelope::new(keyring.clone());
    let owner = Owner::Agent("a-1".into());
    let old = envelope
        .seal(binding(&owner, "c", "material"), b"v1 data")
        .await
        .unwrap();
    assert_eq!(keyring.rotate().await.unwrap(), 2);
    let new = envelope
        .seal(binding(&owner, "c", "material"), b"v2 data")
        .await
        .unwrap();
    assert_eq!(Envelope::kek_version(&new).unwrap(), 2);
    assert_eq!(
        envelope
            .open(binding(&owner, "c", "material"), &old)
            .await
            .unwrap()
            .as_slice(),
        b"v1 data"
    );
    let rewrapped = envelope
        .rewrap(binding(&owner, "c", "material"), &old)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(Envelope::kek_version(&rewrapped).unwrap(), 2);
    assert!(
        envelope
            .rewrap(binding(&owner, "c", "material"), &rewrapped)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        envelope
            .open(binding(&owner, "c", "material"), &rewrapped)
            .await
            .unwrap()
            .as_slice(),
        b"v1 data"
    );
    // The rotated key file survives a restart with both versions.
    let reloaded = LocalKeyring::load_or_generate(&path).unwrap();
    assert_eq!(reloaded.active_version(), 2);
    assert!(reloaded.has_version(1));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[tokio::test]
async fn generated_key_file_is_private_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("vault.kek");
    let first = Envelope::new(Arc::new(LocalKeyring::load_or_generate(&path).unwrap()));
    let owner = Owner::Shared;
    let sealed = first
        .seal(binding(&owner, "c", "material"), b"kept")
        .await
        .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let second = Envelope::new(Arc::new(LocalKeyring::load_or_generate(&path).unwrap()));
    assert_eq!(
        second
            .open(binding(&owner, "c", "material"), &sealed)
            .await
            .unwrap()
            .as_slice(),
        b"kept"
    );
}

#[test]
fn key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vault.kek");
    LocalKeyring::load_or_generate(&path).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        LocalKeyring::load_or_generate(&path),
        Err(Error::InvalidKeyFile(..))
    ));
}

#[tokio::test]
async fn environment_keyring_uses_its_highest_version_and_cannot_rotate() {
    let one = STANDARD_KEY_1;
    let two = STANDARD_KEY_2;
    let keyring = LocalKeyring::from_env_value(&format!("1:{one}, 2:{two}")).unwrap();
    assert_eq!(keyring.active_version(), 2);
    assert!(matches!(
        keyring.rotate().await,
        Err(Error::RotationUnsupported)
    ));
    for bad in [
        "",
        "1:short",
        "x:abc",
        "0:AAAA",
        &format!("1:{one},1:{two}"),
    ] {
        assert!(LocalKeyring::from_env_value(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn self_test_refuses_a_keyring_without_its_active_key() {
    let empty = Envelope::new(Arc::new(LocalKeyring::from_keys([])));
    assert!(matches!(
        empty.self_test().await,
        Err(Error::KekUnavailable(0))
    ));
    envelope().self_test().await.unwrap();
}

#[tokio::test]
async fn value_wrapped_by_an_unknown_version_is_kek_unavailable() {
    let two = Envelope::new(Arc::new(LocalKeyring::from_keys([(
        2,
        DataKey::from_bytes([2; 32]),
    )])));
    let owner = Owner::Shared;
    let sealed = two
        .seal(binding(&owner, "c", "material"), b"x")
        .await
        .unwrap();
    assert!(matches!(
        envelope()
            .open(binding(&owner, "c", "material"), &sealed)
            .await,
        Err(Error::KekUnavailable(2))
    ));
}

const STANDARD_KEY_1: &str = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
const STANDARD_KEY_2: &str = "AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=";
