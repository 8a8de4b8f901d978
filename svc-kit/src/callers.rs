//! Service-to-service caller identity: each Gatehouse service presents its own
//! service token in the `x-gatehouse-service-token` gRPC metadata, and the callee
//! maps it to a role it configured.
//!
//! Tokens are compared as SHA-256 digests in constant time, so neither the
//! comparison's timing nor the token's length tells a caller how close it came.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// Is the metadata key carrying a caller's service token.
pub const SERVICE_TOKEN_METADATA: &str = "x-gatehouse-service-token";

/// Is the shortest service token accepted, in bytes: shorter ones are guessable.
pub const MIN_TOKEN_LEN: usize = 32;

/// Holds a configuration value that is a secret (a token, a URL with a
/// password): `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretSetting(String);

impl SecretSetting {
    /// Returns the value for its one consumer; never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Returns a fresh random service token (256 bits, hex), for services that
    /// one process starts and wires together itself.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        Ok(Self(
            bytes.iter().map(|byte| format!("{byte:02x}")).collect(),
        ))
    }
}

impl From<String> for SecretSetting {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl fmt::Debug for SecretSetting {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("<redacted>")
    }
}

/// Maps configured service tokens to the caller roles of one service.
#[derive(Clone)]
pub struct ServiceTokens<R> {
    tokens: Vec<(R, [u8; 32])>,
}

impl<R> fmt::Debug for ServiceTokens<R> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ServiceTokens")
            .field("roles", &self.tokens.len())
            .finish()
    }
}

impl<R: Copy + PartialEq> ServiceTokens<R> {
    /// Returns the table of `tokens`; roles without a configured token admit nobody.
    pub fn new<'a>(tokens: impl IntoIterator<Item = (R, Option<&'a SecretSetting>)>) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .filter_map(|(role, token)| token.map(|token| (role, digest(token.expose()))))
                .collect(),
        }
    }

    /// Returns the roles of the token in `metadata`: one token configured for
    /// several roles holds all of them. Every configured token is compared, so
    /// timing does not tell which one matched.
    pub fn roles(&self, metadata: &MetadataMap) -> Vec<R> {
        let Some(presented) = metadata
            .get(SERVICE_TOKEN_METADATA)
            .and_then(|value| value.to_str().ok())
            .map(digest)
        else {
            return Vec::new();
        };
        self.tokens
            .iter()
            .filter(|(_, expected)| bool::from(expected.ct_eq(&presented)))
            .map(|(role, _)| *role)
            .collect()
    }

    /// Returns the caller's first role among `allowed`, else `PERMISSION_DENIED`
    /// without saying which tokens exist.
    pub fn require<T>(&self, request: &Request<T>, allowed: &[R]) -> Result<R, Status> {
        self.roles(request.metadata())
            .into_iter()
            .find(|role| allowed.contains(role))
            .ok_or_else(|| Status::permission_denied("this caller may not use this method"))
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Adds a service token to every request of a gRPC client.
#[derive(Clone)]
pub struct PresentToken(Option<AsciiMetadataValue>);

impl fmt::Debug for PresentToken {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_tuple("PresentToken")
            .field(&self.0.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl PresentToken {
    /// Returns the interceptor presenting `token` (none: requests go without).
    ///
    /// A token that is not valid metadata text is refused here, at start-up,
    /// rather than failing every request later.
    pub fn new(token: Option<&SecretSetting>) -> Result<Self, InvalidToken> {
        token
            .map(|token| {
                let mut value =
                    AsciiMetadataValue::try_from(token.expose()).map_err(|_| InvalidToken)?;
                value.set_sensitive(true);
                Ok(value)
            })
            .transpose()
            .map(Self)
    }
}

impl Interceptor for PresentToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            request
                .metadata_mut()
                .insert(SERVICE_TOKEN_METADATA, token.clone());
        }
        Ok(request)
    }
}

/// Says a configured service token cannot be sent as gRPC metadata.
#[derive(Debug, thiserror::Error)]
#[error("the service token must be printable ASCII")]
pub struct InvalidToken;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Role {
        Edge,
        Auditor,
    }

    fn table() -> ServiceTokens<Role> {
        let edge = SecretSetting::from("e".repeat(MIN_TOKEN_LEN));
        let auditor = SecretSetting::from("a".repeat(MIN_TOKEN_LEN));
        ServiceTokens::new([(Role::Edge, Some(&edge)), (Role::Auditor, Some(&auditor))])
    }

    fn presenting(token: Option<&SecretSetting>) -> Request<()> {
        PresentToken::new(token)
            .unwrap()
            .call(Request::new(()))
            .unwrap()
    }

    #[test]
    fn a_presented_token_maps_to_its_role() {
        let request = presenting(Some(&SecretSetting::from("a".repeat(MIN_TOKEN_LEN))));
        assert_eq!(table().roles(request.metadata()), vec![Role::Auditor]);
        assert_eq!(
            table().require(&request, &[Role::Auditor]).unwrap(),
            Role::Auditor
        );
    }

    #[test]
    fn a_role_not_allowed_for_the_method_is_permission_denied() {
        let request = presenting(Some(&SecretSetting::from("e".repeat(MIN_TOKEN_LEN))));
        let status = table().require(&request, &[Role::Auditor]).unwrap_err();
        assert_eq!(status.code(), tonic::Code::PermissionDenied);
    }

    #[test]
    fn a_missing_or_unknown_token_is_permission_denied() {
        for request in [
            presenting(None),
            presenting(Some(&SecretSetting::from("x".repeat(MIN_TOKEN_LEN)))),
        ] {
            let status = table()
                .require(&request, &[Role::Edge, Role::Auditor])
                .unwrap_err();
            assert_eq!(status.code(), tonic::Code::PermissionDenied);
            assert!(
                !status
                    .message()
                    .contains('e'.to_string().repeat(8).as_str())
            );
        }
    }

    #[test]
    fn a_role_without_a_configured_token_admits_nobody() {
        let tokens: ServiceTokens<Role> = ServiceTokens::new([(Role::Edge, None)]);
        let request = presenting(Some(&SecretSetting::from(String::new())));
        assert!(tokens.roles(request.metadata()).is_empty());
    }

    #[test]
    fn one_token_configured_for_two_roles_holds_both() {
        let shared = SecretSetting::from("s".repeat(MIN_TOKEN_LEN));
        let tokens =
            ServiceTokens::new([(Role::Edge, Some(&shared)), (Role::Auditor, Some(&shared))]);
        let request = presenting(Some(&shared));
        assert_eq!(tokens.require(&request, &[Role::Edge]).unwrap(), Role::Edge);
        assert_eq!(
            tokens.require(&request, &[Role::Auditor]).unwrap(),
            Role::Auditor
        );
    }

    #[test]
    fn generated_tokens_are_long_distinct_and_never_debug_printed() {
        let first = SecretSetting::generate().unwrap();
        let second = SecretSetting::generate().unwrap();
        assert!(first.expose().len() >= MIN_TOKEN_LEN);
        assert_ne!(first, second);
        assert_eq!(format!("{first:?}"), "<redacted>");
        let interceptor = PresentToken::new(Some(&first)).unwrap();
        assert!(!format!("{interceptor:?}").contains(first.expose()));
    }
}
