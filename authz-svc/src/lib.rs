//! authz-svc: Gatehouse's OAuth 2.1 authorization server and policy decision
//! point. Its OAuth HTTP face ([`oauth_router`]) is mounted on the gateway's
//! public origin; its gRPC server serves health, reflection and the
//! `gatehouse.authz.v1.Authz` data-plane service (policy decisions and the policy
//! feed, over a [`PolicyStore`]).

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

mod agent;
mod client;
mod config;
mod directory;
mod error;
mod events;
mod grant;
mod grpc;
mod issuer;
mod keys;
mod member;
mod oauth;
mod policy;
mod revocation;
mod scim;
mod state;
mod store;
mod token;
mod workload;

pub use agent::{
    AgentConfig, AgentRegistry, CreatedAgent, DEFAULT_SECRET_OVERLAP, LAST_USED_GRANULARITY,
    NewAgent, RotatedSecret,
};
pub use client::{
    AUTHORIZATION_CODE, CLIENT_CREDENTIALS, ClientRegistration, REFRESH_TOKEN, RegistrationError,
    TOKEN_EXCHANGE,
};
pub use config::{
    AuthorizationConfig, Config, DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_LISTEN_ADDR, ENV_PREFIX,
    MAX_AGENT_TOKEN_TTL, MemberConfig, PolicyConfig,
};
pub use directory::DirectoryView;
pub use error::Error;
pub use events::{AuditSink, CredentialPurge, RevocationListener};
pub use issuer::{Issuer, ProtectedResource};
pub use keys::MASTER_KEY_ENV;
pub use member::TEST_MEMBER;
pub use oauth::oauth_router;
pub use policy::PolicyStore;
pub use revocation::REVOCATION_POLL_INTERVAL;
pub use scim::{ScimConfig, scim_router};
pub use state::{AuthzState, RegisteredClient};
pub use store::{
    AgentAuthentication, AgentKey, AgentListQuery, AgentRecord, AgentSecretRecord, AgentStore,
    ClientRecord, CodeRecord, DirectoryFilter, DirectoryGroup, DirectoryPage, DirectoryStore,
    DirectoryUser, FamilyRecord, KeyRecord, KeyStatus, MemberState, NewRefresh, PostgresStore,
    Redemption, RevocationKind, RevocationRecord, SqliteStore, Store, StoreConfig, WorkloadIssuer,
};
pub use token::{ACCESS_TOKEN_TYPE, ACCESS_TOKEN_TYPE_URI, AccessClaims};

/// Is the fully qualified name of the data-plane gRPC service.
pub const SERVICE_NAME: &str = "gatehouse.authz.v1.Authz";

/// Serves authz-svc's gRPC API on `listener` until `shutdown` is cancelled, then
/// lets in-flight requests finish and returns. The policies come from
/// `config.policies`; invalid ones refuse the start with Cedar's diagnostics.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let policies = PolicyStore::new(&config.policies).context("cannot load policies")?;
    serve_with(config, policies, listener, shutdown).await
}

/// Serves authz-svc's gRPC API over `policies`, a store the caller keeps to
/// replace policies at runtime (the admin API) or to hand its watch channel to an
/// edge in the same process (`gatehouse up`).
pub async fn serve_with(
    config: Config,
    policies: PolicyStore,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let authz = grpc::AuthzGrpc::new(policies, shutdown.child_token());
    let (health, health_service) = svc_kit::grpc::health().await;
    health
        .set_serving::<proto::authz::v1::authz_server::AuthzServer<grpc::AuthzGrpc>>()
        .await;
    let reflection = svc_kit::grpc::reflection(proto::FILE_DESCRIPTOR_SET, &[SERVICE_NAME])?;
    let listen_addr = listener.local_addr()?;
    tracing::info!(%listen_addr, "authz-svc serving grpc");
    svc_kit::grpc::server(&config.grpc)
        .add_service(health_service)
        .add_service(reflection)
        .add_service(proto::authz::v1::authz_server::AuthzServer::new(authz))
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .context("authz-svc grpc server failed")?;
    tracing::info!("authz-svc stopped");
    Ok(())
}
