//! Discovery (RFC 7644 §4): what this service provider supports, its resource types and
//! the schemas of the attributes it keeps.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::list::MAX_RESULTS;
use super::{GROUP_SCHEMA, ScimError, USER_SCHEMA, base_url, scim_json};
use crate::state::AuthzState;

const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Answers `GET /ServiceProviderConfig`.
pub(super) async fn service_provider_config(State(state): State<AuthzState>) -> Response {
    let base = base_url(&state);
    let body = json!({
        "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": MAX_RESULTS},
        "changePassword": {"supported": true},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "The identity provider's bearer token from the gateway configuration",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base}/ServiceProviderConfig")},
    });
    scim_json(StatusCode::OK, &body, None)
}

/// Answers `GET /ResourceTypes`.
pub(super) async fn resource_types(State(state): State<AuthzState>) -> Response {
    let types = resource_type_list(&state);
    list(types)
}

/// Answers `GET /ResourceTypes/{name}`.
pub(super) async fn resource_type(
    State(state): State<AuthzState>,
    Path(name): Path<String>,
) -> Result<Response, ScimError> {
    resource_type_list(&state)
        .into_iter()
        .find(|kind| kind["id"] == name.as_str())
        .map(|kind| scim_json(StatusCode::OK, &kind, None))
        .ok_or_else(|| ScimError::not_found("ResourceType", &name))
}

/// Answers `GET /Schemas`.
pub(super) async fn schemas(State(state): State<AuthzState>) -> Response {
    list(schema_list(&state))
}

/// Answers `GET /Schemas/{uri}`.
pub(super) async fn schema(
    State(state): State<AuthzState>,
    Path(uri): Path<String>,
) -> Result<Response, ScimError> {
    schema_list(&state)
        .into_iter()
        .find(|schema| schema["id"] == uri.as_str())
        .map(|schema| scim_json(StatusCode::OK, &schema, None))
        .ok_or_else(|| ScimError::not_found("Schema", &uri))
}

fn list(resources: Vec<Value>) -> Response {
    let body = json!({
        "schemas": [LIST_SCHEMA],
        "totalResults": resources.len(),
        "startIndex": 1,
        "itemsPerPage": resources.len(),
        "Resources": resources,
    });
    scim_json(StatusCode::OK, &body, None)
}

fn resource_type_list(state: &AuthzState) -> Vec<Value> {
    let base = base_url(state);
    [("User", "/Users", USER_SCHEMA), ("Group", "/Groups", GROUP_SCHEMA)]
        .into_iter()
        .map(|(name, endpoint, schema)| {
            json!({
                "schemas": [RESOURCE_TYPE_SCHEMA],
                "id": name,
                "name": name,
                "endpoint": endpoint,
                "description": format!("Gatehouse {name}"),
                "schema": schema,
                "schemaExtensions": [],
                "meta": {"resourceType": "ResourceType", "location": format!("{base}/ResourceTypes/{name}")},
            })
        })
        .collect()
}

fn schema_list(state: &AuthzState) -> Vec<Value> {
    let base = base_url(state);
    let user = [
        attribute(
            "userName",
            "string",
            false,
            true,
            "readWrite",
            "default",
            "server",
        ),
        attribute(
            "externalId",
            "string",
            false,
            false,
            "readWrite",
            "default",
            "none",
        ),
        attribute(
            "displayName",
            "string",
            false,
            false,
            "readWrite",
            "default",
            "none",
        ),
        attribute(
            "active",
            "boolean",
            false,
            false,
            "readWrite",
            "default",
            "none",
        ),
        attribute(
            "password",
            "string",
            false,
            false,
            "writeOnly",
            "never",
            "none",
        ),
        complex(
            "name",
            false,
            "readWrite",
            &["formatted", "familyName", "givenName"],
        ),
        complex("emails", true, "readWrite", &["value", "type", "primary"]),
        complex(
            "groups",
            true,
            "readOnly",
            &["value", "$ref", "display", "type"],
        ),
    ];
    let group = [
        attribute(
            "displayName",
            "string",
            false,
            true,
            "readWrite",
            "default",
            "server",
        ),
        attribute(
            "externalId",
            "string",
            false,
            false,
            "readWrite",
            "default",
            "none",
        ),
        complex(
            "members",
            true,
            "readWrite",
            &["value", "$ref", "display", "type"],
        ),
    ];
    [
        (USER_SCHEMA, "User", user.to_vec()),
        (GROUP_SCHEMA, "Group", group.to_vec()),
    ]
    .into_iter()
    .map(|(id, name, attributes)| {
        json!({
            "schemas": [SCHEMA_SCHEMA],
            "id": id,
            "name": name,
            "description": format!("{name} as Gatehouse keeps it"),
            "attributes": attributes,
            "meta": {"resourceType": "Schema", "location": format!("{base}/Schemas/{id}")},
        })
    })
    .collect()
}

/// Describes one attribute (RFC 7643 §7).
fn attribute(
    name: &str,
    kind: &str,
    multi_valued: bool,
    required: bool,
    mutability: &str,
    returned: &str,
    uniqueness: &str,
) -> Value {
    json!({
        "name": name,
        "type": kind,
        "multiValued": multi_valued,
        "description": name,
        "required": required,
        "caseExact": false,
        "mutability": mutability,
        "returned": returned,
        "uniqueness": uniqueness,
    })
}

/// Describes a complex attribute; `$ref` is a reference, `primary` a boolean, the rest strings.
fn complex(name: &str, multi_valued: bool, mutability: &str, subs: &[&str]) -> Value {
    let mut value = attribute(
        name,
        "complex",
        multi_valued,
        false,
        mutability,
        "default",
        "none",
    );
    value["subAttributes"] = subs
        .iter()
        .map(|sub| {
            let kind = match *sub {
                "$ref" => "reference",
                "primary" => "boolean",
                _ => "string",
            };
            let mut described = attribute(sub, kind, false, false, mutability, "default", "none");
            if kind == "reference" {
                described["referenceTypes"] = json!(["User", "Group"]);
            }
            described
        })
        .collect();
    value
}
