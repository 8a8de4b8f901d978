//! Federated sign-in on the login and consent page: "Sign in with X" sends the member to the
//! upstream OIDC provider X, and `GET /federation/callback` finishes the pending `/authorize`
//! as the member the provider's ID token identifies. A pending sign-in is kept in this process
//! for ten minutes, bound to the browser that started it, and is spent by its first callback.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Params;
use super::authorize::{AuthorizeRequest, approve_remembering};
use super::consent::{self, cookie};
use crate::federation::{FederationError, member_id};
use crate::grant::hash_token;
use crate::keys::random_token;
use crate::state::AuthzState;
use crate::store::FederatedMember;
use crate::token::now;

/// Is how long a member has to finish signing in at the provider.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Bounds the sign-ins pending at once.
const MAX_PENDING: u64 = 100_000;
/// Is the browser-binding cookie's name on an https issuer.
const SECURE_COOKIE: &str = "__Host-gatehouse-federation";
/// Is its name under the loopback-http dev opt-out (browsers refuse `__Host-` without https).
const INSECURE_COOKIE: &str = "gatehouse-federation";
/// Is the callback's path, the redirect URI registered at every provider.
pub(crate) const CALLBACK_PATH: &str = "/federation/callback";

/// Is a sign-in sent to a provider and not yet back.
#[derive(Debug)]
pub(crate) struct PendingLogin {
    request: AuthorizeRequest,
    provider: String,
    nonce: String,
    verifier: String,
    /// Is the hash of the browser-binding cookie's value.
    browser: Vec<u8>,
}

/// Holds the pending sign-ins by the hash of their `state`.
pub(crate) type PendingLogins = moka::future::Cache<Vec<u8>, Arc<PendingLogin>>;

/// Returns an empty set of pending sign-ins.
pub(crate) fn pending_logins() -> PendingLogins {
    moka::future::Cache::builder()
        .time_to_live(PENDING_TTL)
        .max_capacity(MAX_PENDING)
        .build()
}

fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        INSECURE_COOKIE
    }
}

/// Sends the member to provider `name` to sign in for the consented `request`.
pub(super) async fn start(state: &AuthzState, request: AuthorizeRequest, name: &str) -> Response {
    let Some(provider) = state.federation.provider(name) else {
        return consent::error_page(StatusCode::BAD_REQUEST, "unknown identity provider");
    };
    let callback = state.issuer.endpoint(CALLBACK_PATH);
    let started = match state.federation.start(provider, &callback).await {
        Ok(started) => started,
        Err(error) => return refused(&error),
    };
    let Ok(browser) = random_token() else {
        return consent::error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let pending = PendingLogin {
        request,
        provider: provider.config.name.clone(),
        nonce: started.nonce,
        verifier: started.verifier,
        browser: hash_token(&browser),
    };
    state
        .pending_logins
        .insert(hash_token(&started.state), Arc::new(pending))
        .await;
    tracing::info!(provider = %provider.config.name, "federated sign-in started");
    let secure = state.issuer.secure;
    // Lax, not Strict: the provider's redirect back is a cross-site top-level navigation.
    let cookie = format!(
        "{}={browser}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{}",
        cookie_name(secure),
        PENDING_TTL.as_secs(),
        if secure { "; Secure" } else { "" }
    );
    let (Ok(location), Ok(cookie)) = (
        HeaderValue::from_str(started.url.as_str()),
        HeaderValue::from_str(&cookie),
    ) else {
        return consent::error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(header::LOCATION, location);
    headers.insert(header::SET_COOKIE, cookie);
    consent::protect(headers);
    response
}

/// Serves `GET /federation/callback`: the provider's authorization response.
pub(super) async fn callback(
    State(state): State<AuthzState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Ok(params) = Params::parse(query.unwrap_or_default().as_bytes()) else {
        return consent::error_page(StatusCode::BAD_REQUEST, "malformed authorization response");
    };
    match finish(&state, &headers, &params).await {
        Ok((request, member)) => approve_remembering(&state, &request, &member).await,
        Err(error) => refused(&error),
    }
}

async fn finish(
    state: &AuthzState,
    headers: &HeaderMap,
    params: &Params,
) -> Result<(AuthorizeRequest, String), FederationError> {
    let sent_state = params.get("state").ok_or(FederationError::State)?;
    // Spent here, whatever follows: a state is good for one callback.
    let pending = state
        .pending_logins
        .remove(&hash_token(sent_state))
        .await
        .ok_or(FederationError::State)?;
    let browser = cookie(headers, cookie_name(state.issuer.secure))
        .map(|value| hash_token(&value))
        .ok_or(FederationError::Browser)?;
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        browser.as_slice(),
        pending.browser.as_slice(),
    )) {
        return Err(FederationError::Browser);
    }
    let provider = state
        .federation
        .provider(&pending.provider)
        .ok_or(FederationError::State)?;
    if params
        .get("iss")
        .is_some_and(|iss| iss != provider.config.issuer)
    {
        return Err(FederationError::ResponseIssuer);
    }
    if params.get("error").is_some() {
        return Err(FederationError::Denied);
    }
    let code = params
        .get("code")
        .ok_or_else(|| FederationError::Exchange("the response carries no code".to_owned()))?;
    let callback = state.issuer.endpoint(CALLBACK_PATH);
    let identity = state
        .federation
        .finish(
            &state.workload_keys,
            provider,
            code,
            &callback,
            &pending.verifier,
            &pending.nonce,
        )
        .await?;
    let at = now();
    let member = FederatedMember {
        member_id: member_id(&identity.issuer, &identity.subject),
        issuer: identity.issuer,
        subject: identity.subject,
        groups: identity.groups,
        created_at: at,
        last_login_at: at,
    };
    state.store.record_federated_login(&member).await?;
    tracing::info!(provider = %provider.config.name, member = %member.member_id, groups = ?member.groups, "federated sign-in");
    Ok((pending.request.clone(), member.member_id))
}

fn refused(error: &FederationError) -> Response {
    let status = match error {
        FederationError::Internal(inner) => {
            tracing::error!(
                error = inner as &dyn std::error::Error,
                "federated sign-in failed"
            );
            StatusCode::INTERNAL_SERVER_ERROR
        }
        FederationError::Discovery(_) | FederationError::DiscoveryIssuer => {
            tracing::warn!(%error, "federated sign-in refused");
            StatusCode::BAD_GATEWAY
        }
        _ => {
            tracing::warn!(%error, "federated sign-in refused");
            StatusCode::BAD_REQUEST
        }
    };
    consent::error_page(status, &error.to_string())
}
