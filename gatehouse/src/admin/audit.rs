//! The audit log through the admin API: search, verification of the whole log, inclusion
//! proofs a client checks offline, and a tail of newly recorded events. The log is read from
//! its store, as `gatehouse audit` does: audit-svc of this process writes it, and a replica's
//! appends count too.

use std::collections::VecDeque;
use std::time::Duration;

use audit_svc::{AuditLog, Checkpoint, Filter, Leaf, Problem, SearchQuery, StoredEvent};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::Stream;
use proto::audit::v1::EventKind;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::model::{
    AuditPage, AuditQuery, AuditRecordView, CheckpointView, ProblemView, ProofView, TailQuery,
    TailRecordView, VerifyInput, VerifyReportView,
};
use super::{Action, Admin, AdminCaller, AdminError};

/// How often a tail looks for new records when it has caught up.
const TAIL_POLL: Duration = Duration::from_millis(250);

/// How many records a tail reads from the store at once.
const TAIL_PAGE: u32 = 500;

impl Admin {
    /// Searches the audit log, one page at a time.
    pub(crate) async fn search_audit(
        &self,
        caller: &AdminCaller,
        query: AuditQuery,
    ) -> Result<AuditPage, AdminError> {
        let outcome = async {
            let filter = filter(
                query.member,
                query.agent,
                query.virtual_server,
                query.tool,
                query.kind.as_deref(),
            )?;
            let search = SearchQuery::new(
                filter,
                query.limit.unwrap_or(100),
                query.page_token.as_deref().unwrap_or(""),
                query.newest_first,
            )
            .map_err(AdminError::Audit)?;
            let page = self
                .inner
                .audit_log
                .search(&search)
                .await
                .map_err(AdminError::Audit)?;
            Ok(AuditPage {
                events: page
                    .events
                    .iter()
                    .map(|stored| AuditRecordView {
                        sequence: stored.sequence,
                        event: event_json(stored),
                    })
                    .collect(),
                next_page_token: page.next_page_token,
            })
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "search", "audit_log", "");
        self.audited(caller, &action, outcome)
    }

    /// Recomputes the hash chain and the Merkle tree over every stored record (and checks that
    /// the log extends `input.from_checkpoint`); a broken log is a report, not an error. An
    /// intact log gets a checkpoint of its head signed, so the report names one covering every
    /// record it checked; a broken one never does.
    pub(crate) async fn verify_audit(
        &self,
        caller: &AdminCaller,
        input: VerifyInput,
    ) -> Result<VerifyReportView, AdminError> {
        let log = &self.inner.audit_log;
        let outcome = async {
            let key = log.signer().verifying_key();
            let trusted = input
                .from_checkpoint
                .as_deref()
                .map(|note| {
                    Checkpoint::from_note(note, &key).map_err(|_| AdminError::InvalidArgument {
                        field: "from_checkpoint",
                        reason: "not a checkpoint signed by this log's key".to_owned(),
                    })
                })
                .transpose()?;
            let report = audit_svc::verify(log.store(), trusted.as_ref())
                .await
                .map_err(AdminError::Audit)?;
            let checkpoint = if report.problem.is_none() {
                log.checkpoint_now().await.map_err(AdminError::Audit)?
            } else {
                latest_checkpoint(log).await?
            };
            Ok(VerifyReportView {
                checked: report.tree_size,
                root_hash: STANDARD.encode(report.root_hash),
                chain_hash: STANDARD.encode(report.chain_hash),
                pruned_through: report.pruned_through,
                intact: report.problem.is_none(),
                problem: report.problem.as_ref().map(ProblemView::from),
                checkpoint: checkpoint.as_ref().map(CheckpointView::from),
                verifier_key: audit_svc::verifier_key(log.signer().origin(), &key),
            })
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "verify", "audit_log", "");
        self.audited(caller, &action, outcome)
    }

    /// Returns the inclusion proof of one event under a signed checkpoint (signing one of the
    /// head first when the latest does not cover the event yet).
    pub(crate) async fn prove_audit_event(
        &self,
        caller: &AdminCaller,
        event_id: &str,
    ) -> Result<ProofView, AdminError> {
        let log = &self.inner.audit_log;
        let outcome = async {
            let leaf = Leaf::EventId(event_id.to_owned().try_into().map_err(|_| {
                AdminError::InvalidArgument {
                    field: "event_id",
                    reason: "not an event id".to_owned(),
                }
            })?);
            let proof = match log.inclusion_proof(&leaf, None).await {
                Err(audit_svc::Error::NoCheckpoint | audit_svc::Error::NotCovered { .. }) => {
                    log.checkpoint_now().await.map_err(AdminError::Audit)?;
                    log.inclusion_proof(&leaf, None).await
                }
                found => found,
            }
            .map_err(AdminError::Audit)?;
            let key = log.signer().verifying_key();
            Ok(ProofView {
                event_id: proof.event.event.id.as_str().to_owned(),
                sequence: proof.event.sequence,
                canonical_json: String::from_utf8_lossy(&proof.event.event.canonical_json)
                    .into_owned(),
                event_hash: STANDARD.encode(proof.event.leaf_hash),
                leaf_index: proof.leaf_index,
                audit_path: proof
                    .audit_path
                    .iter()
                    .map(|hash| STANDARD.encode(hash))
                    .collect(),
                checkpoint: CheckpointView::from(&proof.checkpoint),
                tlog_proof: proof.tlog_proof(),
                verifier_key: audit_svc::verifier_key(log.signer().origin(), &key),
            })
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "prove", "audit_event", event_id);
        self.audited(caller, &action, outcome)
    }

    /// Starts following the log after `query.after` (the current head by default): the stream
    /// yields each matching record as it is stored, in order, until the caller hangs up or the
    /// gateway stops. The cursor is fixed before this returns, so nothing recorded afterwards
    /// is missed.
    pub(crate) async fn tail_audit(
        &self,
        caller: &AdminCaller,
        query: TailQuery,
    ) -> Result<impl Stream<Item = Result<TailRecordView, AdminError>> + Send + 'static, AdminError>
    {
        let log = self.inner.audit_log.clone();
        let outcome = async {
            let filter = filter(
                query.member,
                query.agent,
                query.virtual_server,
                query.tool,
                query.kind.as_deref(),
            )?;
            let after = match query.after {
                Some(after) => after,
                None => log.head().await.map_err(AdminError::Audit)?,
            };
            Ok(Tail {
                log,
                filter,
                after,
                pending: VecDeque::new(),
                stop: self.inner.shutdown.clone(),
                failed: false,
            })
        }
        .await;
        let action = Action::read(EventKind::AdminChange, "tail", "audit_log", "");
        let tail = self.audited(caller, &action, outcome)?;
        Ok(futures::stream::unfold(tail, Tail::next))
    }
}

/// A tail's position in the log and what it still has to hand out.
struct Tail {
    log: AuditLog,
    filter: Filter,
    /// The last sequence read from the store.
    after: u64,
    /// Matching records read but not yet handed out.
    pending: VecDeque<StoredEvent>,
    /// Ends the tail when the gateway stops.
    stop: CancellationToken,
    /// Set once a read failed: the error was handed out and the tail ends.
    failed: bool,
}

impl Tail {
    /// Returns the next matching record, waiting for it to be stored.
    async fn next(mut self) -> Option<(Result<TailRecordView, AdminError>, Self)> {
        if self.failed {
            return None;
        }
        loop {
            if let Some(stored) = self.pending.pop_front() {
                let record = TailRecordView {
                    sequence: stored.sequence,
                    recorded_at_micros: stored.recorded_at_micros,
                    event: event_json(&stored),
                };
                return Some((Ok(record), self));
            }
            match self.log.read(self.after, TAIL_PAGE).await {
                Err(error) => {
                    self.failed = true;
                    return Some((Err(AdminError::Audit(error)), self));
                }
                Ok(page) => match page.last() {
                    Some(last) => {
                        self.after = last.sequence;
                        let filter = &self.filter;
                        self.pending.extend(
                            page.into_iter()
                                .filter(|stored| filter.matches(&stored.event)),
                        );
                    }
                    None => {
                        tokio::select! {
                            () = tokio::time::sleep(TAIL_POLL) => {}
                            () = self.stop.cancelled() => return None,
                        }
                    }
                },
            }
        }
    }
}

/// Returns the latest stored checkpoint, or none before the first.
async fn latest_checkpoint(log: &AuditLog) -> Result<Option<Checkpoint>, AdminError> {
    match log.checkpoint(None).await {
        Ok(checkpoint) => Ok(Some(checkpoint)),
        Err(audit_svc::Error::NoCheckpoint) => Ok(None),
        Err(error) => Err(AdminError::Audit(error)),
    }
}

/// Returns a stored event's canonical JSON as a document.
fn event_json(stored: &StoredEvent) -> Value {
    serde_json::from_slice(&stored.event.canonical_json).unwrap_or(Value::Null)
}

/// Returns the filter of the admin API's audit selectors.
fn filter(
    member: Option<String>,
    agent: Option<String>,
    virtual_server: Option<String>,
    tool: Option<String>,
    kinds_list: Option<&str>,
) -> Result<Filter, AdminError> {
    Ok(Filter {
        member_ids: member.into_iter().collect(),
        agent_client_ids: agent.into_iter().collect(),
        virtual_servers: virtual_server.into_iter().collect(),
        tools: tool.into_iter().collect(),
        kinds: kinds(kinds_list)?,
        ..Filter::default()
    })
}

/// Returns the kind names of a comma-separated list, each checked against the event schema so
/// that a misspelt kind is refused rather than silently matching nothing.
fn kinds(list: Option<&str>) -> Result<Vec<String>, AdminError> {
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| {
            EventKind::from_str_name(name)
                .filter(|kind| *kind != EventKind::Unspecified)
                .map(|kind| kind.as_str_name().to_owned())
                .ok_or_else(|| AdminError::InvalidArgument {
                    field: "kind",
                    reason: format!("{name} is not an event kind"),
                })
        })
        .collect()
}

impl From<&Checkpoint> for CheckpointView {
    fn from(checkpoint: &Checkpoint) -> Self {
        Self {
            tree_size: checkpoint.tree_size,
            root_hash: STANDARD.encode(checkpoint.root_hash),
            signed_note: checkpoint.signed_note.clone(),
        }
    }
}

impl From<&Problem> for ProblemView {
    fn from(problem: &Problem) -> Self {
        let (kind, sequence) = match problem {
            Problem::Modified { sequence, .. } => ("modified", *sequence),
            Problem::Deleted { sequence } => ("deleted", *sequence),
            Problem::Inserted { sequence, .. } => ("inserted", *sequence),
            Problem::Reordered { sequence, .. } => ("reordered", *sequence),
            Problem::CheckpointMismatch { tree_size } => ("checkpoint_mismatch", *tree_size),
        };
        Self {
            kind: kind.to_owned(),
            sequence,
            reason: problem.to_string(),
        }
    }
}
