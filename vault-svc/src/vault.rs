//! The credential broker's domain operations: release, store, delete, revoke,
//! list and health. No tonic, sqlx or redis types here.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::{ConnectorConfig, CredentialMode};
use crate::consent::{ConsentIssuer, ConsentLink};
use crate::credential::{
    CredentialKey, CredentialKind, CredentialRecord, CredentialStatus, Material, NewCredential,
    now_micros,
};
use crate::crypto::Envelope;
use crate::error::Error;
use crate::event::{CredentialAction, CredentialEvent, EventSink};
use crate::refresh::schedule_after_store;
use crate::rotation::Rotation;
use crate::secret::Owner;
use crate::secret_rotation::RotationState;
use crate::store::{ListQuery, Store};

/// Is the credential broker: cheap to clone, shared by gRPC, HTTP and the
/// background jobs.
#[derive(Debug, Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    tenant: String,
    store: Arc<dyn Store>,
    envelope: Envelope,
    connectors: BTreeMap<String, ConnectorConfig>,
    events: Arc<dyn EventSink>,
    consent: ConsentIssuer,
    rotation: Rotation,
}

/// Asks for the credential of one principal for one connector.
#[derive(Debug, Clone, Default)]
pub struct CredentialQuery {
    /// Holds the member's id, when a member is behind the call.
    pub member_id: Option<String>,
    /// Holds the agent's client id, when an agent makes the call.
    pub agent_client_id: Option<String>,
    /// Names the connector.
    pub connector: String,
    /// Holds the request's trace id, for the audit event.
    pub trace_id: String,
}

/// Is what a credential read yields.
#[derive(Debug)]
pub enum CredentialOutcome {
    /// Holds material to inject into one call.
    Released(Released),
    /// Says the member must connect their account first.
    ConsentRequired(ConsentLink),
}

/// Is released material with its identifiers.
#[derive(Debug)]
pub struct Released {
    /// Identifies the stored credential.
    pub credential_id: String,
    /// Holds the credential's version.
    pub version: u64,
    /// Holds the material to inject (OAuth credentials as a bearer token).
    pub material: Material,
    /// Holds when the material expires, in Unix microseconds, if known.
    pub expires_at: Option<i64>,
}

/// Reports a principal's revocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevokeReport {
    /// Counts the purged credentials.
    pub credentials_revoked: u32,
    /// Counts failed upstream revocation calls.
    pub upstream_revocations_failed: u32,
}

/// Is one connector's credential health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorHealth {
    /// Names the connector.
    pub connector: String,
    /// Holds the overall state.
    pub state: HealthState,
    /// Says the shared credential is failing.
    pub shared_credential_failing: bool,
    /// Lists the members whose credentials are failing.
    pub failing_member_ids: Vec<String>,
    /// Explains the state; never a secret.
    pub detail: String,
}

/// Is a connector's credential health.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthState {
    /// Credentials work as far as vault-svc knows.
    Healthy,
    /// A provider rejected a grant: its owner must reconnect.
    AuthFailing,
    /// Refreshing a credential fails.
    RefreshFailing,
    /// A credential's provider, or the downstream itself, cannot be reached.
    Unreachable,
}

impl Vault {
    /// Returns a vault over `store`, sealing with `envelope`, serving `connectors`.
    pub fn new(
        tenant: String,
        store: Arc<dyn Store>,
        envelope: Envelope,
        connectors: BTreeMap<String, ConnectorConfig>,
        events: Arc<dyn EventSink>,
        consent: ConsentIssuer,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                tenant,
                store,
                envelope,
                connectors,
                events,
                consent,
                rotation: Rotation::default(),
            }),
        }
    }

    /// Returns the tenant.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// Returns the store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    /// Returns the envelope.
    pub fn envelope(&self) -> &Envelope {
        &self.inner.envelope
    }

    /// Returns the consent issuer.
    pub fn consent(&self) -> &ConsentIssuer {
        &self.inner.consent
    }

    pub(crate) fn rotation(&self) -> &Rotation {
        &self.inner.rotation
    }

    /// Records `event` on the configured sink.
    pub fn emit(&self, event: CredentialEvent) {
        self.inner.events.record(event);
    }

    /// Returns every configured connector.
    pub fn connectors(&self) -> &BTreeMap<String, ConnectorConfig> {
        &self.inner.connectors
    }

    /// Returns the connector's configuration, or `ConnectorNotFound`.
    pub fn connector(&self, name: &str) -> Result<&ConnectorConfig, Error> {
        self.inner
            .connectors
            .get(name)
            .ok_or_else(|| Error::ConnectorNotFound(name.to_owned()))
    }

    /// Returns the material for one call of `query`'s principal to its connector.
    ///
    /// The revoked list is read from the store on every call (never cached), so a
    /// revocation takes effect on the next request on every replica.
    pub async fn get_credential(
        &self,
        query: &CredentialQuery,
    ) -> Result<CredentialOutcome, Error> {
        let result = self.resolve(query).await;
        let mut event = CredentialEvent::new(CredentialAction::Read, self.tenant(), "ok");
        event.connector = Some(query.connector.clone());
        event.trace_id = query.trace_id.clone();
        event.owner = query
            .member_id
            .clone()
            .map(Owner::Member)
            .or_else(|| query.agent_client_id.clone().map(Owner::Agent));
        match &result {
            Ok(CredentialOutcome::Released(released)) => {
                event.credential_id = Some(released.credential_id.clone());
                event.version = Some(released.version);
            }
            Ok(CredentialOutcome::ConsentRequired(_)) => {
                event.action = CredentialAction::ReadRefused;
                event.outcome = "consent_required";
            }
            Err(error) => {
                event.action = CredentialAction::ReadRefused;
                event.outcome = refusal(error);
            }
        }
        crate::metrics::credential_read(&query.connector, event.outcome);
        self.emit(event);
        result
    }

    async fn resolve(&self, query: &CredentialQuery) -> Result<CredentialOutcome, Error> {
        let connector = self.connector(&query.connector)?;
        let member = query.member_id.clone().map(Owner::Member);
        let agent = query.agent_client_id.clone().map(Owner::Agent);
        let principals: Vec<&Owner> = member.iter().chain(agent.iter()).collect();
        let owner = match (connector.credential, &member) {
            (CredentialMode::Shared, _) => Owner::Shared,
            (CredentialMode::PerMember, Some(member)) => member.clone(),
            (CredentialMode::PerMember, None) => {
                // A revoked agent hears that it is revoked, not why else it failed.
                if self
                    .inner
                    .store
                    .is_revoked(self.tenant(), &principals)
                    .await?
                {
                    return Err(Error::PrincipalRevoked);
                }
                return Err(Error::MemberRequired(query.connector.clone()));
            }
        };
        let key = CredentialKey {
            tenant: self.tenant().to_owned(),
            connector: query.connector.clone(),
            owner,
        };
        // One round trip: the revoked list (authoritative, never cached) and the row.
        let (revoked, record) = self.inner.store.fetch(&key, &principals).await?;
        if revoked {
            return Err(Error::PrincipalRevoked);
        }
        let Some(record) = record else {
            return match (&key.owner, &connector.oauth, &connector.api_key) {
                (Owner::Member(member_id), Some(oauth), _) => {
                    Ok(CredentialOutcome::ConsentRequired(
                        self.inner
                            .consent
                            .issue(self, member_id, &query.connector, oauth, false)
                            .await?,
                    ))
                }
                (Owner::Member(member_id), None, Some(api_key)) => {
                    Ok(CredentialOutcome::ConsentRequired(
                        self.inner
                            .consent
                            .issue_api_key(self, member_id, &query.connector, &api_key.header)
                            .await?,
                    ))
                }
                _ => Err(Error::CredentialNotFound),
            };
        };
        if record.status == CredentialStatus::NeedsAttention {
            if let (Owner::Member(member_id), Some(oauth)) = (&key.owner, &connector.oauth) {
                return Ok(CredentialOutcome::ConsentRequired(
                    self.inner
                        .consent
                        .issue(self, member_id, &query.connector, oauth, true)
                        .await?,
                ));
            }
            return Err(Error::RefreshFailing);
        }
        if record
            .expires_at
            .is_some_and(|expires| expires <= now_micros())
        {
            return Err(Error::RefreshFailing);
        }
        let material = Material::open(&self.inner.envelope, &key, &record.sealed).await?;
        let material = injectable(material)?;
        Ok(CredentialOutcome::Released(Released {
            credential_id: record.id,
            version: record.version,
            material,
            expires_at: record.expires_at,
        }))
    }

    /// Stores `material` as `owner`'s credential for `connector`, replacing any,
    /// and schedules its refresh when it is an OAuth credential.
    pub async fn store_credential(
        &self,
        connector: &str,
        owner: Owner,
        material: &Material,
        expires_at: Option<i64>,
        description: String,
    ) -> Result<CredentialRecord, Error> {
        self.connector(connector)?;
        let principals: Vec<&Owner> = [&owner]
            .into_iter()
            .filter(|owner| **owner != Owner::Shared)
            .collect();
        if self
            .inner
            .store
            .is_revoked(self.tenant(), &principals)
            .await?
        {
            return Err(Error::PrincipalRevoked);
        }
        let key = CredentialKey {
            tenant: self.tenant().to_owned(),
            connector: connector.to_owned(),
            owner,
        };
        let sealed = material.seal(&self.inner.envelope, &key).await?;
        let record = self
            .inner
            .store
            .put(&NewCredential {
                refresh_due_at: schedule_after_store(material, expires_at),
                key,
                kind: material.kind(),
                sealed,
                description,
                expires_at,
            })
            .await?;
        let mut event = CredentialEvent::new(CredentialAction::Write, self.tenant(), "ok");
        event.credential_id = Some(record.id.clone());
        event.connector = Some(record.key.connector.clone());
        event.owner = Some(record.key.owner.clone());
        event.version = Some(record.version);
        self.emit(event);
        Ok(record)
    }

    /// Stores a connector's shared credential (write-only: nothing returns it).
    pub async fn set_shared(
        &self,
        connector: &str,
        material: &Material,
        expires_at: Option<i64>,
        description: String,
    ) -> Result<CredentialRecord, Error> {
        validate_material(material)?;
        let record = self
            .store_credential(connector, Owner::Shared, material, expires_at, description)
            .await?;
        self.reschedule_rotation(connector).await?;
        Ok(record)
    }

    /// Deletes the credential `id`.
    pub async fn delete(&self, id: &str) -> Result<CredentialRecord, Error> {
        let record = self
            .inner
            .store
            .delete(self.tenant(), id)
            .await?
            .ok_or(Error::CredentialNotFound)?;
        let mut event = CredentialEvent::new(CredentialAction::Delete, self.tenant(), "ok");
        event.credential_id = Some(record.id.clone());
        event.connector = Some(record.key.connector.clone());
        event.owner = Some(record.key.owner.clone());
        if !self.revoke_upstream(&record).await {
            event.outcome = "upstream_revocation_failed";
        }
        self.emit(event);
        Ok(record)
    }

    /// Deletes `member_id`'s own credential for `connector` (a pasted API key or
    /// a connected account); their next call gets a fresh link.
    pub async fn delete_member_credential(
        &self,
        connector: &str,
        member_id: &str,
    ) -> Result<CredentialRecord, Error> {
        self.connector(connector)?;
        let key = CredentialKey {
            tenant: self.tenant().to_owned(),
            connector: connector.to_owned(),
            owner: Owner::Member(member_id.to_owned()),
        };
        let record = self
            .inner
            .store
            .get(&key)
            .await?
            .ok_or(Error::CredentialNotFound)?;
        self.delete(&record.id).await
    }

    /// Revokes a deleted OAuth grant at its provider (RFC 7009), best effort:
    /// the local purge has happened already. Returns whether it succeeded (true
    /// when there is nothing to revoke).
    async fn revoke_upstream(&self, record: &CredentialRecord) -> bool {
        if record.kind != CredentialKind::OauthGrant {
            return true;
        }
        let Ok(Material::OauthGrant(grant)) =
            Material::open(&self.inner.envelope, &record.key, &record.sealed).await
        else {
            return false;
        };
        let consent = &self.inner.consent;
        let revoked = consent.oauth().revoke(&grant, consent.http_timeout()).await;
        if !revoked {
            tracing::warn!(credential_id = %record.id, "upstream revocation failed");
        }
        revoked
    }

    /// Purges every credential of `principal` and marks it revoked for good.
    pub async fn revoke_principal(
        &self,
        principal: Owner,
        reason: &str,
    ) -> Result<RevokeReport, Error> {
        if principal == Owner::Shared || principal.id().is_empty() {
            return Err(Error::InvalidArgument {
                field: "principal",
                reason: "must name a member or an agent",
            });
        }
        let purged = self
            .inner
            .store
            .revoke_principal(self.tenant(), &principal, reason)
            .await?;
        let mut failed = 0u32;
        for record in &purged {
            if !self.revoke_upstream(record).await {
                failed += 1;
            }
        }
        let outcome = if failed == 0 {
            "ok"
        } else {
            "upstream_revocation_failed"
        };
        let mut event = CredentialEvent::new(CredentialAction::Revoke, self.tenant(), outcome);
        event.owner = Some(principal);
        event.version = Some(u64::try_from(purged.len()).unwrap_or(u64::MAX));
        self.emit(event);
        Ok(RevokeReport {
            credentials_revoked: u32::try_from(purged.len()).unwrap_or(u32::MAX),
            upstream_revocations_failed: failed,
        })
    }

    /// Returns one page of credential metadata.
    pub async fn list(&self, mut query: ListQuery) -> Result<Vec<CredentialRecord>, Error> {
        query.tenant = self.tenant().to_owned();
        self.inner.store.list(&query).await
    }

    /// Returns the credential health of `names` (all configured connectors when empty).
    pub async fn health(&self, names: &[String]) -> Result<Vec<ConnectorHealth>, Error> {
        let names: Vec<String> = if names.is_empty() {
            self.inner.connectors.keys().cloned().collect()
        } else {
            for name in names {
                self.connector(name)?;
            }
            names.to_vec()
        };
        let mut reports = Vec::with_capacity(names.len());
        for name in names {
            let failing = self
                .list(ListQuery {
                    connector: Some(name.clone()),
                    statuses: vec![
                        CredentialStatus::RefreshFailing,
                        CredentialStatus::Unreachable,
                        CredentialStatus::NeedsAttention,
                    ],
                    limit: 1000,
                    ..ListQuery::default()
                })
                .await?;
            let mut report = health_of(name, &failing);
            if let Some(rotation) = self
                .store()
                .rotation(self.tenant(), &report.connector)
                .await?
                && rotation.state == RotationState::NeedsAttention
            {
                report.shared_credential_failing = true;
                if report.state == HealthState::Healthy {
                    report.state = HealthState::RefreshFailing;
                }
                let note = format!(
                    "shared secret rotation needs attention after {} failed attempt(s) ({})",
                    rotation.attempts, rotation.last_error
                );
                report.detail = if report.detail.is_empty() {
                    note
                } else {
                    format!("{}; {note}", report.detail)
                };
            }
            crate::metrics::connector_health(&report.connector, report.state);
            reports.push(report);
        }
        Ok(reports)
    }
}

/// Returns the report for `connector` given its failing credentials: a rejected grant wins
/// (someone must act), then failures that all come from an unreachable provider.
fn health_of(connector: String, failing: &[CredentialRecord]) -> ConnectorHealth {
    let has = |status| failing.iter().any(|record| record.status == status);
    let state = if failing.is_empty() {
        HealthState::Healthy
    } else if has(CredentialStatus::NeedsAttention) {
        HealthState::AuthFailing
    } else if failing
        .iter()
        .all(|record| record.status == CredentialStatus::Unreachable)
    {
        HealthState::Unreachable
    } else {
        HealthState::RefreshFailing
    };
    let detail = match state {
        HealthState::Healthy => String::new(),
        HealthState::AuthFailing => format!(
            "{} credential(s) rejected by the provider; owners must reconnect",
            failing.len()
        ),
        HealthState::RefreshFailing => {
            format!("{} credential(s) failing to refresh", failing.len())
        }
        HealthState::Unreachable => format!(
            "{} credential(s) cannot refresh: the provider's token endpoint is unreachable",
            failing.len()
        ),
    };
    ConnectorHealth {
        shared_credential_failing: failing
            .iter()
            .any(|record| record.key.owner == Owner::Shared),
        failing_member_ids: failing
            .iter()
            .filter_map(|record| match &record.key.owner {
                Owner::Member(id) => Some(id.clone()),
                _ => None,
            })
            .collect(),
        connector,
        state,
        detail,
    }
}

/// Returns what edge-svc injects for stored `material`: OAuth credentials
/// become their current access token; refresh tokens and client secrets never
/// leave vault-svc.
fn injectable(material: Material) -> Result<Material, Error> {
    Ok(match material {
        Material::OauthGrant(grant) => Material::Bearer {
            token: grant.access_token.clone(),
        },
        Material::OauthClientCredentials(credentials) => Material::Bearer {
            token: credentials
                .access_token
                .clone()
                .ok_or(Error::RefreshFailing)?,
        },
        other => other,
    })
}

/// Refuses empty or malformed material, naming the field at fault and never its value.
fn validate_material(material: &Material) -> Result<(), Error> {
    let check = |ok: bool, field, reason| {
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument { field, reason })
        }
    };
    const EMPTY: &str = "must not be empty";
    match material {
        Material::Bearer { token } => check(
            header_value(token.expose()),
            "material.bearer.token",
            "must be non-empty visible ASCII",
        ),
        Material::ApiKey { header_name, key } => {
            check(
                header_name_ok(header_name),
                "material.api_key.header_name",
                "must be a valid HTTP header name",
            )?;
            check(
                header_value(key.expose()),
                "material.api_key.key",
                "must be non-empty visible ASCII",
            )
        }
        Material::Basic { username, password } => {
            check(
                !username.is_empty() && !username.contains(':'),
                "material.basic.username",
                "must be non-empty and contain no `:`",
            )?;
            check(!password.is_empty(), "material.basic.password", EMPTY)
        }
        Material::Environment { variables } => {
            check(
                !variables.is_empty(),
                "material.environment.variables",
                EMPTY,
            )?;
            check(
                variables.keys().all(|name| env_name_ok(name)),
                "material.environment.variables",
                "names must be letters, digits and `_`, not starting with a digit",
            )?;
            check(
                variables
                    .values()
                    .all(|value| !value.expose().contains('\0')),
                "material.environment.variables",
                "values must not contain NUL",
            )
        }
        Material::Headers { headers } => {
            check(!headers.is_empty(), "material.headers", EMPTY)?;
            check(
                headers.keys().all(|name| header_name_ok(name)),
                "material.headers",
                "names must be valid HTTP header names",
            )?;
            check(
                headers.values().all(|value| header_value(value.expose())),
                "material.headers",
                "values must be non-empty visible ASCII",
            )
        }
        Material::OauthClientCredentials(credentials) => {
            check(
                !credentials.client_id.is_empty(),
                "material.client_credentials.client_id",
                EMPTY,
            )?;
            check(
                !credentials.client_secret.is_empty(),
                "material.client_credentials.client_secret",
                EMPTY,
            )?;
            check(
                url::Url::parse(&credentials.token_endpoint)
                    .is_ok_and(|url| matches!(url.scheme(), "https" | "http")),
                "material.client_credentials.token_endpoint",
                "must be an http(s) URL",
            )?;
            check(
                credentials
                    .scopes
                    .iter()
                    .all(|scope| !scope.is_empty() && !scope.contains(char::is_whitespace)),
                "material.client_credentials.scopes",
                "each scope must be one non-empty word",
            )
        }
        Material::OauthGrant(_) => Ok(()),
    }
}

/// Returns whether `name` is an HTTP header name (an RFC 9110 token).
fn header_name_ok(name: &str) -> bool {
    http::HeaderName::from_bytes(name.as_bytes()).is_ok()
}

/// Returns whether `value` can travel in a header as it is.
fn header_value(value: &str) -> bool {
    !value.is_empty()
        && value
            .bytes()
            .all(|byte| byte == b' ' || byte.is_ascii_graphic())
}

/// Returns whether `name` is a portable environment variable name.
fn env_name_ok(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
        && name
            .chars()
            .all(|char| char.is_ascii_alphanumeric() || char == '_')
}

/// Returns the audit outcome of a refused read.
fn refusal(error: &Error) -> &'static str {
    match error {
        Error::PrincipalRevoked => "revoked",
        Error::ConnectorNotFound(_) | Error::CredentialNotFound => "not_found",
        Error::MemberRequired(_) => "member_required",
        Error::RefreshFailing => "refresh_failing",
        _ => "error",
    }
}

impl HealthState {
    /// Returns the state's name in the admin API, the CLI and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::AuthFailing => "auth_failing",
            Self::RefreshFailing => "refresh_failing",
            Self::Unreachable => "unreachable",
        }
    }

    /// Lists every state, in the order the metrics report them.
    pub const ALL: [Self; 4] = [
        Self::Healthy,
        Self::AuthFailing,
        Self::RefreshFailing,
        Self::Unreachable,
    ];
}

impl CredentialKind {
    /// Returns whether vault-svc refreshes credentials of this kind.
    pub fn is_refreshed(self) -> bool {
        matches!(self, Self::OauthGrant | Self::OauthClientCredentials)
    }
}
