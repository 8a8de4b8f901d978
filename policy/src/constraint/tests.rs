use serde_json::json;

use super::*;

fn constraint(value: Value) -> ArgumentConstraint {
    serde_json::from_value(value).unwrap()
}

fn tool(argument: &str, value: Value) -> ToolConstraints {
    [(argument.to_owned(), constraint(value))].into()
}

#[test]
fn every_kind_compiles_to_its_own_forbid_policy() {
    let constraints: Constraints = [(
        "update".to_owned(),
        tool(
            "stage",
            json!({"enum": ["open"], "pattern": "^o", "max": 5, "min": 1, "max_length": 4, "prefix": "o"}),
        ),
    )]
    .into();
    let policies = compile("crm", &constraints).unwrap();
    let ids: Vec<&str> = policies.iter().map(|policy| policy.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "constraint/crm/update/stage/enum",
            "constraint/crm/update/stage/pattern",
            "constraint/crm/update/stage/max",
            "constraint/crm/update/stage/min",
            "constraint/crm/update/stage/max_length",
            "constraint/crm/update/stage/prefix",
        ]
    );
    assert!(
        policies
            .iter()
            .all(|policy| policy.text.contains("@reason(\"argument_constraint\")"))
    );
}

#[test]
fn unusable_constraints_are_reported_with_their_id() {
    let constraints: Constraints = [(
        "update".to_owned(),
        tool(
            "amount",
            json!({"pattern": "(", "max": 0.123456, "enum": []}),
        ),
    )]
    .into();
    let problems = compile("crm", &constraints).unwrap_err();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(
        problems
            .iter()
            .all(|p| p.policy_id.as_deref() == Some("constraint/crm/update/amount"))
    );
}

#[test]
fn unknown_constraint_keys_are_refused() {
    assert!(serde_json::from_value::<ArgumentConstraint>(json!({"maximum": 1})).is_err());
}

#[test]
fn decimals_are_exact_or_absent() {
    let decimal_of = |value: Value| decimal(value.as_number().unwrap());
    assert_eq!(decimal_of(json!(100)).as_deref(), Some("100.0"));
    assert_eq!(decimal_of(json!(-2.5)).as_deref(), Some("-2.5"));
    assert_eq!(decimal_of(json!(0.0001)).as_deref(), Some("0.0001"));
    assert_eq!(decimal_of(json!(0.00001)), None);
    assert_eq!(decimal_of(json!(1e300)), None);
    assert_eq!(decimal_of(json!(u64::MAX)), None);
}

#[test]
fn narrowing_adds_constraints_to_declared_and_undeclared_properties() {
    let schema = json!({
        "type": "object",
        "properties": {
            "stage": {"type": "string", "enum": ["open", "won", "lost", "stalled"]},
            "amount": {"type": "number", "maximum": 1000000, "minimum": 10},
            "note": {"type": "string", "maxLength": 10},
            "account": {"type": "string", "pattern": "^[A-Z]"}
        },
        "required": ["stage"]
    });
    let constraints: ToolConstraints = [
        (
            "stage".to_owned(),
            constraint(json!({"enum": ["open", "won", "reopened"]})),
        ),
        (
            "amount".to_owned(),
            constraint(json!({"max": 5000, "min": 0})),
        ),
        ("note".to_owned(), constraint(json!({"max_length": 200}))),
        (
            "account".to_owned(),
            constraint(json!({"prefix": "ACC-1.", "pattern": "^ACC-[0-9]+$"})),
        ),
        ("region".to_owned(), constraint(json!({"enum": ["eu"]}))),
    ]
    .into();
    let narrowed = narrow_input_schema(&schema, &constraints);
    assert_eq!(
        narrowed,
        json!({
            "type": "object",
            "properties": {
                "stage": {"type": "string", "enum": ["open", "won"]},
                "amount": {"type": "number", "maximum": 5000, "minimum": 10},
                "note": {"type": "string", "maxLength": 10},
                "account": {"type": "string", "pattern": "^[A-Z]", "allOf": [
                    {"pattern": "^ACC-[0-9]+$"},
                    {"pattern": "^ACC\\-1\\."}
                ]},
                "region": {"enum": ["eu"]}
            },
            "required": ["stage"]
        })
    );
}

#[test]
fn narrowing_without_constraints_returns_the_schema_unchanged() {
    let schema = json!({"type": "object", "properties": {"q": {"type": "string"}}});
    assert_eq!(
        narrow_input_schema(&schema, &ToolConstraints::new()),
        schema
    );
}
