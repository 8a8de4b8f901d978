//! Agent bundles: the non-human principals. Creation, secret rotation with an overlap
//! window, decommissioning, secret checks on the token endpoint's hot path, and the
//! declarative bundles of the configuration file.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::client::SecretHasher;
use crate::error::Error;
use crate::events::{AuditSink, RevocationListener};
use crate::keys::{load_master_key, random_token};
use crate::store::{
    self, AgentAuthentication, AgentKey, AgentListQuery, AgentRecord, AgentSecretRecord, Store,
    StoreConfig,
};
use crate::token::now;

mod declared;
mod jwks;
mod quota;
mod validate;

pub use declared::AgentConfig;
pub(crate) use jwks::AgentJwks;
pub use quota::AgentQuota;
pub(crate) use quota::parse as parse_quota;
pub(crate) use validate::subject_matches;

/// Bounds how long the token endpoint trusts a bundle (and its secrets) or a registered client
/// from memory. A change made by another process (a replica, the local CLI) reaches this one
/// within it; changes made through this registry clear the memory at once. A decommissioned
/// agent's tokens are refused at every edge regardless: its revocation outlives any token
/// issued in that second by 60 s.
const KNOWN_CALLER_TTL: Duration = Duration::from_secs(1);

/// Bounds the client ids remembered (a caller spraying unknown ids only evicts others).
const KNOWN_CALLER_CAPACITY: u64 = 10_000;

/// Returns the token endpoint's memory of callers by client id.
pub(crate) fn known_callers<V: Clone + Send + Sync + 'static>() -> moka::future::Cache<String, V> {
    moka::future::Cache::builder()
        .max_capacity(KNOWN_CALLER_CAPACITY)
        .time_to_live(KNOWN_CALLER_TTL)
        .build()
}

/// A live bundle and its working secrets as the token endpoint last read them, or `None`
/// for a client id that names no live bundle.
type KnownAgents = moka::future::Cache<String, Option<Arc<KnownAgent>>>;

/// A live bundle with its working secrets.
struct KnownAgent {
    agent: AgentRecord,
    secrets: Vec<AgentSecretRecord>,
}

/// Is how stale `last_used_at` may be: the hot path writes it at most this often per agent.
pub const LAST_USED_GRANULARITY: Duration = Duration::from_secs(60);

/// Is how long a rotated-out secret keeps working unless the rotation says otherwise.
pub const DEFAULT_SECRET_OVERLAP: Duration = Duration::from_secs(24 * 3600);

/// Describes a new agent bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAgent {
    /// Is the unique name.
    pub name: String,
    /// Says what the agent is for.
    pub description: String,
    /// Is the accountable member.
    pub owner: String,
    /// Lists the virtual servers (names) the agent may use; at least one.
    pub virtual_servers: Vec<String>,
    /// Lists the scopes the agent may be granted.
    pub scopes: Vec<String>,
    /// Says how it authenticates; for client secrets Gatehouse generates the secret.
    pub authentication: AgentAuthentication,
    /// Holds its own budget (`{rate, burst}`, see [`AgentQuota`]); null for none.
    pub quotas: serde_json::Value,
    /// Is its OAuth client id; generated when `None`.
    pub client_id: Option<String>,
}

/// Carries a created bundle and, once, its first secret.
#[derive(Debug, Clone)]
pub struct CreatedAgent {
    /// Is the stored bundle.
    pub agent: AgentRecord,
    /// Is the client secret, for client-secret bundles; shown this once.
    pub client_secret: Option<SecretString>,
}

/// Carries a rotated bundle and, once, its new secret.
#[derive(Debug, Clone)]
pub struct RotatedSecret {
    /// Is the bundle after rotation.
    pub agent: AgentRecord,
    /// Is the new secret, shown this once.
    pub client_secret: SecretString,
    /// Records when the previous secret stops working (unix seconds).
    pub previous_expires_at: i64,
}

/// Manages agent bundles over the authorization store; cheap to clone.
#[derive(Clone)]
pub struct AgentRegistry {
    pub(crate) store: Arc<dyn Store>,
    secrets: SecretHasher,
    /// Names the virtual servers and their scopes, when known (the server knows them; the
    /// CLI working on the store directly does not, and then checks only the shape).
    catalogue: Option<crate::issuer::Resources>,
    audit: Option<Arc<dyn AuditSink>>,
    /// Queues bundle changes in the store's audit outbox when there is no sink (the CLI
    /// working on the store directly); a running server forwards them.
    outbox: bool,
    revocations: Option<Arc<dyn RevocationListener>>,
    max_token_ttl: Duration,
    default_overlap: Duration,
    /// What the token endpoint read last, per client id (shared by every clone).
    known: KnownAgents,
}

impl std::fmt::Debug for AgentRegistry {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("AgentRegistry")
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

impl AgentRegistry {
    /// Opens the registry on the store directly (as `gatehouse agents` does), with the
    /// master key from `GATEHOUSE_AUTHZ_MASTER_KEY` or `master_key_file` (by default
    /// `authz.key` beside a SQLite store), exactly as the server finds it.
    pub async fn open(
        store_config: &StoreConfig,
        master_key_file: Option<&Path>,
    ) -> Result<Self, Error> {
        let key_file = master_key_file
            .map(Path::to_path_buf)
            .or_else(|| match store_config {
                StoreConfig::Sqlite { path } => Some(path.with_file_name("authz.key")),
                StoreConfig::Postgres { .. } => None,
            });
        let master = load_master_key(key_file.as_deref()).await?;
        let store = store::open(store_config).await?;
        Ok(Self::new(
            store,
            SecretHasher::new(master.derive("client-secret")),
            crate::config::MAX_AGENT_TOKEN_TTL,
        ))
    }

    pub(crate) fn new(
        store: Arc<dyn Store>,
        secrets: SecretHasher,
        max_token_ttl: Duration,
    ) -> Self {
        Self {
            store,
            secrets,
            catalogue: None,
            audit: None,
            outbox: false,
            revocations: None,
            max_token_ttl,
            default_overlap: DEFAULT_SECRET_OVERLAP,
            known: known_callers(),
        }
    }

    pub(crate) fn with_overlap(mut self, overlap: Duration) -> Self {
        self.default_overlap = overlap;
        self
    }

    pub(crate) fn with_catalogue(mut self, resources: crate::issuer::Resources) -> Self {
        self.catalogue = Some(resources);
        self
    }

    /// Records every bundle change through `sink`.
    #[must_use]
    pub fn with_audit(mut self, sink: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(sink);
        self
    }

    /// Queues every bundle change in the store's audit outbox, for the server that
    /// runs on the same store to record (see [`AuthzState::forward_audit_outbox`](crate::AuthzState::forward_audit_outbox)).
    #[must_use]
    pub fn with_audit_outbox(mut self) -> Self {
        self.outbox = true;
        self
    }

    /// Tells `listener` of every decommissioning at once.
    #[must_use]
    pub fn with_revocation_listener(mut self, listener: Arc<dyn RevocationListener>) -> Self {
        self.revocations = Some(listener);
        self
    }

    /// Creates a bundle; for client-secret authentication its first secret is returned once.
    pub async fn create(&self, command: NewAgent) -> Result<CreatedAgent, Error> {
        self.insert(command, None).await
    }

    /// Creates a bundle owned by `managed_by` (`None` for one an administrator creates).
    async fn insert(
        &self,
        command: NewAgent,
        managed_by: Option<&str>,
    ) -> Result<CreatedAgent, Error> {
        let catalogue = self
            .catalogue
            .as_ref()
            .map(crate::issuer::Resources::snapshot);
        validate::new_agent(&command, catalogue.as_deref().map(Vec::as_slice))?;
        let created_at = now();
        let agent = AgentRecord {
            agent_id: uuid::Uuid::now_v7().to_string(),
            client_id: match command.client_id {
                Some(id) => id,
                None => format!("agent_{}", random_token()?),
            },
            name: command.name,
            description: command.description,
            owner: command.owner,
            virtual_servers: command.virtual_servers,
            scopes: command.scopes,
            authentication: command.authentication,
            quotas: command.quotas,
            created_at,
            rotated_at: None,
            last_used_at: None,
            decommissioned_at: None,
            managed_by: managed_by.map(str::to_owned),
        };
        let secret = match agent.authentication {
            AgentAuthentication::ClientSecret => Some(random_token()?),
            _ => None,
        };
        let record = secret
            .as_deref()
            .map(|secret| self.secret_record(&agent.agent_id, secret, created_at));
        self.store.insert_agent(&agent, record.as_ref()).await?;
        self.forget();
        tracing::info!(agent_id = %agent.agent_id, client_id = %agent.client_id, name = %agent.name, "agent created");
        self.record(crate::events::agent_changed(&agent, "create", ""))
            .await;
        Ok(CreatedAgent {
            agent,
            client_secret: secret.map(SecretString::from),
        })
    }

    /// Returns the bundle `key` names.
    pub async fn get(&self, key: AgentKey<'_>) -> Result<AgentRecord, Error> {
        self.store
            .agent(key)
            .await?
            .ok_or_else(|| Error::AgentNotFound(key_text(key)))
    }

    /// Returns a page of bundles, newest first.
    pub async fn list(&self, query: &AgentListQuery) -> Result<Vec<AgentRecord>, Error> {
        self.store.list_agents(query).await
    }

    /// Returns the metadata of the bundle's working secrets (never the secrets).
    pub async fn secrets(&self, agent_id: &str) -> Result<Vec<AgentSecretRecord>, Error> {
        self.store.live_agent_secrets(agent_id, now()).await
    }

    /// Issues a new secret, returned once; the previous one works for `overlap` more
    /// (the default overlap when `None`, not at all when zero).
    pub async fn rotate(
        &self,
        key: AgentKey<'_>,
        overlap: Option<Duration>,
    ) -> Result<RotatedSecret, Error> {
        let agent = self.get(key).await?;
        if agent.authentication != AgentAuthentication::ClientSecret {
            return Err(precondition(&agent, "does not use client secrets"));
        }
        let rotated_at = now();
        let overlap = overlap.unwrap_or(self.default_overlap);
        let previous_expires_at = rotated_at.saturating_add(seconds(overlap));
        let secret = random_token()?;
        let record = self.secret_record(&agent.agent_id, &secret, rotated_at);
        if !self
            .store
            .rotate_agent_secret(&record, previous_expires_at, rotated_at)
            .await?
        {
            return Err(precondition(&agent, "is decommissioned"));
        }
        self.forget();
        let agent = self.get(AgentKey::Id(&agent.agent_id)).await?;
        tracing::info!(agent_id = %agent.agent_id, secret_id = %record.secret_id, "agent secret rotated");
        self.record(crate::events::agent_changed(&agent, "rotate", ""))
            .await;
        Ok(RotatedSecret {
            agent,
            client_secret: SecretString::from(secret),
            previous_expires_at,
        })
    }

    /// Disables the bundle for good: its secrets stop working and every edge refuses its
    /// tokens (in this process at once, elsewhere through the revocation log). Repeating
    /// it changes nothing.
    pub async fn decommission(
        &self,
        key: AgentKey<'_>,
        reason: &str,
    ) -> Result<AgentRecord, Error> {
        let agent = self.get(key).await?;
        let at = now();
        let expire_by = at
            .saturating_add(seconds(self.max_token_ttl))
            .saturating_add(60);
        if self
            .store
            .decommission_agent(&agent.agent_id, at, expire_by)
            .await?
        {
            self.forget();
            if let Some(listener) = &self.revocations {
                listener.agent_revoked(&agent.client_id, expire_by);
            }
            tracing::info!(agent_id = %agent.agent_id, client_id = %agent.client_id, "agent decommissioned");
            let agent = self.get(AgentKey::Id(&agent.agent_id)).await?;
            self.record(crate::events::agent_changed(&agent, "decommission", reason))
                .await;
            return Ok(agent);
        }
        Ok(agent)
    }

    /// Returns the live agent whose client id is `client_id` when `secret` is one of its
    /// working secrets (constant-time HMAC comparison, no slow hash on the hot path). What was
    /// read within the last second is trusted; a secret it does not hold (one just issued by
    /// another replica) is looked up in the store.
    pub(crate) async fn authenticate_secret(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<Option<AgentRecord>, Error> {
        let at = now();
        match self.known.get(client_id).await {
            Some(None) => return Ok(None),
            Some(Some(known)) if self.accepts(&known, secret, at) => {
                return Ok(Some(known.agent.clone()));
            }
            _ => {}
        }
        let Some(agent) = self.live(client_id).await? else {
            self.known.insert(client_id.to_owned(), None).await;
            return Ok(None);
        };
        let secrets = self.store.live_agent_secrets(&agent.agent_id, at).await?;
        let known = Arc::new(KnownAgent { agent, secrets });
        self.known
            .insert(client_id.to_owned(), Some(Arc::clone(&known)))
            .await;
        Ok(self
            .accepts(&known, secret, at)
            .then(|| known.agent.clone()))
    }

    /// Says whether `secret` is one of `known`'s secrets still working at `at`.
    fn accepts(&self, known: &KnownAgent, secret: &str, at: i64) -> bool {
        known
            .secrets
            .iter()
            .filter(|record| record.expires_at.is_none_or(|expires| expires > at))
            .any(|record| self.secrets.verify(secret, &record.secret_hash))
    }

    /// Clears what the token endpoint remembers: a bundle changed through this registry.
    fn forget(&self) {
        self.known.invalidate_all();
    }

    /// Returns the agent with client id `client_id` unless it is decommissioned.
    pub(crate) async fn live(&self, client_id: &str) -> Result<Option<AgentRecord>, Error> {
        Ok(self
            .store
            .agent(AgentKey::ClientId(client_id))
            .await?
            .filter(|agent| agent.decommissioned_at.is_none()))
    }

    /// Records that `agent` obtained a token, writing at most once per granularity.
    pub(crate) async fn used(&self, agent: &AgentRecord) -> Result<(), Error> {
        let at = now();
        let stale_before = at.saturating_sub(seconds(LAST_USED_GRANULARITY));
        if agent.last_used_at.is_some_and(|last| last >= stale_before) {
            return Ok(());
        }
        self.store
            .touch_agent(&agent.agent_id, at, stale_before)
            .await?;
        // The remembered record still has the old time; reading it again once is cheaper
        // than writing on every token until it expires.
        self.known.invalidate(&agent.client_id).await;
        Ok(())
    }

    fn secret_record(&self, agent_id: &str, secret: &str, created_at: i64) -> AgentSecretRecord {
        AgentSecretRecord {
            secret_id: uuid::Uuid::now_v7().to_string(),
            agent_id: agent_id.to_owned(),
            secret_hash: self.secrets.hash(secret),
            created_at,
            expires_at: None,
        }
    }

    /// Hands a change to the audit sink, or queues it in the outbox; the change itself
    /// already happened and stands.
    async fn record(&self, event: proto::audit::v1::AuditEvent) {
        let recorded = match &self.audit {
            Some(sink) => sink.record(event),
            None if self.outbox => self
                .store
                .enqueue_audit(&prost::Message::encode_to_vec(&event))
                .await
                .map_err(|error| error.to_string()),
            None => Ok(()),
        };
        if let Err(why) = recorded {
            tracing::error!(%why, "an agent change could not be recorded in the audit trail");
        }
    }
}

fn precondition(agent: &AgentRecord, reason: &'static str) -> Error {
    Error::AgentPrecondition {
        agent: agent.name.clone(),
        reason,
    }
}

fn key_text(key: AgentKey<'_>) -> String {
    match key {
        AgentKey::Id(text) | AgentKey::ClientId(text) | AgentKey::Name(text) => text.to_owned(),
    }
}

/// Returns `duration` in whole seconds as a unix-time offset.
pub(crate) fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX)
}
