//! The policy decision point over gRPC: Decide, DecideBatch, and WatchPolicy
//! following runtime replacements; invalid policies refused with diagnostics.

use std::time::Duration;

use authz_svc::{Config, Error, PolicyConfig, PolicyStore};
use proto::authz::v1 as pb;
use proto::authz::v1::authz_client::AuthzClient;
use proto::common::v1 as common;
use serde_json::json;
use svc_kit::testing::{TestServer, init_test_tracing};

use crate::harness::{Caller, Harness, caller, edge_token};

const POLICIES: &str = r#"
@id("sales-use-crm")
permit (principal in Role::"sales", action, resource in VirtualServer::"crm");
"#;

fn policy_config() -> PolicyConfig {
    serde_json::from_value(json!({
        "cedar": POLICIES,
        "virtual_servers": {"crm": {
            "constraints": {"update_opportunity": {"stage": {"enum": ["open", "won"]}}},
            "scopes": {"crm:write": ["update_opportunity"]}
        }}
    }))
    .unwrap()
}

async fn start(store: &PolicyStore) -> (TestServer, AuthzClient<Caller>, Harness) {
    init_test_tracing();
    let harness = Harness::start().await;
    let store = store.clone();
    let state = harness.state.clone();
    let mut config = Config::default();
    config.callers.edge_token = Some(edge_token());
    let server = TestServer::start(move |listener, shutdown| async move {
        authz_svc::serve_with(&config, store, state, listener, shutdown).await
    })
    .await;
    let client = AuthzClient::new(caller(&server, Some(&edge_token())));
    (server, client, harness)
}

fn member(id: &str, roles: &[&str]) -> common::Principal {
    common::Principal {
        member: Some(common::Member {
            id: id.to_owned(),
            subject: id.to_owned(),
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
            ..Default::default()
        }),
        client_id: "desktop-app".to_owned(),
        authentication_method: common::AuthenticationMethod::AuthorizationCode.into(),
        ..Default::default()
    }
}

fn tool(name: &str, read_only: bool) -> common::Target {
    common::Target {
        virtual_server: "crm".to_owned(),
        connector: "crm".to_owned(),
        item: Some(common::target::Item::Tool(common::Tool {
            name: name.to_owned(),
            upstream_name: name.to_owned(),
            annotations: Some(common::ToolAnnotations {
                read_only_hint: Some(read_only),
                ..Default::default()
            }),
        })),
    }
}

fn call(
    principal: common::Principal,
    tool_name: &str,
    arguments: serde_json::Value,
) -> pb::DecideRequest {
    pb::DecideRequest {
        principal: Some(principal),
        scopes: vec!["crm:write".to_owned()],
        action: pb::Action::CallTool.into(),
        target: Some(tool(tool_name, false)),
        context: Some(pb::DecisionContext {
            arguments_json: serde_json::to_vec(&arguments).unwrap(),
            time: None,
            source_address: "10.0.0.1".to_owned(),
        }),
        metadata: None,
    }
}

async fn decide(client: &mut AuthzClient<Caller>, request: pb::DecideRequest) -> common::Decision {
    client
        .decide(request)
        .await
        .unwrap()
        .into_inner()
        .decision
        .unwrap()
}

#[tokio::test]
async fn decide_allows_denies_and_explains() {
    let store = PolicyStore::new(&policy_config()).unwrap();
    let (server, mut client, _harness) = start(&store).await;

    let allowed = decide(
        &mut client,
        call(
            member("alice", &["sales"]),
            "update_opportunity",
            json!({"stage": "won"}),
        ),
    )
    .await;
    assert_eq!(allowed.verdict(), common::Verdict::Allow);
    assert_eq!(allowed.policy_ids, ["sales-use-crm"]);
    assert_eq!(allowed.policy_version, 1);

    let no_role = decide(
        &mut client,
        call(member("carol", &[]), "update_opportunity", json!({})),
    )
    .await;
    assert_eq!(no_role.verdict(), common::Verdict::Deny);
    assert_eq!(no_role.reason(), common::DenyReason::NoPermit);
    assert!(no_role.policy_ids.is_empty());

    let constrained = decide(
        &mut client,
        call(
            member("alice", &["sales"]),
            "update_opportunity",
            json!({"stage": "lost"}),
        ),
    )
    .await;
    assert_eq!(constrained.reason(), common::DenyReason::ArgumentConstraint);
    assert_eq!(
        constrained.policy_ids,
        ["constraint/crm/update_opportunity/stage/enum"]
    );
    assert!(
        constrained.explanation.contains("Member::\"alice\""),
        "{}",
        constrained.explanation
    );

    let mut no_scope = call(member("alice", &["sales"]), "update_opportunity", json!({}));
    no_scope.scopes.clear();
    let no_scope = decide(&mut client, no_scope).await;
    assert_eq!(no_scope.reason(), common::DenyReason::InsufficientScope);
    assert_eq!(no_scope.required_scopes, ["crm:write"]);

    let mut anonymous = call(member("alice", &["sales"]), "update_opportunity", json!({}));
    anonymous.principal = None;
    let status = client.decide(anonymous).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let mut not_an_object = call(member("alice", &["sales"]), "update_opportunity", json!({}));
    not_an_object.context.as_mut().unwrap().arguments_json = b"[1]".to_vec();
    let status = client.decide(not_an_object).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    server.stop().await.unwrap();
}

#[tokio::test]
async fn decide_batch_answers_in_query_order_like_decide() {
    let store = PolicyStore::new(&policy_config()).unwrap();
    let (server, mut client, _harness) = start(&store).await;
    let tools = ["search_contacts", "update_opportunity"];
    let batch = |principal| pb::DecideBatchRequest {
        principal: Some(principal),
        scopes: Vec::new(),
        queries: tools
            .iter()
            .map(|name| pb::DecisionQuery {
                action: pb::Action::CallTool.into(),
                target: Some(tool(name, *name == "search_contacts")),
            })
            .collect(),
        context: None,
        metadata: None,
    };
    let alice = client
        .decide_batch(batch(member("alice", &["sales"])))
        .await
        .unwrap()
        .into_inner();
    let verdicts: Vec<_> = alice
        .decisions
        .iter()
        .map(|d| (d.verdict(), d.reason()))
        .collect();
    assert_eq!(
        verdicts,
        [
            (common::Verdict::Allow, common::DenyReason::Unspecified),
            // Listed for step-up: the policy allows it, the token lacks the scope.
            (common::Verdict::Deny, common::DenyReason::InsufficientScope),
        ]
    );
    let carol = client
        .decide_batch(batch(member("carol", &[])))
        .await
        .unwrap()
        .into_inner();
    assert!(
        carol
            .decisions
            .iter()
            .all(|d| d.reason() == common::DenyReason::NoPermit)
    );

    let mut too_many = batch(member("alice", &["sales"]));
    too_many.queries = vec![too_many.queries[0].clone(); 10_001];
    let status = client.decide_batch(too_many).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    server.stop().await.unwrap();
}

#[tokio::test]
async fn watch_policy_sends_the_snapshot_then_each_replacement_within_a_second() {
    let store = PolicyStore::new(&policy_config()).unwrap();
    let (server, mut client, _harness) = start(&store).await;
    let mut stream = client
        .watch_policy(pb::WatchPolicyRequest { known_version: 0 })
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap().snapshot.unwrap();
    assert_eq!(first.version, 1);
    assert_eq!(first.cedar_schema, policy::SCHEMA);
    assert!(first.policies.iter().any(|p| p.id == "sales-use-crm"));
    let evaluator = policy::Evaluator::new(policy::Snapshot::try_from(&first).unwrap()).unwrap();
    assert_eq!(
        evaluator.scopes_for_tool("crm", "update_opportunity"),
        ["crm:write"]
    );

    let version = store
        .replace_cedar(r#"@id("carol-too") permit (principal == Member::"carol", action, resource in VirtualServer::"crm");"#)
        .unwrap();
    assert_eq!(version, 2);
    let second = tokio::time::timeout(Duration::from_secs(1), stream.message())
        .await
        .expect("a change reaches the watcher within a second")
        .unwrap()
        .unwrap()
        .snapshot
        .unwrap();
    assert_eq!(second.version, 2);
    assert!(
        second
            .policies
            .iter()
            .any(|p| p.id == "carol-too" && p.source() == pb::PolicySource::AdminApi)
    );
    assert!(
        second.policies.iter().any(|p| p.id == "sales-use-crm"),
        "config policies stay"
    );

    let carol = decide(
        &mut client,
        call(member("carol", &[]), "update_opportunity", json!({})),
    )
    .await;
    assert_eq!(carol.verdict(), common::Verdict::Allow);
    assert_eq!(carol.policy_version, 2);

    // A watcher that already holds the current version waits for the next change.
    let mut current = client
        .watch_policy(pb::WatchPolicyRequest { known_version: 2 })
        .await
        .unwrap()
        .into_inner();
    assert!(
        tokio::time::timeout(Duration::from_millis(200), current.message())
            .await
            .is_err()
    );
    store.replace_cedar("").unwrap();
    let third = tokio::time::timeout(Duration::from_secs(1), current.message())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(third.snapshot.unwrap().version, 3);

    drop((stream, current));
    server.stop().await.unwrap();
}

#[tokio::test]
async fn an_invalid_replacement_is_refused_with_diagnostics_and_changes_nothing() {
    let store = PolicyStore::new(&policy_config()).unwrap();
    let watcher = store.subscribe();
    let error = store
        .replace_cedar(r#"@id("typo") permit (principal, action == Action::"call_tool", resource) when { principal.rolez == "x" };"#)
        .unwrap_err();
    let Error::InvalidPolicy(diagnostics) = &error else {
        panic!("expected diagnostics, got {error:?}");
    };
    // Cedar checks the policy for each principal type, and suggests the fix.
    assert!(!diagnostics.is_empty());
    assert!(
        diagnostics
            .0
            .iter()
            .all(|d| d.policy_id.as_deref() == Some("typo")),
        "{diagnostics}"
    );
    assert!(
        diagnostics
            .0
            .iter()
            .any(|d| d.help.as_deref() == Some("did you mean `roles`?")),
        "{diagnostics}"
    );
    assert!(error.to_string().contains("rolez"), "{error}");
    assert_eq!(
        tonic::Status::from(error).code(),
        tonic::Code::InvalidArgument
    );
    assert_eq!(store.current().version(), 1);
    assert!(!watcher.has_changed().unwrap(), "nothing was published");
    assert!(store.admin().cedar.is_empty());
}

#[tokio::test]
async fn invalid_config_policies_refuse_the_start() {
    let mut config = Config::default();
    config.policies.cedar = "permit (principal, action, resource) when {".to_owned();
    let (listener, _addr) = svc_kit::testing::bind_ephemeral().await;
    let error = authz_svc::serve(config, listener, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        format!("{error:#}").contains("invalid policies"),
        "{error:#}"
    );
}
