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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use tokio_util::sync::CancellationToken;

use super::{
    ConsentLink, CredentialError, CredentialMode, CredentialSpec, Credentials, Fetched, Injection,
    Who,
};
use crate::connector::{Connector, HeaderSource, Relay, Transport};

/// A member session unused this long is closed.
pub const IDLE_SESSION: Duration = Duration::from_secs(600);

/// Most member sessions one connector keeps open.
pub const MAX_MEMBER_SESSIONS: u64 = 1_000;

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

/// One member's session and the token that closes it.
#[derive(Clone)]
struct MemberSession {
    connector: Connector,
    stop: CancellationToken,
}

/// The header source of one session: a fixed member, or the catalogue reader.
#[derive(Debug)]
struct SessionCredential {
    binding: Arc<ConnectorCredentials>,
    who: Option<Who>,
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
        let members = (spec.mode == CredentialMode::PerMember).then(|| MemberSessions {
            transport: transport.clone(),
            relay: Arc::clone(relay),
            shutdown: shutdown.clone(),
            open: moka::future::Cache::builder()
                .max_capacity(MAX_MEMBER_SESSIONS)
                .time_to_idle(IDLE_SESSION)
                .eviction_listener(|_, session: MemberSession, _| session.stop.cancel())
                .build(),
        });
        Arc::new(Self {
            name: name.to_owned(),
            mode: spec.mode,
            injection: Injection::new(name, spec.inject.headers.clone()),
            broker,
            members,
        })
    }

    /// Returns the header source of the connector's main session.
    pub fn main_source(self: &Arc<Self>) -> Arc<dyn HeaderSource> {
        Arc::new(SessionCredential {
            binding: Arc::clone(self),
            who: None,
        })
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
        match self.broker.fetch(who, &self.name, trace_id).await? {
            Fetched::ConsentRequired(link) => return Ok(Route::Consent(link)),
            Fetched::Released(_) => {}
        }
        let session = members
            .open
            .get_with(who.clone(), async { self.member_session(members, who) })
            .await;
        Ok(Route::Member(session.connector))
    }

    /// Opens `who`'s own session, carrying only `who`'s credential.
    fn member_session(&self, members: &MemberSessions, who: &Who) -> MemberSession {
        let stop = members.shutdown.child_token();
        let source = Arc::new(SessionCredential {
            binding: Arc::new(Self {
                name: self.name.clone(),
                mode: self.mode,
                injection: self.injection.clone(),
                broker: self.broker.clone(),
                members: None,
            }),
            who: Some(who.clone()),
        });
        let name = format!("{}@{}", self.name, who.member_id().unwrap_or_default());
        let connector = Connector::spawn_with_headers(
            name,
            members.transport.clone(),
            Some(source),
            Arc::clone(&members.relay),
            stop.clone(),
        );
        MemberSession { connector, stop }
    }

    async fn headers(
        &self,
        who: Option<&Who>,
    ) -> Result<HashMap<HeaderName, HeaderValue>, CredentialError> {
        let who = match (who, self.mode) {
            (Some(who), _) => who.clone(),
            (None, CredentialMode::PerMember) => self.broker.catalogue_reader(&self.name),
            (None, _) => Who::Gateway,
        };
        if self.mode == CredentialMode::PerMember && who == Who::Gateway {
            return Ok(HashMap::new());
        }
        let trace_id = svc_kit::telemetry::propagation::current_trace_id().unwrap_or_default();
        match self.broker.fetch(&who, &self.name, &trace_id).await? {
            Fetched::Released(released) => self.injection.render(&released.material),
            Fetched::ConsentRequired(_) => Err(CredentialError::ConsentRequired(self.name.clone())),
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
impl HeaderSource for SessionCredential {
    async fn headers(&self) -> Result<HashMap<HeaderName, HeaderValue>, CredentialError> {
        self.binding.headers(self.who.as_ref()).await
    }
}
