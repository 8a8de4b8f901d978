//! The identity providers the authorization server trusts: upstream OIDC providers members
//! sign in with (`identity_providers:`), and enterprise IdPs whose identity assertion
//! authorization grants (ID-JAG) it redeems (`enterprise_idps:`).

use std::collections::BTreeMap;

use secrecy::SecretString;
use serde::Deserialize;
use svc_kit::ConfigError;

/// Lists the ID token signature algorithms accepted unless a provider narrows them; `none`
/// and the HMAC family never are (a client secret must not be able to mint identities).
const DEFAULT_ID_TOKEN_ALGORITHMS: [&str; 4] = ["RS256", "ES256", "PS256", "EdDSA"];

/// Describes an upstream OpenID Connect provider members may sign in with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityProviderConfig {
    /// Names the provider in URLs and on the login page's form (letters, digits, `-`, `_`).
    pub name: String,
    /// Is the label of the login page's button ("Sign in with …"); defaults to `name`.
    #[serde(default)]
    pub display_name: Option<String>,
    /// Is the provider's exact issuer identifier; its discovery document lives below it.
    pub issuer: String,
    /// Is the client id Gatehouse is registered under at the provider.
    pub client_id: String,
    /// Names the environment variable holding the client secret (never inline).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Names a file holding the client secret (a mounted secret), instead of the variable.
    #[serde(default)]
    pub client_secret_file: Option<std::path::PathBuf>,
    /// Lists the scopes requested; `openid` is always among them.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Names the ID token claim that lists the member's groups at the provider.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Maps a provider group to the Gatehouse groups its members join; unmapped groups
    /// are dropped, so the provider cannot name Gatehouse groups by accident.
    #[serde(default)]
    pub group_mapping: BTreeMap<String, Vec<String>>,
    /// Lists the ID token signature algorithms accepted from this provider.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

/// Describes an enterprise IdP whose ID-JAGs (`typ: oauth-id-jag+jwt`) the token endpoint
/// redeems through the RFC 7523 `jwt-bearer` grant.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnterpriseIdpConfig {
    /// Is the IdP's exact issuer identifier, the ID-JAG's `iss`.
    pub issuer: String,
    /// Is the URL of the IdP's JWK Set, which signs its ID-JAGs.
    pub jwks_uri: String,
    /// Lists the signature algorithms accepted from this IdP.
    #[serde(default = "default_algorithms")]
    pub algorithms: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    vec!["openid".to_owned()]
}

fn default_groups_claim() -> String {
    "groups".to_owned()
}

fn default_algorithms() -> Vec<String> {
    DEFAULT_ID_TOKEN_ALGORITHMS
        .iter()
        .map(|alg| (*alg).to_owned())
        .collect()
}

/// Returns the algorithms of `names`, refusing any that is not asymmetric.
pub(crate) fn algorithms(
    names: &[String],
    field: &str,
) -> Result<Vec<jsonwebtoken::Algorithm>, ConfigError> {
    let mut parsed = Vec::with_capacity(names.len());
    for name in names {
        let allowed = DEFAULT_ID_TOKEN_ALGORITHMS.contains(&name.as_str())
            || matches!(
                name.as_str(),
                "RS384" | "RS512" | "ES384" | "PS384" | "PS512"
            );
        let alg = name
            .parse::<jsonwebtoken::Algorithm>()
            .ok()
            .filter(|_| allowed);
        parsed.push(alg.ok_or_else(|| {
            ConfigError::new(
                field.to_owned(),
                format!("{name} is not an accepted asymmetric signature algorithm"),
            )
        })?);
    }
    if parsed.is_empty() {
        return Err(ConfigError::new(field.to_owned(), "must not be empty"));
    }
    Ok(parsed)
}

fn check_url(value: &str, field: String) -> Result<(), ConfigError> {
    match url::Url::parse(value) {
        Ok(url) if matches!(url.scheme(), "https" | "http") => Ok(()),
        _ => Err(ConfigError::new(field, "must be an absolute http(s) URL")),
    }
}

impl IdentityProviderConfig {
    /// Checks the values that parse but cannot be used.
    pub(crate) fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let field = |name: &str| format!("identity_providers[{index}].{name}");
        let slug = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !slug {
            return Err(ConfigError::new(
                field("name"),
                "must be letters, digits, - and _",
            ));
        }
        check_url(&self.issuer, field("issuer"))?;
        if self.client_id.is_empty() {
            return Err(ConfigError::new(field("client_id"), "is required"));
        }
        if self.client_secret_env.is_some() == self.client_secret_file.is_some() {
            return Err(ConfigError::new(
                field("client_secret_env"),
                "exactly one of client_secret_env and client_secret_file is required",
            ));
        }
        algorithms(&self.algorithms, &field("algorithms"))?;
        Ok(())
    }

    /// Returns the client secret from its environment variable or file.
    pub(crate) fn client_secret(&self, index: usize) -> Result<SecretString, ConfigError> {
        let (field, secret) = match (&self.client_secret_env, &self.client_secret_file) {
            (Some(variable), _) => (
                format!("identity_providers[{index}].client_secret_env"),
                std::env::var(variable)
                    .map_err(|_| format!("environment variable {variable} is not set")),
            ),
            (None, Some(path)) => (
                format!("identity_providers[{index}].client_secret_file"),
                std::fs::read_to_string(path)
                    .map(|text| text.trim().to_owned())
                    .map_err(|_| format!("cannot read {}", path.display())),
            ),
            (None, None) => (
                format!("identity_providers[{index}].client_secret_env"),
                Err("is required".to_owned()),
            ),
        };
        match secret {
            Ok(secret) if !secret.is_empty() => Ok(SecretString::from(secret)),
            Ok(_) => Err(ConfigError::new(field, "the client secret is empty")),
            Err(reason) => Err(ConfigError::new(field, reason)),
        }
    }
}

impl EnterpriseIdpConfig {
    /// Checks the values that parse but cannot be used.
    pub(crate) fn validate(&self, index: usize) -> Result<(), ConfigError> {
        let field = |name: &str| format!("enterprise_idps[{index}].{name}");
        check_url(&self.issuer, field("issuer"))?;
        check_url(&self.jwks_uri, field("jwks_uri"))?;
        algorithms(&self.algorithms, &field("algorithms"))?;
        Ok(())
    }
}
