//! Envelope encryption: every credential gets a fresh 256-bit data key
//! (AES-256-GCM), wrapped by a versioned key-encryption key (KEK).
//!
//! A sealed value is `[format=1][kek version: u32 BE][wrapped len: u16 BE]
//! [wrapped data key][nonce: 12][ciphertext+tag]`. The header names the KEK
//! version so that old versions keep decrypting after a rotation, and re-wrapping
//! touches only the header and wrapped key, never the payload. Both the wrapped
//! key and the payload are authenticated with the same additional data, which
//! binds the tenant, owner, connector and field: a ciphertext copied to another
//! row, or another field, does not decrypt.

use std::sync::Arc;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::secret::{DataKey, Owner};

mod keyring;

pub use keyring::{KeyEncryptionKey, LocalKeyring};

/// Identifies the sealed-value layout in its first byte.
const FORMAT: u8 = 1;
/// Is AES-GCM's nonce length.
const NONCE_LEN: usize = 12;

/// Names what one ciphertext belongs to; it is authenticated, not encrypted.
#[derive(Debug, Clone, Copy)]
pub struct Binding<'a> {
    /// Holds the tenant.
    pub tenant: &'a str,
    /// Holds the credential's owner.
    pub owner: &'a Owner,
    /// Holds the connector's name.
    pub connector: &'a str,
    /// Names the field, such as `material` or `pkce_verifier`.
    pub field: &'a str,
}

/// Seals and opens values with per-value data keys under the KEK.
#[derive(Debug, Clone)]
pub struct Envelope {
    kek: Arc<dyn KeyEncryptionKey>,
}

impl Binding<'_> {
    /// Returns the additional authenticated data: each part length-prefixed, so
    /// that no two different bindings encode alike.
    pub fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(96);
        for part in [
            "gatehouse.vault.v1",
            self.tenant,
            self.owner.kind(),
            self.owner.id(),
            self.connector,
            self.field,
        ] {
            aad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
        aad
    }
}

impl Envelope {
    /// Returns an envelope whose data keys `kek` wraps.
    pub fn new(kek: Arc<dyn KeyEncryptionKey>) -> Self {
        Self { kek }
    }

    /// Returns the key-encryption key.
    pub fn kek(&self) -> &Arc<dyn KeyEncryptionKey> {
        &self.kek
    }

    /// Encrypts `plaintext` under a fresh data key wrapped by the active KEK.
    pub async fn seal(&self, binding: Binding<'_>, plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let aad = binding.aad();
        let data_key = DataKey::generate()?;
        let (version, wrapped) = self.kek.wrap(&data_key, &aad).await?;
        let wrapped_len =
            u16::try_from(wrapped.len()).map_err(|_| Error::Corrupt("wrapped key"))?;
        let nonce = random_nonce()?;
        let ciphertext = cipher(&data_key)
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Encrypt)?;
        let mut sealed = Vec::with_capacity(7 + wrapped.len() + NONCE_LEN + ciphertext.len());
        sealed.push(FORMAT);
        sealed.extend_from_slice(&version.to_be_bytes());
        sealed.extend_from_slice(&wrapped_len.to_be_bytes());
        sealed.extend_from_slice(&wrapped);
        sealed.extend_from_slice(&nonce);
        sealed.extend_from_slice(&ciphertext);
        Ok(sealed)
    }

    /// Decrypts `sealed`, which must have been sealed with the same binding.
    pub async fn open(
        &self,
        binding: Binding<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        let aad = binding.aad();
        let parts = Parts::parse(sealed)?;
        let data_key = self.kek.unwrap(parts.version, parts.wrapped, &aad).await?;
        let plaintext = cipher(&data_key)
            .decrypt(
                &Nonce::from(parts.nonce),
                Payload {
                    msg: parts.ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::Decrypt)?;
        Ok(Zeroizing::new(plaintext))
    }

    /// Returns `sealed` with its data key re-wrapped by the active KEK, or `None`
    /// when it is wrapped by the active KEK already. The payload is untouched.
    pub async fn rewrap(
        &self,
        binding: Binding<'_>,
        sealed: &[u8],
    ) -> Result<Option<Vec<u8>>, Error> {
        let parts = Parts::parse(sealed)?;
        if parts.version == self.kek.active_version() {
            return Ok(None);
        }
        let aad = binding.aad();
        let data_key = self.kek.unwrap(parts.version, parts.wrapped, &aad).await?;
        let (version, wrapped) = self.kek.wrap(&data_key, &aad).await?;
        let wrapped_len =
            u16::try_from(wrapped.len()).map_err(|_| Error::Corrupt("wrapped key"))?;
        let mut out = Vec::with_capacity(sealed.len() + 16);
        out.push(FORMAT);
        out.extend_from_slice(&version.to_be_bytes());
        out.extend_from_slice(&wrapped_len.to_be_bytes());
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&parts.nonce);
        out.extend_from_slice(parts.ciphertext);
        Ok(Some(out))
    }

    /// Returns the KEK version named in `sealed`'s header.
    pub fn kek_version(sealed: &[u8]) -> Result<u32, Error> {
        Ok(Parts::parse(sealed)?.version)
    }

    /// Proves the active KEK works by sealing and opening a probe, so that a
    /// replica without its key refuses to start instead of failing every read.
    pub async fn self_test(&self) -> Result<(), Error> {
        let owner = Owner::Shared;
        let binding = Binding {
            tenant: "self-test",
            owner: &owner,
            connector: "self-test",
            field: "probe",
        };
        let sealed = self.seal(binding, b"gatehouse vault self-test").await?;
        let opened = self.open(binding, &sealed).await?;
        if opened.as_slice() != b"gatehouse vault self-test" {
            return Err(Error::Decrypt);
        }
        Ok(())
    }
}

/// Is a sealed value split into its parts.
struct Parts<'a> {
    version: u32,
    wrapped: &'a [u8],
    nonce: [u8; NONCE_LEN],
    ciphertext: &'a [u8],
}

impl<'a> Parts<'a> {
    fn parse(sealed: &'a [u8]) -> Result<Self, Error> {
        let corrupt = || Error::Corrupt("sealed credential");
        let (&format, rest) = sealed.split_first().ok_or_else(corrupt)?;
        if format != FORMAT || rest.len() < 6 {
            return Err(corrupt());
        }
        let (version, rest) = rest.split_at(4);
        let (wrapped_len, rest) = rest.split_at(2);
        let version = u32::from_be_bytes(version.try_into().map_err(|_| corrupt())?);
        let wrapped_len = usize::from(u16::from_be_bytes(
            wrapped_len.try_into().map_err(|_| corrupt())?,
        ));
        if rest.len() < wrapped_len + NONCE_LEN + 16 {
            return Err(corrupt());
        }
        let (wrapped, rest) = rest.split_at(wrapped_len);
        let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
        let nonce = nonce.try_into().map_err(|_| corrupt())?;
        Ok(Self {
            version,
            wrapped,
            nonce,
            ciphertext,
        })
    }
}

/// Returns an AES-256-GCM cipher keyed with `key`.
pub(crate) fn cipher(key: &DataKey) -> Aes256Gcm {
    Aes256Gcm::new(key.expose().into())
}

/// Returns a fresh random 96-bit nonce; data keys are single-use per value and
/// random nonces stay far below GCM's 2^32 bound per key.
pub(crate) fn random_nonce() -> Result<[u8; NONCE_LEN], Error> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| Error::Randomness)?;
    Ok(nonce)
}

#[cfg(test)]
mod tests;
