//! The member directory half of the store: SCIM-provisioned users and groups, behind
//! [`DirectoryStore`].

use async_trait::async_trait;

use crate::error::Error;

/// Describes a provisioned user: a member Gatehouse learned of from the identity provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryUser {
    /// Is the server-assigned SCIM `id`; it is also the member id tokens carry as `sub`,
    /// so that a rename keeps the member's grants and credentials.
    pub id: String,
    /// Is the unique, case-insensitive `userName` the member logs in with.
    pub user_name: String,
    /// Is the identity provider's own identifier.
    pub external_id: Option<String>,
    /// Is the name shown for the member.
    pub display_name: Option<String>,
    /// Says whether the member may sign in and keep using tokens.
    pub active: bool,
    /// Holds the argon2id hash of a provisioned `password`, never the password.
    pub password_hash: Option<String>,
    /// Holds the other SCIM attributes (`name`, `emails`, …) as the client sent them.
    pub attributes: serde_json::Value,
    /// Counts changes; the resource's ETag.
    pub version: i64,
    /// Records when the user was created (unix seconds).
    pub created_at: i64,
    /// Records when it last changed.
    pub updated_at: i64,
}

/// Describes a provisioned group; its display name is the Cedar `Group` policies grant by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryGroup {
    /// Is the server-assigned SCIM `id`.
    pub id: String,
    /// Is the unique group name.
    pub display_name: String,
    /// Is the identity provider's own identifier.
    pub external_id: Option<String>,
    /// Lists the member users' ids, sorted.
    pub members: Vec<String>,
    /// Counts changes; the resource's ETag.
    pub version: i64,
    /// Records when the group was created (unix seconds).
    pub created_at: i64,
    /// Records when it last changed.
    pub updated_at: i64,
}

/// Selects directory resources by one attribute (the SCIM filters supported).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectoryFilter {
    /// Every resource.
    All,
    /// Users whose `userName` equals this, ignoring case.
    UserName(String),
    /// Resources whose `externalId` equals this exactly.
    ExternalId(String),
    /// Resources whose `displayName` equals this, ignoring case.
    DisplayName(String),
}

/// Is one page of a listing and the number of matches on every page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryPage<T> {
    /// Holds this page's resources, oldest first.
    pub items: Vec<T>,
    /// Counts every match.
    pub total: u64,
}

/// Is what policy needs of one provisioned member: whether it is active and its groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberState {
    /// Is the member id (the user's SCIM `id`).
    pub id: String,
    /// Says whether the member is active.
    pub active: bool,
    /// Lists the display names of the member's groups, sorted.
    pub groups: Vec<String>,
}

/// Stores the member directory; every method is one transaction, and every write moves
/// the directory revision.
#[async_trait]
pub trait DirectoryStore: Send + Sync {
    /// Adds a user; a taken `userName` is [`Error::DirectoryConflict`].
    async fn insert_user(&self, user: &DirectoryUser) -> Result<(), Error>;
    /// Returns the user `id`.
    async fn user(&self, id: &str) -> Result<Option<DirectoryUser>, Error>;
    /// Returns the user whose `userName` is `user_name`, ignoring case.
    async fn user_by_name(&self, user_name: &str) -> Result<Option<DirectoryUser>, Error>;
    /// Replaces the user when its stored version is still `expected_version`; returns
    /// `false` (changing nothing) when it moved or the user is gone.
    async fn update_user(&self, user: &DirectoryUser, expected_version: i64)
    -> Result<bool, Error>;
    /// Deletes the user and its memberships; returns whether it existed.
    async fn delete_user(&self, id: &str) -> Result<bool, Error>;
    /// Returns a page of users, oldest first.
    async fn list_users(
        &self,
        filter: &DirectoryFilter,
        offset: u64,
        limit: u64,
    ) -> Result<DirectoryPage<DirectoryUser>, Error>;
    /// Returns the `(id, displayName)` of every group the user is in, by name.
    async fn user_groups(&self, id: &str) -> Result<Vec<(String, String)>, Error>;
    /// Adds a group with its members; a taken name is [`Error::DirectoryConflict`], a
    /// member that is not a user [`Error::DirectoryReference`].
    async fn insert_group(&self, group: &DirectoryGroup) -> Result<(), Error>;
    /// Returns the group `id` with its members.
    async fn group(&self, id: &str) -> Result<Option<DirectoryGroup>, Error>;
    /// Replaces the group and its members when its version is still `expected_version`.
    async fn update_group(
        &self,
        group: &DirectoryGroup,
        expected_version: i64,
    ) -> Result<bool, Error>;
    /// Deletes the group; returns whether it existed.
    async fn delete_group(&self, id: &str) -> Result<bool, Error>;
    /// Returns a page of groups with their members, oldest first.
    async fn list_groups(
        &self,
        filter: &DirectoryFilter,
        offset: u64,
        limit: u64,
    ) -> Result<DirectoryPage<DirectoryGroup>, Error>;
    /// Returns every user's activity and group names, for the policy view.
    async fn member_states(&self) -> Result<Vec<MemberState>, Error>;
    /// Returns the directory revision, which every write moves.
    async fn directory_revision(&self) -> Result<i64, Error>;
    /// Revokes every grant of the member `id` and logs the member's revocation
    /// (tokens issued at or before `revoked_at`, live until `expires_at` at most).
    async fn revoke_member(&self, id: &str, revoked_at: i64, expires_at: i64) -> Result<(), Error>;
}
