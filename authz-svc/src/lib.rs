//! authz-svc: Gatehouse's OAuth 2.1 authorization server and policy decision
//! point. Its OAuth HTTP face ([`oauth_router`]) is mounted on the gateway's
//! public origin; its gRPC server serves health and reflection, and the
//! `gatehouse.authz.v1` services join them as they are implemented.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

mod client;
mod config;
mod error;
mod grant;
mod issuer;
mod keys;
mod member;
mod oauth;
mod state;
mod store;
mod token;

pub use client::{
    AUTHORIZATION_CODE, CLIENT_CREDENTIALS, ClientRegistration, REFRESH_TOKEN, RegistrationError,
};
pub use config::{
    AuthorizationConfig, Config, DEFAULT_ACCESS_TOKEN_TTL, DEFAULT_LISTEN_ADDR, ENV_PREFIX,
    MAX_AGENT_TOKEN_TTL, MemberConfig,
};
pub use error::Error;
pub use issuer::{Issuer, ProtectedResource};
pub use keys::MASTER_KEY_ENV;
pub use member::TEST_MEMBER;
pub use oauth::oauth_router;
pub use state::{AuthzState, RegisteredClient};
pub use store::{
    ClientRecord, CodeRecord, FamilyRecord, KeyRecord, KeyStatus, NewRefresh, PostgresStore,
    Redemption, SqliteStore, Store, StoreConfig,
};
pub use token::{ACCESS_TOKEN_TYPE, AccessClaims};

/// Serves authz-svc's gRPC API on `listener` until `shutdown` is cancelled, then
/// lets in-flight requests finish and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (_health, health_service) = svc_kit::grpc::health().await;
    // Reflection lists only what is served; authz services are added with their
    // implementations.
    let reflection = svc_kit::grpc::reflection(proto::FILE_DESCRIPTOR_SET, &[])?;
    let listen_addr = listener.local_addr()?;
    tracing::info!(%listen_addr, "authz-svc serving grpc");
    svc_kit::grpc::server(&config.grpc)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .context("authz-svc grpc server failed")?;
    tracing::info!("authz-svc stopped");
    Ok(())
}
