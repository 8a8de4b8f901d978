//! Real peers against the authorization server: the official MCP conformance
//! suite's `authorization` scenarios (headless, auto-approved consent) and
//! authlib as an independent OAuth client. Each runs when the interop
//! environment (`tests/interop/install.sh`, sourced by `tests/run.sh`) is
//! present, and otherwise prints SKIPPED.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Command;

use crate::harness::{Harness, REDIRECT, RESOURCE};

/// Bounds each peer run; the suite's own wait for the callback is 5 minutes.
const PEER_DEADLINE: Duration = Duration::from_secs(120);

fn peer(variable: &str) -> Option<String> {
    let value = std::env::var(variable).ok();
    if value.is_none() {
        eprintln!(
            "SKIPPED: {variable} is unset (run tests/interop/install.sh and source its env.sh)"
        );
    }
    value
}

#[tokio::test]
async fn conformance_authorization_scenarios_pass_headless() {
    let Some(conformance) = peer("GATEHOUSE_CONFORMANCE") else {
        return;
    };
    let harness = Harness::start().await;
    let (probe, addr) = svc_kit::testing::bind_ephemeral().await;
    drop(probe);
    let callback = format!("http://127.0.0.1:{}/callback", addr.port());
    let client = harness
        .register(json!({
            "redirect_uris": [callback],
            "client_name": "MCP conformance",
            "application_type": "native",
            "token_endpoint_auth_method": "none",
        }))
        .await;
    let output = tempfile::tempdir().unwrap();
    let mut child = Command::new(conformance)
        .args([
            "authorization",
            "--url",
            &harness.base,
            "--resource",
            RESOURCE,
            "-o",
        ])
        .arg(output.path())
        // Joined with `=`: a client id may begin with `-`, which the CLI would read as a flag.
        .arg(format!(
            "--client-id={}",
            client["client_id"].as_str().unwrap()
        ))
        .args(["--port", &addr.port().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let run = async {
        let mut lines = BufReader::new(stdout).lines();
        let mut transcript = String::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            transcript.push_str(&line);
            transcript.push('\n');
            if let Some(url) = authorize_url(&line, &harness.base) {
                // Play the browser: the auto-approving AS redirects to the suite's callback.
                let answer = harness.http.get(url).send().await.unwrap();
                let location = answer.headers()["location"].to_str().unwrap().to_owned();
                assert!(location.starts_with(&callback), "{location}");
                reqwest::get(location).await.unwrap();
            }
        }
        let status = child.wait().await.unwrap();
        (status, transcript)
    };
    let (status, transcript) = tokio::time::timeout(PEER_DEADLINE, run)
        .await
        .expect("conformance did not finish");
    assert!(
        status.success(),
        "conformance failed:\n{transcript}\n{}",
        checks(output.path())
    );
    assert!(
        transcript.contains("authorization-server-metadata-endpoint"),
        "{transcript}"
    );
    assert!(
        transcript.contains("authorization-code-grant"),
        "{transcript}"
    );
    assert!(transcript.contains("0 failed"), "{transcript}");
    // With client_id_metadata_document_supported advertised, no check warns (the CIMD one did).
    let warned = warnings(output.path());
    assert!(warned.is_empty(), "conformance warned: {warned:?}");
}

/// Returns every `checks.json` the suite wrote, for the failure message.
fn checks(dir: &std::path::Path) -> String {
    let mut found = String::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read_to_string(entry.path().join("checks.json")) {
            found.push_str(&text);
        }
    }
    found
}

/// Returns the ids of the checks the suite reported as WARNING.
fn warnings(dir: &std::path::Path) -> Vec<String> {
    let mut warned = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("checks.json")) else {
            continue;
        };
        let checks: Vec<Value> = serde_json::from_str(&text).unwrap();
        warned.extend(
            checks
                .iter()
                .filter(|check| check["status"] == "WARNING")
                .map(|check| check["id"].to_string()),
        );
    }
    warned
}

fn authorize_url(line: &str, base: &str) -> Option<String> {
    let start = line.find(&format!("{base}/authorize?"))?;
    let url = line[start..].split_whitespace().next()?;
    Some(url.to_owned())
}

#[tokio::test]
async fn authlib_completes_code_refresh_and_agent_flows() {
    let Some(python) = peer("GATEHOUSE_INTEROP_PYTHON") else {
        return;
    };
    let harness = Harness::start().await;
    let public = harness.public_client().await;
    let (agent, secret) = harness.confidential_client("client_secret_basic").await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/it/peers/authlib_client.py"
    );
    let run = Command::new(python)
        .args([
            script,
            &harness.base,
            RESOURCE,
            &public,
            REDIRECT,
            &agent,
            &secret,
        ])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(PEER_DEADLINE, run)
        .await
        .expect("authlib did not finish")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "authlib failed: {stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(
        report,
        json!({
            "issuer": harness.base,
            "redirect": REDIRECT,
            "iss_param": harness.base,
            "code_status": 200,
            "claims": {
                "iss": harness.base,
                "aud": RESOURCE,
                "sub": "test",
                "client_id": public,
                "scope": "tools",
            },
            "rotated": true,
            "replay_error": "invalid_grant",
            "agent_expires_in": 600,
            "introspected": [true, RESOURCE],
            "active_after_revoke": false,
        })
    );
}
