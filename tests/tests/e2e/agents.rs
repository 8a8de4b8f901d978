//! Agent bundles through edge: an agent's client-credentials token works at its virtual
//! server as that agent — policy sees the bundle's owner and how it authenticated, the audit
//! record names the bundle — and decommissioning the agent from the CLI's side of the store
//! (not through the running server) makes its next call fail within a second.

use std::time::Duration;

use authz_svc::{AgentAuthentication, AgentKey, AgentRegistry, NewAgent, StoreConfig};
use edge_svc::access::Access;
use reqwest::StatusCode;
use secrecy::ExposeSecret as _;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::oauth::{call_echo, call_tool};

/// Agent-only rules: they match only if edge sees the token as the agent itself.
const AGENT_POLICIES: &str = r#"
@id("alices-agents")
permit(principal is Agent, action, resource)
when { principal has owner && principal.owner == Member::"alice" };

@id("secret-holding-agents-never-add")
forbid(principal is Agent, action == Action::"call_tool", resource is Tool)
when { resource.name == "add" && context.authentication_method == "client_secret" };
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_calls_as_its_bundle_and_is_refused_at_edge_within_a_second_of_decommissioning() {
    let shutdown = CancellationToken::new();
    let trail = super::audit::audited(&shutdown).await;
    let config: authz_svc::PolicyConfig =
        serde_json::from_value(json!({ "cedar": AGENT_POLICIES })).expect("policy config");
    let policies = authz_svc::PolicyStore::new(&config).expect("valid policies");
    let gateway =
        super::oauth::start_with(trail.recorder, Access::live(policies.subscribe())).await;
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
    let echoed: Value = call_echo(&crm, token).await.json().await.expect("json");
    assert_eq!(
        echoed["result"]["content"][0]["text"], "through oauth",
        "the owner's permit matched the agent: {echoed}"
    );
    let added: Value = call_tool(&crm, token, "add", json!({"a": 1, "b": 2}))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(added["error"]["code"], -32003, "{added}");

    let client_id = created.agent.client_id.clone();
    let events = super::audit::wait_for_events(&trail.config, "the agent's two calls", |events| {
        events
            .iter()
            .filter(|(_, event)| event["principal"]["clientId"] == client_id.as_str())
            .filter(|(_, event)| event["kind"] == "EVENT_KIND_MCP_REQUEST")
            .count()
            >= 2
    })
    .await;
    let calls: Vec<&Value> = events
        .iter()
        .map(|(_, event)| event)
        .filter(|event| event["kind"] == "EVENT_KIND_MCP_REQUEST")
        .collect();
    for call in &calls {
        let principal = &call["principal"];
        assert!(principal.get("member").is_none(), "no member: {principal}");
        assert_eq!(principal["agent"]["clientId"], client_id.as_str());
        assert_eq!(
            principal["agent"]["bundleId"],
            created.agent.agent_id.as_str()
        );
        assert_eq!(principal["agent"]["bundleName"], "nightly-report");
        assert_eq!(principal["agent"]["ownerMemberId"], "alice");
        assert_eq!(
            principal["authenticationMethod"],
            "AUTHENTICATION_METHOD_CLIENT_SECRET"
        );
    }
    let verdicts: Vec<&Value> = calls
        .iter()
        .map(|call| &call["decision"]["verdict"])
        .collect();
    assert!(verdicts.contains(&&json!("VERDICT_ALLOW")), "{verdicts:?}");
    assert!(verdicts.contains(&&json!("VERDICT_DENY")), "{verdicts:?}");

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
    shutdown.cancel();
}
