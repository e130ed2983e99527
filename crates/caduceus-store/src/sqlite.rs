//! SQLite backend: the embedded default. WAL mode with `synchronous=FULL`, so
//! a committed transaction survives power loss, in a file in the data directory.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use caduceus_core::Timestamp;
use sqlx::Row;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::{
    ApiTokenRecord, ApiTokens, Backend, ConsumerCursors, EventLog, Result, Store, StoreError, StoredEvent,
    log_migrations, seq_to_i64,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    pub async fn open(path: &Path, max_connections: u32) -> Result<Self> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| StoreError::Unavailable(format!("cannot create {}: {e}", parent.display())))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        let before: HashSet<i64> = sqlx::query_scalar::<_, i64>("SELECT version FROM _sqlx_migrations")
            .fetch_all(&pool)
            .await
            .map(|v| v.into_iter().collect())
            .unwrap_or_default();
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        log_migrations(&MIGRATOR, &before, Backend::Sqlite);
        Ok(Self { pool })
    }
}

#[async_trait]
impl EventLog for SqliteStore {
    async fn append_events(&self, events: &[StoredEvent]) -> Result<()> {
        let mut tx = self.pool.begin().await.map_err(StoreError::from_sqlx)?;
        for stored in events {
            sqlx::query("INSERT INTO events (seq, uid, time_ms, class_uid, digest, body) VALUES (?, ?, ?, ?, ?, ?)")
                .bind(seq_to_i64(stored.seq)?)
                .bind(stored.event.uid().to_string())
                .bind(stored.event.time().as_millis())
                .bind(i64::from(stored.event.class_uid()))
                .bind(stored.digest.0.as_slice())
                .bind(stored.body()?)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::from_sqlx)?;
        }
        tx.commit().await.map_err(StoreError::from_sqlx)
    }

    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query("SELECT seq, digest, body FROM events WHERE seq > ? ORDER BY seq LIMIT ?")
            .bind(seq_to_i64(after)?)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        rows.iter()
            .map(|row| {
                let digest: Vec<u8> = row.try_get("digest").map_err(StoreError::from_sqlx)?;
                let body: String = row.try_get("body").map_err(StoreError::from_sqlx)?;
                StoredEvent::from_row(row.try_get("seq").map_err(StoreError::from_sqlx)?, &digest, &body)
            })
            .collect()
    }

    async fn last_seq(&self) -> Result<u64> {
        let last: Option<i64> = sqlx::query_scalar("SELECT MAX(seq) FROM events")
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(last.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }
}

#[async_trait]
impl ConsumerCursors for SqliteStore {
    async fn cursor(&self, consumer: &str) -> Result<u64> {
        let seq: Option<i64> = sqlx::query_scalar("SELECT acked_seq FROM consumer_cursors WHERE consumer = ?")
            .bind(consumer)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(seq.and_then(|s| u64::try_from(s).ok()).unwrap_or(0))
    }

    async fn set_cursor(&self, consumer: &str, acked_seq: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO consumer_cursors (consumer, acked_seq) VALUES (?, ?) \
             ON CONFLICT (consumer) DO UPDATE SET acked_seq = MAX(acked_seq, excluded.acked_seq)",
        )
        .bind(consumer)
        .bind(seq_to_i64(acked_seq)?)
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }
}

#[async_trait]
impl ApiTokens for SqliteStore {
    async fn insert_token(&self, token: &ApiTokenRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, token_id, label, role, created_ms, expires_ms, revoked_ms) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(token.token_hash.as_slice())
        .bind(&token.token_id)
        .bind(&token.label)
        .bind(&token.role)
        .bind(token.created.as_millis())
        .bind(token.expires.map(Timestamp::as_millis))
        .bind(token.revoked.map(Timestamp::as_millis))
        .execute(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn find_token(&self, token_hash: &[u8; 32]) -> Result<Option<ApiTokenRecord>> {
        let row = sqlx::query(
            "SELECT token_hash, token_id, label, role, created_ms, expires_ms, revoked_ms \
             FROM api_tokens WHERE token_hash = ?",
        )
        .bind(token_hash.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::from_sqlx)?;
        row.map(|r| token_from_row(&r)).transpose()
    }

    async fn revoke_tokens_labelled(&self, label: &str, at: Timestamp) -> Result<u64> {
        let done = sqlx::query("UPDATE api_tokens SET revoked_ms = ? WHERE label = ? AND revoked_ms IS NULL")
            .bind(at.as_millis())
            .bind(label)
            .execute(&self.pool)
            .await
            .map_err(StoreError::from_sqlx)?;
        Ok(done.rows_affected())
    }
}

fn token_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ApiTokenRecord> {
    let hash: Vec<u8> = row.try_get("token_hash").map_err(StoreError::from_sqlx)?;
    Ok(ApiTokenRecord {
        token_hash: hash.try_into().map_err(|_| StoreError::Corrupt("token hash is not 32 bytes".into()))?,
        token_id: row.try_get("token_id").map_err(StoreError::from_sqlx)?,
        label: row.try_get("label").map_err(StoreError::from_sqlx)?,
        role: row.try_get("role").map_err(StoreError::from_sqlx)?,
        created: Timestamp(row.try_get("created_ms").map_err(StoreError::from_sqlx)?),
        expires: row.try_get::<Option<i64>, _>("expires_ms").map_err(StoreError::from_sqlx)?.map(Timestamp),
        revoked: row.try_get::<Option<i64>, _>("revoked_ms").map_err(StoreError::from_sqlx)?.map(Timestamp),
    })
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn close(&self) {
        // Fold the WAL back into the main file so the database is one
        // self-contained file at rest, then close every connection.
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&self.pool).await {
            tracing::warn!(error = %e, "wal checkpoint at shutdown failed");
        }
        self.pool.close().await;
    }
}
