//! Key material: the master key that seals secrets at rest, derived HMAC keys,
//! and the ES256 signing keys published as the JWKS.

use std::path::Path;
use std::sync::Arc;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use jsonwebtoken::DecodingKey;
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::error::Error;
use crate::store::{KeyRecord, KeyStatus};

mod master;

pub(crate) use master::load_master_key;

/// Is the environment variable holding the base64 master key.
pub const MASTER_KEY_ENV: &str = "GATEHOUSE_AUTHZ_MASTER_KEY";

const NONCE_LEN: usize = 12;

/// Seals and opens secrets with AES-256-GCM and derives purpose-bound HMAC keys.
#[derive(Clone)]
pub(crate) struct MasterKey {
    key: Arc<[u8; 32]>,
}

/// Holds one ES256 signing key, ready to sign and verify.
#[derive(Clone)]
pub(crate) struct SigningKey {
    pub(crate) kid: String,
    /// Is parsed once: re-parsing PKCS#8 per signature (as
    /// `jsonwebtoken::EncodingKey` does) costs 2.7x the signature itself. aws-lc-rs (the
    /// backend jsonwebtoken and rustls already use here) signs several times faster than
    /// the pure-Rust `p256`, and signing bounds client_credentials tokens per second.
    pub(crate) signer: Arc<aws_lc_rs::signature::EcdsaKeyPair>,
    pub(crate) decoding: DecodingKey,
    pub(crate) x: String,
    pub(crate) y: String,
}

/// Holds the active signing key and every key published in the JWKS.
#[derive(Clone)]
pub(crate) struct KeySet {
    pub(crate) active: SigningKey,
    pub(crate) published: Vec<SigningKey>,
}

impl MasterKey {
    pub(crate) fn from_bytes(key: [u8; 32]) -> Self {
        Self { key: Arc::new(key) }
    }

    /// Returns `nonce || ciphertext` of `plaintext`, bound to `context`.
    pub(crate) fn seal(&self, plaintext: &[u8], context: &[u8]) -> Result<Vec<u8>, Error> {
        let cipher = Aes256Gcm::new_from_slice(self.key.as_slice())
            .map_err(|_| Error::Crypto("master key length"))?;
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes()?;
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce_bytes),
                Payload {
                    msg: plaintext,
                    aad: context,
                },
            )
            .map_err(|_| Error::Crypto("sealing"))?;
        Ok([nonce_bytes.as_slice(), sealed.as_slice()].concat())
    }

    /// Returns the plaintext of what [`Self::seal`] produced for `context`.
    pub(crate) fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, Error> {
        if sealed.len() < NONCE_LEN {
            return Err(Error::Crypto("sealed value too short"));
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| Error::Crypto("nonce length"))?;
        let cipher = Aes256Gcm::new_from_slice(self.key.as_slice())
            .map_err(|_| Error::Crypto("master key length"))?;
        cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context,
                },
            )
            .map_err(|_| Error::Crypto("opening a sealed value (wrong master key?)"))
    }

    /// Returns a key for `purpose`, derived so that no two purposes share one.
    pub(crate) fn derive(&self, purpose: &str) -> [u8; 32] {
        let mut mac = mac(self.key.as_slice());
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

/// Returns an HMAC-SHA256 instance keyed with `key`.
pub(crate) fn mac(key: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("hmac accepts keys of any length"))
}

/// Returns `N` bytes from the operating system's CSPRNG.
pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| Error::Crypto("operating system randomness"))?;
    Ok(bytes)
}

/// Returns a fresh 256-bit random token, base64url without padding.
pub(crate) fn random_token() -> Result<String, Error> {
    Ok(URL_SAFE_NO_PAD.encode(random_bytes::<32>()?))
}

/// Returns a new ES256 key with status `status`, its private half sealed under `master`.
pub(crate) fn generate_key(
    master: &MasterKey,
    status: KeyStatus,
    now: i64,
) -> Result<KeyRecord, Error> {
    let secret = loop {
        // A uniformly random 32-byte string is a valid scalar with overwhelming probability.
        if let Ok(secret) = p256::SecretKey::from_slice(&random_bytes::<32>()?) {
            break secret;
        }
    };
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(Error::Crypto("public key encoding"));
    };
    let der = secret
        .to_pkcs8_der()
        .map_err(|_| Error::Crypto("private key encoding"))?;
    let kid = URL_SAFE_NO_PAD.encode(random_bytes::<12>()?);
    let sealed = master.seal(der.as_bytes(), kid.as_bytes())?;
    Ok(KeyRecord {
        kid,
        status,
        sealed_private_key: sealed,
        public_x: URL_SAFE_NO_PAD.encode(x),
        public_y: URL_SAFE_NO_PAD.encode(y),
        created_at: now,
        retired_until: None,
    })
}

impl SigningKey {
    /// Returns the usable key of a stored record, opening its private half.
    pub(crate) fn open(master: &MasterKey, record: &KeyRecord) -> Result<Self, Error> {
        let der = master.open(&record.sealed_private_key, record.kid.as_bytes())?;
        let decoding = DecodingKey::from_ec_components(&record.public_x, &record.public_y)
            .map_err(|_| Error::Corrupt("signing key"))?;
        Ok(Self {
            kid: record.kid.clone(),
            signer: Arc::new(
                aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
                    &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    &der,
                )
                .map_err(|_| Error::Corrupt("signing key"))?,
            ),
            decoding,
            x: record.public_x.clone(),
            y: record.public_y.clone(),
        })
    }

    fn jwk(&self) -> Value {
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": self.x,
            "y": self.y,
            "kid": self.kid,
            "use": "sig",
            "alg": "ES256",
        })
    }
}

impl KeySet {
    /// Returns the published keys as a JWKS document.
    pub(crate) fn jwks(&self) -> Value {
        json!({ "keys": self.published.iter().map(SigningKey::jwk).collect::<Vec<_>>() })
    }

    /// Returns the published key with id `kid`.
    pub(crate) fn key(&self, kid: &str) -> Option<&SigningKey> {
        self.published.iter().find(|key| key.kid == kid)
    }
}

/// Is how long past the last token's expiry a retired key stays published, for clock skew.
pub(crate) const RETIRED_KEY_SKEW: std::time::Duration = std::time::Duration::from_secs(60);

/// Returns the active key's id when it is due for rotation: the next key (pre-published
/// when the active one started signing) has been published for `period` seconds.
pub(crate) fn rotation_due(records: &[KeyRecord], period: i64, now: i64) -> Option<&str> {
    let next = records.iter().find(|key| key.status == KeyStatus::Next)?;
    let active = records.iter().find(|key| key.status == KeyStatus::Active)?;
    (next.created_at.saturating_add(period) <= now).then_some(active.kid.as_str())
}

impl KeySet {
    /// Returns the active and published key ids, to tell whether a reload changed anything.
    pub(crate) fn fingerprint(&self) -> (&str, Vec<&str>) {
        (
            self.active.kid.as_str(),
            self.published.iter().map(|key| key.kid.as_str()).collect(),
        )
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kids: Vec<&str> = self.published.iter().map(|key| key.kid.as_str()).collect();
        f.debug_struct("KeySet")
            .field("active", &self.active.kid)
            .field("published", &kids)
            .finish()
    }
}

/// Returns the master key from the environment variable's value or from `file`.
pub(crate) fn decode_master_key(text: &str, location: &Path) -> Result<MasterKey, Error> {
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|_| master_error(location, "is not base64"))?;
    let key: [u8; 32] = bytes
        .try_into()
        .map_err(|_| master_error(location, "must hold exactly 32 bytes"))?;
    Ok(MasterKey::from_bytes(key))
}

fn master_error(location: &Path, reason: &'static str) -> Error {
    Error::MasterKey {
        location: location.display().to_string(),
        reason,
    }
}
