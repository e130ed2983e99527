//! The storage test suite: every test is written once and run against each
//! backend (SQLite in a temporary directory, and a fresh PostgreSQL database).
//!
//! PostgreSQL is found at `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it cannot be reached
//! the PostgreSQL tests print a loud SKIPPED line — unless
//! `TEST_REQUIRE_POSTGRES=1` (set by `.ci/run`), when they fail instead.
//!
//! This is the crate's only integration-test binary: add tests here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;

use caduceus_core::config::Config;
use caduceus_core::event::{EventId, LifecyclePhase};
use caduceus_core::{Actor, Payload, Redacted, SecurityEvent, Severity, Status, Target, Timestamp};
use caduceus_store::{ApiTokenRecord, Backend, Store, StoreError, StoredEvent};

/// One backend under test, and how to reach it again.
struct Harness {
    store: Arc<dyn Store>,
    config: Config,
    /// Raw SQL access for tamper tests, and the database to drop afterwards.
    postgres: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Harness {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::with_data_dir(dir.path());
        let store = caduceus_store::open(&config).await.unwrap();
        Self { store, config, postgres: None, _dir: Some(dir) }
    }

    async fn postgres() -> Option<Self> {
        let admin_url = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let admin = match sqlx::PgPool::connect(&admin_url).await {
            Ok(pool) => pool,
            Err(e) => {
                if std::env::var("TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!("TEST_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: {e}");
                }
                eprintln!("\n*** SKIPPED: PostgreSQL backend test: cannot connect ({e}). ***\n");
                return None;
            }
        };
        let name = format!("caduceus_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&admin).await.unwrap();
        admin.close().await;
        let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        let url = format!("{base}/{name}");
        let mut config = Config::with_data_dir("/nonexistent");
        config.storage.url = Some(Redacted::new(url));
        let store = caduceus_store::open(&config).await.unwrap();
        Some(Self { store, config, postgres: Some((admin_url, name)), _dir: None })
    }

    /// Close and open the same database again.
    async fn reopen(&mut self) {
        self.store.close().await;
        self.store = caduceus_store::open(&self.config).await.unwrap();
    }

    /// Run raw SQL against the backend, bypassing the store.
    async fn raw(&self, sql: &'static str) {
        match &self.postgres {
            Some(_) => {
                let url = self.config.storage.url.as_ref().unwrap().expose().clone();
                let pool = sqlx::PgPool::connect(&url).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
            None => {
                let path = self.config.data_dir.join("caduceus.db");
                let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display())).await.unwrap();
                sqlx::query(sql).execute(&pool).await.unwrap();
                pool.close().await;
            }
        }
    }

    async fn cleanup(self) {
        self.store.close().await;
        if let Some((admin_url, name)) = self.postgres {
            let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

macro_rules! store_suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $test() {
                    let mut harness = super::Harness::sqlite().await;
                    assert_eq!(harness.store.backend(), caduceus_store::Backend::Sqlite);
                    super::$test(&mut harness).await;
                    harness.cleanup().await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test]
                async fn $test() {
                    let Some(mut harness) = super::Harness::postgres().await else { return };
                    assert_eq!(harness.store.backend(), caduceus_store::Backend::Postgres);
                    super::$test(&mut harness).await;
                    harness.cleanup().await;
                }
            )*
        }
    };
}

store_suite!(
    empty_store,
    events_round_trip_in_order_with_paging,
    duplicate_seq_is_a_conflict_and_batches_are_atomic,
    data_survives_reopen_and_migrations_are_idempotent,
    tampered_event_is_detected,
    cursors_never_move_backwards,
    api_tokens_are_found_by_hash_and_revoked_by_label,
);

fn event(n: u64) -> SecurityEvent {
    let at = Timestamp(1_764_428_400_000 + i64::try_from(n).unwrap());
    SecurityEvent::new(
        EventId(uuid::Uuid::from_u128(0x0193_0000_0000_7000_8000_0000_0000_0000 + u128::from(n))),
        at,
        Severity::Informational,
        Status::Success,
        Actor::system(),
        Some(Target { kind: "config".into(), uid: format!("setting.{n}") }),
        format!("event number {n}"),
        Payload::ConfigChange { key: format!("setting.{n}"), detail: "ünïcödé ✓ \"quoted\"".into() },
    )
    .unwrap()
}

fn stored(seq: u64) -> StoredEvent {
    StoredEvent::new(seq, event(seq)).unwrap()
}

async fn empty_store(h: &mut Harness) {
    h.store.ping().await.unwrap();
    assert_eq!(h.store.last_seq().await.unwrap(), 0);
    assert!(h.store.events_after(0, 10).await.unwrap().is_empty());
    assert_eq!(h.store.cursor("ledger").await.unwrap(), 0);
    assert_eq!(h.store.find_token(&[7; 32]).await.unwrap(), None);
    assert_eq!(h.store.count_usable_tokens(Timestamp(0)).await.unwrap(), 0);
}

async fn events_round_trip_in_order_with_paging(h: &mut Harness) {
    let batch: Vec<StoredEvent> = (1..=5).map(stored).collect();
    h.store.append_events(&batch).await.unwrap();
    h.store.append_events(&[stored(6)]).await.unwrap();
    assert_eq!(h.store.last_seq().await.unwrap(), 6);

    let all = h.store.events_after(0, 100).await.unwrap();
    assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2, 3, 4, 5, 6]);
    for (got, seq) in all.iter().zip(1..) {
        assert_eq!(*got, stored(seq), "event {seq} changed on the way through storage");
        assert_eq!(got.digest, got.event.digest().unwrap());
    }
    let page = h.store.events_after(2, 3).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![3, 4, 5]);
    assert!(h.store.events_after(6, 10).await.unwrap().is_empty());
}

async fn duplicate_seq_is_a_conflict_and_batches_are_atomic(h: &mut Harness) {
    h.store.append_events(&[stored(1), stored(2)]).await.unwrap();
    let err = h.store.append_events(&[stored(2)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // A batch whose second event collides leaves nothing behind.
    let err = h.store.append_events(&[stored(3), stored(1)]).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.store.last_seq().await.unwrap(), 2);
}

async fn data_survives_reopen_and_migrations_are_idempotent(h: &mut Harness) {
    h.store.append_events(&[stored(1), stored(2), stored(3)]).await.unwrap();
    h.store.set_cursor("ledger", 2).await.unwrap();
    h.reopen().await;
    h.reopen().await;
    assert_eq!(h.store.last_seq().await.unwrap(), 3);
    assert_eq!(h.store.cursor("ledger").await.unwrap(), 2);
    assert_eq!(h.store.events_after(0, 10).await.unwrap().len(), 3);
}

async fn tampered_event_is_detected(h: &mut Harness) {
    h.store.append_events(&[stored(1), stored(2)]).await.unwrap();
    h.raw("UPDATE events SET body = replace(body, 'event number 2', 'event number 9') WHERE seq = 2").await;
    let err = h.store.events_after(0, 10).await.unwrap_err();
    assert!(matches!(err, StoreError::Corrupt(ref m) if m.contains("event 2")), "{err:?}");
}

async fn cursors_never_move_backwards(h: &mut Harness) {
    h.store.set_cursor("ledger", 5).await.unwrap();
    h.store.set_cursor("ledger", 3).await.unwrap();
    assert_eq!(h.store.cursor("ledger").await.unwrap(), 5);
    h.store.set_cursor("detect", 1).await.unwrap();
    assert_eq!(h.store.cursor("detect").await.unwrap(), 1);
    assert_eq!(h.store.cursor("ledger").await.unwrap(), 5);
}

async fn api_tokens_are_found_by_hash_and_revoked_by_label(h: &mut Harness) {
    let token = |hash: u8, id: &str, label: &str| ApiTokenRecord {
        token_hash: [hash; 32],
        token_id: id.into(),
        label: label.into(),
        role: "admin".into(),
        created: Timestamp(1_000),
        expires: Some(Timestamp(9_000)),
        revoked: None,
    };
    h.store.insert_token(&token(1, "tok_a", "demo-admin")).await.unwrap();
    h.store.insert_token(&token(2, "tok_b", "demo-admin")).await.unwrap();
    h.store.insert_token(&token(3, "tok_c", "ops")).await.unwrap();
    let err = h.store.insert_token(&token(4, "tok_a", "ops")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

    assert_eq!(h.store.find_token(&[1; 32]).await.unwrap(), Some(token(1, "tok_a", "demo-admin")));
    assert_eq!(h.store.revoke_tokens_labelled("demo-admin", Timestamp(5_000)).await.unwrap(), 2);
    assert_eq!(h.store.revoke_tokens_labelled("demo-admin", Timestamp(6_000)).await.unwrap(), 0);
    assert_eq!(h.store.find_token(&[2; 32]).await.unwrap().unwrap().revoked, Some(Timestamp(5_000)));
    assert_eq!(h.store.find_token(&[3; 32]).await.unwrap().unwrap().revoked, None);
    // One left unrevoked, usable until it expires at 9000.
    assert_eq!(h.store.count_usable_tokens(Timestamp(8_999)).await.unwrap(), 1);
    assert_eq!(h.store.count_usable_tokens(Timestamp(9_000)).await.unwrap(), 0);
}

#[test]
fn backend_names() {
    assert_eq!(Backend::Sqlite.as_str(), "sqlite");
    assert_eq!(Backend::Postgres.as_str(), "postgres");
}

#[tokio::test]
async fn lifecycle_payload_round_trips() {
    let mut h = Harness::sqlite().await;
    let at = Timestamp(42);
    let e = SecurityEvent::new(
        EventId::new(at),
        at,
        Severity::Informational,
        Status::Success,
        Actor::system(),
        None,
        "caduceus started",
        Payload::ServiceLifecycle { phase: LifecyclePhase::Started, version: "0.1.0".into() },
    )
    .unwrap();
    h.store.append_events(&[StoredEvent::new(1, e.clone()).unwrap()]).await.unwrap();
    h.reopen().await;
    assert_eq!(h.store.events_after(0, 1).await.unwrap()[0].event, e);
    h.cleanup().await;
}
