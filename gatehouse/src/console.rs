//! The web console of `gatehouse up`, under `/console/` on the one public listener: same origin
//! and same login as the MCP endpoints and the authorization server.
//!
//! Pages are rendered on the server from askama templates compiled into the binary; the style
//! sheet and the one script (the live activity feed's poll) are embedded with `include_str!`, so
//! the console needs no network, CDN or build step. Everything it shows or changes goes through
//! the admin API's functions in this process ([`crate::admin::Admin`]), so the console and the
//! API cannot disagree; administrators see every page, other members only their connected
//! accounts.

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::admin::{Admin, AdminCaller};

mod accounts;
mod activity;
mod agents;
mod connectors;
mod servers;
mod session;

use session::{Sessions, Viewer};

/// The console's style sheet, embedded.
const STYLE: &str = include_str!("../console/console.css");
/// The live feed's poll, embedded (the only script; pages work without it).
const SCRIPT: &str = include_str!("../console/console.js");

/// The console's handles on the running gateway; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Console {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    admin: Admin,
    gateway: edge_svc::Gateway,
    vault: vault_svc::Vault,
    sessions: Sessions,
    /// The groups of the file's members: roles the virtual servers page previews.
    roles: Vec<String>,
}

/// What `gatehouse up` hands the console.
#[derive(Debug)]
pub(crate) struct ConsoleParts {
    pub(crate) admin: Admin,
    /// The authorization server the console is an OAuth client of.
    pub(crate) authz: authz_svc::AuthzState,
    pub(crate) gateway: edge_svc::Gateway,
    pub(crate) vault: vault_svc::Vault,
    /// The public origin: the console's redirect URI and cookies derive from it.
    pub(crate) public_url: url::Url,
    /// The groups of the gateway file's members (`authorization.members`).
    pub(crate) roles: Vec<String>,
}

/// The navigation bar and identity every page shows.
#[derive(Debug)]
struct Chrome {
    /// Names the signed-in member.
    who: String,
    admin: bool,
    /// The session's CSRF token, put in every form.
    csrf: String,
    /// Names the current page, for `aria-current`.
    page: &'static str,
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    chrome: Option<Chrome>,
    title: &'a str,
    message: &'a str,
}

impl Console {
    /// Returns the console over a started gateway; registers nothing until the first login.
    pub(crate) fn new(parts: ConsoleParts) -> Self {
        let sessions = Sessions::new(parts.authz, &parts.public_url, parts.admin.clone());
        Self {
            inner: Arc::new(Inner {
                admin: parts.admin,
                gateway: parts.gateway,
                vault: parts.vault,
                sessions,
                roles: parts.roles,
            }),
        }
    }

    /// Returns the console's routes, all under `/console/`.
    pub(crate) fn router(self) -> Router {
        Router::new()
            .route("/console", get(session::home))
            .route("/console/", get(session::home))
            .route("/console/login", get(session::login))
            .route("/console/callback", get(session::callback))
            .route("/console/logout", post(session::logout))
            .route("/console/assets/console.css", get(style))
            .route("/console/assets/console.js", get(script))
            .route("/console/activity", get(activity::page))
            .route("/console/activity/feed", get(activity::feed))
            .route("/console/activity/{sequence}", get(activity::event))
            .route("/console/agents", get(agents::page))
            .route(
                "/console/agents/{name}/rotate",
                get(agents::confirm_rotate).post(agents::rotate),
            )
            .route(
                "/console/agents/{name}/decommission",
                get(agents::confirm_decommission).post(agents::decommission),
            )
            .route("/console/connectors", get(connectors::page))
            .route("/console/servers", get(servers::page))
            .route("/console/accounts", get(accounts::page))
            .route(
                "/console/accounts/{connector}/connect",
                post(accounts::connect),
            )
            .route(
                "/console/accounts/{connector}/remove",
                post(accounts::remove),
            )
            .with_state(self)
    }

    fn admin(&self) -> &Admin {
        &self.inner.admin
    }

    fn sessions(&self) -> &Sessions {
        &self.inner.sessions
    }
}

impl Viewer {
    /// Returns the page chrome for this viewer on `page`.
    fn chrome(&self, page: &'static str) -> Chrome {
        Chrome {
            who: self.name.clone(),
            admin: self.admin.is_some(),
            csrf: self.csrf.clone(),
            page,
        }
    }

    /// Returns the administrator this viewer is, or the refusal page members get.
    #[expect(
        clippy::result_large_err,
        reason = "the refusal is the page the handler returns at once"
    )]
    fn administrator(&self) -> Result<&AdminCaller, Response> {
        self.admin.as_ref().ok_or_else(|| {
            message(
                StatusCode::FORBIDDEN,
                Some(self.chrome("")),
                "Administrators only",
                "This page is for members of the administrators' group. Your connected accounts are under Connected accounts.",
            )
        })
    }
}

/// Returns the groups of the gateway file's members, sorted: the roles the virtual servers
/// page previews beside the directory's groups.
pub(crate) fn roles(authorization: &authz_svc::AuthorizationConfig) -> Vec<String> {
    let mut roles: Vec<String> = authorization
        .members
        .iter()
        .flat_map(|member| member.groups.iter().cloned())
        .collect();
    roles.sort();
    roles.dedup();
    roles
}

/// Renders `template` as a console page with the console's security headers.
fn render(status: StatusCode, template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => protect((status, Html(html)).into_response()),
        Err(error) => {
            tracing::error!(%error, "a console page could not be rendered");
            protect((StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response())
        }
    }
}

/// Returns a page that says one thing (an error, a refusal, a confirmation).
fn message(status: StatusCode, chrome: Option<Chrome>, title: &str, text: &str) -> Response {
    render(
        status,
        &MessagePage {
            chrome,
            title,
            message: text,
        },
    )
}

/// Answers an admin API error as a console page, in the API's own words (never a secret).
fn admin_error(viewer: &Viewer, error: &crate::admin::AdminError) -> Response {
    let body = error.body();
    let status = svc_kit::ServiceError::code(error).http_status();
    message(
        status,
        Some(viewer.chrome("")),
        "The request failed",
        &body.message,
    )
}

/// Adds the console's headers: never framed, never cached, scripts and styles only from here.
fn protect(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// Returns the form field `name` of an `application/x-www-form-urlencoded` body.
fn form_field(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body)
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Returns the value of cookie `name`.
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

/// Returns how long ago `then` (unix seconds) was, in words.
fn age(then: i64, now: i64) -> String {
    let seconds = (now - then).max(0);
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min", seconds / 60),
        3600..86_400 => format!("{} h", seconds / 3600),
        _ => format!("{} d", seconds / 86_400),
    }
}

/// Returns the current time in unix seconds.
fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX)
        })
}
