//! Connector credentials in the product binary: vault-svc's connector table derived from the
//! gateway file (its one source of truth), and the `credentials` / `connectors` commands.
//!
//! The commands open vault-svc's store directly (the embedded default's SQLite file in the data
//! directory, or PostgreSQL per `GATEHOUSE_VAULT__*`), as `gatehouse audit` reads audit-svc's.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};
use edge_svc::credentials::{CredentialMode, OAuthSpec, RotationHookSpec, RotationSpec};
use vault_svc::credential::Material;
use vault_svc::secret::SecretText;

/// `gatehouse credentials …`: writes connectors' shared credentials (never reads them back).
#[derive(Debug, Subcommand)]
pub(crate) enum CredentialsCommand {
    /// Stores or replaces a connector's shared credential. Secrets are read from environment
    /// variables or, when a variable is not set, from standard input — never from the command
    /// line; names, ids and endpoints may be given as arguments.
    Set {
        /// The connector's name in the gateway file.
        connector: String,
        #[command(flatten)]
        material: Box<MaterialArgs>,
        #[command(flatten)]
        place: Place,
    },
    /// Deletes a member's own credential for a connector (a pasted API key or a connected
    /// account); their next call gets a fresh link.
    Delete {
        /// The connector's name in the gateway file.
        connector: String,
        /// The member whose credential is deleted.
        #[arg(long)]
        member: String,
        #[command(flatten)]
        place: Place,
    },
    /// Makes a connector's next shared-secret rotation due now (also after it needed attention).
    Rotate {
        /// The connector's name in the gateway file.
        connector: String,
        #[command(flatten)]
        place: Place,
    },
}

/// Which kind of shared credential `credentials set` stores, and where its secrets come from.
#[derive(Debug, Args)]
#[group(skip)]
#[command(group(clap::ArgGroup::new("kind").required(true).multiple(false)))]
pub(crate) struct MaterialArgs {
    /// A bearer token (`Authorization: Bearer …` by default), read from variable NAME.
    #[arg(long, value_name = "NAME", group = "kind")]
    bearer_env: Option<String>,
    /// An API key (sent in `--header`, or as the connector's template says), read from NAME.
    #[arg(long, value_name = "NAME", group = "kind")]
    header_env: Option<String>,
    /// The header an API key travels in when the connector declares no template.
    #[arg(long, default_value = "X-Api-Key")]
    header: String,
    /// A basic-auth password, read from NAME; the user name is `--username`.
    #[arg(long, value_name = "NAME", group = "kind", requires = "username")]
    password_env: Option<String>,
    /// The basic-auth user name.
    #[arg(long)]
    username: Option<String>,
    /// An OAuth client secret, read from NAME: Gatehouse exchanges `--client-id` and it at
    /// `--token-endpoint` for access tokens and renews them before they expire.
    #[arg(
        long,
        value_name = "NAME",
        group = "kind",
        requires_all = ["client_id", "token_endpoint"]
    )]
    client_secret_env: Option<String>,
    /// The OAuth client id.
    #[arg(long)]
    client_id: Option<String>,
    /// The provider's token endpoint.
    #[arg(long)]
    token_endpoint: Option<String>,
    /// A scope to ask for with each token (repeatable).
    #[arg(long = "scope")]
    scopes: Vec<String>,
    /// The RFC 8707 resource to ask for with each token.
    #[arg(long)]
    audience: Option<String>,
    /// An environment variable of a stdio connector's program (repeatable): NAME takes the
    /// value of this command's variable SOURCE (default NAME), or of a `NAME=value` line on
    /// standard input.
    #[arg(long = "env", value_name = "NAME[=SOURCE]", group = "kind")]
    env: Vec<String>,
    /// An HTTP header sent as it is (repeatable): NAME takes the value of this command's
    /// variable SOURCE, or of a `NAME=value` line on standard input.
    #[arg(long = "send-header", value_name = "NAME[=SOURCE]", group = "kind")]
    send_headers: Vec<String>,
}

/// `gatehouse connectors …`: connectors as administrators see them.
#[derive(Debug, Subcommand)]
pub(crate) enum ConnectorsCommand {
    /// Prints each connector's credential health (never a credential).
    Status {
        #[command(flatten)]
        place: Place,
    },
}

/// Which gateway file and data directory a command works on.
#[derive(Debug, Args)]
pub(crate) struct Place {
    /// The gateway file (its connectors are vault-svc's connectors).
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// The data directory of `gatehouse up`.
    #[arg(long, default_value = ".gatehouse")]
    data: PathBuf,
}

/// Returns what authz-svc exchanges tokens for: each `token_exchange` connector, with its
/// audience, its scopes and the OAuth virtual servers that expose it, unless the file's
/// `authorization.token_exchange` already declares that connector (the explicit entry wins).
pub(crate) fn exchange_targets(
    spec: &edge_svc::GatewaySpec,
    declared: &[authz_svc::ExchangeTarget],
) -> Vec<authz_svc::ExchangeTarget> {
    spec.connectors
        .iter()
        .filter(|connector| {
            !declared
                .iter()
                .any(|target| target.connector == connector.name)
        })
        .filter_map(|connector| {
            let audience = connector.exchange_audience()?;
            let virtual_servers = spec
                .virtual_servers
                .iter()
                .filter(|server| server.auth == edge_svc::spec::AuthMode::Oauth)
                .filter(|server| {
                    server
                        .connectors
                        .iter()
                        .any(|member| member.connector == connector.name)
                })
                .map(|server| server.name.clone())
                .collect();
            let scopes = connector
                .credentials
                .exchange
                .as_ref()
                .map(|exchange| exchange.scopes.clone())
                .unwrap_or_default();
            Some(authz_svc::ExchangeTarget {
                connector: connector.name.clone(),
                audience,
                virtual_servers,
                scopes,
            })
        })
        .collect()
}

/// Returns vault-svc's connector table for the gateway file's connectors that declare credentials.
///
/// A per-member OAuth client secret is read from its environment variable here, so the file
/// itself never holds one.
pub(crate) fn vault_connectors(
    spec: &edge_svc::GatewaySpec,
) -> Result<BTreeMap<String, vault_svc::ConnectorConfig>, String> {
    let mut table = BTreeMap::new();
    for connector in &spec.connectors {
        let credential = match connector.credentials.mode {
            CredentialMode::None | CredentialMode::TokenExchange => continue,
            CredentialMode::Shared => vault_svc::CredentialMode::Shared,
            CredentialMode::PerMember => vault_svc::CredentialMode::PerMember,
        };
        let oauth = connector
            .credentials
            .oauth
            .as_ref()
            .map(|oauth| provider(&connector.name, oauth))
            .transpose()?;
        let rotation = connector
            .credentials
            .rotation
            .as_ref()
            .map(|rotation| rotation_config(&connector.name, rotation))
            .transpose()?;
        let api_key =
            connector
                .credentials
                .api_key
                .as_ref()
                .map(|api_key| vault_svc::ApiKeyConfig {
                    header: api_key.header.clone(),
                });
        table.insert(
            connector.name.clone(),
            vault_svc::ConnectorConfig {
                oauth,
                api_key,
                rotation,
                ..vault_svc::ConnectorConfig::new(credential)
            },
        );
    }
    Ok(table)
}

fn provider(connector: &str, oauth: &OAuthSpec) -> Result<vault_svc::OAuthProviderConfig, String> {
    let client_secret = oauth
        .client_secret_env
        .as_ref()
        .map(|name| {
            std::env::var(name).map(vault_svc::SecretSetting::from).map_err(|_| {
                format!(
                    "connectors.{connector}.credentials.oauth.client_secret_env: environment variable {name} is not set"
                )
            })
        })
        .transpose()?;
    let text = |url: &Option<url::Url>| url.as_ref().map(url::Url::to_string);
    Ok(vault_svc::OAuthProviderConfig {
        client_id: oauth.client_id.clone(),
        client_secret,
        authorization_endpoint: text(&oauth.authorization_endpoint),
        token_endpoint: text(&oauth.token_endpoint),
        resource: text(&oauth.resource),
        scopes: oauth.scopes.clone(),
        revocation_endpoint: text(&oauth.revocation_endpoint),
    })
}

/// Returns vault-svc's rotation of `connector` as the gateway file declares it; a hook's
/// bearer token is read from its environment variable here.
fn rotation_config(
    connector: &str,
    rotation: &RotationSpec,
) -> Result<vault_svc::RotationConfig, String> {
    let hook = match &rotation.hook {
        RotationHookSpec::Command(command) => vault_svc::RotationHook::Command(command.clone()),
        RotationHookSpec::Http { url, bearer_env } => vault_svc::RotationHook::Http {
            url: url.to_string(),
            bearer: bearer_env
                .as_ref()
                .map(|name| {
                    std::env::var(name).map(vault_svc::SecretSetting::from).map_err(|_| {
                        format!(
                            "connectors.{connector}.credentials.rotation.hook.http.bearer_env: environment variable {name} is not set"
                        )
                    })
                })
                .transpose()?,
        },
    };
    let defaults = vault_svc::RotationConfig {
        every: rotation.every,
        overlap: rotation.overlap,
        hook,
        max_attempts: 5,
        backoff: std::time::Duration::from_secs(30),
        max_backoff: std::time::Duration::from_secs(3600),
        timeout: std::time::Duration::from_secs(60),
    };
    Ok(vault_svc::RotationConfig {
        max_attempts: rotation.max_attempts.unwrap_or(defaults.max_attempts),
        backoff: rotation.backoff.unwrap_or(defaults.backoff),
        timeout: rotation.timeout.unwrap_or(defaults.timeout),
        ..defaults
    })
}

/// Runs a `credentials` command.
pub(crate) async fn run_credentials(command: CredentialsCommand) -> ExitCode {
    match command {
        CredentialsCommand::Set {
            connector,
            material,
            place,
        } => finish(set(connector, *material, place).await),
        CredentialsCommand::Delete {
            connector,
            member,
            place,
        } => {
            let outcome = async {
                let vault = open(&place).await?;
                let record = vault.delete_member_credential(&connector, &member).await?;
                writeln!(
                    std::io::stdout().lock(),
                    "deleted credential {} of member {member} for connector {connector}",
                    record.id
                )?;
                Ok(())
            };
            finish(outcome.await)
        }
        CredentialsCommand::Rotate { connector, place } => {
            let outcome = async {
                let vault = open(&place).await?;
                vault.rotate_now(&connector).await?;
                writeln!(
                    std::io::stdout().lock(),
                    "rotation of connector {connector} is due now; a running gatehouse performs it"
                )?;
                Ok(())
            };
            finish(outcome.await)
        }
    }
}

async fn set(connector: String, args: MaterialArgs, place: Place) -> anyhow::Result<()> {
    let (kind, material) = material(args)?;
    let vault = open(&place).await?;
    let record = vault
        .set_shared(
            &connector,
            &material,
            None,
            format!("{kind} set by gatehouse credentials set"),
        )
        .await?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "stored shared credential {} for connector {connector} (version {})",
        record.id, record.version
    )?;
    Ok(())
}

/// Returns the material `args` describe, with its kind's name, reading each secret from its
/// environment variable or standard input.
fn material(args: MaterialArgs) -> anyhow::Result<(&'static str, Material)> {
    anyhow::ensure!(
        args.username.is_none() || args.password_env.is_some(),
        "--username goes with --password-env"
    );
    anyhow::ensure!(
        args.client_secret_env.is_some()
            || (args.client_id.is_none()
                && args.token_endpoint.is_none()
                && args.scopes.is_empty()
                && args.audience.is_none()),
        "--client-id, --token-endpoint, --scope and --audience go with --client-secret-env"
    );
    if let Some(variable) = args.bearer_env {
        let token = SecretText::from(secret_value(&variable)?);
        return Ok(("bearer", Material::Bearer { token }));
    }
    if let Some(variable) = args.header_env {
        let key = SecretText::from(secret_value(&variable)?);
        let header_name = args.header;
        return Ok(("api_key", Material::ApiKey { header_name, key }));
    }
    if let (Some(variable), Some(username)) = (args.password_env, args.username) {
        let password = SecretText::from(secret_value(&variable)?);
        return Ok(("basic", Material::Basic { username, password }));
    }
    if let (Some(variable), Some(client_id), Some(token_endpoint)) =
        (args.client_secret_env, args.client_id, args.token_endpoint)
    {
        let credentials = vault_svc::credential::ClientCredentials {
            token_endpoint,
            client_id,
            client_secret: SecretText::from(secret_value(&variable)?),
            scopes: args.scopes,
            audience: args.audience,
            access_token: None,
        };
        return Ok((
            "client_credentials",
            Material::OauthClientCredentials(credentials),
        ));
    }
    if !args.env.is_empty() {
        let variables = secret_pairs(&args.env, true)?;
        return Ok(("env", Material::Environment { variables }));
    }
    anyhow::ensure!(
        !args.send_headers.is_empty(),
        "choose a kind: --bearer-env, --header-env, --password-env, --client-secret-env, --env or --send-header"
    );
    let headers = secret_pairs(&args.send_headers, false)?;
    Ok(("headers", Material::Headers { headers }))
}

/// Returns the `NAME[=SOURCE]` pairs' values: variable SOURCE (NAME too when `name_is_source`),
/// else a `NAME=value` line on standard input.
fn secret_pairs(
    specs: &[String],
    name_is_source: bool,
) -> anyhow::Result<BTreeMap<String, SecretText>> {
    let mut pairs = BTreeMap::new();
    let mut missing = Vec::new();
    for spec in specs {
        let (name, source) = match spec.split_once('=') {
            Some((name, source)) => (name, Some(source)),
            None => (spec.as_str(), name_is_source.then_some(spec.as_str())),
        };
        match source.and_then(|source| std::env::var(source).ok()) {
            Some(value) if !value.is_empty() => {
                pairs.insert(name.to_owned(), SecretText::from(value));
            }
            _ => missing.push(name.to_owned()),
        }
    }
    if missing.is_empty() {
        return Ok(pairs);
    }
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    for line in input.lines() {
        if let Some((name, value)) = line.split_once('=')
            && missing.iter().any(|missing| missing == name)
            && !value.is_empty()
        {
            pairs.insert(name.to_owned(), SecretText::from(value));
        }
    }
    let absent: Vec<&String> = missing
        .iter()
        .filter(|name| !pairs.contains_key(name.as_str()))
        .collect();
    anyhow::ensure!(
        absent.is_empty(),
        "no value for {absent:?}: set its variable or give a `NAME=value` line on standard input"
    );
    Ok(pairs)
}

/// Runs a `connectors` command.
pub(crate) async fn run_connectors(command: ConnectorsCommand) -> ExitCode {
    let ConnectorsCommand::Status { place } = command;
    let outcome = async {
        let vault = open(&place).await?;
        let reports = vault.health(&[]).await?;
        let mut out = std::io::stdout().lock();
        for report in reports {
            let mut line = format!("{:<24} {}", report.connector, report.state.as_str());
            if report.shared_credential_failing {
                line.push_str("  shared credential failing");
            }
            if !report.failing_member_ids.is_empty() {
                line.push_str(&format!(
                    "  failing members: {}",
                    report.failing_member_ids.join(", ")
                ));
            }
            if !report.detail.is_empty() {
                line.push_str(&format!("  ({})", report.detail));
            }
            if let Some(rotation) = vault.rotation_status(&report.connector).await? {
                line.push_str(&format!(
                    "  rotation: {} (cycle {}, {} failed attempt(s))",
                    rotation.state.as_str(),
                    rotation.cycle,
                    rotation.attempts
                ));
            }
            writeln!(out, "{line}")?;
        }
        let keys = vault.kek_status().await?;
        writeln!(
            out,
            "{:<24} KEK version {}, {} of {} credential(s) still on an older version",
            "(encryption keys)", keys.active_version, keys.stale, keys.credentials
        )?;
        Ok(())
    };
    finish(outcome.await)
}

fn finish(outcome: anyhow::Result<()>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("gatehouse: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reads the secret from `variable`, else from standard input (one value, trailing newline trimmed).
fn secret_value(variable: &str) -> anyhow::Result<String> {
    if let Ok(value) = std::env::var(variable)
        && !value.is_empty()
    {
        return Ok(value);
    }
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value)?;
    let value = value.trim_end_matches(['\r', '\n']).to_owned();
    anyhow::ensure!(
        !value.is_empty(),
        "{variable} is not set and standard input is empty"
    );
    Ok(value)
}

/// Opens vault-svc's store as `gatehouse up` would, with the gateway file's connectors.
async fn open(place: &Place) -> anyhow::Result<vault_svc::Vault> {
    let spec = edge_svc::load_spec(&place.config)?;
    let mut config = vault_svc::Config::load(svc_kit::config_sources(vault_svc::ENV_PREFIX, None))?
        .with_data_dir(&place.data);
    config.connectors = vault_connectors(&spec).map_err(anyhow::Error::msg)?;
    Ok(vault_svc::open(&config, Arc::new(vault_svc::event::LogSink)).await?)
}
