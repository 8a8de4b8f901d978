//! The audit event of one MCP request, filled in as the request is decided and answered.

use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use axum::extract::ConnectInfo;
use proto::audit::v1::{
    ArgumentMetadata, AuditEvent, DlpAction, DlpDirection, DlpFinding, ErrorDetail, EventKind,
    Outcome, PayloadMetadata,
};
use proto::common::v1::{
    Agent, AuthenticationMethod, Decision, DenyReason, Member, Principal, ProtocolEra,
    RequestMetadata, Target, Verdict, target,
};
use rmcp::model::{ErrorData, JsonObject, ProtocolVersion, RequestId};
use sha2::{Digest as _, Sha256};

use super::{Admission, Recorder, Unrecordable};
use crate::auth::{AgentClaim, Caller};
use crate::inbound::Inbound;
use crate::telemetry::Observed;

/// Who is calling, as the audit record names them (never the token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Nobody authenticated (`auth: none`).
    Anonymous,
    /// A member using an app (`sub` differs from `client_id`).
    Member {
        /// The member's subject.
        id: String,
        /// The app's client id.
        client_id: String,
    },
    /// An agent acting as itself (`sub` equals `client_id`, as client-credentials tokens do).
    Agent {
        /// The agent's client id.
        client_id: String,
        /// The bundle, owner and authentication method the issuer's `agent` claim names.
        bundle: Option<AgentClaim>,
    },
}

impl Subject {
    /// Reads the caller the bearer-token gate left in the request.
    pub fn of(caller: Option<&Caller>) -> Self {
        match caller {
            Some(Caller::Token(claims)) if claims.subject == claims.client_id => Self::Agent {
                client_id: claims.client_id.clone(),
                bundle: claims.agent.clone(),
            },
            Some(Caller::Token(claims)) => Self::Member {
                id: claims.subject.clone(),
                client_id: claims.client_id.clone(),
            },
            Some(Caller::Anonymous) | None => Self::Anonymous,
        }
    }

    fn principal(&self) -> Principal {
        match self {
            Self::Anonymous => Principal {
                authentication_method: AuthenticationMethod::None.into(),
                ..Principal::default()
            },
            Self::Member { id, client_id } => Principal {
                member: Some(Member {
                    id: id.clone(),
                    subject: id.clone(),
                    ..Member::default()
                }),
                client_id: client_id.clone(),
                authentication_method: AuthenticationMethod::AuthorizationCode.into(),
                ..Principal::default()
            },
            Self::Agent { client_id, bundle } => {
                let bundle = bundle.as_ref();
                let method = bundle
                    .and_then(|bundle| policy::AuthenticationMethod::from_name(&bundle.method))
                    .map_or(AuthenticationMethod::ClientSecret, Into::into);
                Principal {
                    agent: Some(Agent {
                        client_id: client_id.clone(),
                        bundle_id: bundle.map(|b| b.id.clone()).unwrap_or_default(),
                        bundle_name: bundle.map(|b| b.name.clone()).unwrap_or_default(),
                        owner_member_id: bundle.and_then(|b| b.owner.clone()).unwrap_or_default(),
                        ..Agent::default()
                    }),
                    client_id: client_id.clone(),
                    authentication_method: method.into(),
                    ..Principal::default()
                }
            }
        }
    }
}

/// One request's event under construction; [`CallRecord::finish`] writes it to the spool.
#[derive(Debug)]
pub struct CallRecord {
    recorder: Recorder,
    admission: Admission,
    started: Instant,
    /// `None` when the recorder keeps nothing, so an unaudited edge pays nothing.
    event: Option<Box<AuditEvent>>,
    /// The request's span and metric labels, kept whether or not the event is.
    observed: Observed,
}

impl CallRecord {
    /// Starts the record of `method` on `virtual_server` (calling `tool`, when it is a tool
    /// call), refusing when it could not be kept.
    pub fn begin(
        recorder: &Recorder,
        virtual_server: &str,
        method: &'static str,
        tool: Option<&str>,
        context: &impl Inbound,
    ) -> Result<Self, Unrecordable> {
        let mut record = Self::open(recorder, virtual_server, || {
            (
                caller_subject(context),
                metadata(virtual_server, method, context),
            )
        })?;
        record.observed = Observed::begin(virtual_server, method, tool, context);
        Ok(record)
    }

    /// Starts a record whose caller and request metadata `facts` gives (read only when recording).
    pub fn open(
        recorder: &Recorder,
        virtual_server: &str,
        facts: impl FnOnce() -> (Subject, RequestMetadata),
    ) -> Result<Self, Unrecordable> {
        let admission = recorder.admit()?;
        let started = Instant::now();
        let event = recorder.is_enabled().then(|| {
            let (subject, metadata) = facts();
            let event_id = uuid::Uuid::now_v7().to_string();
            Box::new(AuditEvent {
                call_id: event_id.clone(),
                event_id,
                kind: EventKind::McpRequest.into(),
                time: Some(prost_types::Timestamp::from(SystemTime::now())),
                principal: Some(subject.principal()),
                metadata: Some(metadata),
                target: Some(Target {
                    virtual_server: virtual_server.to_owned(),
                    ..Target::default()
                }),
                ..AuditEvent::default()
            })
        });
        Ok(Self {
            recorder: recorder.clone(),
            admission,
            started,
            event,
            observed: Observed::unobserved(virtual_server, ""),
        })
    }

    /// Returns the request's span: forwarding runs under it so downstream calls join its trace.
    pub fn span(&self) -> &tracing::Span {
        self.observed.span()
    }

    /// Says whether this request's event is kept (the recorder is on).
    pub fn is_recording(&self) -> bool {
        self.event.is_some()
    }

    /// Names the tool called: its exposed name, its connector and its name there.
    pub fn tool(&mut self, exposed: &str, connector: &str, upstream: &str) {
        self.observed.item(exposed, connector);
        self.item(
            connector,
            target::Item::Tool(proto::common::v1::Tool {
                name: exposed.to_owned(),
                upstream_name: upstream.to_owned(),
                annotations: None,
            }),
        );
    }

    /// Names the prompt fetched.
    pub fn prompt(&mut self, exposed: &str, connector: &str, upstream: &str) {
        self.observed.item(exposed, connector);
        self.item(
            connector,
            target::Item::Prompt(proto::common::v1::Prompt {
                name: exposed.to_owned(),
                upstream_name: upstream.to_owned(),
            }),
        );
    }

    /// Names the resource read.
    pub fn resource(&mut self, uri: &str, connector: &str) {
        self.observed.item("", connector);
        self.item(
            connector,
            target::Item::Resource(proto::common::v1::Resource {
                uri: uri.to_owned(),
                upstream_uri: uri.to_owned(),
            }),
        );
    }

    fn item(&mut self, connector: &str, item: target::Item) {
        if let Some(target) = self.event.as_mut().and_then(|event| event.target.as_mut()) {
            connector.clone_into(&mut target.connector);
            target.item = Some(item);
        }
    }

    /// Describes the arguments by name, size and digest — never by value.
    pub fn arguments(&mut self, arguments: Option<&JsonObject>) {
        let Some(event) = self.event.as_mut() else {
            return;
        };
        let Some(arguments) = arguments else {
            return;
        };
        let described = arguments
            .iter()
            .map(|(name, value)| ArgumentMetadata {
                name: name.clone(),
                size_bytes: json_len(value),
            })
            .collect();
        let canonical = svc_kit::canonical::to_vec(arguments).unwrap_or_default();
        event.payload = Some(PayloadMetadata {
            arguments: described,
            arguments_digest: format!("sha256:{:x}", Sha256::digest(&canonical)),
            request_bytes: canonical.len() as u64,
            ..PayloadMetadata::default()
        });
    }

    /// Adds what inspection found on one side of the call: detector names and counts only.
    pub fn dlp_findings<'a>(
        &mut self,
        direction: DlpDirection,
        action: DlpAction,
        findings: impl IntoIterator<Item = (&'a str, u32)>,
    ) {
        if let Some(event) = self.event.as_mut() {
            event
                .dlp_findings
                .extend(findings.into_iter().map(|(detector, count)| DlpFinding {
                    detector_type: detector.to_owned(),
                    count,
                    direction: direction.into(),
                    action: action.into(),
                }));
        }
    }

    /// Records the decision that let the request through or stopped it.
    pub fn decision(&mut self, decision: Decision) {
        if let Some(event) = self.event.as_mut() {
            event.decision = Some(decision);
        }
    }

    /// Records a refusal for a name the caller may not use (unknown and unlisted look the same).
    pub fn not_listed(&mut self) {
        self.decision(Decision {
            verdict: Verdict::Deny.into(),
            reason: DenyReason::NoPermit.into(),
            explanation: "the name is not in this virtual server's catalogue".to_owned(),
            ..Decision::default()
        });
    }

    /// Stamps how the request ended and writes the event; an error means it could not be kept.
    pub fn finish(
        mut self,
        outcome: Outcome,
        error: Option<&ErrorData>,
        response_bytes: u64,
    ) -> Result<(), Unrecordable> {
        let elapsed = self.started.elapsed();
        let observed = std::mem::replace(&mut self.observed, Observed::unobserved("", ""));
        observed.finish(outcome, elapsed);
        let Some(mut event) = self.event.take() else {
            return Ok(());
        };
        event.outcome = outcome.into();
        event.latency = prost_types::Duration::try_from(elapsed).ok();
        if let Some(payload) = event.payload.as_mut() {
            payload.response_bytes = response_bytes;
        } else if response_bytes > 0 {
            event.payload = Some(PayloadMetadata {
                response_bytes,
                ..PayloadMetadata::default()
            });
        }
        if let Some(error) = error {
            event.error = Some(ErrorDetail {
                jsonrpc_code: error.code.0,
                message: error.message.to_string(),
                ..ErrorDetail::default()
            });
        }
        if event.decision.is_none() {
            event.decision = Some(Decision {
                verdict: Verdict::Allow.into(),
                explanation: "listed in the virtual server's curated catalogue".to_owned(),
                ..Decision::default()
            });
        }
        self.recorder.record(*event, self.admission)
    }
}

fn caller_subject(context: &impl Inbound) -> Subject {
    let parts = context.parts();
    Subject::of(parts.and_then(|parts| parts.extensions.get::<Caller>()))
}

fn metadata(virtual_server: &str, method: &str, context: &impl Inbound) -> RequestMetadata {
    let parts = context.parts();
    let header = |name: &str| {
        parts
            .and_then(|parts| parts.headers.get(name))
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let version = context.protocol_version();
    let era = match &version {
        Some(version) if version.as_str() >= ProtocolVersion::V_2026_07_28.as_str() => {
            ProtocolEra::Modern
        }
        Some(_) => ProtocolEra::Legacy,
        None => ProtocolEra::Unspecified,
    };
    let client = context.client_info();
    RequestMetadata {
        trace_id: svc_kit::telemetry::propagation::current_trace_id().unwrap_or_default(),
        traceparent: header("traceparent"),
        source_address: parts
            .and_then(|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>())
            .map(|ConnectInfo(address)| address.to_string())
            .unwrap_or_default(),
        virtual_server: virtual_server.to_owned(),
        mcp_method: method.to_owned(),
        protocol_era: era.into(),
        protocol_version: version.map(|v| v.as_str().to_owned()).unwrap_or_default(),
        mcp_session_id: header("mcp-session-id"),
        jsonrpc_id: match context.request_id() {
            RequestId::Number(number) => number.to_string(),
            RequestId::String(text) => text.to_string(),
        },
        user_agent: header("user-agent"),
        mcp_client_name: client
            .as_ref()
            .map(|client| client.name.clone())
            .unwrap_or_default(),
        mcp_client_version: client.map(|client| client.version).unwrap_or_default(),
    }
}

/// Returns the length of `value`'s compact JSON without building it: audit records sizes,
/// and the text itself is written elsewhere (or not at all).
pub(crate) fn json_len(value: &impl serde::Serialize) -> u64 {
    /// Counts the bytes written to it and keeps none.
    struct Counter(u64);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len() as u64;
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_or(0, |()| counter.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_len_is_the_length_of_the_compact_json() {
        let value = serde_json::json!({
            "text": "héllo \"quoted\" \u{1F600}",
            "numbers": [1, 2.5, -3e10, null],
            "nested": {"flag": true, "empty": {}},
        });
        let expected = serde_json::to_vec(&value).expect("serializable").len() as u64;
        assert_eq!(super::json_len(&value), expected);
    }
}
