//! Delivers the spool to audit-svc in order, and advances the spool only on acknowledgement.
//!
//! One batch is in flight at a time, so acknowledgements arrive in spool order and the cursor
//! never passes an event audit-svc has not stored. After any failure the stream is reopened and
//! delivery restarts at the cursor; audit-svc answers events it already holds as duplicates.

use std::time::Duration;

use prost::Message as _;
use proto::audit::v1::audit_client::AuditClient;
use proto::audit::v1::{AppendRequest, AppendStatus, AuditEvent};
use svc_kit::callers::PresentToken;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::spool::{Spool, SpoolError};

/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// How long delivery waits for more events after a partial batch, and after the first event
/// of a quiet spell, so that under steady load many calls share one append (one audit-svc
/// transaction and fsync) instead of each round trip carrying the one or two events written
/// during the previous one. The events are already in the spool, so this delays only their
/// arrival at audit-svc, never a call's answer. 10 ms rather than 5 ms: audit-svc's CPU per
/// call at one client −25%, at sixteen −15% (`bench/notes.md`), for at most 10 ms more lag.
const GATHER: Duration = Duration::from_millis(10);

/// Why one delivery session ended.
#[derive(Debug, thiserror::Error)]
enum DeliveryError {
    #[error("cannot reach audit-svc: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("audit-svc refused the append stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("audit-svc closed the append stream")]
    Closed,
    #[error("audit-svc acknowledged {got} of {sent} events")]
    ShortAck { sent: usize, got: usize },
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Starts the delivery loop; it reconnects with backoff until `shutdown`.
pub(crate) fn spawn(
    spool: Spool,
    endpoint: String,
    token: PresentToken,
    batch_size: usize,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        loop {
            match deliver(&spool, &endpoint, &token, batch_size, &shutdown).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(
                    %error,
                    backlog_bytes = spool.backlog(),
                    retry_in = ?backoff,
                    "audit events are kept in the spool until audit-svc acknowledges them"
                ),
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// Streams batches from the cursor until shutdown (`Ok`) or a failure (`Err`).
async fn deliver(
    spool: &Spool,
    endpoint: &str,
    token: &PresentToken,
    batch_size: usize,
    shutdown: &CancellationToken,
) -> Result<(), DeliveryError> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await?;
    let (requests, outgoing) = mpsc::channel(1);
    let mut acks = AuditClient::with_interceptor(channel, token.clone())
        .append(ReceiverStream::new(outgoing))
        .await?
        .into_inner();
    let mut position = spool.acknowledged();
    let mut gathering = false;
    loop {
        if gathering {
            tokio::select! {
                () = tokio::time::sleep(GATHER) => {}
                () = shutdown.cancelled() => return Ok(()),
            }
        }
        let batch = match spool.read(position, batch_size) {
            Ok(batch) => batch,
            Err(SpoolError::Corrupt { position: bad }) => {
                position = skip_corruption(spool, bad)?;
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        let Some(last) = batch.last().map(|record| record.next) else {
            // The first event after a quiet spell waits for its neighbours too.
            tokio::select! {
                () = spool.written() => {
                    gathering = true;
                    continue;
                }
                () = shutdown.cancelled() => return Ok(()),
            }
        };
        let events: Vec<AuditEvent> = batch
            .iter()
            .filter_map(
                |record| match AuditEvent::decode(record.payload.as_slice()) {
                    Ok(event) => Some(event),
                    Err(error) => {
                        tracing::error!(%error, "dropping an undecodable audit spool record");
                        None
                    }
                },
            )
            .collect();
        let sent = events.len();
        gathering = batch.len() < batch_size;
        if sent > 0 {
            requests
                .send(AppendRequest { events })
                .await
                .map_err(|_| DeliveryError::Closed)?;
            let mut got = 0;
            while got < sent {
                let response = acks.message().await?.ok_or(DeliveryError::Closed)?;
                for ack in &response.acks {
                    if ack.status() == AppendStatus::Rejected {
                        tracing::error!(
                            event_id = %ack.event_id,
                            reason = %ack.rejection_reason,
                            "audit-svc rejected an event for good"
                        );
                    }
                }
                got += response.acks.len();
            }
            if got != sent {
                return Err(DeliveryError::ShortAck { sent, got });
            }
        }
        spool.acknowledge(last)?;
        position = last;
    }
}

/// Logs a corrupt spool region loudly and resumes at the next segment (or waits for one).
fn skip_corruption(spool: &Spool, bad: u64) -> Result<u64, DeliveryError> {
    let next = spool.next_segment(bad)?.unwrap_or_else(|| spool.end());
    tracing::error!(
        offset = bad,
        skipped_bytes = next.saturating_sub(bad),
        "the audit spool is corrupt here; skipping to the next intact segment"
    );
    spool.acknowledge(next)?;
    Ok(next)
}
