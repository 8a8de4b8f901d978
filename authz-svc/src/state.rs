//! `AuthzState`: the cloneable handles every OAuth endpoint works with.

use std::sync::Arc;

use crate::agent::AgentRegistry;
use crate::client::{
    ClientDocuments, ClientRegistration, RegistrationError, RegistrationPolicy, SecretHasher,
    is_document_url,
};
use crate::config::AuthorizationConfig;
use crate::error::Error;
use crate::issuer::{Issuer, IssuerIdentity, ProtectedResource};
use crate::keys::{KeySet, MasterKey, SigningKey, generate_key, load_master_key};
use crate::member::Members;
use crate::store::{self, ClientRecord, KeyRecord, KeyStatus, RevocationKind, Store, StoreConfig};
use crate::token::{self, AccessClaims};

/// Holds the authorization server's store, keys and configuration; cheap to clone.
#[derive(Clone, Debug)]
pub struct AuthzState {
    pub(crate) config: Arc<AuthorizationConfig>,
    pub(crate) issuer: Arc<IssuerIdentity>,
    pub(crate) store: Arc<dyn Store>,
    /// Is swapped whole when the keys rotate (here or on another replica).
    pub(crate) keys: Arc<arc_swap::ArcSwap<KeySet>>,
    pub(crate) master: MasterKey,
    pub(crate) members: Members,
    pub(crate) secrets: SecretHasher,
    pub(crate) csrf_key: Arc<[u8; 32]>,
    /// Keys the MAC of members' sign-in session cookies (remembered consent).
    pub(crate) session_key: Arc<[u8; 32]>,
    pub(crate) audit: Option<Arc<dyn crate::events::AuditSink>>,
    pub(crate) revocations: Option<Arc<dyn crate::events::RevocationListener>>,
    pub(crate) agents: AgentRegistry,
    pub(crate) workload_keys: crate::workload::WorkloadKeys,
    /// Holds the JWK Sets agents publish at a `jwks_uri`, fetched SSRF-safely.
    pub(crate) agent_jwks: crate::agent::AgentJwks,
    pub(crate) directory: crate::directory::DirectoryView,
    pub(crate) credential_purge: Option<Arc<dyn crate::events::CredentialPurge>>,
    /// Holds SHA-256 of the SCIM bearer token; `None` keeps `/scim/v2` closed.
    pub(crate) scim_token: Option<Arc<[u8; 32]>>,
    // The policies whose scope descriptions the consent page shows; none: raw scope names.
    pub(crate) policies: Option<crate::policy::PolicyStore>,
    /// Resolves URL client ids through their metadata documents (CIMD).
    pub(crate) documents: ClientDocuments,
    /// Holds the upstream OIDC providers members sign in with.
    pub(crate) federation: crate::federation::Federation,
    /// Holds the sign-ins sent to an upstream provider and not yet back.
    pub(crate) pending_logins: crate::oauth::PendingLogins,
    /// Holds registered clients the token endpoint read within the last second, so a busy
    /// client authenticates without a store read per token (the secret is still checked).
    pub(crate) known_clients: moka::future::Cache<String, ClientRecord>,
}

/// Describes a newly registered client, with its secret shown this once.
#[derive(Debug, Clone)]
pub struct RegisteredClient {
    /// Is the stored client.
    pub client: ClientRecord,
    /// Is the client secret, for confidential clients.
    pub client_secret: Option<secrecy::SecretString>,
}

impl AuthzState {
    /// Opens the store, loads (or on first start generates) the signing keys and
    /// returns the state the OAuth endpoints share.
    pub async fn open(
        config: AuthorizationConfig,
        issuer: Issuer,
        store_config: StoreConfig,
    ) -> Result<Self, Error> {
        config.validate()?;
        let issuer = IssuerIdentity::new(issuer, config.allow_insecure_http)?;
        if config.auto_approve_consent {
            tracing::warn!(
                member = crate::member::TEST_MEMBER,
                "auto_approve_consent is on: every authorization is approved without login or consent; test profile only"
            );
        }
        let key_file = config
            .master_key_file
            .clone()
            .or_else(|| match &store_config {
                StoreConfig::Sqlite { path } => Some(path.with_file_name("authz.key")),
                StoreConfig::Postgres { .. } => None,
            });
        let master = load_master_key(key_file.as_deref()).await?;
        let store = store::open(&store_config).await?;
        let keys = load_keys(store.as_ref(), &master).await?;
        let ttl = config
            .access_token_ttl
            .min(crate::config::MAX_AGENT_TOKEN_TTL);
        let agents = AgentRegistry::new(
            store.clone(),
            SecretHasher::new(master.derive("client-secret")),
            ttl,
        )
        .with_overlap(config.agent_secret_overlap)
        .with_catalogue(issuer.resources.clone());
        agents.apply_declared(&config.agents).await?;
        let scim_token = config.scim.token()?.map(Arc::new);
        let documents = ClientDocuments::new(&config.client_metadata_documents)?;
        // One dev opt-out (and extra CA) for every URL a client or agent names.
        let agent_jwks = crate::agent::AgentJwks::new(
            crate::egress::EgressPolicy {
                allow_local: config.client_metadata_documents.allow_local,
            },
            config.client_metadata_documents.ca_file.as_deref(),
        )?;
        let federation = crate::federation::Federation::new(&config.identity_providers)?;
        let directory = crate::directory::DirectoryView::default();
        directory.reload(store.as_ref()).await?;
        Ok(Self {
            members: Members::new(&config.members),
            config: Arc::new(config),
            issuer: Arc::new(issuer),
            store,
            keys: Arc::new(arc_swap::ArcSwap::from_pointee(keys)),
            secrets: SecretHasher::new(master.derive("client-secret")),
            csrf_key: Arc::new(master.derive("csrf")),
            session_key: Arc::new(master.derive("session")),
            audit: None,
            revocations: None,
            agents,
            workload_keys: crate::workload::WorkloadKeys::new()?,
            agent_jwks,
            directory,
            credential_purge: None,
            scim_token,
            policies: None,
            documents,
            master,
            federation,
            pending_logins: crate::oauth::pending_logins(),
            known_clients: crate::agent::known_callers(),
        })
    }

    /// Shows each requested scope on the consent page in the words its virtual server's
    /// policy declares (`description`), read from `policies` at the time the page is served.
    #[must_use]
    pub fn with_policies(mut self, policies: crate::policy::PolicyStore) -> Self {
        self.policies = Some(policies);
        self
    }

    /// Tells `listener` of every token and grant revoked from now on.
    #[must_use]
    pub fn with_revocation_listener(
        mut self,
        listener: Arc<dyn crate::events::RevocationListener>,
    ) -> Self {
        self.agents = self.agents.with_revocation_listener(listener.clone());
        self.revocations = Some(listener);
        self
    }

    /// Follows the store's revocation log (every [`REVOCATION_POLL_INTERVAL`](crate::REVOCATION_POLL_INTERVAL))
    /// and passes each revocation to the listener, so that changes made by other processes
    /// on the same store (the CLI, other replicas) reach this one's edge; ends at `shutdown`.
    pub fn follow_revocations(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let listener = self.revocations.clone()?;
        Some(tokio::spawn(crate::revocation::follow(
            self.store.clone(),
            listener,
            shutdown,
        )))
    }

    /// Forwards the audit events queued in the store's outbox (changes made by the CLI
    /// on the store directly) to the audit sink, oldest first, every
    /// [`REVOCATION_POLL_INTERVAL`](crate::REVOCATION_POLL_INTERVAL), until `shutdown`.
    /// An event is removed only once the sink has taken it.
    pub fn forward_audit_outbox(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let sink = self.audit.clone()?;
        Some(tokio::spawn(crate::revocation::forward_outbox(
            self.store.clone(),
            sink,
            shutdown,
        )))
    }

    /// Rotates the signing keys when the active one has signed for the configured
    /// period (`signing_key_rotation`, counted from when it became active, which is when
    /// today's next key was pre-published), then reloads the key set from the store, so
    /// that a rotation by another replica is picked up too. Returns whether this call rotated.
    pub async fn rotate_keys_if_due(&self, now: i64) -> Result<bool, Error> {
        let records = self.store.keys().await?;
        let period = i64::try_from(self.config.signing_key_rotation.as_secs()).unwrap_or(i64::MAX);
        let due = crate::keys::rotation_due(&records, period, now);
        let mut rotated = false;
        if let Some(active_kid) = due {
            let next = generate_key(&self.master, KeyStatus::Next, now)?;
            let retired_until = now.saturating_add(self.longest_token_lifetime());
            rotated = self
                .store
                .rotate_keys(active_kid, &next, retired_until, now)
                .await?;
            if rotated {
                tracing::info!(retired = %active_kid, next = %next.kid, retired_until, "signing keys rotated");
            }
        }
        let records = if rotated {
            self.store.keys().await?
        } else {
            records
        };
        let keys = key_set(&self.master, &records, now)?;
        if keys.fingerprint() != self.keys.load().fingerprint() {
            self.keys.store(Arc::new(keys));
        }
        Ok(rotated)
    }

    /// Checks the key rotation schedule every [`KEY_CHECK_INTERVAL`](crate::KEY_CHECK_INTERVAL)
    /// until `shutdown`; a failed check is logged and retried at the next one.
    pub fn maintain_keys(
        &self,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(crate::KEY_CHECK_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                if let Err(error) = state.rotate_keys_if_due(token::now()).await {
                    tracing::error!(
                        error = &error as &dyn std::error::Error,
                        "signing key rotation check failed"
                    );
                }
            }
        })
    }

    /// Returns the longest an access token signed now can live, plus clock skew: how long
    /// a key retired now must stay published.
    fn longest_token_lifetime(&self) -> i64 {
        let longest = self
            .config
            .access_token_ttl
            .max(crate::config::MAX_AGENT_TOKEN_TTL)
            + crate::keys::RETIRED_KEY_SKEW;
        i64::try_from(longest.as_secs()).unwrap_or(i64::MAX)
    }

    /// Returns the groups a token for the member `subject` carries: a provisioned member's
    /// from the directory, a configured member's from the configuration, a federated
    /// member's as its last sign-in mapped them.
    pub(crate) async fn member_groups(&self, subject: &str) -> Result<Vec<String>, Error> {
        if let Some(groups) = self.directory.groups(subject) {
            return Ok(groups);
        }
        if self.members.contains(subject) {
            return Ok(self.members.groups(subject).to_vec());
        }
        if subject.starts_with(crate::federation::MEMBER_PREFIX) {
            let member = self.store.federated_member(subject).await?;
            return Ok(member.map(|member| member.groups).unwrap_or_default());
        }
        Ok(Vec::new())
    }

    /// Returns the federated member the provider `issuer` knows as `subject`, if it signed in.
    pub async fn federated_member(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<crate::store::FederatedMember>, Error> {
        self.store
            .federated_member(&crate::federation::member_id(issuer, subject))
            .await
    }

    /// Counts the members who signed in through an upstream provider.
    pub async fn federated_member_count(&self) -> Result<u64, Error> {
        self.store.federated_member_count().await
    }

    /// Returns the agent bundle registry (the admin API and CLI work through it).
    pub fn agents(&self) -> &AgentRegistry {
        &self.agents
    }

    /// Logs a grant's revocation and passes it on to the listener, when there is one.
    pub(crate) async fn grant_revoked(&self, grant_id: &str) -> Result<(), Error> {
        if let Some(listener) = &self.revocations {
            listener.grant_revoked(grant_id);
        }
        let at = token::now();
        let ttl = i64::try_from(self.config.access_token_ttl.as_secs()).unwrap_or(i64::MAX);
        self.store
            .log_revocation(RevocationKind::Grant, grant_id, at, at.saturating_add(ttl))
            .await
    }

    /// Logs an access token's revocation and passes it on to the listener, when there is one.
    pub(crate) async fn token_revoked(&self, jti: &str, expires_at: i64) -> Result<(), Error> {
        if let Some(listener) = &self.revocations {
            listener.token_revoked(jti, expires_at);
        }
        self.store
            .log_revocation(RevocationKind::Token, jti, token::now(), expires_at)
            .await
    }

    /// Purges offboarded members' per-user credentials through `purge` (vault-svc).
    #[must_use]
    pub fn with_credential_purge(mut self, purge: Arc<dyn crate::events::CredentialPurge>) -> Self {
        self.credential_purge = Some(purge);
        self
    }

    /// Records every token issued and revoked through `sink`.
    #[must_use]
    pub fn with_audit(mut self, sink: Arc<dyn crate::events::AuditSink>) -> Self {
        self.agents = self.agents.with_audit(sink.clone());
        self.audit = Some(sink);
        self
    }

    /// Hands `event` to the audit sink, when there is one.
    pub(crate) fn audit(&self, event: proto::audit::v1::AuditEvent) -> Result<(), String> {
        match &self.audit {
            Some(sink) => sink.record(event),
            None => Ok(()),
        }
    }

    /// Returns the issuer identifier, the exact string to put in protected-resource
    /// metadata (`authorization_servers`).
    pub fn issuer(&self) -> &str {
        &self.issuer.issuer
    }

    /// Replaces the protected resources tokens may be minted for, at once: the gateway now
    /// serves other virtual servers (an administrator changed them while it runs).
    pub fn set_resources(&self, resources: Vec<ProtectedResource>) -> Result<(), Error> {
        self.issuer.set_resources(resources)
    }

    /// Returns the JWKS document edge verifies access tokens against.
    pub fn jwks(&self) -> serde_json::Value {
        self.keys.load().jwks()
    }

    /// Returns the claims of `token` when it is a live access token of this issuer
    /// (signature, `typ`, issuer, expiry, and not revoked), whatever its audience.
    pub async fn verify_access_token(&self, token: &str) -> Result<Option<AccessClaims>, Error> {
        let Some(claims) = token::verify(&self.keys.load(), &self.issuer.issuer, token) else {
            return Ok(None);
        };
        if self.revoked(&claims).await? {
            return Ok(None);
        }
        Ok(Some(claims))
    }

    /// Reports whether the token, its member, its agent or its grant has been revoked.
    pub(crate) async fn revoked(&self, claims: &AccessClaims) -> Result<bool, Error> {
        if self.store.jti_revoked(&claims.jti).await? || self.directory.is_inactive(&claims.sub) {
            return Ok(true);
        }
        let decommissioned = self
            .store
            .agent(crate::store::AgentKey::ClientId(&claims.client_id))
            .await?
            .is_some_and(|agent| agent.decommissioned_at.is_some());
        if decommissioned {
            return Ok(true);
        }
        if let Some(grant) = &claims.sid {
            let live = self
                .store
                .family(grant)
                .await?
                .is_some_and(|family| !family.revoked);
            return Ok(!live);
        }
        Ok(false)
    }

    /// Mints the token `request` describes and records it in the audit trail; a token
    /// the trail cannot show is not issued ([`Error::AuditUnavailable`]).
    pub(crate) fn issue(
        &self,
        request: &token::TokenRequest<'_>,
        grant_type: &str,
        principal: proto::common::v1::Principal,
    ) -> Result<(String, AccessClaims), Error> {
        let (access_token, claims) = token::mint(&self.keys.load(), self.issuer(), request)?;
        self.audit(crate::events::token_issued(&claims, grant_type, principal))
            .map_err(|why| {
                tracing::error!(%why, "refusing to issue a token that cannot be audited");
                Error::AuditUnavailable
            })?;
        tracing::info!(client_id = %claims.client_id, sub = %claims.sub, aud = %claims.aud, jti = %claims.jti, "access token issued");
        Ok((access_token, claims))
    }

    /// Returns the client `client_id` names: a registered client, or (for an https URL,
    /// when enabled) the one its metadata document describes; a refusal says why not.
    pub(crate) async fn client(
        &self,
        client_id: &str,
    ) -> Result<Result<ClientRecord, RegistrationError>, Error> {
        let unknown = RegistrationError {
            error: "invalid_client",
            description: "unknown client",
        };
        if is_document_url(client_id) {
            if !self.config.client_metadata_documents.enabled {
                return Ok(Err(unknown));
            }
            let policy = self.registration_policy();
            let resolved = self
                .documents
                .resolve(client_id, policy, token::now())
                .await;
            let (client, fetched) = match resolved {
                Ok(resolved) => resolved,
                Err(refusal) => return Ok(Err(refusal)),
            };
            if fetched {
                self.store.upsert_document_client(&client).await?;
            }
            return Ok(Ok(client));
        }
        Ok(self.store.client(client_id).await?.ok_or(unknown))
    }

    fn registration_policy(&self) -> RegistrationPolicy {
        RegistrationPolicy {
            allow_insecure_http: self.config.allow_insecure_http,
            allow_client_credentials: self.config.allow_registered_agents,
        }
    }

    /// Registers a client under the registration rules (as `POST /register` does),
    /// for callers such as the admin CLI.
    pub async fn register_client(
        &self,
        request: ClientRegistration,
    ) -> Result<Result<RegisteredClient, RegistrationError>, Error> {
        self.register_with(request, self.registration_policy())
            .await
    }

    pub(crate) async fn register_with(
        &self,
        request: ClientRegistration,
        policy: RegistrationPolicy,
    ) -> Result<Result<RegisteredClient, RegistrationError>, Error> {
        let (client, secret) =
            match crate::client::register(request, policy, &self.secrets, token::now())? {
                Ok(registered) => registered,
                Err(refusal) => return Ok(Err(refusal)),
            };
        self.store.insert_client(&client).await?;
        tracing::info!(client_id = %client.client_id, auth_method = %client.auth_method, "client registered");
        Ok(Ok(RegisteredClient {
            client,
            client_secret: secret.map(secrecy::SecretString::from),
        }))
    }
}

async fn load_keys(store: &dyn Store, master: &MasterKey) -> Result<KeySet, Error> {
    let mut records = store.keys().await?;
    if !records
        .iter()
        .any(|record| record.status == KeyStatus::Active)
    {
        let now = token::now();
        let active = generate_key(master, KeyStatus::Active, now)?;
        let next = generate_key(master, KeyStatus::Next, now)?;
        if store.insert_initial_keys(&active, &next).await? {
            tracing::info!(active = %active.kid, next = %next.kid, "signing keys generated");
        }
        records = store.keys().await?;
    }
    key_set(master, &records, token::now())
}

/// Returns the key set of `records`: the active key, and every key still published at
/// `now` (next, active, and retired ones whose tokens may still be live).
fn key_set(master: &MasterKey, records: &[KeyRecord], now: i64) -> Result<KeySet, Error> {
    let mut active = None;
    let mut published = Vec::with_capacity(records.len());
    for record in records {
        if record.retired_until.is_some_and(|until| until < now) {
            continue;
        }
        let key = SigningKey::open(master, record)?;
        if record.status == KeyStatus::Active {
            active = Some(key.clone());
        }
        published.push(key);
    }
    let active = active.ok_or(Error::Corrupt("signing keys: no active key"))?;
    Ok(KeySet { active, published })
}
