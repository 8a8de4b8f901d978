//! A CRM virtual server and a database connector, with the policies, constraints
//! and scopes the decision tables are checked against.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use policy::{
    Agent, Annotations, Evaluator, Member, PolicyDocument, PolicyOrigin, Principal, Tool,
    VirtualServerPolicy,
};
use serde_json::json;

pub(crate) const POLICIES: &str = r#"
@id("sales-use-crm")
permit (principal in Role::"sales", action in [Action::"connect", Action::"list_tools", Action::"call_tool"], resource in VirtualServer::"crm");

@id("analysts-read-db")
permit (principal in Group::"analysts", action == Action::"call_tool", resource in Connector::"db")
when { resource has read_only && resource.read_only };

@id("crm-bot-reads-crm")
permit (principal == Agent::"crm-bot", action == Action::"call_tool", resource in VirtualServer::"crm")
when { resource has read_only && resource.read_only };

@id("delegated-sales")
permit (principal is Agent, action == Action::"call_tool", resource in VirtualServer::"crm")
when { principal has acting_for && principal.acting_for in Role::"sales" };

@id("no-destructive-agents")
forbid (principal is Agent, action == Action::"call_tool", resource)
when { resource has destructive && resource.destructive };

@id("db-business-hours")
@reason("outside_time_window")
forbid (principal, action == Action::"call_tool", resource in Connector::"db")
unless { context.day_of_week <= 5 && context.time.toTime() >= duration("8h") && context.time.toTime() < duration("18h") };

@id("db-office-network")
@reason("source_not_allowed")
forbid (principal, action == Action::"call_tool", resource in Connector::"db")
unless { context has source_address && context.source_address.isInRange(ip("10.0.0.0/8")) };
"#;

/// Tuesday 2025-12-02 10:00 UTC: inside the database's business hours.
pub(crate) fn business_hours() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_764_669_600)
}

pub(crate) fn office() -> Option<IpAddr> {
    Some("10.1.2.3".parse().unwrap())
}

pub(crate) fn document() -> PolicyDocument {
    let mut document = PolicyDocument::default();
    document.add_cedar("config", POLICIES, PolicyOrigin::Config);
    let crm: VirtualServerPolicy = serde_json::from_value(json!({
        "constraints": {
            "update_opportunity": {
                "stage": {"enum": ["open", "won", "lost"]},
                "amount": {"max": 100000, "min": 0},
                "note": {"max_length": 20},
                "account_id": {"pattern": "^ACC-[0-9]{4}$"},
                "region": {"prefix": "eu-"}
            }
        },
        "scopes": {
            "crm:read": {"description": "Read contacts and accounts", "tools": ["search_contacts", "get_account"]},
            "crm:write": ["update_opportunity", "delete_account"]
        }
    }))
    .unwrap();
    document.virtual_servers = BTreeMap::from([("crm".to_owned(), crm)]);
    document
}

pub(crate) fn evaluator() -> Evaluator {
    Evaluator::build(&document(), 1, UNIX_EPOCH).unwrap()
}

/// Returns the tools of the fixture, each with its virtual server and connector.
pub(crate) fn tools() -> Vec<(&'static str, &'static str, Tool)> {
    vec![
        (
            "crm",
            "crm",
            Tool::new("search_contacts", Annotations::read_only()),
        ),
        (
            "crm",
            "crm",
            Tool::new("get_account", Annotations::read_only()),
        ),
        (
            "crm",
            "crm",
            Tool::new("update_opportunity", Annotations::write(false)),
        ),
        (
            "crm",
            "crm",
            Tool::new("delete_account", Annotations::write(true)),
        ),
        (
            "crm",
            "crm",
            Tool::new("unannotated", Annotations::default()),
        ),
        ("db", "db", Tool::new("query", Annotations::read_only())),
        (
            "db",
            "db",
            Tool::new("drop_table", Annotations::write(true)),
        ),
    ]
}

pub(crate) fn tool(name: &str) -> (&'static str, &'static str, Tool) {
    tools()
        .into_iter()
        .find(|(_, _, tool)| tool.name == name)
        .unwrap()
}

pub(crate) fn alice() -> Member {
    Member::new("alice", &["staff"], &["sales"])
}

pub(crate) fn bob() -> Member {
    Member::new("bob", &["analysts"], &[])
}

pub(crate) fn carol() -> Member {
    Member::new("carol", &["staff"], &[])
}

pub(crate) fn principals() -> Vec<(&'static str, Principal)> {
    vec![
        ("member alice (sales)", Principal::member(alice())),
        ("member bob (analyst)", Principal::member(bob())),
        ("member carol (no role)", Principal::member(carol())),
        (
            "agent crm-bot",
            Principal::agent(Agent::new("crm-bot", Some("alice"))),
        ),
        (
            "agent assistant alone",
            Principal::agent(Agent::new("assistant", Some("carol"))),
        ),
        (
            "assistant for alice",
            Principal::agent_for(Agent::new("assistant", Some("carol")), alice()),
        ),
        (
            "assistant for carol",
            Principal::agent_for(Agent::new("assistant", Some("carol")), carol()),
        ),
    ]
}

pub(crate) fn principal(name: &str) -> Principal {
    principals()
        .into_iter()
        .find(|(label, _)| *label == name)
        .unwrap()
        .1
}

pub(crate) fn all_scopes() -> Vec<String> {
    vec!["crm:read".to_owned(), "crm:write".to_owned()]
}
