//! Policies through the admin API: the whole Cedar set and per-server constraints, replaced
//! at once so the file and the API stay one source of truth. The set in force is kept in the
//! data directory, so a restart serves it rather than the file's seed.

use std::collections::BTreeMap;
use std::path::Path;

use policy::{PolicyDocument, PolicyOrigin};
use proto::audit::v1::EventKind;
use serde_json::Value;

use super::model::{PolicySet, PolicySource, PolicyState};
use super::{Action, Admin, AdminCaller, AdminError};

impl Admin {
    /// Returns the policy set in force.
    pub(crate) fn policies(&self, caller: &AdminCaller) -> PolicyState {
        let action = Action::read(EventKind::PolicyChanged, "read", "policy", "");
        self.record(caller, &action, None);
        PolicyState {
            version: self.inner.policies.current().version(),
            policies: PolicySet::from(&self.inner.policies.admin()),
        }
    }

    /// Replaces the whole policy set; invalid policies change nothing.
    pub(crate) fn set_policies(
        &self,
        caller: &AdminCaller,
        set: PolicySet,
    ) -> Result<PolicyState, AdminError> {
        let outcome = PolicyDocument::try_from(&set).and_then(|document| {
            let version = self.inner.policies.replace(document)?;
            // Scopes come from the policy: the authorization server offers the new ones.
            self.refresh_resources();
            persist(&set, self.data()).map_err(AdminError::Persist)?;
            Ok(version)
        });
        let action = Action::read(EventKind::PolicyChanged, "update", "policy", "")
            .changing(&["sources", "virtual_servers"]);
        self.audited(caller, &action, outcome)
            .map(|version| PolicyState {
                version,
                policies: PolicySet::from(&self.inner.policies.admin()),
            })
    }
}

/// Where the policy set last applied through the admin API is kept in the data directory.
const APPLIED_POLICIES: &str = "policies.json";

/// Returns the policy set last applied through the admin API, if one was.
pub(crate) fn applied(data: &Path) -> Result<Option<PolicyDocument>, String> {
    let path = data.join(APPLIED_POLICIES);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(format!("{}: {error}", path.display())),
    };
    let set: PolicySet =
        serde_json::from_slice(&bytes).map_err(|error| format!("{}: {error}", path.display()))?;
    PolicyDocument::try_from(&set)
        .map(Some)
        .map_err(|error| format!("{}: {error}", path.display()))
}

/// Keeps `set` in the data directory (atomically).
fn persist(set: &PolicySet, data: &Path) -> std::io::Result<()> {
    let path = data.join(APPLIED_POLICIES);
    let partial = path.with_extension("json.partial");
    std::fs::write(&partial, serde_json::to_vec_pretty(set)?)?;
    std::fs::rename(&partial, &path)
}

impl From<&PolicyDocument> for PolicySet {
    fn from(document: &PolicyDocument) -> Self {
        Self {
            sources: document
                .cedar
                .iter()
                .map(|source| PolicySource {
                    name: source.name.clone(),
                    text: source.text.clone(),
                })
                .collect(),
            virtual_servers: document
                .virtual_servers
                .iter()
                .map(|(name, policy)| {
                    (
                        name.clone(),
                        serde_json::to_value(policy).unwrap_or(Value::Null),
                    )
                })
                .collect(),
        }
    }
}

impl TryFrom<&PolicySet> for PolicyDocument {
    type Error = AdminError;

    fn try_from(set: &PolicySet) -> Result<Self, AdminError> {
        let mut document = Self::default();
        for source in &set.sources {
            document.add_cedar(&source.name, &source.text, PolicyOrigin::AdminApi);
        }
        let mut servers = BTreeMap::new();
        for (name, value) in &set.virtual_servers {
            let policy = serde_json::from_value(value.clone()).map_err(|error| {
                AdminError::InvalidArgument {
                    field: "virtual_servers",
                    reason: format!("{name}: {error}"),
                }
            })?;
            servers.insert(name.clone(), policy);
        }
        document.virtual_servers = servers;
        Ok(document)
    }
}
