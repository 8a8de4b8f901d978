//! Constraint guards: one Cedar policy per constrained tool that is true exactly
//! when one of the tool's generated constraint policies is, evaluated in their place.
//!
//! Constraints compile to one `forbid` per (tool, argument, kind), so that a denial
//! names exactly what was violated; Cedar evaluating all of them on every call was
//! the largest part of a decision for a tool with several constrained arguments. A
//! guard's condition is the disjunction of its members' conditions, taken from the
//! members themselves (so it cannot drift from them), and its scope is theirs. When
//! the guard is false without error, so is every member, and the decision is the one
//! the members would give; when it is true or errs, the evaluator evaluates the
//! members themselves, so explanations still name the exact policies.

use std::collections::{BTreeMap, HashSet};

use cedar_policy::{Effect, Policy, PolicyId, PolicySet};
use serde_json::{Value, json};

/// Is one guard and the policies it stands for.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    pub(crate) policy: Policy,
    pub(crate) members: Vec<PolicyId>,
}

/// Returns the guards of the `generated` forbid policies of `set`: one for each
/// group of two or more that share a scope. A group whose guard cannot be built
/// keeps being evaluated policy by policy.
pub(crate) fn guards(set: &PolicySet, generated: &HashSet<PolicyId>) -> Vec<Guard> {
    let mut groups: BTreeMap<String, Vec<(PolicyId, Value)>> = BTreeMap::new();
    for policy in set.policies() {
        if policy.effect() != Effect::Forbid || !generated.contains(policy.id()) {
            continue;
        }
        let Ok(json) = policy.to_json() else {
            continue;
        };
        let scope = json!([json["principal"], json["action"], json["resource"]]).to_string();
        groups
            .entry(scope)
            .or_default()
            .push((policy.id().clone(), json));
    }
    groups
        .into_values()
        .filter(|members| members.len() >= 2)
        .filter_map(|members| guard(set, &members))
        .collect()
}

fn guard(set: &PolicySet, members: &[(PolicyId, Value)]) -> Option<Guard> {
    let (first_id, first) = members.first()?;
    let id = PolicyId::new(format!("{first_id}#guard"));
    if set.policy(&id).is_some() {
        return None;
    }
    let bodies: Option<Vec<Value>> = members.iter().map(|(_, json)| body(json)).collect();
    let body = bodies?
        .into_iter()
        .reduce(|left, right| json!({"||": {"left": left, "right": right}}))?;
    let text = json!({
        "effect": "forbid",
        "principal": first["principal"],
        "action": first["action"],
        "resource": first["resource"],
        "conditions": [{"kind": "when", "body": body}],
        "annotations": {},
    });
    let policy = Policy::from_json(Some(id), text).ok()?;
    Some(Guard {
        policy,
        members: members.iter().map(|(id, _)| id.clone()).collect(),
    })
}

// A policy applies when all its `when` conditions hold and no `unless` one does.
fn body(policy: &Value) -> Option<Value> {
    let conditions = policy["conditions"].as_array()?;
    let clauses = conditions.iter().map(|condition| {
        let body = condition["body"].clone();
        match condition["kind"].as_str() {
            Some("when") => Some(body),
            Some("unless") => Some(json!({"!": {"arg": body}})),
            _ => None,
        }
    });
    let clauses: Option<Vec<Value>> = clauses.collect();
    clauses?
        .into_iter()
        .reduce(|left, right| json!({"&&": {"left": left, "right": right}}))
        .or_else(|| Some(json!({"Value": true})))
}
