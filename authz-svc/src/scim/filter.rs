//! The SCIM filters the directory answers: one `eq` comparison on `userName`, `externalId` or
//! `displayName` (what identity providers send to find a resource before creating it).

use scim_v2::filter::{AttrExp, CompValue, CompareOp, Filter};

use super::{GROUP_SCHEMA, ScimError, USER_SCHEMA};
use crate::store::DirectoryFilter;

/// Says which resource type a filter selects from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ResourceKind {
    User,
    Group,
}

/// Returns the directory filter `text` expresses, or an `invalidFilter` error naming what is
/// supported.
pub(crate) fn parse(text: &str, kind: ResourceKind) -> Result<DirectoryFilter, ScimError> {
    let filter: Filter = text.parse().map_err(|_| {
        ScimError::bad(
            "invalidFilter",
            "the filter does not parse (RFC 7644 §3.4.2.2)",
        )
    })?;
    let unsupported = || {
        ScimError::bad(
            "invalidFilter",
            match kind {
                ResourceKind::User => {
                    "supported filters: userName eq, externalId eq, displayName eq with a string"
                }
                ResourceKind::Group => {
                    "supported filters: displayName eq, externalId eq with a string"
                }
            },
        )
    };
    let Filter::Attr(AttrExp::Comparison(path, CompareOp::Eq, CompValue::Str(value))) = filter
    else {
        return Err(unsupported());
    };
    let schema = match kind {
        ResourceKind::User => USER_SCHEMA,
        ResourceKind::Group => GROUP_SCHEMA,
    };
    let own_schema = path
        .uri
        .as_deref()
        .is_none_or(|uri| uri.eq_ignore_ascii_case(schema));
    if !own_schema || path.sub_attr.is_some() {
        return Err(unsupported());
    }
    match (path.name.to_ascii_lowercase().as_str(), kind) {
        ("username", ResourceKind::User) => Ok(DirectoryFilter::UserName(value)),
        ("externalid", _) => Ok(DirectoryFilter::ExternalId(value)),
        ("displayname", _) => Ok(DirectoryFilter::DisplayName(value)),
        _ => Err(unsupported()),
    }
}
