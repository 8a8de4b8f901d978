//! vault-svc: Gatehouse's credential broker, the only place downstream
//! credentials live.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

mod config;
pub mod credential;
pub mod crypto;
mod error;
pub mod event;
pub mod secret;
pub mod store;

pub use config::{Config, DEFAULT_LISTEN_ADDR, ENV_PREFIX};
pub use error::Error;

/// Serves vault-svc's gRPC API on `listener` until `shutdown` is cancelled, then
/// lets in-flight requests finish and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (_health, health_service) = svc_kit::grpc::health().await;
    let reflection = svc_kit::grpc::reflection(proto::FILE_DESCRIPTOR_SET, &[])?;
    let listen_addr = listener.local_addr()?;
    tracing::info!(%listen_addr, "vault-svc serving grpc");
    svc_kit::grpc::server(&config.grpc)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .context("vault-svc grpc server failed")?;
    tracing::info!("vault-svc stopped");
    Ok(())
}
