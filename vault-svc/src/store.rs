//! The credential store: one trait, a SQLite and a PostgreSQL implementation
//! generated from the same SQL (both accept `$n` placeholders, `RETURNING` and
//! `ON CONFLICT`), and one conformance suite run against both.
//!
//! Every credential write is a compare-and-swap on `version`; refresh writes
//! also require the row's `fence` to equal the refresher's lock token, so a
//! replica whose lock expired can neither claim nor overwrite a row.

use async_trait::async_trait;

use crate::credential::{
    CredentialKey, CredentialKind, CredentialRecord, CredentialStatus, CredentialUpdate,
    NewCredential,
};
use crate::error::Error;
use crate::secret::Owner;
use crate::secret_rotation::{RotatedSecret, RotationRecord, RotationState, RotationUpdate};

#[macro_use]
mod sql;
mod postgres;
mod sqlite;

pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Keeps sealed credentials, revoked principals and pending consents.
#[async_trait]
pub trait Store: Send + Sync + std::fmt::Debug {
    /// Stores `credential`, replacing (and bumping the version of) any credential
    /// with the same key.
    async fn put(&self, credential: &NewCredential) -> Result<CredentialRecord, Error>;

    /// Returns the credential stored under `key`.
    async fn get(&self, key: &CredentialKey) -> Result<Option<CredentialRecord>, Error>;

    /// Returns whether any of `principals` is revoked and the credential stored
    /// under `key`, in one round trip (the hot path of every release).
    async fn fetch(
        &self,
        key: &CredentialKey,
        principals: &[&Owner],
    ) -> Result<(bool, Option<CredentialRecord>), Error>;

    /// Returns the credential with id `id` in `tenant`.
    async fn get_by_id(&self, tenant: &str, id: &str) -> Result<Option<CredentialRecord>, Error>;

    /// Claims the row for a refresher holding fencing token `fence`, if the row
    /// is still at `version` and no newer token claimed it; returns whether it did.
    async fn claim(&self, id: &str, version: u64, fence: u64) -> Result<bool, Error>;

    /// Applies `update` if the row is still at `version` (and, with `fence`,
    /// still claimed by that token); returns the new row, or `None` when the
    /// write lost.
    async fn update(
        &self,
        id: &str,
        version: u64,
        fence: Option<u64>,
        update: &CredentialUpdate,
    ) -> Result<Option<CredentialRecord>, Error>;

    /// Deletes and returns the credential with id `id` in `tenant`.
    async fn delete(&self, tenant: &str, id: &str) -> Result<Option<CredentialRecord>, Error>;

    /// Records `owner` as revoked and deletes every credential it owns, in one
    /// transaction; returns the deleted credentials.
    async fn revoke_principal(
        &self,
        tenant: &str,
        owner: &Owner,
        reason: &str,
    ) -> Result<Vec<CredentialRecord>, Error>;

    /// Returns whether any of `owners` is revoked (read from the table, never a cache).
    async fn is_revoked(&self, tenant: &str, owners: &[&Owner]) -> Result<bool, Error>;

    /// Returns one page of credential metadata matching `query`, ordered by id.
    async fn list(&self, query: &ListQuery) -> Result<Vec<CredentialRecord>, Error>;

    /// Returns up to `limit` credentials whose refresh is due at `now`, earliest first.
    async fn due_for_refresh(&self, now: i64, limit: u32) -> Result<Vec<CredentialRecord>, Error>;

    /// Returns the next time any refresh is due, if any is scheduled.
    async fn next_refresh_due(&self) -> Result<Option<i64>, Error>;

    /// Returns up to `limit` credentials not wrapped by `kek_version`, ids after `after`.
    async fn stale_kek(
        &self,
        kek_version: u32,
        after: &str,
        limit: u32,
    ) -> Result<Vec<CredentialRecord>, Error>;

    /// Returns (credentials not wrapped by `kek_version`, all credentials).
    async fn count_stale_kek(&self, kek_version: u32) -> Result<(u64, u64), Error>;

    /// Replaces a credential's sealed value with a re-wrapped one, if still at
    /// `version`; the version is unchanged (the material is the same).
    async fn rewrap(
        &self,
        id: &str,
        version: u64,
        sealed: &[u8],
        kek_version: u32,
    ) -> Result<bool, Error>;

    /// Returns every KEK version some stored value is wrapped by.
    async fn kek_versions(&self) -> Result<Vec<u32>, Error>;

    /// Stores a pending consent under the hash of its state.
    async fn put_consent(&self, consent: &ConsentRecord) -> Result<(), Error>;

    /// Removes and returns the consent stored under `state_hash`: each state is
    /// usable once. Expired consents are purged on the way.
    async fn take_consent(
        &self,
        state_hash: &[u8],
        now: i64,
    ) -> Result<Option<ConsentRecord>, Error>;

    /// Returns `connector`'s shared-secret rotation schedule.
    async fn rotation(
        &self,
        tenant: &str,
        connector: &str,
    ) -> Result<Option<RotationRecord>, Error>;

    /// Creates `connector`'s schedule in `scheduled`, first due at `next_at`,
    /// unless one exists; returns the stored schedule either way.
    async fn schedule_rotation(
        &self,
        tenant: &str,
        connector: &str,
        next_at: i64,
    ) -> Result<RotationRecord, Error>;

    /// Puts `connector`'s schedule back to `scheduled` at `next_at` with no
    /// failures (a secret set by hand, or an operator's "rotate now"), creating it
    /// if needed. A value still overlapping is retired on its own schedule first.
    async fn reset_rotation(
        &self,
        tenant: &str,
        connector: &str,
        next_at: i64,
    ) -> Result<RotationRecord, Error>;

    /// Claims the schedule for a step holding fencing token `fence`, if it is
    /// still at `version` and no newer token claimed it; the claim bumps the
    /// version. Returns whether it did.
    async fn claim_rotation(
        &self,
        tenant: &str,
        connector: &str,
        version: u64,
        fence: u64,
    ) -> Result<bool, Error>;

    /// Applies `update` if the schedule is at `version` and claimed by `fence`.
    async fn update_rotation(
        &self,
        tenant: &str,
        connector: &str,
        version: u64,
        fence: u64,
        update: &RotationUpdate,
    ) -> Result<Option<RotationRecord>, Error>;

    /// Stores a rotated secret as the shared credential's new version and applies
    /// `update` to the schedule, in one transaction: both compare-and-swaps
    /// succeed or neither is written. Returns the credential's new version.
    async fn store_rotated(
        &self,
        tenant: &str,
        connector: &str,
        version: u64,
        fence: u64,
        update: &RotationUpdate,
        rotated: &RotatedSecret,
    ) -> Result<Option<u64>, Error>;

    /// Returns the unexpired consent stored under `state_hash` without using it
    /// (the API-key page shows its form before the member submits).
    async fn peek_consent(
        &self,
        state_hash: &[u8],
        now: i64,
    ) -> Result<Option<ConsentRecord>, Error>;
}

/// Filters and pages a credential listing.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Holds the tenant.
    pub tenant: String,
    /// Restricts to one connector.
    pub connector: Option<String>,
    /// Restricts to credentials of this member or agent id.
    pub owner_id: Option<String>,
    /// Restricts to these statuses; empty for all.
    pub statuses: Vec<CredentialStatus>,
    /// Continues after this id.
    pub after: String,
    /// Bounds the page.
    pub limit: u32,
}

/// Is a pending per-member consent: who started it, for which connector, and
/// its sealed PKCE verifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Holds the SHA-256 of the state parameter; the state itself is never stored.
    pub state_hash: Vec<u8>,
    /// Holds the tenant.
    pub tenant: String,
    /// Holds the connector.
    pub connector: String,
    /// Holds the member the link was issued to.
    pub member_id: String,
    /// Holds the sealed flow secrets (PKCE verifier, endpoints).
    pub sealed: Vec<u8>,
    /// Holds when the link expires, in Unix microseconds.
    pub expires_at: i64,
}

/// Is one row of `vault_credential`, as both backends read it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct Row {
    id: String,
    tenant: String,
    connector: String,
    owner_kind: String,
    owner_id: String,
    kind: String,
    status: String,
    version: i64,
    kek_version: i64,
    sealed: Vec<u8>,
    description: String,
    created_at: i64,
    updated_at: i64,
    expires_at: Option<i64>,
    refresh_due_at: Option<i64>,
    refresh_failures: i64,
}

/// Is the hot-path read: the revoked flag, and a credential row if one exists.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct FetchRow {
    revoked: i64,
    id: Option<String>,
    tenant: Option<String>,
    connector: Option<String>,
    owner_kind: Option<String>,
    owner_id: Option<String>,
    kind: Option<String>,
    status: Option<String>,
    version: Option<i64>,
    kek_version: Option<i64>,
    sealed: Option<Vec<u8>>,
    description: Option<String>,
    created_at: Option<i64>,
    updated_at: Option<i64>,
    expires_at: Option<i64>,
    refresh_due_at: Option<i64>,
    refresh_failures: Option<i64>,
}

/// Is one row of `vault_rotation`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct RotationRow {
    tenant: String,
    connector: String,
    state: String,
    next_at: i64,
    attempts: i64,
    cycle: i64,
    previous_sealed: Option<Vec<u8>>,
    last_error: String,
    version: i64,
    updated_at: i64,
}

impl TryFrom<RotationRow> for RotationRecord {
    type Error = Error;

    fn try_from(row: RotationRow) -> Result<Self, Error> {
        Ok(Self {
            tenant: row.tenant,
            connector: row.connector,
            state: RotationState::parse(&row.state).ok_or(Error::Corrupt("rotation state"))?,
            next_at: row.next_at,
            attempts: u32::try_from(row.attempts).unwrap_or(u32::MAX),
            cycle: u64::try_from(row.cycle).map_err(|_| Error::Corrupt("rotation cycle"))?,
            previous_sealed: row.previous_sealed,
            last_error: row.last_error,
            version: u64::try_from(row.version).map_err(|_| Error::Corrupt("rotation version"))?,
            updated_at: row.updated_at,
        })
    }
}

/// Is one row of `vault_consent`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ConsentRow {
    state_hash: Vec<u8>,
    tenant: String,
    connector: String,
    member_id: String,
    sealed: Vec<u8>,
    expires_at: i64,
}

impl TryFrom<Row> for CredentialRecord {
    type Error = Error;

    fn try_from(row: Row) -> Result<Self, Error> {
        Ok(Self {
            id: row.id,
            key: CredentialKey {
                tenant: row.tenant,
                connector: row.connector,
                owner: Owner::from_columns(&row.owner_kind, row.owner_id)
                    .ok_or(Error::Corrupt("owner kind"))?,
            },
            kind: CredentialKind::parse(&row.kind).ok_or(Error::Corrupt("credential kind"))?,
            status: CredentialStatus::parse(&row.status).ok_or(Error::Corrupt("status"))?,
            version: u64::try_from(row.version).map_err(|_| Error::Corrupt("version"))?,
            kek_version: u32::try_from(row.kek_version)
                .map_err(|_| Error::Corrupt("kek version"))?,
            sealed: row.sealed,
            description: row.description,
            created_at: row.created_at,
            updated_at: row.updated_at,
            expires_at: row.expires_at,
            refresh_due_at: row.refresh_due_at,
            refresh_failures: u32::try_from(row.refresh_failures).unwrap_or(u32::MAX),
        })
    }
}

impl FetchRow {
    /// Returns the revoked flag and the credential, if the join found one.
    pub(crate) fn split(self) -> Result<(bool, Option<CredentialRecord>), Error> {
        let revoked = self.revoked > 0;
        let Some(id) = self.id else {
            return Ok((revoked, None));
        };
        let missing = || Error::Corrupt("credential row");
        let row = Row {
            id,
            tenant: self.tenant.ok_or_else(missing)?,
            connector: self.connector.ok_or_else(missing)?,
            owner_kind: self.owner_kind.ok_or_else(missing)?,
            owner_id: self.owner_id.ok_or_else(missing)?,
            kind: self.kind.ok_or_else(missing)?,
            status: self.status.ok_or_else(missing)?,
            version: self.version.ok_or_else(missing)?,
            kek_version: self.kek_version.ok_or_else(missing)?,
            sealed: self.sealed.ok_or_else(missing)?,
            description: self.description.ok_or_else(missing)?,
            created_at: self.created_at.ok_or_else(missing)?,
            updated_at: self.updated_at.ok_or_else(missing)?,
            expires_at: self.expires_at,
            refresh_due_at: self.refresh_due_at,
            refresh_failures: self.refresh_failures.ok_or_else(missing)?,
        };
        Ok((revoked, Some(row.try_into()?)))
    }
}

/// Returns the member and agent ids among `owners` ('' when absent).
pub(crate) fn principal_ids<'a>(owners: &[&'a Owner]) -> (&'a str, &'a str) {
    let member = owners.iter().find_map(|owner| match owner {
        Owner::Member(id) => Some(id.as_str()),
        _ => None,
    });
    let agent = owners.iter().find_map(|owner| match owner {
        Owner::Agent(id) => Some(id.as_str()),
        _ => None,
    });
    (member.unwrap_or(""), agent.unwrap_or(""))
}

impl From<ConsentRow> for ConsentRecord {
    fn from(row: ConsentRow) -> Self {
        Self {
            state_hash: row.state_hash,
            tenant: row.tenant,
            connector: row.connector,
            member_id: row.member_id,
            sealed: row.sealed,
            expires_at: row.expires_at,
        }
    }
}

/// Returns an unsigned counter as the databases' signed 64-bit integer.
pub(crate) fn to_db(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Returns the statuses filter as `,a,b,` (matched with LIKE), or empty for all.
pub(crate) fn status_filter(statuses: &[CredentialStatus]) -> String {
    if statuses.is_empty() {
        return String::new();
    }
    let names: Vec<&str> = statuses.iter().map(|status| status.as_str()).collect();
    format!(",{},", names.join(","))
}
