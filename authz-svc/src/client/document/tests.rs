use serde_json::{Value, json};

use super::*;

const ID: &str = "https://app.example.com/oauth/client.json";

fn policy() -> RegistrationPolicy {
    RegistrationPolicy {
        allow_insecure_http: false,
        allow_client_credentials: true,
    }
}

fn document() -> Value {
    json!({
        "client_id": ID,
        "client_name": "Example app",
        "redirect_uris": ["http://127.0.0.1/callback"],
        "application_type": "native",
        "grant_types": ["authorization_code", "refresh_token"],
    })
}

fn refusal(document: &Value) -> &'static str {
    let body = serde_json::to_vec(document).unwrap();
    client_from(ID, &body, policy(), 0).unwrap_err().description
}

#[test]
fn a_valid_document_is_a_public_client_under_its_url() {
    let body = serde_json::to_vec(&document()).unwrap();
    let client = client_from(ID, &body, policy(), 7).unwrap();
    assert_eq!(client.client_id, ID);
    assert_eq!(client.client_name, "Example app");
    assert_eq!(client.auth_method, "none");
    assert!(!client.is_confidential());
    assert!(client.allows_grant(crate::client::AUTHORIZATION_CODE));
    assert_eq!(client.redirect_uris, ["http://127.0.0.1/callback"]);
}

#[test]
fn every_missing_or_forbidden_field_is_refused() {
    let mut other_id = document();
    other_id["client_id"] = json!("https://app.example.com/oauth/other.json");
    assert_eq!(
        refusal(&other_id),
        "the document's client_id is not its URL"
    );

    let mut secret = document();
    secret["client_secret"] = json!("s3cret");
    assert!(refusal(&secret).contains("must not carry a client secret"));

    let mut nameless = document();
    nameless.as_object_mut().unwrap().remove("client_name");
    assert_eq!(refusal(&nameless), "client_name is required");

    let mut no_redirects = document();
    no_redirects["redirect_uris"] = json!([]);
    assert_eq!(refusal(&no_redirects), "redirect_uris is required");

    let mut basic = document();
    basic["token_endpoint_auth_method"] = json!("client_secret_basic");
    assert!(refusal(&basic).contains("token_endpoint_auth_method none"));

    let mut agent = document();
    agent["grant_types"] = json!(["client_credentials"]);
    assert!(!refusal(&agent).is_empty());

    let mut web_http = document();
    web_http["application_type"] = json!("web");
    assert_eq!(
        client_from(ID, &serde_json::to_vec(&web_http).unwrap(), policy(), 0)
            .unwrap_err()
            .error,
        "invalid_redirect_uri"
    );

    let not_json = client_from(ID, b"<html>", policy(), 0).unwrap_err();
    assert_eq!(not_json.error, "invalid_client_metadata");
}

#[test]
fn only_canonical_https_urls_with_a_path_are_document_urls() {
    let documents = ClientDocuments::new(&ClientDocumentsConfig::default()).unwrap();
    assert!(documents.document_url(ID).is_ok());
    for bad in [
        "http://app.example.com/client.json",
        "https://app.example.com",
        "https://app.example.com/",
        "https://app.example.com/a/../client.json",
        "https://app.example.com/client.json#x",
        "https://user:pw@app.example.com/client.json",
        "https://APP.example.com/client.json",
    ] {
        assert!(documents.document_url(bad).is_err(), "{bad}");
    }
}
