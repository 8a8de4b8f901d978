//! The gateway end to end: real rmcp clients of both eras talk to a running edge that fronts
//! real `mcp-echo` downstreams over stdio and streamable HTTP.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_svc::config::HttpFace;
use edge_svc::connector::{Connector, ConnectorState, Era, Relay, Transport};
use edge_svc::vmcp::RELIST_AFTER;
use edge_svc::{Gateway, GatewaySpec};
use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, ClientRequest, ClientResult, ErrorCode, ProgressNotificationParam,
    RequestId, RequestMetaObject, ServerNotification, ServerRequest,
};
#[allow(
    deprecated,
    reason = "logging is deprecated by SEP-2577 but live in both eras the gateway serves"
)]
use rmcp::model::{LoggingLevel, SetLevelRequestParams};
use rmcp::service::PeerRequestOptions;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const ECHO: &str = env!("CARGO_BIN_EXE_mcp-echo");

/// A gateway started in this process on an ephemeral loopback port.
struct RunningGateway {
    addr: SocketAddr,
    gateway: Gateway,
    shutdown: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    _downstream: tokio::process::Child,
}

impl RunningGateway {
    /// Starts `mcp-echo http` plus a gateway whose YAML is `spec` with `{ECHO}` and `{HTTP}` filled in.
    async fn start(spec: &str) -> Self {
        let (downstream, http_url) = start_http_echo().await;
        let echo_dir = std::path::Path::new(ECHO)
            .parent()
            .expect("binary dir")
            .display()
            .to_string();
        let yaml = spec
            .replace("{ECHO_DIR}", &echo_dir)
            .replace("{ECHO}", ECHO)
            .replace("{HTTP}", &http_url);
        let spec = GatewaySpec::from_yaml(&yaml, "test.yaml").expect("test spec is valid");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let shutdown = CancellationToken::new();
        let gateway = Gateway::start(&spec, &shutdown).expect("gateway starts");
        let face = HttpFace::new(
            format!("http://{addr}").parse().expect("url"),
            &[],
            &[],
            64 * 1024,
        );
        let task = tokio::spawn(edge_svc::serve(
            gateway.clone(),
            face,
            None,
            listener,
            shutdown.clone(),
        ));
        Self {
            addr,
            gateway,
            shutdown,
            task,
            _downstream: downstream,
        }
    }

    fn url(&self, server: &str) -> String {
        format!("http://{}/v/{server}/mcp", self.addr)
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task
            .await
            .expect("server task")
            .expect("server result");
    }
}

pub(super) async fn start_http_echo() -> (tokio::process::Child, String) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(ECHO)
        .args(["http", "--listen", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mcp-echo http");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let url = lines
        .next_line()
        .await
        .expect("read")
        .expect("mcp-echo prints its url");
    (child, url)
}

/// Records what the gateway sends to this test client outside of responses.
#[derive(Debug, Default)]
struct Recorder {
    progress: Mutex<Vec<ProgressNotificationParam>>,
    logs: Mutex<Vec<serde_json::Value>>,
    tool_list_changes: AtomicUsize,
    prompt_list_changes: AtomicUsize,
}

#[async_trait::async_trait]
impl Relay for Recorder {
    async fn request(
        &self,
        _: &str,
        _: Option<RequestId>,
        _: ServerRequest,
    ) -> Result<ClientResult, ErrorData> {
        Err(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            "test client answers no requests",
            None,
        ))
    }

    #[allow(
        deprecated,
        reason = "logging is deprecated by SEP-2577 but live in both eras the gateway serves"
    )]
    async fn notify(&self, _: &str, _: Option<RequestId>, notification: ServerNotification) {
        match notification {
            ServerNotification::ProgressNotification(progress) => {
                self.progress.lock().expect("lock").push(progress.params);
            }
            ServerNotification::LoggingMessageNotification(message) => {
                self.logs.lock().expect("lock").push(message.params.data);
            }
            ServerNotification::ToolListChangedNotification(_) => {
                self.tool_list_changes.fetch_add(1, Ordering::SeqCst);
            }
            ServerNotification::PromptListChangedNotification(_) => {
                self.prompt_list_changes.fetch_add(1, Ordering::SeqCst);
            }
            _ => {}
        }
    }
}

/// An MCP client of the gateway, speaking one era (Gatehouse's own connector is a real rmcp client).
fn client(url: &str, era: Era, recorder: Arc<Recorder>) -> (Connector, CancellationToken) {
    let yaml = format!(
        "url: \"{url}\"\nera: {}\n",
        if era == Era::Modern {
            "modern"
        } else {
            "legacy"
        }
    );
    let config: edge_svc::connector::HttpConfig =
        serde_norway::from_str(&yaml).expect("client config");
    let shutdown = CancellationToken::new();
    (
        Connector::spawn(
            "client".into(),
            Transport::Http(config),
            recorder,
            shutdown.clone(),
        ),
        shutdown,
    )
}

const COMBINED: &str = r#"
connectors:
  - name: local
    stdio: {command: "{ECHO}", args: [stdio], paths: ["{ECHO_DIR}"]}
  - name: web
    http: {url: "{HTTP}"}
virtual_servers:
  - name: combined
    auth: none
    connectors:
      - connector: local
        prefix: ""
        deny: ["exit", "read_file", "env"]
        rename: {echo: say}
        describe: {echo: "Repeats what you say"}
      - connector: web
        allow: ["echo", "add"]
  - name: locked
    connectors:
      - connector: web
"#;

async fn tool_names(peer: &rmcp::Peer<rmcp::RoleClient>) -> Vec<String> {
    let tools = peer.list_all_tools().await.expect("tools/list");
    sorted(tools.iter().map(|tool| tool.name.to_string()))
}

async fn prompt_names(peer: &rmcp::Peer<rmcp::RoleClient>) -> Vec<String> {
    let prompts = peer.list_all_prompts().await.expect("prompts/list");
    sorted(prompts.into_iter().map(|prompt| prompt.name))
}

fn sorted(names: impl Iterator<Item = String>) -> Vec<String> {
    let mut names: Vec<String> = names.collect();
    names.sort();
    names
}

async fn call_text(
    peer: &rmcp::Peer<rmcp::RoleClient>,
    tool: &str,
    arguments: serde_json::Value,
) -> String {
    let mut params = CallToolRequestParams::new(tool.to_owned());
    params.arguments = arguments.as_object().cloned();
    let result = peer.call_tool(params).await.expect("tools/call");
    assert_ne!(result.is_error, Some(true), "{tool} failed: {result:?}");
    result
        .content
        .iter()
        .filter_map(|content| content.as_text().map(|text| text.text.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_eras_see_the_curated_catalogue_and_reach_both_transports() {
    let gateway = RunningGateway::start(COMBINED).await;
    for era in [Era::Legacy, Era::Modern] {
        let (client, stop) = client(&gateway.url("combined"), era, Arc::default());
        let peer = client.peer().await.expect("client connects");
        let names = tool_names(&peer).await;
        assert!(
            names.contains(&"say".to_owned()),
            "{era:?}: renamed tool missing from {names:?}"
        );
        assert!(
            names.contains(&"web__echo".to_owned()) && names.contains(&"web__add".to_owned()),
            "{names:?}"
        );
        for hidden in ["echo", "exit", "env", "read_file", "web__slow", "web__pid"] {
            assert!(
                !names.contains(&hidden.to_owned()),
                "{era:?}: `{hidden}` must be hidden: {names:?}"
            );
        }
        let tools = peer.list_all_tools().await.expect("tools/list");
        let say = tools.iter().find(|tool| tool.name == "say").expect("say");
        assert_eq!(say.description.as_deref(), Some("Repeats what you say"));
        assert_eq!(
            call_text(&peer, "say", json!({"text": "hello"})).await,
            "hello"
        );
        assert_eq!(
            call_text(&peer, "web__add", json!({"a": 2, "b": 40})).await,
            "42"
        );
        let unknown = peer
            .call_tool(CallToolRequestParams::new("echo"))
            .await
            .expect_err("hidden tool is unknown");
        assert!(
            unknown.to_string().contains("unknown tool"),
            "{era:?}: {unknown}"
        );
        stop.cancel();
    }
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_stdio_connector_is_restarted_and_the_next_call_succeeds() {
    let gateway = RunningGateway::start(COMBINED).await;
    let (client, stop) = client(&gateway.url("combined"), Era::Legacy, Arc::default());
    let peer = client.peer().await.expect("connect");
    let pid: i32 = call_text(&peer, "pid", json!({}))
        .await
        .trim()
        .parse()
        .expect("pid is a number");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let answer = loop {
        let mut params = CallToolRequestParams::new("say");
        params.arguments = json!({"text": "again"}).as_object().cloned();
        match peer.call_tool(params).await {
            Ok(result) if result.is_error != Some(true) => break result,
            outcome => assert!(
                tokio::time::Instant::now() < deadline,
                "no recovery before the deadline: {outcome:?}"
            ),
        }
        tokio::task::yield_now().await;
    };
    assert_eq!(
        answer.content[0].as_text().map(|text| text.text.as_str()),
        Some("again")
    );
    let new_pid: i32 = call_text(&peer, "pid", json!({}))
        .await
        .trim()
        .parse()
        .expect("pid");
    assert_ne!(new_pid, pid, "a new process serves the connector");
    stop.cancel();
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_only_the_calling_client() {
    let gateway = RunningGateway::start(COMBINED).await;
    let (caller_log, bystander_log) =
        (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let (caller, stop_caller) = client(
        &gateway.url("combined"),
        Era::Legacy,
        Arc::clone(&caller_log),
    );
    let (bystander, stop_bystander) = client(
        &gateway.url("combined"),
        Era::Legacy,
        Arc::clone(&bystander_log),
    );
    let (peer, other) = (
        caller.peer().await.expect("caller"),
        bystander.peer().await.expect("bystander"),
    );
    assert_eq!(
        call_text(&other, "say", json!({"text": "idle"})).await,
        "idle"
    );
    call_text(&peer, "slow", json!({"ms": 50})).await;
    assert!(
        !caller_log.progress.lock().expect("lock").is_empty(),
        "the caller got its progress"
    );
    assert!(
        bystander_log.progress.lock().expect("lock").is_empty(),
        "nobody else did"
    );
    stop_caller.cancel();
    stop_bystander.cancel();
    gateway.stop().await;
}

/// Returns the log messages `recorder` heard once there are `count` of them (or after `wait`).
async fn logs_heard(recorder: &Recorder, count: usize, wait: Duration) -> Vec<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let logs = recorder.logs.lock().expect("lock").clone();
        if logs.len() >= count || tokio::time::Instant::now() > deadline {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A virtual server of the HTTP echo alone, which speaks 2026-07-28 to the gateway.
const STATELESS: &str = r#"
connectors:
  - name: web
    http: {url: "{HTTP}"}
virtual_servers:
  - name: web
    auth: none
    connectors:
      - connector: web
        prefix: ""
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(
    deprecated,
    reason = "logging is deprecated by SEP-2577 but live in both eras the gateway serves"
)]
async fn log_messages_reach_clients_of_both_eras_that_asked_for_them_from_a_2026_07_28_downstream()
{
    let gateway = RunningGateway::start(STATELESS).await;
    let (session_log, modern_log) = (Arc::new(Recorder::default()), Arc::new(Recorder::default()));
    let (session, stop_session) =
        client(&gateway.url("web"), Era::Legacy, Arc::clone(&session_log));
    let peer = session.peer().await.expect("session");

    // The downstream sends a request's log messages only when the request asks for them.
    call_text(&peer, "chatty", json!({"text": "unasked"})).await;
    peer.set_level(SetLevelRequestParams::new(LoggingLevel::Info))
        .await
        .expect("setLevel");
    // rmcp's sessions send every notification but progress on the client's GET stream, which
    // may deliver it after the call's answer, and drop what was sent before the client's first
    // GET (it opens that stream on a task of its own after the handshake): the call is repeated
    // until the stream is open, a bounded number of times.
    let mut heard = Vec::new();
    for _ in 0..10 {
        call_text(&peer, "chatty", json!({"text": "asked for the session"})).await;
        heard = logs_heard(&session_log, 1, Duration::from_millis(500)).await;
        if !heard.is_empty() {
            break;
        }
    }
    assert_eq!(
        heard.first(),
        Some(&json!("asked for the session")),
        "a session's level goes with each of its calls"
    );
    assert!(
        !heard.contains(&json!("unasked")),
        "a call made before the level was set is not logged: {heard:?}"
    );

    let (modern, stop_modern) = client(&gateway.url("web"), Era::Modern, Arc::clone(&modern_log));
    let peer = modern.peer().await.expect("modern");
    call_text(&peer, "chatty", json!({"text": "unasked"})).await;
    let mut meta = RequestMetaObject::default();
    meta.set_log_level(LoggingLevel::Info);
    let mut options = PeerRequestOptions::no_options();
    options.meta = Some(meta);
    let params = CallToolRequestParams::new("chatty").with_arguments(
        json!({"text": "asked for the call"})
            .as_object()
            .cloned()
            .expect("object"),
    );
    peer.send_request_with_option(
        ClientRequest::CallToolRequest(rmcp::model::Request::new(params)),
        options,
    )
    .await
    .expect("sent")
    .await_response()
    .await
    .expect("answered");
    assert_eq!(
        logs_heard(&modern_log, 1, Duration::from_secs(5)).await,
        vec![json!("asked for the call")],
        "a 2026-07-28 call's own level goes with it"
    );
    stop_session.cancel();
    stop_modern.cancel();
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_messages_of_a_masked_call_are_masked_too_even_a_value_cut_between_two() {
    let spec = format!(
        "{COMBINED}dlp:\n  rules: [{{virtual_server: combined, output: {{action: mask, detectors: [card]}}}}]\n"
    );
    let gateway = RunningGateway::start(&spec).await;
    let log = Arc::new(Recorder::default());
    let (caller, stop) = client(&gateway.url("combined"), Era::Legacy, Arc::clone(&log));
    let peer = caller.peer().await.expect("caller");
    let note = "charging 4111 1111 1111 1111";
    call_text(&peer, "slow", json!({"ms": 20, "note": note})).await;
    let first = log.progress.lock().expect("lock").clone();
    assert!(!first.is_empty(), "the caller got its progress");
    for progress in &first {
        assert_eq!(
            progress.message.as_deref(),
            Some("charging [REDACTED:card]")
        );
    }

    // The client library hands notifications to its handler on their own tasks, so a late one
    // of the first call can be recorded after its answer: the second call is told apart by its
    // progress token, and its two messages are awaited rather than read once.
    let first_token = first[0].progress_token.clone();
    let notes = ["charging 4111 1111", " 1111 1111, receipt sent"];
    call_text(&peer, "slow", json!({"ms": 20, "notes": notes})).await;
    let second = || -> Vec<(f64, Option<String>)> {
        let mut received: Vec<_> = log
            .progress
            .lock()
            .expect("lock")
            .iter()
            .filter(|progress| progress.progress_token != first_token)
            .map(|progress| (progress.progress, progress.message.clone()))
            .collect();
        received.sort_by(|a, b| a.0.total_cmp(&b.0));
        received
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while second().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        second(),
        [
            (1.0, Some("charging [REDACTED:card]".to_owned())),
            (2.0, Some(", receipt sent".to_owned())),
        ],
        "a card cut between two messages is masked once, and the cut message still arrives"
    );
    stop.cancel();
    gateway.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_connector_shows_in_status_not_as_a_hang() {
    let yaml = "connectors:\n  - name: gone\n    http: {url: \"http://127.0.0.1:9/mcp\", connect_timeout: 1s}\n";
    let spec = GatewaySpec::from_yaml(yaml, "t.yaml").expect("spec");
    let shutdown = CancellationToken::new();
    let gateway = Gateway::start(&spec, &shutdown).expect("start");
    let connector = &gateway.connectors()[0];
    assert!(
        connector.peer().await.is_err(),
        "an unreachable downstream is an error"
    );
    assert_ne!(connector.status().state, ConnectorState::Ready);
    shutdown.cancel();
}

/// A virtual server whose second member's downstream is down: nothing listens on `{GONE}`.
/// Its connect timeout is long, so that anything waiting for it shows.
const HALF_DOWN: &str = r#"
connectors:
  - name: web
    http: {url: "{HTTP}"}
  - name: gone
    http: {url: "http://{GONE}/mcp", connect_timeout: 120s}
virtual_servers:
  - name: half
    auth: none
    connectors: [{connector: web}, {connector: gone}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_that_is_down_holds_up_neither_the_listings_nor_the_calls_of_the_others() {
    let gone = super::audit::reserve_port().release();
    let gateway = RunningGateway::start(&HALF_DOWN.replace("{GONE}", &gone.to_string())).await;
    for era in [Era::Modern, Era::Legacy] {
        let (client, stop) = client(&gateway.url("half"), era, Arc::default());
        let peer = client.peer().await.expect("client connects");
        // Waiting for the member that is down would take its 120 s connect timeout.
        let served = tokio::time::timeout(Duration::from_secs(30), async {
            for _ in 0..3 {
                let names = tool_names(&peer).await;
                assert!(
                    names.contains(&"web__echo".to_owned()),
                    "{era:?}: {names:?}"
                );
                assert!(
                    !names.iter().any(|name| name.starts_with("gone__")),
                    "{era:?}: {names:?}"
                );
                let text = call_text(&peer, "web__echo", json!({"text": "still here"})).await;
                assert_eq!(text, "still here");
                let missing = peer
                    .call_tool(CallToolRequestParams::new("gone__echo"))
                    .await
                    .expect_err("the member that is down has no tools listed");
                assert!(
                    missing
                        .to_string()
                        .contains("connector `gone` is unavailable"),
                    "{era:?}: {missing}"
                );
            }
        })
        .await;
        assert!(
            served.is_ok(),
            "{era:?}: the member that is down held the others up"
        );
        stop.cancel();
    }

    // A client that keeps its own copy of the list got it while the member was down.
    let heard = Arc::new(Recorder::default());
    let (listener, stop_listener) = client(&gateway.url("half"), Era::Legacy, Arc::clone(&heard));
    let listening = listener.peer().await.expect("client connects");
    assert!(
        !tool_names(&listening)
            .await
            .contains(&"gone__echo".to_owned())
    );

    // The downstream comes back on the same address while nobody calls: the gateway's own
    // reconnection (at most the 30 s top of its backoff) finds it, and the client is told.
    let mut command = tokio::process::Command::new(ECHO);
    command.args(["http", "--listen", &gone.to_string()]);
    let _back = super::connector::UrlServer::start(command).await;
    let came_back = tokio::time::Instant::now();
    let deadline = came_back + Duration::from_secs(45);
    while heard.tool_list_changes.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the listening client was not told that the member came back: {:#?}",
            gateway
                .gateway
                .connectors()
                .iter()
                .map(Connector::status)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "told {:?} after the downstream came back",
        came_back.elapsed()
    );
    assert!(
        tool_names(&listening)
            .await
            .contains(&"gone__echo".to_owned())
    );
    stop_listener.cancel();

    let (client, stop) = client(&gateway.url("half"), Era::Modern, Arc::default());
    let peer = client.peer().await.expect("client connects");
    assert!(tool_names(&peer).await.contains(&"gone__echo".to_owned()));
    assert_eq!(
        call_text(&peer, "gone__echo", json!({"text": "back"})).await,
        "back"
    );
    stop.cancel();
    gateway.stop().await;
}

/// A virtual server whose second member cannot list its prompts for a while: its downstream
/// refuses its first two `prompts/list` requests.
const FLAKY: &str = r#"
connectors:
  - name: web
    http: {url: "{HTTP}"}
  - name: flaky
    http: {url: "{FLAKY}"}
virtual_servers:
  - name: shaky
    auth: none
    connectors: [{connector: web}, {connector: flaky}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_listing_fails_is_listed_again_on_a_schedule_whether_or_not_anyone_calls() {
    let refusals = tempfile::NamedTempFile::new().expect("stderr file");
    let refused = || {
        std::fs::read_to_string(refusals.path())
            .unwrap_or_default()
            .matches("refused on purpose")
            .count()
    };
    let mut command = tokio::process::Command::new(ECHO);
    command
        .args([
            "http",
            "--listen",
            "127.0.0.1:0",
            "--fail-prompt-lists",
            "2",
        ])
        .stderr(refusals.reopen().expect("stderr file"));
    let flaky = super::connector::UrlServer::start(command).await;
    let gateway = RunningGateway::start(&FLAKY.replace("{FLAKY}", &flaky.url)).await;
    let heard = Arc::new(Recorder::default());
    let (client, stop) = client(&gateway.url("shaky"), Era::Legacy, Arc::clone(&heard));
    let peer = client.peer().await.expect("client connects");

    // Calls to both members go on while `flaky`'s prompts cannot be listed, and do not list
    // it again each time: once per RELIST_AFTER at most.
    let burst = tokio::time::Instant::now();
    for round in 0..20 {
        for tool in ["web__echo", "flaky__echo"] {
            let text = format!("round {round}");
            assert_eq!(call_text(&peer, tool, json!({"text": text})).await, text);
        }
    }
    let relists = burst.elapsed().as_millis() / RELIST_AFTER.as_millis();
    assert!(
        refused() <= usize::try_from(1 + relists).expect("small"),
        "{} refused listings in {:?}",
        refused(),
        burst.elapsed()
    );
    let prompts = prompt_names(&peer).await;
    assert!(
        prompts.contains(&"web__greet".to_owned()) && !prompts.contains(&"flaky__greet".to_owned()),
        "{prompts:?}"
    );

    // The listing heals (its third request succeeds) while nobody calls: the gateway lists
    // it again on its own, and the listening client is told the prompts changed.
    let deadline = tokio::time::Instant::now() + 7 * RELIST_AFTER + Duration::from_secs(10);
    while heard.prompt_list_changes.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client was not told that `flaky`'s prompts are listed ({} refused)",
            refused()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        prompt_names(&peer)
            .await
            .contains(&"flaky__greet".to_owned())
    );
    assert_eq!(refused(), 2, "listed again only until it succeeded");
    stop.cancel();
    gateway.stop().await;
}

mod http_edges;
mod live;
