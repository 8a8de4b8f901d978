use super::*;

#[derive(Debug)]
struct AcceptsOne;

impl TokenVerifier for AcceptsOne {
    fn verify(&self, virtual_server: &str, token: &str) -> Result<Caller, TokenError> {
        if virtual_server == "crm" && token == "good" {
            Ok(Caller::Token {
                subject: Some("alice".into()),
                client_id: "app".into(),
            })
        } else {
            Err(TokenError::Invalid(
                "token is not valid for this virtual server",
            ))
        }
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
        "crm".into(),
        mode,
        verifier,
        "http://gw/.well-known/oauth-protected-resource/v/crm/mcp".into(),
    )
}

#[test]
fn auth_none_admits_anonymous_callers() {
    let admitted = gate(AuthMode::None, None)
        .admit(request(None))
        .expect("open server");
    assert_eq!(
        admitted.extensions().get::<Caller>(),
        Some(&Caller::Anonymous)
    );
}

#[test]
fn a_missing_token_gets_401_with_resource_metadata() {
    let refused = gate(AuthMode::Oauth, Some(Arc::new(AcceptsOne)))
        .admit(request(None))
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

#[test]
fn without_a_verifier_every_token_is_refused() {
    let refused = gate(AuthMode::Oauth, None)
        .admit(request(Some("Bearer good")))
        .expect_err("fails closed");
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}

#[test]
fn a_bad_token_is_refused_and_never_echoed() {
    let refused = gate(AuthMode::Oauth, Some(Arc::new(AcceptsOne)))
        .admit(request(Some("Bearer s3cr3t-canary")))
        .expect_err("bad token");
    let challenge = refused.headers()[header::WWW_AUTHENTICATE]
        .to_str()
        .unwrap();
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");
    assert!(!challenge.contains("s3cr3t-canary"), "{challenge}");
}

#[test]
fn a_good_token_attaches_the_caller() {
    let admitted = gate(AuthMode::Oauth, Some(Arc::new(AcceptsOne)))
        .admit(request(Some("Bearer good")))
        .expect("valid");
    let caller = admitted.extensions().get::<Caller>().unwrap();
    assert_eq!(
        caller,
        &Caller::Token {
            subject: Some("alice".into()),
            client_id: "app".into()
        }
    );
}
