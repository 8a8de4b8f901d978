//! The SQLite store: the embedded default, one file in the data directory.

use std::path::Path;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{
    ConsentRecord, ConsentRow, FetchRow, ListQuery, RotationRow, Row, principal_ids, status_filter,
    to_db,
};
use crate::credential::{
    CredentialKey, CredentialRecord, CredentialUpdate, NewCredential, now_micros, random_id,
};
use crate::crypto::Envelope;
use crate::error::Error;
use crate::secret::Owner;
use crate::secret_rotation::{RotatedSecret, RotationRecord, RotationUpdate};

/// Stores credentials in a SQLite file (WAL, `synchronous = FULL`).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(Error::from_sqlx)?;
        let migrator = sqlx::migrate!("migrations/sqlite");
        // sqlx takes no lock while migrating SQLite, so two processes starting on
        // a fresh file can both try to apply a migration; the loser's retry finds
        // it applied.
        if migrator.run(&pool).await.is_err() {
            migrator.run(&pool).await?;
        }
        Ok(Self { pool })
    }

    /// Returns the connection pool, for tests that tamper behind the store's back.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

sql_store!(SqliteStore);
