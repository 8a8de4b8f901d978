//! Secrets never leak: a canary value sent in events, resends and queries must
//! not appear in any log line, acknowledgement or error status.

use std::io::Write;
use std::sync::{Arc, Mutex};

use proto::audit::v1 as pb;
use proto::common::v1 as common;
use tracing_subscriber::fmt::MakeWriter;

use crate::service::{append, append_stream, start, wire_event};

const CANARY: &str = "canary-sk-live-9f8e7d6c5b4a";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Self;

    fn make_writer(&'a self) -> Self {
        self.clone()
    }
}

// current_thread: the server's tasks run on this thread, under this subscriber.
#[tokio::test(flavor = "current_thread")]
async fn a_canary_never_reaches_logs_acks_or_errors() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_env_filter("debug,h2=info,hyper=info,tower=info")
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let mut service = start().await;
    let (sender, mut acks) = append_stream(&mut service.client).await;
    let allow = common::Verdict::Allow;
    let mut secret_in_agent = wire_event("c1", "alice", "echo", allow);
    secret_in_agent.metadata = Some(common::RequestMetadata {
        user_agent: CANARY.to_owned(),
        ..Default::default()
    });
    let mut unstorable = wire_event("c2", "alice", "echo", allow);
    unstorable.time = None;
    unstorable.error = Some(pb::ErrorDetail {
        message: CANARY.to_owned(),
        ..Default::default()
    });
    let mut replay = wire_event("c3", "alice", "echo", allow);
    append(&sender, &mut acks, vec![replay.clone()]).await;
    // The same id resent with different (secret-bearing) content is refused.
    replay.payload = Some(pb::PayloadMetadata {
        masked_arguments_json: CANARY.as_bytes().to_vec(),
        ..Default::default()
    });
    let answered = append(
        &sender,
        &mut acks,
        vec![secret_in_agent, unstorable, replay],
    )
    .await;
    assert_eq!(answered[1].status(), pb::AppendStatus::Rejected);
    assert_eq!(answered[2].status(), pb::AppendStatus::Rejected);
    let mut texts: Vec<String> = answered.iter().map(|ack| format!("{ack:?}")).collect();
    let bad_token = service
        .client
        .search(pb::SearchRequest {
            filter: Some(pb::EventFilter {
                member_ids: vec![CANARY.into()],
                ..Default::default()
            }),
            page: Some(common::PageRequest {
                page_size: 1,
                page_token: CANARY.into(),
            }),
            descending: false,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_token.code(), tonic::Code::InvalidArgument);
    texts.push(bad_token.message().to_owned());
    drop(sender);
    service.server.stop().await.unwrap();
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("audit-svc serving grpc"),
        "logs were not captured"
    );
    assert!(!logs.contains(CANARY), "canary in logs:\n{logs}");
    for text in texts {
        assert!(!text.contains(CANARY), "canary in {text}");
    }
}

// current_thread: the sink's task runs on this thread, under this subscriber.
#[tokio::test(flavor = "current_thread")]
async fn sink_credentials_never_reach_logs_errors_or_debug() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_env_filter("debug,h2=info,hyper=info,reqwest=info")
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    // The receiver expects another token: every delivery is refused (401) and
    // retried, which logs the receiver's answer.
    let receiver = crate::sinks::hec_receiver::HecReceiver::start("the-right-token", true).await;
    let configs = crate::sinks::sinks(&format!(
        "[[sinks]]\nname = \"splunk\"\n[sinks.retry]\ninitial = \"5ms\"\nmax = \"20ms\"\n\
         [sinks.splunk_hec]\nurl = \"{}\"\ntoken = \"{CANARY}\"\nack = true\n\
         [[sinks]]\nname = \"archive\"\n[sinks.s3]\nendpoint = \"http://127.0.0.1:9\"\n\
         bucket = \"b\"\naccess_key_id = \"k\"\nsecret_access_key = \"{CANARY}\"\n",
        receiver.url
    ));
    let debug = format!("{configs:?}");
    assert!(!debug.contains(CANARY), "canary in config debug: {debug}");
    let backend = crate::backend::Backend::sqlite().await;
    let log = crate::sinks::log_over(&backend).await;
    crate::sinks::append(&log, "c", 0, 2).await;
    let running = crate::sinks::Running::start(&log, &configs);
    running.retried(3).await;
    running.stop().await;
    let seen = receiver.state.lock().unwrap().authorizations.clone();
    assert!(
        seen.iter().all(|header| header.contains(CANARY)),
        "{seen:?}"
    );
    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("audit sink delivery failed; retrying"),
        "logs were not captured:\n{logs}"
    );
    assert!(!logs.contains(CANARY), "canary in logs:\n{logs}");
}
