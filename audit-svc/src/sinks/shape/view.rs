//! A typed view of a stored event's canonical JSON (the proto3 JSON of
//! `gatehouse.audit.v1.AuditEvent`) that borrows from the stored bytes, so a
//! mapping reads the fields it needs without building a document tree and
//! copies sub-documents through as their raw text.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::value::RawValue;

use crate::event::StoredEvent;

/// Says whether a value is left out of a rendering: OCSF and CEF omit empty
/// attributes rather than write them empty.
pub(super) trait Blank {
    /// Says whether the value is empty.
    fn blank(&self) -> bool;
}

impl Blank for &str {
    fn blank(&self) -> bool {
        self.is_empty()
    }
}

impl Blank for String {
    fn blank(&self) -> bool {
        self.is_empty()
    }
}

impl<T> Blank for Vec<T> {
    fn blank(&self) -> bool {
        self.is_empty()
    }
}

/// Is a string of the document, borrowed where it has no escapes. Any other
/// scalar reads as "": proto3 JSON writes an enum value it has no name for as
/// a number, and a mapping treats that as absent.
#[derive(Debug, Default)]
pub(super) struct Text<'a>(Cow<'a, str>);

impl Deref for Text<'_> {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Borrowed(value)))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Self::Value, E> {
        Ok(Text(Cow::Owned(value)))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Text::default())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Text::default())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Text::default())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Text::default())
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text::default())
    }
}

/// Is a sub-document copied through to a rendering as its canonical text.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Raw<'a>(Option<&'a RawValue>);

impl<'de: 'a, 'a> Deserialize<'de> for Raw<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        <&RawValue>::deserialize(deserializer).map(|raw| Raw(Some(raw)))
    }
}

impl Serialize for Raw<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(raw) => raw.serialize(serializer),
            None => serializer.serialize_unit(),
        }
    }
}

impl Blank for Raw<'_> {
    fn blank(&self) -> bool {
        // Canonical JSON (RFC 8785) has no insignificant whitespace.
        self.0
            .is_none_or(|raw| matches!(raw.get(), "null" | "\"\"" | "[]" | "{}"))
    }
}

/// Is the part of an event the sink mappings read.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct View<'a> {
    #[serde(borrow)]
    pub(super) kind: Text<'a>,
    #[serde(borrow)]
    pub(super) call_id: Text<'a>,
    #[serde(borrow)]
    pub(super) time: Text<'a>,
    #[serde(borrow)]
    pub(super) outcome: Text<'a>,
    /// Holds a proto3 JSON duration, such as "0.012500s".
    #[serde(borrow)]
    pub(super) latency: Text<'a>,
    #[serde(borrow)]
    pub(super) emitter: Emitter<'a>,
    #[serde(borrow)]
    pub(super) principal: Principal<'a>,
    #[serde(borrow)]
    pub(super) metadata: Metadata<'a>,
    #[serde(borrow)]
    pub(super) target: Target<'a>,
    #[serde(borrow)]
    pub(super) decision: Decision<'a>,
    #[serde(borrow)]
    pub(super) error: Failure<'a>,
    #[serde(borrow)]
    pub(super) dlp_findings: Raw<'a>,
    #[serde(borrow)]
    pub(super) payload: Raw<'a>,
    #[serde(borrow)]
    pub(super) token: Raw<'a>,
    #[serde(borrow)]
    pub(super) credential: Raw<'a>,
    #[serde(borrow)]
    pub(super) admin: Raw<'a>,
}

/// Is the service that emitted the event.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Emitter<'a> {
    #[serde(borrow)]
    pub(super) service: Text<'a>,
    #[serde(borrow)]
    pub(super) version: Text<'a>,
}

/// Is who called: the member, the agent, and the delegation chain.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Principal<'a> {
    #[serde(borrow)]
    pub(super) member: Member<'a>,
    #[serde(borrow)]
    pub(super) agent: Agent<'a>,
    #[serde(borrow)]
    pub(super) client_id: Text<'a>,
    #[serde(borrow)]
    pub(super) act: Raw<'a>,
    #[serde(borrow)]
    pub(super) authentication_method: Raw<'a>,
}

/// Is the member a call was made for.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Member<'a> {
    #[serde(borrow)]
    pub(super) id: Text<'a>,
    #[serde(borrow)]
    pub(super) issuer: Text<'a>,
    #[serde(borrow)]
    pub(super) subject: Text<'a>,
    #[serde(borrow)]
    pub(super) display_name: Text<'a>,
    #[serde(borrow)]
    pub(super) groups: Vec<Text<'a>>,
    #[serde(borrow)]
    pub(super) roles: Raw<'a>,
}

impl Member<'_> {
    /// Returns the display name, or the subject when there is none.
    pub(super) fn name(&self) -> &str {
        if self.display_name.is_empty() {
            &self.subject
        } else {
            &self.display_name
        }
    }
}

/// Is the agent that called: a few fields read, and the whole copied through.
#[derive(Debug, Default)]
pub(super) struct Agent<'a> {
    pub(super) raw: Raw<'a>,
    pub(super) client_id: Text<'a>,
    pub(super) bundle_id: Text<'a>,
    pub(super) bundle_name: Text<'a>,
}

/// Is the part of an agent the mappings read by name.
#[derive(Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct AgentFields<'a> {
    #[serde(borrow)]
    client_id: Text<'a>,
    #[serde(borrow)]
    bundle_id: Text<'a>,
    #[serde(borrow)]
    bundle_name: Text<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for Agent<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw: &'de RawValue = <&RawValue>::deserialize(deserializer)?;
        let fields: AgentFields<'de> =
            serde_json::from_str(raw.get()).map_err(de::Error::custom)?;
        Ok(Self {
            raw: Raw(Some(raw)),
            client_id: fields.client_id,
            bundle_id: fields.bundle_id,
            bundle_name: fields.bundle_name,
        })
    }
}

/// Is how the request arrived.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Metadata<'a> {
    #[serde(borrow)]
    pub(super) trace_id: Text<'a>,
    #[serde(borrow)]
    pub(super) source_address: Text<'a>,
    #[serde(borrow)]
    pub(super) mcp_method: Text<'a>,
    #[serde(borrow)]
    pub(super) protocol_era: Raw<'a>,
    #[serde(borrow)]
    pub(super) protocol_version: Text<'a>,
    #[serde(borrow)]
    pub(super) mcp_session_id: Text<'a>,
    #[serde(borrow)]
    pub(super) jsonrpc_id: Text<'a>,
    #[serde(borrow)]
    pub(super) user_agent: Text<'a>,
    #[serde(borrow)]
    pub(super) mcp_client_name: Text<'a>,
    #[serde(borrow)]
    pub(super) mcp_client_version: Text<'a>,
}

/// Is what was called: at most one of a tool, a resource or a prompt.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Target<'a> {
    #[serde(borrow)]
    pub(super) virtual_server: Text<'a>,
    #[serde(borrow)]
    pub(super) connector: Text<'a>,
    #[serde(borrow)]
    pub(super) tool: Option<Tool<'a>>,
    #[serde(borrow)]
    pub(super) resource: Option<Named<'a>>,
    #[serde(borrow)]
    pub(super) prompt: Option<Named<'a>>,
}

/// Is a called tool.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Tool<'a> {
    #[serde(borrow)]
    pub(super) name: Text<'a>,
    #[serde(borrow)]
    pub(super) upstream_name: Text<'a>,
    pub(super) annotations: Annotations,
}

/// Is the part of a tool's annotations the mappings read.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Annotations {
    pub(super) read_only_hint: Option<bool>,
}

/// Is a read resource (by `uri`) or a fetched prompt (by `name`).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Named<'a> {
    #[serde(borrow)]
    pub(super) uri: Text<'a>,
    #[serde(borrow)]
    pub(super) name: Text<'a>,
}

/// Is the policy decision.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Decision<'a> {
    #[serde(borrow)]
    pub(super) verdict: Text<'a>,
    #[serde(borrow)]
    pub(super) reason: Text<'a>,
    #[serde(borrow)]
    pub(super) explanation: Text<'a>,
    #[serde(borrow)]
    pub(super) policy_ids: Vec<Text<'a>>,
    /// Holds a proto3 JSON uint64, which is a string.
    #[serde(borrow)]
    pub(super) policy_version: Text<'a>,
    #[serde(borrow)]
    pub(super) required_scopes: Raw<'a>,
}

/// Is how a request failed.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Failure<'a> {
    pub(super) jsonrpc_code: Option<i64>,
    #[serde(borrow)]
    pub(super) message: Text<'a>,
    #[serde(borrow)]
    pub(super) upstream_http_status: Raw<'a>,
}

impl<'a> View<'a> {
    /// Returns the view of a stored event; an empty view if its bytes are not
    /// an event document, which the store's own checks rule out.
    pub(super) fn of(record: &'a StoredEvent) -> Self {
        serde_json::from_slice(&record.event.canonical_json).unwrap_or_default()
    }

    /// Returns the exposed name of the target item (tool, resource or prompt)
    /// and its OCSF resource type.
    pub(super) fn item(&self) -> (&str, &'static str) {
        if let Some(tool) = &self.target.tool {
            return (&tool.name, "mcp_tool");
        }
        if let Some(resource) = &self.target.resource {
            return (&resource.uri, "mcp_resource");
        }
        if let Some(prompt) = &self.target.prompt {
            return (&prompt.name, "mcp_prompt");
        }
        ("", "")
    }

    /// Returns the MCP method, or the event kind for events that are not requests.
    pub(super) fn operation(&self) -> &str {
        if self.metadata.mcp_method.is_empty() {
            &self.kind
        } else {
            &self.metadata.mcp_method
        }
    }

    /// Says whether the outcome is a success (`None` when the event has none).
    pub(super) fn succeeded(&self) -> Option<bool> {
        match &*self.outcome {
            "" | "OUTCOME_UNSPECIFIED" => None,
            outcome => Some(outcome == "OUTCOME_SUCCESS"),
        }
    }

    /// Says whether policy, DLP or a rate limit refused the request.
    pub(super) fn denied(&self) -> bool {
        &*self.decision.verdict == "VERDICT_DENY"
            || matches!(
                &*self.outcome,
                "OUTCOME_DENIED" | "OUTCOME_BLOCKED_BY_DLP" | "OUTCOME_RATE_LIMITED"
            )
    }

    /// Returns the latency in whole milliseconds, rounded.
    pub(super) fn latency_ms(&self) -> Option<i64> {
        let seconds: f64 = self.latency.strip_suffix('s')?.parse().ok()?;
        Some((seconds * 1000.0).round() as i64)
    }
}
