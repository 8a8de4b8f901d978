//! Connectors against other SDKs: Node's server-everything and Python's FastMCP in the
//! sandbox over stdio, and FastMCP on the legacy HTTP+SSE transport.
//!
//! The interpreters come from `tests/interop/install.sh` (`GATEHOUSE_INTEROP_PYTHON`,
//! `GATEHOUSE_INTEROP_NODE`, `GATEHOUSE_SERVER_EVERYTHING`). Unset: the test says SKIPPED
//! loudly and passes; set but broken: the test fails.

use std::path::{Path, PathBuf};

use edge_svc::connector::{StdioConfig, Transport};
use rmcp::model::{CallToolRequestParams, ClientRequest, Request, ServerNotification};
use serde_json::json;
use tokio::process::Command;

use super::{Running, UrlServer, call, config, sandboxed, text};

/// Directory of this module's helper scripts.
const SCRIPTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/connector");

/// Returns the variable's value, or prints a loud skip notice and returns None.
fn interop_var(name: &str, test: &str) -> Option<String> {
    let value = std::env::var(name).ok().filter(|value| !value.is_empty());
    if value.is_none() {
        eprintln!(
            "\n*** SKIPPED: set {name} to run the {test} test (see tests/interop/install.sh) ***\n"
        );
    }
    value
}

/// Returns the install root of an interpreter: `…/bin/python` → `…`, following symlinks.
fn install_root(interpreter: &Path) -> PathBuf {
    let real = std::fs::canonicalize(interpreter).expect("interpreter exists");
    real.parent()
        .and_then(Path::parent)
        .expect("interpreter lives in a bin directory")
        .to_owned()
}

#[tokio::test]
async fn node_server_everything_runs_in_the_sandbox_with_default_limits() {
    let Some(node) = interop_var("GATEHOUSE_INTEROP_NODE", "sandboxed Node server") else {
        return;
    };
    let Some(everything) = interop_var("GATEHOUSE_SERVER_EVERYTHING", "sandboxed Node server")
    else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let mut config = StdioConfig::new(node.clone(), [everything.as_str(), "stdio"]);
    sandboxed(&mut config, cwd.path());
    config.paths.push(install_root(Path::new(&node)));
    // …/node_modules/@modelcontextprotocol/server-everything/dist/index.js → …/node_modules
    let modules = Path::new(&everything)
        .ancestors()
        .nth(4)
        .expect("node_modules dir")
        .to_owned();
    config.paths.push(modules);
    let running = Running::spawn("everything", Transport::Stdio(config));

    let peer = running
        .connector
        .peer()
        .await
        .expect("server-everything session");
    let tools = peer.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|tool| tool.name == "echo"), "{tools:?}");
    let echoed = call(&running.connector, "echo", json!({"message": "sandboxed"}))
        .await
        .unwrap();
    assert!(text(&echoed).contains("sandboxed"), "{echoed:?}");
    running.stop().await;
}

#[tokio::test]
async fn python_server_runs_in_the_sandbox_with_default_limits() {
    let Some(python) = interop_var("GATEHOUSE_INTEROP_PYTHON", "sandboxed Python server") else {
        return;
    };
    let cwd = tempfile::tempdir().unwrap();
    let script = format!("{SCRIPTS}/stdio_server.py");
    let mut config = StdioConfig::new(python.clone(), [script.as_str()]);
    sandboxed(&mut config, cwd.path());
    config.paths.push(
        Path::new(&python)
            .parent()
            .and_then(Path::parent)
            .expect("venv")
            .to_owned(),
    );
    config.paths.push(install_root(Path::new(&python)));
    config.paths.push(SCRIPTS.into());
    let running = Running::spawn("python", Transport::Stdio(config));

    let echoed = call(&running.connector, "echo", json!({"text": "from python"}))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "from python");
    let home = call(&running.connector, "env", json!({"name": "HOME"}))
        .await
        .unwrap();
    assert_eq!(text(&home), cwd.path().display().to_string());
    running.stop().await;
}

#[tokio::test]
async fn legacy_sse_connector_talks_to_a_fastmcp_sse_server() {
    let Some(python) = interop_var("GATEHOUSE_INTEROP_PYTHON", "legacy SSE") else {
        return;
    };
    let mut command = Command::new(python);
    command.arg(format!("{SCRIPTS}/legacy_sse_server.py"));
    let server = UrlServer::start(command).await;
    let sse = config(json!({"url": server.url, "headers": {"x-gatehouse-test": "1"}}));
    let running = Running::spawn("legacy", Transport::Sse(sse));

    let peer = running.connector.peer().await.expect("legacy sse session");
    let tools = peer.list_all_tools().await.unwrap();
    assert!(tools.iter().any(|tool| tool.name == "echo"), "{tools:?}");
    let echoed = call(&running.connector, "echo", json!({"text": "over sse"}))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "over sse");
    assert_eq!(running.connector.status().transport, "sse");
    assert!(running.connector.protocol_version().is_some());

    let request = ClientRequest::CallToolRequest(Request::new(CallToolRequestParams::new("slow")));
    let handle = peer
        .send_cancellable_request(request, Default::default())
        .await
        .unwrap();
    let (id, token) = (handle.id.clone(), handle.progress_token.clone());
    handle.await_response().await.unwrap();
    let (origin, _) = running
        .relay
        .wait_for(|_, n| matches!(n, ServerNotification::ProgressNotification(p) if p.params.progress_token == token))
        .await;
    assert_eq!(origin, Some(id));
    running.stop().await;
    server.stop().await;
}
