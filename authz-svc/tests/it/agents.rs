//! Agent bundles at the token endpoint: client credentials bound to the bundle's virtual
//! servers and scopes, secret rotation with overlap, decommissioning, declared bundles.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use authz_svc::{
    AgentAuthentication, AgentConfig, AgentKey, AgentRecord, AgentRegistry, NewAgent, StoreConfig,
};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};

use crate::harness::{Harness, OTHER_RESOURCE, RESOURCE, oauth_error, test_config};

/// Returns a new bundle for the `demo` virtual server with scope `tools`.
pub(crate) fn new_agent(name: &str, authentication: AgentAuthentication) -> NewAgent {
    NewAgent {
        name: name.to_owned(),
        description: "test agent".to_owned(),
        owner: "alice".to_owned(),
        virtual_servers: vec!["demo".to_owned()],
        scopes: vec!["tools".to_owned()],
        authentication,
        quotas: json!({ "rate": "120/minute", "burst": 10 }),
        client_id: None,
    }
}

/// Creates a client-secret bundle; returns it and its secret.
pub(crate) async fn secret_agent(harness: &Harness, agent: NewAgent) -> (AgentRecord, String) {
    let created = harness.state.agents().create(agent).await.unwrap();
    let secret = created.client_secret.unwrap().expose_secret().to_owned();
    (created.agent, secret)
}

/// Returns the claims of a JWT without verifying it (the signature is tested elsewhere).
pub(crate) fn claims(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

pub(crate) async fn agent_token(
    harness: &Harness,
    agent: &AgentRecord,
    secret: &str,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let mut params = vec![("grant_type", "client_credentials")];
    params.extend_from_slice(extra);
    harness
        .post_form("/token", &params, Some((&agent.client_id, secret)))
        .await
}

#[tokio::test]
async fn agent_token_names_the_bundle_its_virtual_server_and_allowed_scopes() {
    let harness = Harness::start().await;
    let (agent, secret) = secret_agent(
        &harness,
        new_agent("reporter", AgentAuthentication::ClientSecret),
    )
    .await;
    assert!(secret.len() >= 43, "at least 256 bits");
    let response = agent_token(&harness, &agent, &secret, &[("resource", RESOURCE)]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    let token = claims(body["access_token"].as_str().unwrap());
    // RFC 9068 §2.2: with no resource owner, `sub` names the client; the bundle is in `agent`.
    assert_eq!(token["sub"], agent.client_id.as_str());
    assert_eq!(token["client_id"], agent.client_id.as_str());
    assert_eq!(token["agent"]["id"], agent.agent_id.as_str());
    assert_eq!(token["agent"]["method"], "client_secret");
    assert_eq!(token["agent"]["owner"], "alice");
    assert_eq!(
        token["agent"]["quota"],
        json!({"rate": "120/minute", "burst": 10})
    );
    assert_eq!(token["aud"], RESOURCE);
    assert_eq!(token["scope"], "tools");
    assert!(token["exp"].as_i64().unwrap() - token["iat"].as_i64().unwrap() <= 900);
    // With one virtual server the resource may be left out; client_secret_post works too.
    let post = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &agent.client_id),
                ("client_secret", &secret),
            ],
            None,
        )
        .await;
    assert_eq!(post.status(), 200);
    let stored = harness
        .state
        .agents()
        .get(AgentKey::Id(&agent.agent_id))
        .await
        .unwrap();
    assert!(stored.last_used_at.is_some(), "last use is recorded");
}

#[tokio::test]
async fn agent_is_held_to_its_virtual_servers_scopes_and_grants() {
    let harness = Harness::start().await;
    let (agent, secret) = secret_agent(
        &harness,
        new_agent("reporter", AgentAuthentication::ClientSecret),
    )
    .await;
    let other = agent_token(&harness, &agent, &secret, &[("resource", OTHER_RESOURCE)]).await;
    oauth_error(other, 400, "invalid_target").await;
    let unknown = agent_token(
        &harness,
        &agent,
        &secret,
        &[("resource", "https://elsewhere.example/mcp")],
    )
    .await;
    oauth_error(unknown, 400, "invalid_target").await;
    // `admin` is declared by the resource but not granted to the agent.
    let wider = agent_token(
        &harness,
        &agent,
        &secret,
        &[("resource", RESOURCE), ("scope", "tools admin")],
    )
    .await;
    oauth_error(wider, 400, "invalid_scope").await;
    // A scope no resource declares is refused too (one only another resource declares is dropped).
    let undeclared = agent_token(
        &harness,
        &agent,
        &secret,
        &[("resource", RESOURCE), ("scope", "tools nonsense")],
    )
    .await;
    oauth_error(undeclared, 400, "invalid_scope").await;
    let code = harness
        .post_form(
            "/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", "x"),
                ("code_verifier", "y"),
            ],
            Some((&agent.client_id, &secret)),
        )
        .await;
    oauth_error(code, 400, "unauthorized_client").await;
    let wrong = agent_token(&harness, &agent, "not-the-secret", &[]).await;
    oauth_error(wrong, 401, "invalid_client").await;
}

#[tokio::test]
async fn rotated_secret_overlaps_and_then_stops() {
    let harness = Harness::start().await;
    let (agent, first) = secret_agent(
        &harness,
        new_agent("reporter", AgentAuthentication::ClientSecret),
    )
    .await;
    let registry = harness.state.agents();
    let rotated = registry
        .rotate(AgentKey::Name("reporter"), None)
        .await
        .unwrap();
    let second = rotated.client_secret.expose_secret().to_owned();
    assert_ne!(first, second);
    assert!(rotated.agent.rotated_at.is_some());
    for secret in [&first, &second] {
        assert_eq!(
            agent_token(&harness, &agent, secret, &[]).await.status(),
            200
        );
    }
    assert_eq!(registry.secrets(&agent.agent_id).await.unwrap().len(), 2);
    let third = registry
        .rotate(AgentKey::Id(&agent.agent_id), Some(Duration::ZERO))
        .await
        .unwrap();
    let third = third.client_secret.expose_secret().to_owned();
    for old in [&first, &second] {
        oauth_error(
            agent_token(&harness, &agent, old, &[]).await,
            401,
            "invalid_client",
        )
        .await;
    }
    assert_eq!(
        agent_token(&harness, &agent, &third, &[]).await.status(),
        200
    );
}

#[derive(Debug, Default)]
struct Recorded(Mutex<Vec<String>>);

impl authz_svc::RevocationListener for Recorded {
    fn token_revoked(&self, jti: &str, _expires_at: i64) {
        self.0.lock().unwrap().push(format!("token {jti}"));
    }

    fn grant_revoked(&self, grant_id: &str) {
        self.0.lock().unwrap().push(format!("grant {grant_id}"));
    }

    fn agent_revoked(&self, client_id: &str, _expires_at: i64) {
        self.0.lock().unwrap().push(format!("agent {client_id}"));
    }

    fn member_revoked(&self, member_id: &str, _revoked_at: i64, _expires_at: i64) {
        self.0.lock().unwrap().push(format!("member {member_id}"));
    }
}

#[tokio::test]
async fn decommissioned_agent_cannot_authenticate_and_its_tokens_go_inactive() {
    let harness = Harness::start().await;
    let (agent, secret) = secret_agent(
        &harness,
        new_agent("reporter", AgentAuthentication::ClientSecret),
    )
    .await;
    let body: Value = agent_token(&harness, &agent, &secret, &[])
        .await
        .json()
        .await
        .unwrap();
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert!(
        harness
            .state
            .verify_access_token(&token)
            .await
            .unwrap()
            .is_some()
    );
    let listener = Arc::new(Recorded::default());
    let state = harness
        .state
        .clone()
        .with_revocation_listener(listener.clone());
    let gone = state
        .agents()
        .decommission(AgentKey::Name("reporter"), "left the team")
        .await
        .unwrap();
    assert!(gone.decommissioned_at.is_some());
    assert_eq!(
        *listener.0.lock().unwrap(),
        [format!("agent {}", agent.client_id)]
    );
    oauth_error(
        agent_token(&harness, &agent, &secret, &[]).await,
        401,
        "invalid_client",
    )
    .await;
    assert!(
        harness
            .state
            .verify_access_token(&token)
            .await
            .unwrap()
            .is_none()
    );
    let again = state
        .agents()
        .decommission(AgentKey::Name("reporter"), "again")
        .await
        .unwrap();
    assert_eq!(
        again.decommissioned_at, gone.decommissioned_at,
        "repeating changes nothing"
    );
    assert_eq!(listener.0.lock().unwrap().len(), 1);
    let rotate = state
        .agents()
        .rotate(AgentKey::Name("reporter"), None)
        .await
        .unwrap_err();
    assert!(rotate.to_string().contains("decommissioned"), "{rotate}");
}

#[tokio::test]
async fn decommissioning_by_another_process_reaches_the_running_server_within_a_second() {
    let harness = Harness::start().await;
    let (agent, secret) = secret_agent(
        &harness,
        new_agent("reporter", AgentAuthentication::ClientSecret),
    )
    .await;
    // The token endpoint has just read the bundle: it remembers it for a second.
    assert_eq!(
        agent_token(&harness, &agent, &secret, &[]).await.status(),
        200
    );
    let listener = Arc::new(Recorded::default());
    let state = harness
        .state
        .clone()
        .with_revocation_listener(listener.clone());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let follower = state.follow_revocations(shutdown.clone()).unwrap();
    // What `gatehouse agents decommission` does: the store directly, not the server.
    let store = StoreConfig::Sqlite {
        path: harness.data_dir().join("authz.db"),
    };
    let cli = AgentRegistry::open(&store, Some(&harness.data_dir().join("authz.key")))
        .await
        .unwrap();
    cli.decommission(AgentKey::Name("reporter"), "")
        .await
        .unwrap();
    let expected = format!("agent {}", agent.client_id);
    tokio::time::timeout(Duration::from_secs(1), async {
        while !listener.0.lock().unwrap().contains(&expected) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the server learned of the decommissioning within a second");
    refused_within(&harness, &agent, &secret, Duration::from_millis(1500)).await;
    shutdown.cancel();
    follower.await.unwrap();
}

#[tokio::test]
async fn a_secret_rotated_by_another_process_works_at_once_and_the_old_one_stops_within_a_second() {
    let harness = Harness::start().await;
    let (agent, first) = secret_agent(
        &harness,
        new_agent("reporter", AgentAuthentication::ClientSecret),
    )
    .await;
    assert_eq!(
        agent_token(&harness, &agent, &first, &[]).await.status(),
        200
    );
    let store = StoreConfig::Sqlite {
        path: harness.data_dir().join("authz.db"),
    };
    let cli = AgentRegistry::open(&store, Some(&harness.data_dir().join("authz.key")))
        .await
        .unwrap();
    let rotated = cli
        .rotate(AgentKey::Name("reporter"), Some(Duration::ZERO))
        .await
        .unwrap();
    let second = rotated.client_secret.expose_secret().to_owned();
    assert_eq!(
        agent_token(&harness, &agent, &second, &[]).await.status(),
        200,
        "a secret the server has not seen yet is looked up, not refused"
    );
    refused_within(&harness, &agent, &first, Duration::from_millis(1500)).await;
    assert_eq!(
        agent_token(&harness, &agent, &second, &[]).await.status(),
        200
    );
}

/// Asks for tokens with `secret` until the token endpoint refuses it, failing after `within`.
async fn refused_within(harness: &Harness, agent: &AgentRecord, secret: &str, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let response = agent_token(harness, agent, secret, &[]).await;
        if response.status() == 401 {
            oauth_error(response, 401, "invalid_client").await;
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the token endpoint still accepted the secret after {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn invalid_bundles_are_refused_before_anything_is_stored() {
    let harness = Harness::start().await;
    let registry = harness.state.agents();
    let mut unknown_server = new_agent("a", AgentAuthentication::ClientSecret);
    unknown_server.virtual_servers = vec!["nowhere".to_owned()];
    let mut undeclared_scope = new_agent("b", AgentAuthentication::ClientSecret);
    undeclared_scope.scopes = vec!["root".to_owned()];
    let private_jwks = new_agent(
        "c",
        AgentAuthentication::PrivateKeyJwt {
            jwks: json!({ "keys": [{ "kty": "EC", "crv": "P-256", "x": "AA", "y": "AA", "d": "AA" }] }),
        },
    );
    let bad_name = new_agent("no spaces", AgentAuthentication::ClientSecret);
    for agent in [unknown_server, undeclared_scope, private_jwks, bad_name] {
        let error = registry.create(agent).await.unwrap_err();
        assert!(error.to_string().starts_with("invalid request"), "{error}");
    }
    let listed = registry
        .list(&authz_svc::AgentListQuery {
            limit: 10,
            include_decommissioned: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(listed.is_empty());
    secret_agent(
        &harness,
        new_agent("dup", AgentAuthentication::ClientSecret),
    )
    .await;
    let taken = registry
        .create(new_agent("dup", AgentAuthentication::ClientSecret))
        .await
        .unwrap_err();
    assert!(taken.to_string().contains("already exists"), "{taken}");
}

#[tokio::test]
async fn declared_agent_uses_the_secret_from_its_environment_variable() {
    // PATH is always set: it stands in for the operator's secret variable without
    // mutating the process environment. It is long enough on every CI machine.
    let secret = std::env::var("PATH").unwrap();
    assert!(
        secret.len() >= 32,
        "PATH is too short to stand in for a secret"
    );
    let declared: AgentConfig = serde_json::from_value(json!({
        "name": "nightly",
        "owner": "alice",
        "virtual_servers": ["demo"],
        "scopes": ["tools"],
        "secret_env": "PATH",
        "quotas": { "rate": "5/minute", "burst": 5 },
    }))
    .unwrap();
    let harness = Harness::with_config(authz_svc::AuthorizationConfig {
        agents: vec![declared],
        ..test_config()
    })
    .await;
    let agent = harness
        .state
        .agents()
        .get(AgentKey::ClientId("nightly"))
        .await
        .unwrap();
    assert_eq!(agent.quotas, json!({ "rate": "5/minute", "burst": 5 }));
    assert_eq!(
        agent_token(&harness, &agent, &secret, &[]).await.status(),
        200
    );
    assert_eq!(
        agent.managed_by.as_deref(),
        Some(authz_svc::MANAGED_BY_GATEWAY_FILE),
        "a declared bundle is marked as the gateway file's"
    );
    let created = harness
        .state
        .agents()
        .create(new_agent("by-hand", AgentAuthentication::ClientSecret))
        .await
        .unwrap();
    assert_eq!(
        created.agent.managed_by, None,
        "a bundle created through the API is nobody's declaration"
    );
    let missing: AgentConfig = serde_json::from_value(json!({
        "name": "broken", "owner": "alice", "virtual_servers": ["demo"],
        "secret_env": "GATEHOUSE_TEST_SURELY_UNSET_VARIABLE",
    }))
    .unwrap();
    let config = authz_svc::AuthorizationConfig {
        agents: vec![missing],
        ..test_config()
    };
    let dir = tempfile::tempdir().unwrap();
    let error = authz_svc::AuthzState::open(
        authz_svc::AuthorizationConfig {
            master_key_file: Some(dir.path().join("k")),
            ..config
        },
        authz_svc::Issuer {
            issuer: url::Url::parse("http://127.0.0.1:9").unwrap(),
            resources: Vec::new(),
        },
        StoreConfig::Sqlite {
            path: dir.path().join("authz.db"),
        },
    )
    .await
    .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("GATEHOUSE_TEST_SURELY_UNSET_VARIABLE"),
        "{error}"
    );
}
