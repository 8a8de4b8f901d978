//! The PostgreSQL store: the scale-out deployment's system of record.

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres};

use super::writes::Writer;
use super::{
    DeadLetter, PruneRecord, Sealed, SinkCursor, Store, leaf_hashes, now_micros, plan, to_db,
};
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::event::{AppendOutcome, AuditEvent};

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

/// Reads go through the same pool as appends: PostgreSQL keeps no per-connection cache to protect.
impl super::reads::Pooled for PostgresStore {
    type Database = Postgres;

    fn readers(&self) -> &PgPool {
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
        let mut tail = Writer(&mut *tx).tail().await?;
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

    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), Error> {
        let mut connection = self.pool.acquire().await.map_err(Error::from_sqlx)?;
        Writer(&mut *connection).put_checkpoint(checkpoint).await
    }

    async fn set_sink_cursor(&self, sink: &str, cursor: SinkCursor) -> Result<(), Error> {
        let mut connection = self.pool.acquire().await.map_err(Error::from_sqlx)?;
        Writer(&mut *connection).set_sink_cursor(sink, cursor).await
    }

    async fn put_dead_letters(&self, sink: &str, letters: &[DeadLetter]) -> Result<(), Error> {
        let mut tx = self.pool.begin().await.map_err(Error::from_sqlx)?;
        Writer(&mut *tx).put_dead_letters(sink, letters).await?;
        tx.commit().await.map_err(Error::from_sqlx)
    }

    async fn prune(&self, record: &PruneRecord) -> Result<u64, Error> {
        let mut tx = self.pool.begin().await.map_err(Error::from_sqlx)?;
        // Appends wait: a prune never races a tail read.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(APPEND_LOCK)
            .execute(&mut *tx)
            .await
            .map_err(Error::from_sqlx)?;
        let removed = Writer(&mut *tx).prune(record).await?.rows_affected();
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
