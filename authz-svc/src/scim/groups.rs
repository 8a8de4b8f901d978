//! `/scim/v2/Groups`: groups of provisioned members; a membership change applies to the
//! members' next request at edge.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use serde_json::Value;

use super::filter::ResourceKind;
use super::list::ListQuery;
use super::resource::{GroupInput, group_input, group_json};
use super::{GROUP_SCHEMA, ScimError, check_if_match, json_object, resource_response};
use crate::state::AuthzState;
use crate::store::DirectoryGroup;

/// Answers `GET /Groups` with a filtered page.
pub(super) async fn list(
    State(state): State<AuthzState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let query = ListQuery::parse(&params, ResourceKind::Group)?;
    let page = state
        .store
        .list_groups(&query.filter, query.offset(), query.count)
        .await?;
    let resources = page
        .items
        .iter()
        .map(|group| group_json(&state, group))
        .collect();
    Ok(query.respond(resources, page.total))
}

/// Answers `POST /Groups`.
pub(super) async fn create(
    State(state): State<AuthzState>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = group_input(&json_object(&body)?)?;
    let now = crate::token::now();
    let group = DirectoryGroup {
        id: uuid::Uuid::now_v7().to_string(),
        display_name: input.display_name,
        external_id: input.external_id,
        members: input.members,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_group(&group).await?;
    state.directory_changed().await;
    state.directory_audited("group", &group.id, "create");
    tracing::info!(group = %group.id, members = group.members.len(), "scim group created");
    Ok(resource_response(
        StatusCode::CREATED,
        &group_json(&state, &group),
    ))
}

/// Answers `GET /Groups/{id}`.
pub(super) async fn show(
    State(state): State<AuthzState>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let group = existing(&state, &id).await?;
    Ok(resource_response(
        StatusCode::OK,
        &group_json(&state, &group),
    ))
}

/// Answers `PUT /Groups/{id}`.
pub(super) async fn replace(
    State(state): State<AuthzState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let current = existing(&state, &id).await?;
    check_if_match(&headers, current.version)?;
    let input = group_input(&json_object(&body)?)?;
    update(&state, current, input).await
}

/// Answers `PATCH /Groups/{id}` (typically adding or removing `members`).
pub(super) async fn patch(
    State(state): State<AuthzState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let current = existing(&state, &id).await?;
    check_if_match(&headers, current.version)?;
    let Value::Object(mut resource) = group_json(&state, &current) else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "the group is not an object",
        ));
    };
    super::patch::apply(&mut resource, &json_object(&body)?, GROUP_SCHEMA)?;
    let input = group_input(&resource)?;
    update(&state, current, input).await
}

/// Answers `DELETE /Groups/{id}`.
pub(super) async fn delete(
    State(state): State<AuthzState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let current = existing(&state, &id).await?;
    check_if_match(&headers, current.version)?;
    if !state.store.delete_group(&id).await? {
        return Err(ScimError::not_found("Group", &id));
    }
    state.directory_changed().await;
    state.directory_audited("group", &id, "delete");
    tracing::info!(group = %id, "scim group deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn update(
    state: &AuthzState,
    current: DirectoryGroup,
    input: GroupInput,
) -> Result<Response, ScimError> {
    let group = DirectoryGroup {
        display_name: input.display_name,
        external_id: input.external_id,
        members: input.members,
        version: current.version + 1,
        updated_at: crate::token::now(),
        ..current.clone()
    };
    if !state.store.update_group(&group, current.version).await? {
        return Err(ScimError::precondition());
    }
    state.directory_changed().await;
    state.directory_audited("group", &group.id, "update");
    tracing::info!(group = %group.id, members = group.members.len(), "scim group changed");
    Ok(resource_response(
        StatusCode::OK,
        &group_json(state, &group),
    ))
}

async fn existing(state: &AuthzState, id: &str) -> Result<DirectoryGroup, ScimError> {
    state
        .store
        .group(id)
        .await?
        .ok_or_else(|| ScimError::not_found("Group", id))
}
