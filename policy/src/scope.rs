//! OAuth scopes as business permissions: each scope of a virtual server grants a
//! set of its tools.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Maps a virtual server's scopes (such as `crm:read`) to what they grant.
pub type Scopes = BTreeMap<String, ScopeGrant>;

/// Is what one scope grants: its tools, optionally with words for consent screens.
///
/// Written either as a bare list (`"crm:read" = ["search_contacts"]`) or as a
/// table with a description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ScopeGrant {
    /// Lists the tools the scope grants.
    Tools(Vec<String>),
    /// Lists the tools the scope grants and explains the scope in words.
    Described {
        /// Explains the scope, for consent screens.
        description: String,
        /// Lists the tools the scope grants.
        tools: Vec<String>,
    },
}

impl ScopeGrant {
    /// Returns the tools the scope grants.
    pub fn tools(&self) -> &[String] {
        match self {
            Self::Tools(tools) | Self::Described { tools, .. } => tools,
        }
    }

    /// Returns the scope's description; empty when none was given.
    pub fn description(&self) -> &str {
        match self {
            Self::Tools(_) => "",
            Self::Described { description, .. } => description,
        }
    }
}

/// Returns, for each tool named by some scope, the scopes granting it (any one
/// suffices). A tool no scope names needs no scope: scopes narrow what policy
/// allows, they never replace it.
pub(crate) fn by_tool(scopes: &Scopes) -> BTreeMap<String, Vec<String>> {
    let mut by_tool: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (scope, grant) in scopes {
        for tool in grant.tools() {
            by_tool.entry(tool.clone()).or_default().push(scope.clone());
        }
    }
    by_tool
}
