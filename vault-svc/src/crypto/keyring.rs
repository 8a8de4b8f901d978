//! Key-encryption keys: the trait a cloud KMS implements, and the local keyring
//! (a key file in the data directory, or an environment variable).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use aes_gcm::Nonce;
use aes_gcm::aead::{Aead as _, Payload};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use super::{NONCE_LEN, cipher, random_nonce};
use crate::error::Error;
use crate::secret::DataKey;

/// Wraps and unwraps data keys; versions let old wrappings decrypt after a
/// rotation. A cloud KMS implements it with its Encrypt/Decrypt calls, passing
/// `aad` as the encryption context.
#[async_trait]
pub trait KeyEncryptionKey: Send + Sync + std::fmt::Debug {
    /// Returns the version new data keys are wrapped with.
    fn active_version(&self) -> u32;

    /// Returns whether `version` can unwrap.
    fn has_version(&self, version: u32) -> bool;

    /// Wraps `key` under the active version, binding `aad`; returns the version used.
    async fn wrap(&self, key: &DataKey, aad: &[u8]) -> Result<(u32, Vec<u8>), Error>;

    /// Unwraps a key wrapped under `version` with the same `aad`.
    async fn unwrap(&self, version: u32, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, Error>;

    /// Adds a new version and makes it active for new writes; sources an
    /// operator manages (environment) answer [`Error::RotationUnsupported`].
    async fn rotate(&self) -> Result<u32, Error>;
}

/// Holds 256-bit KEK versions in memory, loaded from a key file (which it can
/// extend on rotation) or from an environment variable (read-only).
pub struct LocalKeyring {
    keys: RwLock<BTreeMap<u32, DataKey>>,
    file: Option<PathBuf>,
}

impl std::fmt::Debug for LocalKeyring {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("LocalKeyring")
            .field("active_version", &self.active_version())
            .field("file", &self.file)
            .finish_non_exhaustive()
    }
}

impl LocalKeyring {
    /// Returns the keyring in `path`, generating a one-key file (mode 0600) on
    /// first start. A file readable by group or others is refused.
    pub fn load_or_generate(path: &Path) -> Result<Self, Error> {
        let key_file = |source| Error::KeyFile {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(key_file)?;
        }
        let mut first = BTreeMap::new();
        first.insert(1, DataKey::generate()?);
        match write_new(path, &first) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "generated a new key-encryption key file");
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(key_file(error)),
        }
        let metadata = std::fs::metadata(path).map_err(key_file)?;
        if metadata.permissions().mode() & 0o077 != 0 {
            return Err(Error::InvalidKeyFile(
                path.to_owned(),
                "is readable by group or others",
            ));
        }
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(key_file)?);
        let keys = parse(&text).map_err(|reason| Error::InvalidKeyFile(path.to_owned(), reason))?;
        Ok(Self {
            keys: RwLock::new(keys),
            file: Some(path.to_owned()),
        })
    }

    /// Returns the keyring held in `value` (`VERSION:BASE64[,VERSION:BASE64…]`,
    /// highest version active), as read from an environment variable.
    pub fn from_env_value(value: &str) -> Result<Self, Error> {
        let keys = parse(value).map_err(Error::InvalidKekEnv)?;
        Ok(Self {
            keys: RwLock::new(keys),
            file: None,
        })
    }

    /// Returns a keyring of the given versions, for tests and benchmarks.
    pub fn from_keys(keys: impl IntoIterator<Item = (u32, DataKey)>) -> Self {
        Self {
            keys: RwLock::new(keys.into_iter().collect()),
            file: None,
        }
    }

    fn key(&self, version: u32) -> Result<DataKey, Error> {
        let keys = self
            .keys
            .read()
            .map_err(|_| Error::KekUnavailable(version))?;
        keys.get(&version)
            .cloned()
            .ok_or(Error::KekUnavailable(version))
    }
}

#[async_trait]
impl KeyEncryptionKey for LocalKeyring {
    fn active_version(&self) -> u32 {
        self.keys
            .read()
            .ok()
            .and_then(|keys| keys.keys().next_back().copied())
            .unwrap_or(0)
    }

    fn has_version(&self, version: u32) -> bool {
        self.keys
            .read()
            .is_ok_and(|keys| keys.contains_key(&version))
    }

    async fn wrap(&self, key: &DataKey, aad: &[u8]) -> Result<(u32, Vec<u8>), Error> {
        let version = self.active_version();
        let kek = self.key(version)?;
        let nonce = random_nonce()?;
        let mut wrapped = nonce.to_vec();
        let sealed = cipher(&kek)
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: key.expose(),
                    aad,
                },
            )
            .map_err(|_| Error::Encrypt)?;
        wrapped.extend_from_slice(&sealed);
        Ok((version, wrapped))
    }

    async fn unwrap(&self, version: u32, wrapped: &[u8], aad: &[u8]) -> Result<DataKey, Error> {
        let kek = self.key(version)?;
        if wrapped.len() < NONCE_LEN {
            return Err(Error::Corrupt("wrapped key"));
        }
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce
            .try_into()
            .map_err(|_| Error::Corrupt("wrapped key"))?;
        let bytes = Zeroizing::new(
            cipher(&kek)
                .decrypt(&Nonce::from(nonce), Payload { msg: sealed, aad })
                .map_err(|_| Error::Decrypt)?,
        );
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::Corrupt("wrapped key"))?;
        Ok(DataKey::from_bytes(array))
    }

    async fn rotate(&self) -> Result<u32, Error> {
        let Some(path) = &self.file else {
            return Err(Error::RotationUnsupported);
        };
        let mut keys = self.keys.write().map_err(|_| Error::RotationUnsupported)?;
        let version = keys.keys().next_back().copied().unwrap_or(0) + 1;
        let mut next = keys.clone();
        next.insert(version, DataKey::generate()?);
        // Written to a new file and renamed over the old one: a crash leaves
        // either keyring whole, never a truncated one.
        let temporary = path.with_extension("rotating");
        let _ = std::fs::remove_file(&temporary);
        write_new(&temporary, &next)
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(|source| Error::KeyFile {
                path: path.clone(),
                source,
            })?;
        *keys = next;
        tracing::info!(kek_version = version, "key-encryption key rotated");
        Ok(version)
    }
}

/// Creates `path` (mode 0600, failing if it exists) holding `keys`.
fn write_new(path: &Path, keys: &BTreeMap<u32, DataKey>) -> std::io::Result<()> {
    let mut text = Zeroizing::new(String::from(
        "# gatehouse vault-svc key-encryption keys: VERSION:BASE64, highest active\n",
    ));
    for (version, key) in keys {
        text.push_str(&format!("{version}:{}\n", STANDARD.encode(key.expose())));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

/// Parses `VERSION:BASE64` entries separated by commas or lines; `#` comments.
fn parse(text: &str) -> Result<BTreeMap<u32, DataKey>, &'static str> {
    let mut keys = BTreeMap::new();
    let entries = text
        .lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(|line| line.split(','))
        .map(str::trim)
        .filter(|entry| !entry.is_empty());
    for entry in entries {
        let (version, encoded) = entry
            .split_once(':')
            .ok_or("entries must be VERSION:BASE64")?;
        let version: u32 = version
            .trim()
            .parse()
            .map_err(|_| "a version is not a number")?;
        if version == 0 {
            return Err("versions start at 1");
        }
        let bytes = Zeroizing::new(
            STANDARD
                .decode(encoded.trim())
                .map_err(|_| "a key is not base64")?,
        );
        let array: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| "keys must be 32 bytes")?;
        if keys.insert(version, DataKey::from_bytes(array)).is_some() {
            return Err("a version appears twice");
        }
    }
    if keys.is_empty() {
        return Err("holds no key");
    }
    Ok(keys)
}
