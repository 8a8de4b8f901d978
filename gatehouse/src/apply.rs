//! `gatehouse apply -f config.yaml`: reconciles a running gateway with the file through the
//! admin API's HTTP/JSON face. It computes create/update/delete per resource (policies,
//! connectors, virtual servers, declared agent bundles, and the directory's members and groups
//! when the file declares a `directory:` section), prints the diff, and applies it unless `--dry-run`, so the file and
//! the API stay one source of truth. Every change is live: nothing waits for a restart.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use reqwest::Method;
use serde_json::Value;

use crate::admin::Declarations;
use crate::admin::model::{
    ConnectorView, PolicySet, PolicySource, PolicyState, RateLimits, VirtualServerView,
};

mod agents;
mod client;
mod directory;

use client::Client;
pub(crate) use directory::DirectorySection;

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

/// One admin API call of the plan, with the diff line that announces it.
#[derive(Debug)]
struct Step {
    method: Method,
    path: String,
    body: Option<Value>,
}

/// Every change between the running gateway and the file, in the order it is applied.
#[derive(Debug, Default)]
struct Plan {
    /// The printed diff, resource by resource.
    text: String,
    /// The calls that make the gateway match the file.
    steps: Vec<Step>,
}

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
    let limits: RateLimits = client.get("/admin/v1/rate-limits").await?;
    let running = Running {
        policies: &current.policies,
        servers: &servers,
        connectors: &connectors,
        rate_rules: &limits.rules,
    };
    let mut plan = plan(&desired, &running);
    agents::plan(&desired.agents, &client, &mut plan).await?;
    if let Some(directory) = &desired.directory {
        directory::plan(directory, &client, &mut plan).await?;
    }
    let mut out = std::io::stdout().lock();
    if plan.steps.is_empty() {
        writeln!(out, "no changes")?;
        return Ok(ExitCode::SUCCESS);
    }
    write!(out, "{}", plan.text)?;
    if args.dry_run {
        writeln!(out, "dry run: nothing applied")?;
        return Ok(ExitCode::SUCCESS);
    }
    for (done, step) in plan.steps.iter().enumerate() {
        let applied: anyhow::Result<Value> = client
            .call(step.method.clone(), &step.path, step.body.as_ref())
            .await;
        if let Err(error) = applied {
            writeln!(
                out,
                "applied {done} of {} change(s); stopped at {} {}",
                plan.steps.len(),
                step.method,
                step.path
            )?;
            return Err(error);
        }
    }
    writeln!(out, "applied {} change(s)", plan.steps.len())?;
    Ok(ExitCode::SUCCESS)
}

/// The declared state of the file.
struct Desired {
    policies: PolicySet,
    declarations: Declarations,
    servers: Vec<VirtualServerView>,
    connectors: Vec<ConnectorView>,
    directory: Option<directory::DirectorySection>,
    agents: Vec<authz_svc::AgentConfig>,
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
    let declarations = Declarations::parse(&text).map_err(anyhow::Error::msg)?;
    let view = declarations.view(&spec);
    Ok(Desired {
        policies: PolicySet::from(&document),
        declarations,
        servers: view.virtual_servers,
        connectors: view.connectors,
        directory: sections.directory,
        agents: sections.authorization.agents,
    })
}

/// The running gateway's state, as its admin API shows it.
struct Running<'a> {
    policies: &'a PolicySet,
    servers: &'a [VirtualServerView],
    connectors: &'a [ConnectorView],
    rate_rules: &'a [Value],
}

/// Compares the running state with the file, resource by resource.
///
/// Connectors are created or changed before the servers that list them, and removed after
/// the servers that stop listing them, so every intermediate state is a valid gateway; the
/// rate-limit rules change between the two, as they may name a server either way.
fn plan(desired: &Desired, current: &Running<'_>) -> Plan {
    let (policies, servers, connectors) = (current.policies, current.servers, current.connectors);
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
    let running = by_name(connectors, |connector| &connector.name);
    let declared = by_name(&desired.connectors, |connector| &connector.name);
    let connector_changes = changes(&running, &declared, |a, b| a == b);
    let running = by_name(servers, |server| &server.name);
    let declared = by_name(&desired.servers, |server| &server.name);
    let server_changes = changes(&running, &declared, |a, b| a.declaration == b.declaration);
    for change in &connector_changes {
        describe(&mut plan.text, "connector", change);
    }
    for change in &server_changes {
        describe(&mut plan.text, "virtual server", change);
    }
    let puts = |kind: &str, path: &str, changes: &[Change], plan: &mut Plan| {
        for change in changes {
            if let Change::Create(name) | Change::Update(name) = change {
                plan.steps.push(Step {
                    method: Method::PUT,
                    path: format!("/admin/v1/{path}/{name}"),
                    body: desired.declarations.find(kind, name).cloned(),
                });
            }
        }
    };
    let deletes = |path: &str, changes: &[Change], plan: &mut Plan| {
        for change in changes {
            if let Change::Delete(name) = change {
                plan.steps.push(Step {
                    method: Method::DELETE,
                    path: format!("/admin/v1/{path}/{name}"),
                    body: None,
                });
            }
        }
    };
    puts("connectors", "connectors", &connector_changes, &mut plan);
    puts(
        "virtual_servers",
        "virtual-servers",
        &server_changes,
        &mut plan,
    );
    let rate_rules = desired.declarations.rate_rules();
    if rate_rules.as_slice() != current.rate_rules {
        plan.text.push_str("~ update rate limits\n");
        plan.steps.push(Step {
            method: Method::PUT,
            path: "/admin/v1/rate-limits".to_owned(),
            body: Some(serde_json::json!({ "rules": rate_rules })),
        });
    }
    deletes("virtual-servers", &server_changes, &mut plan);
    deletes("connectors", &connector_changes, &mut plan);
    // Policies last: their constraints and scopes may name the servers just created.
    if !policy_changes.is_empty() {
        plan.steps.push(Step {
            method: Method::PUT,
            path: "/admin/v1/policies".to_owned(),
            body: serde_json::to_value(&desired.policies).ok(),
        });
    }
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
