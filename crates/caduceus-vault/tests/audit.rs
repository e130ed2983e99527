//! Record-access audit: the spine payload, its IHE BALP AuditEvent, the
//! `$access-log` row, and the redaction that keeps identifying values out of
//! all three. Identifying values come from the Synthea patients in
//! `../shared/data/fhir-synthea-covid-juvenile`; BALP codes are checked
//! against the profiles in `../shared/data/ihe-balp-auditevent`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use base64::Engine as _;
use caduceus_core::event::{
    AccessOutcome, EventClass, MAX_EVENT_BYTES, MAX_RECORD_ACCESS_BYTES, MAX_RECORD_PATIENTS, RecordAction,
};
use caduceus_core::{Actor, EventId, Payload, SecurityEvent, Severity, Status, Timestamp};
use caduceus_vault::audit::{
    AccessRecord, BREAK_GLASS_POLICY_PREFIX, MAX_QUERY_CHARS, access_log_entry, audit_event, involves_patient,
    redact_params, redact_query,
};
use serde_json::Value;

const SERVER: &str = "https://vault.hospital.example/fhir";
const AT: Timestamp = Timestamp(1_764_428_400_123);
const BALP_SD: &str = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

fn record(action: RecordAction, outcome: AccessOutcome) -> AccessRecord {
    let mut record = AccessRecord::new(AT, action, outcome, "u-1001", "10.1.2.3:50432");
    record.roles = vec!["clinician".into(), "ward-7".into()];
    record.purpose_of_use = Some("TREAT".into());
    record.resource_type = Some("Observation".into());
    record.resource = Some("Observation/obs-1/_history/3".into());
    record.patients = vec!["pseudo-7".into()];
    record.reasons = vec!["care_team_member".into()];
    record.request_id = Some("req-42".into());
    record
}

fn render(record: &AccessRecord) -> (SecurityEvent, Value) {
    let event = record.to_event().unwrap();
    let audit = audit_event(&event, SERVER).unwrap();
    (event, audit)
}

fn codes(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|c| (c["system"].as_str().unwrap().to_owned(), c["code"].as_str().unwrap().to_owned()))
        .collect()
}

fn has_code(list: &Value, system: &str, code: &str) -> bool {
    codes(list).contains(&(system.to_owned(), code.to_owned()))
}

/// The agent whose type has this code.
fn agent<'a>(audit: &'a Value, code: &str) -> &'a Value {
    audit["agent"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["type"]["coding"][0]["code"] == code)
        .unwrap_or_else(|| panic!("no agent of type {code} in {audit:#}"))
}

/// The entities whose role has this object-role code.
fn entities_with_role<'a>(audit: &'a Value, role: &str) -> Vec<&'a Value> {
    audit["entity"].as_array().unwrap().iter().filter(|e| e["role"]["code"] == role).collect()
}

fn decoded_query(audit: &Value) -> String {
    let query = entities_with_role(audit, "24");
    assert_eq!(query.len(), 1, "{audit:#}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(query[0]["query"].as_str().unwrap()).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert_eq!(query[0]["description"], text.as_str());
    text
}

fn profile(audit: &Value) -> Option<String> {
    audit["meta"]["profile"][0].as_str().map(|p| p.trim_start_matches(BALP_SD).to_owned())
}

#[test]
fn a_patient_read_follows_balp_patient_read() {
    let mut read = record(RecordAction::Read, AccessOutcome::Allowed);
    read.resource_type = Some("Patient".into());
    read.resource = Some("Patient/pseudo-7/_history/2".into());
    let (event, audit) = render(&read);

    assert_eq!(audit["resourceType"], "AuditEvent");
    assert_eq!(audit["id"], event.uid().to_string());
    assert_eq!(profile(&audit).as_deref(), Some("IHE.BasicAudit.PatientRead"));
    assert_eq!(audit["type"]["system"], "http://terminology.hl7.org/CodeSystem/audit-event-type");
    assert_eq!(audit["type"]["code"], "rest");
    assert!(has_code(&audit["subtype"], "http://hl7.org/fhir/restful-interaction", "read"));
    assert_eq!(audit["action"], "R");
    assert_eq!(audit["recorded"], "2025-11-29T15:00:00.123Z");
    assert_eq!(audit["outcome"], "0");

    // BALP Read: the server is the source of the data, the client its destination.
    let user = agent(&audit, "IRCP");
    assert_eq!(user["requestor"], true);
    assert_eq!(user["who"]["identifier"]["value"], "u-1001");
    assert_eq!(user["role"][0]["text"], "clinician");
    assert_eq!(user["purposeOfUse"][0]["coding"][0]["code"], "TREAT");
    assert!(user.get("network").is_none(), "users are not network devices");
    let client = agent(&audit, "110152");
    assert_eq!(client["requestor"], false);
    assert_eq!(client["network"]["address"], "10.1.2.3");
    assert_eq!(client["network"]["type"], "2");
    let server = agent(&audit, "110153");
    assert_eq!(server["network"]["address"], SERVER);
    assert_eq!(server["network"]["type"], "5");
    assert_eq!(server["who"], audit["source"]["observer"]);
    assert_eq!(audit["source"]["site"], SERVER);
    assert_eq!(audit["source"]["type"][0]["code"], "4");

    let patients = entities_with_role(&audit, "1");
    assert_eq!(patients.len(), 1);
    assert_eq!(patients[0]["type"]["code"], "1");
    assert_eq!(patients[0]["what"]["reference"], "Patient/pseudo-7");
    let data = entities_with_role(&audit, "4");
    assert_eq!(data[0]["type"]["code"], "2");
    assert_eq!(data[0]["what"]["reference"], "Patient/pseudo-7/_history/2");
    let transaction = audit["entity"].as_array().unwrap().iter().find(|e| e["type"]["code"] == "XrequestId").unwrap();
    assert_eq!(transaction["what"]["identifier"]["value"], "req-42");

    // The spine event itself.
    assert_eq!(event.class_uid(), EventClass::ApiActivity.uid());
    assert_eq!(event.status(), Status::Success);
    assert_eq!(event.severity(), Severity::Informational);
    assert_eq!(event.target().unwrap().uid, "Patient/pseudo-7");
    assert_eq!(event.time(), AT);
}

/// type system, type code, a subtype (system, code) it must carry, action code, agent type codes.
struct Expected {
    action: RecordAction,
    type_code: &'static str,
    subtype: (&'static str, &'static str),
    action_code: &'static str,
    agents: [&'static str; 3],
    profile: Option<&'static str>,
}

#[test]
fn every_action_renders_its_balp_pattern() {
    const REST: &str = "http://hl7.org/fhir/restful-interaction";
    const OWN: &str = "urn:caduceus:audit-subtype";
    const LIFECYCLE: &str = "http://terminology.hl7.org/CodeSystem/iso-21089-lifecycle";
    let cases = [
        Expected {
            action: RecordAction::Read,
            type_code: "rest",
            subtype: (REST, "read"),
            action_code: "R",
            agents: ["IRCP", "110152", "110153"],
            profile: Some("IHE.BasicAudit.PatientRead"),
        },
        Expected {
            action: RecordAction::Vread,
            type_code: "rest",
            subtype: (REST, "vread"),
            action_code: "R",
            agents: ["IRCP", "110152", "110153"],
            profile: Some("IHE.BasicAudit.PatientRead"),
        },
        Expected {
            action: RecordAction::History,
            type_code: "rest",
            subtype: (REST, "history-instance"),
            action_code: "R",
            agents: ["IRCP", "110152", "110153"],
            profile: None,
        },
        Expected {
            action: RecordAction::Search,
            type_code: "rest",
            subtype: (REST, "search-type"),
            action_code: "E",
            agents: ["IRCP", "110153", "110152"],
            profile: Some("IHE.BasicAudit.PatientQuery"),
        },
        Expected {
            action: RecordAction::Create,
            type_code: "rest",
            subtype: (REST, "create"),
            action_code: "C",
            agents: ["AUT", "110153", "110152"],
            profile: Some("IHE.BasicAudit.PatientCreate"),
        },
        Expected {
            action: RecordAction::Update,
            type_code: "rest",
            subtype: (REST, "update"),
            action_code: "U",
            agents: ["AUT", "110153", "110152"],
            profile: Some("IHE.BasicAudit.PatientUpdate"),
        },
        Expected {
            action: RecordAction::Delete,
            type_code: "rest",
            subtype: (REST, "delete"),
            action_code: "D",
            agents: ["AUT", "110150", "custodian"],
            profile: Some("IHE.BasicAudit.PatientDelete"),
        },
        Expected {
            action: RecordAction::Export,
            type_code: "110106",
            subtype: (LIFECYCLE, "disclose"),
            action_code: "R",
            agents: ["IRCP", "110152", "110153"],
            profile: Some("IHE.BasicAudit.PrivacyDisclosure.Source"),
        },
        Expected {
            action: RecordAction::Erase,
            type_code: "rest",
            subtype: (OWN, "$erase"),
            action_code: "D",
            agents: ["AUT", "110150", "custodian"],
            profile: None,
        },
        Expected {
            action: RecordAction::AccessLog,
            type_code: "110101",
            subtype: (OWN, "$access-log"),
            action_code: "R",
            agents: ["IRCP", "110152", "110153"],
            profile: None,
        },
        Expected {
            action: RecordAction::BreakGlass,
            type_code: "110113",
            subtype: ("https://profiles.ihe.net/ITI/BALP/CodeSystem/AuthZsubType", "AuthZ-Consent"),
            action_code: "E",
            agents: ["IRCP", "110150", "authserver"],
            profile: None,
        },
        Expected {
            action: RecordAction::Review,
            type_code: "110101",
            subtype: (OWN, "review"),
            action_code: "E",
            agents: ["IRCP", "110152", "110153"],
            profile: None,
        },
    ];
    for case in cases {
        let (event, audit) = render(&record(case.action, AccessOutcome::Allowed));
        let what = case.action.as_str();
        assert_eq!(audit["type"]["code"], case.type_code, "{what}");
        assert!(has_code(&audit["subtype"], case.subtype.0, case.subtype.1), "{what}: {:#}", audit["subtype"]);
        assert_eq!(audit["action"], case.action_code, "{what}");
        assert_eq!(audit["outcome"], "0", "{what}");
        assert_eq!(profile(&audit).as_deref(), case.profile, "{what}");
        for code in case.agents {
            agent(&audit, code);
        }
        assert_eq!(agent(&audit, case.agents[0])["requestor"], true, "{what}");
        assert_eq!(entities_with_role(&audit, "1")[0]["what"]["reference"], "Patient/pseudo-7", "{what}");
        // The source of truth round-trips through the canonical form and
        // renders the same AuditEvent again.
        let back = SecurityEvent::from_json_slice(&event.canonical_bytes().unwrap()).unwrap();
        assert_eq!(audit_event(&back, SERVER).unwrap(), audit, "{what}");
        let class = if case.action == RecordAction::BreakGlass { 3003 } else { 6003 };
        assert_eq!(event.class_uid(), class, "{what}");
    }
}

#[test]
fn denial_and_failure_are_minor_and_serious_failures() {
    let mut denied = record(RecordAction::Read, AccessOutcome::Denied);
    denied.reasons = vec!["no_care_relationship".into(), "consent_refuses".into()];
    let (event, audit) = render(&denied);
    assert_eq!(audit["outcome"], "4");
    assert_eq!(audit["outcomeDesc"], "denied: no_care_relationship, consent_refuses");
    assert!(audit.get("meta").is_none(), "BALP profiles fix a successful outcome");
    assert_eq!(agent(&audit, "IRCP")["requestor"], true);
    assert_eq!((event.status(), event.severity()), (Status::Failure, Severity::Medium));

    let mut failed = record(RecordAction::Update, AccessOutcome::Failed);
    failed.detail = Some("version conflict".into());
    let (event, audit) = render(&failed);
    assert_eq!(audit["outcome"], "8");
    assert!(audit["outcomeDesc"].as_str().unwrap().ends_with("; version conflict"));
    assert_eq!((event.status(), event.severity()), (Status::Failure, Severity::Low));
}

#[test]
fn searches_record_the_redacted_query_and_every_patient() {
    let mut search = record(RecordAction::Search, AccessOutcome::Allowed);
    search.resource_type = Some("Patient".into());
    search.resource = None;
    search.query = Some("name=Schowalter414&birthdate=2009-04-29&gender=female&_count=10".into());
    search.patients = vec!["p-a".into(), "p-b".into(), "p-a".into(), "p-c".into()];
    let (event, audit) = render(&search);
    assert_eq!(decoded_query(&audit), "Patient?name=***&birthdate=***&gender=female&_count=10");
    let patients: Vec<_> = entities_with_role(&audit, "1").iter().map(|e| e["what"]["reference"].clone()).collect();
    assert_eq!(patients, ["Patient/p-a", "Patient/p-b", "Patient/p-c"], "repeats are recorded once");
    assert!(has_code(&audit["subtype"], "http://hl7.org/fhir/restful-interaction", "search-type"));
    assert!(audit.get("meta").is_none(), "PatientQuery wants one patient per AuditEvent");
    assert!(event.target().is_none());
    assert!(involves_patient(&event, "p-b") && !involves_patient(&event, "p-d"));

    search.patients = vec![];
    let (_, audit) = render(&search);
    assert_eq!(profile(&audit).as_deref(), Some("IHE.BasicAudit.Query"));
    search.resource_type = None;
    let (_, audit) = render(&search);
    assert!(has_code(&audit["subtype"], "http://hl7.org/fhir/restful-interaction", "search-system"));
}

#[test]
fn break_glass_is_emergency_treatment_with_its_grant_as_policy() {
    let mut under_grant = record(RecordAction::Read, AccessOutcome::Allowed);
    under_grant.purpose_of_use = None;
    under_grant.break_glass = Some("bg 2025/11".into());
    let (event, audit) = render(&under_grant);
    let user = agent(&audit, "IRCP");
    assert_eq!(user["purposeOfUse"][0]["coding"][0]["system"], "http://terminology.hl7.org/CodeSystem/v3-ActReason");
    assert_eq!(user["purposeOfUse"][0]["coding"][0]["code"], "ETREAT");
    assert_eq!(user["policy"][0], format!("{BREAK_GLASS_POLICY_PREFIX}bg%202025%2F11"));
    assert_eq!(audit["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
    assert_eq!(event.severity(), Severity::Medium);

    let mut grant = record(RecordAction::BreakGlass, AccessOutcome::Allowed);
    grant.break_glass = Some("bg-1".into());
    let (event, audit) = render(&grant);
    let purposes = &agent(&audit, "IRCP")["purposeOfUse"];
    assert_eq!(purposes.as_array().unwrap().len(), 2, "TREAT as declared, ETREAT added");
    assert_eq!(event.class_uid(), EventClass::AuthorizeSession.uid());
    assert_eq!(event.severity(), Severity::High);
    assert_eq!(agent(&audit, "authserver")["who"], audit["source"]["observer"]);
}

#[test]
fn export_is_a_privacy_disclosure_from_this_server() {
    let mut export = record(RecordAction::Export, AccessOutcome::Allowed);
    export.resource = None;
    export.resource_type = None;
    let (_, audit) = render(&export);
    assert_eq!(audit["type"]["system"], "http://dicom.nema.org/resources/ontology/DCM");
    assert_eq!(audit["type"]["code"], "110106");
    // val-audit-source: the source agent is the observer.
    assert_eq!(agent(&audit, "110153")["who"], audit["source"]["observer"]);
    let job = entities_with_role(&audit, "20");
    assert_eq!(job[0]["name"], "$export");
    assert!(audit["entity"].as_array().unwrap().len() >= 2, "Disclose needs the patient and the data");
}

#[test]
fn access_log_rows_say_who_when_why_and_the_decision() {
    let mut under_grant = record(RecordAction::Read, AccessOutcome::Denied);
    under_grant.break_glass = Some("bg-9".into());
    under_grant.reasons = vec!["grant_expired".into()];
    let event = under_grant.to_event().unwrap();
    let row = access_log_entry(&event).unwrap();
    assert_eq!(row["event"], event.uid().to_string());
    assert_eq!(row["when"], "2025-11-29T15:00:00.123Z");
    assert_eq!(row["who"], "u-1001");
    assert_eq!(row["roles"], serde_json::json!(["clinician", "ward-7"]));
    assert_eq!(row["source"], "10.1.2.3:50432");
    assert_eq!(row["action"], "read");
    assert_eq!(row["resource"], "Observation/obs-1/_history/3");
    assert_eq!(row["purpose"], "TREAT");
    assert_eq!(row["break_glass"], "bg-9");
    assert_eq!(row["decision"], "denied");
    assert_eq!(row["reasons"], serde_json::json!(["grant_expired"]));

    let other = SecurityEvent::new(
        EventId::new(AT),
        AT,
        Severity::Informational,
        Status::Success,
        Actor::system(),
        None,
        "started",
        Payload::ServiceLifecycle { phase: caduceus_core::event::LifecyclePhase::Started, version: "1".into() },
    )
    .unwrap();
    assert!(audit_event(&other, SERVER).is_none());
    assert!(access_log_entry(&other).is_none());
    assert!(!involves_patient(&other, "pseudo-7"));
}

#[test]
fn redaction_keeps_names_and_safe_values() {
    let cases = [
        ("Patient", "name=Smith&_count=10", "name=***&_count=10"),
        ("Patient", "?family:exact=Smith&given=Jo", "family:exact=***&given=***"),
        (
            "Patient",
            "address-city=Boston&address-postalcode=02115&gender=male",
            "address-city=***&address-postalcode=***&gender=male",
        ),
        (
            "Patient",
            "phone=555&email=a%40b.example&telecom=x&phonetic=smit",
            "phone=***&email=***&telecom=***&phonetic=***",
        ),
        ("Patient", "identifier=http://h.example|MRN1&birthdate=ge2001-01-01", "identifier=***&birthdate=***"),
        ("Patient", "death-date=2020", "death-date=***"),
        ("Observation", "death-date=2020", "death-date=2020"),
        ("Observation", "subject:Patient.name=Smith&code=8867-4", "subject:Patient.name=***&code=8867-4"),
        ("Observation", "patient.identifier=MRN1&date=ge2020", "patient.identifier=***&date=ge2020"),
        ("Observation", "subject:identifier=MRN1&patient=pseudo-7", "subject:identifier=***&patient=pseudo-7"),
        (
            "Observation",
            "code:text=Smith+family&_has:Condition:patient:code=x",
            "code:text=***&_has:Condition:patient:code=x",
        ),
        ("Patient", "_content=Smith&_text=Smith&_filter=name+eq+Smith", "_content=***&_text=***&_filter=***"),
        ("Patient", "NAME=Smith&na%6De=Smith&Address=Elm", "NAME=***&name=***&Address=***"),
        ("Patient", "Smith&name", "***&***"),
        ("Patient", "Sm%20ith=1&x<y>=2", "***=***&***=***"),
        (
            "Patient",
            "_sort=birthdate&_include=Patient:organization&_id=pseudo-7",
            "_sort=birthdate&_include=Patient:organization&_id=pseudo-7",
        ),
        ("Patient", "", ""),
    ];
    for (resource_type, query, expected) in cases {
        let redacted = redact_query(resource_type, query);
        assert_eq!(redacted, expected, "{resource_type}?{query}");
        assert_eq!(redact_query(resource_type, &redacted), redacted, "idempotent: {query}");
    }
}

#[test]
fn redacting_parsed_parameters_cannot_be_fooled_by_decoded_separators() {
    let params = [
        ("name".to_owned(), "John&code=Smith".to_owned()),
        ("code".to_owned(), "a&given=b=c".to_owned()),
        ("_count".to_owned(), "10".to_owned()),
        ("bad name".to_owned(), "Smith".to_owned()),
    ];
    let redacted = redact_params("Patient", &params);
    assert_eq!(redacted, "name=***&code=a%26given%3Db%3Dc&_count=10&***=***");
    assert_eq!(redact_query("Patient", &redacted), redacted);
}

#[test]
fn redacted_queries_are_capped() {
    let long = (0..2000).map(|n| format!("code=c{n}")).collect::<Vec<_>>().join("&");
    let redacted = redact_query("Observation", &long);
    assert!(redacted.chars().count() <= MAX_QUERY_CHARS);
    assert!(redacted.ends_with("&..."));
    assert!(redacted.starts_with("code=c0&code=c1&"));
    assert_eq!(redact_query("Observation", &redacted), redacted);
    // A huge single value (read only up to the input cap) is cut whole.
    let huge = format!("code={}", "x".repeat(100_000));
    assert_eq!(redact_query("Observation", &huge), "&...");
    let params: Vec<_> = (0..5000).map(|n| ("code".to_owned(), format!("c{n}"))).collect();
    let redacted = redact_params("Observation", &params);
    assert!(redacted.chars().count() <= MAX_QUERY_CHARS && redacted.ends_with("&..."));
}

#[test]
fn patients_are_capped_and_the_payload_fits_the_event() {
    let mut search = record(RecordAction::Search, AccessOutcome::Allowed);
    search.patients = (0..MAX_RECORD_PATIENTS + 50).map(|n| format!("{n:036}")).collect();
    let (event, audit) = render(&search);
    let Payload::RecordAccess { patients, patients_truncated, .. } = event.payload() else { panic!() };
    assert_eq!(patients.len(), MAX_RECORD_PATIENTS);
    assert!(patients_truncated);
    assert!(audit["outcomeDesc"].as_str().unwrap().contains("list truncated"));
    assert!(event.canonical_bytes().unwrap().len() < MAX_EVENT_BYTES);

    // Longer ids: fewer fit in the byte budget; the rest are marked truncated.
    search.patients = (0..MAX_RECORD_PATIENTS).map(|n| format!("{n:064}")).collect();
    let event = search.to_event().unwrap();
    let Payload::RecordAccess { patients, patients_truncated, .. } = event.payload() else { panic!() };
    assert!(patients.len() < MAX_RECORD_PATIENTS && patients.len() > 500, "{}", patients.len());
    assert!(patients_truncated);
    assert!(serde_json::to_vec(event.payload()).unwrap().len() <= MAX_RECORD_ACCESS_BYTES);
    let bytes = event.canonical_bytes().unwrap();
    assert!(bytes.len() < MAX_EVENT_BYTES);
    assert_eq!(SecurityEvent::from_json_slice(&bytes).unwrap(), event);

    // Hostile field sizes are cut, never refused: the access is still recorded.
    let mut hostile = record(RecordAction::Read, AccessOutcome::Denied);
    hostile.actor = "\u{1}".repeat(10_000);
    hostile.roles = vec!["\u{1}".repeat(300); 100];
    hostile.reasons = vec!["\u{1}".repeat(300); 100];
    hostile.detail = Some("\u{1}".repeat(100_000));
    hostile.query = Some("code=\u{1}".repeat(10_000));
    let event = hostile.to_event().unwrap();
    assert!(event.canonical_bytes().unwrap().len() < MAX_EVENT_BYTES);
}

/// Identifying values of a real (synthetic) patient record.
fn identifying_values(patient: &Value) -> Vec<String> {
    let mut values = vec![patient["birthDate"].as_str().unwrap().to_owned()];
    for name in patient["name"].as_array().unwrap() {
        values.push(name["family"].as_str().unwrap().to_owned());
        values.extend(name["given"].as_array().unwrap().iter().map(|g| g.as_str().unwrap().to_owned()));
    }
    for address in patient["address"].as_array().unwrap() {
        values.extend(address["line"].as_array().unwrap().iter().map(|l| l.as_str().unwrap().to_owned()));
        values.extend(["city", "state", "postalCode"].iter().filter_map(|k| address[*k].as_str()).map(str::to_owned));
    }
    values.extend(patient["telecom"].as_array().unwrap().iter().map(|t| t["value"].as_str().unwrap().to_owned()));
    values.extend(patient["identifier"].as_array().unwrap().iter().map(|i| i["value"].as_str().unwrap().to_owned()));
    values
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| if b.is_ascii_alphanumeric() { char::from(b).to_string() } else { format!("%{b:02X}") })
        .collect()
}

#[test]
fn no_identifying_value_of_a_synthea_patient_survives() {
    let dir = data_dir().join("fhir-synthea-covid-juvenile/sample_covid_fhir_juvenile_patients/original_fhir_json");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 10, "{}", dir.display());
    let mut checked = 0;
    for file in files {
        let bundle: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        // The hospital and practitioner bundles hold no patient.
        let Some(patient) =
            bundle["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).find(|r| r["resourceType"] == "Patient")
        else {
            continue;
        };
        checked += 1;
        let name = &patient["name"][0];
        let address = &patient["address"][0];
        let mrn = &patient["identifier"][1];
        let ssn = &patient["identifier"][2];
        let raw = [
            format!("family={}", encode(name["family"].as_str().unwrap())),
            format!("given:exact={}", encode(name["given"][0].as_str().unwrap())),
            format!("name={}+{}", name["given"][0].as_str().unwrap(), name["family"].as_str().unwrap()),
            format!("birthdate=eq{}", patient["birthDate"].as_str().unwrap()),
            format!("address={}", encode(address["line"][0].as_str().unwrap())),
            format!("address-city={}", address["city"].as_str().unwrap()),
            format!("address-postalcode={}", address["postalCode"].as_str().unwrap_or("01581")),
            format!("address-state={}", address["state"].as_str().unwrap()),
            format!("phone={}", patient["telecom"][0]["value"].as_str().unwrap()),
            format!("identifier={}|{}", mrn["system"].as_str().unwrap(), mrn["value"].as_str().unwrap()),
            format!("identifier={}%7C{}", ssn["system"].as_str().unwrap(), ssn["value"].as_str().unwrap()),
            "gender=female&_count=50".to_owned(),
        ]
        .join("&");
        let mut search = record(RecordAction::Search, AccessOutcome::Allowed);
        search.resource_type = Some("Patient".into());
        search.resource = None;
        search.patients = vec!["pseudo-7".into()];
        search.query = Some(raw.clone());
        // A fixed uid: a random one could contain a short value (a postal code) by chance.
        let event = SecurityEvent::new(
            EventId(uuid::Uuid::from_u128(0xa)),
            AT,
            Severity::Informational,
            Status::Success,
            Actor { kind: caduceus_core::ActorKind::User, uid: search.actor.clone() },
            None,
            "record access: search allowed",
            search.to_payload(),
        )
        .unwrap();
        let audit = audit_event(&event, SERVER).unwrap();

        let payload = serde_json::to_string(event.payload()).unwrap();
        let sealed = String::from_utf8(event.canonical_bytes().unwrap()).unwrap();
        let rendered = audit.to_string();
        let query = decoded_query(&audit);
        let row = access_log_entry(&event).unwrap().to_string();
        assert!(query.ends_with("gender=female&_count=50"), "{query}");
        for value in identifying_values(patient) {
            let encoded = encode(&value);
            for (what, text) in [("payload", &payload), ("event", &sealed), ("audit", &rendered), ("query", &query)] {
                assert!(!text.contains(&value) && !text.contains(&encoded), "{what} of {} leaks", file.display());
            }
            assert!(!row.contains(&value));
            assert!(
                raw.contains(&value)
                    || raw.contains(&encoded)
                    || raw.contains(&value.replace(' ', "+"))
                    || value.len() < 3,
                "the query names every value checked"
            );
        }
    }
    assert_eq!(checked, 10);
}

#[test]
fn balp_example_queries_keep_their_non_identifying_parameters() {
    // The query strings of the BALP Query examples name no person: nothing
    // in them is redacted.
    let fsh = std::fs::read_to_string(data_dir().join("ihe-balp-auditevent/input/fsh/ex-patientQuery.fsh")).unwrap();
    let queries: Vec<(&str, &str)> = fsh
        .lines()
        .filter_map(|line| line.strip_prefix("GET test.fhir.org/r4/"))
        .filter_map(|rest| rest.split_once('?'))
        .collect();
    assert!(queries.len() >= 2);
    for (resource_type, query) in queries {
        assert_eq!(redact_query(resource_type, query), query);
    }
    // And the codes this module uses are the ones the profiles fix.
    let read = std::fs::read_to_string(data_dir().join("ihe-balp-auditevent/input/fsh/PatientRead.fsh")).unwrap();
    assert!(read.contains("agent[client].type = http://dicom.nema.org/resources/ontology/DCM#110152"));
    assert!(read.contains("entity[patient].role = http://terminology.hl7.org/CodeSystem/object-role#1"));
    let query = std::fs::read_to_string(data_dir().join("ihe-balp-auditevent/input/fsh/PatientQuery.fsh")).unwrap();
    assert!(query.contains("entity[query].role = http://terminology.hl7.org/CodeSystem/object-role#24"));
    assert!(query.contains("* action = #E"));
    let disclose = std::fs::read_to_string(data_dir().join("ihe-balp-auditevent/input/fsh/Disclose.fsh")).unwrap();
    assert!(disclose.contains("* type = DCM#110106"));
}
