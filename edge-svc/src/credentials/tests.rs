use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::*;

fn secret(value: &str) -> Secret {
    Secret::from(value.to_owned())
}

fn header(rendered: &HashMap<http::HeaderName, http::HeaderValue>, name: &'static str) -> String {
    rendered[&http::HeaderName::from_static(name)]
        .to_str()
        .unwrap()
        .to_owned()
}

#[test]
fn a_secret_never_prints_its_value() {
    let material = Material::Bearer(secret("canary-token-123"));
    assert!(!format!("{material:?}").contains("canary"));
    let link = ConsentLink {
        url: "https://idp/authorize?state=canary".into(),
        reconnect: false,
    };
    assert!(!format!("{link:?}").contains("canary"));
}

#[test]
fn a_bearer_token_goes_into_authorization_by_default() {
    let rendered = Injection::new("crm", BTreeMap::new())
        .render(&Material::Bearer(secret("t0k")))
        .unwrap();
    assert_eq!(header(&rendered, "authorization"), "Bearer t0k");
    assert!(rendered[&http::header::AUTHORIZATION].is_sensitive());
}

#[test]
fn templates_place_the_secret_where_the_connector_wants_it() {
    let templates = BTreeMap::from([("X-Api-Key".to_owned(), "{key}".to_owned())]);
    let rendered = Injection::new("crm", templates)
        .render(&Material::ApiKey {
            header: "ignored".into(),
            key: secret("k3y"),
        })
        .unwrap();
    assert_eq!(header(&rendered, "x-api-key"), "k3y");
    assert_eq!(rendered.len(), 1);
}

#[test]
fn basic_auth_is_encoded_by_default() {
    let rendered = Injection::new("crm", BTreeMap::new())
        .render(&Material::Basic {
            username: "svc".into(),
            password: secret("pw"),
        })
        .unwrap();
    assert_eq!(header(&rendered, "authorization"), "Basic c3ZjOnB3");
}

#[test]
fn environment_material_does_not_fit_an_http_connector() {
    let error = Injection::new("crm", BTreeMap::new())
        .render(&Material::Environment(BTreeMap::from([(
            "TOKEN".to_owned(),
            secret("canary"),
        )])))
        .unwrap_err();
    assert!(!error.to_string().contains("canary"));
    assert!(error.to_string().contains("crm"));
}

#[test]
fn material_close_to_expiry_is_not_handed_out() {
    let now = SystemTime::now();
    let released = |expires_in: u64| Released {
        credential_id: "c".into(),
        version: 1,
        material: Material::Bearer(secret("t")),
        expires_at: Some(now + Duration::from_secs(expires_in)),
    };
    assert!(released(60).is_fresh(now));
    assert!(!released(2).is_fresh(now));
}

#[test]
fn the_consent_link_stays_out_of_the_error_message() {
    let link = ConsentLink {
        url: "https://idp.example/authorize?state=s1".into(),
        reconnect: false,
    };
    let error = link.elicitation("crm");
    assert_eq!(error.code, CONSENT_REQUIRED);
    assert!(!error.message.contains("https://"));
    let data = error.data.unwrap();
    assert_eq!(data["elicitations"][0]["mode"], "url");
    assert_eq!(data["elicitations"][0]["url"], link.url);
    let result = link.tool_error("crm");
    assert_eq!(result.is_error, Some(true));
    assert!(consent::is_consent_answer(&result));
    assert!(serde_json::to_string(&result).unwrap().contains(&link.url));
}
