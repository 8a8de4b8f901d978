//! Members and groups of the authorization server's directory through the admin API: the
//! same directory SCIM writes, so a deactivation here offboards the member exactly as the
//! identity provider's would (tokens refused at every edge within a second, credentials purged).

use authz_svc::{DirectoryGroup, GroupCommand, MemberCommand, MemberRecord};
use proto::audit::v1::EventKind;
use secrecy::SecretString;

use super::model::{GroupInput, GroupView, MemberInput, MemberView};
use super::{Action, Admin, AdminCaller, AdminError};

/// What a change of a member may set, named in its audit event.
const MEMBER_FIELDS: &[&str] = &["user_name", "display_name", "external_id", "active"];
/// What a change of a group may set, named in its audit event.
const GROUP_FIELDS: &[&str] = &["name", "external_id", "members"];

impl Admin {
    /// Lists the directory's members, oldest first.
    pub(crate) async fn members(
        &self,
        caller: &AdminCaller,
    ) -> Result<Vec<MemberView>, AdminError> {
        let action = Action::read(EventKind::AdminChange, "list", "member", "");
        let members = self.inner.authz.directory_members();
        let members = self.directory(caller, &action, members).await?;
        Ok(members.into_iter().map(MemberView::from).collect())
    }

    /// Returns one member by id or user name.
    pub(crate) async fn member(
        &self,
        caller: &AdminCaller,
        key: &str,
    ) -> Result<MemberView, AdminError> {
        let action = Action::read(EventKind::AdminChange, "read", "member", key);
        let member = self.inner.authz.directory_member(key);
        self.directory(caller, &action, member)
            .await
            .map(MemberView::from)
    }

    /// Creates a member.
    pub(crate) async fn create_member(
        &self,
        caller: &AdminCaller,
        input: MemberInput,
    ) -> Result<MemberView, AdminError> {
        let name = input.user_name.clone();
        let action =
            Action::read(EventKind::AdminChange, "create", "member", &name).changing(MEMBER_FIELDS);
        let member = self.inner.authz.create_directory_member(input.into());
        self.directory(caller, &action, member)
            .await
            .map(MemberView::from)
    }

    /// Gives a member the state `input` describes; `active: false` offboards it.
    pub(crate) async fn update_member(
        &self,
        caller: &AdminCaller,
        key: &str,
        input: MemberInput,
    ) -> Result<MemberView, AdminError> {
        let action =
            Action::read(EventKind::AdminChange, "update", "member", key).changing(MEMBER_FIELDS);
        let member = self.inner.authz.update_directory_member(key, input.into());
        self.directory(caller, &action, member)
            .await
            .map(MemberView::from)
    }

    /// Deactivates a member: its tokens stop working at every edge within a second and its
    /// per-user credentials are purged.
    pub(crate) async fn deactivate_member(
        &self,
        caller: &AdminCaller,
        key: &str,
    ) -> Result<MemberView, AdminError> {
        let action =
            Action::read(EventKind::AdminChange, "deactivate", "member", key).changing(&["active"]);
        let member = self.inner.authz.deactivate_directory_member(key);
        self.directory(caller, &action, member)
            .await
            .map(MemberView::from)
    }

    /// Lists the directory's groups, oldest first.
    pub(crate) async fn groups(&self, caller: &AdminCaller) -> Result<Vec<GroupView>, AdminError> {
        let action = Action::read(EventKind::AdminChange, "list", "group", "");
        let groups = self.inner.authz.directory_groups();
        let groups = self.directory(caller, &action, groups).await?;
        Ok(groups.into_iter().map(GroupView::from).collect())
    }

    /// Returns one group by id or name.
    pub(crate) async fn group(
        &self,
        caller: &AdminCaller,
        key: &str,
    ) -> Result<GroupView, AdminError> {
        let action = Action::read(EventKind::AdminChange, "read", "group", key);
        let group = self.inner.authz.directory_group(key);
        self.directory(caller, &action, group)
            .await
            .map(GroupView::from)
    }

    /// Creates a group; its members' next requests are decided with it.
    pub(crate) async fn create_group(
        &self,
        caller: &AdminCaller,
        input: GroupInput,
    ) -> Result<GroupView, AdminError> {
        let name = input.name.clone();
        let action =
            Action::read(EventKind::AdminChange, "create", "group", &name).changing(GROUP_FIELDS);
        let group = self.inner.authz.create_directory_group(input.into());
        self.directory(caller, &action, group)
            .await
            .map(GroupView::from)
    }

    /// Gives a group the name and members `input` describes.
    pub(crate) async fn update_group(
        &self,
        caller: &AdminCaller,
        key: &str,
        input: GroupInput,
    ) -> Result<GroupView, AdminError> {
        let action =
            Action::read(EventKind::AdminChange, "update", "group", key).changing(GROUP_FIELDS);
        let group = self.inner.authz.update_directory_group(key, input.into());
        self.directory(caller, &action, group)
            .await
            .map(GroupView::from)
    }

    /// Deletes a group.
    pub(crate) async fn delete_group(
        &self,
        caller: &AdminCaller,
        key: &str,
    ) -> Result<GroupView, AdminError> {
        let action = Action::read(EventKind::AdminChange, "delete", "group", key);
        let group = self.inner.authz.delete_directory_group(key);
        self.directory(caller, &action, group)
            .await
            .map(GroupView::from)
    }

    /// Awaits one call of authz-svc's directory and audits it as `action`: the one place a
    /// directory operation's outcome becomes an admin event, whichever way it went.
    async fn directory<T>(
        &self,
        caller: &AdminCaller,
        action: &Action<'_>,
        call: impl Future<Output = Result<T, authz_svc::Error>>,
    ) -> Result<T, AdminError> {
        let outcome = call.await.map_err(AdminError::from);
        self.audited(caller, action, outcome)
    }
}

impl From<MemberInput> for MemberCommand {
    fn from(input: MemberInput) -> Self {
        Self {
            user_name: input.user_name,
            display_name: input.display_name,
            external_id: input.external_id,
            active: input.active,
            password: input.password.map(SecretString::from),
        }
    }
}

impl From<GroupInput> for GroupCommand {
    fn from(input: GroupInput) -> Self {
        Self {
            display_name: input.name,
            external_id: input.external_id,
            members: input.members,
        }
    }
}

impl From<MemberRecord> for MemberView {
    fn from(record: MemberRecord) -> Self {
        let user = record.user;
        Self {
            id: user.id,
            user_name: user.user_name,
            display_name: user.display_name,
            external_id: user.external_id,
            active: user.active,
            groups: record.groups,
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

impl From<DirectoryGroup> for GroupView {
    fn from(group: DirectoryGroup) -> Self {
        Self {
            id: group.id,
            name: group.display_name,
            external_id: group.external_id,
            members: group.members,
            created_at: group.created_at,
            updated_at: group.updated_at,
        }
    }
}
