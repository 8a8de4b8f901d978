//! The `authorization.scim` settings: the identity provider's bearer token, by reference.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use svc_kit::ConfigError;

/// Configures SCIM provisioning; without a token `/scim/v2` refuses every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScimConfig {
    /// Names the environment variable holding the identity provider's bearer token, so that
    /// the secret never sits in the configuration file.
    pub bearer_token_env: Option<String>,
}

impl ScimConfig {
    /// Returns SHA-256 of the configured token (the form it is compared in), or `None` when
    /// SCIM is off; a named variable that is unset or short is a configuration error.
    pub(crate) fn token(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        let Some(variable) = &self.bearer_token_env else {
            return Ok(None);
        };
        let token = std::env::var(variable).map_err(|_| {
            ConfigError::new(
                "scim.bearer_token_env",
                format!("environment variable {variable} is not set"),
            )
        })?;
        if token.trim().len() < 32 {
            return Err(ConfigError::new(
                "scim.bearer_token_env",
                format!("the token in {variable} must be at least 32 characters"),
            ));
        }
        Ok(Some(Sha256::digest(token.trim().as_bytes()).into()))
    }
}
