use super::rule::{Payer, Rule};
use super::*;

fn rules(yaml: &str) -> Vec<Rule> {
    let spec: RateLimitsSpec = serde_norway::from_str(yaml).unwrap();
    spec.rules
        .iter()
        .map(|rule| Rule::try_from(rule).unwrap())
        .collect()
}

fn alice() -> Payer {
    Payer {
        member: Some("alice".into()),
        agent: None,
        bundle_quota: None,
        client: Some("claude".into()),
        groups: vec!["sales".into()],
        source_ip: Some("192.0.2.7".parse().unwrap()),
    }
}

fn anonymous(address: &str) -> Payer {
    Payer {
        source_ip: Some(address.parse().unwrap()),
        ..Payer::default()
    }
}

const TOOL: Charge<'static> = Charge {
    virtual_server: "crm",
    item: Item::Tool("update_contact"),
};

#[test]
fn each_dimension_keys_its_own_bucket() {
    let rules = rules(
        r#"
rules:
  - {name: per-member, per: member, rate: 60/minute}
  - {name: per-member-tool, per: [member, tool], rate: 60/minute}
  - {name: sales, per: "group:sales", rate: 600/minute}
  - {name: crm, per: virtual_server, rate: 6000/minute}
  - {name: all, per: global, rate: 6000/minute}
"#,
    );
    let keys: Vec<Option<String>> = rules
        .iter()
        .map(|rule| rule.bucket(&TOOL, &alice()))
        .collect();
    assert_eq!(
        keys,
        [
            Some("per-member|member=alice".to_owned()),
            Some("per-member-tool|member=alice|tool=update_contact".to_owned()),
            Some("sales|group=sales".to_owned()),
            Some("crm|virtual_server=crm".to_owned()),
            Some("all".to_owned()),
        ]
    );
    assert_eq!(rules[1].class, "member+tool");
}

#[test]
fn a_rule_skips_calls_its_filters_or_identities_miss() {
    let rules = rules(
        r#"
rules:
  - {name: updates, per: member, virtual_server: crm, tool: "update_*", rate: 1/second}
  - {name: agents, per: agent, rate: 1/second}
  - {name: hr-group, per: "group:hr", rate: 1/second}
"#,
    );
    let [updates, agents, hr] = &rules[..] else {
        panic!("three rules");
    };
    assert!(updates.bucket(&TOOL, &alice()).is_some());
    let read = Charge {
        item: Item::Tool("get_contact"),
        ..TOOL
    };
    assert_eq!(updates.bucket(&read, &alice()), None, "another tool");
    let prompt = Charge {
        item: Item::Prompt("update_summary"),
        ..TOOL
    };
    assert_eq!(
        updates.bucket(&prompt, &alice()),
        None,
        "a tool rule meters tools only"
    );
    let elsewhere = Charge {
        virtual_server: "hr",
        ..TOOL
    };
    assert_eq!(updates.bucket(&elsewhere, &alice()), None, "another server");
    assert_eq!(agents.bucket(&TOOL, &alice()), None, "a member is no agent");
    assert_eq!(hr.bucket(&TOOL, &alice()), None, "not in the group");
    assert_eq!(
        updates.bucket(&TOOL, &Payer::default()),
        None,
        "anonymous callers have no member bucket"
    );
}

#[test]
fn an_identity_cannot_spell_its_way_into_another_bucket() {
    let rules = rules("rules: [{name: pair, per: [member, client], rate: 1/second}]");
    let forged = Payer {
        member: Some("alice|client=claude".into()),
        client: Some("other".into()),
        ..Payer::default()
    };
    assert_ne!(
        rules[0].bucket(&TOOL, &forged),
        rules[0].bucket(&TOOL, &alice())
    );
}

#[test]
fn a_bad_per_value_is_refused_with_the_choices() {
    let error =
        serde_norway::from_str::<RateLimitsSpec>("rules: [{name: x, per: team, rate: 1/second}]")
            .unwrap_err()
            .to_string();
    assert!(error.contains("unknown `per` value `team`"), "{error}");
    assert!(error.contains("group:<name>"), "{error}");
}

#[test]
fn waits_round_up_to_whole_seconds() {
    assert_eq!(whole_seconds(Duration::from_millis(1)), 1);
    assert_eq!(whole_seconds(Duration::from_millis(1000)), 1);
    assert_eq!(whole_seconds(Duration::from_millis(1001)), 2);
}

#[test]
fn anonymous_callers_are_metered_per_address_and_authenticated_ones_by_identity() {
    let rules = rules(
        r#"
rules:
  - {name: anon, per: source_ip, callers: anonymous, rate: 10/minute}
  - {name: known, per: member, callers: authenticated, rate: 60/minute}
  - {name: everyone, per: source_ip, rate: 600/minute}
"#,
    );
    let keys = |payer: &Payer| -> Vec<Option<String>> {
        rules.iter().map(|rule| rule.bucket(&TOOL, payer)).collect()
    };
    assert_eq!(
        keys(&anonymous("198.51.100.4")),
        [
            Some("anon|source_ip=198.51.100.4".to_owned()),
            None,
            Some("everyone|source_ip=198.51.100.4".to_owned()),
        ]
    );
    assert_eq!(
        keys(&alice()),
        [
            None,
            Some("known|member=alice".to_owned()),
            Some("everyone|source_ip=192.0.2.7".to_owned()),
        ]
    );
    assert_eq!(rules[0].class, "source_ip");
}

#[test]
fn an_ipv6_caller_is_metered_by_its_64_and_a_mapped_ipv4_as_ipv4() {
    let rules = rules("rules:\n  - {name: anon, per: source_ip, rate: 10/minute}\n");
    let key = |address: &str| rules[0].bucket(&TOOL, &anonymous(address));
    assert_eq!(
        key("2001:db8:1:2:aaaa::1"),
        key("2001:db8:1:2:ffff:ffff:ffff:ffff")
    );
    assert_eq!(
        key("2001:db8:1:2::1").as_deref(),
        Some("anon|source_ip=2001:db8:1:2::/64")
    );
    assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
    assert_eq!(
        key("::ffff:203.0.113.9").as_deref(),
        Some("anon|source_ip=203.0.113.9")
    );
}

#[test]
fn a_rule_without_a_recorded_address_skips_the_call() {
    let rules = rules("rules:\n  - {name: anon, per: source_ip, rate: 10/minute}\n");
    assert_eq!(rules[0].bucket(&TOOL, &Payer::default()), None);
}

#[test]
fn a_bundles_own_budget_has_a_bucket_no_rule_can_name() {
    let quota = limits::Quota::new("2/minute".parse().unwrap(), 2);
    let bundle = Payer {
        agent: Some("agent_1".into()),
        client: Some("agent_1".into()),
        bundle_quota: quota,
        ..Payer::default()
    };
    let (key, budget) = bundle.bundle_budget().expect("a budget");
    assert_eq!(Some(budget), quota);
    let rules = rules("rules: [{name: agent-quota, per: agent, rate: 1/second}]");
    assert_ne!(rules[0].bucket(&TOOL, &bundle), Some(key));
    assert!(alice().bundle_budget().is_none(), "no budget without one");
}
