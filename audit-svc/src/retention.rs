//! Retention: events older than the configured age are archived as JSON-lines
//! batches, each ending exactly at a signed checkpoint, and only then removed
//! from the store, as a prefix of the log.
//!
//! The archive batch `<first>-<last>.jsonl` starts with a header naming the
//! chain head and compact range before it, then holds one record per event
//! (sequence, commit time, leaf and chain hash, the canonical event verbatim);
//! `<first>-<last>.checkpoint` beside it is the signed checkpoint of tree size
//! `last`. That checkpoint signs the batch: from the header and the records a
//! verifier recomputes the chain and the Merkle root and compares them with the
//! signed ones ([`verify_archive`]). Before removing anything the same check
//! runs on the records as read from the store, and the removal records (in
//! `audit_prune`) the archive's SHA-256, the removed prefix's compact range and
//! chain head, from which [`crate::verify`] goes on and proofs are still made.
//!
//! Nothing is removed that a configured sink has not delivered yet.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use tokio_util::sync::CancellationToken;

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::event::{self, StoredEvent};
use crate::log::{AuditLog, prefix_of};
use crate::merkle::{self, Hash, Prefix};
use crate::store::{GENESIS, PruneRecord, now_micros};

/// Is the first line's `format` of an archive batch.
const FORMAT: &str = "gatehouse-audit-archive/v1";
const PAGE: u32 = 1000;

/// Configures retention; without `max_age` nothing is ever removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetentionConfig {
    /// Holds how long events stay in the store (by commit time); older ones
    /// are archived, then removed.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Holds the archive directory; defaults to `<data_dir>/archive`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive_dir: Option<PathBuf>,
    /// Holds how often retention looks for old events.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
}

/// Reports a verified archive batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveReport {
    /// Holds the first archived sequence.
    pub first: u64,
    /// Holds the last archived sequence (the checkpoint's tree size).
    pub last: u64,
    /// Holds the checkpoint the batch verified against.
    pub checkpoint: Checkpoint,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            max_age: None,
            archive_dir: None,
            interval: Duration::from_secs(3600),
        }
    }
}

/// Runs retention every `config.interval` until `shutdown`, never removing what
/// a sink in `sinks` has not delivered.
pub async fn run(
    log: AuditLog,
    config: RetentionConfig,
    archive_dir: PathBuf,
    sinks: Vec<String>,
    shutdown: CancellationToken,
) {
    let Some(max_age) = config.max_age else {
        return;
    };
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        match prune_older_than(&log, max_age, &archive_dir, &sinks).await {
            Ok(Some(record)) => {
                tracing::info!(through = record.through, archive = %record.archive, "audit events archived and removed");
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "audit retention failed"
                );
            }
        }
    }
}

/// Archives and removes the events committed more than `max_age` ago, up to the
/// newest checkpoint among them that every sink in `sinks` has delivered;
/// returns the prune, or `None` when nothing is due.
pub async fn prune_older_than(
    log: &AuditLog,
    max_age: Duration,
    archive_dir: &Path,
    sinks: &[String],
) -> Result<Option<PruneRecord>, Error> {
    let store = log.store();
    let cutoff =
        now_micros().saturating_sub(i64::try_from(max_age.as_micros()).unwrap_or(i64::MAX));
    let mut limit = store.head().await?;
    for sink in sinks {
        limit = limit.min(store.sink_cursor(sink).await?.delivered);
    }
    let pruned = store.pruned().await?;
    let from = pruned.as_ref().map_or(0, |record| record.through);
    let Some(through) = store.prunable(cutoff, limit).await? else {
        return Ok(None);
    };
    if through <= from {
        return Ok(None);
    }
    let checkpoint = store
        .checkpoint(Some(through))
        .await?
        .ok_or(Error::CheckpointNotFound(through))?;
    let prefix = prefix_of(pruned.as_ref());
    let chain = pruned.as_ref().map_or(GENESIS, |record| record.chain_hash);
    let (name, sha256, frontier) =
        write_archive(log, archive_dir, &prefix, chain, &checkpoint).await?;
    let record = PruneRecord {
        through,
        chain_hash: checkpoint.chain_hash,
        frontier: frontier.nodes,
        signed_note: checkpoint.signed_note.clone(),
        archive: name,
        archive_sha256: sha256,
        pruned_at_micros: now_micros(),
    };
    store.prune(&record).await?;
    Ok(Some(record))
}

/// Writes the batch `(prefix.size, checkpoint.tree_size]` and its checkpoint,
/// checking chain and root against the checkpoint before anything is kept;
/// returns the file name, its SHA-256 and the grown compact range.
async fn write_archive(
    log: &AuditLog,
    dir: &Path,
    prefix: &Prefix,
    chain: Hash,
    checkpoint: &Checkpoint,
) -> Result<(String, Hash, Prefix), Error> {
    let failed = |what: &str, error: std::io::Error| Error::Retention(format!("{what}: {error}"));
    let (first, last) = (prefix.size + 1, checkpoint.tree_size);
    let name = format!("{first:020}-{last:020}");
    std::fs::create_dir_all(dir).map_err(|e| failed("archive directory", e))?;
    let staging = dir.join(format!("{name}.jsonl.tmp"));
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(&staging).map_err(|e| failed("archive file", e))?,
    );
    let mut hasher = Sha256::new();
    let mut write = |line: &[u8]| -> Result<(), Error> {
        hasher.update(line);
        hasher.update(b"\n");
        file.write_all(line)
            .and_then(|()| file.write_all(b"\n"))
            .map_err(|e| failed("archive write", e))
    };
    write(
        header(prefix, chain, first, last, &checkpoint.origin)
            .to_string()
            .as_bytes(),
    )?;
    let mut grown = prefix.clone();
    let mut running_chain = chain;
    let mut after = prefix.size;
    while after < last {
        let page = log.store().read(after, PAGE).await?;
        let page: Vec<StoredEvent> = page.into_iter().filter(|e| e.sequence <= last).collect();
        let Some(end) = page.last().map(|e| e.sequence) else {
            return Err(Error::Retention(format!(
                "events after {after} are missing"
            )));
        };
        for record in &page {
            let linked = event::chain_hash(&running_chain, &record.leaf_hash);
            if record.sequence != after + 1
                || merkle::leaf_hash(&record.event.canonical_json) != record.leaf_hash
                || linked != record.chain_hash
            {
                return Err(Error::Retention(format!(
                    "record {} does not verify; run verify",
                    record.sequence
                )));
            }
            running_chain = linked;
            after = record.sequence;
            write(archive_line(record).as_bytes())?;
        }
        grown = grown.extend(&page.iter().map(|e| e.leaf_hash).collect::<Vec<_>>());
        after = end;
    }
    if grown.root(&[]) != Some(checkpoint.root_hash) || running_chain != checkpoint.chain_hash {
        return Err(Error::Retention(format!(
            "events up to {last} disagree with their checkpoint; run verify"
        )));
    }
    let file = file
        .into_inner()
        .map_err(|e| failed("archive write", e.into_error()))?;
    file.sync_all().map_err(|e| failed("archive sync", e))?;
    drop(file);
    let note = dir.join(format!("{name}.checkpoint"));
    std::fs::write(&note, &checkpoint.signed_note).map_err(|e| failed("archive checkpoint", e))?;
    std::fs::File::open(&note)
        .and_then(|f| f.sync_all())
        .map_err(|e| failed("archive checkpoint", e))?;
    std::fs::rename(&staging, dir.join(format!("{name}.jsonl")))
        .map_err(|e| failed("archive rename", e))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| failed("archive directory sync", e))?;
    Ok((format!("{name}.jsonl"), hasher.finalize().into(), grown))
}

fn header(prefix: &Prefix, chain: Hash, first: u64, last: u64, origin: &str) -> Value {
    json!({
        "format": FORMAT,
        "origin": origin,
        "first": first.to_string(),
        "last": last.to_string(),
        "previousChainHash": STANDARD.encode(chain),
        "previousFrontier": prefix.nodes.iter().map(|h| STANDARD.encode(h)).collect::<Vec<_>>(),
    })
}

/// Returns one archive line; the event goes in verbatim (its canonical bytes).
fn archive_line(record: &StoredEvent) -> String {
    let head = json!({
        "sequence": record.sequence.to_string(),
        "recordedAt": record.recorded_at_micros.to_string(),
        "leafHash": STANDARD.encode(record.leaf_hash),
        "chainHash": STANDARD.encode(record.chain_hash),
    })
    .to_string();
    format!(
        "{},\"event\":{}}}",
        &head[..head.len() - 1],
        String::from_utf8_lossy(&record.event.canonical_json)
    )
}

/// Checks an archive batch offline: its checkpoint's signature by `key`, every
/// record's leaf hash (recomputed from the canonical event bytes) and chain
/// link, and the Merkle root and chain head against the checkpoint.
pub fn verify_archive(jsonl: &Path, key: &VerifyingKey) -> Result<ArchiveReport, Error> {
    let bad = |what: &str| Error::Retention(format!("archive {}: {what}", jsonl.display()));
    let text = std::fs::read_to_string(jsonl).map_err(|e| bad(&e.to_string()))?;
    let note = std::fs::read_to_string(jsonl.with_extension("checkpoint"))
        .map_err(|e| bad(&format!("checkpoint: {e}")))?;
    let checkpoint = Checkpoint::from_note(&note, key)?;
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().unwrap_or_default())
        .map_err(|_| bad("header is not JSON"))?;
    if header["format"] != FORMAT {
        return Err(bad("unknown format"));
    }
    let decode = |value: &Value| -> Result<Hash, Error> {
        value
            .as_str()
            .and_then(|text| STANDARD.decode(text).ok())
            .and_then(|bytes| Hash::try_from(bytes).ok())
            .ok_or_else(|| bad("hash is not base64 of 32 bytes"))
    };
    let number = |value: &Value| value.as_str().and_then(|t| t.parse::<u64>().ok());
    let first = number(&header["first"]).ok_or_else(|| bad("first"))?;
    let last = number(&header["last"]).ok_or_else(|| bad("last"))?;
    let nodes = header["previousFrontier"]
        .as_array()
        .ok_or_else(|| bad("previousFrontier"))?
        .iter()
        .map(decode)
        .collect::<Result<Vec<_>, _>>()?;
    let prefix = Prefix {
        size: first - 1,
        nodes,
    };
    if prefix.nodes.len() != prefix.size.count_ones() as usize {
        return Err(bad("previousFrontier does not fit the first sequence"));
    }
    let mut chain = decode(&header["previousChainHash"])?;
    let mut leaves = Vec::new();
    for (offset, line) in lines.enumerate() {
        // Line numbers count from 1, after the header: they name a record whose
        // sequence itself can no longer be read.
        let at = |what: &str| bad(&format!("line {}: {what}", offset + 2));
        let record: Value = serde_json::from_str(line).map_err(|_| at("record is not JSON"))?;
        let sequence = number(&record["sequence"]).ok_or_else(|| at("record has no sequence"))?;
        let canonical = svc_kit::canonical::to_vec(&record["event"])
            .map_err(|_| bad("event cannot be canonicalized"))?;
        let leaf = merkle::leaf_hash(&canonical);
        chain = event::chain_hash(&chain, &leaf);
        if sequence != first + offset as u64
            || leaf != decode(&record["leafHash"])?
            || chain != decode(&record["chainHash"])?
        {
            return Err(bad(&format!("record {sequence} does not verify")));
        }
        leaves.push(leaf);
    }
    let grown = prefix.extend(&leaves);
    if grown.size != last
        || checkpoint.tree_size != last
        || grown.root(&[]) != Some(checkpoint.root_hash)
        || chain != checkpoint.chain_hash
    {
        return Err(bad("records disagree with the signed checkpoint"));
    }
    Ok(ArchiveReport {
        first,
        last,
        checkpoint,
    })
}
