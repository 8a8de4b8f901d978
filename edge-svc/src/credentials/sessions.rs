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
//!
//! A `token_exchange` connector also gets one session per caller (member or agent), each
//! carrying the token authz-svc exchanged from that caller's latest call; its main session
//! reads the catalogue with the gateway's own token, so that a connector accepting only
//! Gatehouse-issued tokens lists its tools before anyone called.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use super::{
    CallerToken, ConsentLink, CredentialError, CredentialMode, CredentialSpec, Credentials,
    Fetched, Injection, Released, Secret, Who,
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
    /// The token exchanged on this caller's latest call and the caller token it came from
    /// (`token_exchange` only): the session's own requests between calls carry it.
    exchanged: Mutex<Option<(String, Arc<Released>)>>,
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
        let per_caller = matches!(
            spec.mode,
            CredentialMode::PerMember | CredentialMode::TokenExchange
        );
        let members = per_caller.then(|| {
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

    /// Says whether calls need the caller's own token (`token_exchange`): only then does the
    /// call path copy it out of the request.
    pub fn exchanges_caller_tokens(&self) -> bool {
        self.mode == CredentialMode::TokenExchange
    }

    /// Decides which session carries `who`'s call, opening the member's own when needed.
    ///
    /// For a per-member connector vault-svc is asked first, so a member who has not connected
    /// yet gets the link without any downstream traffic. For a `token_exchange` connector the
    /// caller's token (`caller`) is exchanged first, so a caller authz-svc refuses never
    /// reaches the downstream.
    pub async fn route(
        &self,
        who: &Who,
        caller: Option<&CallerToken>,
        trace_id: &str,
    ) -> Result<Route, CredentialError> {
        let Some(members) = &self.members else {
            return Ok(Route::Main);
        };
        if self.mode == CredentialMode::TokenExchange {
            return self.exchange_route(members, who, caller, trace_id).await;
        }
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

    /// Routes a `token_exchange` call to the caller's own session, holding the token just
    /// exchanged from the caller's.
    async fn exchange_route(
        &self,
        members: &MemberSessions,
        who: &Who,
        caller: Option<&CallerToken>,
        trace_id: &str,
    ) -> Result<Route, CredentialError> {
        let caller = caller
            .filter(|_| *who != Who::Gateway)
            .ok_or_else(|| CredentialError::Refused(self.name.clone()))?;
        let exchanged = self.broker.exchange(caller, &self.name, trace_id).await?;
        let session = members
            .open
            .get_with(who.clone(), async { self.member_session(members, who) })
            .await;
        *session.source.exchanged() = Some((caller.token_id.clone(), exchanged));
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
        let holder = match who {
            Who::Member { id, .. } => id.as_str(),
            Who::Agent { client_id } => client_id.as_str(),
            Who::Gateway => "",
        };
        let name = format!("{}@{holder}", self.name);
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
            exchanged: Mutex::new(None),
        }
    }

    fn exchanged(&self) -> std::sync::MutexGuard<'_, Option<(String, Arc<Released>)>> {
        self.exchanged
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Returns the token a `token_exchange` session carries: the gateway's own on the main
    /// session, the one exchanged on the caller's latest call on the caller's.
    async fn exchanged_token(&self) -> Result<Arc<Released>, CredentialError> {
        let binding = &self.binding;
        if self.who.is_none() {
            let trace_id = svc_kit::telemetry::propagation::current_trace_id().unwrap_or_default();
            return binding
                .broker
                .catalogue_token(&binding.name, &trace_id)
                .await;
        }
        self.exchanged()
            .as_ref()
            .map(|(_, released)| Arc::clone(released))
            .filter(|released| released.is_fresh(std::time::SystemTime::now()))
            .ok_or_else(|| CredentialError::ExchangeExpired(binding.name.clone()))
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
        if self.binding.mode == CredentialMode::TokenExchange {
            let released = self.exchanged_token().await?;
            return self.binding.injection.render(&released.material);
        }
        self.binding.headers(self.who.as_ref()).await
    }

    async fn environment(&self) -> Result<BTreeMap<String, Secret>, CredentialError> {
        // The main program of a per-member connector serves every member: it gets no one's.
        let binding = &self.binding;
        let who = match (&self.who, binding.mode) {
            (None, CredentialMode::PerMember) | (_, CredentialMode::TokenExchange) => {
                return Ok(BTreeMap::new());
            }
            (Some(who), _) => who.clone(),
            (None, _) => Who::Gateway,
        };
        let released = binding.released(&who).await?;
        let variables = binding.injection.environment(&released.material)?;
        self.launched.store(released.version, Ordering::Release);
        Ok(variables)
    }

    async fn rejected(&self) {
        if self.binding.mode == CredentialMode::TokenExchange {
            let broker = &self.binding.broker;
            let held = self.exchanged().take();
            match (&self.who, held) {
                (None, _) => broker.forget_catalogue_token(&self.binding.name).await,
                (Some(_), Some((token_id, _))) => {
                    broker.forget_exchanged(&self.binding.name, &token_id).await;
                }
                (Some(_), None) => {}
            }
            return;
        }
        if let Some(who) = self.binding.carrier(self.who.as_ref()) {
            self.binding.broker.forget(&who, &self.binding.name).await;
        }
    }
}
