//! Searches over the log: filters, cursor pagination and opaque page tokens.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::event::AuditEvent;

/// Is the largest page a search returns.
pub const MAX_PAGE_SIZE: u32 = 1000;
/// Is the page size used when the caller asks for none.
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// Selects events: list fields match any of their values, distinct fields must
/// all match, and empty fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Matches the principal's member id.
    pub member_ids: Vec<String>,
    /// Matches the principal's agent client id.
    pub agent_client_ids: Vec<String>,
    /// Matches the target's virtual server.
    pub virtual_servers: Vec<String>,
    /// Matches the target's connector.
    pub connectors: Vec<String>,
    /// Matches the target's exposed tool name.
    pub tools: Vec<String>,
    /// Matches the verdict by name, such as `VERDICT_DENY`.
    pub verdicts: Vec<String>,
    /// Matches the outcome by name, such as `OUTCOME_SUCCESS`.
    pub outcomes: Vec<String>,
    /// Matches the kind by name, such as `EVENT_KIND_MCP_REQUEST`.
    pub kinds: Vec<String>,
    /// Holds the earliest event time, inclusive, in Unix microseconds.
    pub start_micros: Option<i64>,
    /// Holds the latest event time, exclusive, in Unix microseconds.
    pub end_micros: Option<i64>,
    /// Matches the request's trace id.
    pub trace_id: Option<String>,
}

/// Asks for one page of events in sequence order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchQuery {
    /// Selects the events.
    pub filter: Filter,
    /// Continues after this sequence (exclusive), in the listing's direction.
    pub after: Option<u64>,
    /// Holds the page size, already bounded by [`MAX_PAGE_SIZE`].
    pub limit: u32,
    /// Lists newest first.
    pub descending: bool,
}

/// Is one page of search results.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchPage {
    /// Holds the events, in the listing's order.
    pub events: Vec<crate::event::StoredEvent>,
    /// Continues the listing; `None` on the last page.
    pub next_page_token: Option<String>,
}

impl Filter {
    /// Checks that the time range is not inverted.
    pub fn validate(&self) -> Result<(), Error> {
        if let (Some(start), Some(end)) = (self.start_micros, self.end_micros)
            && start > end
        {
            return Err(Error::InvalidArgument {
                field: "filter.start",
                reason: "must not be after filter.end",
            });
        }
        Ok(())
    }

    /// Reports whether `event` passes the filter.
    pub fn matches(&self, event: &AuditEvent) -> bool {
        let facets = &event.facets;
        let any =
            |values: &[String], value: &str| values.is_empty() || values.iter().any(|v| v == value);
        any(&self.member_ids, &facets.member_id)
            && any(&self.agent_client_ids, &facets.agent_client_id)
            && any(&self.virtual_servers, &facets.virtual_server)
            && any(&self.connectors, &facets.connector)
            && any(&self.tools, &facets.tool)
            && any(&self.verdicts, &facets.verdict)
            && any(&self.outcomes, &facets.outcome)
            && any(&self.kinds, &facets.kind)
            && self
                .start_micros
                .is_none_or(|start| event.time_micros >= start)
            && self.end_micros.is_none_or(|end| event.time_micros < end)
            && self
                .trace_id
                .as_ref()
                .is_none_or(|trace| *trace == facets.trace_id)
    }

    fn digest(&self, descending: bool) -> String {
        let digest = Sha256::digest(format!("{self:?}/{descending}").as_bytes());
        URL_SAFE_NO_PAD.encode(&digest[..12])
    }
}

impl SearchQuery {
    /// Returns the query for a page request: `page_size` 0 means the default and
    /// larger sizes are lowered to the maximum; `page_token` must have been issued
    /// for the same filter and direction.
    pub fn new(
        filter: Filter,
        page_size: u32,
        page_token: &str,
        descending: bool,
    ) -> Result<Self, Error> {
        filter.validate()?;
        let after = if page_token.is_empty() {
            None
        } else {
            Some(decode_token(page_token, &filter.digest(descending))?)
        };
        let limit = match page_size {
            0 => DEFAULT_PAGE_SIZE,
            size => size.min(MAX_PAGE_SIZE),
        };
        Ok(Self {
            filter,
            after,
            limit,
            descending,
        })
    }

    /// Returns the token that continues this query after `sequence`.
    pub fn token_after(&self, sequence: u64) -> String {
        let digest = self.filter.digest(self.descending);
        URL_SAFE_NO_PAD.encode(format!("v1.{sequence}.{digest}"))
    }
}

fn decode_token(token: &str, digest: &str) -> Result<u64, Error> {
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid_token())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid_token())?;
    let mut parts = text.splitn(3, '.');
    let (Some("v1"), Some(sequence), Some(bound)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid_token());
    };
    if bound != digest {
        return Err(invalid_token());
    }
    sequence.parse().map_err(|_| invalid_token())
}

fn invalid_token() -> Error {
    Error::InvalidArgument {
        field: "page.page_token",
        reason: "is not a token issued for this filter",
    }
}
