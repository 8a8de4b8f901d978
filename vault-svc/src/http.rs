//! vault-svc's HTTP face: the OAuth callback of the per-member consent flow,
//! and the page where a member pastes their own API key.
//! The product binary merges [`router`] under the path `http.public_url` names.

use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use subtle::ConstantTimeEq as _;

use crate::error::Error;
use crate::secret::SecretText;
use crate::vault::Vault;

/// Names the double-submit cookie of the API-key form.
const CSRF_COOKIE: &str = "gatehouse_vault_csrf";

/// Is the API-key page's query: the link's state.
#[derive(Debug, Deserialize)]
struct LinkQuery {
    state: Option<String>,
}

/// Is the API-key form: the link's state, the CSRF token and the key itself.
#[derive(Debug, Deserialize)]
struct ApiKeyForm {
    state: String,
    csrf: String,
    key: SecretText,
}

/// Is the callback's query: a code and state, or a provider error.
#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// Returns the router serving `GET /oauth/callback` and `GET`/`POST /api-key`.
pub fn router(vault: Vault) -> Router {
    Router::new()
        .route("/oauth/callback", get(callback))
        .route("/api-key", get(api_key_page).post(api_key_submit))
        .with_state(vault)
}

// Shows the form for a live link; the link is not used until the form is
// submitted. A fresh CSRF token goes into both the form and a SameSite=Strict
// cookie, so only a submission from this page is accepted.
async fn api_key_page(State(vault): State<Vault>, Query(query): Query<LinkQuery>) -> Response {
    let Some(state) = query.state else {
        return page(StatusCode::BAD_REQUEST, "missing state");
    };
    let connector = match vault.consent().api_key_link(&vault, &state).await {
        Ok(connector) => connector,
        Err(Error::ConsentInvalid | Error::ConnectorNotFound(_)) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This link is invalid, used or expired.",
            );
        }
        Err(error) => {
            tracing::warn!(error = %error, "api-key page failed");
            return page(StatusCode::SERVICE_UNAVAILABLE, "Try again later.");
        }
    };
    let mut token = [0u8; 32];
    if getrandom::fill(&mut token).is_err() {
        return page(StatusCode::SERVICE_UNAVAILABLE, "Try again later.");
    }
    let csrf = URL_SAFE_NO_PAD.encode(token);
    let body = format!(
        "<!doctype html><title>Gatehouse</title>\
         <p>Paste your API key for <b>{connector}</b>. It is stored encrypted and sent only \
         with your own calls to that connector; nobody can read it back.</p>\
         <form method=\"post\" action=\"api-key\" autocomplete=\"off\">\
         <input type=\"hidden\" name=\"state\" value=\"{state}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"password\" name=\"key\" required>\
         <button type=\"submit\">Save</button></form>",
        connector = escape(&connector),
        state = escape(&state),
    );
    let secure = if vault.consent().secure() {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{CSRF_COOKIE}={csrf}; HttpOnly; SameSite=Strict{secure}");
    let mut response = guarded(StatusCode::OK, body);
    if let Ok(value) = HeaderValue::try_from(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    response
}

// Answers with fixed text only: the key is never echoed, logged or put in an
// error body.
async fn api_key_submit(
    State(vault): State<Vault>,
    headers: HeaderMap,
    Form(form): Form<ApiKeyForm>,
) -> Response {
    let cookie = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    if form.csrf.is_empty() || !bool::from(cookie.as_bytes().ct_eq(form.csrf.as_bytes())) {
        return page(
            StatusCode::FORBIDDEN,
            "The form expired or did not come from this page; open the link again.",
        );
    }
    match vault
        .consent()
        .complete_api_key(&vault, &form.state, &form.key)
        .await
    {
        Ok(connector) => {
            tracing::info!(connector = %connector, "member stored an api key");
            page(
                StatusCode::OK,
                "Key saved. You can return to your MCP client and retry.",
            )
        }
        Err(Error::InvalidArgument { .. }) => page(
            StatusCode::BAD_REQUEST,
            "That is not a usable key (1 to 4096 visible characters). Go back and try again.",
        ),
        Err(Error::ConsentInvalid | Error::ConnectorNotFound(_)) => page(
            StatusCode::BAD_REQUEST,
            "This link is invalid, used or expired.",
        ),
        Err(Error::PrincipalRevoked) => page(StatusCode::FORBIDDEN, "Your access was revoked."),
        Err(error) => {
            tracing::warn!(error = %error, "storing an api key failed");
            page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Saving the key failed. Ask for a new link and try again.",
            )
        }
    }
}

/// Returns the value of cookie `name` in `headers`, if sent.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

/// Returns `text` safe inside HTML text and attribute values.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            other => other.to_string(),
        })
        .collect()
}

// Answers with fixed text only: nothing from the provider or the store is
// echoed, so no token or code can reach a page or a log line.
async fn callback(State(vault): State<Vault>, Query(query): Query<CallbackQuery>) -> Response {
    let (Some(code), Some(state)) = (query.code, query.state) else {
        let status = if query.error.is_some() {
            "the provider refused the authorization"
        } else {
            "missing code or state"
        };
        return page(StatusCode::BAD_REQUEST, status);
    };
    match vault.consent().complete(&vault, &state, code).await {
        Ok(connector) => {
            tracing::info!(connector = %connector, "member connected an account");
            page(
                StatusCode::OK,
                "Account connected. You can return to your MCP client and retry.",
            )
        }
        Err(Error::ConsentInvalid) => page(
            StatusCode::BAD_REQUEST,
            "This link is invalid, used or expired.",
        ),
        Err(error) => {
            tracing::warn!(error = %error, "consent callback failed");
            page(
                StatusCode::BAD_GATEWAY,
                "Connecting the account failed. Ask for a new link and try again.",
            )
        }
    }
}

fn page(status: StatusCode, message: &'static str) -> Response {
    guarded(
        status,
        format!("<!doctype html><title>Gatehouse</title><p>{message}</p>"),
    )
}

/// Returns an HTML page that is never cached, framed, or followed by a referrer
/// (the link's state is in the page's URL).
fn guarded(status: StatusCode, body: String) -> Response {
    let mut response = (status, Html(body)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; form-action 'self'; frame-ancestors 'none'"),
    );
    response
}
