//! Members of the built-in login and their argon2id password check.

use std::collections::HashMap;
use std::sync::Arc;

use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};
use argon2::{Algorithm, Argon2};
use secrecy::{ExposeSecret as _, SecretString};

use crate::config::MemberConfig;

/// Is the member every auto-approved (test profile) authorization is issued to.
pub const TEST_MEMBER: &str = "test";

/// Holds the built-in login's members, keyed by username.
#[derive(Clone)]
pub(crate) struct Members {
    by_name: Arc<HashMap<String, MemberConfig>>,
    /// Is verified when the username is unknown, so that a miss costs what a hit does.
    decoy: Arc<String>,
}

/// Returns why `hash` is not a usable argon2id PHC string, if it is not.
pub(crate) fn check_hash(hash: &SecretString) -> Result<(), &'static str> {
    let parsed = PasswordHash::new(hash.expose_secret()).map_err(|_| "is not a PHC string")?;
    if parsed.algorithm != Algorithm::Argon2id.ident() {
        return Err("must be an argon2id hash");
    }
    Ok(())
}

impl Members {
    pub(crate) fn new(members: &[MemberConfig]) -> Self {
        let by_name = members
            .iter()
            .map(|member| (member.username.clone(), member.clone()))
            .collect();
        // A decoy that cannot be built leaves misses fast; that never happens
        // with a fixed, valid salt.
        let decoy = SaltString::from_b64("Z2F0ZWhvdXNlZGVjb3k")
            .ok()
            .and_then(|salt| {
                Argon2::default()
                    .hash_password(b"decoy", &salt)
                    .ok()
                    .map(|hash| hash.to_string())
            })
            .unwrap_or_default();
        Self {
            by_name: Arc::new(by_name),
            decoy: Arc::new(decoy),
        }
    }

    /// Says whether `username` is a configured member.
    pub(crate) fn contains(&self, username: &str) -> bool {
        self.by_name.contains_key(username)
    }

    /// Returns the groups of the member `username` (none for an unknown one), for tokens.
    pub(crate) fn groups(&self, username: &str) -> &[String] {
        self.by_name
            .get(username)
            .map_or(&[], |member| member.groups.as_slice())
    }

    /// Returns the member when `password` matches; runs on a blocking thread
    /// because argon2id is deliberately slow.
    pub(crate) async fn login(&self, username: &str, password: &str) -> Option<MemberConfig> {
        let member = self.by_name.get(username).cloned();
        let hash = member
            .as_ref()
            .map(|member| member.password_hash.expose_secret().to_owned());
        let matched = self.verify(hash, password).await;
        member.filter(|_| matched)
    }

    /// Says whether `password` matches the argon2id `hash`; without a hash it checks the decoy
    /// (and says no), so that an unknown name costs what a known one does.
    pub(crate) async fn verify(&self, hash: Option<String>, password: &str) -> bool {
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.decoy.as_str().to_owned());
        let password = password.to_owned();
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}

/// Returns the argon2id PHC hash of `password` under a fresh random salt, on a blocking thread.
pub(crate) async fn hash_password(password: String) -> Result<String, crate::error::Error> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| crate::error::Error::Crypto("random salt"))?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt)
            .map_err(|_| crate::error::Error::Crypto("password salt"))?;
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|hash| hash.to_string())
            .map_err(|_| crate::error::Error::Crypto("password hash"))
    })
    .await
    .map_err(|_| crate::error::Error::Crypto("password hash"))?
}

impl std::fmt::Debug for Members {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Members")
            .field("count", &self.by_name.len())
            .finish_non_exhaustive()
    }
}
