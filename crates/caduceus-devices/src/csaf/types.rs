//! Serde shapes for the parts of a CSAF 2.0 document this crate reads.
//!
//! Every field the schema makes optional is optional or defaulted here, categories are kept
//! as strings (the validator checks the enumerations), and unknown fields are ignored so
//! that CSAF 2.1 documents and vendor extensions still load.

use serde::{Deserialize, Serialize};

/// A whole CSAF document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CsafDocument {
    pub document: DocumentMeta,
    #[serde(default)]
    pub product_tree: Option<ProductTree>,
    #[serde(default)]
    pub vulnerabilities: Vec<Vulnerability>,
}

/// `/document`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocumentMeta {
    pub category: String,
    pub csaf_version: String,
    pub publisher: Publisher,
    pub title: String,
    pub tracking: Tracking,
    #[serde(default)]
    pub lang: Option<String>,
    #[serde(default)]
    pub source_lang: Option<String>,
    #[serde(default)]
    pub distribution: Option<Distribution>,
    #[serde(default)]
    pub aggregate_severity: Option<AggregateSeverity>,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(default)]
    pub references: Vec<Reference>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Publisher {
    pub category: String,
    pub name: String,
    pub namespace: String,
    #[serde(default)]
    pub contact_details: Option<String>,
    #[serde(default)]
    pub issuing_authority: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tracking {
    pub id: String,
    pub version: String,
    pub status: String,
    pub current_release_date: String,
    pub initial_release_date: String,
    #[serde(default)]
    pub revision_history: Vec<Revision>,
    #[serde(default)]
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Revision {
    pub number: String,
    pub date: String,
    pub summary: String,
    #[serde(default)]
    pub legacy_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub tlp: Option<Tlp>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tlp {
    pub label: String,
    #[serde(default)]
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AggregateSeverity {
    pub text: String,
    #[serde(default)]
    pub namespace: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub category: String,
    pub text: String,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub audience: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    pub url: String,
    pub summary: String,
    #[serde(default)]
    pub category: Option<String>,
}

/// `/product_tree`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProductTree {
    #[serde(default)]
    pub branches: Vec<Branch>,
    #[serde(default)]
    pub full_product_names: Vec<FullProductName>,
    #[serde(default)]
    pub relationships: Vec<Relationship>,
    #[serde(default)]
    pub product_groups: Vec<ProductGroup>,
}

/// One branch: a vendor, product family, product name, version... with either sub-branches
/// or, at a leaf, the product it defines.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    pub category: String,
    pub name: String,
    #[serde(default)]
    pub branches: Vec<Branch>,
    #[serde(default)]
    pub product: Option<FullProductName>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FullProductName {
    pub name: String,
    pub product_id: String,
    #[serde(default)]
    pub product_identification_helper: Option<IdentificationHelper>,
}

/// `product_identification_helper` (CSAF 2.0 `purl`, CSAF 2.1 `purls`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct IdentificationHelper {
    #[serde(default)]
    pub cpe: Option<String>,
    #[serde(default)]
    pub purl: Option<String>,
    #[serde(default)]
    pub purls: Vec<String>,
    #[serde(default)]
    pub hashes: Vec<HashSet>,
    #[serde(default)]
    pub model_numbers: Vec<String>,
    #[serde(default)]
    pub sbom_urls: Vec<String>,
    #[serde(default)]
    pub serial_numbers: Vec<String>,
    #[serde(default)]
    pub skus: Vec<String>,
}

/// Hashes of one file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HashSet {
    pub filename: String,
    #[serde(default)]
    pub file_hashes: Vec<FileHash>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileHash {
    pub algorithm: String,
    pub value: String,
}

/// A relationship defines a new product: `product_reference` as `category` of
/// `relates_to_product_reference`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Relationship {
    pub category: String,
    pub full_product_name: FullProductName,
    pub product_reference: String,
    pub relates_to_product_reference: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductGroup {
    pub group_id: String,
    #[serde(default)]
    pub product_ids: Vec<String>,
    #[serde(default)]
    pub summary: Option<String>,
}

/// One `/vulnerabilities[]` item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Vulnerability {
    #[serde(default)]
    pub cve: Option<String>,
    #[serde(default)]
    pub ids: Vec<VulnerabilityId>,
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub notes: Vec<Note>,
    #[serde(default)]
    pub cwe: Option<Cwe>,
    /// CSAF 2.1.
    #[serde(default)]
    pub cwes: Vec<Cwe>,
    #[serde(default)]
    pub discovery_date: Option<String>,
    #[serde(default)]
    pub release_date: Option<String>,
    #[serde(default)]
    pub product_status: Option<ProductStatusLists>,
    #[serde(default)]
    pub scores: Vec<ScoreSet>,
    /// CSAF 2.1 replacement of `scores`.
    #[serde(default)]
    pub metrics: Vec<Metric>,
    #[serde(default)]
    pub remediations: Vec<Remediation>,
    #[serde(default)]
    pub flags: Vec<Flag>,
    #[serde(default)]
    pub threats: Vec<Threat>,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub involvements: Vec<Involvement>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VulnerabilityId {
    pub system_name: String,
    pub text: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cwe {
    pub id: String,
    pub name: String,
}

/// The eight product status lists.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ProductStatusLists {
    #[serde(default)]
    pub first_affected: Vec<String>,
    #[serde(default)]
    pub first_fixed: Vec<String>,
    #[serde(default)]
    pub fixed: Vec<String>,
    #[serde(default)]
    pub known_affected: Vec<String>,
    #[serde(default)]
    pub known_not_affected: Vec<String>,
    #[serde(default)]
    pub last_affected: Vec<String>,
    #[serde(default)]
    pub recommended: Vec<String>,
    #[serde(default)]
    pub under_investigation: Vec<String>,
}

/// One `scores[]` item: CVSS objects for some products.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScoreSet {
    #[serde(default)]
    pub products: Vec<String>,
    #[serde(default)]
    pub cvss_v2: Option<Cvss>,
    #[serde(default)]
    pub cvss_v3: Option<Cvss>,
    #[serde(default)]
    pub cvss_v4: Option<Cvss>,
}

/// CSAF 2.1 `metrics[]` item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Metric {
    #[serde(default)]
    pub products: Vec<String>,
    #[serde(default)]
    pub content: ScoreSet,
}

/// The parts of a CVSS JSON object used here (the validator reads the rest as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cvss {
    #[serde(default)]
    pub version: Option<String>,
    #[serde(rename = "vectorString")]
    pub vector_string: String,
    #[serde(rename = "baseScore", default)]
    pub base_score: Option<f64>,
    #[serde(rename = "baseSeverity", default)]
    pub base_severity: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Remediation {
    pub category: String,
    pub details: String,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub product_ids: Vec<String>,
    #[serde(default)]
    pub group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    pub label: String,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub product_ids: Vec<String>,
    #[serde(default)]
    pub group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Threat {
    pub category: String,
    pub details: String,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub product_ids: Vec<String>,
    #[serde(default)]
    pub group_ids: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Involvement {
    pub party: String,
    pub status: String,
    #[serde(default)]
    pub date: Option<String>,
    #[serde(default)]
    pub summary: Option<String>,
}
