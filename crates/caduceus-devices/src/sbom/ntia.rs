//! NTIA minimum elements of an SBOM ("The Minimum Elements For a Software Bill of
//! Materials", NTIA, July 2021), and which are missing.
//!
//! Per document: author of the SBOM data (CycloneDX `metadata.authors` or `tools`, SPDX
//! `creators`), timestamp, and at least one relationship. Per component: supplier name,
//! component name, version, another unique identifier (purl, CPE or a hash; SWID tags are
//! not kept by the model and so do not count), and a relationship (the component is an end
//! of at least one relationship).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::model::Sbom;

/// One NTIA minimum element of a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NtiaElement {
    Supplier,
    Name,
    Version,
    UniqueId,
    Relationship,
}

/// Document-level gaps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocumentGaps {
    pub missing_author: bool,
    pub missing_timestamp: bool,
    pub missing_relationships: bool,
}

/// How many components lack each element.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapCounts {
    pub supplier: usize,
    pub name: usize,
    pub version: usize,
    pub unique_id: usize,
    pub relationship: usize,
}

/// One component that lacks something.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentGaps {
    pub id: String,
    pub name: String,
    pub missing: Vec<NtiaElement>,
}

/// The NTIA minimum-element gaps of one SBOM.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NtiaReport {
    /// Components checked.
    pub components: usize,
    pub document: DocumentGaps,
    pub counts: GapCounts,
    /// Only components with at least one gap, in document order.
    pub component_gaps: Vec<ComponentGaps>,
}

impl NtiaReport {
    /// No document-level and no component-level gap.
    pub fn is_complete(&self) -> bool {
        self.document == DocumentGaps::default() && self.component_gaps.is_empty()
    }

    /// Components that have every element.
    pub fn complete_components(&self) -> usize {
        self.components.saturating_sub(self.component_gaps.len())
    }
}

/// Check an SBOM against the NTIA minimum elements.
pub fn ntia_gaps(sbom: &Sbom) -> NtiaReport {
    let related: HashSet<&str> = sbom.relationships.iter().flat_map(|r| [r.from.as_str(), r.to.as_str()]).collect();
    let mut report = NtiaReport {
        components: sbom.components.len(),
        document: DocumentGaps {
            missing_author: sbom.authors.iter().all(|a| a.trim().is_empty()),
            missing_timestamp: sbom.timestamp.as_deref().is_none_or(|t| t.trim().is_empty()),
            missing_relationships: sbom.relationships.is_empty(),
        },
        ..NtiaReport::default()
    };
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|s| s.trim().is_empty());
    for c in &sbom.components {
        let mut missing = Vec::new();
        if blank(&c.supplier) {
            missing.push(NtiaElement::Supplier);
            report.counts.supplier += 1;
        }
        if c.name.trim().is_empty() {
            missing.push(NtiaElement::Name);
            report.counts.name += 1;
        }
        if blank(&c.version) {
            missing.push(NtiaElement::Version);
            report.counts.version += 1;
        }
        if blank(&c.purl) && blank(&c.cpe) && c.hashes.is_empty() {
            missing.push(NtiaElement::UniqueId);
            report.counts.unique_id += 1;
        }
        if !related.contains(c.id.as_str()) {
            missing.push(NtiaElement::Relationship);
            report.counts.relationship += 1;
        }
        if !missing.is_empty() {
            report.component_gaps.push(ComponentGaps { id: c.id.clone(), name: c.name.clone(), missing });
        }
    }
    report
}
