use std::collections::BTreeMap;
use std::sync::Arc;

use rmcp::model::Tool;

use super::*;

fn tool(name: &str) -> Tool {
    Tool::new(
        name.to_owned(),
        format!("{name} description"),
        Arc::new(serde_json::Map::new()),
    )
}

fn member(connector: &str) -> MemberSpec {
    MemberSpec {
        connector: connector.to_owned(),
        prefix: None,
        allow: None,
        deny: vec![],
        rename: BTreeMap::new(),
        describe: BTreeMap::new(),
    }
}

#[test]
fn the_default_prefix_is_the_connector_name_and_two_underscores() {
    let curation = Curation::try_from(&member("fast")).unwrap();
    assert_eq!(curation.expose(&tool("add")).unwrap().name, "fast__add");
}

#[test]
fn an_empty_prefix_keeps_original_names() {
    let mut spec = member("fixture");
    spec.prefix = Some(String::new());
    let curation = Curation::try_from(&spec).unwrap();
    assert_eq!(
        curation.expose(&tool("test_simple_text")).unwrap().name,
        "test_simple_text"
    );
}

#[test]
fn deny_wins_over_allow_and_rules_use_original_names() {
    let mut spec = member("ev");
    spec.allow = Some(vec!["get-*".into(), "echo".into()]);
    spec.deny = vec!["get-env".into()];
    spec.rename = BTreeMap::from([("echo".into(), "say".into())]);
    spec.describe = BTreeMap::from([("echo".into(), "Repeats".into())]);
    let curation = Curation::try_from(&spec).unwrap();
    assert!(curation.expose(&tool("get-env")).is_none(), "denied");
    assert!(curation.expose(&tool("add")).is_none(), "not allowed");
    assert_eq!(
        curation.expose(&tool("get-sum")).unwrap().name,
        "ev__get-sum"
    );
    let said = curation.expose(&tool("echo")).unwrap();
    assert_eq!(said.name, "ev__say");
    assert_eq!(said.description.as_deref(), Some("Repeats"));
}

#[test]
fn the_catalogue_routes_exposed_names_back_to_member_and_original() {
    let mut renamed = member("a");
    renamed.rename = BTreeMap::from([("echo".into(), "say".into())]);
    let (first, second) = (
        Curation::try_from(&renamed).unwrap(),
        Curation::try_from(&member("b")).unwrap(),
    );
    let (a_tools, b_tools) = (vec![tool("echo")], vec![tool("echo")]);
    let catalogue =
        ToolCatalogue::build([(&first, a_tools.as_slice()), (&second, b_tools.as_slice())]);
    let names: Vec<_> = catalogue
        .tools()
        .iter()
        .map(|tool| tool.name.to_string())
        .collect();
    assert_eq!(names, ["a__say", "b__echo"]);
    assert_eq!(
        catalogue.route("a__say"),
        Some(&ToolRoute {
            member: 0,
            original: "echo".into(),
            headed: false,
        })
    );
    assert_eq!(
        catalogue.route("b__echo"),
        Some(&ToolRoute {
            member: 1,
            original: "echo".into(),
            headed: false,
        })
    );
    assert_eq!(
        catalogue.route("a__echo"),
        None,
        "the old name is gone after a rename"
    );
}

#[test]
fn a_name_clash_keeps_the_first_member() {
    let mut first = member("a");
    first.prefix = Some(String::new());
    let mut second = member("b");
    second.prefix = Some(String::new());
    let (first, second) = (
        Curation::try_from(&first).unwrap(),
        Curation::try_from(&second).unwrap(),
    );
    let tools = vec![tool("echo")];
    let catalogue = ToolCatalogue::build([(&first, tools.as_slice()), (&second, tools.as_slice())]);
    assert_eq!(catalogue.tools().len(), 1);
    assert_eq!(catalogue.route("echo").unwrap().member, 0);
}

#[test]
fn a_tool_whose_schema_promotes_an_argument_to_a_header_is_marked_headed() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "text": {"type": "string"}
        }
    });
    let serde_json::Value::Object(schema) = schema else {
        unreachable!("a JSON object literal");
    };
    let headed = Tool::new("deploy", "", Arc::new(schema));
    let plain = tool("echo");
    let curation = Curation::try_from(&member("a")).expect("valid curation");
    let tools = [headed, plain];
    let catalogue = ToolCatalogue::build([(&curation, &tools[..])]);
    assert!(
        catalogue
            .route("a__deploy")
            .is_some_and(|route| route.headed)
    );
    assert!(
        catalogue
            .route("a__echo")
            .is_some_and(|route| !route.headed)
    );
}
