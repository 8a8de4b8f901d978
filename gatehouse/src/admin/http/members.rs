//! The members and groups operations of the admin API's HTTP face.

use axum::Json;
use axum::extract::{Path, State};

use super::super::model::{ErrorBody, GroupInput, GroupView, MemberInput, MemberView};
use super::super::{Admin, AdminCaller, AdminError};
use super::input::Input;

/// Lists the directory's members.
#[utoipa::path(get, path = "/admin/v1/members", tag = "members",
    responses((status = 200, body = Vec<MemberView>)))]
pub(super) async fn list_members(
    State(admin): State<Admin>,
    caller: AdminCaller,
) -> Result<Json<Vec<MemberView>>, AdminError> {
    admin.members(&caller).await.map(Json)
}

/// Creates a member of the directory.
#[utoipa::path(post, path = "/admin/v1/members", tag = "members", request_body = MemberInput,
    responses((status = 200, body = MemberView), (status = 409, body = ErrorBody)))]
pub(super) async fn create_member(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Input(input): Input<MemberInput>,
) -> Result<Json<MemberView>, AdminError> {
    admin.create_member(&caller, input).await.map(Json)
}

/// Returns one member by id or user name.
#[utoipa::path(get, path = "/admin/v1/members/{member}", tag = "members",
    params(("member" = String, Path, description = "the member's id or user name")),
    responses((status = 200, body = MemberView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_member(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(member): Path<String>,
) -> Result<Json<MemberView>, AdminError> {
    admin.member(&caller, &member).await.map(Json)
}

/// Gives a member the state described; `active: false` offboards it.
#[utoipa::path(put, path = "/admin/v1/members/{member}", tag = "members",
    params(("member" = String, Path, description = "the member's id or user name")),
    request_body = MemberInput,
    responses((status = 200, body = MemberView), (status = 404, body = ErrorBody)))]
pub(super) async fn put_member(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(member): Path<String>,
    Input(input): Input<MemberInput>,
) -> Result<Json<MemberView>, AdminError> {
    admin.update_member(&caller, &member, input).await.map(Json)
}

/// Deactivates a member: its tokens stop working at every edge within a second.
#[utoipa::path(post, path = "/admin/v1/members/{member}/deactivate", tag = "members",
    params(("member" = String, Path, description = "the member's id or user name")),
    responses((status = 200, body = MemberView), (status = 404, body = ErrorBody)))]
pub(super) async fn deactivate_member(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(member): Path<String>,
) -> Result<Json<MemberView>, AdminError> {
    admin.deactivate_member(&caller, &member).await.map(Json)
}

/// Lists the directory's groups.
#[utoipa::path(get, path = "/admin/v1/groups", tag = "members",
    responses((status = 200, body = Vec<GroupView>)))]
pub(super) async fn list_groups(
    State(admin): State<Admin>,
    caller: AdminCaller,
) -> Result<Json<Vec<GroupView>>, AdminError> {
    admin.groups(&caller).await.map(Json)
}

/// Creates a group.
#[utoipa::path(post, path = "/admin/v1/groups", tag = "members", request_body = GroupInput,
    responses((status = 200, body = GroupView), (status = 409, body = ErrorBody),
              (status = 400, description = "a member that is not in the directory", body = ErrorBody)))]
pub(super) async fn create_group(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Input(input): Input<GroupInput>,
) -> Result<Json<GroupView>, AdminError> {
    admin.create_group(&caller, input).await.map(Json)
}

/// Returns one group by id or name.
#[utoipa::path(get, path = "/admin/v1/groups/{group}", tag = "members",
    params(("group" = String, Path, description = "the group's id or name")),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
pub(super) async fn get_group(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(group): Path<String>,
) -> Result<Json<GroupView>, AdminError> {
    admin.group(&caller, &group).await.map(Json)
}

/// Gives a group the name and members described.
#[utoipa::path(put, path = "/admin/v1/groups/{group}", tag = "members",
    params(("group" = String, Path, description = "the group's id or name")),
    request_body = GroupInput,
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
pub(super) async fn put_group(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(group): Path<String>,
    Input(input): Input<GroupInput>,
) -> Result<Json<GroupView>, AdminError> {
    admin.update_group(&caller, &group, input).await.map(Json)
}

/// Deletes a group.
#[utoipa::path(delete, path = "/admin/v1/groups/{group}", tag = "members",
    params(("group" = String, Path, description = "the group's id or name")),
    responses((status = 200, body = GroupView), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_group(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(group): Path<String>,
) -> Result<Json<GroupView>, AdminError> {
    admin.delete_group(&caller, &group).await.map(Json)
}
