//! The SQLite store: the embedded default, one file in the data directory.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, QueryBuilder, Row as _, Sqlite, SqlitePool};
use tokio::sync::Mutex;

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

mod background;

/// Is the most rows one insert carries (16 columns each, under SQLite's 32,766 bound
/// parameters); a power of two, as every run of [`runs`] is.
const CHUNK: usize = 1024;

/// Finds which stored events have the ids of a batch, given as one JSON array: the same text
/// for every batch, so SQLite parses it once per connection rather than once per batch size.
const SELECT_EXISTING: &str = "SELECT event_id, seq, canonical_json FROM audit_event \
     WHERE event_id IN (SELECT value FROM json_each($1))";

/// Starts an insert of event rows, columns in [`EVENT_COLUMNS`] order. `OR FAIL`
/// rather than the default `ABORT`: a failed insert fails the whole append (its
/// transaction is rolled back), so SQLite need not keep a statement journal to
/// undo just the statement, which for a batch is most of the insert's writes.
const INSERT_EVENTS: &str = "INSERT OR FAIL INTO audit_event (seq, event_id, kind, event_time, \
     recorded_at, member_id, agent_client_id, virtual_server, connector, tool, verdict, outcome, \
     trace_id, canonical_json, leaf_hash, chain_hash) ";

/// Stores the log in a SQLite file (WAL, `synchronous = FULL`: a commit is on disk,
/// so an acknowledged append survives a power loss, not only a crash).
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    // Every write goes through this one connection. SQLite drops a connection's whole page
    // cache when another connection committed since its last transaction, so appends taking
    // turns over the pool's connections each began cold and read the tail and index pages
    // back from the file: 37 `pread`s per append with a pool of four, 12 with the one writer
    // (`strace -c`, `gatehouse up` at C = 1).
    writes: SqlitePool,
    // SQLite has one writer; every write of this process (appends, checkpoints,
    // sink cursors) holds this first, so a sink's cursor update queues behind an
    // append instead of meeting a locked file and sleeping in SQLite's busy handler.
    writer: Mutex<()>,
}

/// How long opening the store waits for another process migrating the same file.
const MIGRATION_PATIENCE: Duration = Duration::from_secs(10);

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            // A checkpoint copies each changed page once however often it changed, so fewer
            // and larger checkpoints write far less; commits still fsync the WAL.
            .pragma("wal_autocheckpoint", "8192")
            .thread_name(background::thread_name);
        Self::with_options(options).await
    }

    /// Connects and migrates, waiting for another process that is doing the same.
    ///
    /// sqlx takes no lock while migrating SQLite, and both its connection set-up (journal
    /// mode) and its migrations read before they write, so a second process opening the file
    /// meanwhile (another replica, the `gatehouse audit` CLI) is told "database is locked" at
    /// once rather than waited for, or finds a migration applied under it. It tries again
    /// until the other is done, within the same patience as the busy timeout.
    async fn with_options(options: SqliteConnectOptions) -> Result<Self, Error> {
        let deadline = tokio::time::Instant::now() + MIGRATION_PATIENCE;
        loop {
            match Self::connect_and_migrate(options.clone()).await {
                Err(error) if tokio::time::Instant::now() < deadline && error.is_contention() => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                opened => return opened,
            }
        }
    }

    async fn connect_and_migrate(options: SqliteConnectOptions) -> Result<Self, Error> {
        let pool = pool_options()
            .max_connections(4)
            .connect_with(options.clone())
            .await
            .map_err(Error::from_sqlx)?;
        sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        // Kept open for good: closing it would drop the cache it is there to keep. Only the
        // writer's cache is large: the index pages of a growing log stay in memory rather than
        // being re-read. A reader's cache is emptied at its next transaction whenever the writer
        // committed meanwhile, so readers keep SQLite's default (2 MiB) instead of 32 MiB each
        // held by their threads' allocator arenas (`bench/notes.md`).
        let writes = pool_options()
            .max_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.pragma("cache_size", "-32768"))
            .await
            .map_err(Error::from_sqlx)?;
        Ok(Self {
            pool,
            writes,
            writer: Mutex::new(()),
        })
    }

    /// Returns the reading connections' pool, for tests that tamper behind the store's back.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn append(&self, events: &[AuditEvent]) -> Result<Vec<AppendOutcome>, Error> {
        let leaves = leaf_hashes(events);
        let _writer = self.writer.lock().await;
        let mut tx = self
            .writes
            .begin_with("BEGIN IMMEDIATE")
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
        let ids = serde_json::Value::from(ids).to_string();
        let existing: Vec<(String, i64, Vec<u8>)> = sqlx::query_as(SELECT_EXISTING)
            .bind(ids)
            .fetch_all(&mut *tx)
            .await
            .map_err(Error::from_sqlx)?;
        let plan = plan(events, &leaves, &existing, &mut tail);
        let recorded_at = now_micros();
        for run in runs(&plan.records) {
            insert(&mut tx, events, run, recorded_at).await?;
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
        let _writer = self.writer.lock().await;
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
        .execute(&self.writes)
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
        let _writer = self.writer.lock().await;
        sqlx::query(UPSERT_CURSOR)
            .bind(sink)
            .bind(to_db(cursor.delivered))
            .bind(to_db(cursor.anchored))
            .bind(now_micros())
            .execute(&self.writes)
            .await
            .map_err(Error::from_sqlx)?;
        Ok(())
    }

    async fn put_dead_letters(&self, sink: &str, letters: &[DeadLetter]) -> Result<(), Error> {
        let _writer = self.writer.lock().await;
        let mut tx = self.writes.begin().await.map_err(Error::from_sqlx)?;
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
        let _writer = self.writer.lock().await;
        let mut tx = self
            .writes
            .begin_with("BEGIN IMMEDIATE")
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

/// Returns the settings both pools share: each new connection brings a thread, and it joins
/// the others behind the data plane.
fn pool_options() -> SqlitePoolOptions {
    SqlitePoolOptions::new().after_connect(|_, _| {
        Box::pin(async {
            background::lower_priority();
            Ok(())
        })
    })
}

/// Splits `items` into runs whose lengths are powers of two, largest first, so that an
/// insert takes one of eleven shapes, each prepared once per connection and then taken from
/// sqlx's statement cache: a statement of a new length costs SQLite a parse of every row's
/// placeholders, which took longer than the insert itself.
fn runs<T>(mut items: &[T]) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        let longest = items.len().min(CHUNK);
        if longest == 0 {
            return None;
        }
        let (run, rest) = items.split_at(1 << longest.ilog2());
        items = rest;
        Some(run)
    })
}

async fn insert(
    tx: &mut sqlx::SqliteConnection,
    events: &[AuditEvent],
    records: &[Sealed],
    recorded_at: i64,
) -> Result<(), Error> {
    let mut query = QueryBuilder::<Sqlite>::new(INSERT_EVENTS);
    query.push_values(records, |mut row, record| {
        let event = &events[record.index];
        let facets = &event.facets;
        row.push_bind(to_db(record.sequence))
            .push_bind(event.id.as_str())
            .push_bind(facets.kind.as_str())
            .push_bind(event.time_micros)
            .push_bind(recorded_at)
            .push_bind(facets.member_id.as_str())
            .push_bind(facets.agent_client_id.as_str())
            .push_bind(facets.virtual_server.as_str())
            .push_bind(facets.connector.as_str())
            .push_bind(facets.tool.as_str())
            .push_bind(facets.verdict.as_str())
            .push_bind(facets.outcome.as_str())
            .push_bind(facets.trace_id.as_str())
            .push_bind(event.canonical_json.as_slice())
            .push_bind(record.leaf_hash.as_slice())
            .push_bind(record.chain_hash.as_slice());
    });
    query
        .build()
        .execute(&mut *tx)
        .await
        .map_err(Error::from_sqlx)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn runs_are_powers_of_two_in_order_and_cover_every_item() {
        for n in [0, 1, 2, 3, 7, 13, 1024, 1025, 3000] {
            let items: Vec<usize> = (0..n).collect();
            let runs: Vec<&[usize]> = super::runs(&items).collect();
            assert!(runs.iter().all(|run| run.len().is_power_of_two()), "{n}");
            assert!(runs.iter().all(|run| run.len() <= super::CHUNK), "{n}");
            assert_eq!(runs.concat(), items, "{n}");
        }
        let lengths: Vec<usize> = super::runs(&[0; 13]).map(<[i32]>::len).collect();
        assert_eq!(lengths, [8, 4, 1]);
    }

    #[tokio::test]
    async fn only_the_writer_keeps_a_large_page_cache() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = super::SqliteStore::open(&dir.path().join("audit.db"))
            .await
            .expect("open");
        let cache_size = |pool: &sqlx::SqlitePool| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, i64>("PRAGMA cache_size")
                    .fetch_one(&pool)
                    .await
                    .expect("cache_size")
            }
        };
        assert_eq!(cache_size(&store.writes).await, -32768, "32 MiB");
        assert_eq!(
            cache_size(&store.pool).await,
            -2000,
            "SQLite's default, 2 MiB"
        );
    }
}
