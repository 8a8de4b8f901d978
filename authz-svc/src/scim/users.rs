//! `/scim/v2/Users`: provisioned members. Deactivating or deleting one offboards it.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse as _, Response};
use serde_json::Value;

use super::filter::ResourceKind;
use super::list::ListQuery;
use super::resource::{UserInput, user_input, user_json};
use super::{ScimError, USER_SCHEMA, check_if_match, json_object, resource_response};
use crate::state::AuthzState;
use crate::store::DirectoryUser;

/// Answers `GET /Users` with a filtered page.
pub(super) async fn list(
    State(state): State<AuthzState>,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Response, ScimError> {
    let query = ListQuery::parse(&params, ResourceKind::User)?;
    let page = state
        .store
        .list_users(&query.filter, query.offset(), query.count)
        .await?;
    let mut resources = Vec::with_capacity(page.items.len());
    for user in &page.items {
        let groups = state.store.user_groups(&user.id).await?;
        resources.push(user_json(&state, user, &groups));
    }
    Ok(query.respond(resources, page.total))
}

/// Answers `POST /Users`: creates the member.
pub(super) async fn create(
    State(state): State<AuthzState>,
    body: Bytes,
) -> Result<Response, ScimError> {
    let input = user_input(&json_object(&body)?)?;
    ensure_not_configured(&state, &input.user_name)?;
    let now = crate::token::now();
    let password_hash = hash(input.password.clone()).await?;
    let user = DirectoryUser {
        id: uuid::Uuid::now_v7().to_string(),
        user_name: input.user_name,
        external_id: input.external_id,
        display_name: input.display_name,
        active: input.active,
        password_hash,
        attributes: input.attributes,
        version: 1,
        created_at: now,
        updated_at: now,
    };
    state.store.insert_user(&user).await?;
    state.directory_changed().await;
    state.directory_audited("member", &user.id, "create");
    tracing::info!(member = %user.id, "scim user created");
    Ok(resource_response(
        StatusCode::CREATED,
        &user_json(&state, &user, &[]),
    ))
}

/// Answers `GET /Users/{id}`.
pub(super) async fn show(
    State(state): State<AuthzState>,
    Path(id): Path<String>,
) -> Result<Response, ScimError> {
    let user = existing(&state, &id).await?;
    let groups = state.store.user_groups(&id).await?;
    Ok(resource_response(
        StatusCode::OK,
        &user_json(&state, &user, &groups),
    ))
}

/// Answers `PUT /Users/{id}`: replaces the member's attributes (a missing password is kept).
pub(super) async fn replace(
    State(state): State<AuthzState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let current = existing(&state, &id).await?;
    check_if_match(&headers, current.version)?;
    let input = user_input(&json_object(&body)?)?;
    update(&state, current, input).await
}

/// Answers `PATCH /Users/{id}` (e.g. `replace active false` from the identity provider).
pub(super) async fn patch(
    State(state): State<AuthzState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ScimError> {
    let current = existing(&state, &id).await?;
    check_if_match(&headers, current.version)?;
    let groups = state.store.user_groups(&id).await?;
    let Value::Object(mut resource) = user_json(&state, &current, &groups) else {
        return Err(ScimError::bad("invalidSyntax", "the user is not an object"));
    };
    super::patch::apply(&mut resource, &json_object(&body)?, USER_SCHEMA)?;
    let input = user_input(&resource)?;
    update(&state, current, input).await
}

/// Answers `DELETE /Users/{id}`: removes the member and offboards it.
pub(super) async fn delete(
    State(state): State<AuthzState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ScimError> {
    let current = existing(&state, &id).await?;
    check_if_match(&headers, current.version)?;
    if !state.store.delete_user(&id).await? {
        return Err(ScimError::not_found("User", &id));
    }
    state.directory_changed().await;
    state.member_offboarded(&id).await?;
    state.directory_audited("member", &id, "delete");
    tracing::info!(member = %id, "scim user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Stores `input` over `current`; a member that stops being active is offboarded.
async fn update(
    state: &AuthzState,
    current: DirectoryUser,
    input: UserInput,
) -> Result<Response, ScimError> {
    if !input.user_name.eq_ignore_ascii_case(&current.user_name) {
        ensure_not_configured(state, &input.user_name)?;
    }
    let password_hash = match hash(input.password.clone()).await? {
        Some(hash) => Some(hash),
        None => current.password_hash.clone(),
    };
    let user = DirectoryUser {
        user_name: input.user_name,
        external_id: input.external_id,
        display_name: input.display_name,
        active: input.active,
        password_hash,
        attributes: input.attributes,
        version: current.version + 1,
        updated_at: crate::token::now(),
        ..current.clone()
    };
    if !state.store.update_user(&user, current.version).await? {
        return Err(ScimError::precondition());
    }
    state.directory_changed().await;
    if current.active && !user.active {
        state.member_offboarded(&user.id).await?;
        state.directory_audited("member", &user.id, "deactivate");
        tracing::info!(member = %user.id, "scim user deactivated");
    } else {
        state.directory_audited("member", &user.id, "update");
    }
    let groups = state.store.user_groups(&user.id).await?;
    Ok(resource_response(
        StatusCode::OK,
        &user_json(state, &user, &groups),
    ))
}

async fn existing(state: &AuthzState, id: &str) -> Result<DirectoryUser, ScimError> {
    state
        .store
        .user(id)
        .await?
        .ok_or_else(|| ScimError::not_found("User", id))
}

/// Refuses a `userName` a configured member of the built-in login already has: one name
/// must not sign in as two members.
fn ensure_not_configured(state: &AuthzState, user_name: &str) -> Result<(), ScimError> {
    if state.members.contains(user_name) {
        return Err(ScimError::new(
            StatusCode::CONFLICT,
            Some("uniqueness"),
            "userName is taken by a configured member",
        ));
    }
    Ok(())
}

async fn hash(password: Option<String>) -> Result<Option<String>, ScimError> {
    match password {
        Some(password) if !password.is_empty() => {
            Ok(Some(crate::member::hash_password(password).await?))
        }
        _ => Ok(None),
    }
}
