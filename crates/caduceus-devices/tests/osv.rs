//! OSV advisories: every RustSec (JSON) and PyPA (YAML) advisory in the shared data parses,
//! and known advisories' ranges evaluate as their text says.

use std::path::{Path, PathBuf};

use caduceus_devices::model::{Advisory, AdvisorySource, OsvEvent, ProductStatus, VersionSpec};
use caduceus_devices::osv;
use caduceus_devices::vers::{osv_contains, osv_fixed_versions};
use caduceus_devices::version::Scheme;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn data_dir() -> Result<PathBuf, String> {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/osv"));
    if !dir.is_dir() {
        return Err(format!("shared OSV data not found at {} (clone ../shared beside the checkout)", dir.display()));
    }
    Ok(dir)
}

fn files_with_ext(dir: &Path, ext: &str, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            files_with_ext(&path, ext, out)?;
        } else if path.extension().is_some_and(|e| e == ext) {
            out.push(path);
        }
    }
    Ok(())
}

fn parse_all(dir: &Path, ext: &str) -> Result<Vec<Advisory>, Box<dyn std::error::Error>> {
    let mut files = Vec::new();
    files_with_ext(dir, ext, &mut files)?;
    files.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in &files {
        let bytes = std::fs::read(f)?;
        let name = f.file_name().and_then(|n| n.to_str());
        match osv::parse(&bytes, name) {
            Ok(a) => out.push(a),
            Err(e) => errors.push(format!("{}: {e}", f.display())),
        }
    }
    if !errors.is_empty() {
        return Err(format!("{} of {} failed:\n{}", errors.len(), files.len(), errors.join("\n")).into());
    }
    Ok(out)
}

fn find<'a>(all: &'a [Advisory], id: &str) -> Result<&'a Advisory, String> {
    all.iter().find(|a| a.id == id).ok_or_else(|| format!("{id} not found"))
}

/// Is `version` affected according to the advisory's first product?
fn affected(a: &Advisory, version: &str) -> Option<bool> {
    let p = a.products.first()?;
    let VersionSpec::Osv { ranges, versions } = &p.version else {
        return None;
    };
    let scheme = Scheme::from_osv_ecosystem(p.vendor.as_deref().unwrap_or(""));
    osv_contains(ranges, versions, scheme, version)
}

#[test]
fn rustsec_json_corpus() -> TestResult {
    let dir = data_dir()?.join("rustsec-osv");
    let all = parse_all(&dir, "json")?;
    println!("rustsec-osv: {} JSON advisories parsed", all.len());
    assert!(all.len() >= 1200, "expected at least 1200 RustSec advisories, found {}", all.len());
    for a in &all {
        assert_eq!(a.source, AdvisorySource::Osv);
        assert!(a.id.starts_with("RUSTSEC-"), "{}", a.id);
        assert_eq!(a.publisher.as_deref(), Some("RustSec"));
        assert_eq!(a.vulnerabilities.len(), 1);
        for p in &a.products {
            assert_eq!(p.vendor.as_deref(), Some("crates.io"));
            assert!(p.purls.iter().all(|u| u.starts_with("pkg:cargo/")), "{}: {:?}", a.id, p.purls);
        }
    }
    let withdrawn = all.iter().filter(|a| a.title.starts_with("[withdrawn]")).count();
    assert!(withdrawn > 0 && all.iter().filter(|a| a.title.starts_with("[withdrawn]")).all(|a| a.products.is_empty()));

    // tokio: introduced 0.1.14, fixed 1.8.4, introduced 1.9.0, fixed 1.13.1.
    let tokio = find(&all, "RUSTSEC-2021-0124")?;
    assert_eq!(tokio.vulnerabilities.first().map(|v| v.id.as_str()), Some("CVE-2021-45710"));
    assert_eq!(tokio.products.first().map(|p| p.id.as_str()), Some("crates.io:tokio#0"));
    for (v, want) in [
        ("0.1.13", false),
        ("0.1.14", true),
        ("1.8.3", true),
        ("1.8.4", false),
        ("1.8.5", false),
        ("1.9.0", true),
        ("1.13.0", true),
        ("1.13.1", false),
        ("1.14.0", false),
    ] {
        assert_eq!(affected(tokio, v), Some(want), "tokio {v}");
    }
    let fixed: Vec<String> = tokio
        .vulnerabilities
        .iter()
        .flat_map(|v| v.remediations.iter())
        .flat_map(|r| r.fixed_versions.clone())
        .collect();
    assert_eq!(fixed, ["1.8.4", "1.13.1"]);

    // time 0.1/0.2 (CVE-2020-26235): every 0.2.x pre-release window, fixed in 0.2.23.
    let time = find(&all, "RUSTSEC-2020-0071")?;
    for (v, want) in
        [("0.1.45", true), ("0.2.0", false), ("0.2.7", true), ("0.2.22", true), ("0.2.23", false), ("0.3.0", false)]
    {
        assert_eq!(affected(time, v), Some(want), "time {v}");
    }
    let v = time.vulnerabilities.first().ok_or("no vulnerability")?;
    assert_eq!(
        v.scores.first().map(|s| (s.version.as_str(), s.vector.as_str())),
        Some(("3.1", "CVSS:3.1/AV:L/AC:L/PR:N/UI:N/S:U/C:N/I:N/A:H"))
    );
    assert_eq!(v.product_status.first().map(|s| s.status), Some(ProductStatus::KnownAffected));

    // rsa (Marvin attack): every version, no fix.
    let rsa = find(&all, "RUSTSEC-2023-0071")?;
    assert_eq!(affected(rsa, "0.9.6"), Some(true));
    assert_eq!(affected(rsa, "0.0.1"), Some(true));
    assert_eq!(affected(rsa, "not.a.version"), None);
    assert!(rsa.vulnerabilities.iter().all(|v| v.remediations.is_empty()));
    Ok(())
}

#[test]
fn pypa_yaml_corpus() -> TestResult {
    let dir = data_dir()?.join("pypa-advisory-database/vulns");
    let all = parse_all(&dir, "yaml")?;
    println!("pypa-advisory-database: {} YAML advisories parsed", all.len());
    assert!(all.len() >= 2600, "expected at least 2600 PyPA advisories, found {}", all.len());
    for a in &all {
        for p in &a.products {
            assert_eq!(p.vendor.as_deref(), Some("PyPI"), "{}", a.id);
            assert!(p.purls.iter().all(|u| u.starts_with("pkg:pypi/")), "{}: {:?}", a.id, p.purls);
        }
    }

    // jinja2 PYSEC-2014-8: introduced 0, fixed 2.7.2 (ECOSYSTEM), plus a versions list.
    let j = find(&all, "PYSEC-2014-8")?;
    for (v, want) in [("2.0rc1", true), ("2.7.1", true), ("2.7.2", false), ("2.8", false), ("2.7.2.dev1", true)] {
        assert_eq!(affected(j, v), Some(want), "jinja2 {v}");
    }

    // py PYSEC-2022-42969: introduced 0, last_affected 1.11.0.
    let py = find(&all, "PYSEC-2022-42969")?;
    for (v, want) in [("1.11.0", true), ("1.10.0", true), ("1.11.1", false), ("0.8.0-alpha2", true)] {
        assert_eq!(affected(py, v), Some(want), "py {v}");
    }

    // A PyPA advisory whose only useful range is GIT: the versions list decides.
    let apache = find(&all, "PYSEC-2020-342")?;
    assert_eq!(affected(apache, "1.0.1"), Some(true));
    assert_eq!(affected(apache, "0.5.0"), Some(true));
    assert_eq!(apache.vulnerabilities.first().and_then(|v| v.cve.as_deref()), Some("CVE-2020-13921"));
    Ok(())
}

#[test]
fn osv_evaluation_rules() -> TestResult {
    let json = br#"{
      "id": "GHSA-xxxx-yyyy-zzzz", "modified": "2024-01-02T03:04:05Z",
      "aliases": ["CVE-2024-0001"],
      "summary": "example",
      "severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:H/VA:H/SC:N/SI:N/SA:N"}],
      "database_specific": {"cwe_ids": ["CWE-79"]},
      "affected": [
        {"package": {"ecosystem": "Maven", "name": "org.example:lib"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "2.0"}, {"last_affected": "2.5"}]},
                    {"type": "GIT", "repo": "https://example.org/x", "events": [{"introduced": "abc"}, {"fixed": "def"}]}]},
        {"package": {"ecosystem": "Debian:12", "name": "openssl"},
         "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "3.0.11-1~deb12u2"}]}]},
        {"package": {"ecosystem": "npm", "name": "@scope/pkg"},
         "ranges": [{"type": "SEMVER", "events": [{"introduced": "1.0.0"}, {"limit": "1.5.0"}]}]}
      ]
    }"#;
    let a = osv::parse(json, None)?;
    assert_eq!(a.revision, "2024-01-02T03:04:05Z");
    assert_eq!(a.publisher.as_deref(), Some("GitHub"));
    let v = a.vulnerabilities.first().ok_or("no vulnerability")?;
    assert_eq!(v.id, "CVE-2024-0001");
    assert_eq!(v.aliases, ["GHSA-xxxx-yyyy-zzzz"]);
    assert_eq!(v.cwes, ["CWE-79"]);
    assert_eq!(v.scores.first().map(|s| s.version.as_str()), Some("4.0"));
    let purls: Vec<&str> = a.products.iter().flat_map(|p| p.purls.iter().map(String::as_str)).collect();
    assert_eq!(purls, ["pkg:maven/org.example/lib", "pkg:deb/debian/openssl", "pkg:npm/%40scope/pkg"]);

    let check = |i: usize, version: &str| -> Option<bool> {
        let p = a.products.get(i)?;
        let VersionSpec::Osv { ranges, versions } = &p.version else { return None };
        osv_contains(ranges, versions, Scheme::from_osv_ecosystem(p.vendor.as_deref()?), version)
    };
    assert_eq!(check(0, "1.9"), Some(false));
    assert_eq!(check(0, "2.0"), Some(true));
    assert_eq!(check(0, "2.5"), Some(true));
    assert_eq!(check(0, "2.5.1"), Some(false));
    assert_eq!(check(1, "3.0.11-1~deb12u1"), Some(true));
    assert_eq!(check(1, "3.0.11-1~deb12u2"), Some(false));
    assert_eq!(check(1, "1:1.0"), Some(false));
    assert_eq!(check(2, "1.4.9"), Some(true));
    assert_eq!(check(2, "1.5.0"), Some(false));

    let p = a.products.get(1).ok_or("no product")?;
    let VersionSpec::Osv { ranges, .. } = &p.version else { return Err("not an OSV spec".into()) };
    assert_eq!(osv_fixed_versions(ranges), ["3.0.11-1~deb12u2"]);
    assert!(matches!(ranges.first().and_then(|r| r.events.first()), Some(OsvEvent::Introduced(v)) if v == "0"));

    // Withdrawn: kept, without products.
    let w = osv::parse_json(br#"{"id": "RUSTSEC-2099-0001", "modified": "x", "withdrawn": "2099-01-01T00:00:00Z",
        "affected": [{"package": {"ecosystem": "crates.io", "name": "a"}, "ranges": [{"type": "SEMVER", "events": [{"introduced": "0.0.0-0"}]}]}]}"#)?;
    assert!(w.products.is_empty());
    assert!(w.title.starts_with("[withdrawn]"));

    // Errors and limits.
    assert!(osv::parse(b"{", None).is_err());
    assert!(osv::parse(b"id: [", None).is_err());
    assert!(osv::parse(br#"{"id": ""}"#, None).is_err());
    assert!(
        osv::parse_yaml(b"id: X-1\naffected:\n- package: {ecosystem: PyPI, name: a}\n  versions: [1.10]\n").is_err()
    );
    let big = vec![b' '; caduceus_devices::MAX_ADVISORY_BYTES + 1];
    assert!(osv::parse(&big, None).is_err());
    for junk in [&b""[..], b"\xff\xfe", b"null", b"[]", b"{\"id\": 5}", b"- - -", b"id: x\naffected: 7"] {
        osv::fuzz_osv(junk);
    }
    Ok(())
}
