//! Signed checkpoints: the log's size, RFC 6962 root and chain head in the C2SP
//! `tlog-checkpoint` format, signed as a C2SP `signed-note` with Ed25519.
//!
//! Note text (each line ends in a newline):
//!
//! ```text
//! <origin>
//! <tree size, decimal>
//! <base64 root hash>
//! chain <base64 chain hash>        (extension line)
//!
//! — <origin> <base64(key id (4 bytes) || Ed25519 signature (64 bytes))>
//! ```
//!
//! The key id is the first four bytes of SHA-256(name || "\n" || 0x01 || public
//! key), as the signed-note specification defines for Ed25519. The C2SP formats
//! are a few lines of text, so they are written here; the signatures come from
//! `ed25519-dalek`.

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::merkle::Hash;

/// Is a signed statement of the log's size, Merkle root and chain head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// Names the log; the note's first line and the signer's name.
    pub origin: String,
    /// Holds the number of events covered.
    pub tree_size: u64,
    /// Holds the RFC 6962 tree hash over the first `tree_size` leaves.
    pub root_hash: Hash,
    /// Holds the chain hash of event `tree_size`.
    pub chain_hash: Hash,
    /// Holds when it was made, in Unix microseconds.
    pub time_micros: i64,
    /// Holds the full signed note.
    pub signed_note: String,
}

/// Signs checkpoints with the log's Ed25519 key.
#[derive(Debug)]
pub struct Signer {
    origin: String,
    key: SigningKey,
}

const ALGORITHM_ED25519: u8 = 0x01;

impl Signer {
    /// Returns a signer for `origin` with the key in `path`, generating and
    /// saving a new key (mode 0600) when the file does not exist.
    pub fn load_or_generate(origin: String, path: &Path) -> Result<Self, Error> {
        let key_file = |source| Error::KeyFile {
            path: path.to_owned(),
            source,
        };
        let seed = match std::fs::read_to_string(path) {
            Ok(text) => decode_seed(&text).ok_or_else(|| Error::InvalidKey(path.to_owned()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                getrandom::fill(&mut seed).map_err(|_| Error::Randomness)?;
                write_private(path, &STANDARD.encode(seed)).map_err(key_file)?;
                // Another process may have won the race: use the key on disk.
                let text = std::fs::read_to_string(path).map_err(key_file)?;
                decode_seed(&text).ok_or_else(|| Error::InvalidKey(path.to_owned()))?
            }
            Err(error) => return Err(key_file(error)),
        };
        Ok(Self::new(origin, &seed))
    }

    /// Returns a signer for `origin` with the Ed25519 key of `seed`.
    pub fn new(origin: String, seed: &[u8; 32]) -> Self {
        Self {
            origin,
            key: SigningKey::from_bytes(seed),
        }
    }

    /// Returns the origin the signer signs for.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Returns the public key verifiers need.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Returns the signed checkpoint for a tree of `tree_size` with `root_hash`
    /// whose chain ends at `chain_hash`.
    pub fn sign(
        &self,
        tree_size: u64,
        root_hash: Hash,
        chain_hash: Hash,
        time_micros: i64,
    ) -> Checkpoint {
        let body = note_body(&self.origin, tree_size, &root_hash, &chain_hash);
        let signature = self.key.sign(body.as_bytes());
        let mut blob = key_id(&self.origin, &self.verifying_key()).to_vec();
        blob.extend_from_slice(&signature.to_bytes());
        let signed_note = format!(
            "{body}\n\u{2014} {} {}\n",
            self.origin,
            STANDARD.encode(blob)
        );
        Checkpoint {
            origin: self.origin.clone(),
            tree_size,
            root_hash,
            chain_hash,
            time_micros,
            signed_note,
        }
    }
}

impl Checkpoint {
    /// Returns the checkpoint a signed note states, after checking its signature
    /// by `key`; `time_micros` is not part of the note and is 0.
    pub fn from_note(note: &str, key: &VerifyingKey) -> Result<Self, Error> {
        let (body, signatures) = note
            .split_once("\n\n")
            .ok_or(Error::InvalidNote("no blank line before the signatures"))?;
        let body = format!("{body}\n");
        let mut lines = body.lines();
        let origin = lines.next().unwrap_or_default().to_owned();
        let tree_size = lines
            .next()
            .and_then(|line| line.parse().ok())
            .ok_or(Error::InvalidNote("tree size is not a decimal number"))?;
        let root_hash = lines
            .next()
            .and_then(decode_hash)
            .ok_or(Error::InvalidNote("root hash is not base64 of 32 bytes"))?;
        let chain_hash = lines
            .next()
            .and_then(|line| line.strip_prefix("chain "))
            .and_then(decode_hash)
            .ok_or(Error::InvalidNote("chain line is missing"))?;
        let expected_id = key_id(&origin, key);
        let signed = signatures
            .lines()
            .any(|line| signature_matches(line, &origin, &expected_id, key, body.as_bytes()));
        if !signed {
            return Err(Error::InvalidNote("no valid signature by the log key"));
        }
        Ok(Self {
            origin,
            tree_size,
            root_hash,
            chain_hash,
            time_micros: 0,
            signed_note: note.to_owned(),
        })
    }
}

/// Returns the C2SP verifier key `<name>+<hex key id>+<base64(0x01 || key)>`.
pub fn verifier_key(origin: &str, key: &VerifyingKey) -> String {
    let id: String = key_id(origin, key)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let mut encoded = vec![ALGORITHM_ED25519];
    encoded.extend_from_slice(key.as_bytes());
    format!("{origin}+{id}+{}", STANDARD.encode(encoded))
}

fn note_body(origin: &str, tree_size: u64, root_hash: &Hash, chain_hash: &Hash) -> String {
    format!(
        "{origin}\n{tree_size}\n{}\nchain {}\n",
        STANDARD.encode(root_hash),
        STANDARD.encode(chain_hash)
    )
}

fn key_id(origin: &str, key: &VerifyingKey) -> [u8; 4] {
    let mut hasher = Sha256::new();
    hasher.update(origin.as_bytes());
    hasher.update(b"\n");
    hasher.update([ALGORITHM_ED25519]);
    hasher.update(key.as_bytes());
    let digest = hasher.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn signature_matches(
    line: &str,
    origin: &str,
    expected_id: &[u8; 4],
    key: &VerifyingKey,
    message: &[u8],
) -> bool {
    let Some(rest) = line.strip_prefix("\u{2014} ") else {
        return false;
    };
    let Some((name, encoded)) = rest.split_once(' ') else {
        return false;
    };
    let Ok(blob) = STANDARD.decode(encoded) else {
        return false;
    };
    if name != origin || blob.len() != 68 || blob[..4] != expected_id[..] {
        return false;
    }
    let Ok(signature) = Signature::from_slice(&blob[4..]) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}

fn decode_hash(text: &str) -> Option<Hash> {
    STANDARD.decode(text).ok()?.try_into().ok()
}

fn decode_seed(text: &str) -> Option<[u8; 32]> {
    decode_hash(text.trim())
}

// Writes the key beside `path` and links it into place, so that concurrent
// first starts never read a half-written key: exactly one link wins.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)?;
    }
    // A random staging name: two starts in one process (same pid) must not share a file.
    let mut nonce = [0u8; 8];
    getrandom::fill(&mut nonce).map_err(std::io::Error::other)?;
    let staging = path.with_extension(format!(
        "tmp.{}.{}",
        std::process::id(),
        u64::from_le_bytes(nonce)
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&staging)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    let linked = std::fs::hard_link(&staging, path);
    std::fs::remove_file(&staging)?;
    match linked {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => Err(error),
        _ => Ok(()),
    }
}

/// Returns the default key file inside `data_dir`.
pub(crate) fn default_key_path(data_dir: &Path) -> PathBuf {
    data_dir.join("audit-checkpoint.key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new("example.com/log".to_owned(), &[3u8; 32])
    }

    #[test]
    fn a_signed_note_round_trips_and_has_the_c2sp_shape() {
        let checkpoint = signer().sign(7, [1; 32], [2; 32], 0);
        let lines: Vec<&str> = checkpoint.signed_note.lines().collect();
        assert_eq!(lines[0], "example.com/log");
        assert_eq!(lines[1], "7");
        assert_eq!(lines[2], STANDARD.encode([1u8; 32]));
        assert_eq!(lines[4], "");
        assert!(lines[5].starts_with("\u{2014} example.com/log "));
        let parsed =
            Checkpoint::from_note(&checkpoint.signed_note, &signer().verifying_key()).unwrap();
        assert_eq!((parsed.tree_size, parsed.root_hash), (7, [1; 32]));
        assert_eq!(parsed.chain_hash, [2; 32]);
    }

    #[test]
    fn an_edited_note_or_a_foreign_key_is_refused() {
        let note = signer().sign(7, [1; 32], [2; 32], 0).signed_note;
        let key = signer().verifying_key();
        let edited = note.replacen("\n7\n", "\n8\n", 1);
        assert!(Checkpoint::from_note(&edited, &key).is_err());
        let foreign = Signer::new("example.com/log".to_owned(), &[4u8; 32]).verifying_key();
        assert!(Checkpoint::from_note(&note, &foreign).is_err());
    }

    #[test]
    fn verifier_key_names_the_log_and_its_key_id() {
        let key = verifier_key("example.com/log", &signer().verifying_key());
        let parts: Vec<&str> = key.split('+').collect();
        assert_eq!(parts[0], "example.com/log");
        assert_eq!(parts[1].len(), 8);
        assert_eq!(STANDARD.decode(parts[2]).unwrap().len(), 33);
    }

    #[test]
    fn a_key_file_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/key");
        let first = Signer::load_or_generate("o".to_owned(), &path).unwrap();
        let second = Signer::load_or_generate("o".to_owned(), &path).unwrap();
        assert_eq!(first.verifying_key(), second.verifying_key());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
