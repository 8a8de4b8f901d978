use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use crate::harness::{Harness, OTHER_RESOURCE, RESOURCE, VERIFIER, oauth_error};

async fn tokens(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    response.json().await.unwrap()
}

#[tokio::test]
async fn code_redeems_for_an_rfc9068_token_that_verifies_against_the_jwks() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    let code = harness.code_for(&client).await;
    let body = tokens(harness.redeem(&client, &code, VERIFIER).await).await;
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "tools");
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|token| token.len() >= 43)
    );
    let token = body["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert_eq!(header.alg, Algorithm::ES256);
    let jwks: JwkSet = harness
        .http
        .get(harness.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = jwks.find(header.kid.as_deref().unwrap()).unwrap();
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_audience(&[RESOURCE]);
    validation.set_issuer(&[harness.base.as_str()]);
    let claims: Value =
        jsonwebtoken::decode(token, &DecodingKey::from_jwk(jwk).unwrap(), &validation)
            .unwrap()
            .claims;
    assert_eq!(claims["client_id"], client.as_str());
    assert_eq!(claims["sub"], "test");
    assert_eq!(claims["scope"], "tools");
    assert!(claims["jti"].is_string());
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 600);
}

#[tokio::test]
async fn wrong_or_missing_verifier_is_refused_and_spends_nothing() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    let code = harness.code_for(&client).await;
    let wrong = harness
        .redeem(
            &client,
            &code,
            "wrong-verifier-wrong-verifier-wrong-verifier-00",
        )
        .await;
    oauth_error(wrong, 400, "invalid_grant").await;
    let missing = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("client_id", &client),
            ],
            None,
        )
        .await;
    oauth_error(missing, 400, "invalid_request").await;
    // Nothing changed: the right verifier still redeems the code.
    tokens(harness.redeem(&client, &code, VERIFIER).await).await;
}

#[tokio::test]
async fn code_bound_to_client_redirect_and_resource() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    let other = harness.public_client().await;
    let code = harness.code_for(&client).await;
    oauth_error(
        harness.redeem(&other, &code, VERIFIER).await,
        400,
        "invalid_grant",
    )
    .await;
    let moved = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("client_id", &client),
                ("redirect_uri", "http://127.0.0.1:4242/other"),
            ],
            None,
        )
        .await;
    oauth_error(moved, 400, "invalid_grant").await;
    let retargeted = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("code_verifier", VERIFIER),
                ("client_id", &client),
                ("resource", OTHER_RESOURCE),
            ],
            None,
        )
        .await;
    oauth_error(retargeted, 400, "invalid_target").await;
    tokens(harness.redeem(&client, &code, VERIFIER).await).await;
}

#[tokio::test]
async fn second_code_redemption_revokes_what_the_first_issued() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    let code = harness.code_for(&client).await;
    let first = tokens(harness.redeem(&client, &code, VERIFIER).await).await;
    oauth_error(
        harness.redeem(&client, &code, VERIFIER).await,
        400,
        "invalid_grant",
    )
    .await;
    let access = first["access_token"].as_str().unwrap();
    assert!(
        harness
            .state
            .verify_access_token(access)
            .await
            .unwrap()
            .is_none(),
        "access token outlived the replay"
    );
    let refresh = first["refresh_token"].as_str().unwrap();
    let refreshed = harness
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
    oauth_error(refreshed, 400, "invalid_grant").await;
}

async fn refresh(harness: &Harness, client: &str, token: &str) -> reqwest::Response {
    harness
        .post_form(
            "/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", token),
                ("client_id", client),
            ],
            None,
        )
        .await
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_family() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    let code = harness.code_for(&client).await;
    let first = tokens(harness.redeem(&client, &code, VERIFIER).await).await;
    let old = first["refresh_token"].as_str().unwrap().to_owned();
    let second = tokens(refresh(&harness, &client, &old).await).await;
    let new = second["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(old, new);
    let new_access = second["access_token"].as_str().unwrap().to_owned();
    assert!(
        harness
            .state
            .verify_access_token(&new_access)
            .await
            .unwrap()
            .is_some()
    );
    // The old token again: reuse. The whole family dies, including the new token.
    oauth_error(refresh(&harness, &client, &old).await, 400, "invalid_grant").await;
    oauth_error(refresh(&harness, &client, &new).await, 400, "invalid_grant").await;
    assert!(
        harness
            .state
            .verify_access_token(&new_access)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn refresh_by_another_client_is_refused_and_spends_nothing() {
    let harness = Harness::start().await;
    let client = harness.public_client().await;
    let other = harness.public_client().await;
    let code = harness.code_for(&client).await;
    let first = tokens(harness.redeem(&client, &code, VERIFIER).await).await;
    let token = first["refresh_token"].as_str().unwrap();
    oauth_error(refresh(&harness, &other, token).await, 400, "invalid_grant").await;
    tokens(refresh(&harness, &client, token).await).await;
}

#[tokio::test]
async fn client_credentials_with_basic_and_post() {
    let harness = Harness::start().await;
    let (basic_id, basic_secret) = harness.confidential_client("client_secret_basic").await;
    let response = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", RESOURCE),
                ("scope", "tools"),
            ],
            Some((&basic_id, &basic_secret)),
        )
        .await;
    let body = tokens(response).await;
    assert!(body.get("refresh_token").is_none());
    let claims = harness
        .state
        .verify_access_token(body["access_token"].as_str().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claims.sub, basic_id);
    assert_eq!(claims.aud, RESOURCE);
    let (post_id, post_secret) = harness.confidential_client("client_secret_post").await;
    let response = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", OTHER_RESOURCE),
                ("client_id", &post_id),
                ("client_secret", &post_secret),
            ],
            None,
        )
        .await;
    tokens(response).await;
}

#[tokio::test]
async fn bad_client_secret_is_invalid_client_with_a_basic_challenge() {
    let harness = Harness::start().await;
    let (id, _) = harness.confidential_client("client_secret_basic").await;
    let response = harness
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
            Some((&id, "not-the-secret")),
        )
        .await;
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    oauth_error(response, 401, "invalid_client").await;
    let post = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", "nope"),
                ("resource", RESOURCE),
            ],
            None,
        )
        .await;
    oauth_error(post, 401, "invalid_client").await;
    // A confidential client cannot pass itself off as public.
    let bare = harness
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("client_id", &id)],
            None,
        )
        .await;
    oauth_error(bare, 401, "invalid_client").await;
}

#[tokio::test]
async fn token_endpoint_errors_are_spec_shaped() {
    let harness = Harness::start().await;
    let (id, secret) = harness.confidential_client("client_secret_basic").await;
    let basic = Some((id.as_str(), secret.as_str()));
    let unknown_target = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", "https://evil.example/"),
            ],
            basic,
        )
        .await;
    oauth_error(unknown_target, 400, "invalid_target").await;
    let scope = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", RESOURCE),
                ("scope", "root"),
            ],
            basic,
        )
        .await;
    oauth_error(scope, 400, "invalid_scope").await;
    let grant = harness
        .post_form("/token", &[("grant_type", "password")], basic)
        .await;
    oauth_error(grant, 400, "unsupported_grant_type").await;
    let missing = harness
        .post_form("/token", &[("resource", RESOURCE)], basic)
        .await;
    oauth_error(missing, 400, "invalid_request").await;
    let repeated = harness
        .http
        .post(harness.url("/token"))
        .basic_auth(&id, Some(&secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    oauth_error(repeated, 400, "invalid_request").await;
    let public = harness.public_client().await;
    let not_allowed = harness
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("client_id", &public)],
            None,
        )
        .await;
    oauth_error(not_allowed, 400, "unauthorized_client").await;
}
