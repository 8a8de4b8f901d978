//! The HTTP face: one streamable-HTTP MCP endpoint per virtual server, plus health.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use http::StatusCode;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use crate::auth::{Gate, TokenVerifier};
use crate::config::HttpFace;
use crate::gateway::Gateway;
use crate::proxy::{LiveProxy, Proxy};
use crate::routing::ServerSlot;
use crate::spec::AuthMode;

mod express;
mod malformed;
mod metadata;
mod sessions;

use sessions::Sessions;

/// How the gateway checks tokens: the verifier and the authorization server it trusts.
#[derive(Debug, Clone)]
pub struct ResourceAuth {
    /// Checks each presented access token.
    pub verifier: Arc<dyn TokenVerifier>,
    /// The authorization server's issuer, advertised in the protected-resource metadata.
    pub issuer: String,
}

/// Builds the router for every virtual server `gateway` serves, now and after later changes.
///
/// Each request looks its virtual server up in the gateway's live routing table, so a server
/// created through the admin API is served at once and a deleted one answers 404 (the MCP
/// transport's "session terminated" answer) to its remaining clients.
///
/// Sessions end when their server is deleted or the gateway's own shutdown token is cancelled;
/// `_shutdown` is kept so callers that pass the same token need not change.
///
/// Sessions live in this process's memory (rmcp's `LocalSessionManager`, wrapped by
/// [`Sessions`]) and, when the gateway has a shared session store, there too, so that any
/// replica can continue them.
pub fn router(
    gateway: &Gateway,
    face: &HttpFace,
    auth: Option<ResourceAuth>,
    _shutdown: &CancellationToken,
) -> Router {
    let endpoints = Arc::new(Endpoints {
        gateway: gateway.clone(),
        face: face.clone(),
        auth,
        built: Mutex::default(),
    });
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v/{vmcp}/mcp", any(dispatch))
        .route(
            "/.well-known/oauth-protected-resource/v/{vmcp}/mcp",
            get(resource_metadata),
        )
        .with_state(endpoints)
        .route(
            "/metrics",
            get(svc_kit::telemetry::metrics::scrape_response),
        )
        .fallback(not_found)
        .layer(svc_kit::http::trace_layer())
}

/// The endpoints of the served virtual servers, each built on first use and rebuilt when its
/// server is replaced under the same name or changes how clients authenticate.
#[derive(Debug)]
struct Endpoints {
    gateway: Gateway,
    face: HttpFace,
    auth: Option<ResourceAuth>,
    built: Mutex<HashMap<String, Built>>,
}

/// One virtual server's endpoint and what it was built for.
#[derive(Debug)]
struct Built {
    slot: Arc<ServerSlot>,
    auth: AuthMode,
    endpoint: Arc<Endpoint>,
}

/// One virtual server's MCP endpoint: the token gate, spec-shaped refusals, rate limits, then
/// the express lane or rmcp's streamable-HTTP service, in that order.
///
/// Plain calls in sequence rather than a router with a middleware layer each: every
/// `from_fn` layer clones the service under it and boxes its future on every request.
struct Endpoint {
    gate: Gate,
    max_body_bytes: usize,
    /// Whether rate limits are enforced, so that a refused call answers 429.
    metered: bool,
    lane: express::Lane,
    service: StreamableHttpService<LiveProxy, Sessions>,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("max_body_bytes", &self.max_body_bytes)
            .field("metered", &self.metered)
            .finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Answers one request to the virtual server's MCP endpoint.
    async fn serve(&self, request: Request<Body>) -> Response {
        let request = match self.gate.admit(request).await {
            Ok(request) => request,
            Err(response) => return *response,
        };
        malformed::spec_shaped(self.max_body_bytes, request, async |request| {
            if self.metered {
                crate::quota::retry_after(request, async |request| self.answer(request).await).await
            } else {
                self.answer(request).await
            }
        })
        .await
    }

    /// Answers an admitted, well-formed request on the express lane or through rmcp.
    ///
    /// rmcp's future is boxed: it is several kilobytes, and unboxed it would make every
    /// request's future that large, which each layer above moves (and boxes) again.
    async fn answer(&self, request: Request<Body>) -> Response {
        let ending = request.method() == http::Method::DELETE;
        let mut response = express::serve(&self.lane, request, async |request| {
            Box::pin(self.service.handle(request)).await.map(Body::new)
        })
        .await;
        // rmcp answers an ended session 202; the Python SDK reads anything but 200 or 204 as a
        // failed termination and warns on every close, so the session's end is answered 200.
        if ending && response.status() == http::StatusCode::ACCEPTED {
            *response.status_mut() = http::StatusCode::OK;
        }
        response
    }
}

impl Endpoints {
    /// Returns the endpoint of the served virtual server `name`.
    fn endpoint(&self, name: &str) -> Option<Arc<Endpoint>> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(slot) = self.gateway.server(name) else {
            built.remove(name);
            return None;
        };
        let auth = slot.load().auth();
        if let Some(known) = built.get(name)
            && Arc::ptr_eq(&known.slot, &slot)
            && known.auth == auth
        {
            return Some(Arc::clone(&known.endpoint));
        }
        let endpoint = Arc::new(self.build(name, &slot, auth));
        built.insert(
            name.to_owned(),
            Built {
                slot,
                auth,
                endpoint: Arc::clone(&endpoint),
            },
        );
        Some(endpoint)
    }

    /// Builds the MCP endpoint of one virtual server: the token gate, spec-shaped refusals,
    /// rate limits, then rmcp's streamable-HTTP service over a [`LiveProxy`].
    fn build(&self, name: &str, slot: &Arc<ServerSlot>, auth: AuthMode) -> Endpoint {
        let face = &self.face;
        let gateway = &self.gateway;
        let mut config = StreamableHttpServerConfig::default()
            .with_allowed_hosts(face.allowed_hosts.clone())
            .with_allowed_origins(face.allowed_origins.clone())
            .enforce_origin_validation()
            .with_max_request_body_bytes(face.max_body_bytes)
            // A reply with nothing before it goes out as plain JSON (cheaper for both sides);
            // rmcp falls back to SSE as soon as progress or a relayed request comes first.
            .with_json_response(true)
            // Deleting the server ends its sessions; shutting down ends every server's.
            .with_cancellation_token(slot.sessions().clone());
        let (board, recorder) = (
            Arc::clone(gateway.switchboard()),
            gateway.recorder().clone(),
        );
        let (access, quotas) = (gateway.access().clone(), gateway.quotas().clone());
        let inspector = gateway.inspector().clone();
        let proxy_of = Arc::clone(slot);
        let proxy = move || {
            Proxy::new(
                proxy_of.load(),
                Arc::clone(&board),
                recorder.clone(),
                access.clone(),
                quotas.clone(),
            )
            .with_inspector(inspector.clone())
        };
        let sessions = Sessions::start(
            sessions::IDLE,
            slot.sessions(),
            gateway.session_store().cloned(),
        );
        let counted = Arc::downgrade(&sessions);
        crate::telemetry::watch_sessions(
            name,
            Box::new(move || counted.upgrade().map(|sessions| sessions.count())),
        );
        // rmcp restores a session it runs no worker for from here: one resting after the
        // lane opened it, or one another edge opened.
        config.session_store = Some(Arc::clone(&sessions) as _);
        let lane = express::Lane::new(
            proxy.clone(),
            face.allowed_hosts.clone(),
            Arc::clone(&sessions),
            &config,
        );
        let slot_for_factory = Arc::clone(slot);
        let service = StreamableHttpService::new(
            move || Ok(LiveProxy::new(Arc::clone(&slot_for_factory), proxy())),
            sessions,
            config,
        );
        let gate = Gate::new(
            face.resource_url(name),
            auth,
            self.auth.as_ref().map(|auth| Arc::clone(&auth.verifier)),
            face.resource_metadata_url(name),
        )
        .with_scopes(gateway.access().clone(), name);
        Endpoint {
            gate,
            max_body_bytes: face.max_body_bytes,
            metered: gateway.quotas().is_enforced(),
            lane,
            service,
        }
    }
}

/// Hands a request to its virtual server's endpoint, or answers that none is served.
async fn dispatch(
    State(endpoints): State<Arc<Endpoints>>,
    Path(name): Path<String>,
    mut request: Request<Body>,
) -> Response {
    match endpoints.endpoint(&name) {
        Some(endpoint) => {
            crate::telemetry::stash_trace_context(&mut request);
            endpoint.serve(request).await
        }
        None => not_served(&name),
    }
}

/// Answers a virtual server's RFC 9728 metadata while it is served with OAuth.
async fn resource_metadata(
    State(endpoints): State<Arc<Endpoints>>,
    Path(name): Path<String>,
) -> Response {
    let served = endpoints
        .gateway
        .server(&name)
        .is_some_and(|slot| slot.load().auth() == AuthMode::Oauth);
    match (&endpoints.auth, served) {
        (Some(auth), true) => metadata::document(
            &endpoints.face.resource_url(&name),
            &auth.issuer,
            &name,
            &endpoints.gateway.access().scopes_supported(&name),
        ),
        _ => not_found().await,
    }
}

/// Answers a request for a virtual server that is not (or no longer) served: HTTP 404, which
/// the MCP transport defines as "this session is gone", with a JSON-RPC error body.
fn not_served(name: &str) -> Response {
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": null,
        "error": {
            "code": rmcp::model::ErrorCode::INVALID_REQUEST.0,
            "message": format!("virtual server {name} is not served"),
        },
    });
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "no such virtual server or endpoint").into_response()
}
