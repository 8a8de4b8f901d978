//! Rules: the most specific one wins per direction, and bad config names its field.

use dlp::{Action, Direction, Dlp, DlpConfig, Target};
use serde_json::json;

fn target<'a>(connector: &'a str, tool: Option<&'a str>) -> Target<'a> {
    Target {
        virtual_server: "crm",
        connector,
        tool,
    }
}

#[test]
fn the_most_specific_rule_decides_each_direction() {
    let dlp = super::dlp(json!({"rules": [
        {"virtual_server": "crm", "input": {"action": "flag"}, "output": {"action": "mask"}},
        {"virtual_server": "crm", "connector": "db", "input": {"action": "mask"}},
        {"virtual_server": "crm", "connector": "db", "tool": "db__delete_*", "input": {"action": "block", "detectors": ["card"]}},
        {"virtual_server": "other", "input": {"action": "block"}}
    ]}));
    let action = |connector, tool, direction| {
        dlp.side(&target(connector, tool), direction)
            .map(|side| side.action)
    };
    for (connector, tool, direction, expected) in [
        (
            "web",
            Some("web__get"),
            Direction::Input,
            Some(Action::Flag),
        ),
        ("db", Some("db__get"), Direction::Input, Some(Action::Mask)),
        (
            "db",
            Some("db__delete_row"),
            Direction::Input,
            Some(Action::Block),
        ),
        (
            "db",
            Some("db__delete_row"),
            Direction::Output,
            Some(Action::Mask),
        ),
        ("db", None, Direction::Input, Some(Action::Mask)),
    ] {
        assert_eq!(
            action(connector, tool, direction),
            expected,
            "{connector} {tool:?} {direction:?}"
        );
    }
    assert!(dlp.covers("crm") && dlp.covers("other") && !dlp.covers("public"));
    let unruled = Target {
        virtual_server: "public",
        connector: "db",
        tool: None,
    };
    assert!(dlp.side(&unruled, Direction::Input).is_none());
}

#[test]
fn invalid_rules_are_refused_naming_the_field() {
    for (config, field) in [
        (
            json!({"rules": [{"virtual_server": "crm", "input": {"action": "block", "detectors": ["cards"]}}]}),
            "dlp.rules[0].input.detectors",
        ),
        (
            json!({"rules": [{"virtual_server": "crm"}]}),
            "dlp.rules[0]",
        ),
        (
            json!({"rules": [{"virtual_server": "crm", "tool": "a[", "input": {"action": "mask"}}]}),
            "dlp.rules[0].tool",
        ),
        (
            json!({"rules": [{"virtual_server": "crm", "hook": {"url": "ftp://x", "on_error": "fail_open"}}]}),
            "dlp.rules[0].hook.url",
        ),
        (
            json!({"custom": [{"name": "emp", "pattern": "("}]}),
            "dlp.custom[0].pattern",
        ),
    ] {
        let config: DlpConfig = serde_json::from_value(config).unwrap();
        let error = Dlp::new(&config).unwrap_err().to_string();
        assert!(error.starts_with(&format!("{field}:")), "{error}");
    }
    let missing_on_error = serde_json::from_value::<DlpConfig>(
        json!({"rules": [{"virtual_server": "crm", "hook": {"url": "http://x"}}]}),
    );
    assert!(missing_on_error.is_err(), "a hook must say how it fails");
}
