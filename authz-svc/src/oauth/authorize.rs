//! `GET/POST /authorize`: authorization code with PKCE S256, exact redirect URIs,
//! RFC 8707 resources, RFC 9207 `iss` on every redirect, login and consent.

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use url::Url;

use super::Params;
use super::consent::{self, Page};
use super::session;
use crate::client::{AUTHORIZATION_CODE, redirect_uri_registered};
use crate::grant::{CODE_TTL_SECS, hash_token, is_pkce_value, scopes_within};
use crate::keys::random_token;
use crate::member::TEST_MEMBER;
use crate::state::AuthzState;
use crate::store::{ClientRecord, CodeRecord, ConsentRecord};
use crate::token::now;

/// Holds a validated authorization request.
#[derive(Debug, Clone)]
pub(crate) struct AuthorizeRequest {
    pub(super) client: ClientRecord,
    pub(super) redirect_uri: String,
    pub(super) state: Option<String>,
    pub(super) code_challenge: String,
    pub(super) resource: String,
    // The virtual server the resource URL names: whose scope descriptions consent shows.
    pub(super) resource_name: String,
    pub(super) scope: String,
}

/// Says how a refused authorization request is answered.
#[derive(Debug)]
pub(super) enum Refusal {
    /// The client or redirect URI cannot be trusted: show the error, never redirect.
    Show(StatusCode, &'static str),
    /// Redirect the error to the client (with `state` and `iss`).
    Redirect {
        redirect_uri: String,
        state: Option<String>,
        error: &'static str,
        description: &'static str,
    },
}

/// Serves the login and consent page, or approves at once: in the test profile, or when the
/// member's session shows an earlier approval of this client covering every requested scope.
pub(super) async fn show(
    State(state): State<AuthzState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(_) => return show_error(StatusCode::BAD_REQUEST, "malformed authorization request"),
    };
    let request = match validate(&state, &params).await {
        Ok(request) => request,
        Err(refusal) => return refuse(&state, refusal),
    };
    if state.config.auto_approve_consent {
        return approve(&state, &request, TEST_MEMBER).await;
    }
    if let Some(member) = remembered(&state, &headers, &params, &request).await {
        tracing::info!(client_id = %request.client.client_id, "consent remembered");
        return approve(&state, &request, &member).await;
    }
    consent::render(&state, &request, Page::Fresh)
}

/// Returns the member of the request's session when that member already approved this client
/// at this resource for every requested scope, and neither `prompt=consent` nor
/// `prompt=login` asks to be asked again.
async fn remembered(
    state: &AuthzState,
    headers: &HeaderMap,
    params: &Params,
    request: &AuthorizeRequest,
) -> Option<String> {
    let prompt = params.get("prompt").unwrap_or_default();
    if prompt
        .split_whitespace()
        .any(|value| matches!(value, "consent" | "login" | "select_account"))
    {
        return None;
    }
    let member = session::member(state, headers)?;
    if state.directory.is_inactive(&member) {
        return None;
    }
    let consent = state
        .store
        .consent(&member, &request.client.client_id, &request.resource)
        .await
        .map_err(|error| {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "consent lookup failed"
            );
        })
        .ok()??;
    scopes_within(&request.scope, &consent.scope).then_some(member)
}

/// Remembers that `subject` approved `request` (adding its scopes to what the member approved
/// for the client before), then approves it and starts the member's session.
pub(super) async fn approve_remembering(
    state: &AuthzState,
    request: &AuthorizeRequest,
    subject: &str,
) -> Response {
    if let Err(error) = remember(state, request, subject).await {
        // The approval stands; the member is only asked again next time.
        tracing::error!(
            error = &error as &dyn std::error::Error,
            "consent could not be remembered"
        );
    }
    let mut response = approve(state, request, subject).await;
    if response.headers().contains_key(header::LOCATION)
        && let Some(cookie) = session::start(state, subject)
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

async fn remember(
    state: &AuthzState,
    request: &AuthorizeRequest,
    subject: &str,
) -> Result<(), crate::Error> {
    let client_id = &request.client.client_id;
    let earlier = state
        .store
        .consent(subject, client_id, &request.resource)
        .await?;
    let mut scopes: Vec<&str> = earlier
        .as_ref()
        .map(|consent| consent.scope.split_whitespace().collect())
        .unwrap_or_default();
    for scope in request.scope.split_whitespace() {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let consent = ConsentRecord {
        subject: subject.to_owned(),
        client_id: client_id.clone(),
        resource: request.resource.clone(),
        scope: scopes.join(" "),
        granted_at: now(),
    };
    state.store.record_consent(&consent).await
}

/// Takes the login and consent form: checks CSRF, the member's password and the decision.
pub(super) async fn decide(
    State(state): State<AuthzState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match Params::parse(&body) {
        Ok(params) => params,
        Err(_) => return show_error(StatusCode::BAD_REQUEST, "malformed authorization form"),
    };
    let request = match validate(&state, &params).await {
        Ok(request) => request,
        Err(refusal) => return refuse(&state, refusal),
    };
    if !consent::csrf_valid(&state, &headers, &params, &request.client.client_id) {
        return show_error(
            StatusCode::FORBIDDEN,
            "the form expired or was not sent by this page; start again",
        );
    }
    // "Sign in with X": consent given, the member authenticates at provider X.
    if let Some(provider) = params.get("idp") {
        return super::federation::start(&state, request, provider).await;
    }
    if params.get("decision") != Some("approve") {
        return refuse(
            &state,
            Refusal::Redirect {
                redirect_uri: request.redirect_uri,
                state: request.state,
                error: "access_denied",
                description: "the member denied the request",
            },
        );
    }
    let username = params.get("username").unwrap_or_default();
    let password = params.get("password").unwrap_or_default();
    if let Some(member) = state.members.login(username, password).await {
        return approve_remembering(&state, &request, &member.username).await;
    }
    // A provisioned member signs in with its provisioned password; its id is the token's `sub`.
    match state.directory_login(username, password).await {
        Ok(Some(user)) => approve_remembering(&state, &request, &user.id).await,
        Ok(None) => consent::render(&state, &request, Page::LoginFailed),
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "directory login failed"
            );
            show_error(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
        }
    }
}

/// Returns the validated request, or how to refuse it.
pub(super) async fn validate(
    state: &AuthzState,
    params: &Params,
) -> Result<AuthorizeRequest, Refusal> {
    let bad_client = Refusal::Show(
        StatusCode::BAD_REQUEST,
        "unknown client or unregistered redirect URI",
    );
    let client_id = params.get("client_id").ok_or(Refusal::Show(
        StatusCode::BAD_REQUEST,
        "client_id is required",
    ))?;
    let client = match state.client(client_id).await {
        Ok(Ok(client)) => client,
        Ok(Err(refusal)) if refusal.error == "invalid_client" => return Err(bad_client),
        // A metadata document that cannot be used: say why, without redirecting anywhere.
        Ok(Err(refusal)) => {
            return Err(Refusal::Show(StatusCode::BAD_REQUEST, refusal.description));
        }
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "client lookup failed"
            );
            return Err(Refusal::Show(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal error",
            ));
        }
    };
    let redirect_uri = match params.get("redirect_uri") {
        Some(uri) if redirect_uri_registered(&client, uri) => uri.to_owned(),
        None if client.redirect_uris.len() == 1 => client.redirect_uris[0].clone(),
        _ => return Err(bad_client),
    };
    let state_param = params.get("state").map(str::to_owned);
    let redirect = |error, description| Refusal::Redirect {
        redirect_uri: redirect_uri.clone(),
        state: state_param.clone(),
        error,
        description,
    };
    if params.get("response_type") != Some("code") {
        return Err(redirect(
            "unsupported_response_type",
            "only the code response type is supported",
        ));
    }
    if !client.allows_grant(AUTHORIZATION_CODE) {
        return Err(redirect(
            "unauthorized_client",
            "the client may not use the authorization code grant",
        ));
    }
    let challenge = params
        .get("code_challenge")
        .ok_or_else(|| redirect("invalid_request", "code_challenge is required (PKCE)"))?;
    if params.get("code_challenge_method") != Some("S256") {
        return Err(redirect(
            "invalid_request",
            "code_challenge_method must be S256",
        ));
    }
    if !is_pkce_value(challenge) {
        return Err(redirect("invalid_request", "code_challenge is malformed"));
    }
    let resource = match params.get("resource") {
        Some(url) => state.issuer.resource(url),
        None => state.issuer.sole(),
    }
    .ok_or_else(|| {
        redirect(
            "invalid_target",
            "resource is not a protected resource of this server",
        )
    })?;
    let scope = state
        .issuer
        .scope_for(&resource, params.get("scope"))
        .ok_or_else(|| {
            redirect(
                "invalid_scope",
                "a requested scope is not offered by the resource",
            )
        })?;
    Ok(AuthorizeRequest {
        client,
        redirect_uri,
        state: state_param,
        code_challenge: challenge.to_owned(),
        resource: resource.url.clone(),
        resource_name: resource.name.clone(),
        scope,
    })
}

/// Issues a code for `subject` and redirects it to the client.
pub(super) async fn approve(
    state: &AuthzState,
    request: &AuthorizeRequest,
    subject: &str,
) -> Response {
    let issued = issue_code(state, request, subject).await;
    let code = match issued {
        Ok(code) => code,
        Err(error) => {
            tracing::error!(
                error = &error as &dyn std::error::Error,
                "code issuance failed"
            );
            return refuse(
                state,
                Refusal::Redirect {
                    redirect_uri: request.redirect_uri.clone(),
                    state: request.state.clone(),
                    error: "server_error",
                    description: "internal error",
                },
            );
        }
    };
    tracing::info!(client_id = %request.client.client_id, subject, resource = %request.resource, "authorization approved");
    redirect_to(
        &request.redirect_uri,
        &[("code", &code)],
        request.state.as_deref(),
        state.issuer(),
    )
}

async fn issue_code(
    state: &AuthzState,
    request: &AuthorizeRequest,
    subject: &str,
) -> Result<String, crate::Error> {
    let code = random_token()?;
    let record = CodeRecord {
        code_hash: hash_token(&code),
        client_id: request.client.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        code_challenge: request.code_challenge.clone(),
        resource: request.resource.clone(),
        scope: request.scope.clone(),
        subject: subject.to_owned(),
        family_id: random_token()?,
        expires_at: now() + CODE_TTL_SECS,
        used: false,
    };
    state.store.insert_code(&record).await?;
    Ok(code)
}

fn refuse(state: &AuthzState, refusal: Refusal) -> Response {
    match refusal {
        Refusal::Show(status, message) => show_error(status, message),
        Refusal::Redirect {
            redirect_uri,
            state: client_state,
            error,
            description,
        } => redirect_to(
            &redirect_uri,
            &[("error", error), ("error_description", description)],
            client_state.as_deref(),
            state.issuer(),
        ),
    }
}

/// Returns a 303 to `redirect_uri` with `pairs`, `state` and `iss` appended to its query.
fn redirect_to(
    redirect_uri: &str,
    pairs: &[(&str, &str)],
    state: Option<&str>,
    issuer: &str,
) -> Response {
    let Ok(mut url) = Url::parse(redirect_uri) else {
        return show_error(StatusCode::BAD_REQUEST, "unregistered redirect URI");
    };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in pairs {
            query.append_pair(name, value);
        }
        if let Some(state) = state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    let Ok(location) = HeaderValue::from_str(url.as_str()) else {
        return show_error(StatusCode::BAD_REQUEST, "unregistered redirect URI");
    };
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(header::LOCATION, location);
    consent::protect(response.headers_mut());
    response
}

fn show_error(status: StatusCode, message: &'static str) -> Response {
    consent::error_page(status, message)
}
