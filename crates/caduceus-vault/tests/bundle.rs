//! Batch and transaction bundles against real Synthea exports (HIV
//! transaction bundles, COVID juvenile batch bundles with their hospital and
//! practitioner files), plus hostile bundles, NDJSON and import planning.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Cursor;
use std::path::{Path, PathBuf};

use caduceus_vault::bundle::{
    BundleError, BundleKind, ConditionalRef, EntryError, ImportFormat, LineError, MAX_ENTRIES, Method, UnitContents,
    assign_ids, assign_ids_with, conditional_references, import_plan, parse_bundle, parse_import_bundle,
    processing_order, read_ndjson, references, response_bundle, response_entry, rewrite_conditional,
};
use caduceus_vault::resource::MAX_RESOURCE_BYTES;
use serde_json::{Value, json};

fn data_dir(rel: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(rel);
    assert!(dir.is_dir(), "test data missing: {}", dir.display());
    dir
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    files
}

fn hiv_files() -> Vec<PathBuf> {
    json_files(&data_dir("fhir-synthea-hiv-bundles/sample_data"))
}

fn covid_dir() -> PathBuf {
    data_dir("fhir-synthea-covid-juvenile/sample_covid_fhir_juvenile_patients/original_fhir_json")
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// Resources by type, counted straight from the JSON.
fn plain_counts(value: &Value) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for entry in value["entry"].as_array().unwrap() {
        *counts.entry(entry["resource"]["resourceType"].as_str().unwrap().to_owned()).or_insert(0) += 1;
    }
    counts
}

fn counter() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("new-{n}")
    }
}

fn entry_reason(error: BundleError) -> EntryError {
    match error {
        BundleError::Entry { reason, .. } => reason,
        other => panic!("expected an entry error, got {other:?}"),
    }
}

fn one_entry(kind: &str, entry: Value) -> Result<caduceus_vault::bundle::Bundle, BundleError> {
    parse_bundle(json!({"resourceType": "Bundle", "type": kind, "entry": [entry]}))
}

#[test]
fn every_real_bundle_parses_with_its_resource_counts() {
    let hiv = hiv_files();
    assert_eq!(hiv.len(), 55);
    let covid = json_files(&covid_dir());
    assert_eq!(covid.len(), 12);
    for path in hiv.iter().chain(&covid) {
        let value = read_json(path);
        let expected = plain_counts(&value);
        let bundle = parse_bundle(value).unwrap();
        let transaction = path.starts_with(data_dir("fhir-synthea-hiv-bundles"));
        assert_eq!(bundle.kind, if transaction { BundleKind::Transaction } else { BundleKind::Batch });
        let mut counts = BTreeMap::new();
        for (i, entry) in bundle.entries.iter().enumerate() {
            assert_eq!(entry.index, i);
            assert_eq!(entry.method, Method::Post);
            assert!(entry.full_url.as_deref().unwrap().starts_with("urn:uuid:"));
            *counts.entry(entry.resource_type.clone()).or_insert(0) += 1;
        }
        assert_eq!(counts, expected, "{}", path.display());
    }
}

#[test]
fn assigned_ids_leave_no_bundle_local_reference() {
    for path in hiv_files().iter().chain(&json_files(&covid_dir())) {
        let mut bundle = parse_bundle(read_json(path)).unwrap();
        let local_refs_before: usize = bundle
            .entries
            .iter()
            .map(|e| references(e.resource.as_ref().unwrap()).iter().filter(|r| r.starts_with("urn:uuid:")).count())
            .sum();
        let map = assign_ids(&mut bundle, &mut counter()).unwrap();
        assert!(map.unresolved.is_empty());
        assert_eq!(map.by_full_url.len(), bundle.entries.len());
        let mut ids = HashSet::new();
        let targets: HashSet<String> =
            bundle.entries.iter().map(|e| format!("{}/{}", e.resource_type, e.id.as_deref().unwrap())).collect();
        let mut rewritten = 0;
        for entry in &bundle.entries {
            let resource = entry.resource.as_ref().unwrap();
            assert_eq!(resource["id"].as_str(), entry.id.as_deref());
            assert!(ids.insert(entry.id.clone().unwrap()));
            for reference in references(resource) {
                assert!(!reference.starts_with("urn:uuid:"), "{}", path.display());
                if targets.contains(reference) {
                    rewritten += 1;
                }
            }
        }
        assert_eq!(rewritten, local_refs_before, "{}", path.display());
    }
}

#[test]
fn conditional_references_are_collected_and_rewritten() {
    let path = &hiv_files()[0];
    let raw = std::fs::read_to_string(path).unwrap();
    let mut bundle = parse_bundle(serde_json::from_str(&raw).unwrap()).unwrap();
    let conditionals = conditional_references(&bundle);
    assert!(!conditionals.is_empty());
    let distinct: HashSet<&ConditionalRef> = conditionals.iter().collect();
    assert_eq!(distinct.len(), conditionals.len());
    let types: HashSet<&str> = conditionals.iter().map(|c| c.resource_type.as_str()).collect();
    assert!(types.contains("Practitioner") && types.contains("Organization"));
    for conditional in &conditionals {
        assert!(conditional.query.starts_with("identifier="));
        assert!(raw.contains(&format!("\"{}\"", conditional.reference())));
    }
    let total: usize = bundle
        .entries
        .iter()
        .map(|e| references(e.resource.as_ref().unwrap()).iter().filter(|r| ConditionalRef::parse(r).is_some()).count())
        .sum();
    // Resolve the practitioners only; the rest stay as written.
    let resolved: HashMap<String, String> = conditionals
        .iter()
        .filter(|c| c.resource_type == "Practitioner")
        .enumerate()
        .map(|(i, c)| (c.reference(), format!("Practitioner/pr-{i}")))
        .collect();
    let outcome = rewrite_conditional(&mut bundle, &resolved);
    assert_eq!(outcome.rewritten + outcome.unresolved, total);
    assert!(outcome.rewritten > 0 && outcome.unresolved > 0);
    let left = conditional_references(&bundle);
    assert!(left.iter().all(|c| c.resource_type != "Practitioner"));
    assert!(
        bundle
            .entries
            .iter()
            .flat_map(|e| references(e.resource.as_ref().unwrap()))
            .any(|r| r.starts_with("Practitioner/pr-"))
    );
}

#[test]
fn transaction_references_resolve_within_the_bundle() {
    let entries = json!([
        {"fullUrl": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001",
         "resource": {"resourceType": "Patient", "id": "ignored"},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "http://example.org/fhir/Practitioner/dr-1",
         "resource": {"resourceType": "Practitioner", "id": "dr-1"},
         "request": {"method": "PUT", "url": "Practitioner/dr-1"}},
        {"fullUrl": "urn:oid:1.2.3.4",
         "resource": {"resourceType": "Observation",
                      "subject": {"reference": "urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"},
                      "performer": [{"reference": "http://example.org/fhir/Practitioner/dr-1"},
                                    {"reference": "Practitioner/other"}],
                      "contained": [{"resourceType": "Provenance",
                                     "target": [{"reference": "urn:oid:1.2.3.4"}]}]},
         "request": {"method": "POST", "url": "Observation", "ifNoneExist": "identifier=x|1"}},
    ]);
    let mut bundle = parse_bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})).unwrap();
    let existing = HashMap::from([(2, "obs-existing".to_owned())]);
    let map = assign_ids_with(&mut bundle, &existing, &mut counter()).unwrap();
    assert_eq!(map.by_full_url["urn:uuid:aaaaaaaa-0000-0000-0000-000000000001"], "Patient/new-1");
    assert_eq!(map.by_full_url["http://example.org/fhir/Practitioner/dr-1"], "Practitioner/dr-1");
    assert_eq!(map.by_full_url["urn:oid:1.2.3.4"], "Observation/obs-existing");
    assert_eq!(bundle.entries[0].resource.as_ref().unwrap()["id"], "new-1");
    let obs = Value::Object(bundle.entries[2].resource.clone().unwrap());
    assert_eq!(obs["subject"]["reference"], "Patient/new-1");
    assert_eq!(obs["performer"][0]["reference"], "Practitioner/dr-1");
    assert_eq!(obs["performer"][1]["reference"], "Practitioner/other");
    assert_eq!(obs["contained"][0]["target"][0]["reference"], "Observation/obs-existing");
    assert_eq!(bundle.entries[2].if_none_exist.as_deref(), Some("identifier=x|1"));

    let dangling = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "subject": {"reference": "urn:uuid:2"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]});
    let mut transaction = parse_bundle(dangling.clone()).unwrap();
    assert_eq!(assign_ids(&mut transaction, &mut counter()), Err(BundleError::UnresolvedReference { index: 1 }));
    let mut batch_value = dangling;
    batch_value["type"] = json!("batch");
    let mut batch = parse_bundle(batch_value).unwrap();
    let map = assign_ids(&mut batch, &mut counter()).unwrap();
    assert_eq!(map.unresolved, vec![1]);
    assert_eq!(batch.entries[1].resource.as_ref().unwrap()["subject"]["reference"], "urn:uuid:2");
}

#[test]
fn entries_are_processed_delete_post_put_get() {
    let bundle = parse_bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient?name=x"}},
        {"resource": {"resourceType": "Patient", "id": "p1"}, "request": {"method": "PUT", "url": "Patient/p1"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "DELETE", "url": "Patient/p2"}},
        {"request": {"method": "GET", "url": "Patient/p1/_history/2"}},
        {"request": {"method": "DELETE", "url": "Observation?subject=Patient/p2"}},
        {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
    ]}))
    .unwrap();
    assert_eq!(processing_order(&bundle), vec![3, 5, 2, 6, 1, 0, 4]);
    let vread = &bundle.entries[4];
    assert_eq!((vread.id.as_deref(), vread.version), (Some("p1"), Some(2)));
    assert_eq!(bundle.entries[0].query.as_deref(), Some("name=x"));
    assert_eq!(bundle.entries[5].query.as_deref(), Some("subject=Patient/p2"));
}

#[test]
fn if_match_is_a_version_etag() {
    let put = |tag: Value| {
        one_entry(
            "batch",
            json!({"resource": {"resourceType": "Patient", "id": "p1"},
                   "request": {"method": "PUT", "url": "Patient/p1", "ifMatch": tag}}),
        )
    };
    assert_eq!(put(json!("W/\"3\"")).unwrap().entries[0].if_match, Some(3));
    assert_eq!(put(json!("\"17\"")).unwrap().entries[0].if_match, Some(17));
    for bad in [json!("3"), json!("W/3"), json!("W/\"x\""), json!(3), json!("W/\"\"")] {
        assert_eq!(entry_reason(put(bad).unwrap_err()), EntryError::BadIfMatch);
    }
    let delete =
        one_entry("batch", json!({"request": {"method": "DELETE", "url": "Patient/p1", "ifMatch": "W/\"1\""}}));
    assert_eq!(delete.unwrap().entries[0].if_match, Some(1));
    let get = one_entry("batch", json!({"request": {"method": "GET", "url": "Patient/p1", "ifMatch": "W/\"1\""}}));
    assert_eq!(entry_reason(get.unwrap_err()), EntryError::IfMatchNotAllowed);
}

#[test]
fn hostile_bundles_are_refused() {
    assert_eq!(parse_bundle(json!([1])), Err(BundleError::NotABundle));
    assert_eq!(parse_bundle(json!({"resourceType": "Patient"})), Err(BundleError::NotABundle));
    assert_eq!(
        parse_bundle(json!({"resourceType": "Bundle", "type": "searchset"})),
        Err(BundleError::UnsupportedType("searchset".into()))
    );
    assert_eq!(
        parse_bundle(json!({"resourceType": "Bundle", "type": "collection"})),
        Err(BundleError::UnsupportedType("collection".into()))
    );
    assert_eq!(
        parse_bundle(json!({"resourceType": "Bundle", "type": "batch<script>"})),
        Err(BundleError::UnsupportedType("(invalid)".into()))
    );
    assert_eq!(
        parse_bundle(json!({"resourceType": "Bundle", "type": "batch", "entry": {}})),
        Err(BundleError::EntriesNotAnArray)
    );
    let empty = parse_bundle(json!({"resourceType": "Bundle", "type": "batch"})).unwrap();
    assert!(empty.entries.is_empty());
    let many: Vec<Value> = (0..=MAX_ENTRIES).map(|_| json!({"request": {"method": "GET", "url": "Patient"}})).collect();
    assert_eq!(
        parse_bundle(json!({"resourceType": "Bundle", "type": "batch", "entry": many})),
        Err(BundleError::TooManyEntries(MAX_ENTRIES))
    );

    let cases: Vec<(Value, EntryError)> = vec![
        (json!(7), EntryError::NotAnObject),
        (json!({"resource": {"resourceType": "Patient"}}), EntryError::MissingRequest),
        (json!({"request": {"method": 1, "url": "Patient"}}), EntryError::BadMethod),
        (json!({"request": {"method": "HEAD", "url": "Patient"}}), EntryError::BadMethod),
        (json!({"request": {"method": "GET"}}), EntryError::MissingRequest),
        (
            json!({"resource": {"resourceType": "Binary"}, "request": {"method": "PATCH", "url": "Patient/p1"}}),
            EntryError::PatchUnsupported,
        ),
        (json!({"request": {"method": "GET", "url": "Patient/p1/$everything"}}), EntryError::OperationUnsupported),
        (
            json!({"request": {"method": "POST", "url": "Patient/p1"}, "resource": {"resourceType": "Patient"}}),
            EntryError::UrlNotAllowed("POST takes the type only (use ifNoneExist for a conditional create)"),
        ),
        (
            json!({"request": {"method": "PUT", "url": "Patient"}, "resource": {"resourceType": "Patient"}}),
            EntryError::UrlNotAllowed("PUT and DELETE need Type/id or Type?query"),
        ),
        (
            json!({"request": {"method": "DELETE", "url": "Patient/p1/_history/2"}}),
            EntryError::UrlNotAllowed("only GET may name a version"),
        ),
        (json!({"request": {"method": "POST", "url": "Patient"}}), EntryError::MissingResource),
        (
            json!({"request": {"method": "GET", "url": "Patient/p1"}, "resource": {"resourceType": "Patient"}}),
            EntryError::UnexpectedResource,
        ),
        (
            json!({"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Observation"}}),
            EntryError::TypeMismatch,
        ),
        (
            json!({"request": {"method": "PUT", "url": "Patient/p1"}, "resource": {"resourceType": "Patient", "id": "p2"}}),
            EntryError::IdMismatch,
        ),
        (
            json!({"request": {"method": "PUT", "url": "Patient/p1"}, "resource": {"resourceType": "Patient"}}),
            EntryError::IdMismatch,
        ),
        (
            json!({"request": {"method": "POST", "url": "Patient", "ifNoneExist": "a b"}, "resource": {"resourceType": "Patient"}}),
            EntryError::BadIfNoneExist,
        ),
        (
            json!({"request": {"method": "GET", "url": "Patient", "ifNoneExist": "a=b"}}),
            EntryError::IfNoneExistNotAllowed,
        ),
        (json!({"fullUrl": 5, "request": {"method": "GET", "url": "Patient"}}), EntryError::BadFullUrl),
        (
            json!({"request": {"method": "POST", "url": "Patient"}, "resource": {"name": "x"}}),
            EntryError::Resource(caduceus_vault::resource::ResourceError::MissingType),
        ),
    ];
    for (entry, expected) in cases {
        assert_eq!(entry_reason(one_entry("transaction", entry.clone()).unwrap_err()), expected, "{entry}");
    }

    for url in [
        "Patient/../x",
        "Patient/..",
        "../Patient",
        "Patient/a/b",
        "patient/p1",
        "Patient/p_1",
        "Patient/p1/_history",
        "Patient/p1/_history/v2",
        "Patient/p1?x=1",
        "Patient?",
        "Patient?a=b c",
        "Patient?a=b#frag",
        "https://evil.example/fhir/Patient/p1",
        "",
        "/Patient",
    ] {
        let error = one_entry("batch", json!({"request": {"method": "GET", "url": url}})).unwrap_err();
        assert!(matches!(entry_reason(error), EntryError::BadUrl(_)), "{url}");
    }
    let long_id = format!("Patient/{}", "a".repeat(65));
    assert!(one_entry("batch", json!({"request": {"method": "GET", "url": long_id}})).is_err());

    let deep = (0..100).fold(json!(1), |inner, _| json!([inner]));
    let error = one_entry(
        "batch",
        json!({"request": {"method": "POST", "url": "Basic"}, "resource": {"resourceType": "Basic", "x": deep}}),
    );
    assert!(matches!(entry_reason(error.unwrap_err()), EntryError::Resource(_)));
    let big = "x".repeat(MAX_RESOURCE_BYTES);
    let error = one_entry(
        "batch",
        json!({"request": {"method": "POST", "url": "Basic"}, "resource": {"resourceType": "Basic", "text": big}}),
    );
    assert_eq!(entry_reason(error.unwrap_err()), EntryError::ResourceTooLarge);

    let duplicate = parse_bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
    ]}));
    assert_eq!(duplicate, Err(BundleError::Entry { index: 1, reason: EntryError::DuplicateFullUrl }));
}

#[test]
fn errors_name_the_entry_never_its_contents() {
    let error = parse_bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "GET", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": "Okonkwo"}]},
         "request": {"method": "PUT", "url": "Patient/Okonkwo"}},
    ]}))
    .unwrap_err();
    let message = error.to_string();
    assert!(message.starts_with("entry 1:"), "{message}");
    assert!(!message.contains("Okonkwo"), "{message}");
}

#[test]
fn ndjson_lines_are_bounded_and_numbered() {
    let input = concat!(
        "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n",
        "\n",
        "   \r\n",
        "{\"resourceType\":\"Observation\",\"id\":\"o1\"}\r\n",
        "{\"resourceType\":\"Observation\",\"id\":\"Okonkwo\",\"x\":\"",
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}\n",
        "{\"resourceType\":\"Patient\",\"name\":\"Okonkwo\n",
        "[1,2]\n",
        "{\"id\":\"x\"}\n",
        "{\"resourceType\":\"Patient\",\"id\":\"p2\"}",
    );
    let results: Vec<_> = read_ndjson(Cursor::new(input), 100).collect();
    assert_eq!(results.len(), 7);
    assert_eq!(results[0].as_ref().unwrap()["id"], "p1");
    assert_eq!(results[1].as_ref().unwrap()["id"], "o1");
    assert_eq!(results[2], Err(BundleError::Line { line: 5, reason: LineError::TooLong(100) }));
    assert!(matches!(results[3], Err(BundleError::Line { line: 6, reason: LineError::InvalidJson(_) })));
    assert!(matches!(results[4], Err(BundleError::Line { line: 7, reason: LineError::Resource(_) })));
    assert!(matches!(results[5], Err(BundleError::Line { line: 8, reason: LineError::Resource(_) })));
    assert_eq!(results[6].as_ref().unwrap()["id"], "p2");
    for error in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(!error.to_string().contains("Okonkwo"), "{error}");
    }
    // A byte-order mark on the first line is not part of the resource.
    let bom: Vec<_> =
        read_ndjson(Cursor::new(b"\xEF\xBB\xBF{\"resourceType\":\"Patient\",\"id\":\"p\"}\n"), 100).collect();
    assert!(bom[0].is_ok());
}

#[test]
fn responses_follow_the_request_order() {
    let created = response_entry(201, Some("Patient/p1/_history/1"), Some(1), "2024-05-01T10:00:00Z", None);
    assert_eq!(
        created,
        json!({"response": {"status": "201 Created", "location": "Patient/p1/_history/1", "etag": "W/\"1\"",
                            "lastModified": "2024-05-01T10:00:00Z"}})
    );
    let outcome = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]});
    let missing = response_entry(404, None, None, "", Some(outcome.clone()));
    assert_eq!(missing, json!({"response": {"status": "404 Not Found", "outcome": outcome}}));
    assert_eq!(response_entry(299, None, None, "", None)["response"]["status"], "299");
    let bundle = response_bundle(BundleKind::Transaction, vec![created.clone(), missing.clone()]);
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "transaction-response");
    assert_eq!(bundle["entry"], json!([created, missing]));
    assert_eq!(response_bundle(BundleKind::Batch, vec![])["type"], "batch-response");
}

#[test]
fn collections_import_as_batches_keeping_ids() {
    let bundle = parse_import_bundle(json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "http://x/Patient/p1", "resource": {"resourceType": "Patient", "id": "p1"}},
        {"fullUrl": "urn:uuid:9", "resource": {"resourceType": "Observation", "subject": {"reference": "Patient/p1"}}},
    ]}))
    .unwrap();
    assert_eq!(bundle.kind, BundleKind::Batch);
    assert_eq!((bundle.entries[0].method, bundle.entries[0].id.as_deref()), (Method::Put, Some("p1")));
    assert_eq!((bundle.entries[1].method, bundle.entries[1].id.as_deref()), (Method::Post, None));
}

#[test]
fn import_plan_puts_organisation_files_first() {
    let covid = json_files(&covid_dir());
    let mut paths: Vec<PathBuf> = hiv_files().into_iter().take(3).collect();
    paths.extend(covid.iter().cloned());
    let dir = tempfile::tempdir().unwrap();
    let ndjson = dir.path().join("Patient.ndjson");
    std::fs::write(
        &ndjson,
        "{\"resourceType\":\"Patient\",\"id\":\"p1\"}\n\n{\"resourceType\":\"Patient\",\"id\":\"p2\"}\n",
    )
    .unwrap();
    let orgs = dir.path().join("Organization.ndjson");
    std::fs::write(&orgs, "{\"resourceType\":\"Organization\",\"id\":\"o1\"}\n").unwrap();
    paths.push(ndjson.clone());
    paths.push(orgs.clone());

    let plan = import_plan(&paths).unwrap();
    assert_eq!(plan.len(), paths.len());
    let shared: Vec<String> = plan
        .iter()
        .take_while(|u| u.shared_only)
        .map(|u| u.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(shared.len(), 3);
    assert!(shared.iter().any(|n| n.starts_with("hospitalInformation")));
    assert!(shared.iter().any(|n| n.starts_with("practitionerInformation")));
    assert!(shared.contains(&"Organization.ndjson".to_owned()));
    assert!(plan.iter().skip(3).all(|u| !u.shared_only));

    for unit in &plan {
        match unit.format {
            ImportFormat::Ndjson => assert!(unit.path.extension().unwrap() == "ndjson"),
            ImportFormat::Bundle(kind) => {
                let expected = plain_counts(&read_json(&unit.path));
                assert_eq!(unit.counts, expected);
                let hiv = unit.path.starts_with(data_dir("fhir-synthea-hiv-bundles"));
                assert_eq!(kind, if hiv { BundleKind::Transaction } else { BundleKind::Batch });
            }
        }
    }
    let patients = plan.iter().find(|u| u.path == ndjson).unwrap();
    assert_eq!(patients.resources(), 2);
    let UnitContents::Ndjson(entries) = patients.open().unwrap() else { panic!("not ndjson") };
    let entries: Vec<_> = entries.map(Result::unwrap).collect();
    assert_eq!(entries.iter().map(|e| e.index).collect::<Vec<_>>(), vec![1, 3]);
    assert!(entries.iter().all(|e| e.method == Method::Put && e.resource_type == "Patient"));
    let first_patient_bundle = plan.iter().find(|u| !u.shared_only && u.format != ImportFormat::Ndjson).unwrap();
    let UnitContents::Bundle(bundle) = first_patient_bundle.open().unwrap() else { panic!("not a bundle") };
    assert_eq!(bundle.entries.len(), first_patient_bundle.resources());
}

#[test]
fn import_plan_refuses_what_is_not_fhir() {
    let readme = data_dir("fhir-synthea-hiv-bundles/sample_data").join("README.upstream.md");
    let mut paths = vec![covid_dir().join("hospitalInformation1603148702656.json"), readme];
    let error = import_plan(&paths).unwrap_err();
    assert!(matches!(&error, BundleError::File { file: 1, source } if **source == BundleError::NotFhir), "{error:?}");

    let dir = tempfile::tempdir().unwrap();
    let no_id = dir.path().join("Observation.ndjson");
    std::fs::write(&no_id, "{\"resourceType\":\"Observation\",\"id\":\"o1\"}\n{\"resourceType\":\"Observation\"}\n")
        .unwrap();
    paths[1] = no_id;
    let error = import_plan(&paths).unwrap_err();
    let BundleError::File { file: 1, source } = error else { panic!("{error:?}") };
    assert_eq!(*source, BundleError::Line { line: 2, reason: LineError::MissingId });

    let searchset = dir.path().join("search.json");
    std::fs::write(&searchset, "{\n \"resourceType\": \"Bundle\",\n \"type\": \"searchset\"\n}\n").unwrap();
    paths[1] = searchset;
    let error = import_plan(&paths).unwrap_err();
    assert!(
        matches!(error, BundleError::File { file: 1, source } if *source == BundleError::UnsupportedType("searchset".into()))
    );

    paths[1] = dir.path().join("missing.json");
    let error = import_plan(&paths).unwrap_err();
    assert!(
        matches!(error, BundleError::File { file: 1, source } if *source == BundleError::Io(std::io::ErrorKind::NotFound))
    );
}
