use super::*;

const RESOURCE: &str = "http://gw/v/crm/mcp";

#[derive(Debug)]
struct AcceptsOne;

#[async_trait::async_trait]
impl TokenVerifier for AcceptsOne {
    async fn verify(&self, resource: &str, token: &str) -> Result<TokenClaims, TokenError> {
        if resource == RESOURCE && token == "good" {
            Ok(claims())
        } else {
            Err(TokenError::Invalid("access token is for another resource"))
        }
    }
}

fn claims() -> TokenClaims {
    TokenClaims {
        subject: "alice".into(),
        client_id: "app".into(),
        scopes: vec!["crm:read".into()],
        token_id: "jti-1".into(),
        expires_at: u64::MAX,
        issued_at: 0,
        issuer: "https://gatehouse.example".into(),
        act: None,
        groups: vec!["sales".into()],
        roles: Vec::new(),
        grant: Some("grant-1".into()),
        agent: None,
    }
}

fn request(authorization: Option<&str>) -> Request<Body> {
    let mut builder = Request::builder().uri("/v/crm/mcp");
    if let Some(value) = authorization {
        builder = builder.header(header::AUTHORIZATION, value);
    }
    builder.body(Body::empty()).unwrap()
}

fn gate(mode: AuthMode, verifier: Option<Arc<dyn TokenVerifier>>) -> Gate {
    Gate::new(
        RESOURCE.into(),
        mode,
        verifier,
        "http://gw/.well-known/oauth-protected-resource/v/crm/mcp".into(),
    )
}

#[tokio::test]
async fn auth_none_admits_anonymous_callers() {
    let admitted = gate(AuthMode::None, None)
        .admit(request(None))
        .await
        .expect("open server");
    assert_eq!(
        admitted.extensions().get::<Caller>(),
        Some(&Caller::Anonymous)
    );
}

#[tokio::test]
async fn a_missing_token_gets_401_with_resource_metadata() {
    let refused = gate(AuthMode::Oauth, Some(Arc::new(AcceptsOne)))
        .admit(request(None))
        .await
        .expect_err("no token");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    let challenge = refused.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert_eq!(
        challenge,
        "Bearer resource_metadata=\"http://gw/.well-known/oauth-protected-resource/v/crm/mcp\""
    );
}

#[tokio::test]
async fn without_a_verifier_every_token_is_refused() {
    let refused = gate(AuthMode::Oauth, None)
        .admit(request(Some("Bearer good")))
        .await
        .expect_err("fails closed");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_bad_token_is_refused_and_never_echoed() {
    let refused = gate(AuthMode::Oauth, Some(Arc::new(AcceptsOne)))
        .admit(request(Some("Bearer s3cr3t-canary")))
        .await
        .expect_err("bad token");
    let challenge = refused.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(!challenge.contains("s3cr3t-canary"), "{challenge}");
}

#[tokio::test]
async fn a_good_token_attaches_the_caller_and_the_scheme_is_case_insensitive() {
    let admitted = gate(AuthMode::Oauth, Some(Arc::new(AcceptsOne)))
        .admit(request(Some("bearer good")))
        .await
        .expect("valid");
    assert_eq!(
        admitted.extensions().get::<Caller>(),
        Some(&Caller::Token(Box::new(claims())))
    );
}

#[tokio::test]
async fn a_token_in_another_scheme_is_not_a_bearer_token() {
    let refused = gate(AuthMode::Oauth, Some(Arc::new(AcceptsOne)))
        .admit(request(Some("Basic good")))
        .await
        .expect_err("basic");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a_remote_revocation_set_is_trusted_only_once_synced_and_for_its_staleness_bound() {
    let revocations = Revocations::remote(std::time::Duration::from_millis(100));
    let gate = gate(
        AuthMode::Oauth,
        Some(revocations.guard(Arc::new(AcceptsOne))),
    );
    let unsynced = gate
        .admit(request(Some("Bearer good")))
        .await
        .expect_err("never synced");
    assert_eq!(unsynced.status(), StatusCode::SERVICE_UNAVAILABLE);

    revocations.replace_all();
    gate.admit(request(Some("Bearer good")))
        .await
        .expect("synced");
    revocations.feed_lost();
    gate.admit(request(Some("Bearer good")))
        .await
        .expect("within the bound");
    // A failed reconnect does not extend the bound; the bound is real time, so let it pass.
    revocations.feed_lost();
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    revocations.feed_lost();
    let stale = gate
        .admit(request(Some("Bearer good")))
        .await
        .expect_err("stale");
    assert_eq!(stale.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(stale.headers().contains_key(header::RETRY_AFTER));

    revocations.feed_resumed();
    gate.admit(request(Some("Bearer good")))
        .await
        .expect("resumed");
    revocations.revoke_agent("app", u64::MAX);
    let revoked = gate
        .admit(request(Some("Bearer good")))
        .await
        .expect_err("revoked");
    assert_eq!(revoked.status(), StatusCode::UNAUTHORIZED);
}
