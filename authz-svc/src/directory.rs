//! The member directory: SCIM-provisioned users and groups, and what follows from them.
//!
//! A provisioned user is a member whose id (its SCIM `id`) is the `sub` of its tokens. Until
//! login federation lands, a user provisioned with a `password` signs in through the built-in
//! login like a configured member. The directory is authoritative for its members' groups:
//! edge evaluates policy on the groups in the [`DirectoryView`], not the ones frozen in a token,
//! so a membership change applies to the next request. Deactivating or deleting a user revokes
//! its grants and tokens through the revocation log and purges its per-user credentials.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use tokio_util::sync::CancellationToken;

use crate::error::Error;
use crate::state::AuthzState;
use crate::store::{DirectoryUser, MemberState, Store};

mod admin;

pub use admin::{GroupCommand, MemberCommand, MemberRecord};

/// Is the live view of provisioned members' activity and groups, shared with edge; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct DirectoryView {
    members: Arc<RwLock<Arc<HashMap<String, MemberState>>>>,
}

impl DirectoryView {
    /// Returns the current groups of the provisioned member `member_id`, or `None` when the
    /// directory does not know it (a configured member: its token's groups apply).
    pub fn groups(&self, member_id: &str) -> Option<Vec<String>> {
        self.snapshot()
            .get(member_id)
            .map(|member| member.groups.clone())
    }

    /// Says whether `member_id` is a provisioned member that is deactivated.
    pub fn is_inactive(&self, member_id: &str) -> bool {
        self.snapshot()
            .get(member_id)
            .is_some_and(|member| !member.active)
    }

    fn snapshot(&self) -> Arc<HashMap<String, MemberState>> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the view with the store's current members.
    pub(crate) async fn reload(&self, store: &dyn Store) -> Result<(), Error> {
        let states = store.member_states().await?;
        let map = states
            .into_iter()
            .map(|state| (state.id.clone(), state))
            .collect();
        *self.members.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(map);
        Ok(())
    }

    /// Makes `other` show what this view shows (both are then kept current together).
    pub(crate) fn share_into(&self, other: &Self) {
        let current = self.snapshot();
        *other
            .members
            .write()
            .unwrap_or_else(PoisonError::into_inner) = current;
    }
}

impl AuthzState {
    /// Returns the live view of provisioned members, for edge's policy subject.
    pub fn directory_view(&self) -> &DirectoryView {
        &self.directory
    }

    /// Makes `view` the one this server keeps current (edge was built with it before the
    /// server opened).
    #[must_use]
    pub fn with_directory_view(mut self, view: DirectoryView) -> Self {
        self.directory.share_into(&view);
        self.directory = view;
        self
    }

    /// Reloads the view after a local directory change; a failure leaves the follower to catch up.
    pub(crate) async fn directory_changed(&self) {
        if let Err(error) = self.directory.reload(self.store.as_ref()).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "cannot reload the member directory"
            );
        }
    }

    /// Records a SCIM change in the audit trail; a refused record is logged, the change stands
    /// (the directory write already committed, as an agent change does).
    pub(crate) fn directory_audited(&self, object_type: &str, object_id: &str, action: &str) {
        let event = crate::events::directory_changed(object_type, object_id, action);
        if let Err(why) = self.audit(event) {
            tracing::warn!(object_type, object_id, %why, "cannot audit a directory change");
        }
    }

    /// Revokes every grant and token of the member `member_id` at every edge and purges its
    /// per-user credentials: the member was deactivated or deleted.
    pub(crate) async fn member_offboarded(&self, member_id: &str) -> Result<(), Error> {
        let revoked_at = crate::token::now();
        let ttl = self
            .config
            .access_token_ttl
            .max(crate::config::MAX_AGENT_TOKEN_TTL);
        let expires_at = revoked_at.saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(0));
        self.store
            .revoke_member(member_id, revoked_at, expires_at)
            .await?;
        if let Some(listener) = &self.revocations {
            listener.member_revoked(member_id, revoked_at, expires_at);
        }
        tracing::info!(member = %member_id, "member offboarded: grants and tokens revoked");
        if let Some(purge) = &self.credential_purge
            && let Err(reason) = purge.purge_member(member_id).await
        {
            tracing::error!(member = %member_id, %reason, "cannot purge the member's credentials");
        }
        Ok(())
    }

    /// Returns the provisioned, active member `user_name` when `password` is its provisioned one.
    pub(crate) async fn directory_login(
        &self,
        user_name: &str,
        password: &str,
    ) -> Result<Option<DirectoryUser>, Error> {
        let user = self
            .store
            .user_by_name(user_name)
            .await?
            .filter(|user| user.active);
        let hash = user.as_ref().and_then(|user| user.password_hash.clone());
        let matched = self.members.verify(hash, password).await;
        Ok(user.filter(|user| matched && user.password_hash.is_some()))
    }

    /// Follows directory changes made by other processes on the same store (other replicas,
    /// the CLI), reloading the view within [`REVOCATION_POLL_INTERVAL`](crate::REVOCATION_POLL_INTERVAL);
    /// ends at `shutdown`.
    pub fn follow_directory(&self, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
        let state = self.clone();
        tokio::spawn(async move {
            let mut seen = None;
            let mut ticks = tokio::time::interval(crate::REVOCATION_POLL_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                match state.store.directory_revision().await {
                    Ok(revision) if seen != Some(revision) => {
                        state.directory_changed().await;
                        seen = Some(revision);
                    }
                    Ok(_) => {}
                    Err(error) => tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "cannot read the directory revision"
                    ),
                }
            }
        })
    }
}
