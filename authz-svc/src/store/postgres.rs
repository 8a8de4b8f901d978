//! The PostgreSQL store: the scale-out deployment, shared by every replica.

use secrecy::{ExposeSecret as _, SecretString};
use sqlx::postgres::{PgPool, PgPoolOptions};

use super::agent_sql::agent_store;
use super::classify;
use super::directory_sql::directory_store;
use super::sql::sql_store;
use crate::error::Error;

/// Keeps the authorization store in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` and migrates it.
    pub async fn open(url: &SecretString) -> Result<Self, Error> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect(url.expose_secret())
            .await
            .map_err(classify)?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(Error::Migrate)?;
        Ok(Self { pool })
    }
}

sql_store!(PostgresStore, sqlx::Postgres);
agent_store!(PostgresStore, sqlx::Postgres);
directory_store!(PostgresStore, sqlx::Postgres);
