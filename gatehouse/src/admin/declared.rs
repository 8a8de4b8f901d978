//! The virtual servers and connectors in force, as declared: first by the gateway file, then
//! by every change made through the admin API.
//!
//! The whole gateway file is kept as JSON with its `connectors`, `virtual_servers` and
//! `rate_limits.rules` replaced by the applied ones, so a change is validated by the same parser
//! `gatehouse up` uses. The applied lists are written to the data directory after each change,
//! and `gatehouse up` serves them over the file's (the file is the seed), so a restart keeps
//! what was applied.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use edge_svc::GatewaySpec;
use edge_svc::credentials::CredentialMode;
use edge_svc::routing::Changed;
use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};

use super::model::{ConnectorView, VirtualServerView};

/// Where the applied connectors and virtual servers are kept in the data directory.
const APPLIED_FILE: &str = "declared.json";

/// The key of the applied rate-limit rules in [`APPLIED_FILE`].
const RATE_LIMIT_RULES: &str = "rate_limit_rules";

/// The declared virtual servers (with their curation) and connectors (without secrets).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Declared {
    pub(crate) virtual_servers: Vec<VirtualServerView>,
    pub(crate) connectors: Vec<ConnectorView>,
}

/// The gateway file with the connectors and virtual servers now in force.
#[derive(Debug, Clone)]
pub(crate) struct Declarations {
    file: Map<String, Value>,
}

/// What one change does to the declarations: the result and what changed by name.
pub(crate) type Edit = (Declarations, Changed);

impl Declarations {
    /// Reads the gateway file `text`, with the lists last applied in `data` (if any) over its own.
    pub(crate) fn seed(text: &str, data: &Path) -> Result<Self, String> {
        let mut declarations = Self::parse(text)?;
        let applied = applied_path(data);
        match std::fs::read(&applied) {
            Ok(bytes) => {
                let saved: Map<String, Value> = serde_json::from_slice(&bytes)
                    .map_err(|error| format!("{}: {error}", applied.display()))?;
                for key in ["connectors", "virtual_servers"] {
                    let list = saved.get(key).cloned().unwrap_or(Value::Array(Vec::new()));
                    declarations.file.insert(key.to_owned(), list);
                }
                // A file saved before rate limits could be applied has no rules: the file's stand.
                if let Some(rules) = saved.get(RATE_LIMIT_RULES) {
                    declarations.set_rate_rules(rules.clone());
                }
                tracing::info!(path = %applied.display(), "serving the connectors and virtual servers last applied through the admin api");
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(format!("{}: {error}", applied.display())),
        }
        Ok(declarations)
    }

    /// Reads the gateway file `text` alone (what `gatehouse apply` declares).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let file: Value = serde_norway::from_str(text).map_err(|error| error.to_string())?;
        Self::from_value(file)
    }

    fn from_value(file: Value) -> Result<Self, String> {
        match file {
            Value::Object(file) => Ok(Self { file }),
            Value::Null => Ok(Self { file: Map::new() }),
            _ => Err("the gateway file must be a mapping".to_owned()),
        }
    }

    /// Parses and validates the declarations as `gatehouse up` parses the file.
    pub(crate) fn spec(&self, source: &str) -> Result<GatewaySpec, String> {
        let text = serde_json::to_string(&self.file).map_err(|error| error.to_string())?;
        GatewaySpec::from_yaml(&text, source).map_err(|error| error.to_string())
    }

    /// Returns the declared virtual servers and connectors as the admin API shows them.
    pub(crate) fn view(&self, spec: &GatewaySpec) -> Declared {
        let virtual_servers = self
            .list("virtual_servers")
            .iter()
            .map(|declaration| VirtualServerView {
                name: name_of(declaration).to_owned(),
                declaration: declaration.clone(),
            })
            .collect();
        let connectors = spec
            .connectors
            .iter()
            .map(|connector| {
                let declaration = self.find("connectors", &connector.name);
                connector_view(connector, declaration.unwrap_or(&Value::Null))
            })
            .collect();
        Declared {
            virtual_servers,
            connectors,
        }
    }

    /// Returns these declarations with the virtual server `name` declared as `declaration`
    /// (created or replaced), or removed when `None`.
    pub(crate) fn with_server(&self, name: &str, declaration: Option<Value>) -> Edit {
        let mut next = self.clone();
        let mut changed = Changed::default();
        if self.find("virtual_servers", name) != declaration.as_ref() {
            changed.servers.insert(name.to_owned());
        }
        next.replace("virtual_servers", name, declaration);
        (next, changed)
    }

    /// Returns these declarations with the connector `name` declared as `declaration`, or
    /// removed when `None` (and then removed from every virtual server that lists it).
    pub(crate) fn with_connector(&self, name: &str, declaration: Option<Value>) -> Edit {
        let mut next = self.clone();
        let mut changed = Changed::default();
        let removed = declaration.is_none();
        if self.find("connectors", name) != declaration.as_ref() {
            changed.connectors.insert(name.to_owned());
        }
        next.replace("connectors", name, declaration);
        if removed {
            changed.servers = next.drop_member(name);
        }
        (next, changed)
    }

    /// Returns these declarations with `rules` as the rate-limit rules (the section's bucket
    /// store is the file's: it cannot change while the gateway runs).
    pub(crate) fn with_rate_rules(&self, rules: Value) -> Edit {
        let mut next = self.clone();
        next.set_rate_rules(rules);
        (next, Changed::default())
    }

    /// Returns the rate-limit rules in force, as declared.
    pub(crate) fn rate_rules(&self) -> Vec<Value> {
        self.file
            .get("rate_limits")
            .and_then(|section| section.get("rules"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    }

    fn set_rate_rules(&mut self, rules: Value) {
        let section = self
            .file
            .entry("rate_limits".to_owned())
            .or_insert(Value::Null);
        if !section.is_object() {
            *section = Value::Object(Map::new());
        }
        if let Value::Object(section) = section {
            section.insert("rules".to_owned(), rules);
        }
    }

    /// Keeps the applied connectors, virtual servers and rate-limit rules in the data
    /// directory (atomically).
    pub(crate) fn persist(&self, data: &Path) -> std::io::Result<()> {
        let mut saved = Map::new();
        for key in ["connectors", "virtual_servers"] {
            saved.insert(key.to_owned(), Value::Array(self.list(key).to_vec()));
        }
        saved.insert(RATE_LIMIT_RULES.to_owned(), Value::Array(self.rate_rules()));
        let path = applied_path(data);
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec_pretty(&Value::Object(saved))?)?;
        std::fs::rename(&partial, &path)
    }

    /// Returns the declaration of the item `name` of list `key`.
    pub(crate) fn find(&self, key: &str, name: &str) -> Option<&Value> {
        self.list(key)
            .iter()
            .find(|declaration| name_of(declaration) == name)
    }

    fn list(&self, key: &str) -> &[Value] {
        self.file
            .get(key)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// Edits the list `key` in place (created empty when missing or not a list).
    fn edit_list<R>(&mut self, key: &str, edit: impl FnOnce(&mut Vec<Value>) -> R) -> R {
        let entry = self.file.entry(key.to_owned()).or_insert(Value::Null);
        let mut list = match std::mem::take(entry) {
            Value::Array(list) => list,
            _ => Vec::new(),
        };
        let result = edit(&mut list);
        *entry = Value::Array(list);
        result
    }

    /// Replaces (in place, keeping the order), appends or removes the item `name` of `key`.
    fn replace(&mut self, key: &str, name: &str, declaration: Option<Value>) {
        self.edit_list(key, |list| {
            let at = list.iter().position(|item| name_of(item) == name);
            match (at, declaration) {
                (Some(index), Some(declaration)) => list[index] = declaration,
                (None, Some(declaration)) => list.push(declaration),
                (Some(index), None) => {
                    list.remove(index);
                }
                (None, None) => {}
            }
        });
    }

    /// Removes the connector `name` from every virtual server; returns the servers changed.
    fn drop_member(&mut self, name: &str) -> BTreeSet<String> {
        self.edit_list("virtual_servers", |servers| {
            let mut changed = BTreeSet::new();
            for server in servers {
                let server_name = name_of(server).to_owned();
                if let Some(Value::Array(members)) = server.get_mut("connectors") {
                    let before = members.len();
                    members.retain(|member| member_connector(member) != Some(name));
                    if members.len() != before {
                        changed.insert(server_name);
                    }
                }
            }
            changed
        })
    }
}

fn name_of(declaration: &Value) -> &str {
    declaration
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Returns the connector a virtual server member names (`{connector: x}` or the bare name).
fn member_connector(member: &Value) -> Option<&str> {
    match member {
        Value::String(name) => Some(name),
        other => other.get("connector").and_then(Value::as_str),
    }
}

fn applied_path(data: &Path) -> PathBuf {
    data.join(APPLIED_FILE)
}

/// Shows a connector's transport and target; headers, environment and a URL's query or user
/// info may hold secrets, so they are only represented by the declaration's fingerprint (which
/// tells a change apart).
fn connector_view(connector: &edge_svc::spec::ConnectorSpec, declaration: &Value) -> ConnectorView {
    let (transport, target) = match (&connector.stdio, &connector.http, &connector.sse) {
        (Some(stdio), _, _) => ("stdio", stdio.command.clone()),
        (_, Some(http), _) => ("http", edge_svc::connector::redact(&http.url)),
        (_, _, Some(sse)) => ("sse", edge_svc::connector::redact(&sse.url)),
        (None, None, None) => ("none", String::new()),
    };
    let credentials = match connector.credentials.mode {
        CredentialMode::None => "none",
        CredentialMode::Shared => "shared",
        CredentialMode::PerMember => "per_member",
        CredentialMode::TokenExchange => "token_exchange",
    };
    ConnectorView {
        name: connector.name.clone(),
        transport: transport.to_owned(),
        target,
        credentials: credentials.to_owned(),
        fingerprint: fingerprint(declaration),
    }
}

/// Returns the SHA-256 of the declaration's JSON (keys sorted by serde_json's map order).
pub(crate) fn fingerprint(declaration: &Value) -> String {
    let bytes = serde_json::to_vec(declaration).unwrap_or_default();
    Sha256::digest(&bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Declarations;

    const FILE: &str = "connectors:\n  - {name: a, http: {url: \"http://127.0.0.1:9/mcp\"}}\n  - {name: b, http: {url: \"http://127.0.0.1:9/mcp\"}}\nvirtual_servers:\n  - {name: both, connectors: [{connector: a}, {connector: b}]}\n  - {name: only-a, connectors: [{connector: a}]}\n";

    #[test]
    fn removing_a_connector_removes_it_from_every_server_that_lists_it() {
        let declarations = Declarations::parse(FILE).expect("file");
        let (next, changed) = declarations.with_connector("b", None);
        assert_eq!(changed.connectors.into_iter().collect::<Vec<_>>(), ["b"]);
        assert_eq!(changed.servers.into_iter().collect::<Vec<_>>(), ["both"]);
        let spec = next.spec("test").expect("still valid");
        assert_eq!(spec.connectors.len(), 1);
        assert_eq!(spec.virtual_servers[0].connectors.len(), 1);
    }

    #[test]
    fn an_identical_declaration_changes_nothing_and_a_new_one_is_named() {
        let declarations = Declarations::parse(FILE).expect("file");
        let same = declarations.find("virtual_servers", "only-a").cloned();
        let (_, changed) = declarations.with_server("only-a", same);
        assert!(changed.servers.is_empty() && changed.connectors.is_empty());
        let (next, changed) = declarations.with_server(
            "new",
            Some(json!({"name": "new", "connectors": [{"connector": "b"}]})),
        );
        assert!(changed.servers.contains("new"));
        assert_eq!(next.spec("test").expect("valid").virtual_servers.len(), 3);
        let (broken, _) = declarations.with_server(
            "bad",
            Some(json!({"name": "bad", "connectors": [{"connector": "z"}]})),
        );
        let error = broken.spec("admin api").expect_err("unknown connector");
        assert!(error.contains("unknown connector `z`"), "{error}");
    }

    #[test]
    fn a_connector_url_is_shown_without_user_info_query_or_fragment() {
        let file = "connectors:\n  - {name: keyed, http: {url: \"https://user:pw@mcp.example.com/v1/mcp?api_key=canary-9c2e#part\"}}\nvirtual_servers:\n  - {name: keyed, connectors: [{connector: keyed}]}\n";
        let declarations = Declarations::parse(file).expect("file");
        let view = declarations.view(&declarations.spec("test").expect("valid"));
        assert_eq!(view.connectors[0].target, "https://mcp.example.com/v1/mcp");
    }

    #[test]
    fn applied_lists_survive_a_restart_over_the_file_seed() {
        let data = tempfile::tempdir().expect("dir");
        let declarations = Declarations::parse(FILE).expect("file");
        let (next, _) = declarations.with_server("only-a", None);
        next.persist(data.path()).expect("persist");
        let seeded = Declarations::seed(FILE, data.path()).expect("seed");
        let spec = seeded.spec("test").expect("valid");
        let names: Vec<&str> = spec
            .virtual_servers
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        assert_eq!(names, ["both"]);
        let fresh = tempfile::tempdir().expect("dir");
        let seeded = Declarations::seed(FILE, fresh.path()).expect("seed");
        assert_eq!(seeded.spec("test").expect("valid").virtual_servers.len(), 2);
    }
}
