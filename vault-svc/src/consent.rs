//! Per-member consent: the authorization link GetCredential hands out, and the
//! callback that completes the authorization-code + PKCE flow with the
//! downstream provider and stores the member's tokens.
//!
//! The link is the provider's authorization URL carrying a random `state`; only
//! the state's SHA-256 is stored, beside the sealed PKCE verifier, bound to the
//! member and connector, single-use (taken by the callback) and short-lived.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::config::OAuthProviderConfig;
use crate::credential::{Material, OAuthGrant, now_micros};
use crate::crypto::Binding;
use crate::error::Error;
use crate::event::{CredentialAction, CredentialEvent};
use crate::oauth::{CodeExchange, OAuthClient};
use crate::secret::{Owner, SecretText};
use crate::store::ConsentRecord;
use crate::vault::Vault;

mod discovery;

/// Is an authorization link for one member and connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentLink {
    /// Holds the URL the member opens.
    pub url: String,
    /// Holds when it stops working, in Unix microseconds.
    pub expires_at: i64,
    /// Says an earlier connection stopped working.
    pub reconnect: bool,
}

/// Issues consent links and completes them.
#[derive(Debug)]
pub struct ConsentIssuer {
    public_url: String,
    ttl: Duration,
    http_timeout: Duration,
    oauth: OAuthClient,
    discovered: Mutex<HashMap<String, Endpoints>>,
}

/// Is a provider's endpoints, static or discovered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Endpoints {
    pub(crate) authorization_endpoint: String,
    pub(crate) token_endpoint: String,
}

/// Is what an API-key consent row seals: the header the pasted key will travel in.
#[derive(Serialize, Deserialize)]
struct ApiKeyPending {
    header: String,
}

/// Bounds a pasted API key; anything longer is not a key.
const MAX_API_KEY_LEN: usize = 4096;

/// Is what the consent row seals: the PKCE verifier and where to redeem the code.
#[derive(Serialize, Deserialize)]
struct Pending {
    verifier: SecretText,
    endpoints: Endpoints,
}

impl ConsentIssuer {
    /// Returns an issuer whose callback lives at `{public_url}/oauth/callback`.
    pub fn new(public_url: &str, ttl: Duration, http_timeout: Duration) -> Result<Self, Error> {
        Ok(Self {
            public_url: public_url.trim_end_matches('/').to_owned(),
            ttl,
            http_timeout,
            oauth: OAuthClient::new().map_err(|_| Error::Corrupt("http client"))?,
            discovered: Mutex::new(HashMap::new()),
        })
    }

    /// Returns the downstream OAuth client (shared with upstream revocation).
    pub(crate) fn oauth(&self) -> &OAuthClient {
        &self.oauth
    }

    /// Returns the HTTP deadline of provider calls.
    pub(crate) fn http_timeout(&self) -> Duration {
        self.http_timeout
    }

    /// Says whether the HTTP face is public over HTTPS, so its cookies are `Secure`.
    pub(crate) fn secure(&self) -> bool {
        self.public_url.starts_with("https://")
    }

    /// Returns the redirect URI registered at providers.
    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth/callback", self.public_url)
    }

    /// Returns a fresh link for `member_id` to connect `connector`.
    pub(crate) async fn issue(
        &self,
        vault: &Vault,
        member_id: &str,
        connector: &str,
        config: &OAuthProviderConfig,
        reconnect: bool,
    ) -> Result<ConsentLink, Error> {
        let endpoints = self.endpoints(connector, config).await?;
        let state = random_state()?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let pending = Pending {
            verifier: SecretText::from(verifier.secret().as_str()),
            endpoints: endpoints.clone(),
        };
        let expires_at = self
            .put_pending(vault, member_id, connector, &state, &pending)
            .await?;
        let auth_url = AuthUrl::new(endpoints.authorization_endpoint.clone())
            .map_err(|_| Error::Provider("invalid authorization endpoint".to_owned()))?;
        let redirect =
            RedirectUrl::new(self.redirect_uri()).map_err(|_| Error::Corrupt("redirect uri"))?;
        let client = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_auth_uri(auth_url)
            .set_redirect_uri(redirect);
        let mut request = client
            .authorize_url(|| CsrfToken::new(state))
            .set_pkce_challenge(challenge)
            .add_scopes(config.scopes.iter().cloned().map(Scope::new));
        if let Some(resource) = &config.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let (url, _) = request.url();
        issued(vault, member_id, connector);
        Ok(ConsentLink {
            url: url.to_string(),
            expires_at,
            reconnect,
        })
    }

    /// Returns a fresh link for `member_id` to paste their API key for `connector`,
    /// sent in `header`: vault-svc's own page, bound to the member, single-use and
    /// short-lived like an OAuth state.
    pub(crate) async fn issue_api_key(
        &self,
        vault: &Vault,
        member_id: &str,
        connector: &str,
        header: &str,
    ) -> Result<ConsentLink, Error> {
        let state = random_state()?;
        let pending = ApiKeyPending {
            header: header.to_owned(),
        };
        let expires_at = self
            .put_pending(vault, member_id, connector, &state, &pending)
            .await?;
        issued(vault, member_id, connector);
        Ok(ConsentLink {
            url: format!("{}/api-key?state={state}", self.public_url),
            expires_at,
            reconnect: false,
        })
    }

    /// Returns the connector an API-key link is for, if `state` names a live one
    /// (without using it: the form is shown before the member submits).
    pub async fn api_key_link(&self, vault: &Vault, state: &str) -> Result<String, Error> {
        let consent = vault
            .store()
            .peek_consent(&Sha256::digest(state.as_bytes()), now_micros())
            .await?
            .ok_or(Error::ConsentInvalid)?;
        match vault.connector(&consent.connector)?.api_key {
            Some(_) => Ok(consent.connector),
            None => Err(Error::ConsentInvalid),
        }
    }

    /// Completes an API-key link: uses `state` (once) and stores `key` as the
    /// member's credential for the link's connector. Returns the connector.
    ///
    /// A malformed key is refused before the link is used, so the member can retry.
    pub async fn complete_api_key(
        &self,
        vault: &Vault,
        state: &str,
        key: &SecretText,
    ) -> Result<String, Error> {
        if key.is_empty()
            || key.expose().len() > MAX_API_KEY_LEN
            || !key.expose().bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(Error::InvalidArgument {
                field: "key",
                reason: "must be 1 to 4096 visible ASCII characters",
            });
        }
        let consent = vault
            .store()
            .take_consent(&Sha256::digest(state.as_bytes()), now_micros())
            .await?
            .ok_or(Error::ConsentInvalid)?;
        if vault.connector(&consent.connector)?.api_key.is_none() {
            return Err(Error::ConsentInvalid);
        }
        let owner = Owner::Member(consent.member_id.clone());
        let binding = Binding {
            tenant: vault.tenant(),
            owner: &owner,
            connector: &consent.connector,
            field: "consent",
        };
        let json = vault.envelope().open(binding, &consent.sealed).await?;
        let pending: ApiKeyPending =
            serde_json::from_slice(&json).map_err(|_| Error::ConsentInvalid)?;
        let material = Material::ApiKey {
            header_name: pending.header,
            key: key.clone(),
        };
        let record = vault
            .store_credential(
                &consent.connector,
                owner,
                &material,
                None,
                "pasted by the member".to_owned(),
            )
            .await?;
        let mut event =
            CredentialEvent::new(CredentialAction::ConsentCompleted, vault.tenant(), "ok");
        event.credential_id = Some(record.id);
        event.connector = Some(consent.connector.clone());
        event.owner = Some(record.key.owner);
        event.version = Some(record.version);
        vault.emit(event);
        Ok(consent.connector)
    }

    /// Stores `pending` sealed under the hash of `state` for `member_id` and
    /// `connector`; returns when the link expires.
    async fn put_pending(
        &self,
        vault: &Vault,
        member_id: &str,
        connector: &str,
        state: &str,
        pending: &impl Serialize,
    ) -> Result<i64, Error> {
        let owner = Owner::Member(member_id.to_owned());
        let json = Zeroizing::new(serde_json::to_vec(pending).map_err(|_| Error::Encrypt)?);
        let binding = Binding {
            tenant: vault.tenant(),
            owner: &owner,
            connector,
            field: "consent",
        };
        let expires_at = now_micros() + i64::try_from(self.ttl.as_micros()).unwrap_or(i64::MAX);
        vault
            .store()
            .put_consent(&ConsentRecord {
                state_hash: Sha256::digest(state.as_bytes()).to_vec(),
                tenant: vault.tenant().to_owned(),
                connector: connector.to_owned(),
                member_id: member_id.to_owned(),
                sealed: vault.envelope().seal(binding, &json).await?,
                expires_at,
            })
            .await?;
        Ok(expires_at)
    }

    /// Completes the flow `state` started: redeems `code` with the stored
    /// verifier and stores the member's tokens. Returns the connector.
    pub async fn complete(
        &self,
        vault: &Vault,
        state: &str,
        code: String,
    ) -> Result<String, Error> {
        let hash = Sha256::digest(state.as_bytes());
        let consent = vault
            .store()
            .take_consent(&hash, now_micros())
            .await?
            .ok_or(Error::ConsentInvalid)?;
        let config = vault
            .connector(&consent.connector)?
            .oauth
            .clone()
            .ok_or(Error::ConsentInvalid)?;
        let owner = Owner::Member(consent.member_id.clone());
        let binding = Binding {
            tenant: vault.tenant(),
            owner: &owner,
            connector: &consent.connector,
            field: "consent",
        };
        let json = vault.envelope().open(binding, &consent.sealed).await?;
        let pending: Pending =
            serde_json::from_slice(&json).map_err(|_| Error::Corrupt("consent"))?;
        let secret = config.client_secret.as_ref().map(|secret| secret.expose());
        let redirect_uri = self.redirect_uri();
        let exchange = CodeExchange {
            authorization_endpoint: &pending.endpoints.authorization_endpoint,
            token_endpoint: &pending.endpoints.token_endpoint,
            client_id: &config.client_id,
            client_secret: secret,
            redirect_uri: &redirect_uri,
            resource: config.resource.as_deref(),
        };
        let tokens = self
            .oauth
            .exchange_code(
                &exchange,
                code,
                pending.verifier.expose().to_owned(),
                self.http_timeout,
            )
            .await
            .map_err(|_| Error::Provider("authorization code exchange failed".to_owned()))?;
        let expires_at = tokens.expires_in.map(|expires_in| {
            now_micros() + i64::try_from(expires_in.as_micros()).unwrap_or(i64::MAX)
        });
        let material = Material::OauthGrant(OAuthGrant {
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            token_endpoint: pending.endpoints.token_endpoint.clone(),
            client_id: config.client_id.clone(),
            client_secret: config
                .client_secret
                .as_ref()
                .map(|secret| SecretText::from(secret.expose())),
            resource: config.resource.clone(),
            revocation_endpoint: config.revocation_endpoint.clone(),
        });
        let record = vault
            .store_credential(
                &consent.connector,
                owner,
                &material,
                expires_at,
                "connected by the member".to_owned(),
            )
            .await?;
        let mut event =
            CredentialEvent::new(CredentialAction::ConsentCompleted, vault.tenant(), "ok");
        event.credential_id = Some(record.id);
        event.connector = Some(consent.connector.clone());
        event.owner = Some(record.key.owner);
        event.version = Some(record.version);
        vault.emit(event);
        Ok(consent.connector)
    }

    async fn endpoints(
        &self,
        connector: &str,
        config: &OAuthProviderConfig,
    ) -> Result<Endpoints, Error> {
        if let (Some(authorization_endpoint), Some(token_endpoint)) =
            (&config.authorization_endpoint, &config.token_endpoint)
        {
            return Ok(Endpoints {
                authorization_endpoint: authorization_endpoint.clone(),
                token_endpoint: token_endpoint.clone(),
            });
        }
        if let Some(found) = self
            .discovered
            .lock()
            .ok()
            .and_then(|cache| cache.get(connector).cloned())
        {
            return Ok(found);
        }
        let resource = config
            .resource
            .as_deref()
            .ok_or(Error::ConnectorNotFound(connector.to_owned()))?;
        let found = discovery::discover(self.oauth.http(), resource, self.http_timeout).await?;
        if let Ok(mut cache) = self.discovered.lock() {
            cache.insert(connector.to_owned(), found.clone());
        }
        Ok(found)
    }
}

/// Returns a fresh 256-bit state, URL-safe.
fn random_state() -> Result<String, Error> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut_slice()).map_err(|_| Error::Randomness)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes.as_slice()))
}

/// Records that a link was issued to `member_id` for `connector` (never the link).
fn issued(vault: &Vault, member_id: &str, connector: &str) {
    let mut event = CredentialEvent::new(CredentialAction::ConsentIssued, vault.tenant(), "ok");
    event.connector = Some(connector.to_owned());
    event.owner = Some(Owner::Member(member_id.to_owned()));
    vault.emit(event);
}
