//! The PostgreSQL store: the scale-out deployment's system of record, shared by
//! every replica.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

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

/// Stores credentials in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database at `url` and migrates it (sqlx holds an advisory
    /// lock while migrating, so replicas starting together are safe).
    pub async fn connect(url: &str) -> Result<Self, Error> {
        let options: PgConnectOptions = url.parse().map_err(Error::from_sqlx)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
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

sql_store!(PostgresStore);
