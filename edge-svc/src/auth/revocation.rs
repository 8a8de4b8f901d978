//! Tokens, grants and agents the authorization server revoked, refused here before they expire.
//!
//! Edge verifies access tokens locally (signature, audience, expiry), which alone would accept a
//! revoked token until its `exp`. The authorization server pushes each revocation here the moment
//! it happens, and every verification checks this set after the signature.
//!
//! In process (`gatehouse up`) the set is always current. Fed over the network (a standalone
//! edge following authz-svc's `WatchRevocations`), it is current only while the feed is
//! connected: once the feed has been lost for longer than the staleness bound, or before it
//! first synced, every token is refused as unverifiable — a revocation the edge cannot hear
//! about must not stay honoured indefinitely.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::{TokenClaims, TokenError, TokenVerifier};

/// The revoked token ids (kept until they would have expired) and revoked grants.
#[derive(Debug, Clone, Default)]
pub struct Revocations {
    inner: Arc<RwLock<Revoked>>,
}

#[derive(Debug, Default)]
struct Revoked {
    /// Token id → expiry (unix seconds); entries past expiry are dropped on the next insert.
    tokens: HashMap<String, u64>,
    grants: HashSet<String>,
    /// Decommissioned agents' client ids → when their last token expires (unix seconds).
    agents: HashMap<String, u64>,
    /// Offboarded members' ids → (revocation time, when their last earlier token expires).
    members: HashMap<String, (u64, u64)>,
    /// Whether this set can be trusted to hold every revocation.
    feed: Feed,
}

/// Where the revocations come from, and whether the source is still being heard.
#[derive(Debug, Default)]
enum Feed {
    /// Pushed in process: never stale.
    #[default]
    Local,
    /// Followed over the network; trusted while connected and for `bound` after losing it.
    Remote {
        /// How long the set is trusted after the feed was lost.
        bound: Duration,
        /// When the feed was lost; `None` while connected.
        lost_at: Option<Instant>,
        /// Whether the feed ever delivered a complete set.
        synced: bool,
    },
}

impl Revocations {
    /// Returns an empty set filled by a remote feed: it refuses every token until the feed
    /// first syncs ([`Revocations::replace_all`]), and again once the feed has been lost
    /// ([`Revocations::feed_lost`]) for longer than `bound`.
    pub fn remote(bound: Duration) -> Self {
        let revocations = Self::default();
        revocations.write().feed = Feed::Remote {
            bound,
            lost_at: None,
            synced: false,
        };
        revocations
    }

    /// Says whether the set can be trusted: always in process; for a remote feed, once it has
    /// synced and while it is connected or lost for no longer than its bound.
    pub fn is_current(&self) -> bool {
        match &self.read().feed {
            Feed::Local => true,
            Feed::Remote {
                bound,
                lost_at,
                synced,
            } => *synced && lost_at.is_none_or(|at| at.elapsed() <= *bound),
        }
    }

    /// Notes that the remote feed is connected again and caught up with everything it missed.
    pub fn feed_resumed(&self) {
        if let Feed::Remote {
            lost_at, synced, ..
        } = &mut self.write().feed
            && *synced
        {
            *lost_at = None;
        }
    }

    /// Notes that the remote feed was lost; the set stays trusted for the feed's bound from
    /// the first loss (a reconnect that fails again does not extend it).
    pub fn feed_lost(&self) {
        if let Feed::Remote { lost_at, .. } = &mut self.write().feed {
            lost_at.get_or_insert_with(Instant::now);
        }
    }

    /// Drops every revocation held: the feed's next message is the complete set.
    pub fn replace_all(&self) {
        let mut revoked = self.write();
        revoked.tokens.clear();
        revoked.grants.clear();
        revoked.agents.clear();
        revoked.members.clear();
        if let Feed::Remote {
            lost_at, synced, ..
        } = &mut revoked.feed
        {
            *lost_at = None;
            *synced = true;
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Revoked> {
        self.inner.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Revoked> {
        self.inner.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Refuses the access token `jti` from now until it expires.
    pub fn revoke_token(&self, jti: &str, expires_at: u64) {
        let now = unix_now();
        let mut revoked = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        revoked.tokens.retain(|_, expiry| *expiry > now);
        revoked.tokens.insert(jti.to_owned(), expires_at);
    }

    /// Refuses every token of the grant `grant_id`.
    pub fn revoke_grant(&self, grant_id: &str) {
        self.inner
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .grants
            .insert(grant_id.to_owned());
    }

    /// Refuses every token issued to the agent `client_id` (decommissioned), until
    /// `expires_at`, when none of its tokens can be live anyway.
    pub fn revoke_agent(&self, client_id: &str, expires_at: u64) {
        let now = unix_now();
        let mut revoked = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        revoked.agents.retain(|_, expiry| *expiry > now);
        revoked.agents.insert(client_id.to_owned(), expires_at);
    }

    /// Refuses every token of the member `member_id` issued at or before `revoked_at` (a
    /// deactivated or deleted member), until `expires_at`, when none of them can be live.
    pub fn revoke_member(&self, member_id: &str, revoked_at: u64, expires_at: u64) {
        let now = unix_now();
        let mut revoked = self.inner.write().unwrap_or_else(PoisonError::into_inner);
        revoked.members.retain(|_, (_, expiry)| *expiry > now);
        revoked
            .members
            .insert(member_id.to_owned(), (revoked_at, expires_at));
    }

    /// Says whether a verified token was revoked since it was issued.
    pub fn is_revoked(&self, claims: &TokenClaims) -> bool {
        let revoked = self.inner.read().unwrap_or_else(PoisonError::into_inner);
        revoked.tokens.contains_key(&claims.token_id)
            || revoked.agents.contains_key(&claims.client_id)
            || revoked
                .members
                .get(&claims.subject)
                .is_some_and(|(revoked_at, _)| claims.issued_at <= *revoked_at)
            || claims
                .grant
                .as_ref()
                .is_some_and(|grant| revoked.grants.contains(grant))
    }

    /// Wraps `verifier` so that a revoked token fails verification like an invalid one.
    pub fn guard(&self, verifier: Arc<dyn TokenVerifier>) -> Arc<dyn TokenVerifier> {
        Arc::new(Guarded {
            verifier,
            revocations: self.clone(),
        })
    }
}

#[derive(Debug)]
struct Guarded {
    verifier: Arc<dyn TokenVerifier>,
    revocations: Revocations,
}

#[async_trait::async_trait]
impl TokenVerifier for Guarded {
    async fn verify(&self, resource: &str, token: &str) -> Result<TokenClaims, TokenError> {
        if !self.revocations.is_current() {
            return Err(TokenError::Unavailable(
                "the revocation feed from the authorization server is unavailable",
            ));
        }
        let claims = self.verifier.verify(resource, token).await?;
        if self.revocations.is_revoked(&claims) {
            return Err(TokenError::Invalid("the token has been revoked"));
        }
        Ok(claims)
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}
