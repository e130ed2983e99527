//! CSAF reader, validator, signatures and ROLIE feeds against the public corpora in
//! `../shared/data`: the OASIS examples and validator test files, and CISA's advisories.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use caduceus_devices::csaf::{
    self, FeedEntry, IMPLEMENTED_TESTS, count_by_test, parse, parse_validated, parse_with_report, read_rolie_feed,
    signature_issuer, validate, verify_openpgp, verify_sha512,
};
use caduceus_devices::model::VersionSpec;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

fn data(rel: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = Path::new(DATA).join(rel);
    if !path.exists() {
        return Err(format!("test data missing: {} (clone the shared data beside the checkout)", path.display()).into());
    }
    Ok(path)
}

/// Every `*.json` under `dir`, sorted.
fn json_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "json") {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn oasis(rel: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    data(&format!("csaf-oasis/oasis-tcs-csaf/{rel}"))
}

#[test]
fn oasis_examples_parse_and_validate_clean() -> TestResult {
    let mut count = 0;
    for path in json_files(&oasis("csaf_2.0/examples/csaf")?)? {
        let bytes = std::fs::read(&path)?;
        let (doc, violations) = parse_with_report(&bytes)?;
        if !violations.is_empty() {
            return Err(format!("{}: {:?}", path.display(), violations).into());
        }
        let adv = doc.to_advisory();
        if adv.id.is_empty() || adv.products.is_empty() {
            return Err(format!("{}: empty advisory", path.display()).into());
        }
        count += 1;
    }
    // CSAF 2.1 examples: those declaring 2.0 must validate; the rest must still be read.
    let (mut v20, mut v21) = (0, 0);
    for path in json_files(&oasis("csaf_2.1/examples/csaf")?)? {
        let bytes = std::fs::read(&path)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)?;
        if value.pointer("/document/csaf_version").and_then(|v| v.as_str()) == Some("2.0") {
            parse_validated(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            v20 += 1;
        } else {
            let doc = parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
            let _ = doc.to_advisory();
            v21 += 1;
        }
    }
    println!("CSAF 2.0 examples valid: {count}; CSAF 2.1 examples: {v20} declare 2.0 (valid), {v21} CSAF 2.1 read");
    assert_eq!(count, 19);
    Ok(())
}

#[derive(serde::Deserialize)]
struct TestCases {
    tests: Vec<TestCase>,
}

#[derive(serde::Deserialize)]
struct TestCase {
    id: String,
    group: String,
    failures: Vec<TestFile>,
    #[serde(default)]
    valid: Vec<TestFile>,
}

#[derive(serde::Deserialize)]
struct TestFile {
    name: String,
}

#[test]
fn oasis_validator_test_files() -> TestResult {
    let base = oasis("csaf_2.0/test/validator/data")?;
    let cases: TestCases = serde_json::from_slice(&std::fs::read(base.join("testcases.json"))?)?;
    let mut report: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut listed = HashSet::new();
    let mut parsed = 0;
    let mut other_clean = 0;
    let mut other_flagged = Vec::new();
    for case in &cases.tests {
        let implemented = IMPLEMENTED_TESTS.contains(&case.id.as_str());
        let entry = report.entry(case.id.clone()).or_default();
        for (file, should_fail) in case.failures.iter().map(|f| (f, true)).chain(case.valid.iter().map(|f| (f, false)))
        {
            listed.insert(file.name.clone());
            let bytes = std::fs::read(base.join(&file.name))?;
            // Every test file is read by the typed reader.
            let doc = parse(&bytes).map_err(|e| format!("{}: {e}", file.name))?;
            let _ = doc.to_advisory();
            parsed += 1;
            let value: serde_json::Value = serde_json::from_slice(&bytes)?;
            let violations = validate(&value);
            if case.group != "mandatory" {
                // Optional and informative test files are not promised to pass the mandatory
                // tests (6.2.8 uses two MD5 hashes for one file, which 6.1.25 forbids): count.
                if violations.is_empty() {
                    other_clean += 1;
                } else {
                    other_flagged.push(format!("{} ({}): {:?}", file.name, case.id, count_by_test(&violations)));
                }
                continue;
            }
            if !implemented {
                continue;
            }
            if should_fail {
                entry.0 += 1;
                if violations.iter().any(|v| v.test == case.id) {
                    entry.1 += 1;
                    // The strict reader refuses it.
                    if parse_validated(&bytes).is_ok() {
                        failures.push(format!("{}: parse_validated accepted an invalid file", file.name));
                    }
                } else {
                    failures.push(format!(
                        "{} should fail {}: got {:?}",
                        file.name,
                        case.id,
                        count_by_test(&violations)
                    ));
                }
            } else {
                entry.2 += 1;
                if violations.is_empty() {
                    entry.3 += 1;
                } else {
                    failures.push(format!("{} should be valid: {:?}", file.name, violations));
                }
            }
        }
    }
    // Files in the directory that testcases.json does not list are read too.
    let mut unlisted = 0;
    for path in json_files(&base)? {
        let rel = path.strip_prefix(&base)?.to_string_lossy().into_owned();
        if rel == "testcases.json" || listed.contains(&rel) {
            continue;
        }
        let _ = parse(&std::fs::read(&path)?).map_err(|e| format!("{rel}: {e}"))?;
        unlisted += 1;
    }
    println!("validator test files parsed: {parsed} listed + {unlisted} unlisted");
    println!("test: invalid rejected/total, valid accepted/total");
    for (id, (inv, rej, val, acc)) in &report {
        if inv + val > 0 {
            println!("  {id}: {rej}/{inv} rejected, {acc}/{val} accepted");
        }
    }
    println!("implemented: {}", IMPLEMENTED_TESTS.join(" "));
    println!(
        "optional/informative test files clean under the mandatory tests: {other_clean}; flagged: {other_flagged:#?}"
    );
    if !failures.is_empty() {
        return Err(failures.join("\n").into());
    }
    Ok(())
}

fn cisa_files() -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for dir in ["icsma", "icsa-sample", "it-va"] {
        out.extend(json_files(&data(&format!("cisa-csaf/{dir}"))?)?);
    }
    Ok(out)
}

#[test]
fn cisa_advisories_flatten_without_losing_products() -> TestResult {
    let files = cisa_files()?;
    let icsma = files.iter().filter(|p| p.to_string_lossy().contains("/icsma/")).count();
    // SOURCE.md says 144; the snapshot holds 124 ICSMA documents (372 files with .asc/.sha512).
    assert_eq!(icsma, 124, "ICSMA advisories");
    let (mut products, mut translated, mut unparsed, mut statuses) = (0, 0, 0, 0);
    let mut texts_translated = HashSet::new();
    let mut texts_unparsed = HashSet::new();
    let mut clean = 0;
    let mut by_test: BTreeMap<&str, usize> = BTreeMap::new();
    for path in &files {
        let bytes = std::fs::read(path)?;
        let (doc, violations) = parse_with_report(&bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        if violations.is_empty() {
            clean += 1;
        }
        for (test, n) in count_by_test(&violations) {
            *by_test.entry(test).or_default() += n;
        }
        let adv = doc.to_advisory();
        assert_eq!(adv.id, doc.document.tracking.id);
        let ids: HashSet<&str> = adv.products.iter().map(|p| p.id.as_str()).collect();
        for v in &adv.vulnerabilities {
            for s in &v.product_status {
                statuses += 1;
                if !ids.contains(s.product_id.as_str()) {
                    return Err(
                        format!("{}: product {} in product_status is lost", path.display(), s.product_id).into()
                    );
                }
            }
        }
        for p in &adv.products {
            products += 1;
            match &p.version {
                VersionSpec::Vers { text, .. } => {
                    translated += 1;
                    texts_translated.insert(text.clone());
                }
                VersionSpec::Unparsed { text } => {
                    unparsed += 1;
                    texts_unparsed.insert(text.clone());
                }
                _ => {}
            }
        }
    }
    println!(
        "CISA: {} advisories ({icsma} ICSMA), {products} products, {statuses} status entries all resolved",
        files.len()
    );
    println!(
        "product_version_range: {translated} products translated ({} distinct texts), {unparsed} unparsed ({} distinct texts)",
        texts_translated.len(),
        texts_unparsed.len()
    );
    let mut unparsed_list: Vec<&String> = texts_unparsed.iter().collect();
    unparsed_list.sort();
    println!("unparsed range texts: {unparsed_list:?}");
    println!("CISA documents passing every mandatory test: {clean}/{}; violations by test: {by_test:?}", files.len());
    Ok(())
}

#[test]
fn cisa_sha512_files_verify_and_tampering_fails() -> TestResult {
    let mut count = 0;
    for path in cisa_files()? {
        let sha = path.with_extension("json.sha512");
        if !sha.exists() {
            continue;
        }
        let doc = std::fs::read(&path)?;
        let hash = std::fs::read(&sha)?;
        verify_sha512(&doc, &hash).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut tampered = doc.clone();
        if let Some(b) = tampered.get_mut(doc.len() / 2) {
            *b ^= 0x01;
        }
        assert!(verify_sha512(&tampered, &hash).is_err(), "{}", path.display());
        count += 1;
    }
    println!(".sha512 files verified: {count}");
    assert_eq!(count, 355);
    // Bare hex works too.
    let bare = b"cf83e1357eefb8bdf1542850d66d8007d620e4050b5715dc83f4a921d36ce9ce47d0d13c5d85f2b0ff8318d2877eec2f63b931bd47417a81a538327af927da3e";
    verify_sha512(b"", bare)?;
    assert!(verify_sha512(b"", b"abcd").is_err());
    Ok(())
}

#[test]
fn cisa_signature_issuers() -> TestResult {
    let mut issuers = BTreeMap::new();
    for path in cisa_files()? {
        let asc = path.with_extension("json.asc");
        if !asc.exists() {
            continue;
        }
        let issuer = signature_issuer(&std::fs::read(&asc)?).map_err(|e| format!("{}: {e}", asc.display()))?;
        *issuers.entry(issuer).or_insert(0) += 1;
    }
    println!("CISA .asc issuers: {issuers:?}");
    assert_eq!(issuers.values().sum::<usize>(), 355);
    Ok(())
}

#[test]
fn openpgp_sign_verify_and_tamper() -> TestResult {
    use pgp::composed::{DetachedSignature, KeyType, SecretKeyParamsBuilder};
    use pgp::crypto::hash::HashAlgorithm;
    use pgp::types::{KeyDetails, Password};
    use rand08::SeedableRng;

    let mut rng = rand08::rngs::StdRng::seed_from_u64(8);
    let mut params = SecretKeyParamsBuilder::default();
    params
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Caduceus test <test@example.invalid>".into());
    let secret = params.build()?.generate(&mut rng)?;
    let public = secret.to_public_key();
    let keyring = public.to_armored_bytes(Default::default())?;

    let document = std::fs::read(data("cisa-csaf/icsma/icsma-24-228-01.json").or_else(
        |_| -> Result<PathBuf, Box<dyn std::error::Error>> {
            let first = json_files(&data("cisa-csaf/icsma")?)?.into_iter().next().ok_or("no ICSMA file")?;
            Ok(first)
        },
    )?)?;
    let sig = DetachedSignature::sign_binary_data(
        &mut rng,
        &secret.primary_key,
        &Password::empty(),
        HashAlgorithm::Sha512,
        document.as_slice(),
    )?;
    let asc = sig.to_armored_bytes(Default::default())?;

    let info = verify_openpgp(&document, &asc, &keyring)?;
    assert_eq!(info.fingerprint, format!("{:X}", public.fingerprint()));
    assert_eq!(signature_issuer(&asc)?, info.issuer);

    let mut tampered = document.clone();
    if let Some(b) = tampered.get_mut(10) {
        *b ^= 0x20;
    }
    assert!(verify_openpgp(&tampered, &asc, &keyring).is_err());

    // A different key does not verify it either.
    let mut other = SecretKeyParamsBuilder::default();
    other
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("Other <o@example.invalid>".into());
    let other_pub = other.build()?.generate(&mut rng)?.to_public_key().to_armored_bytes(Default::default())?;
    assert!(verify_openpgp(&document, &asc, &other_pub).is_err());
    // Garbage is an error, not a panic.
    assert!(verify_openpgp(&document, b"not a signature", &keyring).is_err());
    assert!(verify_openpgp(&document, &asc, b"not a key").is_err());
    Ok(())
}

#[test]
fn rolie_feeds() -> TestResult {
    let mut total = 0;
    for name in ["IT-cisa-csaf-it-feed-tlp-white.json", "OT-cisa-csaf-ot-feed-tlp-white.json"] {
        let entries = read_rolie_feed(&std::fs::read(data(&format!("cisa-csaf/feeds/{name}"))?)?)?;
        assert!(!entries.is_empty(), "{name}");
        for e in &entries {
            assert!(e.url.ends_with(".json"), "{}", e.url);
            assert!(e.hash_url.as_deref().is_some_and(|h| h.ends_with(".sha512")), "{}", e.id);
            assert!(e.signature_url.as_deref().is_some_and(|s| s.ends_with(".asc")), "{}", e.id);
        }
        println!("{name}: {} entries", entries.len());
        total += entries.len();
    }
    let example = read_rolie_feed(&std::fs::read(oasis("csaf_2.0/examples/ROLIE/example-01-feed-tlp-white.json")?)?)?;
    let Some(FeedEntry { url, hash_url, signature_url, .. }) = example.first() else {
        return Err("example feed has no entry".into());
    };
    assert!(url.ends_with(".json"));
    assert!(hash_url.is_some() && signature_url.is_some());
    assert!(read_rolie_feed(b"{\"feed\":{\"entry\":[{\"id\":\"x\"}]}}").is_err());
    assert!(read_rolie_feed(b"[]").is_err());
    println!("ROLIE entries read: {total} CISA + {} example", example.len());
    Ok(())
}

#[test]
fn strict_reader_names_the_failing_test() -> TestResult {
    let path = oasis("csaf_2.0/test/validator/data/mandatory/oasis_csaf_tc-csaf_2_0-2021-6-1-01-01.json")?;
    match parse_validated(&std::fs::read(path)?) {
        Err(caduceus_devices::DevicesError::Invalid(msg)) => assert!(msg.contains("6.1.1"), "{msg}"),
        other => return Err(format!("expected Invalid, got {other:?}").into()),
    }
    Ok(())
}

#[test]
fn hostile_input_is_refused_without_panicking() -> TestResult {
    // Oversized input.
    let big = vec![b' '; caduceus_devices::MAX_ADVISORY_BYTES + 1];
    assert!(parse(&big).is_err());
    // Deep JSON nesting stops at serde_json's recursion limit.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(parse(deep.as_bytes()).is_err());
    csaf::fuzz_csaf(deep.as_bytes());
    // Deep branches are refused by the reader and reported by the validator.
    let mut branch =
        serde_json::json!({"category": "product_version", "name": "1", "product": {"name": "p", "product_id": "P"}});
    for _ in 0..40 {
        branch = serde_json::json!({"category": "vendor", "name": "v", "branches": [branch]});
    }
    let path = oasis("csaf_2.0/examples/csaf/bsi-2022-0001.json")?;
    let mut doc: serde_json::Value = serde_json::from_slice(&std::fs::read(&path)?)?;
    if let Some(tree) = doc.get_mut("product_tree") {
        tree["branches"] = serde_json::json!([branch]);
    }
    let bytes = serde_json::to_vec(&doc)?;
    assert!(parse(&bytes).is_err());
    assert!(validate(&doc).iter().any(|v| v.test == "limits"));
    // Truncations of a real document never panic.
    let real = std::fs::read(&path)?;
    for cut in (0..real.len()).step_by(97) {
        csaf::fuzz_csaf(real.get(..cut).unwrap_or_default());
    }
    Ok(())
}
