//! Decision tables: who may list and call what, with which arguments, when and
//! from where — and why.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use policy::{Action, DenyReason, Principal, Request, RequestContext, Target};
use serde_json::{Value, json};

use crate::fixture::{self, business_hours, office};

/// Is one row of a decision table.
struct Case {
    name: &'static str,
    principal: &'static str,
    tool: &'static str,
    /// `None` asks at list time; `Some` calls with these arguments.
    arguments: Option<Value>,
    scopes: Option<&'static [&'static str]>,
    time: SystemTime,
    source: Option<IpAddr>,
    expected: Result<&'static [&'static str], (DenyReason, &'static [&'static str])>,
}

impl Case {
    fn new(name: &'static str, principal: &'static str, tool: &'static str) -> Self {
        Self {
            name,
            principal,
            tool,
            arguments: Some(json!({})),
            scopes: None,
            time: business_hours(),
            source: office(),
            expected: Ok(&[]),
        }
    }

    fn listing(mut self) -> Self {
        self.arguments = None;
        self
    }

    fn with(mut self, arguments: Value) -> Self {
        self.arguments = Some(arguments);
        self
    }

    fn scopes(mut self, scopes: &'static [&'static str]) -> Self {
        self.scopes = Some(scopes);
        self
    }

    fn at(mut self, time: SystemTime) -> Self {
        self.time = time;
        self
    }

    fn from(mut self, source: Option<&str>) -> Self {
        self.source = source.map(|address| address.parse().unwrap());
        self
    }

    /// Expects an allow by exactly these policies.
    fn allowed_by(mut self, policies: &'static [&'static str]) -> Self {
        self.expected = Ok(policies);
        self
    }

    /// Expects a denial for `reason`, determined by exactly these policies.
    fn denied(mut self, reason: DenyReason, policies: &'static [&'static str]) -> Self {
        self.expected = Err((reason, policies));
        self
    }
}

fn run(cases: Vec<Case>) {
    let evaluator = fixture::evaluator();
    let mut failures = Vec::new();
    for case in cases {
        let principal: Principal = fixture::principal(case.principal);
        let (server, connector, tool) = fixture::tool(case.tool);
        let target = Target::tool(server, connector, tool);
        let scopes: Vec<String> = case.scopes.map_or_else(fixture::all_scopes, |scopes| {
            scopes.iter().map(|s| (*s).to_owned()).collect()
        });
        let context = RequestContext {
            arguments: case
                .arguments
                .map(|arguments| arguments.as_object().unwrap().clone()),
            time: case.time,
            source_address: case.source,
        };
        let decision = evaluator.decide(&Request {
            principal: &principal,
            scopes: &scopes,
            action: Action::CallTool,
            target: &target,
            context: &context,
        });
        let actual = if decision.allowed {
            Ok(decision.policy_ids.clone())
        } else {
            Err((decision.reason.unwrap(), decision.policy_ids.clone()))
        };
        let expected = match case.expected {
            Ok(ids) => Ok(ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>()),
            Err((reason, ids)) => Err((reason, ids.iter().map(|id| (*id).to_owned()).collect())),
        };
        if actual != expected {
            failures.push(format!(
                "{}: expected {expected:?}, got {actual:?} ({})",
                case.name, decision.explanation
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

const NO_PERMIT: DenyReason = DenyReason::NoPermit;

#[test]
fn members_by_role_and_group() {
    run(vec![
        Case::new(
            "sales member lists a crm tool",
            "member alice (sales)",
            "search_contacts",
        )
        .listing()
        .allowed_by(&["sales-use-crm"]),
        Case::new(
            "sales member calls a crm write tool",
            "member alice (sales)",
            "update_opportunity",
        )
        .allowed_by(&["sales-use-crm"]),
        Case::new(
            "member without the role does not list it",
            "member carol (no role)",
            "search_contacts",
        )
        .listing()
        .denied(NO_PERMIT, &[]),
        Case::new(
            "member without the role cannot call it by name",
            "member carol (no role)",
            "search_contacts",
        )
        .denied(NO_PERMIT, &[]),
        Case::new(
            "sales member has no database access",
            "member alice (sales)",
            "query",
        )
        .denied(NO_PERMIT, &[]),
    ]);
}

#[test]
fn read_tools_allowed_and_write_tools_denied_by_annotation() {
    run(vec![
        Case::new("analyst lists a read tool", "member bob (analyst)", "query")
            .listing()
            .allowed_by(&["analysts-read-db"]),
        Case::new("analyst calls a read tool", "member bob (analyst)", "query")
            .allowed_by(&["analysts-read-db"]),
        Case::new(
            "analyst does not list a write tool",
            "member bob (analyst)",
            "drop_table",
        )
        .listing()
        .denied(NO_PERMIT, &[]),
        Case::new(
            "analyst cannot call a write tool",
            "member bob (analyst)",
            "drop_table",
        )
        .denied(NO_PERMIT, &[]),
        Case::new("agent reads crm", "agent crm-bot", "get_account")
            .allowed_by(&["crm-bot-reads-crm"]),
        Case::new(
            "agent limited to reads is refused a write",
            "agent crm-bot",
            "update_opportunity",
        )
        .denied(NO_PERMIT, &[]),
        Case::new(
            "an unset read-only hint is not read-only",
            "agent crm-bot",
            "unannotated",
        )
        .denied(NO_PERMIT, &[]),
        Case::new(
            "agent is forbidden a destructive tool",
            "agent crm-bot",
            "delete_account",
        )
        .denied(DenyReason::Forbidden, &["no-destructive-agents"]),
    ]);
}

#[test]
fn agents_alone_and_acting_for_members() {
    run(vec![
        Case::new(
            "agent alone has no grant",
            "agent assistant alone",
            "search_contacts",
        )
        .listing()
        .denied(NO_PERMIT, &[]),
        Case::new(
            "agent for a sales member lists crm",
            "assistant for alice",
            "search_contacts",
        )
        .listing()
        .allowed_by(&["delegated-sales"]),
        Case::new(
            "agent for a sales member writes crm",
            "assistant for alice",
            "update_opportunity",
        )
        .allowed_by(&["delegated-sales"]),
        Case::new(
            "agent for a sales member is still no destructive agent",
            "assistant for alice",
            "delete_account",
        )
        .denied(DenyReason::Forbidden, &["no-destructive-agents"]),
        Case::new(
            "agent for a member without the role",
            "assistant for carol",
            "search_contacts",
        )
        .denied(NO_PERMIT, &[]),
        Case::new(
            "the member's own policy does not extend to the agent",
            "assistant for alice",
            "query",
        )
        .denied(NO_PERMIT, &[]),
    ]);
}

#[test]
fn each_argument_constraint_is_enforced_at_call_time_only() {
    let deny = |kind: &'static str| -> (DenyReason, &'static [&'static str]) {
        let id: &'static str = match kind {
            "enum" => "constraint/crm/update_opportunity/stage/enum",
            "max" => "constraint/crm/update_opportunity/amount/max",
            "min" => "constraint/crm/update_opportunity/amount/min",
            // A value max and min cannot compare is refused by both.
            "max+min" => {
                return (
                    DenyReason::ArgumentConstraint,
                    &[
                        "constraint/crm/update_opportunity/amount/max",
                        "constraint/crm/update_opportunity/amount/min",
                    ],
                );
            }
            "max_length" => "constraint/crm/update_opportunity/note/max_length",
            "pattern" => "constraint/crm/update_opportunity/account_id/pattern",
            _ => "constraint/crm/update_opportunity/region/prefix",
        };
        (DenyReason::ArgumentConstraint, Box::leak(Box::new([id])))
    };
    let alice = "member alice (sales)";
    let update = "update_opportunity";
    let mut cases = vec![
        Case::new("listing ignores constraints", alice, update).listing().allowed_by(&["sales-use-crm"]),
        Case::new("absent arguments are not constrained", alice, update).allowed_by(&["sales-use-crm"]),
        Case::new("all arguments within their constraints", alice, update)
            .with(json!({"stage": "won", "amount": 100000, "note": "exactly twenty chars", "account_id": "ACC-0042", "region": "eu-west-1"}))
            .allowed_by(&["sales-use-crm"]),
        Case::new("min is inclusive", alice, update).with(json!({"amount": 0})).allowed_by(&["sales-use-crm"]),
        Case::new("decimal within max", alice, update).with(json!({"amount": 99999.5})).allowed_by(&["sales-use-crm"]),
    ];
    for (name, arguments, kind) in [
        (
            "enum refuses another value",
            json!({"stage": "stalled"}),
            "enum",
        ),
        ("enum compares types too", json!({"stage": 1}), "enum"),
        (
            "max refuses a larger number",
            json!({"amount": 100000.01}),
            "max",
        ),
        (
            "max and min refuse a string",
            json!({"amount": "5"}),
            "max+min",
        ),
        (
            "numbers a decimal cannot hold exactly are refused",
            json!({"amount": 1.000001}),
            "max+min",
        ),
        ("min refuses a smaller number", json!({"amount": -1}), "min"),
        (
            "max_length counts characters",
            json!({"note": "twenty-one characters"}),
            "max_length",
        ),
        (
            "pattern refuses a mismatch",
            json!({"account_id": "ACC-42"}),
            "pattern",
        ),
        (
            "pattern refuses a non-string",
            json!({"account_id": 4242}),
            "pattern",
        ),
        (
            "prefix refuses another prefix",
            json!({"region": "us-east-1"}),
            "prefix",
        ),
        (
            "prefix is literal, not a wildcard",
            json!({"region": "eu*"}),
            "prefix",
        ),
    ] {
        let (reason, ids) = deny(kind);
        cases.push(
            Case::new(name, alice, update)
                .with(arguments)
                .denied(reason, ids),
        );
    }
    cases.push(
        Case::new("several violations are all named", alice, update)
            .with(json!({"stage": "stalled", "note": "this note is far too long"}))
            .denied(
                DenyReason::ArgumentConstraint,
                &[
                    "constraint/crm/update_opportunity/note/max_length",
                    "constraint/crm/update_opportunity/stage/enum",
                ],
            ),
    );
    cases.push(
        Case::new(
            "constraints bind agents for members too",
            "assistant for alice",
            update,
        )
        .with(json!({"stage": "stalled"}))
        .denied(
            DenyReason::ArgumentConstraint,
            &["constraint/crm/update_opportunity/stage/enum"],
        ),
    );
    run(cases);
}

#[test]
fn time_windows() {
    let hour = Duration::from_secs(3600);
    let bob = "member bob (analyst)";
    run(vec![
        Case::new("within business hours", bob, "query").allowed_by(&["analysts-read-db"]),
        Case::new("last minute of the window", bob, "query")
            .at(business_hours() + 8 * hour - Duration::from_secs(60))
            .allowed_by(&["analysts-read-db"]),
        Case::new("after hours", bob, "query")
            .at(business_hours() + 8 * hour)
            .denied(DenyReason::OutsideTimeWindow, &["db-business-hours"]),
        Case::new("before hours", bob, "query")
            .at(business_hours() - 3 * hour)
            .denied(DenyReason::OutsideTimeWindow, &["db-business-hours"]),
        Case::new("weekend", bob, "query")
            .at(business_hours() + 4 * 24 * hour)
            .denied(DenyReason::OutsideTimeWindow, &["db-business-hours"]),
        Case::new("hidden from the list after hours", bob, "query")
            .listing()
            .at(business_hours() + 8 * hour)
            .denied(DenyReason::OutsideTimeWindow, &["db-business-hours"]),
    ]);
}

#[test]
fn source_networks() {
    let bob = "member bob (analyst)";
    run(vec![
        Case::new("office network", bob, "query")
            .from(Some("10.200.0.1"))
            .allowed_by(&["analysts-read-db"]),
        Case::new("internet", bob, "query")
            .from(Some("203.0.113.9"))
            .denied(DenyReason::SourceNotAllowed, &["db-office-network"]),
        Case::new("ipv6", bob, "query")
            .from(Some("2001:db8::1"))
            .denied(DenyReason::SourceNotAllowed, &["db-office-network"]),
        Case::new("unknown source", bob, "query")
            .from(None)
            .denied(DenyReason::SourceNotAllowed, &["db-office-network"]),
        Case::new(
            "unrestricted connector from anywhere",
            "member alice (sales)",
            "search_contacts",
        )
        .from(Some("203.0.113.9"))
        .allowed_by(&["sales-use-crm"]),
    ]);
}

#[test]
fn scopes_gate_tools_and_name_the_scope_to_ask_for() {
    let alice = "member alice (sales)";
    run(vec![
        Case::new("read scope grants a read tool", alice, "search_contacts")
            .scopes(&["crm:read"])
            .allowed_by(&["sales-use-crm"]),
        Case::new("read scope lacks a write tool", alice, "update_opportunity")
            .scopes(&["crm:read"])
            .denied(DenyReason::InsufficientScope, &["sales-use-crm"]),
        Case::new("a tool no scope names needs none", alice, "unannotated")
            .scopes(&[])
            .allowed_by(&["sales-use-crm"]),
        Case::new(
            "scope never replaces policy",
            "member carol (no role)",
            "search_contacts",
        )
        .scopes(&["crm:read"])
        .denied(NO_PERMIT, &[]),
    ]);
}

#[test]
fn insufficient_scope_names_the_scope_and_keeps_the_tool_listed() {
    let evaluator = fixture::evaluator();
    let principal = fixture::principal("member alice (sales)");
    let (server, connector, tool) = fixture::tool("update_opportunity");
    let target = Target::tool(server, connector, tool);
    let context = RequestContext::listing(business_hours(), office());
    let scopes = vec!["crm:read".to_owned()];
    let decision = evaluator.decide(&Request {
        principal: &principal,
        scopes: &scopes,
        action: Action::CallTool,
        target: &target,
        context: &context,
    });
    assert_eq!(decision.reason, Some(DenyReason::InsufficientScope));
    assert_eq!(decision.required_scopes, ["crm:write"]);
    assert!(
        decision.is_listed(),
        "step-up is possible, so the tool stays listed"
    );
    assert_eq!(
        evaluator.scopes_for_tool("crm", "update_opportunity"),
        ["crm:write"]
    );
    assert!(evaluator.scopes_for_tool("crm", "unannotated").is_empty());
    assert!(evaluator.scopes_for_tool("db", "query").is_empty());
}

#[test]
fn explanation_is_for_audit_and_reason_class_for_clients() {
    let evaluator = fixture::evaluator();
    let principal = fixture::principal("assistant for alice");
    let (server, connector, tool) = fixture::tool("delete_account");
    let target = Target::tool(server, connector, tool);
    let context = RequestContext::call(serde_json::Map::new(), business_hours(), office());
    let decision = evaluator.decide(&Request {
        principal: &principal,
        scopes: &fixture::all_scopes(),
        action: Action::CallTool,
        target: &target,
        context: &context,
    });
    assert!(!decision.allowed);
    assert_eq!(decision.policy_ids, ["no-destructive-agents"]);
    assert_eq!(decision.policy_version, 1);
    for needle in [
        "deny",
        "Agent::\"assistant\"",
        "call_tool",
        "Tool::\"crm/delete_account\"",
        "no-destructive-agents",
        "reason=forbidden",
    ] {
        assert!(
            decision.explanation.contains(needle),
            "{needle} missing from {}",
            decision.explanation
        );
    }
    let message = decision
        .reason
        .unwrap()
        .client_message("tool", "delete_account");
    assert_eq!(message, "tool delete_account is not permitted for you");
    assert!(!message.contains("no-destructive-agents"));
}

#[test]
fn list_time_filtering_and_call_time_checks_agree() {
    let evaluator = fixture::evaluator();
    let scopes = fixture::all_scopes();
    let context = RequestContext::listing(business_hours(), office());
    for (label, principal) in fixture::principals() {
        for server in ["crm", "db"] {
            let tools: Vec<_> = fixture::tools()
                .into_iter()
                .filter(|(s, _, _)| *s == server)
                .collect();
            let listed = evaluator.visible_tools(
                &principal,
                &scopes,
                server,
                tools.iter().map(|(_, connector, tool)| (*connector, tool)),
                &context,
            );
            for (_, connector, tool) in &tools {
                let target = Target::tool(server, connector, tool.clone());
                let call = RequestContext::call(serde_json::Map::new(), business_hours(), office());
                let allowed = evaluator
                    .decide(&Request {
                        principal: &principal,
                        scopes: &scopes,
                        action: Action::CallTool,
                        target: &target,
                        context: &call,
                    })
                    .allowed;
                let shown = listed.iter().any(|listed| listed.name == tool.name);
                assert_eq!(
                    shown, allowed,
                    "{label}: {} listed={shown} callable={allowed}",
                    tool.name
                );
            }
        }
    }
}

#[test]
fn batch_answers_exactly_what_single_decisions_answer() {
    let evaluator = fixture::evaluator();
    let principal = fixture::principal("member bob (analyst)");
    let targets: Vec<Target> = fixture::tools()
        .into_iter()
        .map(|(server, connector, tool)| Target::tool(server, connector, tool))
        .collect();
    let context = RequestContext::listing(business_hours(), office());
    let scopes = fixture::all_scopes();
    let batch = evaluator.decide_batch(
        &principal,
        &scopes,
        targets.iter().map(|t| (Action::CallTool, t)),
        &context,
    );
    for (target, batched) in targets.iter().zip(batch) {
        let single = evaluator.decide(&Request {
            principal: &principal,
            scopes: &scopes,
            action: Action::CallTool,
            target,
            context: &context,
        });
        assert_eq!(batched, single);
    }
}

#[test]
fn virtual_server_actions() {
    let evaluator = fixture::evaluator();
    let context = RequestContext::listing(business_hours(), office());
    let crm = Target::virtual_server("crm");
    let decide = |principal: &str, action| {
        evaluator
            .decide(&Request {
                principal: &fixture::principal(principal),
                scopes: &[],
                action,
                target: &crm,
                context: &context,
            })
            .allowed
    };
    assert!(decide("member alice (sales)", Action::Connect));
    assert!(decide("member alice (sales)", Action::ListTools));
    assert!(!decide("member carol (no role)", Action::Connect));
}

#[test]
fn a_target_of_the_wrong_kind_is_an_evaluation_error_not_an_allow() {
    let evaluator = fixture::evaluator();
    let context = RequestContext::listing(business_hours(), office());
    let decision = evaluator.decide(&Request {
        principal: &fixture::principal("member alice (sales)"),
        scopes: &[],
        action: Action::CallTool,
        target: &Target::virtual_server("crm"),
        context: &context,
    });
    assert!(!decision.allowed);
    assert_eq!(decision.reason, Some(DenyReason::EvaluationError));
}

#[test]
fn a_forbid_that_fails_to_evaluate_denies_instead_of_being_skipped() {
    // Cedar skips a policy whose evaluation errors; for a forbid that would allow
    // what it meant to refuse, so Gatehouse fails closed.
    let mut document = policy::PolicyDocument::default();
    document.add_cedar(
        "test",
        r#"@id("everyone") permit (principal, action, resource);
           @id("overflows-when-delegated") forbid (principal, action, resource)
           when { context.delegation_depth * 9223372036854775807 * 2 > 0 };"#,
        policy::PolicyOrigin::Config,
    );
    let evaluator = policy::Evaluator::build(&document, 1, std::time::UNIX_EPOCH).unwrap();
    let context = RequestContext::listing(business_hours(), office());
    let crm = Target::virtual_server("crm");
    let decide = |principal: &str| {
        evaluator.decide(&Request {
            principal: &fixture::principal(principal),
            scopes: &[],
            action: Action::Connect,
            target: &crm,
            context: &context,
        })
    };
    assert!(
        decide("member alice (sales)").allowed,
        "no delegation: nothing errors"
    );
    let delegated = decide("assistant for alice");
    assert!(!delegated.allowed);
    assert_eq!(delegated.reason, Some(DenyReason::EvaluationError));
    assert!(
        delegated.explanation.contains("overflows-when-delegated"),
        "{}",
        delegated.explanation
    );
}
