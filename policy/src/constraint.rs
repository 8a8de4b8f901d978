//! Per-argument constraints: declared per tool, compiled into Cedar `forbid`
//! policies, and applied to the tool's input schema that clients see.

use std::collections::{BTreeMap, BTreeSet};

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::{Number, Value, json};

use crate::diagnostic::Diagnostic;
use crate::literal;
use crate::snapshot::{PolicyOrigin, PolicyText};

/// Maps tool names (as exposed) to their argument constraints.
pub type Constraints = BTreeMap<String, ToolConstraints>;

/// Maps argument names to the constraint on each.
pub type ToolConstraints = BTreeMap<String, ArgumentConstraint>;

/// Restricts the values one argument may take; every key set must hold. An absent
/// argument is not constrained (the input schema says what is required), and a value
/// of the wrong type for a key (a string where `max` applies) is refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArgumentConstraint {
    /// Lists the only values allowed (compared as JSON).
    #[serde(rename = "enum", default, skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    /// Is a regular expression a string must match, unanchored as in JSON Schema.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Is the largest number allowed (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Number>,
    /// Is the smallest number allowed (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<Number>,
    /// Is the longest string allowed, in characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// Is a prefix a string must start with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// Is the reason annotation of generated constraint policies.
pub(crate) const REASON: &str = "argument_constraint";

/// Returns the Cedar policies enforcing `constraints` of `virtual_server`, one per
/// (tool, argument, kind) so that a denial names exactly what was violated, or the
/// problems that make them unusable.
pub(crate) fn compile(
    virtual_server: &str,
    constraints: &Constraints,
) -> Result<Vec<PolicyText>, Vec<Diagnostic>> {
    let mut policies = Vec::new();
    let mut problems = Vec::new();
    for (tool, arguments) in constraints {
        for (argument, constraint) in arguments {
            let id = format!("constraint/{virtual_server}/{tool}/{argument}");
            for (kind, condition) in conditions(argument, constraint, &id, &mut problems) {
                let text = format!(
                    "@id({id})\n@reason(\"{REASON}\")\nforbid (principal, action == Action::\"call_tool\", resource == Tool::{resource})\nwhen {{ context.arguments.hasTag({arg}) && !({condition}) }};",
                    id = literal::string(&format!("{id}/{kind}")),
                    resource = literal::string(&format!("{virtual_server}/{tool}")),
                    arg = literal::string(argument),
                );
                policies.push(PolicyText {
                    id: format!("{id}/{kind}"),
                    text,
                    origin: PolicyOrigin::Generated,
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(policies)
    } else {
        Err(problems)
    }
}

// Each condition holds when the argument value satisfies one kind of constraint.
fn conditions(
    argument: &str,
    constraint: &ArgumentConstraint,
    id: &str,
    problems: &mut Vec<Diagnostic>,
) -> Vec<(&'static str, String)> {
    let value = format!("context.arguments.getTag({})", literal::string(argument));
    let mut conditions = Vec::new();
    let mut problem =
        |message: String| problems.push(Diagnostic::new(Some(id.to_owned()), message));
    if let Some(allowed) = &constraint.one_of {
        if allowed.is_empty() {
            problem("enum must list at least one value".to_owned());
        }
        let set: Vec<String> = allowed
            .iter()
            .map(|v| literal::string(&canonical(v)))
            .collect();
        conditions.push((
            "enum",
            format!("[{}].contains({value}.json)", set.join(", ")),
        ));
    }
    if let Some(pattern) = &constraint.pattern {
        if let Err(error) = Regex::new(pattern) {
            problem(format!("pattern does not compile: {error}"));
        }
        conditions.push((
            "pattern",
            format!("{value} has matches_pattern && {value}.matches_pattern"),
        ));
    }
    for (kind, bound, method, operator) in [
        ("max", &constraint.max, "lessThanOrEqual", "<="),
        ("min", &constraint.min, "greaterThanOrEqual", ">="),
    ] {
        if let Some(bound) = bound {
            let condition = match (bound.as_i64(), decimal(bound)) {
                // Integers compare as longs; other numbers as decimals.
                (Some(integer), Some(literal)) => format!(
                    "({value} has long && {value}.long {operator} {integer}) || (!({value} has long) && {value} has number && {value}.number.{method}(decimal(\"{literal}\")))"
                ),
                (None, Some(literal)) => {
                    format!("{value} has number && {value}.number.{method}(decimal(\"{literal}\"))")
                }
                (_, None) => {
                    problem(format!(
                        "{kind} {bound} is not a decimal Cedar can hold (at most 4 fractional digits, |x| < 922337203685477)"
                    ));
                    continue;
                }
            };
            conditions.push((kind, condition));
        }
    }
    if let Some(max_length) = constraint.max_length {
        match i64::try_from(max_length) {
            Ok(max_length) => conditions.push((
                "max_length",
                format!("{value} has length && {value}.length <= {max_length}"),
            )),
            Err(_) => problem("max_length is too large".to_owned()),
        }
    }
    if let Some(prefix) = &constraint.prefix {
        conditions.push((
            "prefix",
            format!(
                "{value} has text && {value}.text like {}",
                literal::prefix_pattern(prefix)
            ),
        ));
    }
    conditions
}

/// Returns `value` as compact JSON, the form `enum` constraints compare.
pub(crate) fn canonical(value: &Value) -> String {
    match value {
        // 2.0 and 2 are the same JSON Schema value; compare integers in one form.
        Value::Number(number) => match number.as_f64() {
            Some(float) if number.is_f64() && float.fract() == 0.0 && float.abs() < 9.0e15 => {
                format!("{}", float as i64)
            }
            _ => number.to_string(),
        },
        other => other.to_string(),
    }
}

/// Returns `number` as a Cedar decimal literal body (`"12.5"`), when a Cedar decimal
/// (four fractional digits, 64-bit) holds it exactly.
pub(crate) fn decimal(number: &Number) -> Option<String> {
    const LIMIT: u64 = 922_337_203_685_477;
    if let Some(integer) = number.as_i64() {
        return (integer.unsigned_abs() < LIMIT).then(|| format!("{integer}.0"));
    }
    if number.is_u64() {
        return None;
    }
    let text = format!("{}", number.as_f64()?);
    if text.contains(['e', 'E', 'N', 'i']) {
        return None;
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((&text, "0"));
    let magnitude: u64 = whole.trim_start_matches('-').parse().ok()?;
    (fraction.len() <= 4 && magnitude < LIMIT).then(|| format!("{whole}.{fraction}"))
}

/// Is a tool's constraints ready for evaluation: the compiled patterns by argument.
#[derive(Debug, Clone, Default)]
pub(crate) struct CompiledTool {
    pub(crate) patterns: BTreeMap<String, Regex>,
    // Arguments with a fractional max or min, whose integer values must be
    // exposed as decimals too.
    pub(crate) decimal_bounds: BTreeSet<String>,
}

impl CompiledTool {
    /// Returns the compiled patterns of `constraints` (already validated).
    pub(crate) fn new(constraints: &ToolConstraints) -> Self {
        let patterns = constraints
            .iter()
            .filter_map(|(argument, constraint)| {
                let pattern = Regex::new(constraint.pattern.as_deref()?).ok()?;
                Some((argument.clone(), pattern))
            })
            .collect();
        let decimal_bounds = constraints
            .iter()
            .filter(|(_, constraint)| {
                [&constraint.max, &constraint.min]
                    .into_iter()
                    .flatten()
                    .any(|bound| !bound.is_i64())
            })
            .map(|(argument, _)| argument.clone())
            .collect();
        Self {
            patterns,
            decimal_bounds,
        }
    }
}

/// Returns `schema` (a tool's JSON Schema `inputSchema`) narrowed by `constraints`,
/// so that clients see in `tools/list` what policy will accept at call time.
///
/// Existing keywords are tightened, never loosened: `maximum` becomes the smaller
/// bound, `enum` the intersection, a second `pattern` (or a prefix) is added under
/// `allOf`. A constrained argument the schema does not declare is added as a
/// property carrying only the constraints.
pub fn narrow_input_schema(schema: &Value, constraints: &ToolConstraints) -> Value {
    let mut narrowed = schema.clone();
    if constraints.is_empty() {
        return narrowed;
    }
    let Some(object) = narrowed.as_object_mut() else {
        return narrowed;
    };
    let properties = object
        .entry("properties")
        .or_insert_with(|| Value::Object(serde_json::Map::new()));
    let Some(properties) = properties.as_object_mut() else {
        return narrowed;
    };
    for (argument, constraint) in constraints {
        let property = properties
            .entry(argument.clone())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
        if let Some(property) = property.as_object_mut() {
            narrow_property(property, constraint);
        }
    }
    narrowed
}

fn narrow_property(property: &mut serde_json::Map<String, Value>, constraint: &ArgumentConstraint) {
    if let Some(allowed) = &constraint.one_of {
        let kept: Vec<Value> = match property.get("enum").and_then(Value::as_array) {
            Some(existing) => allowed
                .iter()
                .filter(|value| existing.iter().any(|e| canonical(e) == canonical(value)))
                .cloned()
                .collect(),
            None => allowed.clone(),
        };
        property.insert("enum".to_owned(), Value::Array(kept));
    }
    tighten(property, "maximum", constraint.max.as_ref(), |new, old| {
        new < old
    });
    tighten(property, "minimum", constraint.min.as_ref(), |new, old| {
        new > old
    });
    if let Some(max_length) = constraint.max_length {
        let current = property.get("maxLength").and_then(Value::as_u64);
        if current.is_none_or(|current| max_length < current) {
            property.insert("maxLength".to_owned(), json!(max_length));
        }
    }
    let prefix = constraint
        .prefix
        .as_ref()
        .map(|prefix| format!("^{}", regex::escape(prefix)));
    for pattern in constraint.pattern.iter().chain(prefix.iter()) {
        add_pattern(property, pattern);
    }
}

fn tighten(
    property: &mut serde_json::Map<String, Value>,
    keyword: &str,
    bound: Option<&Number>,
    tighter: impl Fn(f64, f64) -> bool,
) {
    let Some(bound) = bound else { return };
    let current = property.get(keyword).and_then(Value::as_f64);
    let replace = match (bound.as_f64(), current) {
        (Some(new), Some(old)) => tighter(new, old),
        _ => true,
    };
    if replace {
        property.insert(keyword.to_owned(), Value::Number(bound.clone()));
    }
}

fn add_pattern(property: &mut serde_json::Map<String, Value>, pattern: &str) {
    match property.get("pattern").and_then(Value::as_str) {
        None => {
            property.insert("pattern".to_owned(), json!(pattern));
        }
        Some(existing) if existing == pattern => {}
        Some(_) => {
            let all_of = property
                .entry("allOf")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(all_of) = all_of.as_array_mut() {
                all_of.push(json!({ "pattern": pattern }));
            }
        }
    }
}

#[cfg(test)]
mod tests;
