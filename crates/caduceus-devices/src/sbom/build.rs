//! Accumulates components, relationships and VEX statements for every reader, enforcing the
//! count caps and giving ids to components that have none.

use std::collections::HashSet;

use super::{MAX_COMPONENTS, MAX_RELATIONSHIPS, MAX_VEX, Parsed, perr};
use crate::Result;
use crate::model::{Component, FindingStatus, Relationship, Sbom, SbomFormat, VexStatement};

pub(crate) struct Builder {
    format: &'static str,
    pub(crate) sbom: Sbom,
    pub(crate) vex_versions: Vec<Vec<String>>,
    pub(crate) skipped_files: usize,
    ids: HashSet<String>,
    edges: HashSet<(String, String, String)>,
}

impl Builder {
    pub(crate) fn new(format: &'static str, family: SbomFormat, spec_version: String) -> Self {
        Self {
            format,
            sbom: Sbom {
                format: family,
                spec_version,
                serial: None,
                root: None,
                name: None,
                authors: Vec::new(),
                timestamp: None,
                components: Vec::new(),
                relationships: Vec::new(),
                vex: Vec::new(),
            },
            vex_versions: Vec::new(),
            skipped_files: 0,
            ids: HashSet::new(),
            edges: HashSet::new(),
        }
    }

    /// Add a component; an empty id gets `component-<n>`. A second component with an id
    /// already seen is dropped (ids must be unique; its nested components are still read).
    /// Returns the component's id.
    pub(crate) fn component(&mut self, mut c: Component) -> Result<String> {
        if c.id.is_empty() {
            let mut n = self.sbom.components.len() + 1;
            while self.ids.contains(&format!("component-{n}")) {
                n += 1;
            }
            c.id = format!("component-{n}");
        }
        if self.ids.contains(&c.id) {
            return Ok(c.id);
        }
        if self.sbom.components.len() >= MAX_COMPONENTS {
            return Err(perr(self.format, format!("more than {MAX_COMPONENTS} components")));
        }
        self.ids.insert(c.id.clone());
        let id = c.id.clone();
        self.sbom.components.push(c);
        Ok(id)
    }

    /// Add a relationship once (duplicates are dropped); empty ends are ignored.
    pub(crate) fn relationship(&mut self, from: &str, to: &str, kind: &str) -> Result<()> {
        let (from, to) = (from.trim(), to.trim());
        if from.is_empty() || to.is_empty() || kind.is_empty() {
            return Ok(());
        }
        let key = (from.to_string(), to.to_string(), kind.to_string());
        if self.edges.contains(&key) {
            return Ok(());
        }
        if self.sbom.relationships.len() >= MAX_RELATIONSHIPS {
            return Err(perr(self.format, format!("more than {MAX_RELATIONSHIPS} relationships")));
        }
        self.sbom.relationships.push(Relationship { from: key.0.clone(), to: key.1.clone(), kind: key.2.clone() });
        self.edges.insert(key);
        Ok(())
    }

    pub(crate) fn vex(&mut self, statement: VexStatement, versions: Vec<String>) -> Result<()> {
        if self.sbom.vex.len() >= MAX_VEX {
            return Err(perr(self.format, format!("more than {MAX_VEX} VEX statements")));
        }
        self.sbom.vex.push(statement);
        self.vex_versions.push(versions);
        Ok(())
    }

    pub(crate) fn finish(self) -> Parsed {
        Parsed { sbom: self.sbom, vex_versions: self.vex_versions, skipped_files: self.skipped_files }
    }
}

/// A CycloneDX vulnerability as read from JSON or XML, before it becomes statements.
#[derive(Debug, Default)]
pub(crate) struct RawVuln {
    pub(crate) id: Option<String>,
    pub(crate) aliases: Vec<String>,
    pub(crate) state: Option<String>,
    pub(crate) justification: Option<String>,
    pub(crate) responses: Vec<String>,
    pub(crate) detail: Option<String>,
    pub(crate) affects: Vec<RawAffect>,
}

#[derive(Debug, Default)]
pub(crate) struct RawAffect {
    pub(crate) reference: String,
    /// (version or range, status as given)
    pub(crate) versions: Vec<(String, Option<String>)>,
}

/// CycloneDX `analysis.state` as a finding status.
pub(crate) fn state_status(state: &str) -> Option<FindingStatus> {
    match state.trim() {
        "not_affected" | "false_positive" => Some(FindingStatus::NotAffected),
        "resolved" | "resolved_with_pedigree" => Some(FindingStatus::Fixed),
        "exploitable" => Some(FindingStatus::Affected),
        "in_triage" => Some(FindingStatus::UnderInvestigation),
        _ => None,
    }
}

/// CycloneDX `affects[].versions[].status` (default `affected`) as a finding status.
fn version_status(status: Option<&str>) -> FindingStatus {
    match status.map(str::trim) {
        Some("unaffected") => FindingStatus::NotAffected,
        Some("unknown") => FindingStatus::UnderInvestigation,
        _ => FindingStatus::Affected,
    }
}

/// The product of a statement whose vulnerability names no `affects`: the document says it
/// holds for every product the VEX is applied to.
pub(crate) const ANY_PRODUCT: &str = "*";

impl Builder {
    /// Turn one CycloneDX vulnerability into statements: one per affected ref, or per ref
    /// and status when there is no `analysis.state` and the versions carry statuses.
    /// `analysis.state`, when present and known, decides the status of every affected ref;
    /// without it, each `versions[].status` does (default `affected`), and a ref without
    /// versions is affected.
    pub(crate) fn cyclonedx_vuln(&mut self, v: RawVuln, source: &str) -> Result<()> {
        let Some(id) = v.id else { return Ok(()) };
        let state = v.state.as_deref().and_then(state_status);
        let mut aliases: Vec<String> = Vec::new();
        for a in v.aliases {
            if a != id && !aliases.contains(&a) {
                aliases.push(a);
            }
        }
        let affects = if v.affects.is_empty() {
            vec![RawAffect { reference: ANY_PRODUCT.to_string(), versions: Vec::new() }]
        } else {
            v.affects
        };
        for affect in affects {
            // (status, versions) groups in first-seen order.
            let mut groups: Vec<(FindingStatus, Vec<String>)> = Vec::new();
            match state {
                Some(s) => groups.push((s, affect.versions.iter().map(|(v, _)| v.clone()).collect())),
                None if affect.versions.is_empty() => groups.push((FindingStatus::Affected, Vec::new())),
                None => {
                    for (ver, status) in &affect.versions {
                        let s = version_status(status.as_deref());
                        match groups.iter_mut().find(|(g, _)| *g == s) {
                            Some((_, list)) => list.push(ver.clone()),
                            None => groups.push((s, vec![ver.clone()])),
                        }
                    }
                }
            }
            for (status, versions) in groups {
                let mut detail_lines: Vec<String> = Vec::new();
                if let Some(d) = &v.detail {
                    detail_lines.push(d.clone());
                }
                if !v.responses.is_empty() {
                    detail_lines.push(format!("response: {}", v.responses.join(", ")));
                }
                if !versions.is_empty() {
                    detail_lines.push(format!("versions: {}", versions.join(", ")));
                }
                let statement = VexStatement {
                    vulnerability: id.clone(),
                    aliases: aliases.clone(),
                    product: affect.reference.clone(),
                    status,
                    justification: v.justification.clone(),
                    detail: (!detail_lines.is_empty()).then(|| detail_lines.join("\n")),
                    source: source.to_string(),
                    versions: versions.clone(),
                };
                self.vex(statement, versions)?;
            }
        }
        Ok(())
    }
}
