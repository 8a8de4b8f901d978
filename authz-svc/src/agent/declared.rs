//! Agent bundles declared in the configuration file (`authorization.agents:`), with
//! secrets referenced from the environment, never inline.

use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use svc_kit::ConfigError;

use super::{AgentRegistry, CreatedAgent, NewAgent};
use crate::error::Error;
use crate::store::{AgentAuthentication, AgentKey, MANAGED_BY_GATEWAY_FILE, WorkloadIssuer};
use crate::token::now;

/// Declares one agent bundle; exactly one of `secret_env`, `jwks` and `workload` says
/// how it authenticates.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Is the unique name.
    pub name: String,
    /// Is the OAuth client id; defaults to the name, so that the operator knows it.
    #[serde(default)]
    pub client_id: Option<String>,
    /// Says what the agent is for.
    #[serde(default)]
    pub description: String,
    /// Is the accountable member.
    pub owner: String,
    /// Lists the virtual servers the agent may use.
    pub virtual_servers: Vec<String>,
    /// Lists the scopes it may be granted.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Names the environment variable holding its client secret.
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Registers the public JWK Set its `private_key_jwt` assertions are signed with.
    #[serde(default)]
    pub jwks: Option<serde_json::Value>,
    /// Trusts an external workload issuer instead of a secret.
    #[serde(default)]
    pub workload: Option<WorkloadIssuer>,
    /// Holds its own budget, `{rate: "60/minute", burst: 10}`; every edge enforces it.
    #[serde(default)]
    pub quotas: serde_json::Value,
}

impl AgentConfig {
    /// Checks the shape of the declaration (not the environment).
    pub(crate) fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let methods = usize::from(self.secret_env.is_some())
            + usize::from(self.jwks.is_some())
            + usize::from(self.workload.is_some());
        if methods != 1 {
            return Err(ConfigError::new(
                format!("agents[{index}]"),
                "needs exactly one of secret_env, jwks or workload",
            ));
        }
        Ok(())
    }

    fn authentication(&self) -> AgentAuthentication {
        match (&self.jwks, &self.workload) {
            (Some(jwks), _) => AgentAuthentication::PrivateKeyJwt { jwks: jwks.clone() },
            (None, Some(workload)) => AgentAuthentication::WorkloadIdentity(workload.clone()),
            (None, None) => AgentAuthentication::ClientSecret,
        }
    }

    /// Returns the secret from the environment; a missing or short one refuses the start.
    fn secret(&self) -> Result<Option<SecretString>, Error> {
        let Some(variable) = &self.secret_env else {
            return Ok(None);
        };
        let secret = std::env::var(variable).map_err(|_| {
            ConfigError::new(
                format!("agents.{}.secret_env", self.name),
                format!("environment variable {variable} is not set"),
            )
        })?;
        // 32 characters of a random alphabet carry at least 128 bits; below that a
        // secret is guessable offline from an HMAC leak.
        if secret.len() < 32 {
            return Err(ConfigError::new(
                format!("agents.{}.secret_env", self.name),
                format!("the secret in {variable} must be at least 32 characters"),
            )
            .into());
        }
        Ok(Some(SecretString::from(secret)))
    }
}

impl AgentRegistry {
    /// Creates or updates the declared bundles; a declared secret replaces the stored ones
    /// (the environment is the source of truth). Decommissioned bundles stay decommissioned.
    pub(crate) async fn apply_declared(&self, agents: &[AgentConfig]) -> Result<(), Error> {
        for declared in agents {
            self.declare(declared, declared.secret()?).await?;
        }
        Ok(())
    }

    /// Creates or updates one declared bundle (as `gatehouse up` does for the file's, and the
    /// admin API for `gatehouse apply`); `secret`, when given, replaces the stored ones. A
    /// client-secret bundle created without one gets a generated secret, returned this once.
    pub async fn declare(
        &self,
        declared: &AgentConfig,
        secret: Option<SecretString>,
    ) -> Result<CreatedAgent, Error> {
        let command = NewAgent {
            name: declared.name.clone(),
            description: declared.description.clone(),
            owner: declared.owner.clone(),
            virtual_servers: declared.virtual_servers.clone(),
            scopes: declared.scopes.clone(),
            authentication: declared.authentication(),
            quotas: declared.quotas.clone(),
            client_id: Some(
                declared
                    .client_id
                    .clone()
                    .unwrap_or_else(|| declared.name.clone()),
            ),
        };
        let mut generated = None;
        let agent = match self.store.agent(AgentKey::Name(&declared.name)).await? {
            Some(mut existing) => {
                super::validate::new_agent(
                    &command,
                    self.catalogue
                        .as_ref()
                        .map(crate::issuer::Resources::snapshot)
                        .as_deref()
                        .map(Vec::as_slice),
                )?;
                existing.description = command.description;
                existing.owner = command.owner;
                existing.virtual_servers = command.virtual_servers;
                existing.scopes = command.scopes;
                existing.authentication = command.authentication;
                existing.quotas = command.quotas;
                existing.managed_by = Some(MANAGED_BY_GATEWAY_FILE.to_owned());
                self.store.update_agent(&existing).await?;
                self.forget();
                existing
            }
            None => {
                let created = self.insert(command, Some(MANAGED_BY_GATEWAY_FILE)).await?;
                generated = created.client_secret.filter(|_| secret.is_none());
                created.agent
            }
        };
        if let Some(secret) = secret {
            let record = self.secret_record(&agent.agent_id, secret.expose_secret(), now());
            self.store.replace_agent_secrets(&record).await?;
            self.forget();
        }
        tracing::info!(agent_id = %agent.agent_id, name = %agent.name, "declared agent applied");
        Ok(CreatedAgent {
            agent,
            client_secret: generated,
        })
    }
}
