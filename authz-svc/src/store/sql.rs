//! The SQL both backends share: the statements are written once in a dialect
//! SQLite and PostgreSQL both accept (`$n` placeholders, `BOOLEAN`, `ON CONFLICT`),
//! and `sql_store!` implements [`Store`](super::Store) for a backend's pool.

/// Implements [`Store`](super::Store) for `$store`, whose `pool` field is a pool of `$db`.
macro_rules! sql_store {
    ($store:ty, $db:ty) => {
        type ClientRow = (String, Option<Vec<u8>>, String, String, String, String, String, i64);
        type CodeRow = (Vec<u8>, String, String, String, String, String, String, String, i64, bool);
        type FamilyRow = (String, String, String, String, String, bool);
        type KeyRow = (String, String, Vec<u8>, String, String, i64, Option<i64>);

        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn insert_client(&self, client: &$crate::store::ClientRecord) -> Result<(), $crate::error::Error> {
                sqlx::query(
                    "INSERT INTO clients (client_id, secret_hash, client_name, redirect_uris, grant_types, \
                     auth_method, application_type, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(&client.client_id)
                .bind(&client.secret_hash)
                .bind(&client.client_name)
                .bind($crate::store::sql::to_json(&client.redirect_uris))
                .bind($crate::store::sql::to_json(&client.grant_types))
                .bind(&client.auth_method)
                .bind(&client.application_type)
                .bind(client.created_at)
                .execute(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn client(&self, client_id: &str) -> Result<Option<$crate::store::ClientRecord>, $crate::error::Error> {
                let row: Option<ClientRow> = sqlx::query_as(
                    "SELECT client_id, secret_hash, client_name, redirect_uris, grant_types, auth_method, \
                     application_type, created_at FROM clients WHERE client_id = $1",
                )
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                row.map($crate::store::sql::client_record).transpose()
            }

            async fn insert_code(&self, code: &$crate::store::CodeRecord) -> Result<(), $crate::error::Error> {
                sqlx::query(
                    "INSERT INTO auth_codes (code_hash, client_id, redirect_uri, code_challenge, resource, scope, \
                     subject, family_id, expires_at, used) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .bind(&code.code_hash)
                .bind(&code.client_id)
                .bind(&code.redirect_uri)
                .bind(&code.code_challenge)
                .bind(&code.resource)
                .bind(&code.scope)
                .bind(&code.subject)
                .bind(&code.family_id)
                .bind(code.expires_at)
                .bind(code.used)
                .execute(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn code(&self, code_hash: &[u8]) -> Result<Option<$crate::store::CodeRecord>, $crate::error::Error> {
                let row: Option<CodeRow> = sqlx::query_as(
                    "SELECT code_hash, client_id, redirect_uri, code_challenge, resource, scope, subject, \
                     family_id, expires_at, used FROM auth_codes WHERE code_hash = $1",
                )
                .bind(code_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(row.map($crate::store::sql::code_record))
            }

            async fn redeem_code(
                &self,
                code_hash: &[u8],
                refresh: &$crate::store::NewRefresh,
                now: i64,
            ) -> Result<$crate::store::Redemption, $crate::error::Error> {
                use $crate::store::Redemption;
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                // The write comes first so that SQLite takes its write lock before
                // reading, and concurrent redemptions serialize on the row in PostgreSQL.
                let spent = sqlx::query("UPDATE auth_codes SET used = TRUE WHERE code_hash = $1 AND used = FALSE")
                    .bind(code_hash)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?
                    .rows_affected();
                let row: Option<CodeRow> = sqlx::query_as(
                    "SELECT code_hash, client_id, redirect_uri, code_challenge, resource, scope, subject, \
                     family_id, expires_at, used FROM auth_codes WHERE code_hash = $1",
                )
                .bind(code_hash)
                .fetch_optional(&mut *tx)
                .await
                .map_err($crate::store::classify)?;
                let Some(code) = row.map($crate::store::sql::code_record) else {
                    return Ok(Redemption::Invalid);
                };
                if spent == 0 {
                    revoke_family_in(&mut tx, &code.family_id).await?;
                    tx.commit().await.map_err($crate::store::classify)?;
                    return Ok(Redemption::Replayed);
                }
                if code.expires_at <= now {
                    tx.commit().await.map_err($crate::store::classify)?;
                    return Ok(Redemption::Invalid);
                }
                sqlx::query(
                    "INSERT INTO grant_families (family_id, client_id, subject, resource, scope, revoked, created_at) \
                     VALUES ($1, $2, $3, $4, $5, FALSE, $6)",
                )
                .bind(&code.family_id)
                .bind(&code.client_id)
                .bind(&code.subject)
                .bind(&code.resource)
                .bind(&code.scope)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::classify)?;
                insert_refresh_in(&mut tx, &code.family_id, refresh).await?;
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(Redemption::Redeemed($crate::store::FamilyRecord {
                    family_id: code.family_id,
                    client_id: code.client_id,
                    subject: code.subject,
                    resource: code.resource,
                    scope: code.scope,
                    revoked: false,
                }))
            }

            async fn rotate_refresh(
                &self,
                token_hash: &[u8],
                successor: &$crate::store::NewRefresh,
                now: i64,
            ) -> Result<$crate::store::Redemption, $crate::error::Error> {
                use $crate::store::Redemption;
                // Concurrent rotations of one token can deadlock on PostgreSQL (each spends
                // the token, then revokes or extends the family); the victim retries and
                // then finds the token spent, the answer it should have had anyway.
                let mut attempt = 0;
                loop {
                    let outcome = async {
                        let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                        let spent = sqlx::query("UPDATE refresh_tokens SET used = TRUE WHERE token_hash = $1 AND used = FALSE")
                            .bind(token_hash)
                            .execute(&mut *tx)
                            .await
                            .map_err($crate::store::classify)?
                            .rows_affected();
                        let row: Option<(String, i64, String, String, String, String, String, bool)> = sqlx::query_as(
                            "SELECT t.family_id, t.expires_at, f.client_id, f.subject, f.resource, f.scope, f.family_id, \
                             f.revoked FROM refresh_tokens t JOIN grant_families f ON f.family_id = t.family_id \
                             WHERE t.token_hash = $1",
                        )
                        .bind(token_hash)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err($crate::store::classify)?;
                        let Some((family_id, expires_at, client_id, subject, resource, scope, _, revoked)) = row else {
                            return Ok(Redemption::Invalid);
                        };
                        if spent == 0 {
                            revoke_family_in(&mut tx, &family_id).await?;
                            tx.commit().await.map_err($crate::store::classify)?;
                            return Ok(Redemption::Replayed);
                        }
                        if revoked || expires_at <= now {
                            tx.commit().await.map_err($crate::store::classify)?;
                            return Ok(Redemption::Invalid);
                        }
                        insert_refresh_in(&mut tx, &family_id, successor).await?;
                        tx.commit().await.map_err($crate::store::classify)?;
                        Ok(Redemption::Redeemed($crate::store::FamilyRecord {
                            family_id,
                            client_id,
                            subject,
                            resource,
                            scope,
                            revoked: false,
                        }))
                    }
                    .await;
                    match outcome {
                        Err(error) if attempt < 3 && $crate::store::is_conflict(&error) => attempt += 1,
                        outcome => return outcome,
                    }
                }
            }

            async fn refresh_family(
                &self,
                token_hash: &[u8],
                now: i64,
            ) -> Result<Option<$crate::store::FamilyRecord>, $crate::error::Error> {
                let row: Option<FamilyRow> = sqlx::query_as(
                    "SELECT f.family_id, f.client_id, f.subject, f.resource, f.scope, f.revoked \
                     FROM refresh_tokens t JOIN grant_families f ON f.family_id = t.family_id \
                     WHERE t.token_hash = $1 AND t.used = FALSE AND t.expires_at > $2",
                )
                .bind(token_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(row.map($crate::store::sql::family_record))
            }

            async fn family(&self, family_id: &str) -> Result<Option<$crate::store::FamilyRecord>, $crate::error::Error> {
                let row: Option<FamilyRow> =
                    sqlx::query_as(
                        "SELECT family_id, client_id, subject, resource, scope, revoked FROM grant_families \
                         WHERE family_id = $1",
                    )
                        .bind(family_id)
                        .fetch_optional(&self.pool)
                        .await
                        .map_err($crate::store::classify)?;
                Ok(row.map($crate::store::sql::family_record))
            }

            async fn revoke_family(&self, family_id: &str) -> Result<(), $crate::error::Error> {
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                revoke_family_in(&mut tx, family_id).await?;
                tx.commit().await.map_err($crate::store::classify)
            }

            async fn revoke_jti(&self, jti: &str, expires_at: i64) -> Result<(), $crate::error::Error> {
                sqlx::query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, $2) ON CONFLICT (jti) DO NOTHING")
                    .bind(jti)
                    .bind(expires_at)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn jti_revoked(&self, jti: &str) -> Result<bool, $crate::error::Error> {
                let row: Option<(String,)> = sqlx::query_as("SELECT jti FROM revoked_tokens WHERE jti = $1")
                    .bind(jti)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::store::classify)?;
                Ok(row.is_some())
            }

            async fn keys(&self) -> Result<Vec<$crate::store::KeyRecord>, $crate::error::Error> {
                let rows: Vec<KeyRow> = sqlx::query_as(
                    "SELECT kid, status, sealed_private_key, public_x, public_y, created_at, retired_until FROM signing_keys \
                     ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                rows.into_iter().map($crate::store::sql::key_record).collect()
            }

            async fn upsert_document_client(&self, client: &$crate::store::ClientRecord) -> Result<(), $crate::error::Error> {
                sqlx::query(
                    "INSERT INTO clients (client_id, secret_hash, client_name, redirect_uris, grant_types, \
                     auth_method, application_type, created_at) VALUES ($1, NULL, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (client_id) DO UPDATE SET client_name = excluded.client_name, \
                     redirect_uris = excluded.redirect_uris, grant_types = excluded.grant_types, \
                     auth_method = excluded.auth_method, application_type = excluded.application_type",
                )
                .bind(&client.client_id)
                .bind(&client.client_name)
                .bind($crate::store::sql::to_json(&client.redirect_uris))
                .bind($crate::store::sql::to_json(&client.grant_types))
                .bind(&client.auth_method)
                .bind(&client.application_type)
                .bind(client.created_at)
                .execute(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn rotate_keys(
                &self,
                active_kid: &str,
                next: &$crate::store::KeyRecord,
                retired_until: i64,
                now: i64,
            ) -> Result<bool, $crate::error::Error> {
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                let retired = sqlx::query(
                    "UPDATE signing_keys SET status = 'retired', retired_until = $1 \
                     WHERE kid = $2 AND status = 'active'",
                )
                .bind(retired_until)
                .bind(active_kid)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::classify)?
                .rows_affected();
                if retired == 0 {
                    return Ok(false);
                }
                sqlx::query("UPDATE signing_keys SET status = 'active' WHERE status = 'next'")
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, status, sealed_private_key, public_x, public_y, created_at) \
                     VALUES ($1, 'next', $2, $3, $4, $5)",
                )
                .bind(&next.kid)
                .bind(&next.sealed_private_key)
                .bind(&next.public_x)
                .bind(&next.public_y)
                .bind(next.created_at)
                .execute(&mut *tx)
                .await
                .map_err($crate::store::classify)?;
                sqlx::query("DELETE FROM signing_keys WHERE status = 'retired' AND retired_until < $1")
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?;
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(true)
            }

            async fn record_federated_login(
                &self,
                member: &$crate::store::FederatedMember,
            ) -> Result<(), $crate::error::Error> {
                sqlx::query(
                    "INSERT INTO federated_members (member_id, issuer, subject, groups, created_at, last_login_at) \
                     VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (member_id) DO UPDATE SET \
                     groups = excluded.groups, last_login_at = excluded.last_login_at",
                )
                .bind(&member.member_id)
                .bind(&member.issuer)
                .bind(&member.subject)
                .bind($crate::store::sql::to_json(&member.groups))
                .bind(member.created_at)
                .bind(member.last_login_at)
                .execute(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn federated_member(
                &self,
                member_id: &str,
            ) -> Result<Option<$crate::store::FederatedMember>, $crate::error::Error> {
                let row: Option<(String, String, String, String, i64, i64)> = sqlx::query_as(
                    "SELECT member_id, issuer, subject, groups, created_at, last_login_at \
                     FROM federated_members WHERE member_id = $1",
                )
                .bind(member_id)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                row.map($crate::store::sql::federated_member).transpose()
            }

            async fn record_consent(&self, consent: &$crate::store::ConsentRecord) -> Result<(), $crate::error::Error> {
                sqlx::query(
                    "INSERT INTO consents (subject, client_id, resource, scope, granted_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (subject, client_id, resource) DO UPDATE SET \
                     scope = excluded.scope, granted_at = excluded.granted_at",
                )
                .bind(&consent.subject)
                .bind(&consent.client_id)
                .bind(&consent.resource)
                .bind(&consent.scope)
                .bind(consent.granted_at)
                .execute(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn consent(
                &self,
                subject: &str,
                client_id: &str,
                resource: &str,
            ) -> Result<Option<$crate::store::ConsentRecord>, $crate::error::Error> {
                let row: Option<(String, String, String, String, i64)> = sqlx::query_as(
                    "SELECT subject, client_id, resource, scope, granted_at FROM consents \
                     WHERE subject = $1 AND client_id = $2 AND resource = $3",
                )
                .bind(subject)
                .bind(client_id)
                .bind(resource)
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::store::classify)?;
                Ok(row.map(|(subject, client_id, resource, scope, granted_at)| $crate::store::ConsentRecord {
                    subject,
                    client_id,
                    resource,
                    scope,
                    granted_at,
                }))
            }

            async fn forget_consent(
                &self,
                subject: &str,
                client_id: &str,
                resource: &str,
            ) -> Result<(), $crate::error::Error> {
                sqlx::query("DELETE FROM consents WHERE subject = $1 AND client_id = $2 AND resource = $3")
                    .bind(subject)
                    .bind(client_id)
                    .bind(resource)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::store::classify)?;
                Ok(())
            }

            async fn federated_member_count(&self) -> Result<u64, $crate::error::Error> {
                let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM federated_members")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::store::classify)?;
                Ok(u64::try_from(count).unwrap_or(0))
            }

            async fn insert_initial_keys(
                &self,
                active: &$crate::store::KeyRecord,
                next: &$crate::store::KeyRecord,
            ) -> Result<bool, $crate::error::Error> {
                let mut tx = self.pool.begin().await.map_err($crate::store::classify)?;
                for key in [active, next] {
                    let inserted = sqlx::query(
                        "INSERT INTO signing_keys (kid, status, sealed_private_key, public_x, public_y, created_at) \
                         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
                    )
                    .bind(&key.kid)
                    .bind(key.status.as_str())
                    .bind(&key.sealed_private_key)
                    .bind(&key.public_x)
                    .bind(&key.public_y)
                    .bind(key.created_at)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::store::classify)?
                    .rows_affected();
                    if inserted == 0 {
                        // Another replica stored its pair first; keep theirs.
                        return Ok(false);
                    }
                }
                tx.commit().await.map_err($crate::store::classify)?;
                Ok(true)
            }
        }

        async fn revoke_family_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            family_id: &str,
        ) -> Result<(), $crate::error::Error> {
            sqlx::query("UPDATE grant_families SET revoked = TRUE WHERE family_id = $1")
                .bind(family_id)
                .execute(&mut **tx)
                .await
                .map_err($crate::store::classify)?;
            sqlx::query("UPDATE refresh_tokens SET used = TRUE WHERE family_id = $1")
                .bind(family_id)
                .execute(&mut **tx)
                .await
                .map_err($crate::store::classify)?;
            Ok(())
        }

        async fn insert_refresh_in(
            tx: &mut sqlx::Transaction<'_, $db>,
            family_id: &str,
            refresh: &$crate::store::NewRefresh,
        ) -> Result<(), $crate::error::Error> {
            sqlx::query("INSERT INTO refresh_tokens (token_hash, family_id, expires_at, used) VALUES ($1, $2, $3, FALSE)")
                .bind(&refresh.token_hash)
                .bind(family_id)
                .bind(refresh.expires_at)
                .execute(&mut **tx)
                .await
                .map_err($crate::store::classify)?;
            Ok(())
        }
    };
}

pub(crate) use sql_store;

use super::{ClientRecord, CodeRecord, FamilyRecord, FederatedMember, KeyRecord, KeyStatus};
use crate::error::Error;

pub(crate) fn to_json(list: &[String]) -> String {
    serde_json::Value::from(list.to_vec()).to_string()
}

pub(crate) fn from_json(text: &str) -> Result<Vec<String>, Error> {
    serde_json::from_str(text).map_err(|_| Error::Corrupt("client list"))
}

pub(crate) fn client_record(
    row: (
        String,
        Option<Vec<u8>>,
        String,
        String,
        String,
        String,
        String,
        i64,
    ),
) -> Result<ClientRecord, Error> {
    let (
        client_id,
        secret_hash,
        client_name,
        redirect_uris,
        grant_types,
        auth_method,
        application_type,
        created_at,
    ) = row;
    Ok(ClientRecord {
        client_id,
        secret_hash,
        client_name,
        redirect_uris: from_json(&redirect_uris)?,
        grant_types: from_json(&grant_types)?,
        auth_method,
        application_type,
        created_at,
    })
}

pub(crate) fn code_record(
    row: (
        Vec<u8>,
        String,
        String,
        String,
        String,
        String,
        String,
        String,
        i64,
        bool,
    ),
) -> CodeRecord {
    let (
        code_hash,
        client_id,
        redirect_uri,
        code_challenge,
        resource,
        scope,
        subject,
        family_id,
        expires_at,
        used,
    ) = row;
    CodeRecord {
        code_hash,
        client_id,
        redirect_uri,
        code_challenge,
        resource,
        scope,
        subject,
        family_id,
        expires_at,
        used,
    }
}

pub(crate) fn family_record(row: (String, String, String, String, String, bool)) -> FamilyRecord {
    let (family_id, client_id, subject, resource, scope, revoked) = row;
    FamilyRecord {
        family_id,
        client_id,
        subject,
        resource,
        scope,
        revoked,
    }
}

pub(crate) fn key_record(
    row: (String, String, Vec<u8>, String, String, i64, Option<i64>),
) -> Result<KeyRecord, Error> {
    let (kid, status, sealed_private_key, public_x, public_y, created_at, retired_until) = row;
    Ok(KeyRecord {
        kid,
        status: KeyStatus::parse(&status)?,
        sealed_private_key,
        public_x,
        public_y,
        created_at,
        retired_until,
    })
}

pub(crate) fn federated_member(
    row: (String, String, String, String, i64, i64),
) -> Result<FederatedMember, Error> {
    let (member_id, issuer, subject, groups, created_at, last_login_at) = row;
    Ok(FederatedMember {
        member_id,
        issuer,
        subject,
        groups: from_json(&groups)?,
        created_at,
        last_login_at,
    })
}
