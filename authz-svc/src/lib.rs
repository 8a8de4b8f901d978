//! authz-svc: Gatehouse's OAuth 2.1 authorization server and policy decision
//! point. Its OAuth HTTP face ([`oauth_router`]) is mounted on the gateway's
//! public origin (or, standalone, on its own listener); its gRPC server serves
//! health, reflection, the `gatehouse.authz.v1.Authz` data-plane service (policy
//! decisions and feed, token validation, the revocation feed, token exchange) and
//! `AgentAdmin`, each behind service tokens per caller role.

use std::sync::Arc;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

mod agent;
mod client;
mod config;
mod directory;
mod egress;
mod error;
mod events;
mod exchange;
mod federation;
mod grant;
mod grpc;
mod issuer;
mod keys;
mod member;
mod metrics;
mod oauth;
mod policy;
mod revocation;
mod scim;
mod state;
mod store;
mod token;
mod upstream;
mod validation;
mod workload;

pub use agent::{
    AgentConfig, AgentQuota, AgentRegistry, CreatedAgent, DEFAULT_SECRET_OVERLAP,
    LAST_USED_GRANULARITY, NewAgent, RotatedSecret,
};
pub use client::{
    AUTHORIZATION_CODE, CLIENT_CREDENTIALS, ClientDocumentsConfig, ClientRegistration, JWT_BEARER,
    REFRESH_TOKEN, RegistrationError, TOKEN_EXCHANGE,
};
pub use config::{
    AuditForwardConfig, AuthorizationConfig, CallersConfig, Config, DEFAULT_ACCESS_TOKEN_TTL,
    DEFAULT_HTTP_LISTEN_ADDR, DEFAULT_LISTEN_ADDR, DEFAULT_SIGNING_KEY_ROTATION, ENV_PREFIX,
    EnterpriseIdpConfig, ExchangeTarget, IdentityProviderConfig, MAX_AGENT_TOKEN_TTL, MemberConfig,
    OAuthFaceConfig, PolicyConfig, ResourceConfig, StoreSection,
};
pub use directory::{DirectoryView, GroupCommand, MemberCommand, MemberRecord};
pub use error::Error;
pub use events::{AuditSink, CredentialPurge, RevocationListener};
pub use issuer::{Issuer, ProtectedResource};
pub use keys::MASTER_KEY_ENV;
pub use member::TEST_MEMBER;
pub use oauth::oauth_router;
pub use policy::PolicyStore;
pub use revocation::REVOCATION_POLL_INTERVAL;

/// Is how often each replica checks the signing key rotation schedule and reloads the
/// key set (picking up another replica's rotation).
pub const KEY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
pub use scim::{ScimConfig, scim_router};
pub use state::{AuthzState, RegisteredClient};
pub use store::{
    AgentAuthentication, AgentKey, AgentListQuery, AgentRecord, AgentSecretRecord, AgentStore,
    ClientRecord, CodeRecord, ConsentRecord, DirectoryFilter, DirectoryGroup, DirectoryPage,
    DirectoryStore, DirectoryUser, FamilyRecord, FederatedMember, KeyRecord, KeyStatus,
    MANAGED_BY_GATEWAY_FILE, MemberState, NewRefresh, PostgresStore, Redemption, RevocationKind,
    RevocationRecord, SqliteStore, Store, StoreConfig, WorkloadIssuer,
};
pub use token::{ACCESS_TOKEN_TYPE, ACCESS_TOKEN_TYPE_URI, AccessClaims};

/// Is the fully qualified name of the data-plane gRPC service.
pub const SERVICE_NAME: &str = "gatehouse.authz.v1.Authz";

/// Is the fully qualified name of the agent administration gRPC service.
pub const AGENT_ADMIN_SERVICE_NAME: &str = "gatehouse.authz.v1.AgentAdmin";

/// Opens the authorization server's state as `config` describes it: the store, the
/// master and signing keys, and the issuer. An `http://` issuer on a loopback address
/// is accepted (with a warning), as `gatehouse up` does, since nothing else reaches it.
pub async fn open(config: &Config) -> anyhow::Result<AuthzState> {
    let issuer = config.oauth.issuer()?;
    let mut authorization = config.authorization.clone();
    let loopback = issuer.issuer.host().is_some_and(|host| match host {
        url::Host::Domain(name) => name == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    });
    if loopback && issuer.issuer.scheme() == "http" && !authorization.allow_insecure_http {
        tracing::warn!(
            "loopback issuer: the authorization server runs over plain http (development only)"
        );
        authorization.allow_insecure_http = true;
    }
    if config.store.postgres_url.is_none() {
        std::fs::create_dir_all(&config.store.data_dir).with_context(|| {
            format!(
                "cannot create data directory {}",
                config.store.data_dir.display()
            )
        })?;
    }
    AuthzState::open(authorization, issuer, StoreConfig::from(&config.store))
        .await
        .context("cannot open the authorization server")
}

/// Serves authz-svc's gRPC API on `listener` until `shutdown` is cancelled, then
/// lets in-flight requests finish and returns. The state is opened from `config`;
/// invalid policies refuse the start with Cedar's diagnostics.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let policies = PolicyStore::new(&config.policies).context("cannot load policies")?;
    let state = open(&config).await?;
    serve_with(&config, policies, state, listener, shutdown).await
}

/// Runs authz-svc standalone: gRPC on `grpc`, the OAuth HTTP face on `http`, audit
/// events to audit-svc (`config.audit`), until `shutdown`.
pub async fn run(
    mut config: Config,
    grpc: TcpListener,
    http: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Without a configured issuer the origin is the listener's own address, as bound.
    config.oauth.listen_addr = http.local_addr()?;
    let policies = PolicyStore::new(&config.policies).context("cannot load policies")?;
    let mut state = open(&config).await?;
    // Delivery outlives the servers, so events of in-flight requests are still sent now;
    // whatever is not acknowledged stays in the spool for the next start.
    let forwarder_shutdown = CancellationToken::new();
    let forwarder = upstream::start(&config.audit, &config.store, &forwarder_shutdown)
        .context("cannot open the audit spool")?;
    let recording = forwarder.is_some();
    if let Some(sink) = forwarder {
        state = state.clone().with_audit(Arc::new(sink));
    }
    let _outbox = state.forward_audit_outbox(shutdown.child_token());
    let _keys = state.maintain_keys(shutdown.child_token());
    if !recording {
        tracing::warn!(
            "audit.url is not set: token and agent events are not recorded (development only)"
        );
    }
    let http_addr = http.local_addr()?;
    tracing::info!(http_listen_addr = %http_addr, issuer = %state.issuer(), "authz-svc serving oauth");
    // `/metrics` only here: `gatehouse up` merges `oauth_router` beside edge's, which has its own.
    let router = oauth_router(state.clone())
        .route(
            "/metrics",
            axum::routing::get(svc_kit::telemetry::metrics::scrape_response),
        )
        .layer(svc_kit::http::trace_layer());
    let http_shutdown = shutdown.clone();
    let http_task = tokio::spawn(async move {
        axum::serve(http, router)
            .with_graceful_shutdown(http_shutdown.cancelled_owned())
            .await
    });
    let served = serve_with(&config, policies, state, grpc, shutdown).await;
    let http_served = http_task.await.context("oauth server task panicked")?;
    forwarder_shutdown.cancel();
    served?;
    http_served.context("authz-svc oauth server failed")
}

/// Serves authz-svc's gRPC API over `policies` (a store the caller keeps to replace
/// policies at runtime or to hand its watch channel to an edge in the same process)
/// and `state`, admitting the callers `config.callers` names.
pub async fn serve_with(
    config: &Config,
    policies: PolicyStore,
    state: AuthzState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    use proto::authz::v1::agent_admin_server::AgentAdminServer;
    use proto::authz::v1::authz_server::AuthzServer;
    let callers = grpc::Callers::new(&config.callers);
    let admin = grpc::AgentAdminGrpc::new(state.agents().clone(), callers.clone());
    let authz = grpc::AuthzGrpc::new(policies, state, callers, shutdown.child_token());
    let (health, health_service) = svc_kit::grpc::health().await;
    health.set_serving::<AuthzServer<grpc::AuthzGrpc>>().await;
    health
        .set_serving::<AgentAdminServer<grpc::AgentAdminGrpc>>()
        .await;
    let reflection = svc_kit::grpc::reflection(
        proto::FILE_DESCRIPTOR_SET,
        &[SERVICE_NAME, AGENT_ADMIN_SERVICE_NAME],
    )?;
    let listen_addr = listener.local_addr()?;
    tracing::info!(%listen_addr, "authz-svc serving grpc");
    svc_kit::grpc::server(&config.grpc)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(AuthzServer::new(authz))
        .add_service(AgentAdminServer::new(admin))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .context("authz-svc grpc server failed")?;
    tracing::info!("authz-svc stopped");
    Ok(())
}
