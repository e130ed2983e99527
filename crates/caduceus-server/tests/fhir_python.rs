//! FHIR interoperability with independent clients: the resources the API
//! returns validate with the Python `fhir.resources` R4 models, and the SMART
//! on FHIR Python client `fhirclient` reads and searches them.
//!
//! The server runs for real (TLS, identity, vault) with Synthea patients
//! imported the way `caduceus vault import --data-dir` imports them. A
//! clinician, linked to a Practitioner and admitted as an Encounter
//! participant by a registrar, then runs `testing/fhir/check_clients.py`
//! (CapabilityStatement, read, vread, search with paging and `_include`,
//! `$everything`, history, OperationOutcomes, every seeded type, AuditEvents
//! read with an auditor key, a transaction) and must pass every check.
//!
//! Needs `TEST_PYTHON`, a Python with `testing/fhir/requirements.txt`
//! installed, which `.ci/run` provides; without it, or without the modules,
//! the test says so loudly and stops, unless `TEST_REQUIRE_PYTHON=1`, when it
//! fails. The Synthea data is read from `../shared/data` (next to the
//! repository); when it is absent the test prints a loud SKIPPED line.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use caduceus_vault::bundle;
use caduceus_vault::service::Requester;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Options, Server};

const COVID: &str = "fhir-synthea-covid-juvenile/sample_covid_fhir_juvenile_patients/original_fhir_json";
/// The patient the clinician treats, and one they have no relationship with.
const TREATED: &str = "Cris921_Rath779_d4519c92-d241-b2b2-7360-291d60be699e.json";
const OTHER: &str = "Roland928_Nienow652_13b1a0f2-dceb-37a2-f32b-f0ca6e3b9925.json";
/// Organisation data; patient bundles refer to it conditionally, by identifier.
const SHARED_FILES: &[&str] = &["hospitalInformation1603148702656.json", "practitionerInformation1603148702656.json"];
const SHARED_TYPES: &[&str] = &["Practitioner", "PractitionerRole", "Organization", "Location"];
const MODULES: &str = "import fhir.resources, fhirclient, requests, pydantic\n\
                       assert fhir.resources.__fhir_version__ == '4.0.1', fhir.resources.__fhir_version__\n";

/// The Python to run, or `None` after a loud SKIPPED line. With
/// `TEST_REQUIRE_PYTHON=1` a missing Python or module fails instead.
fn python() -> Option<String> {
    let require = std::env::var("TEST_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        if require {
            panic!("TEST_REQUIRE_PYTHON=1 but {why}");
        }
        eprintln!("\n*** SKIPPED: FHIR Python clients (fhir.resources, fhirclient): {why}. ***\n");
        None
    };
    let Ok(python) = std::env::var("TEST_PYTHON") else {
        return skip("TEST_PYTHON is not set".to_owned());
    };
    match Command::new(&python).args(["-c", MODULES]).output() {
        Ok(out) if out.status.success() => Some(python),
        Ok(out) => skip(format!(
            "{python} lacks the modules of testing/fhir/requirements.txt: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default()
        )),
        Err(e) => skip(format!("{python} cannot run: {e}")),
    }
}

fn synthea() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(COVID);
    if dir.join(TREATED).is_file() && dir.join(OTHER).is_file() {
        Some(dir)
    } else {
        eprintln!("\n*** SKIPPED: FHIR Python clients: the Synthea data is not at {} ***\n", dir.display());
        None
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

impl Server {
    /// Start the server after importing `files` (in order) into its vault
    /// as the vault itself, as `caduceus vault import --data-dir` does.
    async fn start(files: &[PathBuf]) -> Self {
        // A fixed port: the server names itself (Bundle links, fullUrls)
        // after the configured one, and clients follow those links.
        let port = support::free_port();
        let options = Options { ledger: false, manual_clock: true, port, admin_label: "fhir-python-tests" };
        let mut server = support::start_prepared(
            options,
            |_| {},
            async |platform| {
                let vault = caduceus_server::vault::open(platform).await.unwrap();
                let system = Requester::system("fhir-python-test");
                for file in files {
                    let parsed = bundle::read_bundle_file(file).unwrap();
                    let counts = vault.import_bundle(&system, parsed).await.unwrap();
                    eprintln!("imported {}: {counts:?}", file.file_name().unwrap().to_string_lossy());
                }
            },
        )
        .await;
        // The name the server gives itself (`identity.public_url`, by
        // default https://localhost:PORT); the certificate covers it.
        server.url = format!("https://localhost:{port}");
        server
    }

    async fn send(&self, method: Method, path: &str, bearer: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method.clone(), format!("{}{path}", self.url)).bearer_auth(bearer);
        if let Some(body) = body {
            request = request.header("content-type", "application/fhir+json").body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() };
        (status, body)
    }

    async fn expect(&self, method: Method, path: &str, bearer: &str, body: Option<Value>, status: u16) -> Value {
        let (got, body) = self.send(method.clone(), path, bearer, body).await;
        assert_eq!(got, status, "{method} {path}: {body}");
        body
    }

    /// A new account (admin creates it; the server generates the password),
    /// signed in with its password: (user id, bearer token).
    async fn user(&self, username: &str, role: &str) -> (String, String) {
        let (user_id, password) = self.create_user(username, &[role], None).await;
        (user_id, self.login_token(username, &password).await)
    }

    /// The id of the one Patient with this family name.
    async fn patient_id(&self, bearer: &str, family: &str) -> String {
        let found = self.expect(Method::GET, &format!("/fhir/Patient?family={family}"), bearer, None, 200).await;
        let entries = found["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 1, "{found}");
        entries[0]["resource"]["id"].as_str().unwrap().to_owned()
    }
}

/// Resource counts by type of a bundle file.
fn counts(path: &Path) -> BTreeMap<String, usize> {
    let bundle: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let mut counts = BTreeMap::new();
    for entry in bundle["entry"].as_array().unwrap() {
        *counts.entry(entry["resource"]["resourceType"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    counts
}

/// The family name of a bundle's Patient.
fn family_name(path: &Path) -> String {
    let bundle: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let patient = bundle["entry"].as_array().unwrap().iter().find(|e| e["resource"]["resourceType"] == "Patient");
    patient.unwrap()["resource"]["name"][0]["family"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_fhir_clients_validate_read_and_search_the_api() {
    // Server errors (a 5xx says only "unavailable") go to the test's output.
    let _ = tracing_subscriber::fmt().with_max_level(tracing::Level::WARN).with_test_writer().try_init();
    let Some(python) = python() else { return };
    let Some(data) = synthea() else { return };
    let mut files: Vec<PathBuf> = SHARED_FILES.iter().map(|f| data.join(f)).collect();
    files.extend([data.join(TREATED), data.join(OTHER)]);
    let server = Server::start(&files).await;

    let (clinician_id, clinician) = server.user("dr.interop", "clinician").await;
    let (_, registrar) = server.user("front.desk", "registrar").await;
    // The clinician's Practitioner (organisation data: the admin's).
    let practitioner = server
        .expect(
            Method::POST,
            "/fhir/Practitioner",
            &server.admin,
            Some(json!({
                "resourceType": "Practitioner",
                "identifier": [{"system": "urn:caduceus:user", "value": clinician_id}],
                "active": true,
                "name": [{"family": "Interop", "given": ["Dana"], "prefix": ["Dr."]}]
            })),
            201,
        )
        .await;
    let practitioner_id = practitioner["id"].as_str().unwrap();
    // An auditor's API key, to read the AuditEvents the checks leave.
    let key = server
        .expect(
            Method::POST,
            "/api/v1/api-keys",
            &server.admin,
            Some(json!({"label": "fhir interop audit", "role": "auditor", "expires_in_days": 1})),
            201,
        )
        .await;
    let auditor = key["secret"].as_str().unwrap();

    let treated = data.join(TREATED);
    let family = family_name(&treated);
    let patient = server.patient_id(&registrar, &family).await;
    let other = server.patient_id(&registrar, &family_name(&data.join(OTHER))).await;
    // The front desk admits the patient with the clinician as participant:
    // the care relationship.
    server
        .expect(
            Method::POST,
            "/fhir/Encounter",
            &registrar,
            Some(json!({
                "resourceType": "Encounter",
                "status": "in-progress",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB", "display": "ambulatory"},
                "subject": {"reference": format!("Patient/{patient}")},
                "participant": [{"individual": {"reference": format!("Practitioner/{practitioner_id}")}}],
                "period": {"start": "2026-01-01T08:00:00Z"}
            })),
            201,
        )
        .await;
    // Without a relationship the clinician is refused; with it, allowed.
    server.expect(Method::GET, &format!("/fhir/Patient/{other}"), &clinician, None, 403).await;
    server.expect(Method::GET, &format!("/fhir/Patient/{patient}"), &clinician, None, 200).await;

    let mut expected = counts(&treated);
    *expected.entry("Encounter".to_owned()).or_insert(0) += 1;
    let types: Vec<&str> = expected.keys().map(String::as_str).collect();
    let mut args: Vec<String> = vec![
        repo_root().join("testing/fhir/check_clients.py").display().to_string(),
        "--base".into(),
        format!("{}/fhir", server.url),
        "--token".into(),
        clinician.clone(),
        "--ca".into(),
        server.cert_path.as_ref().unwrap().display().to_string(),
        "--patient".into(),
        patient.clone(),
        "--family".into(),
        family.clone(),
        "--expect-observations".into(),
        expected.get("Observation").copied().unwrap_or(0).to_string(),
        "--types".into(),
        types.join(","),
        "--other-patient".into(),
        other.clone(),
        "--auditor-token".into(),
        auditor.to_owned(),
        "--write".into(),
    ];
    for (resource_type, n) in &expected {
        if !SHARED_TYPES.contains(&resource_type.as_str()) {
            args.extend(["--expect-count".to_owned(), format!("{resource_type}={n}")]);
        }
    }
    let output =
        tokio::task::spawn_blocking(move || Command::new(&python).args(&args).output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("check_clients.py:\n{stdout}");
    assert!(output.status.success(), "check_clients.py failed ({}):\n{stdout}\n{stderr}", output.status);
    assert!(stdout.contains("checks passed"), "{stdout}");
    server.stop().await;
}
