//! Search: index entries of real Synthea resources, queries that find them
//! (through a tiny in-test model of how the store matches), the R4 date
//! prefix semantics, and hostile or unsupported input.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use caduceus_vault::blind::BlindIndexer;
use caduceus_vault::search::{
    DateMatch, IndexEntry, IndexValue, MAX_BIRTH_YEARS, MAX_COUNT, Match, Prefix, SearchError, SearchRequest, SortKey,
    index_entries, parse_date_range, parse_search,
};
use serde_json::{Value, json};

const BUNDLE: &str =
    "/work/shared/data/fhir-synthea-hiv-bundles/sample_data/Bo157_Smith67_fa5aa9e4-255d-62cf-0278-9ae778a2620c.json";

fn indexer() -> BlindIndexer {
    BlindIndexer::new([42; 32])
}

/// The first resource of a type in the Synthea bundle, with its `urn:uuid:`
/// references resolved to `Type/id` as the bundle layer does before storing.
fn first(resource_type: &str) -> Value {
    let bundle: Value = serde_json::from_str(&std::fs::read_to_string(BUNDLE).unwrap()).unwrap();
    let mut resource = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .find(|r| r["resourceType"] == resource_type)
        .unwrap();
    for (field, target) in [("subject", "Patient"), ("encounter", "Encounter")] {
        if let Some(reference) = resource[field]["reference"].as_str() {
            let id = reference.trim_start_matches("urn:uuid:").to_owned();
            resource[field]["reference"] = json!(format!("{target}/{id}"));
        }
    }
    resource
}

fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn search(resource_type: &str, pairs: &[(&str, &str)]) -> Result<SearchRequest, SearchError> {
    parse_search(resource_type, &query(pairs), &indexer())
}

/// How the store matches: every clause has a match among the entries of
/// its parameter, and every post filter holds on the decrypted resource.
fn store_matches(entries: &[IndexEntry], resource: &Value, request: &SearchRequest) -> bool {
    request.clauses.iter().all(|clause| {
        clause.any_of.iter().any(|m| {
            entries.iter().filter(|e| e.param == clause.param).any(|e| match (m, &e.value) {
                (Match::Term(t), IndexValue::Term(u)) => t == u,
                (Match::Date(d), IndexValue::Range { lo, hi }) => d.matches(*lo, *hi),
                _ => false,
            })
        })
    }) && request.post_filters.iter().all(|f| f.matches(resource))
}

/// Whether the single-parameter search finds the resource.
fn finds(resource_type: &str, resource: &Value, param: &str, value: &str) -> bool {
    let entries = index_entries(resource_type, resource, &indexer());
    let request = search(resource_type, &[(param, value)]).unwrap();
    assert!(request.unknown.is_empty(), "{param} should be supported on {resource_type}");
    store_matches(&entries, resource, &request)
}

#[test]
fn synthea_patient_is_found_by_blind_terms() {
    let patient = first("Patient");
    assert_eq!(patient["name"][0]["family"], "Smith67");
    let found = |param, value| finds("Patient", &patient, param, value);

    for (param, value) in [
        ("family", "SMI"),
        ("family", "smith67"),
        ("family:exact", "Smith67"),
        ("given", "Bo157"),
        ("name", "smit"),
        ("name", "bo157"),
        ("name", "Mr."),
        ("name", "nobody,smith"),
        ("birthdate", "1956"),
        ("birthdate", "1956-01"),
        ("birthdate", "eq1956-01-12"),
        ("birthdate", "ge1950"),
        ("birthdate", "gt1956-01-11"),
        ("birthdate", "le1956-01-12"),
        ("birthdate", "lt2000,1990"),
        ("birthdate", "ap1956-01-13"),
        ("identifier", "http://hl7.org/fhir/sid/us-ssn|999-62-6671"),
        ("identifier", "999-62-6671"),
        ("identifier", "http://hl7.org/fhir/sid/us-ssn|"),
        ("gender", "male"),
        ("address", "Somerville"),
        ("address", "139 graham camp"),
        ("address-city", "SOMERVILLE"),
        ("address-postalcode", "02143"),
    ] {
        assert!(found(param, value), "{param}={value} should find the patient");
    }
    for (param, value) in [
        ("family", "mith"),
        ("family", "Sm"),
        ("family:exact", "smith67"),
        ("family:exact", "Smith"),
        ("given", "Smith67"),
        ("birthdate", "1957"),
        ("birthdate", "1956-01-13"),
        ("birthdate", "lt1956-01-12"),
        ("birthdate", "gt1956-01-12"),
        ("birthdate", "sa1956"),
        ("birthdate", "ap1956-02"),
        ("identifier", "|999-62-6671"),
        ("identifier", "http://hl7.org/fhir/sid/us-ssn|999-62-6672"),
        ("gender", "female"),
        ("address", "Somer"),
        ("address-city", "02143"),
    ] {
        assert!(!found(param, value), "{param}={value} should not find the patient");
    }
}

#[test]
fn index_terms_never_hold_the_plaintext() {
    let patient = first("Patient");
    let entries = index_entries("Patient", &patient, &indexer());
    let params: std::collections::BTreeSet<_> = entries.iter().map(|e| e.param).collect();
    for param in [
        "identifier",
        "name",
        "family",
        "given",
        "birthdate",
        "gender",
        "address",
        "address-city",
        "address-postalcode",
    ] {
        assert!(params.contains(param), "{param} indexed");
    }
    let dump = format!("{entries:?}").to_lowercase();
    let secrets = ["smith67", "bo157", "1956", "999-62-6671", "somerville", "graham", "02143", "male"];
    for secret in secrets {
        assert!(!dump.contains(secret), "plaintext {secret} in the index");
        assert!(!dump.contains(&hex::encode(secret)), "hex of {secret} in the index");
    }
    assert!(entries.iter().all(|e| matches!(&e.value, IndexValue::Term(t) if t.len() == 64)), "only blind terms");
    // Another key: no term in common.
    let other = index_entries("Patient", &patient, &BlindIndexer::new([43; 32]));
    assert!(other.iter().all(|e| !entries.contains(e)));
}

#[test]
fn synthea_observation_is_found_by_code_date_and_patient() {
    let observation = first("Observation");
    let patient_id = "fa5aa9e4-255d-62cf-0278-9ae778a2620c";
    let code = observation["code"]["coding"][0]["code"].as_str().unwrap().to_owned();
    let found = |param, value: &str| finds("Observation", &observation, param, value);

    assert!(found("code", &format!("http://loinc.org|{code}")));
    assert!(found("code", &code));
    assert!(found("code", "http://loinc.org|"));
    assert!(!found("code", &format!("|{code}")), "the coding has a system");
    assert!(!found("code", &format!("http://snomed.info/sct|{code}")));
    assert!(found("patient", patient_id));
    assert!(found("patient", &format!("Patient/{patient_id}")));
    assert!(found("patient", &format!("https://ehr.example/fhir/Patient/{patient_id}")));
    assert!(found("subject", patient_id), "a bare id: any target type");
    assert!(found("subject:Patient", patient_id));
    assert!(!found("subject:Group", patient_id));
    assert!(!found("patient", "someone-else"));
    assert!(found("status", "final"));
    assert!(found("category", "survey"));
    assert!(found("encounter", observation["encounter"]["reference"].as_str().unwrap()));
    // effectiveDateTime 1992-03-15T02:48:07+00:00
    for date in ["1992", "1992-03-15", "ge1992-03-15", "gt1992-03-14", "lt1992-03-15T02:48:08Z", "ap1992-03-16"] {
        assert!(found("date", date), "date={date}");
    }
    for date in ["1993", "gt1992", "eb1992-03-15T02:48:07Z", "1992-03-15T02:48:07+01:00", "ne1992"] {
        assert!(!found("date", date), "date={date}");
    }

    let entries = index_entries("Observation", &observation, &indexer());
    let (lo, hi) = parse_date_range("1992-03-15T02:48:07Z").unwrap();
    assert!(entries.contains(&IndexEntry { param: "date", value: IndexValue::Range { lo, hi } }));
    assert!(!format!("{entries:?}").contains(patient_id), "references are blind too");
}

#[test]
fn hand_made_observation_token_semantics() {
    let with_system = json!({"resourceType": "Observation", "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2"}]},
        "subject": {"reference": "Patient/p1"}, "effectivePeriod": {"start": "2020-01-01T00:00:00Z"}});
    let found = |param, value| finds("Observation", &with_system, param, value);
    assert!(found("code", "http://loinc.org|8302-2"));
    assert!(found("code", "8302-2"));
    assert!(found("code", "x,8302-2"));
    assert!(!found("code", "|8302-2"));
    assert!(found("date", "gt2030"), "a period without an end is ongoing");
    assert!(!found("date", "lt2020"));

    let without_system = json!({"resourceType": "Observation", "code": {"coding": [{"code": "local,1"}]},
        "subject": {"reference": "urn:uuid:0b1a"}});
    assert!(finds("Observation", &without_system, "code", r"|local\,1"), "escaped comma");
    assert!(finds("Observation", &without_system, "code", r"local\,1"));
    let entries = index_entries("Observation", &without_system, &indexer());
    assert!(entries.iter().all(|e| e.param != "patient" && e.param != "subject"), "unresolved urn: not indexed");

    // The same text under different parameters gives different terms.
    let token_like =
        json!({"resourceType": "Observation", "status": "final", "category": [{"coding": [{"code": "final"}]}]});
    let entries = index_entries("Observation", &token_like, &indexer());
    let status: Vec<_> = entries.iter().filter(|e| e.param == "status").map(|e| &e.value).collect();
    assert!(entries.iter().filter(|e| e.param == "category").all(|e| !status.contains(&&e.value)));
}

#[test]
fn synthea_encounter_is_found_by_period_type_and_participant() {
    let mut encounter = first("Encounter");
    assert!(
        index_entries("Encounter", &encounter, &indexer()).iter().all(|e| e.param != "participant"),
        "conditional references are resolved by the bundle layer, not indexed"
    );
    encounter["participant"][0]["individual"]["reference"] = json!("Practitioner/dr-1");
    let found = |param, value| finds("Encounter", &encounter, param, value);
    // period 1956-01-12T02:48:07 .. 03:03:07 UTC
    assert!(found("date", "1956-01-12"));
    assert!(found("date", "ge1956-01-12T03:00:00Z"));
    assert!(!found("date", "eq1956-01-12T03:00:00Z"), "the period is wider than the minute");
    assert!(found("type", "http://snomed.info/sct|410620009"));
    assert!(found("class", "AMB"));
    assert!(found("status", "finished"));
    assert!(found("participant", "Practitioner/dr-1"));
    assert!(found("practitioner", "dr-1"));
    assert!(found("identifier", "https://github.com/synthetichealth/synthea|fb3b859c-7e3d-76c3-7a61-e8768dd1207c"));
    assert!(found("patient", "fa5aa9e4-255d-62cf-0278-9ae778a2620c"));
}

#[test]
fn other_types_from_the_table() {
    let consent = json!({"resourceType": "Consent", "status": "active", "patient": {"reference": "Patient/p1"},
        "dateTime": "2021-05-01", "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "provision": {"actor": [{"reference": {"reference": "Organization/o1"}}]}});
    assert!(finds("Consent", &consent, "actor", "Organization/o1"));
    assert!(finds("Consent", &consent, "patient", "p1"));
    assert!(finds("Consent", &consent, "date", "2021"));
    let audit = json!({"resourceType": "AuditEvent", "recorded": "2024-01-02T03:04:05.678Z", "action": "R",
        "agent": [{"who": {"reference": "Practitioner/d1"}}], "entity": [{"what": {"reference": "Patient/p1"}},
        {"what": {"reference": "Observation/o9"}}]});
    assert!(finds("AuditEvent", &audit, "patient", "p1"));
    assert!(!finds("AuditEvent", &audit, "patient", "o9"), "patient only refers to Patients");
    assert!(finds("AuditEvent", &audit, "agent", "Practitioner/d1"));
    assert!(finds("AuditEvent", &audit, "action", "R"));
    assert!(finds("AuditEvent", &audit, "date", "eq2024-01-02T03:04:05.678Z"));
    let condition = json!({"resourceType": "Condition", "recordedDate": "2019-07",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]}});
    assert!(finds("Condition", &condition, "status", "active"));
    assert!(finds("Condition", &condition, "clinical-status", "active"));
    assert!(finds("Condition", &condition, "date", "2019"), "recordedDate when there is no onset");
    let org = json!({"resourceType": "Organization", "name": "Hôpital Saint-Louis", "alias": ["HSL"]});
    assert!(finds("Organization", &org, "name", "hopital"));
    assert!(finds("Organization", &org, "name", "hsl"));
    assert!(index_entries("Basic", &json!({"resourceType": "Basic", "code": "x"}), &indexer()).is_empty());
    assert!(index_entries("Observation", &json!("not an object"), &indexer()).is_empty());
    // A hostile resource: many long names cost a bounded number of terms.
    let names: Vec<Value> = (0..1000).map(|i| json!({"family": format!("{i}{}", "x".repeat(300))})).collect();
    let entries = index_entries("Patient", &json!({"resourceType": "Patient", "name": names}), &indexer());
    assert!(entries.iter().filter(|e| e.param == "family").count() <= caduceus_vault::search::MAX_TERMS_PER_PARAM);
}

/// March 2020 against targets, for every prefix, as R4 search defines them.
#[test]
fn date_prefix_semantics() {
    let range = |s: &str| parse_date_range(s).unwrap();
    let span = |a: &str, b: &str| (range(a).0, range(b).1);
    let targets = [
        ("inside", range("2020-03-10")),
        ("before", range("2020-02-10")),
        ("after", range("2020-04-10")),
        ("over start", span("2020-02-28", "2020-03-02")),
        ("over end", span("2020-03-30", "2020-04-02")),
        ("enclosing", range("2020")),
        ("ongoing", (range("2020-03-05").0, i64::MAX)),
        ("day after", range("2020-04-02")),
    ];
    // inside, before, after, over start, over end, enclosing, ongoing, day after
    let table: [(Prefix, [bool; 8]); 9] = [
        (Prefix::Eq, [true, false, false, false, false, false, false, false]),
        (Prefix::Ne, [false, true, true, true, true, true, true, true]),
        (Prefix::Gt, [false, false, true, false, true, true, true, true]),
        (Prefix::Lt, [false, true, false, true, false, true, false, false]),
        (Prefix::Ge, [true, false, true, false, true, true, true, true]),
        (Prefix::Le, [true, true, false, true, false, true, false, false]),
        (Prefix::Sa, [false, false, true, false, false, false, false, true]),
        (Prefix::Eb, [false, true, false, false, false, false, false, false]),
        (Prefix::Ap, [true, false, false, true, true, true, true, true]),
    ];
    for (prefix, expected) in table {
        let value = format!("{}2020-03", prefix.as_str());
        let date = DateMatch::parse(&value).unwrap();
        assert_eq!(date.prefix, prefix);
        let (lo, hi) = range("2020-03");
        if prefix == Prefix::Ap {
            let margin = (hi - lo) / 10;
            assert_eq!((date.lo, date.hi), (lo - margin, hi + margin), "ap carries its widened range");
        } else {
            assert_eq!((date.lo, date.hi), (lo, hi));
        }
        for ((name, (lo, hi)), want) in targets.iter().zip(expected) {
            assert_eq!(date.matches(*lo, *hi), want, "{value} against {name}");
        }
    }
    assert_eq!(DateMatch::parse("2020").unwrap().prefix, Prefix::Eq);
    assert!(DateMatch::parse("xx2020").is_none());
    assert!(DateMatch::parse("ge").is_none());
}

#[test]
fn control_parameters() {
    let request = search("Observation", &[]).unwrap();
    assert_eq!((request.count, request.offset, request.total, request.include_patient), (20, 0, false, false));
    assert_eq!(search("Observation", &[("_count", "5000")]).unwrap().count, MAX_COUNT);
    assert_eq!(search("Observation", &[("_count", "99999999999999999999999")]).unwrap().count, MAX_COUNT);
    assert_eq!(search("Observation", &[("_count", "0")]).unwrap().count, 0);
    assert_eq!(search("Observation", &[("_offset", "40")]).unwrap().offset, 40);
    assert!(search("Observation", &[("_total", "accurate")]).unwrap().total);
    assert!(!search("Observation", &[("_total", "none")]).unwrap().total);
    assert!(search("Observation", &[("_include", "Observation:patient")]).unwrap().include_patient);
    assert!(search("Observation", &[("_include", "Observation:subject:Patient")]).unwrap().include_patient);
    assert!(search("AllergyIntolerance", &[("_include", "AllergyIntolerance:patient")]).unwrap().include_patient);
    let sort = search("Observation", &[("_sort", "-date,_id,-_lastUpdated")]).unwrap().sort;
    assert_eq!(
        sort,
        vec![
            SortKey::Date { descending: true },
            SortKey::Id { descending: false },
            SortKey::LastUpdated { descending: true }
        ]
    );
    let ids = search("Observation", &[("_id", "a,b"), ("_id", "b,c")]).unwrap().ids;
    assert_eq!(ids, Some(vec!["b".to_owned()]));
    let updated = search("Observation", &[("_lastUpdated", "ge2024-01-01"), ("_lastUpdated", "lt2024-02")]).unwrap();
    assert_eq!(updated.last_updated.len(), 2);
    assert_eq!(updated.last_updated[0].prefix, Prefix::Ge);
    let ignored =
        search("Observation", &[("_format", "json"), ("_pretty", "true"), ("_summary", "count"), ("_elements", "id")]);
    assert_eq!(ignored.unwrap(), search("Observation", &[]).unwrap());
    assert!(search("Observation", &[("code", "")]).unwrap().clauses.is_empty(), "empty values are ignored");

    for bad in [("_count", "-1"), ("_count", "ten"), ("_offset", "9999999999"), ("_total", "maybe"), ("_id", "a b")] {
        assert!(matches!(search("Observation", &[bad]), Err(SearchError::Invalid { .. })), "{bad:?}");
    }
    for unsupported in [
        ("_sort", "code"),
        ("_sort", "date"),
        ("_include", "Observation:performer"),
        ("_include", "Patient:patient"),
        ("_include:iterate", "Observation:patient"),
        ("_revinclude", "Provenance:target"),
        ("_has", "Observation:patient:code=x"),
        ("_lastUpdated", "2020,2021"),
    ] {
        let ty = if unsupported == ("_sort", "date") { "Patient" } else { "Observation" };
        assert!(matches!(search(ty, &[unsupported]), Err(SearchError::Unsupported(_))), "{unsupported:?}");
    }
}

#[test]
fn modifiers_and_unknown_parameters() {
    for unsupported in [
        ("family:contains", "smi"),
        ("code:text", "weight"),
        ("code:not", "x"),
        ("identifier:of-type", "x"),
        ("date:missing", "true"),
        ("subject:identifier", "x|1"),
        ("subject.name", "smith"),
        ("birthdate", "ne1970"),
    ] {
        let ty =
            if unsupported.0 == "family:contains" || unsupported.0 == "birthdate" { "Patient" } else { "Observation" };
        assert!(matches!(search(ty, &[unsupported]), Err(SearchError::Unsupported(_))), "{unsupported:?}");
    }
    let request =
        search("Observation", &[("foo", "bar"), ("_text", "x"), ("general-practitioner", "1"), ("code", "x")]).unwrap();
    assert_eq!(request.unknown, vec!["foo", "_text", "general-practitioner"]);
    assert_eq!(request.clauses.len(), 1);
    let unknown_type = search("Basic", &[("code", "x")]).unwrap();
    assert_eq!((unknown_type.unknown.len(), unknown_type.clauses.len()), (1, 0));

    // A bare id where the parameter can refer to any type is ambiguous.
    assert!(matches!(search("Provenance", &[("target", "o9")]), Err(SearchError::Invalid { .. })));
    assert!(matches!(search("Observation", &[("patient", "Group/g1")]), Err(SearchError::Invalid { .. })));
    // A birth-date comparison is bounded and filtered afterwards.
    let request = search("Patient", &[("birthdate", "ge1900")]).unwrap();
    assert_eq!(request.clauses[0].any_of.len(), MAX_BIRTH_YEARS);
    assert_eq!(request.post_filters.len(), 1);
    assert_eq!(request.post_filters[0].param(), "birthdate");
    assert!(search("Patient", &[("birthdate", "1970")]).unwrap().post_filters.is_empty());
}

#[test]
fn hostile_input_is_capped_and_never_echoed_when_identifying() {
    let many: Vec<(String, String)> = (0..65).map(|i| (format!("p{i}"), "x".to_owned())).collect();
    assert!(matches!(parse_search("Patient", &many, &indexer()), Err(SearchError::Invalid { .. })));
    let alternatives = vec!["a"; 101].join(",");
    assert!(matches!(search("Patient", &[("family", &alternatives)]), Err(SearchError::Invalid { .. })));
    assert!(search("Patient", &[("family", &vec!["a"; 100].join(","))]).is_ok());
    let long = "a".repeat(1025);
    assert!(matches!(search("Patient", &[("family", &long)]), Err(SearchError::Invalid { .. })));
    assert!(matches!(search("Patient", &[("unknown", &"a,".repeat(20_000))]), Err(SearchError::Invalid { .. })));
    assert!(matches!(search("Patient", &[(&"n".repeat(200), "x")]), Err(SearchError::Invalid { .. })));

    for (param, value) in [
        ("birthdate", "1956-13-45"),
        ("birthdate", "ge1956-01-12T25:00Z"),
        ("family", "Smith67|.,;"),
        ("identifier", "a|b|Smith67"),
        ("address", "!!Smith67!!|"),
    ] {
        let value = value.replace("Smith67|", "").replace("!!Smith67!!|", "!!!");
        let error = search("Patient", &[(param, &value)]).unwrap_err();
        let message = error.to_string();
        assert!(matches!(error, SearchError::Invalid { .. }), "{param}");
        assert!(!message.contains(&value), "{message}");
        assert!(!message.contains("Smith67") && !message.contains("1956"), "{message}");
    }
    let error = search("Observation", &[("date", &format!("bad{}", "9".repeat(500)))]).unwrap_err().to_string();
    assert!(error.contains("bad999"), "non-identifying values are echoed: {error}");
    assert!(error.chars().count() < 200, "but clipped: {error}");
    let error = search("Observation", &[("patient", "Patient/\u{0}x")]).unwrap_err().to_string();
    assert!(!error.contains('\u{0}'));

    for odd in ["\u{0}", "ge", "|", "\\", "🙂", "9999-12-31T23:59:59.999-14:00", "0000", "gt9999", "lt0000"] {
        for param in ["family", "birthdate", "identifier", "gender", "general-practitioner", "address"] {
            let _ = search("Patient", &[(param, odd)]);
        }
        let _ = search("Observation", &[("date", odd), ("code", odd), ("_sort", odd), ("_id", odd)]);
    }
}
