//! `gatehouse apply -f config.yaml`: reconciles a running gateway with the file through the
//! admin API's HTTP/JSON face. It computes create/update/delete per resource, prints the diff,
//! and applies it unless `--dry-run`, so the file and the API stay one source of truth.
//!
//! Policies are applied live. Virtual servers and connectors are compared and their diff is
//! printed, but the running gateway's server table is fixed at start: such changes are
//! reported as needing a restart of `gatehouse up` with the file (exit code 3).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use serde::de::DeserializeOwned;

use crate::admin::Declared;
use crate::admin::model::{
    ConnectorView, ErrorBody, PolicySet, PolicySource, PolicyState, VirtualServerView,
};

/// What `gatehouse apply` was asked to do.
#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The gateway file holding the declared state.
    #[arg(long = "file", short = 'f')]
    file: PathBuf,
    /// Prints the diff without changing anything.
    #[arg(long)]
    dry_run: bool,
    /// The gateway's public origin (its admin API is under `/admin/v1`).
    #[arg(
        long,
        env = "GATEHOUSE_ADMIN_ENDPOINT",
        default_value = "http://127.0.0.1:8080"
    )]
    endpoint: url::Url,
    /// The environment variable holding an access token with scope `gatehouse:admin`.
    #[arg(long, default_value = "GATEHOUSE_ADMIN_TOKEN")]
    token_env: String,
}

/// One change of one resource.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Create(String),
    Update(String),
    Delete(String),
}

/// Every change between the running gateway and the file.
#[derive(Debug, Default)]
struct Plan {
    /// The policy set to PUT, when it differs.
    policies: Option<PolicySet>,
    /// The printed diff, resource by resource.
    text: String,
    /// Changes to virtual servers and connectors, which need a restart.
    structural: usize,
}

/// Exit code when virtual server or connector changes were left for a restart.
const EXIT_RESTART_NEEDED: u8 = 3;

/// Runs `gatehouse apply`; exit 0 when the gateway matches the file afterwards.
pub(crate) async fn run(args: ApplyArgs) -> ExitCode {
    match execute(&args).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("gatehouse apply: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let desired = desired(&args.file)?;
    let token = std::env::var(&args.token_env).with_context(|| {
        format!(
            "{} is not set (an access token with scope gatehouse:admin)",
            args.token_env
        )
    })?;
    let client = Client {
        http: reqwest::Client::new(),
        base: args.endpoint.as_str().trim_end_matches('/').to_owned(),
        token,
    };
    let current: PolicyState = client.get("/admin/v1/policies").await?;
    let servers: Vec<VirtualServerView> = client.get("/admin/v1/virtual-servers").await?;
    let connectors: Vec<ConnectorView> = client.get("/admin/v1/connectors").await?;
    let plan = plan(&desired, &current.policies, &servers, &connectors);
    let mut out = std::io::stdout().lock();
    if plan.text.is_empty() {
        writeln!(out, "no changes")?;
        return Ok(ExitCode::SUCCESS);
    }
    write!(out, "{}", plan.text)?;
    if args.dry_run {
        writeln!(out, "dry run: nothing applied")?;
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(policies) = &plan.policies {
        let applied: PolicyState = client.put("/admin/v1/policies", policies).await?;
        writeln!(out, "applied policies (version {})", applied.version)?;
    }
    if plan.structural > 0 {
        writeln!(
            out,
            "not applied: {} virtual server/connector change(s); the running gateway's server table is fixed at start, so restart `gatehouse up` with this file",
            plan.structural
        )?;
        return Ok(ExitCode::from(EXIT_RESTART_NEEDED));
    }
    Ok(ExitCode::SUCCESS)
}

/// The declared state of the file.
struct Desired {
    policies: PolicySet,
    declared: Declared,
}

/// Reads the file as `gatehouse up` would: the same parsers and the same policy files.
fn desired(path: &std::path::Path) -> anyhow::Result<Desired> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {source}"))?;
    let spec = edge_svc::GatewaySpec::from_yaml(&text, &source)?;
    let sections = crate::oauth::sections(&text, &source).map_err(anyhow::Error::msg)?;
    let document = sections
        .policies
        .document()
        .with_context(|| format!("{source}: policies"))?;
    let declared = Declared::new(&text, &spec).map_err(anyhow::Error::msg)?;
    Ok(Desired {
        policies: PolicySet::from(&document),
        declared,
    })
}

/// Compares the running state with the file, resource by resource.
fn plan(
    desired: &Desired,
    policies: &PolicySet,
    servers: &[VirtualServerView],
    connectors: &[ConnectorView],
) -> Plan {
    let mut plan = Plan::default();
    let sources = by_name(&policies.sources, |source| &source.name);
    let wanted = by_name(&desired.policies.sources, |source| &source.name);
    let mut policy_changes = changes(&sources, &wanted, |a, b| a.text == b.text);
    let scoped = changes(
        &policies.virtual_servers.iter().collect(),
        &desired.policies.virtual_servers.iter().collect(),
        |a, b| a == b,
    );
    for change in &policy_changes {
        describe(&mut plan.text, "policy source", change);
        write_text_diff(&mut plan.text, change, &sources, &wanted);
    }
    for change in &scoped {
        describe(&mut plan.text, "policy constraints/scopes of", change);
    }
    policy_changes.extend(scoped);
    if !policy_changes.is_empty() {
        plan.policies = Some(desired.policies.clone());
    }
    let running = by_name(servers, |server| &server.name);
    let declared = by_name(&desired.declared.virtual_servers, |server| &server.name);
    let server_changes = changes(&running, &declared, |a, b| a.declaration == b.declaration);
    let running = by_name(connectors, |connector| &connector.name);
    let declared = by_name(&desired.declared.connectors, |connector| &connector.name);
    let connector_changes = changes(&running, &declared, |a, b| a == b);
    for change in &server_changes {
        describe(&mut plan.text, "virtual server", change);
    }
    for change in &connector_changes {
        describe(&mut plan.text, "connector", change);
    }
    plan.structural = server_changes.len() + connector_changes.len();
    plan
}

fn by_name<T>(items: &[T], name: impl Fn(&T) -> &String) -> BTreeMap<&String, &T> {
    items.iter().map(|item| (name(item), item)).collect()
}

/// Returns the creates, updates and deletes that turn `current` into `wanted`.
fn changes<K: AsRef<str> + Ord, T>(
    current: &BTreeMap<K, T>,
    wanted: &BTreeMap<K, T>,
    same: impl Fn(&T, &T) -> bool,
) -> Vec<Change> {
    let mut found = Vec::new();
    for (name, want) in wanted {
        match current.get(name) {
            None => found.push(Change::Create(name.as_ref().to_owned())),
            Some(have) if !same(have, want) => found.push(Change::Update(name.as_ref().to_owned())),
            Some(_) => {}
        }
    }
    for name in current.keys() {
        if !wanted.contains_key(name) {
            found.push(Change::Delete(name.as_ref().to_owned()));
        }
    }
    found
}

fn describe(text: &mut String, kind: &str, change: &Change) {
    let (mark, verb, name) = match change {
        Change::Create(name) => ('+', "create", name),
        Change::Update(name) => ('~', "update", name),
        Change::Delete(name) => ('-', "delete", name),
    };
    let _ = writeln!(text, "{mark} {verb} {kind} {name}");
}

/// Writes a line diff of a policy source's Cedar text.
fn write_text_diff(
    text: &mut String,
    change: &Change,
    current: &BTreeMap<&String, &PolicySource>,
    wanted: &BTreeMap<&String, &PolicySource>,
) {
    let (Change::Create(name) | Change::Update(name) | Change::Delete(name)) = change;
    let old = current.get(name).map_or("", |source| source.text.as_str());
    let new = wanted.get(name).map_or("", |source| source.text.as_str());
    for line in line_diff(old, new) {
        let _ = writeln!(text, "    {line}");
    }
}

/// Returns `old` → `new` as `-`/`+`/` ` lines (longest common subsequence of lines).
fn line_diff(old: &str, new: &str) -> Vec<String> {
    let (a, b): (Vec<&str>, Vec<&str>) = (old.lines().collect(), new.lines().collect());
    let mut lcs = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for i in (0..a.len()).rev() {
        for j in (0..b.len()).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j, mut lines) = (0, 0, Vec::new());
    while i < a.len() || j < b.len() {
        if i < a.len() && j < b.len() && a[i] == b[j] {
            lines.push(format!("  {}", a[i]));
            (i, j) = (i + 1, j + 1);
        } else if i < a.len() && (j == b.len() || lcs[i + 1][j] >= lcs[i][j + 1]) {
            lines.push(format!("- {}", a[i]));
            i += 1;
        } else {
            lines.push(format!("+ {}", b[j]));
            j += 1;
        }
    }
    lines
}

/// The admin API's HTTP/JSON face, authenticated with the admin token.
struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let request = self.http.get(format!("{}{path}", self.base));
        self.send(path, request).await
    }

    async fn put<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<T> {
        let request = self.http.put(format!("{}{path}", self.base)).json(body);
        self.send(path, request).await
    }

    /// Sends one request; a refusal is reported with the API's message and diagnostics.
    async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<T> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach {}{path}", self.base))?;
        let status = response.status();
        if status.is_success() {
            return response
                .json()
                .await
                .with_context(|| format!("{path}: unexpected response"));
        }
        let body: ErrorBody = response.json().await.unwrap_or(ErrorBody {
            error: status.to_string(),
            message: String::new(),
            diagnostics: Vec::new(),
        });
        let mut message = format!("{path}: {} ({}): {}", status, body.error, body.message);
        for diagnostic in body.diagnostics {
            let _ = write!(message, "\n  {}", diagnostic.message);
            if let Some(help) = diagnostic.help {
                let _ = write!(message, " (help: {help})");
            }
        }
        anyhow::bail!(message)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::{Change, changes, line_diff};

    #[test]
    fn changes_name_each_create_update_and_delete() {
        let current: BTreeMap<&str, u8> = [("kept", 1), ("edited", 1), ("gone", 1)].into();
        let wanted: BTreeMap<&str, u8> = [("kept", 1), ("edited", 2), ("new", 1)].into();
        let found = changes(&current, &wanted, |a, b| a == b);
        assert_eq!(
            found,
            [
                Change::Update("edited".to_owned()),
                Change::Create("new".to_owned()),
                Change::Delete("gone".to_owned()),
            ]
        );
        assert!(changes(&current, &current, |a, b| a == b).is_empty());
    }

    #[test]
    fn line_diff_marks_removed_added_and_kept_lines() {
        let lines = line_diff("a\nb\nc", "a\nx\nc\nd");
        assert_eq!(lines, ["  a", "- b", "+ x", "  c", "+ d"]);
    }
}
