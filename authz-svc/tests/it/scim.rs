//! SCIM 2.0 over HTTP: authentication, Users and Groups with filters, pagination, ETags and
//! PATCH, discovery, and the effects on tokens of a provisioned member.

use std::sync::{Arc, Mutex};

use authz_svc::AuthorizationConfig;
use reqwest::header::{COOKIE, ETAG, IF_MATCH, LOCATION};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::authorize::consent_page;
use crate::harness::{Harness, VERIFIER, redirect_query, test_config};

const TOKEN: &str = "scim-token-0123456789abcdef0123456789abcdef";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

fn scim_config() -> AuthorizationConfig {
    AuthorizationConfig {
        auto_approve_consent: false,
        scim: serde_json::from_value(json!({"bearer_token": TOKEN})).unwrap(),
        ..test_config()
    }
}

async fn harness() -> Harness {
    Harness::with_config(scim_config()).await
}

async fn scim(
    harness: &Harness,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    scim_with(harness, method, path, body, &[]).await
}

async fn scim_with(
    harness: &Harness,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = harness
        .http
        .request(method, harness.url(&format!("/scim/v2{path}")))
        .bearer_auth(TOKEN);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request
            .header("content-type", "application/scim+json")
            .body(body.to_string());
    }
    request.send().await.unwrap()
}

async fn expect(response: reqwest::Response, status: StatusCode) -> Value {
    let actual = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "{text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

async fn scim_error(response: reqwest::Response, status: StatusCode, scim_type: Option<&str>) {
    let body = expect(response, status).await;
    assert_eq!(body["schemas"], json!([ERROR]));
    assert_eq!(body["status"], status.as_u16().to_string());
    assert_eq!(body["scimType"].as_str(), scim_type, "{body}");
}

async fn create_user(harness: &Harness, body: Value) -> Value {
    expect(
        scim(harness, Method::POST, "/Users", Some(body)).await,
        StatusCode::CREATED,
    )
    .await
}

fn patch(operations: Value) -> Option<Value> {
    Some(json!({"schemas": [PATCH], "Operations": operations}))
}

#[tokio::test]
async fn every_endpoint_needs_the_identity_providers_token() {
    let harness = harness().await;
    for token in [None, Some("wrong-token-0123456789abcdef0123456789")] {
        let mut request = harness.http.get(harness.url("/scim/v2/Users"));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        scim_error(response, StatusCode::UNAUTHORIZED, None).await;
    }
    let closed = Harness::start().await;
    let response = closed
        .http
        .get(closed.url("/scim/v2/ServiceProviderConfig"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    scim_error(response, StatusCode::UNAUTHORIZED, None).await;
}

#[tokio::test]
async fn users_are_created_found_by_filter_and_paged() {
    let harness = harness().await;
    for (name, external) in [
        ("Alice@Example.com", "ext-a"),
        ("bob@example.com", "ext-b"),
        ("carol@example.com", "ext-c"),
    ] {
        let created = scim(&harness, Method::POST, "/Users", Some(json!({
            "schemas": [USER], "userName": name, "externalId": external, "password": "s3cret-pass",
            "name": {"givenName": name}, "emails": [{"value": name, "primary": true}],
        }))).await;
        assert!(
            created.headers()[LOCATION]
                .to_str()
                .unwrap()
                .contains("/scim/v2/Users/")
        );
        let body = expect(created, StatusCode::CREATED).await;
        assert_eq!(body["active"], true);
        assert_eq!(body["name"]["givenName"], name);
        assert!(
            body.get("password").is_none(),
            "password is write-only: {body}"
        );
        assert_eq!(body["meta"]["resourceType"], "User");
    }
    scim_error(
        scim(
            &harness,
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER], "userName": "ALICE@example.com"})),
        )
        .await,
        StatusCode::CONFLICT,
        Some("uniqueness"),
    )
    .await;
    scim_error(
        scim(
            &harness,
            Method::POST,
            "/Users",
            Some(json!({"schemas": [USER]})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
    )
    .await;
    let found = expect(
        scim(
            &harness,
            Method::GET,
            "/Users?filter=userName%20eq%20%22alice%40example.com%22",
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["userName"], "Alice@Example.com");
    let found = expect(
        scim(
            &harness,
            Method::GET,
            "/Users?filter=externalId%20eq%20%22ext-b%22",
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(found["Resources"][0]["userName"], "bob@example.com");
    for filter in [
        "userName%20co%20%22a%22",
        "userName%20eq",
        "title%20eq%20%22x%22",
    ] {
        scim_error(
            scim(
                &harness,
                Method::GET,
                &format!("/Users?filter={filter}"),
                None,
            )
            .await,
            StatusCode::BAD_REQUEST,
            Some("invalidFilter"),
        )
        .await;
    }
    let page = expect(
        scim(&harness, Method::GET, "/Users?startIndex=2&count=1", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        page["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(
        (
            page["totalResults"].as_u64(),
            page["startIndex"].as_u64(),
            page["itemsPerPage"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(page["Resources"][0]["userName"], "bob@example.com");
    scim_error(
        scim(&harness, Method::GET, "/Users/nope", None).await,
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
}

#[tokio::test]
async fn if_match_with_a_stale_etag_is_412_and_changes_nothing() {
    let harness = harness().await;
    let created = create_user(&harness, json!({"schemas": [USER], "userName": "dave"})).await;
    let id = created["id"].as_str().unwrap();
    let path = format!("/Users/{id}");
    let shown = scim(&harness, Method::GET, &path, None).await;
    let etag = shown.headers()[ETAG].to_str().unwrap().to_owned();
    assert_eq!(etag, created["meta"]["version"].as_str().unwrap());
    let replaced = scim_with(
        &harness,
        Method::PUT,
        &path,
        Some(json!({"schemas": [USER], "userName": "dave", "displayName": "Dave"})),
        &[(IF_MATCH.as_str(), &etag)],
    )
    .await;
    let new_etag = replaced.headers()[ETAG].to_str().unwrap().to_owned();
    assert_ne!(new_etag, etag);
    expect(replaced, StatusCode::OK).await;
    let stale = scim_with(
        &harness,
        Method::PATCH,
        &path,
        patch(json!([{"op": "replace", "path": "displayName", "value": "Stale"}])),
        &[(IF_MATCH.as_str(), &etag)],
    )
    .await;
    scim_error(stale, StatusCode::PRECONDITION_FAILED, None).await;
    let stale_delete = scim_with(
        &harness,
        Method::DELETE,
        &path,
        None,
        &[(IF_MATCH.as_str(), &etag)],
    )
    .await;
    scim_error(stale_delete, StatusCode::PRECONDITION_FAILED, None).await;
    let current = expect(
        scim(&harness, Method::GET, &path, None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(current["displayName"], "Dave");
}

#[tokio::test]
async fn patch_changes_attributes_active_and_group_members() {
    let harness = harness().await;
    let alice = create_user(
        &harness,
        json!({"schemas": [USER], "userName": "alice", "name": {"givenName": "A"}}),
    )
    .await;
    let bob = create_user(&harness, json!({"schemas": [USER], "userName": "bob"})).await;
    let (alice, bob) = (alice["id"].as_str().unwrap(), bob["id"].as_str().unwrap());
    let patched = expect(
        scim(
            &harness,
            Method::PATCH,
            &format!("/Users/{alice}"),
            patch(json!([
                {"op": "Replace", "path": "name.givenName", "value": "Alice"},
                {"op": "add", "value": {"displayName": "Alice A", "title": "Engineer"}},
                {"op": "replace", "path": "active", "value": "False"},
            ])),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            patched["name"]["givenName"].as_str(),
            patched["displayName"].as_str(),
            patched["title"].as_str(),
            patched["active"].as_bool()
        ),
        (
            Some("Alice"),
            Some("Alice A"),
            Some("Engineer"),
            Some(false)
        )
    );
    let group = expect(
        scim(
            &harness,
            Method::POST,
            "/Groups",
            Some(json!({
                "schemas": [GROUP], "displayName": "eng", "members": [{"value": alice}],
            })),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let path = format!("/Groups/{}", group["id"].as_str().unwrap());
    let added = expect(
        scim(
            &harness,
            Method::PATCH,
            &path,
            patch(json!([{"op": "add", "path": "members", "value": [{"value": bob}]}])),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(added["members"].as_array().unwrap().len(), 2);
    let removed = expect(
        scim(
            &harness,
            Method::PATCH,
            &path,
            patch(json!([{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}])),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(removed["members"][0]["value"], bob);
    assert_eq!(removed["members"].as_array().unwrap().len(), 1);
    scim_error(
        scim(
            &harness,
            Method::PATCH,
            &path,
            patch(json!([{"op": "add", "path": "members", "value": [{"value": "ghost"}]}])),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("invalidValue"),
    )
    .await;
    scim_error(
        scim(
            &harness,
            Method::PATCH,
            &path,
            Some(json!({"Operations": []})),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("invalidSyntax"),
    )
    .await;
    scim_error(
        scim(
            &harness,
            Method::PATCH,
            &path,
            patch(json!([{"op": "move", "path": "members"}])),
        )
        .await,
        StatusCode::BAD_REQUEST,
        Some("invalidSyntax"),
    )
    .await;
    let by_name = expect(
        scim(
            &harness,
            Method::GET,
            "/Groups?filter=displayName%20eq%20%22ENG%22",
            None,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(by_name["totalResults"], 1);
    let bob_view = expect(
        scim(&harness, Method::GET, &format!("/Users/{bob}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(bob_view["groups"][0]["display"], "eng");
    expect(
        scim(&harness, Method::DELETE, &path, None).await,
        StatusCode::NO_CONTENT,
    )
    .await;
    scim_error(
        scim(&harness, Method::GET, &path, None).await,
        StatusCode::NOT_FOUND,
        None,
    )
    .await;
}

#[tokio::test]
async fn discovery_describes_what_is_supported() {
    let harness = harness().await;
    let config = expect(
        scim(&harness, Method::GET, "/ServiceProviderConfig", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (
            config["patch"]["supported"].as_bool(),
            config["etag"]["supported"].as_bool(),
            config["bulk"]["supported"].as_bool()
        ),
        (Some(true), Some(true), Some(false))
    );
    let types = expect(
        scim(&harness, Method::GET, "/ResourceTypes", None).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(types["totalResults"], 2);
    let user = expect(
        scim(&harness, Method::GET, &format!("/Schemas/{USER}"), None).await,
        StatusCode::OK,
    )
    .await;
    assert!(
        user["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|attribute| attribute["name"] == "userName")
    );
}

#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<String>>);

impl authz_svc::RevocationListener for Recorded {
    fn token_revoked(&self, _jti: &str, _expires_at: i64) {}

    fn grant_revoked(&self, _grant_id: &str) {}

    fn agent_revoked(&self, _client_id: &str, _expires_at: i64) {}

    fn member_revoked(&self, member_id: &str, revoked_at: i64, expires_at: i64) {
        assert!(expires_at > revoked_at);
        self.0.lock().unwrap().push(member_id.to_owned());
    }
}

#[derive(Debug, Default)]
struct Purged(Mutex<Vec<String>>);

#[async_trait::async_trait]
impl authz_svc::CredentialPurge for Purged {
    async fn purge_member(&self, member_id: &str) -> Result<(), String> {
        self.0.lock().unwrap().push(member_id.to_owned());
        Ok(())
    }
}

/// Logs in as `user_name` through the login form as `client`; returns the token response.
async fn login(
    harness: &Harness,
    client: &str,
    user_name: &str,
    password: &str,
) -> reqwest::Response {
    let (cookie, csrf) = consent_page(harness, client).await;
    let mut form = harness.authorize_params(client);
    form.extend([
        ("csrf", csrf),
        ("username", user_name.to_owned()),
        ("password", password.to_owned()),
        ("decision", "approve".to_owned()),
    ]);
    let response = harness
        .http
        .post(harness.url("/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header(COOKIE, cookie)
        .body(serde_urlencoded::to_string(&form).unwrap())
        .send()
        .await
        .unwrap();
    if !response.status().is_redirection() {
        return response;
    }
    let query = redirect_query(&response);
    harness.redeem(client, &query["code"], VERIFIER).await
}

#[tokio::test]
async fn a_provisioned_member_logs_in_and_deactivation_revokes_everything() {
    let recorded = Arc::new(Recorded::default());
    let purged = Arc::new(Purged::default());
    let (listener, purge) = (recorded.clone(), purged.clone());
    let harness = Harness::with_state(scim_config(), move |state| {
        state
            .with_revocation_listener(listener)
            .with_credential_purge(purge)
    })
    .await;
    let client = harness.public_client().await;
    let user = create_user(
        &harness,
        json!({"schemas": [USER], "userName": "erin", "password": "erin-password-1"}),
    )
    .await;
    let id = user["id"].as_str().unwrap().to_owned();
    expect(
        scim(
            &harness,
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "eng", "members": [{"value": id}]})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;

    assert!(
        !login(&harness, &client, "erin", "wrong")
            .await
            .status()
            .is_success()
    );
    let token: Value = expect(
        login(&harness, &client, "ERIN", "erin-password-1").await,
        StatusCode::OK,
    )
    .await;
    let access = token["access_token"].as_str().unwrap();
    let claims = harness
        .state
        .verify_access_token(access)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claims.sub, id, "the member id is the SCIM id");
    assert_eq!(claims.groups, ["eng"]);
    assert_eq!(
        harness.state.directory_view().groups(&id),
        Some(vec!["eng".to_owned()])
    );

    expect(
        scim(
            &harness,
            Method::PATCH,
            &format!("/Users/{id}"),
            patch(json!([{"op": "replace", "value": {"active": false}}])),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        harness.state.verify_access_token(access).await.unwrap(),
        None
    );
    assert_eq!(*recorded.0.lock().unwrap(), std::slice::from_ref(&id));
    assert_eq!(*purged.0.lock().unwrap(), std::slice::from_ref(&id));
    let refreshed = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", &client),
                ("refresh_token", token["refresh_token"].as_str().unwrap()),
            ],
            None,
        )
        .await;
    assert_eq!(
        refreshed.status(),
        StatusCode::BAD_REQUEST,
        "the member's grants are revoked"
    );
    assert!(
        !login(&harness, &client, "erin", "erin-password-1")
            .await
            .status()
            .is_success(),
        "an inactive member cannot log in"
    );
}

#[tokio::test]
async fn every_provisioning_change_is_audited_without_the_password() {
    let audit = Arc::new(crate::harness::AuditCapture::default());
    let sink = audit.clone();
    let harness = Harness::with_state(scim_config(), move |state| state.with_audit(sink)).await;
    let user = create_user(
        &harness,
        json!({"schemas": [USER], "userName": "frank", "password": "frank-password-1"}),
    )
    .await;
    let id = user["id"].as_str().unwrap().to_owned();
    let group: Value = expect(
        scim(
            &harness,
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "ops", "members": [{"value": id}]})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let group_id = group["id"].as_str().unwrap().to_owned();
    for op in [json!({"displayName": "Frank"}), json!({"active": false})] {
        let body = patch(json!([{"op": "replace", "value": op}]));
        let path = format!("/Users/{id}");
        expect(
            scim(&harness, Method::PATCH, &path, body).await,
            StatusCode::OK,
        )
        .await;
    }
    let deleted = scim(&harness, Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    let events = audit.0.lock().unwrap().clone();
    let changes: Vec<(String, String, String)> = events
        .iter()
        .filter_map(|event| match &event.details {
            Some(proto::audit::v1::audit_event::Details::Admin(admin)) => Some((
                admin.object_type.clone(),
                admin.object_id.clone(),
                admin.action.clone(),
            )),
            _ => None,
        })
        .collect();
    let member = |action: &str| ("member".to_owned(), id.clone(), action.to_owned());
    assert_eq!(
        changes,
        [
            member("create"),
            ("group".to_owned(), group_id, "create".to_owned()),
            member("update"),
            member("deactivate"),
            member("delete"),
        ]
    );
    assert!(!format!("{events:?}").contains("frank-password-1"));
}
