//! Scheduled rotation of shared secrets, as a persisted state machine per
//! connector that declares `rotation`:
//!
//! `scheduled` (or `retired`, after a cycle) → when due, the hook produces a new
//! value, stored as the credential's new version in the same transaction that
//! moves the schedule to `overlap` (reads return the new value; the previous one,
//! sealed beside the schedule, stays valid at the provider) → when the overlap
//! ends, the hook retires the previous value → `retired`, due again `every`
//! later. A failed step stays in (or enters) `rotating` / `overlap` and is
//! retried with exponential backoff; after `max_attempts` failures in a row the
//! schedule stops in `needs_attention` until an operator sets a secret or asks
//! for a rotation.
//!
//! Replicas run the same engine: each step takes the connector's lock (Redis or
//! in-process, as refresh does), claims the schedule row with the lease's
//! fencing token, and writes with a compare-and-swap on version and token, so a
//! step runs once however many replicas see it due.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt as _;
use tokio_util::sync::CancellationToken;
use zeroize::Zeroizing;

use crate::config::{RotationConfig, RotationHook};
use crate::credential::{CredentialKey, Material, now_micros};
use crate::crypto::Binding;
use crate::error::Error;
use crate::event::{CredentialAction, CredentialEvent};
use crate::lock::{Lease, RefreshLock};
use crate::secret::{Owner, SecretText};
use crate::vault::Vault;

/// Is where a connector's rotation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RotationState {
    /// Waiting for the first rotation.
    Scheduled,
    /// A rotation is due and its last attempt failed; it is retried with backoff.
    Rotating,
    /// The new value is in use; the previous one stays valid until `next_at`.
    Overlap,
    /// The previous value was retired; the next rotation is due at `next_at`.
    Retired,
    /// `max_attempts` attempts failed in a row; an operator must act.
    NeedsAttention,
}

/// Is one connector's persisted rotation schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RotationRecord {
    /// Holds the tenant.
    pub tenant: String,
    /// Names the connector.
    pub connector: String,
    /// Holds the state.
    pub state: RotationState,
    /// Holds when the next step is due, in Unix microseconds.
    pub next_at: i64,
    /// Counts failed attempts of the current step.
    pub attempts: u32,
    /// Counts completed rotations.
    pub cycle: u64,
    /// Holds the previous value, sealed, while it overlaps the new one.
    pub previous_sealed: Option<Vec<u8>>,
    /// Classifies the last failure (`hook_failed`, `no_credential`, …), never a secret.
    pub last_error: String,
    /// Counts every write; the compare-and-swap token.
    pub version: u64,
    /// Holds when the row was last written, in Unix microseconds.
    pub updated_at: i64,
}

/// Is a compare-and-swap update of a rotation schedule.
#[derive(Debug, Clone)]
pub struct RotationUpdate {
    /// Holds the new state.
    pub state: RotationState,
    /// Holds when the next step is due.
    pub next_at: i64,
    /// Holds the failed-attempt count.
    pub attempts: u32,
    /// Holds the completed-rotation count.
    pub cycle: u64,
    /// Holds the previous value, sealed, or `None` once retired.
    pub previous_sealed: Option<Vec<u8>>,
    /// Holds the last failure's class, empty after a success.
    pub last_error: String,
}

/// Is a rotated secret stored with the schedule's transition, atomically.
#[derive(Debug, Clone)]
pub struct RotatedSecret {
    /// Identifies the shared credential.
    pub credential_id: String,
    /// Holds the credential version the new value replaces.
    pub credential_version: u64,
    /// Holds the new value, sealed for the credential.
    pub sealed: Vec<u8>,
}

/// Says what one engine step did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RotationStep {
    /// Nothing was due, or another replica holds the step.
    Idle,
    /// A new value was stored; the overlap began.
    Rotated,
    /// The previous value was retired.
    Retired,
    /// The step failed and is retried with backoff.
    Failed,
    /// The step failed for the last time; the schedule needs attention.
    NeedsAttention,
}

/// Is the JSON a hook receives.
#[derive(Serialize)]
struct HookRequest<'a> {
    action: &'static str,
    connector: &'a str,
    rotation_id: String,
    current: &'a str,
}

/// Is the JSON a hook may answer with.
#[derive(Deserialize)]
struct HookAnswer {
    value: SecretText,
}

/// Is the field the previous value is sealed under.
const PREVIOUS: &str = "previous";

/// Bounds a hook's answer: a secret, not a document.
const MAX_HOOK_OUTPUT: usize = 64 * 1024;

impl RotationState {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Rotating => "rotating",
            Self::Overlap => "overlap",
            Self::Retired => "retired",
            Self::NeedsAttention => "needs_attention",
        }
    }

    /// Returns the state a stored name names.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Scheduled,
            Self::Rotating,
            Self::Overlap,
            Self::Retired,
            Self::NeedsAttention,
        ]
        .into_iter()
        .find(|state| state.as_str() == name)
    }
}

/// Returns the delay before attempt `attempts + 1`: `base` doubling, capped.
fn backoff(config: &RotationConfig, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.saturating_sub(1).min(20);
    config
        .backoff
        .saturating_mul(factor)
        .min(config.max_backoff)
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

/// Runs scheduled rotations for one replica.
#[derive(Debug, Clone)]
pub struct RotationEngine {
    vault: Vault,
    lock: Arc<dyn RefreshLock>,
    http: reqwest::Client,
    poll_interval: Duration,
}

impl RotationEngine {
    /// Returns an engine rotating `vault`'s shared secrets under `lock`, looking
    /// for due steps every `poll_interval`.
    pub fn new(
        vault: Vault,
        lock: Arc<dyn RefreshLock>,
        poll_interval: Duration,
    ) -> Result<Self, Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|_| Error::Corrupt("http client"))?;
        Ok(Self {
            vault,
            lock,
            http,
            poll_interval,
        })
    }

    /// Runs due steps until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            for (connector, config) in self.vault.rotating_connectors() {
                if let Err(error) = self.step(&connector, &config).await {
                    tracing::warn!(connector = %connector, error = %error, "rotation step failed");
                }
            }
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(self.poll_interval) => {}
            }
        }
    }

    /// Runs `connector`'s next step if it is due and this replica wins its lock.
    pub async fn step(
        &self,
        connector: &str,
        config: &RotationConfig,
    ) -> Result<RotationStep, Error> {
        let Some(schedule) = self.vault.ensure_rotation(connector, config).await? else {
            return Ok(RotationStep::Idle);
        };
        crate::metrics::rotation_state(connector, schedule.state);
        if !is_due(&schedule) {
            return Ok(RotationStep::Idle);
        }
        let name = format!("rotation:{}:{connector}", self.vault.tenant());
        // The lease must outlive the hook call and the writes after it.
        let ttl = config.timeout * 2 + Duration::from_secs(5);
        let Some(lease) = self.lock.try_acquire(&name, ttl).await? else {
            return Ok(RotationStep::Idle);
        };
        let step = self.step_locked(connector, config, &lease).await;
        if let Err(error) = self.lock.release(&lease).await {
            tracing::warn!(error = %error, "rotation lock release failed; it expires by itself");
        }
        let step = step?;
        crate::metrics::rotation_step(connector, step);
        Ok(step)
    }

    async fn step_locked(
        &self,
        connector: &str,
        config: &RotationConfig,
        lease: &Lease,
    ) -> Result<RotationStep, Error> {
        let store = self.vault.store();
        let tenant = self.vault.tenant();
        // Re-read under the lock: another replica may have taken the step.
        let Some(schedule) = store.rotation(tenant, connector).await? else {
            return Ok(RotationStep::Idle);
        };
        if !is_due(&schedule)
            || !store
                .claim_rotation(tenant, connector, schedule.version, lease.fence)
                .await?
        {
            return Ok(RotationStep::Idle);
        }
        let version = schedule.version + 1;
        if schedule.state == RotationState::Overlap {
            self.retire(connector, config, &schedule, version, lease)
                .await
        } else {
            self.rotate(connector, config, &schedule, version, lease)
                .await
        }
    }

    async fn rotate(
        &self,
        connector: &str,
        config: &RotationConfig,
        schedule: &RotationRecord,
        version: u64,
        lease: &Lease,
    ) -> Result<RotationStep, Error> {
        let key = self.vault.shared_key(connector);
        let store = self.vault.store();
        let Some(record) = store.get(&key).await? else {
            return self
                .fail(connector, config, schedule, version, lease, "no_credential")
                .await;
        };
        let current = Material::open(self.vault.envelope(), &key, &record.sealed).await?;
        let Some(value) = rotatable_value(&current) else {
            return self
                .fail(
                    connector,
                    config,
                    schedule,
                    version,
                    lease,
                    "unsupported_kind",
                )
                .await;
        };
        let fresh = match self
            .call_hook(config, "rotate", connector, schedule, value)
            .await
        {
            Ok(fresh) => fresh,
            Err(label) => {
                return self
                    .fail(connector, config, schedule, version, lease, label)
                    .await;
            }
        };
        let replaced = with_value(&current, fresh);
        let previous = {
            let json = Zeroizing::new(serde_json::to_vec(&current).map_err(|_| Error::Encrypt)?);
            self.vault
                .envelope()
                .seal(previous_binding(&key), &json)
                .await?
        };
        let update = RotationUpdate {
            state: RotationState::Overlap,
            next_at: now_micros().saturating_add(micros(config.overlap)),
            attempts: 0,
            cycle: schedule.cycle + 1,
            previous_sealed: Some(previous),
            last_error: String::new(),
        };
        let rotated = RotatedSecret {
            credential_id: record.id.clone(),
            credential_version: record.version,
            sealed: replaced.seal(self.vault.envelope(), &key).await?,
        };
        let stored = store
            .store_rotated(
                self.vault.tenant(),
                connector,
                version,
                lease.fence,
                &update,
                &rotated,
            )
            .await?;
        let mut event = self.event(connector, CredentialAction::Rotated, "ok");
        event.credential_id = Some(record.id);
        let Some(credential_version) = stored else {
            // The hook made a value nobody stored: the provider holds an unused
            // key until the next rotation. Say so; the retry makes another.
            tracing::error!(connector = %connector, "rotated secret lost a fenced write");
            event.action = CredentialAction::RotationFailed;
            event.outcome = "fenced_out";
            self.vault.emit(event);
            return Ok(RotationStep::Idle);
        };
        event.version = Some(credential_version);
        self.vault.emit(event);
        tracing::info!(connector = %connector, cycle = update.cycle, "shared secret rotated");
        Ok(RotationStep::Rotated)
    }

    async fn retire(
        &self,
        connector: &str,
        config: &RotationConfig,
        schedule: &RotationRecord,
        version: u64,
        lease: &Lease,
    ) -> Result<RotationStep, Error> {
        let key = self.vault.shared_key(connector);
        if let Some(sealed) = &schedule.previous_sealed {
            let json = self
                .vault
                .envelope()
                .open(previous_binding(&key), sealed)
                .await?;
            let previous: Material =
                serde_json::from_slice(&json).map_err(|_| Error::Corrupt("previous secret"))?;
            if let Some(value) = rotatable_value(&previous)
                && let Err(label) = self
                    .call_hook(config, "retire", connector, schedule, value)
                    .await
            {
                return self
                    .fail(connector, config, schedule, version, lease, label)
                    .await;
            }
        }
        let update = RotationUpdate {
            state: RotationState::Retired,
            next_at: now_micros()
                .saturating_add(micros(config.every.saturating_sub(config.overlap))),
            attempts: 0,
            cycle: schedule.cycle,
            previous_sealed: None,
            last_error: String::new(),
        };
        if self
            .vault
            .store()
            .update_rotation(
                self.vault.tenant(),
                connector,
                version,
                lease.fence,
                &update,
            )
            .await?
            .is_none()
        {
            return Ok(RotationStep::Idle);
        }
        self.vault
            .emit(self.event(connector, CredentialAction::Retired, "ok"));
        Ok(RotationStep::Retired)
    }

    /// Records a failed step: retried after a backoff, or `needs_attention`
    /// after `max_attempts` failures in a row.
    async fn fail(
        &self,
        connector: &str,
        config: &RotationConfig,
        schedule: &RotationRecord,
        version: u64,
        lease: &Lease,
        label: &'static str,
    ) -> Result<RotationStep, Error> {
        let attempts = schedule.attempts.saturating_add(1);
        let exhausted = attempts >= config.max_attempts;
        let state = match (exhausted, schedule.state) {
            (true, _) => RotationState::NeedsAttention,
            (false, RotationState::Overlap) => RotationState::Overlap,
            (false, _) => RotationState::Rotating,
        };
        let update = RotationUpdate {
            state,
            next_at: if exhausted {
                schedule.next_at
            } else {
                now_micros().saturating_add(micros(backoff(config, attempts)))
            },
            attempts,
            cycle: schedule.cycle,
            previous_sealed: schedule.previous_sealed.clone(),
            last_error: label.to_owned(),
        };
        self.vault
            .store()
            .update_rotation(
                self.vault.tenant(),
                connector,
                version,
                lease.fence,
                &update,
            )
            .await?;
        let outcome = if exhausted { "needs_attention" } else { label };
        if exhausted {
            tracing::error!(connector = %connector, attempts, reason = label, "shared secret rotation needs attention");
        } else {
            tracing::warn!(connector = %connector, attempts, reason = label, "shared secret rotation attempt failed");
        }
        self.vault
            .emit(self.event(connector, CredentialAction::RotationFailed, outcome));
        Ok(if exhausted {
            RotationStep::NeedsAttention
        } else {
            RotationStep::Failed
        })
    }

    /// Calls the hook with `action` about `value`; returns the new value (for
    /// `rotate`) or a failure class. Nothing the hook prints is logged.
    async fn call_hook(
        &self,
        config: &RotationConfig,
        action: &'static str,
        connector: &str,
        schedule: &RotationRecord,
        value: &SecretText,
    ) -> Result<SecretText, &'static str> {
        let request = HookRequest {
            action,
            connector,
            rotation_id: format!("{connector}:{}", schedule.cycle + 1),
            current: value.expose(),
        };
        let body = Zeroizing::new(serde_json::to_vec(&request).map_err(|_| "hook_failed")?);
        let output = match &config.hook {
            RotationHook::Command(command) => run_command(command, &body, config.timeout).await?,
            RotationHook::Http { url, bearer } => {
                let mut call = self
                    .http
                    .post(url)
                    .timeout(config.timeout)
                    .header(http::header::CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
                if let Some(bearer) = bearer {
                    call = call.bearer_auth(bearer.expose());
                }
                let response = call.send().await.map_err(|_| "hook_unreachable")?;
                if !response.status().is_success() {
                    return Err("hook_failed");
                }
                let bytes = response.bytes().await.map_err(|_| "hook_unreachable")?;
                if bytes.len() > MAX_HOOK_OUTPUT {
                    return Err("hook_answer_invalid");
                }
                Zeroizing::new(bytes.to_vec())
            }
        };
        if action == "retire" {
            return Ok(SecretText::from(""));
        }
        parse_answer(&output)
    }

    fn event(
        &self,
        connector: &str,
        action: CredentialAction,
        outcome: &'static str,
    ) -> CredentialEvent {
        let mut event = CredentialEvent::new(action, self.vault.tenant(), outcome);
        event.connector = Some(connector.to_owned());
        event.owner = Some(Owner::Shared);
        event
    }
}

/// Says whether the schedule's next step is due now.
fn is_due(schedule: &RotationRecord) -> bool {
    schedule.state != RotationState::NeedsAttention && schedule.next_at <= now_micros()
}

/// Runs `command` with `input` on standard input; returns its standard output.
async fn run_command(
    command: &[String],
    input: &[u8],
    timeout: Duration,
) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let (program, args) = command.split_first().ok_or("hook_failed")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|_| "hook_unreachable")?;
    let mut stdin = child.stdin.take().ok_or("hook_failed")?;
    let run = async {
        // A hook that does not read its input still gets to answer.
        let _ = stdin.write_all(input).await;
        drop(stdin);
        child.wait_with_output().await
    };
    let output = tokio::time::timeout(timeout, run)
        .await
        .map_err(|_| "hook_timeout")?
        .map_err(|_| "hook_failed")?;
    if !output.status.success() {
        return Err("hook_failed");
    }
    if output.stdout.len() > MAX_HOOK_OUTPUT {
        return Err("hook_answer_invalid");
    }
    Ok(Zeroizing::new(output.stdout))
}

/// Reads a hook's answer: `{"value": …}` or the value as plain text.
fn parse_answer(output: &[u8]) -> Result<SecretText, &'static str> {
    let text = std::str::from_utf8(output).map_err(|_| "hook_answer_invalid")?;
    let text = text.trim();
    let value = if text.starts_with('{') {
        serde_json::from_str::<HookAnswer>(text)
            .map_err(|_| "hook_answer_invalid")?
            .value
    } else {
        SecretText::from(text)
    };
    if value.is_empty() || !value.expose().bytes().all(|byte| byte.is_ascii_graphic()) {
        return Err("hook_answer_invalid");
    }
    Ok(value)
}

/// Returns the secret value a rotation replaces, for kinds with one.
fn rotatable_value(material: &Material) -> Option<&SecretText> {
    match material {
        Material::Bearer { token } => Some(token),
        Material::ApiKey { key, .. } => Some(key),
        Material::Basic { password, .. } => Some(password),
        _ => None,
    }
}

/// Returns `material` with its secret value replaced by `value`.
fn with_value(material: &Material, value: SecretText) -> Material {
    match material.clone() {
        Material::Bearer { .. } => Material::Bearer { token: value },
        Material::ApiKey { header_name, .. } => Material::ApiKey {
            header_name,
            key: value,
        },
        Material::Basic { username, .. } => Material::Basic {
            username,
            password: value,
        },
        other => other,
    }
}

fn previous_binding(key: &CredentialKey) -> Binding<'_> {
    Binding {
        field: PREVIOUS,
        ..key.binding()
    }
}

impl Vault {
    /// Returns the connectors that declare a rotation, with their configuration.
    pub fn rotating_connectors(&self) -> Vec<(String, RotationConfig)> {
        self.connectors()
            .iter()
            .filter_map(|(name, connector)| {
                connector
                    .rotation
                    .clone()
                    .map(|rotation| (name.clone(), rotation))
            })
            .collect()
    }

    /// Returns `connector`'s rotation schedule, creating it (first rotation
    /// `every` after the shared secret was stored) when the connector has a
    /// shared secret and no schedule yet; `None` without a shared secret.
    pub async fn ensure_rotation(
        &self,
        connector: &str,
        config: &RotationConfig,
    ) -> Result<Option<RotationRecord>, Error> {
        if let Some(schedule) = self.store().rotation(self.tenant(), connector).await? {
            return Ok(Some(schedule));
        }
        let Some(record) = self.store().get(&self.shared_key(connector)).await? else {
            return Ok(None);
        };
        let first = record.updated_at.saturating_add(micros(config.every));
        Ok(Some(
            self.store()
                .schedule_rotation(self.tenant(), connector, first)
                .await?,
        ))
    }

    /// Returns `connector`'s rotation schedule, if it has one.
    pub async fn rotation_status(&self, connector: &str) -> Result<Option<RotationRecord>, Error> {
        self.connector(connector)?;
        self.store().rotation(self.tenant(), connector).await
    }

    /// Makes `connector`'s next rotation due now (also out of `needs_attention`,
    /// once the operator fixed the hook).
    pub async fn rotate_now(&self, connector: &str) -> Result<RotationRecord, Error> {
        if self.connector(connector)?.rotation.is_none() {
            return Err(Error::InvalidArgument {
                field: "connector",
                reason: "declares no rotation",
            });
        }
        if self
            .store()
            .get(&self.shared_key(connector))
            .await?
            .is_none()
        {
            return Err(Error::CredentialNotFound);
        }
        self.store()
            .reset_rotation(self.tenant(), connector, now_micros())
            .await
    }

    /// Restarts `connector`'s schedule after an administrator set its secret.
    pub(crate) async fn reschedule_rotation(&self, connector: &str) -> Result<(), Error> {
        if let Some(rotation) = &self.connector(connector)?.rotation {
            let next = now_micros().saturating_add(micros(rotation.every));
            self.store()
                .reset_rotation(self.tenant(), connector, next)
                .await?;
        }
        Ok(())
    }

    /// Returns the key of `connector`'s shared credential.
    pub(crate) fn shared_key(&self, connector: &str) -> CredentialKey {
        CredentialKey {
            tenant: self.tenant().to_owned(),
            connector: connector.to_owned(),
            owner: Owner::Shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hook_answers_json_or_plain_text_and_never_blank() {
        assert_eq!(
            parse_answer(b"{\"value\": \"k-2\"}\n").unwrap().expose(),
            "k-2"
        );
        assert_eq!(parse_answer(b"  k-3\n").unwrap().expose(), "k-3");
        assert!(parse_answer(b"\n").is_err());
        assert!(parse_answer(b"two words").is_err());
    }

    #[test]
    fn backoff_doubles_from_the_base_up_to_the_cap() {
        let config = RotationConfig {
            every: Duration::from_secs(3600),
            overlap: Duration::ZERO,
            hook: RotationHook::Command(vec!["true".to_owned()]),
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
        };
        let delays: Vec<u64> = (1..=5)
            .map(|attempt| backoff(&config, attempt).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 5, 5]);
    }
}
