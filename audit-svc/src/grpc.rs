//! The `gatehouse.audit.v1.Audit` gRPC service: decode, call the log, encode.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use proto::audit::v1 as pb;
use proto::common::v1 as common;
use svc_kit::callers::ServiceTokens;
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::config::CallersConfig;

use crate::error::Error;
use crate::event::{AppendOutcome, EventId};
use crate::log::{AuditLog, Leaf};
use crate::query::{Filter, SearchQuery};

mod convert;
mod json;

use convert::EventCodec;

/// Is how many events a tail reads per page.
const TAIL_PAGE: u32 = 500;
/// Is how often a tail looks for events appended by other replicas.
const TAIL_POLL: Duration = Duration::from_secs(1);

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Serves the audit API over an [`AuditLog`].
#[derive(Debug, Clone)]
pub(crate) struct AuditGrpc {
    log: AuditLog,
    codec: EventCodec,
    callers: ServiceTokens<Role>,
    // Ends open Append and Tail streams, so that graceful shutdown does not wait
    // on clients that keep them open.
    shutdown: CancellationToken,
}

/// Is a caller's role, from its service token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Edge,
    Authz,
    Vault,
    Auditor,
}

/// May append events: the Gatehouse services that emit them.
const EMITTERS: &[Role] = &[Role::Edge, Role::Authz, Role::Vault];
/// May read events and proofs.
const AUDITORS: &[Role] = &[Role::Auditor];
/// May read checkpoints: auditors, and services that anchor or verify them.
const CHECKPOINT_READERS: &[Role] = &[Role::Edge, Role::Authz, Role::Vault, Role::Auditor];

impl AuditGrpc {
    /// Returns the service over `log`, admitting the callers `callers` names;
    /// its streams end when `shutdown` fires.
    pub(crate) fn new(
        log: AuditLog,
        callers: &CallersConfig,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        Ok(Self {
            log,
            codec: EventCodec::new()?,
            callers: ServiceTokens::new([
                (Role::Edge, callers.edge_token.as_ref()),
                (Role::Authz, callers.authz_token.as_ref()),
                (Role::Vault, callers.vault_token.as_ref()),
                (Role::Auditor, callers.auditor_token.as_ref()),
            ]),
            shutdown,
        })
    }

    async fn append_batch(&self, request: pb::AppendRequest) -> Result<pb::AppendResponse, Error> {
        let mut valid = Vec::with_capacity(request.events.len());
        let rejections: Vec<Option<Error>> = request
            .events
            .iter()
            .map(|event| match self.codec.to_domain(event) {
                Ok(domain) => {
                    valid.push(domain);
                    None
                }
                Err(error) => Some(error),
            })
            .collect();
        let mut outcomes = self.log.append(valid).await?.into_iter();
        let acks = request
            .events
            .iter()
            .zip(rejections)
            .map(|(event, rejection)| match rejection {
                None => ack(&event.event_id, outcomes.next()),
                Some(error) => rejected(&event.event_id, &error.to_string()),
            })
            .collect();
        Ok(pb::AppendResponse { acks })
    }

    // Sends pages of matching events after `after`; when caught up, waits for a
    // local append, the poll interval (other replicas' appends), the client
    // leaving or shutdown. A failed read ends the stream with its status.
    async fn tail_loop(
        self,
        filter: Filter,
        mut after: u64,
        sender: mpsc::Sender<Result<pb::TailResponse, Status>>,
    ) {
        let mut head = self.log.subscribe();
        loop {
            head.borrow_and_update();
            let page = match self.tail_page(&filter, &mut after).await {
                Ok(page) => page,
                Err(error) => {
                    let _closed = sender.send(Err(error.into())).await;
                    return;
                }
            };
            if let Some(events) = page.events
                && sender.send(Ok(events)).await.is_err()
            {
                return;
            }
            if page.full {
                continue;
            }
            tokio::select! {
                changed = head.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(TAIL_POLL) => {}
                () = sender.closed() => return,
                () = self.shutdown.cancelled() => return,
            }
        }
    }

    async fn tail_page(&self, filter: &Filter, after: &mut u64) -> Result<TailPage, Error> {
        let page = self.log.read(*after, TAIL_PAGE).await?;
        let full = page.len() == TAIL_PAGE as usize;
        if let Some(last) = page.last() {
            *after = last.sequence;
        }
        let events = page
            .into_iter()
            .filter(|stored| filter.matches(&stored.event))
            .map(|stored| self.codec.stored(stored))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok(TailPage {
            events: (!events.is_empty()).then_some(pb::TailResponse { events }),
            full,
        })
    }
}

/// Is one page read by a tail: what to send, and whether more may follow at once.
#[derive(Debug)]
struct TailPage {
    events: Option<pb::TailResponse>,
    full: bool,
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditGrpc {
    type AppendStream = ResponseStream<pb::AppendResponse>;
    type TailStream = ResponseStream<pb::TailResponse>;

    #[tracing::instrument(skip_all)]
    async fn append(
        &self,
        request: Request<Streaming<pb::AppendRequest>>,
    ) -> Result<Response<Self::AppendStream>, Status> {
        self.callers.require(&request, EMITTERS)?;
        let mut inbound = request.into_inner();
        let (sender, receiver) = mpsc::channel(16);
        let service = self.clone();
        tokio::spawn(async move {
            loop {
                // A batch already received is stored and acknowledged before
                // shutdown ends the stream.
                let request = tokio::select! {
                    request = inbound.next() => request,
                    () = service.shutdown.cancelled() => None,
                };
                let Some(request) = request else { return };
                let reply = match request {
                    Ok(request) => service.append_batch(request).await.map_err(Status::from),
                    Err(status) => Err(status),
                };
                let failed = reply.is_err();
                if sender.send(reply).await.is_err() || failed {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    #[tracing::instrument(skip_all)]
    async fn search(
        &self,
        request: Request<pb::SearchRequest>,
    ) -> Result<Response<pb::SearchResponse>, Status> {
        self.callers.require(&request, AUDITORS)?;
        let request = request.into_inner();
        let filter = Filter::try_from(request.filter.unwrap_or_default())?;
        let page = request.page.unwrap_or_default();
        let query = SearchQuery::new(filter, page.page_size, &page.page_token, request.descending)?;
        let page = self.log.search(&query).await?;
        let events = page
            .events
            .into_iter()
            .map(|stored| self.codec.stored(stored))
            .collect::<Result<_, _>>()?;
        Ok(Response::new(pb::SearchResponse {
            events,
            page: Some(common::PageResponse {
                next_page_token: page.next_page_token.unwrap_or_default(),
            }),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn tail(
        &self,
        request: Request<pb::TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        self.callers.require(&request, AUDITORS)?;
        let request = request.into_inner();
        let filter = Filter::try_from(request.filter.unwrap_or_default())?;
        let after = match request.after_sequence {
            Some(after) => after,
            None => self.log.head().await?,
        };
        let (sender, receiver) = mpsc::channel(16);
        tokio::spawn(self.clone().tail_loop(filter, after, sender));
        Ok(Response::new(Box::pin(ReceiverStream::new(receiver))))
    }

    #[tracing::instrument(skip_all)]
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::GetCheckpointResponse>, Status> {
        self.callers.require(&request, CHECKPOINT_READERS)?;
        let checkpoint = self.log.checkpoint(request.into_inner().tree_size).await?;
        Ok(Response::new(pb::GetCheckpointResponse {
            checkpoint: Some(checkpoint.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::GetInclusionProofResponse>, Status> {
        self.callers.require(&request, AUDITORS)?;
        let request = request.into_inner();
        let leaf = match request.leaf {
            Some(pb::get_inclusion_proof_request::Leaf::EventId(id)) => {
                Leaf::EventId(EventId::try_from(id)?)
            }
            Some(pb::get_inclusion_proof_request::Leaf::Sequence(sequence)) => {
                Leaf::Sequence(sequence)
            }
            None => {
                return Err(Error::InvalidArgument {
                    field: "leaf",
                    reason: "must name an event id or a sequence",
                }
                .into());
            }
        };
        let proof = self.log.inclusion_proof(&leaf, request.tree_size).await?;
        let tlog_proof = proof.tlog_proof();
        Ok(Response::new(pb::GetInclusionProofResponse {
            leaf_index: proof.leaf_index,
            audit_path: proof.audit_path.iter().map(|hash| hash.to_vec()).collect(),
            tlog_proof,
            event: Some(self.codec.stored(proof.event)?),
            checkpoint: Some(proof.checkpoint.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::GetConsistencyProofResponse>, Status> {
        self.callers.require(&request, AUDITORS)?;
        let request = request.into_inner();
        let to = Some(request.to_tree_size).filter(|size| *size != 0);
        let proof = self
            .log
            .consistency_proof(request.from_tree_size, to)
            .await?;
        Ok(Response::new(pb::GetConsistencyProofResponse {
            from: Some(proof.from.into()),
            to: Some(proof.to.into()),
            proof: proof.proof.iter().map(|hash| hash.to_vec()).collect(),
        }))
    }
}

fn ack(event_id: &str, outcome: Option<AppendOutcome>) -> pb::AppendAck {
    match outcome {
        Some(AppendOutcome::Stored(sequence)) => pb::AppendAck {
            event_id: event_id.to_owned(),
            status: pb::AppendStatus::Stored.into(),
            sequence,
            rejection_reason: String::new(),
        },
        Some(AppendOutcome::Duplicate(sequence)) => pb::AppendAck {
            event_id: event_id.to_owned(),
            status: pb::AppendStatus::Duplicate.into(),
            sequence,
            rejection_reason: String::new(),
        },
        Some(AppendOutcome::Conflict) | None => {
            rejected(event_id, "event id already stored with different content")
        }
    }
}

fn rejected(event_id: &str, reason: &str) -> pb::AppendAck {
    pb::AppendAck {
        event_id: event_id.to_owned(),
        status: pb::AppendStatus::Rejected.into(),
        sequence: 0,
        rejection_reason: reason.to_owned(),
    }
}
