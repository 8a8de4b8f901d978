use authz_svc::AuthorizationConfig;
use serde_json::{Value, json};

use crate::harness::{Harness, test_config};

async fn refused(harness: &Harness, metadata: Value, error: &str) {
    let response = harness
        .http
        .post(harness.url("/register"))
        .json(&metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400, "{metadata}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], error, "{metadata}: {body}");
}

#[tokio::test]
async fn registration_returns_metadata_and_a_256_bit_secret_once() {
    let harness = Harness::start().await;
    let client = harness
        .register(json!({ "redirect_uris": ["https://app.example/cb"], "client_name": "App" }))
        .await;
    assert_eq!(client["token_endpoint_auth_method"], "client_secret_basic");
    assert_eq!(client["application_type"], "web");
    assert_eq!(client["grant_types"], json!(["authorization_code"]));
    assert_eq!(client["client_secret_expires_at"], 0);
    // 32 random bytes, base64url without padding.
    assert_eq!(client["client_secret"].as_str().unwrap().len(), 43);
    let public = harness
        .register(json!({ "redirect_uris": ["https://app.example/cb"], "token_endpoint_auth_method": "none" }))
        .await;
    assert!(public.get("client_secret").is_none());
}

#[tokio::test]
async fn redirect_uris_must_be_https_or_loopback_for_native_clients() {
    let harness = Harness::with_config(AuthorizationConfig {
        allow_insecure_http: false,
        ..test_config()
    })
    .await;
    refused(
        &harness,
        json!({ "redirect_uris": ["http://app.example/cb"] }),
        "invalid_redirect_uri",
    )
    .await;
    refused(
        &harness,
        json!({ "redirect_uris": ["http://127.0.0.1:3000/cb"], "application_type": "web" }),
        "invalid_redirect_uri",
    )
    .await;
    refused(
        &harness,
        json!({ "redirect_uris": ["https://app.example/cb#frag"] }),
        "invalid_redirect_uri",
    )
    .await;
    refused(
        &harness,
        json!({ "redirect_uris": ["not a url"] }),
        "invalid_redirect_uri",
    )
    .await;
    refused(
        &harness,
        json!({ "redirect_uris": [] }),
        "invalid_redirect_uri",
    )
    .await;
    harness
        .register(json!({ "redirect_uris": ["http://127.0.0.1:3000/cb"], "application_type": "native", "token_endpoint_auth_method": "none" }))
        .await;
    harness
        .register(json!({ "redirect_uris": ["com.example.app:/cb"], "application_type": "native", "token_endpoint_auth_method": "none" }))
        .await;
}

#[tokio::test]
async fn unsupported_metadata_is_refused() {
    let harness = Harness::start().await;
    let uris = json!(["https://app.example/cb"]);
    refused(
        &harness,
        json!({ "redirect_uris": uris, "token_endpoint_auth_method": "private_key_jwt" }),
        "invalid_client_metadata",
    )
    .await;
    refused(
        &harness,
        json!({ "redirect_uris": uris, "grant_types": ["implicit"] }),
        "invalid_client_metadata",
    )
    .await;
    refused(
        &harness,
        json!({ "redirect_uris": uris, "grant_types": ["password"] }),
        "invalid_client_metadata",
    )
    .await;
    refused(
        &harness,
        json!({ "redirect_uris": uris, "response_types": ["token"] }),
        "invalid_client_metadata",
    )
    .await;
    refused(
        &harness,
        json!({ "redirect_uris": uris, "application_type": "desktop" }),
        "invalid_client_metadata",
    )
    .await;
    refused(
        &harness,
        json!({ "grant_types": ["client_credentials"], "token_endpoint_auth_method": "none" }),
        "invalid_client_metadata",
    )
    .await;
    let response = harness
        .http
        .post(harness.url("/register"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn client_credentials_registration_is_closed_by_default() {
    let harness = Harness::with_config(AuthorizationConfig {
        allow_registered_agents: false,
        ..test_config()
    })
    .await;
    refused(
        &harness,
        json!({ "grant_types": ["client_credentials"], "token_endpoint_auth_method": "client_secret_basic" }),
        "invalid_client_metadata",
    )
    .await;
}
