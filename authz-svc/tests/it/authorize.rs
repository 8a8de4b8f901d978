use authz_svc::AuthorizationConfig;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use crate::harness::{
    Harness, MEMBER_PASSWORD, RESOURCE, VERIFIER, member, redirect_query, test_config,
};

fn replace(params: &mut Vec<(&'static str, String)>, name: &'static str, value: Option<&str>) {
    params.retain(|(key, _)| *key != name);
    if let Some(value) = value {
        params.push((name, value.to_owned()));
    }
}

#[tokio::test]
async fn auto_approved_authorization_redirects_code_state_and_iss() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    let response = harness.authorize(&harness.authorize_params(&client)).await;
    assert_eq!(response.headers()["x-frame-options"], "DENY");
    let query = redirect_query(&response);
    assert!(!query["code"].is_empty());
    assert_eq!(query["state"], "xyz-state");
    assert_eq!(query["iss"], harness.base);
    assert!(!query.contains_key("error"));
}

#[tokio::test]
async fn absent_state_is_not_invented() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    let mut params = harness.authorize_params(&client);
    replace(&mut params, "state", None);
    let query = redirect_query(&harness.authorize(&params).await);
    assert!(query.contains_key("code"));
    assert!(!query.contains_key("state"));
    assert_eq!(query["iss"], harness.base);
}

async fn redirected_error(harness: &Harness, name: &'static str, value: Option<&str>, error: &str) {
    let client = harness.public_client().await;
    let mut params = harness.authorize_params(&client);
    replace(&mut params, name, value);
    let query = redirect_query(&harness.authorize(&params).await);
    assert_eq!(
        query.get("error").map(String::as_str),
        Some(error),
        "{name}={value:?}: {query:?}"
    );
    assert_eq!(
        query["state"], "xyz-state",
        "state must be echoed on errors"
    );
    assert_eq!(query["iss"], harness.base, "iss must be on errors too");
    assert!(!query.contains_key("code"));
}

#[tokio::test]
async fn pkce_is_required_and_s256_only() {
    let harness = Harness::start().await;
    redirected_error(&harness, "code_challenge", None, "invalid_request").await;
    redirected_error(
        &harness,
        "code_challenge_method",
        Some("plain"),
        "invalid_request",
    )
    .await;
    redirected_error(&harness, "code_challenge_method", None, "invalid_request").await;
    redirected_error(
        &harness,
        "code_challenge",
        Some("too-short"),
        "invalid_request",
    )
    .await;
}

#[tokio::test]
async fn unknown_resource_is_invalid_target() {
    let harness = Harness::start().await;
    redirected_error(
        &harness,
        "resource",
        Some("https://evil.example/mcp"),
        "invalid_target",
    )
    .await;
}

#[tokio::test]
async fn scope_beyond_the_resource_is_invalid_scope() {
    let harness = Harness::start().await;
    redirected_error(&harness, "scope", Some("tools root"), "invalid_scope").await;
}

#[tokio::test]
async fn other_response_types_are_refused() {
    let harness = Harness::start().await;
    redirected_error(
        &harness,
        "response_type",
        Some("token"),
        "unsupported_response_type",
    )
    .await;
}

#[tokio::test]
async fn unregistered_redirect_uri_is_shown_never_redirected() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    for bad in [
        "http://127.0.0.1:4242/callback/extra",
        "https://evil.example/callback",
        "http://127.0.0.1:4242/callback?x=1",
    ] {
        let mut params = harness.authorize_params(&client);
        replace(&mut params, "redirect_uri", Some(bad));
        let response = harness.authorize(&params).await;
        assert_eq!(response.status(), 400, "{bad}");
        assert!(response.headers().get(LOCATION).is_none());
    }
    // RFC 8252 §7.3: a loopback redirect may use another port.
    let mut params = harness.authorize_params(&client);
    replace(
        &mut params,
        "redirect_uri",
        Some("http://127.0.0.1:5151/callback"),
    );
    let response = harness.authorize(&params).await;
    assert!(
        response.headers()[LOCATION]
            .to_str()
            .unwrap()
            .starts_with("http://127.0.0.1:5151/callback?code=")
    );
}

#[tokio::test]
async fn unknown_client_is_shown_never_redirected() {
    let harness = Harness::start().await;
    let response = harness
        .authorize(&harness.authorize_params("no-such-client"))
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get(LOCATION).is_none());
}

pub(crate) async fn login_harness() -> Harness {
    Harness::with_config(AuthorizationConfig {
        auto_approve_consent: false,
        members: vec![member("alice", MEMBER_PASSWORD)],
        ..test_config()
    })
    .await
}

/// Opens the consent page; returns (cookie, csrf token).
pub(crate) async fn consent_page(harness: &Harness, client: &str) -> (String, String) {
    let response = harness.authorize(&harness.authorize_params(client)).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        headers["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'")
    );
    let cookie = headers[SET_COOKIE].to_str().unwrap().to_owned();
    // The loopback-http dev opt-out cannot use `__Host-` (it needs Secure, hence https).
    assert!(cookie.starts_with("gatehouse-csrf="), "{cookie}");
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"));
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Test App") && html.contains("127.0.0.1") && html.contains("<li>tools</li>"),
        "{html}"
    );
    let csrf = html
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_owned();
    (cookie.split(';').next().unwrap().to_owned(), csrf)
}

pub(crate) async fn submit(
    harness: &Harness,
    client: &str,
    cookie: Option<&str>,
    csrf: &str,
    password: &str,
    decision: &str,
) -> reqwest::Response {
    let mut form = harness.authorize_params(client);
    form.extend([
        ("csrf", csrf.to_owned()),
        ("username", "alice".to_owned()),
        ("password", password.to_owned()),
        ("decision", decision.to_owned()),
    ]);
    let mut request = harness
        .http
        .post(harness.url("/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(serde_urlencoded::to_string(&form).unwrap());
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn member_login_and_consent_issue_a_code() {
    let harness = login_harness().await;
    let client = harness.public_client().await;
    let (cookie, csrf) = consent_page(&harness, &client).await;
    let response = submit(
        &harness,
        &client,
        Some(&cookie),
        &csrf,
        MEMBER_PASSWORD,
        "approve",
    )
    .await;
    let query = redirect_query(&response);
    let token = harness.redeem(&client, &query["code"], VERIFIER).await;
    assert_eq!(token.status(), 200);
    let body: serde_json::Value = token.json().await.unwrap();
    let claims = harness
        .state
        .verify_access_token(body["access_token"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.aud, RESOURCE);
    assert_eq!(
        claims.groups,
        vec!["staff".to_owned()],
        "the member's groups travel in the token for group policies"
    );
}

#[tokio::test]
async fn wrong_password_missing_csrf_and_denial_issue_nothing() {
    let harness = login_harness().await;
    let client = harness.public_client().await;
    let (cookie, csrf) = consent_page(&harness, &client).await;
    let wrong = submit(
        &harness,
        &client,
        Some(&cookie),
        &csrf,
        "wrong password",
        "approve",
    )
    .await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(LOCATION).is_none());
    let no_cookie = submit(&harness, &client, None, &csrf, MEMBER_PASSWORD, "approve").await;
    assert_eq!(no_cookie.status(), 403);
    let forged = submit(
        &harness,
        &client,
        Some(&cookie),
        "forged",
        MEMBER_PASSWORD,
        "approve",
    )
    .await;
    assert_eq!(forged.status(), 403);
    // The CSRF token is bound to the client: another client's form is refused.
    let other = harness.public_client().await;
    let cross = submit(
        &harness,
        &other,
        Some(&cookie),
        &csrf,
        MEMBER_PASSWORD,
        "approve",
    )
    .await;
    assert_eq!(cross.status(), 403);
    let denied = redirect_query(
        &submit(
            &harness,
            &client,
            Some(&cookie),
            &csrf,
            MEMBER_PASSWORD,
            "deny",
        )
        .await,
    );
    assert_eq!(denied["error"], "access_denied");
    assert_eq!(denied["iss"], harness.base);
    assert!(!denied.contains_key("code"));
}

/// Runs `/authorize` with `scope` (and `prompt`), presenting `cookie`.
async fn authorize_with(
    harness: &Harness,
    client: &str,
    scope: &str,
    prompt: Option<&str>,
    cookie: Option<&str>,
) -> reqwest::Response {
    let mut params = harness.authorize_params(client);
    replace(&mut params, "scope", Some(scope));
    replace(&mut params, "prompt", prompt);
    let query = serde_urlencoded::to_string(&params).unwrap();
    let mut request = harness
        .http
        .get(harness.url(&format!("/authorize?{query}")));
    if let Some(cookie) = cookie {
        request = request.header(COOKIE, cookie);
    }
    request.send().await.unwrap()
}

/// Signs in as alice on the consent page for `scope` and approves; returns the code and the
/// session cookie the approval started.
async fn approve_scope(harness: &Harness, client: &str, scope: &str) -> (String, String) {
    let page = authorize_with(harness, client, scope, None, None).await;
    assert_eq!(page.status(), 200);
    let csrf_cookie = page.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let html = page.text().await.unwrap();
    let csrf = html.split("name=\"csrf\" value=\"").nth(1).unwrap();
    let csrf = csrf.split('"').next().unwrap();
    let mut form = harness.authorize_params(client);
    replace(&mut form, "scope", Some(scope));
    form.extend([
        ("csrf", csrf.to_owned()),
        ("username", "alice".to_owned()),
        ("password", MEMBER_PASSWORD.to_owned()),
        ("decision", "approve".to_owned()),
    ]);
    let response = harness
        .http
        .post(harness.url("/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(COOKIE, csrf_cookie.split(';').next().unwrap())
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
        .unwrap();
    let session = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|value| value.to_str().unwrap())
        .find(|value| value.starts_with("gatehouse-session="))
        .expect("approval starts a session")
        .to_owned();
    assert!(
        session.contains("HttpOnly") && session.contains("SameSite=Lax"),
        "{session}"
    );
    assert!(!session.contains(MEMBER_PASSWORD));
    let code = redirect_query(&response)["code"].clone();
    (code, session.split(';').next().unwrap().to_owned())
}

#[tokio::test]
async fn remembered_consent_skips_the_page_for_no_more_scopes_until_revoked() {
    let harness = login_harness().await;
    let client = harness.public_client().await;
    let (_, session) = approve_scope(&harness, &client, "tools").await;

    // The same client, the same scope, the member's session: no page, a code at once.
    let again = authorize_with(&harness, &client, "tools", None, Some(&session)).await;
    let query = redirect_query(&again);
    assert_eq!(query["state"], "xyz-state");
    assert_eq!(query["iss"], harness.base);
    let token = harness.redeem(&client, &query["code"], VERIFIER).await;
    assert_eq!(token.status(), 200);
    let body: serde_json::Value = token.json().await.unwrap();
    let claims = harness
        .state
        .verify_access_token(body["access_token"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (claims.sub.as_str(), claims.scope.as_str()),
        ("alice", "tools")
    );

    // A wider scope, another client, no session, a forged session, or prompt=consent: asked again.
    let other = harness.public_client().await;
    let forged = session.replacen("gatehouse-session=", "gatehouse-session=Ym9i", 1);
    let cases = [
        (
            "wider scope",
            client.as_str(),
            "tools admin",
            None,
            Some(session.as_str()),
        ),
        (
            "other client",
            other.as_str(),
            "tools",
            None,
            Some(session.as_str()),
        ),
        ("no session", client.as_str(), "tools", None, None),
        (
            "forged session",
            client.as_str(),
            "tools",
            None,
            Some(forged.as_str()),
        ),
        (
            "prompt=consent",
            client.as_str(),
            "tools",
            Some("consent"),
            Some(session.as_str()),
        ),
    ];
    for (case, client, scope, prompt, cookie) in cases {
        let response = authorize_with(&harness, client, scope, prompt, cookie).await;
        assert_eq!(response.status(), 200, "{case}: the consent page is shown");
        assert!(response.headers().get(LOCATION).is_none(), "{case}");
    }

    // Approving the wider set remembers both approvals: a subset of the union needs no page.
    let (code, session) = approve_scope(&harness, &client, "admin").await;
    let subset = authorize_with(&harness, &client, "admin tools", None, Some(&session)).await;
    assert!(redirect_query(&subset).contains_key("code"));

    // Revoking the grant (its refresh token) withdraws the consent.
    let token = harness.redeem(&client, &code, VERIFIER).await;
    let body: serde_json::Value = token.json().await.unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    let revoked = harness
        .post_form(
            "/revoke",
            &[("token", refresh), ("client_id", &client)],
            None,
        )
        .await;
    assert_eq!(revoked.status(), 200);
    let after = authorize_with(&harness, &client, "tools", None, Some(&session)).await;
    assert_eq!(
        after.status(),
        200,
        "asked again after the grant was revoked"
    );
}
