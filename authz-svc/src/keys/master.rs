//! Where the master key comes from: the environment, or a key file that is
//! created (mode 0600) on first start.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{MASTER_KEY_ENV, MasterKey, decode_master_key, random_bytes};
use crate::error::Error;

/// Returns the master key from `GATEHOUSE_AUTHZ_MASTER_KEY`, else from `file`,
/// creating `file` with a fresh random key when it does not exist yet.
pub(crate) async fn load_master_key(file: Option<&Path>) -> Result<MasterKey, Error> {
    if let Ok(value) = std::env::var(MASTER_KEY_ENV) {
        return decode_master_key(&value, Path::new(MASTER_KEY_ENV));
    }
    let Some(file) = file else {
        return Err(Error::MasterKey {
            location: MASTER_KEY_ENV.to_owned(),
            reason: "is unset and no master_key_file is configured",
        });
    };
    let file = file.to_owned();
    tokio::task::spawn_blocking(move || read_or_create(&file))
        .await
        .map_err(|_| Error::Crypto("master key loader panicked"))?
}

fn read_or_create(file: &Path) -> Result<MasterKey, Error> {
    let location = || file.display().to_string();
    match std::fs::read_to_string(file) {
        Ok(text) => return decode_master_key(&text, file),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::MasterKey {
                location: location(),
                reason: "cannot be read",
            });
        }
        Err(_) => {}
    }
    let key: [u8; 32] = random_bytes()?;
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file);
    match created {
        Ok(mut handle) => {
            handle
                .write_all(format!("{}\n", STANDARD.encode(key)).as_bytes())
                .and_then(|()| handle.sync_all())
                .map_err(|_| Error::MasterKey {
                    location: location(),
                    reason: "cannot be written",
                })?;
            Ok(MasterKey::from_bytes(key))
        }
        // Another process created it first: use theirs.
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(file).map_err(|_| Error::MasterKey {
                location: location(),
                reason: "cannot be read",
            })?;
            decode_master_key(&text, file)
        }
        Err(_) => Err(Error::MasterKey {
            location: location(),
            reason: "cannot be created",
        }),
    }
}
