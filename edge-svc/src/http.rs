//! The HTTP face: one streamable-HTTP MCP endpoint per virtual server, plus health.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::auth::{Gate, TokenVerifier};
use crate::config::HttpFace;
use crate::gateway::Gateway;
use crate::proxy::Proxy;
use crate::spec::AuthMode;

mod malformed;
mod metadata;

/// How the gateway checks tokens: the verifier and the authorization server it trusts.
#[derive(Debug, Clone)]
pub struct ResourceAuth {
    /// Checks each presented access token.
    pub verifier: Arc<dyn TokenVerifier>,
    /// The authorization server's issuer, advertised in the protected-resource metadata.
    pub issuer: String,
}

/// Builds the router for every virtual server of `gateway`.
///
/// Sessions live in this process's memory (rmcp's `LocalSessionManager`); rmcp's
/// `SessionStore` seam is where a shared store plugs in so a session survives on any replica.
pub fn router(
    gateway: &Gateway,
    face: &HttpFace,
    auth: Option<ResourceAuth>,
    shutdown: &CancellationToken,
) -> Router {
    let verifier = auth.as_ref().map(|auth| Arc::clone(&auth.verifier));
    let mut router = Router::new().route("/healthz", get(healthz));
    for server in gateway.servers() {
        let config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(face.allowed_hosts.clone())
            .with_allowed_origins(face.allowed_origins.clone())
            .enforce_origin_validation()
            .with_max_request_body_bytes(face.max_body_bytes)
            // A reply with nothing before it goes out as plain JSON (cheaper for both sides);
            // rmcp falls back to SSE as soon as progress or a relayed request comes first.
            .with_json_response(true)
            .with_cancellation_token(shutdown.child_token());
        let (server_for_factory, board) = (Arc::clone(server), Arc::clone(gateway.switchboard()));
        let (recorder, access) = (gateway.recorder().clone(), gateway.access().clone());
        let (quotas, inspector) = (gateway.quotas().clone(), gateway.inspector().clone());
        let service = StreamableHttpService::new(
            move || {
                Ok(Proxy::new(
                    Arc::clone(&server_for_factory),
                    Arc::clone(&board),
                    recorder.clone(),
                    access.clone(),
                    quotas.clone(),
                )
                .with_inspector(inspector.clone()))
            },
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let gate = Gate::new(
            face.resource_url(server.name()),
            server.auth(),
            verifier.clone(),
            face.resource_metadata_url(server.name()),
        )
        .with_scopes(gateway.access().clone(), server.name());
        let max_body_bytes = face.max_body_bytes;
        let mut endpoint = Router::new().route_service("/", service);
        if gateway.quotas().is_enforced() {
            endpoint = endpoint.layer(middleware::from_fn(crate::quota::retry_after));
        }
        let endpoint = endpoint
            .layer(middleware::from_fn(move |request, next| {
                malformed::spec_shaped(max_body_bytes, request, next)
            }))
            .layer(middleware::from_fn_with_state(gate, admit));
        router = router.nest(&format!("/v/{}/mcp", server.name()), endpoint);
        if let (Some(auth), AuthMode::Oauth) = (&auth, server.auth()) {
            let (resource, issuer, name, access) = (
                face.resource_url(server.name()),
                auth.issuer.clone(),
                server.name().to_owned(),
                gateway.access().clone(),
            );
            let path = format!("/.well-known/oauth-protected-resource/v/{name}/mcp");
            router = router.route(
                &path,
                get(move || async move {
                    metadata::document(&resource, &issuer, &name, &access.scopes_supported(&name))
                }),
            );
        }
    }
    router
        .route(
            "/metrics",
            get(svc_kit::telemetry::metrics::scrape_response),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(crate::telemetry::stash_trace_context))
        .layer(svc_kit::http::trace_layer())
}

async fn admit(State(gate): State<Gate>, request: Request<Body>, next: Next) -> Response {
    match gate.admit(request).await {
        Ok(request) => next.run(request).await,
        Err(response) => *response,
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such virtual server or endpoint").into_response()
}
