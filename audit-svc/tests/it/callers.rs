//! Who may call which Audit method: emitters append, auditors read, nobody else
//! gets anything (the callers paragraph of `audit.proto`).

use proto::audit::v1 as pb;
use proto::common::v1 as common;
use svc_kit::callers::SecretSetting;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

use crate::service::{Client, append, append_stream, client, start_with, wire_event};

fn token(fill: &str) -> SecretSetting {
    SecretSetting::from(fill.repeat(32))
}

async fn search(client: &mut Client) -> Result<pb::SearchResponse, tonic::Status> {
    client
        .search(pb::SearchRequest::default())
        .await
        .map(tonic::Response::into_inner)
}

/// Opens an Append stream and returns the status it was refused with, if any.
async fn append_refusal(client: &mut Client) -> Option<Code> {
    let (sender, receiver) = tokio::sync::mpsc::channel(1);
    let event = wire_event("e-1", "alice", "echo", common::Verdict::Allow);
    sender
        .send(pb::AppendRequest {
            events: vec![event],
        })
        .await
        .unwrap();
    match client.append(ReceiverStream::new(receiver)).await {
        Err(status) => Some(status.code()),
        Ok(_) => None,
    }
}

#[tokio::test]
async fn each_role_reaches_only_its_methods() {
    let service = start_with(|config, _| {
        config.callers.edge_token = Some(token("e"));
        config.callers.vault_token = Some(token("v"));
        config.callers.auditor_token = Some(token("a"));
    })
    .await;
    let url = service.server.url();

    let mut edge = client(&url, Some(&token("e")));
    let (sender, mut acks) = append_stream(&mut edge).await;
    let stored = append(
        &sender,
        &mut acks,
        vec![wire_event("e-1", "alice", "echo", common::Verdict::Allow)],
    )
    .await;
    assert_eq!(stored[0].status(), pb::AppendStatus::Stored);
    assert_eq!(
        search(&mut edge).await.unwrap_err().code(),
        Code::PermissionDenied,
        "an emitter cannot read the log"
    );

    let mut auditor = client(&url, Some(&token("a")));
    assert_eq!(search(&mut auditor).await.unwrap().events.len(), 1);
    assert_eq!(
        append_refusal(&mut auditor).await,
        Some(Code::PermissionDenied),
        "an auditor cannot write the log"
    );
    let mut vault = client(&url, Some(&token("v")));
    assert_eq!(append_refusal(&mut vault).await, None);
}

#[tokio::test]
async fn a_caller_without_a_known_token_gets_nothing() {
    let service = start_with(|config, _| {
        config.callers.edge_token = Some(token("e"));
        config.callers.auditor_token = Some(token("a"));
    })
    .await;
    let url = service.server.url();
    for presented in [None, Some(token("x")), Some(token("v"))] {
        let mut stranger = client(&url, presented.as_ref());
        assert_eq!(
            search(&mut stranger).await.unwrap_err().code(),
            Code::PermissionDenied
        );
        assert_eq!(
            append_refusal(&mut stranger).await,
            Some(Code::PermissionDenied)
        );
        let checkpoint = stranger
            .get_checkpoint(pb::GetCheckpointRequest::default())
            .await
            .unwrap_err();
        assert_eq!(checkpoint.code(), Code::PermissionDenied);
        assert!(
            !checkpoint.message().contains(token("a").expose()),
            "the refusal names no token"
        );
    }
}
