//! Credentials: their material (what is injected), kind, status and the
//! metadata rows the store keeps beside the sealed material.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::{Binding, Envelope};
use crate::error::Error;
use crate::secret::{Owner, SecretText};

/// Is a credential's secret material: what edge-svc injects, plus, for OAuth,
/// what vault-svc needs to keep it fresh. It lives in plaintext only in memory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Material {
    /// Holds a bearer token with no refresh.
    Bearer {
        /// Holds the token.
        token: SecretText,
    },
    /// Holds an API key and the header that carries it.
    ApiKey {
        /// Names the header, such as `X-Api-Key`.
        header_name: String,
        /// Holds the key.
        key: SecretText,
    },
    /// Holds an HTTP basic-auth pair.
    Basic {
        /// Holds the user name.
        username: String,
        /// Holds the password.
        password: SecretText,
    },
    /// Holds environment variables for a stdio connector.
    Environment {
        /// Maps variable names to values.
        variables: BTreeMap<String, SecretText>,
    },
    /// Holds HTTP headers.
    Headers {
        /// Maps header names to values.
        headers: BTreeMap<String, SecretText>,
    },
    /// Holds an OAuth grant that vault-svc refreshes.
    OauthGrant(OAuthGrant),
    /// Holds OAuth client credentials that vault-svc exchanges for access tokens.
    OauthClientCredentials(ClientCredentials),
}

/// Is an OAuth grant at a downstream provider, with what refreshing it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthGrant {
    /// Holds the current access token.
    pub access_token: SecretText,
    /// Holds the refresh token; rotated on every refresh by most providers.
    pub refresh_token: Option<SecretText>,
    /// Holds the provider's token endpoint.
    pub token_endpoint: String,
    /// Holds vault-svc's client id at the provider.
    pub client_id: String,
    /// Holds vault-svc's client secret at the provider, if it is confidential.
    pub client_secret: Option<SecretText>,
    /// Holds the RFC 8707 resource the grant is for, if any.
    #[serde(default)]
    pub resource: Option<String>,
    /// Holds the provider's RFC 7009 revocation endpoint, if it has one.
    #[serde(default)]
    pub revocation_endpoint: Option<String>,
}

/// Is an OAuth client-credentials pair, with the last access token obtained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientCredentials {
    /// Holds the provider's token endpoint.
    pub token_endpoint: String,
    /// Holds the client id.
    pub client_id: String,
    /// Holds the client secret.
    pub client_secret: SecretText,
    /// Holds the scopes requested with each token.
    pub scopes: Vec<String>,
    /// Holds the RFC 8707 resource sent with each request, if any.
    pub audience: Option<String>,
    /// Holds the last access token obtained, if any.
    pub access_token: Option<SecretText>,
}

/// Is a credential's shape, without its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKind {
    /// A bearer token with no refresh.
    Bearer,
    /// An API key.
    ApiKey,
    /// A basic-auth pair.
    Basic,
    /// Environment variables.
    Environment,
    /// A set of headers.
    Headers,
    /// An OAuth grant vault-svc refreshes.
    OauthGrant,
    /// OAuth client credentials vault-svc exchanges.
    OauthClientCredentials,
}

/// Is a credential's lifecycle status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialStatus {
    /// Usable.
    Active,
    /// Expired and not refreshable.
    Expired,
    /// Usable for now, but its last refresh failed.
    RefreshFailing,
    /// Usable for now, but its provider could not be reached at the last refresh.
    Unreachable,
    /// Refresh gave up (the provider rejected the grant); the owner must reconnect.
    NeedsAttention,
}

/// Is the unique key of a credential: one per (tenant, connector, owner).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialKey {
    /// Holds the tenant.
    pub tenant: String,
    /// Holds the connector's name.
    pub connector: String,
    /// Holds the owner: a member, an agent or the shared marker.
    pub owner: Owner,
}

/// Is one stored credential: metadata in the clear, material sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialRecord {
    /// Identifies the credential (random, for audit records and deletion).
    pub id: String,
    /// Holds the unique key.
    pub key: CredentialKey,
    /// Holds the material's shape.
    pub kind: CredentialKind,
    /// Holds the lifecycle status.
    pub status: CredentialStatus,
    /// Counts every write; compare-and-swap writes use it as the fencing token.
    pub version: u64,
    /// Holds the sealed material (see `crypto`).
    pub sealed: Vec<u8>,
    /// Holds the KEK version in `sealed`'s header, for rotation queries.
    pub kek_version: u32,
    /// Says what the credential is, for administrators.
    pub description: String,
    /// Holds when it was first stored, in Unix microseconds.
    pub created_at: i64,
    /// Holds when it was last written, in Unix microseconds.
    pub updated_at: i64,
    /// Holds when the material expires, in Unix microseconds, if known.
    pub expires_at: Option<i64>,
    /// Holds when the refresh engine should refresh it, if ever.
    pub refresh_due_at: Option<i64>,
    /// Counts refresh failures since the last success.
    pub refresh_failures: u32,
}

/// Is what a write stores: the key, sealed material and its schedule.
#[derive(Debug, Clone)]
pub struct NewCredential {
    /// Holds the unique key.
    pub key: CredentialKey,
    /// Holds the material's shape.
    pub kind: CredentialKind,
    /// Holds the sealed material.
    pub sealed: Vec<u8>,
    /// Says what the credential is.
    pub description: String,
    /// Holds when the material expires, if known.
    pub expires_at: Option<i64>,
    /// Holds when to refresh it, if ever.
    pub refresh_due_at: Option<i64>,
}

/// Is a compare-and-swap update of one credential.
#[derive(Debug, Clone)]
pub struct CredentialUpdate {
    /// Holds new sealed material, or `None` to keep it.
    pub sealed: Option<Vec<u8>>,
    /// Holds the new status.
    pub status: CredentialStatus,
    /// Holds the new expiry.
    pub expires_at: Option<i64>,
    /// Holds the next refresh time.
    pub refresh_due_at: Option<i64>,
    /// Holds the refresh failure count.
    pub refresh_failures: u32,
}

impl Material {
    /// Returns the material's kind.
    pub fn kind(&self) -> CredentialKind {
        match self {
            Self::Bearer { .. } => CredentialKind::Bearer,
            Self::ApiKey { .. } => CredentialKind::ApiKey,
            Self::Basic { .. } => CredentialKind::Basic,
            Self::Environment { .. } => CredentialKind::Environment,
            Self::Headers { .. } => CredentialKind::Headers,
            Self::OauthGrant(_) => CredentialKind::OauthGrant,
            Self::OauthClientCredentials(_) => CredentialKind::OauthClientCredentials,
        }
    }

    /// Returns the material sealed for `key` (field `material`).
    pub async fn seal(&self, envelope: &Envelope, key: &CredentialKey) -> Result<Vec<u8>, Error> {
        let json = Zeroizing::new(serde_json::to_vec(self).map_err(|_| Error::Encrypt)?);
        envelope.seal(key.binding(), &json).await
    }

    /// Returns the material `sealed` holds for `key`.
    pub async fn open(
        envelope: &Envelope,
        key: &CredentialKey,
        sealed: &[u8],
    ) -> Result<Self, Error> {
        let json = envelope.open(key.binding(), sealed).await?;
        serde_json::from_slice(&json).map_err(|_| Error::Corrupt("credential material"))
    }
}

impl CredentialKey {
    /// Returns the encryption binding of this credential's material.
    pub fn binding(&self) -> Binding<'_> {
        Binding {
            tenant: &self.tenant,
            owner: &self.owner,
            connector: &self.connector,
            field: "material",
        }
    }
}

impl CredentialKind {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bearer => "bearer",
            Self::ApiKey => "api_key",
            Self::Basic => "basic",
            Self::Environment => "environment",
            Self::Headers => "headers",
            Self::OauthGrant => "oauth_grant",
            Self::OauthClientCredentials => "oauth_client_credentials",
        }
    }

    /// Returns the kind a stored name names.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Bearer,
            Self::ApiKey,
            Self::Basic,
            Self::Environment,
            Self::Headers,
            Self::OauthGrant,
            Self::OauthClientCredentials,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == name)
    }
}

impl CredentialStatus {
    /// Returns the stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Expired => "expired",
            Self::RefreshFailing => "refresh_failing",
            Self::Unreachable => "unreachable",
            Self::NeedsAttention => "needs_attention",
        }
    }

    /// Returns the status a stored name names.
    pub fn parse(name: &str) -> Option<Self> {
        [
            Self::Active,
            Self::Expired,
            Self::RefreshFailing,
            Self::Unreachable,
            Self::NeedsAttention,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
    }
}

/// Returns now in microseconds since the Unix epoch.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}

/// Returns a fresh random identifier with `prefix`, such as `cred_…`.
pub fn random_id(prefix: &str) -> Result<String, Error> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|_| Error::Randomness)?;
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    Ok(format!("{prefix}{hex}"))
}
