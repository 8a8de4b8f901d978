//! Audit events as the log holds them: the canonical document, the facets that
//! searches use, and the integrity data that chains and proves them.

use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::error::Error;
use crate::merkle::{self, Hash};

/// Identifies an event: the caller-assigned id (a UUIDv7), the idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(String);

/// Is one audit event as appended: its id, time, searchable facets and the exact
/// canonical bytes that are hashed.
///
/// The canonical form is the event's proto3 JSON mapping (lowerCamelCase field
/// names, enum values by name, timestamps in RFC 3339, 64-bit integers as
/// strings, default values omitted) serialized per RFC 8785 (JCS). It depends only
/// on the event's content, so an emitter's resend hashes identically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Identifies the event.
    pub id: EventId,
    /// Holds when it happened, in microseconds since the Unix epoch.
    pub time_micros: i64,
    /// Holds the values searches filter on, derived from the document.
    pub facets: Facets,
    /// Holds the RFC 8785 canonical JSON bytes of the event.
    pub canonical_json: Vec<u8>,
}

/// Holds the searchable values of an event; empty strings where the event has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facets {
    /// Names the event kind, such as `EVENT_KIND_MCP_REQUEST`.
    pub kind: String,
    /// Holds the principal's member id.
    pub member_id: String,
    /// Holds the principal's agent client id.
    pub agent_client_id: String,
    /// Holds the target's virtual server.
    pub virtual_server: String,
    /// Holds the target's connector.
    pub connector: String,
    /// Holds the target's exposed tool name.
    pub tool: String,
    /// Names the decision's verdict, such as `VERDICT_DENY`.
    pub verdict: String,
    /// Names the outcome, such as `OUTCOME_SUCCESS`.
    pub outcome: String,
    /// Holds the request's trace id.
    pub trace_id: String,
}

/// Is an event as stored: its place in the log and its integrity data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Holds the gapless position in the log, starting at 1 (leaf index + 1).
    pub sequence: u64,
    /// Holds when the store committed it, in microseconds since the Unix epoch.
    pub recorded_at_micros: i64,
    /// Holds the event as appended.
    pub event: AuditEvent,
    /// Holds SHA-256(0x00 || canonical JSON), the RFC 6962 leaf hash.
    pub leaf_hash: Hash,
    /// Holds SHA-256(previous chain hash || leaf hash); the previous chain hash of
    /// the first event is 32 zero bytes.
    pub chain_hash: Hash,
}

/// Reports what an append did with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendOutcome {
    /// Stored now at this sequence.
    Stored(u64),
    /// Stored earlier, with identical content, at this sequence.
    Duplicate(u64),
    /// Refused: the id is stored with different content.
    Conflict,
}

impl EventId {
    /// Returns the id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventId {
    type Error = Error;

    fn try_from(value: String) -> Result<Self, Error> {
        let valid = !value.is_empty()
            && value.len() <= 128
            && value
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"-_.:".contains(&byte));
        if !valid {
            return Err(Error::InvalidArgument {
                field: "event_id",
                reason: "must be 1 to 128 characters of [A-Za-z0-9-_.:]",
            });
        }
        Ok(Self(value))
    }
}

impl std::fmt::Display for EventId {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(&self.0)
    }
}

impl AuditEvent {
    /// Returns the event for a proto3-JSON `document`, canonicalized, or why it can
    /// never be stored (no id, no kind, no time).
    pub fn from_document(document: &Value) -> Result<Self, Error> {
        Self::checked(
            text(document, &["eventId"]),
            Facets::from(document),
            parse_time(&text(document, &["time"])),
            || svc_kit::canonical::to_vec(document),
        )
    }

    /// Returns the event for what its wire form says (id, facets, time) and a way to write
    /// its canonical bytes, or why it can never be stored. The codec reads the facts off the
    /// typed message rather than off a JSON document; both ways must agree, which the
    /// verifier checks for every stored event by re-deriving it from its canonical bytes.
    pub(crate) fn checked(
        id: String,
        facets: Facets,
        time_micros: Result<i64, Error>,
        canonical: impl FnOnce() -> serde_json::Result<Vec<u8>>,
    ) -> Result<Self, Error> {
        let id = EventId::try_from(id)?;
        if facets.kind.is_empty() || facets.kind == "EVENT_KIND_UNSPECIFIED" {
            return Err(Error::InvalidArgument {
                field: "kind",
                reason: "must be set",
            });
        }
        let time_micros = time_micros?;
        let canonical_json = canonical().map_err(|_| Error::InvalidArgument {
            field: "event",
            reason: "cannot be canonicalized",
        })?;
        Ok(Self {
            id,
            time_micros,
            facets,
            canonical_json,
        })
    }

    /// Returns the event re-read from its canonical bytes, as a verifier does.
    pub fn from_canonical(canonical_json: &[u8]) -> Result<Self, Error> {
        let document: Value =
            serde_json::from_slice(canonical_json).map_err(|_| Error::InvalidArgument {
                field: "canonical_json",
                reason: "is not JSON",
            })?;
        Self::from_document(&document)
    }

    /// Returns the RFC 6962 leaf hash of the canonical bytes.
    pub fn leaf_hash(&self) -> Hash {
        merkle::leaf_hash(&self.canonical_json)
    }
}

impl From<&Value> for Facets {
    fn from(document: &Value) -> Self {
        Self {
            kind: text(document, &["kind"]),
            member_id: text(document, &["principal", "member", "id"]),
            agent_client_id: text(document, &["principal", "agent", "clientId"]),
            virtual_server: text(document, &["target", "virtualServer"]),
            connector: text(document, &["target", "connector"]),
            tool: text(document, &["target", "tool", "name"]),
            verdict: text(document, &["decision", "verdict"]),
            outcome: text(document, &["outcome"]),
            trace_id: text(document, &["metadata", "traceId"]),
        }
    }
}

/// Returns the chain hash that follows `previous` for an event with `leaf_hash`.
pub(crate) fn chain_hash(previous: &Hash, leaf_hash: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(leaf_hash);
    hasher.finalize().into()
}

/// Returns microseconds since the Unix epoch for an RFC 3339 timestamp.
pub(crate) fn parse_time(value: &str) -> Result<i64, Error> {
    let timestamp: prost_types::Timestamp = value.parse().map_err(|_| invalid_time())?;
    Ok(timestamp.seconds * 1_000_000 + i64::from(timestamp.nanos / 1_000))
}

/// Reports an event without a valid time.
pub(crate) fn invalid_time() -> Error {
    Error::InvalidArgument {
        field: "time",
        reason: "must be an RFC 3339 timestamp",
    }
}

fn text(document: &Value, path: &[&str]) -> String {
    path.iter()
        .try_fold(document, |value, key| value.get(key))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}
