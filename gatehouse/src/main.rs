//! The Gatehouse product binary: `gatehouse up` runs the whole gateway in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// mimalloc rather than glibc's allocator: a proxied call makes about 1,400 small allocations,
/// and glibc's malloc/free were a fifth of the gateway's instructions per call (callgrind).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod admin;
mod agents;
mod apply;
mod audit;
mod backends;
mod console;
mod credentials;
mod oauth;
mod trail;
mod up;

/// Gatehouse: an identity gateway for the Model Context Protocol.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts every service in this process on the embedded default (SQLite, in-process locks).
    Up {
        /// The YAML gateway description (connectors and virtual servers).
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// Directory for SQLite files and other local state.
        #[arg(long, default_value = ".gatehouse")]
        data: PathBuf,
        /// Address of the one public HTTP listener.
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// The origin clients reach the gateway at (`https://mcp.example.com`); defaults to
        /// `http://{listen}`. Resource URLs, the OAuth issuer and the accepted Host and Origin
        /// derive from it, so set it behind a proxy or a container port mapping.
        #[arg(long, env = "GATEHOUSE_PUBLIC_URL")]
        public_url: Option<url::Url>,
        /// Log format on stderr: `pretty` for people, `json` for log shippers.
        #[arg(long, env = "GATEHOUSE_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
        log_format: String,
        /// Which logs are written, in `RUST_LOG` syntax (`debug`, `info,edge_svc=debug`); the
        /// default is the services' own (`info`, with rmcp's per-session chatter held back).
        #[arg(long, env = "GATEHOUSE_LOG_FILTER")]
        log_filter: Option<String>,
        /// The OTLP/gRPC collector spans and metrics are exported to (`http://127.0.0.1:4317`);
        /// none when unset. `/metrics` serves the same metrics for Prometheus either way.
        #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
        otlp_endpoint: Option<String>,
    },
    /// Sets connectors' shared credentials (write-only).
    Credentials {
        #[command(subcommand)]
        command: credentials::CredentialsCommand,
    },
    /// Reports on connectors.
    Connectors {
        #[command(subcommand)]
        command: credentials::ConnectorsCommand,
    },
    /// Creates, lists, shows, rotates and decommissions agent bundles.
    Agents {
        #[command(subcommand)]
        command: agents::AgentsCommand,
    },
    /// Reconciles a running gateway with a gateway file through the admin API (diff, then apply).
    Apply(apply::ApplyArgs),
    /// Verifies, proves, searches and follows the audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
}

/// How long `gatehouse up` waits, once stopped, for the audit trail's runtime to let go of its
/// threads; audit-svc and the spool have stopped by then.
const AUDIT_RUNTIME_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn main() -> ExitCode {
    // The stdio sandbox re-executes this binary as its launcher; that must win over CLI parsing.
    edge_svc::connector::sandbox::run_if_requested();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("gatehouse: cannot start the async runtime: {error}");
            return ExitCode::from(70);
        }
    };
    match cli.command {
        Command::Up {
            config,
            data,
            listen,
            public_url,
            log_format,
            log_filter,
            otlp_endpoint,
        } => {
            let audit_runtime = match backends::audit_runtime() {
                Ok(audit_runtime) => audit_runtime,
                Err(error) => {
                    eprintln!("gatehouse: cannot start the audit trail's runtime: {error}");
                    return ExitCode::from(70);
                }
            };
            let json_logs = log_format == "json";
            let exit = runtime.block_on(up::run(up::UpOptions {
                config,
                data,
                listen,
                public_url,
                json_logs,
                log_filter,
                otlp_endpoint,
                audit_runtime: audit_runtime.handle().clone(),
            }));
            // audit-svc and the spool stopped with the gateway; what is left is idle.
            audit_runtime.shutdown_timeout(AUDIT_RUNTIME_GRACE);
            exit
        }
        Command::Audit { command } => runtime.block_on(audit::run(command)),
        Command::Apply(args) => runtime.block_on(apply::run(args)),
        Command::Credentials { command } => runtime.block_on(credentials::run_credentials(command)),
        Command::Connectors { command } => runtime.block_on(credentials::run_connectors(command)),
        Command::Agents { command } => runtime.block_on(agents::run(command)),
    }
}
