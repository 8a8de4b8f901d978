//! The refresh engine: refreshes OAuth credentials at about two thirds of their
//! lifetime (with jitter, so replicas and credentials do not move in step),
//! single-flight across replicas.
//!
//! One refresh: take the credential's lock (a lease with a fencing token) →
//! re-read the row → claim it in the store with the token (refused if the row
//! changed or a newer token claimed it) → check the lease still has time for
//! the whole HTTP deadline → call the provider once → write with a
//! compare-and-swap on version and token. A replica that paused past its lease
//! cannot claim (a newer holder's token is higher) and cannot write, so it never
//! overwrites a newer token, and a claim made by a newer holder stops the old
//! one before it redeems the same refresh token.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::config::RefreshConfig;
use crate::credential::{
    CredentialRecord, CredentialStatus, CredentialUpdate, Material, now_micros,
};
use crate::error::Error;
use crate::event::{CredentialAction, CredentialEvent};
use crate::lock::{Lease, RefreshLock};
use crate::oauth::{OAuthClient, ProviderError, TokenSet};
use crate::vault::Vault;

/// Runs refreshes for one replica.
#[derive(Debug, Clone)]
pub struct RefreshEngine {
    vault: Vault,
    lock: Arc<dyn RefreshLock>,
    oauth: OAuthClient,
    config: RefreshConfig,
    in_flight: Arc<Mutex<HashSet<String>>>,
}

/// Says what one refresh attempt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    /// New tokens were stored.
    Refreshed,
    /// Another holder has the lock, or the row changed: nothing was done.
    Skipped,
    /// The provider failed; the refresh is retried with backoff.
    Failed,
    /// The provider rejected the grant; its owner must reconnect.
    Rejected,
}

/// Returns when to refresh `material` stored now with `expires_at`: at about
/// two thirds of its lifetime, earlier by a random 0–10 % of it.
pub(crate) fn schedule_after_store(material: &Material, expires_at: Option<i64>) -> Option<i64> {
    match material {
        Material::OauthClientCredentials(credentials) if credentials.access_token.is_none() => {
            Some(now_micros())
        }
        Material::OauthGrant(_) | Material::OauthClientCredentials(_) => {
            let now = now_micros();
            expires_at.map(|expires| due_at(now, expires.saturating_sub(now)))
        }
        _ => None,
    }
}

/// Returns the refresh time for a lifetime of `lifetime` micros starting `now`.
fn due_at(now: i64, lifetime: i64) -> i64 {
    let lifetime = lifetime.max(0);
    let jitter = i64::from(random_u32()) % (lifetime / 10).max(1);
    now + lifetime * 2 / 3 - jitter
}

fn random_u32() -> u32 {
    let mut bytes = [0u8; 4];
    let _ = getrandom::fill(&mut bytes);
    u32::from_le_bytes(bytes)
}

/// Returns the retry delay after `failures` consecutive failures: 1 s doubling
/// to 5 minutes.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.min(8).saturating_sub(1)).min(Duration::from_secs(300))
}

/// How often the refresh loop records every connector's health gauge.
const HEALTH_GAUGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(15);

impl RefreshEngine {
    /// Returns an engine refreshing `vault`'s credentials under `lock`.
    pub fn new(
        vault: Vault,
        lock: Arc<dyn RefreshLock>,
        config: RefreshConfig,
    ) -> Result<Self, Error> {
        let oauth = OAuthClient::new().map_err(|_| Error::Corrupt("http client"))?;
        Ok(Self {
            vault,
            lock,
            oauth,
            config,
            in_flight: Arc::default(),
        })
    }

    /// Scans for due credentials and refreshes them until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let mut health_recorded: Option<std::time::Instant> = None;
        while !shutdown.is_cancelled() {
            // Keeps the per-connector health gauge current without anyone asking for it
            // (`health` records it), at a bounded cost: once per interval, not per refresh.
            if health_recorded.is_none_or(|at| at.elapsed() >= HEALTH_GAUGE_INTERVAL) {
                health_recorded = Some(std::time::Instant::now());
                if let Err(error) = self.vault.health(&[]).await {
                    tracing::debug!(error = %error, "connector health not recorded");
                }
            }
            match self
                .vault
                .store()
                .due_for_refresh(now_micros(), self.config.batch)
                .await
            {
                Ok(records) => {
                    for record in records {
                        if !self.start(&record.id) {
                            continue;
                        }
                        let Ok(permit) = permits.clone().acquire_owned().await else {
                            break;
                        };
                        let engine = self.clone();
                        tokio::spawn(async move {
                            let id = record.id.clone();
                            if let Err(error) = engine.refresh_one(record).await {
                                tracing::warn!(credential_id = %id, error = %error, "refresh attempt failed");
                            }
                            if let Ok(mut in_flight) = engine.in_flight.lock() {
                                in_flight.remove(&id);
                            }
                            drop(permit);
                        });
                    }
                }
                Err(error) => tracing::warn!(error = %error, "refresh scan failed"),
            }
            let wait = self.next_wait().await;
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Marks `id` in flight in this process; false when it is already.
    fn start(&self, id: &str) -> bool {
        self.in_flight
            .lock()
            .is_ok_and(|mut in_flight| in_flight.insert(id.to_owned()))
    }

    async fn next_wait(&self) -> Duration {
        let poll = self.config.poll_interval;
        match self.vault.store().next_refresh_due().await {
            Ok(Some(due)) => {
                let until = u64::try_from(due.saturating_sub(now_micros())).unwrap_or(0);
                Duration::from_micros(until).clamp(Duration::from_millis(10), poll)
            }
            _ => poll,
        }
    }

    /// Refreshes `record` once if it is still due and this replica wins its lock.
    pub async fn refresh_one(&self, record: CredentialRecord) -> Result<RefreshOutcome, Error> {
        let Some(lease) = self
            .lock
            .try_acquire(&record.id, self.config.lock_ttl)
            .await?
        else {
            return Ok(RefreshOutcome::Skipped);
        };
        let outcome = self.refresh_locked(&record.id, &lease).await;
        crate::metrics::refresh_attempted(outcome.as_ref().ok().copied());
        if let Err(error) = self.lock.release(&lease).await {
            tracing::warn!(error = %error, "refresh lock release failed; it expires by itself");
        }
        outcome
    }

    async fn refresh_locked(&self, id: &str, lease: &Lease) -> Result<RefreshOutcome, Error> {
        let store = self.vault.store();
        // Re-read under the lock: another replica may have refreshed already.
        let Some(record) = store.get_by_id(self.vault.tenant(), id).await? else {
            return Ok(RefreshOutcome::Skipped);
        };
        if record.refresh_due_at.is_none_or(|due| due > now_micros()) {
            return Ok(RefreshOutcome::Skipped);
        }
        if !store.claim(&record.id, record.version, lease.fence).await? {
            return Ok(RefreshOutcome::Skipped);
        }
        let material = Material::open(self.vault.envelope(), &record.key, &record.sealed).await?;
        // The provider call cannot be fenced: only send it when the lease
        // outlives its whole deadline, with a margin for the write.
        let margin = self.config.lock_ttl / 10;
        let remaining = lease.remaining().saturating_sub(margin);
        if remaining < self.config.http_timeout.min(self.config.lock_ttl / 2) {
            return Ok(RefreshOutcome::Skipped);
        }
        let deadline = self.config.http_timeout.min(remaining);
        let result = match &material {
            Material::OauthGrant(grant) => self.oauth.refresh(grant, deadline).await,
            Material::OauthClientCredentials(credentials) => {
                self.oauth.client_credentials(credentials, deadline).await
            }
            _ => return Ok(RefreshOutcome::Skipped),
        };
        match result {
            Ok(tokens) => self.store_refreshed(&record, lease, material, tokens).await,
            Err(error) => self.store_failure(&record, lease, &error).await,
        }
    }

    async fn store_refreshed(
        &self,
        record: &CredentialRecord,
        lease: &Lease,
        material: Material,
        tokens: TokenSet,
    ) -> Result<RefreshOutcome, Error> {
        let material = match material {
            Material::OauthGrant(mut grant) => {
                grant.access_token = tokens.access_token;
                // Providers that do not rotate refresh tokens omit them.
                if tokens.refresh_token.is_some() {
                    grant.refresh_token = tokens.refresh_token;
                }
                Material::OauthGrant(grant)
            }
            Material::OauthClientCredentials(mut credentials) => {
                credentials.access_token = Some(tokens.access_token);
                Material::OauthClientCredentials(credentials)
            }
            other => other,
        };
        let now = now_micros();
        let lifetime = tokens
            .expires_in
            .map(|expires_in| i64::try_from(expires_in.as_micros()).unwrap_or(i64::MAX));
        let update = CredentialUpdate {
            sealed: Some(material.seal(self.vault.envelope(), &record.key).await?),
            status: CredentialStatus::Active,
            expires_at: lifetime.map(|lifetime| now.saturating_add(lifetime)),
            refresh_due_at: lifetime.map(|lifetime| due_at(now, lifetime)),
            refresh_failures: 0,
        };
        let stored = self
            .vault
            .store()
            .update(&record.id, record.version, Some(lease.fence), &update)
            .await?;
        let mut event = CredentialEvent::new(CredentialAction::Refresh, self.vault.tenant(), "ok");
        event.credential_id = Some(record.id.clone());
        event.connector = Some(record.key.connector.clone());
        event.owner = Some(record.key.owner.clone());
        match stored {
            Some(stored) => {
                event.version = Some(stored.version);
                self.vault.emit(event);
                Ok(RefreshOutcome::Refreshed)
            }
            None => {
                // Cannot happen while the claim holds; if it does, the new tokens
                // are lost and the grant may need reconnecting: say so loudly.
                tracing::error!(credential_id = %record.id, "refreshed tokens lost a fenced write");
                event.action = CredentialAction::RefreshFailed;
                event.outcome = "fenced_out";
                self.vault.emit(event);
                Ok(RefreshOutcome::Skipped)
            }
        }
    }

    async fn store_failure(
        &self,
        record: &CredentialRecord,
        lease: &Lease,
        error: &ProviderError,
    ) -> Result<RefreshOutcome, Error> {
        let failures = record.refresh_failures.saturating_add(1);
        let (status, due, outcome, label) = match error {
            ProviderError::InvalidGrant => (
                CredentialStatus::NeedsAttention,
                None,
                RefreshOutcome::Rejected,
                "invalid_grant",
            ),
            ProviderError::Rejected(_) | ProviderError::Unreachable => {
                let delay = i64::try_from(backoff(failures).as_micros()).unwrap_or(i64::MAX);
                let (status, label) = if matches!(error, ProviderError::Unreachable) {
                    (CredentialStatus::Unreachable, "unreachable")
                } else {
                    (CredentialStatus::RefreshFailing, "rejected")
                };
                (
                    status,
                    Some(now_micros() + delay),
                    RefreshOutcome::Failed,
                    label,
                )
            }
        };
        let update = CredentialUpdate {
            sealed: None,
            status,
            expires_at: record.expires_at,
            refresh_due_at: due,
            refresh_failures: failures,
        };
        self.vault
            .store()
            .update(&record.id, record.version, Some(lease.fence), &update)
            .await?;
        let code = match error {
            ProviderError::Rejected(code) => code.as_str(),
            _ => "",
        };
        tracing::warn!(
            credential_id = %record.id,
            connector = %record.key.connector,
            outcome = label,
            provider_error = code,
            "refresh failed"
        );
        let mut event =
            CredentialEvent::new(CredentialAction::RefreshFailed, self.vault.tenant(), label);
        event.credential_id = Some(record.id.clone());
        event.connector = Some(record.key.connector.clone());
        event.owner = Some(record.key.owner.clone());
        self.vault.emit(event);
        Ok(outcome)
    }
}
