//! Patient data at rest, on both backends, through the library: patients
//! with distinctive names, identifiers, birth dates, addresses and phone
//! numbers are written through the vault (create, update, transaction and
//! batch bundles), found again by search, and then every byte the
//! installation keeps — the SQLite database and its WAL, every column of
//! every PostgreSQL table (bytea decoded), and every file of the data
//! directory — is scanned for them: none may appear. A control vault with
//! protection switched off proves the scan would see them. Erasure then
//! destroys the patient's data key: reads answer Gone, the sealed versions
//! stay as ciphertext that nothing can open.
//!
//! PostgreSQL is found at `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; a fresh database is created
//! and dropped); when unreachable the test prints a loud SKIPPED line,
//! unless `TEST_REQUIRE_POSTGRES=1`. Raw SQL goes through `psql`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

#[path = "support/scan.rs"]
mod scan;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use caduceus_core::config::Config;
use caduceus_core::{Redacted, SystemClock};
use caduceus_server::Platform;
use caduceus_server::vault::SpineSink;
use caduceus_vault::keyring::{KekDir, Keyring, KeyringError};
use caduceus_vault::service::{Requester, Vault, VaultError, VaultSettings};
use scan::{occurrences, walk};
use serde_json::{Map, Value, json};

/// Every seeded value that identifies a patient; none may be stored in the clear.
const SEEDED: &[&str] = &[
    // Patient A (create, then update).
    "Quillfeather",
    "Ottoline",
    "Marisabel",
    "MRN-7731-ZX",
    "987-65-4329",
    "1961-04-23",
    "17 Larkspur Lane",
    "9 Wicklow Terrace",
    "Wrexhamford",
    "QX9 4LW",
    "+44 7700 900731",
    // Patient B (transaction bundle, with an Observation naming a relative).
    "Vantongerloo",
    "Perpetua",
    "Hyacinth",
    "MRN-5520-QB",
    "1937-11-02",
    "4 Gorsebrook Close",
    "Thistlemoor",
    "D1234-5678-90",
    // Patient C (batch bundle).
    "Brackenridge-Oyelaran",
    "Zebedaiah",
    "MRN-0042-KT",
    "221 Saltmarsh Row",
    "2003-08-30",
];

/// The control patient, written by a vault with protection off.
const CONTROL: &str = "Plaintextcontrolname";

/// One backend: its platform, data directory and, for PostgreSQL, how to
/// reach (and drop) its database.
struct Site {
    platform: Arc<Platform>,
    dir: tempfile::TempDir,
    /// (admin url, database name, database url)
    postgres: Option<(String, String, String)>,
}

impl Site {
    async fn sqlite() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::with_data_dir(dir.path().join("data"));
        let platform = Platform::start(config, Arc::new(SystemClock)).await.unwrap();
        Self { platform, dir, postgres: None }
    }

    async fn postgres() -> Option<Self> {
        let admin_url = std::env::var("TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        if let Err(e) = psql(&admin_url, "SELECT 1") {
            if std::env::var("TEST_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("TEST_REQUIRE_POSTGRES=1 but PostgreSQL is unreachable: {e}");
            }
            eprintln!("\n*** SKIPPED: vault at rest on PostgreSQL: cannot connect ({e}). ***\n");
            return None;
        }
        let name = format!("caduceus_test_{}", uuid::Uuid::new_v4().simple());
        psql(&admin_url, &format!("CREATE DATABASE {name}")).unwrap();
        let base = admin_url.rsplit_once('/').map(|(b, _)| b.to_owned()).unwrap();
        let url = format!("{base}/{name}");
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::with_data_dir(dir.path().join("data"));
        config.storage.url = Some(Redacted::new(url.clone()));
        let platform = Platform::start(config, Arc::new(SystemClock)).await.unwrap();
        Some(Self { platform, dir, postgres: Some((admin_url, name, url)) })
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Everything the installation keeps, as bytes to scan: every file of
    /// the data directory (for SQLite: the database, WAL and shared memory)
    /// and, for PostgreSQL, every column of every table as text.
    fn everything_stored(&self) -> Vec<(String, Vec<u8>)> {
        let mut out: Vec<(String, Vec<u8>)> =
            walk(&self.data_dir()).into_iter().map(|p| (p.display().to_string(), std::fs::read(&p).unwrap())).collect();
        if let Some((_, _, url)) = &self.postgres {
            out.push(("postgresql tables".to_owned(), dump_postgres(url).into_bytes()));
        }
        out
    }

    async fn finish(self) {
        self.platform.shutdown().await;
        // After a clean close (SQLite checkpoints its WAL into the database).
        let stored = self.everything_stored();
        assert_none_stored(&stored, "after shutdown");
        if let Some((admin_url, name, _)) = &self.postgres {
            psql(admin_url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
        }
    }
}

fn psql(url: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .args([url, "-v", "ON_ERROR_STOP=1", "-X", "-q", "-tAc", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_owned())
    }
}

/// Every row of every table in the public schema, each column as text;
/// `bytea` with printable bytes kept as they are (`encode(.., 'escape')`),
/// so text hidden in a binary column shows.
fn dump_postgres(url: &str) -> String {
    let columns = psql(
        url,
        "SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c \
         JOIN information_schema.tables t ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = 'public' AND t.table_type = 'BASE TABLE' ORDER BY c.table_name, c.ordinal_position",
    )
    .unwrap();
    let mut tables: Vec<(String, Vec<String>)> = Vec::new();
    for line in columns.lines().filter(|l| !l.is_empty()) {
        let parts: Vec<&str> = line.split('|').collect();
        let (table, column, kind) = (parts[0], parts[1], parts[2]);
        let expr = if kind == "bytea" {
            format!("coalesce(encode(\"{column}\", 'escape'), '')")
        } else {
            format!("coalesce(\"{column}\"::text, '')")
        };
        match tables.last_mut() {
            Some((t, exprs)) if t == table => exprs.push(expr),
            _ => tables.push((table.to_owned(), vec![expr])),
        }
    }
    let names: Vec<&str> = tables.iter().map(|(t, _)| t.as_str()).collect();
    for expected in ["vault_keys", "vault_versions", "vault_current", "vault_index", "events", "vault_access"] {
        assert!(names.contains(&expected), "table {expected} missing from {names:?}");
    }
    let mut dump = String::new();
    for (table, exprs) in &tables {
        let rows = psql(url, &format!("SELECT concat_ws(' | ', {}) FROM \"{table}\"", exprs.join(", "))).unwrap();
        dump.push_str(&format!("== {table}\n{rows}\n"));
    }
    dump
}

fn assert_none_stored(stored: &[(String, Vec<u8>)], when: &str) {
    let mut leaks = Vec::new();
    for (name, bytes) in stored {
        for found in occurrences(bytes, SEEDED) {
            leaks.push(format!("{found:?} in {name}"));
        }
    }
    assert!(leaks.is_empty(), "{when}: patient data stored in the clear: {leaks:?}");
}

fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

fn auditor(elevated: bool) -> Requester {
    Requester {
        user_id: "privacy-officer".to_owned(),
        roles: vec!["auditor".to_owned()],
        scopes: None,
        patient_ref: None,
        source: "127.0.0.1".to_owned(),
        purpose_of_use: None,
        elevated,
    }
}

async fn search_ids(vault: &Vault, who: &Requester, resource_type: &str, params: &[(&str, &str)]) -> Vec<String> {
    let params: Vec<(String, String)> = params.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let page = vault.search(who, resource_type, &params).await.unwrap();
    assert_eq!(page.withheld, 0);
    let mut ids: Vec<String> = page.matches.into_iter().map(|s| s.id).collect();
    ids.sort();
    ids
}

/// The id of the `type/...` entry in a bundle response.
fn response_ids(response: &Value, resource_type: &str) -> Vec<String> {
    response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            let status = e["response"]["status"].as_str().unwrap();
            assert!(status.starts_with('2'), "{e}");
            let location = e["response"]["location"].as_str()?;
            let mut parts = location.split('/');
            (parts.next() == Some(resource_type)).then(|| parts.next().unwrap().to_owned())
        })
        .collect()
}

async fn at_rest(site: Site) {
    let platform = &site.platform;
    let vault = caduceus_server::vault::open(platform).await.unwrap();
    let system = Requester::system("test");

    // Patient A: create, then update (two sealed versions).
    let a_body = json!({
        "resourceType": "Patient",
        "identifier": [
            {"system": "http://hospital.example/mrn", "value": "MRN-7731-ZX"},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "987-65-4329"}
        ],
        "name": [{"family": "Quillfeather", "given": ["Ottoline", "Marisabel"]}],
        "gender": "female",
        "birthDate": "1961-04-23",
        "telecom": [{"system": "phone", "value": "+44 7700 900731"}],
        "address": [{"line": ["17 Larkspur Lane"], "city": "Wrexhamford", "postalCode": "QX9 4LW"}]
    });
    let a = vault.create(&system, "Patient", object(a_body.clone())).await.unwrap();
    assert_eq!(a.version, 1);
    let mut moved = a_body.clone();
    moved["id"] = json!(a.id);
    moved["address"][0]["line"] = json!(["9 Wicklow Terrace"]);
    let (a2, created) = vault.update(&system, "Patient", &a.id, object(moved), Some(1)).await.unwrap();
    assert!(!created);
    assert_eq!(a2.version, 2);

    // Patient B and an Observation naming a relative: one transaction.
    let transaction = json!({
        "resourceType": "Bundle", "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b7f9c1e-3a52-4d35-9b0e-6f1f5e2d8a11",
                "resource": {
                    "resourceType": "Patient",
                    "identifier": [
                        {"system": "http://hospital.example/mrn", "value": "MRN-5520-QB"},
                        {"system": "urn:oid:2.16.840.1.113883.4.3.25", "value": "D1234-5678-90"}
                    ],
                    "name": [{"family": "Vantongerloo", "given": ["Perpetua"]}],
                    "birthDate": "1937-11-02",
                    "address": [{"line": ["4 Gorsebrook Close"], "city": "Thistlemoor"}]
                },
                "request": {"method": "POST", "url": "Patient"}
            },
            {
                "fullUrl": "urn:uuid:6d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "subject": {"reference": "urn:uuid:0b7f9c1e-3a52-4d35-9b0e-6f1f5e2d8a11"},
                    "effectiveDateTime": "2025-03-01T10:00:00Z",
                    "valueQuantity": {"value": 71, "unit": "/min"},
                    "note": [{"text": "came with her daughter Hyacinth Vantongerloo"}]
                },
                "request": {"method": "POST", "url": "Observation"}
            }
        ]
    });
    let response = vault.process_bundle(&system, transaction).await.unwrap();
    let b = response_ids(&response, "Patient").pop().unwrap();
    let b_observation = response_ids(&response, "Observation").pop().unwrap();

    // Patient C: a batch.
    let batch = json!({
        "resourceType": "Bundle", "type": "batch",
        "entry": [{
            "resource": {
                "resourceType": "Patient",
                "identifier": [{"system": "http://hospital.example/mrn", "value": "MRN-0042-KT"}],
                "name": [{"family": "Brackenridge-Oyelaran", "given": ["Zebedaiah"]}],
                "birthDate": "2003-08-30",
                "address": [{"line": ["221 Saltmarsh Row"]}]
            },
            "request": {"method": "POST", "url": "Patient"}
        }]
    });
    let response = vault.process_bundle(&system, batch).await.unwrap();
    let c = response_ids(&response, "Patient").pop().unwrap();

    // Every one is found by what identifies it.
    let only = |id: &str| vec![id.to_owned()];
    for (params, expected) in [
        (vec![("name", "Quillfeather")], only(&a.id)),
        (vec![("family", "quillf")], only(&a.id)),
        (vec![("given", "Ottoline")], only(&a.id)),
        (vec![("identifier", "MRN-7731-ZX")], only(&a.id)),
        (vec![("identifier", "http://hospital.example/mrn|MRN-7731-ZX")], only(&a.id)),
        (vec![("identifier", "http://hl7.org/fhir/sid/us-ssn|987-65-4329")], only(&a.id)),
        (vec![("birthdate", "1961-04-23")], only(&a.id)),
        (vec![("address", "9 Wicklow Terrace")], only(&a.id)),
        (vec![("address", "17 Larkspur Lane")], vec![]),
        (vec![("address-city", "Wrexhamford")], only(&a.id)),
        (vec![("address-postalcode", "QX9 4LW")], only(&a.id)),
        (vec![("name", "Vantongerloo")], only(&b)),
        (vec![("identifier", "MRN-5520-QB")], only(&b)),
        (vec![("address-city", "Thistlemoor")], only(&b)),
        (vec![("name", "Brackenridge-Oyelaran")], only(&c)),
        (vec![("identifier", "MRN-0042-KT")], only(&c)),
        (vec![("birthdate", "2003-08-30")], only(&c)),
    ] {
        assert_eq!(search_ids(&vault, &system, "Patient", &params).await, expected, "{params:?}");
    }
    let subject = format!("Patient/{b}");
    assert_eq!(search_ids(&vault, &system, "Observation", &[("subject", &subject)]).await, only(&b_observation));
    let read = vault.read(&system, "Patient", &a.id).await.unwrap();
    assert_eq!(read.resource.unwrap()["name"][0]["family"], "Quillfeather");

    // Nothing identifying is stored in the clear, while running.
    let stored = site.everything_stored();
    assert!(stored.iter().any(|(_, bytes)| !occurrences(bytes, &[a.id.as_str()]).is_empty()), "the scan saw no ids");
    assert_none_stored(&stored, "while running");

    // Erasure: only an elevated admin or auditor.
    let clinician = Requester { roles: vec!["clinician".to_owned()], ..auditor(true) };
    assert!(matches!(vault.erase(&clinician, &b).await, Err(VaultError::Denied { .. })));
    assert!(matches!(vault.erase(&auditor(false), &b).await, Err(VaultError::StepUpRequired)));
    vault.read(&system, "Patient", &b).await.unwrap();
    vault.erase(&auditor(true), &b).await.unwrap();
    assert!(matches!(vault.read(&system, "Patient", &b).await, Err(VaultError::Gone(_))), "erased patient readable");
    assert!(vault.read(&system, "Observation", &b_observation).await.is_err());
    assert!(vault.vread(&system, "Patient", &b, 1).await.is_err());
    assert!(matches!(vault.erase(&auditor(true), &b).await, Err(VaultError::Gone(_))));
    assert!(search_ids(&vault, &system, "Patient", &[("name", "Vantongerloo")]).await.is_empty());
    // The sealed versions stay, as ciphertext whose key is gone.
    let store = vault.store();
    let compartment = format!("Patient/{b}");
    let key = store.key(&compartment).await.unwrap().expect("the key row stays as a tombstone");
    assert!(key.wrapped.is_none(), "the wrapped data key survived erasure");
    assert!(key.shredded.is_some());
    for (resource_type, id) in [("Patient", &b), ("Observation", &b_observation)] {
        let row = store.record_version(resource_type, id, 1).await.unwrap().expect("the sealed version stays");
        assert_eq!(row.compartment, compartment);
        assert!(row.sealed.as_ref().is_some_and(|s| !s.is_empty()));
    }
    assert!(matches!(vault.keyring().existing_key(&compartment).await, Err(KeyringError::Shredded)));
    // A fresh keyring over the same keys cannot open it either.
    let keys =
        Keyring::open(store.clone(), KekDir::new(platform.config.vault_key_dir()), platform.clock.now()).await.unwrap();
    assert!(matches!(keys.existing_key(&compartment).await, Err(KeyringError::Shredded)));
    // The others are untouched.
    assert_eq!(vault.read(&system, "Patient", &c).await.unwrap().version, 1);
    assert_eq!(search_ids(&vault, &system, "Patient", &[("identifier", "MRN-7731-ZX")]).await, only(&a.id));
    assert_none_stored(&site.everything_stored(), "after erasure");

    // Control: with protection off the very same scan finds the name, so
    // the scan reads what the store holds (binary columns included).
    let plain = Vault::new(
        store.clone(),
        platform.clock.clone(),
        keys,
        Arc::new(SpineSink(platform.spine.clone())),
        VaultSettings { protect: false, ..VaultSettings::default() },
    );
    let control = json!({"resourceType": "Patient", "name": [{"family": CONTROL}]});
    plain.create(&system, "Patient", object(control)).await.unwrap();
    let stored = site.everything_stored();
    let seen = stored.iter().any(|(_, bytes)| !occurrences(bytes, &[CONTROL]).is_empty());
    assert!(seen, "the scan cannot see plaintext written without protection");

    site.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_stores_no_patient_data_in_the_clear_and_erasure_shreds() {
    at_rest(Site::sqlite().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stores_no_patient_data_in_the_clear_and_erasure_shreds() {
    let Some(site) = Site::postgres().await else { return };
    at_rest(site).await;
}

#[test]
fn the_scan_finds_needles_case_insensitively() {
    let hay = b"\x00\x01xx QUILLfeather yy 17 larkspur lane\xff";
    assert_eq!(
        occurrences(hay, &["Quillfeather", "17 Larkspur Lane", "MRN-7731-ZX"]),
        vec!["Quillfeather".to_owned(), "17 Larkspur Lane".to_owned()]
    );
    assert!(occurrences(b"abc", &["abcd"]).is_empty());
}
