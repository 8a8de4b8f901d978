//! Snapshots: validation with Cedar's diagnostics, and the wire round trip.

use std::time::UNIX_EPOCH;

use policy::{
    Action, AuthenticationMethod, BundleClaims, Error, Evaluator, Member, PolicyDocument,
    PolicyOrigin, Principal, Request, RequestContext, Snapshot, Target, TokenClaims,
};
use proto::authz::v1 as pb;
use serde_json::json;

use crate::fixture;

fn diagnostics(text: &str) -> Vec<String> {
    let mut document = PolicyDocument::default();
    document.add_cedar("admin", text, PolicyOrigin::AdminApi);
    match Evaluator::build(&document, 1, UNIX_EPOCH) {
        Err(Error::Invalid(diagnostics)) => diagnostics.0.iter().map(ToString::to_string).collect(),
        other => panic!("expected diagnostics, got {other:?}"),
    }
}

#[test]
fn a_syntax_error_is_refused_with_cedar_diagnostics() {
    let problems = diagnostics("permit (principal, action, resource) when { principal.");
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("admin: "), "{problems:?}");
}

#[test]
fn a_policy_that_does_not_match_the_schema_is_refused() {
    let problems = diagnostics(
        r#"@id("typo") permit (principal is Member, action == Action::"call_tool", resource) when { principal.rolez.contains("x") };"#,
    );
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("typo: "), "{problems:?}");
    assert!(problems[0].contains("rolez"), "{problems:?}");
}

#[test]
fn an_unknown_action_and_an_unknown_reason_are_refused() {
    let problems = diagnostics(
        r#"@id("a") permit (principal, action == Action::"delete_everything", resource);
           @id("b") @reason("because") forbid (principal, action, resource);"#,
    );
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(problems.iter().any(|p| p.starts_with("a: ")));
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("b: ") && p.contains("because"))
    );
}

#[test]
fn duplicate_ids_are_refused() {
    let problems = diagnostics(
        r#"@id("same") permit (principal, action, resource); @id("same") forbid (principal, action, resource);"#,
    );
    assert!(
        problems.iter().any(|p| p.contains("duplicate policy id")),
        "{problems:?}"
    );
}

#[test]
fn policies_without_an_id_are_numbered_by_source() {
    let mut document = PolicyDocument::default();
    document.add_cedar(
        "inline",
        "permit (principal, action, resource); forbid (principal, action, resource);",
        PolicyOrigin::Config,
    );
    let snapshot = Snapshot::build(&document, 1, UNIX_EPOCH).unwrap();
    let ids: Vec<&str> = snapshot.policies.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["inline#0", "inline#1"]);
}

#[test]
fn the_wire_snapshot_evaluates_like_the_original() {
    let original = fixture::evaluator();
    let wire = pb::PolicySnapshot::from(original.snapshot());
    assert_eq!(wire.cedar_schema, policy::SCHEMA);
    assert!(
        wire.policies
            .iter()
            .any(|p| p.source() == pb::PolicySource::Generated)
    );
    let decoded = Snapshot::try_from(&wire).unwrap();
    assert_eq!(&decoded, original.snapshot());
    let copy = Evaluator::new(decoded).unwrap();
    let principal = fixture::principal("member alice (sales)");
    let (server, connector, tool) = fixture::tool("update_opportunity");
    let target = Target::tool(server, connector, tool);
    let context = RequestContext::call(
        json!({"stage": "stalled"}).as_object().unwrap().clone(),
        fixture::business_hours(),
        fixture::office(),
    );
    let request = Request {
        principal: &principal,
        scopes: &fixture::all_scopes(),
        action: Action::CallTool,
        target: &target,
        context: &context,
    };
    assert_eq!(copy.decide(&request), original.decide(&request));
    let schema = json!({"type": "object", "properties": {"stage": {"type": "string"}}});
    assert_eq!(
        copy.narrow_input_schema("crm", "update_opportunity", &schema)["properties"]["stage"]["enum"],
        json!(["open", "won", "lost"])
    );
}

#[test]
fn wire_principals_round_trip() {
    let principal = Principal::agent_for(
        policy::Agent::new("assistant", Some("carol")),
        Member::new("alice", &["staff"], &["sales"]),
    );
    let wire = proto::common::v1::Principal::from(&principal);
    assert_eq!(Principal::try_from(&wire).unwrap(), principal);
    assert!(Principal::try_from(&proto::common::v1::Principal::default()).is_err());
}

#[test]
fn token_claims_make_members_agents_and_delegations() {
    let groups = vec!["staff".to_owned()];
    let claims = |subject: &'static str, act: Option<&'static serde_json::Value>| TokenClaims {
        issuer: "https://gatehouse.example",
        subject,
        client_id: "assistant",
        act,
        groups: &groups,
        roles: &[],
        authentication_method: AuthenticationMethod::AuthorizationCode,
        bundle: None,
    };
    let member = Principal::from_claims(&claims("alice", None));
    assert_eq!(member.member.as_ref().unwrap().groups, groups);
    assert!(member.agent.is_none());
    let agent = Principal::from_claims(&claims("assistant", None));
    assert!(agent.member.is_none());
    assert_eq!(agent.agent.unwrap().client_id, "assistant");
    let act: &'static serde_json::Value = Box::leak(Box::new(
        json!({"sub": "bot", "client_id": "assistant", "act": {"sub": "orchestrator"}}),
    ));
    let delegated = Principal::from_claims(&claims("alice", Some(act)));
    assert_eq!(delegated.member.unwrap().id, "alice");
    assert_eq!(delegated.agent.unwrap().client_id, "assistant");
    assert_eq!(delegated.act.len(), 2);
    // The issuer's `agent` claim names the bundle and owner of the token's own agent only.
    let bundle = BundleClaims {
        bundle_id: "bundle-1",
        bundle_name: "reporter",
        owner_member_id: Some("alice"),
    };
    let own = Principal::from_claims(&TokenClaims {
        bundle: Some(bundle),
        ..claims("assistant", None)
    });
    let own = own.agent.unwrap();
    assert_eq!(
        (own.bundle_id.as_str(), own.bundle_name.as_str()),
        ("bundle-1", "reporter")
    );
    assert_eq!(own.owner_member_id.as_deref(), Some("alice"));
    let acting = Principal::from_claims(&TokenClaims {
        bundle: Some(bundle),
        ..claims("alice", Some(act))
    });
    assert!(acting.agent.unwrap().owner_member_id.is_none());
}

#[test]
fn request_entities_and_context_conform_to_the_published_schema() {
    // The evaluator skips request validation for speed; this proves what it builds
    // would pass it, by validating a policy that reads every attribute strictly.
    let mut document = fixture::document();
    document.add_cedar(
        "reads-everything",
        r#"@id("reads-everything") forbid (principal is Agent, action == Action::"call_tool", resource is Tool)
           when { principal.client_id == "" && principal has acting_for && principal.acting_for.groups.contains("x")
                  && resource has read_only && resource.upstream_name == "" && context.listing
                  && context.delegation_depth > 9 && context.actors.contains("x") && context.authentication_method == ""
                  && context.arguments.hasTag("a") && context.arguments.getTag("a").json == "" };"#,
        PolicyOrigin::Config,
    );
    let evaluator = Evaluator::build(&document, 1, UNIX_EPOCH).unwrap();
    let principal = fixture::principal("assistant for alice");
    let (server, connector, tool) = fixture::tool("get_account");
    let target = Target::tool(server, connector, tool);
    let context = RequestContext::call(
        json!({"a": [1, {"b": null}]}).as_object().unwrap().clone(),
        fixture::business_hours(),
        fixture::office(),
    );
    let decision = evaluator.decide(&Request {
        principal: &principal,
        scopes: &fixture::all_scopes(),
        action: Action::CallTool,
        target: &target,
        context: &context,
    });
    assert!(decision.allowed, "{}", decision.explanation);
    assert!(
        !decision.explanation.contains("errors="),
        "{}",
        decision.explanation
    );
}

#[test]
fn slicing_policies_by_scope_never_changes_a_decision() {
    // Static entities turn slicing off (their hierarchy could make any scope
    // match), which gives an unsliced evaluator of the same policies to compare.
    let sliced = fixture::evaluator();
    let mut snapshot = sliced.snapshot().clone();
    snapshot.entities_json =
        r#"[{"uid": {"type": "Group", "id": "unused"}, "attrs": {}, "parents": []}]"#.to_owned();
    let unsliced = Evaluator::new(snapshot).unwrap();
    let scopes = fixture::all_scopes();
    let arguments = [
        None,
        Some(json!({})),
        Some(json!({"stage": "stalled", "amount": -5, "region": "us"})),
    ];
    let mut compared = 0;
    for (label, principal) in fixture::principals() {
        let mut targets: Vec<(Action, Target)> = fixture::tools()
            .into_iter()
            .map(|(server, connector, tool)| {
                (Action::CallTool, Target::tool(server, connector, tool))
            })
            .collect();
        for server in ["crm", "db", "elsewhere"] {
            targets.push((Action::Connect, Target::virtual_server(server)));
            targets.push((Action::ListTools, Target::virtual_server(server)));
        }
        for (action, target) in &targets {
            for arguments in &arguments {
                let context = RequestContext {
                    arguments: arguments.as_ref().map(|a| a.as_object().unwrap().clone()),
                    time: fixture::business_hours(),
                    source_address: fixture::office(),
                };
                let request = Request {
                    principal: &principal,
                    scopes: &scopes,
                    action: *action,
                    target,
                    context: &context,
                };
                assert_eq!(
                    sliced.decide(&request),
                    unsliced.decide(&request),
                    "{label} {action:?} {target:?}"
                );
                compared += 1;
            }
        }
    }
    assert!(compared > 200);
}
