//! SQLite backend: the embedded default. WAL mode with `synchronous=FULL`, so
//! a committed transaction survives power loss, in a file in the data directory.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};

use crate::{Backend, Result, Store, StoreError};

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
        crate::common::run_migrations!(MIGRATOR, &pool, Backend::Sqlite);
        Ok(Self { pool })
    }
}

crate::common::impl_shared_traits!(SqliteStore, sqlx::sqlite::SqliteRow);
crate::identity::impl_identity!(SqliteStore, sqlx::sqlite::SqliteRow);
crate::vault::impl_records!(SqliteStore, sqlx::sqlite::SqliteRow, "BEGIN IMMEDIATE");
crate::detect::impl_detections!(SqliteStore, sqlx::sqlite::SqliteRow, "BEGIN IMMEDIATE", "");
crate::devices::impl_devices!(SqliteStore, sqlx::sqlite::SqliteRow, "BEGIN IMMEDIATE", "");

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
