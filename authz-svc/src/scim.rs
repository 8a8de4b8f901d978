//! SCIM 2.0 provisioning (RFC 7643, RFC 7644): the identity provider creates, updates and
//! removes members and groups in the [directory](crate::directory) at `/scim/v2`.
//!
//! The identity provider authenticates with one bearer token from configuration, compared in
//! constant time. Filters, PATCH paths and ETags follow RFC 7644; the filter and PATCH path
//! grammar comes from the `scim_v2` crate, the rest (resource mapping, PATCH application on
//! the JSON representation) is here because no crate fits a store of our own.

use std::borrow::Cow;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::Error;
use crate::state::AuthzState;

mod config;
mod discovery;
mod filter;
mod groups;
mod list;
mod patch;
mod resource;
mod users;

pub use config::ScimConfig;

/// Is the schema of SCIM error responses (RFC 7644 §3.12).
pub(crate) const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// Is the core User schema.
pub(crate) const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// Is the core Group schema.
pub(crate) const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// Is SCIM's media type (RFC 7644 §3.1).
const MEDIA_TYPE: &str = "application/scim+json";

/// Caps request bodies: a group with thousands of members still fits.
const BODY_LIMIT: usize = 1024 * 1024;

/// Returns the router of the SCIM endpoints, paths relative to the origin root (`/scim/v2/…`).
///
/// Every endpoint, discovery included, needs the identity provider's bearer token; without a
/// configured token every request is refused.
pub fn scim_router(state: AuthzState) -> Router {
    Router::new()
        .route("/scim/v2/Users", get(users::list).post(users::create))
        .route(
            "/scim/v2/Users/{id}",
            get(users::show)
                .put(users::replace)
                .patch(users::patch)
                .delete(users::delete),
        )
        .route("/scim/v2/Groups", get(groups::list).post(groups::create))
        .route(
            "/scim/v2/Groups/{id}",
            get(groups::show)
                .put(groups::replace)
                .patch(groups::patch)
                .delete(groups::delete),
        )
        .route(
            "/scim/v2/ServiceProviderConfig",
            get(discovery::service_provider_config),
        )
        .route("/scim/v2/ResourceTypes", get(discovery::resource_types))
        .route(
            "/scim/v2/ResourceTypes/{name}",
            get(discovery::resource_type),
        )
        .route("/scim/v2/Schemas", get(discovery::schemas))
        .route("/scim/v2/Schemas/{uri}", get(discovery::schema))
        .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

/// Admits requests bearing the identity provider's token.
async fn authenticate(State(state): State<AuthzState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| Sha256::digest(token.trim().as_bytes()));
    let admitted = match (&state.scim_token, presented) {
        (Some(expected), Some(presented)) => bool::from(expected.ct_eq(&presented[..])),
        _ => false,
    };
    if admitted {
        return next.run(request).await;
    }
    let mut response = ScimError::new(
        StatusCode::UNAUTHORIZED,
        None,
        "a valid bearer token is required",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"gatehouse-scim\""),
    );
    response
}

/// Is a SCIM error response (RFC 7644 §3.12).
#[derive(Debug)]
pub(crate) struct ScimError {
    status: StatusCode,
    scim_type: Option<&'static str>,
    detail: Cow<'static, str>,
}

impl ScimError {
    pub(crate) fn new(
        status: StatusCode,
        scim_type: Option<&'static str>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            scim_type,
            detail: detail.into(),
        }
    }

    /// Returns a 400 of `scim_type` (`invalidFilter`, `invalidValue`, `invalidSyntax`, …).
    pub(crate) fn bad(scim_type: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Some(scim_type), detail)
    }

    pub(crate) fn not_found(kind: &str, id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            None,
            format!("{kind} {id} not found"),
        )
    }

    pub(crate) fn precondition() -> Self {
        Self::new(
            StatusCode::PRECONDITION_FAILED,
            None,
            "the resource changed since the version in If-Match",
        )
    }
}

impl From<Error> for ScimError {
    fn from(error: Error) -> Self {
        match error {
            Error::DirectoryConflict(attribute) => Self::new(
                StatusCode::CONFLICT,
                Some("uniqueness"),
                format!("{attribute} is already taken"),
            ),
            Error::DirectoryReference(member) => Self::bad(
                "invalidValue",
                format!("group member {member} is not a user"),
            ),
            error => {
                tracing::error!(
                    error = &error as &dyn std::error::Error,
                    "scim request failed"
                );
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, None, "internal error")
            }
        }
    }
}

impl IntoResponse for ScimError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "schemas": [ERROR_SCHEMA],
            "status": self.status.as_u16().to_string(),
            "detail": self.detail,
        });
        if let Some(scim_type) = self.scim_type {
            body["scimType"] = json!(scim_type);
        }
        scim_json(self.status, &body, None)
    }
}

/// Returns `body` as `application/scim+json`, with `etag` when given.
pub(crate) fn scim_json(status: StatusCode, body: &Value, etag: Option<&str>) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
    if let Some(value) = etag.and_then(|etag| HeaderValue::from_str(etag).ok()) {
        headers.insert(header::ETAG, value);
    }
    response
}

/// Returns a resource response: its ETag and, for a creation, its `Location`.
pub(crate) fn resource_response(status: StatusCode, body: &Value) -> Response {
    let etag = body["meta"]["version"].as_str();
    let mut response = scim_json(status, body, etag);
    if status == StatusCode::CREATED
        && let Some(location) = body["meta"]["location"]
            .as_str()
            .and_then(|location| HeaderValue::from_str(location).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

/// Returns the weak ETag of a resource at `version`.
pub(crate) fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// Refuses a change when `If-Match` names no ETag the resource at `version` has (412).
pub(crate) fn check_if_match(headers: &HeaderMap, version: i64) -> Result<(), ScimError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(());
    };
    let text = value.to_str().map_err(|_| ScimError::precondition())?;
    let current = etag(version);
    let strip = |tag: &str| tag.trim().trim_start_matches("W/").to_owned();
    let matches = text
        .split(',')
        .any(|tag| tag.trim() == "*" || strip(tag) == strip(&current));
    if matches {
        Ok(())
    } else {
        Err(ScimError::precondition())
    }
}

/// Parses a request body as a JSON object (SCIM clients send `application/scim+json`).
pub(crate) fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, ScimError> {
    match serde_json::from_slice(body) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(ScimError::bad(
            "invalidSyntax",
            "the request body must be a JSON object",
        )),
        Err(_) => Err(ScimError::bad(
            "invalidSyntax",
            "the request body is not valid JSON",
        )),
    }
}

/// Returns the base URL resources are located under (`{issuer}/scim/v2`).
pub(crate) fn base_url(state: &AuthzState) -> String {
    format!("{}/scim/v2", state.issuer().trim_end_matches('/'))
}

/// Returns `unix_seconds` as an RFC 3339 timestamp (`meta.created`, `meta.lastModified`).
pub(crate) fn timestamp(unix_seconds: i64) -> String {
    let seconds = u64::try_from(unix_seconds).unwrap_or(0);
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(seconds),
    )
    .to_string()
}
