//! The trait implementations both backends share. The SQL is written once,
//! with `$N` placeholders (sqlx accepts them for SQLite as well as
//! PostgreSQL); the macro stamps it out for each backend's pool and row type,
//! because sqlx's generic executor bounds would cost more to read than this.

macro_rules! impl_shared_traits {
    ($store:ty, $row:ty) => {
        const TOKEN_COLUMNS: &str =
            "token_hash, token_id, label, role, scopes, owner, created_ms, expires_ms, revoked_ms";

        fn token_from_row(row: &$row) -> $crate::Result<$crate::ApiTokenRecord> {
            use sqlx::Row;
            let e = $crate::StoreError::from_sqlx;
            let get_ms = |column: &str| -> $crate::Result<Option<caduceus_core::Timestamp>> {
                let ms: Option<i64> = row.try_get(column).map_err(e)?;
                Ok(ms.map(caduceus_core::Timestamp))
            };
            let scopes: String = row.try_get("scopes").map_err(e)?;
            Ok($crate::ApiTokenRecord {
                token_hash: $crate::identity::hash32(row.try_get("token_hash").map_err(e)?, "token hash")?,
                token_id: row.try_get("token_id").map_err(e)?,
                label: row.try_get("label").map_err(e)?,
                role: row.try_get("role").map_err(e)?,
                scopes: $crate::identity::split(&scopes),
                owner: row.try_get("owner").map_err(e)?,
                created: get_ms("created_ms")?
                    .ok_or_else(|| $crate::StoreError::Corrupt("token without a creation time".into()))?,
                expires: get_ms("expires_ms")?,
                revoked: get_ms("revoked_ms")?,
            })
        }

        #[async_trait::async_trait]
        impl $crate::EventLog for $store {
            async fn append_events(&self, events: &[$crate::StoredEvent]) -> $crate::Result<()> {
                let mut tx = self.pool.begin().await.map_err($crate::StoreError::from_sqlx)?;
                for stored in events {
                    sqlx::query(
                        "INSERT INTO events (seq, uid, time_ms, class_uid, digest, body) \
                         VALUES ($1, $2, $3, $4, $5, $6)",
                    )
                    .bind($crate::seq_to_i64(stored.seq)?)
                    .bind(stored.event.uid().to_string())
                    .bind(stored.event.time().as_millis())
                    .bind(i64::from(stored.event.class_uid()))
                    .bind(stored.digest.0.as_slice())
                    .bind(stored.body()?)
                    .execute(&mut *tx)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                }
                tx.commit().await.map_err($crate::StoreError::from_sqlx)
            }

            async fn events_after(&self, after: u64, limit: u32) -> $crate::Result<Vec<$crate::StoredEvent>> {
                use sqlx::Row;
                let rows = sqlx::query("SELECT seq, digest, body FROM events WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind($crate::seq_to_i64(after)?)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                rows.iter()
                    .map(|row: &$row| {
                        let seq: i64 = row.try_get("seq").map_err($crate::StoreError::from_sqlx)?;
                        let digest: Vec<u8> = row.try_get("digest").map_err($crate::StoreError::from_sqlx)?;
                        let body: String = row.try_get("body").map_err($crate::StoreError::from_sqlx)?;
                        $crate::StoredEvent::from_row(seq, &digest, &body)
                    })
                    .collect()
            }

            async fn last_seq(&self) -> $crate::Result<u64> {
                let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
                    .fetch_one(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(last.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
            }
        }

        #[async_trait::async_trait]
        impl $crate::ConsumerCursors for $store {
            async fn cursor(&self, consumer: &str) -> $crate::Result<u64> {
                let seq: Option<i64> = sqlx::query_scalar("SELECT acked_seq FROM consumer_cursors WHERE consumer = $1")
                    .bind(consumer)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
            }

            async fn set_cursor(&self, consumer: &str, acked_seq: u64) -> $crate::Result<()> {
                // Never backwards: keep the larger of the stored and the new value.
                sqlx::query(
                    "INSERT INTO consumer_cursors (consumer, acked_seq) VALUES ($1, $2) \
                     ON CONFLICT (consumer) DO UPDATE SET acked_seq = CASE \
                     WHEN excluded.acked_seq > consumer_cursors.acked_seq THEN excluded.acked_seq \
                     ELSE consumer_cursors.acked_seq END",
                )
                .bind(consumer)
                .bind($crate::seq_to_i64(acked_seq)?)
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl $crate::ApiTokens for $store {
            async fn insert_token(&self, token: &$crate::ApiTokenRecord) -> $crate::Result<()> {
                sqlx::query(
                    "INSERT INTO api_tokens (token_hash, token_id, label, role, scopes, owner, created_ms, \
                     expires_ms, revoked_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(token.token_hash.as_slice())
                .bind(&token.token_id)
                .bind(&token.label)
                .bind(&token.role)
                .bind(token.scopes.join(","))
                .bind(&token.owner)
                .bind(token.created.as_millis())
                .bind(token.expires.map(caduceus_core::Timestamp::as_millis))
                .bind(token.revoked.map(caduceus_core::Timestamp::as_millis))
                .execute(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(())
            }

            async fn find_token(&self, token_hash: &[u8; 32]) -> $crate::Result<Option<$crate::ApiTokenRecord>> {
                let row: Option<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1"
                )))
                .bind(token_hash.as_slice())
                .fetch_optional(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                row.as_ref().map(token_from_row).transpose()
            }

            async fn list_tokens(&self) -> $crate::Result<Vec<$crate::ApiTokenRecord>> {
                let rows: Vec<$row> = sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_ms DESC, token_id"
                )))
                .fetch_all(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                rows.iter().map(token_from_row).collect()
            }

            async fn revoke_token(&self, token_id: &str, at: caduceus_core::Timestamp) -> $crate::Result<bool> {
                let done =
                    sqlx::query("UPDATE api_tokens SET revoked_ms = $1 WHERE token_id = $2 AND revoked_ms IS NULL")
                        .bind(at.as_millis())
                        .bind(token_id)
                        .execute(&self.pool)
                        .await
                        .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected() == 1)
            }

            async fn revoke_tokens_labelled(&self, label: &str, at: caduceus_core::Timestamp) -> $crate::Result<u64> {
                let done = sqlx::query("UPDATE api_tokens SET revoked_ms = $1 WHERE label = $2 AND revoked_ms IS NULL")
                    .bind(at.as_millis())
                    .bind(label)
                    .execute(&self.pool)
                    .await
                    .map_err($crate::StoreError::from_sqlx)?;
                Ok(done.rows_affected())
            }

            async fn count_usable_tokens(&self, now: caduceus_core::Timestamp) -> $crate::Result<u64> {
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM api_tokens \
                     WHERE revoked_ms IS NULL AND (expires_ms IS NULL OR expires_ms > $1)",
                )
                .bind(now.as_millis())
                .fetch_one(&self.pool)
                .await
                .map_err($crate::StoreError::from_sqlx)?;
                Ok(u64::try_from(n).unwrap_or(0))
            }
        }
    };
}

/// Apply pending migrations, logging each newly applied one. The version
/// table does not exist before the first migration: that reads as "none".
macro_rules! run_migrations {
    ($migrator:expr, $pool:expr, $backend:expr) => {{
        let before: std::collections::HashSet<i64> =
            sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations")
                .fetch_all($pool)
                .await
                .map(|v| v.into_iter().collect())
                .unwrap_or_default();
        $migrator.run($pool).await.map_err(|e| $crate::StoreError::Migration(e.to_string()))?;
        $crate::log_migrations(&$migrator, &before, $backend);
    }};
}

pub(crate) use {impl_shared_traits, run_migrations};
