//! The Gatehouse product binary: `gatehouse up` runs the whole gateway in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod agents;
mod audit;
mod backends;
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
        /// Log format on stderr: `pretty` for people, `json` for log shippers.
        #[arg(long, env = "GATEHOUSE_LOG_FORMAT", default_value = "pretty", value_parser = ["pretty", "json"])]
        log_format: String,
    },
    /// Creates, lists, shows, rotates and decommissions agent bundles.
    Agents {
        #[command(subcommand)]
        command: agents::AgentsCommand,
    },
    /// Verifies, proves, searches and follows the audit log.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
}

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
            log_format,
        } => {
            let json_logs = log_format == "json";
            runtime.block_on(up::run(up::UpOptions {
                config,
                data,
                listen,
                json_logs,
            }))
        }
        Command::Audit { command } => runtime.block_on(audit::run(command)),
        Command::Agents { command } => runtime.block_on(agents::run(command)),
    }
}
