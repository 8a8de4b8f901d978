//! `private_key_jwt` (RFC 7523 §2.2) and secretless workload identities: assertions
//! minted here with keys generated here, one workload issuer served by a JWKS server
//! this test runs.

use authz_svc::{AgentAuthentication, AgentRecord, WorkloadIssuer};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use p256::pkcs8::EncodePrivateKey as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::agents::{claims, new_agent};
use crate::harness::{Harness, RESOURCE, oauth_error};

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An ES256 key pair derived from a label, so that each test has its own.
struct TestKey {
    encoding: EncodingKey,
    jwk: Value,
}

impl TestKey {
    fn new(label: &str, kid: &str) -> Self {
        let secret = p256::SecretKey::from_slice(&Sha256::digest(label.as_bytes())).unwrap();
        let der = secret.to_pkcs8_der().unwrap();
        let point = secret.public_key().to_encoded_point(false);
        let jwk = json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "alg": "ES256", "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        });
        Self {
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk,
        }
    }

    fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    fn sign(&self, claims: &Value) -> String {
        let header = Header {
            kid: self.jwk["kid"].as_str().map(str::to_owned),
            ..Header::new(Algorithm::ES256)
        };
        jsonwebtoken::encode(&header, claims, &self.encoding).unwrap()
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

fn assertion_claims(iss: &str, sub: &str, aud: &str, jti: &str) -> Value {
    json!({ "iss": iss, "sub": sub, "aud": aud, "jti": jti, "iat": now(), "exp": now() + 120 })
}

async fn present(harness: &Harness, assertion: &str, client_id: Option<&str>) -> reqwest::Response {
    let mut params = vec![
        ("grant_type", "client_credentials"),
        ("resource", RESOURCE),
        ("client_assertion_type", ASSERTION_TYPE),
        ("client_assertion", assertion),
    ];
    if let Some(client_id) = client_id {
        params.push(("client_id", client_id));
    }
    harness.post_form("/token", &params, None).await
}

async fn key_agent(harness: &Harness, key: &TestKey) -> AgentRecord {
    let agent = new_agent(
        "signer",
        AgentAuthentication::PrivateKeyJwt { jwks: key.jwks() },
    );
    harness.state.agents().create(agent).await.unwrap().agent
}

#[tokio::test]
async fn private_key_jwt_authenticates_once_per_assertion() {
    let harness = Harness::start().await;
    let key = TestKey::new("pkjwt-accepted", "k1");
    let agent = key_agent(&harness, &key).await;
    let id = agent.client_id.as_str();
    // `aud` may be the issuer or the token endpoint.
    for (audience, jti) in [(harness.base.clone(), "j1"), (harness.url("/token"), "j2")] {
        let assertion = key.sign(&assertion_claims(id, id, &audience, jti));
        let response = present(&harness, &assertion, None).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
        let body: Value = response.json().await.unwrap();
        let token = claims(body["access_token"].as_str().unwrap());
        assert_eq!(token["sub"], id);
        assert_eq!(token["client_id"], id);
        assert_eq!(token["agent"]["id"], agent.agent_id.as_str());
        assert_eq!(token["agent"]["method"], "private_key_jwt");
        if jti == "j1" {
            let replay = present(&harness, &assertion, Some(id)).await;
            oauth_error(replay, 401, "invalid_client").await;
        }
    }
    let metadata: Value = harness
        .http
        .get(harness.url("/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let methods = metadata["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&json!("private_key_jwt")), "{metadata}");
}

#[tokio::test]
async fn every_must_of_a_client_assertion_is_enforced() {
    let harness = Harness::start().await;
    let key = TestKey::new("pkjwt-refused", "k1");
    let agent = key_agent(&harness, &key).await;
    let id = agent.client_id.as_str();
    let issuer = harness.base.clone();
    let stranger = TestKey::new("someone-else", "k1");
    let mut long_lived = assertion_claims(id, id, &issuer, "long");
    long_lived["exp"] = json!(now() + 3600);
    let mut expired = assertion_claims(id, id, &issuer, "old");
    expired["exp"] = json!(now() - 120);
    let mut no_jti = assertion_claims(id, id, &issuer, "");
    no_jti.as_object_mut().unwrap().remove("jti");
    let hs256 = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &assertion_claims(id, id, &issuer, "hmac"),
        &EncodingKey::from_secret(b"guessable"),
    )
    .unwrap();
    let cases = [
        (
            "wrong audience",
            key.sign(&assertion_claims(id, id, "https://other.example", "a1")),
        ),
        (
            "sub is not the client",
            key.sign(&assertion_claims(id, "someone", &issuer, "a2")),
        ),
        (
            "unregistered key",
            stranger.sign(&assertion_claims(id, id, &issuer, "a3")),
        ),
        ("lives over five minutes", key.sign(&long_lived)),
        ("expired", key.sign(&expired)),
        ("no jti", key.sign(&no_jti)),
        ("hmac algorithm", hs256),
        ("not a jwt", "garbage".to_owned()),
    ];
    for (case, assertion) in cases {
        let response = present(&harness, &assertion, Some(id)).await;
        let body = oauth_error(response, 401, "invalid_client").await;
        assert!(
            !body.to_string().contains(&assertion),
            "{case}: the assertion is echoed"
        );
    }
    let good = key.sign(&assertion_claims(id, id, &issuer, "good"));
    let wrong_type = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:example"),
                ("client_assertion", &good),
            ],
            None,
        )
        .await;
    oauth_error(wrong_type, 400, "invalid_request").await;
    let two_methods = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_assertion_type", ASSERTION_TYPE),
                ("client_assertion", &good),
            ],
            Some((id, "secret")),
        )
        .await;
    oauth_error(two_methods, 400, "invalid_request").await;
    assert_eq!(
        present(&harness, &good, None).await.status(),
        200,
        "none of the refusals spent the good assertion"
    );
}

/// Serves `jwks` at `/jwks` on an ephemeral port until the test ends; returns its URL.
async fn jwks_server(jwks: Value) -> String {
    let (listener, addr) = svc_kit::testing::bind_ephemeral().await;
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || async move { axum::Json(jwks) }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/jwks")
}

#[tokio::test]
async fn workload_identity_token_from_a_trusted_issuer_authenticates_secretlessly() {
    let harness = Harness::start().await;
    let issuer_key = TestKey::new("k8s-issuer", "sa-key-1");
    let jwks_uri = jwks_server(issuer_key.jwks()).await;
    let workload_issuer = "https://kubernetes.default.svc.cluster.local";
    let agent = new_agent(
        "ci-runner",
        AgentAuthentication::WorkloadIdentity(WorkloadIssuer {
            issuer: workload_issuer.to_owned(),
            jwks_uri: Some(jwks_uri),
            jwks: None,
            subject_pattern: "system:serviceaccount:ci:*".to_owned(),
        }),
    );
    let agent = harness.state.agents().create(agent).await.unwrap().agent;
    let id = agent.client_id.as_str();
    let token = |sub: &str, jti: &str| {
        issuer_key.sign(&assertion_claims(workload_issuer, sub, &harness.base, jti))
    };
    let accepted = present(
        &harness,
        &token("system:serviceaccount:ci:runner", "w1"),
        Some(id),
    )
    .await;
    assert_eq!(accepted.status(), 200, "{}", accepted.text().await.unwrap());
    let body: Value = accepted.json().await.unwrap();
    let issued = claims(body["access_token"].as_str().unwrap());
    assert_eq!(issued["sub"], agent.client_id.as_str());
    assert_eq!(issued["agent"]["id"], agent.agent_id.as_str());
    assert_eq!(issued["agent"]["method"], "workload_identity");
    let other_namespace = present(
        &harness,
        &token("system:serviceaccount:prod:runner", "w2"),
        Some(id),
    )
    .await;
    oauth_error(other_namespace, 401, "invalid_client").await;
    let forged = TestKey::new("attacker", "sa-key-1").sign(&assertion_claims(
        workload_issuer,
        "system:serviceaccount:ci:runner",
        &harness.base,
        "w3",
    ));
    oauth_error(
        present(&harness, &forged, Some(id)).await,
        401,
        "invalid_client",
    )
    .await;
    let other_issuer = issuer_key.sign(&assertion_claims(
        "https://evil.example",
        "system:serviceaccount:ci:runner",
        &harness.base,
        "w4",
    ));
    oauth_error(
        present(&harness, &other_issuer, Some(id)).await,
        401,
        "invalid_client",
    )
    .await;
}

/// Serves `jwks` at `/jwks` on an ephemeral port, counting fetches; returns its URL and the count.
async fn counted_jwks_server(
    jwks: Value,
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let (listener, addr) = svc_kit::testing::bind_ephemeral().await;
    let router = axum::Router::new().route(
        "/jwks",
        axum::routing::get(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            let jwks = jwks.clone();
            async move { axum::Json(jwks) }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, router).await });
    (format!("http://{addr}/jwks"), hits)
}

/// Creates, over the `AgentAdmin` gRPC API, an agent whose keys are published at `jwks_uri`.
async fn create_uri_agent(
    harness: &Harness,
    name: &str,
    jwks_uri: &str,
) -> Result<String, tonic::Status> {
    use proto::authz::v1 as pb;
    use proto::authz::v1::agent_admin_client::AgentAdminClient;
    let server = crate::harness::serve_grpc(harness.state.clone()).await;
    let mut admin = AgentAdminClient::new(crate::harness::caller(
        &server,
        Some(&crate::harness::admin_token()),
    ));
    let keys = pb::private_key_jwt_authentication::Keys::JwksUri(jwks_uri.to_owned());
    let request = pb::CreateAgentRequest {
        name: name.to_owned(),
        virtual_servers: vec!["demo".to_owned()],
        scopes: vec!["tools".to_owned()],
        authentication: Some(pb::AgentAuthentication {
            method: Some(pb::agent_authentication::Method::PrivateKeyJwt(
                pb::PrivateKeyJwtAuthentication { keys: Some(keys) },
            )),
        }),
        ..Default::default()
    };
    let created = admin.create_agent(request).await?.into_inner();
    assert!(
        created.client_secret.is_none(),
        "no secret for a key-based agent"
    );
    let bundle = created.agent.unwrap();
    let shown = bundle.authentication.unwrap().method.unwrap();
    assert_eq!(
        shown,
        pb::agent_authentication::Method::PrivateKeyJwt(pb::PrivateKeyJwtAuthentication {
            keys: Some(pb::private_key_jwt_authentication::Keys::JwksUri(
                jwks_uri.to_owned()
            )),
        })
    );
    Ok(bundle.client_id)
}

#[tokio::test]
async fn private_key_jwt_with_a_jwks_uri_fetches_the_keys_once_and_caches_them() {
    let mut config = crate::harness::test_config();
    // The JWKS server is on loopback: the fetcher's dev opt-out.
    config.client_metadata_documents.allow_local = true;
    let harness = Harness::with_config(config).await;
    let key = TestKey::new("published-key", "pub-1");
    let (jwks_uri, hits) = counted_jwks_server(key.jwks()).await;
    let id = create_uri_agent(&harness, "publisher", &jwks_uri)
        .await
        .unwrap();
    for jti in ["u1", "u2", "u3"] {
        let assertion = key.sign(&assertion_claims(&id, &id, &harness.base, jti));
        let response = present(&harness, &assertion, None).await;
        assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "keys cached"
    );
    // A key the agent never published, named by a kid the cached set lacks: refused, and
    // the refetch that unknown kids trigger is rate-limited (fetched just now).
    let stranger = TestKey::new("never-published", "pub-2");
    let forged = stranger.sign(&assertion_claims(&id, &id, &harness.base, "u4"));
    oauth_error(
        present(&harness, &forged, None).await,
        401,
        "invalid_client",
    )
    .await;
    assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_jwks_uri_on_a_private_address_is_never_fetched_without_the_dev_opt_out() {
    let harness = Harness::start().await;
    let key = TestKey::new("ssrf-key", "s1");
    let (jwks_uri, hits) = counted_jwks_server(key.jwks()).await;
    let id = create_uri_agent(&harness, "ssrf", &jwks_uri).await.unwrap();
    // https on a loopback literal passes creation (it is https) and is refused at fetch time.
    let tls_uri = jwks_uri.replacen("http://", "https://", 1);
    let tls_id = create_uri_agent(&harness, "ssrf-tls", &tls_uri)
        .await
        .unwrap();
    for (id, jti) in [(&id, "s1"), (&tls_id, "s2")] {
        let assertion = key.sign(&assertion_claims(id, id, &harness.base, jti));
        let body = oauth_error(
            present(&harness, &assertion, None).await,
            401,
            "invalid_client",
        )
        .await;
        assert!(body.to_string().contains("unavailable"), "{body}");
    }
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "no request left the fetcher"
    );
    for bad in [
        "ftp://keys.example/jwks",
        "http://keys.example/jwks",
        "not a url",
    ] {
        let refused = create_uri_agent(&harness, "bad-uri", bad)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{bad}");
    }
}
