//! Storage for Caduceus: traits that say what is kept, and two backends that
//! keep it — SQLite in the data directory (the embedded default) and
//! PostgreSQL (chosen by a `postgres://` URL).
//!
//! This crate persists what it is given, safely and in order; it makes no
//! access decisions and knows nothing about HTTP. Every trait here has one
//! test suite (`tests/suite.rs`) that runs against both backends.

mod common;
pub mod detect;
pub mod devices;
mod identity;
mod postgres;
mod sqlite;
pub mod vault;

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use caduceus_core::Timestamp;
use caduceus_core::config::{Config, StorageTarget};
use caduceus_core::event::{EventDigest, SecurityEvent};

pub use devices::{AdvisoryRevisionRow, AdvisoryRow, DeviceRow, Devices, FindingRow, SbomRow, SightingRow};
pub use identity::{ExternalIdentity, Identities, PasskeyRecord, SessionRecord, TotpRecord, UserRecord};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// What went wrong, by kind, so callers can decide (retry, 404, 503, alarm).
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A write collided with an existing row (for example a duplicate sequence number).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database could not be reached or refused the operation.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored data failed an integrity check.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A migration failed to apply.
    #[error("migration failed: {0}")]
    Migration(String),
    /// The caller passed something the store cannot keep.
    #[error("invalid input: {0}")]
    Invalid(String),
}

impl StoreError {
    fn from_sqlx(err: sqlx::Error) -> Self {
        match &err {
            sqlx::Error::Database(db) if db.is_unique_violation() => Self::Conflict(db.message().to_owned()),
            sqlx::Error::Database(db) if db.is_check_violation() => Self::Invalid(db.message().to_owned()),
            sqlx::Error::Decode(_) | sqlx::Error::ColumnDecode { .. } => Self::Corrupt(err.to_string()),
            _ => Self::Unavailable(err.to_string()),
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One event as persisted: its place in the spine, its digest, and its
/// canonical form (computed once, by the publisher: the spine's single
/// committer and every consumer reuse it instead of serialising again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Position in the spine, from 1, without gaps.
    pub seq: u64,
    pub digest: EventDigest,
    pub event: SecurityEvent,
    /// RFC 8785 canonical JSON of `event`; `digest` is its SHA-256.
    body: String,
}

impl StoredEvent {
    pub fn new(seq: u64, event: SecurityEvent) -> Result<Self> {
        let bytes = event.canonical_bytes().map_err(|e| StoreError::Invalid(e.to_string()))?;
        let digest = EventDigest::of_canonical(&bytes);
        let body = String::from_utf8(bytes).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Self { seq, digest, event, body })
    }

    /// Rebuild from stored columns, checking the body against its digest:
    /// the stored bytes are the canonical form, so hashing them checks them
    /// byte for byte, and a body that parses but is not canonical is corrupt.
    fn from_row(seq: i64, digest: &[u8], body: &str) -> Result<Self> {
        let seq = u64::try_from(seq).map_err(|_| StoreError::Corrupt(format!("negative seq {seq}")))?;
        let actual = EventDigest::of_canonical(body.as_bytes());
        if actual.0.as_slice() != digest {
            return Err(StoreError::Corrupt(format!("event {seq}: body does not match its digest")));
        }
        let event = SecurityEvent::from_json_slice(body.as_bytes())
            .map_err(|e| StoreError::Corrupt(format!("event {seq}: {e}")))?;
        Ok(Self { seq, digest: actual, event, body: body.to_owned() })
    }

    fn body(&self) -> Result<String> {
        Ok(self.body.clone())
    }
}

/// The persisted log behind the event spine.
#[async_trait]
pub trait EventLog: Send + Sync {
    /// Append events durably, in one transaction. Their `seq` must continue
    /// the log without gaps; a reused `seq` is a [`StoreError::Conflict`].
    async fn append_events(&self, events: &[StoredEvent]) -> Result<()>;
    /// Up to `limit` events with `seq > after`, in order.
    async fn events_after(&self, after: u64, limit: u32) -> Result<Vec<StoredEvent>>;
    /// The highest `seq` stored, or 0 for an empty log.
    async fn last_seq(&self) -> Result<u64>;
}

/// Where each durable consumer of the spine has got to.
#[async_trait]
pub trait ConsumerCursors: Send + Sync {
    /// The last `seq` the consumer acknowledged, or 0.
    async fn cursor(&self, consumer: &str) -> Result<u64>;
    /// Record an acknowledgement. Cursors never move backwards.
    async fn set_cursor(&self, consumer: &str, acked_seq: u64) -> Result<()>;
}

/// An API key (bearer token) for services, devices and automation, as
/// stored: only the SHA-256 of its secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiTokenRecord {
    pub token_hash: [u8; 32],
    /// Public identifier, safe to log and show.
    pub token_id: String,
    pub label: String,
    pub role: String,
    /// Permission names the key is limited to; empty: all its role grants.
    pub scopes: Vec<String>,
    /// The user who issued it; `None` for keys made by the CLI or the demo.
    pub owner: Option<String>,
    pub created: Timestamp,
    pub expires: Option<Timestamp>,
    pub revoked: Option<Timestamp>,
}

#[async_trait]
pub trait ApiTokens: Send + Sync {
    async fn insert_token(&self, token: &ApiTokenRecord) -> Result<()>;
    async fn find_token(&self, token_hash: &[u8; 32]) -> Result<Option<ApiTokenRecord>>;
    /// Revoke every unrevoked token with this label; returns how many.
    async fn revoke_tokens_labelled(&self, label: &str, at: Timestamp) -> Result<u64>;
    /// How many tokens are neither revoked nor expired at `now`.
    async fn count_usable_tokens(&self, now: Timestamp) -> Result<u64>;
    /// Every token, newest first.
    async fn list_tokens(&self) -> Result<Vec<ApiTokenRecord>>;
    /// Revoke one token by its public id; false if unknown or already revoked.
    async fn revoke_token(&self, token_id: &str, at: Timestamp) -> Result<bool>;
}

/// Which backend a store is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Everything Caduceus keeps. Capabilities add their own traits as supertraits.
#[async_trait]
pub trait Store:
    EventLog + ConsumerCursors + ApiTokens + Identities + vault::Records + detect::Detections + devices::Devices
{
    fn backend(&self) -> Backend;
    /// Is the database reachable and answering?
    async fn ping(&self) -> Result<()>;
    /// Flush and close: checkpoint the write-ahead log, close connections.
    async fn close(&self);
}

/// Open the store a configuration names, applying pending migrations.
pub async fn open(config: &Config) -> Result<Arc<dyn Store>> {
    let target = config.storage_target().map_err(|e| StoreError::Invalid(e.to_string()))?;
    let max = config.storage.max_connections;
    Ok(match target {
        StorageTarget::Sqlite(path) => Arc::new(SqliteStore::open(&path, max).await?),
        StorageTarget::Postgres(url) => Arc::new(PostgresStore::open(&url, max).await?),
    })
}

/// Log each migration that was not in `before` (the versions applied before
/// this start-up), so operators see exactly what changed.
fn log_migrations(migrator: &sqlx::migrate::Migrator, before: &HashSet<i64>, backend: Backend) {
    for m in migrator.iter() {
        if !before.contains(&m.version) {
            tracing::info!(backend = backend.as_str(), version = m.version, description = %m.description, "applied migration");
        }
    }
}

fn seq_to_i64(seq: u64) -> Result<i64> {
    i64::try_from(seq).map_err(|_| StoreError::Invalid(format!("seq {seq} out of range")))
}

/// A connection error that never echoes the URL: it may carry a password.
fn connect_error(err: &sqlx::Error) -> StoreError {
    StoreError::Unavailable(format!("cannot connect to postgresql: {}", describe_connect_error(err)))
}

fn describe_connect_error(err: &sqlx::Error) -> String {
    match err {
        sqlx::Error::Io(io) => io.to_string(),
        sqlx::Error::Tls(_) => "tls handshake failed".into(),
        sqlx::Error::PoolTimedOut => "timed out".into(),
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Configuration(_) => "invalid connection url".into(),
        _ => "connection failed".into(),
    }
}
