//! Request bodies and queries of the admin API, read after the caller is admitted: a
//! document the API cannot read is refused with the JSON error body every other refusal has,
//! and audited as a denied admin action, like a refusal by the operation itself.

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::response::{IntoResponse, Response};
use http::request::Parts;
use serde::de::DeserializeOwned;

use super::super::model::{
    AgentDeclarationInput, DecommissionInput, GroupInput, MemberInput, NewAgentInput, PolicySet,
    RateLimits, RotateInput, SharedCredentialInput, VerifyInput,
};
use super::super::{Admin, AdminCaller, AdminError};

/// A JSON request body of type `T`.
#[derive(Debug)]
pub(super) struct Input<T>(pub(super) T);

/// The query string of a request, as `T`.
#[derive(Debug)]
pub(super) struct Params<T>(pub(super) T);

/// A JSON document an operation takes.
pub(super) trait Document: DeserializeOwned {
    /// Explains a body that is not this document. serde's messages quote the offending value,
    /// and a body may carry a secret, so only field names and positions are kept.
    fn refusal(error: &serde_json::Error) -> AdminError {
        let text = error.to_string();
        let named = text
            .split(" at line ")
            .next()
            .filter(|text| text.starts_with("missing field") || text.starts_with("unknown field"));
        let reason = match named {
            Some(text) => text.to_owned(),
            None => match text.split_once(", expected ") {
                Some((found, expected)) if found.starts_with("unknown variant") => {
                    let expected = expected.split(" at line ").next().unwrap_or(expected);
                    format!("unknown variant, expected {expected}")
                }
                _ => format!(
                    "not the JSON document this operation takes (line {}, column {}): check each field's type",
                    error.line(),
                    error.column()
                ),
            },
        };
        AdminError::InvalidArgument {
            field: "body",
            reason,
        }
    }
}

impl Document for AgentDeclarationInput {}
impl Document for DecommissionInput {}
impl Document for GroupInput {}
impl Document for MemberInput {}
impl Document for NewAgentInput {}
impl Document for PolicySet {}
impl Document for RateLimits {}
impl Document for RotateInput {}
impl Document for VerifyInput {}
impl Document for serde_json::Value {}

impl Document for SharedCredentialInput {
    fn refusal(error: &serde_json::Error) -> AdminError {
        if error.to_string().starts_with("unknown variant") {
            return AdminError::InvalidArgument {
                field: "kind",
                reason: "must be bearer, api_key, basic, client_credentials, env or headers"
                    .to_owned(),
            };
        }
        match <serde_json::Value as Document>::refusal(error) {
            AdminError::InvalidArgument { field, reason }
                if reason.starts_with("not the JSON document") =>
            {
                AdminError::InvalidArgument {
                    field,
                    reason: reason.replacen(
                        "not the JSON document this operation takes",
                        "not a shared credential document",
                        1,
                    ),
                }
            }
            other => other,
        }
    }
}

/// Audits a refusal of what `parts` carried under the admitted caller, and answers it.
fn refused(parts: &Parts, admin: &Admin, error: AdminError) -> Response {
    let error = match parts.extensions.get::<AdminCaller>() {
        Some(caller) => {
            let target = format!("{} {}", parts.method, parts.uri.path());
            admin.refuse(caller, &target, error)
        }
        // Unreachable by construction: every operation admits its caller before its input.
        None => error,
    };
    error.into_response()
}

impl<T: Document> FromRequest<Admin> for Input<T> {
    type Rejection = Response;

    async fn from_request(request: Request, admin: &Admin) -> Result<Self, Response> {
        let (parts, body) = request.into_parts();
        let bytes = match axum::body::to_bytes(body, BODY_LIMIT).await {
            Ok(bytes) => bytes,
            Err(_) => {
                let error = AdminError::InvalidArgument {
                    field: "body",
                    reason: format!("unreadable, or larger than {BODY_LIMIT} bytes"),
                };
                return Err(refused(&parts, admin, error));
            }
        };
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|error| refused(&parts, admin, T::refusal(&error)))
    }
}

/// Bounds an admin request body (a policy set is the largest document, far below this).
const BODY_LIMIT: usize = 2 * 1024 * 1024;

impl<T: DeserializeOwned> FromRequestParts<Admin> for Params<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, admin: &Admin) -> Result<Self, Response> {
        Query::<T>::try_from_uri(&parts.uri)
            .map(|Query(query)| Self(query))
            .map_err(|rejection| {
                let error = AdminError::InvalidArgument {
                    field: "query",
                    reason: rejection.body_text(),
                };
                refused(parts, admin, error)
            })
    }
}
