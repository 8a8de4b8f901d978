//! PATCH (RFC 7644 §3.5.2): `add`, `replace` and `remove` operations applied to a resource's
//! JSON representation, which is then validated like a PUT of the result.

use scim_v2::filter::{AttrExp, AttrPath, CompValue, CompareOp, PatchPath, ValFilter};
use serde_json::{Map, Value};

use super::{ScimError, resource::attribute};

/// Is the schema of PATCH requests.
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// Bounds one request's operations.
const MAX_OPERATIONS: usize = 1_000;

/// Says what one operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Replace,
    Remove,
}

/// Applies the PATCH request `body` to `resource`, whose core schema is `schema`.
pub(crate) fn apply(
    resource: &mut Map<String, Value>,
    body: &Map<String, Value>,
    schema: &str,
) -> Result<(), ScimError> {
    let declared = matches!(attribute(body, "schemas"), Some(Value::Array(schemas))
        if schemas.iter().any(|value| value.as_str() == Some(PATCH_SCHEMA)));
    if !declared {
        return Err(ScimError::bad(
            "invalidSyntax",
            "schemas must list urn:ietf:params:scim:api:messages:2.0:PatchOp",
        ));
    }
    let Some(Value::Array(operations)) = attribute(body, "Operations") else {
        return Err(ScimError::bad("invalidSyntax", "Operations must be a list"));
    };
    if operations.is_empty() || operations.len() > MAX_OPERATIONS {
        return Err(ScimError::bad(
            "invalidSyntax",
            "Operations must hold between 1 and 1000 operations",
        ));
    }
    for operation in operations {
        operation_apply(resource, operation, schema)?;
    }
    Ok(())
}

fn operation_apply(
    resource: &mut Map<String, Value>,
    operation: &Value,
    schema: &str,
) -> Result<(), ScimError> {
    let Value::Object(operation) = operation else {
        return Err(ScimError::bad(
            "invalidSyntax",
            "each operation must be an object",
        ));
    };
    let op = match attribute(operation, "op").and_then(Value::as_str) {
        Some(op) if op.eq_ignore_ascii_case("add") => Op::Add,
        Some(op) if op.eq_ignore_ascii_case("replace") => Op::Replace,
        Some(op) if op.eq_ignore_ascii_case("remove") => Op::Remove,
        _ => {
            return Err(ScimError::bad(
                "invalidSyntax",
                "op must be add, replace or remove",
            ));
        }
    };
    let value = attribute(operation, "value").cloned();
    match attribute(operation, "path") {
        None | Some(Value::Null) => without_path(resource, op, value, schema),
        Some(Value::String(path)) => {
            let path: PatchPath = path
                .parse()
                .map_err(|_| ScimError::bad("invalidPath", "the path does not parse"))?;
            with_path(resource, op, &path, value, schema)
        }
        Some(_) => Err(ScimError::bad("invalidPath", "path must be a string")),
    }
}

/// Applies an operation without `path`: its value is an object of attributes (§3.5.2.1, .3).
fn without_path(
    resource: &mut Map<String, Value>,
    op: Op,
    value: Option<Value>,
    schema: &str,
) -> Result<(), ScimError> {
    if op == Op::Remove {
        return Err(ScimError::bad("noTarget", "remove needs a path"));
    }
    let Some(Value::Object(attributes)) = value else {
        return Err(ScimError::bad(
            "invalidValue",
            "without a path, value must be an object of attributes",
        ));
    };
    for (name, value) in attributes {
        // Keys may be attribute paths themselves (`name.givenName`, a schema-qualified name).
        match name.parse::<PatchPath>() {
            Ok(path @ PatchPath::Attr(_)) => with_path(resource, op, &path, Some(value), schema)?,
            _ => {
                resource.insert(name, value);
            }
        }
    }
    Ok(())
}

fn with_path(
    resource: &mut Map<String, Value>,
    op: Op,
    path: &PatchPath,
    value: Option<Value>,
    schema: &str,
) -> Result<(), ScimError> {
    if op != Op::Remove && value.is_none() {
        return Err(ScimError::bad(
            "invalidValue",
            "add and replace need a value",
        ));
    }
    match path {
        PatchPath::Attr(path) => {
            let container = container(resource, path, schema)?;
            attribute_apply(container, op, path, value)
        }
        PatchPath::Value(path) => {
            let container = container(resource, &path.attr, schema)?;
            let name = key(container, &path.attr.name);
            let Some(Value::Array(elements)) = container.get_mut(&name) else {
                return match op {
                    Op::Remove => Ok(()),
                    _ => Err(ScimError::bad(
                        "noTarget",
                        "the filtered attribute is not a list",
                    )),
                };
            };
            let (member, wanted) = value_filter(&path.filter)?;
            let selected = |element: &Value| match element {
                Value::Object(object) => {
                    attribute(object, member).and_then(Value::as_str) == Some(wanted)
                }
                _ => false,
            };
            elements_apply(elements, op, &selected, path.sub_attr.as_deref(), value)
        }
    }
}

/// Returns the object a path's attribute lives in: the resource, or an extension's object.
fn container<'a>(
    resource: &'a mut Map<String, Value>,
    path: &AttrPath,
    schema: &str,
) -> Result<&'a mut Map<String, Value>, ScimError> {
    match path.uri.as_deref() {
        Some(uri) if !uri.eq_ignore_ascii_case(schema) => {
            let name = key(resource, uri);
            let entry = resource
                .entry(name)
                .or_insert_with(|| Value::Object(Map::new()));
            entry.as_object_mut().ok_or_else(|| {
                ScimError::bad("invalidPath", "the schema extension is not an object")
            })
        }
        _ => Ok(resource),
    }
}

/// Returns the existing key spelled like `name` ignoring case, or `name` itself.
fn key(object: &Map<String, Value>, name: &str) -> String {
    object
        .keys()
        .find(|key| key.eq_ignore_ascii_case(name))
        .cloned()
        .unwrap_or_else(|| name.to_owned())
}

fn attribute_apply(
    container: &mut Map<String, Value>,
    op: Op,
    path: &AttrPath,
    value: Option<Value>,
) -> Result<(), ScimError> {
    let name = key(container, &path.name);
    if let Some(sub) = &path.sub_attr {
        let entry = container
            .entry(name)
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(object) = entry else {
            return Err(ScimError::bad(
                "invalidPath",
                "the attribute has no sub-attributes",
            ));
        };
        let sub = key(object, sub);
        match (op, value) {
            (Op::Remove, _) => {
                object.remove(&sub);
            }
            (_, Some(value)) => {
                object.insert(sub, value);
            }
            (_, None) => {}
        }
        return Ok(());
    }
    match (op, value, container.get_mut(&name)) {
        (Op::Remove, Some(Value::Array(listed)), Some(Value::Array(elements))) => {
            // Some providers remove members by listing them as the value.
            elements.retain(|element| !listed.iter().any(|gone| same_element(element, gone)));
        }
        (Op::Remove, _, _) => {
            container.remove(&name);
        }
        (Op::Add, Some(Value::Array(added)), Some(Value::Array(elements))) => {
            for element in added {
                if !elements
                    .iter()
                    .any(|present| same_element(present, &element))
                {
                    elements.push(element);
                }
            }
        }
        (_, Some(value), _) => {
            container.insert(name, value);
        }
        (_, None, _) => {}
    }
    Ok(())
}

/// Says whether two list elements are the same: equal, or naming the same `value`.
fn same_element(left: &Value, right: &Value) -> bool {
    match (left, right) {
        (Value::Object(left), Value::Object(right)) => {
            match (attribute(left, "value"), attribute(right, "value")) {
                (Some(left), Some(right)) => left == right,
                _ => left == right,
            }
        }
        _ => left == right,
    }
}

/// Returns the `(attribute, value)` of a value filter `[attribute eq "value"]`, the one form
/// supported.
fn value_filter(filter: &ValFilter) -> Result<(&str, &str), ScimError> {
    match filter {
        ValFilter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(value)))
            if path.sub_attr.is_none() =>
        {
            Ok((path.name.as_str(), value.as_str()))
        }
        _ => Err(ScimError::bad(
            "invalidFilter",
            "path filters support one eq comparison with a string, e.g. members[value eq \"id\"]",
        )),
    }
}

fn elements_apply(
    elements: &mut Vec<Value>,
    op: Op,
    selected: &dyn Fn(&Value) -> bool,
    sub: Option<&str>,
    value: Option<Value>,
) -> Result<(), ScimError> {
    match (op, sub) {
        (Op::Remove, None) => elements.retain(|element| !selected(element)),
        (Op::Remove, Some(sub)) => {
            for element in elements.iter_mut().filter(|element| selected(element)) {
                if let Value::Object(object) = element {
                    let sub = key(object, sub);
                    object.remove(&sub);
                }
            }
        }
        (_, sub) => {
            let value = value.unwrap_or(Value::Null);
            let mut matched = false;
            for element in elements.iter_mut().filter(|element| selected(element)) {
                matched = true;
                match (sub, element, &value) {
                    (Some(sub), Value::Object(object), _) => {
                        let sub = key(object, sub);
                        object.insert(sub, value.clone());
                    }
                    (None, Value::Object(object), Value::Object(update)) => {
                        object.extend(update.clone());
                    }
                    (None, element, _) => *element = value.clone(),
                    (Some(_), _, _) => {}
                }
            }
            if !matched {
                return Err(ScimError::bad(
                    "noTarget",
                    "no element matches the path filter",
                ));
            }
        }
    }
    Ok(())
}
