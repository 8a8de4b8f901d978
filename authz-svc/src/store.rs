//! The authorization store: registered clients, authorization codes, refresh
//! token families, revoked token ids, signing keys and (in [`AgentStore`]) agent
//! bundles and the revocation log, and (in [`DirectoryStore`]) the member
//! directory, behind one trait with a SQLite and a
//! PostgreSQL implementation.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

use crate::error::Error;

mod agent;
pub(crate) mod agent_sql;
mod directory;
pub(crate) mod directory_sql;
mod postgres;
mod sql;
mod sqlite;

pub use agent::{
    AgentAuthentication, AgentKey, AgentListQuery, AgentRecord, AgentSecretRecord, AgentStore,
    MANAGED_BY_GATEWAY_FILE, RevocationKind, RevocationRecord, WorkloadIssuer,
};
pub use directory::{
    DirectoryFilter, DirectoryGroup, DirectoryPage, DirectoryStore, DirectoryUser, MemberState,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Says where the authorization store lives.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// Keeps everything in a SQLite file (created when missing): the embedded default.
    Sqlite {
        /// Is the database file.
        path: PathBuf,
    },
    /// Keeps everything in PostgreSQL: the scale-out deployment.
    Postgres {
        /// Is the connection URL.
        url: SecretString,
    },
}

/// Describes a registered OAuth client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    /// Identifies the client.
    pub client_id: String,
    /// Holds HMAC-SHA256 of the client secret; `None` for public clients.
    pub secret_hash: Option<Vec<u8>>,
    /// Names the client on the consent screen.
    pub client_name: String,
    /// Lists the registered redirect URIs, matched exactly.
    pub redirect_uris: Vec<String>,
    /// Lists the grant types the client may use.
    pub grant_types: Vec<String>,
    /// Names the token endpoint authentication method.
    pub auth_method: String,
    /// Is `web` or `native`.
    pub application_type: String,
    /// Records when the client registered (unix seconds).
    pub created_at: i64,
}

/// Describes an issued, not yet redeemed authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRecord {
    /// Holds SHA-256 of the code.
    pub code_hash: Vec<u8>,
    /// Identifies the client the code was issued to.
    pub client_id: String,
    /// Is the redirect URI the code was sent to.
    pub redirect_uri: String,
    /// Is the PKCE S256 challenge.
    pub code_challenge: String,
    /// Is the resource (audience) the grant is for.
    pub resource: String,
    /// Is the space-separated granted scope.
    pub scope: String,
    /// Is the member the code was issued for.
    pub subject: String,
    /// Names the grant (refresh family) the redemption creates.
    pub family_id: String,
    /// Records when the code expires (unix seconds).
    pub expires_at: i64,
    /// Says whether the code was redeemed.
    pub used: bool,
}

/// Describes a grant: the family of refresh tokens rotated from one authorization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyRecord {
    /// Identifies the family; access tokens carry it as `sid`.
    pub family_id: String,
    /// Identifies the client.
    pub client_id: String,
    /// Is the member.
    pub subject: String,
    /// Is the audience.
    pub resource: String,
    /// Is the granted scope.
    pub scope: String,
    /// Says whether the whole family was revoked.
    pub revoked: bool,
}

/// Describes a new refresh token to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewRefresh {
    /// Holds SHA-256 of the token.
    pub token_hash: Vec<u8>,
    /// Records when the token expires (unix seconds).
    pub expires_at: i64,
}

/// Tells what redeeming a code or rotating a refresh token did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redemption {
    /// The code or token was live and is now spent; the grant is returned.
    Redeemed(FamilyRecord),
    /// The code or token had been spent before: its whole family is now revoked.
    Replayed,
    /// The code or token is unknown, expired, or its family was revoked.
    Invalid,
}

/// Says what a signing key is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyStatus {
    /// Pre-published in the JWKS, not signing yet.
    Next,
    /// Signs new tokens.
    Active,
    /// Still published so that the tokens it signed verify until they expire.
    Retired,
}

/// Describes a stored signing key; its private half is sealed under the master key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRecord {
    /// Identifies the key (`kid`).
    pub kid: String,
    /// Says what the key is used for.
    pub status: KeyStatus,
    /// Holds the sealed PKCS#8 private key.
    pub sealed_private_key: Vec<u8>,
    /// Is the public point's x coordinate, base64url.
    pub public_x: String,
    /// Is the public point's y coordinate, base64url.
    pub public_y: String,
    /// Records when the key was generated (unix seconds).
    pub created_at: i64,
    /// Says until when a retired key stays published (unix seconds); `None` otherwise.
    pub retired_until: Option<i64>,
}

/// Describes a member who signs in through an upstream OIDC provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FederatedMember {
    /// Is the member id tokens carry as `sub`, derived from (`issuer`, `subject`).
    pub member_id: String,
    /// Is the provider's issuer identifier.
    pub issuer: String,
    /// Is the provider's `sub` for the member.
    pub subject: String,
    /// Lists the Gatehouse groups the last sign-in mapped the provider's groups to.
    pub groups: Vec<String>,
    /// Records the first sign-in (unix seconds).
    pub created_at: i64,
    /// Records the latest sign-in (unix seconds).
    pub last_login_at: i64,
}

/// Describes a member's remembered consent: the scopes approved for a client at a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    /// Is the member.
    pub subject: String,
    /// Identifies the client.
    pub client_id: String,
    /// Is the resource (audience) the consent is for.
    pub resource: String,
    /// Is the space-separated approved scope.
    pub scope: String,
    /// Records when the member last approved (unix seconds).
    pub granted_at: i64,
}

/// Stores everything the authorization server must remember; every method is one transaction.
#[async_trait]
pub trait Store: AgentStore + DirectoryStore + Send + Sync + std::fmt::Debug {
    /// Adds a client; fails on a duplicate id.
    async fn insert_client(&self, client: &ClientRecord) -> Result<(), Error>;
    /// Returns the client with id `client_id`.
    async fn client(&self, client_id: &str) -> Result<Option<ClientRecord>, Error>;
    /// Adds an authorization code.
    async fn insert_code(&self, code: &CodeRecord) -> Result<(), Error>;
    /// Returns the code with hash `code_hash`, redeemed or not.
    async fn code(&self, code_hash: &[u8]) -> Result<Option<CodeRecord>, Error>;
    /// Spends the code and opens its grant with a first refresh token; a second
    /// redemption revokes the grant the first opened.
    async fn redeem_code(
        &self,
        code_hash: &[u8],
        refresh: &NewRefresh,
        now: i64,
    ) -> Result<Redemption, Error>;
    /// Spends a refresh token and stores its successor; reuse of a spent token
    /// revokes the whole family.
    async fn rotate_refresh(
        &self,
        token_hash: &[u8],
        successor: &NewRefresh,
        now: i64,
    ) -> Result<Redemption, Error>;
    /// Returns the family of the live (unspent, unexpired) refresh token `token_hash`.
    async fn refresh_family(
        &self,
        token_hash: &[u8],
        now: i64,
    ) -> Result<Option<FamilyRecord>, Error>;
    /// Returns the family `family_id`.
    async fn family(&self, family_id: &str) -> Result<Option<FamilyRecord>, Error>;
    /// Revokes the family `family_id` and every token in it.
    async fn revoke_family(&self, family_id: &str) -> Result<(), Error>;
    /// Records the access token id `jti` as revoked until `expires_at`.
    async fn revoke_jti(&self, jti: &str, expires_at: i64) -> Result<(), Error>;
    /// Reports whether the access token id `jti` was revoked.
    async fn jti_revoked(&self, jti: &str) -> Result<bool, Error>;
    /// Returns every signing key that is not retired past use.
    async fn keys(&self) -> Result<Vec<KeyRecord>, Error>;
    /// Adds the first active and next keys, unless another replica did so first;
    /// returns whether these were stored.
    /// Stores (or refreshes) the client a fetched metadata document describes, so that
    /// its codes and grants have a client row like a registered client's.
    async fn upsert_document_client(&self, client: &ClientRecord) -> Result<(), Error>;
    /// Rotates the signing keys in one transaction: the active key `active_kid` retires
    /// (published until `retired_until`), the next key becomes active, `next` is
    /// pre-published, and retired keys past their time are deleted. Changes nothing and
    /// returns `false` when `active_kid` is no longer active (another replica rotated).
    async fn rotate_keys(
        &self,
        active_kid: &str,
        next: &KeyRecord,
        retired_until: i64,
        now: i64,
    ) -> Result<bool, Error>;
    async fn insert_initial_keys(
        &self,
        active: &KeyRecord,
        next: &KeyRecord,
    ) -> Result<bool, Error>;
    /// Records a federated member's sign-in: adds it on the first, refreshes its groups
    /// and last sign-in time on the next ones (keyed by `member_id`).
    async fn record_federated_login(&self, member: &FederatedMember) -> Result<(), Error>;
    /// Returns the federated member `member_id`.
    async fn federated_member(&self, member_id: &str) -> Result<Option<FederatedMember>, Error>;
    /// Counts the federated members (operators' view; tests that a refused sign-in made none).
    async fn federated_member_count(&self) -> Result<u64, Error>;
    /// Stores (replacing any previous) the member's consent for a client at a resource.
    async fn record_consent(&self, consent: &ConsentRecord) -> Result<(), Error>;
    /// Returns the member's remembered consent for `client_id` at `resource`.
    async fn consent(
        &self,
        subject: &str,
        client_id: &str,
        resource: &str,
    ) -> Result<Option<ConsentRecord>, Error>;
    /// Forgets the member's consent for `client_id` at `resource` (the grant was revoked).
    async fn forget_consent(
        &self,
        subject: &str,
        client_id: &str,
        resource: &str,
    ) -> Result<(), Error>;
}

/// Returns the store `config` names, migrated to the current schema.
pub(crate) async fn open(config: &StoreConfig) -> Result<Arc<dyn Store>, Error> {
    Ok(match config {
        StoreConfig::Sqlite { path } => Arc::new(SqliteStore::open(path).await?),
        StoreConfig::Postgres { url } => Arc::new(PostgresStore::open(url).await?),
    })
}

impl KeyStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Next => "next",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }

    fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "next" => Ok(Self::Next),
            "active" => Ok(Self::Active),
            "retired" => Ok(Self::Retired),
            _ => Err(Error::Corrupt("key status")),
        }
    }
}

/// Classifies a driver error where code meets the driver.
/// Says whether a store error is a PostgreSQL deadlock or serialization failure, which a
/// retried transaction resolves.
pub(crate) fn is_conflict(error: &Error) -> bool {
    matches!(
        error,
        Error::Store(sqlx::Error::Database(database))
            if matches!(database.code().as_deref(), Some("40P01" | "40001"))
    )
}

fn classify(error: sqlx::Error) -> Error {
    Error::Store(error)
}
