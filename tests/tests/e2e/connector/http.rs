//! Streamable HTTP connectors on both protocol eras, against `mcp-echo http`.

use std::time::Duration;

use edge_svc::connector::{ConnectorState, Era, Error, Transport};
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientRequest, ProtocolVersion, Request,
    ServerNotification, ServerResult,
};
use serde_json::json;
use tokio::process::Command;

use super::{DEADLINE, Running, UrlServer, call, config, text};

async fn echo_http() -> UrlServer {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-echo"));
    command.args(["http", "--listen", "127.0.0.1:0"]);
    UrlServer::start(command).await
}

async fn connect(server: &UrlServer, era: Era) -> Running {
    let era = match era {
        Era::Auto => "auto",
        Era::Modern => "modern",
        Era::Legacy => "legacy",
    };
    let http = config(json!({"url": server.url, "era": era, "connect_timeout": "10s"}));
    Running::spawn("echo-http", Transport::Http(http))
}

#[tokio::test]
async fn http_connector_speaks_the_modern_era() {
    let server = echo_http().await;
    let running = connect(&server, Era::Modern).await;
    let echoed = call(&running.connector, "echo", json!({"text": "modern"}))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "modern");
    assert_eq!(
        running.connector.protocol_version(),
        Some(ProtocolVersion::V_2026_07_28)
    );
    assert_eq!(running.connector.status().state, ConnectorState::Ready);
    assert_eq!(running.connector.status().transport, "http");
    running.stop().await;
}

#[tokio::test]
async fn http_connector_speaks_the_legacy_era() {
    let server = echo_http().await;
    let running = connect(&server, Era::Legacy).await;
    let echoed = call(&running.connector, "echo", json!({"text": "legacy"}))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "legacy");
    assert_eq!(
        running.connector.protocol_version(),
        Some(ProtocolVersion::LATEST_WITH_INITIALIZE)
    );
    running.stop().await;
}

/// Calls `tool` with `arguments` over the connector's direct line, as the express lane does.
async fn on_the_line(
    running: &Running,
    tool: &str,
    arguments: serde_json::Value,
) -> Result<Result<ServerResult, rmcp::model::ErrorData>, edge_svc::connector::LineError> {
    let line = running.connector.direct().expect("a direct line");
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = arguments.as_object().cloned();
    let meta = params.meta.get_or_insert_default();
    meta.extend(line.declared().clone());
    meta.set_client_capabilities(ClientCapabilities::default());
    line.call_tool(&params).await
}

/// The HTTP version a call reached the echo with on each road: rmcp's session, then edge's
/// direct line (which a stateless downstream gets once its session is ready).
async fn versions_on_both_roads(running: &Running) -> [String; 2] {
    let http_of = |arrival: &str| {
        let arrival: serde_json::Value = serde_json::from_str(arrival).expect("arrival is JSON");
        arrival["http"]
            .as_str()
            .expect("the echo saw a version")
            .to_owned()
    };
    let session = call(&running.connector, "arrival", json!({}))
        .await
        .expect("a call through the session");
    let answer = on_the_line(running, "arrival", json!({}))
        .await
        .expect("an answer")
        .expect("a result");
    let ServerResult::CallToolResult(direct) = answer else {
        panic!("not a tool result: {answer:?}");
    };
    [http_of(&text(&session)), http_of(&text(&direct))]
}

#[tokio::test]
async fn http_connector_speaks_http2_to_a_cleartext_downstream_only_when_told_to() {
    let server = echo_http().await;
    let plain = connect(&server, Era::Modern).await;
    assert_eq!(
        versions_on_both_roads(&plain).await,
        ["HTTP/1.1", "HTTP/1.1"],
        "HTTP/1.1 unless the connector says http2"
    );
    plain.stop().await;

    let http2 = config(json!({"url": server.url, "era": "modern", "http2": true}));
    let http2 = Running::spawn("echo-h2c", Transport::Http(http2));
    assert_eq!(
        versions_on_both_roads(&http2).await,
        ["HTTP/2.0", "HTTP/2.0"],
        "with http2, both the session and the direct line speak h2c"
    );
    http2.stop().await;
}

/// Asks the echo how many `slow` calls ran at once since it was last asked.
async fn slow_peak(running: &Running) -> u64 {
    let peak = call(&running.connector, "slow_peak", json!({}))
        .await
        .expect("the peak");
    text(&peak).parse().expect("a count")
}

#[tokio::test]
async fn requests_beyond_max_in_flight_wait_their_turn_on_both_roads() {
    let server = echo_http().await;
    let http = config(json!({"url": server.url, "era": "modern", "max_in_flight": 2}));
    let running = Running::spawn("echo-turns", Transport::Http(http));
    call(&running.connector, "echo", json!({"text": "ready"}))
        .await
        .expect("the session is ready");
    assert_eq!(slow_peak(&running).await, 0);

    let on_the_session = (0..5).map(|_| call(&running.connector, "slow", json!({"ms": 150})));
    for answer in futures::future::join_all(on_the_session).await {
        assert_eq!(
            text(&answer.expect("a call that waited its turn")),
            "slept 150 ms"
        );
    }
    assert_eq!(
        slow_peak(&running).await,
        2,
        "rmcp's session ran two calls at once, no more"
    );

    let on_the_line = (0..5).map(|_| on_the_line(&running, "slow", json!({"ms": 150})));
    for answer in futures::future::join_all(on_the_line).await {
        let answer = answer.expect("an answer").expect("a result");
        let ServerResult::CallToolResult(result) = answer else {
            panic!("not a tool result: {answer:?}");
        };
        assert_eq!(text(&result), "slept 150 ms");
    }
    assert_eq!(
        slow_peak(&running).await,
        2,
        "the direct line ran two calls at once, no more"
    );
    running.stop().await;
}

#[tokio::test]
async fn an_answer_larger_than_16_mib_is_refused_on_both_roads_and_the_connector_serves_on() {
    let server = echo_http().await;
    let running = connect(&server, Era::Modern).await;
    let within = call(&running.connector, "bulk", json!({"bytes": 1 << 20}))
        .await
        .expect("a 1 MiB answer on the session");
    assert_eq!(text(&within).len(), 1 << 20);
    let within = on_the_line(&running, "bulk", json!({"bytes": 1 << 20}))
        .await
        .expect("an answer")
        .expect("a result");
    let ServerResult::CallToolResult(within) = within else {
        panic!("not a tool result: {within:?}");
    };
    assert_eq!(text(&within).len(), 1 << 20, "a 1 MiB answer arrives whole");

    let refused = on_the_line(&running, "bulk", json!({"bytes": 17 << 20}))
        .await
        .expect_err("the line stops reading past 16 MiB");
    assert!(
        refused.to_string().contains("exceeds 16 MiB"),
        "the line says why: {refused}"
    );
    call(&running.connector, "bulk", json!({"bytes": 17 << 20}))
        .await
        .expect_err("rmcp's session road has the same bound");

    let after = on_the_line(&running, "echo", json!({"text": "after"})).await;
    let Ok(Ok(ServerResult::CallToolResult(after))) = after else {
        panic!("the line serves on: {after:?}");
    };
    assert_eq!(text(&after), "after");
    let after = call(&running.connector, "echo", json!({"text": "after"}))
        .await
        .expect("the session serves on");
    assert_eq!(text(&after), "after");
    running.stop().await;
}

#[tokio::test]
async fn http_connector_detects_the_era() {
    let server = echo_http().await;
    let running = connect(&server, Era::Auto).await;
    let sum = call(&running.connector, "add", json!({"a": 40, "b": 2}))
        .await
        .unwrap();
    assert_eq!(text(&sum), "42");
    assert_eq!(
        running.connector.protocol_version(),
        Some(ProtocolVersion::V_2026_07_28)
    );
    running.stop().await;
}

#[tokio::test]
async fn http_progress_reaches_the_relay_with_its_origin() {
    for era in [Era::Legacy, Era::Modern] {
        let server = echo_http().await;
        let running = connect(&server, era).await;
        let peer = running.connector.peer().await.expect("session");
        let arguments = json!({"ms": 40}).as_object().cloned().unwrap();
        let params = CallToolRequestParams::new("slow").with_arguments(arguments);
        let request = ClientRequest::CallToolRequest(Request::new(params));
        let handle = peer
            .send_cancellable_request(request, Default::default())
            .await
            .unwrap();
        let (id, token) = (handle.id.clone(), handle.progress_token.clone());
        let result = handle.await_response().await.unwrap();
        assert!(
            format!("{result:?}").contains("slept 40 ms"),
            "{era:?}: {result:?}"
        );

        let (origin, _) = running
            .relay
            .wait_for(|_, n| matches!(n, ServerNotification::ProgressNotification(p) if p.params.progress_token == token))
            .await;
        assert_eq!(origin, Some(id), "{era:?}");
        running.stop().await;
    }
}

#[tokio::test]
async fn http_connector_reconnects_after_the_server_restarts() {
    let server = echo_http().await;
    let running = connect(&server, Era::Legacy).await;
    call(&running.connector, "echo", json!({"text": "before"}))
        .await
        .unwrap();
    let url = server.url.clone();
    server.stop().await;

    // Same address, new process: the old session id is unknown to it.
    let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-echo"));
    let address = url.trim_start_matches("http://").trim_end_matches("/mcp");
    command.args(["http", "--listen", address]);
    let _server = UrlServer::start(command).await;
    let echoed = call(&running.connector, "echo", json!({"text": "after"}))
        .await
        .unwrap();
    assert_eq!(text(&echoed), "after");
    running.stop().await;
}

#[tokio::test]
async fn a_downstream_that_is_down_is_retried_on_backoff_and_callers_are_answered_by_the_attempt_they_hurry()
 {
    // Nothing listens on the port once it is released: every attempt is refused at once.
    let url = format!("http://{}/mcp", crate::audit::reserve_port().release());
    let http = config(json!({"url": url, "connect_timeout": "2s"}));
    let running = Running::spawn("down", Transport::Http(http));
    edge_svc::watch::spawn(
        running.connector.clone(),
        running.relay.clone(),
        running.shutdown.child_token(),
    );

    // Watched but not called for 2 s: the backoff doubles from 250 ms, so after the first
    // attempt there are at most three more (0.25, 0.75 and 1.75 s), however fast each fails.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let watched = running.connector.status().restarts;
    assert!(watched <= 4, "{watched} restarts in 2 s while only watched");

    // A caller hurries one attempt and is answered by it, not by its 2 s connect timeout.
    let refused = running.connector.peer().await;
    assert!(
        matches!(refused, Err(Error::Unavailable { .. })),
        "{refused:?}"
    );
    // An attempt already under way when the caller came may be the one that answers it.
    let hurried = running.connector.status().restarts - watched;
    assert!(hurried <= 2, "{hurried} attempts for one caller");

    // Callers back to back for 2 s get attempts at the first step's pace (250 ms), no faster;
    // left alone, the next attempt after 1.75 s would have come only at 3.75 s.
    let before = running.connector.status().restarts;
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < until {
        assert!(running.connector.peer().await.is_err());
    }
    let awaited = running.connector.status().restarts - before;
    assert!(
        (3..=9).contains(&awaited),
        "{awaited} restarts in 2 s of callers"
    );
    running.stop().await;
}

/// Some servers take their API key in the URL's query, so a connector's URL is a secret: while
/// the downstream is down, its query reaches no log line, no answer to a caller and no audit
/// record, even at debug, where rmcp's own lines are written too. edge's line says why the
/// downstream cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_connector_s_url_query_reaches_no_log_line_answer_or_audit_record() {
    const CANARY: &str = "url-query-canary-3f9d20c7";
    // Bound but not listening: every connection to it is refused.
    let closed = crate::audit::reserve_port();
    let dir = tempfile::tempdir().expect("dir");
    let (config, data, log) = (
        dir.path().join("gatehouse.yaml"),
        dir.path().join("data"),
        dir.path().join("gatehouse.log"),
    );
    std::fs::write(
        &config,
        format!(
            "connectors:\n\
             \x20 - name: down\n    http: {{url: \"http://{}/mcp?api_key={CANARY}\"}}\n\
             virtual_servers:\n\
             \x20 - name: tools\n    auth: none\n    connectors: [{{connector: down}}]\n",
            closed.addr()
        ),
    )
    .expect("config");
    let gatehouse = crate::launch::Launch::new(&config, &data)
        .log_to(log.clone(), "debug")
        .start()
        .await;
    let mcp = format!("{}/v/tools/mcp", gatehouse.origin);

    let answer = crate::oauth::call_tool(&mcp, "unused", "down_echo", json!({"text": "hi"})).await;
    let answer = answer.text().await.expect("answer");
    assert!(answer.contains("unavailable"), "{answer}");
    assert!(
        !answer.contains(CANARY),
        "the answer names the URL's query: {answer}"
    );

    // The failed attempts are logged with their cause and without the query.
    let logged = tokio::time::timeout(DEADLINE, async {
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("connector unavailable; retrying with backoff") {
                return text;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the failed attempts are logged");
    let unreachable = logged
        .lines()
        .find(|line| line.contains("connector unavailable; retrying with backoff"))
        .unwrap_or_default();
    assert!(
        unreachable.contains("tcp connect error: Connection refused"),
        "{unreachable}"
    );
    assert!(!unreachable.contains("rmcp::"), "{unreachable}");
    let leaked = logged.lines().find(|line| line.contains(CANARY));
    assert!(
        leaked.is_none(),
        "a log line names the URL's query: {leaked:?}"
    );

    // The refused call is audited, without the query.
    let audited = crate::audit::search_until(&data, "down_echo").await;
    assert!(
        !audited.contains(CANARY),
        "an audit record names the URL's query: {audited}"
    );
    drop(closed);
}
