use serde_json::Value;

use crate::harness::{Harness, RESOURCE, VERIFIER, oauth_error};

async fn agent_token(harness: &Harness, id: &str, secret: &str) -> String {
    let response = harness
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
            Some((id, secret)),
        )
        .await;
    let body: Value = response.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn introspect(harness: &Harness, token: &str, id: &str, secret: &str) -> Value {
    let response = harness
        .post_form("/introspect", &[("token", token)], Some((id, secret)))
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn introspection_reports_own_tokens_and_nothing_about_others() {
    let harness = Harness::start().await;
    let (id, secret) = harness.confidential_client("client_secret_basic").await;
    let (other, other_secret) = harness.confidential_client("client_secret_basic").await;
    let token = agent_token(&harness, &id, &secret).await;
    let answer = introspect(&harness, &token, &id, &secret).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["aud"], RESOURCE);
    assert_eq!(answer["client_id"], id.as_str());
    let foreign = introspect(&harness, &token, &other, &other_secret).await;
    assert_eq!(foreign, serde_json::json!({ "active": false }));
    let garbage = introspect(&harness, "garbage", &id, &secret).await;
    assert_eq!(garbage, serde_json::json!({ "active": false }));
}

#[tokio::test]
async fn introspection_and_revocation_need_client_authentication() {
    let harness = Harness::start().await;
    let (id, secret) = harness.confidential_client("client_secret_basic").await;
    let token = agent_token(&harness, &id, &secret).await;
    let anonymous = harness
        .post_form("/introspect", &[("token", &token)], None)
        .await;
    oauth_error(anonymous, 400, "invalid_request").await;
    let public = harness.public_client().await;
    let as_public = harness
        .post_form(
            "/introspect",
            &[("token", &token), ("client_id", &public)],
            None,
        )
        .await;
    oauth_error(as_public, 401, "invalid_client").await;
    let bad = harness
        .post_form("/revoke", &[("token", &token)], Some((&id, "wrong")))
        .await;
    oauth_error(bad, 401, "invalid_client").await;
    assert_eq!(
        introspect(&harness, &token, &id, &secret).await["active"],
        true,
        "a refused revocation changed nothing"
    );
}

#[tokio::test]
async fn revoking_an_access_token_deactivates_it_and_unknown_tokens_get_200() {
    let harness = Harness::start().await;
    let (id, secret) = harness.confidential_client("client_secret_basic").await;
    let token = agent_token(&harness, &id, &secret).await;
    let response = harness
        .post_form("/revoke", &[("token", &token)], Some((&id, &secret)))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        introspect(&harness, &token, &id, &secret).await["active"],
        false
    );
    let unknown = harness
        .post_form(
            "/revoke",
            &[("token", "unknown-token")],
            Some((&id, &secret)),
        )
        .await;
    assert_eq!(unknown.status(), 200);
}

#[tokio::test]
async fn revoking_a_refresh_token_revokes_its_grant() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    let code = harness.code_for(&client).await;
    let body: Value = harness
        .redeem(&client, &code, VERIFIER)
        .await
        .json()
        .await
        .unwrap();
    let refresh = body["refresh_token"].as_str().unwrap();
    let access = body["access_token"].as_str().unwrap();
    // Another client's revocation request is accepted (200) but changes nothing.
    let other = harness.public_client().await;
    let foreign = harness
        .post_form(
            "/revoke",
            &[("token", refresh), ("client_id", &other)],
            None,
        )
        .await;
    assert_eq!(foreign.status(), 200);
    assert!(
        harness
            .state
            .verify_access_token(access)
            .await
            .unwrap()
            .is_some()
    );
    let own = harness
        .post_form(
            "/revoke",
            &[
                ("token", refresh),
                ("client_id", &client),
                ("token_type_hint", "refresh_token"),
            ],
            None,
        )
        .await;
    assert_eq!(own.status(), 200);
    assert!(
        harness
            .state
            .verify_access_token(access)
            .await
            .unwrap()
            .is_none()
    );
    let reuse = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh),
                ("client_id", &client),
            ],
            None,
        )
        .await;
    oauth_error(reuse, 400, "invalid_grant").await;
}
