//! The `authorization:` section of the gatehouse configuration: how the OAuth
//! authorization server logs members in and mints tokens.

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;
use svc_kit::ConfigError;

/// Is the default lifetime of an access token.
pub const DEFAULT_ACCESS_TOKEN_TTL: Duration = Duration::from_secs(10 * 60);

/// Is how long a signing key signs by default: long enough that the JWKS a resource
/// server caches rarely misses, short enough to bound a leaked key's use.
pub const DEFAULT_SIGNING_KEY_ROTATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Caps the lifetime of an access token minted for an agent (client credentials).
pub const MAX_AGENT_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Configures the OAuth 2.1 authorization server (`authorization:` in the gatehouse YAML file).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthorizationConfig {
    /// Lists the members of the built-in login.
    pub members: Vec<MemberConfig>,
    /// Skips login and consent as member `test`: for the headless test profile only.
    pub auto_approve_consent: bool,
    /// Sets how long access tokens live.
    #[serde(with = "humantime_serde")]
    pub access_token_ttl: Duration,
    /// Sets how long refresh tokens live.
    #[serde(with = "humantime_serde")]
    pub refresh_token_ttl: Duration,
    /// Allows an `http://` issuer on a loopback address (development only).
    pub allow_insecure_http: bool,
    /// Lets dynamically registered confidential clients use `client_credentials`.
    pub allow_registered_agents: bool,
    /// Names the file holding the master key that encrypts signing keys at rest;
    /// `GATEHOUSE_AUTHZ_MASTER_KEY` (base64) takes precedence over it. Defaults to
    /// `authz.key` beside the SQLite database.
    pub master_key_file: Option<PathBuf>,
    /// Declares agent bundles; their secrets come from the environment (`secret_env`).
    pub agents: Vec<crate::agent::AgentConfig>,
    /// Sets how long a rotated-out agent secret keeps working by default.
    #[serde(with = "humantime_serde")]
    pub agent_secret_overlap: Duration,
    /// Opens SCIM 2.0 provisioning (`/scim/v2`) to the identity provider holding its token.
    pub scim: crate::scim::ScimConfig,
    /// Lists the connectors that accept RFC 8693 exchanged tokens (`ExchangeToken`).
    pub token_exchange: Vec<ExchangeTarget>,
    /// Accepts https URL client ids whose metadata document is fetched (CIMD).
    pub client_metadata_documents: crate::client::ClientDocumentsConfig,
    /// Sets how long a signing key signs before the pre-published next key takes over.
    #[serde(with = "humantime_serde")]
    pub signing_key_rotation: Duration,
    /// Lists the upstream OIDC providers members may sign in with (federation).
    pub identity_providers: Vec<super::IdentityProviderConfig>,
    /// Lists the enterprise IdPs whose ID-JAGs the `jwt-bearer` grant redeems.
    pub enterprise_idps: Vec<super::EnterpriseIdpConfig>,
}

/// Describes a connector that accepts tokens exchanged for it: which audience the
/// tokens carry, through which virtual servers a subject may reach it, and which
/// scopes it accepts.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExchangeTarget {
    /// Names the connector, as edge-svc asks for it.
    pub connector: String,
    /// Is the connector's resource URL, the exchanged token's `aud`.
    pub audience: String,
    /// Lists the virtual servers whose tokens may be exchanged for this connector.
    pub virtual_servers: Vec<String>,
    /// Lists the scopes an exchanged token may carry (within the subject's).
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// Describes one member of the built-in login.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberConfig {
    /// Names the member; becomes the token's `sub`.
    pub username: String,
    /// Holds the member's argon2id password hash as a PHC string.
    pub password_hash: SecretString,
    /// Lists the member's groups.
    #[serde(default)]
    pub groups: Vec<String>,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        Self {
            members: Vec::new(),
            auto_approve_consent: false,
            access_token_ttl: DEFAULT_ACCESS_TOKEN_TTL,
            refresh_token_ttl: Duration::from_secs(30 * 24 * 3600),
            allow_insecure_http: false,
            allow_registered_agents: false,
            master_key_file: None,
            agents: Vec::new(),
            agent_secret_overlap: crate::agent::DEFAULT_SECRET_OVERLAP,
            scim: crate::scim::ScimConfig::default(),
            token_exchange: Vec::new(),
            client_metadata_documents: crate::client::ClientDocumentsConfig::default(),
            signing_key_rotation: DEFAULT_SIGNING_KEY_ROTATION,
            identity_providers: Vec::new(),
            enterprise_idps: Vec::new(),
        }
    }
}

impl AuthorizationConfig {
    /// Checks the values that parse but cannot be used.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.access_token_ttl.is_zero() || self.access_token_ttl > Duration::from_secs(3600) {
            return Err(ConfigError::new(
                "access_token_ttl",
                "must be between 1s and 1h",
            ));
        }
        if self.refresh_token_ttl < self.access_token_ttl {
            return Err(ConfigError::new(
                "refresh_token_ttl",
                "must not be shorter than access_token_ttl",
            ));
        }
        if self.signing_key_rotation < Duration::from_secs(3600) {
            // Shorter periods would keep several retired keys published at once.
            return Err(ConfigError::new(
                "signing_key_rotation",
                "must be at least 1h",
            ));
        }
        for (index, agent) in self.agents.iter().enumerate() {
            agent.validate(index)?;
        }
        self.scim.token()?;
        for (index, target) in self.token_exchange.iter().enumerate() {
            if target.connector.is_empty() || target.virtual_servers.is_empty() {
                return Err(ConfigError::new(
                    format!("token_exchange[{index}]"),
                    "needs a connector name and at least one virtual server",
                ));
            }
            if !url::Url::parse(&target.audience).is_ok_and(|url| url.fragment().is_none()) {
                return Err(ConfigError::new(
                    format!("token_exchange[{index}].audience"),
                    "must be an absolute URL without a fragment (a resource identifier, RFC 8707 §2)",
                ));
            }
        }
        for (index, provider) in self.identity_providers.iter().enumerate() {
            provider.validate(index)?;
            if self.identity_providers[..index]
                .iter()
                .any(|other| other.name == provider.name)
            {
                return Err(ConfigError::new(
                    format!("identity_providers[{index}].name"),
                    "is not unique",
                ));
            }
        }
        for (index, idp) in self.enterprise_idps.iter().enumerate() {
            idp.validate(index)?;
        }
        for (index, member) in self.members.iter().enumerate() {
            let field = format!("members[{index}].password_hash");
            crate::member::check_hash(&member.password_hash)
                .map_err(|reason| ConfigError::new(field, reason))?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for MemberConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberConfig")
            .field("username", &self.username)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}
