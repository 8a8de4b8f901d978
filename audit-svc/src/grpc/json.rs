//! The proto3 JSON mapping of an audit event, written straight from the generated types.
//!
//! prost-reflect gave the same JSON by decoding the event again into a dynamic message and
//! walking its descriptor, field by field, with default-value checks: about 124,000
//! instructions per event, the largest cost of ingest. No maintained crate writes proto3 JSON
//! from prost's own types with the well-known types as prost-reflect formats them (pbjson
//! writes timestamps with a `+00:00` offset, which would change every event's bytes). So each
//! message lists its fields here, and the tests hold the output to prost-reflect's for every
//! field of the schema, failing when a field is added to the schema and not here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use proto::audit::v1 as pb;
use proto::common::v1 as common;
use serde::ser::{Error as _, Serialize, SerializeMap, SerializeSeq, Serializer};

/// Wraps a message so that it serializes as its proto3 JSON object.
pub(crate) struct Json<'a, T>(pub(crate) &'a T);

/// Is a message with a proto3 JSON object form: its fields, each written only when set.
pub(crate) trait Message {
    /// Writes the fields that are set, in the order of their JSON names: the canonical writer
    /// then finds each object's members sorted and need not reorder them.
    fn fields<M: SerializeMap>(&self, fields: &mut Fields<M>) -> Result<(), M::Error>;
}

impl<T: Message> Serialize for Json<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut fields = Fields(serializer.serialize_map(None)?);
        self.0.fields(&mut fields)?;
        fields.0.end()
    }
}

/// Wraps repeated messages so that they serialize as an array of objects.
struct List<'a, T>(&'a [T]);

impl<T: Message> Serialize for List<'_, T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut list = serializer.serialize_seq(Some(self.0.len()))?;
        for item in self.0 {
            list.serialize_element(&Json(item))?;
        }
        list.end()
    }
}

/// Writes fields by their proto3 JSON rules: scalars without presence only when not default,
/// 64-bit integers as strings, enums by name (by number when this build does not know it),
/// bytes as padded base64, timestamps and durations as prost-reflect writes them.
pub(crate) struct Fields<M>(M);

/// Seconds of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range RFC 3339 can write.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;
/// The largest duration proto3 JSON allows: 10,000 years, in seconds.
const MAX_DURATION_SECONDS: u64 = 315_576_000_000;
const MAX_DURATION_NANOS: u32 = 999_999_999;

impl<M: SerializeMap> Fields<M> {
    fn string(&mut self, name: &'static str, value: &str) -> Result<(), M::Error> {
        if value.is_empty() {
            return Ok(());
        }
        self.0.serialize_entry(name, value)
    }

    fn strings(&mut self, name: &'static str, values: &[String]) -> Result<(), M::Error> {
        if values.is_empty() {
            return Ok(());
        }
        self.0.serialize_entry(name, values)
    }

    fn int32(&mut self, name: &'static str, value: i32) -> Result<(), M::Error> {
        if value == 0 {
            return Ok(());
        }
        self.0.serialize_entry(name, &value)
    }

    fn uint32(&mut self, name: &'static str, value: u32) -> Result<(), M::Error> {
        if value == 0 {
            return Ok(());
        }
        self.0.serialize_entry(name, &value)
    }

    fn uint64(&mut self, name: &'static str, value: u64) -> Result<(), M::Error> {
        if value == 0 {
            return Ok(());
        }
        self.0.serialize_entry(name, &value.to_string())
    }

    fn flag(&mut self, name: &'static str, value: Option<bool>) -> Result<(), M::Error> {
        match value {
            Some(value) => self.0.serialize_entry(name, &value),
            None => Ok(()),
        }
    }

    fn bytes(&mut self, name: &'static str, value: &[u8]) -> Result<(), M::Error> {
        if value.is_empty() {
            return Ok(());
        }
        self.0.serialize_entry(name, &BASE64.encode(value))
    }

    fn enumeration(
        &mut self,
        name: &'static str,
        value: i32,
        name_of: impl Fn(i32) -> Option<&'static str>,
    ) -> Result<(), M::Error> {
        match (value, name_of(value)) {
            (0, _) => Ok(()),
            (_, Some(known)) => self.0.serialize_entry(name, known),
            (number, None) => self.0.serialize_entry(name, &number),
        }
    }

    fn message<T: Message>(
        &mut self,
        name: &'static str,
        value: Option<&T>,
    ) -> Result<(), M::Error> {
        match value {
            Some(value) => self.0.serialize_entry(name, &Json(value)),
            None => Ok(()),
        }
    }

    fn messages<T: Message>(&mut self, name: &'static str, values: &[T]) -> Result<(), M::Error> {
        if values.is_empty() {
            return Ok(());
        }
        self.0.serialize_entry(name, &List(values))
    }

    fn timestamp(
        &mut self,
        name: &'static str,
        value: Option<&prost_types::Timestamp>,
    ) -> Result<(), M::Error> {
        let Some(value) = value else { return Ok(()) };
        if !TIMESTAMP_SECONDS.contains(&value.seconds) {
            return Err(M::Error::custom("timestamp out of range"));
        }
        // prost-types writes the normalized timestamp in RFC 3339, UTC, with 0, 3, 6 or 9
        // fractional digits: the proto3 JSON form.
        self.0.serialize_entry(name, &value.to_string())
    }

    fn duration(
        &mut self,
        name: &'static str,
        value: Option<&prost_types::Duration>,
    ) -> Result<(), M::Error> {
        let Some(value) = value else { return Ok(()) };
        if value.seconds.unsigned_abs() > MAX_DURATION_SECONDS
            || value.nanos.unsigned_abs() > MAX_DURATION_NANOS
        {
            return Err(M::Error::custom("duration out of range"));
        }
        self.0.serialize_entry(name, &value.to_string())
    }
}

/// Names an event kind as proto3 JSON (and the facets and filters) do; `None` when unknown.
pub(crate) fn kind_name(value: i32) -> Option<&'static str> {
    pb::EventKind::try_from(value).ok().map(|v| v.as_str_name())
}

/// Names an outcome as proto3 JSON does; `None` when unknown.
pub(crate) fn outcome_name(value: i32) -> Option<&'static str> {
    pb::Outcome::try_from(value).ok().map(|v| v.as_str_name())
}

/// Names a verdict as proto3 JSON does; `None` when unknown.
pub(crate) fn verdict_name(value: i32) -> Option<&'static str> {
    common::Verdict::try_from(value)
        .ok()
        .map(|v| v.as_str_name())
}

impl Message for pb::AuditEvent {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        use pb::audit_event::Details;
        let (mut admin, mut credential, mut token) = (None, None, None);
        match &self.details {
            Some(Details::Admin(details)) => admin = Some(details),
            Some(Details::Credential(details)) => credential = Some(details),
            Some(Details::Token(details)) => token = Some(details),
            None => {}
        }
        f.message("admin", admin)?;
        f.string("callId", &self.call_id)?;
        f.message("credential", credential)?;
        f.message("decision", self.decision.as_ref())?;
        f.messages("dlpFindings", &self.dlp_findings)?;
        f.message("emitter", self.emitter.as_ref())?;
        f.message("error", self.error.as_ref())?;
        f.string("eventId", &self.event_id)?;
        f.enumeration("kind", self.kind, kind_name)?;
        f.duration("latency", self.latency.as_ref())?;
        f.message("metadata", self.metadata.as_ref())?;
        f.enumeration("outcome", self.outcome, outcome_name)?;
        f.message("payload", self.payload.as_ref())?;
        f.message("principal", self.principal.as_ref())?;
        f.message("target", self.target.as_ref())?;
        f.timestamp("time", self.time.as_ref())?;
        f.message("token", token)
    }
}

impl Message for pb::Emitter {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("instanceId", &self.instance_id)?;
        f.string("service", &self.service)?;
        f.string("version", &self.version)
    }
}

impl Message for common::Principal {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.messages("act", &self.act)?;
        f.message("agent", self.agent.as_ref())?;
        f.enumeration("authenticationMethod", self.authentication_method, |v| {
            common::AuthenticationMethod::try_from(v)
                .ok()
                .map(|v| v.as_str_name())
        })?;
        f.string("clientId", &self.client_id)?;
        f.message("member", self.member.as_ref())
    }
}

impl Message for common::Member {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.strings("authenticationMethods", &self.authentication_methods)?;
        f.string("displayName", &self.display_name)?;
        f.strings("groups", &self.groups)?;
        f.string("id", &self.id)?;
        f.string("issuer", &self.issuer)?;
        f.strings("roles", &self.roles)?;
        f.string("subject", &self.subject)
    }
}

impl Message for common::Agent {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("bundleId", &self.bundle_id)?;
        f.string("bundleName", &self.bundle_name)?;
        f.string("clientId", &self.client_id)?;
        f.string("ownerMemberId", &self.owner_member_id)?;
        f.string("workloadSubject", &self.workload_subject)
    }
}

impl Message for common::Actor {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("clientId", &self.client_id)?;
        f.string("issuer", &self.issuer)?;
        f.string("subject", &self.subject)
    }
}

impl Message for common::RequestMetadata {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("jsonrpcId", &self.jsonrpc_id)?;
        f.string("mcpClientName", &self.mcp_client_name)?;
        f.string("mcpClientVersion", &self.mcp_client_version)?;
        f.string("mcpMethod", &self.mcp_method)?;
        f.string("mcpSessionId", &self.mcp_session_id)?;
        f.enumeration("protocolEra", self.protocol_era, |v| {
            common::ProtocolEra::try_from(v)
                .ok()
                .map(|v| v.as_str_name())
        })?;
        f.string("protocolVersion", &self.protocol_version)?;
        f.string("sourceAddress", &self.source_address)?;
        f.string("traceId", &self.trace_id)?;
        f.string("traceparent", &self.traceparent)?;
        f.string("userAgent", &self.user_agent)?;
        f.string("virtualServer", &self.virtual_server)
    }
}

impl Message for common::Target {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        use common::target::Item;
        f.string("connector", &self.connector)?;
        match &self.item {
            Some(Item::Tool(tool)) => f.message("tool", Some(tool)),
            Some(Item::Resource(resource)) => f.message("resource", Some(resource)),
            Some(Item::Prompt(prompt)) => f.message("prompt", Some(prompt)),
            None => Ok(()),
        }?;
        f.string("virtualServer", &self.virtual_server)
    }
}

impl Message for common::Tool {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.message("annotations", self.annotations.as_ref())?;
        f.string("name", &self.name)?;
        f.string("upstreamName", &self.upstream_name)
    }
}

impl Message for common::ToolAnnotations {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.flag("destructiveHint", self.destructive_hint)?;
        f.flag("idempotentHint", self.idempotent_hint)?;
        f.flag("openWorldHint", self.open_world_hint)?;
        f.flag("readOnlyHint", self.read_only_hint)?;
        f.string("title", &self.title)
    }
}

impl Message for common::Resource {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("upstreamUri", &self.upstream_uri)?;
        f.string("uri", &self.uri)
    }
}

impl Message for common::Prompt {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("name", &self.name)?;
        f.string("upstreamName", &self.upstream_name)
    }
}

impl Message for common::Decision {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("explanation", &self.explanation)?;
        f.strings("policyIds", &self.policy_ids)?;
        f.uint64("policyVersion", self.policy_version)?;
        f.enumeration("reason", self.reason, |v| {
            common::DenyReason::try_from(v)
                .ok()
                .map(|v| v.as_str_name())
        })?;
        f.strings("requiredScopes", &self.required_scopes)?;
        f.enumeration("verdict", self.verdict, verdict_name)
    }
}

impl Message for pb::DlpFinding {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.enumeration("action", self.action, |v| {
            pb::DlpAction::try_from(v).ok().map(|v| v.as_str_name())
        })?;
        f.uint32("count", self.count)?;
        f.string("detectorType", &self.detector_type)?;
        f.enumeration("direction", self.direction, |v| {
            pb::DlpDirection::try_from(v).ok().map(|v| v.as_str_name())
        })
    }
}

impl Message for pb::PayloadMetadata {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.messages("arguments", &self.arguments)?;
        f.string("argumentsDigest", &self.arguments_digest)?;
        f.bytes("maskedArgumentsJson", &self.masked_arguments_json)?;
        f.uint64("requestBytes", self.request_bytes)?;
        f.uint64("responseBytes", self.response_bytes)
    }
}

impl Message for pb::ArgumentMetadata {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("name", &self.name)?;
        f.uint64("sizeBytes", self.size_bytes)
    }
}

impl Message for pb::ErrorDetail {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.int32("jsonrpcCode", self.jsonrpc_code)?;
        f.string("message", &self.message)?;
        f.uint32("upstreamHttpStatus", self.upstream_http_status)
    }
}

impl Message for pb::TokenDetails {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.strings("audiences", &self.audiences)?;
        f.timestamp("expiresAt", self.expires_at.as_ref())?;
        f.string("grantId", &self.grant_id)?;
        f.string("grantType", &self.grant_type)?;
        f.string("jti", &self.jti)?;
        f.strings("scopes", &self.scopes)
    }
}

impl Message for pb::CredentialDetails {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("connector", &self.connector)?;
        f.string("credentialId", &self.credential_id)?;
        f.string("ownerId", &self.owner_id)?;
        f.uint64("version", self.version)
    }
}

impl Message for pb::AdminDetails {
    fn fields<M: SerializeMap>(&self, f: &mut Fields<M>) -> Result<(), M::Error> {
        f.string("action", &self.action)?;
        f.strings("changedFields", &self.changed_fields)?;
        f.string("objectId", &self.object_id)?;
        f.string("objectType", &self.object_type)?;
        f.string("reason", &self.reason)
    }
}
