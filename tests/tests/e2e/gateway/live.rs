//! Edge's live routing table: a virtual server whose curation changes while a legacy-era
//! session is open tells that session `notifications/tools/list_changed` and answers its next
//! `tools/list` from the new curation; a deleted server ends its sessions and answers 404.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use edge_svc::config::HttpFace;
use edge_svc::connector::{Connector, Relay, Transport};
use edge_svc::routing::Changed;
use edge_svc::{Gateway, GatewaySpec};
use rmcp::ErrorData;
use rmcp::model::{ClientResult, ErrorCode, RequestId, ServerNotification, ServerRequest};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::{ECHO, tool_names};

/// Counts the tool list changes the gateway announces to this test client.
#[derive(Debug, Default)]
struct ListChanges {
    tools: AtomicUsize,
    announced: Notify,
}

#[async_trait::async_trait]
impl Relay for ListChanges {
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

    async fn notify(&self, _: &str, _: Option<RequestId>, notification: ServerNotification) {
        if let ServerNotification::ToolListChangedNotification(_) = notification {
            self.tools.fetch_add(1, Ordering::SeqCst);
            self.announced.notify_waiters();
        }
    }
}

fn spec(servers: &str) -> GatewaySpec {
    let dir = std::path::Path::new(ECHO)
        .parent()
        .expect("binary dir")
        .display()
        .to_string();
    let yaml = format!(
        "connectors:\n  - name: local\n    stdio: {{command: \"{ECHO}\", args: [stdio], paths: [\"{dir}\"]}}\n\
         virtual_servers:\n{servers}"
    );
    GatewaySpec::from_yaml(&yaml, "live.yaml").expect("valid spec")
}

fn served(deny: &str) -> String {
    format!(
        "  - name: live\n    auth: none\n    connectors: [{{connector: local, prefix: \"\", deny: [{deny}]}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_server_tells_its_open_sessions_and_a_deleted_one_answers_404() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let gateway = Gateway::start(&spec(&served("exit")), &shutdown).expect("gateway");
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
    let url = format!("http://{addr}/v/live/mcp");
    let config: edge_svc::connector::HttpConfig =
        serde_norway::from_str(&format!("url: \"{url}\"\nera: legacy\n")).expect("client");
    let changes = Arc::new(ListChanges::default());
    let client_stop = CancellationToken::new();
    let client = Connector::spawn(
        "client".into(),
        Transport::Http(config),
        changes.clone(),
        client_stop.clone(),
    );
    let peer = client.peer().await.expect("legacy session");
    assert!(tool_names(&peer).await.contains(&"echo".to_owned()));

    let changed = Changed {
        servers: ["live".to_owned()].into(),
        ..Changed::default()
    };
    let announced = changes.announced.notified();
    let applied = gateway
        .apply(&spec(&served("exit, echo")), &changed)
        .await
        .expect("applied");
    assert_eq!(applied.updated, ["live"]);
    tokio::time::timeout(Duration::from_secs(1), async {
        if changes.tools.load(Ordering::SeqCst) == 0 {
            announced.await;
        }
    })
    .await
    .expect("the open session hears tools/list_changed within a second");
    let names = tool_names(&peer).await;
    assert!(
        !names.contains(&"echo".to_owned()) && names.contains(&"add".to_owned()),
        "the same session sees the new curation: {names:?}"
    );

    let applied = gateway
        .apply(&spec("  []\n"), &changed)
        .await
        .expect("applied");
    assert_eq!(applied.deleted, ["live"]);
    let gone = reqwest::Client::new()
        .post(&url)
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "ping"}))
        .send()
        .await
        .expect("request");
    assert_eq!(gone.status(), reqwest::StatusCode::NOT_FOUND);
    client_stop.cancel();
    shutdown.cancel();
    task.await.expect("server task").expect("server result");
}
