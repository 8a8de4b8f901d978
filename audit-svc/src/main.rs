//! Runs audit-svc on its own: `audit-svc [--config FILE]`.

use std::path::PathBuf;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Runs audit-svc, Gatehouse's tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Reads configuration from this TOML file; GATEHOUSE_AUDIT__* variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let sources = svc_kit::config_sources(audit_svc::ENV_PREFIX, args.config.as_deref());
    let config = svc_kit::exit_on_invalid(audit_svc::Config::load(sources));
    let telemetry = svc_kit::telemetry::init("audit-svc", &config.telemetry)?;
    let listener = tokio::net::TcpListener::bind(config.grpc.listen_addr).await?;
    let shutdown = CancellationToken::new();
    svc_kit::shutdown::cancel_on_signal(shutdown.clone());
    svc_kit::telemetry::metrics::serve_scrapes(&config.metrics, shutdown.clone()).await?;
    let grace = config.grpc.shutdown_grace;
    let mut server = tokio::spawn(audit_svc::serve(config, listener, shutdown.clone()));
    tokio::select! {
        joined = &mut server => {
            telemetry.shutdown().await;
            return joined?;
        }
        () = shutdown.cancelled() => {}
    }
    let drained = svc_kit::shutdown::drain(server, grace).await;
    telemetry.shutdown().await;
    drained
}
