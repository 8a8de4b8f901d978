//! The insert-only event store: one trait, a SQLite and a PostgreSQL
//! implementation, and the sealing rules both apply.
//!
//! Sequence numbers are assigned inside the appending transaction while it holds
//! the log's write lock (SQLite: the process-wide writer mutex plus `BEGIN
//! IMMEDIATE`; PostgreSQL: a transaction-scoped advisory lock), so concurrent
//! appenders — streams or replicas — get a gapless, ordered sequence: a batch
//! either commits entirely after the previous one or not at all.

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;

use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::event::{self, AppendOutcome, AuditEvent, EventId, Facets, StoredEvent};
use crate::merkle::Hash;
use crate::query::SearchQuery;

mod postgres;
mod reads;
mod sqlite;
mod writes;

pub use postgres::PostgresStore;
pub use reads::Reads;
pub use sqlite::SqliteStore;

/// Keeps audit events and checkpoints, read through [`Reads`]; nothing stored can be
/// changed or removed through it.
#[async_trait]
pub trait Store: Reads {
    /// Appends `events` in one transaction and reports each one's fate, in order;
    /// returns only once the batch is committed (durable).
    async fn append(&self, events: &[AuditEvent]) -> Result<Vec<AppendOutcome>, Error>;

    /// Stores a signed checkpoint; storing one of an existing size again is a no-op.
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), Error>;

    /// Stores the cursor of `sink`; each field only ever moves forward, so a
    /// late writer (another replica, a retry) cannot rewind it.
    async fn set_sink_cursor(&self, sink: &str, cursor: SinkCursor) -> Result<(), Error>;

    /// Records events that `sink` refused for good; recording one again is a no-op.
    async fn put_dead_letters(&self, sink: &str, letters: &[DeadLetter]) -> Result<(), Error>;

    /// Records `record` and removes the events it covers, in one transaction;
    /// returns how many were removed. The database refuses to remove events no
    /// prune record covers.
    async fn prune(&self, record: &PruneRecord) -> Result<u64, Error>;
}

/// Records a removed prefix of the log: what a verifier needs to go on from
/// the first remaining event, and where the removed events were archived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneRecord {
    /// Holds the last removed sequence (events `1..=through` are gone).
    pub through: u64,
    /// Holds the chain hash of event `through`, which the next event links to.
    pub chain_hash: Hash,
    /// Holds the compact range of the removed leaves.
    pub frontier: Vec<Hash>,
    /// Holds the signed checkpoint of tree size `through`.
    pub signed_note: String,
    /// Names the archive the removed events went to.
    pub archive: String,
    /// Holds the archive file's SHA-256.
    pub archive_sha256: Hash,
    /// Holds when the prefix was removed, in microseconds since the Unix epoch.
    pub pruned_at_micros: i64,
}

/// Is one row of `audit_prune`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct PruneRow {
    through_seq: i64,
    chain_hash: Vec<u8>,
    frontier: Vec<u8>,
    signed_note: String,
    archive: String,
    archive_sha256: Vec<u8>,
    pruned_at: i64,
}

impl TryFrom<PruneRow> for PruneRecord {
    type Error = Error;

    fn try_from(row: PruneRow) -> Result<Self, Error> {
        if !row.frontier.len().is_multiple_of(32) {
            return Err(Error::Corrupt("prune frontier"));
        }
        Ok(Self {
            through: to_sequence(row.through_seq)?,
            chain_hash: to_hash(row.chain_hash, "prune chain hash")?,
            frontier: row
                .frontier
                .chunks(32)
                .map(|chunk| to_hash(chunk.to_vec(), "prune frontier"))
                .collect::<Result<_, _>>()?,
            signed_note: row.signed_note,
            archive: row.archive,
            archive_sha256: to_hash(row.archive_sha256, "archive hash")?,
            pruned_at_micros: row.pruned_at,
        })
    }
}

impl PruneRecord {
    /// Returns the frontier as stored: the hashes concatenated.
    pub(crate) fn frontier_bytes(&self) -> Vec<u8> {
        self.frontier.concat()
    }
}

/// Is where a sink stands: what it delivered and which checkpoint it anchored.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCursor {
    /// Holds the last sequence the sink accepted (everything up to it is delivered
    /// or dead-lettered).
    pub delivered: u64,
    /// Holds the tree size of the last checkpoint written to the sink.
    pub anchored: u64,
}

/// Is an event a sink refused for good (a 4xx other than 429, say); kept so an
/// operator can replay it, since the cursor moves past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Holds the event's sequence.
    pub sequence: u64,
    /// Holds the event's id.
    pub event_id: String,
    /// Says why the sink refused it (status and the sink's message, never a secret).
    pub reason: String,
    /// Holds when it was refused, in microseconds since the Unix epoch.
    pub failed_at_micros: i64,
}

/// Is one row of `audit_event`, as both backends read it.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct EventRow {
    seq: i64,
    event_id: String,
    kind: String,
    event_time: i64,
    recorded_at: i64,
    member_id: String,
    agent_client_id: String,
    virtual_server: String,
    connector: String,
    tool: String,
    verdict: String,
    outcome: String,
    trace_id: String,
    canonical_json: Vec<u8>,
    leaf_hash: Vec<u8>,
    chain_hash: Vec<u8>,
}

/// Is one row of `audit_checkpoint`.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct CheckpointRow {
    tree_size: i64,
    origin: String,
    root_hash: Vec<u8>,
    chain_hash: Vec<u8>,
    made_at: i64,
    signed_note: String,
}

/// Lists the columns of `audit_event` in [`EventRow`] order.
pub(crate) const EVENT_COLUMNS: &str = "seq, event_id, kind, event_time, recorded_at, member_id, \
     agent_client_id, virtual_server, connector, tool, verdict, outcome, trace_id, \
     canonical_json, leaf_hash, chain_hash";

/// Tracks the log's tail while a batch is sealed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tail {
    pub(crate) sequence: u64,
    pub(crate) chain_hash: Hash,
}

/// Is the chain hash before the first event.
pub(crate) const GENESIS: Hash = [0u8; 32];

impl Tail {
    /// Returns the tail for the last stored row, or the genesis tail.
    pub(crate) fn from_last(last: Option<(i64, Vec<u8>)>) -> Result<Self, Error> {
        match last {
            None => Ok(Self {
                sequence: 0,
                chain_hash: GENESIS,
            }),
            Some((seq, chain)) => Ok(Self {
                sequence: to_sequence(seq)?,
                chain_hash: to_hash(chain, "chain hash")?,
            }),
        }
    }

    /// Appends a leaf to the chain and returns its sequence and chain hash.
    pub(crate) fn link(&mut self, leaf_hash: &Hash) -> (u64, Hash) {
        self.sequence += 1;
        self.chain_hash = event::chain_hash(&self.chain_hash, leaf_hash);
        (self.sequence, self.chain_hash)
    }
}

impl TryFrom<EventRow> for StoredEvent {
    type Error = Error;

    fn try_from(row: EventRow) -> Result<Self, Error> {
        Ok(Self {
            sequence: to_sequence(row.seq)?,
            recorded_at_micros: row.recorded_at,
            event: AuditEvent {
                id: EventId::try_from(row.event_id).map_err(|_| Error::Corrupt("event id"))?,
                time_micros: row.event_time,
                facets: Facets {
                    kind: row.kind,
                    member_id: row.member_id,
                    agent_client_id: row.agent_client_id,
                    virtual_server: row.virtual_server,
                    connector: row.connector,
                    tool: row.tool,
                    verdict: row.verdict,
                    outcome: row.outcome,
                    trace_id: row.trace_id,
                },
                canonical_json: row.canonical_json,
            },
            leaf_hash: to_hash(row.leaf_hash, "leaf hash")?,
            chain_hash: to_hash(row.chain_hash, "chain hash")?,
        })
    }
}

impl TryFrom<CheckpointRow> for Checkpoint {
    type Error = Error;

    fn try_from(row: CheckpointRow) -> Result<Self, Error> {
        Ok(Self {
            origin: row.origin,
            tree_size: to_sequence(row.tree_size)?,
            root_hash: to_hash(row.root_hash, "root hash")?,
            chain_hash: to_hash(row.chain_hash, "chain hash")?,
            time_micros: row.made_at,
            signed_note: row.signed_note,
        })
    }
}

/// Returns now in microseconds since the Unix epoch.
pub(crate) fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
        })
}

/// Returns a sequence as the databases' signed 64-bit integer.
pub(crate) fn to_db(sequence: u64) -> i64 {
    i64::try_from(sequence).unwrap_or(i64::MAX)
}

fn to_sequence(value: i64) -> Result<u64, Error> {
    u64::try_from(value).map_err(|_| Error::Corrupt("sequence"))
}

/// Returns a stored hash column as a 32-byte hash.
pub(crate) fn to_hash(bytes: Vec<u8>, what: &'static str) -> Result<Hash, Error> {
    Hash::try_from(bytes).map_err(|_| Error::Corrupt(what))
}

/// Is what a batch does: each event's outcome, and the new records to insert.
#[derive(Debug, Default)]
pub(crate) struct Plan {
    pub(crate) outcomes: Vec<AppendOutcome>,
    pub(crate) records: Vec<Sealed>,
}

/// Is one new record of a planned batch: which event it is, and where and how
/// it joins the log. It borrows nothing, so planning copies no event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sealed {
    /// Holds the event's index in the appended batch.
    pub(crate) index: usize,
    pub(crate) sequence: u64,
    pub(crate) leaf_hash: Hash,
    pub(crate) chain_hash: Hash,
}

/// Returns the leaf hash of each event; appenders compute them before they
/// take the write lock, since hashing the canonical bytes is the costly part
/// of sealing.
pub(crate) fn leaf_hashes(events: &[AuditEvent]) -> Vec<Hash> {
    events.iter().map(AuditEvent::leaf_hash).collect()
}

/// Plans a batch after `tail`: an id already stored (in `existing`, as sequence
/// and canonical bytes, or earlier in the batch) with identical content is a
/// duplicate, with different content a conflict; every other event is sealed
/// as the next record, with its leaf hash from `leaves`.
pub(crate) fn plan(
    events: &[AuditEvent],
    leaves: &[Hash],
    existing: &[(String, i64, Vec<u8>)],
    tail: &mut Tail,
) -> Plan {
    let mut known: HashMap<&str, (u64, &[u8])> = existing
        .iter()
        .filter_map(|(id, seq, json)| {
            Some((id.as_str(), (u64::try_from(*seq).ok()?, json.as_slice())))
        })
        .collect();
    let mut plan = Plan {
        outcomes: Vec::with_capacity(events.len()),
        records: Vec::with_capacity(events.len()),
    };
    for (index, (event, leaf_hash)) in events.iter().zip(leaves).enumerate() {
        let outcome = match known.get(event.id.as_str()) {
            Some((sequence, json)) if *json == event.canonical_json.as_slice() => {
                AppendOutcome::Duplicate(*sequence)
            }
            Some(_) => AppendOutcome::Conflict,
            None => {
                let (sequence, chain_hash) = tail.link(leaf_hash);
                known.insert(event.id.as_str(), (sequence, &event.canonical_json));
                plan.records.push(Sealed {
                    index,
                    sequence,
                    leaf_hash: *leaf_hash,
                    chain_hash,
                });
                AppendOutcome::Stored(sequence)
            }
        };
        plan.outcomes.push(outcome);
    }
    plan
}

/// Is one value bound to a search statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bind {
    Text(String),
    Int(i64),
}

/// Returns the search statement for `query` with `$n` placeholders (which both
/// SQLite and PostgreSQL accept) and the values to bind to them, in order.
pub(crate) fn search_sql(query: &SearchQuery) -> (String, Vec<Bind>) {
    let filter = &query.filter;
    let mut binds = Vec::new();
    let mut clauses = Vec::new();
    let lists: [(&str, &Vec<String>); 8] = [
        ("member_id", &filter.member_ids),
        ("agent_client_id", &filter.agent_client_ids),
        ("virtual_server", &filter.virtual_servers),
        ("connector", &filter.connectors),
        ("tool", &filter.tools),
        ("verdict", &filter.verdicts),
        ("outcome", &filter.outcomes),
        ("kind", &filter.kinds),
    ];
    for (column, values) in lists.into_iter().filter(|(_, values)| !values.is_empty()) {
        let placeholders: Vec<String> = values
            .iter()
            .map(|value| {
                binds.push(Bind::Text(value.clone()));
                format!("${}", binds.len())
            })
            .collect();
        clauses.push(format!("{column} IN ({})", placeholders.join(", ")));
    }
    let mut compare = |clause: &str, bind: Bind| {
        binds.push(bind);
        clauses.push(format!("{clause} ${}", binds.len()));
    };
    if let Some(start) = filter.start_micros {
        compare("event_time >=", Bind::Int(start));
    }
    if let Some(end) = filter.end_micros {
        compare("event_time <", Bind::Int(end));
    }
    if let Some(trace_id) = &filter.trace_id {
        compare("trace_id =", Bind::Text(trace_id.clone()));
    }
    if let Some(after) = query.after {
        let op = if query.descending { "seq <" } else { "seq >" };
        compare(op, Bind::Int(to_db(after)));
    }
    let condition = if clauses.is_empty() {
        "TRUE".to_owned()
    } else {
        clauses.join(" AND ")
    };
    let order = if query.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {EVENT_COLUMNS} FROM audit_event WHERE {condition} ORDER BY seq {order} LIMIT {}",
        query.limit
    );
    (sql, binds)
}
