//! Registered OAuth clients: RFC 7591 registration rules, server-generated
//! secrets kept as HMAC-SHA256, and exact redirect-URI matching.

use hmac::{Hmac, Mac as _};
use serde::Deserialize;
use sha2::Sha256;
use url::Url;

use crate::error::Error;
use crate::issuer::is_loopback;
use crate::keys::random_token;
use crate::store::ClientRecord;

mod document;

pub use document::ClientDocumentsConfig;
pub(crate) use document::{ClientDocuments, is_document_url};

/// Is the grant type of the authorization code flow.
pub const AUTHORIZATION_CODE: &str = "authorization_code";
/// Is the grant type that rotates refresh tokens.
pub const REFRESH_TOKEN: &str = "refresh_token";
/// Is the grant type agents use.
pub const CLIENT_CREDENTIALS: &str = "client_credentials";
/// Is the RFC 8693 token exchange grant type.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Is the RFC 7523 grant type that redeems an enterprise IdP's ID-JAG.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// Describes an RFC 7591 registration request (the fields Gatehouse honours).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClientRegistration {
    /// Lists the redirect URIs.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Names the client for the consent screen.
    #[serde(default)]
    pub client_name: Option<String>,
    /// Lists the grant types; defaults to `authorization_code`.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// Lists the response types; only `code` is supported.
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    /// Names the token endpoint authentication method; defaults to `client_secret_basic`.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// Is `web` (default) or `native`.
    #[serde(default)]
    pub application_type: Option<String>,
}

/// Explains why a registration is refused, as an RFC 7591 error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistrationError {
    /// Is `invalid_redirect_uri` or `invalid_client_metadata`.
    pub error: &'static str,
    /// Says what is wrong.
    pub description: &'static str,
}

/// Holds the rules a registration is checked against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RegistrationPolicy {
    pub(crate) allow_insecure_http: bool,
    pub(crate) allow_client_credentials: bool,
}

/// Computes and checks client-secret MACs under a key derived from the master key.
#[derive(Clone)]
pub(crate) struct SecretHasher {
    key: [u8; 32],
}

impl SecretHasher {
    pub(crate) fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        crate::keys::mac(&self.key)
    }

    /// Returns HMAC-SHA256 of `secret`.
    pub(crate) fn hash(&self, secret: &str) -> Vec<u8> {
        let mut mac = self.mac();
        mac.update(secret.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    /// Reports whether `secret` matches `stored`, in constant time.
    pub(crate) fn verify(&self, secret: &str, stored: &[u8]) -> bool {
        let mut mac = self.mac();
        mac.update(secret.as_bytes());
        mac.verify_slice(stored).is_ok()
    }
}

impl std::fmt::Debug for SecretHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHasher([redacted])")
    }
}

fn refuse(error: &'static str, description: &'static str) -> RegistrationError {
    RegistrationError { error, description }
}

/// Returns the client record for `request` and its new secret (for confidential clients).
pub(crate) fn register(
    request: ClientRegistration,
    policy: RegistrationPolicy,
    hasher: &SecretHasher,
    now: i64,
) -> Result<Result<(ClientRecord, Option<String>), RegistrationError>, Error> {
    let checked = match check(&request, policy) {
        Ok(checked) => checked,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let (auth_method, grant_types, application_type) = checked;
    let secret = if auth_method == "none" {
        None
    } else {
        Some(random_token()?)
    };
    let record = ClientRecord {
        client_id: random_token()?,
        secret_hash: secret.as_deref().map(|secret| hasher.hash(secret)),
        client_name: request.client_name.unwrap_or_default(),
        redirect_uris: request.redirect_uris,
        grant_types,
        auth_method,
        application_type,
        created_at: now,
    };
    Ok(Ok((record, secret)))
}

type Checked = (String, Vec<String>, String);

fn check(
    request: &ClientRegistration,
    policy: RegistrationPolicy,
) -> Result<Checked, RegistrationError> {
    let auth_method = request
        .token_endpoint_auth_method
        .clone()
        .unwrap_or_else(|| "client_secret_basic".to_owned());
    if !matches!(
        auth_method.as_str(),
        "none" | "client_secret_basic" | "client_secret_post"
    ) {
        return Err(refuse(
            "invalid_client_metadata",
            "unsupported token_endpoint_auth_method",
        ));
    }
    let application_type = request
        .application_type
        .clone()
        .unwrap_or_else(|| "web".to_owned());
    if !matches!(application_type.as_str(), "web" | "native") {
        return Err(refuse(
            "invalid_client_metadata",
            "application_type must be web or native",
        ));
    }
    let grant_types = request
        .grant_types
        .clone()
        .unwrap_or_else(|| vec![AUTHORIZATION_CODE.to_owned()]);
    for grant in &grant_types {
        match grant.as_str() {
            // An ID-JAG is redeemed only when its enterprise IdP is configured.
            AUTHORIZATION_CODE | REFRESH_TOKEN | JWT_BEARER => {}
            CLIENT_CREDENTIALS if auth_method == "none" => {
                return Err(refuse(
                    "invalid_client_metadata",
                    "client_credentials needs a client secret",
                ));
            }
            CLIENT_CREDENTIALS if !policy.allow_client_credentials => {
                return Err(refuse(
                    "invalid_client_metadata",
                    "client_credentials is not open to registration",
                ));
            }
            CLIENT_CREDENTIALS => {}
            _ => return Err(refuse("invalid_client_metadata", "unsupported grant type")),
        }
    }
    if let Some(types) = &request.response_types
        && types.iter().any(|kind| kind != "code")
    {
        return Err(refuse(
            "invalid_client_metadata",
            "only the code response type is supported",
        ));
    }
    let uses_code = grant_types.iter().any(|grant| grant == AUTHORIZATION_CODE);
    if uses_code && request.redirect_uris.is_empty() {
        return Err(refuse("invalid_redirect_uri", "redirect_uris is required"));
    }
    for uri in &request.redirect_uris {
        check_redirect_uri(uri, &application_type, policy.allow_insecure_http)?;
    }
    Ok((auth_method, grant_types, application_type))
}

fn check_redirect_uri(
    uri: &str,
    application_type: &str,
    allow_insecure_http: bool,
) -> Result<(), RegistrationError> {
    let url = Url::parse(uri)
        .map_err(|_| refuse("invalid_redirect_uri", "redirect URI must be absolute"))?;
    if url.fragment().is_some() {
        return Err(refuse(
            "invalid_redirect_uri",
            "redirect URI must not have a fragment",
        ));
    }
    let native = application_type == "native";
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&url) && (native || allow_insecure_http) => Ok(()),
        "http" => Err(refuse(
            "invalid_redirect_uri",
            "redirect URI must be https (loopback http only for native clients)",
        )),
        // RFC 8252 §7.1: native apps may use a private-use (reverse-domain) scheme.
        scheme if native && scheme.contains('.') => Ok(()),
        _ => Err(refuse(
            "invalid_redirect_uri",
            "unsupported redirect URI scheme",
        )),
    }
}

/// Reports whether `requested` is a registered redirect URI: exactly, except
/// that a loopback http URI may use any port (RFC 8252 §7.3).
pub(crate) fn redirect_uri_registered(client: &ClientRecord, requested: &str) -> bool {
    if client.redirect_uris.iter().any(|uri| uri == requested) {
        return true;
    }
    let Ok(requested) = Url::parse(requested) else {
        return false;
    };
    if requested.scheme() != "http" || !is_loopback(&requested) {
        return false;
    }
    client.redirect_uris.iter().any(|registered| {
        Url::parse(registered).is_ok_and(|mut registered| {
            let mut candidate = requested.clone();
            registered.set_port(None).is_ok()
                && candidate.set_port(None).is_ok()
                && registered == candidate
        })
    })
}

impl ClientRecord {
    /// Reports whether the client holds a secret (is confidential).
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }

    /// Reports whether the client may use `grant`.
    pub fn allows_grant(&self, grant: &str) -> bool {
        self.grant_types.iter().any(|allowed| allowed == grant)
            || (grant == REFRESH_TOKEN
                && self
                    .grant_types
                    .iter()
                    .any(|allowed| allowed == AUTHORIZATION_CODE))
    }
}
