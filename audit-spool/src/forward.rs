//! Delivers the spool to audit-svc in order, and advances the spool only on acknowledgement.
//!
//! One batch is in flight at a time, so acknowledgements arrive in spool order and the cursor
//! never passes an event audit-svc has not stored. After any failure the stream is reopened and
//! delivery restarts at the cursor; audit-svc answers events it already holds as duplicates.

use std::time::Duration;

use prost::Message as _;
use proto::audit::v1::{AppendResponse, AppendStatus, AuditEvent};
use svc_kit::callers::PresentToken;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::service::interceptor::InterceptedService;

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

/// `gatehouse.audit.v1.AppendRequest` with its events as the spool holds them, already encoded:
/// `repeated bytes` and `repeated AuditEvent` under one tag are the same bytes on the wire, so the
/// forwarder sends what edge encoded once instead of decoding and encoding every event again.
#[derive(Clone, PartialEq, prost::Message)]
struct SpooledAppend {
    #[prost(bytes = "vec", repeated, tag = "1")]
    events: Vec<Vec<u8>>,
}

/// The one RPC the forwarder calls, as the generated client names it.
const APPEND: &str = "/gatehouse.audit.v1.Audit/Append";

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
        let mut failed = false;
        loop {
            match deliver(&spool, &endpoint, &token, batch_size, failed, &shutdown).await {
                Ok(()) => return,
                Err(error) => tracing::warn!(
                    %error,
                    backlog_bytes = spool.backlog(),
                    retry_in = ?backoff,
                    "audit events are kept in the spool until audit-svc acknowledges them"
                ),
            }
            failed = true;
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    });
}

/// Streams batches from the cursor until shutdown (`Ok`) or a failure (`Err`).
///
/// After a failure (`check_first`) the first batch is decoded before it is sent, so that a
/// record that is not an event, which would fail the whole append, is dropped with an error
/// rather than retried for ever; a healthy stream sends the records as they are.
async fn deliver(
    spool: &Spool,
    endpoint: &str,
    token: &PresentToken,
    batch_size: usize,
    check_first: bool,
    shutdown: &CancellationToken,
) -> Result<(), DeliveryError> {
    let channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .connect()
        .await?;
    let (requests, outgoing) = mpsc::channel(1);
    let mut client = tonic::client::Grpc::new(InterceptedService::new(channel, token.clone()));
    client.ready().await?;
    let mut acks = client
        .streaming(
            tonic::Request::new(ReceiverStream::new(outgoing)),
            PathAndQuery::from_static(APPEND),
            tonic_prost::ProstCodec::<SpooledAppend, AppendResponse>::default(),
        )
        .await?
        .into_inner();
    let _open = Open::mark(spool);
    let mut check = check_first;
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
        gathering = batch.len() < batch_size;
        let events = payloads(batch, check);
        check = false;
        let sent = events.len();
        if sent > 0 {
            requests
                .send(SpooledAppend { events })
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

/// Marks the spool's delivery stream open for as long as it lives.
struct Open<'a>(&'a Spool);

impl<'a> Open<'a> {
    fn mark(spool: &'a Spool) -> Self {
        spool.set_delivering(true);
        Self(spool)
    }
}

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.set_delivering(false);
    }
}

/// Returns the batch's events as encoded; when `check`ing, without the records that do not
/// decode as an event (each logged as an error).
fn payloads(batch: Vec<crate::SpooledRecord>, check: bool) -> Vec<Vec<u8>> {
    let payloads = batch.into_iter().map(|record| record.payload);
    if !check {
        return payloads.collect();
    }
    payloads
        .filter(|payload| match AuditEvent::decode(payload.as_slice()) {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(%error, "dropping an undecodable audit spool record");
                false
            }
        })
        .collect()
}

/// Logs a corrupt spool region loudly and resumes at the next segment (or waits for one).
fn skip_corruption(spool: &Spool, bad: u64) -> Result<u64, DeliveryError> {
    let next = spool.next_segment(bad).unwrap_or_else(|| spool.end());
    tracing::error!(
        offset = bad,
        skipped_bytes = next.saturating_sub(bad),
        "the audit spool is corrupt here; skipping to the next intact segment"
    );
    spool.acknowledge(next)?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use proto::audit::v1::AppendRequest;

    use super::*;
    use crate::SpooledRecord;

    fn event(id: &str) -> AuditEvent {
        AuditEvent {
            event_id: id.to_owned(),
            ..AuditEvent::default()
        }
    }

    fn spooled(payloads: &[Vec<u8>]) -> Vec<SpooledRecord> {
        payloads
            .iter()
            .zip(1..)
            .map(|(payload, next)| SpooledRecord {
                payload: payload.clone(),
                next,
            })
            .collect()
    }

    #[test]
    fn spooled_events_are_sent_as_the_append_request_audit_svc_decodes() {
        let events = vec![event("a"), event("b")];
        let raw = SpooledAppend {
            events: events.iter().map(prost::Message::encode_to_vec).collect(),
        };
        let typed = AppendRequest { events };
        assert_eq!(raw.encode_to_vec(), typed.encode_to_vec());
        assert_eq!(
            AppendRequest::decode(raw.encode_to_vec().as_slice()).unwrap(),
            typed
        );
    }

    #[test]
    fn after_a_failure_a_record_that_is_no_event_is_dropped_and_the_rest_kept() {
        let good = event("a").encode_to_vec();
        let garbage = vec![0xff, 0xff, 0xff];
        let batch = spooled(&[good.clone(), garbage.clone(), good.clone()]);
        assert_eq!(
            payloads(batch.clone(), true),
            vec![good.clone(), good.clone()]
        );
        assert_eq!(payloads(batch, false), vec![good.clone(), garbage, good]);
    }
}
