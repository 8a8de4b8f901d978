//! Which downstream session carries whose credential.
//!
//! A `shared` connector keeps its one session: every request carries the shared credential.
//! A `per_member` connector gets one downstream session per member, opened on the member's
//! first call, closed after [`IDLE_SESSION`] without use, at most [`MAX_MEMBER_SESSIONS`] at
//! once (the least recently used is closed first). Each such session adds only its own
//! member's credential to its requests, so one member's token can never ride on another
//! member's call, and downstream servers that bind their sessions to the user (as the MCP
//! spec recommends) see one user per session. Per-request headers on one shared session were
//! the alternative; they would mix users inside one downstream session.
//!
//! The connector's main session reads the catalogue (`tools/list`, …): with the shared
//! credential for `shared`; for `per_member`, with the credential of the first member whose
//! credential was released, and with no credential before any member connected (servers with
//! a public catalogue list at once; others list once the first member has connected).
//!
//! A stdio connector's credential is its program's environment, fixed at launch: a per-member
//! stdio connector runs one program per member (started on the member's first call, stopped
//! when idle), and that program is replaced when vault-svc releases a newer version of the
//! member's credential, and stopped when vault-svc no longer releases one (revoked, deleted,
//! reconnect needed). The main stdio program of a per-member connector gets no credential.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use super::{
    ConsentLink, CredentialError, CredentialMode, CredentialSpec, Credentials, Fetched, Injection,
    Secret, Who,
};
use crate::connector::{Connector, CredentialSource, Relay, Transport};

/// A member session unused this long is closed.
pub const IDLE_SESSION: Duration = Duration::from_secs(600);

/// Most member sessions one connector keeps open.
pub const MAX_MEMBER_SESSIONS: u64 = 1_000;

/// How often idle member sessions are looked for: the session cache evicts only when used, and
/// an idle stdio program should not outlive [`IDLE_SESSION`] by much.
const IDLE_SWEEP: Duration = Duration::from_secs(30);

/// Marks a session that has not yet launched with a released credential.
const NOT_LAUNCHED: u64 = u64::MAX;

/// One connector's credential binding; shared by its sessions and the forwarder.
#[derive(Debug)]
pub struct ConnectorCredentials {
    name: String,
    mode: CredentialMode,
    injection: Injection,
    broker: Credentials,
    members: Option<MemberSessions>,
}

/// Where one call goes.
#[derive(Debug)]
pub enum Route {
    /// The connector's main session (its requests carry the shared credential, if any).
    Main,
    /// The calling member's own session.
    Member(Connector),
    /// Nowhere yet: the member must connect their account first.
    Consent(ConsentLink),
}

/// The lazily opened sessions of a per-member connector.
struct MemberSessions {
    transport: Transport,
    relay: Arc<dyn Relay>,
    shutdown: CancellationToken,
    open: moka::future::Cache<Who, MemberSession>,
}

/// One member's session, the token that closes it, and its credential source.
#[derive(Clone)]
struct MemberSession {
    connector: Connector,
    stop: CancellationToken,
    source: Arc<SessionCredential>,
}

/// The credential source of one session: a fixed member, or the catalogue reader.
#[derive(Debug)]
struct SessionCredential {
    binding: Arc<ConnectorCredentials>,
    who: Option<Who>,
    /// The credential version the stdio program was launched with ([`NOT_LAUNCHED`] before).
    launched: AtomicU64,
}

impl ConnectorCredentials {
    /// Binds connector `name` (reached over `transport`) to `spec`'s credential through `broker`.
    ///
    /// Member sessions relay through `relay` and close with `shutdown`.
    pub fn new(
        name: &str,
        spec: &CredentialSpec,
        broker: Credentials,
        transport: &Transport,
        relay: &Arc<dyn Relay>,
        shutdown: &CancellationToken,
    ) -> Arc<Self> {
        let members = (spec.mode == CredentialMode::PerMember).then(|| {
            let open = moka::future::Cache::builder()
                .max_capacity(MAX_MEMBER_SESSIONS)
                .time_to_idle(IDLE_SESSION)
                .eviction_listener(|_, session: MemberSession, _| session.stop.cancel())
                .build();
            tokio::spawn(sweep_idle(open.clone(), shutdown.clone()));
            MemberSessions {
                transport: transport.clone(),
                relay: Arc::clone(relay),
                shutdown: shutdown.clone(),
                open,
            }
        });
        Arc::new(Self {
            name: name.to_owned(),
            mode: spec.mode,
            injection: Injection::of(name, &spec.inject),
            broker,
            members,
        })
    }

    /// Returns the credential source of the connector's main session.
    pub fn main_source(self: &Arc<Self>) -> Arc<dyn CredentialSource> {
        Arc::new(SessionCredential::new(Arc::clone(self), None))
    }

    /// Decides which session carries `who`'s call, opening the member's own when needed.
    ///
    /// For a per-member connector vault-svc is asked first, so a member who has not connected
    /// yet gets the link without any downstream traffic.
    pub async fn route(&self, who: &Who, trace_id: &str) -> Result<Route, CredentialError> {
        let Some(members) = &self.members else {
            return Ok(Route::Main);
        };
        if who.member_id().is_none() {
            return Err(CredentialError::Refused(self.name.clone()));
        }
        let released = match self.broker.fetch(who, &self.name, trace_id).await {
            Ok(Fetched::Released(released)) => released,
            Ok(Fetched::ConsentRequired(link)) => {
                members.open.invalidate(who).await;
                return Ok(Route::Consent(link));
            }
            Err(error) => {
                if !matches!(error, CredentialError::Unavailable(_)) {
                    members.open.invalidate(who).await;
                }
                return Err(error);
            }
        };
        let session = members
            .open
            .get_with(who.clone(), async { self.member_session(members, who) })
            .await;
        let launched = session.source.launched.load(Ordering::Acquire);
        if launched != NOT_LAUNCHED && launched != released.version {
            tracing::info!(connector = %self.name, "member credential changed; restarting the member's program");
            members.open.invalidate(who).await;
            let fresh = members
                .open
                .get_with(who.clone(), async { self.member_session(members, who) })
                .await;
            return Ok(Route::Member(fresh.connector));
        }
        Ok(Route::Member(session.connector))
    }

    /// Opens `who`'s own session, carrying only `who`'s credential.
    fn member_session(&self, members: &MemberSessions, who: &Who) -> MemberSession {
        let stop = members.shutdown.child_token();
        let binding = Arc::new(Self {
            name: self.name.clone(),
            mode: self.mode,
            injection: self.injection.clone(),
            broker: self.broker.clone(),
            members: None,
        });
        let source = Arc::new(SessionCredential::new(binding, Some(who.clone())));
        let name = format!("{}@{}", self.name, who.member_id().unwrap_or_default());
        let connector = Connector::spawn_with_credential(
            name,
            members.transport.clone(),
            Some(Arc::clone(&source) as Arc<dyn CredentialSource>),
            Arc::clone(&members.relay),
            stop.clone(),
        );
        MemberSession {
            connector,
            stop,
            source,
        }
    }

    /// Returns whose credential a session of `who` (None: the main session) carries, or None
    /// when it carries none (the main session of a per-member connector before anyone connected).
    fn carrier(&self, who: Option<&Who>) -> Option<Who> {
        let who = match (who, self.mode) {
            (Some(who), _) => who.clone(),
            (None, CredentialMode::PerMember) => self.broker.catalogue_reader(&self.name),
            (None, _) => Who::Gateway,
        };
        (self.mode != CredentialMode::PerMember || who != Who::Gateway).then_some(who)
    }

    /// Fetches the material `who`'s session injects.
    async fn released(&self, who: &Who) -> Result<Arc<super::Released>, CredentialError> {
        let trace_id = svc_kit::telemetry::propagation::current_trace_id().unwrap_or_default();
        match self.broker.fetch(who, &self.name, &trace_id).await? {
            Fetched::Released(released) => Ok(released),
            Fetched::ConsentRequired(_) => Err(CredentialError::ConsentRequired(self.name.clone())),
        }
    }

    async fn headers(
        &self,
        who: Option<&Who>,
    ) -> Result<HashMap<HeaderName, HeaderValue>, CredentialError> {
        let Some(who) = self.carrier(who) else {
            return Ok(HashMap::new());
        };
        self.injection.render(&self.released(&who).await?.material)
    }
}

impl SessionCredential {
    fn new(binding: Arc<ConnectorCredentials>, who: Option<Who>) -> Self {
        Self {
            binding,
            who,
            launched: AtomicU64::new(NOT_LAUNCHED),
        }
    }
}

/// Runs the session cache's pending evictions (idle sessions) until `shutdown`.
async fn sweep_idle(open: moka::future::Cache<Who, MemberSession>, shutdown: CancellationToken) {
    let mut ticks = tokio::time::interval(IDLE_SWEEP);
    loop {
        tokio::select! {
            _ = ticks.tick() => open.run_pending_tasks().await,
            () = shutdown.cancelled() => return,
        }
    }
}

impl std::fmt::Debug for MemberSessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberSessions")
            .field("open", &self.open.entry_count())
            .finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl CredentialSource for SessionCredential {
    async fn headers(&self) -> Result<HashMap<HeaderName, HeaderValue>, CredentialError> {
        self.binding.headers(self.who.as_ref()).await
    }

    async fn environment(&self) -> Result<BTreeMap<String, Secret>, CredentialError> {
        // The main program of a per-member connector serves every member: it gets no one's.
        let binding = &self.binding;
        let who = match (&self.who, binding.mode) {
            (None, CredentialMode::PerMember) => return Ok(BTreeMap::new()),
            (Some(who), _) => who.clone(),
            (None, _) => Who::Gateway,
        };
        let released = binding.released(&who).await?;
        let variables = binding.injection.environment(&released.material)?;
        self.launched.store(released.version, Ordering::Release);
        Ok(variables)
    }

    async fn rejected(&self) {
        if let Some(who) = self.binding.carrier(self.who.as_ref()) {
            self.binding.broker.forget(&who, &self.binding.name).await;
        }
    }
}
