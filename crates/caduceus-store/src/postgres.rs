//! PostgreSQL backend, chosen by a `postgres://` URL, for sites that outgrow
//! one machine or already run PostgreSQL with backups and replication.

use std::time::Duration;

use async_trait::async_trait;
use caduceus_core::Redacted;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::{Backend, Result, Store, StoreError, connect_error};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    pub async fn open(url: &Redacted<String>, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url.expose())
            .await
            .map_err(|e| connect_error(&e))?;
        crate::common::run_migrations!(MIGRATOR, &pool, Backend::Postgres);
        Ok(Self { pool })
    }
}

crate::common::impl_shared_traits!(PostgresStore, sqlx::postgres::PgRow);
crate::identity::impl_identity!(PostgresStore, sqlx::postgres::PgRow);
crate::vault::impl_records!(PostgresStore, sqlx::postgres::PgRow, "BEGIN");
crate::detect::impl_detections!(
    PostgresStore,
    sqlx::postgres::PgRow,
    "BEGIN",
    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
);
crate::devices::impl_devices!(PostgresStore, sqlx::postgres::PgRow, "BEGIN", " FOR UPDATE");

#[async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(StoreError::from_sqlx)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
