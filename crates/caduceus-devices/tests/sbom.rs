//! SBOM readers on the public example corpora in `../shared/data`:
//! CycloneDX `bom-examples` (SBOM, VEX, HBOM, CBOM, SaaSBOM; JSON and XML) and SPDX
//! `spdx-examples` (2.2/2.3 JSON and tag-value; 3.0 JSON-LD refused).

use std::path::{Path, PathBuf};

use caduceus_devices::model::{FindingStatus, Sbom, SbomFormat};
use caduceus_devices::sbom::{self, Graph, ntia_gaps};

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn data_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data"));
    if !dir.is_dir() {
        return Err(format!(
            "test data directory {} is missing: clone the shared data beside the checkout (../shared/data)",
            dir.display()
        )
        .into());
    }
    Ok(dir)
}

fn cyclonedx_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = data_dir()?.join("sbom-cyclonedx/bom-examples");
    if !dir.is_dir() {
        return Err(format!("{} is missing", dir.display()).into());
    }
    Ok(dir)
}

fn spdx_dir() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let dir = data_dir()?.join("sbom-spdx/spdx-examples");
    if !dir.is_dir() {
        return Err(format!("{} is missing", dir.display()).into());
    }
    Ok(dir)
}

/// Every file under `dir`, sorted.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let path = entry?.path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

fn ext(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or_default()
}

fn parse_file(path: &Path) -> Result<Sbom, Box<dyn std::error::Error>> {
    Ok(sbom::parse(&std::fs::read(path)?)?)
}

fn rel(base: &Path, path: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}

#[test]
fn every_cyclonedx_example_parses() -> TestResult {
    let base = cyclonedx_dir()?;
    let files: Vec<PathBuf> = walk(&base)?.into_iter().filter(|p| matches!(ext(p), "json" | "xml")).collect();
    let mut parsed = 0usize;
    let mut refused: Vec<String> = Vec::new();
    let (mut components, mut relationships, mut vex) = (0usize, 0usize, 0usize);
    for path in &files {
        match parse_file(path) {
            Ok(s) => {
                assert_eq!(s.format, SbomFormat::CycloneDx, "{}", rel(&base, path));
                parsed += 1;
                components += s.components.len();
                relationships += s.relationships.len();
                vex += s.vex.len();
            }
            Err(e) => refused.push(format!("{}: {e}", rel(&base, path))),
        }
    }
    println!(
        "CycloneDX: {} files, {parsed} parsed, {} refused; {components} components, {relationships} relationships, {vex} VEX statements",
        files.len(),
        refused.len()
    );
    for r in &refused {
        println!("  refused {r}");
    }
    // Every JSON and XML file in bom-examples is a BOM (SBOM, VEX, HBOM, CBOM, SaaSBOM).
    assert!(refused.is_empty(), "refused BOMs: {refused:#?}");
    assert_eq!(files.len(), 65, "bom-examples changed: {} JSON/XML files", files.len());
    Ok(())
}

/// The JSON and XML renderings of the same BOM give the same components and graph.
#[test]
fn cyclonedx_json_and_xml_agree() -> TestResult {
    let base = cyclonedx_dir()?.join("SBOM");
    let pairs = [
        ("cern-lhc-vdm-editor-e564943/bom.json", "cern-lhc-vdm-editor-e564943/bom.xml"),
        ("dropwizard-1.3.15/bom.json", "dropwizard-1.3.15/bom.xml"),
        ("juice-shop/v11.1.2/bom.json", "juice-shop/v11.1.2/bom.xml"),
        ("laravel-7.12.0/bom.1.2.json", "laravel-7.12.0/bom.1.2.xml"),
        ("laravel-7.12.0/bom.1.3.json", "laravel-7.12.0/bom.1.3.xml"),
        ("laravel-7.12.0/bom.1.4.json", "laravel-7.12.0/bom.1.4.xml"),
        ("proton-bridge/proton-bridge-v1.6.3.bom.json", "proton-bridge/proton-bridge-v1.6.3.bom.xml"),
        ("proton-bridge/proton-bridge-v1.8.0.bom.json", "proton-bridge/proton-bridge-v1.8.0.bom.xml"),
        ("protonmail-webclient-v4-0912dff/bom.json", "protonmail-webclient-v4-0912dff/bom.xml"),
    ];
    for (j, x) in pairs {
        let (json, xml) = (parse_file(&base.join(j))?, parse_file(&base.join(x))?);
        assert_eq!(json.spec_version, xml.spec_version, "{j}");
        // Each pair comes from two runs of the generator (serials and timestamps differ).
        assert_eq!(json.root, xml.root, "{j}");
        assert_eq!(json.components.len(), xml.components.len(), "{j}");
        assert_eq!(json.relationships.len(), xml.relationships.len(), "{j}");
        for (a, b) in json.components.iter().zip(&xml.components) {
            assert_eq!((&a.id, &a.name, &a.version, &a.purl), (&b.id, &b.name, &b.version, &b.purl), "{j}");
            assert_eq!(a.hashes, b.hashes, "{j}: {}", a.id);
        }
    }
    Ok(())
}

#[test]
fn cyclonedx_content_is_kept() -> TestResult {
    let base = cyclonedx_dir()?;
    // 1.2 JSON with a dependency graph and hashes.
    let s = parse_file(&base.join("SBOM/dropwizard-1.3.15/bom.json"))?;
    assert_eq!(s.spec_version, "1.2");
    assert_eq!(s.serial.as_deref(), Some("urn:uuid:b4f2954f-a96d-4578-9509-1ae2d6476209"));
    assert_eq!(s.root.as_deref(), Some("pkg:maven/io.dropwizard/dropwizard-parent@1.3.15"));
    assert!(s.authors.iter().any(|a| a == "Tool: CycloneDX Maven plugin 2.0.2"), "{:?}", s.authors);
    assert_eq!(s.timestamp.as_deref(), Some("2020-08-02T21:27:04Z"));
    let Some(jackson) = s.components.iter().find(|c| c.name == "jackson-databind") else {
        return Err("jackson-databind missing".into());
    };
    assert!(
        jackson
            .purl
            .as_deref()
            .is_some_and(|p| p.starts_with("pkg:maven/com.fasterxml.jackson.core/jackson-databind@"))
    );
    assert!(jackson.hashes.iter().any(|h| h.starts_with("sha256:") && h.len() == 7 + 64), "{:?}", jackson.hashes);
    assert!(s.relationships.iter().all(|r| r.kind == "depends_on"));
    // dropwizard is a multi-module build: its root (the parent POM) is not in the dependency
    // graph, so no path leads from it; who pulls jackson-databind in is still known.
    let graph = Graph::new(&s);
    assert_eq!(graph.path_from_root(&jackson.id), None);
    assert_eq!(
        graph.dependents_of(&jackson.id),
        [
            "pkg:maven/io.dropwizard/dropwizard-jackson@1.3.15?type=jar",
            "pkg:maven/com.fasterxml.jackson.datatype/jackson-datatype-hibernate5@2.9.10?type=jar"
        ]
    );

    // proton-bridge (Go): the root heads the dependency graph; the matcher's explanation of
    // how a library sits in the product is the path from the root.
    let s = parse_file(&base.join("SBOM/proton-bridge/proton-bridge-v1.8.0.bom.json"))?;
    let graph = Graph::new(&s);
    let mut reachable = 0usize;
    let mut longest: Vec<String> = Vec::new();
    for c in &s.components {
        if let Some(path) = graph.path_from_root(&c.id) {
            reachable += 1;
            assert_eq!(path.first(), s.root.as_ref());
            assert_eq!(path.last(), Some(&c.id));
            for pair in path.windows(2) {
                let (Some(a), Some(b)) = (pair.first(), pair.get(1)) else { continue };
                assert!(s.relationships.iter().any(|r| &r.from == a && &r.to == b), "{a} -> {b}");
            }
            if path.len() > longest.len() {
                longest = path;
            }
        }
    }
    println!(
        "proton-bridge: {reachable}/{} components reachable from the root; longest: {}",
        s.components.len(),
        longest.join(" -> ")
    );
    // All but the one component that is in no relationship at all.
    let unrelated = ntia_gaps(&s).counts.relationship;
    assert_eq!(unrelated, 1);
    assert_eq!(reachable, s.components.len() - unrelated);
    assert!(longest.len() >= 3);

    // 1.6 CBOM with dependencies and `provides`.
    let s = parse_file(&base.join("CBOM/Example-With-Dependencies/bom.json"))?;
    assert_eq!(s.spec_version, "1.6");
    assert!(s.relationships.iter().any(|r| r.kind == "provides"), "{:?}", s.relationships);

    // HBOM: nested components become `contains`, the root has its manufacturer.
    let s = parse_file(&base.join("HBOM/PCIe-SATA-adapter-board/bom.json"))?;
    assert_eq!(s.root.as_deref(), Some("pcie-sata-adaptor-board"));
    assert!(s.components.iter().any(|c| c.kind.as_deref() == Some("device")));

    // SaaSBOM: services are components of kind `service`.
    let s = parse_file(&base.join("SaaSBOM/apigateway-microservices-datastores/bom.json"))?;
    assert!(s.components.iter().filter(|c| c.kind.as_deref() == Some("service")).count() >= 3);
    assert!(!s.relationships.is_empty());

    // 1.1 XML (no metadata): still components.
    let s = parse_file(&base.join("SBOM/laravel-7.12.0/bom.1.1.xml"))?;
    assert_eq!(s.spec_version, "1.1");
    assert!(s.components.len() > 50);
    Ok(())
}

#[test]
fn every_spdx2_example_parses_and_spdx3_is_refused() -> TestResult {
    let base = spdx_dir()?;
    let (mut json2, mut tag_value, mut spdx3, mut not_sbom) = (0usize, 0usize, 0usize, 0usize);
    let (mut packages, mut files_skipped, mut relationships) = (0usize, 0usize, 0usize);
    let mut failures: Vec<String> = Vec::new();
    for path in walk(&base)? {
        let name = rel(&base, &path);
        let bytes = std::fs::read(&path)?;
        let text = String::from_utf8_lossy(&bytes);
        match ext(&path) {
            "json" if text.contains("\"spdxVersion\"") && text.contains("SPDX-2.") => {
                match sbom::parse_detailed(&bytes) {
                    Ok(p) => {
                        json2 += 1;
                        packages += p.sbom.components.len();
                        files_skipped += p.skipped_files;
                        relationships += p.sbom.relationships.len();
                    }
                    Err(e) => failures.push(format!("{name}: {e}")),
                }
            }
            "json" => match sbom::parse(&bytes) {
                Err(e) if e.to_string().contains("SPDX 3.0") => spdx3 += 1,
                other => failures
                    .push(format!("{name}: expected the SPDX 3.0 refusal, got {:?}", other.map(|s| s.spec_version))),
            },
            "spdx" => match sbom::parse_detailed(&bytes) {
                Ok(p) => {
                    tag_value += 1;
                    packages += p.sbom.components.len();
                    files_skipped += p.skipped_files;
                    relationships += p.sbom.relationships.len();
                }
                Err(e) => failures.push(format!("{name}: {e}")),
            },
            "xml" => match sbom::parse(&bytes) {
                // Maven POMs, not SBOMs.
                Err(_) => not_sbom += 1,
                Ok(_) => failures.push(format!("{name}: a POM was taken for an SBOM")),
            },
            _ => {}
        }
    }
    println!(
        "SPDX: {json2} 2.x JSON and {tag_value} tag-value parsed ({packages} packages, {files_skipped} files skipped, \
         {relationships} relationships); {spdx3} SPDX 3.0 refused; {not_sbom} POMs refused"
    );
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!((json2, tag_value, spdx3, not_sbom), (12, 12, 26, 2));
    Ok(())
}

#[test]
fn spdx_content_is_kept() -> TestResult {
    let base = spdx_dir()?;
    let p = sbom::parse_detailed(&std::fs::read(base.join("software/example1/spdx2.2/example1.spdx"))?)?;
    let s = &p.sbom;
    assert_eq!((s.format, s.spec_version.as_str()), (SbomFormat::Spdx, "2.2"));
    assert_eq!(s.serial.as_deref(), Some("https://swinslow.net/spdx-examples/example1/hello-v3"));
    assert_eq!(s.root.as_deref(), Some("SPDXRef-Package-hello"));
    assert_eq!(s.timestamp.as_deref(), Some("2021-08-26T01:46:00Z"));
    assert_eq!(s.authors.len(), 3);
    assert_eq!(s.components.len(), 1);
    assert_eq!(p.skipped_files, 3);
    assert!(s.relationships.iter().any(|r| r.kind == "generated_from"));

    // Tag-value with multi-line <text> values.
    let s = parse_file(&base.join("software/example6/spdx2.2/example6-lib.spdx"))?;
    assert!(!s.components.is_empty());

    // JSON 2.3 with purls.
    let s = parse_file(&base.join("software/example8/spdx2.3/examplemaven-0.0.1.spdx.json"))?;
    assert_eq!(s.spec_version, "2.3");
    println!(
        "example8: {} packages, {} with purl",
        s.components.len(),
        s.components.iter().filter(|c| c.purl.is_some()).count()
    );
    Ok(())
}

/// A real SBOM that misses a few elements, then the same SBOM with them filled in.
#[test]
fn ntia_gaps_complete_and_incomplete() -> TestResult {
    let path = cyclonedx_dir()?.join("SBOM/laravel-7.12.0/bom.1.4.json");
    let bytes = std::fs::read(&path)?;
    let report = ntia_gaps(&sbom::parse(&bytes)?);
    println!("laravel 1.4 NTIA: {}", serde_json::to_string(&report.counts)?);
    assert!(!report.is_complete());
    assert_eq!(report.components, 63);
    assert!(report.document.missing_timestamp);
    assert!(!report.document.missing_author && !report.document.missing_relationships);
    let lacking: Vec<&str> = report.component_gaps.iter().map(|g| g.id.as_str()).collect();
    assert_eq!(lacking, ["brick/math-0.9.3.0", "laravel/laravel-7.12.0.0", "ramsey/uuid-4.2.3.0"]);
    assert!(report.component_gaps.iter().all(|g| g.missing == [sbom::ntia::NtiaElement::Supplier]));
    assert_eq!(report.counts.supplier, 3);
    assert_eq!(report.complete_components(), 60);

    // Fill in the timestamp and the three suppliers: nothing is missing any more.
    let mut doc: serde_json::Value = serde_json::from_slice(&bytes)?;
    if let Some(meta) = doc.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.insert("timestamp".into(), "2021-01-01T00:00:00Z".into());
    }
    for c in doc.get_mut("components").and_then(|c| c.as_array_mut()).into_iter().flatten() {
        if c.get("author").is_some() {
            continue;
        }
        if let Some(obj) = c.as_object_mut() {
            obj.insert("supplier".into(), serde_json::json!({ "name": "Example Supplier" }));
        }
    }
    let report = ntia_gaps(&sbom::parse(&serde_json::to_vec(&doc)?)?);
    assert!(report.is_complete(), "{report:?}");

    // An SBOM without a dependency graph: every component lacks a relationship.
    let s = parse_file(&cyclonedx_dir()?.join("SBOM/juice-shop/v11.1.2/bom.json"))?;
    let report = ntia_gaps(&s);
    assert!(report.document.missing_relationships);
    assert_eq!(report.counts.relationship, s.components.len());
    assert_eq!(report.counts.unique_id, 0);

    // SPDX: a package with neither version nor purl/CPE/checksum.
    let s = parse_file(&spdx_dir()?.join("software/example1/spdx2.2/example1.spdx"))?;
    let report = ntia_gaps(&s);
    assert_eq!(report.document, sbom::ntia::DocumentGaps::default());
    assert_eq!(
        report.component_gaps.first().map(|g| g.missing.clone()),
        Some(vec![
            sbom::ntia::NtiaElement::Supplier,
            sbom::ntia::NtiaElement::Version,
            sbom::ntia::NtiaElement::UniqueId
        ])
    );
    let json = serde_json::to_value(&report)?;
    assert_eq!(json.pointer("/component_gaps/0/missing/2"), Some(&serde_json::json!("unique_id")));
    Ok(())
}

/// The statements of one VEX file: (vulnerability, product, status, justification, versions).
type Statement = (String, String, FindingStatus, Option<String>, Vec<String>);

fn vex_of(rel_path: &str) -> Result<Vec<Statement>, Box<dyn std::error::Error>> {
    let p = sbom::parse_detailed(&std::fs::read(cyclonedx_dir()?.join("VEX").join(rel_path))?)?;
    assert_eq!(p.sbom.vex.len(), p.vex_versions.len());
    Ok(p.sbom
        .vex
        .into_iter()
        .zip(p.vex_versions)
        .map(|(v, versions)| (v.vulnerability, v.product, v.status, v.justification, versions))
        .collect())
}

/// The status `vuln` has for `product` at `version` (an exact version or range string as
/// the document writes it; `None`: a statement without versions).
fn status(
    statements: &[Statement],
    vuln: &str,
    product: &str,
    version: Option<&str>,
) -> Vec<(FindingStatus, Option<String>)> {
    statements
        .iter()
        .filter(|(v, p, _, _, versions)| {
            v == vuln
                && p == product
                && match version {
                    Some(ver) => versions.iter().any(|x| x == ver),
                    None => versions.is_empty(),
                }
        })
        .map(|(_, _, s, j, _)| (*s, j.clone()))
        .collect()
}

const NA: FindingStatus = FindingStatus::NotAffected;
const AFF: FindingStatus = FindingStatus::Affected;
const FIX: FindingStatus = FindingStatus::Fixed;
const UI: FindingStatus = FindingStatus::UnderInvestigation;

fn cnp() -> Option<String> {
    Some("code_not_present".into())
}

fn cnr() -> Option<String> {
    Some("code_not_reachable".into())
}

/// CISA VEX use cases (bom-examples/VEX/CISA-Use-Cases, statuses as each README states).
#[test]
fn cisa_vex_use_cases_give_the_documented_status() -> TestResult {
    const LOG4J: &str = "CVE-2021-44228";
    // Case 1: one file per status.
    let case1 = [
        ("vex-affected.json", "product-DEF", AFF, None),
        ("vex-fixed.json", "product-DEF", FIX, None),
        ("vex-not_affected.json", "product-ABC", NA, cnp()),
        ("vex-under_investigation.json", "product-GHI", UI, None),
    ];
    for (file, product, want, justification) in case1 {
        let st = vex_of(&format!("CISA-Use-Cases/Case-1/{file}"))?;
        assert_eq!(st.len(), 1, "{file}");
        assert_eq!(status(&st, LOG4J, product, None), vec![(want, justification)], "{file}");
    }
    // Case 2: all 19 Ripple20 CVEs not affected (the stack is not used).
    let st = vex_of("CISA-Use-Cases/Case-2/vex.json")?;
    assert_eq!(st.len(), 19);
    for n in 11896..=11914 {
        assert_eq!(status(&st, &format!("CVE-2020-{n}"), "product-ABC", None), vec![(NA, cnr())], "CVE-2020-{n}");
    }
    // Case 3: the four statuses over Ripple20, as the README lists them.
    let st = vex_of("CISA-Use-Cases/Case-3/vex.json")?;
    let groups: [(&[u32], FindingStatus, Option<String>); 4] = [
        (&[11897, 11902, 11899, 11905, 11906, 11913], NA, cnp()),
        (&[11898, 11907, 11909, 11910, 11911], AFF, None),
        (&[11896, 11900, 11904, 11903, 11908], UI, None),
        (&[11901, 11912, 11914], FIX, None),
    ];
    for (cves, want, justification) in groups {
        for n in cves {
            assert_eq!(status(&st, &format!("CVE-2020-{n}"), "product-GHI", None), vec![(want, justification.clone())]);
        }
    }
    // Case 4: affected in 2.4, 2.6 and 2.9 through 4.1.
    let st = vex_of("CISA-Use-Cases/Case-4/vex.json")?;
    for v in ["2.4", "2.6", "vers:generic/>=2.9|<=4.1"] {
        assert_eq!(status(&st, LOG4J, "product-ABC", Some(v)), vec![(AFF, None)], "{v}");
    }
    // Case 5: all versions under investigation.
    let st = vex_of("CISA-Use-Cases/Case-5/vex.json")?;
    assert_eq!(status(&st, LOG4J, "product-XYZ", None), vec![(UI, None)]);
    // Case 6: affected 2.4, 2.6, 2.9–4.1; not affected 1.0–2.3, 2.5, 2.7–2.8.
    let st = vex_of("CISA-Use-Cases/Case-6/vex.json")?;
    for v in ["2.4", "2.6", "vers:generic/>=2.9|<=4.1"] {
        assert_eq!(status(&st, LOG4J, "product-ABC", Some(v)), vec![(AFF, None)], "{v}");
    }
    for v in ["vers:generic/>=1.0|<=2.3", "2.5", "vers:generic/>=2.7|<=2.8"] {
        assert_eq!(status(&st, LOG4J, "product-ABC", Some(v)), vec![(NA, cnp())], "{v}");
    }
    // Cases 7 and 8: VEX-only documents about two products in other BOMs (BOM-Links).
    const ABC: &str = "urn:cdx:cbb2cd68-2857-43b8-a10b-e8c03d277d18/1#product-ABC";
    const JKL: &str = "urn:cdx:e4c3eedc-4978-470c-ad02-6ffff63738ff/1#product-JKL";
    for case in ["Case-7", "Case-8"] {
        let st = vex_of(&format!("CISA-Use-Cases/{case}/vex.json"))?;
        assert_eq!(status(&st, LOG4J, ABC, Some("2.6")), vec![(AFF, None)], "{case}");
        assert_eq!(status(&st, LOG4J, ABC, Some("2.5")), vec![(NA, cnp())], "{case}");
        assert_eq!(status(&st, LOG4J, JKL, Some("vers:generic/>=4.5|<=5.0")), vec![(AFF, None)], "{case}");
        assert_eq!(status(&st, LOG4J, JKL, Some("vers:generic/>=1.0|<=4.4")), vec![(NA, cnp())], "{case}");
        assert_eq!(status(&st, LOG4J, JKL, Some("5.1")), vec![(FIX, None)], "{case}");
    }
    // Case 8: CVE-2021-45105 also affects JKL 5.1; 5.2 fixes it.
    let st = vex_of("CISA-Use-Cases/Case-8/vex.json")?;
    const SECOND: &str = "CVE-2021-45105";
    assert_eq!(status(&st, SECOND, JKL, Some("5.1")), vec![(AFF, None)]);
    assert!(status(&st, SECOND, JKL, Some("5.2")).contains(&(FIX, None)));
    assert_eq!(status(&st, SECOND, ABC, Some("2.4")), vec![(AFF, None)]);
    // Case 9 (product lines) is not supported by CycloneDX and has no file.
    assert!(!cyclonedx_dir()?.join("VEX/CISA-Use-Cases/Case-9/vex.json").exists());
    Ok(())
}

/// The CycloneDX VEX use cases (bom-examples/VEX/Use-Cases) and the stand-alone VEX.
#[test]
fn cyclonedx_vex_use_cases_give_the_documented_status() -> TestResult {
    const CVE: &str = "CVE-2020-25649";
    const ACME: &str = "acme-product";
    let st = vex_of("Use-Cases/Case-1/vex.json")?;
    assert_eq!(status(&st, CVE, ACME, None), vec![(NA, cnr())]);
    assert_eq!(status(&vex_of("Use-Cases/Case-2/vex.json")?, CVE, ACME, None), vec![(AFF, None)]);
    assert_eq!(status(&vex_of("Use-Cases/Case-3/vex.json")?, CVE, ACME, None), vec![(UI, None)]);
    let st = vex_of("Use-Cases/Case-4/vex.json")?;
    assert_eq!(status(&st, CVE, ACME, Some("vers:semver/>=2.2.0|<=2.4.0")), vec![(NA, cnr())]);
    let st = vex_of("Use-Cases/Case-5/vex.json")?;
    assert_eq!(status(&st, CVE, ACME, Some("vers:semver/<7.0.0|>=1.5.0")), vec![(AFF, None)]);
    assert_eq!(status(&st, CVE, ACME, Some("vers:semver/<1.5.0|>=7.0.0")), vec![(NA, cnr())]);
    // Case 7: no `affects` at all — any product the VEX is applied to.
    let st = vex_of("Use-Cases/Case-7/vex.json")?;
    assert_eq!(status(&st, CVE, "*", None), vec![(NA, cnr())]);
    let st = vex_of("Use-Cases/Case-10/vex.json")?;
    assert_eq!(status(&st, CVE, ACME, Some("2.3.4")), vec![(NA, cnr())]);
    let st = vex_of("Use-Cases/Case-12/vex.json")?;
    assert_eq!(status(&st, CVE, ACME, None), vec![(NA, cnr())]);
    assert_eq!(status(&st, "CVE-2020-14195", ACME, None), vec![(NA, Some("protected_by_mitigating_control".into()))]);
    assert_eq!(status(&st, "CVE-2020-35491", ACME, None), vec![(AFF, None)]);
    let st = vex_of("Use-Cases/Case-13/vex.json")?;
    assert_eq!(
        status(&st, CVE, "urn:cdx:2c385cf7-e1ee-46e9-a51c-13de1ecb380a/1#acme-product-1", None),
        vec![(NA, cnr())]
    );
    assert_eq!(
        status(&st, CVE, "urn:cdx:6ffac0b2-5246-4fb9-a6fe-7993041856a0/1#acme-product-2", None),
        vec![(NA, cnr())]
    );
    assert_eq!(
        status(&st, CVE, "urn:cdx:240b5b0b-917d-4f48-816c-97e1944d8079/1#acme-product-3", None),
        vec![(AFF, None)]
    );
    let st = vex_of("Use-Cases/Case-9/vex.json")?;
    assert_eq!(st.len(), 19 * 3);
    assert!(st.iter().all(|s| s.2 == NA));
    // The stand-alone VEX for VEX/bom.json, by BOM-Link to a purl bom-ref.
    let st = vex_of("vex.json")?;
    let product = "urn:cdx:3e671687-395b-41f5-a30f-a58921a69b79/1#pkg:maven/com.fasterxml.jackson.core/jackson-databind@2.10.0?type=jar";
    assert_eq!(status(&st, CVE, product, None), vec![(NA, cnr())]);
    Ok(())
}

#[test]
fn graph_paths_on_nested_components() -> TestResult {
    // juice-shop nests components (npm bundled dependencies): paths go through `contains`.
    let s = parse_file(&cyclonedx_dir()?.join("SBOM/juice-shop/v11.1.2/bom.json"))?;
    let nested: Vec<_> = s.relationships.iter().filter(|r| r.kind == "contains").collect();
    println!("juice-shop: {} components, {} contains", s.components.len(), nested.len());
    let graph = Graph::new(&s);
    let mut reachable = 0usize;
    for c in &s.components {
        if let Some(path) = graph.path_from_root(&c.id) {
            reachable += 1;
            assert_eq!(path.first(), s.root.as_ref());
            assert_eq!(path.last(), Some(&c.id));
        }
    }
    // Only the root is reachable from the root (no dependency graph, top-level components).
    println!("juice-shop: {reachable} reachable from the root");
    // Every nested component has its parent as a dependent.
    for r in nested {
        assert!(graph.dependents_of(&r.to).contains(&r.from.as_str()));
    }
    // SPDX: the described package reaches what it contains/depends on.
    let s = parse_file(&spdx_dir()?.join("software/example6/spdx2.2/example6-bin.spdx"))?;
    println!("example6-bin: root {:?}, {:?}", s.root, s.relationships);
    Ok(())
}

#[test]
fn fuzz_entry_points_survive_the_corpus_mangled() -> TestResult {
    // Truncations of real documents: every reader returns, none panics.
    for path in [
        cyclonedx_dir()?.join("SBOM/laravel-7.12.0/bom.1.4.xml"),
        cyclonedx_dir()?.join("VEX/CISA-Use-Cases/Case-8/vex.json"),
        spdx_dir()?.join("software/example6/spdx2.2/example6-lib.spdx"),
        spdx_dir()?.join("software/example9/spdx2.2/appbomination.spdx.json"),
    ] {
        let bytes = std::fs::read(&path)?;
        for cut in (0..bytes.len()).step_by((bytes.len() / 150).max(1)) {
            let part = bytes.get(..cut).unwrap_or_default();
            sbom::fuzz_cyclonedx(part);
            sbom::fuzz_spdx(part);
        }
    }
    Ok(())
}
