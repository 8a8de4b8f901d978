//! The OCSF 1.8.0 API Activity (class 6003) mapping, written straight from the
//! event's typed view: a sink renders every event it delivers, so the mapping
//! builds no intermediate document.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

use super::OCSF_VERSION;
use super::view::{Blank, Raw, View};
use crate::event::StoredEvent;

/// Returns the event as an OCSF 1.8.0 API Activity (class 6003) document.
pub(crate) fn ocsf(record: &StoredEvent) -> String {
    let view = View::of(record);
    // A struct of strings, numbers and canonical JSON text always serializes.
    serde_json::to_string(&Event::new(record, &view)).unwrap_or_default()
}

/// Returns the OCSF activity (id, name) of an event: reads are Read, issuing and
/// writing Create, rotation and changes Update, revocation Delete; a tool call is
/// Read only when the tool declares `readOnlyHint`.
pub(super) fn activity(view: &View<'_>) -> (u32, &'static str) {
    match &*view.kind {
        "EVENT_KIND_TOKEN_ISSUED" | "EVENT_KIND_CREDENTIAL_WRITTEN" => (1, "Create"),
        "EVENT_KIND_CREDENTIAL_READ" => (2, "Read"),
        "EVENT_KIND_TOKEN_EXCHANGED"
        | "EVENT_KIND_CREDENTIAL_REFRESHED"
        | "EVENT_KIND_CREDENTIAL_ROTATED"
        | "EVENT_KIND_AGENT_CHANGED"
        | "EVENT_KIND_POLICY_CHANGED"
        | "EVENT_KIND_ADMIN_CHANGE" => (3, "Update"),
        "EVENT_KIND_TOKEN_REVOKED" | "EVENT_KIND_CREDENTIAL_REVOKED" => (4, "Delete"),
        "EVENT_KIND_MCP_REQUEST" => {
            let read_only = view
                .target
                .tool
                .as_ref()
                .and_then(|tool| tool.annotations.read_only_hint)
                == Some(true);
            let reading = matches!(
                &*view.metadata.mcp_method,
                "tools/list" | "resources/list" | "resources/read" | "prompts/list" | "prompts/get"
            );
            if read_only || reading {
                (2, "Read")
            } else {
                (99, "Other")
            }
        }
        _ => (99, "Other"),
    }
}

/// Returns the OCSF severity (id, name): a denial is Medium, a failure Low,
/// everything else Informational.
fn severity(view: &View<'_>) -> (u32, &'static str) {
    if view.denied() {
        (3, "Medium")
    } else if view.succeeded() == Some(false) {
        (2, "Low")
    } else {
        (1, "Informational")
    }
}

/// Returns a one-line human summary, such as `tools/call echo: VERDICT_DENY`.
fn summary(view: &View<'_>, item: &str) -> String {
    let operation = view.operation();
    let result = match &*view.decision.verdict {
        "" => &*view.outcome,
        verdict => verdict,
    };
    match (item.is_empty(), result.is_empty()) {
        (true, true) => operation.to_owned(),
        (true, false) => format!("{operation}: {result}"),
        (false, true) => format!("{operation} {item}"),
        (false, false) => format!("{operation} {item}: {result}"),
    }
}

/// Is one API Activity event; attributes the event has no value for are left out.
#[derive(Serialize)]
struct Event<'v> {
    class_uid: u32,
    class_name: &'static str,
    category_uid: u32,
    category_name: &'static str,
    activity_id: u32,
    activity_name: &'static str,
    type_uid: u32,
    type_name: String,
    severity_id: u32,
    severity: &'static str,
    time: i64,
    status_id: u32,
    status: &'static str,
    #[serde(skip_serializing_if = "Blank::blank")]
    status_code: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    status_detail: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    duration: Option<i64>,
    metadata: Metadata<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    actor: Actor<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    api: Api<'v>,
    src_endpoint: Endpoint<'v>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<[Resource<'v>; 1]>,
    #[serde(skip_serializing_if = "Blank::blank")]
    http_request: HttpRequest<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    trace: Uid<'v>,
    unmapped: Unmapped<'v>,
}

impl<'v> Event<'v> {
    fn new(record: &'v StoredEvent, view: &'v View<'v>) -> Self {
        let (activity_id, activity_name) = activity(view);
        let (severity_id, severity) = severity(view);
        let (item, item_type) = view.item();
        let status = view.succeeded();
        Self {
            class_uid: 6003,
            class_name: "API Activity",
            category_uid: 6,
            category_name: "Application Activity",
            activity_id,
            activity_name,
            type_uid: 6003 * 100 + activity_id,
            type_name: format!("API Activity: {activity_name}"),
            severity_id,
            severity,
            time: record.event.time_micros / 1000,
            status_id: match status {
                Some(true) => 1,
                Some(false) => 2,
                None => 0,
            },
            status: match status {
                Some(true) => "Success",
                Some(false) => "Failure",
                None => "Unknown",
            },
            status_code: &view.outcome,
            status_detail: &view.decision.reason,
            message: summary(view, item),
            duration: view.latency_ms(),
            metadata: Metadata::new(record, view),
            actor: Actor::new(view),
            api: Api::new(view),
            src_endpoint: Endpoint::new(view),
            resources: (!item.is_empty()).then(|| {
                [Resource {
                    kind: item_type,
                    name: item,
                    uid: view
                        .target
                        .tool
                        .as_ref()
                        .map_or("", |tool| &tool.upstream_name),
                    group: Name {
                        name: &view.target.connector,
                    },
                }]
            }),
            http_request: HttpRequest {
                user_agent: &view.metadata.user_agent,
            },
            trace: Uid {
                uid: &view.metadata.trace_id,
            },
            unmapped: Unmapped::new(record, view),
        }
    }
}

/// Is an object holding only a `uid`.
#[derive(Serialize)]
struct Uid<'v> {
    #[serde(skip_serializing_if = "Blank::blank")]
    uid: &'v str,
}

impl Blank for Uid<'_> {
    fn blank(&self) -> bool {
        self.uid.is_empty()
    }
}

/// Is an object holding only a `name`.
#[derive(Serialize)]
struct Name<'v> {
    #[serde(skip_serializing_if = "Blank::blank")]
    name: &'v str,
}

impl Blank for Name<'_> {
    fn blank(&self) -> bool {
        self.name.is_empty()
    }
}

#[derive(Serialize)]
struct Metadata<'v> {
    version: &'static str,
    product: Product<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    uid: &'v str,
    sequence: u64,
    log_name: &'static str,
    #[serde(skip_serializing_if = "Blank::blank")]
    correlation_uid: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    original_time: &'v str,
    logged_time: i64,
}

impl<'v> Metadata<'v> {
    fn new(record: &'v StoredEvent, view: &'v View<'v>) -> Self {
        Self {
            version: OCSF_VERSION,
            product: Product {
                name: "Gatehouse",
                vendor_name: "Gatehouse",
                version: &view.emitter.version,
            },
            uid: record.event.id.as_str(),
            sequence: record.sequence,
            log_name: "gatehouse-audit",
            correlation_uid: &view.call_id,
            original_time: &view.time,
            logged_time: record.recorded_at_micros / 1000,
        }
    }
}

#[derive(Serialize)]
struct Product<'v> {
    name: &'static str,
    vendor_name: &'static str,
    #[serde(skip_serializing_if = "Blank::blank")]
    version: &'v str,
}

#[derive(Serialize)]
struct Actor<'v> {
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<User<'v>>,
    #[serde(skip_serializing_if = "Blank::blank")]
    idp: Uid<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    app_uid: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    app_name: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    invoked_by: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    session: Uid<'v>,
    #[serde(skip_serializing_if = "Option::is_none")]
    authorizations: Option<[Authorization<'v>; 1]>,
}

impl<'v> Actor<'v> {
    fn new(view: &'v View<'v>) -> Self {
        let member = &view.principal.member;
        let agent = &view.principal.agent;
        let decision = match &*view.decision.verdict {
            "VERDICT_ALLOW" => Some("Allowed"),
            "VERDICT_DENY" => Some("Denied"),
            _ => None,
        };
        Self {
            user: (!member.id.is_empty()).then(|| User {
                uid: &member.id,
                name: member.name(),
                type_id: 1,
                kind: "User",
                groups: member
                    .groups
                    .iter()
                    .map(|group| Name { name: group })
                    .collect(),
            }),
            idp: Uid {
                uid: &member.issuer,
            },
            app_uid: &agent.client_id,
            app_name: if agent.bundle_name.is_empty() {
                &*agent.bundle_id
            } else {
                &*agent.bundle_name
            },
            invoked_by: &view.principal.client_id,
            session: Uid {
                uid: &view.metadata.mcp_session_id,
            },
            authorizations: decision.map(|decision| {
                [Authorization {
                    decision,
                    policy: Policy {
                        uid: view
                            .decision
                            .policy_ids
                            .iter()
                            .map(|id| &**id)
                            .collect::<Vec<_>>()
                            .join(","),
                        version: &view.decision.policy_version,
                        desc: &view.decision.explanation,
                    },
                }]
            }),
        }
    }
}

impl Blank for Actor<'_> {
    fn blank(&self) -> bool {
        self.user.is_none()
            && self.idp.blank()
            && self.app_uid.is_empty()
            && self.app_name.is_empty()
            && self.invoked_by.is_empty()
            && self.session.blank()
            && self.authorizations.is_none()
    }
}

#[derive(Serialize)]
struct User<'v> {
    uid: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    name: &'v str,
    type_id: u32,
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Blank::blank")]
    groups: Vec<Name<'v>>,
}

#[derive(Serialize)]
struct Authorization<'v> {
    decision: &'static str,
    #[serde(skip_serializing_if = "Blank::blank")]
    policy: Policy<'v>,
}

#[derive(Serialize)]
struct Policy<'v> {
    #[serde(skip_serializing_if = "Blank::blank")]
    uid: String,
    #[serde(skip_serializing_if = "Blank::blank")]
    version: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    desc: &'v str,
}

impl Blank for Policy<'_> {
    fn blank(&self) -> bool {
        self.uid.is_empty() && self.version.is_empty() && self.desc.is_empty()
    }
}

#[derive(Serialize)]
struct Api<'v> {
    #[serde(skip_serializing_if = "Blank::blank")]
    operation: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    version: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    service: Name<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    group: Name<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    request: Uid<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    response: Response<'v>,
}

impl<'v> Api<'v> {
    fn new(view: &'v View<'v>) -> Self {
        Self {
            operation: view.operation(),
            version: &view.metadata.protocol_version,
            service: Name {
                name: &view.target.virtual_server,
            },
            group: Name {
                name: &view.target.connector,
            },
            request: Uid {
                uid: &view.metadata.jsonrpc_id,
            },
            response: Response {
                code: view.error.jsonrpc_code,
                error_message: &view.error.message,
            },
        }
    }
}

impl Blank for Api<'_> {
    fn blank(&self) -> bool {
        self.operation.is_empty()
            && self.version.is_empty()
            && self.service.blank()
            && self.group.blank()
            && self.request.blank()
            && self.response.blank()
    }
}

#[derive(Serialize)]
struct Response<'v> {
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<i64>,
    #[serde(skip_serializing_if = "Blank::blank")]
    error_message: &'v str,
}

impl Blank for Response<'_> {
    fn blank(&self) -> bool {
        self.code.is_none() && self.error_message.is_empty()
    }
}

/// Is the source endpoint: the class requires one attribute, so an event
/// without a source address names the emitting service.
#[derive(Serialize)]
#[serde(untagged)]
enum Endpoint<'v> {
    Ip { ip: &'v str },
    Host { name: &'v str },
    Service { svc_name: &'v str },
}

impl<'v> Endpoint<'v> {
    fn new(view: &'v View<'v>) -> Self {
        let source = &*view.metadata.source_address;
        if source.parse::<std::net::IpAddr>().is_ok() {
            Self::Ip { ip: source }
        } else if !source.is_empty() {
            Self::Host { name: source }
        } else if view.emitter.service.is_empty() {
            Self::Service {
                svc_name: "gatehouse",
            }
        } else {
            Self::Service {
                svc_name: &view.emitter.service,
            }
        }
    }
}

#[derive(Serialize)]
struct Resource<'v> {
    #[serde(rename = "type")]
    kind: &'static str,
    name: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    uid: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    group: Name<'v>,
}

#[derive(Serialize)]
struct HttpRequest<'v> {
    #[serde(skip_serializing_if = "Blank::blank")]
    user_agent: &'v str,
}

impl Blank for HttpRequest<'_> {
    fn blank(&self) -> bool {
        self.user_agent.is_empty()
    }
}

/// Is what OCSF has no attribute for, copied through as the event holds it,
/// and the record's place in the hash chain.
#[derive(Serialize)]
struct Unmapped<'v> {
    #[serde(skip_serializing_if = "Blank::blank")]
    kind: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    agent: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    delegation: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    authentication_method: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    member_roles: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    protocol_era: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    mcp_client: McpClient<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    dlp_findings: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    payload: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    required_scopes: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    upstream_http_status: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    token: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    credential: Raw<'v>,
    #[serde(skip_serializing_if = "Blank::blank")]
    admin: Raw<'v>,
    integrity: Integrity,
}

impl<'v> Unmapped<'v> {
    fn new(record: &StoredEvent, view: &'v View<'v>) -> Self {
        Self {
            kind: &view.kind,
            agent: view.principal.agent.raw,
            delegation: view.principal.act,
            authentication_method: view.principal.authentication_method,
            member_roles: view.principal.member.roles,
            protocol_era: view.metadata.protocol_era,
            mcp_client: McpClient {
                name: &view.metadata.mcp_client_name,
                version: &view.metadata.mcp_client_version,
            },
            dlp_findings: view.dlp_findings,
            payload: view.payload,
            required_scopes: view.decision.required_scopes,
            upstream_http_status: view.error.upstream_http_status,
            token: view.token,
            credential: view.credential,
            admin: view.admin,
            integrity: Integrity {
                leaf_hash: STANDARD.encode(record.leaf_hash),
                chain_hash: STANDARD.encode(record.chain_hash),
            },
        }
    }
}

#[derive(Serialize)]
struct McpClient<'v> {
    #[serde(skip_serializing_if = "Blank::blank")]
    name: &'v str,
    #[serde(skip_serializing_if = "Blank::blank")]
    version: &'v str,
}

impl Blank for McpClient<'_> {
    fn blank(&self) -> bool {
        self.name.is_empty() && self.version.is_empty()
    }
}

#[derive(Serialize)]
struct Integrity {
    leaf_hash: String,
    chain_hash: String,
}
