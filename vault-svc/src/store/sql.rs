//! The SQL both backends run, and the macro that implements [`Store`] for a
//! backend from it: the statements are identical, only the pool type differs.
//!
//! [`Store`]: super::Store

/// Expands to the credential columns in [`Row`](super::Row) order.
macro_rules! columns {
    () => {
        "id, tenant, connector, owner_kind, owner_id, kind, status, version, kek_version, \
         sealed, description, created_at, updated_at, expires_at, refresh_due_at, \
         refresh_failures"
    };
}

/// Expands to the rotation columns in [`RotationRow`](super::RotationRow) order.
macro_rules! rotation_columns {
    () => {
        "tenant, connector, state, next_at, attempts, cycle, previous_sealed, last_error, \
         version, updated_at"
    };
}

/// Implements [`Store`](super::Store) for a struct with a `pool` field.
macro_rules! sql_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl $crate::store::Store for $store {
            async fn put(&self, credential: &NewCredential) -> Result<CredentialRecord, Error> {
                let now = now_micros();
                let kek_version = Envelope::kek_version(&credential.sealed)?;
                let row: Row = sqlx::query_as(concat!(
                    "INSERT INTO vault_credential (id, tenant, connector, owner_kind, owner_id, \
                     kind, status, version, fence, kek_version, sealed, description, created_at, \
                     updated_at, expires_at, refresh_due_at, refresh_failures) VALUES ($1, $2, \
                     $3, $4, $5, $6, 'active', 1, 0, $7, $8, $9, $10, $10, $11, $12, 0) \
                     ON CONFLICT (tenant, connector, owner_kind, owner_id) DO UPDATE SET \
                     kind = excluded.kind, status = 'active', \
                     version = vault_credential.version + 1, kek_version = excluded.kek_version, \
                     sealed = excluded.sealed, description = excluded.description, \
                     updated_at = excluded.updated_at, expires_at = excluded.expires_at, \
                     refresh_due_at = excluded.refresh_due_at, refresh_failures = 0 \
                     RETURNING ",
                    columns!()
                ))
                .bind(random_id("cred_")?)
                .bind(&credential.key.tenant)
                .bind(&credential.key.connector)
                .bind(credential.key.owner.kind())
                .bind(credential.key.owner.id())
                .bind(credential.kind.as_str())
                .bind(i64::from(kek_version))
                .bind(&credential.sealed)
                .bind(&credential.description)
                .bind(now)
                .bind(credential.expires_at)
                .bind(credential.refresh_due_at)
                .fetch_one(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                row.try_into()
            }

            async fn get(&self, key: &CredentialKey) -> Result<Option<CredentialRecord>, Error> {
                let row: Option<Row> = sqlx::query_as(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM vault_credential WHERE tenant = $1 AND connector = $2 \
                     AND owner_kind = $3 AND owner_id = $4"
                ))
                .bind(&key.tenant)
                .bind(&key.connector)
                .bind(key.owner.kind())
                .bind(key.owner.id())
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                row.map(CredentialRecord::try_from).transpose()
            }

            async fn fetch(
                &self,
                key: &CredentialKey,
                principals: &[&Owner],
            ) -> Result<(bool, Option<CredentialRecord>), Error> {
                let (member, agent) = principal_ids(principals);
                let row: FetchRow = sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM vault_revoked_principal r WHERE r.tenant = $1 AND \
                     ((r.owner_kind = 'member' AND $5 <> '' AND r.owner_id = $5) OR \
                      (r.owner_kind = 'agent' AND $6 <> '' AND r.owner_id = $6))) AS revoked, \
                     c.id, c.tenant, c.connector, c.owner_kind, c.owner_id, c.kind, c.status, \
                     c.version, c.kek_version, c.sealed, c.description, c.created_at, \
                     c.updated_at, c.expires_at, c.refresh_due_at, c.refresh_failures \
                     FROM (SELECT 1 AS probe) AS probe LEFT JOIN vault_credential c ON \
                     c.tenant = $1 AND c.connector = $2 AND c.owner_kind = $3 AND c.owner_id = $4",
                )
                .bind(&key.tenant)
                .bind(&key.connector)
                .bind(key.owner.kind())
                .bind(key.owner.id())
                .bind(member)
                .bind(agent)
                .fetch_one(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                row.split()
            }

            async fn get_by_id(
                &self,
                tenant: &str,
                id: &str,
            ) -> Result<Option<CredentialRecord>, Error> {
                let row: Option<Row> = sqlx::query_as(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM vault_credential WHERE tenant = $1 AND id = $2"
                ))
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                row.map(CredentialRecord::try_from).transpose()
            }

            async fn claim(&self, id: &str, version: u64, fence: u64) -> Result<bool, Error> {
                let result = sqlx::query(
                    "UPDATE vault_credential SET fence = $3 \
                     WHERE id = $1 AND version = $2 AND fence < $3",
                )
                .bind(id)
                .bind(to_db(version))
                .bind(to_db(fence))
                .execute(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                Ok(result.rows_affected() == 1)
            }

            async fn update(
                &self,
                id: &str,
                version: u64,
                fence: Option<u64>,
                update: &CredentialUpdate,
            ) -> Result<Option<CredentialRecord>, Error> {
                let kek_version = match &update.sealed {
                    Some(sealed) => Some(i64::from(Envelope::kek_version(sealed)?)),
                    None => None,
                };
                let row: Option<Row> = sqlx::query_as(concat!(
                    "UPDATE vault_credential SET sealed = COALESCE($3, sealed), \
                     kek_version = COALESCE($4, kek_version), status = $5, expires_at = $6, \
                     refresh_due_at = $7, refresh_failures = $8, version = version + 1, \
                     updated_at = $9 WHERE id = $1 AND version = $2 AND ($10 < 0 OR fence = $10) \
                     RETURNING ",
                    columns!()
                ))
                .bind(id)
                .bind(to_db(version))
                .bind(update.sealed.as_deref())
                .bind(kek_version)
                .bind(update.status.as_str())
                .bind(update.expires_at)
                .bind(update.refresh_due_at)
                .bind(i64::from(update.refresh_failures))
                .bind(now_micros())
                .bind(fence.map_or(-1, to_db))
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                row.map(CredentialRecord::try_from).transpose()
            }

            async fn delete(&self, tenant: &str, id: &str) -> Result<Option<CredentialRecord>, Error> {
                let row: Option<Row> = sqlx::query_as(concat!(
                    "DELETE FROM vault_credential WHERE tenant = $1 AND id = $2 RETURNING ",
                    columns!()
                ))
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                row.map(CredentialRecord::try_from).transpose()
            }

            async fn revoke_principal(
                &self,
                tenant: &str,
                owner: &Owner,
                reason: &str,
            ) -> Result<Vec<CredentialRecord>, Error> {
                let mut tx = self.pool.begin().await.map_err(Error::from_sqlx)?;
                sqlx::query(
                    "INSERT INTO vault_revoked_principal (tenant, owner_kind, owner_id, \
                     revoked_at, reason) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                )
                .bind(tenant)
                .bind(owner.kind())
                .bind(owner.id())
                .bind(now_micros())
                .bind(reason)
                .execute(&mut *tx)
                .await
                .map_err(Error::from_sqlx)?;
                let rows: Vec<Row> = sqlx::query_as(concat!(
                    "DELETE FROM vault_credential WHERE tenant = $1 AND owner_kind = $2 \
                     AND owner_id = $3 RETURNING ",
                    columns!()
                ))
                .bind(tenant)
                .bind(owner.kind())
                .bind(owner.id())
                .fetch_all(&mut *tx)
                .await
                .map_err(Error::from_sqlx)?;
                sqlx::query("DELETE FROM vault_consent WHERE tenant = $1 AND member_id = $2 AND $3 = 'member'")
                    .bind(tenant)
                    .bind(owner.id())
                    .bind(owner.kind())
                    .execute(&mut *tx)
                    .await
                    .map_err(Error::from_sqlx)?;
                tx.commit().await.map_err(Error::from_sqlx)?;
                rows.into_iter().map(CredentialRecord::try_from).collect()
            }

            async fn is_revoked(&self, tenant: &str, owners: &[&Owner]) -> Result<bool, Error> {
                let (member, agent) = principal_ids(owners);
                if member.is_empty() && agent.is_empty() {
                    return Ok(false);
                }
                let count: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM vault_revoked_principal WHERE tenant = $1 AND \
                     ((owner_kind = 'member' AND $2 <> '' AND owner_id = $2) OR \
                      (owner_kind = 'agent' AND $3 <> '' AND owner_id = $3))",
                )
                .bind(tenant)
                .bind(member)
                .bind(agent)
                .fetch_one(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                Ok(count > 0)
            }

            async fn list(&self, query: &ListQuery) -> Result<Vec<CredentialRecord>, Error> {
                let rows: Vec<Row> = sqlx::query_as(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM vault_credential WHERE tenant = $1 AND ($2 = '' OR connector = $2) \
                     AND ($3 = '' OR (owner_kind <> 'shared' AND owner_id = $3)) \
                     AND ($4 = '' OR $4 LIKE '%,' || status || ',%') AND id > $5 \
                     ORDER BY id LIMIT $6"
                ))
                .bind(&query.tenant)
                .bind(query.connector.as_deref().unwrap_or(""))
                .bind(query.owner_id.as_deref().unwrap_or(""))
                .bind(status_filter(&query.statuses))
                .bind(&query.after)
                .bind(i64::from(query.limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                rows.into_iter().map(CredentialRecord::try_from).collect()
            }

            async fn due_for_refresh(
                &self,
                now: i64,
                limit: u32,
            ) -> Result<Vec<CredentialRecord>, Error> {
                let rows: Vec<Row> = sqlx::query_as(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM vault_credential WHERE refresh_due_at IS NOT NULL \
                     AND refresh_due_at <= $1 ORDER BY refresh_due_at LIMIT $2"
                ))
                .bind(now)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                rows.into_iter().map(CredentialRecord::try_from).collect()
            }

            async fn next_refresh_due(&self) -> Result<Option<i64>, Error> {
                sqlx::query_scalar("SELECT MIN(refresh_due_at) FROM vault_credential")
                    .fetch_one(&self.pool)
                    .await
                    .map_err(Error::from_sqlx)
            }

            async fn stale_kek(
                &self,
                kek_version: u32,
                after: &str,
                limit: u32,
            ) -> Result<Vec<CredentialRecord>, Error> {
                let rows: Vec<Row> = sqlx::query_as(concat!(
                    "SELECT ",
                    columns!(),
                    " FROM vault_credential WHERE kek_version <> $1 AND id > $2 \
                     ORDER BY id LIMIT $3"
                ))
                .bind(i64::from(kek_version))
                .bind(after)
                .bind(i64::from(limit))
                .fetch_all(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                rows.into_iter().map(CredentialRecord::try_from).collect()
            }

            async fn count_stale_kek(&self, kek_version: u32) -> Result<(u64, u64), Error> {
                let (stale, total): (i64, i64) = sqlx::query_as(
                    "SELECT COALESCE(SUM(CASE WHEN kek_version <> $1 THEN 1 ELSE 0 END), 0), \
                     COUNT(*) FROM vault_credential",
                )
                .bind(i64::from(kek_version))
                .fetch_one(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                Ok((
                    u64::try_from(stale).unwrap_or(0),
                    u64::try_from(total).unwrap_or(0),
                ))
            }

            async fn rewrap(
                &self,
                id: &str,
                version: u64,
                sealed: &[u8],
                kek_version: u32,
            ) -> Result<bool, Error> {
                let result = sqlx::query(
                    "UPDATE vault_credential SET sealed = $3, kek_version = $4 \
                     WHERE id = $1 AND version = $2",
                )
                .bind(id)
                .bind(to_db(version))
                .bind(sealed)
                .bind(i64::from(kek_version))
                .execute(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                Ok(result.rows_affected() == 1)
            }

            async fn kek_versions(&self) -> Result<Vec<u32>, Error> {
                let versions: Vec<i64> =
                    sqlx::query_scalar("SELECT DISTINCT kek_version FROM vault_credential")
                        .fetch_all(&self.pool)
                        .await
                        .map_err(Error::from_sqlx)?;
                versions
                    .into_iter()
                    .map(|version| u32::try_from(version).map_err(|_| Error::Corrupt("kek version")))
                    .collect()
            }

            async fn put_consent(&self, consent: &ConsentRecord) -> Result<(), Error> {
                sqlx::query(
                    "INSERT INTO vault_consent (state_hash, tenant, connector, member_id, sealed, \
                     expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&consent.state_hash)
                .bind(&consent.tenant)
                .bind(&consent.connector)
                .bind(&consent.member_id)
                .bind(&consent.sealed)
                .bind(consent.expires_at)
                .execute(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                Ok(())
            }

            async fn take_consent(
                &self,
                state_hash: &[u8],
                now: i64,
            ) -> Result<Option<ConsentRecord>, Error> {
                sqlx::query("DELETE FROM vault_consent WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await
                    .map_err(Error::from_sqlx)?;
                let row: Option<ConsentRow> = sqlx::query_as(
                    "DELETE FROM vault_consent WHERE state_hash = $1 RETURNING state_hash, \
                     tenant, connector, member_id, sealed, expires_at",
                )
                .bind(state_hash)
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                Ok(row.map(ConsentRecord::from).filter(|consent| consent.expires_at >= now))
            }

            async fn rotation(
                &self,
                tenant: &str,
                connector: &str,
            ) -> Result<Option<RotationRecord>, Error> {
                let row: Option<RotationRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    rotation_columns!(),
                    " FROM vault_rotation WHERE tenant = $1 AND connector = $2"
                ))
                .bind(tenant)
                .bind(connector)
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                row.map(RotationRecord::try_from).transpose()
            }

            async fn schedule_rotation(
                &self,
                tenant: &str,
                connector: &str,
                next_at: i64,
            ) -> Result<RotationRecord, Error> {
                sqlx::query(
                    "INSERT INTO vault_rotation (tenant, connector, state, next_at, attempts, \
                     cycle, previous_sealed, last_error, version, fence, updated_at) VALUES \
                     ($1, $2, 'scheduled', $3, 0, 0, NULL, '', 1, 0, $4) ON CONFLICT DO NOTHING",
                )
                .bind(tenant)
                .bind(connector)
                .bind(next_at)
                .bind(now_micros())
                .execute(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                self.rotation(tenant, connector)
                    .await?
                    .ok_or(Error::Corrupt("rotation row"))
            }

            async fn reset_rotation(
                &self,
                tenant: &str,
                connector: &str,
                next_at: i64,
            ) -> Result<RotationRecord, Error> {
                // A value still overlapping stays in `overlap` until its retirement;
                // the reset then applies to the next rotation.
                let row: RotationRow = sqlx::query_as(concat!(
                    "INSERT INTO vault_rotation (tenant, connector, state, next_at, attempts, \
                     cycle, previous_sealed, last_error, version, fence, updated_at) VALUES \
                     ($1, $2, 'scheduled', $3, 0, 0, NULL, '', 1, 0, $4) \
                     ON CONFLICT (tenant, connector) DO UPDATE SET \
                     state = CASE WHEN vault_rotation.previous_sealed IS NULL THEN 'scheduled' \
                     ELSE 'overlap' END, \
                     next_at = CASE WHEN vault_rotation.previous_sealed IS NULL THEN $3 \
                     ELSE vault_rotation.next_at END, \
                     attempts = 0, last_error = '', version = vault_rotation.version + 1, \
                     updated_at = $4 RETURNING ",
                    rotation_columns!()
                ))
                .bind(tenant)
                .bind(connector)
                .bind(next_at)
                .bind(now_micros())
                .fetch_one(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                row.try_into()
            }

            async fn claim_rotation(
                &self,
                tenant: &str,
                connector: &str,
                version: u64,
                fence: u64,
            ) -> Result<bool, Error> {
                let result = sqlx::query(
                    "UPDATE vault_rotation SET fence = $4, version = version + 1 \
                     WHERE tenant = $1 AND connector = $2 AND version = $3 AND fence < $4",
                )
                .bind(tenant)
                .bind(connector)
                .bind(to_db(version))
                .bind(to_db(fence))
                .execute(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                Ok(result.rows_affected() == 1)
            }

            async fn update_rotation(
                &self,
                tenant: &str,
                connector: &str,
                version: u64,
                fence: u64,
                update: &RotationUpdate,
            ) -> Result<Option<RotationRecord>, Error> {
                let row: Option<RotationRow> = sqlx::query_as(concat!(
                    "UPDATE vault_rotation SET state = $5, next_at = $6, attempts = $7, \
                     cycle = $8, previous_sealed = $9, last_error = $10, \
                     version = version + 1, updated_at = $11 WHERE tenant = $1 \
                     AND connector = $2 AND version = $3 AND fence = $4 RETURNING ",
                    rotation_columns!()
                ))
                .bind(tenant)
                .bind(connector)
                .bind(to_db(version))
                .bind(to_db(fence))
                .bind(update.state.as_str())
                .bind(update.next_at)
                .bind(i64::from(update.attempts))
                .bind(to_db(update.cycle))
                .bind(update.previous_sealed.as_deref())
                .bind(&update.last_error)
                .bind(now_micros())
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                row.map(RotationRecord::try_from).transpose()
            }

            async fn store_rotated(
                &self,
                tenant: &str,
                connector: &str,
                version: u64,
                fence: u64,
                update: &RotationUpdate,
                rotated: &RotatedSecret,
            ) -> Result<Option<u64>, Error> {
                let kek_version = i64::from(Envelope::kek_version(&rotated.sealed)?);
                let now = now_micros();
                let mut tx = self.pool.begin().await.map_err(Error::from_sqlx)?;
                let schedule = sqlx::query(
                    "UPDATE vault_rotation SET state = $5, next_at = $6, attempts = $7, \
                     cycle = $8, previous_sealed = $9, last_error = $10, \
                     version = version + 1, updated_at = $11 WHERE tenant = $1 \
                     AND connector = $2 AND version = $3 AND fence = $4",
                )
                .bind(tenant)
                .bind(connector)
                .bind(to_db(version))
                .bind(to_db(fence))
                .bind(update.state.as_str())
                .bind(update.next_at)
                .bind(i64::from(update.attempts))
                .bind(to_db(update.cycle))
                .bind(update.previous_sealed.as_deref())
                .bind(&update.last_error)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(Error::from_sqlx)?;
                if schedule.rows_affected() != 1 {
                    return Ok(None);
                }
                let credential: Option<i64> = sqlx::query_scalar(
                    "UPDATE vault_credential SET sealed = $4, kek_version = $5, \
                     status = 'active', version = version + 1, updated_at = $6 \
                     WHERE tenant = $1 AND id = $2 AND version = $3 RETURNING version",
                )
                .bind(tenant)
                .bind(&rotated.credential_id)
                .bind(to_db(rotated.credential_version))
                .bind(&rotated.sealed)
                .bind(kek_version)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await
                .map_err(Error::from_sqlx)?;
                let Some(credential) = credential else {
                    return Ok(None);
                };
                tx.commit().await.map_err(Error::from_sqlx)?;
                Ok(Some(u64::try_from(credential).map_err(|_| Error::Corrupt("version"))?))
            }

            async fn peek_consent(
                &self,
                state_hash: &[u8],
                now: i64,
            ) -> Result<Option<ConsentRecord>, Error> {
                let row: Option<ConsentRow> = sqlx::query_as(
                    "SELECT state_hash, tenant, connector, member_id, sealed, expires_at \
                     FROM vault_consent WHERE state_hash = $1 AND expires_at >= $2",
                )
                .bind(state_hash)
                .bind(now)
                .fetch_optional(&self.pool)
                .await
                .map_err(Error::from_sqlx)?;
                Ok(row.map(ConsentRecord::from))
            }
        }
    };
}
