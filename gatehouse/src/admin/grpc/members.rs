//! The member directory's RPCs of the admin gRPC face: decode, call the admin API, encode.

use proto::admin::v1 as pb;
use tonic::{Request, Response, Status};

use super::AdminGrpc;

pub(super) async fn list_members(
    grpc: &AdminGrpc,
    request: Request<pb::ListMembersRequest>,
) -> Result<Response<pb::ListMembersResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let members = grpc.0.members(&caller).await?;
    Ok(Response::new(pb::ListMembersResponse {
        members: members.into_iter().map(pb::Member::from).collect(),
    }))
}

pub(super) async fn get_member(
    grpc: &AdminGrpc,
    request: Request<pb::GetMemberRequest>,
) -> Result<Response<pb::GetMemberResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let member = grpc.0.member(&caller, &request.get_ref().member).await?;
    Ok(Response::new(pb::GetMemberResponse {
        member: Some(member.into()),
    }))
}

pub(super) async fn create_member(
    grpc: &AdminGrpc,
    request: Request<pb::CreateMemberRequest>,
) -> Result<Response<pb::CreateMemberResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let input = request.into_inner().member.unwrap_or_default();
    let member = grpc.0.create_member(&caller, input.into()).await?;
    Ok(Response::new(pb::CreateMemberResponse {
        member: Some(member.into()),
    }))
}

pub(super) async fn update_member(
    grpc: &AdminGrpc,
    request: Request<pb::UpdateMemberRequest>,
) -> Result<Response<pb::UpdateMemberResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let message = request.into_inner();
    let input = message.member.unwrap_or_default();
    let member = grpc
        .0
        .update_member(&caller, &message.key, input.into())
        .await?;
    Ok(Response::new(pb::UpdateMemberResponse {
        member: Some(member.into()),
    }))
}

pub(super) async fn deactivate_member(
    grpc: &AdminGrpc,
    request: Request<pb::DeactivateMemberRequest>,
) -> Result<Response<pb::DeactivateMemberResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let member = grpc
        .0
        .deactivate_member(&caller, &request.get_ref().member)
        .await?;
    Ok(Response::new(pb::DeactivateMemberResponse {
        member: Some(member.into()),
    }))
}

pub(super) async fn list_groups(
    grpc: &AdminGrpc,
    request: Request<pb::ListGroupsRequest>,
) -> Result<Response<pb::ListGroupsResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let groups = grpc.0.groups(&caller).await?;
    Ok(Response::new(pb::ListGroupsResponse {
        groups: groups.into_iter().map(pb::Group::from).collect(),
    }))
}

pub(super) async fn get_group(
    grpc: &AdminGrpc,
    request: Request<pb::GetGroupRequest>,
) -> Result<Response<pb::GetGroupResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let group = grpc.0.group(&caller, &request.get_ref().group).await?;
    Ok(Response::new(pb::GetGroupResponse {
        group: Some(group.into()),
    }))
}

pub(super) async fn create_group(
    grpc: &AdminGrpc,
    request: Request<pb::CreateGroupRequest>,
) -> Result<Response<pb::CreateGroupResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let input = request.into_inner().group.unwrap_or_default();
    let group = grpc.0.create_group(&caller, input.into()).await?;
    Ok(Response::new(pb::CreateGroupResponse {
        group: Some(group.into()),
    }))
}

pub(super) async fn update_group(
    grpc: &AdminGrpc,
    request: Request<pb::UpdateGroupRequest>,
) -> Result<Response<pb::UpdateGroupResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let message = request.into_inner();
    let input = message.group.unwrap_or_default();
    let group = grpc
        .0
        .update_group(&caller, &message.key, input.into())
        .await?;
    Ok(Response::new(pb::UpdateGroupResponse {
        group: Some(group.into()),
    }))
}

pub(super) async fn delete_group(
    grpc: &AdminGrpc,
    request: Request<pb::DeleteGroupRequest>,
) -> Result<Response<pb::DeleteGroupResponse>, Status> {
    let caller = grpc.caller(&request).await?;
    let group = grpc
        .0
        .delete_group(&caller, &request.get_ref().group)
        .await?;
    Ok(Response::new(pb::DeleteGroupResponse {
        group: Some(group.into()),
    }))
}
