use pb::audit_event::Details;
use prost::Message as _;
use prost_reflect::DynamicMessage;
use proto::audit::v1 as pb;
use proto::common::v1 as common;

use super::EventCodec;
use crate::event::AuditEvent;

/// Returns an event with every field set, `details` as given, and values whose JSON forms are
/// easy to get wrong: nanoseconds, a negative duration, the largest uint64, bytes that are not
/// UTF-8, explicit `false` presence, strings that need escaping.
fn full_event(details: Details) -> pb::AuditEvent {
    pb::AuditEvent {
        event_id: "0193a5f0-7c1e-7000-8000-000000000001".to_owned(),
        call_id: "call-1".to_owned(),
        kind: pb::EventKind::McpRequest.into(),
        time: Some(prost_types::Timestamp {
            seconds: 1_795_000_000,
            nanos: 123_456_789,
        }),
        emitter: Some(pb::Emitter {
            service: "edge-svc".to_owned(),
            instance_id: "edge-0".to_owned(),
            version: "0.1.0".to_owned(),
        }),
        principal: Some(common::Principal {
            member: Some(common::Member {
                id: "m-1".to_owned(),
                issuer: "https://idp.example".to_owned(),
                subject: "alice".to_owned(),
                groups: vec!["eng".to_owned(), "ops".to_owned()],
                roles: vec!["admin".to_owned()],
                authentication_methods: vec!["pwd".to_owned(), "otp".to_owned()],
                display_name: "Alice \"Al\" Ünal \u{1F600}".to_owned(),
            }),
            agent: Some(common::Agent {
                client_id: "agent-1".to_owned(),
                bundle_id: "b-1".to_owned(),
                bundle_name: "triage".to_owned(),
                owner_member_id: "m-1".to_owned(),
                workload_subject: "spiffe://example/agent".to_owned(),
            }),
            client_id: "agent-1".to_owned(),
            act: vec![common::Actor {
                subject: "bob".to_owned(),
                client_id: "cli".to_owned(),
                issuer: "https://idp.example".to_owned(),
            }],
            authentication_method: common::AuthenticationMethod::TokenExchange.into(),
        }),
        metadata: Some(common::RequestMetadata {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".to_owned(),
            traceparent: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_owned(),
            source_address: "127.0.0.1".to_owned(),
            virtual_server: "demo".to_owned(),
            mcp_method: "tools/call".to_owned(),
            protocol_era: common::ProtocolEra::Modern.into(),
            protocol_version: "2026-07-28".to_owned(),
            mcp_session_id: "s-1".to_owned(),
            jsonrpc_id: "7".to_owned(),
            user_agent: "python-httpx/0.28\t\u{1}".to_owned(),
            mcp_client_name: "client".to_owned(),
            mcp_client_version: "1.0".to_owned(),
        }),
        target: Some(common::Target {
            virtual_server: "demo".to_owned(),
            connector: "web".to_owned(),
            item: Some(common::target::Item::Tool(common::Tool {
                name: "web__fetch".to_owned(),
                upstream_name: "fetch".to_owned(),
                annotations: Some(common::ToolAnnotations {
                    title: "Fetch".to_owned(),
                    read_only_hint: Some(false),
                    destructive_hint: Some(true),
                    idempotent_hint: Some(true),
                    open_world_hint: Some(false),
                }),
            })),
        }),
        decision: Some(common::Decision {
            verdict: common::Verdict::Deny.into(),
            reason: common::DenyReason::ArgumentConstraint.into(),
            policy_ids: vec!["p-2".to_owned(), "p-1".to_owned()],
            required_scopes: vec!["tools:web".to_owned()],
            explanation: "url outside the allowed hosts".to_owned(),
            policy_version: u64::MAX,
        }),
        outcome: pb::Outcome::Denied.into(),
        dlp_findings: vec![pb::DlpFinding {
            detector_type: "email".to_owned(),
            count: 3,
            direction: pb::DlpDirection::Output.into(),
            action: pb::DlpAction::Mask.into(),
        }],
        latency: Some(prost_types::Duration {
            seconds: -1,
            nanos: -500_000,
        }),
        payload: Some(pb::PayloadMetadata {
            arguments: vec![pb::ArgumentMetadata {
                name: "url".to_owned(),
                size_bytes: 9_007_199_254_740_993,
            }],
            arguments_digest: "sha256:00".to_owned(),
            request_bytes: 42,
            response_bytes: 1_234,
            masked_arguments_json: vec![0, 0xff, b'{', 0x80],
        }),
        error: Some(pb::ErrorDetail {
            jsonrpc_code: -32_603,
            upstream_http_status: 502,
            message: "bad gateway".to_owned(),
        }),
        details: Some(details),
    }
}

fn every_details() -> Vec<Details> {
    vec![
        Details::Token(pb::TokenDetails {
            jti: "j-1".to_owned(),
            grant_id: "g-1".to_owned(),
            grant_type: "client_credentials".to_owned(),
            audiences: vec!["https://gw.example/v/demo/mcp".to_owned()],
            scopes: vec!["a".to_owned(), "b".to_owned()],
            expires_at: Some(prost_types::Timestamp {
                seconds: 1_795_000_600,
                nanos: 0,
            }),
        }),
        Details::Credential(pb::CredentialDetails {
            credential_id: "c-1".to_owned(),
            connector: "web".to_owned(),
            owner_id: "m-1".to_owned(),
            version: 7,
        }),
        Details::Admin(pb::AdminDetails {
            action: "update".to_owned(),
            object_type: "virtual_server".to_owned(),
            object_id: "demo".to_owned(),
            changed_fields: vec!["connectors".to_owned()],
            reason: "rollout".to_owned(),
        }),
    ]
}

/// Returns events that together set every field of the schema: each kind of details, each kind
/// of target, and tool annotations with no hints at all.
fn every_event() -> Vec<pb::AuditEvent> {
    use common::target::Item;
    let items = [
        None,
        Some(Item::Resource(common::Resource {
            uri: "file:///srv/report.md".to_owned(),
            upstream_uri: "file:///report.md".to_owned(),
        })),
        Some(Item::Prompt(common::Prompt {
            name: "docs__summarize".to_owned(),
            upstream_name: "summarize".to_owned(),
        })),
    ];
    let mut events: Vec<pb::AuditEvent> = every_details()
        .into_iter()
        .zip(items)
        .map(|(details, item)| {
            let mut event = full_event(details);
            if let (Some(item), Some(target)) = (item, event.target.as_mut()) {
                target.item = Some(item);
            }
            event
        })
        .collect();
    let mut no_hints = full_event(Details::Admin(pb::AdminDetails::default()));
    if let Some(common::target::Item::Tool(tool)) = no_hints
        .target
        .as_mut()
        .and_then(|target| target.item.as_mut())
    {
        tool.annotations = Some(common::ToolAnnotations::default());
    }
    events.push(no_hints);
    events
}

/// Returns the event as the general path reads it: prost-reflect's proto3 JSON document,
/// canonicalized by the RFC 8785 crate.
fn by_the_general_path(codec: &EventCodec, event: &pb::AuditEvent) -> AuditEvent {
    let dynamic =
        DynamicMessage::decode(codec.descriptor.clone(), event.encode_to_vec().as_slice())
            .expect("decodes");
    let document = serde_json::to_value(&dynamic).expect("has a JSON form");
    let domain = AuditEvent::from_document(&document).expect("storable");
    assert_eq!(
        domain.canonical_json,
        serde_json_canonicalizer::to_vec(&document).expect("canonicalizable"),
    );
    domain
}

#[test]
fn an_event_is_its_proto3_json_in_rfc_8785_form_with_the_facets_that_json_holds() {
    let codec = EventCodec::new().expect("codec");
    for event in every_event() {
        assert_eq!(
            codec.to_domain(&event).expect("storable"),
            by_the_general_path(&codec, &event),
        );
    }
}

#[test]
fn the_writer_gives_every_object_its_members_in_canonical_order() {
    for event in every_event() {
        let written = serde_json::to_vec(&crate::grpc::json::Json(&event)).expect("writable");
        assert_eq!(
            String::from_utf8_lossy(&written),
            String::from_utf8_lossy(
                &svc_kit::canonical::to_vec(&crate::grpc::json::Json(&event)).expect("canonical")
            ),
        );
    }
}

#[test]
fn the_verifier_rederives_every_event_from_its_canonical_bytes() {
    let codec = EventCodec::new().expect("codec");
    for event in every_event() {
        let domain = codec.to_domain(&event).expect("storable");
        assert_eq!(
            AuditEvent::from_canonical(&domain.canonical_json).expect("re-readable"),
            domain
        );
    }
}

#[test]
fn defaults_and_unknown_enum_values_are_absent_facets() {
    let codec = EventCodec::new().expect("codec");
    let mut event = full_event(Details::Admin(pb::AdminDetails::default()));
    event.outcome = 0;
    event.principal = None;
    event.metadata = Some(common::RequestMetadata::default());
    event.decision = Some(common::Decision {
        verdict: 99,
        ..common::Decision::default()
    });
    event.target = Some(common::Target {
        virtual_server: "demo".to_owned(),
        connector: String::new(),
        item: Some(common::target::Item::Resource(common::Resource {
            uri: "file:///x".to_owned(),
            upstream_uri: "file:///x".to_owned(),
        })),
    });
    let domain = codec.to_domain(&event).expect("storable");
    assert_eq!(domain, by_the_general_path(&codec, &event));
    assert_eq!(
        (
            domain.facets.outcome.as_str(),
            domain.facets.verdict.as_str(),
            domain.facets.member_id.as_str(),
            domain.facets.tool.as_str(),
            domain.facets.trace_id.as_str(),
        ),
        ("", "", "", "", "")
    );
}

#[test]
fn an_event_without_id_kind_or_time_is_refused_by_field() {
    let codec = EventCodec::new().expect("codec");
    let admin = || full_event(Details::Admin(pb::AdminDetails::default()));
    let refused = |event: pb::AuditEvent| match codec.to_domain(&event) {
        Err(crate::error::Error::InvalidArgument { field, .. }) => field,
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refused(pb::AuditEvent {
            event_id: String::new(),
            ..admin()
        }),
        "event_id"
    );
    assert_eq!(refused(pb::AuditEvent { kind: 0, ..admin() }), "kind");
    assert_eq!(
        refused(pb::AuditEvent {
            kind: 99,
            ..admin()
        }),
        "kind"
    );
    assert_eq!(
        refused(pb::AuditEvent {
            time: None,
            ..admin()
        }),
        "time"
    );
    assert_eq!(
        refused(pb::AuditEvent {
            time: Some(prost_types::Timestamp {
                seconds: 253_402_300_800,
                nanos: 0,
            }),
            ..admin()
        }),
        "event"
    );
}

#[test]
fn a_time_out_of_normal_form_is_stored_as_its_rfc_3339_form_says() {
    let codec = EventCodec::new().expect("codec");
    for (seconds, nanos, micros) in [
        (0, 1_000_000_000, 1_000_000),
        (5, -1, 4_999_999),
        (-1, 500_000_000, -500_000),
    ] {
        let event = pb::AuditEvent {
            time: Some(prost_types::Timestamp { seconds, nanos }),
            ..full_event(Details::Admin(pb::AdminDetails::default()))
        };
        let domain = codec.to_domain(&event).expect("storable");
        assert_eq!(domain.time_micros, micros);
        assert_eq!(domain, by_the_general_path(&codec, &event));
    }
}

/// Collects `message`'s set fields, by full name, and those of the messages inside it.
fn set_fields(message: &DynamicMessage, into: &mut std::collections::BTreeSet<String>) {
    for (field, value) in message.fields() {
        into.insert(field.full_name().to_owned());
        let nested = match value {
            prost_reflect::Value::Message(nested) => vec![nested],
            prost_reflect::Value::List(items) => {
                items.iter().filter_map(|i| i.as_message()).collect()
            }
            _ => Vec::new(),
        };
        for nested in nested {
            set_fields(nested, into);
        }
    }
}

/// Collects every field of `message` and of the (non-well-known) messages its fields hold.
fn schema_fields(
    message: &prost_reflect::MessageDescriptor,
    into: &mut std::collections::BTreeSet<String>,
) {
    for field in message.fields() {
        if !into.insert(field.full_name().to_owned()) {
            continue;
        }
        if let prost_reflect::Kind::Message(nested) = field.kind()
            && !nested.full_name().starts_with("google.protobuf.")
        {
            schema_fields(&nested, into);
        }
    }
}

#[test]
fn the_events_above_set_every_field_of_the_schema_so_the_writer_is_checked_for_each() {
    let codec = EventCodec::new().expect("codec");
    let mut set = std::collections::BTreeSet::new();
    for event in every_event() {
        let dynamic =
            DynamicMessage::decode(codec.descriptor.clone(), event.encode_to_vec().as_slice())
                .expect("decodes");
        set_fields(&dynamic, &mut set);
    }
    let mut schema = std::collections::BTreeSet::new();
    schema_fields(&codec.descriptor, &mut schema);
    let unset: Vec<_> = schema.difference(&set).collect();
    assert!(
        unset.is_empty(),
        "set these in full_event (and write them in grpc/json.rs): {unset:?}"
    );
}
