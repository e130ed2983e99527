//! The FHIR API end to end through the real server over TLS: the
//! CapabilityStatement, CRUD with versions and `If-Match`, search (blind
//! terms, dates, paging, sorting, `_include`), batch and transaction
//! bundles, the access policy (care relationships, assignments, consent,
//! break-glass and its review, patient accounts), the audit trail every
//! access leaves (denials included, without patient data), the patient's
//! `$access-log` with ledger proofs, and `$erase` under step-up and legal
//! hold.
//!
//! Time is a `ManualClock` shared by the platform and the test: fact caches,
//! break-glass windows and step-up windows move only when a test says so.
//! Only the two asynchronous consumers of the spine (the access index and
//! the ledger sealer) are waited for, by polling with short real sleeps.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use caduceus_core::config::Config;
use caduceus_core::{Clock, Timestamp};
use caduceus_identity::otp::{Algorithm, Totp};
use caduceus_vault::resource::SUPPORTED_TYPES;
use reqwest::Method;
use serde_json::{Value, json};
use support::{Options, Reply, START, Server};

/// The identifier system linking a Practitioner to a user account.
const USER_SYSTEM: &str = "urn:caduceus:user";
/// A hospital's medical record number system.
const MRN: &str = "urn:oid:1.2.36.146.595.217.0.1";
const LOINC: &str = "http://loinc.org";
const HEART_RATE: &str = "8867-4";
const SYSTOLIC: &str = "8480-6";
const WEIGHT: &str = "29463-7";

async fn start() -> Server {
    start_with(|_| {}).await
}

async fn start_with(configure: impl FnOnce(&mut Config)) -> Server {
    let options = Options { ledger: true, manual_clock: true, port: 0, admin_label: "fhir-tests" };
    support::start(options, |config| {
        // Tests move the clock by hours; sessions must outlive that.
        config.identity.idle_timeout_secs = 6 * 3600;
        // Checkpoints only when a test publishes one.
        config.ledger.checkpoint_interval_secs = 86_400;
        configure(config);
    })
    .await
}

impl Reply {
    /// Assert a FHIR error: the status, an OperationOutcome of the FHIR
    /// media type whose first issue is an error with `code`; return the
    /// diagnostics.
    fn outcome(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "{}", self.body);
        assert!(self.header("content-type").starts_with("application/fhir+json"), "{:?}", self.headers);
        assert_eq!(self.body["resourceType"], "OperationOutcome", "{}", self.body);
        let issue = &self.body["issue"][0];
        assert_eq!(issue["severity"], "error", "{}", self.body);
        assert_eq!(issue["code"], code, "{}", self.body);
        issue["diagnostics"].as_str().unwrap_or_default().to_owned()
    }

    fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_else(|| panic!("no id in {}", self.body)).to_owned()
    }
}

impl Server {
    /// A request with an optional bearer token, JSON body and extra headers.
    async fn send(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = self.request(method, path);
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.header("content-type", "application/fhir+json").body(serde_json::to_vec(body).unwrap());
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        Reply::lenient(request.send().await.unwrap()).await
    }

    async fn get(&self, path: &str, bearer: &str) -> Reply {
        self.send(Method::GET, path, Some(bearer), None, &[]).await
    }

    async fn post(&self, path: &str, bearer: &str, body: &Value) -> Reply {
        self.send(Method::POST, path, Some(bearer), Some(body), &[]).await
    }

    async fn put(&self, path: &str, bearer: &str, body: &Value, if_match: Option<&str>) -> Reply {
        let headers: Vec<(&str, &str)> = if_match.map(|m| ("if-match", m)).into_iter().collect();
        self.send(Method::PUT, path, Some(bearer), Some(body), &headers).await
    }

    async fn delete(&self, path: &str, bearer: &str) -> Reply {
        self.send(Method::DELETE, path, Some(bearer), None, &[]).await
    }

    /// Create a resource (201) and return its id.
    async fn create(&self, bearer: &str, resource: &Value) -> String {
        let resource_type = resource["resourceType"].as_str().unwrap();
        self.post(&format!("/fhir/{resource_type}"), bearer, resource).await.status(201).id()
    }

    /// An account of roles without a second factor, signed in with its
    /// password: (user id, session token).
    async fn user(&self, username: &str, roles: &[&str], patient_ref: Option<&str>) -> (String, String) {
        let (id, password) = self.create_user(username, roles, patient_ref).await;
        let r = self.login(username, &password).await.status(200);
        assert_eq!(r.body["status"], "authenticated", "{}", r.body);
        assert_eq!(r.body["restricted"], false, "{}", r.body);
        (id, r.body["token"].as_str().unwrap().to_owned())
    }

    /// An account of a privileged role: it enrols TOTP, then signs in with
    /// password and code. Returns (user id, session token, authenticator).
    async fn privileged_user(&self, username: &str, roles: &[&str]) -> (String, String, Totp) {
        let (id, password) = self.create_user(username, roles, None).await;
        let restricted = self.login(username, &password).await.status(200).body["token"].as_str().unwrap().to_owned();
        let r = self.send(Method::POST, "/api/v1/account/totp", Some(&restricted), None, &[]).await.status(200);
        let secret = data_encoding::BASE32_NOPAD.decode(r.body["secret"].as_str().unwrap().as_bytes()).unwrap();
        let totp = Totp::new(Algorithm::Sha1, secret, 6, 30).unwrap();
        let body = json!({"code": self.code(&totp)});
        self.send(Method::POST, "/api/v1/account/totp/confirm", Some(&restricted), Some(&body), &[]).await.status(200);
        // The enrolment used this step's code; the sign-in uses the next.
        self.advance_secs(30);
        let first = self.login(username, &password).await.status(200);
        assert_eq!(first.body["status"], "mfa_required", "{}", first.body);
        let body = json!({"mfa_token": first.body["mfa_token"], "totp": self.code(&totp)});
        let r = self.send(Method::POST, "/api/v1/auth/login/second-factor", None, Some(&body), &[]).await.status(200);
        assert_eq!(r.body["restricted"], false, "{}", r.body);
        (id, r.body["token"].as_str().unwrap().to_owned(), totp)
    }

    /// A Practitioner (created by the admin: organisation data) linked to
    /// the user account; returns its id.
    async fn practitioner_for(&self, user_id: &str, family: &str) -> String {
        let practitioner = json!({
            "resourceType": "Practitioner",
            "identifier": [{"system": USER_SYSTEM, "value": user_id}],
            "name": [{"family": family, "given": ["Staff"]}],
        });
        self.create(&self.admin, &practitioner).await
    }
}

// ----- resources ------------------------------------------------------------

fn patient(family: &str, given: &[&str], birth_date: &str, gender: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"system": MRN, "value": mrn}],
        "name": [{"use": "official", "family": family, "given": given}],
        "gender": gender,
        "birthDate": birth_date,
    })
}

fn encounter(patient: &str, practitioner: &str) -> Value {
    json!({
        "resourceType": "Encounter",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": format!("Patient/{patient}")},
        "participant": [{"individual": {"reference": format!("Practitioner/{practitioner}")}}],
        "period": {"start": "2025-12-31T22:00:00Z"},
    })
}

fn observation(patient: &str, code: &str, when: &str, value: f64) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs"
        }]}],
        "code": {"coding": [{"system": LOINC, "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"},
    })
}

/// An active privacy consent of the patient denying everything to one
/// practitioner.
fn consent_denying(patient: &str, practitioner: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/consentscope",
            "code": "patient-privacy"
        }]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2025-12-01",
        "provision": {
            "type": "deny",
            "actor": [{
                "role": {"coding": [{
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                    "code": "PRCP"
                }]},
                "reference": {"reference": format!("Practitioner/{practitioner}")}
            }]
        },
    })
}

/// The ids of a searchset's entries of one search mode, in order.
fn ids(bundle: &Value, mode: &str) -> Vec<String> {
    assert_eq!(bundle["resourceType"], "Bundle", "{bundle}");
    bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| e["search"]["mode"] == mode)
        .map(|e| e["resource"]["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A search's bundle.
async fn bundle_of(server: &Server, bearer: &str, path: String) -> Value {
    server.get(&path, bearer).await.status(200).body
}

/// The ids a search matches.
async fn found(server: &Server, bearer: &str, path: String) -> BTreeSet<String> {
    matches(&bundle_of(server, bearer, path).await)
}

fn matches(bundle: &Value) -> BTreeSet<String> {
    let found = ids(bundle, "match");
    let set: BTreeSet<String> = found.iter().cloned().collect();
    assert_eq!(set.len(), found.len(), "a resource appears twice: {bundle}");
    set
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

/// The warnings of a searchset's OperationOutcome entry.
fn warnings(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .filter(|e| e["search"]["mode"] == "outcome")
        .flat_map(|e| {
            assert_eq!(e["resource"]["resourceType"], "OperationOutcome");
            e["resource"]["issue"].as_array().unwrap().clone()
        })
        .map(|issue| {
            assert_eq!(issue["severity"], "warning", "{issue}");
            issue["diagnostics"].as_str().unwrap().to_owned()
        })
        .collect()
}

/// The path (from `/fhir/`) of a link of a bundle, if present.
fn link(bundle: &Value, relation: &str) -> Option<String> {
    let url = bundle["link"].as_array()?.iter().find(|l| l["relation"] == relation)?["url"].as_str()?.to_owned();
    let at = url.find("/fhir/").unwrap();
    Some(url[at..].to_owned())
}

/// The record-access events of the spine.
fn record_accesses(events: &[Value]) -> Vec<&Value> {
    events.iter().filter(|e| e["payload"]["type"] == "record_access").collect()
}

fn names_patient(event: &Value, patient: &str) -> bool {
    event["payload"]["patients"].as_array().is_some_and(|ps| ps.iter().any(|p| p == patient))
}

// ----- 1. CapabilityStatement ----------------------------------------------

#[tokio::test]
async fn the_capability_statement_is_public_and_lists_every_supported_type() {
    let server = start().await;
    let r = server.send(Method::GET, "/fhir/metadata", None, None, &[]).await.status(200);
    assert!(r.header("content-type").starts_with("application/fhir+json"), "{:?}", r.headers);
    let statement = &r.body;
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["status"], "active");
    assert_eq!(statement["kind"], "instance");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["format"], json!(["json"]));
    let rest = &statement["rest"][0];
    assert_eq!(rest["mode"], "server");
    let system: BTreeSet<&str> =
        rest["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert_eq!(system, BTreeSet::from(["batch", "transaction"]));

    let resources = rest["resource"].as_array().unwrap();
    let listed: Vec<&str> = resources.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(listed.len(), SUPPORTED_TYPES.len(), "each type once: {listed:?}");
    assert_eq!(listed.iter().copied().collect::<BTreeSet<_>>(), SUPPORTED_TYPES.iter().copied().collect());
    for resource in resources {
        let t = resource["type"].as_str().unwrap();
        let params: BTreeSet<&str> =
            resource["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
        assert!(params.contains("_id") && params.contains("_lastUpdated"), "{t}: {params:?}");
        for p in caduceus_vault::search::supported_params(t) {
            assert!(params.contains(p), "{t} does not list its search parameter {p}");
        }
        for p in resource["searchParam"].as_array().unwrap() {
            assert!(["token", "string", "date", "reference"].contains(&p["type"].as_str().unwrap()), "{p}");
        }
        let interactions: BTreeSet<&str> =
            resource["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
        for i in ["read", "vread", "search-type", "history-instance"] {
            assert!(interactions.contains(i), "{t} lacks {i}");
        }
        let writes = ["create", "update", "delete"].iter().filter(|i| interactions.contains(*i)).count();
        if t == "AuditEvent" {
            assert_eq!(writes, 0, "AuditEvent is never written by clients: {interactions:?}");
            assert_eq!(resource["updateCreate"], false);
        } else {
            assert_eq!(writes, 3, "{t}: {interactions:?}");
        }
    }
    let patient = resources.iter().find(|r| r["type"] == "Patient").unwrap();
    let searchable: BTreeSet<&str> =
        patient["searchParam"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in ["identifier", "name", "family", "given", "birthdate", "gender"] {
        assert!(searchable.contains(p), "Patient lacks {p}");
    }
    let operations: BTreeSet<&str> =
        patient["operation"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    for op in ["everything", "export", "erase", "access-log", "break-glass"] {
        assert!(operations.contains(op), "Patient lacks ${op}");
    }
    server.stop().await;
}

// ----- 2. CRUD ---------------------------------------------------------------

#[tokio::test]
async fn create_read_update_with_if_match_vread_history_and_delete() {
    let server = start().await;
    let (_, registrar) = server.user("front.desk", &["registrar"], None).await;
    let (clinician_id, clinician) = server.user("dr.ward4", &["clinician"], None).await;

    let new = patient("Lindqvist", &["Astrid"], "1982-06-14", "female", "MRN-100200");
    let r = server.post("/fhir/Patient", &registrar, &new).await.status(201);
    assert!(r.header("content-type").starts_with("application/fhir+json"));
    let id = r.id();
    assert_eq!(r.header("etag"), "W/\"1\"");
    assert!(!r.header("last-modified").is_empty());
    assert!(r.header("location").ends_with(&format!("/fhir/Patient/{id}/_history/1")), "{}", r.header("location"));
    assert_eq!(r.body["meta"]["versionId"], "1");
    assert_eq!(r.body["meta"]["lastUpdated"], START.to_rfc3339());
    assert_eq!(r.body["name"], new["name"]);
    assert_eq!(r.body["identifier"], new["identifier"]);
    let created = r.body;

    let read = server.get(&format!("/fhir/Patient/{id}"), &registrar).await.status(200);
    assert_eq!(read.header("etag"), "W/\"1\"");
    assert_eq!(read.body, created);

    // Update with the current version.
    server.advance_secs(60);
    let mut changed = read.body.clone();
    changed["telecom"] = json!([{"system": "phone", "value": "+46 8 555 0100", "use": "home"}]);
    let r = server.put(&format!("/fhir/Patient/{id}"), &registrar, &changed, Some("W/\"1\"")).await.status(200);
    assert_eq!(r.header("etag"), "W/\"2\"");
    assert_eq!(r.body["meta"]["versionId"], "2");
    assert_eq!(r.body["telecom"], changed["telecom"]);
    assert_eq!(r.body["meta"]["lastUpdated"], Timestamp(START.as_millis() + 60_000).to_rfc3339());

    // A stale If-Match is refused and changes nothing.
    let mut stale = changed.clone();
    stale["gender"] = json!("unknown");
    let r = server.put(&format!("/fhir/Patient/{id}"), &registrar, &stale, Some("W/\"1\"")).await;
    let why = r.outcome(412, "conflict");
    assert!(why.contains("If-Match"), "{why}");
    let current = server.get(&format!("/fhir/Patient/{id}"), &registrar).await.status(200);
    assert_eq!(current.body["meta"]["versionId"], "2");
    assert_eq!(current.body["gender"], "female");

    // vread of version 1 is the old content.
    let v1 = server.get(&format!("/fhir/Patient/{id}/_history/1"), &registrar).await.status(200);
    assert_eq!(v1.header("etag"), "W/\"1\"");
    assert_eq!(v1.body, created);
    assert!(v1.body.get("telecom").is_none());
    let v2 = server.get(&format!("/fhir/Patient/{id}/_history/2"), &registrar).await.status(200);
    assert_eq!(v2.body, current.body);
    server.get(&format!("/fhir/Patient/{id}/_history/3"), &registrar).await.outcome(404, "not-found");

    // History: both versions, newest first.
    let history = server.get(&format!("/fhir/Patient/{id}/_history"), &registrar).await.status(200);
    assert_eq!(history.body["resourceType"], "Bundle");
    assert_eq!(history.body["type"], "history");
    let entries = history.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "{}", history.body);
    assert_eq!(entries[0]["resource"]["meta"]["versionId"], "2");
    assert_eq!(entries[0]["request"]["method"], "PUT");
    assert_eq!(entries[1]["resource"]["meta"]["versionId"], "1");
    assert_eq!(entries[1]["request"]["method"], "POST");
    assert_eq!(entries[1]["resource"], created);

    // A type the vault has no search parameters for is stored intact.
    server
        .post(
            "/api/v1/vault/assignments",
            &registrar,
            &json!({"user_id": clinician_id, "patient": id, "detail": "ward 4 roster"}),
        )
        .await
        .status(204);
    let basic = json!({
        "resourceType": "Basic",
        "code": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/basic-resource-type",
            "code": "referral"
        }]},
        "subject": {"reference": format!("Patient/{id}")},
        "created": "2025-12-30",
        "extension": [{
            "url": "https://example.org/fhir/StructureDefinition/triage",
            "valueCodeableConcept": {"text": "urgent", "coding": [{"system": "urn:x", "code": "u1"}]}
        }],
        "_created": {"extension": [{"url": "https://example.org/precision", "valueCode": "day"}]},
    });
    let r = server.post("/fhir/Basic", &clinician, &basic).await.status(201);
    let basic_id = r.id();
    let back = server.get(&format!("/fhir/Basic/{basic_id}"), &clinician).await.status(200).body;
    let mut stripped = back.clone();
    let map = stripped.as_object_mut().unwrap();
    assert_eq!(map.remove("id").unwrap(), json!(basic_id));
    assert_eq!(map.remove("meta").unwrap()["versionId"], "1");
    assert_eq!(stripped, basic, "Basic came back changed");

    // Malformed writes.
    let mut wrong = new.clone();
    wrong["resourceType"] = json!("Observation");
    let why = server.post("/fhir/Patient", &registrar, &wrong).await.outcome(400, "invalid");
    assert!(why.contains("Observation") && why.contains("Patient"), "{why}");
    let r = server
        .send(Method::POST, "/fhir/Patient", Some(&registrar), None, &[("content-type", "application/fhir+json")])
        .await;
    r.outcome(400, "invalid");
    let truncated = server
        .client
        .post(format!("{}/fhir/Patient", server.url))
        .bearer_auth(&registrar)
        .header("content-type", "application/fhir+json")
        .body(r#"{"resourceType": "Patient", "name": [{"family": "#)
        .send()
        .await
        .unwrap();
    let why = Reply::lenient(truncated).await.outcome(400, "invalid");
    assert!(why.contains("not JSON"), "{why}");
    let r = server.put(&format!("/fhir/Patient/{basic_id}"), &registrar, &current.body, None).await;
    r.outcome(400, "invalid");

    // AuditEvent is written only by the vault.
    let audit = json!({"resourceType": "AuditEvent", "recorded": "2026-01-01T00:00:00Z"});
    server.post("/fhir/AuditEvent", &clinician, &audit).await.outcome(405, "not-supported");
    server.post("/fhir/AuditEvent", &server.admin, &audit).await.outcome(405, "not-supported");

    // The registrar may not delete; the treating clinician may.
    server.delete(&format!("/fhir/Patient/{id}"), &registrar).await.outcome(403, "forbidden");
    let r = server.delete(&format!("/fhir/Patient/{id}"), &clinician).await.status(204);
    assert_eq!(r.body, Value::Null);
    server.get(&format!("/fhir/Patient/{id}"), &registrar).await.outcome(410, "deleted");
    let history = server.get(&format!("/fhir/Patient/{id}/_history"), &registrar).await.status(200);
    let entries = history.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    assert!(entries[0].get("resource").is_none());
    // A resource never created is 404, not 410.
    server.get("/fhir/Patient/does-not-exist", &registrar).await.outcome(404, "not-found");
    server.stop().await;
}

// ----- 3. Search -------------------------------------------------------------

#[tokio::test]
async fn search_by_names_identifiers_dates_references_with_paging_sorting_and_includes() {
    let server = start().await;
    let (_, registrar) = server.user("front.desk", &["registrar"], None).await;
    let (clinician_id, clinician) = server.user("dr.search", &["clinician"], None).await;
    let practitioner = server.practitioner_for(&clinician_id, "Searcher").await;

    let p1 = server.create(&registrar, &patient("Müller", &["Anna"], "1970-05-12", "female", "MRN-001")).await;
    let p2 = server.create(&registrar, &patient("Muller", &["Bernd"], "1985-03-02", "male", "MRN-002")).await;
    let p3 =
        server.create(&registrar, &patient("Mulligan", &["Carla", "Anna"], "1990-11-30", "female", "MRN-003")).await;
    let p4 = server.create(&registrar, &patient("Okafor", &["Dayo"], "1970-12-01", "male", "MRN-004")).await;
    let p5 = server.create(&registrar, &patient("Smith", &["Eve"], "1979-12-31", "other", "MRN-005")).await;

    let find = |query: String| found(&server, &registrar, format!("/fhir/Patient?{query}"));
    assert_eq!(find("family=MÜL".into()).await, set(&[&p1, &p2, &p3]), "prefix, case and accents folded");
    assert_eq!(find("family=muller".into()).await, set(&[&p1, &p2]));
    assert_eq!(find("family=Müller".into()).await, set(&[&p1, &p2]));
    assert_eq!(find("family=mulligan".into()).await, set(&[&p3]));
    assert_eq!(find("given=anna".into()).await, set(&[&p1, &p3]));
    assert_eq!(find("name=dayo".into()).await, set(&[&p4]));
    assert_eq!(find("name=OKAF".into()).await, set(&[&p4]));
    assert_eq!(find("name=zzz".into()).await, BTreeSet::new());
    assert_eq!(find("identifier=urn:oid:1.2.36.146.595.217.0.1|MRN-002".into()).await, set(&[&p2]));
    assert_eq!(find("identifier=MRN-004".into()).await, set(&[&p4]));
    assert_eq!(find("identifier=urn:other|MRN-002".into()).await, BTreeSet::new());
    assert_eq!(find("birthdate=1970".into()).await, set(&[&p1, &p4]));
    assert_eq!(find("birthdate=1970-05-12".into()).await, set(&[&p1]));
    assert_eq!(find("birthdate=ge1980-01-01".into()).await, set(&[&p2, &p3]), "1979-12-31 is before");
    assert_eq!(find("birthdate=lt1980-01-01".into()).await, set(&[&p1, &p4, &p5]));
    assert_eq!(find("gender=female".into()).await, set(&[&p1, &p3]));
    assert_eq!(find("gender=female&birthdate=1970".into()).await, set(&[&p1]));
    assert_eq!(find("gender=male,other".into()).await, set(&[&p2, &p4, &p5]));
    assert_eq!(find(format!("_id={p5}")).await, set(&[&p5]));

    // The clinician treats p1 and p2.
    let e1 = server.create(&registrar, &encounter(&p1, &practitioner)).await;
    let e2 = server.create(&registrar, &encounter(&p2, &practitioner)).await;
    let o1 = server.create(&clinician, &observation(&p1, HEART_RATE, "2025-01-10T08:00:00Z", 72.0)).await;
    let o2 = server.create(&clinician, &observation(&p1, SYSTOLIC, "2025-03-15T09:30:00Z", 128.0)).await;
    let o3 = server.create(&clinician, &observation(&p1, HEART_RATE, "2025-07-01T10:00:00Z", 80.0)).await;
    let o4 = server.create(&clinician, &observation(&p2, HEART_RATE, "2025-02-20T12:00:00Z", 64.0)).await;
    server.advance_secs(3600);
    let o5 = server.create(&clinician, &observation(&p2, WEIGHT, "2024-12-31T23:00:00Z", 81.5)).await;
    let all = set(&[&o1, &o2, &o3, &o4, &o5]);

    let search = |query: String| bundle_of(&server, &clinician, format!("/fhir/Observation?{query}"));
    assert_eq!(matches(&search(format!("patient=Patient/{p1}")).await), set(&[&o1, &o2, &o3]));
    assert_eq!(matches(&search(format!("subject=Patient/{p2}")).await), set(&[&o4, &o5]));
    assert_eq!(matches(&search(format!("code={LOINC}|{HEART_RATE}")).await), set(&[&o1, &o3, &o4]));
    assert_eq!(matches(&search(format!("code={WEIGHT}")).await), set(&[&o5]));
    assert_eq!(matches(&search(format!("code=urn:other|{HEART_RATE}")).await), BTreeSet::new());
    assert_eq!(matches(&search("date=ge2025-01-01&date=lt2025-06-01".into()).await), set(&[&o1, &o2, &o4]));
    assert_eq!(matches(&search("date=2025-03".into()).await), set(&[&o2]));
    assert_eq!(matches(&search("_lastUpdated=ge2026-01-01T00:30:00Z".into()).await), set(&[&o5]));
    assert_eq!(matches(&search("_lastUpdated=lt2026-01-01T00:30:00Z".into()).await), set(&[&o1, &o2, &o3, &o4]));
    assert_eq!(matches(&search(format!("patient=Patient/{p1}&code={LOINC}|{HEART_RATE}")).await), set(&[&o1, &o3]));

    // Paging: follow `next` until there is none.
    let mut seen = Vec::new();
    let mut page = search("_count=2".into()).await;
    let mut pages = 1;
    loop {
        let here = ids(&page, "match");
        assert!(here.len() <= 2, "{page}");
        seen.extend(here);
        let Some(next) = link(&page, "next") else { break };
        assert!(next.contains("_count=2"), "{next}");
        page = server.get(&next, &clinician).await.status(200).body;
        pages += 1;
        assert!(pages <= 10, "paging does not end");
    }
    assert!(pages >= 3, "5 results in pages of 2");
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(unique.len(), seen.len(), "a result appeared on two pages: {seen:?}");
    assert_eq!(unique, all);

    // Sorting by clinical date, newest first.
    let sorted = ids(&search("_sort=-date".into()).await, "match");
    assert_eq!(sorted, vec![o3.clone(), o2.clone(), o4.clone(), o1.clone(), o5.clone()]);
    let sorted = ids(&search("_sort=date".into()).await, "match");
    assert_eq!(sorted, vec![o5.clone(), o1.clone(), o4.clone(), o2.clone(), o3.clone()]);

    // _include the patients of the matches.
    let bundle = search(format!("patient=Patient/{p1}&_include=Observation:patient")).await;
    assert_eq!(matches(&bundle), set(&[&o1, &o2, &o3]));
    assert_eq!(ids(&bundle, "include"), vec![p1.clone()]);
    let included = bundle["entry"].as_array().unwrap().iter().find(|e| e["search"]["mode"] == "include").unwrap();
    assert_eq!(included["resource"]["resourceType"], "Patient");
    assert!(included["fullUrl"].as_str().unwrap().ends_with(&format!("/fhir/Patient/{p1}")));
    let bundle = search(format!("code={HEART_RATE}&_include=Observation:patient")).await;
    assert_eq!(ids(&bundle, "include").into_iter().collect::<BTreeSet<_>>(), set(&[&p1, &p2]));

    // _total.
    let bundle = search(format!("code={HEART_RATE}&_total=accurate&_count=1")).await;
    assert_eq!(bundle["total"], 3, "{bundle}");
    assert_eq!(ids(&bundle, "match").len(), 1);

    // An unknown parameter is ignored with a warning.
    let bundle = search("unknown-thing=1".into()).await;
    assert_eq!(matches(&bundle), all);
    let warned = warnings(&bundle);
    assert_eq!(warned.len(), 1, "{bundle}");
    assert!(warned[0].contains("unknown-thing"), "{warned:?}");

    // The clinician sees only the patients they treat.
    let bundle = server.get("/fhir/Patient?family=mul", &clinician).await.status(200).body;
    assert_eq!(matches(&bundle), set(&[&p1, &p2]));
    assert!(warnings(&bundle).iter().any(|w| w.contains("no access")), "{bundle}");

    // $everything: the patient's record, and nothing of anyone else's.
    let everything = server.get(&format!("/fhir/Patient/{p1}/$everything"), &clinician).await.status(200).body;
    assert_eq!(everything["type"], "searchset");
    assert_eq!(matches(&everything), set(&[&p1, &e1, &o1, &o2, &o3]));
    assert_eq!(everything["total"], 5);
    for entry in everything["entry"].as_array().unwrap() {
        let resource = &entry["resource"];
        if resource["resourceType"] != "Patient" {
            assert_eq!(resource["subject"]["reference"], format!("Patient/{p1}"), "{resource}");
        }
    }
    let everything = server.get(&format!("/fhir/Patient/{p2}/$everything"), &clinician).await.status(200).body;
    assert_eq!(matches(&everything), set(&[&p2, &e2, &o4, &o5]));
    server.get(&format!("/fhir/Patient/{p3}/$everything"), &clinician).await.outcome(403, "forbidden");
    // A registrar reads demographics and encounters, not the clinical record.
    let everything = server.get(&format!("/fhir/Patient/{p1}/$everything"), &registrar).await.status(200).body;
    assert_eq!(matches(&everything), set(&[&p1, &e1]));
    server.stop().await;
}

// ----- 4. Bundles ------------------------------------------------------------

#[tokio::test]
async fn transactions_are_atomic_and_batches_are_not() {
    let server = start().await;
    let (_, registrar) = server.user("front.desk", &["registrar"], None).await;
    let (clinician_id, clinician) = server.user("dr.bundle", &["clinician"], None).await;
    let practitioner = server.practitioner_for(&clinician_id, "Bundler").await;

    // Admission: a new patient and their encounter, linked by urn:uuid.
    let patient_url = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a";
    let encounter_url = "urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059";
    let mut admission = encounter("placeholder", &practitioner);
    admission["subject"]["reference"] = json!(patient_url);
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": encounter_url, "resource": admission, "request": {"method": "POST", "url": "Encounter"}},
            {
                "fullUrl": patient_url,
                "resource": patient("Haddad", &["Layla"], "1993-02-08", "female", "MRN-TX-1"),
                "request": {"method": "POST", "url": "Patient"}
            }
        ]
    });
    let r = server.post("/fhir", &registrar, &transaction).await.status(200);
    assert_eq!(r.body["resourceType"], "Bundle");
    assert_eq!(r.body["type"], "transaction-response");
    let entries = r.body["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 2, "one response per entry, in request order");
    for entry in entries {
        assert_eq!(entry["response"]["status"], "201 Created", "{entry}");
        assert_eq!(entry["response"]["etag"], "W/\"1\"");
    }
    let location = |i: usize| entries[i]["response"]["location"].as_str().unwrap().to_owned();
    let (encounter_loc, patient_loc) = (location(0), location(1));
    assert!(encounter_loc.starts_with("Encounter/") && encounter_loc.ends_with("/_history/1"), "{encounter_loc}");
    assert!(patient_loc.starts_with("Patient/") && patient_loc.ends_with("/_history/1"), "{patient_loc}");
    let patient_id = patient_loc.split('/').nth(1).unwrap().to_owned();
    let encounter_id = encounter_loc.split('/').nth(1).unwrap().to_owned();
    let stored = server.get(&format!("/fhir/Encounter/{encounter_id}"), &registrar).await.status(200).body;
    assert_eq!(stored["subject"]["reference"], format!("Patient/{patient_id}"), "urn:uuid rewritten");
    let stored = server.get(&format!("/fhir/Patient/{patient_id}"), &registrar).await.status(200).body;
    assert_eq!(stored["identifier"][0]["value"], "MRN-TX-1");

    // The clinician, now in a care relationship with the patient, records
    // an observation and the report citing it in one transaction.
    let observation_url = "urn:uuid:0f2c4ea4-3c6b-4f0e-9d43-7d8a1b8b6c11";
    let report = json!({
        "resourceType": "DiagnosticReport",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "effectiveDateTime": "2025-12-31T23:00:00Z",
        "result": [{"reference": observation_url}],
    });
    let transaction = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:4b5e7d0e-5a0d-4a57-8f42-2f9d3f0c8e21", "resource": report, "request": {"method": "POST", "url": "DiagnosticReport"}},
            {
                "fullUrl": observation_url,
                "resource": observation(&patient_id, SYSTOLIC, "2025-12-31T23:00:00Z", 141.0),
                "request": {"method": "POST", "url": "Observation"}
            }
        ]
    });
    let r = server.post("/fhir", &clinician, &transaction).await.status(200);
    let entries = r.body["entry"].as_array().unwrap();
    let report_id = entries[0]["response"]["location"].as_str().unwrap().split('/').nth(1).unwrap().to_owned();
    let observation_id = entries[1]["response"]["location"].as_str().unwrap().split('/').nth(1).unwrap().to_owned();
    let stored = server.get(&format!("/fhir/DiagnosticReport/{report_id}"), &clinician).await.status(200).body;
    assert_eq!(stored["result"][0]["reference"], format!("Observation/{observation_id}"));
    let stored = server.get(&format!("/fhir/Observation/{observation_id}"), &clinician).await.status(200).body;
    assert_eq!(stored["subject"]["reference"], format!("Patient/{patient_id}"));

    let count = |query: &str| {
        let path = format!("/fhir/Patient?{query}");
        let (server, registrar) = (&server, &registrar);
        async move { found(server, registrar, path).await.len() }
    };

    // One failing entry (a stale ifMatch) fails the whole transaction.
    let mut update = stored_patient(&server, &registrar, &patient_id).await;
    update["telecom"] = json!([{"system": "phone", "value": "+44 20 7946 0000"}]);
    let failing = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:a1a1a1a1-0000-4000-8000-000000000001",
                "resource": patient("Nakamura", &["Ken"], "1960-01-01", "male", "MRN-TX-2"),
                "request": {"method": "POST", "url": "Patient"}
            },
            {
                "resource": update,
                "request": {"method": "PUT", "url": format!("Patient/{patient_id}"), "ifMatch": "W/\"7\""}
            }
        ]
    });
    server.post("/fhir", &registrar, &failing).await.outcome(412, "conflict");
    assert_eq!(count("identifier=MRN-TX-2").await, 0, "nothing of a failed transaction is stored");
    let current = server.get(&format!("/fhir/Patient/{patient_id}"), &registrar).await.status(200).body;
    assert_eq!(current["meta"]["versionId"], "1");
    assert!(current.get("telecom").is_none());

    // One denied entry fails it too: the clinician has no care relationship
    // with a patient who does not exist yet.
    let denied = json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:b2b2b2b2-0000-4000-8000-000000000002",
                "resource": patient("Obi", &["Chidi"], "1971-07-07", "male", "MRN-TX-3"),
                "request": {"method": "POST", "url": "Patient"}
            },
            {
                "fullUrl": "urn:uuid:b2b2b2b2-0000-4000-8000-000000000003",
                "resource": {
                    "resourceType": "Observation",
                    "status": "final",
                    "code": {"coding": [{"system": LOINC, "code": HEART_RATE}]},
                    "subject": {"reference": "urn:uuid:b2b2b2b2-0000-4000-8000-000000000002"}
                },
                "request": {"method": "POST", "url": "Observation"}
            }
        ]
    });
    server.post("/fhir", &clinician, &denied).await.outcome(403, "forbidden");
    assert_eq!(count("identifier=MRN-TX-3").await, 0);
    let observations = server.get(&format!("/fhir/Observation?code={HEART_RATE}"), &clinician).await.status(200);
    assert_eq!(matches(&observations.body).len(), 0);
    assert!(warnings(&observations.body).is_empty(), "nothing withheld either: {}", observations.body);

    // A batch: each entry on its own.
    let mut update = stored_patient(&server, &registrar, &patient_id).await;
    update["telecom"] = json!([{"system": "email", "value": "l.h@example.org"}]);
    let batch = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [
            {"resource": patient("Petrov", &["Ivan"], "1955-05-05", "male", "MRN-B-1"), "request": {"method": "POST", "url": "Patient"}},
            {
                "resource": update.clone(),
                "request": {"method": "PUT", "url": format!("Patient/{patient_id}"), "ifMatch": "W/\"3\""}
            },
            {
                "resource": observation(&patient_id, HEART_RATE, "2025-12-31T23:30:00Z", 90.0),
                "request": {"method": "POST", "url": "Observation"}
            },
            {"resource": patient("Silva", &["Ana"], "1988-08-08", "female", "MRN-B-2"), "request": {"method": "POST", "url": "Patient"}},
            {"request": {"method": "GET", "url": format!("Patient/{patient_id}")}}
        ]
    });
    let r = server.post("/fhir", &registrar, &batch).await.status(200);
    assert_eq!(r.body["type"], "batch-response");
    let entries = r.body["entry"].as_array().unwrap();
    let statuses: Vec<&str> = entries.iter().map(|e| e["response"]["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["201 Created", "412 Precondition Failed", "403 Forbidden", "201 Created", "200 OK"]);
    assert_eq!(entries[1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(entries[1]["response"]["outcome"]["issue"][0]["code"], "conflict");
    assert_eq!(entries[2]["response"]["outcome"]["issue"][0]["code"], "forbidden");
    assert_eq!(entries[4]["resource"]["id"], patient_id.as_str());
    assert_eq!(count("identifier=MRN-B-1").await, 1);
    assert_eq!(count("identifier=MRN-B-2").await, 1);
    let current = server.get(&format!("/fhir/Patient/{patient_id}"), &registrar).await.status(200).body;
    assert_eq!(current["meta"]["versionId"], "1", "the failed entry changed nothing");

    // Not a bundle, or a bundle type the endpoint does not take: 400.
    let collection = json!({"resourceType": "Bundle", "type": "collection", "entry": []});
    server.post("/fhir", &registrar, &collection).await.outcome(400, "invalid");
    server.post("/fhir", &registrar, &json!({"resourceType": "Patient"})).await.outcome(400, "invalid");
    server.stop().await;
}

async fn stored_patient(server: &Server, bearer: &str, id: &str) -> Value {
    server.get(&format!("/fhir/Patient/{id}"), bearer).await.status(200).body
}

// ----- 5. Policy -------------------------------------------------------------

#[tokio::test]
async fn care_relationships_consent_break_glass_and_patient_accounts() {
    let server = start().await;
    let (_, registrar) = server.user("front.desk", &["registrar"], None).await;
    let (clinician_id, clinician) = server.user("dr.policy", &["clinician"], None).await;
    let (other_id, other) = server.user("dr.other", &["clinician"], None).await;
    let practitioner = server.practitioner_for(&clinician_id, "Policy").await;
    let other_practitioner = server.practitioner_for(&other_id, "Other").await;

    let a = server.create(&registrar, &patient("Abara", &["Ngozi"], "1975-01-01", "female", "MRN-A")).await;
    let b = server.create(&registrar, &patient("Bello", &["Tunde"], "1962-02-02", "male", "MRN-B")).await;
    let c = server.create(&registrar, &patient("Costa", &["Rita"], "1999-03-03", "female", "MRN-C")).await;
    let d = server.create(&registrar, &patient("Dumas", &["Luc"], "1948-04-04", "male", "MRN-D")).await;

    // The other clinician treats b, c and d (by encounter).
    for p in [&b, &c, &d] {
        server.create(&registrar, &encounter(p, &other_practitioner)).await;
    }
    let obs_b = server.create(&other, &observation(&b, HEART_RATE, "2025-12-31T20:00:00Z", 110.0)).await;
    let obs_c = server.create(&other, &observation(&c, HEART_RATE, "2025-12-31T20:05:00Z", 70.0)).await;
    let obs_d = server.create(&other, &observation(&d, HEART_RATE, "2025-12-31T20:10:00Z", 58.0)).await;

    // A relationship by encounter: the clinician reads and writes a's chart.
    let denied = server.get(&format!("/fhir/Patient/{a}"), &clinician).await;
    let why = denied.outcome(403, "forbidden");
    assert!(why.contains("break-glass"), "{why}");
    server.create(&registrar, &encounter(&a, &practitioner)).await;
    let obs_a = server.create(&clinician, &observation(&a, HEART_RATE, "2025-12-31T21:00:00Z", 88.0)).await;
    server.get(&format!("/fhir/Observation/{obs_a}"), &clinician).await.status(200);
    server.get(&format!("/fhir/Patient/{a}"), &clinician).await.status(200);

    // No relationship with b: denied, with break-glass offered.
    let r = server.get(&format!("/fhir/Observation/{obs_b}"), &clinician).await;
    let why = r.outcome(403, "forbidden");
    assert!(why.contains("break-glass"), "the denial offers break-glass: {why}");
    assert!(!why.contains("Bello") && !why.contains("MRN-B"), "{why}");
    let bundle = server.get(&format!("/fhir/Observation?patient=Patient/{b}"), &clinician).await.status(200).body;
    assert!(matches(&bundle).is_empty(), "search withholds b's data: {bundle}");

    // A care team naming the clinician is a relationship with c.
    server.get(&format!("/fhir/Observation/{obs_c}"), &clinician).await.outcome(403, "forbidden");
    let team = json!({
        "resourceType": "CareTeam",
        "status": "active",
        "subject": {"reference": format!("Patient/{c}")},
        "participant": [
            {"member": {"reference": format!("Practitioner/{other_practitioner}")}},
            {"member": {"reference": format!("Practitioner/{practitioner}")}}
        ],
    });
    server.create(&other, &team).await;
    server.get(&format!("/fhir/Observation/{obs_c}"), &clinician).await.status(200);

    // An explicit assignment, made by the registrar, is a relationship with d.
    server.get(&format!("/fhir/Observation/{obs_d}"), &clinician).await.outcome(403, "forbidden");
    let assignment = json!({"user_id": clinician_id, "patient": d, "detail": "covering night shift"});
    // A clinician cannot assign themselves to a patient they do not treat.
    server.post("/api/v1/vault/assignments", &clinician, &assignment).await.outcome(403, "forbidden");
    server.get(&format!("/fhir/Observation/{obs_d}"), &clinician).await.outcome(403, "forbidden");
    server.post("/api/v1/vault/assignments", &registrar, &assignment).await.status(204);
    server.get(&format!("/fhir/Observation/{obs_d}"), &clinician).await.status(200);
    let assign_missing = json!({"user_id": clinician_id});
    server.post("/api/v1/vault/assignments", &registrar, &assign_missing).await.outcome(400, "invalid");

    // a's consent denying the clinician overrides the encounter.
    server.create(&registrar, &consent_denying(&a, &practitioner)).await;
    server.advance_secs(31);
    let why = server.get(&format!("/fhir/Observation/{obs_a}"), &clinician).await.outcome(403, "forbidden");
    assert!(why.contains("consent"), "{why}");
    server.get(&format!("/fhir/Patient/{a}"), &clinician).await.outcome(403, "forbidden");
    // ... and only the clinician it names.
    server.create(&registrar, &encounter(&a, &other_practitioner)).await;
    server.get(&format!("/fhir/Observation/{obs_a}"), &other).await.status(200);

    // Break-glass on b: a reason is required, then access is granted ...
    let path = format!("/fhir/Patient/{b}/$break-glass");
    server.post(&path, &clinician, &json!({"reason": "short"})).await.outcome(400, "invalid");
    server.post(&path, &clinician, &json!({})).await.outcome(400, "invalid");
    let reason = "unconscious in the emergency department, no other clinician available";
    let r = server.post(&path, &clinician, &json!({"reason": reason})).await.status(201);
    let grant = r.body.clone();
    let grant_id = grant["grant_id"].as_str().unwrap().to_owned();
    assert_eq!(grant["patient_id"], b.as_str());
    assert_eq!(grant["user_id"], clinician_id.as_str());
    assert_eq!(grant["reason"], reason);
    assert_eq!(grant["expires"], Timestamp(server.clock().now().as_millis() + 30 * 60_000).to_rfc3339());
    assert_eq!(grant["reviewed"], Value::Null);
    server.get(&format!("/fhir/Observation/{obs_b}"), &clinician).await.status(200);
    server.get(&format!("/fhir/Patient/{b}"), &clinician).await.status(200);
    // ... for the window only.
    server.advance_secs(29 * 60);
    server.get(&format!("/fhir/Observation/{obs_b}"), &clinician).await.status(200);
    server.advance_secs(2 * 60);
    let why = server.get(&format!("/fhir/Observation/{obs_b}"), &clinician).await.outcome(403, "forbidden");
    assert!(why.contains("break-glass"), "{why}");
    // The registrar cannot break glass (not a care role).
    server
        .post(&format!("/fhir/Patient/{c}/$break-glass"), &registrar, &json!({"reason": reason}))
        .await
        .outcome(403, "forbidden");

    // The grant is in the auditor's review queue.
    let (auditor_id, auditor, _) = server.privileged_user("privacy.officer", &["auditor"]).await;
    let queue = server.get("/api/v1/vault/break-glass", &auditor).await.status(200).body;
    let pending = queue["grants"].as_array().unwrap();
    let listed = pending.iter().find(|g| g["grant_id"] == grant_id.as_str()).expect("the grant is pending review");
    assert_eq!(listed["user_id"], clinician_id.as_str());
    assert_eq!(listed["patient_id"], b.as_str());
    assert_eq!(listed["reason"], reason);
    // Clinicians and registrars neither see nor review it.
    server.get("/api/v1/vault/break-glass", &clinician).await.outcome(403, "forbidden");
    let review_path = format!("/api/v1/vault/break-glass/{grant_id}/review");
    let review = json!({"outcome": "justified", "note": "confirmed with the ED charge nurse"});
    server.post(&review_path, &clinician, &review).await.outcome(403, "forbidden");
    server.post(&review_path, &registrar, &review).await.outcome(403, "forbidden");
    server.post(&review_path, &auditor, &json!({"outcome": "maybe"})).await.outcome(400, "invalid");
    let r = server.post(&review_path, &auditor, &review).await.status(200);
    assert_eq!(r.body["review_outcome"], "justified");
    assert_eq!(r.body["reviewer"], auditor_id.as_str());
    assert_eq!(r.body["review_note"], "confirmed with the ED charge nurse");
    server.post(&review_path, &auditor, &review).await.outcome(409, "conflict");
    let queue = server.get("/api/v1/vault/break-glass", &auditor).await.status(200).body;
    assert!(!queue["grants"].as_array().unwrap().iter().any(|g| g["grant_id"] == grant_id.as_str()), "{queue}");
    let all = server.get("/api/v1/vault/break-glass?all=true", &auditor).await.status(200).body;
    let reviewed = all["grants"].as_array().unwrap().iter().find(|g| g["grant_id"] == grant_id.as_str()).unwrap();
    assert_eq!(reviewed["review_outcome"], "justified");
    // The auditor reads no clinical data.
    server.get(&format!("/fhir/Observation/{obs_b}"), &auditor).await.outcome(403, "forbidden");

    // A patient account: their own record, read-only, and nothing else.
    let (_, patient_a) = server.user("ngozi.a", &["patient"], Some(&a)).await;
    let own = server.get(&format!("/fhir/Patient/{a}"), &patient_a).await.status(200);
    assert_eq!(own.body["identifier"][0]["value"], "MRN-A");
    server.get(&format!("/fhir/Observation/{obs_a}"), &patient_a).await.status(200);
    let bundle = server.get("/fhir/Observation", &patient_a).await.status(200).body;
    assert_eq!(matches(&bundle), set(&[&obs_a]), "only their own observations");
    let bundle = server.get("/fhir/Patient", &patient_a).await.status(200).body;
    assert_eq!(matches(&bundle), set(&[&a]), "only their own Patient");
    let bundle = server.get(&format!("/fhir/Observation?patient=Patient/{b}"), &patient_a).await.status(200).body;
    assert!(matches(&bundle).is_empty(), "{bundle}");
    server.get(&format!("/fhir/Patient/{b}"), &patient_a).await.outcome(403, "forbidden");
    server.get(&format!("/fhir/Observation/{obs_b}"), &patient_a).await.outcome(403, "forbidden");
    server.get(&format!("/fhir/Patient/{b}/$everything"), &patient_a).await.outcome(403, "forbidden");
    server
        .post("/fhir/Observation", &patient_a, &observation(&a, WEIGHT, "2026-01-01T00:00:00Z", 70.0))
        .await
        .outcome(403, "forbidden");
    let mut edited = own.body.clone();
    edited["gender"] = json!("other");
    server.put(&format!("/fhir/Patient/{a}"), &patient_a, &edited, None).await.outcome(403, "forbidden");
    server.delete(&format!("/fhir/Observation/{obs_a}"), &patient_a).await.outcome(403, "forbidden");
    server
        .post(&format!("/fhir/Patient/{a}/$break-glass"), &patient_a, &json!({"reason": reason}))
        .await
        .outcome(403, "forbidden");
    let everything = server.get(&format!("/fhir/Patient/{a}/$everything"), &patient_a).await.status(200).body;
    assert!(matches(&everything).contains(&obs_a));
    // The admin runs the directory but never reads patient data.
    server.get(&format!("/fhir/Patient/{a}"), &server.admin).await.outcome(403, "forbidden");
    server.stop().await;
}

// ----- 6. Denials are audited without patient data ----------------------------

#[tokio::test]
async fn every_denial_is_audited_and_no_event_carries_patient_data() {
    let server = start().await;
    let (_, registrar) = server.user("front.desk", &["registrar"], None).await;
    let (clinician_id, clinician) = server.user("dr.curious", &["clinician"], None).await;
    let (nurse_id, nurse) = server.user("nurse.curious", &["nurse"], None).await;
    server.practitioner_for(&clinician_id, "Curious").await;

    let family = "Vanderbilt-Quist";
    let given = "Ottoline";
    let mrn = "MRN-5550199";
    let celebrity = server.create(&registrar, &patient(family, &[given], "1966-09-21", "female", mrn)).await;
    // Staff look the patient up by name and number (search values are redacted).
    server.get(&format!("/fhir/Patient?family={family}&identifier={MRN}|{mrn}"), &registrar).await.status(200);
    server.get(&format!("/fhir/Patient?name={given}"), &clinician).await.status(200);

    let before = record_accesses(&server.events().await).len();
    server.get(&format!("/fhir/Patient/{celebrity}"), &clinician).await.outcome(403, "forbidden");
    server.get(&format!("/fhir/Patient/{celebrity}/$everything"), &nurse).await.outcome(403, "forbidden");
    server
        .post("/fhir/Observation", &nurse, &observation(&celebrity, HEART_RATE, "2025-12-31T00:00:00Z", 60.0))
        .await
        .outcome(403, "forbidden");
    server.get(&format!("/fhir/Patient/{celebrity}/$access-log"), &clinician).await.outcome(403, "forbidden");

    let events = server.events().await;
    let accesses = record_accesses(&events);
    assert!(accesses.len() >= before + 4, "each denial is an event");
    let denied_to = |actor: &str, action: &str| {
        accesses.iter().any(|e| {
            let p = &e["payload"];
            p["outcome"] == "denied"
                && p["actor"] == actor
                && p["action"] == action
                && names_patient(e, &celebrity)
                && !p["reasons"].as_array().unwrap().is_empty()
        })
    };
    assert!(denied_to(&clinician_id, "read"), "the clinician's denied read is audited");
    assert!(denied_to(&nurse_id, "read"), "the nurse's denied $everything is audited");
    assert!(denied_to(&nurse_id, "create"), "the nurse's denied write is audited");
    assert!(denied_to(&clinician_id, "access_log"), "the denied access-log read is audited");
    let denied_read = accesses
        .iter()
        .find(|e| e["payload"]["outcome"] == "denied" && e["payload"]["actor"] == clinician_id.as_str())
        .unwrap();
    assert_eq!(denied_read["payload"]["resource_type"], "Patient");
    assert!(denied_read["payload"]["resource"].as_str().unwrap().starts_with(&format!("Patient/{celebrity}")));

    // The searches were audited with their values redacted.
    let searches: Vec<&&Value> = accesses.iter().filter(|e| e["payload"]["action"] == "search").collect();
    assert!(searches.len() >= 2);
    assert!(searches.iter().any(|e| e["payload"]["query"].as_str().unwrap_or_default().contains("family=")));

    // No event, of any kind, carries the patient's name or number.
    for event in &events {
        let text = event.to_string();
        for secret in [family, given, mrn, "1966-09-21"] {
            assert!(!text.contains(secret), "an event carries `{secret}`: {text}");
        }
    }
    server.stop().await;
}

// ----- 7. $access-log --------------------------------------------------------

#[tokio::test]
async fn the_patient_reads_who_accessed_their_record_with_ledger_proofs() {
    let server = start().await;
    let (_, registrar) = server.user("front.desk", &["registrar"], None).await;
    let (clinician_id, clinician) = server.user("dr.reader", &["clinician"], None).await;
    let practitioner = server.practitioner_for(&clinician_id, "Reader").await;
    let me = server.create(&registrar, &patient("Eriksen", &["Mette"], "1980-10-10", "female", "MRN-LOG")).await;
    let other = server.create(&registrar, &patient("Fofana", &["Awa"], "1991-01-09", "female", "MRN-LOG-2")).await;
    server.create(&registrar, &encounter(&me, &practitioner)).await;
    let obs = server.create(&clinician, &observation(&me, HEART_RATE, "2025-12-31T22:30:00Z", 75.0)).await;
    server.advance_secs(120);
    let read_at = server.clock().now().to_rfc3339();
    server
        .send(
            Method::GET,
            &format!("/fhir/Observation/{obs}"),
            Some(&clinician),
            None,
            &[("x-purpose-of-use", "TREAT")],
        )
        .await
        .status(200);
    server.get(&format!("/fhir/Patient/{other}"), &clinician).await.outcome(403, "forbidden");

    let (_, patient) = server.user("mette.e", &["patient"], Some(&me)).await;
    let path = format!("/fhir/Patient/{me}/$access-log");
    let is_the_read = |entry: &Value| {
        entry["access"]["who"] == clinician_id.as_str()
            && entry["access"]["action"] == "read"
            && entry["access"]["resource_type"] == "Observation"
    };
    // The access index follows the spine asynchronously.
    let mut log = Value::Null;
    for _ in 0..200 {
        log = server.get(&path, &patient).await.status(200).body;
        if log["entries"].as_array().unwrap().iter().any(is_the_read) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(log["patient"], format!("Patient/{me}"));
    assert!(log["log_key"].as_str().is_some_and(|k| !k.is_empty()), "{log}");
    let entries = log["entries"].as_array().unwrap();
    let entry = entries.iter().find(|e| is_the_read(e)).unwrap_or_else(|| panic!("the read is not listed: {log}"));
    let access = &entry["access"];
    assert_eq!(access["when"], read_at);
    assert_eq!(access["decision"], "allowed");
    assert_eq!(access["purpose"], "TREAT");
    assert_eq!(access["roles"], json!(["clinician"]));
    assert!(access["resource"].as_str().unwrap().starts_with(&format!("Observation/{obs}")));
    assert!(!access["reasons"].as_array().unwrap().is_empty());
    assert!(entry["seq"].as_u64().is_some());
    assert!(entry["event"].is_object());
    assert_eq!(entry["event"]["payload"]["type"], "record_access");
    assert_eq!(entry["event"]["uid"], access["event"]);
    // Only accesses to this patient's record are listed.
    for e in entries {
        let patients = e["event"]["payload"]["patients"].as_array().unwrap();
        assert!(patients.iter().any(|p| p == me.as_str()), "{e}");
        assert!(!patients.iter().any(|p| p == other.as_str()), "{e}");
    }
    // Others' logs are not the patient's to read; clinicians read none.
    server.get(&format!("/fhir/Patient/{other}/$access-log"), &patient).await.outcome(403, "forbidden");
    server.get(&path, &clinician).await.outcome(403, "forbidden");

    assert_eq!(entry["proof"], Value::Null, "no checkpoint covers the read yet");
    assert_eq!(entry["sealed"], false);

    // Once a checkpoint covering it is published, the entry carries its proof.
    let mut proof = None;
    for _ in 0..200 {
        server.send(Method::POST, "/api/v1/ledger/checkpoints", Some(&server.admin), None, &[]).await.status(201);
        let log = server.get(&path, &patient).await.status(200).body;
        let entry = log["entries"].as_array().unwrap().iter().find(|e| is_the_read(e)).cloned().unwrap();
        if let Some(p) = entry["proof"].as_str() {
            assert_eq!(entry["sealed"], true);
            proof = Some(p.to_owned());
            break;
        }
        assert_eq!(entry["sealed"], false);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let proof = proof.expect("the entry was never sealed into a published checkpoint");
    assert!(proof.starts_with("c2sp.org/tlog-proof@v1\n"), "{proof}");
    assert!(proof.contains("\nindex "), "{proof}");

    // The same trail as AuditEvents, for the auditor.
    let (_, auditor, _) = server.privileged_user("privacy.officer", &["auditor"]).await;
    let bundle = server.get(&format!("/fhir/AuditEvent?patient={me}"), &auditor).await.status(200).body;
    assert_eq!(bundle["type"], "searchset");
    let audit_events = bundle["entry"].as_array().unwrap();
    assert!(!audit_events.is_empty());
    assert!(audit_events.iter().all(|e| e["resource"]["resourceType"] == "AuditEvent"));
    let uid = entry_uid(entries, &is_the_read);
    let event = server.get(&format!("/fhir/AuditEvent/{uid}"), &auditor).await.status(200).body;
    assert_eq!(event["resourceType"], "AuditEvent");
    server.get(&format!("/fhir/AuditEvent/{uid}"), &clinician).await.outcome(403, "forbidden");
    server.stop().await;
}

fn entry_uid(entries: &[Value], pick: &dyn Fn(&Value) -> bool) -> String {
    entries.iter().find(|e| pick(e)).unwrap()["event"]["uid"].as_str().unwrap().to_owned()
}

// ----- 8. $erase ---------------------------------------------------------------

#[tokio::test]
async fn erasure_needs_step_up_respects_legal_hold_and_leaves_only_gone() {
    let server = start().await;
    let (_, registrar) = server.user("front.desk", &["registrar"], None).await;
    let (clinician_id, clinician) = server.user("dr.erase", &["clinician"], None).await;
    let practitioner = server.practitioner_for(&clinician_id, "Eraser").await;
    let subject = server.create(&registrar, &patient("Gruber", &["Hanna"], "1977-07-17", "female", "MRN-ERASE")).await;
    let keep = server.create(&registrar, &patient("Horvat", &["Ivo"], "1969-06-09", "male", "MRN-KEEP")).await;
    for p in [&subject, &keep] {
        server.create(&registrar, &encounter(p, &practitioner)).await;
    }
    let obs = server.create(&clinician, &observation(&subject, HEART_RATE, "2025-12-31T10:00:00Z", 66.0)).await;
    let kept_obs = server.create(&clinician, &observation(&keep, HEART_RATE, "2025-12-31T11:00:00Z", 77.0)).await;

    let (_, admin, totp) = server.privileged_user("records.admin", &["admin"]).await;
    let erase = format!("/fhir/Patient/{subject}/$erase");
    // Without a recent re-authentication, erasure is refused.
    server.advance_secs(601);
    let why = server.post(&erase, &admin, &json!({})).await.outcome(401, "login");
    assert!(why.contains("step-up"), "{why}");
    // Clinicians and registrars may not erase at all.
    server.post(&erase, &clinician, &json!({})).await.outcome(403, "forbidden");
    server.post(&erase, &registrar, &json!({})).await.outcome(403, "forbidden");
    server.get(&format!("/fhir/Patient/{subject}"), &registrar).await.status(200);

    let body = json!({"totp": server.code(&totp)});
    server.send(Method::POST, "/api/v1/auth/step-up", Some(&admin), Some(&body), &[]).await.status(200);

    // A legal hold blocks erasure until it is lifted.
    let hold = format!("/fhir/Patient/{subject}/$legal-hold");
    server.post(&hold, &clinician, &json!({"reason": "litigation 2026-17"})).await.outcome(403, "forbidden");
    server.post(&hold, &admin, &json!({})).await.outcome(400, "invalid");
    server.post(&hold, &admin, &json!({"reason": "litigation 2026-17"})).await.status(200);
    let why = server.post(&erase, &admin, &json!({})).await.outcome(409, "business-rule");
    assert!(why.contains("legal hold"), "{why}");
    server.get(&format!("/fhir/Observation/{obs}"), &clinician).await.status(200);
    server.post(&hold, &admin, &json!({"release": true})).await.status(200);

    let r = server.post(&erase, &admin, &json!({})).await.status(200);
    assert_eq!(r.body["resourceType"], "OperationOutcome");
    assert_eq!(r.body["issue"][0]["severity"], "information");

    // Gone: the patient, their data, their record.
    server.get(&format!("/fhir/Patient/{subject}"), &registrar).await.outcome(410, "deleted");
    server.get(&format!("/fhir/Patient/{subject}"), &clinician).await.outcome(410, "deleted");
    let r = server.get(&format!("/fhir/Observation/{obs}"), &clinician).await;
    assert!(r.status == 410 || r.status == 404, "{} {}", r.status, r.body);
    assert_eq!(r.body["resourceType"], "OperationOutcome");
    server.get(&format!("/fhir/Patient/{subject}/$everything"), &clinician).await.outcome(410, "deleted");
    let r = server.get(&format!("/fhir/Patient/{subject}/_history/1"), &registrar).await;
    assert!(r.status == 410 || r.status == 404, "{} {}", r.status, r.body);
    let bundle = server.get(&format!("/fhir/Observation?code={HEART_RATE}"), &clinician).await;
    // Search must not fail on the erased record; it finds the other patient's data.
    let bundle = bundle.status(200).body;
    assert!(matches(&bundle).contains(&kept_obs), "{bundle}");
    assert!(!matches(&bundle).contains(&obs), "{bundle}");
    server.post(&erase, &admin, &json!({})).await.outcome(410, "deleted");
    // The other patient is untouched.
    server.get(&format!("/fhir/Patient/{keep}"), &registrar).await.status(200);
    server.get(&format!("/fhir/Observation/{kept_obs}"), &clinician).await.status(200);

    // The erasure itself is on the record.
    let events = server.events().await;
    assert!(record_accesses(&events).iter().any(|e| e["payload"]["action"] == "erase"
        && e["payload"]["outcome"] == "allowed"
        && names_patient(e, &subject)));
    server.stop().await;
}

// ----- Concurrency -----------------------------------------------------------

#[tokio::test]
async fn concurrent_writes_all_succeed() {
    let server = start().await;
    let (_, registrar) = server.user("front.desk", &["registrar"], None).await;
    // Independent creates at the same moment (while the server's own
    // consumers of the spine write too) must all be stored: a write that
    // fails for want of a lock is a 503 the client did nothing to cause.
    let creates = (0..16).map(|i| {
        let (server, registrar) = (&server, &registrar);
        async move {
            let body = patient("Parallel", &["Pat"], "2000-01-01", "unknown", &format!("MRN-PAR-{i}"));
            server.post("/fhir/Patient", registrar, &body).await
        }
    });
    let replies = futures_util::future::join_all(creates).await;
    for r in &replies {
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let ids: BTreeSet<String> = replies.iter().map(Reply::id).collect();
    assert_eq!(ids.len(), 16);
    let found = found(&server, &registrar, "/fhir/Patient?family=parallel&_count=100".to_owned()).await;
    assert_eq!(found, ids);
    // Sequential writes interleaved with reads, each followed by the
    // spine consumers' own writes.
    let id = ids.iter().next().unwrap().clone();
    for version in 1..=10 {
        let mut current = server.get(&format!("/fhir/Patient/{id}"), &registrar).await.status(200).body;
        assert_eq!(current["meta"]["versionId"], version.to_string());
        current["active"] = json!(version % 2 == 0);
        let r =
            server.put(&format!("/fhir/Patient/{id}"), &registrar, &current, Some(&format!("W/\"{version}\""))).await;
        assert_eq!(r.status, 200, "update {version}: {}", r.body);
    }
    server.stop().await;
}
