//! Policy sources (config file, admin API) and the versioned snapshot built from
//! them, which authz-svc publishes and edge-svc evaluates.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr as _;
use std::time::SystemTime;

use cedar_policy::PolicySet;
use serde::{Deserialize, Serialize};

use crate::constraint::{self, Constraints};
use crate::diagnostic::{Diagnostic, Diagnostics};
use crate::error::Error;
use crate::scope::Scopes;

/// Is one Cedar policy with its stable id, as reported in decisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyText {
    /// Is the policy's id: its `@id("…")` annotation, else `<source name>#<index>`.
    pub id: String,
    /// Is the policy in Cedar syntax.
    pub text: String,
    /// Says where the policy came from.
    pub origin: PolicyOrigin,
}

/// Says where a policy was defined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PolicyOrigin {
    /// The origin is unknown (an older snapshot).
    #[default]
    Unspecified,
    /// The declarative config file.
    Config,
    /// The admin API.
    AdminApi,
    /// Generated from a virtual server's argument constraints.
    Generated,
}

/// Is one virtual server's declarative policy: argument constraints and scopes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VirtualServerPolicy {
    /// Constrains tool arguments: `{tool: {argument: {enum|pattern|max|min|max_length|prefix}}}`.
    pub constraints: Constraints,
    /// Maps OAuth scopes to the tools they grant: `{"crm:read": [tools…]}`.
    pub scopes: Scopes,
}

/// Is a set of policy sources: Cedar texts and per-virtual-server declarations.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyDocument {
    /// Are Cedar texts, each holding any number of policies.
    pub cedar: Vec<CedarSource>,
    /// Are the virtual servers' constraints and scopes, by virtual server name.
    pub virtual_servers: BTreeMap<String, VirtualServerPolicy>,
}

/// Is one Cedar text and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CedarSource {
    /// Names the text (a file path, `inline`, `admin`): the prefix of default ids.
    pub name: String,
    /// Is the Cedar text.
    pub text: String,
    /// Says where it came from.
    pub origin: PolicyOrigin,
}

/// Is the complete policy state at one version: what edge-svc evaluates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Increases with every change; a snapshot replaces any older one.
    pub version: u64,
    /// Are the policies in force, including those generated from constraints.
    pub policies: Vec<PolicyText>,
    /// Are static Cedar entities in Cedar's JSON entity format (`[]` when none).
    pub entities_json: String,
    /// Are the virtual servers' constraints and scopes.
    pub virtual_servers: BTreeMap<String, VirtualServerPolicy>,
    /// Is when this version was produced.
    pub created_at: SystemTime,
}

impl PolicyDocument {
    /// Adds a Cedar text.
    pub fn add_cedar(&mut self, name: &str, text: &str, origin: PolicyOrigin) {
        self.cedar.push(CedarSource {
            name: name.to_owned(),
            text: text.to_owned(),
            origin,
        });
    }

    /// Returns `self` with `overlay` on top: its Cedar texts added, and its virtual
    /// servers replacing those of the same name.
    #[must_use]
    pub fn overlaid(&self, overlay: &Self) -> Self {
        let mut merged = self.clone();
        merged.cedar.extend(overlay.cedar.iter().cloned());
        for (name, policy) in &overlay.virtual_servers {
            merged.virtual_servers.insert(name.clone(), policy.clone());
        }
        merged
    }
}

impl Snapshot {
    /// Returns the snapshot of `document` at `version`: its Cedar texts split into
    /// policies with stable ids, plus the policies compiled from constraints. Syntax
    /// errors, duplicate ids and unusable constraints are reported together; schema
    /// validation happens when an [`crate::Evaluator`] is built from it.
    pub fn build(
        document: &PolicyDocument,
        version: u64,
        created_at: SystemTime,
    ) -> Result<Self, Error> {
        let mut problems = Vec::new();
        let mut policies = Vec::new();
        for source in &document.cedar {
            match split(source) {
                Ok(split) => policies.extend(split),
                Err(diagnostic) => problems.push(diagnostic),
            }
        }
        for (name, server) in &document.virtual_servers {
            match constraint::compile(name, &server.constraints) {
                Ok(generated) => policies.extend(generated),
                Err(diagnostics) => problems.extend(diagnostics),
            }
        }
        let mut seen = BTreeSet::new();
        for policy in &policies {
            if !seen.insert(policy.id.as_str()) {
                problems.push(Diagnostic::new(
                    Some(policy.id.clone()),
                    "duplicate policy id",
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::Invalid(Diagnostics(problems)));
        }
        Ok(Self {
            version,
            policies,
            entities_json: "[]".to_owned(),
            virtual_servers: document.virtual_servers.clone(),
            created_at,
        })
    }
}

// Cedar numbers the policies of a text `policy0`, `policy1`… in order; an `@id`
// annotation, when present, is the stable id an administrator chose.
fn split(source: &CedarSource) -> Result<Vec<PolicyText>, Diagnostic> {
    let set = PolicySet::from_str(&source.text)
        .map_err(|errors| Diagnostic::of(Some(source.name.clone()), &errors))?;
    let mut numbered: Vec<(usize, PolicyText)> = set
        .policies()
        .map(|policy| {
            let index = policy
                .id()
                .to_string()
                .strip_prefix("policy")
                .and_then(|n| n.parse().ok())
                .unwrap_or(usize::MAX);
            let id = policy
                .annotation("id")
                .map_or_else(|| format!("{}#{index}", source.name), str::to_owned);
            let text = policy.to_string();
            (
                index,
                PolicyText {
                    id,
                    text,
                    origin: source.origin,
                },
            )
        })
        .collect();
    numbered.sort_by_key(|(index, _)| *index);
    Ok(numbered.into_iter().map(|(_, policy)| policy).collect())
}
