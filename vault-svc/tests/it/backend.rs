//! The two store backends the conformance suite runs against: a SQLite file in a
//! temporary directory, and a fresh PostgreSQL database per test (dropped after).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use vault_svc::store::{PostgresStore, SqliteStore, Store};

/// Is one store under test.
pub(crate) enum Backend {
    Sqlite {
        store: Arc<SqliteStore>,
        dir: tempfile::TempDir,
    },
    Postgres {
        store: Arc<PostgresStore>,
        admin_url: String,
        database: String,
        dir: tempfile::TempDir,
    },
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

/// Returns a fresh, empty PostgreSQL database URL (and its name), or `None`
/// (printed loudly) without DATABASE_URL. Set but unreachable fails the test.
pub(crate) async fn fresh_database() -> Option<(String, String, String)> {
    let Ok(admin_url) = std::env::var("DATABASE_URL") else {
        eprintln!("SKIPPED: DATABASE_URL is not set; PostgreSQL vault tests did not run");
        return None;
    };
    let database = format!(
        "vault_it_{}_{}",
        std::process::id(),
        DATABASES.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect(&admin_url)
        .await
        .expect("DATABASE_URL is set but PostgreSQL is unreachable");
    for statement in [
        format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"),
        format!("CREATE DATABASE {database}"),
    ] {
        sqlx::raw_sql(AssertSqlSafe(statement))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let (base, _) = admin_url.rsplit_once('/').unwrap();
    let url = format!("{base}/{database}");
    Some((admin_url, database, url))
}

/// Drops a database made by [`fresh_database`].
pub(crate) async fn drop_database(admin_url: &str, database: &str) {
    let mut admin = PgConnection::connect(admin_url).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
}

/// Returns REDIS_URL, or `None` (printed loudly) when unset.
pub(crate) fn redis_url() -> Option<String> {
    match std::env::var("REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("SKIPPED: REDIS_URL is not set; Redis lock tests did not run");
            None
        }
    }
}

/// Deletes every Redis key under `prefix` (the fencing counter has no TTL).
pub(crate) async fn forget_redis_prefix(url: &str, prefix: &str) {
    let mut redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut redis)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut redis)
            .await
            .unwrap();
    }
}

impl Backend {
    pub(crate) async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("vault.db"))
            .await
            .unwrap();
        Self::Sqlite {
            store: Arc::new(store),
            dir,
        }
    }

    pub(crate) async fn postgres() -> Option<Self> {
        let (admin_url, database, url) = fresh_database().await?;
        let store = PostgresStore::connect(&url).await.unwrap();
        Some(Self::Postgres {
            store: Arc::new(store),
            admin_url,
            database,
            dir: tempfile::tempdir().unwrap(),
        })
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite { store, .. } => store.clone(),
            Self::Postgres { store, .. } => store.clone(),
        }
    }

    /// Returns a scratch directory that lives as long as the backend.
    pub(crate) fn dir(&self) -> &std::path::Path {
        match self {
            Self::Sqlite { dir, .. } | Self::Postgres { dir, .. } => dir.path(),
        }
    }

    /// Runs `sql` behind the store's back.
    pub(crate) async fn execute(&self, sql: &str) {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite { store, .. } => {
                sqlx::raw_sql(sql).execute(store.pool()).await.unwrap();
            }
            Self::Postgres { store, .. } => {
                sqlx::raw_sql(sql).execute(store.pool()).await.unwrap();
            }
        }
    }

    /// Drops the per-test PostgreSQL database.
    pub(crate) async fn finish(self) {
        if let Self::Postgres {
            store,
            admin_url,
            database,
            ..
        } = self
        {
            store.pool().close().await;
            drop_database(&admin_url, &database).await;
        }
    }
}

/// Runs each named async test function against SQLite and PostgreSQL.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let backend = $crate::backend::Backend::sqlite().await;
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let Some(backend) = $crate::backend::Backend::postgres().await else {
                        return;
                    };
                    super::$name(&backend).await;
                    backend.finish().await;
                }
            )*
        }
    };
}

pub(crate) use conformance;
