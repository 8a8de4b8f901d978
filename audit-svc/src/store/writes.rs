//! The statements both backends write with, written once: each backend runs them on its own
//! writing connection under its own lock (SQLite: the writer mutex; PostgreSQL: the advisory
//! lock), which is where the two differ.

use sqlx::{ColumnIndex, Connection, Decode, Encode, Executor, IntoArguments, Type};

use super::{DeadLetter, PruneRecord, SinkCursor, Tail, now_micros, to_db};
use crate::checkpoint::Checkpoint;
use crate::error::Error;

/// Upserts a sink's cursor, never moving a field backwards.
const UPSERT_CURSOR: &str = "INSERT INTO audit_sink_cursor (sink, delivered_seq, \
     anchored_size, updated_at) VALUES ($1, $2, $3, $4) ON CONFLICT (sink) DO UPDATE SET \
     delivered_seq = CASE WHEN excluded.delivered_seq > audit_sink_cursor.delivered_seq \
     THEN excluded.delivered_seq ELSE audit_sink_cursor.delivered_seq END, \
     anchored_size = CASE WHEN excluded.anchored_size > audit_sink_cursor.anchored_size \
     THEN excluded.anchored_size ELSE audit_sink_cursor.anchored_size END, \
     updated_at = excluded.updated_at";

/// Inserts one dead letter unless it is already recorded.
const INSERT_DEAD_LETTER: &str = "INSERT INTO audit_sink_dead_letter (sink, seq, \
     event_id, reason, failed_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sink, seq) DO NOTHING";

/// Stores a checkpoint unless one of its size is stored.
const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoint (tree_size, origin, root_hash, \
     chain_hash, made_at, signed_note) VALUES ($1, $2, $3, $4, $5, $6) \
     ON CONFLICT (tree_size) DO NOTHING";

/// Inserts a prune record.
const INSERT_PRUNE: &str = "INSERT INTO audit_prune (through_seq, chain_hash, \
     frontier, signed_note, archive, archive_sha256, pruned_at) VALUES ($1, $2, $3, $4, $5, $6, $7)";

/// Reads the last stored event's sequence and chain hash.
const SELECT_LAST: &str = "SELECT seq, chain_hash FROM audit_event ORDER BY seq DESC LIMIT 1";

/// Reads the tail a prune left when no event remains.
const SELECT_PRUNED_TAIL: &str =
    "SELECT through_seq, chain_hash FROM audit_prune ORDER BY through_seq DESC LIMIT 1";

/// Runs the shared write statements on one connection (or transaction) of either backend; the
/// caller holds the backend's lock and owns the transaction.
pub(crate) struct Writer<'a, C>(pub(crate) &'a mut C);

impl<C> Writer<'_, C>
where
    C: Connection,
    for<'c> &'c mut C: Executor<'c, Database = C::Database>,
    <C::Database as sqlx::Database>::Arguments: IntoArguments<C::Database>,
    for<'q> i64: Encode<'q, C::Database> + Decode<'q, C::Database> + Type<C::Database>,
    for<'q> &'q str: Encode<'q, C::Database> + Type<C::Database>,
    for<'q> &'q [u8]: Encode<'q, C::Database> + Type<C::Database>,
    for<'q> Vec<u8>: Encode<'q, C::Database> + Decode<'q, C::Database> + Type<C::Database>,
    usize: ColumnIndex<<C::Database as sqlx::Database>::Row>,
{
    /// Returns the log's tail inside the appending transaction: the last event, or where
    /// retention's last prune left the chain when it removed every event.
    pub(crate) async fn tail(&mut self) -> Result<Tail, Error> {
        let last: Option<(i64, Vec<u8>)> = sqlx::query_as(SELECT_LAST)
            .fetch_optional(&mut *self.0)
            .await
            .map_err(Error::from_sqlx)?;
        let last = match last {
            Some(last) => Some(last),
            None => sqlx::query_as(SELECT_PRUNED_TAIL)
                .fetch_optional(&mut *self.0)
                .await
                .map_err(Error::from_sqlx)?,
        };
        Tail::from_last(last)
    }

    /// Stores `checkpoint`; one of an existing size is left as it is.
    pub(crate) async fn put_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), Error> {
        sqlx::query(INSERT_CHECKPOINT)
            .bind(to_db(checkpoint.tree_size))
            .bind(checkpoint.origin.as_str())
            .bind(checkpoint.root_hash.as_slice())
            .bind(checkpoint.chain_hash.as_slice())
            .bind(checkpoint.time_micros)
            .bind(checkpoint.signed_note.as_str())
            .execute(&mut *self.0)
            .await
            .map_err(Error::from_sqlx)?;
        Ok(())
    }

    /// Moves `sink`'s cursor forward to `cursor` (never back).
    pub(crate) async fn set_sink_cursor(
        &mut self,
        sink: &str,
        cursor: SinkCursor,
    ) -> Result<(), Error> {
        sqlx::query(UPSERT_CURSOR)
            .bind(sink)
            .bind(to_db(cursor.delivered))
            .bind(to_db(cursor.anchored))
            .bind(now_micros())
            .execute(&mut *self.0)
            .await
            .map_err(Error::from_sqlx)?;
        Ok(())
    }

    /// Records `letters` for `sink`; the caller's transaction makes them one write.
    pub(crate) async fn put_dead_letters(
        &mut self,
        sink: &str,
        letters: &[DeadLetter],
    ) -> Result<(), Error> {
        for letter in letters {
            sqlx::query(INSERT_DEAD_LETTER)
                .bind(sink)
                .bind(to_db(letter.sequence))
                .bind(letter.event_id.as_str())
                .bind(letter.reason.as_str())
                .bind(letter.failed_at_micros)
                .execute(&mut *self.0)
                .await
                .map_err(Error::from_sqlx)?;
        }
        Ok(())
    }

    /// Records `record` and removes the events it covers; the caller's transaction makes both
    /// one write, so no event goes without its prune record. Returns the removal's result,
    /// whose count of rows only each backend's own type can tell.
    pub(crate) async fn prune(
        &mut self,
        record: &PruneRecord,
    ) -> Result<<C::Database as sqlx::Database>::QueryResult, Error> {
        sqlx::query(INSERT_PRUNE)
            .bind(to_db(record.through))
            .bind(record.chain_hash.as_slice())
            .bind(record.frontier_bytes())
            .bind(record.signed_note.as_str())
            .bind(record.archive.as_str())
            .bind(record.archive_sha256.as_slice())
            .bind(record.pruned_at_micros)
            .execute(&mut *self.0)
            .await
            .map_err(Error::from_sqlx)?;
        sqlx::query("DELETE FROM audit_event WHERE seq <= $1")
            .bind(to_db(record.through))
            .execute(&mut *self.0)
            .await
            .map_err(Error::from_sqlx)
    }
}
