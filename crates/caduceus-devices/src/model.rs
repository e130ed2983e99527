//! The normalised shapes every parser produces and the matcher consumes.
//!
//! CSAF and OSV documents become an [`Advisory`]; CycloneDX and SPDX documents become an
//! [`Sbom`]; VEX statements from either family become [`VexStatement`]s. Nothing here
//! parses or decides: the parsers fill these in, [`crate::matching`] reads them.

use serde::{Deserialize, Serialize};

/// Where an advisory came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdvisorySource {
    Csaf,
    Osv,
}

/// One advisory, normalised. A revised advisory has the same `id` and a later `revision`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Advisory {
    /// CSAF `document.tracking.id`, OSV `id`.
    pub id: String,
    pub source: AdvisorySource,
    /// CSAF `document.tracking.version`; OSV has none, so its `modified` time.
    pub revision: String,
    /// RFC 3339, when given.
    pub published: Option<String>,
    /// RFC 3339: CSAF `current_release_date`, OSV `modified`.
    pub modified: Option<String>,
    pub title: String,
    /// CSAF `document.publisher.name`; for OSV the database named by the id prefix, if known.
    pub publisher: Option<String>,
    /// Other ids of the whole advisory (OSV `aliases`, CSAF `document.tracking.aliases`).
    pub aliases: Vec<String>,
    /// Every product the advisory names: CSAF full product names (flattened from the
    /// product tree), OSV one per `affected[]` entry.
    pub products: Vec<Product>,
    pub vulnerabilities: Vec<Vulnerability>,
    /// Reference URLs of the whole advisory.
    pub references: Vec<String>,
    /// True for a CSAF document of category `csaf_vex`.
    pub is_vex: bool,
}

/// One product an advisory names, with everything that can identify it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Product {
    /// CSAF `product_id`; OSV: `"<ecosystem>:<name>#<index of the affected entry>"`.
    pub id: String,
    /// CSAF full product name (`vendor product version` as the tree spells it).
    pub name: String,
    /// The `vendor` branch (CSAF), or the ecosystem (OSV).
    pub vendor: Option<String>,
    /// The `product_family` branch, if any.
    pub family: Option<String>,
    /// The `product_name` branch (CSAF), or the package name (OSV).
    pub product: Option<String>,
    pub version: VersionSpec,
    /// Product identification helpers (CSAF `product_identification_helper`, OSV `package.purl`).
    pub purls: Vec<String>,
    /// CPE 2.3 formatted strings or 2.2 URIs, as given.
    pub cpes: Vec<String>,
    pub model_numbers: Vec<String>,
    pub skus: Vec<String>,
    pub serial_numbers: Vec<String>,
    /// `"<algorithm>:<lowercase hex>"`, e.g. `"sha256:ab12..."`.
    pub hashes: Vec<String>,
}

/// Which versions of a product a [`Product`] stands for.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VersionSpec {
    /// No version given anywhere (a product named without one). Never matches a version by
    /// itself: a finding needs a version to be checked, or an explicit "all versions" range.
    #[default]
    Unspecified,
    /// One version (CSAF `product_version`).
    Exact { version: String },
    /// A `vers:` range (CSAF `product_version_range`, or free text the CSAF reader could
    /// translate into one; the original text is kept in `text`).
    Vers { vers: String, text: String },
    /// OSV `ranges` and `versions` of one `affected[]` entry.
    Osv { ranges: Vec<OsvRange>, versions: Vec<String> },
    /// A range written in words that could not be understood. Never matches; reported.
    Unparsed { text: String },
}

/// One OSV range: its type and ordered events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OsvRange {
    /// `SEMVER`, `ECOSYSTEM` or `GIT`.
    pub kind: String,
    /// The ecosystem whose version rules apply (`crates.io`, `PyPI`, `Debian:12`...).
    pub ecosystem: Option<String>,
    pub events: Vec<OsvEvent>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OsvEvent {
    Introduced(String),
    Fixed(String),
    LastAffected(String),
    Limit(String),
}

/// One vulnerability of an advisory.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Vulnerability {
    /// The CVE id if there is one, else the advisory's own id for it.
    pub id: String,
    pub cve: Option<String>,
    /// Other ids (GHSA, RUSTSEC, PYSEC, CSAF `ids[]`).
    pub aliases: Vec<String>,
    pub title: Option<String>,
    /// A short summary or description, as the advisory words it.
    pub summary: Option<String>,
    pub cwes: Vec<String>,
    pub scores: Vec<Score>,
    /// Which product ids ([`Product::id`]) have which status.
    pub product_status: Vec<StatusEntry>,
    pub remediations: Vec<Remediation>,
    /// CSAF `flags` and `threats` of category `impact` that justify not_affected.
    pub justifications: Vec<Justification>,
    pub references: Vec<String>,
}

/// A CVSS vector as given, with its base score when the source gives one (the matcher
/// computes it from the vector otherwise, with [`crate::cvss`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// `"2.0"`, `"3.0"`, `"3.1"` or `"4.0"`.
    pub version: String,
    pub vector: String,
    pub base_score: Option<f64>,
    /// Product ids the score applies to; empty: all of the vulnerability's products.
    pub products: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusEntry {
    pub product_id: String,
    pub status: ProductStatus,
}

/// CSAF `product_status` categories; OSV affected entries are `KnownAffected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    FirstAffected,
    KnownAffected,
    LastAffected,
    FirstFixed,
    Fixed,
    KnownNotAffected,
    Recommended,
    UnderInvestigation,
}

impl ProductStatus {
    /// What a finding on a product with this status is.
    pub fn finding_status(self) -> FindingStatus {
        match self {
            Self::FirstAffected | Self::KnownAffected | Self::LastAffected => FindingStatus::Affected,
            Self::FirstFixed | Self::Fixed | Self::Recommended => FindingStatus::Fixed,
            Self::KnownNotAffected => FindingStatus::NotAffected,
            Self::UnderInvestigation => FindingStatus::UnderInvestigation,
        }
    }
}

/// The status of a finding, in VEX terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingStatus {
    Affected,
    UnderInvestigation,
    Fixed,
    NotAffected,
}

impl FindingStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Affected => "affected",
            Self::UnderInvestigation => "under_investigation",
            Self::Fixed => "fixed",
            Self::NotAffected => "not_affected",
        }
    }
}

/// CSAF remediation, or an OSV fixed version turned into one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remediation {
    /// CSAF category: `vendor_fix`, `mitigation`, `workaround`, `no_fix_planned`,
    /// `none_available`, `fix_planned`, `optional_patch`.
    pub category: String,
    pub details: String,
    pub url: Option<String>,
    /// Product ids it applies to; empty: all.
    pub products: Vec<String>,
    /// Versions that fix the vulnerability, when the source names them (OSV `fixed` events).
    pub fixed_versions: Vec<String>,
}

/// Why a product is not affected (CSAF flag label or impact threat text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Justification {
    /// CSAF flag label (`component_not_present`, `vulnerable_code_not_present`, ...) or
    /// `"impact"` for a threat of category impact.
    pub label: String,
    pub details: Option<String>,
    pub products: Vec<String>,
}

/// SBOM family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SbomFormat {
    CycloneDx,
    Spdx,
}

/// One SBOM, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sbom {
    pub format: SbomFormat,
    /// `"1.6"`, `"2.3"`...
    pub spec_version: String,
    /// CycloneDX `serialNumber`, SPDX `documentNamespace`.
    pub serial: Option<String>,
    /// The described product (CycloneDX `metadata.component`, SPDX `documentDescribes`).
    pub root: Option<String>,
    pub name: Option<String>,
    /// Authors of the SBOM data (CycloneDX `metadata.authors`/`tools`, SPDX `creationInfo.creators`).
    pub authors: Vec<String>,
    /// RFC 3339 creation time.
    pub timestamp: Option<String>,
    pub components: Vec<Component>,
    pub relationships: Vec<Relationship>,
    /// VEX statements carried in the SBOM (CycloneDX `vulnerabilities[].analysis`).
    pub vex: Vec<VexStatement>,
}

/// One component of an SBOM.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Component {
    /// CycloneDX `bom-ref`, SPDX `SPDXID`; generated (`"component-<n>"`) when absent.
    pub id: String,
    pub name: String,
    pub version: Option<String>,
    /// Supplier or, failing that, manufacturer/publisher/originator.
    pub supplier: Option<String>,
    pub purl: Option<String>,
    pub cpe: Option<String>,
    /// `"<algorithm>:<lowercase hex>"`.
    pub hashes: Vec<String>,
    /// CycloneDX `type` (`library`, `firmware`, `operating-system`...), SPDX `primaryPackagePurpose`.
    pub kind: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Relationship {
    pub from: String,
    pub to: String,
    /// `depends_on`, `contains`, `describes`, or the SPDX relationship type lowercased.
    pub kind: String,
}

/// One VEX statement: a vulnerability's status for one product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VexStatement {
    /// CVE or other vulnerability id.
    pub vulnerability: String,
    pub aliases: Vec<String>,
    /// Which product: a bom-ref (`urn:cdx:...#ref` or a local ref), a purl, or a CPE.
    pub product: String,
    pub status: FindingStatus,
    /// CycloneDX `analysis.justification` / CSAF flag label.
    pub justification: Option<String>,
    /// CycloneDX `analysis.detail` / `response`, CSAF threat details.
    pub detail: Option<String>,
    /// Who says so (the document's serial or advisory id).
    pub source: String,
    /// The versions of the product the statement is about (exact versions or `vers:` ranges);
    /// empty: every version.
    #[serde(default)]
    pub versions: Vec<String>,
}
