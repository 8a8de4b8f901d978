//! Tool curation: which downstream tools a virtual server exposes, under which names and descriptions.
//!
//! Every rule is keyed by the ORIGINAL downstream tool name, so renaming one tool never changes
//! which allow/deny globs match it. The exposed name is `prefix + (rename or original)`.

use std::collections::{BTreeMap, HashMap};

use globset::{Glob, GlobSet, GlobSetBuilder};
use rmcp::model::Tool;

use crate::spec::MemberSpec;

/// One connector's compiled view inside a virtual server.
#[derive(Debug, Clone)]
pub struct Curation {
    prefix: String,
    allow: GlobSet,
    deny: GlobSet,
    rename: BTreeMap<String, String>,
    describe: BTreeMap<String, String>,
}

/// Where an exposed tool name leads: the member (connector position) and its original name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolRoute {
    /// Index of the member connector inside the virtual server.
    pub member: usize,
    /// The downstream's own name for the tool.
    pub original: String,
    /// Whether the tool's input schema promotes arguments to `Mcp-Param-*` headers
    /// (`x-mcp-header`): such calls are left to rmcp, which checks and writes those headers.
    pub headed: bool,
}

/// The aggregated tool list of a virtual server, with the route back for each exposed name.
#[derive(Debug, Clone, Default)]
pub struct ToolCatalogue {
    tools: Vec<Tool>,
    routes: HashMap<String, ToolRoute>,
}

impl TryFrom<&MemberSpec> for Curation {
    type Error = String;

    fn try_from(member: &MemberSpec) -> Result<Self, String> {
        let allow = match &member.allow {
            Some(globs) => globs.clone(),
            None => vec!["*".to_owned()],
        };
        Ok(Self {
            prefix: member
                .prefix
                .clone()
                .unwrap_or_else(|| format!("{}__", member.connector)),
            allow: glob_set(&allow, "allow")?,
            deny: glob_set(&member.deny, "deny")?,
            rename: member.rename.clone(),
            describe: member.describe.clone(),
        })
    }
}

impl Curation {
    /// Returns the tool as the virtual server shows it, or `None` when the curation hides it.
    pub fn expose(&self, tool: &Tool) -> Option<Tool> {
        let original = tool.name.as_ref();
        if !self.allow.is_match(original) || self.deny.is_match(original) {
            return None;
        }
        let mut exposed = tool.clone();
        exposed.name = self.exposed_name(original).into();
        if let Some(description) = self.describe.get(original) {
            exposed.description = Some(description.clone().into());
        }
        Some(exposed)
    }

    /// Returns the name a client sees for a downstream tool name, whether or not it is exposed.
    pub fn exposed_name(&self, original: &str) -> String {
        let base = self.rename.get(original).map_or(original, String::as_str);
        format!("{}{base}", self.prefix)
    }

    /// Returns the prefix applied to this connector's names (prompts use it too).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
}

impl ToolCatalogue {
    /// Builds the catalogue from each member's downstream tools, in member order.
    ///
    /// When two members expose the same name, the first one wins and the clash is logged:
    /// a client can only ever reach one tool per name.
    pub fn build<'a>(members: impl IntoIterator<Item = (&'a Curation, &'a [Tool])>) -> Self {
        let mut catalogue = Self::default();
        for (member, (curation, tools)) in members.into_iter().enumerate() {
            for tool in tools {
                let Some(exposed) = curation.expose(tool) else {
                    continue;
                };
                let name = exposed.name.to_string();
                if catalogue.routes.contains_key(&name) {
                    tracing::warn!(tool = %name, member, "two connectors expose the same tool name; keeping the first");
                    continue;
                }
                let route = ToolRoute {
                    member,
                    original: tool.name.to_string(),
                    headed: promotes_headers(&tool.input_schema),
                };
                catalogue.routes.insert(name, route);
                catalogue.tools.push(exposed);
            }
        }
        catalogue
    }

    /// Returns the exposed tools in a stable order.
    pub fn tools(&self) -> &[Tool] {
        &self.tools
    }

    /// Returns where an exposed tool name leads, or `None` for unknown or hidden names.
    pub fn route(&self, exposed: &str) -> Option<&ToolRoute> {
        self.routes.get(exposed)
    }
}

/// Says whether `schema` annotates any property, at any depth, with `x-mcp-header` (SEP-2243).
fn promotes_headers(schema: &serde_json::Map<String, serde_json::Value>) -> bool {
    schema.iter().any(|(key, value)| {
        key == "x-mcp-header"
            || match value {
                serde_json::Value::Object(inner) => promotes_headers(inner),
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(serde_json::Value::as_object)
                    .any(promotes_headers),
                _ => false,
            }
    })
}

fn glob_set(globs: &[String], field: &str) -> Result<GlobSet, String> {
    let mut builder = GlobSetBuilder::new();
    for glob in globs {
        let compiled =
            Glob::new(glob).map_err(|error| format!("{field}: invalid glob `{glob}`: {error}"))?;
        builder.add(compiled);
    }
    builder
        .build()
        .map_err(|error| format!("{field}: invalid globs: {error}"))
}

#[cfg(test)]
mod tests;
