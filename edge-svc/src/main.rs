//! Runs edge-svc on its own: `edge-svc [--config FILE]` (TOML; `GATEHOUSE_EDGE__*` overrides).

use std::path::PathBuf;

use clap::Parser;
use tokio_util::sync::CancellationToken;

/// Runs edge-svc, Gatehouse's MCP front door.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Reads configuration from this TOML file; GATEHOUSE_EDGE__* variables override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    // The stdio sandbox re-executes this binary as its launcher: decide before any thread starts.
    edge_svc::connector::sandbox::run_if_requested();
    tokio::runtime::Runtime::new()?.block_on(run(Args::parse()))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let sources = svc_kit::config_sources(edge_svc::config::ENV_PREFIX, args.config.as_deref());
    let config: edge_svc::Config = svc_kit::exit_on_invalid(sources.extract());
    let spec = svc_kit::exit_on_invalid(
        edge_svc::load_spec(&config.gateway)
            .map_err(|error| figment::Error::from(error.to_string())),
    );
    let telemetry = svc_kit::telemetry::init("edge-svc", &config.telemetry)?;
    let listener = tokio::net::TcpListener::bind(config.listen_addr).await?;
    let shutdown = CancellationToken::new();
    svc_kit::shutdown::cancel_on_signal(shutdown.clone());
    let face = config.http_face(listener.local_addr()?)?;
    let recorder = match &config.audit {
        Some(audit) => edge_svc::audit::Recorder::start(audit, &shutdown)?,
        None => {
            tracing::warn!("NO AUDIT TRAIL: set `audit` to record calls in audit-svc");
            edge_svc::audit::Recorder::disabled()
        }
    };
    let quotas = edge_svc::quota::Quotas::open(&spec.rate_limits).await?;
    let credentials = config
        .vault
        .as_ref()
        .map(edge_svc::credentials::Credentials::connect)
        .transpose()?;
    let link = config
        .authz
        .as_ref()
        .map(|authz| edge_svc::auth::upstream::AuthzLink::start(authz, &shutdown))
        .transpose()?;
    // `token_exchange` connectors get their tokens from the authz-svc this edge follows.
    let credentials = match (credentials, &link) {
        (Some(credentials), Some(link)) => Some(credentials.with_exchanger(link.exchanger.clone())),
        (None, Some(link)) => Some(edge_svc::credentials::Credentials::exchange_only(
            link.exchanger.clone(),
        )),
        (credentials, None) => credentials,
    };
    let mut gateway = edge_svc::Gateway::start_with(&spec, credentials.as_ref(), &shutdown)
        .map_err(anyhow::Error::msg)?
        .with_audit(recorder)
        .with_quotas(quotas);
    if let Some(link) = &link {
        gateway = gateway.with_access(link.access.clone());
    }
    if let Some(sessions) = &config.sessions {
        let store = edge_svc::session::RedisSessions::open(sessions).await?;
        gateway = gateway.with_session_store(std::sync::Arc::new(store));
    }
    let mut server = tokio::spawn(edge_svc::serve(
        gateway,
        face,
        link.map(|link| link.auth),
        listener,
        shutdown.clone(),
    ));
    tokio::select! {
        joined = &mut server => {
            telemetry.shutdown().await;
            return joined?;
        }
        () = shutdown.cancelled() => {}
    }
    let drained = svc_kit::shutdown::drain(server, config.shutdown_grace).await;
    telemetry.shutdown().await;
    drained
}
