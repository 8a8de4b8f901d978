//! The `[policies]` section: Cedar policies from the config file (inline and
//! files) and each virtual server's argument constraints and scopes.

use std::collections::BTreeMap;
use std::path::PathBuf;

use policy::{PolicyDocument, PolicyOrigin, VirtualServerPolicy};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// Configures the policies authz-svc starts with; the admin API layers its own on
/// top at runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// Holds Cedar policies written inline.
    pub cedar: String,
    /// Names files of Cedar policies, read at start.
    pub files: Vec<PathBuf>,
    /// Declares each virtual server's constraints and scopes, by virtual server name:
    /// `[policies.virtual_servers.crm.constraints.update_opportunity.amount] max = 100000`
    /// and `[policies.virtual_servers.crm.scopes] "crm:read" = ["search_contacts"]`.
    pub virtual_servers: BTreeMap<String, VirtualServerPolicy>,
}

impl PolicyConfig {
    /// Returns the policy document this section describes, reading its files.
    pub fn document(&self) -> Result<PolicyDocument, Error> {
        let mut document = PolicyDocument::default();
        if !self.cedar.trim().is_empty() {
            document.add_cedar("config", &self.cedar, PolicyOrigin::Config);
        }
        for path in &self.files {
            let text = std::fs::read_to_string(path).map_err(|source| Error::PolicyFile {
                path: path.clone(),
                source,
            })?;
            document.add_cedar(&path.display().to_string(), &text, PolicyOrigin::Config);
        }
        document.virtual_servers = self.virtual_servers.clone();
        Ok(document)
    }
}
