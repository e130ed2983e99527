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
use caduceus_store::{
    ApiTokenRecord, Backend, ExternalIdentity, PasskeyRecord, SessionRecord, Store, StoreError, StoredEvent,
    TotpRecord, UserRecord,
};

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
    api_keys_keep_scopes_and_owner_and_revoke_one_by_id,
    users_are_unique_paged_and_updated,
    totp_steps_are_single_use_under_parallel_requests,
    recovery_codes_are_single_use,
    passkeys_round_trip_and_update,
    sessions_are_found_elevated_and_revoked,
    record_versions_keep_their_history_and_expectations,
    record_search_matches_terms_ranges_and_compartments,
    shredding_destroys_the_key_and_the_search_terms,
    data_keys_are_inserted_once_and_rewrapped_by_compare_and_set,
    break_glass_grants_expire_and_are_reviewed_once,
    assignments_and_the_access_index,
    detection_rules_and_their_enabled_state_survive_a_restart,
    findings_group_into_one_alert_per_rule_entity_and_window,
    parallel_findings_of_one_group_make_one_alert,
    alerts_are_filtered_and_paged_newest_first,
    triage_steps_follow_the_alert_status,
    suppressions_silence_matching_findings_until_they_expire,
    devices_are_upserted_paged_and_deleted_with_their_findings,
    sboms_are_one_per_model_version_and_replaced,
    advisories_keep_one_current_revision_and_every_revision_in_history,
    sightings_merge_first_and_last_seen_and_add_flows,
    findings_return_their_previous_status_and_are_pruned_per_device,
    parallel_puts_of_one_finding_see_each_others_status,
    device_inventory_caps_are_enforced,
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
        scopes: vec![],
        owner: None,
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

fn user(n: u32, username: &str) -> UserRecord {
    UserRecord {
        user_id: format!("00000000-0000-4000-8000-{n:012}"),
        username: username.into(),
        display_name: format!("User {n}"),
        roles: vec!["clinician".into(), "nurse".into()],
        password_hash: Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into()),
        patient_ref: None,
        external: None,
        disabled: None,
        created: Timestamp(1_000),
        updated: Timestamp(1_000),
    }
}

async fn api_keys_keep_scopes_and_owner_and_revoke_one_by_id(h: &mut Harness) {
    let key = ApiTokenRecord {
        token_hash: [9; 32],
        token_id: "tok_pump".into(),
        label: "infusion pumps".into(),
        role: "device-service".into(),
        scopes: vec!["publish_events".into()],
        owner: Some(user(1, "alice").user_id),
        created: Timestamp(2_000),
        expires: None,
        revoked: None,
    };
    h.store.insert_token(&key).await.unwrap();
    let mut older = key.clone();
    older.token_hash = [8; 32];
    older.token_id = "tok_old".into();
    older.created = Timestamp(1_000);
    h.store.insert_token(&older).await.unwrap();
    assert_eq!(h.store.find_token(&[9; 32]).await.unwrap(), Some(key.clone()));
    let ids: Vec<String> = h.store.list_tokens().await.unwrap().into_iter().map(|t| t.token_id).collect();
    assert_eq!(ids, ["tok_pump", "tok_old"], "newest first");
    assert!(h.store.revoke_token("tok_pump", Timestamp(3_000)).await.unwrap());
    assert!(!h.store.revoke_token("tok_pump", Timestamp(4_000)).await.unwrap(), "already revoked");
    assert!(!h.store.revoke_token("tok_nope", Timestamp(4_000)).await.unwrap());
    assert_eq!(h.store.find_token(&[9; 32]).await.unwrap().unwrap().revoked, Some(Timestamp(3_000)));
    assert_eq!(h.store.find_token(&[8; 32]).await.unwrap().unwrap().revoked, None);
}

async fn users_are_unique_paged_and_updated(h: &mut Harness) {
    assert_eq!(h.store.count_users().await.unwrap(), 0);
    for (n, name) in [(1, "carol"), (2, "alice"), (3, "bob")] {
        h.store.create_user(&user(n, name)).await.unwrap();
    }
    let err = h.store.create_user(&user(4, "alice")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = h.store.create_user(&user(1, "dave")).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "a reused user id: {err:?}");
    assert_eq!(h.store.count_users().await.unwrap(), 3);

    let page: Vec<String> = h.store.list_users("", 2).await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(page, ["alice", "bob"]);
    let page: Vec<String> = h.store.list_users("bob", 2).await.unwrap().into_iter().map(|u| u.username).collect();
    assert_eq!(page, ["carol"]);

    let mut alice = h.store.user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(alice, user(2, "alice"));
    assert_eq!(h.store.user_by_id(&alice.user_id).await.unwrap().unwrap().username, "alice");
    alice.roles = vec!["admin".into()];
    alice.password_hash = None;
    alice.disabled = Some(Timestamp(5_000));
    alice.external = Some(ExternalIdentity { issuer: "https://idp.example".into(), subject: "a-1".into() });
    alice.updated = Timestamp(5_000);
    assert!(h.store.update_user(&alice).await.unwrap());
    h.reopen().await;
    assert_eq!(h.store.user_by_external("https://idp.example", "a-1").await.unwrap(), Some(alice.clone()));
    assert_eq!(h.store.user_by_external("https://idp.example", "b-2").await.unwrap(), None);
    let mut ghost = user(9, "ghost");
    ghost.roles.clear();
    assert!(!h.store.update_user(&ghost).await.unwrap());
    assert_eq!(h.store.user_by_username("ghost").await.unwrap(), None);
}

async fn totp_steps_are_single_use_under_parallel_requests(h: &mut Harness) {
    let alice = user(1, "alice");
    h.store.create_user(&alice).await.unwrap();
    let id = alice.user_id.clone();
    let totp = TotpRecord {
        secret: b"12345678901234567890".to_vec(),
        algorithm: "SHA1".into(),
        digits: 6,
        period: 30,
        confirmed: None,
        last_step: -1,
    };
    h.store.put_totp(&id, &totp).await.unwrap();
    assert!(!h.store.use_totp_step(&id, 100).await.unwrap(), "an unconfirmed secret accepts no code");
    assert!(h.store.confirm_totp(&id, 100, Timestamp(7_000)).await.unwrap());
    assert!(!h.store.confirm_totp(&id, 101, Timestamp(7_000)).await.unwrap(), "confirmed once");
    assert!(!h.store.use_totp_step(&id, 100).await.unwrap(), "the enrolment code is spent");

    // Twenty parallel uses of the same step: exactly one wins.
    let wins = futures_join((0..20).map(|_| {
        let store = h.store.clone();
        let id = id.clone();
        async move { store.use_totp_step(&id, 101).await.unwrap() }
    }))
    .await;
    assert_eq!(wins.iter().filter(|w| **w).count(), 1);
    assert!(!h.store.use_totp_step(&id, 99).await.unwrap(), "no going back");
    assert!(h.store.use_totp_step(&id, 102).await.unwrap());
    let stored = h.store.totp(&id).await.unwrap().unwrap();
    assert_eq!((stored.last_step, stored.confirmed), (102, Some(Timestamp(7_000))));
    assert!(h.store.delete_totp(&id).await.unwrap());
    assert_eq!(h.store.totp(&id).await.unwrap(), None);
}

async fn futures_join<F: std::future::Future<Output = bool> + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<bool> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

async fn recovery_codes_are_single_use(h: &mut Harness) {
    let alice = user(1, "alice");
    h.store.create_user(&alice).await.unwrap();
    let id = &alice.user_id;
    h.store.replace_recovery_codes(id, &[[1; 32], [2; 32], [3; 32]]).await.unwrap();
    assert_eq!(h.store.unused_recovery_codes(id).await.unwrap(), 3);
    assert!(h.store.use_recovery_code(id, &[2; 32], Timestamp(1)).await.unwrap());
    assert!(!h.store.use_recovery_code(id, &[2; 32], Timestamp(2)).await.unwrap(), "spent");
    assert!(!h.store.use_recovery_code(id, &[7; 32], Timestamp(2)).await.unwrap(), "unknown");
    assert!(!h.store.use_recovery_code("someone-else", &[1; 32], Timestamp(2)).await.unwrap());
    assert_eq!(h.store.unused_recovery_codes(id).await.unwrap(), 2);
    h.store.replace_recovery_codes(id, &[[4; 32]]).await.unwrap();
    assert_eq!(h.store.unused_recovery_codes(id).await.unwrap(), 1);
    assert!(!h.store.use_recovery_code(id, &[1; 32], Timestamp(3)).await.unwrap(), "old codes are gone");
}

async fn passkeys_round_trip_and_update(h: &mut Harness) {
    let alice = user(1, "alice");
    h.store.create_user(&alice).await.unwrap();
    let key = PasskeyRecord {
        credential_id: vec![0xca, 0xfe, 0x00, 0x01],
        user_id: alice.user_id.clone(),
        name: "ward laptop".into(),
        passkey: r#"{"counter":1}"#.into(),
        created: Timestamp(1_000),
        last_used: None,
    };
    h.store.insert_passkey(&key).await.unwrap();
    let err = h.store.insert_passkey(&key).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(h.store.passkeys_of(&alice.user_id).await.unwrap(), vec![key.clone()]);
    assert!(h.store.update_passkey(&key.credential_id, r#"{"counter":2}"#, Timestamp(2_000)).await.unwrap());
    let stored = h.store.passkeys_of(&alice.user_id).await.unwrap().remove(0);
    assert_eq!((stored.passkey.as_str(), stored.last_used), (r#"{"counter":2}"#, Some(Timestamp(2_000))));
    assert!(!h.store.delete_passkey("someone-else", &key.credential_id).await.unwrap());
    assert!(h.store.delete_passkey(&alice.user_id, &key.credential_id).await.unwrap());
    assert!(h.store.passkeys_of(&alice.user_id).await.unwrap().is_empty());
}

async fn sessions_are_found_elevated_and_revoked(h: &mut Harness) {
    let alice = user(1, "alice");
    h.store.create_user(&alice).await.unwrap();
    let session = |hash: u8| SessionRecord {
        session_hash: [hash; 32],
        session_id: format!("ses_{hash}"),
        user_id: alice.user_id.clone(),
        kind: "cookie".into(),
        methods: vec!["password".into(), "totp".into()],
        source: "10.0.0.7".into(),
        created: Timestamp(1_000),
        last_seen: Timestamp(1_000),
        expires: Timestamp(50_000),
        elevated_until: None,
        revoked: None,
    };
    for n in 1..=3 {
        h.store.insert_session(&session(n)).await.unwrap();
    }
    assert_eq!(h.store.find_session(&[1; 32]).await.unwrap(), Some(session(1)));
    h.store.touch_session(&[1; 32], Timestamp(2_000)).await.unwrap();
    h.store.touch_session(&[1; 32], Timestamp(1_500)).await.unwrap();
    assert!(h.store.elevate_session(&[1; 32], Timestamp(9_000)).await.unwrap());
    let found = h.store.find_session(&[1; 32]).await.unwrap().unwrap();
    assert_eq!((found.last_seen, found.elevated_until), (Timestamp(2_000), Some(Timestamp(9_000))));

    assert!(h.store.revoke_session(&[2; 32], Timestamp(3_000)).await.unwrap());
    assert!(!h.store.revoke_session(&[2; 32], Timestamp(3_500)).await.unwrap());
    // "Log out everywhere else": session 1 stays, 3 goes, 2 was already gone.
    assert_eq!(h.store.revoke_sessions_of(&alice.user_id, Some(&[1; 32]), Timestamp(4_000)).await.unwrap(), 1);
    let states: Vec<Option<Timestamp>> =
        h.store.sessions_of(&alice.user_id).await.unwrap().into_iter().map(|s| s.revoked).collect();
    assert_eq!(states, [None, Some(Timestamp(3_000)), Some(Timestamp(4_000))]);
    assert!(!h.store.elevate_session(&[3; 32], Timestamp(9_000)).await.unwrap(), "revoked stays revoked");
    assert_eq!(h.store.revoke_sessions_of(&alice.user_id, None, Timestamp(5_000)).await.unwrap(), 1);
    assert_eq!(h.store.find_session(&[9; 32]).await.unwrap(), None);
}

// ----- the vault's records -------------------------------------------------

use caduceus_store::vault::{
    BreakGlassRow, Expected, IndexRow, IndexValue, KeyRow, QueryClause, QueryMatch, RangeCond, RangePrefix,
    RecordQuery, RecordWrite, SortField, VersionRow,
};

fn version(t: &str, id: &str, v: u64, compartment: &str, at: i64) -> VersionRow {
    VersionRow {
        resource_type: t.into(),
        id: id.into(),
        version: v,
        compartment: compartment.into(),
        updated: Timestamp(at),
        deleted: false,
        sealed: Some(format!("sealed {t}/{id}/{v}").into_bytes()),
    }
}

fn write(row: VersionRow, expected: Expected, index: Vec<IndexRow>) -> RecordWrite {
    RecordWrite { row, expected, index }
}

fn term(param: &str, t: &str) -> IndexRow {
    IndexRow { param: param.into(), value: IndexValue::Term(t.into()) }
}

fn range(param: &str, lo: i64, hi: i64) -> IndexRow {
    IndexRow { param: param.into(), value: IndexValue::Range { lo, hi } }
}

async fn record_versions_keep_their_history_and_expectations(h: &mut Harness) {
    let s = &h.store;
    s.write_records(&[write(
        version("Patient", "p1", 1, "Patient/p1", 10),
        Expected::Absent,
        vec![term("family", "aa")],
    )])
    .await
    .unwrap();
    // A second create of the same id is a conflict; so is a stale version.
    let again =
        s.write_records(&[write(version("Patient", "p1", 1, "Patient/p1", 11), Expected::Absent, vec![])]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let stale =
        s.write_records(&[write(version("Patient", "p1", 2, "Patient/p1", 11), Expected::Version(5), vec![])]).await;
    assert!(matches!(stale, Err(StoreError::Conflict(_))), "{stale:?}");
    s.write_records(&[write(
        version("Patient", "p1", 2, "Patient/p1", 12),
        Expected::Version(1),
        vec![term("family", "bb")],
    )])
    .await
    .unwrap();
    let current = s.current_record("Patient", "p1").await.unwrap().unwrap();
    assert_eq!((current.version, current.sealed.as_deref()), (2, Some(&b"sealed Patient/p1/2"[..])));
    let v1 = s.record_version("Patient", "p1", 1).await.unwrap().unwrap();
    assert_eq!(v1.sealed.as_deref(), Some(&b"sealed Patient/p1/1"[..]));
    let history = s.record_history("Patient", "p1", 10).await.unwrap();
    assert_eq!(history.iter().map(|v| v.version).collect::<Vec<_>>(), [2, 1]);
    // The index follows the current version only.
    let by = |t: &str| RecordQuery {
        resource_type: Some("Patient".into()),
        clauses: vec![QueryClause { param: "family".into(), any_of: vec![QueryMatch::Term(t.into())] }],
        limit: 10,
        ..RecordQuery::default()
    };
    assert!(s.search_records(&by("aa")).await.unwrap().0.is_empty());
    assert_eq!(s.search_records(&by("bb")).await.unwrap().0.len(), 1);
    // A transaction is atomic: one bad write stores nothing.
    let batch = [
        write(version("Observation", "o1", 1, "Patient/p1", 13), Expected::Absent, vec![]),
        write(version("Patient", "p1", 3, "Patient/p1", 13), Expected::Version(1), vec![]),
    ];
    assert!(s.write_records(&batch).await.is_err());
    assert!(s.current_record("Observation", "o1").await.unwrap().is_none());
    // A deletion is a version without a body; a create may follow it.
    let mut gone = version("Patient", "p1", 3, "Patient/p1", 14);
    gone.deleted = true;
    gone.sealed = None;
    s.write_records(&[write(gone, Expected::Version(2), vec![])]).await.unwrap();
    assert!(s.search_records(&by("bb")).await.unwrap().0.is_empty(), "a deleted resource is not found");
    s.write_records(&[write(version("Patient", "p1", 4, "Patient/p1", 15), Expected::Absent, vec![])]).await.unwrap();
    assert_eq!(s.count_records().await.unwrap(), [("Patient".to_owned(), 1)]);
}

async fn record_search_matches_terms_ranges_and_compartments(h: &mut Harness) {
    let s = &h.store;
    let day = 86_400_000;
    let mut writes = Vec::new();
    for i in 0..6i64 {
        let id = format!("o{i}");
        let patient = if i % 2 == 0 { "Patient/a" } else { "Patient/b" };
        let v = version("Observation", &id, 1, patient, 100 + i);
        let index = vec![term("code", if i < 3 { "hr" } else { "temp" }), range("date", i * day, i * day + day - 1)];
        writes.push(write(v, Expected::Absent, index));
    }
    s.write_records(&writes).await.unwrap();
    let query = |clauses: Vec<QueryClause>| RecordQuery {
        resource_type: Some("Observation".into()),
        clauses,
        sort: vec![(SortField::Id, false)],
        limit: 100,
        with_total: true,
        ..RecordQuery::default()
    };
    let ids = |rows: Vec<VersionRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let date = |prefix, lo, hi| QueryClause {
        param: "date".into(),
        any_of: vec![QueryMatch::Range(RangeCond { prefix, lo, hi })],
    };
    let code = |t: &str| QueryClause { param: "code".into(), any_of: vec![QueryMatch::Term(t.into())] };
    let (rows, total) = s.search_records(&query(vec![code("hr")])).await.unwrap();
    assert_eq!((ids(rows), total), (vec!["o0".to_owned(), "o1".into(), "o2".into()], Some(3)));
    // Day 2 exactly; from day 4 on; before day 1; AND of two clauses.
    let (rows, _) = s.search_records(&query(vec![date(RangePrefix::Eq, 2 * day, 3 * day - 1)])).await.unwrap();
    assert_eq!(ids(rows), ["o2"]);
    let (rows, _) = s.search_records(&query(vec![date(RangePrefix::Ge, 4 * day, 5 * day - 1)])).await.unwrap();
    assert_eq!(ids(rows), ["o4", "o5"]);
    let (rows, _) = s.search_records(&query(vec![date(RangePrefix::Lt, day, 2 * day - 1)])).await.unwrap();
    assert_eq!(ids(rows), ["o0"]);
    let (rows, _) =
        s.search_records(&query(vec![date(RangePrefix::Sa, 3 * day, 4 * day - 1), code("temp")])).await.unwrap();
    assert_eq!(ids(rows), ["o4", "o5"]);
    // Comma: either value.
    let either = QueryClause {
        param: "code".into(),
        any_of: vec![QueryMatch::Term("hr".into()), QueryMatch::Term("temp".into())],
    };
    assert_eq!(s.search_records(&query(vec![either])).await.unwrap().1, Some(6));
    // A patient's own compartment only; paging; newest first by default.
    let mine = RecordQuery { compartments: Some(vec!["Patient/b".into()]), ..query(vec![]) };
    assert_eq!(ids(s.search_records(&mine).await.unwrap().0), ["o1", "o3", "o5"]);
    let page = RecordQuery { limit: 2, offset: 2, sort: vec![], with_total: false, ..query(vec![]) };
    assert_eq!(ids(s.search_records(&page).await.unwrap().0), ["o3", "o2"]);
    let by_date = RecordQuery { sort: vec![(SortField::Date, true)], limit: 1, ..query(vec![]) };
    assert_eq!(ids(s.search_records(&by_date).await.unwrap().0), ["o5"]);
    let rows = s.compartment_records("Patient/a", ("", ""), 10).await.unwrap();
    assert_eq!(ids(rows), ["o0", "o2", "o4"]);
    let rows = s.compartment_records("Patient/a", ("Observation", "o0"), 10).await.unwrap();
    assert_eq!(ids(rows), ["o2", "o4"]);
    let updated =
        RecordQuery { updated: vec![RangeCond { prefix: RangePrefix::Ge, lo: 104, hi: 104 }], ..query(vec![]) };
    assert_eq!(ids(s.search_records(&updated).await.unwrap().0), ["o4", "o5"]);
}

fn key(compartment: &str, kek: &str) -> KeyRow {
    KeyRow {
        compartment: compartment.into(),
        wrapped: Some(format!("wrapped {compartment}").into_bytes()),
        kek_id: kek.into(),
        created: Timestamp(1),
        shredded: None,
        legal_hold: None,
    }
}

async fn shredding_destroys_the_key_and_the_search_terms(h: &mut Harness) {
    let s = &h.store;
    s.insert_key(&key("Patient/a", "k1")).await.unwrap();
    s.insert_key(&key("Patient/b", "k1")).await.unwrap();
    s.write_records(&[
        write(version("Patient", "a", 1, "Patient/a", 1), Expected::Absent, vec![term("family", "x")]),
        write(version("Patient", "b", 1, "Patient/b", 1), Expected::Absent, vec![term("family", "x")]),
    ])
    .await
    .unwrap();
    // A legal hold blocks it.
    assert!(s.set_legal_hold("Patient/a", Some("litigation 2026-114")).await.unwrap());
    assert!(!s.shred("Patient/a", Timestamp(5)).await.unwrap());
    assert!(s.key("Patient/a").await.unwrap().unwrap().wrapped.is_some());
    assert!(s.set_legal_hold("Patient/a", None).await.unwrap());
    assert!(s.shred("Patient/a", Timestamp(6)).await.unwrap());
    assert!(!s.shred("Patient/a", Timestamp(7)).await.unwrap(), "only once");
    let tombstone = s.key("Patient/a").await.unwrap().unwrap();
    assert_eq!((tombstone.wrapped, tombstone.shredded), (None, Some(Timestamp(6))));
    assert!(s.current_record("Patient", "a").await.unwrap().is_none());
    assert!(s.record_version("Patient", "a", 1).await.unwrap().is_some(), "the ciphertext stays, unreadable");
    let q = RecordQuery {
        clauses: vec![QueryClause { param: "family".into(), any_of: vec![QueryMatch::Term("x".into())] }],
        limit: 10,
        ..RecordQuery::default()
    };
    assert_eq!(s.search_records(&q).await.unwrap().0.len(), 1, "only the other patient is found");
}

async fn data_keys_are_inserted_once_and_rewrapped_by_compare_and_set(h: &mut Harness) {
    let s = &h.store;
    assert!(s.insert_key(&key("Patient/a", "k1")).await.unwrap());
    assert!(!s.insert_key(&key("Patient/a", "k2")).await.unwrap(), "the first key wins");
    assert_eq!(s.key("Patient/a").await.unwrap().unwrap().kek_id, "k1");
    s.insert_key(&key("shared", "k1")).await.unwrap();
    assert!(!s.rewrap_key("Patient/a", "k0", b"new", "k2").await.unwrap(), "wrong old kek");
    assert!(s.rewrap_key("Patient/a", "k1", b"new", "k2").await.unwrap());
    let row = s.key("Patient/a").await.unwrap().unwrap();
    assert_eq!((row.kek_id.as_str(), row.wrapped.as_deref()), ("k2", Some(&b"new"[..])));
    let all = s.keys_after("", 10).await.unwrap();
    assert_eq!(all.iter().map(|k| k.compartment.as_str()).collect::<Vec<_>>(), ["Patient/a", "shared"]);
    assert_eq!(s.keys_after("Patient/a", 10).await.unwrap().len(), 1);
}

async fn break_glass_grants_expire_and_are_reviewed_once(h: &mut Harness) {
    let s = &h.store;
    let grant = |id: &str, created: i64| BreakGlassRow {
        grant_id: id.into(),
        user_id: "u1".into(),
        patient_id: "p1".into(),
        reason: b"sealed reason".to_vec(),
        created: Timestamp(created),
        expires: Timestamp(created + 1000),
        reviewed: None,
        reviewer: None,
        review_outcome: None,
        review_note: None,
    };
    s.insert_break_glass(&grant("bg-1", 100)).await.unwrap();
    s.insert_break_glass(&grant("bg-2", 5000)).await.unwrap();
    assert_eq!(s.active_break_glass("u1", "p1", Timestamp(500)).await.unwrap().len(), 1);
    assert!(s.active_break_glass("u1", "p1", Timestamp(1100)).await.unwrap().is_empty(), "expired");
    assert!(s.active_break_glass("u2", "p1", Timestamp(500)).await.unwrap().is_empty(), "another user");
    assert_eq!(s.count_break_glass_since("u1", Timestamp(0)).await.unwrap(), 2);
    assert_eq!(s.list_break_glass(true, 10).await.unwrap().len(), 2);
    assert!(s.review_break_glass("bg-1", "auditor", "justified", Some(b"note"), Timestamp(6000)).await.unwrap());
    assert!(!s.review_break_glass("bg-1", "auditor", "unjustified", None, Timestamp(6001)).await.unwrap(), "once");
    let pending = s.list_break_glass(true, 10).await.unwrap();
    assert_eq!(pending.iter().map(|g| g.grant_id.as_str()).collect::<Vec<_>>(), ["bg-2"]);
    let reviewed = s.break_glass("bg-1").await.unwrap().unwrap();
    assert_eq!(reviewed.review_outcome.as_deref(), Some("justified"));
}

async fn assignments_and_the_access_index(h: &mut Harness) {
    let s = &h.store;
    s.put_assignment("u1", "p1", "ward 7 admission", Timestamp(1)).await.unwrap();
    assert_eq!(s.assignment("u1", "p1").await.unwrap().as_deref(), Some("ward 7 admission"));
    assert!(s.delete_assignment("u1", "p1").await.unwrap());
    assert!(s.assignment("u1", "p1").await.unwrap().is_none());
    s.append_events(&[stored(1), stored(2), stored(3)]).await.unwrap();
    s.record_access(&[(1, vec!["p1".into(), "p2".into()]), (3, vec!["p1".into()])]).await.unwrap();
    s.record_access(&[(3, vec!["p1".into()])]).await.unwrap();
    s.record_access(&[]).await.unwrap();
    let log = s.access_events("p1", 0, 10).await.unwrap();
    assert_eq!(log.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 3]);
    assert_eq!(s.access_events("p1", 1, 10).await.unwrap().len(), 1);
    assert_eq!(s.access_events("p2", 0, 10).await.unwrap().len(), 1);
    let uid = log[0].event.uid().to_string();
    assert_eq!(s.event_by_uid(&uid).await.unwrap().unwrap().seq, 1);
    assert!(s.event_by_uid("nope").await.unwrap().is_none());
}

// ----- detection: rules, alerts, suppressions ------------------------------

use caduceus_store::detect::{
    AlertAction, AlertFilter, AlertStatus, MAX_ALERT_EVENTS, NewAlert, RuleRow, SuppressionRow, Upsert,
};

fn rule(id: &str, enabled: bool, at: i64) -> RuleRow {
    RuleRow {
        id: id.into(),
        title: format!("rule {id}"),
        yaml: format!("title: rule {id}\nid: {id}\n"),
        enabled,
        created_by: "analyst-1".into(),
        created: Timestamp(at),
        updated: Timestamp(at),
    }
}

/// A finding of `rule_id` about `entity` at `time` (ms), from event `seq`.
fn finding(rule_id: &str, entity: &str, time: i64, seq: u64) -> NewAlert {
    NewAlert {
        id: uuid::Uuid::new_v4().to_string(),
        rule_id: rule_id.into(),
        rule_title: format!("title of {rule_id} at {time}"),
        kind: "sigma".into(),
        severity: Severity::Medium,
        entity: Some(entity.into()),
        group_key: format!("sigma|{rule_id}|{entity}"),
        time: Timestamp(time),
        score: None,
        explanation: format!("fired at {time}"),
        context: vec![format!("context {time}")],
        tags: vec!["attack.t1059.001".into()],
        patients: Vec::new(),
        events: vec![seq],
        finding_seq: Some(seq + 1_000_000),
    }
}

const WINDOW: i64 = 3_600_000;

async fn detection_rules_and_their_enabled_state_survive_a_restart(h: &mut Harness) {
    let s = &h.store;
    assert!(s.list_rules().await.unwrap().is_empty());
    s.put_rule(&rule("r-b", true, 10)).await.unwrap();
    s.put_rule(&rule("r-a", true, 20)).await.unwrap();
    // Replacing keeps who created it and when.
    let mut newer = rule("r-b", true, 30);
    newer.yaml = "title: changed\n".into();
    newer.created_by = "someone-else".into();
    s.put_rule(&newer).await.unwrap();
    let got = s.get_rule("r-b").await.unwrap().unwrap();
    assert_eq!(
        (got.yaml.as_str(), got.created_by.as_str(), got.created, got.updated),
        ("title: changed\n", "analyst-1", Timestamp(10), Timestamp(30))
    );
    let ids: Vec<String> = s.list_rules().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(ids, ["r-a", "r-b"]);

    // An uploaded rule's own flag; a directory rule's remembered state.
    s.set_rule_enabled("r-a", false, "analyst-2", Timestamp(40)).await.unwrap();
    s.set_rule_enabled("dir-rule-1", false, "analyst-2", Timestamp(41)).await.unwrap();
    s.set_rule_enabled("dir-rule-2", false, "analyst-2", Timestamp(42)).await.unwrap();
    s.set_rule_enabled("dir-rule-2", true, "analyst-3", Timestamp(43)).await.unwrap();
    h.reopen().await;
    let s = &h.store;
    let a = s.get_rule("r-a").await.unwrap().unwrap();
    assert_eq!((a.enabled, a.updated), (false, Timestamp(40)));
    let overrides = s.rule_enabled_overrides().await.unwrap();
    let seen: Vec<(&str, bool, &str, Timestamp)> =
        overrides.iter().map(|o| (o.rule_id.as_str(), o.enabled, o.updated_by.as_str(), o.updated)).collect();
    assert_eq!(
        seen,
        [("dir-rule-1", false, "analyst-2", Timestamp(41)), ("dir-rule-2", true, "analyst-3", Timestamp(43))],
        "an uploaded rule has no separate override"
    );
    assert!(s.delete_rule("r-a").await.unwrap());
    assert!(!s.delete_rule("r-a").await.unwrap());
    assert!(s.get_rule("r-a").await.unwrap().is_none());
}

async fn findings_group_into_one_alert_per_rule_entity_and_window(h: &mut Harness) {
    let s = &h.store;
    let now = Timestamp(9_000_000);
    let first = s.upsert_alert(&finding("r1", "alice", 1_000_000, 1), WINDOW, now).await.unwrap();
    assert!(first.created);
    assert_eq!((first.outcome, first.alert.status, first.alert.count), (Upsert::Opened, AlertStatus::Open, 1));
    let id = first.alert.id.clone();

    // Within the window: merged. Highest severity and score win; the latest
    // finding explains; an out-of-order (earlier) one widens first_seen.
    let mut second = finding("r1", "alice", 1_500_000, 2);
    second.severity = Severity::High;
    second.score = Some(0.4);
    second.tags = vec!["attack.execution".into(), "attack.t1059.001".into()];
    second.patients = vec!["pat-1".into()];
    let merged = s.upsert_alert(&second, WINDOW, now).await.unwrap();
    assert_eq!((merged.created, merged.outcome, merged.alert.id.as_str()), (false, Upsert::Grouped, id.as_str()));
    // The same finding again (a replay of the spine) changes nothing.
    let replay = s.upsert_alert(&second, WINDOW, now).await.unwrap();
    assert_eq!((replay.outcome, replay.alert.count), (Upsert::Grouped, 2));
    let mut earlier = finding("r1", "alice", 900_000, 3);
    earlier.score = Some(0.2);
    earlier.events = vec![3, 2];
    earlier.patients = vec!["pat-2".into(), "pat-1".into()];
    s.upsert_alert(&earlier, WINDOW, now).await.unwrap();
    let alert = s.get_alert(&id).await.unwrap().unwrap();
    assert_eq!(alert.count, 3);
    assert_eq!((alert.first_seen, alert.last_seen), (Timestamp(900_000), Timestamp(1_500_000)));
    assert_eq!((alert.severity, alert.score), (Severity::High, Some(0.4)));
    assert_eq!(alert.explanation, "fired at 1500000", "an earlier finding does not replace the explanation");
    assert_eq!(alert.context, ["context 1500000"]);
    assert_eq!(alert.tags, ["attack.t1059.001", "attack.execution"]);
    assert_eq!(alert.patients, ["pat-1", "pat-2"]);
    assert_eq!(alert.events, [1, 2, 3], "event seqs are not repeated");
    assert_eq!(alert.findings, [1_000_001, 1_000_002, 1_000_003]);
    assert!(s.add_alert_finding(&id, 77).await.unwrap());
    assert!(!s.add_alert_finding("no-such-alert", 77).await.unwrap());
    assert_eq!(s.get_alert(&id).await.unwrap().unwrap().findings.last(), Some(&77));

    // Another entity, another rule, or past the window: a new alert.
    let bob = s.upsert_alert(&finding("r1", "bob", 1_500_000, 4), WINDOW, now).await.unwrap();
    let other_rule = s.upsert_alert(&finding("r2", "alice", 1_500_000, 5), WINDOW, now).await.unwrap();
    let later = s.upsert_alert(&finding("r1", "alice", 1_500_000 + WINDOW + 1, 6), WINDOW, now).await.unwrap();
    assert!(bob.created && other_rule.created && later.created);
    // Acknowledged alerts still gather findings; closed ones do not.
    s.update_alert(&later.alert.id, &AlertAction::Acknowledge { by: "an".into() }, now).await.unwrap();
    let joined = s.upsert_alert(&finding("r1", "alice", 1_500_000 + WINDOW + 2, 7), WINDOW, now).await.unwrap();
    assert_eq!((joined.alert.id.as_str(), joined.alert.status), (later.alert.id.as_str(), AlertStatus::Acknowledged));
    s.update_alert(&later.alert.id, &AlertAction::Close { by: "an".into(), reason: "benign".into() }, now)
        .await
        .unwrap();
    let reopened = s.upsert_alert(&finding("r1", "alice", 1_500_000 + WINDOW + 3, 8), WINDOW, now).await.unwrap();
    assert!(reopened.created, "a finding after closing opens a new alert");
    // Replaying the finding that created the closed alert finds that alert.
    let mut replayed = finding("r1", "alice", 1_500_000 + WINDOW + 1, 6);
    replayed.id.clone_from(&later.alert.id);
    let again = s.upsert_alert(&replayed, WINDOW, now).await.unwrap();
    assert_eq!((again.created, again.alert.id.as_str()), (false, later.alert.id.as_str()));
    assert_eq!((again.alert.status, again.alert.count), (AlertStatus::Closed, 2));

    // Event seqs are capped; the count is not.
    let mut flood = finding("r9", "host-1", 5_000_000, 0);
    flood.events = (0..u64::try_from(MAX_ALERT_EVENTS).unwrap() + 50).collect();
    let a = s.upsert_alert(&flood, WINDOW, now).await.unwrap().alert;
    let mut flood = finding("r9", "host-1", 5_000_001, 999_999);
    flood.events = vec![999_999];
    let a2 = s.upsert_alert(&flood, WINDOW, now).await.unwrap().alert;
    assert_eq!(a2.id, a.id);
    assert_eq!((a.events.len(), a2.events.len(), a2.count), (MAX_ALERT_EVENTS, MAX_ALERT_EVENTS, 2));
}

async fn parallel_findings_of_one_group_make_one_alert(h: &mut Harness) {
    let now = Timestamp(9_000_000);
    let tasks: Vec<_> = (0..16u64)
        .map(|i| {
            let store = h.store.clone();
            tokio::spawn(async move {
                let time = 1_000_000 + i64::try_from(i).unwrap();
                store.upsert_alert(&finding("r1", "alice", time, i), WINDOW, now).await.unwrap().created
            })
        })
        .collect();
    let mut created = 0;
    for task in tasks {
        created += usize::from(task.await.unwrap());
    }
    assert_eq!(created, 1, "exactly one finding created the alert");
    let all = h.store.list_alerts(&AlertFilter { limit: 100, ..AlertFilter::default() }).await.unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!((all[0].count, all[0].events.len()), (16, 16));
}

async fn alerts_are_filtered_and_paged_newest_first(h: &mut Harness) {
    let s = &h.store;
    let now = Timestamp(99_000_000);
    // 12 alerts: rules r0..r2, entities e0/e1, kinds and severities varied,
    // one per 10 minutes (each past the previous one's window of 1 ms).
    for i in 0..12i64 {
        let mut f = finding(&format!("r{}", i % 3), &format!("e{}", i % 2), 1_000_000 + i * 600_000, 0);
        f.kind = if i % 4 == 0 { "ehr".into() } else { "sigma".into() };
        f.severity = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical][(i % 4) as usize];
        f.group_key = format!("g{i}");
        s.upsert_alert(&f, 1, now).await.unwrap();
    }
    let list = |filter: AlertFilter| async move { s.list_alerts(&AlertFilter { limit: 100, ..filter }).await.unwrap() };
    let all = list(AlertFilter::default()).await;
    assert_eq!(all.len(), 12);
    assert!(all.windows(2).all(|w| w[0].last_seen > w[1].last_seen), "newest first");
    assert_eq!(list(AlertFilter { rule_id: Some("r1".into()), ..AlertFilter::default() }).await.len(), 4);
    assert_eq!(list(AlertFilter { entity: Some("e1".into()), ..AlertFilter::default() }).await.len(), 6);
    assert_eq!(list(AlertFilter { kind: Some("ehr".into()), ..AlertFilter::default() }).await.len(), 3);
    let high = list(AlertFilter { severity_min: Some(Severity::High), ..AlertFilter::default() }).await;
    assert_eq!(high.len(), 6);
    assert!(high.iter().all(|a| a.severity >= Severity::High));
    let window = AlertFilter {
        since: Some(Timestamp(1_000_000 + 2 * 600_000)),
        until: Some(Timestamp(1_000_000 + 5 * 600_000)),
        ..AlertFilter::default()
    };
    assert_eq!(list(window).await.len(), 4, "alerts active within [since, until]");
    let combined = AlertFilter {
        rule_id: Some("r0".into()),
        entity: Some("e0".into()),
        severity_min: Some(Severity::High),
        ..AlertFilter::default()
    };
    // r0 & e0: i in {0, 6}; i=6 has severity High.
    assert_eq!(list(combined).await.len(), 1);
    s.update_alert(&all[0].id, &AlertAction::Acknowledge { by: "an".into() }, now).await.unwrap();
    let acked = list(AlertFilter { status: Some(AlertStatus::Acknowledged), ..AlertFilter::default() }).await;
    assert_eq!(acked.iter().map(|a| a.id.as_str()).collect::<Vec<_>>(), [all[0].id.as_str()]);
    assert_eq!(list(AlertFilter { status: Some(AlertStatus::Open), ..AlertFilter::default() }).await.len(), 11);

    // Pages of 5 cover every alert once, in order.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = s.list_alerts(&AlertFilter { limit: 5, after: after.clone(), ..AlertFilter::default() }).await;
        let page = page.unwrap();
        seen.extend(page.iter().map(|a| a.id.clone()));
        match page.last() {
            Some(last) if page.len() == 5 => after = Some((last.last_seen, last.id.clone())),
            _ => break,
        }
    }
    assert_eq!(seen, all.iter().map(|a| a.id.clone()).collect::<Vec<_>>());
}

async fn triage_steps_follow_the_alert_status(h: &mut Harness) {
    let s = &h.store;
    let now = Timestamp(9_000_000);
    let id = s.upsert_alert(&finding("r1", "alice", 1_000_000, 1), WINDOW, now).await.unwrap().alert.id;
    assert!(s.update_alert("no-such", &AlertAction::Acknowledge { by: "a".into() }, now).await.unwrap().is_none());

    let acked = s.update_alert(&id, &AlertAction::Acknowledge { by: "ana".into() }, Timestamp(10)).await.unwrap();
    let acked = acked.unwrap();
    assert_eq!(acked.status, AlertStatus::Acknowledged);
    assert_eq!(acked.acknowledged.as_ref().map(|a| (a.by.as_str(), a.at)), Some(("ana", Timestamp(10))));
    let again = s.update_alert(&id, &AlertAction::Acknowledge { by: "bob".into() }, Timestamp(11)).await.unwrap();
    assert_eq!(again.unwrap().acknowledged, acked.acknowledged, "acknowledging twice changes nothing");

    let assign = AlertAction::Assign { by: "ana".into(), assignee: Some("sec-team-2".into()) };
    let assigned = s.update_alert(&id, &assign, Timestamp(12)).await.unwrap().unwrap();
    assert_eq!(assigned.assignee.as_deref(), Some("sec-team-2"));
    assert_eq!(assigned.assigned.map(|a| a.at), Some(Timestamp(12)));
    assert_eq!(assigned.status, AlertStatus::Acknowledged, "assigning keeps the status");

    let close = AlertAction::Close { by: "ana".into(), reason: "a \"quoted\" reason ✓".into() };
    let closed = s.update_alert(&id, &close, Timestamp(13)).await.unwrap().unwrap();
    assert_eq!(closed.status, AlertStatus::Closed);
    assert_eq!(closed.close_reason.as_deref(), Some("a \"quoted\" reason ✓"));
    assert_eq!(closed.closed.map(|c| (c.by, c.at)), Some(("ana".to_owned(), Timestamp(13))));
    for action in [
        close,
        AlertAction::Acknowledge { by: "x".into() },
        assign,
        AlertAction::Suppress { by: "x".into(), reason: "r".into(), until: Timestamp(99), suppression_id: "s9".into() },
    ] {
        let err = s.update_alert(&id, &action, Timestamp(14)).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict(ref m) if m.contains("closed")), "{action:?}: {err:?}");
    }
    assert!(s.get_suppression("s9").await.unwrap().is_none(), "a refused suppression leaves nothing");

    // Suppressing an open alert creates the suppression for its rule and entity.
    let other = s.upsert_alert(&finding("r2", "bob", 1_000_000, 2), WINDOW, now).await.unwrap().alert.id;
    let until = Timestamp(20_000_000);
    let suppress =
        AlertAction::Suppress { by: "ana".into(), reason: "known scanner".into(), until, suppression_id: "s1".into() };
    let suppressed = s.update_alert(&other, &suppress, now).await.unwrap().unwrap();
    assert_eq!(suppressed.status, AlertStatus::Suppressed);
    let stamp = suppressed.suppressed.unwrap();
    assert_eq!((stamp.by.as_str(), stamp.reason.as_str(), stamp.until), ("ana", "known scanner", until));
    let row = s.get_suppression("s1").await.unwrap().unwrap();
    assert_eq!((row.rule_id.as_deref(), row.entity.as_deref(), row.expires), (Some("r2"), Some("bob"), until));
    // A suppressed alert may still be closed.
    let close = AlertAction::Close { by: "ana".into(), reason: "done".into() };
    assert_eq!(s.update_alert(&other, &close, now).await.unwrap().unwrap().status, AlertStatus::Closed);
}

async fn suppressions_silence_matching_findings_until_they_expire(h: &mut Harness) {
    let s = &h.store;
    let suppression = |id: &str, rule: Option<&str>, entity: Option<&str>, created: i64, expires: i64| SuppressionRow {
        id: id.into(),
        rule_id: rule.map(Into::into),
        entity: entity.map(Into::into),
        reason: format!("reason {id}"),
        created_by: "ana".into(),
        created: Timestamp(created),
        expires: Timestamp(expires),
    };
    s.add_suppression(&suppression("s-rule", Some("r1"), None, 1, 5_000)).await.unwrap();
    s.add_suppression(&suppression("s-entity", None, Some("scanner"), 2, 8_000)).await.unwrap();
    s.add_suppression(&suppression("s-both", Some("r2"), Some("bob"), 3, 3_000)).await.unwrap();
    let dup = s.add_suppression(&suppression("s-both", Some("r2"), Some("bob"), 3, 3_000)).await.unwrap_err();
    assert!(matches!(dup, StoreError::Conflict(_)), "{dup:?}");

    let active = |rule: &'static str, entity: Option<&'static str>, now: i64| async move {
        s.active_suppression(rule, entity, Timestamp(now)).await.unwrap().map(|r| r.id)
    };
    assert_eq!(active("r1", Some("anyone"), 100).await.as_deref(), Some("s-rule"));
    assert_eq!(active("r1", None, 100).await.as_deref(), Some("s-rule"));
    assert_eq!(active("r7", Some("scanner"), 100).await.as_deref(), Some("s-entity"));
    // Both match: the one lasting longest.
    assert_eq!(active("r1", Some("scanner"), 100).await.as_deref(), Some("s-entity"));
    assert_eq!(active("r2", Some("bob"), 100).await.as_deref(), Some("s-both"));
    assert_eq!(active("r2", Some("carol"), 100).await, None);
    assert_eq!(active("r2", None, 100).await, None, "an entity-specific suppression needs the entity");
    assert_eq!(active("r2", Some("bob"), 3_000).await, None, "expired");
    assert_eq!(active("r1", Some("x"), 6_000).await, None);

    let ids = |rows: Vec<SuppressionRow>| rows.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_suppressions(None, 10).await.unwrap()), ["s-both", "s-entity", "s-rule"]);
    assert_eq!(ids(s.list_suppressions(Some(Timestamp(4_000)), 10).await.unwrap()), ["s-entity", "s-rule"]);
    assert_eq!(ids(s.list_suppressions(None, 1).await.unwrap()), ["s-both"]);

    // While active, a matching finding is stored suppressed, and the next
    // joins that suppressed alert; an unmatched one opens normally.
    let f = finding("r1", "alice", 1_000, 1);
    let first = s.upsert_alert(&f, WINDOW, Timestamp(1_000)).await.unwrap();
    assert_eq!((first.outcome, first.alert.status), (Upsert::Suppressed, AlertStatus::Suppressed));
    let stamp = first.alert.suppressed.clone().unwrap();
    assert_eq!((stamp.reason.as_str(), stamp.until, stamp.by.as_str()), ("reason s-rule", Timestamp(5_000), "ana"));
    let second = s.upsert_alert(&finding("r1", "alice", 1_500, 2), WINDOW, Timestamp(1_500)).await.unwrap();
    assert_eq!((second.created, second.outcome, second.alert.count), (false, Upsert::Suppressed, 2));
    let open = s.upsert_alert(&finding("r3", "alice", 1_500, 3), WINDOW, Timestamp(1_500)).await.unwrap();
    assert_eq!(open.alert.status, AlertStatus::Open);
    // Once it has expired, findings open an alert again (not the suppressed one).
    let after = s.upsert_alert(&finding("r1", "alice", 6_000, 4), WINDOW, Timestamp(6_000)).await.unwrap();
    assert!(after.created);
    assert_eq!(after.alert.status, AlertStatus::Open);
    // Deleting lifts it at once.
    assert!(s.delete_suppression("s-entity").await.unwrap());
    assert!(!s.delete_suppression("s-entity").await.unwrap());
    assert_eq!(active("r7", Some("scanner"), 100).await, None);
}

// Device inventory.

use caduceus_store::devices::{MAX_DEVICE_PAGE, MAX_DOCUMENT_BYTES, MAX_ID_CHARS, MAX_RECORD_BYTES};
use caduceus_store::{AdvisoryRow, DeviceRow, FindingRow, SbomRow, SightingRow};

fn device(id: &str, at: i64) -> DeviceRow {
    DeviceRow {
        id: id.into(),
        body: format!(r#"{{"id":"{id}","manufacturer":"Acme Medical","model":"Infuse 3000","at":{at}}}"#),
        created: Timestamp(at),
        updated: Timestamp(at),
    }
}

fn sbom(id: &str, model: &str, version: &str, at: i64) -> SbomRow {
    SbomRow {
        id: id.into(),
        manufacturer: "Acme Medical".into(),
        model: model.into(),
        version: version.into(),
        format: "cyclonedx-json".into(),
        sha256: format!("{:064x}", at),
        body: format!(r#"{{"bomFormat":"CycloneDX","serialNumber":"urn:uuid:{id}"}}"#),
        created: Timestamp(at),
    }
}

fn advisory(id: &str, revision: &str, at: i64) -> AdvisoryRow {
    AdvisoryRow {
        id: id.into(),
        source: "csaf".into(),
        revision: revision.into(),
        modified: Some(format!("2025-01-0{revision}T00:00:00Z")),
        sha256: format!("{:064x}", at),
        body: format!(r#"{{"document":{{"tracking":{{"id":"{id}","version":"{revision}"}}}}}}"#),
        imported: Timestamp(at),
    }
}

fn sighting(key: &str, first: i64, last: i64, flows: u64, hint: &str) -> SightingRow {
    SightingRow {
        key: key.into(),
        first_seen: Timestamp(first),
        last_seen: Timestamp(last),
        flows,
        body: format!(r#"{{"hostname":"{hint}"}}"#),
    }
}

fn device_finding(device_id: &str, advisory_id: &str, status: &str, at: i64) -> FindingRow {
    FindingRow {
        key: format!("{device_id}|{advisory_id}"),
        device_id: device_id.into(),
        advisory_id: advisory_id.into(),
        status: status.into(),
        body: format!(r#"{{"status":"{status}","at":{at}}}"#),
        first_seen: Timestamp(at),
        updated: Timestamp(at),
    }
}

async fn devices_are_upserted_paged_and_deleted_with_their_findings(h: &mut Harness) {
    let s = &h.store;
    assert_eq!(s.count_devices().await.unwrap(), 0);
    assert!(s.list_devices(None, 10).await.unwrap().is_empty());
    s.put_device(&device("dev-b", 10)).await.unwrap();
    // Replacing keeps `created`, takes the new body and `updated`.
    let mut newer = device("dev-b", 20);
    newer.body = r#"{"id":"dev-b","location":"ICU bed 4"}"#.into();
    s.put_device(&newer).await.unwrap();
    let got = s.get_device("dev-b").await.unwrap().unwrap();
    assert_eq!((got.body.as_str(), got.created, got.updated), (newer.body.as_str(), Timestamp(10), Timestamp(20)));
    assert!(s.get_device("dev-zz").await.unwrap().is_none());

    // A batch (CSV import): one transaction, the same upsert; of two rows
    // with one id the later wins.
    let mut again = device("dev-a", 31);
    again.body = r#"{"id":"dev-a","second":true}"#.into();
    s.put_devices(&[device("dev-d", 30), device("dev-a", 30), device("dev-c", 30), device("dev-b", 30), again.clone()])
        .await
        .unwrap();
    assert_eq!(s.count_devices().await.unwrap(), 4);
    let b = s.get_device("dev-b").await.unwrap().unwrap();
    assert_eq!((b.created, b.updated), (Timestamp(10), Timestamp(30)));
    let a = s.get_device("dev-a").await.unwrap().unwrap();
    assert_eq!((a.body.as_str(), a.created, a.updated), (again.body.as_str(), Timestamp(30), Timestamp(31)));
    s.put_devices(&[]).await.unwrap();

    // Keyset paging by id.
    let ids = |rows: Vec<DeviceRow>| rows.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_devices(None, 2).await.unwrap()), ["dev-a", "dev-b"]);
    assert_eq!(ids(s.list_devices(Some("dev-b"), 2).await.unwrap()), ["dev-c", "dev-d"]);
    assert!(s.list_devices(Some("dev-d"), 2).await.unwrap().is_empty());
    assert_eq!(ids(s.list_devices(None, 0).await.unwrap()), ["dev-a"], "a limit of 0 is raised to 1");

    // Deleting a device deletes its findings, and only its.
    s.put_finding(&device_finding("dev-a", "ICSMA-1", "affected", 40)).await.unwrap();
    s.put_finding(&device_finding("dev-a", "ICSMA-2", "fixed", 40)).await.unwrap();
    s.put_finding(&device_finding("dev-c", "ICSMA-1", "affected", 40)).await.unwrap();
    h.reopen().await;
    let s = &h.store;
    assert_eq!(s.count_devices().await.unwrap(), 4, "devices survive a restart");
    assert!(s.delete_device("dev-a").await.unwrap());
    assert!(!s.delete_device("dev-a").await.unwrap());
    assert!(s.get_device("dev-a").await.unwrap().is_none());
    assert!(s.list_findings(Some("dev-a"), None, 100).await.unwrap().is_empty());
    assert_eq!(s.list_findings(None, None, 100).await.unwrap().len(), 1);
    assert_eq!(s.count_devices().await.unwrap(), 3);

    // The upper clamp of a page.
    let many: Vec<DeviceRow> = (0..=MAX_DEVICE_PAGE).map(|n| device(&format!("bulk-{n:05}"), 50)).collect();
    s.put_devices(&many).await.unwrap();
    let page = s.list_devices(None, u32::MAX).await.unwrap();
    assert_eq!(page.len(), usize::try_from(MAX_DEVICE_PAGE).unwrap());
    assert_eq!(s.count_devices().await.unwrap(), u64::from(MAX_DEVICE_PAGE) + 4);
}

async fn sboms_are_one_per_model_version_and_replaced(h: &mut Harness) {
    let s = &h.store;
    assert!(s.list_sboms().await.unwrap().is_empty());
    s.put_sbom(&sbom("sbom-1", "Infuse 3000", "2.8.75", 10)).await.unwrap();
    s.put_sbom(&sbom("sbom-2", "Infuse 3000", "2.8.123e", 11)).await.unwrap();
    s.put_sbom(&sbom("sbom-3", "Monitor X", "2.8.75", 12)).await.unwrap();
    assert_eq!(s.get_sbom("sbom-1").await.unwrap().unwrap(), sbom("sbom-1", "Infuse 3000", "2.8.75", 10));
    let found = s.find_sbom("Acme Medical", "Infuse 3000", "2.8.123e").await.unwrap().unwrap();
    assert_eq!(found.id, "sbom-2");
    assert!(s.find_sbom("Acme Medical", "Infuse 3000", "2.8.7").await.unwrap().is_none(), "versions match exactly");
    assert!(s.find_sbom("acme medical", "Infuse 3000", "2.8.75").await.unwrap().is_none());

    // A second SBOM for a model version replaces the first.
    s.put_sbom(&sbom("sbom-4", "Infuse 3000", "2.8.75", 20)).await.unwrap();
    assert!(s.get_sbom("sbom-1").await.unwrap().is_none());
    assert_eq!(s.find_sbom("Acme Medical", "Infuse 3000", "2.8.75").await.unwrap().unwrap().id, "sbom-4");
    // So does a put under the same id, even for another model version.
    let mut moved = sbom("sbom-4", "Infuse 3000", "2.8.123e", 21);
    moved.body = r#"{"bomFormat":"CycloneDX","specVersion":"1.6"}"#.into();
    s.put_sbom(&moved).await.unwrap();
    assert_eq!(s.get_sbom("sbom-4").await.unwrap().unwrap(), moved);
    assert!(s.get_sbom("sbom-2").await.unwrap().is_none());
    assert!(s.find_sbom("Acme Medical", "Infuse 3000", "2.8.75").await.unwrap().is_none());
    let listed: Vec<(String, String)> =
        s.list_sboms().await.unwrap().into_iter().map(|b| (b.id, format!("{} {}", b.model, b.version))).collect();
    assert_eq!(
        listed,
        [
            ("sbom-4".to_owned(), "Infuse 3000 2.8.123e".to_owned()),
            ("sbom-3".to_owned(), "Monitor X 2.8.75".to_owned())
        ]
    );
    assert!(s.delete_sbom("sbom-3").await.unwrap());
    assert!(!s.delete_sbom("sbom-3").await.unwrap());
    assert_eq!(s.list_sboms().await.unwrap().len(), 1);
}

async fn advisories_keep_one_current_revision_and_every_revision_in_history(h: &mut Harness) {
    let s = &h.store;
    assert_eq!(s.count_advisories().await.unwrap(), 0);
    assert!(s.get_advisory("ICSMA-25-001-01").await.unwrap().is_none());
    assert!(s.advisory_history("ICSMA-25-001-01").await.unwrap().is_empty());
    s.put_advisory(&advisory("ICSMA-25-001-01", "1", 100)).await.unwrap();
    s.put_advisory(&advisory("ICSMA-25-001-01", "2", 200)).await.unwrap();
    assert_eq!(s.count_advisories().await.unwrap(), 1, "a revised advisory updates, never duplicates");
    assert_eq!(s.get_advisory("ICSMA-25-001-01").await.unwrap().unwrap(), advisory("ICSMA-25-001-01", "2", 200));
    let history = s.advisory_history("ICSMA-25-001-01").await.unwrap();
    let seen: Vec<(&str, Option<&str>, Timestamp)> =
        history.iter().map(|r| (r.revision.as_str(), r.modified.as_deref(), r.imported)).collect();
    assert_eq!(
        seen,
        [("1", Some("2025-01-01T00:00:00Z"), Timestamp(100)), ("2", Some("2025-01-02T00:00:00Z"), Timestamp(200))]
    );
    assert_eq!(history[1].sha256, format!("{:064x}", 200));

    // The same revision again: still one history row (the first import's),
    // and the current row is what was put last; the store does not compare.
    let mut reimport = advisory("ICSMA-25-001-01", "2", 300);
    reimport.modified = None;
    s.put_advisory(&reimport).await.unwrap();
    let history = s.advisory_history("ICSMA-25-001-01").await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].imported, Timestamp(200));
    assert_eq!(s.get_advisory("ICSMA-25-001-01").await.unwrap().unwrap(), reimport);
    // An older revision put after a newer one becomes current: deciding
    // which is newer is the importer's job.
    s.put_advisory(&advisory("ICSMA-25-001-01", "1", 400)).await.unwrap();
    assert_eq!(s.get_advisory("ICSMA-25-001-01").await.unwrap().unwrap().revision, "1");
    assert_eq!(s.advisory_history("ICSMA-25-001-01").await.unwrap().len(), 2);

    let mut osv = advisory("RUSTSEC-2023-0001", "1", 500);
    osv.source = "osv".into();
    s.put_advisory(&osv).await.unwrap();
    s.put_advisory(&advisory("GHSA-0000-0000-0000", "1", 600)).await.unwrap();
    assert_eq!(s.count_advisories().await.unwrap(), 3);
    let ids = |rows: Vec<AdvisoryRow>| rows.into_iter().map(|a| a.id).collect::<Vec<_>>();
    assert_eq!(ids(s.all_advisories().await.unwrap()), ["GHSA-0000-0000-0000", "ICSMA-25-001-01", "RUSTSEC-2023-0001"]);
    assert_eq!(ids(s.list_advisories(None, 2).await.unwrap()), ["GHSA-0000-0000-0000", "ICSMA-25-001-01"]);
    assert_eq!(ids(s.list_advisories(Some("ICSMA-25-001-01"), 2).await.unwrap()), ["RUSTSEC-2023-0001"]);
    assert_eq!(s.get_advisory("RUSTSEC-2023-0001").await.unwrap().unwrap().source, "osv");
    assert_eq!(s.advisory_history("RUSTSEC-2023-0001").await.unwrap().len(), 1);
}

async fn sightings_merge_first_and_last_seen_and_add_flows(h: &mut Harness) {
    let s = &h.store;
    assert!(s.list_sightings(10).await.unwrap().is_empty());
    s.record_sightings(&[
        sighting("ip:10.1.2.3", 1_000, 2_000, 5, "pump-1"),
        sighting("mac:00:11:22:33:44:55", 1_500, 1_600, 1, "monitor"),
    ])
    .await
    .unwrap();
    // Merged: earliest first_seen, latest last_seen, flows added, body replaced;
    // also within one batch.
    s.record_sightings(&[
        sighting("ip:10.1.2.3", 500, 1_800, 7, "pump-1b"),
        sighting("ip:10.1.2.3", 900, 3_000, 3, "pump-1c"),
        sighting("ip:10.9.9.9", 2_500, 2_500, 1, "ct"),
    ])
    .await
    .unwrap();
    let all = s.list_sightings(10).await.unwrap();
    let seen: Vec<(&str, i64, i64, u64)> =
        all.iter().map(|r| (r.key.as_str(), r.first_seen.0, r.last_seen.0, r.flows)).collect();
    assert_eq!(
        seen,
        [("ip:10.1.2.3", 500, 3_000, 15), ("ip:10.9.9.9", 2_500, 2_500, 1), ("mac:00:11:22:33:44:55", 1_500, 1_600, 1)],
        "most recently seen first"
    );
    assert_eq!(all[0].body, r#"{"hostname":"pump-1c"}"#);
    assert_eq!(s.list_sightings(1).await.unwrap().len(), 1);

    // Flows saturate instead of overflowing.
    let big = u64::try_from(i64::MAX).unwrap();
    s.record_sightings(&[sighting("ip:10.9.9.9", 2_500, 2_500, big, "ct")]).await.unwrap();
    let ct = s.list_sightings(10).await.unwrap().into_iter().find(|r| r.key == "ip:10.9.9.9").unwrap();
    assert_eq!(ct.flows, big);
    let err = s.record_sightings(&[sighting("ip:10.9.9.8", 1, 1, big + 1, "x")]).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    assert!(s.delete_sighting("ip:10.1.2.3").await.unwrap());
    assert!(!s.delete_sighting("ip:10.1.2.3").await.unwrap());
    assert_eq!(s.list_sightings(10).await.unwrap().len(), 2);
}

async fn findings_return_their_previous_status_and_are_pruned_per_device(h: &mut Harness) {
    let s = &h.store;
    assert_eq!(s.put_finding(&device_finding("dev-1", "ICSMA-1", "under_investigation", 10)).await.unwrap(), None);
    // Unchanged status: the previous one is returned all the same.
    assert_eq!(
        s.put_finding(&device_finding("dev-1", "ICSMA-1", "under_investigation", 15)).await.unwrap().as_deref(),
        Some("under_investigation")
    );
    assert_eq!(
        s.put_finding(&device_finding("dev-1", "ICSMA-1", "affected", 20)).await.unwrap().as_deref(),
        Some("under_investigation")
    );
    let got = s.list_findings(Some("dev-1"), None, 10).await.unwrap();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0], FindingRow { first_seen: Timestamp(10), ..device_finding("dev-1", "ICSMA-1", "affected", 20) });

    for (advisory, status) in [("ICSMA-2", "fixed"), ("ICSMA-3", "affected"), ("ICSMA-4", "not_affected")] {
        assert_eq!(s.put_finding(&device_finding("dev-1", advisory, status, 30)).await.unwrap(), None);
    }
    s.put_finding(&device_finding("dev-2", "ICSMA-1", "affected", 30)).await.unwrap();
    s.put_finding(&device_finding("dev-2", "ICSMA-3", "fixed", 30)).await.unwrap();

    let keys = |rows: Vec<FindingRow>| rows.into_iter().map(|f| f.key).collect::<Vec<_>>();
    assert_eq!(
        keys(s.list_findings(None, Some("affected"), 10).await.unwrap()),
        ["dev-1|ICSMA-1", "dev-1|ICSMA-3", "dev-2|ICSMA-1"]
    );
    assert_eq!(keys(s.list_findings(Some("dev-2"), Some("fixed"), 10).await.unwrap()), ["dev-2|ICSMA-3"]);
    assert_eq!(s.list_findings(None, None, 10).await.unwrap().len(), 6);
    assert_eq!(keys(s.list_findings(None, None, 2).await.unwrap()), ["dev-1|ICSMA-1", "dev-1|ICSMA-2"]);
    assert!(s.list_findings(Some("dev-9"), None, 10).await.unwrap().is_empty());

    // A scan of dev-1 produced only ICSMA-1 and ICSMA-3: the rest go, and
    // dev-2's findings stay (even one whose key is in `keep`).
    let keep = vec!["dev-1|ICSMA-1".to_owned(), "dev-1|ICSMA-3".to_owned(), "dev-2|ICSMA-1".to_owned()];
    assert_eq!(s.delete_findings_except("dev-1", &keep).await.unwrap(), 2);
    assert_eq!(keys(s.list_findings(Some("dev-1"), None, 10).await.unwrap()), ["dev-1|ICSMA-1", "dev-1|ICSMA-3"]);
    assert_eq!(s.delete_findings_except("dev-1", &keep).await.unwrap(), 0);
    assert_eq!(s.delete_findings_except("dev-2", &[]).await.unwrap(), 2);
    assert!(s.list_findings(Some("dev-2"), None, 10).await.unwrap().is_empty());
    // A deleted finding is new again when it comes back.
    assert_eq!(s.put_finding(&device_finding("dev-1", "ICSMA-2", "fixed", 50)).await.unwrap(), None);
}

async fn parallel_puts_of_one_finding_see_each_others_status(h: &mut Harness) {
    let s = Arc::clone(&h.store);
    let tasks: Vec<_> = (0..8)
        .map(|n| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                s.put_finding(&device_finding("dev-1", "ICSMA-1", &format!("status-{n}"), n)).await.unwrap()
            })
        })
        .collect();
    let mut previous = Vec::new();
    for task in tasks {
        previous.push(task.await.unwrap());
    }
    // Exactly one put found nothing; each other saw a status some put left,
    // and each status but the last one stored was seen exactly once.
    assert_eq!(previous.iter().filter(|p| p.is_none()).count(), 1, "{previous:?}");
    let last = s.list_findings(None, None, 10).await.unwrap().remove(0).status;
    let mut seen: Vec<String> = previous.into_iter().flatten().collect();
    seen.push(last);
    seen.sort();
    let all: Vec<String> = (0..8).map(|n| format!("status-{n}")).collect();
    assert_eq!(seen, all);
}

async fn device_inventory_caps_are_enforced(h: &mut Harness) {
    let s = &h.store;
    let invalid = |err: StoreError| assert!(matches!(err, StoreError::Invalid(_)), "{err:?}");

    // Ids: at most MAX_ID_CHARS characters (not bytes), never empty or with NUL.
    let longest: String = "é".repeat(MAX_ID_CHARS);
    s.put_device(&device(&longest, 1)).await.unwrap();
    assert!(s.get_device(&longest).await.unwrap().is_some());
    invalid(s.put_device(&device(&format!("{longest}x"), 1)).await.unwrap_err());
    invalid(s.put_device(&device("", 1)).await.unwrap_err());
    invalid(s.put_device(&device("a\0b", 1)).await.unwrap_err());
    invalid(s.put_sbom(&sbom(&"s".repeat(MAX_ID_CHARS + 1), "m", "1", 1)).await.unwrap_err());
    invalid(s.put_sbom(&sbom("sbom-1", &"m".repeat(MAX_ID_CHARS + 1), "1", 1)).await.unwrap_err());
    invalid(s.put_advisory(&advisory(&"a".repeat(MAX_ID_CHARS + 1), "1", 1)).await.unwrap_err());
    invalid(s.record_sightings(&[sighting(&"k".repeat(MAX_ID_CHARS + 1), 1, 1, 1, "x")]).await.unwrap_err());
    let mut f = device_finding("dev-1", "ICSMA-1", "affected", 1);
    f.device_id = "d".repeat(MAX_ID_CHARS + 1);
    invalid(s.put_finding(&f).await.unwrap_err());

    // Record bodies: at most 64 KiB.
    let mut d = device("dev-big", 1);
    d.body = "x".repeat(MAX_RECORD_BYTES);
    s.put_device(&d).await.unwrap();
    d.body.push('x');
    invalid(s.put_device(&d).await.unwrap_err());
    let mut sight = sighting("ip:10.0.0.1", 1, 1, 1, "x");
    sight.body = "x".repeat(MAX_RECORD_BYTES + 1);
    invalid(s.record_sightings(&[sight]).await.unwrap_err());
    let mut f = device_finding("dev-1", "ICSMA-1", "affected", 1);
    f.body = "x".repeat(MAX_RECORD_BYTES + 1);
    invalid(s.put_finding(&f).await.unwrap_err());

    // Document bodies: at most 8 MiB.
    let mut b = sbom("sbom-big", "m", "1", 1);
    b.body = "x".repeat(MAX_DOCUMENT_BYTES);
    s.put_sbom(&b).await.unwrap();
    assert_eq!(s.get_sbom("sbom-big").await.unwrap().unwrap().body.len(), MAX_DOCUMENT_BYTES);
    b.body.push('x');
    invalid(s.put_sbom(&b).await.unwrap_err());
    let mut a = advisory("ICSMA-big", "1", 1);
    a.body = "x".repeat(MAX_DOCUMENT_BYTES + 1);
    invalid(s.put_advisory(&a).await.unwrap_err());
    assert!(s.get_advisory("ICSMA-big").await.unwrap().is_none());

    // A batch with one bad row stores none of it.
    let before = s.count_devices().await.unwrap();
    invalid(s.put_devices(&[device("dev-ok", 1), device("", 1)]).await.unwrap_err());
    assert_eq!(s.count_devices().await.unwrap(), before);
    invalid(
        s.record_sightings(&[sighting("ip:10.0.0.2", 1, 1, 1, "x"), sighting("", 1, 1, 1, "x")]).await.unwrap_err(),
    );
    assert!(s.list_sightings(10).await.unwrap().is_empty());
}
