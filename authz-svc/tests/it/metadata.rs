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
