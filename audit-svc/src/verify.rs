//! Verification: recomputes the hash chain and the Merkle tree from the stored
//! records, names the first record that was modified, deleted, inserted or
//! reordered, and checks inclusion proofs offline.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::event::{self, AuditEvent, EventId, StoredEvent};
use crate::log::InclusionProof;
use crate::log::prefix_of;
use crate::merkle::{self, Hash, Prefix};
use crate::store::{GENESIS, Store};

const PAGE: u32 = 1000;

/// Reports what `verify` found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Holds the number of records read.
    pub tree_size: u64,
    /// Holds the recomputed Merkle root over all records.
    pub root_hash: Hash,
    /// Holds the recomputed chain head.
    pub chain_hash: Hash,
    /// Names the first problem; `None` when the log is intact.
    pub problem: Option<Problem>,
    /// Holds the last sequence retention archived and removed (0 for none):
    /// verification starts after it, from the prune's compact range and chain
    /// head, and checkpoints older than it are not checked here (the archive
    /// holds their events).
    pub pruned_through: u64,
}

/// Names the first record that breaks the log's integrity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The record's content (or its facets) no longer matches its hashes, or it
    /// no longer links to its predecessor although its successor links to it.
    Modified {
        /// Holds the record's sequence.
        sequence: u64,
        /// Holds the record's event id.
        event_id: EventId,
    },
    /// Records are missing: `sequence` was expected but a later one came, or
    /// fewer records exist than a trusted checkpoint covers.
    Deleted {
        /// Holds the first missing sequence.
        sequence: u64,
    },
    /// The record was inserted: its successor links to its predecessor.
    Inserted {
        /// Holds the inserted record's sequence.
        sequence: u64,
        /// Holds its event id.
        event_id: EventId,
    },
    /// The record sits at the wrong place: its successor belongs here.
    Reordered {
        /// Holds the first misplaced sequence.
        sequence: u64,
        /// Holds the event id found there.
        event_id: EventId,
    },
    /// The records are self-consistent but disagree with a signed checkpoint:
    /// the log up to `tree_size` was rewritten wholesale.
    CheckpointMismatch {
        /// Holds the checkpoint's tree size.
        tree_size: u64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Modified { sequence, event_id } => {
                write!(f, "record {sequence} (event {event_id}) was modified")
            }
            Self::Deleted { sequence } => write!(f, "record {sequence} was deleted"),
            Self::Inserted { sequence, event_id } => {
                write!(f, "record {sequence} (event {event_id}) was inserted")
            }
            Self::Reordered { sequence, event_id } => {
                write!(f, "record {sequence} (event {event_id}) was reordered")
            }
            Self::CheckpointMismatch { tree_size } => {
                write!(
                    f,
                    "the log disagrees with the checkpoint of tree size {tree_size}"
                )
            }
        }
    }
}

/// Recomputes the chain and the tree over every stored record and names the
/// first record that was modified, deleted, inserted or reordered.
///
/// `from` is a checkpoint the caller trusts (already checked with
/// [`Checkpoint::from_note`]); the log must extend it. The latest stored
/// checkpoint is checked too.
pub async fn verify(store: &dyn Store, from: Option<&Checkpoint>) -> Result<VerifyReport, Error> {
    let pruned = store.pruned().await?;
    let mut walk = Walk {
        base: prefix_of(pruned.as_ref()),
        base_chain: pruned.as_ref().map_or(GENESIS, |record| record.chain_hash),
        ..Walk::default()
    };
    let mut after = walk.base.size;
    if after > 0 {
        // The removed prefix must still be the one its signed checkpoint names.
        let matches = store
            .checkpoint(Some(after))
            .await?
            .is_some_and(|checkpoint| {
                walk.base.root(&[]) == Some(checkpoint.root_hash)
                    && walk.base_chain == checkpoint.chain_hash
            });
        if !matches {
            walk.problem = Some(Problem::CheckpointMismatch { tree_size: after });
        }
    }
    while walk.problem.is_none() {
        let page = store.read(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.sequence;
        walk.check_page(&page);
    }
    let stored = store.checkpoint(None).await?;
    for checkpoint in from.into_iter().chain(stored.as_ref()) {
        if walk.problem.is_none() {
            walk.problem = walk.against(checkpoint);
        }
    }
    Ok(VerifyReport {
        tree_size: walk.base.size + walk.leaves.len() as u64,
        root_hash: walk.base.root(&walk.leaves).ok_or(Error::Corrupt("tree"))?,
        chain_hash: walk.chain.last().copied().unwrap_or(walk.base_chain),
        problem: walk.problem,
        pruned_through: walk.base.size,
    })
}

#[derive(Debug, Default)]
struct Walk {
    /// The prefix retention removed, and the chain head it ends with.
    base: Prefix,
    base_chain: Hash,
    leaves: Vec<Hash>,
    chain: Vec<Hash>,
    previous_id: Option<EventId>,
    problem: Option<Problem>,
}

impl Walk {
    fn previous_chain(&self, back: usize) -> Hash {
        match self.chain.len().checked_sub(back) {
            Some(index) => self.chain.get(index).copied().unwrap_or(GENESIS),
            None if self.chain.len() + 1 == back => self.base_chain,
            None => GENESIS,
        }
    }

    fn check_page(&mut self, page: &[StoredEvent]) {
        for (index, record) in page.iter().enumerate() {
            if let Some(problem) = self.check(record, page.get(index + 1)) {
                self.problem = Some(problem);
                return;
            }
            self.leaves.push(record.leaf_hash);
            self.chain.push(record.chain_hash);
            self.previous_id = Some(record.event.id.clone());
        }
    }

    fn check(&self, record: &StoredEvent, next: Option<&StoredEvent>) -> Option<Problem> {
        let expected = self.base.size + self.leaves.len() as u64 + 1;
        let event_id = record.event.id.clone();
        let sequence = record.sequence;
        if sequence != expected {
            return Some(Problem::Deleted { sequence: expected });
        }
        let rederived = AuditEvent::from_canonical(&record.event.canonical_json);
        let content_intact = merkle::leaf_hash(&record.event.canonical_json) == record.leaf_hash
            && rederived.is_ok_and(|event| {
                event.id == record.event.id
                    && event.facets == record.event.facets
                    && event.time_micros == record.event.time_micros
            });
        if !content_intact {
            return Some(Problem::Modified { sequence, event_id });
        }
        let previous = self.previous_chain(1);
        if event::chain_hash(&previous, &record.leaf_hash) == record.chain_hash {
            return None;
        }
        Some(self.classify_break(record, next))
    }

    fn classify_break(&self, record: &StoredEvent, next: Option<&StoredEvent>) -> Problem {
        let (sequence, event_id) = (record.sequence, record.event.id.clone());
        let links = |previous: &Hash, candidate: &StoredEvent| {
            event::chain_hash(previous, &candidate.leaf_hash) == candidate.chain_hash
        };
        if let Some(previous_id) = &self.previous_id
            && links(&self.previous_chain(2), record)
        {
            // This record links to the one before its predecessor.
            return Problem::Inserted {
                sequence: sequence - 1,
                event_id: previous_id.clone(),
            };
        }
        if next.is_some_and(|next| links(&self.previous_chain(1), next)) {
            return Problem::Reordered { sequence, event_id };
        }
        Problem::Modified { sequence, event_id }
    }

    fn against(&self, checkpoint: &Checkpoint) -> Option<Problem> {
        // Older checkpoints cover archived events: the prune checked them.
        let beyond = checkpoint.tree_size.checked_sub(self.base.size)?;
        let size = usize::try_from(beyond).unwrap_or(usize::MAX);
        if size > self.leaves.len() {
            return Some(Problem::Deleted {
                sequence: self.base.size + self.leaves.len() as u64 + 1,
            });
        }
        let root = self.base.root(&self.leaves[..size])?;
        let chain = size
            .checked_sub(1)
            .and_then(|index| self.chain.get(index))
            .copied()
            .unwrap_or(self.base_chain);
        (root != checkpoint.root_hash || chain != checkpoint.chain_hash).then_some(
            Problem::CheckpointMismatch {
                tree_size: checkpoint.tree_size,
            },
        )
    }
}

/// Checks offline that the event with `canonical_json` is leaf `leaf_index` of
/// the tree a checkpoint note signed by `key` commits to, along `audit_path`;
/// returns the checkpoint.
pub fn verify_inclusion(
    canonical_json: &[u8],
    leaf_index: u64,
    audit_path: &[Hash],
    signed_note: &str,
    key: &VerifyingKey,
) -> Result<Checkpoint, Error> {
    let checkpoint = Checkpoint::from_note(signed_note, key)?;
    let leaf = merkle::leaf_hash(canonical_json);
    if !merkle::verify_inclusion(
        &leaf,
        leaf_index,
        checkpoint.tree_size,
        audit_path,
        &checkpoint.root_hash,
    ) {
        return Err(Error::InvalidNote(
            "the audit path does not lead to the signed root",
        ));
    }
    Ok(checkpoint)
}

impl InclusionProof {
    /// Returns the proof in C2SP `tlog-proof` text form: a header, the leaf
    /// index, the audit path in base64, a blank line, then the signed checkpoint.
    pub fn tlog_proof(&self) -> String {
        let mut text = format!("c2sp.org/tlog-proof@v1\nindex {}\n", self.leaf_index);
        for hash in &self.audit_path {
            text.push_str(&STANDARD.encode(hash));
            text.push('\n');
        }
        text.push('\n');
        text.push_str(&self.checkpoint.signed_note);
        text
    }
}
