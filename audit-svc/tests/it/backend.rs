//! The two store backends the conformance suite runs against: a SQLite file in a
//! temporary directory, and a fresh PostgreSQL database per test (dropped after).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use audit_svc::{AuditEvent, PostgresStore, SqliteStore, Store};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection as _, PgConnection};

/// Is one store under test, with what it takes to tamper with it directly.
pub(crate) enum Backend {
    Sqlite {
        store: Arc<SqliteStore>,
        _dir: tempfile::TempDir,
    },
    Postgres {
        store: Arc<PostgresStore>,
        admin_url: String,
        database: String,
    },
}

static DATABASES: AtomicU32 = AtomicU32::new(0);

impl Backend {
    pub(crate) async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("audit.db"))
            .await
            .unwrap();
        Self::Sqlite {
            store: Arc::new(store),
            _dir: dir,
        }
    }

    /// Returns a fresh database, or `None` (printed loudly) without DATABASE_URL.
    pub(crate) async fn postgres() -> Option<Self> {
        let Ok(admin_url) = std::env::var("DATABASE_URL") else {
            eprintln!("SKIPPED: DATABASE_URL is not set; PostgreSQL store tests did not run");
            return None;
        };
        let database = format!(
            "audit_it_{}_{}",
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
        let store = PostgresStore::connect(&format!("{base}/{database}"))
            .await
            .unwrap();
        Some(Self::Postgres {
            store: Arc::new(store),
            admin_url,
            database,
        })
    }

    pub(crate) fn store(&self) -> Arc<dyn Store> {
        match self {
            Self::Sqlite { store, .. } => store.clone(),
            Self::Postgres { store, .. } => store.clone(),
        }
    }

    /// Runs `sql` as the database owner would: through the store's own
    /// connections, triggers left in place.
    pub(crate) async fn execute(&self, sql: &str) -> Result<(), sqlx::Error> {
        let sql = AssertSqlSafe(sql.to_owned());
        match self {
            Self::Sqlite { store, .. } => {
                sqlx::raw_sql(sql).execute(store.pool()).await.map(|_| ())
            }
            Self::Postgres { store, .. } => {
                sqlx::raw_sql(sql).execute(store.pool()).await.map(|_| ())
            }
        }
    }

    /// Runs `sql` behind the service's back, getting past the append-only
    /// triggers: on SQLite by dropping them (file access), on PostgreSQL as the
    /// superuser with triggers disabled for the session.
    pub(crate) async fn tamper(&self, sql: &str) {
        let statements = match self {
            Self::Sqlite { .. } => format!(
                "DROP TRIGGER IF EXISTS audit_event_no_update; \
                 DROP TRIGGER IF EXISTS audit_event_no_delete; {sql}"
            ),
            Self::Postgres { .. } => format!(
                "SET session_replication_role = replica; {sql}; \
                 SET session_replication_role = DEFAULT"
            ),
        };
        match self {
            Self::Sqlite { store, .. } => {
                let mut connection = store.pool().acquire().await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(statements))
                    .execute(&mut *connection)
                    .await
                    .unwrap();
            }
            Self::Postgres { store, .. } => {
                let mut connection = store.pool().acquire().await.unwrap();
                sqlx::raw_sql(AssertSqlSafe(statements))
                    .execute(&mut *connection)
                    .await
                    .unwrap();
            }
        }
    }

    /// Returns a SQL literal of `bytes` in the backend's dialect.
    pub(crate) fn blob(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        match self {
            Self::Sqlite { .. } => format!("X'{hex}'"),
            Self::Postgres { .. } => format!("'\\x{hex}'::bytea"),
        }
    }

    pub(crate) fn is_postgres(&self) -> bool {
        matches!(self, Self::Postgres { .. })
    }

    /// Drops the per-test PostgreSQL database.
    pub(crate) async fn finish(self) {
        if let Self::Postgres {
            store,
            admin_url,
            database,
        } = self
        {
            store.pool().close().await;
            let mut admin = PgConnection::connect(&admin_url).await.unwrap();
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
            )))
            .execute(&mut admin)
            .await
            .unwrap();
        }
    }
}

/// Returns an MCP-request event with the given facets.
pub(crate) fn event(id: &str, member: &str, tool: &str, verdict: &str, minute: u32) -> AuditEvent {
    AuditEvent::from_document(&json!({
        "eventId": id,
        "kind": "EVENT_KIND_MCP_REQUEST",
        "time": format!("2026-11-22T03:{minute:02}:00Z"),
        "principal": {"member": {"id": member}, "agent": {"clientId": format!("agent-{member}")}},
        "target": {"virtualServer": "demo", "connector": "echo", "tool": {"name": tool}},
        "decision": {"verdict": verdict},
        "outcome": if verdict == "VERDICT_ALLOW" { "OUTCOME_SUCCESS" } else { "OUTCOME_DENIED" },
        "metadata": {"traceId": format!("trace-{id}")},
    }))
    .unwrap()
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
