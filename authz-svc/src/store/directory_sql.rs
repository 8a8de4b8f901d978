//! The directory SQL both backends share, in the dialect `sql.rs` uses; `directory_store!`
//! implements [`DirectoryStore`](super::DirectoryStore) for a backend's pool.

use super::directory::{DirectoryFilter, DirectoryUser};
use crate::error::Error;

/// Lists a user row's columns in the order [`user_record`] reads them.
pub(crate) const USER_COLUMNS: &str = "user_id, user_name, external_id, display_name, active, \
     password_hash, attributes, version, created_at, updated_at";

/// Lists a group row's columns in the order [`GroupRow`] holds them.
pub(crate) const GROUP_COLUMNS: &str =
    "group_id, display_name, external_id, version, created_at, updated_at";

/// Is a user row as selected with [`USER_COLUMNS`].
pub(crate) type UserRow = (
    String,
    String,
    Option<String>,
    Option<String>,
    bool,
    Option<String>,
    String,
    i64,
    i64,
    i64,
);

/// Is a group row as selected with [`GROUP_COLUMNS`].
pub(crate) type GroupRow = (String, String, Option<String>, i64, i64, i64);

/// Implements [`DirectoryStore`](super::DirectoryStore) for `$store`, whose `pool` field is a pool of `$db`.
macro_rules! directory_store {
    ($store:ty, $db:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::DirectoryStore for $store {
            async fn insert_user(&self, user: &$crate::store::DirectoryUser) -> Result<(), $crate::error::Error> {
                use $crate::store::directory_sql::{bump_revision, classify_directory};
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO directory_users ({}, user_name_key) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
                    $crate::store::directory_sql::USER_COLUMNS
                )))
                .bind(&user.id)
                .bind(&user.user_name)
                .bind(&user.external_id)
                .bind(&user.display_name)
                .bind(user.active)
                .bind(&user.password_hash)
                .bind(user.attributes.to_string())
                .bind(user.version)
                .bind(user.created_at)
                .bind(user.updated_at)
                .bind(user.user_name.to_lowercase())
                .execute(&mut *tx)
                .await
                .map_err(|error| classify_directory(error, "userName"))?;
                bump_revision!(tx);
                tx.commit().await.map_err($crate::store::classify)
            }

            async fn user(&self, id: &str) -> Result<Option<$crate::store::DirectoryUser>, $crate::error::Error> {
                let row: Option<$crate::store::directory_sql::UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM directory_users WHERE user_id = $1",
                    $crate::store::directory_sql::USER_COLUMNS
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                row.map($crate::store::directory_sql::user_record).transpose()
            }

            async fn user_by_name(&self, user_name: &str) -> Result<Option<$crate::store::DirectoryUser>, $crate::error::Error> {
                let row: Option<$crate::store::directory_sql::UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM directory_users WHERE user_name_key = $1",
                    $crate::store::directory_sql::USER_COLUMNS
                )))
                .bind(user_name.to_lowercase())
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                row.map($crate::store::directory_sql::user_record).transpose()
            }

            async fn update_user(
                &self,
                user: &$crate::store::DirectoryUser,
                expected_version: i64,
            ) -> Result<bool, $crate::error::Error> {
                use $crate::store::directory_sql::{bump_revision, classify_directory};
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                let changed = sqlx::query(
                    "UPDATE directory_users SET user_name = $2, user_name_key = $3, external_id = $4, \
                     display_name = $5, active = $6, password_hash = $7, attributes = $8, version = $9, \
                     updated_at = $10 WHERE user_id = $1 AND version = $11",
                )
                .bind(&user.id)
                .bind(&user.user_name)
                .bind(user.user_name.to_lowercase())
                .bind(&user.external_id)
                .bind(&user.display_name)
                .bind(user.active)
                .bind(&user.password_hash)
                .bind(user.attributes.to_string())
                .bind(user.version)
                .bind(user.updated_at)
                .bind(expected_version)
                .execute(&mut *tx)
                .await
                .map_err(|error| classify_directory(error, "userName"))?
                .rows_affected();
                if changed == 0 {
                    return Ok(false);
                }
                bump_revision!(tx);
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(true)
            }

            async fn delete_user(&self, id: &str) -> Result<bool, $crate::error::Error> {
                use $crate::store::directory_sql::bump_revision;
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                sqlx::query("DELETE FROM directory_memberships WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                let deleted = sqlx::query("DELETE FROM directory_users WHERE user_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?
                    .rows_affected();
                bump_revision!(tx);
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(deleted > 0)
            }

            async fn list_users(
                &self,
                filter: &$crate::store::DirectoryFilter,
                offset: u64,
                limit: u64,
            ) -> Result<$crate::store::DirectoryPage<$crate::store::DirectoryUser>, $crate::error::Error> {
                let (condition, value) = $crate::store::directory_sql::user_condition(filter);
                let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM directory_users WHERE {condition}"
                )))
                .bind(value.clone())
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                let rows: Vec<$crate::store::directory_sql::UserRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM directory_users WHERE {condition} \
                     ORDER BY created_at, user_id LIMIT $2 OFFSET $3",
                    $crate::store::directory_sql::USER_COLUMNS
                )))
                .bind(value)
                .bind($crate::store::directory_sql::to_i64(limit))
                .bind($crate::store::directory_sql::to_i64(offset))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok($crate::store::DirectoryPage {
                    items: rows
                        .into_iter()
                        .map($crate::store::directory_sql::user_record)
                        .collect::<Result<_, _>>()?,
                    total: u64::try_from(total).unwrap_or(0),
                })
            }

            async fn user_groups(&self, id: &str) -> Result<Vec<(String, String)>, $crate::error::Error> {
                sqlx::query_as(
                    "SELECT g.group_id, g.display_name FROM directory_memberships m \
                     JOIN directory_groups g ON g.group_id = m.group_id WHERE m.user_id = $1 \
                     ORDER BY g.display_name",
                )
                .bind(id)
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::classify)
            }

            async fn insert_group(&self, group: &$crate::store::DirectoryGroup) -> Result<(), $crate::error::Error> {
                use $crate::store::directory_sql::{bump_revision, classify_directory};
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "INSERT INTO directory_groups ({}) VALUES ($1, $2, $3, $4, $5, $6)",
                    $crate::store::directory_sql::GROUP_COLUMNS
                )))
                .bind(&group.id)
                .bind(&group.display_name)
                .bind(&group.external_id)
                .bind(group.version)
                .bind(group.created_at)
                .bind(group.updated_at)
                .execute(&mut *tx)
                .await
                .map_err(|error| classify_directory(error, "displayName"))?;
                insert_members_in(&mut tx, group).await?;
                bump_revision!(tx);
                tx.commit().await.map_err($crate::store::classify)
            }

            async fn group(&self, id: &str) -> Result<Option<$crate::store::DirectoryGroup>, $crate::error::Error> {
                let row: Option<$crate::store::directory_sql::GroupRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM directory_groups WHERE group_id = $1",
                    $crate::store::directory_sql::GROUP_COLUMNS
                )))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                match row {
                    Some(row) => Ok(Some(group_with_members(&self.pool, row).await?)),
                    None => Ok(None),
                }
            }

            async fn update_group(
                &self,
                group: &$crate::store::DirectoryGroup,
                expected_version: i64,
            ) -> Result<bool, $crate::error::Error> {
                use $crate::store::directory_sql::{bump_revision, classify_directory};
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                let changed = sqlx::query(
                    "UPDATE directory_groups SET display_name = $2, external_id = $3, version = $4, \
                     updated_at = $5 WHERE group_id = $1 AND version = $6",
                )
                .bind(&group.id)
                .bind(&group.display_name)
                .bind(&group.external_id)
                .bind(group.version)
                .bind(group.updated_at)
                .bind(expected_version)
                .execute(&mut *tx)
                .await
                .map_err(|error| classify_directory(error, "displayName"))?
                .rows_affected();
                if changed == 0 {
                    return Ok(false);
                }
                sqlx::query("DELETE FROM directory_memberships WHERE group_id = $1")
                    .bind(&group.id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                insert_members_in(&mut tx, group).await?;
                bump_revision!(tx);
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(true)
            }

            async fn delete_group(&self, id: &str) -> Result<bool, $crate::error::Error> {
                use $crate::store::directory_sql::bump_revision;
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                sqlx::query("DELETE FROM directory_memberships WHERE group_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                let deleted = sqlx::query("DELETE FROM directory_groups WHERE group_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?
                    .rows_affected();
                bump_revision!(tx);
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(deleted > 0)
            }

            async fn list_groups(
                &self,
                filter: &$crate::store::DirectoryFilter,
                offset: u64,
                limit: u64,
            ) -> Result<$crate::store::DirectoryPage<$crate::store::DirectoryGroup>, $crate::error::Error> {
                let (condition, value) = $crate::store::directory_sql::group_condition(filter);
                let (total,): (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT COUNT(*) FROM directory_groups WHERE {condition}"
                )))
                .bind(value.clone())
                .fetch_one(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                let rows: Vec<$crate::store::directory_sql::GroupRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {} FROM directory_groups WHERE {condition} \
                     ORDER BY created_at, group_id LIMIT $2 OFFSET $3",
                    $crate::store::directory_sql::GROUP_COLUMNS
                )))
                .bind(value)
                .bind($crate::store::directory_sql::to_i64(limit))
                .bind($crate::store::directory_sql::to_i64(offset))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                let mut items = Vec::with_capacity(rows.len());
                for row in rows {
                    items.push(group_with_members(&self.pool, row).await?);
                }
                Ok($crate::store::DirectoryPage {
                    items,
                    total: u64::try_from(total).unwrap_or(0),
                })
            }

            async fn member_states(&self) -> Result<Vec<$crate::store::MemberState>, $crate::error::Error> {
                let rows: Vec<(String, bool, Option<String>)> = sqlx::query_as(
                    "SELECT u.user_id, u.active, g.display_name FROM directory_users u \
                     LEFT JOIN directory_memberships m ON m.user_id = u.user_id \
                     LEFT JOIN directory_groups g ON g.group_id = m.group_id \
                     ORDER BY u.user_id, g.display_name",
                )
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok($crate::store::directory_sql::member_states(rows))
            }

            async fn directory_revision(&self) -> Result<i64, $crate::error::Error> {
                let (revision,): (i64,) = sqlx::query_as("SELECT revision FROM directory_revision WHERE id = 1")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::classify)?;
                Ok(revision)
            }

            async fn revoke_member(&self, id: &str, revoked_at: i64, expires_at: i64) -> Result<(), $crate::error::Error> {
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                sqlx::query(
                    "UPDATE refresh_tokens SET used = TRUE WHERE used = FALSE AND family_id IN \
                     (SELECT family_id FROM grant_families WHERE subject = $1)",
                )
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::classify)?;
                sqlx::query("UPDATE grant_families SET revoked = TRUE WHERE subject = $1 AND revoked = FALSE")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                sqlx::query("INSERT INTO revocation_log (kind, subject, revoked_at, expires_at) VALUES ($1, $2, $3, $4)")
                    .bind($crate::store::RevocationKind::Member.as_str())
                    .bind(id)
                    .bind(revoked_at)
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                tx.commit().await.map_err($crate::store::classify)
            }
        }

        async fn insert_members_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            group: &$crate::store::DirectoryGroup,
        ) -> Result<(), $crate::error::Error> {
            for member in &group.members {
                sqlx::query("INSERT INTO directory_memberships (group_id, user_id) VALUES ($1, $2)")
                    .bind(&group.id)
                    .bind(member)
                    .execute(&mut **tx)
                    .await
                    .map_err(|error| $crate::store::directory_sql::classify_member(error, member))?;
            }
            Ok(())
        }

        async fn group_with_members(
            pool: &sqlx::Pool<$db>,
            row: $crate::store::directory_sql::GroupRow,
        ) -> Result<$crate::store::DirectoryGroup, $crate::error::Error> {
            let members: Vec<(String,)> = sqlx::query_as(
                "SELECT user_id FROM directory_memberships WHERE group_id = $1 ORDER BY user_id",
            )
            .bind(&row.0)
            .fetch_all(pool)
            .await
            .map_err($crate::store::classify)?;
            let (id, display_name, external_id, version, created_at, updated_at) = row;
            Ok($crate::store::DirectoryGroup {
                id,
                display_name,
                external_id,
                members: members.into_iter().map(|(member,)| member).collect(),
                version,
                created_at,
                updated_at,
            })
        }
    };
}

/// Moves the directory revision inside the transaction `$tx`.
macro_rules! bump_revision {
    ($tx:ident) => {
        sqlx::query("UPDATE directory_revision SET revision = revision + 1 WHERE id = 1")
            .execute(&mut *$tx)
            .await
            .map_err($crate::store::classify)?;
    };
}

pub(crate) use bump_revision;
pub(crate) use directory_store;

/// Returns the `WHERE` condition on users for `filter` and the value it binds as `$1`.
pub(crate) fn user_condition(filter: &DirectoryFilter) -> (&'static str, Option<String>) {
    match filter {
        DirectoryFilter::All => ("($1 IS NULL)", None),
        DirectoryFilter::UserName(name) => ("user_name_key = $1", Some(name.to_lowercase())),
        DirectoryFilter::ExternalId(id) => ("external_id = $1", Some(id.clone())),
        DirectoryFilter::DisplayName(name) => {
            ("LOWER(display_name) = $1", Some(name.to_lowercase()))
        }
    }
}

/// Returns the `WHERE` condition on groups for `filter` and the value it binds as `$1`;
/// groups have no `userName`, so that filter matches none.
pub(crate) fn group_condition(filter: &DirectoryFilter) -> (&'static str, Option<String>) {
    match filter {
        DirectoryFilter::All => ("($1 IS NULL)", None),
        DirectoryFilter::UserName(_) => ("($1 IS NULL AND 1 = 0)", None),
        DirectoryFilter::ExternalId(id) => ("external_id = $1", Some(id.clone())),
        DirectoryFilter::DisplayName(name) => {
            ("LOWER(display_name) = $1", Some(name.to_lowercase()))
        }
    }
}

/// Returns `value` as a SQL integer, saturating.
pub(crate) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Classifies a failed user or group write: a taken unique `attribute` is the client's to fix.
pub(crate) fn classify_directory(error: sqlx::Error, attribute: &'static str) -> Error {
    match &error {
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            Error::DirectoryConflict(attribute)
        }
        _ => Error::Store(error),
    }
}

/// Classifies a failed membership insert: a member that is no user is the client's to fix.
pub(crate) fn classify_member(error: sqlx::Error, member: &str) -> Error {
    match &error {
        sqlx::Error::Database(database) if database.is_foreign_key_violation() => {
            Error::DirectoryReference(member.to_owned())
        }
        sqlx::Error::Database(database) if database.is_unique_violation() => {
            Error::DirectoryReference(member.to_owned())
        }
        _ => Error::Store(error),
    }
}

pub(crate) fn user_record(row: UserRow) -> Result<DirectoryUser, Error> {
    let (
        id,
        user_name,
        external_id,
        display_name,
        active,
        password_hash,
        attributes,
        version,
        created_at,
        updated_at,
    ) = row;
    Ok(DirectoryUser {
        id,
        user_name,
        external_id,
        display_name,
        active,
        password_hash,
        attributes: serde_json::from_str(&attributes)
            .map_err(|_| Error::Corrupt("directory user attributes"))?,
        version,
        created_at,
        updated_at,
    })
}

/// Folds `(user, active, group)` rows, ordered by user, into one state per user.
pub(crate) fn member_states(
    rows: Vec<(String, bool, Option<String>)>,
) -> Vec<super::directory::MemberState> {
    let mut states: Vec<super::directory::MemberState> = Vec::new();
    for (id, active, group) in rows {
        match states.last_mut() {
            Some(last) if last.id == id => last.groups.extend(group),
            _ => states.push(super::directory::MemberState {
                id,
                active,
                groups: group.into_iter().collect(),
            }),
        }
    }
    states
}
