//! Secret canaries: client secrets, passwords, codes and tokens never reach
//! logs, and refused secrets are never echoed in responses.

use std::io::Write;
use std::sync::{Arc, Mutex};

use authz_svc::AuthorizationConfig;
use serde_json::Value;

use crate::harness::{Harness, MEMBER_PASSWORD, RESOURCE, VERIFIER, member, test_config};

const CANARY: &str = "CANARY-7f3a9c-do-not-log";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures every log line of this thread (the current-thread runtime runs the server on
/// it, so the returned guard's subscriber sees the server's events).
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn secrets_never_reach_logs_or_error_bodies() {
    let (captured, _guard) = capture_logs();
    let harness = Harness::with_config(AuthorizationConfig {
        members: vec![member("alice", MEMBER_PASSWORD)],
        ..test_config()
    })
    .await;
    let (id, secret) = harness.confidential_client("client_secret_basic").await;
    let mut bodies = Vec::new();
    for (params, basic) in [
        (
            vec![("grant_type", "client_credentials"), ("resource", RESOURCE)],
            Some((id.as_str(), CANARY)),
        ),
        (
            vec![
                ("grant_type", "client_credentials"),
                ("client_id", &id),
                ("client_secret", CANARY),
            ],
            None,
        ),
        (
            vec![
                ("grant_type", "refresh_token"),
                ("refresh_token", CANARY),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
            None,
        ),
        (
            vec![
                ("grant_type", "authorization_code"),
                ("code", CANARY),
                ("code_verifier", CANARY),
                ("client_id", &id),
                ("client_secret", &secret),
            ],
            None,
        ),
    ] {
        let response = harness.post_form("/token", &params, basic).await;
        assert!(response.status().is_client_error());
        bodies.push(response.text().await.unwrap());
    }
    let issued: Value = harness
        .post_form(
            "/token",
            &[("grant_type", "client_credentials"), ("resource", RESOURCE)],
            Some((&id, &secret)),
        )
        .await
        .json()
        .await
        .unwrap();
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let public = harness.public_client().await;
    let code = harness.code_for(&public).await;
    let grant: Value = harness
        .redeem(&public, &code, VERIFIER)
        .await
        .json()
        .await
        .unwrap();
    let refresh = grant["refresh_token"].as_str().unwrap().to_owned();
    harness
        .post_form(
            "/revoke",
            &[("token", &refresh), ("client_id", &public)],
            None,
        )
        .await;
    for body in &bodies {
        assert!(
            !body.contains(CANARY),
            "a refused secret was echoed: {body}"
        );
    }
    let logs = captured.text();
    assert!(
        logs.contains("access token issued"),
        "the capture saw no server logs: {logs}"
    );
    for secret_value in [
        CANARY,
        secret.as_str(),
        access.as_str(),
        refresh.as_str(),
        code.as_str(),
        VERIFIER,
        MEMBER_PASSWORD,
    ] {
        assert!(!logs.contains(secret_value), "a secret reached the logs");
    }
}

#[tokio::test(flavor = "current_thread")]
async fn member_passwords_never_reach_logs_or_pages() {
    let (captured, _guard) = capture_logs();
    let harness = crate::authorize::login_harness().await;
    let client = harness.public_client().await;
    let (cookie, csrf) = crate::authorize::consent_page(&harness, &client).await;
    let refused =
        crate::authorize::submit(&harness, &client, Some(&cookie), &csrf, CANARY, "approve").await;
    assert_eq!(refused.status(), 401);
    assert!(
        !refused.text().await.unwrap().contains(CANARY),
        "a refused password was echoed"
    );
    let approved = crate::authorize::submit(
        &harness,
        &client,
        Some(&cookie),
        &csrf,
        MEMBER_PASSWORD,
        "approve",
    )
    .await;
    assert_eq!(approved.status(), 303);
    let logs = captured.text();
    assert!(
        logs.contains("authorization approved"),
        "the capture saw no server logs: {logs}"
    );
    assert!(
        !logs.contains(CANARY) && !logs.contains(MEMBER_PASSWORD),
        "a password reached the logs"
    );
}

#[derive(Debug, Default)]
struct AuditCapture(Mutex<Vec<String>>);

impl authz_svc::AuditSink for AuditCapture {
    fn record(&self, event: proto::audit::v1::AuditEvent) -> Result<(), String> {
        self.0.lock().unwrap().push(format!("{event:?}"));
        Ok(())
    }
}

#[tokio::test(flavor = "current_thread")]
async fn agent_secrets_never_reach_logs_audit_records_or_error_bodies() {
    use authz_svc::{AgentAuthentication, AgentKey};
    use secrecy::ExposeSecret as _;

    let (captured, _guard) = capture_logs();
    let harness = Harness::start().await;
    let audit = Arc::new(AuditCapture::default());
    let registry = harness.state.agents().clone().with_audit(audit.clone());
    let created = registry
        .create(crate::agents::new_agent(
            "canary",
            AgentAuthentication::ClientSecret,
        ))
        .await
        .unwrap();
    let first = created.client_secret.unwrap().expose_secret().to_owned();
    let agent = created.agent;
    let rotated = registry
        .rotate(AgentKey::Name("canary"), None)
        .await
        .unwrap();
    let second = rotated.client_secret.expose_secret().to_owned();
    let issued: Value = crate::agents::agent_token(&harness, &agent, &second, &[])
        .await
        .json()
        .await
        .unwrap();
    let access = issued["access_token"].as_str().unwrap().to_owned();
    let mut bodies = Vec::new();
    for params in [
        vec![
            ("grant_type", "client_credentials"),
            ("client_id", agent.client_id.as_str()),
            ("client_secret", CANARY),
        ],
        vec![
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", CANARY),
            ("client_id", agent.client_id.as_str()),
        ],
        vec![
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("client_id", agent.client_id.as_str()),
            ("client_secret", second.as_str()),
            ("subject_token", CANARY),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ],
    ] {
        let response = harness.post_form("/token", &params, None).await;
        assert!(response.status().is_client_error());
        bodies.push(response.text().await.unwrap());
    }
    registry
        .decommission(AgentKey::Name("canary"), "canary test")
        .await
        .unwrap();
    let records = audit.0.lock().unwrap().join("\n");
    assert!(
        records.contains("decommission"),
        "the audit sink saw no agent change: {records}"
    );
    let logs = captured.text();
    assert!(
        logs.contains("agent created"),
        "the capture saw no server logs"
    );
    for secret_value in [CANARY, first.as_str(), second.as_str(), access.as_str()] {
        assert!(!logs.contains(secret_value), "a secret reached the logs");
        assert!(
            !records.contains(secret_value),
            "a secret reached the audit records"
        );
        for body in &bodies {
            assert!(!body.contains(secret_value), "a secret was echoed: {body}");
        }
    }
}
