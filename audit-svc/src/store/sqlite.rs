//! The SQLite store: the embedded default, one file in the data directory.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use tokio::sync::Mutex;

use super::writes::Writer;
use super::{
    DeadLetter, PruneRecord, Sealed, SinkCursor, Store, leaf_hashes, now_micros, plan, to_db,
};
use crate::checkpoint::Checkpoint;
use crate::error::Error;
use crate::event::{AppendOutcome, AuditEvent};

mod background;

/// Is the most rows one insert carries (16 columns each, under SQLite's 32,766 bound
/// parameters); a power of two, as every run of [`runs`] is.
const CHUNK: usize = 1024;

/// Finds which stored events have the ids of a batch, given as one JSON array: the same text
/// for every batch, so SQLite parses it once per connection rather than once per batch size.
const SELECT_EXISTING: &str = "SELECT event_id, seq, canonical_json FROM audit_event \
     WHERE event_id IN (SELECT value FROM json_each($1))";

/// Starts an insert of event rows, columns in [`super::EVENT_COLUMNS`] order. `OR FAIL`
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

/// Reads take the reading connections, never the writer's, so a search waits for no append.
impl super::reads::Pooled for SqliteStore {
    type Database = Sqlite;

    fn readers(&self) -> &SqlitePool {
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
        let mut tail = Writer(&mut *tx).tail().await?;
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

    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), Error> {
        let _writer = self.writer.lock().await;
        let mut connection = self.writes.acquire().await.map_err(Error::from_sqlx)?;
        Writer(&mut *connection).put_checkpoint(checkpoint).await
    }

    async fn set_sink_cursor(&self, sink: &str, cursor: SinkCursor) -> Result<(), Error> {
        let _writer = self.writer.lock().await;
        let mut connection = self.writes.acquire().await.map_err(Error::from_sqlx)?;
        Writer(&mut *connection).set_sink_cursor(sink, cursor).await
    }

    async fn put_dead_letters(&self, sink: &str, letters: &[DeadLetter]) -> Result<(), Error> {
        let _writer = self.writer.lock().await;
        let mut tx = self.writes.begin().await.map_err(Error::from_sqlx)?;
        Writer(&mut *tx).put_dead_letters(sink, letters).await?;
        tx.commit().await.map_err(Error::from_sqlx)
    }

    async fn prune(&self, record: &PruneRecord) -> Result<u64, Error> {
        let _writer = self.writer.lock().await;
        let mut tx = self
            .writes
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(Error::from_sqlx)?;
        let removed = Writer(&mut *tx).prune(record).await?.rows_affected();
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
