//! One policy decision in-process, against a realistic set of 50 policies (role
//! and group grants, read/write by annotation, time windows, source networks,
//! agent delegation, and argument constraints compiled into policy).
//!
//! Criterion reports the mean; the per-decision p50/p99 (the issue's target is
//! p99 ≤ 50 µs) come from timing 100,000 single decisions (`DECISIONS`) into a histogram.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::{Duration, Instant, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use hdrhistogram::Histogram;
use policy::{
    Action, Agent, Annotations, Evaluator, Member, PolicyDocument, PolicyOrigin, Principal,
    Request, RequestContext, Target, Tool, VirtualServerPolicy,
};
use serde_json::json;

fn policies() -> String {
    let mut text = String::new();
    for server in 0..8 {
        text.push_str(&format!(
            r#"@id("role-{server}") permit (principal in Role::"team-{server}", action, resource in VirtualServer::"vs-{server}");
@id("readers-{server}") permit (principal in Group::"readers-{server}", action == Action::"call_tool", resource in VirtualServer::"vs-{server}") when {{ resource has read_only && resource.read_only }};
@id("delegated-{server}") permit (principal is Agent, action == Action::"call_tool", resource in VirtualServer::"vs-{server}") when {{ principal has acting_for && principal.acting_for in Role::"team-{server}" && context.delegation_depth <= 2 }};
@id("hours-{server}") @reason("outside_time_window") forbid (principal, action == Action::"call_tool", resource in Connector::"db-{server}") unless {{ context.time.toTime() >= duration("7h") && context.time.toTime() < duration("19h") }};
@id("network-{server}") @reason("source_not_allowed") forbid (principal, action == Action::"call_tool", resource in Connector::"db-{server}") unless {{ context has source_address && (context.source_address.isInRange(ip("10.0.0.0/8")) || context.source_address.isInRange(ip("192.168.0.0/16"))) }};
"#
        ));
    }
    text.push_str(
        r#"@id("no-destructive-agents") forbid (principal is Agent, action == Action::"call_tool", resource) when { resource has destructive && resource.destructive };
@id("strong-auth-agents") forbid (principal is Agent, action, resource) when { context.authentication_method == "none" };
@id("mfa-for-destructive") @reason("forbidden") forbid (principal is Member, action == Action::"call_tool", resource) when { resource has destructive && resource.destructive && !principal.authentication_methods.contains("mfa") };
@id("admins") permit (principal in Role::"admin", action in [Action::"connect", Action::"list_tools"], resource);
"#,
    );
    text
}

fn evaluator() -> Evaluator {
    let mut document = PolicyDocument::default();
    document.add_cedar("bench", &policies(), PolicyOrigin::Config);
    let server: VirtualServerPolicy = serde_json::from_value(json!({
        "constraints": {"update_opportunity": {
            "stage": {"enum": ["open", "won", "lost"]},
            "amount": {"max": 100000, "min": 0},
            "note": {"max_length": 200},
            "account_id": {"pattern": "^ACC-[0-9]{4}$"},
            "region": {"prefix": "eu-"}
        }},
        "scopes": {"crm:write": ["update_opportunity"]}
    }))
    .unwrap();
    document.virtual_servers.insert("vs-3".to_owned(), server);
    let evaluator = Evaluator::build(&document, 1, UNIX_EPOCH).unwrap();
    assert_eq!(
        evaluator.snapshot().policies.len(),
        50,
        "a realistic set of 50 policies"
    );
    evaluator
}

fn bench(c: &mut Criterion) {
    let evaluator = evaluator();
    let member = Member::new("alice", &["staff", "readers-1"], &["team-3"]);
    let principal = Principal::agent_for(Agent::new("assistant", Some("carol")), member);
    let target = Target::tool(
        "vs-3",
        "crm",
        Tool::new("update_opportunity", Annotations::write(false)),
    );
    let arguments = json!({"stage": "won", "amount": 1250.5, "note": "renewal", "account_id": "ACC-0042", "region": "eu-west-1"});
    let context = RequestContext::call(
        arguments.as_object().unwrap().clone(),
        UNIX_EPOCH + Duration::from_secs(1_764_669_600),
        Some("10.1.2.3".parse().unwrap()),
    );
    let scopes = vec!["crm:write".to_owned()];
    let request = Request {
        principal: &principal,
        scopes: &scopes,
        action: Action::CallTool,
        target: &target,
        context: &context,
    };
    let decision = evaluator.decide(&request);
    assert!(decision.allowed, "{}", decision.explanation);

    c.bench_function(
        "decide call_tool (50 policies, 5 constrained arguments)",
        |b| {
            b.iter(|| black_box(evaluator.decide(black_box(&request))));
        },
    );

    // `DECISIONS=0 valgrind --tool=callgrind …` and `DECISIONS=2000 …` differ by exactly 2,000
    // decisions: the repeatable instruction count per decision.
    let decisions: u64 = std::env::var("DECISIONS")
        .map(|count| count.parse().expect("DECISIONS is a count"))
        .unwrap_or(100_000);
    let mut histogram = Histogram::<u64>::new(3).unwrap();
    for _ in 0..decisions {
        let start = Instant::now();
        black_box(evaluator.decide(black_box(&request)));
        histogram
            .record(u64::try_from(start.elapsed().as_nanos()).unwrap())
            .unwrap();
    }
    eprintln!(
        "decide call_tool per decision: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs ({decisions} decisions)",
        histogram.value_at_quantile(0.50) as f64 / 1000.0,
        histogram.value_at_quantile(0.99) as f64 / 1000.0,
        histogram.value_at_quantile(0.999) as f64 / 1000.0,
        histogram.max() as f64 / 1000.0,
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
