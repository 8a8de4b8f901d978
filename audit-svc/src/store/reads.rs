//! The log's reads, written once for both backends: they differ only in the pool's type,
//! and `$n` placeholders and these statements mean the same in SQLite and PostgreSQL.

use async_trait::async_trait;
use sqlx::{
    AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool,
    Type,
};

use super::{
    Bind, CheckpointRow, DeadLetter, EVENT_COLUMNS, EventRow, PruneRecord, PruneRow, SinkCursor,
    search_sql, to_db,
};
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::event::{EventId, StoredEvent};
use crate::merkle::Hash;
use crate::query::SearchQuery;

/// Reads the log and what the sinks and retention keep beside it; nothing here writes.
#[async_trait]
pub trait Reads: Send + Sync + std::fmt::Debug {
    /// Returns the number of stored events (the last sequence).
    async fn head(&self) -> Result<u64, Error>;

    /// Returns up to `limit` events with sequence greater than `after`, ascending.
    async fn read(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, Error>;

    /// Returns one page of events matching `query`.
    async fn search(&self, query: &SearchQuery) -> Result<Vec<StoredEvent>, Error>;

    /// Returns the event stored under `id`, if any.
    async fn find(&self, id: &EventId) -> Result<Option<StoredEvent>, Error>;

    /// Returns the leaf hashes of the events after sequence `after` through `through`, in
    /// sequence order; pruned events have none.
    async fn leaf_hashes(&self, after: u64, through: u64) -> Result<Vec<Hash>, Error>;

    /// Returns the checkpoint of `tree_size`, or the latest when `None`.
    async fn checkpoint(&self, tree_size: Option<u64>) -> Result<Option<Checkpoint>, Error>;

    /// Returns the cursor of the sink named `sink` (zeros for a new sink).
    async fn sink_cursor(&self, sink: &str) -> Result<SinkCursor, Error>;

    /// Returns the dead letters of `sink`, in sequence order.
    async fn dead_letters(&self, sink: &str) -> Result<Vec<DeadLetter>, Error>;

    /// Returns the names of the sinks that ever delivered or dead-lettered an
    /// event, sorted (what an operator asks about without the config at hand).
    async fn sinks(&self) -> Result<Vec<String>, Error>;

    /// Returns the largest checkpointed tree size, at most `limit`, whose last
    /// event was committed before `cutoff_micros`: the end of what retention may
    /// remove.
    async fn prunable(&self, cutoff_micros: i64, limit: u64) -> Result<Option<u64>, Error>;

    /// Returns the latest prune (the removed prefix), if retention removed any.
    async fn pruned(&self) -> Result<Option<PruneRecord>, Error>;
}

/// Is a store whose reads go through one sqlx pool; it gets [`Reads`] from that alone.
pub(crate) trait Pooled: Send + Sync + std::fmt::Debug {
    /// Names the backend.
    type Database: Database;

    /// Returns the pool reads take their connections from (never the writer's).
    fn readers(&self) -> &Pool<Self::Database>;
}

/// Reads a sink's cursor.
const SELECT_CURSOR: &str =
    "SELECT delivered_seq, anchored_size FROM audit_sink_cursor WHERE sink = $1";

/// Lists every sink with a cursor or a dead letter.
const SELECT_SINKS: &str = "SELECT sink FROM audit_sink_cursor UNION \
     SELECT sink FROM audit_sink_dead_letter ORDER BY 1";

/// Reads a sink's dead letters in sequence order.
const SELECT_DEAD_LETTERS: &str = "SELECT seq, event_id, reason, failed_at FROM \
     audit_sink_dead_letter WHERE sink = $1 ORDER BY seq";

/// Reads the latest prune record.
const SELECT_PRUNE: &str = "SELECT through_seq, chain_hash, frontier, signed_note, \
     archive, archive_sha256, pruned_at FROM audit_prune ORDER BY through_seq DESC LIMIT 1";

/// Finds the newest checkpoint whose last event is older than the cutoff.
const SELECT_PRUNABLE: &str = "SELECT MAX(c.tree_size) FROM audit_checkpoint c \
     JOIN audit_event e ON e.seq = c.tree_size WHERE e.recorded_at < $1 AND c.tree_size <= $2";

/// Reads the leaf hashes of the events after one sequence through another, in order.
const SELECT_LEAF_HASHES: &str =
    "SELECT leaf_hash FROM audit_event WHERE seq > $1 AND seq <= $2 ORDER BY seq";

/// Returns the head: the last event, or the last pruned one when none remains.
const SELECT_HEAD: &str = "SELECT COALESCE((SELECT MAX(seq) FROM audit_event), \
     (SELECT MAX(through_seq) FROM audit_prune), 0)";

/// Lists a checkpoint's columns in [`CheckpointRow`] order.
const CHECKPOINT_COLUMNS: &str = "tree_size, origin, root_hash, chain_hash, made_at, signed_note";

#[async_trait]
impl<S, DB> Reads for S
where
    S: Pooled<Database = DB>,
    DB: Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    DB::Arguments: IntoArguments<DB>,
    for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'q> &'q str: Encode<'q, DB> + Type<DB>,
    for<'q> String: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
    for<'r> Vec<u8>: Decode<'r, DB> + Type<DB>,
    for<'r> EventRow: FromRow<'r, DB::Row>,
    for<'r> CheckpointRow: FromRow<'r, DB::Row>,
    for<'r> PruneRow: FromRow<'r, DB::Row>,
    usize: ColumnIndex<DB::Row>,
{
    async fn head(&self) -> Result<u64, Error> {
        let head: i64 = sqlx::query_scalar(SELECT_HEAD)
            .fetch_one(self.readers())
            .await
            .map_err(Error::from_sqlx)?;
        u64::try_from(head).map_err(|_| Error::Corrupt("sequence"))
    }

    async fn read(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>, Error> {
        let sql =
            format!("SELECT {EVENT_COLUMNS} FROM audit_event WHERE seq > $1 ORDER BY seq LIMIT $2");
        let rows: Vec<EventRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(to_db(after))
            .bind(i64::from(limit))
            .fetch_all(self.readers())
            .await
            .map_err(Error::from_sqlx)?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<StoredEvent>, Error> {
        let (sql, binds) = search_sql(query);
        let mut statement = sqlx::query_as::<DB, EventRow>(AssertSqlSafe(sql));
        for bind in binds {
            statement = match bind {
                Bind::Text(text) => statement.bind(text),
                Bind::Int(int) => statement.bind(int),
            };
        }
        let rows = statement
            .fetch_all(self.readers())
            .await
            .map_err(Error::from_sqlx)?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    async fn find(&self, id: &EventId) -> Result<Option<StoredEvent>, Error> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM audit_event WHERE event_id = $1");
        let row: Option<EventRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(self.readers())
            .await
            .map_err(Error::from_sqlx)?;
        row.map(StoredEvent::try_from).transpose()
    }

    async fn leaf_hashes(&self, after: u64, through: u64) -> Result<Vec<Hash>, Error> {
        let hashes: Vec<Vec<u8>> = sqlx::query_scalar(SELECT_LEAF_HASHES)
            .bind(to_db(after))
            .bind(to_db(through))
            .fetch_all(self.readers())
            .await
            .map_err(Error::from_sqlx)?;
        hashes
            .into_iter()
            .map(|hash| super::to_hash(hash, "leaf hash"))
            .collect()
    }

    async fn checkpoint(&self, tree_size: Option<u64>) -> Result<Option<Checkpoint>, Error> {
        let row: Option<CheckpointRow> = match tree_size {
            Some(size) => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoint WHERE tree_size = $1"
            )))
            .bind(to_db(size)),
            None => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {CHECKPOINT_COLUMNS} FROM audit_checkpoint ORDER BY tree_size DESC LIMIT 1"
            ))),
        }
        .fetch_optional(self.readers())
        .await
        .map_err(Error::from_sqlx)?;
        row.map(Checkpoint::try_from).transpose()
    }

    async fn sink_cursor(&self, sink: &str) -> Result<SinkCursor, Error> {
        let row: Option<(i64, i64)> = sqlx::query_as(SELECT_CURSOR)
            .bind(sink)
            .fetch_optional(self.readers())
            .await
            .map_err(Error::from_sqlx)?;
        to_cursor(row)
    }

    async fn dead_letters(&self, sink: &str) -> Result<Vec<DeadLetter>, Error> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(SELECT_DEAD_LETTERS)
            .bind(sink)
            .fetch_all(self.readers())
            .await
            .map_err(Error::from_sqlx)?;
        to_dead_letters(rows)
    }

    async fn sinks(&self) -> Result<Vec<String>, Error> {
        sqlx::query_scalar(SELECT_SINKS)
            .fetch_all(self.readers())
            .await
            .map_err(Error::from_sqlx)
    }

    async fn prunable(&self, cutoff_micros: i64, limit: u64) -> Result<Option<u64>, Error> {
        let size: Option<i64> = sqlx::query_scalar(SELECT_PRUNABLE)
            .bind(cutoff_micros)
            .bind(to_db(limit))
            .fetch_one(self.readers())
            .await
            .map_err(Error::from_sqlx)?;
        size.map(|size| u64::try_from(size).map_err(|_| Error::Corrupt("tree size")))
            .transpose()
    }

    async fn pruned(&self) -> Result<Option<PruneRecord>, Error> {
        let row: Option<PruneRow> = sqlx::query_as(SELECT_PRUNE)
            .fetch_optional(self.readers())
            .await
            .map_err(Error::from_sqlx)?;
        row.map(PruneRecord::try_from).transpose()
    }
}

/// Returns a cursor from its stored row.
fn to_cursor(row: Option<(i64, i64)>) -> Result<SinkCursor, Error> {
    let (delivered, anchored) = row.unwrap_or((0, 0));
    Ok(SinkCursor {
        delivered: super::to_sequence(delivered)?,
        anchored: super::to_sequence(anchored)?,
    })
}

/// Returns dead letters from their stored rows.
fn to_dead_letters(rows: Vec<(i64, String, String, i64)>) -> Result<Vec<DeadLetter>, Error> {
    rows.into_iter()
        .map(|(seq, event_id, reason, failed_at_micros)| {
            Ok(DeadLetter {
                sequence: super::to_sequence(seq)?,
                event_id,
                reason,
                failed_at_micros,
            })
        })
        .collect()
}
