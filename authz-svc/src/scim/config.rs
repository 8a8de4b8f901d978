//! The `authorization.scim` settings: the identity provider's bearer token.

use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use svc_kit::ConfigError;
use svc_kit::callers::SecretSetting;

/// Is the shortest token accepted: guessing it must be out of reach.
const MIN_TOKEN_LENGTH: usize = 32;

/// Configures SCIM provisioning; without a token `/scim/v2` refuses every request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScimConfig {
    /// Is the identity provider's bearer token (redacted in `Debug`); for the standalone
    /// service, set it through `GATEHOUSE_AUTHZ__…` rather than a file.
    pub bearer_token: Option<SecretSetting>,
    /// Names the environment variable holding the token instead, so that the secret never
    /// sits in the gatehouse file.
    pub bearer_token_env: Option<String>,
}

impl ScimConfig {
    /// Returns SHA-256 of the configured token (the form it is compared in), or `None` when
    /// SCIM is off; two sources, an unset variable or a short token are configuration errors.
    pub(crate) fn token(&self) -> Result<Option<[u8; 32]>, ConfigError> {
        let token = match (&self.bearer_token, &self.bearer_token_env) {
            (None, None) => return Ok(None),
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "scim",
                    "set bearer_token or bearer_token_env, not both",
                ));
            }
            (Some(token), None) => token.expose().to_owned(),
            (None, Some(variable)) => std::env::var(variable).map_err(|_| {
                ConfigError::new(
                    "scim.bearer_token_env",
                    format!("environment variable {variable} is not set"),
                )
            })?,
        };
        if token.trim().len() < MIN_TOKEN_LENGTH {
            return Err(ConfigError::new(
                "scim",
                "the bearer token must be at least 32 characters",
            ));
        }
        Ok(Some(Sha256::digest(token.trim().as_bytes()).into()))
    }
}
