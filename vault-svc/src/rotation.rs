//! Online KEK rotation: new writes use the new version at once; a background
//! job re-wraps the other credentials' data keys in batches (the payloads are
//! untouched), with progress the admin surface can show.

use std::sync::Mutex;

use crate::error::Error;
use crate::event::{CredentialAction, CredentialEvent};
use crate::vault::Vault;

/// Reports a re-wrap's progress: `rewrapped` of `total` credentials moved to
/// `kek_version`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RewrapProgress {
    /// Holds the KEK version credentials are moved to.
    pub kek_version: u32,
    /// Counts the credentials not on that version when the job started.
    pub total: u64,
    /// Counts the credentials re-wrapped so far.
    pub rewrapped: u64,
    /// Says a job is running.
    pub running: bool,
}

/// Reports where the credentials' data keys stand against the active KEK, so an operator
/// sees a rotation through: how many still wait for the background re-wrap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KekStatus {
    /// Holds the KEK version new writes use.
    pub active_version: u32,
    /// Counts every stored credential.
    pub credentials: u64,
    /// Counts the credentials still wrapped by an older KEK version.
    pub stale: u64,
    /// Holds the latest re-wrap job's progress (this process's).
    pub rewrap: RewrapProgress,
}

/// Holds the latest re-wrap progress.
#[derive(Debug, Default)]
pub(crate) struct Rotation {
    progress: Mutex<RewrapProgress>,
}

impl Rotation {
    fn set(&self, update: impl FnOnce(&mut RewrapProgress)) {
        if let Ok(mut progress) = self.progress.lock() {
            update(&mut progress);
        }
    }

    fn get(&self) -> RewrapProgress {
        self.progress
            .lock()
            .map(|progress| *progress)
            .unwrap_or_default()
    }
}

impl Vault {
    /// Adds a new KEK version (new writes use it at once) and re-wraps every
    /// other credential in the background; returns the new version.
    pub async fn rotate_kek(&self, batch: u32) -> Result<u32, Error> {
        let version = self.envelope().kek().rotate().await?;
        self.emit(CredentialEvent::new(
            CredentialAction::KekRotated,
            self.tenant(),
            "ok",
        ));
        let vault = self.clone();
        tokio::spawn(async move {
            if let Err(error) = vault.rewrap_all(batch).await {
                tracing::error!(error = %error, "kek re-wrap stopped; it resumes on the next start");
            }
        });
        Ok(version)
    }

    /// Returns the latest re-wrap progress.
    pub fn rewrap_progress(&self) -> RewrapProgress {
        self.rotation().get()
    }

    /// Returns the active KEK version and how many credentials are still on older ones,
    /// counted in the store (so every replica, and the CLI, sees the same figure).
    pub async fn kek_status(&self) -> Result<KekStatus, Error> {
        let active_version = self.envelope().kek().active_version();
        let (stale, credentials) = self.store().count_stale_kek(active_version).await?;
        Ok(KekStatus {
            active_version,
            credentials,
            stale,
            rewrap: self.rewrap_progress(),
        })
    }

    /// Re-wraps, in batches of `batch`, every credential not wrapped by the
    /// active KEK; reads and writes continue meanwhile (each re-wrap is a
    /// compare-and-swap on the row's version, and a row written concurrently is
    /// already on the active version). Runs at start too, so an operator-rotated
    /// key (environment) is applied.
    pub async fn rewrap_all(&self, batch: u32) -> Result<RewrapProgress, Error> {
        let kek_version = self.envelope().kek().active_version();
        let (stale, _) = self.store().count_stale_kek(kek_version).await?;
        self.rotation().set(|progress| {
            *progress = RewrapProgress {
                kek_version,
                total: stale,
                rewrapped: 0,
                running: true,
            };
        });
        let mut after = String::new();
        loop {
            let records = self.store().stale_kek(kek_version, &after, batch).await?;
            let Some(last) = records.last() else { break };
            after = last.id.clone();
            for record in records {
                let Some(sealed) = self
                    .envelope()
                    .rewrap(record.key.binding(), &record.sealed)
                    .await?
                else {
                    continue;
                };
                if self
                    .store()
                    .rewrap(&record.id, record.version, &sealed, kek_version)
                    .await?
                {
                    let mut event =
                        CredentialEvent::new(CredentialAction::Rewrap, self.tenant(), "ok");
                    event.credential_id = Some(record.id.clone());
                    event.version = Some(record.version);
                    self.emit(event);
                }
                // A row that lost the swap was rewritten meanwhile, under the
                // active version; either way it counts as moved.
                self.rotation().set(|progress| progress.rewrapped += 1);
            }
        }
        self.rotation().set(|progress| progress.running = false);
        let progress = self.rewrap_progress();
        tracing::info!(
            kek_version,
            rewrapped = progress.rewrapped,
            "kek re-wrap finished"
        );
        Ok(progress)
    }
}
