//! `devices`: matching a hospital's fleet against every shared advisory (issue 8's target:
//! 10,000 devices holding 1,000,000 SBOM components matched in ≤ 2 s on 2 cores).
//!
//! How:
//! - **load**: every CSAF document under `cisa-csaf/{icsma,icsa-sample,it-va}` and every OSV
//!   advisory under `osv/rustsec-osv/crates` and `osv/pypa-advisory-database/vulns`, read and
//!   parsed with `AdvisorySet::load` (CSAF documents pass the 6.1 mandatory tests, `.sha512`
//!   files beside them are verified);
//! - **index**: `Scanner::new` builds the purl, CPE, hash and name indexes;
//! - **fleet** (untimed, seeded ChaCha8): each device gets 100 components, half drawn from
//!   the cargo and PyPI package names in the OSV advisories — at a vulnerable version (an
//!   `introduced` or `last_affected` event, or the newest listed affected version) or at the
//!   newest version any advisory of the package names as fixed, one or the other at random —
//!   and half filler packages that match nothing (`pkg:npm/filler-N`); its manufacturer,
//!   model and version come from a CSAF product (exact versions, and range bounds, so both
//!   sides of a range occur);
//! - **prepare**: `PreparedSbom::new` for every device (purls parsed once, as the server
//!   keeps them);
//! - **match**: `Scanner::scan_device` (device-level CSAF matching, then every component,
//!   then VEX) for every device, the fleet split in two halves on 2 threads
//!   (`std::thread::scope`), findings counted by status and dropped device by device;
//!   `components_per_s` is components over that time.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, bail};
use caduceus_devices::enrich::Enrichment;
use caduceus_devices::inventory::Device;
use caduceus_devices::matching::{Finding, PreparedSbom};
use caduceus_devices::model::{
    Advisory, AdvisorySource, Component, FindingStatus, OsvEvent, Sbom, SbomFormat, VersionSpec,
};
use caduceus_devices::scan::{AdvisorySet, Scanner};
use caduceus_devices::version::{Scheme, compare};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::util::{self, round};

/// Sizes of one run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub devices: usize,
    pub components_per_device: usize,
    /// Matching threads (the target is for 2 cores).
    pub threads: usize,
    pub seed: u64,
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        Self { quick, devices: if quick { 1_000 } else { 10_000 }, components_per_device: 100, threads: 2, seed: 8 }
    }
}

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(rel)
}

const ADVISORY_DIRS: [&str; 5] = [
    "cisa-csaf/icsma",
    "cisa-csaf/icsa-sample",
    "cisa-csaf/it-va",
    "osv/rustsec-osv/crates",
    "osv/pypa-advisory-database/vulns",
];

/// A package an OSV advisory names, with versions inside and outside its ranges.
struct Package {
    purl: String,
    vulnerable: Vec<String>,
    fixed: Vec<String>,
}

/// A CSAF product as an inventory entry.
struct Model {
    manufacturer: String,
    model: String,
    version: Option<String>,
}

fn packages(advisories: &[Advisory]) -> Vec<Package> {
    // Per package: the versions its advisories name as introduced or last affected (and the
    // newest listed affected version), and the newest version any of them names as fixed,
    // which none of them (usually) covers.
    let mut by_purl: HashMap<String, (Vec<String>, Option<String>)> = HashMap::new();
    for advisory in advisories.iter().filter(|a| a.source == AdvisorySource::Osv) {
        for product in &advisory.products {
            let Some(purl) = product.purls.iter().find(|p| p.starts_with("pkg:cargo/") || p.starts_with("pkg:pypi/"))
            else {
                continue;
            };
            let base = purl.split('@').next().unwrap_or(purl).to_owned();
            let scheme = if base.starts_with("pkg:cargo/") { Scheme::Semver } else { Scheme::Pep440 };
            let VersionSpec::Osv { ranges, versions } = &product.version else { continue };
            let entry = by_purl.entry(base).or_default();
            entry.0.extend(versions.last().cloned());
            for event in ranges.iter().flat_map(|r| r.events.iter()) {
                match event {
                    OsvEvent::Introduced(v) if v != "0" => entry.0.push(v.clone()),
                    OsvEvent::LastAffected(v) => entry.0.push(v.clone()),
                    OsvEvent::Fixed(v) => {
                        let newer = entry
                            .1
                            .as_deref()
                            .is_none_or(|current| compare(scheme, v, current) == Some(std::cmp::Ordering::Greater));
                        if newer && compare(scheme, v, v).is_some() {
                            entry.1 = Some(v.clone());
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    let mut out: Vec<Package> = by_purl
        .into_iter()
        .filter(|(_, (vulnerable, fixed))| !vulnerable.is_empty() || fixed.is_some())
        .map(|(purl, (mut vulnerable, fixed))| {
            vulnerable.sort();
            vulnerable.dedup();
            Package { purl, vulnerable, fixed: fixed.into_iter().collect() }
        })
        .collect();
    // HashMap order is not stable: sort, so the seeded draw is.
    out.sort_by(|a, b| a.purl.cmp(&b.purl));
    out
}

/// A version inside a `vers:` range text: the first bound (`<=9.33` → `9.33`).
fn bound_of(vers: &str) -> Option<String> {
    let constraints = vers.split_once('/')?.1;
    let first = constraints.split('|').next()?;
    let version = first.trim_start_matches(['<', '>', '=', '!']).trim();
    (!version.is_empty() && version != "*").then(|| version.to_owned())
}

fn models(advisories: &[Advisory]) -> Vec<Model> {
    let mut out = Vec::new();
    for advisory in advisories.iter().filter(|a| a.source == AdvisorySource::Csaf) {
        for product in &advisory.products {
            let (Some(vendor), Some(name)) = (&product.vendor, &product.product) else { continue };
            let version = match &product.version {
                VersionSpec::Exact { version } => Some(version.clone()),
                VersionSpec::Vers { vers, .. } => bound_of(vers),
                VersionSpec::Unspecified => None,
                _ => continue,
            };
            out.push(Model { manufacturer: vendor.clone(), model: name.clone(), version });
        }
    }
    out
}

/// The fleet: devices and their SBOMs (seeded, so every run matches the same fleet).
fn fleet(plan: &Plan, packages: &[Package], models: &[Model]) -> Vec<(Device, Sbom)> {
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let mut out = Vec::with_capacity(plan.devices);
    for d in 0..plan.devices {
        let model = if models.is_empty() { None } else { models.get(rng.random_range(0..models.len())) };
        let device = Device {
            id: format!("dev-{d:05}"),
            manufacturer: model.map_or_else(|| "Filler Medical".to_owned(), |m| m.manufacturer.clone()),
            model: model.map_or_else(|| format!("Pump {d}"), |m| m.model.clone()),
            version: model.and_then(|m| m.version.clone()),
            ..Device::default()
        };
        let mut components = Vec::with_capacity(plan.components_per_device);
        for c in 0..plan.components_per_device {
            // Half from the advisories' packages, half filler.
            let package = if packages.is_empty() || rng.random_bool(0.5) {
                None
            } else {
                packages.get(rng.random_range(0..packages.len()))
            };
            let (purl, name, version) = match package {
                Some(p) => {
                    let pool = if p.fixed.is_empty() || (!p.vulnerable.is_empty() && rng.random_bool(0.5)) {
                        &p.vulnerable
                    } else {
                        &p.fixed
                    };
                    let version = pool.get(rng.random_range(0..pool.len().max(1))).cloned().unwrap_or_default();
                    let name = p.purl.rsplit('/').next().unwrap_or_default().to_owned();
                    (format!("{}@{version}", p.purl), name, version)
                }
                None => {
                    let n = rng.random_range(0..50_000u32);
                    let version = format!("{}.{}.{}", n % 7, n % 13, n % 5);
                    (format!("pkg:npm/filler-{n}@{version}"), format!("filler-{n}"), version)
                }
            };
            components.push(Component {
                id: format!("c{c}"),
                name,
                version: Some(version),
                purl: Some(purl),
                kind: Some("library".into()),
                ..Component::default()
            });
        }
        let sbom = Sbom {
            format: SbomFormat::CycloneDx,
            spec_version: "1.6".into(),
            serial: None,
            root: None,
            name: Some(device.id.clone()),
            authors: Vec::new(),
            timestamp: None,
            components,
            relationships: Vec::new(),
            vex: Vec::new(),
        };
        out.push((device, sbom));
    }
    out
}

/// Findings counted by status (kept per thread, then merged).
#[derive(Debug, Default)]
struct Tally {
    total: usize,
    affected: usize,
    under_investigation: usize,
    fixed: usize,
    not_affected: usize,
    /// Inventory (manufacturer/model/version) matches, not component ones.
    device_level: usize,
    devices_with_findings: usize,
    most_on_one_device: usize,
}

impl Tally {
    fn add(&mut self, findings: &[Finding]) {
        self.total += findings.len();
        for f in findings {
            match f.status {
                FindingStatus::Affected => self.affected += 1,
                FindingStatus::UnderInvestigation => self.under_investigation += 1,
                FindingStatus::Fixed => self.fixed += 1,
                FindingStatus::NotAffected => self.not_affected += 1,
            }
        }
        self.device_level += findings.iter().filter(|f| f.component.is_none()).count();
        self.devices_with_findings += usize::from(!findings.is_empty());
        self.most_on_one_device = self.most_on_one_device.max(findings.len());
    }

    fn merge(&mut self, other: &Tally) {
        self.total += other.total;
        self.affected += other.affected;
        self.under_investigation += other.under_investigation;
        self.fixed += other.fixed;
        self.not_affected += other.not_affected;
        self.device_level += other.device_level;
        self.devices_with_findings += other.devices_with_findings;
        self.most_on_one_device = self.most_on_one_device.max(other.most_on_one_device);
    }
}

/// Run the benchmark; one JSON object.
pub fn run(plan: &Plan) -> anyhow::Result<Value> {
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    util::progress(format!(
        "devices benchmark ({}): {} devices × {} components, {cores} cores",
        if plan.quick { "quick" } else { "full" },
        plan.devices,
        plan.components_per_device
    ));
    let started = Instant::now();
    let mut set = AdvisorySet::default();
    for dir in ADVISORY_DIRS {
        let path = shared(dir);
        if !path.is_dir() {
            bail!("{} is missing: the shared data must be beside the repository", path.display());
        }
        set.load(&path).with_context(|| format!("loading {}", path.display()))?;
        util::progress(format!("loaded {dir}: {} advisories so far, {} errors", set.len(), set.errors.len()));
    }
    let (files, load_errors, hashes_verified) = (set.files, set.errors.len(), set.hashes_verified);
    let advisories = set.into_advisories();
    let load_s = started.elapsed().as_secs_f64();
    let csaf = advisories.iter().filter(|a| a.source == AdvisorySource::Csaf).count();
    let osv = advisories.len() - csaf;
    let products: usize = advisories.iter().map(|a| a.products.len()).sum();
    let packages = packages(&advisories);
    let models = models(&advisories);
    util::progress(format!(
        "{} advisories ({csaf} CSAF, {osv} OSV), {products} products in {load_s:.1} s; {} packages, {} device models",
        advisories.len(),
        packages.len(),
        models.len()
    ));

    let started = Instant::now();
    let scanner = Scanner::new(advisories, Enrichment::new(), Vec::new());
    let index_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let fleet = fleet(plan, &packages, &models);
    let generate_s = started.elapsed().as_secs_f64();
    let components: usize = fleet.iter().map(|(_, s)| s.components.len()).sum();

    let started = Instant::now();
    let prepared: Vec<(Device, PreparedSbom)> = fleet.into_iter().map(|(d, s)| (d, PreparedSbom::new(&s))).collect();
    let prepare_s = started.elapsed().as_secs_f64();
    util::progress(format!("index {index_s:.2} s, fleet {generate_s:.2} s, prepare {prepare_s:.2} s; matching"));

    let started = Instant::now();
    let chunk = prepared.len().div_ceil(plan.threads.max(1)).max(1);
    // Findings are counted and dropped as each device is done (a fleet's findings do not
    // all fit in memory at once: old versions of popular packages match dozens each).
    let tallies: Vec<Tally> = std::thread::scope(|scope| {
        let handles: Vec<_> = prepared
            .chunks(chunk)
            .map(|part| {
                let scanner = &scanner;
                scope.spawn(move || {
                    let mut tally = Tally::default();
                    for (device, sbom) in part {
                        tally.add(&scanner.scan_device(device, Some(sbom)));
                    }
                    tally
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });
    let match_s = started.elapsed().as_secs_f64();
    let mut tally = Tally::default();
    for t in &tallies {
        tally.merge(t);
    }
    util::progress(format!("matched {components} components in {match_s:.3} s: {} findings", tally.total));
    Ok(json!({
        "benchmark": "devices",
        "quick": plan.quick,
        "machine": { "cores": cores, "os": std::env::consts::OS, "arch": std::env::consts::ARCH },
        "advisories": { "total": csaf + osv, "csaf": csaf, "osv": osv, "files": files,
            "load_errors": load_errors, "hashes_verified": hashes_verified,
            "unreadable_versions": scanner.index.unreadable_versions },
        "products": products,
        "package_pool": packages.len(),
        "device_models": models.len(),
        "devices": prepared.len(),
        "components": components,
        "threads": plan.threads,
        "findings": {
            "total": tally.total,
            "affected": tally.affected,
            "under_investigation": tally.under_investigation,
            "fixed": tally.fixed,
            "not_affected": tally.not_affected,
            "device_level": tally.device_level,
            "devices_with_findings": tally.devices_with_findings,
            "most_on_one_device": tally.most_on_one_device,
        },
        "seconds": {
            "load_parse": round(load_s, 3),
            "index": round(index_s, 3),
            "fleet_generation": round(generate_s, 3),
            "sbom_prepare": round(prepare_s, 3),
            "match": round(match_s, 3),
        },
        "components_per_s": round(util::rate(components as u64, std::time::Duration::from_secs_f64(match_s)), 0),
        "target_match_s": 2.0,
        "target_met": match_s <= 2.0,
    }))
}
