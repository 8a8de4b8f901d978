//! The member directory as the admin API manages it: the same users and groups SCIM writes,
//! with the same consequences (a deactivated member is offboarded at every edge and its
//! per-user credentials purged). The caller audits each change under its own principal.

use secrecy::{ExposeSecret as _, SecretString};

use crate::error::Error;
use crate::state::AuthzState;
use crate::store::{DirectoryFilter, DirectoryGroup, DirectoryUser};

/// Bounds one listing of members or groups (the admin API lists them whole).
const LIST_LIMIT: u64 = 10_000;

/// Describes a member to create or the state to give an existing one.
#[derive(Debug, Clone)]
pub struct MemberCommand {
    /// Is the unique, case-insensitive name the member logs in with.
    pub user_name: String,
    /// Is the name shown for the member.
    pub display_name: Option<String>,
    /// Is the identity provider's own identifier.
    pub external_id: Option<String>,
    /// Says whether the member may sign in and keep using tokens.
    pub active: bool,
    /// Sets a password for the built-in login; `None` keeps the current one.
    pub password: Option<SecretString>,
}

/// Describes a group to create or the state to give an existing one.
#[derive(Debug, Clone)]
pub struct GroupCommand {
    /// Is the unique group name, the Cedar `Group` policies grant by.
    pub display_name: String,
    /// Is the identity provider's own identifier.
    pub external_id: Option<String>,
    /// Lists the members, by id or user name.
    pub members: Vec<String>,
}

/// Is a member with its groups' names, as administrators see it (never a password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Is the member as stored.
    pub user: DirectoryUser,
    /// Lists the names of the member's groups, sorted.
    pub groups: Vec<String>,
}

impl AuthzState {
    /// Returns every provisioned member with its groups, oldest first.
    pub async fn directory_members(&self) -> Result<Vec<MemberRecord>, Error> {
        let page = self
            .store
            .list_users(&DirectoryFilter::All, 0, LIST_LIMIT)
            .await?;
        let mut members = Vec::with_capacity(page.items.len());
        for user in page.items {
            members.push(self.member_record(user).await?);
        }
        Ok(members)
    }

    /// Returns the member whose id or user name is `key`.
    pub async fn directory_member(&self, key: &str) -> Result<MemberRecord, Error> {
        let user = self.user_by_key(key).await?;
        self.member_record(user).await
    }

    /// Creates a member; a user name a configured member already has is refused.
    pub async fn create_directory_member(
        &self,
        command: MemberCommand,
    ) -> Result<MemberRecord, Error> {
        self.ensure_unconfigured(&command.user_name)?;
        let now = crate::token::now();
        let user = DirectoryUser {
            id: uuid::Uuid::now_v7().to_string(),
            user_name: command.user_name,
            external_id: command.external_id,
            display_name: command.display_name,
            active: command.active,
            password_hash: hash(command.password).await?,
            attributes: serde_json::Value::Object(serde_json::Map::new()),
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_user(&user).await?;
        self.directory_changed().await;
        tracing::info!(member = %user.id, "member created through the admin api");
        self.member_record(user).await
    }

    /// Gives the member `key` the state `command` describes; a member that stops being active
    /// is offboarded exactly as a SCIM deactivation does it.
    pub async fn update_directory_member(
        &self,
        key: &str,
        command: MemberCommand,
    ) -> Result<MemberRecord, Error> {
        let current = self.user_by_key(key).await?;
        if !command.user_name.eq_ignore_ascii_case(&current.user_name) {
            self.ensure_unconfigured(&command.user_name)?;
        }
        let password_hash = match hash(command.password).await? {
            Some(hash) => Some(hash),
            None => current.password_hash.clone(),
        };
        let user = DirectoryUser {
            user_name: command.user_name,
            external_id: command.external_id,
            display_name: command.display_name,
            active: command.active,
            password_hash,
            version: current.version + 1,
            updated_at: crate::token::now(),
            ..current.clone()
        };
        if !self.store.update_user(&user, current.version).await? {
            return Err(Error::DirectoryStale(format!("member {key}")));
        }
        self.directory_changed().await;
        if current.active && !user.active {
            self.member_offboarded(&user.id).await?;
            tracing::info!(member = %user.id, "member deactivated through the admin api");
        }
        self.member_record(user).await
    }

    /// Deactivates the member `key`: its grants and tokens are revoked at every edge and its
    /// per-user credentials purged; deactivating an inactive member changes nothing.
    pub async fn deactivate_directory_member(&self, key: &str) -> Result<MemberRecord, Error> {
        let current = self.user_by_key(key).await?;
        if !current.active {
            return self.member_record(current).await;
        }
        let command = MemberCommand {
            user_name: current.user_name.clone(),
            display_name: current.display_name.clone(),
            external_id: current.external_id.clone(),
            active: false,
            password: None,
        };
        self.update_directory_member(&current.id, command).await
    }

    /// Returns every group with its members' ids, oldest first.
    pub async fn directory_groups(&self) -> Result<Vec<DirectoryGroup>, Error> {
        let page = self
            .store
            .list_groups(&DirectoryFilter::All, 0, LIST_LIMIT)
            .await?;
        Ok(page.items)
    }

    /// Returns the group whose id or name is `key`.
    pub async fn directory_group(&self, key: &str) -> Result<DirectoryGroup, Error> {
        if let Some(group) = self.store.group(key).await? {
            return Ok(group);
        }
        let named = DirectoryFilter::DisplayName(key.to_owned());
        let page = self.store.list_groups(&named, 0, 1).await?;
        page.items
            .into_iter()
            .next()
            .ok_or_else(|| Error::GroupNotFound(key.to_owned()))
    }

    /// Creates a group; its members (ids or user names) must be provisioned members.
    pub async fn create_directory_group(
        &self,
        command: GroupCommand,
    ) -> Result<DirectoryGroup, Error> {
        let now = crate::token::now();
        let group = DirectoryGroup {
            id: uuid::Uuid::now_v7().to_string(),
            display_name: command.display_name,
            external_id: command.external_id,
            members: self.member_ids(&command.members).await?,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        self.store.insert_group(&group).await?;
        self.directory_changed().await;
        Ok(group)
    }

    /// Gives the group `key` the name and members `command` describes; its members' next
    /// requests at edge are decided on the new membership.
    pub async fn update_directory_group(
        &self,
        key: &str,
        command: GroupCommand,
    ) -> Result<DirectoryGroup, Error> {
        let current = self.directory_group(key).await?;
        let group = DirectoryGroup {
            display_name: command.display_name,
            external_id: command.external_id,
            members: self.member_ids(&command.members).await?,
            version: current.version + 1,
            updated_at: crate::token::now(),
            ..current.clone()
        };
        if !self.store.update_group(&group, current.version).await? {
            return Err(Error::DirectoryStale(format!("group {key}")));
        }
        self.directory_changed().await;
        Ok(group)
    }

    /// Deletes the group `key`; its members keep their other groups.
    pub async fn delete_directory_group(&self, key: &str) -> Result<DirectoryGroup, Error> {
        let current = self.directory_group(key).await?;
        if !self.store.delete_group(&current.id).await? {
            return Err(Error::GroupNotFound(key.to_owned()));
        }
        self.directory_changed().await;
        Ok(current)
    }

    async fn user_by_key(&self, key: &str) -> Result<DirectoryUser, Error> {
        if let Some(user) = self.store.user(key).await? {
            return Ok(user);
        }
        self.store
            .user_by_name(key)
            .await?
            .ok_or_else(|| Error::MemberNotFound(key.to_owned()))
    }

    async fn member_record(&self, user: DirectoryUser) -> Result<MemberRecord, Error> {
        let mut groups: Vec<String> = self
            .store
            .user_groups(&user.id)
            .await?
            .into_iter()
            .map(|(_, name)| name)
            .collect();
        groups.sort();
        Ok(MemberRecord { user, groups })
    }

    /// Resolves members named by id or user name to their ids, sorted and deduplicated.
    async fn member_ids(&self, keys: &[String]) -> Result<Vec<String>, Error> {
        let mut ids = Vec::with_capacity(keys.len());
        for key in keys {
            let user = self
                .user_by_key(key)
                .await
                .map_err(|_| Error::DirectoryReference(key.clone()))?;
            ids.push(user.id);
        }
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// Refuses a user name a configured member of the built-in login already has.
    fn ensure_unconfigured(&self, user_name: &str) -> Result<(), Error> {
        if self.members.contains(user_name) {
            return Err(Error::DirectoryConflict("userName"));
        }
        Ok(())
    }
}

async fn hash(password: Option<SecretString>) -> Result<Option<String>, Error> {
    match password {
        Some(password) if !password.expose_secret().is_empty() => Ok(Some(
            crate::member::hash_password(password.expose_secret().to_owned()).await?,
        )),
        _ => Ok(None),
    }
}
