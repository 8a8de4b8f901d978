//! The SCIM representations of directory users and groups, and what a client may write.

use serde_json::{Map, Value, json};

use super::{GROUP_SCHEMA, ScimError, USER_SCHEMA, base_url, etag, timestamp};
use crate::state::AuthzState;
use crate::store::{DirectoryGroup, DirectoryUser};

/// User attributes kept in their own columns, or read-only, rather than in `attributes`.
const USER_FIELDS: [&str; 9] = [
    "schemas",
    "id",
    "meta",
    "groups",
    "username",
    "externalid",
    "displayname",
    "active",
    "password",
];

/// Is what a client writes of a user (POST, PUT, or a PATCH's result).
#[derive(Debug)]
pub(crate) struct UserInput {
    pub(crate) user_name: String,
    pub(crate) external_id: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) active: bool,
    /// Is a provisioned password, to be hashed; `None` keeps the current one.
    pub(crate) password: Option<String>,
    pub(crate) attributes: Value,
}

/// Is what a client writes of a group.
#[derive(Debug)]
pub(crate) struct GroupInput {
    pub(crate) display_name: String,
    pub(crate) external_id: Option<String>,
    /// Lists the member user ids, sorted and without duplicates.
    pub(crate) members: Vec<String>,
}

/// Returns the value of `object`'s attribute `name`, matched ignoring case (RFC 7643 §2.1).
pub(crate) fn attribute<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object
        .iter()
        .find(|(key, _)| key.eq_ignore_ascii_case(name))
        .map(|(_, value)| value)
}

fn optional_string(object: &Map<String, Value>, name: &str) -> Result<Option<String>, ScimError> {
    match attribute(object, name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ScimError::bad(
            "invalidValue",
            format!("{name} must be a string"),
        )),
    }
}

/// Reads `active`, accepting the `"True"`/`"False"` strings some identity providers send.
fn active(object: &Map<String, Value>) -> Result<bool, ScimError> {
    match attribute(object, "active") {
        None | Some(Value::Null) => Ok(true),
        Some(Value::Bool(active)) => Ok(*active),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("true") => Ok(true),
        Some(Value::String(text)) if text.eq_ignore_ascii_case("false") => Ok(false),
        Some(_) => Err(ScimError::bad("invalidValue", "active must be a boolean")),
    }
}

/// Returns the user a client described in `object`.
pub(crate) fn user_input(object: &Map<String, Value>) -> Result<UserInput, ScimError> {
    let user_name = optional_string(object, "userName")?
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "userName is required"))?;
    let attributes: Map<String, Value> = object
        .iter()
        .filter(|(key, _)| !USER_FIELDS.contains(&key.to_ascii_lowercase().as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    Ok(UserInput {
        user_name,
        external_id: optional_string(object, "externalId")?,
        display_name: optional_string(object, "displayName")?,
        active: active(object)?,
        password: optional_string(object, "password")?,
        attributes: Value::Object(attributes),
    })
}

/// Returns the group a client described in `object`; members must be users (no nesting).
pub(crate) fn group_input(object: &Map<String, Value>) -> Result<GroupInput, ScimError> {
    let display_name = optional_string(object, "displayName")?
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| ScimError::bad("invalidValue", "displayName is required"))?;
    let mut members = Vec::new();
    match attribute(object, "members") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for entry in entries {
                members.push(member_id(entry)?);
            }
        }
        Some(_) => return Err(ScimError::bad("invalidValue", "members must be a list")),
    }
    members.sort();
    members.dedup();
    Ok(GroupInput {
        display_name,
        external_id: optional_string(object, "externalId")?,
        members,
    })
}

fn member_id(entry: &Value) -> Result<String, ScimError> {
    let Value::Object(member) = entry else {
        return Err(ScimError::bad(
            "invalidValue",
            "each member must be an object with a value",
        ));
    };
    if let Some(Value::String(kind)) = attribute(member, "type")
        && !kind.eq_ignore_ascii_case("User")
    {
        return Err(ScimError::bad(
            "invalidValue",
            "only users can be group members (nested groups are not supported)",
        ));
    }
    match attribute(member, "value") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        _ => Err(ScimError::bad(
            "invalidValue",
            "each member needs a value (the user's id)",
        )),
    }
}

/// Returns the SCIM representation of `user`, in the groups `groups` (`(id, displayName)`);
/// the password is write-only and never shown.
pub(crate) fn user_json(
    state: &AuthzState,
    user: &DirectoryUser,
    groups: &[(String, String)],
) -> Value {
    let base = base_url(state);
    let mut object = match &user.attributes {
        Value::Object(attributes) => attributes.clone(),
        _ => Map::new(),
    };
    object.insert("schemas".into(), json!([USER_SCHEMA]));
    object.insert("id".into(), json!(user.id));
    object.insert("userName".into(), json!(user.user_name));
    if let Some(external_id) = &user.external_id {
        object.insert("externalId".into(), json!(external_id));
    }
    if let Some(display_name) = &user.display_name {
        object.insert("displayName".into(), json!(display_name));
    }
    object.insert("active".into(), json!(user.active));
    let groups: Vec<Value> = groups
        .iter()
        .map(|(id, name)| json!({"value": id, "display": name, "$ref": format!("{base}/Groups/{id}"), "type": "direct"}))
        .collect();
    object.insert("groups".into(), Value::Array(groups));
    object.insert(
        "meta".into(),
        meta(
            "User",
            &format!("{base}/Users/{}", user.id),
            user.created_at,
            user.updated_at,
            user.version,
        ),
    );
    Value::Object(object)
}

/// Returns the SCIM representation of `group`.
pub(crate) fn group_json(state: &AuthzState, group: &DirectoryGroup) -> Value {
    let base = base_url(state);
    let members: Vec<Value> = group
        .members
        .iter()
        .map(|id| json!({"value": id, "$ref": format!("{base}/Users/{id}"), "type": "User"}))
        .collect();
    let mut body = json!({
        "schemas": [GROUP_SCHEMA],
        "id": group.id,
        "displayName": group.display_name,
        "members": members,
        "meta": meta("Group", &format!("{base}/Groups/{}", group.id), group.created_at, group.updated_at, group.version),
    });
    if let Some(external_id) = &group.external_id {
        body["externalId"] = json!(external_id);
    }
    body
}

fn meta(kind: &str, location: &str, created: i64, modified: i64, version: i64) -> Value {
    json!({
        "resourceType": kind,
        "created": timestamp(created),
        "lastModified": timestamp(modified),
        "location": location,
        "version": etag(version),
    })
}
