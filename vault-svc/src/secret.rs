//! Secret values and the identifiers credentials are keyed by.
//!
//! Secrets are typed so that `Debug`, `Display`-free logging and traces cannot
//! print them, and are zeroized when dropped.

use std::fmt;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

/// Holds one secret string (a token, key, password or client secret).
///
/// `Debug` prints `<redacted>`; there is no `Display`. It serializes as its
/// value only because the encrypted credential document needs it: nothing else
/// may serialize a secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretText(String);

/// Holds a 256-bit data-encryption key, zeroized on drop.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; 32]>);

/// Names whose credential a row is: a member, an agent, or the connector's
/// shared service account.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owner {
    /// The connector's shared (service-account) credential.
    Shared,
    /// A member's own credential, by member id.
    Member(String),
    /// An agent bundle's own credential, by client id.
    Agent(String),
}

/// Is the tenant a credential belongs to; one deployment serves one tenant
/// today, but every row and ciphertext is bound to it already.
pub type Tenant = String;

impl SecretText {
    /// Returns the secret's value, for injection or encryption only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<String> for SecretText {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretText {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

impl Drop for SecretText {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for SecretText {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

impl DataKey {
    /// Returns a key made of `bytes`.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// Returns a fresh random key.
    pub fn generate() -> Result<Self, crate::Error> {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut_slice()).map_err(|_| crate::Error::Randomness)?;
        Ok(Self(key))
    }

    /// Returns the key bytes, for a cipher only.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("DataKey(<redacted>)")
    }
}

impl Owner {
    /// Returns the owner kind column value.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::Member(_) => "member",
            Self::Agent(_) => "agent",
        }
    }

    /// Returns the owner id column value: empty for the shared marker.
    pub fn id(&self) -> &str {
        match self {
            Self::Shared => "",
            Self::Member(id) | Self::Agent(id) => id,
        }
    }

    /// Returns the owner a stored (kind, id) pair names.
    pub fn from_columns(kind: &str, id: String) -> Option<Self> {
        match kind {
            "shared" => Some(Self::Shared),
            "member" => Some(Self::Member(id)),
            "agent" => Some(Self::Agent(id)),
            _ => None,
        }
    }
}

impl fmt::Display for Owner {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared => formatter.write_str("shared"),
            Self::Member(id) => write!(formatter, "member:{id}"),
            Self::Agent(id) => write!(formatter, "agent:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_a_secret() {
        let secret = SecretText::from("canary-7f3a");
        let key = DataKey::from_bytes([7; 32]);
        assert!(!format!("{secret:?} {key:?}").contains("canary"));
        assert!(!format!("{key:?}").contains('7'));
    }
}
