//! `gatehouse agents`: create, list, show, rotate and decommission agent bundles.
//!
//! By default the commands work on the authorization store of the data directory
//! directly (like `gatehouse audit`), with the master key beside it, so they need no
//! running server and no admin credential beyond access to the data directory. A running
//! `gatehouse up` on the same directory follows the store's revocation log and audit
//! outbox every 250 ms, so a decommissioning here stops the agent's tokens at its edge
//! within a second, and every change reaches the audit trail.
//!
//! With `--endpoint URL` they drive authz-svc's `AgentAdmin` gRPC API instead,
//! presenting the admin service token from `--token-env` (`GATEHOUSE_ADMIN_TOKEN`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use authz_svc::{
    AgentAuthentication, AgentKey, AgentListQuery, AgentRecord, AgentRegistry, AgentSecretRecord,
    NewAgent, StoreConfig,
};
use clap::{Args, Subcommand};
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

mod remote;

/// What `gatehouse agents` can do.
#[derive(Debug, Subcommand)]
pub(crate) enum AgentsCommand {
    /// Creates an agent bundle; prints it with its client secret, shown this once.
    Create {
        #[command(flatten)]
        store: StoreLocation,
        /// The bundle's unique name.
        name: String,
        /// A virtual server the agent may use (repeatable, at least one).
        #[arg(long = "virtual-server", required = true)]
        virtual_servers: Vec<String>,
        /// A scope the agent may be granted (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// A JWK Set file: the agent authenticates with private_key_jwt instead of a secret.
        #[arg(long, value_name = "FILE", conflicts_with = "jwks_uri")]
        jwks: Option<PathBuf>,
        /// An https URL where the agent publishes its JWK Set: private_key_jwt with keys
        /// the agent rotates itself (fetched SSRF-safely and cached by the server).
        #[arg(long, value_name = "URL")]
        jwks_uri: Option<String>,
        /// The accountable member.
        #[arg(long, default_value = "admin")]
        owner: String,
        /// What the agent is for.
        #[arg(long, default_value = "")]
        description: String,
        /// The bundle's own budget at every edge, `n/second|minute|hour|day`.
        #[arg(long, value_name = "RATE")]
        rate: Option<String>,
        /// Calls allowed at once after a quiet spell (with --rate).
        #[arg(long, default_value_t = 1, requires = "rate")]
        burst: u32,
    },
    /// Lists agent bundles, newest first.
    List {
        #[command(flatten)]
        store: StoreLocation,
        /// Only this member's bundles.
        #[arg(long)]
        owner: Option<String>,
        /// Also decommissioned bundles.
        #[arg(long)]
        all: bool,
    },
    /// Shows one bundle (by name, bundle id or client id), never a secret.
    Show {
        #[command(flatten)]
        store: StoreLocation,
        /// The bundle's name, id or client id.
        agent: String,
    },
    /// Issues a new client secret, printed once; the previous one works until the overlap ends.
    Rotate {
        #[command(flatten)]
        store: StoreLocation,
        /// The bundle's name, id or client id.
        agent: String,
        /// How long the previous secret keeps working, such as `1h` or `0s`.
        #[arg(long, value_parser = humantime::parse_duration)]
        overlap: Option<Duration>,
    },
    /// Disables a bundle for good: its secrets and tokens stop working everywhere.
    Decommission {
        #[command(flatten)]
        store: StoreLocation,
        /// The bundle's name, id or client id.
        agent: String,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// Where the agent bundles are: a data directory, or a running authz-svc.
#[derive(Debug, Args)]
pub(crate) struct StoreLocation {
    /// The data directory `gatehouse up` uses.
    #[arg(long, default_value = ".gatehouse")]
    data: PathBuf,
    /// authz-svc's gRPC URL (such as `http://127.0.0.1:50051`): manage bundles there.
    #[arg(long, value_name = "URL")]
    endpoint: Option<String>,
    /// The environment variable holding the admin service token for `--endpoint`.
    #[arg(long, value_name = "VAR", default_value = "GATEHOUSE_ADMIN_TOKEN")]
    token_env: String,
}

/// Runs one agents command, printing JSON; exit code 2 on failure.
pub(crate) async fn run(command: AgentsCommand) -> ExitCode {
    match execute(command).await {
        Ok(output) => {
            let mut out = std::io::stdout().lock();
            match writeln!(out, "{output:#}") {
                Ok(()) => ExitCode::SUCCESS,
                Err(_) => ExitCode::from(74),
            }
        }
        Err(error) => {
            eprintln!("gatehouse agents: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn open(location: &StoreLocation) -> anyhow::Result<AgentRegistry> {
    let store = StoreConfig::Sqlite {
        path: location.data.join("authz.db"),
    };
    let registry = AgentRegistry::open(&store, None).await.with_context(|| {
        format!(
            "cannot open the authorization store in {}",
            location.data.display()
        )
    })?;
    Ok(registry.with_audit_outbox())
}

async fn execute(command: AgentsCommand) -> anyhow::Result<Value> {
    if let Some((endpoint, token_env)) = command.endpoint() {
        return remote::execute(&endpoint, &token_env, command).await;
    }
    match command {
        AgentsCommand::Create {
            store,
            name,
            virtual_servers,
            scopes,
            jwks,
            jwks_uri,
            owner,
            description,
            rate,
            burst,
        } => {
            let authentication = match (jwks, jwks_uri) {
                (Some(file), _) => {
                    let text = std::fs::read_to_string(&file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let jwks = serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", file.display()))?;
                    AgentAuthentication::PrivateKeyJwt { jwks }
                }
                (None, Some(jwks_uri)) => AgentAuthentication::PrivateKeyJwtUri { jwks_uri },
                (None, None) => AgentAuthentication::ClientSecret,
            };
            let registry = open(&store).await?;
            let created = registry
                .create(NewAgent {
                    name,
                    description,
                    owner,
                    virtual_servers,
                    scopes,
                    authentication,
                    quotas: rate.map_or(Value::Null, |rate| json!({"rate": rate, "burst": burst})),
                    client_id: None,
                })
                .await?;
            let mut output = describe(
                &created.agent,
                &registry.secrets(&created.agent.agent_id).await?,
            );
            if let Some(secret) = created.client_secret {
                output["client_secret"] = json!(secret.expose_secret());
            }
            Ok(output)
        }
        AgentsCommand::List { store, owner, all } => {
            let registry = open(&store).await?;
            let agents = registry
                .list(&AgentListQuery {
                    owner,
                    include_decommissioned: all,
                    offset: 0,
                    limit: 10_000,
                })
                .await?;
            Ok(
                json!({ "agents": agents.iter().map(|agent| describe(agent, &[])).collect::<Vec<_>>() }),
            )
        }
        AgentsCommand::Show { store, agent } => {
            let registry = open(&store).await?;
            let agent = find(&registry, &agent).await?;
            Ok(describe(&agent, &registry.secrets(&agent.agent_id).await?))
        }
        AgentsCommand::Rotate {
            store,
            agent,
            overlap,
        } => {
            let registry = open(&store).await?;
            let agent = find(&registry, &agent).await?;
            let rotated = registry
                .rotate(AgentKey::Id(&agent.agent_id), overlap)
                .await?;
            let mut output = describe(&rotated.agent, &registry.secrets(&agent.agent_id).await?);
            output["client_secret"] = json!(rotated.client_secret.expose_secret());
            output["previous_secret_expires_at"] = json!(rotated.previous_expires_at);
            Ok(output)
        }
        AgentsCommand::Decommission {
            store,
            agent,
            reason,
        } => {
            let registry = open(&store).await?;
            let agent = find(&registry, &agent).await?;
            let agent = registry
                .decommission(AgentKey::Id(&agent.agent_id), &reason)
                .await?;
            Ok(describe(&agent, &[]))
        }
    }
}

impl AgentsCommand {
    /// Returns the authz-svc endpoint and token variable, when the command names one.
    fn endpoint(&self) -> Option<(String, String)> {
        let (Self::Create { store, .. }
        | Self::List { store, .. }
        | Self::Show { store, .. }
        | Self::Rotate { store, .. }
        | Self::Decommission { store, .. }) = self;
        store
            .endpoint
            .clone()
            .map(|endpoint| (endpoint, store.token_env.clone()))
    }
}

/// Returns the bundle `key` names: by name, else by bundle id, else by client id.
async fn find(registry: &AgentRegistry, key: &str) -> anyhow::Result<AgentRecord> {
    for lookup in [
        AgentKey::Name(key),
        AgentKey::Id(key),
        AgentKey::ClientId(key),
    ] {
        if let Ok(agent) = registry.get(lookup).await {
            return Ok(agent);
        }
    }
    anyhow::bail!("agent {key} not found")
}

/// Returns the bundle's metadata as printed; secrets appear only as their ids and times.
fn describe(agent: &AgentRecord, secrets: &[AgentSecretRecord]) -> Value {
    let method = match &agent.authentication {
        AgentAuthentication::ClientSecret => "client_secret_basic",
        AgentAuthentication::PrivateKeyJwt { .. }
        | AgentAuthentication::PrivateKeyJwtUri { .. } => "private_key_jwt",
        AgentAuthentication::WorkloadIdentity(_) => "workload_identity",
    };
    json!({
        "bundle_id": agent.agent_id,
        "client_id": agent.client_id,
        "name": agent.name,
        "description": agent.description,
        "owner": agent.owner,
        "virtual_servers": agent.virtual_servers,
        "scopes": agent.scopes,
        "token_endpoint_auth_method": method,
        "quotas": agent.quotas,
        "state": if agent.decommissioned_at.is_some() { "decommissioned" } else { "active" },
        "created_at": agent.created_at,
        "rotated_at": agent.rotated_at,
        "last_used_at": agent.last_used_at,
        "decommissioned_at": agent.decommissioned_at,
        "secrets": secrets.iter().map(|secret| json!({
            "secret_id": secret.secret_id,
            "created_at": secret.created_at,
            "expires_at": secret.expires_at,
        })).collect::<Vec<_>>(),
    })
}
