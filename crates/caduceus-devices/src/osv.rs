//! OSV (schema 1.x) advisories, JSON or YAML, into [`Advisory`].
//!
//! Mapping:
//! - one [`Product`] per `affected[]` entry: id `"<ecosystem>:<name>#<index>"`, vendor the
//!   ecosystem, product the package name, purls the entry's `package.purl` or one built from
//!   ecosystem and name, version [`VersionSpec::Osv`] with the entry's ranges and versions;
//! - one [`Vulnerability`]: id the first CVE among the OSV id and its aliases (else the OSV
//!   id), the other ids as aliases, `summary` (or `details`), CVSS vectors from `severity`
//!   (top level and per entry) and RustSec's `database_specific.cvss`, CWEs from
//!   `database_specific.cwe_ids`, every product `known_affected`, a `vendor_fix` remediation
//!   per entry with `fixed` versions, and the references;
//! - `revision` and `modified` are the `modified` time; `publisher` is named from the id
//!   prefix when known.
//!
//! A withdrawn advisory (`withdrawn` set) is kept, so a later revision can supersede an
//! earlier one, but with no products: it must not produce findings. Its title starts with
//! `"[withdrawn] "`.

use serde::Deserialize;
use serde_json::Value;

use crate::model::{
    Advisory, AdvisorySource, OsvEvent, OsvRange, Product, ProductStatus, Remediation, Score, StatusEntry, VersionSpec,
    Vulnerability,
};
use crate::purl::Purl;
use crate::vers::{osv_fixed_versions, short};
use crate::{DevicesError, MAX_ADVISORY_BYTES, Result, check_size};

#[derive(Deserialize)]
#[serde(untagged)]
enum Text {
    S(String),
    I(i64),
    U(u64),
    F(f64),
}

impl Text {
    /// YAML may write a version as a bare number; integers are kept, but a float (`1.10`)
    /// has already lost its spelling and is refused.
    fn into_string(self, what: &str) -> Result<String> {
        match self {
            Text::S(s) => Ok(s),
            Text::I(i) => Ok(i.to_string()),
            Text::U(u) => Ok(u.to_string()),
            Text::F(f) => Err(perr(format!("{what} is written as the number {f}; it must be a string"))),
        }
    }
}

#[derive(Deserialize)]
struct Doc {
    id: String,
    modified: Option<Text>,
    published: Option<Text>,
    withdrawn: Option<Text>,
    aliases: Option<Vec<String>>,
    summary: Option<String>,
    details: Option<String>,
    severity: Option<Vec<Severity>>,
    affected: Option<Vec<Affected>>,
    references: Option<Vec<Reference>>,
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct Severity {
    #[serde(rename = "type")]
    kind: String,
    score: Text,
}

#[derive(Deserialize)]
struct Affected {
    package: Option<Package>,
    severity: Option<Vec<Severity>>,
    ranges: Option<Vec<Range>>,
    versions: Option<Vec<Text>>,
    database_specific: Option<Value>,
}

#[derive(Deserialize)]
struct Package {
    ecosystem: Option<String>,
    name: Option<String>,
    purl: Option<String>,
}

#[derive(Deserialize)]
struct Range {
    #[serde(rename = "type")]
    kind: String,
    events: Option<Vec<Event>>,
}

#[derive(Deserialize)]
struct Event {
    introduced: Option<Text>,
    fixed: Option<Text>,
    last_affected: Option<Text>,
    limit: Option<Text>,
}

#[derive(Deserialize)]
struct Reference {
    url: Option<String>,
}

fn perr(reason: impl Into<String>) -> DevicesError {
    DevicesError::Parse { format: "osv", reason: reason.into() }
}

/// A deserialiser's message, capped (they can quote input).
fn serde_msg(e: impl std::fmt::Display) -> DevicesError {
    let m = e.to_string();
    let capped: String = if m.chars().count() > 200 { m.chars().take(197).chain("...".chars()).collect() } else { m };
    perr(capped)
}

/// Parse an OSV advisory in JSON.
pub fn parse_json(bytes: &[u8]) -> Result<Advisory> {
    check_size("OSV advisory", bytes, MAX_ADVISORY_BYTES)?;
    let doc: Doc = serde_json::from_slice(bytes).map_err(serde_msg)?;
    convert(doc)
}

/// Parse an OSV advisory in YAML.
pub fn parse_yaml(bytes: &[u8]) -> Result<Advisory> {
    check_size("OSV advisory", bytes, MAX_ADVISORY_BYTES)?;
    let doc: Doc = serde_norway::from_slice(bytes).map_err(serde_msg)?;
    convert(doc)
}

/// Parse an OSV advisory, JSON or YAML by the file name's extension, else by whether the
/// first non-blank byte is `{`.
pub fn parse(bytes: &[u8], file_name_hint: Option<&str>) -> Result<Advisory> {
    check_size("OSV advisory", bytes, MAX_ADVISORY_BYTES)?;
    let ext = file_name_hint.and_then(|n| n.rsplit_once('.')).map(|(_, e)| e.to_ascii_lowercase());
    match ext.as_deref() {
        Some("json") => parse_json(bytes),
        Some("yaml" | "yml") => parse_yaml(bytes),
        _ => {
            let first =
                bytes.iter().copied().find(|b| !b.is_ascii_whitespace() && *b != 0xEF && *b != 0xBB && *b != 0xBF);
            if first == Some(b'{') { parse_json(bytes) } else { parse_yaml(bytes) }
        }
    }
}

/// Fuzz entry point: parse and drop.
pub fn fuzz_osv(data: &[u8]) {
    let _ = parse(data, None);
}

/// The database that publishes ids with this prefix.
fn publisher_for(id: &str) -> Option<&'static str> {
    let prefix = id.split('-').next().unwrap_or("");
    Some(match prefix {
        "RUSTSEC" => "RustSec",
        "PYSEC" => "PyPA",
        "GHSA" => "GitHub",
        "GO" => "Go Vulnerability Database",
        "OSV" => "OSV",
        "DSA" | "DLA" | "DTSA" | "DEBIAN" => "Debian",
        "USN" | "UBUNTU" => "Ubuntu",
        "ALSA" | "ALBA" | "ALEA" => "AlmaLinux",
        "RLSA" | "RXSA" => "Rocky Linux",
        "MAL" => "OpenSSF Malicious Packages",
        "PSF" => "Python Software Foundation",
        "RSEC" => "R",
        "GSD" => "Global Security Database",
        "HSEC" => "Haskell",
        "CURL" => "curl",
        "BIT" => "Bitnami",
        "CGA" => "Chainguard",
        "MGASA" => "Mageia",
        "SUSE" | "openSUSE" => "SUSE",
        "RHSA" | "RHBA" | "RHEA" => "Red Hat",
        _ => return None,
    })
}

/// A purl for an OSV package, when the ecosystem has a purl type.
pub fn purl_for(ecosystem: &str, name: &str) -> Option<String> {
    let base = ecosystem.split(':').next().unwrap_or(ecosystem);
    let (ty, ns, nm): (&str, Option<String>, String) = match base {
        "crates.io" => ("cargo", None, name.to_string()),
        "PyPI" => ("pypi", None, name.to_string()),
        "npm" => match name.strip_prefix('@').and_then(|n| n.split_once('/')) {
            Some((scope, n)) => ("npm", Some(format!("@{scope}")), n.to_string()),
            None => ("npm", None, name.to_string()),
        },
        "Maven" => {
            let (g, a) = name.split_once(':')?;
            ("maven", Some(g.to_string()), a.to_string())
        }
        "Go" => match name.rsplit_once('/') {
            Some((ns, n)) => ("golang", Some(ns.to_string()), n.to_string()),
            None => ("golang", None, name.to_string()),
        },
        "Debian" => ("deb", Some("debian".to_string()), name.to_string()),
        "Ubuntu" => ("deb", Some("ubuntu".to_string()), name.to_string()),
        "Alpine" => ("apk", Some("alpine".to_string()), name.to_string()),
        "NuGet" => ("nuget", None, name.to_string()),
        "RubyGems" => ("gem", None, name.to_string()),
        "Packagist" => {
            let (v, n) = name.split_once('/')?;
            ("composer", Some(v.to_string()), n.to_string())
        }
        "Hex" => ("hex", None, name.to_string()),
        "Pub" => ("pub", None, name.to_string()),
        "AlmaLinux" => ("rpm", Some("almalinux".to_string()), name.to_string()),
        "Rocky Linux" => ("rpm", Some("rocky-linux".to_string()), name.to_string()),
        "Red Hat" => ("rpm", Some("redhat".to_string()), name.to_string()),
        "SUSE" => ("rpm", Some("suse".to_string()), name.to_string()),
        "openSUSE" => ("rpm", Some("opensuse".to_string()), name.to_string()),
        _ => return None,
    };
    if nm.is_empty() {
        return None;
    }
    let purl =
        Purl { ty: ty.to_string(), namespace: ns, name: nm, version: None, qualifiers: Vec::new(), subpath: None };
    // Round-trip through the parser so the result is normalised (pypi names, etc.).
    Purl::parse(&purl.to_string()).ok().map(|p| p.to_string())
}

/// `"CVSS:3.1/..."` -> `"3.1"`; CVSS 2.0 vectors have no prefix.
fn cvss_version(kind: &str, vector: &str) -> Option<String> {
    if let Some(rest) = vector.strip_prefix("CVSS:") {
        return rest.split('/').next().map(str::to_string);
    }
    match kind {
        "CVSS_V2" => Some("2.0".to_string()),
        "CVSS_V3" => Some("3.1".to_string()),
        "CVSS_V4" => Some("4.0".to_string()),
        _ => None,
    }
}

fn add_score(scores: &mut Vec<Score>, kind: &str, vector: &str, products: Vec<String>) {
    if !kind.starts_with("CVSS_") || vector.is_empty() {
        return;
    }
    let Some(version) = cvss_version(kind, vector) else {
        return;
    };
    if let Some(existing) = scores.iter_mut().find(|s| s.vector == vector) {
        // Already known: widen to all products if either applies to all.
        if existing.products.is_empty() || products.is_empty() {
            existing.products.clear();
        } else {
            for p in products {
                if !existing.products.contains(&p) {
                    existing.products.push(p);
                }
            }
        }
        return;
    }
    scores.push(Score { version, vector: vector.to_string(), base_score: None, products });
}

fn opt_text(t: Option<Text>, what: &str) -> Result<Option<String>> {
    t.map(|t| t.into_string(what)).transpose()
}

fn convert(doc: Doc) -> Result<Advisory> {
    if doc.id.trim().is_empty() {
        return Err(perr("`id` is empty"));
    }
    let id = doc.id;
    let modified = opt_text(doc.modified, "modified")?;
    let published = opt_text(doc.published, "published")?;
    let withdrawn = opt_text(doc.withdrawn, "withdrawn")?.is_some();
    let aliases = doc.aliases.unwrap_or_default();
    let references: Vec<String> =
        doc.references.unwrap_or_default().into_iter().filter_map(|r| r.url).filter(|u| !u.is_empty()).collect();

    let mut scores = Vec::new();
    for s in doc.severity.unwrap_or_default() {
        let vector = s.score.into_string("severity score")?;
        add_score(&mut scores, &s.kind, &vector, Vec::new());
    }

    let mut products = Vec::new();
    let mut remediations = Vec::new();
    for (i, entry) in doc.affected.unwrap_or_default().into_iter().enumerate() {
        let (ecosystem, name, given_purl) = match entry.package {
            Some(p) => (p.ecosystem.unwrap_or_default(), p.name.unwrap_or_default(), p.purl),
            None => (String::new(), String::new(), None),
        };
        let pid = format!("{ecosystem}:{name}#{i}");
        let mut ranges = Vec::new();
        for r in entry.ranges.unwrap_or_default() {
            let mut events = Vec::new();
            for e in r.events.unwrap_or_default() {
                let ev = if let Some(v) = e.introduced {
                    OsvEvent::Introduced(v.into_string("introduced")?)
                } else if let Some(v) = e.fixed {
                    OsvEvent::Fixed(v.into_string("fixed")?)
                } else if let Some(v) = e.last_affected {
                    OsvEvent::LastAffected(v.into_string("last_affected")?)
                } else if let Some(v) = e.limit {
                    OsvEvent::Limit(v.into_string("limit")?)
                } else {
                    return Err(perr(format!("affected[{i}]: a range event has no known field")));
                };
                events.push(ev);
            }
            let ecosystem_of_range = if r.kind.eq_ignore_ascii_case("ECOSYSTEM") && !ecosystem.is_empty() {
                Some(ecosystem.clone())
            } else {
                None
            };
            ranges.push(OsvRange { kind: r.kind.to_ascii_uppercase(), ecosystem: ecosystem_of_range, events });
        }
        let versions = entry
            .versions
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.into_string("versions[]"))
            .collect::<Result<Vec<_>>>()?;
        for s in entry.severity.unwrap_or_default() {
            let vector = s.score.into_string("severity score")?;
            add_score(&mut scores, &s.kind, &vector, vec![pid.clone()]);
        }
        if let Some(Value::String(v)) = entry.database_specific.as_ref().and_then(|d| d.get("cvss")) {
            let kind = if v.starts_with("CVSS:4") {
                "CVSS_V4"
            } else if v.starts_with("CVSS:3") {
                "CVSS_V3"
            } else {
                "CVSS_V2"
            };
            add_score(&mut scores, kind, v, vec![pid.clone()]);
        }
        let fixed = osv_fixed_versions(&ranges);
        if !fixed.is_empty() {
            remediations.push(Remediation {
                category: "vendor_fix".to_string(),
                details: format!("Upgrade {} to {}", short(&name), fixed.join(" or ")),
                url: None,
                products: vec![pid.clone()],
                fixed_versions: fixed,
            });
        }
        let purls: Vec<String> = match given_purl.filter(|p| !p.is_empty()) {
            Some(p) => vec![p],
            None => purl_for(&ecosystem, &name).into_iter().collect(),
        };
        products.push(Product {
            id: pid,
            name: name.clone(),
            vendor: (!ecosystem.is_empty()).then(|| ecosystem.clone()),
            product: (!name.is_empty()).then_some(name),
            version: VersionSpec::Osv { ranges, versions },
            purls,
            ..Product::default()
        });
    }
    if withdrawn {
        products.clear();
        remediations.clear();
    }

    let cve = std::iter::once(&id).chain(aliases.iter()).find(|a| a.starts_with("CVE-")).cloned();
    let vuln_id = cve.clone().unwrap_or_else(|| id.clone());
    let vuln_aliases: Vec<String> =
        std::iter::once(&id).chain(aliases.iter()).filter(|a| **a != vuln_id).cloned().collect();
    let cwes: Vec<String> = doc
        .database_specific
        .as_ref()
        .and_then(|d| d.get("cwe_ids"))
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
        .unwrap_or_default();
    let summary = doc.summary.filter(|s| !s.trim().is_empty());
    let details = doc.details.filter(|s| !s.trim().is_empty());
    let base_title = summary
        .clone()
        .or_else(|| {
            details
                .as_ref()
                .and_then(|d| d.lines().find(|l| !l.trim().is_empty()))
                .map(|l| l.trim().chars().take(200).collect())
        })
        .unwrap_or_else(|| id.clone());
    let title = if withdrawn { format!("[withdrawn] {base_title}") } else { base_title };
    let product_status = products
        .iter()
        .map(|p| StatusEntry { product_id: p.id.clone(), status: ProductStatus::KnownAffected })
        .collect();
    let vulnerability = Vulnerability {
        id: vuln_id,
        cve,
        aliases: vuln_aliases,
        title: summary.clone(),
        summary: summary.or(details),
        cwes,
        scores,
        product_status,
        remediations,
        justifications: Vec::new(),
        references: references.clone(),
    };
    Ok(Advisory {
        publisher: publisher_for(&id).map(str::to_string),
        id,
        source: AdvisorySource::Osv,
        revision: modified.clone().unwrap_or_default(),
        published,
        modified,
        title,
        aliases,
        products,
        vulnerabilities: vec![vulnerability],
        references,
        is_vex: false,
    })
}
