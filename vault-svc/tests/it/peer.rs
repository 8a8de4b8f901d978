//! The third-party OAuth provider the refresh and consent tests run against:
//! `tests/peers/oauth_provider.py` (authlib), started as a child process.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

/// Is a running provider.
pub(crate) struct Provider {
    _child: Child,
    pub(crate) url: String,
    http: reqwest::Client,
}

/// Is one grant the provider issued.
pub(crate) struct SeededGrant {
    pub(crate) user: String,
    pub(crate) access_token: String,
    pub(crate) refresh_token: String,
}

/// Returns the Python interpreter with authlib and flask: `GATEHOUSE_VAULT_PEERS_PYTHON`,
/// else `~/.cache/gatehouse-vault-peers/bin/python`.
fn python() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("GATEHOUSE_VAULT_PEERS_PYTHON") {
        return Some(PathBuf::from(path));
    }
    let home = std::env::var("HOME").ok()?;
    let path = PathBuf::from(home).join(".cache/gatehouse-vault-peers/bin/python");
    std::fs::metadata(&path).is_ok().then_some(path)
}

impl Provider {
    /// Starts the provider with access tokens living `expires_in` seconds, or
    /// returns `None` (printed loudly) when its Python environment is missing.
    pub(crate) async fn start(expires_in: u64) -> Option<Self> {
        let Some(python) = python() else {
            eprintln!(
                "SKIPPED: no Python with authlib+flask (set GATEHOUSE_VAULT_PEERS_PYTHON or create \
                 ~/.cache/gatehouse-vault-peers); OAuth provider tests did not run"
            );
            return None;
        };
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/peers/oauth_provider.py");
        let mut child = Command::new(python)
            .args([script, "--expires-in", &expires_in.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("the provider's python is set but cannot start");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("provider did not start within 30 s")
            .unwrap()
            .expect("provider exited before listening");
        let port = serde_json::from_str::<Value>(&line).unwrap()["port"]
            .as_u64()
            .unwrap();
        Some(Self {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        })
    }

    /// Issues `count` grants directly, as if their users had consented.
    pub(crate) async fn seed(&self, prefix: &str, count: usize) -> Vec<SeededGrant> {
        let body: Value = self
            .http
            .post(format!("{}/admin/seed", self.url))
            .json(&serde_json::json!({"count": count, "prefix": prefix}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|grant| SeededGrant {
                user: grant["user"].as_str().unwrap().to_owned(),
                access_token: grant["access_token"].as_str().unwrap().to_owned(),
                refresh_token: grant["refresh_token"].as_str().unwrap().to_owned(),
            })
            .collect()
    }

    /// Returns the provider's counters.
    pub(crate) async fn stats(&self) -> Value {
        self.http
            .get(format!("{}/admin/stats", self.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Returns the user `access_token` belongs to, or `None` when the provider refuses it.
    pub(crate) async fn whoami(&self, access_token: &str) -> Option<String> {
        let response = self
            .http
            .get(format!("{}/whoami", self.url))
            .bearer_auth(access_token)
            .send()
            .await
            .unwrap();
        if !response.status().is_success() {
            return None;
        }
        let body: Value = response.json().await.unwrap();
        Some(body["user"].as_str().unwrap().to_owned())
    }

    /// Returns the lowest refresh count over `grants` grants (0 for a grant never refreshed).
    pub(crate) fn min_refreshes(stats: &Value, grants: usize) -> u64 {
        let counts = stats["refreshes"].as_object().unwrap();
        if counts.len() < grants {
            return 0;
        }
        counts
            .values()
            .map(|count| count.as_u64().unwrap())
            .min()
            .unwrap_or(0)
    }
}
