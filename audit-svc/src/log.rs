//! The audit log as a whole: appends, searches, the live head, checkpoints and
//! proofs over one [`Store`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, Signer};
use crate::error::Error;
use crate::event::{AppendOutcome, AuditEvent, EventId, StoredEvent};
use crate::merkle::{Hash, Prefix};
use crate::query::{SearchPage, SearchQuery};
use crate::store::{GENESIS, PruneRecord, Store, now_micros};

/// Is the most events one group commit writes; a batch is never split.
const GROUP_COMMIT_EVENTS: usize = 8192;

/// Is the audit log: a store, the key that signs its checkpoints, and a feed of
/// its head for live readers. Clones share everything.
#[derive(Debug, Clone)]
pub struct AuditLog {
    store: Arc<dyn Store>,
    signer: Arc<Signer>,
    head: Arc<watch::Sender<u64>>,
    commits: Arc<GroupCommit>,
    /// Holds the compact range of the tree this log last checkpointed, so that the next
    /// checkpoint reads and hashes only the leaves appended since, not the whole log.
    signed: Arc<std::sync::Mutex<Prefix>>,
}

/// Joins the batches of concurrent appenders (edge replicas, authz-svc,
/// vault-svc) into one store transaction: whoever holds the writer commits
/// every batch queued meanwhile, so one durable commit (one fsync) acknowledges
/// them all, in queue order, and each appender gets its own batch's outcomes.
#[derive(Debug, Default)]
struct GroupCommit {
    queue: std::sync::Mutex<Vec<Pending>>,
    writer: Arc<tokio::sync::Mutex<()>>,
}

/// Is a batch waiting for a group commit, and where its outcomes go.
#[derive(Debug)]
struct Pending {
    events: Vec<AuditEvent>,
    reply: oneshot::Sender<Result<Vec<AppendOutcome>, Arc<Error>>>,
}

/// Names the event an inclusion proof is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leaf {
    /// Selects the event by id.
    EventId(EventId),
    /// Selects the event by sequence.
    Sequence(u64),
}

/// Is an RFC 6962 inclusion proof of one event under a signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InclusionProof {
    /// Holds the proven event with its canonical bytes.
    pub event: StoredEvent,
    /// Holds the checkpoint the proof leads to.
    pub checkpoint: Checkpoint,
    /// Holds the event's leaf index (sequence − 1).
    pub leaf_index: u64,
    /// Holds the audit path from the leaf's sibling up to the root.
    pub audit_path: Vec<Hash>,
}

/// Is an RFC 6962 consistency proof between two checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsistencyProof {
    /// Holds the older checkpoint.
    pub from: Checkpoint,
    /// Holds the newer checkpoint.
    pub to: Checkpoint,
    /// Holds the proof hashes.
    pub proof: Vec<Hash>,
}

impl AuditLog {
    /// Returns the log over `store`, signing with `signer`.
    pub async fn new(store: Arc<dyn Store>, signer: Signer) -> Result<Self, Error> {
        let head = store.head().await?;
        Ok(Self {
            store,
            signer: Arc::new(signer),
            head: Arc::new(watch::Sender::new(head)),
            commits: Arc::default(),
            signed: Arc::default(),
        })
    }

    /// Returns the store the log writes to.
    pub fn store(&self) -> &dyn Store {
        self.store.as_ref()
    }

    /// Returns the signer of the log's checkpoints.
    pub fn signer(&self) -> &Signer {
        &self.signer
    }

    /// Appends a batch durably and reports each event's fate, in order; the
    /// batch commits whole, possibly in one transaction with other appenders'
    /// batches (see [`GroupCommit`]).
    pub async fn append(&self, events: Vec<AuditEvent>) -> Result<Vec<AppendOutcome>, Error> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, mut outcome) = oneshot::channel();
        self.commits.enqueue(Pending { events, reply });
        loop {
            tokio::select! {
                biased;
                result = &mut outcome => {
                    return result
                        .map_err(|_| Error::AppendAbandoned)?
                        .map_err(Error::Commit);
                }
                writer = Arc::clone(&self.commits.writer).lock_owned() => {
                    let group = self.commits.take();
                    if group.is_empty() {
                        continue;
                    }
                    // A task of its own, so that a cancelled appender never strands
                    // the batches of the others it took.
                    let (store, head) = (Arc::clone(&self.store), Arc::clone(&self.head));
                    let _committed = tokio::spawn(async move {
                        commit(store.as_ref(), &head, group).await;
                        drop(writer);
                    })
                    .await;
                }
            }
        }
    }

    /// Returns one page of events matching `query`.
    pub async fn search(&self, query: &SearchQuery) -> Result<SearchPage, Error> {
        let events = self.store.search(query).await?;
        let full = events.len() == usize::try_from(query.limit).unwrap_or(usize::MAX);
        let next_page_token = match events.last() {
            Some(last) if full => Some(query.token_after(last.sequence)),
            _ => None,
        };
        Ok(SearchPage {
            events,
            next_page_token,
        })
    }

    /// Returns a receiver of the head sequence, updated after each local append.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Returns the current head from the store (appends of other replicas count).
    pub async fn head(&self) -> Result<u64, Error> {
        self.store.head().await
    }

    /// Returns up to `limit` events after `after`, ascending.
    pub async fn read(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, Error> {
        self.store.read(after, limit).await
    }

    /// Signs and stores a checkpoint of the current head unless the latest
    /// checkpoint already covers it; returns the latest checkpoint either way.
    pub async fn checkpoint_now(&self) -> Result<Option<Checkpoint>, Error> {
        let latest = self.store.checkpoint(None).await?;
        let head = self.store.head().await?;
        if head == 0
            || latest
                .as_ref()
                .is_some_and(|latest| latest.tree_size >= head)
        {
            return Ok(latest);
        }
        let pruned = prefix_of(self.store.pruned().await?.as_ref());
        let signed = self.signed_range();
        // Either compact range is one of this tree's; the larger leaves fewer leaves to read.
        let start = if signed.size > pruned.size && signed.size <= head {
            signed
        } else {
            pruned
        };
        let (start, leaves) = self.leaves_after(start, head).await?;
        let grown = start.extend(&leaves);
        let tree_size = head;
        let chain_hash = match self
            .store
            .read(tree_size.saturating_sub(1), 1)
            .await?
            .first()
        {
            Some(last) => last.chain_hash,
            None => GENESIS,
        };
        let root = grown.root(&[]).ok_or(Error::Corrupt("tree"))?;
        let checkpoint = self.signer.sign(tree_size, root, chain_hash, now_micros());
        self.store.put_checkpoint(&checkpoint).await?;
        self.keep_signed_range(grown);
        tracing::info!(tree_size, "audit checkpoint signed");
        Ok(Some(checkpoint))
    }

    /// Makes a checkpoint every `interval` until `shutdown`, then a last one.
    pub async fn run_checkpoints(self, interval: Duration, shutdown: CancellationToken) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {}
                () = shutdown.cancelled() => break,
            }
            if let Err(error) = self.checkpoint_now().await {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "audit checkpoint failed"
                );
            }
        }
        if let Err(error) = self.checkpoint_now().await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "final audit checkpoint failed"
            );
        }
    }

    /// Returns the checkpoint of `tree_size`, or the latest.
    pub async fn checkpoint(&self, tree_size: Option<u64>) -> Result<Checkpoint, Error> {
        match (self.store.checkpoint(tree_size).await?, tree_size) {
            (Some(checkpoint), _) => Ok(checkpoint),
            (None, Some(size)) => Err(Error::CheckpointNotFound(size)),
            (None, None) => Err(Error::NoCheckpoint),
        }
    }

    /// Returns the inclusion proof of `leaf` under the checkpoint of `tree_size`
    /// (the latest when `None`).
    pub async fn inclusion_proof(
        &self,
        leaf: &Leaf,
        tree_size: Option<u64>,
    ) -> Result<InclusionProof, Error> {
        let event = match leaf {
            Leaf::EventId(id) => self
                .store
                .find(id)
                .await?
                .ok_or_else(|| Error::EventNotFound(id.clone()))?,
            Leaf::Sequence(sequence) => self
                .store
                .read(sequence.saturating_sub(1), 1)
                .await?
                .into_iter()
                .find(|event| event.sequence == *sequence)
                .ok_or(Error::SequenceNotFound(*sequence))?,
        };
        let checkpoint = self.checkpoint(tree_size).await?;
        if event.sequence > checkpoint.tree_size {
            return Err(Error::NotCovered {
                sequence: event.sequence,
                tree_size: checkpoint.tree_size,
            });
        }
        let (prefix, leaves) = self.tree(checkpoint.tree_size).await?;
        let leaf_index = event.sequence - 1;
        let audit_path = prefix
            .inclusion_proof(&leaves, leaf_index)
            .ok_or(Error::Corrupt("tree"))?;
        Ok(InclusionProof {
            event,
            checkpoint,
            leaf_index,
            audit_path,
        })
    }

    /// Returns the removed prefix (empty without retention) and the stored leaf
    /// hashes after it, up to tree size `size`.
    pub(crate) async fn tree(&self, size: u64) -> Result<(Prefix, Vec<Hash>), Error> {
        let prefix = prefix_of(self.store.pruned().await?.as_ref());
        self.leaves_after(prefix, size).await
    }

    /// Returns `prefix` and the leaves after it up to tree size `size`, all of them.
    async fn leaves_after(&self, prefix: Prefix, size: u64) -> Result<(Prefix, Vec<Hash>), Error> {
        if size < prefix.size {
            return Err(Error::Pruned(prefix.size));
        }
        let leaves = self.store.leaf_hashes(prefix.size, size).await?;
        if prefix.size + leaves.len() as u64 != size {
            return Err(Error::Corrupt("tree size"));
        }
        Ok((prefix, leaves))
    }

    fn signed_range(&self) -> Prefix {
        self.signed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Keeps `range` as the last checkpointed tree's unless a concurrent checkpoint kept a
    /// larger one.
    fn keep_signed_range(&self, range: Prefix) {
        let mut signed = self
            .signed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if range.size > signed.size {
            *signed = range;
        }
    }

    /// Returns the consistency proof from the checkpoint of `from_size` to the one
    /// of `to_size` (the latest when `None`).
    pub async fn consistency_proof(
        &self,
        from_size: u64,
        to_size: Option<u64>,
    ) -> Result<ConsistencyProof, Error> {
        let to = self.checkpoint(to_size).await?;
        if from_size > to.tree_size {
            return Err(Error::InvalidArgument {
                field: "from_tree_size",
                reason: "must not exceed to_tree_size",
            });
        }
        let from = self.checkpoint(Some(from_size)).await?;
        let (prefix, leaves) = self.tree(to.tree_size).await?;
        if from_size < prefix.size {
            return Err(Error::Pruned(prefix.size));
        }
        let proof = prefix
            .consistency_proof(&leaves, from_size)
            .ok_or(Error::Corrupt("tree"))?;
        Ok(ConsistencyProof { from, to, proof })
    }
}

impl GroupCommit {
    fn enqueue(&self, pending: Pending) {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(pending);
    }

    /// Takes queued batches in order, up to [`GROUP_COMMIT_EVENTS`] (at least one).
    fn take(&self) -> Vec<Pending> {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut events = 0;
        let count = queue
            .iter()
            .take_while(|pending| {
                let fits = events == 0 || events + pending.events.len() <= GROUP_COMMIT_EVENTS;
                events += pending.events.len();
                fits
            })
            .count();
        queue.drain(..count).collect()
    }
}

/// Appends the batches of `group` in one transaction, advances the head feed,
/// and answers each batch with its own outcomes (or the shared failure).
async fn commit(store: &dyn Store, head: &watch::Sender<u64>, group: Vec<Pending>) {
    let (batches, replies): (Vec<_>, Vec<_>) = group
        .into_iter()
        .map(|pending| (pending.events, pending.reply))
        .unzip();
    let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
    // Moved, not copied: `concat` would clone every event of the group.
    let events: Vec<AuditEvent> = batches.into_iter().flatten().collect();
    match store.append(&events).await {
        Ok(outcomes) => {
            let newest = outcomes.iter().filter_map(|outcome| match outcome {
                AppendOutcome::Stored(sequence) => Some(*sequence),
                _ => None,
            });
            if let Some(newest) = newest.max() {
                head.send_if_modified(|head| {
                    let advanced = newest > *head;
                    *head = (*head).max(newest);
                    advanced
                });
            }
            let mut outcomes = outcomes.into_iter();
            for (reply, size) in replies.into_iter().zip(sizes) {
                // An appender that went away has nothing to be told.
                let _told = reply.send(Ok(outcomes.by_ref().take(size).collect()));
            }
        }
        Err(error) => {
            let error = Arc::new(error);
            for reply in replies {
                let _told = reply.send(Err(Arc::clone(&error)));
            }
        }
    }
}

/// Returns the removed prefix a prune record describes (empty for none).
pub(crate) fn prefix_of(pruned: Option<&PruneRecord>) -> Prefix {
    pruned.map_or_else(Prefix::default, |record| Prefix {
        size: record.through,
        nodes: record.frontier.clone(),
    })
}
