//! The vault through the real binary: `caduceus vault import` of every
//! Synthea bundle (counts checked against the files and against the
//! database) and of bulk-data NDJSON given in reverse dependency order;
//! `caduceus vault rotate-kek` (with and without `--retire-old`, beside a
//! running server); no patient data in the clear anywhere in the data
//! directory; erasure through the FHIR API followed by `caduceus ledger
//! verify`; and a patient checking an entry of their own access log with
//! `caduceus ledger verify-proof`.
//!
//! The Synthea data is read from `../shared/data` (next to the repository);
//! when it is absent those tests print a loud SKIPPED line. The database is
//! inspected with Python's `sqlite3` module (no database driver in this crate).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::{Value, json};

use super::scan::{occurrences, walk};
use super::{Running, spawn};

const HIV: &str = "fhir-synthea-hiv-bundles/sample_data";
const COVID: &str = "fhir-synthea-covid-juvenile/sample_covid_fhir_juvenile_patients/original_fhir_json";
/// Organisation data, which an import reuses by identifier.
const SHARED_TYPES: &[&str] = &["Practitioner", "PractitionerRole", "Organization", "Location"];

// ----- running the binary ----------------------------------------------

/// The binary (`cli.rs`), logging warnings only.
fn command() -> Command {
    let mut cmd = super::command();
    cmd.env("RUST_LOG", "warn");
    cmd
}

fn run(args: &[&str], paths: &[&Path]) -> Output {
    let mut cmd = command();
    cmd.args(args).args(paths);
    cmd.output().unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `caduceus vault import --data-dir DIR --json FILES...`; its report.
fn import(data: &Path, files: &[PathBuf]) -> Value {
    let mut cmd = command();
    cmd.args(["vault", "import", "--json", "--data-dir"]).arg(data).args(files);
    let output = cmd.output().unwrap();
    assert!(output.status.success(), "import failed: {}", stderr(&output));
    let stdout = String::from_utf8(output.stdout).unwrap();
    let start = stdout.find('{').unwrap_or_else(|| panic!("no JSON report: {stdout}"));
    serde_json::from_str(&stdout[start..]).unwrap_or_else(|e| panic!("not a JSON report ({e}): {stdout}"))
}

// ----- data and database -----------------------------------------------

/// The shared data directory, or `None` (and a loud line) when absent.
fn shared_data(what: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data");
    if dir.join(HIV).is_dir() && dir.join(COVID).is_dir() {
        Some(dir)
    } else {
        eprintln!("\n*** SKIPPED: {what}: the Synthea data is not at {} ***\n", dir.display());
        None
    }
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no bundles in {}", dir.display());
    files
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Resources per type in bundle files, counted from their JSON.
fn count_types(files: &[PathBuf]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for file in files {
        for entry in read_json(file)["entry"].as_array().unwrap() {
            let t = entry["resource"]["resourceType"].as_str().unwrap();
            *counts.entry(t.to_owned()).or_default() += 1;
        }
    }
    counts
}

/// Rows of a query on the data directory's SQLite database, as JSON arrays.
fn sqlite(data: &Path, sql: &str) -> Vec<Value> {
    let script = "import json, sqlite3, sys\n\
                  db = sqlite3.connect('file:' + sys.argv[1] + '?mode=ro', uri=True)\n\
                  print(json.dumps([list(r) for r in db.execute(sys.argv[2]).fetchall()]))\n";
    let output = Command::new("python3").arg("-c").arg(script).arg(data.join("caduceus.db")).arg(sql).output().unwrap();
    assert!(output.status.success(), "{sql}: {}", stderr(&output));
    match serde_json::from_slice(&output.stdout).unwrap() {
        Value::Array(rows) => rows,
        other => panic!("{other}"),
    }
}

fn count(data: &Path, sql: &str) -> u64 {
    sqlite(data, sql)[0][0].as_u64().unwrap()
}

/// Current, undeleted resources per type in the database.
fn stored_types(data: &Path) -> BTreeMap<String, u64> {
    sqlite(data, "SELECT resource_type, count(*) FROM vault_current WHERE deleted = 0 GROUP BY resource_type")
        .into_iter()
        .map(|r| (r[0].as_str().unwrap().to_owned(), r[1].as_u64().unwrap()))
        .collect()
}

fn kek_files(data: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data.join("vault-keys"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("kek-") && n.ends_with(".key"))
        .collect();
    names.sort();
    names
}

/// The distinct KEK ids wrapping live data keys.
fn wrapping_keks(data: &Path) -> Vec<String> {
    sqlite(data, "SELECT DISTINCT kek_id FROM vault_keys WHERE wrapped IS NOT NULL ORDER BY kek_id")
        .into_iter()
        .map(|r| r[0].as_str().unwrap().to_owned())
        .collect()
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| if [8, 13, 18, 23].contains(&i) { c == '-' } else { c.is_ascii_hexdigit() })
}

/// What identifies the patients of these bundles: names, identifier values
/// (SSN, driver's licence, passport, non-UUID record numbers), phone
/// numbers, address lines and birth dates.
fn identifying_values(files: &[PathBuf]) -> Vec<String> {
    let mut values = Vec::new();
    let mut push = |v: &Value| {
        if let Some(s) = v.as_str().map(str::trim).filter(|s| s.len() >= 4 && !is_uuid(s)) {
            values.push(s.to_owned());
        }
    };
    for file in files {
        for entry in read_json(file)["entry"].as_array().unwrap() {
            let patient = &entry["resource"];
            if patient["resourceType"] != "Patient" {
                continue;
            }
            for name in patient["name"].as_array().into_iter().flatten() {
                push(&name["family"]);
                name["given"].as_array().into_iter().flatten().for_each(&mut push);
            }
            for identifier in patient["identifier"].as_array().into_iter().flatten() {
                push(&identifier["value"]);
            }
            for telecom in patient["telecom"].as_array().into_iter().flatten() {
                push(&telecom["value"]);
            }
            for address in patient["address"].as_array().into_iter().flatten() {
                address["line"].as_array().into_iter().flatten().for_each(&mut push);
            }
            push(&patient["birthDate"]);
        }
    }
    values.sort();
    values.dedup();
    values
}

// ----- 1. every Synthea bundle -------------------------------------------

#[test]
fn importing_every_synthea_bundle_stores_what_the_files_hold() {
    let Some(shared) = shared_data("importing every Synthea bundle") else { return };
    let mut files = json_files(&shared.join(HIV));
    files.extend(json_files(&shared.join(COVID)));
    let expected = count_types(&files);
    let total: u64 = expected.values().sum();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");

    let report = import(&data, &files);
    let by_type: BTreeMap<String, u64> = serde_json::from_value(report["by_type"].clone()).unwrap();
    assert_eq!(by_type, expected, "the report's counts differ from the files'");
    assert_eq!(report["resources"], total);
    assert_eq!(report["files"], files.len());

    // The database holds each of them, organisation data reused by identifier.
    let stored = stored_types(&data);
    assert_eq!(stored.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "{stored:?}");
    for (t, imported) in &expected {
        let n = stored[t];
        if SHARED_TYPES.contains(&t.as_str()) {
            assert!(n > 0 && n <= *imported, "{t}: {n} stored of {imported} imported");
        } else {
            assert_eq!(n, *imported, "{t}: stored {n}, imported {imported}");
        }
    }
    // One data key per patient, and every resource of theirs in their compartment.
    let patients = expected["Patient"];
    let keys =
        count(&data, "SELECT count(*) FROM vault_keys WHERE compartment LIKE 'Patient/%' AND wrapped IS NOT NULL");
    assert_eq!(keys, patients);
    let compartments =
        count(&data, "SELECT count(DISTINCT compartment) FROM vault_current WHERE compartment <> 'shared'");
    assert_eq!(compartments, patients);
    let shared_rows = count(&data, "SELECT count(*) FROM vault_current WHERE compartment = 'shared'");
    assert_eq!(
        shared_rows,
        stored.iter().filter(|(t, _)| SHARED_TYPES.contains(&t.as_str())).map(|(_, n)| n).sum::<u64>()
    );
    let unsealed = count(&data, "SELECT count(*) FROM vault_versions WHERE sealed IS NULL");
    assert_eq!(unsealed, 0);
}

// ----- 2. bulk-data NDJSON -----------------------------------------------

#[test]
fn ndjson_imports_in_any_order_and_keeps_ids() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let patients: Vec<Value> = (1..=3)
        .map(|i| {
            json!({"resourceType": "Patient", "id": format!("bulk-p{i}"),
                   "name": [{"family": format!("Bulkfamily{i}"), "given": ["Nadia"]}], "birthDate": "1990-01-0{i}"})
        })
        .collect();
    let observations: Vec<Value> = (1..=5)
        .map(|i| {
            json!({"resourceType": "Observation", "id": format!("bulk-o{i}"), "status": "final",
                   "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                   "subject": {"reference": format!("Patient/bulk-p{}", (i % 3) + 1)},
                   "effectiveDateTime": "2024-05-01T08:00:00Z", "valueQuantity": {"value": 60 + i, "unit": "/min"}})
        })
        .collect();
    let write = |name: &str, resources: &[Value]| {
        let path = dir.path().join(name);
        let text: String = resources.iter().map(|r| format!("{r}\n")).collect();
        std::fs::write(&path, text).unwrap();
        path
    };
    let patient_file = write("Patient.ndjson", &patients);
    let observation_file = write("Observation.ndjson", &observations);

    // Observations first: they name patients not yet stored.
    let files = [observation_file.clone(), patient_file.clone()];
    let report = import(&data, &files);
    assert_eq!(report["by_type"], json!({"Observation": 5, "Patient": 3}), "{report}");
    assert_eq!(report["resources"], 8);
    assert_eq!(stored_types(&data), BTreeMap::from([("Observation".to_owned(), 5), ("Patient".to_owned(), 3)]));
    let rows = sqlite(&data, "SELECT resource_type, id, version, compartment FROM vault_current ORDER BY id");
    let expected: Vec<Value> = (1..=5)
        .map(|i| json!(["Observation", format!("bulk-o{i}"), 1, format!("Patient/bulk-p{}", (i % 3) + 1)]))
        .chain((1..=3).map(|i| json!(["Patient", format!("bulk-p{i}"), 1, format!("Patient/bulk-p{i}")])))
        .collect();
    assert_eq!(rows, expected, "NDJSON keeps ids, and each observation is in its patient's compartment");

    // Again: each line is a PUT, so the same resources get a second version.
    let report = import(&data, &files);
    assert_eq!(report["resources"], 8);
    assert_eq!(stored_types(&data), BTreeMap::from([("Observation".to_owned(), 5), ("Patient".to_owned(), 3)]));
    assert_eq!(count(&data, "SELECT count(*) FROM vault_current WHERE version = 2"), 8);

    // A line without an id is refused, naming the line, never its values.
    let bad = write("Bad.ndjson", &[json!({"resourceType": "Patient", "name": [{"family": "Noidfamily"}]})]);
    let output = run(&["vault", "import", "--json", "--data-dir"], &[&data, &bad]);
    assert!(!output.status.success());
    assert!(!stderr(&output).contains("Noidfamily"), "{}", stderr(&output));
}

// ----- 3. rotating the key-encryption key --------------------------------

#[test]
fn rotate_kek_rewraps_every_data_key_and_imports_keep_working() {
    let Some(shared) = shared_data("rotate-kek") else { return };
    let covid = json_files(&shared.join(COVID));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &covid[..3]);
    let before = kek_files(&data);
    assert_eq!(before.len(), 1, "{before:?}");
    let old = wrapping_keks(&data);
    assert_eq!(old.len(), 1, "{old:?}");
    let live = count(&data, "SELECT count(*) FROM vault_keys WHERE wrapped IS NOT NULL");
    assert!(live >= 5, "a key per patient, the shared key and the index key: {live}");

    let rotate = |retire: bool| {
        let mut args = vec!["vault", "rotate-kek", "--data-dir"];
        let data_arg = data.to_str().unwrap();
        args.push(data_arg);
        if retire {
            args.push("--retire-old");
        }
        let output = run(&args, &[]);
        assert!(output.status.success(), "{}", stderr(&output));
        String::from_utf8(output.stdout).unwrap()
    };
    let stdout = rotate(false);
    let after = kek_files(&data);
    assert_eq!(after.len(), 2, "{after:?}");
    assert!(before.iter().all(|f| after.contains(f)), "the old key file is kept without --retire-old");
    let new = wrapping_keks(&data);
    assert_eq!(new.len(), 1, "every data key is wrapped by one KEK: {new:?}");
    assert_ne!(new, old, "every data key is re-wrapped by the new KEK");
    assert!(stdout.contains(&format!("new key-encryption key {}", new[0])), "{stdout}");
    assert!(stdout.contains(&format!("{live} data keys re-wrapped")), "{stdout}");

    // Imports keep working: new patients, and a bundle already imported
    // (its organisations are found through the index key, re-wrapped).
    let report = import(&data, &covid[3..5]);
    assert_eq!(report["by_type"], serde_json::to_value(count_types(&covid[3..5])).unwrap());
    let report = import(&data, &covid[..1]);
    assert_eq!(report["by_type"], serde_json::to_value(count_types(&covid[..1])).unwrap());
    assert_eq!(wrapping_keks(&data), new, "new data keys are wrapped by the newest KEK");

    // --retire-old: one key file left; everything still opens.
    let stdout = rotate(true);
    assert!(stdout.contains("removed"), "{stdout}");
    let retired = kek_files(&data);
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert!(!after.contains(&retired[0]), "the remaining key file is the newest: {retired:?} after {after:?}");
    let newest = wrapping_keks(&data);
    assert_eq!(newest.len(), 1);
    assert_ne!(newest, new);
    let report = import(&data, &covid[5..7]);
    assert_eq!(report["by_type"], serde_json::to_value(count_types(&covid[5..7])).unwrap());
    let report = import(&data, &covid[..1]);
    assert_eq!(report["resources"], count_types(&covid[..1]).values().sum::<u64>());
    assert_eq!(wrapping_keks(&data), newest);
}

// ----- 4. nothing in the clear -------------------------------------------

#[test]
fn no_patient_data_is_stored_in_the_clear() {
    let Some(shared) = shared_data("plaintext at rest") else { return };
    let covid = json_files(&shared.join(COVID));
    let needles = identifying_values(&covid);
    assert!(needles.len() >= 12 * 5, "too few identifying values: {needles:?}");
    assert!(needles.iter().any(|n| n.starts_with("999-")), "no SSN among {needles:?}");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    import(&data, &covid);
    // The database (and its WAL, if any), the key files: every file.
    let files = walk(&data);
    assert!(files.iter().any(|f| f.ends_with("caduceus.db")), "{files:?}");
    let mut leaks = Vec::new();
    let mut bytes_scanned = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        bytes_scanned += bytes.len();
        for found in occurrences(&bytes, &needles) {
            leaks.push(format!("{found:?} in {}", file.display()));
        }
    }
    assert!(bytes_scanned > 100_000, "only {bytes_scanned} bytes stored?");
    assert!(leaks.is_empty(), "patient data stored in the clear: {leaks:?}");
    // The scan does find what is there: the vault's own ids are stored.
    let id = sqlite(&data, "SELECT id FROM vault_current WHERE resource_type = 'Patient' LIMIT 1")[0][0].clone();
    let db = std::fs::read(data.join("caduceus.db")).unwrap();
    assert_eq!(occurrences(&db, &[id.as_str().unwrap().to_owned()]).len(), 1);
}

// ----- 5 and 6. erasure, the ledger, and a patient's own access log --------

/// A data directory with a configuration and an admin API token.
struct Site {
    config: PathBuf,
    data: PathBuf,
    token: String,
}

impl Site {
    fn new(dir: &Path) -> Self {
        let config = dir.join("caduceus.toml");
        let data = dir.join("data");
        let text = format!(
            "version = 1\ndata_dir = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\nshutdown_grace_secs = 2\n",
            data.display()
        );
        std::fs::write(&config, text).unwrap();
        let output = run(&["admin", "issue-token", "--label", "vault-tests", "--config"], &[&config]);
        assert!(output.status.success(), "{}", stderr(&output));
        let stdout = String::from_utf8(output.stdout).unwrap();
        let token = stdout
            .split_whitespace()
            .find(|w| w.starts_with("cad_"))
            .unwrap_or_else(|| panic!("no token in {stdout}"))
            .to_owned();
        Self { config, data, token }
    }

    fn serve(&self) -> Running {
        let mut cmd = command();
        cmd.args(["serve", "--config"]).arg(&self.config);
        spawn(cmd)
    }
}

/// A client of one running server.
struct Api {
    client: reqwest::Client,
    url: String,
    /// The server's log so far, shown when an answer is not the one expected.
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Api {
    async fn call(&self, method: reqwest::Method, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.url)).bearer_auth(token);
        if let Some(body) = body {
            request = request.header("content-type", "application/fhir+json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) })
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, token, Some(body)).await
    }

    /// POST and expect `status`; the body.
    async fn expect_post(&self, path: &str, token: &str, body: Value, status: u16) -> Value {
        let (got, body) = self.post(path, token, body).await;
        if got != status {
            // Let the log reader catch up with what the server printed.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let log = self.log.lock().unwrap().clone();
            panic!("POST {path}: expected {status}, got {got}: {body}; server log:\n{log}");
        }
        body
    }

    /// Create an account (admin token); its user id and generated password.
    async fn create_user(&self, admin: &str, body: Value) -> (String, String) {
        let r = self.expect_post("/api/v1/users", admin, body, 201).await;
        (r["user"]["user_id"].as_str().unwrap().to_owned(), r["password"].as_str().unwrap().to_owned())
    }

    /// Sign in with a password alone; the session token.
    async fn login(&self, username: &str, password: &str) -> String {
        let body = json!({"username": username, "password": password});
        let r = self.client.post(format!("{}/api/v1/auth/login", self.url)).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let r: Value = r.json().await.unwrap();
        assert_eq!(r["status"], "authenticated", "{r}");
        r["token"].as_str().unwrap().to_owned()
    }
}

fn verify_proof(proof: &Path, event: &Path, key: &str) -> Output {
    let mut cmd = command();
    cmd.args(["ledger", "verify-proof", "--proof"]).arg(proof).args(["--key", key, "--event"]).arg(event);
    cmd.output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasure_shreds_the_record_the_ledger_verifies_and_patients_verify_their_access_log() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(dir.path());
    let server = site.serve();
    let api = Api { client: server.client(&site.data), url: server.url.clone(), log: server.stderr.clone() };
    let admin = site.token.clone();

    // Staff: a clinician (linked to a Practitioner resource) and a registrar.
    let (clinician_id, clinician_pw) =
        api.create_user(&admin, json!({"username": "cleo.clinician", "roles": ["clinician"]})).await;
    let (_, registrar_pw) = api.create_user(&admin, json!({"username": "rex.registrar", "roles": ["registrar"]})).await;
    let practitioner = json!({"resourceType": "Practitioner",
        "identifier": [{"system": "urn:caduceus:user", "value": clinician_id}], "name": [{"family": "Clinician"}]});
    let practitioner = api.expect_post("/fhir/Practitioner", &admin, practitioner, 201).await["id"].clone();
    let clinician = api.login("cleo.clinician", &clinician_pw).await;
    let registrar = api.login("rex.registrar", &registrar_pw).await;

    // The registrar registers the patient and admits them to the clinician.
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Erasmusdottir", "given": ["Ingeborg"]}],
        "identifier": [{"system": "http://hospital.example/mrn", "value": "MRN-8812-EQ"}], "birthDate": "1974-02-11"});
    let patient_id =
        api.expect_post("/fhir/Patient", &registrar, patient, 201).await["id"].as_str().unwrap().to_owned();
    let encounter = json!({"resourceType": "Encounter", "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{}", practitioner.as_str().unwrap())}}]});
    api.expect_post("/fhir/Encounter", &registrar, encounter, 201).await;
    // The clinician records an observation and reads the record.
    let observation = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": "2025-06-01T09:00:00Z", "valueQuantity": {"value": 64, "unit": "/min"}});
    let observation_id =
        api.expect_post("/fhir/Observation", &clinician, observation, 201).await["id"].as_str().unwrap().to_owned();
    let patient_path = format!("/fhir/Patient/{patient_id}");
    let (status, read) = api.get(&patient_path, &clinician).await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["name"][0]["family"], "Erasmusdottir");

    // The KEK is rotated beside the running server; it keeps serving.
    let output = run(&["vault", "rotate-kek", "--data-dir"], &[&site.data]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(kek_files(&site.data).len(), 2);
    assert_eq!(api.get(&format!("/fhir/Observation/{observation_id}"), &clinician).await.0, 200);

    // 6. The patient's own account sees who read their record, with proofs.
    let (_, patient_pw) = api
        .create_user(&admin, json!({"username": "ingeborg.e", "roles": ["patient"], "patient_ref": patient_id}))
        .await;
    let patient_token = api.login("ingeborg.e", &patient_pw).await;
    let log_path = format!("/fhir/Patient/{patient_id}/$access-log");
    let (status, _) = api.get(&log_path, &clinician).await;
    assert_eq!(status, 403, "access logs are for the auditor and the patient");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (log, entry) = loop {
        let (status, body) = api.call(reqwest::Method::POST, "/api/v1/ledger/checkpoints", &admin, None).await;
        assert_eq!(status, 201, "{body}");
        let (status, log) = api.get(&log_path, &patient_token).await;
        assert_eq!(status, 200, "{log}");
        let entry = log["entries"].as_array().unwrap().iter().find(|e| {
            e["access"]["who"] == clinician_id.as_str()
                && e["access"]["action"] == "read"
                && e["access"]["resource_type"] == "Patient"
                && e["proof"].is_string()
        });
        if let Some(entry) = entry {
            break (log.clone(), entry.clone());
        }
        assert!(std::time::Instant::now() < deadline, "the clinician's read never appeared sealed: {log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let key = log["log_key"].as_str().unwrap().to_owned();
    let ledger_key =
        server.stdout.iter().find_map(|l| l.trim().strip_prefix("ledger key:")).map(|k| k.trim().to_owned());
    if let Some(ledger_key) = ledger_key {
        assert_eq!(key, ledger_key, "the log key in the access log is the server's");
    }
    let event_path = dir.path().join("event.json");
    let proof_path = dir.path().join("proof.txt");
    std::fs::write(&event_path, entry["event"].to_string()).unwrap();
    std::fs::write(&proof_path, entry["proof"].as_str().unwrap()).unwrap();
    let output = verify_proof(&proof_path, &event_path, &key);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("proof ok"));
    // An entry rewritten to blame someone else does not verify.
    let mut altered = entry["event"].clone();
    let actor = altered["actor"]["uid"].as_str().unwrap_or_else(|| panic!("no actor uid in {altered}")).to_owned();
    altered["actor"]["uid"] = json!(format!("{actor}-not"));
    std::fs::write(&event_path, altered.to_string()).unwrap();
    let output = verify_proof(&proof_path, &event_path, &key);
    assert!(!output.status.success(), "an event with another actor passed");
    assert!(stderr(&output).contains("does not match"), "{}", stderr(&output));

    // 5. Erasure: neither the patient nor the registrar; an admin may.
    let erase_path = format!("/fhir/Patient/{patient_id}/$erase");
    assert_eq!(api.post(&erase_path, &patient_token, json!({})).await.0, 403);
    assert_eq!(api.post(&erase_path, &registrar, json!({})).await.0, 403);
    let (status, outcome) = api.post(&erase_path, &admin, json!({})).await;
    assert_eq!(status, 200, "{outcome}");
    let (status, gone) = api.get(&patient_path, &clinician).await;
    assert_eq!(status, 410, "{gone}");
    assert_ne!(api.get(&format!("/fhir/Observation/{observation_id}"), &clinician).await.0, 200);
    assert_eq!(api.post(&erase_path, &admin, json!({})).await.0, 410, "erased twice");
    server.terminate();

    // The ledger verifies, every stored event against its seal.
    let output = run(&["ledger", "verify", "--key", &key, "--data-dir"], &[&site.data]);
    assert!(output.status.success(), "{}", stderr(&output));
    // The sealed versions stay; the key that opened them does not.
    let compartment = format!("Patient/{patient_id}");
    let rows = sqlite(
        &site.data,
        &format!(
            "SELECT resource_type, sealed IS NOT NULL AND length(sealed) > 0 FROM vault_versions \
             WHERE compartment = '{compartment}' ORDER BY resource_type"
        ),
    );
    assert_eq!(rows, vec![json!(["Encounter", 1]), json!(["Observation", 1]), json!(["Patient", 1])]);
    let key_row = sqlite(
        &site.data,
        &format!("SELECT wrapped IS NULL, shredded_ms IS NOT NULL FROM vault_keys WHERE compartment = '{compartment}'"),
    );
    assert_eq!(key_row, vec![json!([1, 1])], "the data key must be destroyed and its row kept");
    let index = count(&site.data, &format!("SELECT count(*) FROM vault_current WHERE compartment = '{compartment}'"));
    assert_eq!(index, 0, "no current rows of an erased record");
}
