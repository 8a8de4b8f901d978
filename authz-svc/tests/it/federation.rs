//! Federated sign-in through an upstream OpenID Connect provider, and the `jwt-bearer` grant
//! redeeming an enterprise IdP's ID-JAG. The provider is a real OIDC implementation (authlib,
//! `peers/oidc_idp.py`, run from the interop venv); the tests play the browser: login page,
//! "Sign in with" button, the provider's redirect, the callback, the code at /token. Each
//! refused sign-in is answered with an error page saying why and records no member.

use std::collections::HashMap;
use std::process::Stdio;
use std::time::Duration;

use authz_svc::AuthorizationConfig;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};
use url::Url;

use crate::harness::{
    Harness, OTHER_RESOURCE, RESOURCE, VERIFIER, oauth_error, redirect_query, test_config,
};

const IDP_CLIENT_ID: &str = "gatehouse-rp";
const IDP_CLIENT_SECRET: &str = "gatehouse-rp-secret";

/// Is the OIDC provider the tests run, and the HTTP client that drives its admin endpoints.
struct Provider {
    issuer: String,
    http: reqwest::Client,
    _child: Child,
    _secret: tempfile::NamedTempFile,
}

impl Provider {
    /// Starts the provider, or returns `None` (test skipped) without the interop venv.
    async fn start() -> Option<Self> {
        let Ok(python) = std::env::var("GATEHOUSE_INTEROP_PYTHON") else {
            eprintln!(
                "SKIPPED: GATEHOUSE_INTEROP_PYTHON is unset (run tests/interop/install.sh and source its env.sh)"
            );
            return None;
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/peers/oidc_idp.py");
        let mut child = Command::new(python)
            .args([
                script,
                "--client-id",
                IDP_CLIENT_ID,
                "--client-secret",
                IDP_CLIENT_SECRET,
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let issuer = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the OIDC provider printed no URL within 60 s")
            .unwrap()
            .expect("the OIDC provider exited before printing its URL");
        let mut secret = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut secret, IDP_CLIENT_SECRET.as_bytes()).unwrap();
        Some(Self {
            issuer,
            http: reqwest::Client::new(),
            _child: child,
            _secret: secret,
        })
    }

    /// Returns the gatehouse configuration trusting this provider as `corp`.
    fn config(&self) -> AuthorizationConfig {
        let provider = serde_json::from_value(json!({
            "name": "corp",
            "display_name": "Corp SSO",
            "issuer": self.issuer,
            "client_id": IDP_CLIENT_ID,
            "client_secret_file": self._secret.path(),
            "scopes": ["openid", "groups"],
            "groups_claim": "groups",
            "group_mapping": {"idp-finance": ["finance"], "idp-admins": ["admins", "staff"]},
        }))
        .unwrap();
        let idp = serde_json::from_value(json!({
            "issuer": self.issuer,
            "jwks_uri": format!("{}/jwks", self.issuer),
        }))
        .unwrap();
        AuthorizationConfig {
            auto_approve_consent: false,
            identity_providers: vec![provider],
            enterprise_idps: vec![idp],
            ..test_config()
        }
    }

    /// Sets who signs in next, and how the provider's ID token misbehaves.
    async fn next_login(&self, sub: &str, groups: &[&str], tamper: Option<&str>) {
        let response = self
            .http
            .post(format!("{}/admin/login", self.issuer))
            .json(&json!({"sub": sub, "groups": groups, "tamper": tamper}))
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success());
    }

    /// Returns an ID-JAG the provider signs: defaults, then `claims` and `header` on top.
    async fn id_jag(&self, claims: Value, header: Value) -> String {
        let response: Value = self
            .http
            .post(format!("{}/admin/id-jag", self.issuer))
            .json(&json!({"claims": claims, "header": header}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        response["assertion"].as_str().unwrap().to_owned()
    }
}

/// Plays a browser: keeps cookies per host and never follows redirects by itself.
#[derive(Default)]
struct Browser {
    http: reqwest::Client,
    cookies: HashMap<String, HashMap<String, String>>,
}

impl Browser {
    fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookies: HashMap::new(),
        }
    }

    fn jar(url: &str) -> String {
        Url::parse(url).unwrap().authority().to_owned()
    }

    fn remember(&mut self, url: &str, response: &reqwest::Response) {
        let jar = self.cookies.entry(Self::jar(url)).or_default();
        for value in response.headers().get_all(SET_COOKIE) {
            let pair = value.to_str().unwrap().split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            jar.insert(name.to_owned(), value.to_owned());
        }
    }

    fn cookie_header(&self, url: &str) -> String {
        self.cookies
            .get(&Self::jar(url))
            .map(|jar| {
                jar.iter()
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    }

    async fn get(&mut self, url: &str) -> reqwest::Response {
        let response = self
            .http
            .get(url)
            .header(COOKIE, self.cookie_header(url))
            .send()
            .await
            .unwrap();
        self.remember(url, &response);
        response
    }

    async fn post_form(&mut self, url: &str, form: &[(String, String)]) -> reqwest::Response {
        let response = self
            .http
            .post(url)
            .header(COOKIE, self.cookie_header(url))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        self.remember(url, &response);
        response
    }
}

fn location(response: &reqwest::Response) -> String {
    assert_eq!(response.status(), 303, "expected a redirect");
    response.headers()[LOCATION].to_str().unwrap().to_owned()
}

/// Returns the hidden fields of the login and consent page's form.
fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|tag| {
            let attribute = |name: &str| {
                let start = tag.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let end = start + tag[start..].find('"').unwrap();
                tag[start..end]
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
            };
            (attribute("name"), attribute("value"))
        })
        .collect()
}

/// Signs in through the provider up to its redirect back; returns the callback URL.
async fn to_callback(harness: &Harness, browser: &mut Browser, client_id: &str) -> String {
    let page = browser
        .get(&harness.url(&format!(
            "/authorize?{}",
            serde_urlencoded::to_string(harness.authorize_params(client_id)).unwrap()
        )))
        .await;
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("name=\"idp\" value=\"corp\"") && html.contains("Sign in with Corp SSO"),
        "the login page offers the provider: {html}"
    );
    let mut form = hidden_fields(&html);
    form.push(("idp".to_owned(), "corp".to_owned()));
    let started = browser.post_form(&harness.url("/authorize"), &form).await;
    let at_provider = location(&started);
    let request: HashMap<String, String> = Url::parse(&at_provider)
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(request["code_challenge_method"], "S256", "{at_provider}");
    assert!(request.contains_key("nonce") && request.contains_key("state"));
    assert_eq!(request["redirect_uri"], harness.url("/federation/callback"));
    let back = browser.get(&at_provider).await;
    assert_eq!(back.status(), 302, "the provider redirects back");
    back.headers()[LOCATION].to_str().unwrap().to_owned()
}

fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn a_member_signs_in_through_the_upstream_provider_with_mapped_groups() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let harness = Harness::with_config(provider.config()).await;
    let client_id = harness.public_client().await;
    provider
        .next_login(
            "alice",
            &["idp-finance", "idp-admins", "idp-unmapped"],
            None,
        )
        .await;
    let mut browser = Browser::new();
    let callback = to_callback(&harness, &mut browser, &client_id).await;
    let approved = browser.get(&callback).await;
    let query = redirect_query(&approved);
    assert_eq!(query["state"], "xyz-state");
    assert_eq!(query["iss"], harness.base);
    let response = harness.redeem(&client_id, &query["code"], VERIFIER).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let token = claims(body["access_token"].as_str().unwrap());
    let member = harness
        .state
        .federated_member(&provider.issuer, "alice")
        .await
        .unwrap()
        .expect("the member is recorded by (iss, sub)");
    assert_eq!(token["sub"], member.member_id.as_str());
    assert_eq!(token["aud"], RESOURCE);
    assert_eq!(token["groups"], json!(["admins", "finance", "staff"]));
    assert_eq!(member.groups, ["admins", "finance", "staff"]);
    // A refreshed token carries the groups the sign-in mapped.
    let refreshed = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", body["refresh_token"].as_str().unwrap()),
                ("client_id", &client_id),
            ],
            None,
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    let refreshed: Value = refreshed.json().await.unwrap();
    let token = claims(refreshed["access_token"].as_str().unwrap());
    assert_eq!(token["groups"], json!(["admins", "finance", "staff"]));
    // The same (iss, sub) signing in again is the same member, with its new groups.
    provider.next_login("alice", &["idp-finance"], None).await;
    let mut again = Browser::new();
    let callback = to_callback(&harness, &mut again, &client_id).await;
    redirect_query(&again.get(&callback).await);
    assert_eq!(harness.state.federated_member_count().await.unwrap(), 1);
    let member = harness
        .state
        .federated_member(&provider.issuer, "alice")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(member.groups, ["finance"]);
}

/// Runs a sign-in whose ID token misbehaves as `tamper` says and checks it is refused with
/// `message` and records no member.
async fn refused_sign_in(tamper: &str, message: &str) {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let harness = Harness::with_config(provider.config()).await;
    let client_id = harness.public_client().await;
    provider
        .next_login("mallory", &["idp-admins"], Some(tamper))
        .await;
    let mut browser = Browser::new();
    let callback = to_callback(&harness, &mut browser, &client_id).await;
    let refused = browser.get(&callback).await;
    assert_eq!(refused.status(), 400, "{tamper}: refused");
    assert!(
        refused.headers().get(LOCATION).is_none(),
        "{tamper}: no code"
    );
    let page = refused.text().await.unwrap();
    assert!(
        page.contains(message),
        "{tamper}: expected {message:?} in {page}"
    );
    assert_eq!(
        harness.state.federated_member_count().await.unwrap(),
        0,
        "{tamper}"
    );
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_refused() {
    refused_sign_in("nonce", "its nonce does not match the sign-in").await;
}

#[tokio::test]
async fn an_id_token_from_another_issuer_is_refused() {
    refused_sign_in("iss", "the token&#x27;s iss is not the expected issuer").await;
}

#[tokio::test]
async fn an_id_token_for_another_audience_is_refused() {
    refused_sign_in("aud", "the token&#x27;s aud does not name this server").await;
}

#[tokio::test]
async fn an_id_token_authorized_for_another_party_is_refused() {
    refused_sign_in("azp", "it was issued to another party (azp)").await;
}

#[tokio::test]
async fn an_unsigned_id_token_is_refused() {
    refused_sign_in("alg-none", "signature algorithm none is not accepted").await;
}

#[tokio::test]
async fn a_replayed_state_is_refused() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let harness = Harness::with_config(provider.config()).await;
    let client_id = harness.public_client().await;
    provider.next_login("alice", &[], None).await;
    let mut browser = Browser::new();
    let callback = to_callback(&harness, &mut browser, &client_id).await;
    redirect_query(&browser.get(&callback).await);
    let replayed = browser.get(&callback).await;
    assert_eq!(replayed.status(), 400);
    let page = replayed.text().await.unwrap();
    assert!(page.contains("already used sign-in state"), "{page}");
    // A callback in another browser (the state stolen, the binding cookie not) is refused too.
    let mut victim = Browser::new();
    let callback = to_callback(&harness, &mut victim, &client_id).await;
    let stolen = Browser::new().get(&callback).await;
    assert_eq!(stolen.status(), 400);
    let page = stolen.text().await.unwrap();
    assert!(page.contains("started in another browser"), "{page}");
    assert_eq!(harness.state.federated_member_count().await.unwrap(), 1);
}

/// Registers a confidential client that may redeem ID-JAGs; returns (id, secret).
async fn assertion_client(harness: &Harness) -> (String, String) {
    let client = harness
        .register(json!({
            "client_name": "Enterprise app",
            "token_endpoint_auth_method": "client_secret_basic",
            "grant_types": ["urn:ietf:params:oauth:grant-type:jwt-bearer"],
        }))
        .await;
    (
        client["client_id"].as_str().unwrap().to_owned(),
        client["client_secret"].as_str().unwrap().to_owned(),
    )
}

async fn redeem_id_jag(
    harness: &Harness,
    client: &(String, String),
    assertion: &str,
) -> reqwest::Response {
    harness
        .post_form(
            "/token",
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion),
            ],
            Some((&client.0, &client.1)),
        )
        .await
}

#[tokio::test]
async fn an_id_jag_is_redeemed_once_for_its_member_and_resource() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let harness = Harness::with_config(provider.config()).await;
    let client = assertion_client(&harness).await;
    let metadata: Value = harness
        .http
        .get(harness.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        metadata["grant_types_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("urn:ietf:params:oauth:grant-type:jwt-bearer"))
    );
    let assertion = provider
        .id_jag(
            json!({
                "sub": "bob",
                "aud": harness.base,
                "client_id": client.0,
                "resource": OTHER_RESOURCE,
                "scope": "tools",
            }),
            json!({}),
        )
        .await;
    let response = redeem_id_jag(&harness, &client, &assertion).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    let token = claims(body["access_token"].as_str().unwrap());
    assert_eq!(token["aud"], OTHER_RESOURCE);
    assert_eq!(token["client_id"], client.0.as_str());
    assert_eq!(token["scope"], "tools");
    assert!(
        token["sub"].as_str().unwrap().starts_with("fed-"),
        "{token}"
    );
    let introspected: Value = harness
        .post_form(
            "/introspect",
            &[("token", body["access_token"].as_str().unwrap())],
            Some((&client.0, &client.1)),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(introspected["active"], true, "{introspected}");
    // The same ID-JAG again: its jti is spent.
    let replayed = redeem_id_jag(&harness, &client, &assertion).await;
    let body = oauth_error(replayed, 400, "invalid_grant").await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("redeemed before"),
        "{body}"
    );
}

#[tokio::test]
async fn id_jags_that_are_not_for_us_are_refused_with_invalid_grant() {
    let Some(provider) = Provider::start().await else {
        return;
    };
    let harness = Harness::with_config(provider.config()).await;
    let client = assertion_client(&harness).await;
    let good = json!({
        "sub": "bob",
        "aud": harness.base,
        "client_id": client.0,
        "resource": RESOURCE,
    });
    let with = |field: &str, value: Value| {
        let mut claims = good.clone();
        claims[field] = value;
        claims
    };
    let cases = [
        (
            "wrong aud",
            with("aud", json!("https://elsewhere.example")),
            json!({}),
            "aud does not name this server",
        ),
        (
            "wrong typ",
            good.clone(),
            json!({"typ": "JWT"}),
            "typ must be oauth-id-jag+jwt",
        ),
        (
            "untrusted issuer",
            with("iss", json!("https://rogue.example")),
            json!({}),
            "not a trusted enterprise IdP",
        ),
        (
            "another client",
            with("client_id", json!("someone-else")),
            json!({}),
            "issued to another client",
        ),
        (
            "expired",
            with("exp", json!(1_000_000_000)),
            json!({}),
            "expired",
        ),
        (
            "long-lived",
            with("exp", json!(9_999_999_999_i64)),
            json!({}),
            "longer than five minutes",
        ),
    ];
    for (case, claims, header, message) in cases {
        let assertion = provider.id_jag(claims, header).await;
        let response = redeem_id_jag(&harness, &client, &assertion).await;
        let body = oauth_error(response, 400, "invalid_grant").await;
        let description = body["error_description"].as_str().unwrap();
        assert!(description.contains(message), "{case}: {description}");
    }
    // An unsigned ID-JAG (alg none) is refused before any key is looked at.
    let signed = provider.id_jag(good.clone(), json!({})).await;
    let payload = signed.split('.').nth(1).unwrap();
    let unsigned = format!(
        "{}.{payload}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"oauth-id-jag+jwt"}"#)
    );
    let body = oauth_error(
        redeem_id_jag(&harness, &client, &unsigned).await,
        400,
        "invalid_grant",
    )
    .await;
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("algorithm none"),
        "{body}"
    );
    // A resource we do not serve is the wrong target.
    let elsewhere = provider
        .id_jag(
            with("resource", json!("https://elsewhere.example/mcp")),
            json!({}),
        )
        .await;
    oauth_error(
        redeem_id_jag(&harness, &client, &elsewhere).await,
        400,
        "invalid_target",
    )
    .await;
    // A client that did not register for the grant may not use it.
    let (other, secret) = harness.confidential_client("client_secret_basic").await;
    let assertion = provider
        .id_jag(with("client_id", json!(other)), json!({}))
        .await;
    oauth_error(
        redeem_id_jag(&harness, &(other, secret), &assertion).await,
        400,
        "unauthorized_client",
    )
    .await;
}
