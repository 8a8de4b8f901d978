//! edge-svc: the MCP front door of Gatehouse.
//!
//! Serves each virtual server at `/v/{name}/mcp` on both MCP protocol eras, forwards to the
//! connectors behind it, and leaves the bearer-token check to the [`auth`] seam.

pub mod access;
pub mod audit;
pub mod auth;
pub mod catalogue;
pub mod config;
pub mod connector;
pub mod credentials;
mod doorway;
pub mod error;
pub mod gateway;
pub mod http;
pub mod inbound;
pub mod inspect;
pub mod proxy;
pub mod quota;
pub mod routing;
pub mod session;
pub mod spec;
pub mod switchboard;
pub mod telemetry;
pub mod vmcp;
pub mod watch;

use std::path::Path;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::Config;
pub use error::Error;
pub use gateway::Gateway;
pub use spec::GatewaySpec;

/// Reads and validates a gateway description file.
pub fn load_spec(path: &Path) -> Result<GatewaySpec, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::ReadSpec {
        path: path.display().to_string(),
        source,
    })?;
    Ok(GatewaySpec::from_yaml(&text, &path.display().to_string())?)
}

/// Serves the gateway's virtual servers on `listener` until `shutdown` is cancelled.
pub async fn serve(
    gateway: Gateway,
    face: config::HttpFace,
    auth: Option<http::ResourceAuth>,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let router = http::router(&gateway, &face, auth, &shutdown);
    serve_router(router, listener, shutdown).await
}

/// Serves any router built on [`http::router`] (for example merged with the OAuth endpoints).
pub async fn serve_router(
    router: axum::Router,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    doorway::serve(router, listener, shutdown).await;
    Ok(())
}
