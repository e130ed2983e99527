//! Which advisories apply to which devices and components, and why.
//!
//! Scanners are noisy where names collide and versions are guessed. Here every finding says
//! which rule matched which field, and the rules are strict:
//! - **purl**: same type, namespace and name (normalised per the purl spec), and the version
//!   inside the advisory's range by the ecosystem's own ordering ([`crate::version`]);
//! - **CPE**: vendor *and* product equal, and a version checked: a CPE whose version is `*`
//!   matches only through the advisory's own version range, never every version;
//! - **hash**: the same artifact digest;
//! - **device**: manufacturer and model (or model number, or SKU) equal after normalising
//!   case, punctuation and company suffixes, and the firmware version inside the CSAF
//!   product's version or range. A CSAF product named without any version covers all of its
//!   versions, as its advisory says; such matches are the least specific and yield to a
//!   versioned product of the same name (a fixed release, say).
//!
//! A version that cannot be read in the scheme never matches (it is counted, not guessed).
//! When several products of one advisory match one subject, the most specific match decides
//! the status (hash, then exact version, then range, then unversioned). VEX statements then
//! override the status they speak for.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::cpe::Cpe;
use crate::cvss::Cvss;
use crate::enrich::Enrichment;
use crate::inventory::Device;
use crate::model::{
    Advisory, AdvisorySource, Component, FindingStatus, Product, ProductStatus, Remediation, Sbom, VersionSpec,
    VexStatement,
};
use crate::purl::Purl;
use crate::vers::{OsvMatcher, VersRange, osv_fixed_versions};
use crate::version::{Scheme, compare};

/// Which rule matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchRule {
    Hash,
    Purl,
    Cpe,
    /// Inventory manufacturer + model against a CSAF vendor + product name.
    DeviceModel,
    /// Inventory model against a CSAF model number.
    ModelNumber,
    /// Inventory model against a CSAF SKU.
    Sku,
    /// SBOM component supplier + name against a CSAF vendor + product name.
    SupplierName,
}

impl MatchRule {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hash => "hash",
            Self::Purl => "purl",
            Self::Cpe => "cpe",
            Self::DeviceModel => "device_model",
            Self::ModelNumber => "model_number",
            Self::Sku => "sku",
            Self::SupplierName => "supplier_name",
        }
    }
}

/// How precisely a product matched: higher wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Specificity {
    /// The product names no version: all versions.
    Unversioned,
    /// The version is inside a range.
    Range,
    /// The version equals the product's version.
    Exact,
    /// The artifact's digest equals the product's.
    Hash,
}

/// Why a finding exists: which rule matched which field of the subject against which field
/// of the advisory, and how the version was checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    pub rule: MatchRule,
    pub specificity: Specificity,
    /// `device.model`, `component.purl`, ...
    pub subject_field: String,
    pub subject_value: String,
    /// `product_tree: <product id>` or `affected[i].package`.
    pub advisory_field: String,
    pub advisory_value: String,
    /// E.g. `"9.33 within vers:generic/<9.34 (generic)"`.
    pub version_check: String,
}

/// The component a finding is about, when it came from an SBOM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentRef {
    pub id: String,
    pub name: String,
    pub version: Option<String>,
    pub purl: Option<String>,
    /// From the SBOM's root down to this component, by component ids.
    pub path: Vec<String>,
}

/// A CVSS score as used for a finding.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CvssScore {
    pub version: String,
    pub vector: String,
    pub base_score: f64,
    pub severity: String,
    /// Attack vector network (AV:N).
    pub network: bool,
}

/// One vulnerability of one advisory, for one device or component.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub device: Option<String>,
    pub component: Option<ComponentRef>,
    pub advisory: String,
    pub advisory_revision: String,
    pub source: AdvisorySource,
    pub vulnerability: String,
    pub cves: Vec<String>,
    pub aliases: Vec<String>,
    pub title: Option<String>,
    pub status: FindingStatus,
    /// Why not affected (VEX justification or CSAF flag), when it is not.
    pub justification: Option<String>,
    /// The VEX document or advisory that set the status, when VEX overrode the match.
    pub vex_source: Option<String>,
    pub cvss: Option<CvssScore>,
    pub epss: Option<f64>,
    pub kev: bool,
    pub fixed_versions: Vec<String>,
    pub remediations: Vec<Remediation>,
    pub provenance: Provenance,
}

impl Finding {
    /// Stable identity of the finding across scans.
    pub fn key(&self) -> String {
        format!(
            "{}|{}|{}|{}",
            self.device.as_deref().unwrap_or("-"),
            self.component.as_ref().map_or("-", |c| c.id.as_str()),
            self.advisory,
            self.vulnerability
        )
    }
}

/// How a product's version is checked, parsed once when the index is built.
#[derive(Debug, Clone)]
enum Compiled {
    Unversioned,
    Exact { scheme: Scheme, version: String },
    Range { range: VersRange, text: String },
    Osv { scheme: Scheme, matcher: Box<OsvMatcher> },
    Never,
}

/// A (advisory, product) pair.
type Slot = (u32, u32);
/// (vendor, product or model number) → products, with the rule that indexed them.
type NameIndex = HashMap<(String, String), Vec<(u32, u32, MatchRule)>>;

/// Every current advisory, indexed for matching. Build once, match many.
pub struct AdvisoryIndex {
    advisories: Vec<Advisory>,
    compiled: Vec<Vec<Compiled>>,
    /// For each advisory, product index → (vulnerability index, status).
    status: Vec<Vec<Vec<(u32, ProductStatus)>>>,
    by_purl: HashMap<String, Vec<Slot>>,
    by_cpe: HashMap<String, Vec<(u32, u32, Cpe)>>,
    by_hash: HashMap<String, Vec<Slot>>,
    by_name: NameIndex,
    /// Per advisory and vulnerability: CVE ids and parsed scores, computed once (a finding
    /// copies them rather than parsing vectors again).
    vulns: Vec<Vec<Prepared>>,
    /// Per advisory and product: the fixed versions its OSV ranges name.
    fixed: Vec<Vec<Vec<String>>>,
    /// Per advisory and product: the version a purl helper pins it to.
    pinned: Vec<Vec<Option<(Scheme, String)>>>,
    /// Products whose version text could not be read, for reporting.
    pub unreadable_versions: usize,
    cache: ComponentCache,
}

/// What every finding of one vulnerability shares.
struct Prepared {
    cves: Vec<String>,
    /// (products the score applies to, empty: all; the score).
    scores: Vec<(Vec<String>, CvssScore)>,
}

impl Prepared {
    fn new(advisory: &Advisory, vulnerability: &crate::model::Vulnerability) -> Prepared {
        let mut cves: Vec<String> = vulnerability.cve.iter().cloned().collect();
        for alias in vulnerability.aliases.iter().chain(&advisory.aliases) {
            if alias.starts_with("CVE-") && !cves.contains(alias) {
                cves.push(alias.clone());
            }
        }
        let scores = vulnerability
            .scores
            .iter()
            .filter_map(|s| {
                let parsed = Cvss::parse(&s.vector).ok()?;
                let score = CvssScore {
                    version: parsed.version().to_owned(),
                    vector: s.vector.clone(),
                    base_score: s.base_score.unwrap_or_else(|| parsed.base_score()),
                    severity: parsed.severity().as_str().to_owned(),
                    network: parsed.attack_vector_network(),
                };
                Some((s.products.clone(), score))
            })
            .collect();
        Prepared { cves, scores }
    }

    /// Newest CVSS version, then the highest score, among the scores for this product.
    fn best_score(&self, product: &str) -> Option<CvssScore> {
        self.scores
            .iter()
            .filter(|(products, _)| products.is_empty() || products.iter().any(|p| p == product))
            .map(|(_, score)| score)
            .max_by(|x, y| x.version.cmp(&y.version).then(x.base_score.total_cmp(&y.base_score)))
            .cloned()
    }
}

impl AdvisoryIndex {
    pub fn new(advisories: Vec<Advisory>) -> AdvisoryIndex {
        let mut index = AdvisoryIndex {
            advisories: Vec::new(),
            compiled: Vec::new(),
            status: Vec::new(),
            by_purl: HashMap::new(),
            by_cpe: HashMap::new(),
            by_hash: HashMap::new(),
            by_name: HashMap::new(),
            vulns: Vec::new(),
            fixed: Vec::new(),
            pinned: Vec::new(),
            unreadable_versions: 0,
            cache: ComponentCache::new(),
        };
        for (a, advisory) in advisories.iter().enumerate() {
            let a = a as u32;
            let mut ids: HashMap<&str, u32> = HashMap::new();
            let mut compiled = Vec::with_capacity(advisory.products.len());
            for (p, product) in advisory.products.iter().enumerate() {
                let p = p as u32;
                ids.insert(product.id.as_str(), p);
                let c = compile(product);
                if matches!(c, Compiled::Never) {
                    index.unreadable_versions += 1;
                }
                compiled.push(c);
                index.add_product(a, p, product);
            }
            let mut status = vec![Vec::new(); advisory.products.len()];
            for (v, vulnerability) in advisory.vulnerabilities.iter().enumerate() {
                for entry in &vulnerability.product_status {
                    if let Some(slot) = ids.get(entry.product_id.as_str()).and_then(|p| status.get_mut(*p as usize)) {
                        slot.push((v as u32, entry.status));
                    }
                }
            }
            index.compiled.push(compiled);
            index.status.push(status);
            index.vulns.push(advisory.vulnerabilities.iter().map(|v| Prepared::new(advisory, v)).collect());
            index.pinned.push(
                advisory
                    .products
                    .iter()
                    .map(|product| {
                        product.purls.iter().filter_map(|p| Purl::parse(p).ok()).find_map(|p| {
                            let scheme = Scheme::from_purl_type(&p.ty);
                            p.version.map(|v| (scheme, v))
                        })
                    })
                    .collect(),
            );
            index.fixed.push(
                advisory
                    .products
                    .iter()
                    .map(|p| match &p.version {
                        VersionSpec::Osv { ranges, .. } => osv_fixed_versions(ranges),
                        _ => Vec::new(),
                    })
                    .collect(),
            );
        }
        index.advisories = advisories;
        index
    }

    fn add_product(&mut self, a: u32, p: u32, product: &Product) {
        for purl in &product.purls {
            if let Ok(parsed) = Purl::parse(purl) {
                self.by_purl.entry(parsed.package_key()).or_default().push((a, p));
            }
        }
        for cpe in &product.cpes {
            if let Ok(parsed) = Cpe::parse(cpe) {
                self.by_cpe.entry(parsed.vendor_product_key()).or_default().push((a, p, parsed));
            }
        }
        for hash in &product.hashes {
            self.by_hash.entry(hash.to_ascii_lowercase()).or_default().push((a, p));
        }
        let vendor = product.vendor.as_deref().map(normalise_vendor).unwrap_or_default();
        if vendor.is_empty() {
            return;
        }
        if let Some(name) = product.product.as_deref().map(normalise_name).filter(|n| !n.is_empty()) {
            self.by_name.entry((vendor.clone(), name)).or_default().push((a, p, MatchRule::DeviceModel));
        }
        for (values, rule) in [(&product.model_numbers, MatchRule::ModelNumber), (&product.skus, MatchRule::Sku)] {
            for value in values {
                let key = normalise_name(value);
                if !key.is_empty() {
                    self.by_name.entry((vendor.clone(), key)).or_default().push((a, p, rule));
                }
            }
        }
    }

    pub fn advisories(&self) -> &[Advisory] {
        &self.advisories
    }

    /// Findings for a device from its manufacturer, model and version (CSAF product trees).
    pub fn match_device(&self, device: &Device, enrichment: &Enrichment) -> Vec<Finding> {
        let key = (normalise_vendor(&device.manufacturer), normalise_name(&device.model));
        let mut best = Best::default();
        if let Some(slots) = self.by_name.get(&key) {
            for &(a, p, rule) in slots {
                let Some((specificity, check)) = self.check_version(a, p, device.version.as_deref(), None) else {
                    continue;
                };
                let (field, value) = match rule {
                    MatchRule::ModelNumber | MatchRule::Sku => ("device.model", device.model.clone()),
                    _ => ("device.manufacturer+model", format!("{} {}", device.manufacturer, device.model)),
                };
                self.consider(&mut best, a, p, rule, specificity, field, &value, check);
            }
        }
        let mut out = Vec::new();
        self.finish(&best.seal(), Some(&device.id), None, enrichment, &mut out);
        out
    }

    /// Findings for every component of an SBOM, attributed to `device` when given.
    pub fn match_sbom(&self, device: Option<&str>, sbom: &Sbom, enrichment: &Enrichment) -> Vec<Finding> {
        let prepared = PreparedSbom::new(sbom);
        self.match_prepared(device, &prepared, enrichment)
    }

    /// Findings for an SBOM prepared once (the server and the bench keep these).
    pub fn match_prepared(&self, device: Option<&str>, sbom: &PreparedSbom, enrichment: &Enrichment) -> Vec<Finding> {
        let mut findings = Vec::new();
        for component in &sbom.components {
            if !self.may_match(component) {
                continue;
            }
            let best = self.cache.get_or_match(&component.cache_key, || self.match_component(component).seal());
            if best.winners.is_empty() {
                continue;
            }
            let reference = ComponentRef {
                id: component.id.clone(),
                name: component.name.clone(),
                version: component.version.clone(),
                purl: component.purl_text.clone(),
                path: sbom.path(&component.id),
            };
            self.finish(&best, device, Some(reference), enrichment, &mut findings);
        }
        apply_vex(&mut findings, &sbom.vex);
        findings
    }

    /// Whether any index holds a candidate for the component (most components of a fleet
    /// have none: no need to remember them).
    fn may_match(&self, component: &PreparedComponent) -> bool {
        component.hashes.iter().any(|h| self.by_hash.contains_key(h))
            || component.purl.as_ref().is_some_and(|(key, _)| self.by_purl.contains_key(key))
            || component.cpe.as_ref().is_some_and(|cpe| self.by_cpe.contains_key(&cpe.vendor_product_key()))
            || component
                .supplier_key
                .as_ref()
                .is_some_and(|supplier| self.by_name.contains_key(&(supplier.clone(), normalise_name(&component.name))))
    }

    fn match_component(&self, component: &PreparedComponent) -> Best {
        let mut best = Best::default();
        let version = component.version.as_deref();
        for hash in &component.hashes {
            for &(a, p) in self.by_hash.get(hash).map(Vec::as_slice).unwrap_or_default() {
                let check = format!("digest {hash}");
                self.consider(&mut best, a, p, MatchRule::Hash, Specificity::Hash, "component.hashes", hash, check);
            }
        }
        if let Some((key, scheme)) = &component.purl {
            for &(a, p) in self.by_purl.get(key).map(Vec::as_slice).unwrap_or_default() {
                let Some((specificity, check)) = self.check_version(a, p, version, Some(*scheme)) else { continue };
                let value = component.purl_text.as_deref().unwrap_or_default();
                self.consider(&mut best, a, p, MatchRule::Purl, specificity, "component.purl", value, check);
            }
        }
        if let Some(cpe) = &component.cpe {
            let cpe_version =
                (!cpe.version_is_any()).then(|| cpe.version.clone()).or_else(|| component.version.clone());
            for (a, p, product_cpe) in self.by_cpe.get(&cpe.vendor_product_key()).map(Vec::as_slice).unwrap_or_default()
            {
                let Some(version) = cpe_version.as_deref() else { continue };
                let checked = if product_cpe.version_is_any() {
                    // Only the advisory's own version range may widen a CPE: never a bare `*`.
                    self.check_version(*a, *p, Some(version), None)
                        .filter(|(specificity, _)| *specificity != Specificity::Unversioned)
                } else {
                    same_version(Scheme::Generic, version, &product_cpe.version)
                        .then(|| (Specificity::Exact, format!("{version} = {} (cpe version)", product_cpe.version)))
                };
                let Some((specificity, check)) = checked else { continue };
                let value = component.cpe_text.as_deref().unwrap_or_default();
                self.consider(&mut best, *a, *p, MatchRule::Cpe, specificity, "component.cpe", value, check);
            }
        }
        if let Some(supplier) = &component.supplier_key {
            let key = (supplier.clone(), normalise_name(&component.name));
            for &(a, p, rule) in self.by_name.get(&key).map(Vec::as_slice).unwrap_or_default() {
                if rule != MatchRule::DeviceModel {
                    continue;
                }
                let Some((specificity, check)) = self.check_version(a, p, version, None) else { continue };
                if specificity == Specificity::Unversioned {
                    // A library name without a version range is too loose to trust.
                    continue;
                }
                let value = format!("{} {}", component.supplier.as_deref().unwrap_or_default(), component.name);
                self.consider(
                    &mut best,
                    a,
                    p,
                    MatchRule::SupplierName,
                    specificity,
                    "component.supplier+name",
                    &value,
                    check,
                );
            }
        }
        best
    }

    /// Is `version` one the product stands for? Returns how specifically, and the check in words.
    fn check_version(
        &self,
        a: u32,
        p: u32,
        version: Option<&str>,
        scheme_hint: Option<Scheme>,
    ) -> Option<(Specificity, String)> {
        let compiled = self.compiled.get(a as usize)?.get(p as usize)?;
        // A purl helper with a version pins the product to that version.
        if let Some((scheme, pinned)) =
            self.pinned.get(a as usize).and_then(|list| list.get(p as usize)).and_then(Option::as_ref)
        {
            let version = version?;
            return same_version(*scheme, version, pinned)
                .then(|| (Specificity::Exact, format!("{version} = {pinned} ({})", scheme.as_str())));
        }
        match compiled {
            Compiled::Unversioned => Some((
                Specificity::Unversioned,
                "the advisory names the product without a version: all versions".into(),
            )),
            Compiled::Exact { scheme, version: wanted } => {
                let version = version?;
                let scheme = scheme_hint.unwrap_or(*scheme);
                same_version(scheme, version, wanted)
                    .then(|| (Specificity::Exact, format!("{version} = {wanted} ({})", scheme.as_str())))
            }
            Compiled::Range { range, text } => {
                let version = version?;
                range
                    .contains(version)
                    .filter(|inside| *inside)
                    .map(|_| (Specificity::Range, format!("{version} within {text} ({})", range.scheme.as_str())))
            }
            Compiled::Osv { scheme, matcher } => {
                let version = version?;
                matcher
                    .contains(version)
                    .filter(|inside| *inside)
                    .map(|_| (Specificity::Range, format!("{version} within the OSV ranges ({})", scheme.as_str())))
            }
            Compiled::Never => None,
        }
    }

    /// Record that product `p` of advisory `a` matched; each of its vulnerabilities keeps the
    /// best match so far. The provenance is written once per match, not per vulnerability.
    #[allow(clippy::too_many_arguments)]
    fn consider(
        &self,
        best: &mut Best,
        a: u32,
        p: u32,
        rule: MatchRule,
        specificity: Specificity,
        subject_field: &'static str,
        subject_value: &str,
        version_check: String,
    ) {
        let Some(statuses) = self.status.get(a as usize).and_then(|s| s.get(p as usize)) else { return };
        if statuses.is_empty() {
            return;
        }
        let matched = best.matched.len();
        best.matched.push(Matched {
            product: p,
            rule,
            specificity,
            subject_field,
            subject_value: cap(subject_value),
            version_check,
        });
        for &(v, status) in statuses {
            let candidate = Candidate { matched, status, rule, specificity };
            match best.winners.get_mut(&(a, v)) {
                Some(current) if !candidate.beats(current) => {}
                Some(current) => *current = candidate,
                None => {
                    best.winners.insert((a, v), candidate);
                }
            }
        }
    }

    fn finish(
        &self,
        best: &Sealed,
        device: Option<&str>,
        component: Option<ComponentRef>,
        enrichment: &Enrichment,
        out: &mut Vec<Finding>,
    ) {
        out.reserve(best.winners.len());
        for &((a, v), ref candidate) in &best.winners {
            let Some(matched) = best.matched.get(candidate.matched) else { continue };
            let Some(advisory) = self.advisories.get(a as usize) else { continue };
            let Some(vulnerability) = advisory.vulnerabilities.get(v as usize) else { continue };
            let Some(product) = advisory.products.get(matched.product as usize) else { continue };
            let Some(prepared) = self.vulns.get(a as usize).and_then(|v_| v_.get(v as usize)) else { continue };
            let cves = prepared.cves.clone();
            let applies = |products: &[String]| products.is_empty() || products.contains(&product.id);
            let cvss = prepared.best_score(&product.id);
            let epss = cves.iter().filter_map(|c| enrichment.epss(c)).map(|e| e.score).reduce(f64::max);
            let kev = cves.iter().any(|c| enrichment.kev(c).is_some());
            let remediations: Vec<Remediation> =
                vulnerability.remediations.iter().filter(|r| applies(&r.products)).cloned().collect();
            let mut fixed_versions: Vec<String> =
                remediations.iter().flat_map(|r| r.fixed_versions.iter().cloned()).collect();
            let osv_fixed = self.fixed.get(a as usize).and_then(|f| f.get(matched.product as usize));
            for fixed in osv_fixed.map(Vec::as_slice).unwrap_or_default() {
                if !fixed_versions.contains(fixed) {
                    fixed_versions.push(fixed.clone());
                }
            }
            let status = candidate.status.finding_status();
            let justification = (status == FindingStatus::NotAffected)
                .then(|| vulnerability.justifications.iter().find(|j| applies(&j.products)).map(|j| j.label.clone()))
                .flatten();
            out.push(Finding {
                device: device.map(str::to_owned),
                component: component.clone(),
                advisory: advisory.id.clone(),
                advisory_revision: advisory.revision.clone(),
                source: advisory.source,
                vulnerability: vulnerability.id.clone(),
                cves,
                aliases: vulnerability.aliases.clone(),
                title: vulnerability.title.clone().or_else(|| Some(advisory.title.clone())),
                status,
                justification,
                vex_source: advisory.is_vex.then(|| advisory.id.clone()),
                cvss,
                epss,
                kev,
                fixed_versions,
                remediations,
                provenance: Provenance {
                    rule: matched.rule,
                    specificity: matched.specificity,
                    subject_field: matched.subject_field.to_owned(),
                    subject_value: matched.subject_value.clone(),
                    advisory_field: format!("product {}", cap(&product.id)),
                    advisory_value: cap(&product.name),
                    version_check: matched.version_check.clone(),
                },
            });
        }
    }
}

/// The best candidate per (advisory, vulnerability) for one subject.
#[derive(Default)]
struct Best {
    /// Every product that matched, with why.
    matched: Vec<Matched>,
    winners: HashMap<(u32, u32), Candidate>,
}

impl Best {
    /// The winners in (advisory, vulnerability) order, ready to share.
    fn seal(self) -> Sealed {
        let mut winners: Vec<_> = self.winners.into_iter().collect();
        winners.sort_by_key(|((a, v), _)| (*a, *v));
        Sealed { matched: self.matched, winners }
    }
}

/// What matched one subject, in (advisory, vulnerability) order.
struct Sealed {
    matched: Vec<Matched>,
    winners: Vec<((u32, u32), Candidate)>,
}

/// Shards of the component cache (fleet scans run on several threads).
const CACHE_SHARDS: usize = 16;
/// Component identities remembered per shard; a full shard starts again.
const CACHE_SHARD_ENTRIES: usize = 1 << 16;

/// What each component identity (purl, version, CPE, hashes, supplier and name) matched, kept
/// for the index's life. A fleet repeats the same components on every device of a model and
/// version: matched once, the rest is a lookup. The index never changes, so an entry is never
/// stale.
struct ComponentCache {
    shards: Vec<std::sync::Mutex<HashMap<String, std::sync::Arc<Sealed>>>>,
}

impl ComponentCache {
    fn new() -> ComponentCache {
        ComponentCache { shards: (0..CACHE_SHARDS).map(|_| std::sync::Mutex::new(HashMap::new())).collect() }
    }

    fn get_or_match(&self, key: &str, compute: impl FnOnce() -> Sealed) -> std::sync::Arc<Sealed> {
        let shard = self.shards.get(shard_of(key)).or_else(|| self.shards.first());
        let Some(shard) = shard else { return std::sync::Arc::new(compute()) };
        if let Some(hit) = shard.lock().ok().and_then(|map| map.get(key).cloned()) {
            return hit;
        }
        // Matched outside the lock; two threads may both match a new identity, which is harmless.
        let sealed = std::sync::Arc::new(compute());
        if let Ok(mut map) = shard.lock() {
            if map.len() >= CACHE_SHARD_ENTRIES {
                map.clear();
            }
            map.insert(key.to_owned(), sealed.clone());
        }
        sealed
    }
}

/// A cheap, stable shard for a key (FNV-1a over its bytes).
fn shard_of(key: &str) -> usize {
    let mut h: u32 = 0x811c_9dc5;
    for b in key.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    h as usize % CACHE_SHARDS
}

/// One product matched by one rule: the provenance's parts.
struct Matched {
    product: u32,
    rule: MatchRule,
    specificity: Specificity,
    subject_field: &'static str,
    subject_value: String,
    version_check: String,
}

struct Candidate {
    /// Index into [`Best::matched`].
    matched: usize,
    status: ProductStatus,
    rule: MatchRule,
    specificity: Specificity,
}

impl Candidate {
    /// More specific wins; at equal specificity the more cautious status wins (affected over
    /// under investigation over fixed over not affected), then the stronger rule.
    fn beats(&self, other: &Candidate) -> bool {
        let caution = |s: ProductStatus| match s.finding_status() {
            FindingStatus::Affected => 3,
            FindingStatus::UnderInvestigation => 2,
            FindingStatus::Fixed => 1,
            FindingStatus::NotAffected => 0,
        };
        let rank = |r: MatchRule| match r {
            MatchRule::Hash => 6,
            MatchRule::Purl => 5,
            MatchRule::Cpe => 4,
            MatchRule::DeviceModel => 3,
            MatchRule::ModelNumber => 2,
            MatchRule::Sku => 1,
            MatchRule::SupplierName => 0,
        };
        (self.specificity, caution(self.status), rank(self.rule))
            > (other.specificity, caution(other.status), rank(other.rule))
    }
}

fn compile(product: &Product) -> Compiled {
    match &product.version {
        VersionSpec::Unspecified => Compiled::Unversioned,
        VersionSpec::Exact { version } => Compiled::Exact { scheme: Scheme::Generic, version: version.clone() },
        VersionSpec::Vers { vers, text } => match VersRange::parse(vers) {
            Ok(range) => Compiled::Range { range, text: if text.is_empty() { vers.clone() } else { text.clone() } },
            Err(_) => Compiled::Never,
        },
        VersionSpec::Osv { ranges, versions } => {
            let ecosystem = ranges.iter().find_map(|r| r.ecosystem.as_deref()).or(product.vendor.as_deref());
            let scheme = ecosystem.map_or(Scheme::Generic, Scheme::from_osv_ecosystem);
            Compiled::Osv { scheme, matcher: Box::new(OsvMatcher::new(ranges, versions, scheme)) }
        }
        VersionSpec::Unparsed { .. } => Compiled::Never,
    }
}

/// Equal in the scheme; where the scheme cannot read either, equal as trimmed text
/// (ignoring case and a leading `v`).
fn same_version(scheme: Scheme, a: &str, b: &str) -> bool {
    match compare(scheme, a, b) {
        Some(order) => order.is_eq(),
        None => {
            let strip = |s: &str| s.trim().trim_start_matches(['v', 'V']).to_ascii_lowercase();
            strip(a) == strip(b)
        }
    }
}

/// Apply VEX statements: a statement about a finding's vulnerability (or one of its CVEs or
/// aliases) and its component (bom-ref, purl or CPE) sets the finding's status.
pub fn apply_vex(findings: &mut [Finding], statements: &[VexStatement]) {
    if statements.is_empty() {
        return;
    }
    for finding in findings.iter_mut() {
        let ids: Vec<&str> = std::iter::once(finding.vulnerability.as_str())
            .chain(finding.cves.iter().map(String::as_str))
            .chain(finding.aliases.iter().map(String::as_str))
            .collect();
        let Some(component) = &finding.component else { continue };
        let statement = statements.iter().find(|s| {
            let names_vuln =
                ids.contains(&s.vulnerability.as_str()) || s.aliases.iter().any(|a| ids.contains(&a.as_str()));
            names_vuln && vex_names_component(&s.product, component) && vex_names_version(&s.versions, component)
        });
        if let Some(statement) = statement {
            finding.status = statement.status;
            finding.justification = statement.justification.clone().or_else(|| statement.detail.clone());
            finding.vex_source = Some(statement.source.clone());
        }
    }
}

fn vex_names_component(product: &str, component: &ComponentRef) -> bool {
    // CycloneDX VEX without `affects` speaks for any product.
    if product == "*" {
        return true;
    }
    // `urn:cdx:<serial>/<version>#<bom-ref>` names a bom-ref inside another document.
    let reference = product.rsplit_once('#').map_or(product, |(_, r)| r);
    if reference == component.id || product == component.id {
        return true;
    }
    match (&component.purl, Purl::parse(product)) {
        (Some(purl), Ok(wanted)) => Purl::parse(purl).is_ok_and(|have| {
            have.package_key() == wanted.package_key() && (wanted.version.is_none() || wanted.version == have.version)
        }),
        _ => false,
    }
}

/// Does a statement limited to `versions` (exact or `vers:` ranges) speak for the component's
/// version? An empty list speaks for every version; an unknown component version for none.
fn vex_names_version(versions: &[String], component: &ComponentRef) -> bool {
    if versions.is_empty() {
        return true;
    }
    let Some(version) = component.version.as_deref() else { return false };
    let scheme = component
        .purl
        .as_deref()
        .and_then(|p| Purl::parse(p).ok())
        .map_or(Scheme::Generic, |p| Scheme::from_purl_type(&p.ty));
    versions.iter().any(|v| match VersRange::parse(v) {
        Ok(range) => range.contains(version) == Some(true),
        Err(_) => same_version(scheme, version, v),
    })
}

/// An SBOM with its purls, CPEs and supplier names parsed once.
pub struct PreparedSbom {
    pub components: Vec<PreparedComponent>,
    pub vex: Vec<VexStatement>,
    root: Option<String>,
    /// component id → the ids that contain or depend on it.
    parents: HashMap<String, Vec<String>>,
}

pub struct PreparedComponent {
    pub id: String,
    pub name: String,
    pub version: Option<String>,
    pub supplier: Option<String>,
    purl: Option<(String, Scheme)>,
    purl_text: Option<String>,
    cpe: Option<Cpe>,
    cpe_text: Option<String>,
    hashes: Vec<String>,
    supplier_key: Option<String>,
    /// Everything matching reads, joined: equal keys match the same advisories.
    cache_key: String,
}

impl PreparedComponent {
    pub fn new(component: &Component) -> PreparedComponent {
        let purl = component.purl.as_deref().and_then(|p| Purl::parse(p).ok());
        let version = component.version.clone().or_else(|| purl.as_ref().and_then(|p| p.version.clone()));
        let cache_key = [
            component.purl.as_deref().unwrap_or_default(),
            version.as_deref().unwrap_or_default(),
            component.cpe.as_deref().unwrap_or_default(),
            component.supplier.as_deref().unwrap_or_default(),
            &component.name,
            &component.hashes.join(","),
        ]
        .join("\u{1f}");
        PreparedComponent {
            cache_key,
            id: component.id.clone(),
            name: component.name.clone(),
            version,
            supplier: component.supplier.clone(),
            purl: purl.map(|p| (p.package_key(), Scheme::from_purl_type(&p.ty))),
            purl_text: component.purl.clone(),
            cpe: component.cpe.as_deref().and_then(|c| Cpe::parse(c).ok()),
            cpe_text: component.cpe.clone(),
            hashes: component.hashes.iter().map(|h| h.to_ascii_lowercase()).collect(),
            supplier_key: component.supplier.as_deref().map(normalise_vendor).filter(|s| !s.is_empty()),
        }
    }
}

impl PreparedSbom {
    pub fn new(sbom: &Sbom) -> PreparedSbom {
        let mut parents: HashMap<String, Vec<String>> = HashMap::new();
        for relationship in &sbom.relationships {
            if matches!(relationship.kind.as_str(), "depends_on" | "contains") {
                parents.entry(relationship.to.clone()).or_default().push(relationship.from.clone());
            }
        }
        PreparedSbom {
            components: sbom.components.iter().map(PreparedComponent::new).collect(),
            vex: sbom.vex.clone(),
            root: sbom.root.clone(),
            parents,
        }
    }

    /// Root → … → `id`, following parents breadth-first (bounded).
    pub fn path(&self, id: &str) -> Vec<String> {
        let Some(root) = &self.root else { return vec![id.to_owned()] };
        let mut came_from: HashMap<&str, &str> = HashMap::new();
        let mut queue = std::collections::VecDeque::from([id]);
        let mut found = false;
        while let Some(node) = queue.pop_front() {
            if node == root.as_str() {
                found = true;
                break;
            }
            if came_from.len() > 10_000 {
                break;
            }
            for parent in self.parents.get(node).map(Vec::as_slice).unwrap_or_default() {
                if parent != id && !came_from.contains_key(parent.as_str()) {
                    came_from.insert(parent, node);
                    queue.push_back(parent);
                }
            }
        }
        if !found {
            return vec![id.to_owned()];
        }
        let mut path = vec![root.clone()];
        let mut node = root.as_str();
        while let Some(next) = came_from.get(node) {
            path.push((*next).to_owned());
            node = next;
            if path.len() > 64 {
                break;
            }
        }
        path
    }
}

const SUFFIXES: &[&str] = &[
    "inc",
    "incorporated",
    "corp",
    "corporation",
    "co",
    "company",
    "ltd",
    "limited",
    "llc",
    "gmbh",
    "ag",
    "sa",
    "plc",
    "kg",
    "bv",
    "nv",
    "oy",
    "ab",
    "as",
    "spa",
    "srl",
    "kk",
    "pty",
    "se",
];

/// Lowercase words of a manufacturer name without punctuation and company-form suffixes:
/// `"Becton, Dickinson and Company"` → `"becton dickinson and"`, `"BD Inc."` → `"bd"`.
pub fn normalise_vendor(text: &str) -> String {
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let mut end = words.len();
    while end > 1 && words.get(end - 1).is_some_and(|w| SUFFIXES.contains(&w.as_str())) {
        end -= 1;
    }
    words.get(..end).unwrap_or_default().join(" ")
}

/// Lowercase words of a product or model name without punctuation.
pub fn normalise_name(text: &str) -> String {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect::<Vec<_>>()
        .join(" ")
}

fn cap(text: &str) -> String {
    if text.chars().count() <= 160 { text.to_owned() } else { text.chars().take(160).chain(['…']).collect() }
}
