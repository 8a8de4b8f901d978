//! The agent half of the store: agent bundles, their secrets, the client-assertion replay
//! cache and the revocation log, behind [`AgentStore`].

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Describes an agent bundle: a non-human principal and what it may obtain tokens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRecord {
    /// Identifies the bundle; agent tokens carry it as `sub`.
    pub agent_id: String,
    /// Is the bundle's OAuth client id.
    pub client_id: String,
    /// Is the unique, administrator-chosen name.
    pub name: String,
    /// Says what the agent is for.
    pub description: String,
    /// Is the accountable member.
    pub owner: String,
    /// Lists the virtual servers (by name) the agent may obtain tokens for.
    pub virtual_servers: Vec<String>,
    /// Lists the scopes the agent may be granted.
    pub scopes: Vec<String>,
    /// Says how the agent authenticates at the token endpoint.
    pub authentication: AgentAuthentication,
    /// Holds the agent's quotas, opaque here: rate limiting elsewhere reads them.
    pub quotas: serde_json::Value,
    /// Records when the bundle was created (unix seconds).
    pub created_at: i64,
    /// Records when its credentials were last rotated.
    pub rotated_at: Option<i64>,
    /// Records when it last obtained a token, to within [`LAST_USED_GRANULARITY`](crate::agent::LAST_USED_GRANULARITY).
    pub last_used_at: Option<i64>,
    /// Records when it was decommissioned; a decommissioned bundle never authenticates again.
    pub decommissioned_at: Option<i64>,
    /// Names what owns the bundle's declaration ([`MANAGED_BY_GATEWAY_FILE`] for a bundle the
    /// gateway file declares); `None` for one created through the API, the CLI or the console.
    pub managed_by: Option<String>,
}

/// Marks a bundle the gateway file declares: `gatehouse apply` decommissions it once the file
/// stops declaring it, and never touches a bundle without the mark.
pub const MANAGED_BY_GATEWAY_FILE: &str = "gateway-file";

/// Says how an agent authenticates; stored as JSON so that a new method needs no migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum AgentAuthentication {
    /// Server-generated client secrets (`client_secret_basic` / `client_secret_post`).
    ClientSecret,
    /// `private_key_jwt` assertions signed by a key of this registered public JWK Set.
    PrivateKeyJwt {
        /// Is the JWK Set.
        jwks: serde_json::Value,
    },
    /// `private_key_jwt` assertions signed by a key of the JWK Set the agent publishes at
    /// `jwks_uri`, fetched through the SSRF-safe fetcher and cached, so that the agent
    /// rotates its keys without an administrator.
    PrivateKeyJwtUri {
        /// Is the https URL of the JWK Set.
        jwks_uri: String,
    },
    /// Assertions minted by a trusted external workload issuer (secretless).
    WorkloadIdentity(WorkloadIssuer),
}

/// Describes an external workload issuer an agent trusts (Kubernetes, SPIFFE, cloud OIDC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadIssuer {
    /// Is the issuer's `iss`, compared exactly.
    pub issuer: String,
    /// Is where the issuer's keys are served, when they are not inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Is the issuer's JWK Set inline, when it is not fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Is a glob (`*` matches any run of characters) the assertion's `sub` must match.
    pub subject_pattern: String,
}

/// Describes one client secret of an agent, kept as HMAC-SHA256 only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSecretRecord {
    /// Identifies the secret (shown in listings, never the secret itself).
    pub secret_id: String,
    /// Identifies the agent.
    pub agent_id: String,
    /// Holds HMAC-SHA256 of the secret under a key derived from the master key.
    pub secret_hash: Vec<u8>,
    /// Records when the secret was issued.
    pub created_at: i64,
    /// Records when it stops working; `None` while it is the current secret.
    pub expires_at: Option<i64>,
}

/// Names one agent by one of its unique keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentKey<'a> {
    /// The bundle id.
    Id(&'a str),
    /// The OAuth client id.
    ClientId(&'a str),
    /// The name.
    Name(&'a str),
}

/// Selects a page of agents, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentListQuery {
    /// Restricts the listing to one owner's bundles.
    pub owner: Option<String>,
    /// Also lists decommissioned bundles.
    pub include_decommissioned: bool,
    /// Skips this many bundles (the page token).
    pub offset: u32,
    /// Returns at most this many.
    pub limit: u32,
}

/// Says what a logged revocation revokes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationKind {
    /// One access token, by `jti`.
    Token,
    /// Every token of a grant (refresh family).
    Grant,
    /// Every token of an agent, by client id.
    Agent,
    /// Every token of a member (deactivated or deleted) issued until the revocation, by member id.
    Member,
}

/// Is one entry of the revocation log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationRecord {
    /// Orders the log; a reader resumes after the last `seq` it saw.
    pub seq: i64,
    /// Says what is revoked.
    pub kind: RevocationKind,
    /// Is the `jti`, grant id, agent client id or member id.
    pub subject: String,
    /// Records when the revocation took effect.
    pub revoked_at: i64,
    /// Records when every token it can affect has expired anyway.
    pub expires_at: i64,
}

/// Stores agent bundles and the revocation log; every method is one transaction.
#[async_trait]
pub trait AgentStore: Send + Sync {
    /// Adds an agent and, for client-secret agents, its first secret; a taken name or
    /// client id is [`Error::AgentExists`].
    async fn insert_agent(
        &self,
        agent: &AgentRecord,
        secret: Option<&AgentSecretRecord>,
    ) -> Result<(), Error>;
    /// Replaces the mutable fields of an existing agent (declarative configuration).
    async fn update_agent(&self, agent: &AgentRecord) -> Result<(), Error>;
    /// Returns the agent `key` names, decommissioned or not.
    async fn agent(&self, key: AgentKey<'_>) -> Result<Option<AgentRecord>, Error>;
    /// Returns a page of agents, newest first.
    async fn list_agents(&self, query: &AgentListQuery) -> Result<Vec<AgentRecord>, Error>;
    /// Returns the agent's secrets that still work at `now`.
    async fn live_agent_secrets(
        &self,
        agent_id: &str,
        now: i64,
    ) -> Result<Vec<AgentSecretRecord>, Error>;
    /// Makes `secret` the agent's current secret: the previous current one works until
    /// `previous_until`, any older one stops now. Returns `false` (changing nothing) when
    /// the agent is unknown or decommissioned.
    async fn rotate_agent_secret(
        &self,
        secret: &AgentSecretRecord,
        previous_until: i64,
        now: i64,
    ) -> Result<bool, Error>;
    /// Replaces every secret of the agent with `secret` at once (declarative secrets).
    async fn replace_agent_secrets(&self, secret: &AgentSecretRecord) -> Result<(), Error>;
    /// Disables the agent for good, deletes its secrets and logs its revocation; returns
    /// `false` when it was already decommissioned (nothing logged again).
    async fn decommission_agent(
        &self,
        agent_id: &str,
        now: i64,
        tokens_expire_by: i64,
    ) -> Result<bool, Error>;
    /// Records that the agent obtained a token at `now`, unless that was recorded after
    /// `stale_before` already (so that the hot path writes rarely).
    async fn touch_agent(&self, agent_id: &str, now: i64, stale_before: i64) -> Result<(), Error>;
    /// Remembers the client assertion `jti` of `issuer` until `expires_at`; returns `false`
    /// when it was seen before (a replay).
    async fn remember_assertion(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, Error>;
    /// Appends a revocation to the log.
    async fn log_revocation(
        &self,
        kind: RevocationKind,
        subject: &str,
        revoked_at: i64,
        expires_at: i64,
    ) -> Result<(), Error>;
    /// Returns up to `limit` log entries after `seq` that have not expired at `now`, oldest first.
    async fn revocations_after(
        &self,
        seq: i64,
        now: i64,
        limit: u32,
    ) -> Result<Vec<RevocationRecord>, Error>;
    /// Returns the last `seq` of the log (0 when empty).
    async fn revocation_head(&self) -> Result<i64, Error>;
    /// Keeps an encoded audit event until a running server forwards it.
    async fn enqueue_audit(&self, event: &[u8]) -> Result<(), Error>;
    /// Returns up to `limit` queued audit events, oldest first, with their positions.
    async fn queued_audit(&self, limit: u32) -> Result<Vec<(i64, Vec<u8>)>, Error>;
    /// Forgets the queued audit events up to and including position `through`.
    async fn dequeue_audit(&self, through: i64) -> Result<(), Error>;
}

impl RevocationKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Token => "token",
            Self::Grant => "grant",
            Self::Agent => "agent",
            Self::Member => "member",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "token" => Ok(Self::Token),
            "grant" => Ok(Self::Grant),
            "agent" => Ok(Self::Agent),
            "member" => Ok(Self::Member),
            _ => Err(Error::Corrupt("revocation kind")),
        }
    }
}
