//! The agent SQL both backends share, in the dialect `sql.rs` uses; `agent_store!`
//! implements [`AgentStore`](super::AgentStore) for a backend's pool.

use super::agent::{AgentAuthentication, AgentRecord, AgentSecretRecord, RevocationRecord};
use super::agent::{AgentKey, RevocationKind};
use crate::error::Error;

/// Lists an agent row's columns in the order [`agent_record`] reads them.
pub(crate) const AGENT_COLUMNS: &str = "agent_id, client_id, name, description, owner, virtual_servers, scopes, \
     authentication, quotas, created_at, rotated_at, last_used_at, decommissioned_at, managed_by";

/// Is an agent row as selected with [`AGENT_COLUMNS`].
pub(crate) type AgentRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    String,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
);

/// Implements [`AgentStore`](super::AgentStore) for `$store`, whose `pool` field is a pool of `$db`.
macro_rules! agent_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::AgentStore for $store {
            async fn insert_agent(
                &self,
                agent: &$crate::store::AgentRecord,
                secret: Option<&$crate::store::AgentSecretRecord>,
            ) -> Result<(), $crate::error::Error> {
                use $crate::store::agent_sql::{classify_agent, to_text};
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                let (servers, scopes, authentication, quotas) = to_text(agent)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO agents ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    $crate::store::agent_sql::AGENT_COLUMNS
                )))
                .bind(&agent.agent_id)
                .bind(&agent.client_id)
                .bind(&agent.name)
                .bind(&agent.description)
                .bind(&agent.owner)
                .bind(servers)
                .bind(scopes)
                .bind(authentication)
                .bind(quotas)
                .bind(agent.created_at)
                .bind(agent.rotated_at)
                .bind(agent.last_used_at)
                .bind(agent.decommissioned_at)
                .bind(&agent.managed_by)
                .execute(&mut *tx)
                .await
                .map_err(|error| classify_agent(error, &agent.name))?;
                if let Some(secret) = secret {
                    insert_secret_in(&mut tx, secret).await?;
                }
                tx.commit().await.map_err($crate::store::classify)
            }

            async fn update_agent(&self, agent: &$crate::store::AgentRecord) -> Result<(), $crate::error::Error> {
                let (servers, scopes, authentication, quotas) = $crate::store::agent_sql::to_text(agent)?;
                sqlx::query(
                    "UPDATE agents SET description = $2, owner = $3, virtual_servers = $4, scopes = $5, \
                     authentication = $6, quotas = $7, managed_by = $8 WHERE agent_id = $1",
                )
                .bind(&agent.agent_id)
                .bind(&agent.description)
                .bind(&agent.owner)
                .bind(servers)
                .bind(scopes)
                .bind(authentication)
                .bind(quotas)
                .bind(&agent.managed_by)
                .execute(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn agent(
                &self,
                key: $crate::store::AgentKey<'_>,
            ) -> Result<Option<$crate::store::AgentRecord>, $crate::error::Error> {
                let (column, value) = $crate::store::agent_sql::key_column(key);
                let row: Option<$crate::store::agent_sql::AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM agents WHERE {column} = $1",
                    $crate::store::agent_sql::AGENT_COLUMNS
                )))
                .bind(value)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                row.map($crate::store::agent_sql::agent_record).transpose()
            }

            async fn list_agents(
                &self,
                query: &$crate::store::AgentListQuery,
            ) -> Result<Vec<$crate::store::AgentRecord>, $crate::error::Error> {
                let rows: Vec<$crate::store::agent_sql::AgentRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM agents WHERE ($1 IS NULL OR owner = $1) \
                     AND ($2 OR decommissioned_at IS NULL) \
                     ORDER BY created_at DESC, agent_id DESC LIMIT $3 OFFSET $4",
                    $crate::store::agent_sql::AGENT_COLUMNS
                )))
                .bind(query.owner.as_deref())
                .bind(query.include_decommissioned)
                .bind(i64::from(query.limit))
                .bind(i64::from(query.offset))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                rows.into_iter().map($crate::store::agent_sql::agent_record).collect()
            }

            async fn live_agent_secrets(
                &self,
                agent_id: &str,
                now: i64,
            ) -> Result<Vec<$crate::store::AgentSecretRecord>, $crate::error::Error> {
                let rows: Vec<(String, String, Vec<u8>, i64, Option<i64>)> = sqlx::query_as(
                    "SELECT secret_id, agent_id, secret_hash, created_at, expires_at FROM agent_secrets \
                     WHERE agent_id = $1 AND (expires_at IS NULL OR expires_at > $2) ORDER BY created_at DESC",
                )
                .bind(agent_id)
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(rows.into_iter().map($crate::store::agent_sql::secret_record).collect())
            }

            async fn rotate_agent_secret(
                &self,
                secret: &$crate::store::AgentSecretRecord,
                previous_until: i64,
                now: i64,
            ) -> Result<bool, $crate::error::Error> {
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                // The write comes first so that concurrent rotations serialize on the agent row.
                let live = sqlx::query("UPDATE agents SET rotated_at = $2 WHERE agent_id = $1 AND decommissioned_at IS NULL")
                    .bind(&secret.agent_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?
                    .rows_affected();
                if live == 0 {
                    return Ok(false);
                }
                // At most two live secrets: one already in its overlap stops now.
                sqlx::query("UPDATE agent_secrets SET expires_at = $2 WHERE agent_id = $1 AND expires_at > $2")
                    .bind(&secret.agent_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                sqlx::query("UPDATE agent_secrets SET expires_at = $2 WHERE agent_id = $1 AND expires_at IS NULL")
                    .bind(&secret.agent_id)
                    .bind(previous_until)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                insert_secret_in(&mut tx, secret).await?;
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(true)
            }

            async fn replace_agent_secrets(
                &self,
                secret: &$crate::store::AgentSecretRecord,
            ) -> Result<(), $crate::error::Error> {
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                sqlx::query("DELETE FROM agent_secrets WHERE agent_id = $1")
                    .bind(&secret.agent_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                insert_secret_in(&mut tx, secret).await?;
                tx.commit().await.map_err($crate::store::classify)
            }

            async fn decommission_agent(
                &self,
                agent_id: &str,
                now: i64,
                tokens_expire_by: i64,
            ) -> Result<bool, $crate::error::Error> {
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                let changed = sqlx::query(
                    "UPDATE agents SET decommissioned_at = $2 WHERE agent_id = $1 AND decommissioned_at IS NULL",
                )
                .bind(agent_id)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::classify)?
                .rows_affected();
                if changed == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM agent_secrets WHERE agent_id = $1")
                    .bind(agent_id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                sqlx::query(
                    "INSERT INTO revocation_log (kind, subject, revoked_at, expires_at) \
                     SELECT $1, client_id, $3, $4 FROM agents WHERE agent_id = $2",
                )
                .bind($crate::store::RevocationKind::Agent.as_str())
                .bind(agent_id)
                .bind(now)
                .bind(tokens_expire_by)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::classify)?;
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(true)
            }

            async fn touch_agent(&self, agent_id: &str, now: i64, stale_before: i64) -> Result<(), $crate::error::Error> {
                sqlx::query(
                    "UPDATE agents SET last_used_at = $2 WHERE agent_id = $1 \
                     AND (last_used_at IS NULL OR last_used_at < $3)",
                )
                .bind(agent_id)
                .bind(now)
                .bind(stale_before)
                .execute(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn remember_assertion(
                &self,
                issuer: &str,
                jti: &str,
                expires_at: i64,
                now: i64,
            ) -> Result<bool, $crate::error::Error> {
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                // An expired entry can no longer be replayed (its assertion is refused as
                // expired), so it is dropped rather than kept forever.
                sqlx::query("DELETE FROM assertion_jtis WHERE issuer = $1 AND jti = $2 AND expires_at <= $3")
                    .bind(issuer)
                    .bind(jti)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                let inserted = sqlx::query(
                    "INSERT INTO assertion_jtis (issuer, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(issuer)
                .bind(jti)
                .bind(expires_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::classify)?
                .rows_affected();
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(inserted == 1)
            }

            async fn log_revocation(
                &self,
                kind: $crate::store::RevocationKind,
                subject: &str,
                revoked_at: i64,
                expires_at: i64,
            ) -> Result<(), $crate::error::Error> {
                sqlx::query("INSERT INTO revocation_log (kind, subject, revoked_at, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind(kind.as_str())
                    .bind(subject)
                    .bind(revoked_at)
                    .bind(expires_at)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn revocations_after(
                &self,
                seq: i64,
                now: i64,
                limit: u32,
            ) -> Result<Vec<$crate::store::RevocationRecord>, $crate::error::Error> {
                let rows: Vec<(i64, String, String, i64, i64)> = sqlx::query_as(
                    "SELECT seq, kind, subject, revoked_at, expires_at FROM revocation_log \
                     WHERE seq > $1 AND expires_at > $2 ORDER BY seq LIMIT $3",
                )
                .bind(seq)
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                rows.into_iter().map($crate::store::agent_sql::revocation_record).collect()
            }

            async fn enqueue_audit(&self, event: &[u8]) -> Result<(), $crate::error::Error> {
                sqlx::query("INSERT INTO audit_outbox (event) VALUES ($1)")
                    .bind(event)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn queued_audit(
                &self,
                limit: u32,
            ) -> Result<Vec<(i64, Vec<u8>)>, $crate::error::Error> {
                sqlx::query_as("SELECT seq, event FROM audit_outbox ORDER BY seq LIMIT $1")
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::store::classify)
            }

            async fn dequeue_audit(&self, through: i64) -> Result<(), $crate::error::Error> {
                sqlx::query("DELETE FROM audit_outbox WHERE seq <= $1")
                    .bind(through)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn revocation_head(&self) -> Result<i64, $crate::error::Error> {
                let (head,): (Option<i64>,) = sqlx::query_as("SELECT MAX(seq) FROM revocation_log")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::classify)?;
                Ok(head.unwrap_or(0))
            }
        }

        async fn insert_secret_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            secret: &$crate::store::AgentSecretRecord,
        ) -> Result<(), $crate::error::Error> {
            sqlx::query(
                "INSERT INTO agent_secrets (secret_id, agent_id, secret_hash, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(&secret.secret_id)
            .bind(&secret.agent_id)
            .bind(&secret.secret_hash)
            .bind(secret.created_at)
            .bind(secret.expires_at)
            .execute(&mut **tx)
            .await
            .map_err($crate::store::classify)?;
            Ok(())
        }
    };
}

pub(crate) use agent_store;

/// Returns the list, authentication and quota columns of `agent` as stored text.
pub(crate) fn to_text(agent: &AgentRecord) -> Result<(String, String, String, String), Error> {
    let authentication = serde_json::to_string(&agent.authentication)
        .map_err(|_| Error::Corrupt("agent authentication"))?;
    Ok((
        super::sql::to_json(&agent.virtual_servers),
        super::sql::to_json(&agent.scopes),
        authentication,
        agent.quotas.to_string(),
    ))
}

/// Returns the column and value a lookup by `key` compares.
pub(crate) fn key_column(key: AgentKey<'_>) -> (&'static str, &str) {
    match key {
        AgentKey::Id(id) => ("agent_id", id),
        AgentKey::ClientId(id) => ("client_id", id),
        AgentKey::Name(name) => ("name", name),
    }
}

/// Classifies a failed agent insert: a taken name or client id is the caller's to fix.
pub(crate) fn classify_agent(error: sqlx::Error, name: &str) -> Error {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            Error::AgentExists(name.to_owned())
        }
        _ => Error::Store(error),
    }
}

pub(crate) fn agent_record(row: AgentRow) -> Result<AgentRecord, Error> {
    let (
        agent_id,
        client_id,
        name,
        description,
        owner,
        virtual_servers,
        scopes,
        authentication,
        quotas,
        created_at,
        rotated_at,
        last_used_at,
        decommissioned_at,
        managed_by,
    ) = row;
    let authentication: AgentAuthentication = serde_json::from_str(&authentication)
        .map_err(|_| Error::Corrupt("agent authentication"))?;
    Ok(AgentRecord {
        agent_id,
        client_id,
        name,
        description,
        owner,
        virtual_servers: super::sql::from_json(&virtual_servers)?,
        scopes: super::sql::from_json(&scopes)?,
        authentication,
        quotas: serde_json::from_str(&quotas).map_err(|_| Error::Corrupt("agent quotas"))?,
        created_at,
        rotated_at,
        last_used_at,
        decommissioned_at,
        managed_by,
    })
}

pub(crate) fn secret_record(row: (String, String, Vec<u8>, i64, Option<i64>)) -> AgentSecretRecord {
    let (secret_id, agent_id, secret_hash, created_at, expires_at) = row;
    AgentSecretRecord {
        secret_id,
        agent_id,
        secret_hash,
        created_at,
        expires_at,
    }
}

pub(crate) fn revocation_record(
    row: (i64, String, String, i64, i64),
) -> Result<RevocationRecord, Error> {
    let (seq, kind, subject, revoked_at, expires_at) = row;
    Ok(RevocationRecord {
        seq,
        kind: RevocationKind::parse(&kind)?,
        subject,
        revoked_at,
        expires_at,
    })
}
