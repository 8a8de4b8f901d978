//! Signing in to the console: the console is an OAuth client of Gatehouse's own authorization
//! server (authorization code + PKCE S256 through the built-in login and consent page, for the
//! admin resource), so there is one login and one password store.
//!
//! The client registers itself on the first sign-in, not at start, so that `gatehouse up`
//! never waits or fails for it. Its token endpoint calls go to the authorization server's own
//! router in this process. The tokens stay on the server, in memory, behind a random session
//! id in an HttpOnly, SameSite=Lax cookie (`__Host-` and `Secure` on https issuers; the
//! loopback-http dev origin gets a plain name, as the consent page's CSRF cookie does). Every
//! page view verifies the access token again, so a revoked token or an offboarded member loses
//! the console at once.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use tower::ServiceExt as _;

use super::{Console, cookie, form_field, message};
use crate::admin::{ADMIN_SCOPE, Admin, AdminCaller};

/// Is the session cookie's name on an https origin (`__Host-`: Secure, host-only, Path=/).
const SECURE_SESSION: &str = "__Host-gatehouse-console";
/// Is the session cookie's name on the loopback-http dev origin, where browsers refuse
/// `__Host-` cookies (they require `Secure`, which needs https).
const INSECURE_SESSION: &str = "gatehouse-console";
/// Carries a sign-in's `state` from the login redirect to the callback (login CSRF).
const SECURE_LOGIN: &str = "__Host-gatehouse-console-login";
const INSECURE_LOGIN: &str = "gatehouse-console-login";
/// How long a started sign-in may take.
const LOGIN_TTL: Duration = Duration::from_secs(600);
/// How long a session lasts at most, whatever its refresh token allows.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// Bounds the sign-ins in flight and the open sessions (oldest dropped first).
const MAX_ENTRIES: usize = 10_000;
/// Bounds a token endpoint answer.
const TOKEN_BODY_LIMIT: usize = 64 * 1024;

/// The console's sign-ins and sessions.
#[derive(Debug)]
pub(super) struct Sessions {
    authz: authz_svc::AuthzState,
    /// The authorization server's endpoints, called in this process.
    oauth: Router,
    admin: Admin,
    redirect_uri: String,
    secure: bool,
    client_id: tokio::sync::OnceCell<String>,
    logins: Mutex<HashMap<String, Pending>>,
    open: Mutex<HashMap<String, Session>>,
}

/// A sign-in waiting for its callback.
#[derive(Debug)]
struct Pending {
    verifier: SecretString,
    started: Instant,
}

/// A signed-in browser: its tokens (never sent to it) and its CSRF token.
#[derive(Debug)]
struct Session {
    access: SecretString,
    refresh: Option<SecretString>,
    csrf: String,
    started: Instant,
}

/// The member behind a request, as the pages need it.
#[derive(Debug)]
pub(super) struct Viewer {
    /// The session's key (the hash of its cookie).
    key: String,
    /// The member id: the token's `sub`.
    pub(super) subject: String,
    /// Names the member on the page.
    pub(super) name: String,
    /// The administrator the member is, when in the admin group.
    pub(super) admin: Option<AdminCaller>,
    /// The session's CSRF token.
    pub(super) csrf: String,
}

/// A token endpoint answer (kept out of `Debug`: it holds tokens).
#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    refresh_token: Option<String>,
}

/// The authorization server's redirect back.
#[derive(Debug, Deserialize)]
pub(super) struct Callback {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

impl Sessions {
    /// Returns the sign-in machinery of the console at `public_url`.
    pub(super) fn new(authz: authz_svc::AuthzState, public_url: &url::Url, admin: Admin) -> Self {
        let origin = public_url.as_str().trim_end_matches('/');
        Self {
            oauth: authz_svc::oauth_router(authz.clone()),
            authz,
            admin,
            redirect_uri: format!("{origin}/console/callback"),
            secure: public_url.scheme() == "https",
            client_id: tokio::sync::OnceCell::new(),
            logins: Mutex::new(HashMap::new()),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Returns who is signed in on this request, or the redirect to the sign-in.
    pub(super) async fn viewer(&self, headers: &HeaderMap) -> Result<Viewer, Response> {
        let to_login = || see_other("/console/login");
        let Some(id) = cookie(headers, self.session_cookie()) else {
            return Err(to_login());
        };
        let key = hash(&id);
        let Some((access, refresh, csrf)) = self.with_open(|open| {
            open.get(&key)
                .filter(|session| session.started.elapsed() < SESSION_TTL)
                .map(|session| {
                    (
                        session.access.clone(),
                        session.refresh.clone(),
                        session.csrf.clone(),
                    )
                })
        }) else {
            return Err(to_login());
        };
        if let Some(viewer) = self.identify(&key, &access, &csrf).await {
            return Ok(viewer);
        }
        // The access token expired or was revoked: one refresh, else sign in again.
        if let Some(refresh) = refresh
            && let Some(viewer) = self.refresh(&key, &refresh, &csrf).await
        {
            return Ok(viewer);
        }
        self.with_open(|open| open.remove(&key));
        Err(to_login())
    }

    /// Returns the signed-in viewer posting `body`, refusing a form whose CSRF token is not
    /// this session's: every console form handler starts here.
    pub(super) async fn form_viewer(
        &self,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<Viewer, Response> {
        let viewer = self.viewer(headers).await?;
        self.check_csrf(&viewer, body)?;
        Ok(viewer)
    }

    /// Refuses a form whose CSRF token is not this session's.
    #[expect(
        clippy::result_large_err,
        reason = "the refusal is the page the handler returns at once"
    )]
    fn check_csrf(&self, viewer: &Viewer, body: &Bytes) -> Result<(), Response> {
        let sent = form_field(body, "csrf").unwrap_or_default();
        if bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            viewer.csrf.as_bytes(),
        )) {
            Ok(())
        } else {
            Err(message(
                StatusCode::FORBIDDEN,
                Some(viewer_chrome(viewer)),
                "The form expired",
                "The form was not sent by this console session. Reload the page and try again.",
            ))
        }
    }

    async fn identify(&self, key: &str, access: &SecretString, csrf: &str) -> Option<Viewer> {
        let guard = self.admin.guard();
        let claims = guard
            .verifier
            .verify(&guard.resource, access.expose_secret())
            .await
            .ok()?;
        let admin = guard.admit(Some(access.expose_secret())).await.ok();
        Some(Viewer {
            key: key.to_owned(),
            name: claims.subject.clone(),
            subject: claims.subject,
            admin,
            csrf: csrf.to_owned(),
        })
    }

    async fn refresh(&self, key: &str, refresh: &SecretString, csrf: &str) -> Option<Viewer> {
        let client_id = self.client_id.get()?;
        let answer = self
            .token(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh.expose_secret()),
                ("client_id", client_id),
            ])
            .await
            .ok()?;
        let access = SecretString::from(answer.access_token);
        let viewer = self.identify(key, &access, csrf).await?;
        self.with_open(|open| {
            if let Some(session) = open.get_mut(key) {
                session.access = access;
                session.refresh = answer.refresh_token.map(SecretString::from);
            }
        });
        Some(viewer)
    }

    /// Registers the console as a public client of the authorization server, once.
    async fn client_id(&self) -> Result<&str, String> {
        self.client_id
            .get_or_try_init(|| async {
                let registration = authz_svc::ClientRegistration {
                    redirect_uris: vec![self.redirect_uri.clone()],
                    client_name: Some("Gatehouse console".to_owned()),
                    grant_types: Some(vec![
                        "authorization_code".to_owned(),
                        "refresh_token".to_owned(),
                    ]),
                    response_types: Some(vec!["code".to_owned()]),
                    token_endpoint_auth_method: Some("none".to_owned()),
                    application_type: Some("web".to_owned()),
                };
                match self.authz.register_client(registration).await {
                    Ok(Ok(registered)) => Ok(registered.client.client_id),
                    Ok(Err(refusal)) => Err(refusal.description.to_owned()),
                    Err(error) => Err(error.to_string()),
                }
            })
            .await
            .map(String::as_str)
    }

    /// Posts `form` to the authorization server's token endpoint, in this process.
    async fn token(&self, form: &[(&str, &str)]) -> Result<TokenAnswer, String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let request = Request::post("/token")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .map_err(|error| error.to_string())?;
        let response = self
            .oauth
            .clone()
            .oneshot(request)
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), TOKEN_BODY_LIMIT)
            .await
            .map_err(|error| error.to_string())?;
        if !status.is_success() {
            let error: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
            return Err(format!(
                "the token endpoint answered {status}: {}",
                error["error"].as_str().unwrap_or("unknown error")
            ));
        }
        serde_json::from_slice(&bytes)
            .map_err(|_| "the token endpoint answer is malformed".to_owned())
    }

    fn session_cookie(&self) -> &'static str {
        if self.secure {
            SECURE_SESSION
        } else {
            INSECURE_SESSION
        }
    }

    fn login_cookie(&self) -> &'static str {
        if self.secure {
            SECURE_LOGIN
        } else {
            INSECURE_LOGIN
        }
    }

    /// Returns a `Set-Cookie` value for `name`; an empty `value` deletes the cookie.
    fn set_cookie(&self, name: &str, value: &str, max_age: Duration) -> String {
        let max_age = if value.is_empty() {
            0
        } else {
            max_age.as_secs()
        };
        format!(
            "{name}={value}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{}",
            if self.secure { "; Secure" } else { "" }
        )
    }

    fn with_open<T>(&self, change: impl FnOnce(&mut HashMap<String, Session>) -> T) -> T {
        change(&mut self.open.lock().unwrap_or_else(PoisonError::into_inner))
    }

    fn with_logins<T>(&self, change: impl FnOnce(&mut HashMap<String, Pending>) -> T) -> T {
        change(&mut self.logins.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// `GET /console/`: administrators start at Activity, other members at their accounts.
pub(super) async fn home(State(console): State<Console>, headers: HeaderMap) -> Response {
    match console.sessions().viewer(&headers).await {
        Ok(viewer) if viewer.admin.is_some() => see_other("/console/activity"),
        Ok(_) => see_other("/console/accounts"),
        Err(response) => response,
    }
}

/// `GET /console/login`: starts an authorization code + PKCE sign-in at the built-in login.
pub(super) async fn login(State(console): State<Console>) -> Response {
    let sessions = console.sessions();
    let client_id = match sessions.client_id().await {
        Ok(client_id) => client_id.to_owned(),
        Err(reason) => {
            tracing::error!(%reason, "the console could not register as an OAuth client");
            return message(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                "Sign-in unavailable",
                "The console could not register with the authorization server; see the gateway's log.",
            );
        }
    };
    let (Some(state), Some(verifier)) = (random(), random()) else {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "Sign-in unavailable",
            "internal error",
        );
    };
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    sessions.with_logins(|logins| {
        logins.retain(|_, pending| pending.started.elapsed() < LOGIN_TTL);
        evict_oldest(logins, |pending| pending.started);
        logins.insert(
            state.clone(),
            Pending {
                verifier: SecretString::from(verifier),
                started: Instant::now(),
            },
        );
    });
    let query = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("response_type", "code"),
            ("client_id", client_id.as_str()),
            ("redirect_uri", sessions.redirect_uri.as_str()),
            ("state", state.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
            ("resource", console.admin().resource()),
            ("scope", ADMIN_SCOPE),
        ])
        .finish();
    let mut response = see_other(&format!("/authorize?{query}"));
    let login_cookie = sessions.set_cookie(sessions.login_cookie(), &state, LOGIN_TTL);
    append_cookie(&mut response, &login_cookie);
    response
}

/// `GET /console/callback`: redeems the code of a sign-in this browser started.
pub(super) async fn callback(
    State(console): State<Console>,
    headers: HeaderMap,
    Query(callback): Query<Callback>,
) -> Response {
    let sessions = console.sessions();
    let failed = |text: &str| message(StatusCode::BAD_REQUEST, None, "Sign-in failed", text);
    if callback.error.is_some() {
        return failed("The sign-in was refused or cancelled. Start again from the console.");
    }
    let (Some(code), Some(state)) = (callback.code, callback.state) else {
        return failed("The sign-in answer is incomplete. Start again from the console.");
    };
    let started_here = cookie(&headers, sessions.login_cookie()).is_some_and(|sent| {
        bool::from(subtle::ConstantTimeEq::ct_eq(
            sent.as_bytes(),
            state.as_bytes(),
        ))
    });
    let pending = sessions.with_logins(|logins| logins.remove(&state));
    let (true, Some(pending)) = (started_here, pending) else {
        return failed("This sign-in was not started by this browser, or it expired. Start again.");
    };
    if pending.started.elapsed() >= LOGIN_TTL {
        return failed("The sign-in expired. Start again.");
    }
    let Some(client_id) = sessions.client_id.get() else {
        return failed("The sign-in expired. Start again.");
    };
    let answer = sessions
        .token(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &sessions.redirect_uri),
            ("client_id", client_id),
            ("code_verifier", pending.verifier.expose_secret()),
            ("resource", console.admin().resource()),
        ])
        .await;
    let answer = match answer {
        Ok(answer) => answer,
        Err(reason) => {
            tracing::warn!(%reason, "a console sign-in could not redeem its code");
            return failed("The authorization server refused the sign-in. Start again.");
        }
    };
    let (Some(id), Some(csrf)) = (random(), random()) else {
        return message(
            StatusCode::INTERNAL_SERVER_ERROR,
            None,
            "Sign-in failed",
            "internal error",
        );
    };
    sessions.with_open(|open| {
        open.retain(|_, session| session.started.elapsed() < SESSION_TTL);
        evict_oldest(open, |session| session.started);
        open.insert(
            hash(&id),
            Session {
                access: SecretString::from(answer.access_token),
                refresh: answer.refresh_token.map(SecretString::from),
                csrf,
                started: Instant::now(),
            },
        );
    });
    let mut response = see_other("/console/");
    append_cookie(
        &mut response,
        &sessions.set_cookie(sessions.session_cookie(), &id, SESSION_TTL),
    );
    append_cookie(
        &mut response,
        &sessions.set_cookie(sessions.login_cookie(), "", LOGIN_TTL),
    );
    response
}

/// `POST /console/logout`: ends the session and revokes its grant.
pub(super) async fn logout(
    State(console): State<Console>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let sessions = console.sessions();
    let viewer = match sessions.form_viewer(&headers, &body).await {
        Ok(viewer) => viewer,
        Err(response) => return response,
    };
    let ended = sessions.with_open(|open| open.remove(&viewer.key));
    if let (Some(refresh), Some(client_id)) = (
        ended.and_then(|session| session.refresh),
        sessions.client_id.get(),
    ) {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("token", refresh.expose_secret()),
                ("token_type_hint", "refresh_token"),
                ("client_id", client_id.as_str()),
            ])
            .finish();
        if let Ok(request) = Request::post("/revoke")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
        {
            let _revoked = sessions.oauth.clone().oneshot(request).await;
        }
    }
    let mut response = message(
        StatusCode::OK,
        None,
        "Signed out",
        "You are signed out of the Gatehouse console.",
    );
    append_cookie(
        &mut response,
        &sessions.set_cookie(sessions.session_cookie(), "", SESSION_TTL),
    );
    response
}

/// Returns the chrome of a page for `viewer`.
fn viewer_chrome(viewer: &Viewer) -> super::Chrome {
    viewer.chrome("")
}

/// Returns a 303 to `location`.
pub(super) fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    super::protect(response)
}

fn append_cookie(response: &mut Response, cookie: &str) {
    if let Ok(value) = HeaderValue::from_str(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// Drops the oldest entry of a full map.
fn evict_oldest<T>(map: &mut HashMap<String, T>, started: impl Fn(&T) -> Instant) {
    if map.len() < MAX_ENTRIES {
        return;
    }
    if let Some(oldest) = map
        .iter()
        .min_by_key(|(_, entry)| started(entry))
        .map(|(key, _)| key.clone())
    {
        map.remove(&oldest);
    }
}

/// Returns 32 random bytes, base64url: session ids, CSRF tokens, states, PKCE verifiers.
fn random() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(URL_SAFE_NO_PAD.encode(bytes))
}

/// Returns the key a session is kept under: its id's SHA-256, so memory holds no usable cookie.
fn hash(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(id.as_bytes()))
}
