//! List requests (RFC 7644 §3.4.2): filter, 1-based `startIndex` and `count`, and the
//! `ListResponse` they are answered with.

use std::collections::HashMap;

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};

use super::ScimError;
use super::filter::{self, ResourceKind};
use crate::store::DirectoryFilter;

/// Is the schema of list responses.
const LIST_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";

/// Caps one page (advertised as `filter.maxResults`).
pub(crate) const MAX_RESULTS: u64 = 200;

/// Is a parsed list request.
#[derive(Debug)]
pub(crate) struct ListQuery {
    pub(crate) filter: DirectoryFilter,
    /// Is the 1-based index of the first result.
    pub(crate) start_index: u64,
    pub(crate) count: u64,
}

impl ListQuery {
    /// Parses the query parameters; a `startIndex` below 1 counts as 1 and a negative `count`
    /// as 0 (RFC 7644 §3.4.2.4).
    pub(crate) fn parse(
        params: &HashMap<String, String>,
        kind: ResourceKind,
    ) -> Result<Self, ScimError> {
        let number = |name: &str| -> Result<Option<i64>, ScimError> {
            params
                .get(name)
                .map(|text| {
                    text.trim().parse::<i64>().map_err(|_| {
                        ScimError::bad("invalidValue", format!("{name} must be an integer"))
                    })
                })
                .transpose()
        };
        let filter = match params.get("filter").map(|text| text.trim()) {
            Some(text) if !text.is_empty() => filter::parse(text, kind)?,
            _ => DirectoryFilter::All,
        };
        let start_index = number("startIndex")?.unwrap_or(1).max(1);
        let count = number("count")?
            .unwrap_or(i64::try_from(MAX_RESULTS).unwrap_or(i64::MAX))
            .max(0);
        Ok(Self {
            filter,
            start_index: u64::try_from(start_index).unwrap_or(1),
            count: u64::try_from(count).unwrap_or(0).min(MAX_RESULTS),
        })
    }

    /// Returns the number of matches to skip.
    pub(crate) fn offset(&self) -> u64 {
        self.start_index - 1
    }

    /// Returns the `ListResponse` of `resources`, one page of `total` matches.
    pub(crate) fn respond(&self, resources: Vec<Value>, total: u64) -> Response {
        let body = json!({
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": self.start_index,
            "itemsPerPage": resources.len(),
            "Resources": resources,
        });
        super::scim_json(StatusCode::OK, &body, None)
    }
}
