//! audit-svc: Gatehouse's append-only, hash-chained audit log. It serves gRPC
//! health and reflection; the `gatehouse.audit.v1` service joins them as it is
//! implemented.

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::transport::server::TcpIncoming;

mod config;
mod error;

pub use config::{Config, DEFAULT_LISTEN_ADDR, ENV_PREFIX};
pub use error::Error;

/// Serves audit-svc's gRPC API on `listener` until `shutdown` is cancelled, then
/// lets in-flight requests finish and returns.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let (_health, health_service) = svc_kit::grpc::health().await;
    // Reflection lists only what is served; audit services are added with their
    // implementations.
    let reflection = svc_kit::grpc::reflection(proto::FILE_DESCRIPTOR_SET, &[])?;
    let listen_addr = listener.local_addr()?;
    tracing::info!(%listen_addr, "audit-svc serving grpc");
    svc_kit::grpc::server(&config.grpc)
        .add_service(health_service)
        .add_service(reflection)
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
        .context("audit-svc grpc server failed")?;
    tracing::info!("audit-svc stopped");
    Ok(())
}
