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
    let token = &agent_token(&gateway.origin, &crm, created.clone()).await;
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

/// Returns a client-credentials token of `agent` for the virtual server at `resource`.
async fn agent_token(origin: &str, resource: &str, agent: authz_svc::CreatedAgent) -> String {
    let secret = agent.client_secret.expect("a secret");
    super::oauth::client_credentials(
        origin,
        &agent.agent.client_id,
        secret.expose_secret(),
        resource,
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_its_own_budget_is_refused_with_a_retry_hint_and_other_agents_are_not() {
    // No rate-limit rules at all: the bundle's own quota is enforced by itself.
    let limits = edge_svc::quota::Quotas::open(&edge_svc::quota::RateLimitsSpec::default())
        .await
        .expect("bucket store");
    let gateway = super::oauth::start_limited(
        edge_svc::audit::Recorder::disabled(),
        Access::unrestricted(),
        limits,
    )
    .await;
    let crm = format!("{}/v/crm/mcp", gateway.origin);
    let registry = AgentRegistry::open(
        &StoreConfig::Sqlite {
            path: gateway.data_dir().join("authz.db"),
        },
        None,
    )
    .await
    .expect("the store");
    let bundle = |name: &str, quotas: Value| NewAgent {
        name: name.to_owned(),
        description: String::new(),
        owner: "alice".to_owned(),
        virtual_servers: vec!["crm".to_owned()],
        scopes: Vec::new(),
        authentication: AgentAuthentication::ClientSecret,
        quotas,
        client_id: None,
    };
    let refused = registry
        .create(bundle("typo", json!({"requests_per_minute": 60})))
        .await
        .expect_err("a quota that does not read is refused when written");
    assert!(refused.to_string().contains("quotas"), "{refused}");
    let metered = registry
        .create(bundle("metered", json!({"rate": "1/hour", "burst": 2})))
        .await
        .expect("metered agent");
    let free = registry
        .create(bundle("free", Value::Null))
        .await
        .expect("unmetered agent");
    let metered = agent_token(&gateway.origin, &crm, metered).await;
    let free = agent_token(&gateway.origin, &crm, free).await;

    for call in 1..=2 {
        let response = call_echo(&crm, &metered).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "call {call} is within the burst"
        );
    }
    let over = call_echo(&crm, &metered).await;
    assert_eq!(over.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(over.headers().contains_key("retry-after"));
    let body: Value = over.json().await.expect("a JSON-RPC error body");
    assert_eq!(body["error"]["code"], -32029, "{body}");
    assert_eq!(body["error"]["data"]["limit"], "agent_quota", "{body}");
    for _ in 0..4 {
        assert_eq!(call_echo(&crm, &free).await.status(), StatusCode::OK);
    }
    gateway.shutdown.cancel();
}
