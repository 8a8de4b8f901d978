//! The admin API's HTTP/JSON face under `/admin/v1/...` on the public origin.
//!
//! Routes are registered with `utoipa_axum::routes!` from the handlers' `#[utoipa::path]`
//! attributes, so the router and the OpenAPI document served at `/admin/v1/openapi.json` come
//! from the same declarations; a test checks that every documented operation is served and
//! every other method on those paths is not.

use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{FromRequestParts, Path, State};
use axum::response::{IntoResponse, Response};
use futures::StreamExt as _;
use http::request::Parts;
use http::{HeaderValue, header};
use utoipa::OpenApi as _;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{OpenApi, RefOr};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::guard::{ADMIN_SCOPE, bearer_token};
use super::model::{
    AgentDeclarationInput, AgentFilter, AgentView, AgentWithSecret, AuditPage, AuditQuery,
    ConnectorView, CredentialRef, DecommissionInput, ErrorBody, HealthView, KekView, NewAgentInput,
    PolicySet, PolicyState, ProofView, RateLimits, RotateInput, SharedCredentialInput, TailQuery,
    TailRecordView, VerifyInput, VerifyReportView, VirtualServerView,
};
use super::{Admin, AdminCaller, AdminError, Steward};

mod input;
mod members;

use input::{Input, Params};

/// The document's fixed parts; operations and schemas are added from the handlers.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "Gatehouse admin API",
        description = "Administers a running Gatehouse. Every operation needs a bearer token from Gatehouse's authorization server for the resource `{origin}/admin/v1` with scope `gatehouse:admin`."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// Where the admin resource's RFC 9728 metadata is served (without a token).
const METADATA_PATH: &str = "/.well-known/oauth-protected-resource/admin/v1";

/// Returns the admin face: the authenticated API, its OpenAPI document and its RFC 9728 metadata.
pub(crate) fn router(admin: Admin) -> axum::Router {
    // Each operation extracts its `AdminCaller`, so routing answers 404/405 before any challenge.
    let (router, _) = operations().merge(public()).split_for_parts();
    router.with_state(admin)
}

/// Returns the authenticated operations and their documentation, declared once for both.
fn operations() -> OpenApiRouter<Admin> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(get_policies, put_policies))
        .routes(routes!(get_rate_limits, put_rate_limits))
        .routes(routes!(list_virtual_servers))
        .routes(routes!(
            get_virtual_server,
            put_virtual_server,
            delete_virtual_server
        ))
        .routes(routes!(list_connectors))
        .routes(routes!(get_connector, put_connector, delete_connector))
        .routes(routes!(members::list_members, members::create_member))
        .routes(routes!(members::get_member, members::put_member))
        .routes(routes!(members::deactivate_member))
        .routes(routes!(members::list_groups, members::create_group))
        .routes(routes!(
            members::get_group,
            members::put_group,
            members::delete_group
        ))
        .routes(routes!(put_shared_credential, delete_shared_credential))
        .routes(routes!(delete_member_credential))
        .routes(routes!(connector_health))
        .routes(routes!(kek_status))
        .routes(routes!(list_agents, create_agent))
        .routes(routes!(get_agent, put_agent))
        .routes(routes!(rotate_agent))
        .routes(routes!(decommission_agent))
        .routes(routes!(search_audit))
        .routes(routes!(verify_audit))
        .routes(routes!(prove_audit_event))
        .routes(routes!(tail_audit))
}

/// Returns what is served without a token: the OpenAPI document and the resource metadata.
fn public() -> OpenApiRouter<Admin> {
    OpenApiRouter::new()
        .routes(routes!(openapi_json))
        .routes(routes!(resource_metadata))
}

/// Returns the OpenAPI document of every admin operation, with the bearer scheme and the
/// 401/403 answers each protected operation can give.
pub(crate) fn document() -> OpenApi {
    let (_, mut openapi) = operations().merge(public()).split_for_parts();
    let components = openapi.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
    );
    for item in openapi.paths.paths.values_mut() {
        for operation in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            if matches!(
                operation.operation_id.as_deref(),
                Some("openapi_json" | "resource_metadata")
            ) {
                continue;
            }
            operation.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
                "bearer",
                [ADMIN_SCOPE],
            )]);
            for (status, description) in [
                ("401", "no valid token for the admin resource"),
                ("403", "the token lacks the gatehouse:admin grant"),
            ] {
                let response = utoipa::openapi::ResponseBuilder::new()
                    .description(description)
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                                "ErrorBody",
                            ))))
                            .build(),
                    )
                    .build();
                operation
                    .responses
                    .responses
                    .insert(status.to_owned(), RefOr::T(response));
            }
        }
    }
    openapi
}

/// Admits the request's administrator, or answers RFC 6750's 401/403 challenge.
impl FromRequestParts<Admin> for AdminCaller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, admin: &Admin) -> Result<Self, Response> {
        let presented = presented(parts);
        let caller = admin
            .admit(presented)
            .await
            .map_err(|error| challenge(admin, error, presented.is_some()))?;
        // The operation's input extractors audit their refusals under this caller.
        parts.extensions.insert(caller.clone());
        Ok(caller)
    }
}

/// Returns the request's RFC 6750 bearer token.
fn presented(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token)
}

/// Admits an administrator, or an agent's owner for the bundles they own.
impl FromRequestParts<Admin> for Steward {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, admin: &Admin) -> Result<Self, Response> {
        let presented = presented(parts);
        let steward = admin
            .steward(presented)
            .await
            .map_err(|error| challenge(admin, error, presented.is_some()))?;
        parts.extensions.insert(steward.caller().clone());
        Ok(steward)
    }
}

/// Builds the refusal with the `WWW-Authenticate` challenge pointing at the metadata.
fn challenge(admin: &Admin, error: AdminError, presented: bool) -> Response {
    let origin = admin.resource().trim_end_matches("/admin/v1");
    let metadata = format!("{origin}{METADATA_PATH}");
    let value = match &error {
        AdminError::InsufficientScope => format!(
            "Bearer error=\"insufficient_scope\", scope=\"{ADMIN_SCOPE}\", resource_metadata=\"{metadata}\""
        ),
        _ if presented => {
            format!("Bearer error=\"invalid_token\", resource_metadata=\"{metadata}\"")
        }
        _ => format!("Bearer resource_metadata=\"{metadata}\""),
    };
    let mut response = error.into_response();
    if let Ok(value) = HeaderValue::from_str(&value) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

/// Returns the RFC 9728 document of the admin resource.
#[utoipa::path(get, path = "/.well-known/oauth-protected-resource/admin/v1", tag = "meta",
    responses((status = 200, description = "the RFC 9728 protected-resource metadata of this API")))]
async fn resource_metadata(State(admin): State<Admin>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "resource": admin.resource(),
        "authorization_servers": [admin.issuer()],
        "scopes_supported": [ADMIN_SCOPE],
        "bearer_methods_supported": ["header"],
        "resource_name": "Gatehouse admin API",
    }))
}

/// Serves this API's OpenAPI document.
#[utoipa::path(get, path = "/admin/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI document of this API")))]
async fn openapi_json() -> Json<OpenApi> {
    Json(document())
}

/// Returns the policy set in force and its version.
#[utoipa::path(get, path = "/admin/v1/policies", tag = "policies",
    responses((status = 200, body = PolicyState)))]
async fn get_policies(State(admin): State<Admin>, caller: AdminCaller) -> Json<PolicyState> {
    Json(admin.policies(&caller))
}

/// Replaces the whole policy set; it reaches every edge of this process at once.
#[utoipa::path(put, path = "/admin/v1/policies", tag = "policies", request_body = PolicySet,
    responses((status = 200, body = PolicyState),
              (status = 400, description = "invalid policies, with Cedar's diagnostics; nothing changed", body = ErrorBody)))]
async fn put_policies(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Input(set): Input<PolicySet>,
) -> Result<Json<PolicyState>, AdminError> {
    admin.set_policies(&caller, set).map(Json)
}

/// Returns the rate-limit rules in force.
#[utoipa::path(get, path = "/admin/v1/rate-limits", tag = "policies",
    responses((status = 200, body = RateLimits)))]
async fn get_rate_limits(State(admin): State<Admin>, caller: AdminCaller) -> Json<RateLimits> {
    Json(admin.rate_limits(&caller))
}

/// Replaces the rate-limit rules; every call from now on is charged by them (the bucket store
/// stays the one the gateway started with).
#[utoipa::path(put, path = "/admin/v1/rate-limits", tag = "policies", request_body = RateLimits,
    responses((status = 200, body = RateLimits),
              (status = 400, description = "an invalid rule, named with its field; nothing changed", body = ErrorBody)))]
async fn put_rate_limits(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Input(limits): Input<RateLimits>,
) -> Result<Json<RateLimits>, AdminError> {
    admin.set_rate_limits(&caller, limits).await.map(Json)
}

/// Lists the virtual servers in force.
#[utoipa::path(get, path = "/admin/v1/virtual-servers", tag = "virtual servers",
    responses((status = 200, body = Vec<VirtualServerView>)))]
async fn list_virtual_servers(
    State(admin): State<Admin>,
    caller: AdminCaller,
) -> Json<Vec<VirtualServerView>> {
    Json(admin.virtual_servers(&caller))
}

/// Returns one virtual server.
#[utoipa::path(get, path = "/admin/v1/virtual-servers/{name}", tag = "virtual servers",
    params(("name" = String, Path, description = "the virtual server's name")),
    responses((status = 200, body = VirtualServerView), (status = 404, body = ErrorBody)))]
async fn get_virtual_server(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<VirtualServerView>, AdminError> {
    admin.virtual_server(&caller, &name).map(Json)
}

/// Lists the connectors in force (never headers or environment).
#[utoipa::path(get, path = "/admin/v1/connectors", tag = "connectors",
    responses((status = 200, body = Vec<ConnectorView>)))]
async fn list_connectors(
    State(admin): State<Admin>,
    caller: AdminCaller,
) -> Json<Vec<ConnectorView>> {
    Json(admin.connectors(&caller))
}

/// Returns one connector.
#[utoipa::path(get, path = "/admin/v1/connectors/{name}", tag = "connectors",
    params(("name" = String, Path, description = "the connector's name")),
    responses((status = 200, body = ConnectorView), (status = 404, body = ErrorBody)))]
async fn get_connector(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<ConnectorView>, AdminError> {
    admin.connector(&caller, &name).map(Json)
}

/// Stores or replaces a connector's shared credential (write-only: nothing returns it).
#[utoipa::path(put, path = "/admin/v1/connectors/{name}/shared-credential", tag = "credentials",
    params(("name" = String, Path, description = "the connector's name")),
    request_body = SharedCredentialInput,
    responses((status = 200, body = CredentialRef), (status = 404, body = ErrorBody)))]
async fn put_shared_credential(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(name): Path<String>,
    Input(input): Input<SharedCredentialInput>,
) -> Result<Json<CredentialRef>, AdminError> {
    admin
        .set_shared_credential(&caller, &name, input)
        .await
        .map(Json)
}

/// Deletes a connector's shared credential.
#[utoipa::path(delete, path = "/admin/v1/connectors/{name}/shared-credential", tag = "credentials",
    params(("name" = String, Path, description = "the connector's name")),
    responses((status = 200, body = CredentialRef), (status = 404, body = ErrorBody)))]
async fn delete_shared_credential(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<CredentialRef>, AdminError> {
    admin
        .delete_shared_credential(&caller, &name)
        .await
        .map(Json)
}

/// Deletes a member's own credential for a connector (their next call gets a fresh link).
#[utoipa::path(delete, path = "/admin/v1/connectors/{name}/members/{member}/credential", tag = "credentials",
    params(("name" = String, Path, description = "the connector's name"),
        ("member" = String, Path, description = "the member's id")),
    responses((status = 200, body = CredentialRef), (status = 404, body = ErrorBody)))]
async fn delete_member_credential(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path((name, member)): Path<(String, String)>,
) -> Result<Json<CredentialRef>, AdminError> {
    admin
        .delete_member_credential(&caller, &name, &member)
        .await
        .map(Json)
}

/// Reports each connector's credential health.
#[utoipa::path(get, path = "/admin/v1/connector-health", tag = "connectors",
    responses((status = 200, body = Vec<HealthView>)))]
async fn connector_health(
    State(admin): State<Admin>,
    caller: AdminCaller,
) -> Result<Json<Vec<HealthView>>, AdminError> {
    admin.connector_health(&caller).await.map(Json)
}

/// Reports the active key-encryption key and how many credentials the re-wrap has left.
#[utoipa::path(get, path = "/admin/v1/vault/kek", tag = "connectors",
    responses((status = 200, body = KekView)))]
async fn kek_status(
    State(admin): State<Admin>,
    caller: AdminCaller,
) -> Result<Json<KekView>, AdminError> {
    admin.kek_status(&caller).await.map(Json)
}

/// Lists agent bundles, newest first.
#[utoipa::path(get, path = "/admin/v1/agents", tag = "agents", params(AgentFilter),
    responses((status = 200, body = Vec<AgentView>)))]
async fn list_agents(
    State(admin): State<Admin>,
    steward: Steward,
    Params(filter): Params<AgentFilter>,
) -> Result<Json<Vec<AgentView>>, AdminError> {
    admin.agents(&steward, filter).await.map(Json)
}

/// Creates an agent bundle; its client secret is in the response, this once.
#[utoipa::path(post, path = "/admin/v1/agents", tag = "agents", request_body = NewAgentInput,
    responses((status = 200, body = AgentWithSecret), (status = 400, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn create_agent(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Input(input): Input<NewAgentInput>,
) -> Result<Json<AgentWithSecret>, AdminError> {
    admin.create_agent(&caller, input).await.map(Json)
}

/// Returns one agent bundle by name, bundle id or client id.
#[utoipa::path(get, path = "/admin/v1/agents/{agent}", tag = "agents",
    params(("agent" = String, Path, description = "the bundle's name, id or client id")),
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
async fn get_agent(
    State(admin): State<Admin>,
    steward: Steward,
    Path(agent): Path<String>,
) -> Result<Json<AgentView>, AdminError> {
    admin.agent(&steward, &agent).await.map(Json)
}

/// Creates an agent bundle or brings it to the declared state (`gatehouse apply`).
#[utoipa::path(put, path = "/admin/v1/agents/{agent}", tag = "agents",
    params(("agent" = String, Path, description = "the bundle's name")),
    request_body = AgentDeclarationInput,
    responses((status = 200, body = AgentWithSecret), (status = 400, body = ErrorBody)))]
async fn put_agent(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(agent): Path<String>,
    Input(input): Input<AgentDeclarationInput>,
) -> Result<Json<AgentWithSecret>, AdminError> {
    admin.put_agent(&caller, &agent, input).await.map(Json)
}

/// Issues a new client secret, shown this once; the previous one works until the overlap ends.
#[utoipa::path(post, path = "/admin/v1/agents/{agent}/rotate", tag = "agents",
    params(("agent" = String, Path, description = "the bundle's name, id or client id")),
    request_body = RotateInput,
    responses((status = 200, body = AgentWithSecret), (status = 404, body = ErrorBody)))]
async fn rotate_agent(
    State(admin): State<Admin>,
    steward: Steward,
    Path(agent): Path<String>,
    Input(input): Input<RotateInput>,
) -> Result<Json<AgentWithSecret>, AdminError> {
    let overlap = input.overlap_seconds.map(Duration::from_secs);
    admin
        .rotate_agent(&steward, &agent, overlap)
        .await
        .map(Json)
}

/// Disables an agent bundle for good; its tokens stop working at edge within a second.
#[utoipa::path(post, path = "/admin/v1/agents/{agent}/decommission", tag = "agents",
    params(("agent" = String, Path, description = "the bundle's name, id or client id")),
    request_body = DecommissionInput,
    responses((status = 200, body = AgentView), (status = 404, body = ErrorBody)))]
async fn decommission_agent(
    State(admin): State<Admin>,
    steward: Steward,
    Path(agent): Path<String>,
    Input(input): Input<DecommissionInput>,
) -> Result<Json<AgentView>, AdminError> {
    admin
        .decommission_agent(&steward, &agent, &input.reason)
        .await
        .map(Json)
}

/// Searches the audit log by who, where, what and when.
#[utoipa::path(get, path = "/admin/v1/audit/events", tag = "audit", params(AuditQuery),
    responses((status = 200, body = AuditPage), (status = 400, body = ErrorBody)))]
async fn search_audit(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Params(query): Params<AuditQuery>,
) -> Result<Json<AuditPage>, AdminError> {
    admin.search_audit(&caller, query).await.map(Json)
}

/// Recomputes the audit log's hash chain and Merkle tree and names the first broken record; an
/// intact log gets a checkpoint of its head signed, named in the report.
#[utoipa::path(post, path = "/admin/v1/audit/verify", tag = "audit", request_body = VerifyInput,
    responses((status = 200, description = "the verification report (a broken log is reported, not refused)", body = VerifyReportView),
              (status = 400, description = "the checkpoint is not signed by this log's key", body = ErrorBody)))]
async fn verify_audit(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Input(input): Input<VerifyInput>,
) -> Result<Json<VerifyReportView>, AdminError> {
    admin.verify_audit(&caller, input).await.map(Json)
}

/// Returns the RFC 6962 inclusion proof of one event under a signed checkpoint, to verify
/// offline against the log's pinned verifier key.
#[utoipa::path(get, path = "/admin/v1/audit/events/{event_id}/proof", tag = "audit",
    params(("event_id" = String, Path, description = "the event's id")),
    responses((status = 200, body = ProofView), (status = 404, body = ErrorBody)))]
async fn prove_audit_event(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(event_id): Path<String>,
) -> Result<Json<ProofView>, AdminError> {
    admin.prove_audit_event(&caller, &event_id).await.map(Json)
}

/// Follows the audit log: one JSON record per line (NDJSON) for each matching event stored
/// after `after` (the current head by default), until the client hangs up.
#[utoipa::path(get, path = "/admin/v1/audit/tail", tag = "audit", params(TailQuery),
    responses((status = 200, description = "a chunked stream of records, one JSON object per line", content_type = "application/x-ndjson", body = TailRecordView),
              (status = 400, body = ErrorBody)))]
async fn tail_audit(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Params(query): Params<TailQuery>,
) -> Result<Response, AdminError> {
    let records = admin.tail_audit(&caller, query).await?;
    let lines = records.map(|record| {
        record.map(|record| {
            let mut line = serde_json::to_vec(&record).unwrap_or_default();
            line.push(b'\n');
            line
        })
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(lines),
    )
        .into_response())
}

/// Creates or replaces a virtual server; it is served (and its connected clients told) at once.
#[utoipa::path(put, path = "/admin/v1/virtual-servers/{name}", tag = "virtual servers",
    params(("name" = String, Path, description = "the virtual server's name")),
    request_body(content = Object, description = "the server's declaration, as under `virtual_servers:` in the gateway file"),
    responses((status = 200, body = VirtualServerView),
              (status = 400, description = "an invalid declaration; nothing changed", body = ErrorBody)))]
async fn put_virtual_server(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(name): Path<String>,
    Input(declaration): Input<serde_json::Value>,
) -> Result<Json<VirtualServerView>, AdminError> {
    admin
        .put_virtual_server(&caller, &name, declaration)
        .await
        .map(Json)
}

/// Stops serving a virtual server; its sessions end and its endpoint answers 404.
#[utoipa::path(delete, path = "/admin/v1/virtual-servers/{name}", tag = "virtual servers",
    params(("name" = String, Path, description = "the virtual server's name")),
    responses((status = 200, body = VirtualServerView), (status = 404, body = ErrorBody),
              (status = 400, description = "another declaration still names it", body = ErrorBody)))]
async fn delete_virtual_server(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<VirtualServerView>, AdminError> {
    admin.delete_virtual_server(&caller, &name).await.map(Json)
}

/// Creates or replaces a connector; a changed one restarts once its in-flight calls finish.
#[utoipa::path(put, path = "/admin/v1/connectors/{name}", tag = "connectors",
    params(("name" = String, Path, description = "the connector's name")),
    request_body(content = Object, description = "the connector's declaration, as under `connectors:` in the gateway file"),
    responses((status = 200, body = ConnectorView),
              (status = 400, description = "an invalid declaration; nothing changed", body = ErrorBody)))]
async fn put_connector(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(name): Path<String>,
    Input(declaration): Input<serde_json::Value>,
) -> Result<Json<ConnectorView>, AdminError> {
    admin
        .put_connector(&caller, &name, declaration)
        .await
        .map(Json)
}

/// Removes a connector and its tools from every virtual server that lists it.
#[utoipa::path(delete, path = "/admin/v1/connectors/{name}", tag = "connectors",
    params(("name" = String, Path, description = "the connector's name")),
    responses((status = 200, body = ConnectorView), (status = 404, body = ErrorBody),
              (status = 400, description = "a virtual server would be left without connectors", body = ErrorBody)))]
async fn delete_connector(
    State(admin): State<Admin>,
    caller: AdminCaller,
    Path(name): Path<String>,
) -> Result<Json<ConnectorView>, AdminError> {
    admin.delete_connector(&caller, &name).await.map(Json)
}
