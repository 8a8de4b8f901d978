//! The SQLite store: the embedded default, one file in the data directory.

use std::path::Path;
use std::str::FromStr as _;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::agent_sql::agent_store;
use super::classify;
use super::directory_sql::directory_store;
use super::sql::sql_store;
use crate::error::Error;

/// Keeps the authorization store in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating when missing) and migrates the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self, Error> {
        let options = SqliteConnectOptions::from_str("sqlite:")
            .map_err(classify)?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .map_err(classify)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(Error::Migrate)?;
        Ok(Self { pool })
    }
}

sql_store!(SqliteStore, sqlx::Sqlite);
agent_store!(SqliteStore, sqlx::Sqlite);
directory_store!(SqliteStore, sqlx::Sqlite);
