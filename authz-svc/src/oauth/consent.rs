//! The login and consent page: names the client, its redirect host and the
//! scopes (in the words the virtual server's policy declares for them);
//! CSRF-protected with a cookie bound to the client; never framed.

use ::policy::ScopeGrant;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac as _};
use sha2::Sha256;
use url::Url;

use super::Params;
use super::authorize::AuthorizeRequest;
use crate::keys::random_token;
use crate::policy::PolicyStore;
use crate::state::AuthzState;

/// Is the CSRF cookie's name on an https issuer (`__Host-`: Secure, host-only, Path=/).
const SECURE_COOKIE: &str = "__Host-gatehouse-csrf";
/// Is the CSRF cookie's name under the loopback-http dev opt-out, where browsers
/// refuse `__Host-` cookies (they require `Secure`, which needs https).
const INSECURE_COOKIE: &str = "gatehouse-csrf";

/// Says which variant of the page to show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Page {
    Fresh,
    LoginFailed,
}

/// Returns the login and consent page with a fresh CSRF cookie.
pub(super) fn render(state: &AuthzState, request: &AuthorizeRequest, page: Page) -> Response {
    let Ok(nonce) = random_token() else {
        return error_page(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
    };
    let csrf = csrf_token(state, &nonce, &request.client.client_id);
    let html = page_html(
        request,
        &scope_items(state, request),
        &provider_buttons(state),
        &csrf,
        page,
    );
    let status = if page == Page::LoginFailed {
        StatusCode::UNAUTHORIZED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Html(html)).into_response();
    let secure = state.issuer.secure;
    let cookie = format!(
        "{}={nonce}; Path=/; HttpOnly; SameSite=Strict; Max-Age=600{}",
        cookie_name(secure),
        if secure { "; Secure" } else { "" }
    );
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    protect(response.headers_mut());
    response
}

/// Reports whether the form's CSRF token matches the cookie and the client.
pub(super) fn csrf_valid(
    state: &AuthzState,
    headers: &HeaderMap,
    params: &Params,
    client_id: &str,
) -> bool {
    let Some(nonce) = cookie(headers, cookie_name(state.issuer.secure)) else {
        return false;
    };
    let Some(sent) = params
        .get("csrf")
        .and_then(|token| URL_SAFE_NO_PAD.decode(token).ok())
    else {
        return false;
    };
    csrf_mac(state, &nonce, client_id)
        .verify_slice(&sent)
        .is_ok()
}

/// Adds the anti-framing and no-cache headers every authorization response carries.
pub(super) fn protect(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// Returns an error page; used where redirecting the error would be unsafe.
pub(super) fn error_page(status: StatusCode, message: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorization error</title></head>\
         <body><h1>Authorization error</h1><p>{}</p></body></html>",
        escape(message)
    );
    let mut response = (status, Html(html)).into_response();
    protect(response.headers_mut());
    response
}

fn cookie_name(secure: bool) -> &'static str {
    if secure {
        SECURE_COOKIE
    } else {
        INSECURE_COOKIE
    }
}

/// Returns the value of the cookie `name`.
pub(super) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_owned())
}

fn csrf_mac(state: &AuthzState, nonce: &str, client_id: &str) -> Hmac<Sha256> {
    let mut mac = crate::keys::mac(state.csrf_key.as_slice());
    mac.update(nonce.as_bytes());
    mac.update(&[0]);
    mac.update(client_id.as_bytes());
    mac
}

fn csrf_token(state: &AuthzState, nonce: &str, client_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(csrf_mac(state, nonce, client_id).finalize().into_bytes())
}

/// Returns the requested scopes as list items: each in the words its virtual server's policy
/// declares, the scope name itself only when no description was given.
fn scope_items(state: &AuthzState, request: &AuthorizeRequest) -> String {
    let evaluator = state.policies.as_ref().map(PolicyStore::current);
    let declared = evaluator
        .as_deref()
        .and_then(|evaluator| evaluator.scopes(&request.resource_name));
    request
        .scope
        .split_whitespace()
        .map(|scope| {
            let words = declared
                .and_then(|scopes| scopes.get(scope))
                .map(ScopeGrant::description)
                .filter(|description| !description.is_empty());
            match words {
                Some(words) => format!(
                    "<li title=\"{scope}\">{words}</li>",
                    scope = escape(scope),
                    words = escape(words)
                ),
                None => format!("<li>{}</li>", escape(scope)),
            }
        })
        .collect()
}

/// Returns a "Sign in with X and allow" button per upstream identity provider.
fn provider_buttons(state: &AuthzState) -> String {
    state
        .federation
        .providers()
        .iter()
        .map(|provider| {
            format!(
                "<button name=\"idp\" value=\"{name}\">Sign in with {label} and allow</button>",
                name = escape(&provider.config.name),
                label = escape(provider.label())
            )
        })
        .collect()
}

fn page_html(
    request: &AuthorizeRequest,
    scopes: &str,
    providers: &str,
    csrf: &str,
    page: Page,
) -> String {
    let client = &request.client;
    let name = if client.client_name.is_empty() {
        "An unnamed application"
    } else {
        &client.client_name
    };
    let host = Url::parse(&request.redirect_uri)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .unwrap_or_default();
    let hidden: String = [
        ("client_id", client.client_id.as_str()),
        ("redirect_uri", &request.redirect_uri),
        ("response_type", "code"),
        ("state", request.state.as_deref().unwrap_or_default()),
        ("code_challenge", &request.code_challenge),
        ("code_challenge_method", "S256"),
        ("scope", &request.scope),
        ("resource", &request.resource),
        ("csrf", csrf),
    ]
    .iter()
    .map(|(field, value)| {
        format!(
            "<input type=\"hidden\" name=\"{field}\" value=\"{}\">",
            escape(value)
        )
    })
    .collect();
    let notice = match page {
        Page::Fresh => "",
        Page::LoginFailed => "<p role=\"alert\">Invalid username or password.</p>",
    };
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Authorize {name}</title></head><body>\
         <h1>Authorize {name}</h1>{notice}\
         <p><strong>{name}</strong> (client <code>{client_id}</code>) asks to act for you at \
         <code>{resource}</code> and will be sent back to <strong>{host}</strong>.</p>\
         <p>It asks to:</p><ul>{scopes}</ul>\
         <form method=\"post\" action=\"authorize\">{hidden}\
         <label>Username <input name=\"username\" autocomplete=\"username\"></label>\
         <label>Password <input type=\"password\" name=\"password\" autocomplete=\"current-password\"></label>\
         <button name=\"decision\" value=\"approve\">Allow</button>\
         <button name=\"decision\" value=\"deny\">Deny</button>{providers}</form></body></html>",
        name = escape(name),
        client_id = escape(&client.client_id),
        resource = escape(&request.resource),
        host = escape(&host),
    )
}

/// Returns `text` with the HTML-significant characters escaped.
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#x27;"),
            other => escaped.push(other),
        }
    }
    escaped
}
