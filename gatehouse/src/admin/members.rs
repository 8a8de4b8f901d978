//! Members and groups of the authorization server's directory through the admin API: the
//! same directory SCIM writes, so a deactivation here offboards the member exactly as the
//! identity provider's would (tokens refused at every edge within a second, credentials purged).

use authz_svc::{DirectoryGroup, GroupCommand, MemberCommand, MemberRecord};
use proto::audit::v1::EventKind;
use secrecy::SecretString;

use super::model::{GroupInput, GroupView, MemberInput, MemberView};
use super::{Action, Admin, AdminCaller, AdminError};

impl Admin {
    /// Lists the directory's members, oldest first.
    pub(crate) async fn members(
        &self,
        caller: &AdminCaller,
    ) -> Result<Vec<MemberView>, AdminError> {
        let outcome = self
            .inner
            .authz
            .directory_members()
            .await
            .map_err(AdminError::from);
        let action = Action::read(EventKind::AdminChange, "list", "member", "");
        self.audited(caller, &action, outcome)
            .map(|members| members.iter().map(MemberView::from).collect())
    }

    /// Returns one member by id or user name.
    pub(crate) async fn member(
        &self,
        caller: &AdminCaller,
        key: &str,
    ) -> Result<MemberView, AdminError> {
        let outcome = self
            .inner
            .authz
            .directory_member(key)
            .await
            .map_err(AdminError::from);
        let action = Action::read(EventKind::AdminChange, "read", "member", key);
        self.audited(caller, &action, outcome)
            .map(|member| MemberView::from(&member))
    }

    /// Creates a member.
    pub(crate) async fn create_member(
        &self,
        caller: &AdminCaller,
        input: MemberInput,
    ) -> Result<MemberView, AdminError> {
        let name = input.user_name.clone();
        let outcome = self
            .inner
            .authz
            .create_directory_member(MemberCommand::from(input))
            .await
            .map_err(AdminError::from);
        let action = Action {
            changed_fields: &["user_name", "display_name", "external_id", "active"],
            ..Action::read(EventKind::AdminChange, "create", "member", &name)
        };
        self.audited(caller, &action, outcome)
            .map(|member| MemberView::from(&member))
    }

    /// Gives a member the state `input` describes; `active: false` offboards it.
    pub(crate) async fn update_member(
        &self,
        caller: &AdminCaller,
        key: &str,
        input: MemberInput,
    ) -> Result<MemberView, AdminError> {
        let outcome = self
            .inner
            .authz
            .update_directory_member(key, MemberCommand::from(input))
            .await
            .map_err(AdminError::from);
        let action = Action {
            changed_fields: &["user_name", "display_name", "external_id", "active"],
            ..Action::read(EventKind::AdminChange, "update", "member", key)
        };
        self.audited(caller, &action, outcome)
            .map(|member| MemberView::from(&member))
    }

    /// Deactivates a member: its tokens stop working at every edge within a second and its
    /// per-user credentials are purged.
    pub(crate) async fn deactivate_member(
        &self,
        caller: &AdminCaller,
        key: &str,
    ) -> Result<MemberView, AdminError> {
        let outcome = self
            .inner
            .authz
            .deactivate_directory_member(key)
            .await
            .map_err(AdminError::from);
        let action = Action {
            changed_fields: &["active"],
            ..Action::read(EventKind::AdminChange, "deactivate", "member", key)
        };
        self.audited(caller, &action, outcome)
            .map(|member| MemberView::from(&member))
    }

    /// Lists the directory's groups, oldest first.
    pub(crate) async fn groups(&self, caller: &AdminCaller) -> Result<Vec<GroupView>, AdminError> {
        let outcome = self
            .inner
            .authz
            .directory_groups()
            .await
            .map_err(AdminError::from);
        let action = Action::read(EventKind::AdminChange, "list", "group", "");
        self.audited(caller, &action, outcome)
            .map(|groups| groups.iter().map(GroupView::from).collect())
    }

    /// Returns one group by id or name.
    pub(crate) async fn group(
        &self,
        caller: &AdminCaller,
        key: &str,
    ) -> Result<GroupView, AdminError> {
        let outcome = self
            .inner
            .authz
            .directory_group(key)
            .await
            .map_err(AdminError::from);
        let action = Action::read(EventKind::AdminChange, "read", "group", key);
        self.audited(caller, &action, outcome)
            .map(|group| GroupView::from(&group))
    }

    /// Creates a group; its members' next requests are decided with it.
    pub(crate) async fn create_group(
        &self,
        caller: &AdminCaller,
        input: GroupInput,
    ) -> Result<GroupView, AdminError> {
        let name = input.name.clone();
        let outcome = self
            .inner
            .authz
            .create_directory_group(GroupCommand::from(input))
            .await
            .map_err(AdminError::from);
        let action = Action {
            changed_fields: &["name", "external_id", "members"],
            ..Action::read(EventKind::AdminChange, "create", "group", &name)
        };
        self.audited(caller, &action, outcome)
            .map(|group| GroupView::from(&group))
    }

    /// Gives a group the name and members `input` describes.
    pub(crate) async fn update_group(
        &self,
        caller: &AdminCaller,
        key: &str,
        input: GroupInput,
    ) -> Result<GroupView, AdminError> {
        let outcome = self
            .inner
            .authz
            .update_directory_group(key, GroupCommand::from(input))
            .await
            .map_err(AdminError::from);
        let action = Action {
            changed_fields: &["name", "external_id", "members"],
            ..Action::read(EventKind::AdminChange, "update", "group", key)
        };
        self.audited(caller, &action, outcome)
            .map(|group| GroupView::from(&group))
    }

    /// Deletes a group.
    pub(crate) async fn delete_group(
        &self,
        caller: &AdminCaller,
        key: &str,
    ) -> Result<GroupView, AdminError> {
        let outcome = self
            .inner
            .authz
            .delete_directory_group(key)
            .await
            .map_err(AdminError::from);
        let action = Action::read(EventKind::AdminChange, "delete", "group", key);
        self.audited(caller, &action, outcome)
            .map(|group| GroupView::from(&group))
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

impl From<&MemberRecord> for MemberView {
    fn from(record: &MemberRecord) -> Self {
        Self {
            id: record.user.id.clone(),
            user_name: record.user.user_name.clone(),
            display_name: record.user.display_name.clone(),
            external_id: record.user.external_id.clone(),
            active: record.user.active,
            groups: record.groups.clone(),
            created_at: record.user.created_at,
            updated_at: record.user.updated_at,
        }
    }
}

impl From<&DirectoryGroup> for GroupView {
    fn from(group: &DirectoryGroup) -> Self {
        Self {
            id: group.id.clone(),
            name: group.display_name.clone(),
            external_id: group.external_id.clone(),
            members: group.members.clone(),
            created_at: group.created_at,
            updated_at: group.updated_at,
        }
    }
}
