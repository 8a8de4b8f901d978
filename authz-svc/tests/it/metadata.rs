use jsonwebtoken::jwk::JwkSet;
use serde_json::Value;

use crate::harness::Harness;

#[tokio::test]
async fn metadata_names_one_issuer_and_s256_only() {
    let harness = Harness::start().await;
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ] {
        let response = harness.http.get(harness.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/json")
        );
        let metadata: Value = response.json().await.unwrap();
        assert_eq!(metadata["issuer"], harness.base);
        assert_eq!(metadata["issuer"], harness.state.issuer());
        assert_eq!(
            metadata["authorization_endpoint"],
            harness.url("/authorize")
        );
        assert_eq!(metadata["token_endpoint"], harness.url("/token"));
        assert_eq!(metadata["registration_endpoint"], harness.url("/register"));
        assert_eq!(metadata["revocation_endpoint"], harness.url("/revoke"));
        assert_eq!(
            metadata["introspection_endpoint"],
            harness.url("/introspect")
        );
        assert_eq!(metadata["jwks_uri"], harness.url("/jwks.json"));
        assert_eq!(
            metadata["response_types_supported"],
            serde_json::json!(["code"])
        );
        assert_eq!(
            metadata["code_challenge_methods_supported"],
            serde_json::json!(["S256"])
        );
        assert_eq!(
            metadata["authorization_response_iss_parameter_supported"],
            true
        );
        assert_eq!(
            metadata["token_endpoint_auth_methods_supported"],
            serde_json::json!([
                "none",
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt"
            ])
        );
        assert_eq!(
            metadata["scopes_supported"],
            serde_json::json!(["admin", "tools"])
        );
    }
}

#[tokio::test]
async fn jwks_publishes_the_active_and_the_next_es256_key() {
    let harness = Harness::start().await;
    let jwks: JwkSet = harness
        .http
        .get(harness.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks.keys.len(), 2);
    for key in &jwks.keys {
        assert!(key.common.key_id.is_some());
        assert!(matches!(
            key.algorithm,
            jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_)
        ));
        let text = serde_json::to_string(key).unwrap();
        assert!(
            !text.contains("\"d\""),
            "a private key part was published: {text}"
        );
    }
}

#[tokio::test]
async fn keys_survive_a_restart_and_stay_sealed_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = authz_svc::AuthorizationConfig {
        allow_insecure_http: true,
        master_key_file: Some(dir.path().join("authz.key")),
        ..authz_svc::AuthorizationConfig::default()
    };
    let issuer = authz_svc::Issuer {
        issuer: url::Url::parse("http://127.0.0.1:1").unwrap(),
        resources: vec![],
    };
    let store = authz_svc::StoreConfig::Sqlite {
        path: dir.path().join("authz.db"),
    };
    let first = authz_svc::AuthzState::open(config.clone(), issuer.clone(), store.clone())
        .await
        .unwrap();
    let second = authz_svc::AuthzState::open(config.clone(), issuer.clone(), store.clone())
        .await
        .unwrap();
    assert_eq!(first.jwks(), second.jwks());
    // Another master key cannot open the stored private keys.
    std::fs::write(
        dir.path().join("other.key"),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n",
    )
    .unwrap();
    let wrong = authz_svc::AuthorizationConfig {
        master_key_file: Some(dir.path().join("other.key")),
        ..config
    };
    assert!(
        authz_svc::AuthzState::open(wrong, issuer, store)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn plain_http_issuer_is_refused_without_the_dev_opt_out() {
    let dir = tempfile::tempdir().unwrap();
    let config = authz_svc::AuthorizationConfig {
        master_key_file: Some(dir.path().join("authz.key")),
        ..authz_svc::AuthorizationConfig::default()
    };
    let issuer = authz_svc::Issuer {
        issuer: url::Url::parse("http://127.0.0.1:1").unwrap(),
        resources: vec![],
    };
    let store = authz_svc::StoreConfig::Sqlite {
        path: dir.path().join("authz.db"),
    };
    let error = authz_svc::AuthzState::open(config, issuer, store)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("issuer"), "{error}");
}

/// Returns the `kid`s of the served JWKS, in order.
async fn published_kids(harness: &crate::harness::Harness) -> Vec<String> {
    let jwks: serde_json::Value = harness
        .http
        .get(harness.url("/jwks.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|key| key["kid"].as_str().unwrap().to_owned())
        .collect()
}

/// Mints an agent token and returns it with the `kid` that signed it.
async fn agent_token(
    harness: &crate::harness::Harness,
    id: &str,
    secret: &str,
) -> (String, String) {
    let response = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("resource", crate::harness::RESOURCE),
            ],
            Some((id, secret)),
        )
        .await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    let kid = jsonwebtoken::decode_header(&token).unwrap().kid.unwrap();
    (token, kid)
}

#[tokio::test]
async fn keys_rotate_on_schedule_with_the_next_key_pre_published_and_retired_keys_kept() {
    let harness = crate::harness::Harness::start().await;
    let (id, secret) = harness.confidential_client("client_secret_basic").await;
    let (old_token, active) = agent_token(&harness, &id, &secret).await;
    let before = published_kids(&harness).await;
    assert_eq!(before.len(), 2, "active and next: {before:?}");
    let next = before.iter().find(|kid| **kid != active).unwrap().clone();

    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let week = i64::try_from(authz_svc::DEFAULT_SIGNING_KEY_ROTATION.as_secs()).unwrap();
    assert!(!harness.state.rotate_keys_if_due(now).await.unwrap());
    assert_eq!(
        published_kids(&harness).await,
        before,
        "not due: nothing changes"
    );

    assert!(harness.state.rotate_keys_if_due(now + week).await.unwrap());
    let after = published_kids(&harness).await;
    assert_eq!(after.len(), 3, "retired, active, new next: {after:?}");
    assert!(after.contains(&active) && after.contains(&next));
    let (_, signer) = agent_token(&harness, &id, &secret).await;
    assert_eq!(
        signer, next,
        "the pre-published key signs after the rotation"
    );
    // A token the retired key signed still verifies while it may be live.
    assert!(
        harness
            .state
            .verify_access_token(&old_token)
            .await
            .unwrap()
            .is_some()
    );
    // Running the check again at the same time rotates nothing.
    assert!(!harness.state.rotate_keys_if_due(now + week).await.unwrap());

    // One period later the old key's tokens are long expired: it is gone.
    assert!(
        harness
            .state
            .rotate_keys_if_due(now + 2 * week)
            .await
            .unwrap()
    );
    let last = published_kids(&harness).await;
    assert_eq!(last.len(), 3, "{last:?}");
    assert!(
        !last.contains(&active),
        "expired retired key still published"
    );
    assert!(
        harness
            .state
            .verify_access_token(&old_token)
            .await
            .unwrap()
            .is_none()
    );
}
