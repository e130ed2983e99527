//! Loading advisories from files and scanning devices, SBOMs and inventories against them:
//! what `caduceus devices scan` does offline and what the server does on every import.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::enrich::Enrichment;
use crate::inventory::Device;
use crate::matching::{AdvisoryIndex, Finding, PreparedSbom, apply_vex};
use crate::model::{Advisory, FindingStatus, VexStatement};
use crate::version::{Scheme, compare};
use crate::{DevicesError, Result, csaf, osv};

/// What kind of advisory document some bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvisoryFormat {
    Csaf,
    OsvJson,
    OsvYaml,
}

/// Tell CSAF from OSV by content (and, for YAML, by the file name).
pub fn detect_advisory(bytes: &[u8], name: Option<&str>) -> Option<AdvisoryFormat> {
    let yaml = name.is_some_and(|n| n.ends_with(".yaml") || n.ends_with(".yml"));
    if yaml {
        return Some(AdvisoryFormat::OsvYaml);
    }
    let head = String::from_utf8_lossy(bytes.get(..bytes.len().min(64 * 1024)).unwrap_or_default()).into_owned();
    if !head.trim_start().starts_with('{') {
        return head.contains("schema_version").then_some(AdvisoryFormat::OsvYaml);
    }
    if head.contains("\"csaf_version\"") || head.contains("\"product_tree\"") || head.contains("\"document\"") {
        Some(AdvisoryFormat::Csaf)
    } else {
        Some(AdvisoryFormat::OsvJson)
    }
}

/// Parse one advisory document, CSAF or OSV. CSAF documents must pass the mandatory tests of
/// CSAF 2.0 section 6.1; the error names the first test that fails.
pub fn parse_advisory(bytes: &[u8], name: Option<&str>) -> Result<Advisory> {
    match detect_advisory(bytes, name) {
        Some(AdvisoryFormat::Csaf) => Ok(csaf::parse_validated(bytes)?.to_advisory()),
        Some(AdvisoryFormat::OsvJson) => osv::parse_json(bytes),
        Some(AdvisoryFormat::OsvYaml) => osv::parse_yaml(bytes),
        None => Err(DevicesError::Parse { format: "advisory", reason: "neither CSAF JSON nor OSV JSON/YAML".into() }),
    }
}

/// Order two revisions of one advisory: CSAF versions are integers or SemVer, OSV revisions
/// are RFC 3339 times; `modified` breaks ties.
pub fn compare_revisions(a: &Advisory, b: &Advisory) -> Ordering {
    let by_revision = match (a.revision.parse::<u64>(), b.revision.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y),
        _ => compare(Scheme::Semver, &a.revision, &b.revision)
            .or_else(|| compare(Scheme::Generic, &a.revision, &b.revision))
            .unwrap_or_else(|| a.revision.cmp(&b.revision)),
    };
    by_revision.then_with(|| a.modified.cmp(&b.modified))
}

/// One file that could not be loaded, and why.
#[derive(Debug, Clone, Serialize)]
pub struct LoadError {
    pub file: String,
    pub reason: String,
}

/// Advisories read from files and directories, one current revision per id.
#[derive(Debug, Default)]
pub struct AdvisorySet {
    by_id: HashMap<String, Advisory>,
    pub files: usize,
    pub errors: Vec<LoadError>,
    /// Documents whose `.sha512` beside them verified.
    pub hashes_verified: usize,
    /// Older revisions superseded by a newer one of the same id.
    pub superseded: usize,
}

/// Most files read from one directory tree.
pub const MAX_ADVISORY_FILES: usize = 200_000;

impl AdvisorySet {
    /// Read every `.json`, `.yaml` and `.yml` under `path` (or `path` itself). A `.sha512`
    /// beside a document must verify, or the document is refused.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        for file in advisory_files(path)? {
            let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
            let shown = file.display().to_string();
            match self.load_file(&file, &name) {
                Ok(()) => self.files += 1,
                Err(e) => self.errors.push(LoadError { file: shown, reason: e.to_string() }),
            }
        }
        Ok(())
    }

    fn load_file(&mut self, file: &Path, name: &str) -> Result<()> {
        let bytes = read_capped(file, crate::MAX_ADVISORY_BYTES)?;
        if let Ok(hash) = std::fs::read(file.with_file_name(format!("{name}.sha512"))) {
            csaf::verify_sha512(&bytes, &hash)?;
            self.hashes_verified += 1;
        }
        let advisory = parse_advisory(&bytes, Some(name))?;
        self.insert(advisory);
        Ok(())
    }

    /// Keep `advisory` unless a newer revision of it is already here.
    pub fn insert(&mut self, advisory: Advisory) {
        match self.by_id.get(&advisory.id) {
            Some(current) if compare_revisions(current, &advisory) != Ordering::Less => self.superseded += 1,
            Some(_) => {
                self.superseded += 1;
                self.by_id.insert(advisory.id.clone(), advisory);
            }
            None => {
                self.by_id.insert(advisory.id.clone(), advisory);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// The advisories, sorted by id.
    pub fn into_advisories(self) -> Vec<Advisory> {
        let mut all: Vec<Advisory> = self.by_id.into_values().collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

/// Every advisory document under `path` (or `path` itself when it is a file): `.json`,
/// `.yaml` and `.yml` files, skipping hidden entries and ROLIE/provider/aggregator metadata,
/// sorted; at most [`MAX_ADVISORY_FILES`].
pub fn advisory_files(path: &Path) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    collect(path, &mut files, 0)?;
    files.sort();
    Ok(files)
}

fn collect(path: &Path, out: &mut Vec<PathBuf>, depth: usize) -> Result<()> {
    let io =
        |e: std::io::Error| DevicesError::Parse { format: "advisories", reason: format!("{}: {e}", path.display()) };
    let meta = std::fs::metadata(path).map_err(io)?;
    if meta.is_file() {
        out.push(path.to_owned());
        return Ok(());
    }
    if depth > 16 {
        return Ok(());
    }
    for entry in std::fs::read_dir(path).map_err(io)? {
        let entry = entry.map_err(io)?;
        let child = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let kind = entry.file_type().map_err(io)?;
        if kind.is_dir() {
            collect(&child, out, depth + 1)?;
        } else if (name.ends_with(".json") || name.ends_with(".yaml") || name.ends_with(".yml"))
            && !name.contains("feed")
            && !name.contains("provider-metadata")
            && !name.contains("aggregator")
        {
            out.push(child);
        }
        if out.len() > MAX_ADVISORY_FILES {
            return Err(DevicesError::TooLarge {
                what: "advisory directory",
                size: out.len(),
                limit: MAX_ADVISORY_FILES,
            });
        }
    }
    Ok(())
}

/// Read a file, refusing it when over `limit` bytes.
pub fn read_capped(path: &Path, limit: usize) -> Result<Vec<u8>> {
    let io = |e: std::io::Error| DevicesError::Parse { format: "file", reason: format!("{}: {e}", path.display()) };
    let size = std::fs::metadata(path).map_err(io)?.len();
    if size > limit as u64 {
        return Err(DevicesError::TooLarge { what: "file", size: usize::try_from(size).unwrap_or(usize::MAX), limit });
    }
    std::fs::read(path).map_err(io)
}

/// Everything a scan needs: the advisory index, EPSS/KEV, and VEX documents given apart.
pub struct Scanner {
    pub index: AdvisoryIndex,
    pub enrichment: Enrichment,
    pub vex: Vec<VexStatement>,
}

impl Scanner {
    pub fn new(advisories: Vec<Advisory>, enrichment: Enrichment, vex: Vec<VexStatement>) -> Scanner {
        Scanner { index: AdvisoryIndex::new(advisories), enrichment, vex }
    }

    /// One device: its manufacturer/model/version against CSAF product trees, and its SBOM's
    /// components when it has one; then VEX (the SBOM's, the separate documents', and CSAF VEX
    /// advisories) settles each finding's status.
    pub fn scan_device(&self, device: &Device, sbom: Option<&PreparedSbom>) -> Vec<Finding> {
        let mut findings = self.index.match_device(device, &self.enrichment);
        if let Some(sbom) = sbom {
            findings.extend(self.index.match_prepared(Some(&device.id), sbom, &self.enrichment));
        }
        apply_vex(&mut findings, &self.vex);
        reconcile_vex(findings)
    }

    /// An SBOM on its own (`devices scan --sbom`).
    pub fn scan_sbom(&self, sbom: &PreparedSbom) -> Vec<Finding> {
        let mut findings = self.index.match_prepared(None, sbom, &self.enrichment);
        apply_vex(&mut findings, &self.vex);
        reconcile_vex(findings)
    }
}

/// A CSAF VEX advisory's status for a subject and CVE overrides what other advisories say
/// about the same subject and CVE; the VEX finding itself is then dropped as a duplicate.
/// VEX findings that speak about nothing else found stay, so "not affected" is still shown.
pub fn reconcile_vex(mut findings: Vec<Finding>) -> Vec<Finding> {
    let vex: Vec<(String, String, FindingStatus, Option<String>, String)> = findings
        .iter()
        .filter(|f| f.vex_source.as_deref() == Some(f.advisory.as_str()))
        .flat_map(|f| {
            let subject = subject_key(f);
            f.cves
                .iter()
                .map(move |cve| (subject.clone(), cve.clone(), f.status, f.justification.clone(), f.advisory.clone()))
        })
        .collect();
    if vex.is_empty() {
        return findings;
    }
    let mut used = std::collections::HashSet::new();
    for finding in findings.iter_mut() {
        if finding.vex_source.as_deref() == Some(finding.advisory.as_str()) {
            continue;
        }
        let subject = subject_key(finding);
        if let Some((_, cve, status, justification, source)) =
            vex.iter().find(|(s, cve, ..)| *s == subject && finding.cves.contains(cve))
        {
            finding.status = *status;
            finding.justification = justification.clone();
            finding.vex_source = Some(source.clone());
            used.insert((subject, cve.clone(), source.clone()));
        }
    }
    findings.retain(|f| {
        f.vex_source.as_deref() != Some(f.advisory.as_str())
            || !f.cves.iter().any(|cve| used.contains(&(subject_key(f), cve.clone(), f.advisory.clone())))
    });
    findings
}

fn subject_key(f: &Finding) -> String {
    format!("{}|{}", f.device.as_deref().unwrap_or("-"), f.component.as_ref().map_or("-", |c| c.id.as_str()))
}
