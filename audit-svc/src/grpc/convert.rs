//! Conversions between the wire types of `gatehouse.audit.v1` and the domain.
//!
//! An event's canonical form is its proto3 JSON mapping (`super::json`) written per RFC 8785
//! in the same pass (`svc_kit::canonical`), with no JSON document in between; a stored event is
//! read back by `prost-reflect` from the service's own descriptor set.

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};
use proto::audit::v1 as pb;
use proto::common::v1 as common;

use super::json::{Json, kind_name, outcome_name, verdict_name};
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::event::{AuditEvent, Facets, StoredEvent, invalid_time};
use crate::query::Filter;

const EVENT_MESSAGE: &str = "gatehouse.audit.v1.AuditEvent";

/// Turns wire events into canonical domain events and back.
#[derive(Debug, Clone)]
pub(crate) struct EventCodec {
    descriptor: MessageDescriptor,
}

impl EventCodec {
    /// Returns the codec for the descriptor set compiled into `proto`.
    pub(crate) fn new() -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(proto::FILE_DESCRIPTOR_SET)?;
        let descriptor = pool
            .get_message_by_name(EVENT_MESSAGE)
            .ok_or_else(|| anyhow::anyhow!("descriptor set lacks {EVENT_MESSAGE}"))?;
        Ok(Self { descriptor })
    }

    /// Returns the domain event for a wire event, or why it can never be stored.
    pub(crate) fn to_domain(&self, event: &pb::AuditEvent) -> Result<AuditEvent, Error> {
        AuditEvent::checked(
            event.event_id.clone(),
            facets(event),
            event.time.map(normalized_micros).ok_or_else(invalid_time),
            || svc_kit::canonical::to_vec(&Json(event)),
        )
    }

    /// Returns the wire event stored as `canonical_json`.
    pub(crate) fn to_wire(&self, canonical_json: &[u8]) -> Result<pb::AuditEvent, Error> {
        let mut deserializer = serde_json::Deserializer::from_slice(canonical_json);
        let dynamic = DynamicMessage::deserialize(self.descriptor.clone(), &mut deserializer)
            .map_err(|_| Error::Corrupt("canonical event"))?;
        dynamic
            .transcode_to::<pb::AuditEvent>()
            .map_err(|_| Error::Corrupt("canonical event"))
    }

    /// Returns the wire form of a stored event.
    pub(crate) fn stored(&self, stored: StoredEvent) -> Result<pb::StoredEvent, Error> {
        Ok(pb::StoredEvent {
            sequence: stored.sequence,
            recorded_at: Some(timestamp(stored.recorded_at_micros)),
            event: Some(self.to_wire(&stored.event.canonical_json)?),
            canonical_json: stored.event.canonical_json,
            leaf_hash: stored.leaf_hash.to_vec(),
            chain_hash: stored.chain_hash.to_vec(),
        })
    }
}

impl From<Checkpoint> for pb::Checkpoint {
    fn from(checkpoint: Checkpoint) -> Self {
        Self {
            origin: checkpoint.origin,
            tree_size: checkpoint.tree_size,
            root_hash: checkpoint.root_hash.to_vec(),
            chain_hash: checkpoint.chain_hash.to_vec(),
            time: Some(timestamp(checkpoint.time_micros)),
            signed_note: checkpoint.signed_note,
        }
    }
}

impl TryFrom<pb::EventFilter> for Filter {
    type Error = Error;

    fn try_from(filter: pb::EventFilter) -> Result<Self, Error> {
        let verdicts = names(&filter.verdicts, "filter.verdicts", verdict_name)?;
        let outcomes = names(&filter.outcomes, "filter.outcomes", outcome_name)?;
        let kinds = names(&filter.kinds, "filter.kinds", kind_name)?;
        Ok(Self {
            member_ids: filter.member_ids,
            agent_client_ids: filter.agent_client_ids,
            virtual_servers: filter.virtual_servers,
            connectors: filter.connectors,
            tools: filter.tools,
            verdicts,
            outcomes,
            kinds,
            start_micros: filter.start.map(|time| micros(&time)),
            end_micros: filter.end.map(|time| micros(&time)),
            trace_id: Some(filter.trace_id).filter(|trace| !trace.is_empty()),
        })
    }
}

fn names(
    values: &[i32],
    field: &'static str,
    name: impl Fn(i32) -> Option<&'static str>,
) -> Result<Vec<String>, Error> {
    values
        .iter()
        .map(|value| {
            name(*value)
                .map(str::to_owned)
                .ok_or(Error::InvalidArgument {
                    field,
                    reason: "holds an unknown enum value",
                })
        })
        .collect()
}

/// Returns the facets of a wire event, as `Facets::from` reads them off its proto3 JSON: an
/// enum at its default value or unknown to this build is absent there, so it is empty here.
fn facets(event: &pb::AuditEvent) -> Facets {
    let principal = event.principal.as_ref();
    let target = event.target.as_ref();
    let tool = target.and_then(|target| match &target.item {
        Some(common::target::Item::Tool(tool)) => Some(tool),
        _ => None,
    });
    Facets {
        kind: enum_name(event.kind, kind_name),
        member_id: owned(principal.and_then(|p| p.member.as_ref()).map(|m| &m.id)),
        agent_client_id: owned(
            principal
                .and_then(|p| p.agent.as_ref())
                .map(|a| &a.client_id),
        ),
        virtual_server: owned(target.map(|target| &target.virtual_server)),
        connector: owned(target.map(|target| &target.connector)),
        tool: owned(tool.map(|tool| &tool.name)),
        verdict: enum_name(
            event
                .decision
                .as_ref()
                .map_or(0, |decision| decision.verdict),
            verdict_name,
        ),
        outcome: enum_name(event.outcome, outcome_name),
        trace_id: owned(event.metadata.as_ref().map(|metadata| &metadata.trace_id)),
    }
}

fn owned(value: Option<&String>) -> String {
    value.cloned().unwrap_or_default()
}

fn enum_name(value: i32, name: impl Fn(i32) -> Option<&'static str>) -> String {
    if value == 0 {
        return String::new();
    }
    name(value).unwrap_or_default().to_owned()
}

fn timestamp(micros: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: micros.div_euclid(1_000_000),
        nanos: i32::try_from(micros.rem_euclid(1_000_000) * 1_000).unwrap_or(0),
    }
}

/// Returns the microseconds of `time` as its RFC 3339 form says them: that form is of the
/// normalized timestamp (nanoseconds in 0..10^9), which is what the verifier re-reads.
fn normalized_micros(mut time: prost_types::Timestamp) -> i64 {
    time.normalize();
    micros(&time)
}

fn micros(time: &prost_types::Timestamp) -> i64 {
    time.seconds
        .saturating_mul(1_000_000)
        .saturating_add(i64::from(time.nanos / 1_000))
}

#[cfg(test)]
mod tests;
