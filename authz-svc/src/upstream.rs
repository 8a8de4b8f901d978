//! audit-svc as the audit sink of a standalone authz-svc: events (tokens issued,
//! exchanged and revoked; agent bundle changes) go through a bounded queue to
//! audit-svc's `Append`, authenticated by authz-svc's service token, and are retried
//! until acknowledged.
//!
//! The queue is in memory: an event is accepted once queued, and a full queue refuses
//! the change it records (the token is not issued), as edge fails closed. Unlike
//! edge's spool the queue does not survive `kill -9`; under `gatehouse up` authz-svc
//! writes to edge's durable spool instead.

use std::time::Duration;

use proto::audit::v1::audit_client::AuditClient;
use proto::audit::v1::{AppendRequest, AppendStatus, AuditEvent};
use svc_kit::GrpcClientConfig;
use svc_kit::callers::PresentToken;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::codegen::InterceptedService;
use tonic::transport::Channel;

use crate::config::AuditForwardConfig;
use crate::events::AuditSink;

/// Bounds the events waiting for audit-svc; beyond it, changes are refused.
const QUEUE: usize = 10_000;
/// Bounds one `Append` batch.
const BATCH: usize = 256;
/// Is the longest wait between delivery attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Bounds how long events still queued at shutdown are retried.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);

type Client = AuditClient<InterceptedService<Channel, PresentToken>>;

/// Queues authz-svc's audit events for audit-svc.
#[derive(Debug, Clone)]
pub(crate) struct AuditForwarder {
    queue: mpsc::Sender<AuditEvent>,
}

impl AuditSink for AuditForwarder {
    fn record(&self, event: AuditEvent) -> Result<(), String> {
        self.queue.try_send(event).map_err(|error| match error {
            TrySendError::Full(_) => "the audit queue is full".to_owned(),
            TrySendError::Closed(_) => "audit delivery has stopped".to_owned(),
        })
    }
}

/// Returns the sink and its delivery task, which ends after `shutdown` once the
/// queued events are delivered (or the drain deadline passes).
pub(crate) fn start(
    config: &AuditForwardConfig,
    shutdown: CancellationToken,
) -> anyhow::Result<Option<(AuditForwarder, JoinHandle<()>)>> {
    let Some(url) = &config.url else {
        return Ok(None);
    };
    let channel = svc_kit::grpc::channel(url, &GrpcClientConfig::default())?;
    let client = AuditClient::with_interceptor(channel, PresentToken::new(config.token.as_ref())?);
    let (queue, receiver) = mpsc::channel(QUEUE);
    let task = tokio::spawn(deliver(client, receiver, shutdown));
    Ok(Some((AuditForwarder { queue }, task)))
}

async fn deliver(
    mut client: Client,
    mut receiver: mpsc::Receiver<AuditEvent>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            event = receiver.recv() => event,
            () = shutdown.cancelled() => break,
        };
        let Some(first) = first else { return };
        let batch = fill(first, &mut receiver);
        if !send_until_acknowledged(&mut client, batch, &shutdown).await {
            break;
        }
    }
    receiver.close();
    let drained = async {
        while let Some(first) = receiver.recv().await {
            let batch = fill(first, &mut receiver);
            if !send_until_acknowledged(&mut client, batch, &CancellationToken::new()).await {
                return;
            }
        }
    };
    if tokio::time::timeout(DRAIN_DEADLINE, drained).await.is_err() {
        tracing::error!("audit events still queued at shutdown could not be delivered");
    }
}

fn fill(first: AuditEvent, receiver: &mut mpsc::Receiver<AuditEvent>) -> Vec<AuditEvent> {
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match receiver.try_recv() {
            Ok(event) => batch.push(event),
            Err(_) => break,
        }
    }
    batch
}

/// Appends `batch` until audit-svc acknowledges every event; returns false when
/// `shutdown` interrupts the retries.
async fn send_until_acknowledged(
    client: &mut Client,
    batch: Vec<AuditEvent>,
    shutdown: &CancellationToken,
) -> bool {
    let mut backoff = Duration::from_millis(100);
    loop {
        match append(client, batch.clone()).await {
            Ok(()) => return true,
            Err(status) => {
                tracing::warn!(code = ?status.code(), events = batch.len(), "audit-svc did not acknowledge; retrying");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = shutdown.cancelled() => return false,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn append(client: &mut Client, events: Vec<AuditEvent>) -> Result<(), tonic::Status> {
    let sent = events.len();
    let mut acks = client
        .append(tokio_stream::iter([AppendRequest { events }]))
        .await?
        .into_inner();
    let mut got = 0;
    while got < sent {
        let Some(response) = acks.message().await? else {
            return Err(tonic::Status::unavailable(
                "audit-svc closed the append stream",
            ));
        };
        for ack in &response.acks {
            if ack.status() == AppendStatus::Rejected {
                tracing::error!(event_id = %ack.event_id, reason = %ack.rejection_reason, "audit-svc rejected an event for good");
            }
        }
        got += response.acks.len();
    }
    Ok(())
}
