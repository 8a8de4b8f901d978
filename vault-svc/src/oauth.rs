//! vault-svc as an OAuth client of downstream providers, through the `oauth2`
//! crate: the refresh-token grant, client credentials, and the
//! authorization-code exchange (with PKCE). HTTP goes through reqwest, with no
//! redirects followed and a deadline per call.

use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType, BasicTokenResponse};
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, HttpRequest, HttpResponse,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, TokenResponse as _,
    TokenUrl,
};

use crate::credential::{ClientCredentials, OAuthGrant};
use crate::secret::SecretText;

/// Is what a token endpoint returned.
#[derive(Debug)]
pub(crate) struct TokenSet {
    pub(crate) access_token: SecretText,
    pub(crate) refresh_token: Option<SecretText>,
    pub(crate) expires_in: Option<Duration>,
}

/// Says why a token request failed, without any secret.
#[derive(Debug)]
pub(crate) enum ProviderError {
    /// The provider rejected the grant (`invalid_grant`): its owner must reconnect.
    InvalidGrant,
    /// The provider answered with another OAuth error code.
    Rejected(String),
    /// The provider could not be reached in time, or answered garbage.
    Unreachable,
}

/// Performs token requests with one shared connection pool.
#[derive(Debug, Clone)]
pub(crate) struct OAuthClient {
    http: reqwest::Client,
}

impl OAuthClient {
    /// Returns a client; redirects are never followed (token endpoints must not
    /// bounce credentials elsewhere).
    pub(crate) fn new() -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(Self { http })
    }

    /// Returns the shared HTTP client, for discovery.
    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Redeems `grant`'s refresh token once.
    pub(crate) async fn refresh(
        &self,
        grant: &OAuthGrant,
        timeout: Duration,
    ) -> Result<TokenSet, ProviderError> {
        let refresh_token = grant
            .refresh_token
            .as_ref()
            .ok_or(ProviderError::InvalidGrant)?;
        let token_url =
            TokenUrl::new(grant.token_endpoint.clone()).map_err(|_| ProviderError::Unreachable)?;
        let mut client =
            BasicClient::new(ClientId::new(grant.client_id.clone())).set_token_uri(token_url);
        if let Some(secret) = &grant.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.expose().to_owned()));
        }
        let token = RefreshToken::new(refresh_token.expose().to_owned());
        let mut request = client.exchange_refresh_token(&token);
        if let Some(resource) = &grant.resource {
            request = request.add_extra_param("resource", resource.clone());
        }
        let http = Http {
            client: self.http.clone(),
            timeout,
        };
        token_set(request.request_async(&http).await)
    }

    /// Obtains an access token with client credentials.
    pub(crate) async fn client_credentials(
        &self,
        credentials: &ClientCredentials,
        timeout: Duration,
    ) -> Result<TokenSet, ProviderError> {
        let token_url = TokenUrl::new(credentials.token_endpoint.clone())
            .map_err(|_| ProviderError::Unreachable)?;
        let client = BasicClient::new(ClientId::new(credentials.client_id.clone()))
            .set_client_secret(ClientSecret::new(
                credentials.client_secret.expose().to_owned(),
            ))
            .set_token_uri(token_url);
        let mut request = client
            .exchange_client_credentials()
            .add_scopes(credentials.scopes.iter().cloned().map(Scope::new));
        if let Some(audience) = &credentials.audience {
            request = request.add_extra_param("resource", audience.clone());
        }
        let http = Http {
            client: self.http.clone(),
            timeout,
        };
        // Here the client is the grant: a refused client will not work on a retry either, so
        // it is a rejected grant that an administrator must replace.
        token_set(request.request_async(&http).await).map_err(|error| match error {
            ProviderError::Rejected(code)
                if code == "invalid_client" || code == "unauthorized_client" =>
            {
                ProviderError::InvalidGrant
            }
            other => other,
        })
    }

    /// Revokes `grant` at its provider (RFC 7009): the refresh token, which ends
    /// the grant, or else the access token. Returns whether the provider agreed.
    ///
    /// A plain form POST rather than `oauth2`'s revocation request, which
    /// refuses non-HTTPS endpoints (loopback providers included).
    pub(crate) async fn revoke(&self, grant: &OAuthGrant, timeout: Duration) -> bool {
        let Some(endpoint) = &grant.revocation_endpoint else {
            return true;
        };
        let (token, hint) = match &grant.refresh_token {
            Some(token) => (token.expose(), "refresh_token"),
            None => (grant.access_token.expose(), "access_token"),
        };
        let mut form = vec![("token", token), ("token_type_hint", hint)];
        let mut request = self.http.post(endpoint).timeout(timeout);
        match &grant.client_secret {
            Some(secret) => request = request.basic_auth(&grant.client_id, Some(secret.expose())),
            None => form.push(("client_id", grant.client_id.as_str())),
        }
        let body = serde_urlencoded_form(&form);
        match request
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .send()
            .await
        {
            Ok(response) if response.status().is_success() => true,
            Ok(response) => {
                tracing::warn!(
                    status = response.status().as_u16(),
                    "token revocation refused"
                );
                false
            }
            Err(_) => {
                tracing::warn!("token revocation endpoint unreachable");
                false
            }
        }
    }

    /// Exchanges an authorization code with its PKCE verifier.
    pub(crate) async fn exchange_code(
        &self,
        endpoints: &CodeExchange<'_>,
        code: String,
        verifier: String,
        timeout: Duration,
    ) -> Result<TokenSet, ProviderError> {
        let token_url = TokenUrl::new(endpoints.token_endpoint.to_owned())
            .map_err(|_| ProviderError::Unreachable)?;
        let auth_url = AuthUrl::new(endpoints.authorization_endpoint.to_owned())
            .map_err(|_| ProviderError::Unreachable)?;
        let redirect = RedirectUrl::new(endpoints.redirect_uri.to_owned())
            .map_err(|_| ProviderError::Unreachable)?;
        let mut client = BasicClient::new(ClientId::new(endpoints.client_id.to_owned()))
            .set_auth_uri(auth_url)
            .set_token_uri(token_url)
            .set_redirect_uri(redirect);
        if let Some(secret) = endpoints.client_secret {
            client = client.set_client_secret(ClientSecret::new(secret.to_owned()));
        }
        let mut request = client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(PkceCodeVerifier::new(verifier));
        if let Some(resource) = endpoints.resource {
            request = request.add_extra_param("resource", resource.to_owned());
        }
        let http = Http {
            client: self.http.clone(),
            timeout,
        };
        token_set(request.request_async(&http).await)
    }
}

/// Returns `pairs` as an `application/x-www-form-urlencoded` body.
fn serde_urlencoded_form(pairs: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

/// Names what an authorization-code exchange needs.
#[derive(Debug)]
pub(crate) struct CodeExchange<'a> {
    pub(crate) authorization_endpoint: &'a str,
    pub(crate) token_endpoint: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) client_secret: Option<&'a str>,
    pub(crate) redirect_uri: &'a str,
    pub(crate) resource: Option<&'a str>,
}

/// Adapts reqwest to `oauth2`: a named type (not a closure) so that the
/// request futures stay `Send` for every lifetime.
struct Http {
    client: reqwest::Client,
    timeout: Duration,
}

impl<'c> oauth2::AsyncHttpClient<'c> for Http {
    type Error = HttpFailure;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HttpResponse, HttpFailure>> + Send + 'c>,
    >;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(send(self.client.clone(), self.timeout, request))
    }
}

/// Sends one token request through reqwest, bounded by `timeout`.
async fn send(
    client: reqwest::Client,
    timeout: Duration,
    request: HttpRequest,
) -> Result<HttpResponse, HttpFailure> {
    let (parts, body) = request.into_parts();
    let response = client
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .timeout(timeout)
        .send()
        .await
        .map_err(|_| HttpFailure)?;
    let mut builder = http::Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let body = response.bytes().await.map_err(|_| HttpFailure)?;
    builder.body(body.to_vec()).map_err(|_| HttpFailure)
}

/// Reports a failed HTTP exchange; carries no text, which could hold a URL or
/// a body echoing a secret.
#[derive(Debug, thiserror::Error)]
#[error("token endpoint request failed")]
struct HttpFailure;

type TokenResult = Result<
    BasicTokenResponse,
    RequestTokenError<HttpFailure, oauth2::StandardErrorResponse<BasicErrorResponseType>>,
>;

fn token_set(result: TokenResult) -> Result<TokenSet, ProviderError> {
    match result {
        Ok(token) => Ok(TokenSet {
            access_token: SecretText::from(token.access_token().secret().as_str()),
            refresh_token: token
                .refresh_token()
                .map(|token| SecretText::from(token.secret().as_str())),
            expires_in: token.expires_in(),
        }),
        Err(RequestTokenError::ServerResponse(response)) => match response.error() {
            BasicErrorResponseType::InvalidGrant => Err(ProviderError::InvalidGrant),
            other => Err(ProviderError::Rejected(other.as_ref().to_owned())),
        },
        Err(_) => Err(ProviderError::Unreachable),
    }
}
