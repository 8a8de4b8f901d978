//! The gRPC Audit service end to end: append and acknowledgements, concurrent
//! streams, search, tail, checkpoints and offline-verifiable proofs.

use std::time::Duration;

use audit_svc::{Config, Reads as _, SqliteStore};
use proto::audit::v1 as pb;
use proto::audit::v1::audit_client::AuditClient;
use proto::common::v1 as common;
use svc_kit::GrpcClientConfig;
use svc_kit::callers::{PresentToken, SecretSetting};
use svc_kit::testing::{TestServer, init_test_tracing};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

/// Bounds every wait on the service.
pub(crate) const DEADLINE: Duration = Duration::from_secs(10);

/// Is an Audit client presenting a service token.
pub(crate) type Client = AuditClient<InterceptedService<Channel, PresentToken>>;

/// Is the token the suite's client presents: configured for an emitter and the
/// auditor role alike, so one client appends and reads.
pub(crate) fn suite_token() -> SecretSetting {
    SecretSetting::from("suite-token-".repeat(4))
}

/// Returns a client of `url` presenting `token`.
pub(crate) fn client(url: &str, token: Option<&SecretSetting>) -> Client {
    let channel = svc_kit::grpc::channel(url, &GrpcClientConfig::default()).unwrap();
    AuditClient::with_interceptor(channel, PresentToken::new(token).unwrap())
}

pub(crate) struct Service {
    pub(crate) server: TestServer,
    pub(crate) client: Client,
    pub(crate) data: tempfile::TempDir,
    pub(crate) config: Config,
}

pub(crate) async fn start() -> Service {
    start_with(|_, _| {}).await
}

/// Starts the service with checkpoints every 50 ms and `configure` applied.
pub(crate) async fn start_with(configure: impl FnOnce(&mut Config, &std::path::Path)) -> Service {
    init_test_tracing();
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::default().with_data_dir(data.path());
    config.checkpoint.interval = Duration::from_millis(50);
    config.callers.edge_token = Some(suite_token());
    config.callers.auditor_token = Some(suite_token());
    configure(&mut config, data.path());
    let served = config.clone();
    let server =
        TestServer::start(move |listener, shutdown| audit_svc::serve(served, listener, shutdown))
            .await;
    Service {
        client: client(&server.url(), Some(&suite_token())),
        server,
        data,
        config,
    }
}

pub(crate) fn wire_event(
    id: &str,
    member: &str,
    tool: &str,
    verdict: common::Verdict,
) -> pb::AuditEvent {
    pb::AuditEvent {
        event_id: id.to_owned(),
        kind: pb::EventKind::McpRequest.into(),
        time: Some(prost_types::Timestamp {
            seconds: 1_795_000_000,
            nanos: 0,
        }),
        principal: Some(common::Principal {
            member: Some(common::Member {
                id: member.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        target: Some(common::Target {
            virtual_server: "demo".to_owned(),
            connector: "echo".to_owned(),
            item: Some(common::target::Item::Tool(common::Tool {
                name: tool.to_owned(),
                ..Default::default()
            })),
        }),
        decision: Some(common::Decision {
            verdict: verdict.into(),
            ..Default::default()
        }),
        outcome: pb::Outcome::Success.into(),
        latency: Some(prost_types::Duration {
            seconds: 0,
            nanos: 1_500,
        }),
        ..Default::default()
    }
}

/// Opens an Append stream; returns its sender and the acknowledgement stream.
pub(crate) async fn append_stream(
    client: &mut Client,
) -> (
    mpsc::Sender<pb::AppendRequest>,
    tonic::Streaming<pb::AppendResponse>,
) {
    let (sender, receiver) = mpsc::channel(16);
    let acks = client
        .append(ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    (sender, acks)
}

pub(crate) async fn append(
    sender: &mpsc::Sender<pb::AppendRequest>,
    acks: &mut tonic::Streaming<pb::AppendResponse>,
    events: Vec<pb::AuditEvent>,
) -> Vec<pb::AppendAck> {
    sender.send(pb::AppendRequest { events }).await.unwrap();
    tokio::time::timeout(DEADLINE, acks.message())
        .await
        .expect("no acknowledgement before the deadline")
        .unwrap()
        .unwrap()
        .acks
}

fn statuses(acks: &[pb::AppendAck]) -> Vec<(pb::AppendStatus, u64)> {
    acks.iter()
        .map(|ack| (ack.status(), ack.sequence))
        .collect()
}

#[tokio::test]
async fn append_acknowledges_durable_events_idempotently() {
    let mut service = start().await;
    let (sender, mut acks) = append_stream(&mut service.client).await;
    let allow = common::Verdict::Allow;
    let mut no_kind = wire_event("bad", "alice", "echo", allow);
    no_kind.kind = pb::EventKind::Unspecified.into();
    let batch = vec![
        wire_event("a1", "alice", "echo", allow),
        no_kind,
        wire_event("a2", "bob", "echo", allow),
    ];
    let first = append(&sender, &mut acks, batch).await;
    use pb::AppendStatus::{Duplicate, Rejected, Stored};
    assert_eq!(statuses(&first), [(Stored, 1), (Rejected, 0), (Stored, 2)]);
    assert_eq!(first[1].event_id, "bad");
    assert!(first[1].rejection_reason.contains("kind"), "{first:?}");
    // Acknowledged means committed: a separate connection sees the events.
    let reader = SqliteStore::open(&service.data.path().join("audit.db"))
        .await
        .unwrap();
    assert_eq!(reader.head().await.unwrap(), 2);
    let resent = vec![
        wire_event("a2", "bob", "echo", allow),
        wire_event("a3", "carol", "echo", allow),
        wire_event("a1", "mallory", "echo", allow),
    ];
    let second = append(&sender, &mut acks, resent).await;
    assert_eq!(
        statuses(&second),
        [(Duplicate, 2), (Stored, 3), (Rejected, 0)]
    );
    assert!(second[2].rejection_reason.contains("different content"));
    drop(sender);
    assert!(acks.message().await.unwrap().is_none());
    service.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_get_one_gapless_sequence() {
    let service = start().await;
    let streams: Vec<_> = (0..4)
        .map(|stream| {
            let mut client = service.client.clone();
            tokio::spawn(async move {
                let (sender, mut acks) = append_stream(&mut client).await;
                let mut sequences = Vec::new();
                for batch in 0..25 {
                    let events = (0..8)
                        .map(|i| {
                            let id = format!("s{stream}-{batch}-{i}");
                            wire_event(&id, "alice", "echo", common::Verdict::Allow)
                        })
                        .collect();
                    let acked = append(&sender, &mut acks, events).await;
                    sequences.extend(acked.iter().map(|ack| ack.sequence));
                }
                sequences
            })
        })
        .collect();
    let mut all = Vec::new();
    for stream in streams {
        let sequences = stream.await.unwrap();
        assert!(sequences.windows(2).all(|pair| pair[0] < pair[1]));
        all.extend(sequences);
    }
    all.sort_unstable();
    assert_eq!(all, (1..=800).collect::<Vec<u64>>());
    service.server.stop().await.unwrap();
}

#[tokio::test]
async fn search_filters_pages_and_refuses_foreign_tokens() {
    let mut service = start().await;
    let (sender, mut acks) = append_stream(&mut service.client).await;
    let events = (0..9)
        .map(|i| {
            let verdict = if i % 3 == 0 {
                common::Verdict::Deny
            } else {
                common::Verdict::Allow
            };
            wire_event(&format!("q{i}"), ["alice", "bob"][i % 2], "echo", verdict)
        })
        .collect();
    append(&sender, &mut acks, events).await;
    let filter = pb::EventFilter {
        member_ids: vec!["alice".into()],
        ..Default::default()
    };
    let mut token = String::new();
    let mut ids = Vec::new();
    for _ in 0..10 {
        let page = service
            .client
            .search(pb::SearchRequest {
                filter: Some(filter.clone()),
                page: Some(common::PageRequest {
                    page_size: 2,
                    page_token: token.clone(),
                }),
                descending: false,
            })
            .await
            .unwrap()
            .into_inner();
        ids.extend(
            page.events
                .iter()
                .map(|stored| stored.event.as_ref().unwrap().event_id.clone()),
        );
        token = page.page.unwrap().next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(ids, ["q0", "q2", "q4", "q6", "q8"]);
    let denied = service
        .client
        .search(pb::SearchRequest {
            filter: Some(pb::EventFilter {
                verdicts: vec![common::Verdict::Deny.into()],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let denied: Vec<u64> = denied.events.iter().map(|stored| stored.sequence).collect();
    assert_eq!(denied, [1, 4, 7]);
    let first = service
        .client
        .search(pb::SearchRequest {
            filter: Some(filter),
            page: Some(common::PageRequest {
                page_size: 2,
                page_token: String::new(),
            }),
            descending: false,
        })
        .await
        .unwrap()
        .into_inner();
    let foreign = service
        .client
        .search(pb::SearchRequest {
            page: Some(common::PageRequest {
                page_size: 2,
                page_token: first.page.unwrap().next_page_token,
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), tonic::Code::InvalidArgument);
    let inverted = service
        .client
        .search(pb::SearchRequest {
            filter: Some(pb::EventFilter {
                start: Some(prost_types::Timestamp {
                    seconds: 20,
                    nanos: 0,
                }),
                end: Some(prost_types::Timestamp {
                    seconds: 10,
                    nanos: 0,
                }),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(inverted.code(), tonic::Code::InvalidArgument);
    service.server.stop().await.unwrap();
}

#[tokio::test]
async fn tail_streams_matching_events_as_they_are_appended() {
    let mut service = start().await;
    let (sender, mut acks) = append_stream(&mut service.client).await;
    let allow = common::Verdict::Allow;
    append(
        &sender,
        &mut acks,
        vec![wire_event("old", "alice", "echo", allow)],
    )
    .await;
    let mut live = service
        .client
        .tail(pb::TailRequest {
            filter: Some(pb::EventFilter {
                member_ids: vec!["alice".into()],
                ..Default::default()
            }),
            after_sequence: None,
        })
        .await
        .unwrap()
        .into_inner();
    let mut replay = service
        .client
        .tail(pb::TailRequest {
            filter: None,
            after_sequence: Some(0),
        })
        .await
        .unwrap()
        .into_inner();
    let replayed = next_tail(&mut replay).await;
    assert_eq!(replayed[0].sequence, 1);
    let batch = vec![
        wire_event("new-bob", "bob", "echo", allow),
        wire_event("new-alice", "alice", "echo", allow),
    ];
    append(&sender, &mut acks, batch).await;
    let tailed = next_tail(&mut live).await;
    let tailed: Vec<(u64, String)> = tailed
        .iter()
        .map(|stored| {
            (
                stored.sequence,
                stored.event.as_ref().unwrap().event_id.clone(),
            )
        })
        .collect();
    assert_eq!(tailed, [(3, "new-alice".to_owned())]);
    let mut replayed_after = Vec::new();
    while replayed_after.len() < 2 {
        replayed_after.extend(
            next_tail(&mut replay)
                .await
                .into_iter()
                .map(|stored| stored.sequence),
        );
    }
    assert_eq!(replayed_after, [2, 3]);
    drop((live, replay));
    service.server.stop().await.unwrap();
}

async fn next_tail(stream: &mut tonic::Streaming<pb::TailResponse>) -> Vec<pb::StoredEvent> {
    let response = tokio::time::timeout(DEADLINE, stream.message())
        .await
        .expect("tail deadline");
    response.unwrap().unwrap().events
}
