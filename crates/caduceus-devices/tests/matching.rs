//! Matching against the public advisories in `../shared/data`:
//! - an inventory built from every ICSMA advisory's own product tree (one device per product
//!   and version, fixed versions included) must get back the advisories' own product_status,
//!   with precision and recall of at least 0.99;
//! - a Cargo.lock with known-vulnerable crates gets exactly the RustSec advisories that apply;
//! - the false matches other scanners are known for do not happen here;
//! - VEX (CycloneDX and CSAF) settles statuses.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

use caduceus_devices::enrich::Enrichment;
use caduceus_devices::inventory::{Criticality, Device};
use caduceus_devices::matching::{AdvisoryIndex, MatchRule, PreparedSbom, Specificity};
use caduceus_devices::model::{
    Advisory, AdvisorySource, Component, FindingStatus, Product, ProductStatus, Sbom, SbomFormat, StatusEntry,
    VersionSpec, VexStatement, Vulnerability,
};
use caduceus_devices::scan::{AdvisorySet, Scanner};
use caduceus_devices::vers::{Comparator, VersRange};
use caduceus_devices::{lockfile, report, risk};

type TestResult = Result<(), Box<dyn std::error::Error>>;

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data");

fn data(rel: &str) -> Result<PathBuf, Box<dyn std::error::Error>> {
    let path = Path::new(DATA).join(rel);
    if !path.exists() {
        return Err(
            format!("test data missing: {} (the shared data must sit beside the checkout)", path.display()).into()
        );
    }
    Ok(path)
}

/// A version inside the product's own version spec, to put on the device built from it.
fn version_for(product: &Product) -> Option<String> {
    match &product.version {
        VersionSpec::Exact { version } => Some(version.clone()),
        VersionSpec::Unspecified => Some("1.0".into()),
        VersionSpec::Vers { vers, .. } => {
            let range = VersRange::parse(vers).ok()?;
            if range.all {
                return Some("1.0".into());
            }
            let pick = range
                .constraints
                .iter()
                .find(|c| matches!(c.comparator, Comparator::Le | Comparator::Eq | Comparator::Ge))
                .map(|c| c.version.clone())?;
            (range.contains(&pick) == Some(true)).then_some(pick)
        }
        VersionSpec::Osv { .. } | VersionSpec::Unparsed { .. } => None,
    }
}

#[test]
fn icsma_inventory_gets_the_advisories_own_product_status() -> TestResult {
    let mut set = AdvisorySet::default();
    set.load(&data("cisa-csaf/icsma")?)?;
    assert!(set.errors.is_empty(), "{:?}", set.errors);
    assert_eq!(set.hashes_verified, set.files, "every ICSMA document has a .sha512 that verifies");
    let advisories = set.into_advisories();
    assert!(advisories.len() >= 120, "{} advisories", advisories.len());

    let mut devices = Vec::new();
    // (device, advisory, vulnerability) → status the advisory gives the product the device was built from.
    let mut expected: HashMap<(String, String, String), FindingStatus> = HashMap::new();
    let (mut products, mut skipped) = (0usize, 0usize);
    for advisory in &advisories {
        for product in &advisory.products {
            products += 1;
            let (Some(vendor), Some(name)) = (&product.vendor, &product.product) else {
                skipped += 1;
                continue;
            };
            let Some(version) = version_for(product) else {
                skipped += 1;
                continue;
            };
            let id = format!("{}-{}", advisory.id, product.id)
                .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_");
            let mut any = false;
            for vulnerability in &advisory.vulnerabilities {
                let statuses: Vec<ProductStatus> = vulnerability
                    .product_status
                    .iter()
                    .filter(|s| s.product_id == product.id)
                    .map(|s| s.status)
                    .collect();
                // The most cautious status the advisory gives this product.
                let Some(status) = statuses.iter().map(|s| s.finding_status()).min() else { continue };
                expected.insert((id.clone(), advisory.id.clone(), vulnerability.id.clone()), status);
                any = true;
            }
            if any {
                devices.push(Device {
                    id,
                    manufacturer: vendor.clone(),
                    model: name.clone(),
                    version: Some(version),
                    ..Device::default()
                });
            }
        }
    }
    let scanner = Scanner::new(advisories, Enrichment::default(), Vec::new());
    let (mut true_positive, mut produced, mut cross) = (0usize, 0usize, 0usize);
    let mut wrong = Vec::new();
    let mut found: HashSet<(String, String, String)> = HashSet::new();
    for device in &devices {
        for finding in scanner.scan_device(device, None) {
            let key = (device.id.clone(), finding.advisory.clone(), finding.vulnerability.clone());
            if !device.id.starts_with(&finding.advisory.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"))
            {
                cross += 1;
                continue;
            }
            produced += 1;
            match expected.get(&key) {
                Some(status) if *status == finding.status => {
                    true_positive += 1;
                    found.insert(key);
                }
                other => wrong.push(format!("{key:?}: got {:?}, advisory says {other:?}", finding.status)),
            }
        }
    }
    let precision = true_positive as f64 / produced.max(1) as f64;
    let recall = found.len() as f64 / expected.len().max(1) as f64;
    let missed: Vec<_> = expected.keys().filter(|k| !found.contains(*k)).take(10).collect();
    eprintln!(
        "ICSMA: {} devices from {products} products ({skipped} without vendor, name or a usable version); \
         {} expected (device, vulnerability) statuses; {produced} findings from the same advisory, \
         {true_positive} right; {cross} findings from other advisories about the same products; \
         precision {precision:.4}, recall {recall:.4}",
        devices.len(),
        expected.len()
    );
    eprintln!("wrong (first 10): {:#?}", wrong.iter().take(10).collect::<Vec<_>>());
    eprintln!("missed (first 10): {missed:#?}");
    assert!(precision >= 0.99, "precision {precision}");
    assert!(recall >= 0.99, "recall {recall}");
    Ok(())
}

const CARGO_LOCK: &str = r#"# This file is automatically @generated by Cargo.
version = 3

[[package]]
name = "app"
version = "0.1.0"
dependencies = ["chrono", "regex", "serde", "smallvec", "time", "tokio"]

[[package]]
name = "chrono"
version = "0.4.19"
source = "registry+https://github.com/rust-lang/crates.io-index"
dependencies = ["time"]

[[package]]
name = "regex"
version = "1.5.4"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "serde"
version = "1.0.130"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "smallvec"
version = "1.6.0"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "time"
version = "0.1.43"
source = "registry+https://github.com/rust-lang/crates.io-index"

[[package]]
name = "tokio"
version = "1.13.0"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;

#[test]
fn cargo_lock_gets_exactly_the_rustsec_advisories_that_apply() -> TestResult {
    let mut set = AdvisorySet::default();
    set.load(&data("osv/rustsec-osv/crates")?)?;
    assert!(set.errors.is_empty(), "{:?}", set.errors.first());
    let scanner = Scanner::new(set.into_advisories(), Enrichment::default(), Vec::new());
    let sbom = lockfile::parse_cargo_lock(CARGO_LOCK.as_bytes())?;
    let findings = scanner.scan_sbom(&PreparedSbom::new(&sbom));
    let got: BTreeMap<String, Vec<String>> = findings.iter().fold(BTreeMap::new(), |mut m, f| {
        let name = f.component.as_ref().map(|c| c.name.clone()).unwrap_or_default();
        m.entry(name).or_insert_with(Vec::new).push(f.advisory.clone());
        m
    });
    // Read off each advisory's SEMVER ranges by hand (osv/rustsec-osv/crates/RUSTSEC-*.json).
    let want: BTreeMap<String, Vec<String>> = [
        ("chrono", vec!["RUSTSEC-2020-0159"]),
        ("regex", vec!["RUSTSEC-2022-0013"]),
        ("smallvec", vec!["RUSTSEC-2021-0003"]),
        ("time", vec!["RUSTSEC-2020-0071"]),
        ("tokio", vec!["RUSTSEC-2021-0124", "RUSTSEC-2023-0001", "RUSTSEC-2023-0005", "RUSTSEC-2025-0023"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(got, want);
    for finding in &findings {
        assert_eq!(finding.status, FindingStatus::Affected);
        assert_eq!(finding.provenance.rule, MatchRule::Purl);
        assert_eq!(finding.provenance.specificity, Specificity::Range);
        assert!(!finding.fixed_versions.is_empty(), "{} has fixed versions", finding.advisory);
        let path = &finding.component.as_ref().ok_or("component")?.path;
        assert!(!path.is_empty());
    }
    let tokio = findings.iter().find(|f| f.advisory == "RUSTSEC-2021-0124").ok_or("tokio finding")?;
    assert_eq!(tokio.cves, vec!["CVE-2021-45710".to_owned()]);
    assert!(tokio.fixed_versions.contains(&"1.13.1".to_owned()));
    assert!(tokio.provenance.version_check.contains("1.13.0"), "{}", tokio.provenance.version_check);
    // The three output formats carry the findings.
    let json = report::to_json(&findings);
    assert_eq!(json.as_array().map(Vec::len), Some(findings.len()));
    let sarif = report::to_sarif(&findings, "Cargo.lock");
    assert_eq!(sarif.pointer("/runs/0/results").and_then(|r| r.as_array()).map(Vec::len), Some(findings.len()));
    assert!(report::to_table(&findings).contains("RUSTSEC-2022-0013"));
    Ok(())
}

fn advisory(products: Vec<Product>, statuses: Vec<(&str, ProductStatus)>) -> Advisory {
    Advisory {
        id: "TEST-1".into(),
        source: AdvisorySource::Csaf,
        revision: "1".into(),
        published: None,
        modified: None,
        title: "test".into(),
        publisher: None,
        aliases: Vec::new(),
        products,
        vulnerabilities: vec![Vulnerability {
            id: "CVE-2099-0001".into(),
            cve: Some("CVE-2099-0001".into()),
            product_status: statuses
                .into_iter()
                .map(|(id, status)| StatusEntry { product_id: id.into(), status })
                .collect(),
            ..Vulnerability::default()
        }],
        references: Vec::new(),
        is_vex: false,
    }
}

fn component(id: &str, name: &str, version: &str, purl: Option<&str>, cpe: Option<&str>) -> Component {
    Component {
        id: id.into(),
        name: name.into(),
        version: Some(version.into()),
        purl: purl.map(str::to_owned),
        cpe: cpe.map(str::to_owned),
        ..Component::default()
    }
}

fn sbom(components: Vec<Component>, vex: Vec<VexStatement>) -> Sbom {
    Sbom {
        format: SbomFormat::CycloneDx,
        spec_version: "1.6".into(),
        serial: None,
        root: None,
        name: None,
        authors: Vec::new(),
        timestamp: None,
        components,
        relationships: Vec::new(),
        vex,
    }
}

#[test]
fn cpe_needs_vendor_and_product_and_never_a_bare_wildcard_version() -> TestResult {
    let product = |id: &str, cpe: &str, version: VersionSpec| Product {
        id: id.into(),
        name: id.into(),
        cpes: vec![cpe.into()],
        version,
        ..Product::default()
    };
    let index = AdvisoryIndex::new(vec![advisory(
        vec![
            // Grype #342 / Dependency-Track #3063: the same product name from another vendor.
            product("P1", "cpe:2.3:a:othervendor:openssl:1.0.2:*:*:*:*:*:*:*", VersionSpec::Unspecified),
            // Dependency-Track #3268: a wildcard version with no range must not match everything.
            product("P2", "cpe:2.3:a:acme:pumpos:*:*:*:*:*:*:*:*", VersionSpec::Unspecified),
            // A wildcard CPE with the advisory's own range does match inside it.
            product(
                "P3",
                "cpe:2.3:a:acme:monitor:*:*:*:*:*:*:*:*",
                VersionSpec::Vers { vers: "vers:generic/<2.8.100".into(), text: "<2.8.100".into() },
            ),
        ],
        vec![
            ("P1", ProductStatus::KnownAffected),
            ("P2", ProductStatus::KnownAffected),
            ("P3", ProductStatus::KnownAffected),
        ],
    )]);
    let enrichment = Enrichment::default();
    let components = vec![
        component("c1", "openssl", "1.0.2", None, Some("cpe:2.3:a:openssl:openssl:1.0.2:*:*:*:*:*:*:*")),
        component("c2", "pumpos", "3.1", None, Some("cpe:2.3:a:acme:pumpos:3.1:*:*:*:*:*:*:*")),
        // Dependency-Track #2803: 2.8.123e is later than 2.8.75 and outside <2.8.100.
        component("c3", "monitor", "2.8.123e", None, Some("cpe:2.3:a:acme:monitor:2.8.123e:*:*:*:*:*:*:*")),
        component("c4", "monitor", "2.8.75", None, Some("cpe:2.3:a:acme:monitor:2.8.75:*:*:*:*:*:*:*")),
    ];
    let findings = index.match_sbom(None, &sbom(components, Vec::new()), &enrichment);
    let hit: Vec<&str> = findings.iter().filter_map(|f| f.component.as_ref().map(|c| c.id.as_str())).collect();
    assert_eq!(hit, vec!["c4"]);
    Ok(())
}

#[test]
fn the_most_specific_product_decides_and_unreadable_versions_never_match() -> TestResult {
    let product = |id: &str, version: VersionSpec| Product {
        id: id.into(),
        name: format!("Acme Pump {id}"),
        vendor: Some("Acme Medical, Inc.".into()),
        product: Some("Infusion Pump 3000".into()),
        version,
        ..Product::default()
    };
    let index = AdvisoryIndex::new(vec![advisory(
        vec![
            product("ALL", VersionSpec::Unspecified),
            product("FIX", VersionSpec::Exact { version: "4.2.8p18".into() }),
            product("ODD", VersionSpec::Unparsed { text: "only with the wifi module".into() }),
        ],
        vec![
            ("ALL", ProductStatus::KnownAffected),
            ("FIX", ProductStatus::Fixed),
            ("ODD", ProductStatus::KnownAffected),
        ],
    )]);
    let device = |version: &str| Device {
        id: format!("pump-{version}"),
        manufacturer: "ACME Medical".into(),
        model: "Infusion pump 3000".into(),
        version: Some(version.into()),
        criticality: Criticality::LifeSustaining,
        ..Device::default()
    };
    let enrichment = Enrichment::default();
    let fixed = index.match_device(&device("4.2.8p18"), &enrichment);
    assert_eq!(fixed.len(), 1);
    assert_eq!(fixed.first().map(|f| f.status), Some(FindingStatus::Fixed));
    assert_eq!(fixed.first().map(|f| f.provenance.specificity), Some(Specificity::Exact));
    let affected = index.match_device(&device("4.2.8p15"), &enrichment);
    assert_eq!(affected.first().map(|f| f.status), Some(FindingStatus::Affected));
    assert_eq!(affected.first().map(|f| f.provenance.rule), Some(MatchRule::DeviceModel));
    // Another manufacturer with the same model name does not match.
    let other = Device { manufacturer: "Globex".into(), ..device("1.0") };
    assert!(index.match_device(&other, &enrichment).is_empty());
    // Risk counts the affected one, weighted by criticality.
    let r = risk::score(&device("4.2.8p15"), &affected, risk::Context { exposed: true, today: (2026, 11, 30) });
    assert_eq!(r.affected, 1);
    assert!(r.score > 0 && r.score <= 100);
    let none = risk::score(&device("4.2.8p18"), &fixed, risk::Context::default());
    assert_eq!(none.score, 0);
    Ok(())
}

#[test]
fn vex_statements_settle_component_findings() -> TestResult {
    let product = Product {
        id: "LIB".into(),
        name: "log4j-core".into(),
        purls: vec!["pkg:maven/org.apache.logging.log4j/log4j-core".into()],
        version: VersionSpec::Vers { vers: "vers:maven/>=2.0|<2.15.0".into(), text: String::new() },
        ..Product::default()
    };
    let index = AdvisoryIndex::new(vec![advisory(vec![product], vec![("LIB", ProductStatus::KnownAffected)])]);
    let enrichment = Enrichment::default();
    let purl = "pkg:maven/org.apache.logging.log4j/log4j-core@2.14.1";
    let vex = |product: &str, versions: Vec<String>| VexStatement {
        vulnerability: "CVE-2099-0001".into(),
        aliases: Vec::new(),
        product: product.into(),
        status: FindingStatus::NotAffected,
        justification: Some("code_not_reachable".into()),
        detail: None,
        source: "urn:uuid:test".into(),
        versions,
    };
    let components = || vec![component("log4j", "log4j-core", "2.14.1", Some(purl), None)];
    let plain = index.match_sbom(None, &sbom(components(), Vec::new()), &enrichment);
    assert_eq!(plain.first().map(|f| f.status), Some(FindingStatus::Affected));
    for statement in [vex("log4j", Vec::new()), vex(purl, Vec::new()), vex("urn:cdx:x/1#log4j", vec!["2.14.1".into()])]
    {
        let settled = index.match_sbom(None, &sbom(components(), vec![statement.clone()]), &enrichment);
        assert_eq!(settled.first().map(|f| f.status), Some(FindingStatus::NotAffected), "{statement:?}");
        assert_eq!(settled.first().and_then(|f| f.justification.clone()).as_deref(), Some("code_not_reachable"));
    }
    // A statement about another version does not speak for this one.
    let other = index.match_sbom(None, &sbom(components(), vec![vex("log4j", vec!["2.17.0".into()])]), &enrichment);
    assert_eq!(other.first().map(|f| f.status), Some(FindingStatus::Affected));
    Ok(())
}

#[test]
fn cyclonedx_vex_use_case_applied_to_its_sbom() -> TestResult {
    // bom-examples/VEX: vex.json speaks about bom.json's components by BOM-Link.
    let dir = data("sbom-cyclonedx/bom-examples/VEX")?;
    let bom = caduceus_devices::sbom::parse(&std::fs::read(dir.join("bom.json"))?)?;
    let vex = caduceus_devices::sbom::parse(&std::fs::read(dir.join("vex.json"))?)?;
    assert!(!vex.vex.is_empty());
    let prepared = PreparedSbom::new(&bom);
    // An advisory naming every component's purl makes each one a finding for the VEX to settle.
    let mut products = Vec::new();
    let mut statuses = Vec::new();
    for (i, c) in bom.components.iter().enumerate() {
        let Some(purl) = &c.purl else { continue };
        let Some(version) = &c.version else { continue };
        let id = format!("P{i}");
        products.push(Product {
            id: id.clone(),
            name: c.name.clone(),
            purls: vec![purl.clone()],
            version: VersionSpec::Exact { version: version.clone() },
            ..Product::default()
        });
        statuses.push((id, ProductStatus::KnownAffected));
    }
    let mut advisories = Vec::new();
    for statement in &vex.vex {
        let mut a = advisory(products.clone(), Vec::new());
        a.id = format!("ADV-{}", statement.vulnerability);
        if let Some(v) = a.vulnerabilities.first_mut() {
            v.id = statement.vulnerability.clone();
            v.cve = Some(statement.vulnerability.clone());
            v.product_status =
                statuses.iter().map(|(id, s)| StatusEntry { product_id: id.clone(), status: *s }).collect();
        }
        advisories.push(a);
    }
    let scanner = Scanner::new(advisories, Enrichment::default(), vex.vex.clone());
    let findings = scanner.scan_sbom(&prepared);
    let settled = findings.iter().filter(|f| f.vex_source.is_some()).count();
    eprintln!("VEX/bom.json: {} findings, {settled} settled by VEX/vex.json", findings.len());
    assert!(settled > 0, "the VEX document names at least one of bom.json's components");
    for f in findings.iter().filter(|f| f.vex_source.is_some()) {
        let statement = vex.vex.iter().find(|s| s.vulnerability == f.vulnerability).ok_or("statement")?;
        assert_eq!(f.status, statement.status);
    }
    Ok(())
}
