//! The PostgreSQL store: the scale-out deployment's system of record.

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{AssertSqlSafe, PgPool, Row as _};

use super::{
    Bind, CheckpointRow, DeadLetter, EVENT_COLUMNS, EventRow, INSERT_DEAD_LETTER, INSERT_PRUNE,
    PruneRecord, PruneRow, SELECT_CURSOR, SELECT_DEAD_LETTERS, SELECT_HEAD, SELECT_LEAF_HASHES,
    SELECT_PRUNABLE, SELECT_PRUNE, SELECT_PRUNED_TAIL, SELECT_SINKS, Sealed, SinkCursor, Store,
    Tail, UPSERT_CURSOR, leaf_hashes, now_micros, plan, search_sql, to_db,
};
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::event::{AppendOutcome, AuditEvent, EventId, StoredEvent};
use crate::merkle::Hash;
use crate::query::SearchQuery;

/// Is the advisory lock key that serializes appenders ("audit" in ASCII).
const APPEND_LOCK: i64 = 0x0061_7564_6974;

/// Stores the log in PostgreSQL; the migration's triggers refuse UPDATE, DELETE
/// and TRUNCATE on the audit tables.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` and migrates it.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let options: PgConnectOptions = url.parse().map_err(Error::from_sqlx)?;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(Error::from_sqlx)?;
        sqlx::migrate!("migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Returns the connection pool, for tests that tamper behind the store's back.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PostgresStore {
    async fn append(&self, events: &[AuditEvent]) -> Result<Vec<AppendOutcome>, Error> {
        let leaves = leaf_hashes(events);
        let mut tx = self.pool.begin().await.map_err(Error::from_sqlx)?;
        // One appender at a time across every replica: the lock is released by
        // the commit, so sequence numbers stay gapless and ordered.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(Error::from_sqlx)?;
        let last: Option<(i64, Vec<u8>)> =
            sqlx::query_as("SELECT seq, chain_hash FROM audit_event ORDER BY seq DESC LIMIT 1")
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::from_sqlx)?;
        // Retention may have removed every event: go on from the pruned tail.
        let last = match last {
            Some(last) => Some(last),
            None => sqlx::query_as(SELECT_PRUNED_TAIL)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::from_sqlx)?,
        };
        let mut tail = Tail::from_last(last)?;
        let ids: Vec<&str> = events.iter().map(|event| event.id.as_str()).collect();
        let existing: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(
            "SELECT event_id, seq, canonical_json FROM audit_event WHERE event_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(Error::from_sqlx)?;
        let plan = plan(events, &leaves, &existing, &mut tail);
        if !plan.records.is_empty() {
            let rows = copy_rows(events, &plan.records, now_micros())?;
            insert(&mut tx, rows).await?;
        }
        tx.commit().await.map_err(Error::from_sqlx)?;
        Ok(plan.outcomes)
    }

    async fn head(&self) -> Result<u64, Error> {
        let head: i64 = sqlx::query_scalar(SELECT_HEAD)
            .fetch_one(&self.pool)
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
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from_sqlx)?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    async fn search(&self, query: &SearchQuery) -> Result<Vec<StoredEvent>, Error> {
        let (sql, binds) = search_sql(query);
        let mut statement = sqlx::query_as::<_, EventRow>(AssertSqlSafe(sql));
        for bind in binds {
            statement = match bind {
                Bind::Text(text) => statement.bind(text),
                Bind::Int(int) => statement.bind(int),
            };
        }
        let rows = statement
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from_sqlx)?;
        rows.into_iter().map(StoredEvent::try_from).collect()
    }

    async fn find(&self, id: &EventId) -> Result<Option<StoredEvent>, Error> {
        let sql = format!("SELECT {EVENT_COLUMNS} FROM audit_event WHERE event_id = $1");
        let row: Option<EventRow> = sqlx::query_as(AssertSqlSafe(sql))
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from_sqlx)?;
        row.map(StoredEvent::try_from).transpose()
    }

    async fn leaf_hashes(&self, after: u64, through: u64) -> Result<Vec<Hash>, Error> {
        let rows = sqlx::query(SELECT_LEAF_HASHES)
            .bind(to_db(after))
            .bind(to_db(through))
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from_sqlx)?;
        rows.into_iter()
            .map(|row| super::to_hash(row.get::<Vec<u8>, _>(0), "leaf hash"))
            .collect()
    }

    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), Error> {
        sqlx::query(
            "INSERT INTO audit_checkpoint (tree_size, origin, root_hash, chain_hash, made_at, \
             signed_note) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (tree_size) DO NOTHING",
        )
        .bind(to_db(checkpoint.tree_size))
        .bind(&checkpoint.origin)
        .bind(checkpoint.root_hash.as_slice())
        .bind(checkpoint.chain_hash.as_slice())
        .bind(checkpoint.time_micros)
        .bind(&checkpoint.signed_note)
        .execute(&self.pool)
        .await
        .map_err(Error::from_sqlx)?;
        Ok(())
    }

    async fn checkpoint(&self, tree_size: Option<u64>) -> Result<Option<Checkpoint>, Error> {
        let columns = "tree_size, origin, root_hash, chain_hash, made_at, signed_note";
        let row: Option<CheckpointRow> = match tree_size {
            Some(size) => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {columns} FROM audit_checkpoint WHERE tree_size = $1"
            )))
            .bind(to_db(size)),
            None => sqlx::query_as(AssertSqlSafe(format!(
                "SELECT {columns} FROM audit_checkpoint ORDER BY tree_size DESC LIMIT 1"
            ))),
        }
        .fetch_optional(&self.pool)
        .await
        .map_err(Error::from_sqlx)?;
        row.map(Checkpoint::try_from).transpose()
    }

    async fn sink_cursor(&self, sink: &str) -> Result<SinkCursor, Error> {
        let row: Option<(i64, i64)> = sqlx::query_as(SELECT_CURSOR)
            .bind(sink)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from_sqlx)?;
        super::to_cursor(row)
    }

    async fn set_sink_cursor(&self, sink: &str, cursor: SinkCursor) -> Result<(), Error> {
        sqlx::query(UPSERT_CURSOR)
            .bind(sink)
            .bind(to_db(cursor.delivered))
            .bind(to_db(cursor.anchored))
            .bind(now_micros())
            .execute(&self.pool)
            .await
            .map_err(Error::from_sqlx)?;
        Ok(())
    }

    async fn put_dead_letters(&self, sink: &str, letters: &[DeadLetter]) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(Error::from_sqlx)?;
        for letter in letters {
            sqlx::query(INSERT_DEAD_LETTER)
                .bind(sink)
                .bind(to_db(letter.sequence))
                .bind(&letter.event_id)
                .bind(&letter.reason)
                .bind(letter.failed_at_micros)
                .execute(&mut *tx)
                .await
                .map_err(Error::from_sqlx)?;
        }
        tx.commit().await.map_err(Error::from_sqlx)
    }

    async fn dead_letters(&self, sink: &str) -> Result<Vec<DeadLetter>, Error> {
        let rows: Vec<(i64, String, String, i64)> = sqlx::query_as(SELECT_DEAD_LETTERS)
            .bind(sink)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from_sqlx)?;
        super::to_dead_letters(rows)
    }

    async fn sinks(&self) -> Result<Vec<String>, Error> {
        sqlx::query_scalar(SELECT_SINKS)
            .fetch_all(&self.pool)
            .await
            .map_err(Error::from_sqlx)
    }

    async fn prunable(&self, cutoff_micros: i64, limit: u64) -> Result<Option<u64>, Error> {
        let size: Option<i64> = sqlx::query_scalar(SELECT_PRUNABLE)
            .bind(cutoff_micros)
            .bind(to_db(limit))
            .fetch_one(&self.pool)
            .await
            .map_err(Error::from_sqlx)?;
        size.map(|size| u64::try_from(size).map_err(|_| Error::Corrupt("tree size")))
            .transpose()
    }

    async fn pruned(&self) -> Result<Option<PruneRecord>, Error> {
        let row: Option<PruneRow> = sqlx::query_as(SELECT_PRUNE)
            .fetch_optional(&self.pool)
            .await
            .map_err(Error::from_sqlx)?;
        row.map(PruneRecord::try_from).transpose()
    }

    async fn prune(&self, record: &PruneRecord) -> Result<u64, Error> {
        let mut tx = self.pool.begin().await.map_err(Error::from_sqlx)?;
        // Appends wait: a prune never races a tail read.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(Error::from_sqlx)?;
        sqlx::query(INSERT_PRUNE)
            .bind(to_db(record.through))
            .bind(record.chain_hash.as_slice())
            .bind(record.frontier_bytes())
            .bind(&record.signed_note)
            .bind(&record.archive)
            .bind(record.archive_sha256.as_slice())
            .bind(record.pruned_at_micros)
            .execute(&mut *tx)
            .await
            .map_err(Error::from_sqlx)?;
        let removed = sqlx::query("DELETE FROM audit_event WHERE seq <= $1")
            .bind(to_db(record.through))
            .execute(&mut *tx)
            .await
            .map_err(Error::from_sqlx)?
            .rows_affected();
        tx.commit().await.map_err(Error::from_sqlx)?;
        Ok(removed)
    }
}

/// Copies event rows in, columns in [`super::EVENT_COLUMNS`] order. COPY needs
/// only the INSERT privilege, so the service role stays insert-and-select only.
const COPY_EVENTS: &str = "COPY audit_event (seq, event_id, kind, event_time, recorded_at, \
     member_id, agent_client_id, virtual_server, connector, tool, verdict, outcome, trace_id, \
     canonical_json, leaf_hash, chain_hash) FROM STDIN (FORMAT binary)";

/// Streams rows encoded by [`copy_rows`] into `audit_event`: one round trip and
/// no per-value parameter handling, the fastest way into PostgreSQL.
async fn insert(tx: &mut sqlx::PgConnection, rows: Vec<u8>) -> Result<(), Error> {
    let mut copy = tx
        .copy_in_raw(COPY_EVENTS)
        .await
        .map_err(Error::from_sqlx)?;
    if let Err(error) = copy.send(rows).await {
        // The connection must leave COPY mode before the transaction rolls back.
        let _aborted = copy.abort("audit append failed").await;
        return Err(Error::from_sqlx(error));
    }
    copy.finish().await.map_err(Error::from_sqlx)?;
    Ok(())
}

/// Returns `records` in PostgreSQL's binary COPY format: the signature, then per
/// row a field count and each field as a length and its bytes (big-endian
/// `int8`; `text` as UTF-8 and `bytea` as is), then the trailer.
fn copy_rows(
    events: &[AuditEvent],
    records: &[Sealed],
    recorded_at: i64,
) -> Result<Vec<u8>, Error> {
    const SIGNATURE: &[u8] = b"PGCOPY\n\xff\r\n\0";
    const COLUMNS: i16 = 16;
    let mut out = Vec::with_capacity(64 + records.len() * 1024);
    out.extend_from_slice(SIGNATURE);
    out.extend_from_slice(&0_i32.to_be_bytes()); // flags: no OIDs
    out.extend_from_slice(&0_i32.to_be_bytes()); // header extension length
    for record in records {
        let event = &events[record.index];
        let facets = &event.facets;
        out.extend_from_slice(&COLUMNS.to_be_bytes());
        int8(&mut out, to_db(record.sequence));
        bytes(&mut out, event.id.as_str().as_bytes())?;
        bytes(&mut out, facets.kind.as_bytes())?;
        int8(&mut out, event.time_micros);
        int8(&mut out, recorded_at);
        for text in [
            &facets.member_id,
            &facets.agent_client_id,
            &facets.virtual_server,
            &facets.connector,
            &facets.tool,
            &facets.verdict,
            &facets.outcome,
            &facets.trace_id,
        ] {
            bytes(&mut out, text.as_bytes())?;
        }
        bytes(&mut out, &event.canonical_json)?;
        bytes(&mut out, &record.leaf_hash)?;
        bytes(&mut out, &record.chain_hash)?;
    }
    out.extend_from_slice(&(-1_i16).to_be_bytes());
    Ok(out)
}

fn int8(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&8_i32.to_be_bytes());
    out.extend_from_slice(&value.to_be_bytes());
}

fn bytes(out: &mut Vec<u8>, value: &[u8]) -> Result<(), Error> {
    let length = i32::try_from(value.len()).map_err(|_| Error::InvalidArgument {
        field: "event",
        reason: "a value is larger than 2 GiB",
    })?;
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(value);
    Ok(())
}
