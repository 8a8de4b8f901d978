//! Agent bundles through edge: an agent's client-credentials token works at its virtual
//! server, and decommissioning the agent from the CLI's side of the store (not through
//! the running server) makes its next call fail within a second.

use std::time::Duration;

use authz_svc::{AgentAuthentication, AgentKey, AgentRegistry, NewAgent, StoreConfig};
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::Value;

use super::oauth::{call_echo, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decommissioned_agent_is_refused_at_edge_within_a_second() {
    let gateway = start().await;
    let crm = format!("{}/v/crm/mcp", gateway.origin);
    let store = StoreConfig::Sqlite {
        path: gateway.data_dir().join("authz.db"),
    };
    let cli = AgentRegistry::open(&store, None).await.expect("the store");
    let created = cli
        .create(NewAgent {
            name: "nightly-report".to_owned(),
            description: String::new(),
            owner: "alice".to_owned(),
            virtual_servers: vec!["crm".to_owned()],
            scopes: Vec::new(),
            authentication: AgentAuthentication::ClientSecret,
            quotas: Value::Null,
            client_id: None,
        })
        .await
        .expect("agent created");
    let secret = created.client_secret.expect("a secret");
    let response = reqwest::Client::new()
        .post(format!("{}/token", gateway.origin))
        .basic_auth(&created.agent.client_id, Some(secret.expose_secret()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("resource", crm.as_str()),
        ])
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("token json");
    let token = body["access_token"].as_str().expect("access token");
    assert_eq!(call_echo(&crm, token).await.status(), StatusCode::OK);

    cli.decommission(AgentKey::Id(&created.agent.agent_id), "e2e")
        .await
        .expect("decommissioned");
    let refused = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if call_echo(&crm, token).await.status() == StatusCode::UNAUTHORIZED {
                return;
            }
        }
    })
    .await;
    assert!(
        refused.is_ok(),
        "the agent's token still worked a second after decommissioning"
    );
    gateway.shutdown.cancel();
}
