//! Stdio connectors: sessions, restarts, crash loops, stderr and shutdown.

use std::time::Duration;

use edge_svc::connector::{ConnectorState, Error, StdioConfig, Transport};
use nix::{sys::signal::Signal, unistd::Pid};
use rmcp::model::{
    CallToolRequestParams, ClientRequest, GetPromptRequestParams, ReadResourceRequestParams,
    Request, ServerNotification,
};
use serde_json::json;

use super::{DEADLINE, Running, call, echo_stdio, eventually, sandboxed, text};

#[tokio::test]
async fn stdio_connector_lists_and_calls_tools() {
    let cwd = tempfile::tempdir().unwrap();
    let running = Running::spawn("echo", Transport::Stdio(echo_stdio(cwd.path())));
    let peer = running.connector.peer().await.expect("session");

    let tools = peer.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|tool| tool.name.to_string()).collect();
    for expected in [
        "echo",
        "add",
        "slow",
        "fail",
        "env",
        "read_file",
        "exit",
        "pid",
    ] {
        assert!(
            names.contains(&expected.to_owned()),
            "{expected} missing from {names:?}"
        );
    }
    let echoed = call(&running.connector, "echo", json!({"text": "hello"}))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "hello");
    let sum = call(&running.connector, "add", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert_eq!(text(&sum), "5");
    let failed = call(&running.connector, "fail", json!({})).await.unwrap();
    assert_eq!(failed.is_error, Some(true));

    let status = running.connector.status();
    assert_eq!(status.state, ConnectorState::Ready);
    assert_eq!(status.transport, "stdio");
    assert_eq!(status.restarts, 0);
    assert!(running.connector.protocol_version().is_some());
    running.stop().await;
}

#[tokio::test]
async fn stdio_connector_serves_resources_and_prompts() {
    let cwd = tempfile::tempdir().unwrap();
    let running = Running::spawn("echo", Transport::Stdio(echo_stdio(cwd.path())));
    let peer = running.connector.peer().await.expect("session");
    let resource = peer
        .read_resource(ReadResourceRequestParams::new("echo://readme"))
        .await
        .unwrap();
    assert!(
        format!("{:?}", resource.contents).contains("a test downstream"),
        "{resource:?}"
    );
    let prompt = peer
        .get_prompt(
            GetPromptRequestParams::new("greet")
                .with_arguments(json!({"name": "Ada"}).as_object().cloned().unwrap()),
        )
        .await
        .unwrap();
    assert!(
        format!("{:?}", prompt.messages).contains("Hello, Ada!"),
        "{prompt:?}"
    );

    running.stop().await;
}

#[tokio::test]
async fn stdio_progress_reaches_the_relay_with_its_origin() {
    let cwd = tempfile::tempdir().unwrap();
    let running = Running::spawn("echo", Transport::Stdio(echo_stdio(cwd.path())));
    let peer = running.connector.peer().await.expect("session");
    let arguments = json!({"ms": 40}).as_object().cloned().unwrap();
    let request = ClientRequest::CallToolRequest(Request::new(
        CallToolRequestParams::new("slow").with_arguments(arguments),
    ));
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
}

#[tokio::test]
async fn killed_stdio_program_is_restarted_and_the_next_call_succeeds() {
    let cwd = tempfile::tempdir().unwrap();
    let running = Running::spawn("echo", Transport::Stdio(echo_stdio(cwd.path())));
    let first = text(&call(&running.connector, "pid", json!({})).await.unwrap());
    let pid = Pid::from_raw(first.parse().unwrap());
    nix::sys::signal::kill(pid, Signal::SIGKILL).unwrap();

    let second = next_pid_after(&running, &first).await;
    assert_ne!(first, second);
    let status = running.connector.status();
    assert!(status.restarts >= 1, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("137")),
        "{status:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn exited_stdio_program_is_restarted_and_status_keeps_its_stderr() {
    let cwd = tempfile::tempdir().unwrap();
    let running = Running::spawn("echo", Transport::Stdio(echo_stdio(cwd.path())));
    let first = text(&call(&running.connector, "pid", json!({})).await.unwrap());
    assert!(
        call(&running.connector, "exit", json!({"code": 3}))
            .await
            .is_err()
    );

    let second = next_pid_after(&running, &first).await;
    assert_ne!(first, second);
    let status = running.connector.status();
    assert!(status.restarts >= 1, "{status:?}");
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("exit status: 3")),
        "{status:?}"
    );
    eventually("both launches in the stderr tail", || {
        let tail = running.connector.status().stderr_tail;
        [&first, &second].iter().all(|pid| {
            tail.iter()
                .any(|line| line == &format!("mcp-echo {pid}: serving stdio"))
        })
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn crash_loop_ends_in_failed_with_the_stderr_tail_kept() {
    let cwd = tempfile::tempdir().unwrap();
    let mut config = StdioConfig::new("sh", ["-c", "echo boom >&2; exit 3"]);
    sandboxed(&mut config, cwd.path());
    config.restart.initial_backoff = Duration::from_millis(10);
    config.restart.max_backoff = Duration::from_millis(40);
    config.restart.max_failures = 3;
    let running = Running::spawn("crashy", Transport::Stdio(config));

    match running.connector.peer().await {
        Err(Error::Failed { last_error, .. }) => {
            assert!(last_error.contains("exit status: 3"), "{last_error}")
        }
        other => panic!("expected a failed connector, got {other:?}"),
    }
    let status = running.connector.status();
    assert_eq!(status.state, ConnectorState::Failed);
    assert_eq!(status.restarts, 2);
    eventually("boom in the stderr tail", || {
        running
            .connector
            .status()
            .stderr_tail
            .iter()
            .any(|l| l == "boom")
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn unresponsive_program_times_out_and_is_killed() {
    let cwd = tempfile::tempdir().unwrap();
    let mut config = StdioConfig::new("sleep", ["600"]);
    sandboxed(&mut config, cwd.path());
    config.connect_timeout = Duration::from_millis(300);
    config.restart.initial_backoff = Duration::from_millis(10);
    config.restart.max_failures = 2;
    let running = Running::spawn("mute", Transport::Stdio(config));

    match running.connector.peer().await {
        Err(Error::Failed { last_error, .. }) => {
            assert!(
                last_error.contains("unfinished after 300ms"),
                "{last_error}"
            );
        }
        Err(Error::ConnectTimeout { .. }) => {}
        other => panic!("expected no session, got {other:?}"),
    }
    eventually("the connector to give up", || {
        running.connector.status().state == ConnectorState::Failed
    })
    .await;
    let group = i32::try_from(running.connector.status().pid.unwrap()).unwrap();
    assert!(
        members(group).is_empty(),
        "left behind: {:?}",
        members(group)
    );
    running.stop().await;
}

#[tokio::test]
async fn shutdown_kills_the_process_group_and_leaves_no_zombie() {
    let cwd = tempfile::tempdir().unwrap();
    let echo = env!("CARGO_BIN_EXE_mcp-echo");
    // A grandchild in the group: `sleep` outlives nothing once the group is killed.
    let mut config = StdioConfig::new("sh", ["-c", "sleep 600 & exec \"$0\" stdio", echo]);
    sandboxed(&mut config, cwd.path());
    let running = Running::spawn("grouped", Transport::Stdio(config));
    running.connector.peer().await.expect("session");
    let group = running
        .connector
        .status()
        .pid
        .expect("pid of the launched process");
    let group = i32::try_from(group).unwrap();
    eventually("sleep running in the group", || members(group).len() >= 3).await;

    let connector = running.connector.clone();
    running.stop().await;
    assert_eq!(connector.status().state, ConnectorState::Stopped);
    assert!(
        members(group).is_empty(),
        "left behind: {:?}",
        members(group)
    );
    assert!(matches!(
        connector.peer().await,
        Err(Error::ShutDown { .. })
    ));
}

/// Calls `pid` until a session other than the one with pid `old` answers.
async fn next_pid_after(running: &Running, old: &str) -> String {
    let start = std::time::Instant::now();
    loop {
        assert!(
            start.elapsed() < DEADLINE,
            "no restarted session within the deadline"
        );
        if let Ok(result) = call(&running.connector, "pid", json!({})).await {
            let pid = text(&result);
            if pid != old {
                return pid;
            }
        }
        tokio::task::yield_now().await;
    }
}

/// Returns every process (zombies included) in process group `group`, from `/proc`.
fn members(group: i32) -> Vec<(i32, String)> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let (_, rest) = stat.rsplit_once(')')?;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            (fields.get(2)?.parse::<i32>().ok()? == group).then(|| (pid, fields[0].to_owned()))
        })
        .collect()
}
