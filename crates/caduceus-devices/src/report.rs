//! Findings as a table for people, JSON for programs, SARIF 2.1.0 for code-scanning tools.

use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use crate::matching::{Finding, MatchRule};
use crate::model::FindingStatus;

/// One finding as `--format json` prints it (an array of these).
#[derive(Debug, Clone, Serialize)]
pub struct FindingJson<'a> {
    /// The device's inventory id (null when an SBOM was scanned on its own).
    pub id: Option<&'a str>,
    pub advisory: &'a str,
    pub advisory_revision: &'a str,
    pub vulnerability: &'a str,
    pub cves: &'a [String],
    pub aliases: &'a [String],
    pub status: &'static str,
    pub justification: Option<&'a str>,
    pub component: Option<&'a crate::matching::ComponentRef>,
    pub title: Option<&'a str>,
    pub cvss: Option<&'a crate::matching::CvssScore>,
    pub epss: Option<f64>,
    pub kev: bool,
    pub fixed_versions: &'a [String],
    pub remediations: &'a [crate::model::Remediation],
    pub rule: &'static str,
    pub provenance: &'a crate::matching::Provenance,
    pub vex_source: Option<&'a str>,
}

impl<'a> From<&'a Finding> for FindingJson<'a> {
    fn from(f: &'a Finding) -> Self {
        FindingJson {
            id: f.device.as_deref(),
            advisory: &f.advisory,
            advisory_revision: &f.advisory_revision,
            vulnerability: &f.vulnerability,
            cves: &f.cves,
            aliases: &f.aliases,
            status: f.status.as_str(),
            justification: f.justification.as_deref(),
            component: f.component.as_ref(),
            title: f.title.as_deref(),
            cvss: f.cvss.as_ref(),
            epss: f.epss,
            kev: f.kev,
            fixed_versions: &f.fixed_versions,
            remediations: &f.remediations,
            rule: f.provenance.rule.as_str(),
            provenance: &f.provenance,
            vex_source: f.vex_source.as_deref(),
        }
    }
}

/// Findings as a JSON array.
pub fn to_json(findings: &[Finding]) -> Value {
    Value::Array(findings.iter().filter_map(|f| serde_json::to_value(FindingJson::from(f)).ok()).collect())
}

/// Findings as an aligned text table, most severe first, with a one-line summary.
pub fn to_table(findings: &[Finding]) -> String {
    let mut rows: Vec<[String; 7]> = Vec::with_capacity(findings.len());
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by(|a, b| {
        a.status
            .cmp(&b.status)
            .then(score(b).total_cmp(&score(a)))
            .then(a.device.cmp(&b.device))
            .then(a.vulnerability.cmp(&b.vulnerability))
    });
    for f in &sorted {
        let subject = match (&f.device, &f.component) {
            (Some(d), Some(c)) => format!("{d} / {}", c.name),
            (Some(d), None) => d.clone(),
            (None, Some(c)) => c.name.clone(),
            (None, None) => "-".into(),
        };
        let version = f
            .component
            .as_ref()
            .and_then(|c| c.version.clone())
            .unwrap_or_else(|| f.provenance.version_check.split_whitespace().next().unwrap_or("-").to_owned());
        let severity = f.cvss.as_ref().map_or("-".to_owned(), |c| format!("{:.1} {}", c.base_score, c.severity));
        let mut status = f.status.as_str().to_owned();
        if f.kev {
            status.push_str(" KEV");
        }
        rows.push([
            subject,
            version,
            f.advisory.clone(),
            f.vulnerability.clone(),
            severity,
            status,
            rule(f.provenance.rule),
        ]);
    }
    let header = ["DEVICE/COMPONENT", "VERSION", "ADVISORY", "VULNERABILITY", "CVSS", "STATUS", "MATCHED BY"];
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count()).min(48);
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &[String]| {
        let mut text = String::new();
        for (cell, w) in cells.iter().zip(widths) {
            let cell: String = cell.chars().take(w).collect();
            let _ = write!(text, "{cell:<w$}  ");
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(&mut out, &header.map(str::to_owned));
    for row in &rows {
        line(&mut out, row);
    }
    let count = |s: FindingStatus| findings.iter().filter(|f| f.status == s).count();
    let _ = writeln!(
        out,
        "\n{} finding(s): {} affected, {} under investigation, {} fixed, {} not affected",
        findings.len(),
        count(FindingStatus::Affected),
        count(FindingStatus::UnderInvestigation),
        count(FindingStatus::Fixed),
        count(FindingStatus::NotAffected)
    );
    out
}

fn score(f: &Finding) -> f64 {
    f.cvss.as_ref().map_or(0.0, |c| c.base_score)
}

fn rule(rule: MatchRule) -> String {
    rule.as_str().to_owned()
}

/// Findings as a SARIF 2.1.0 log. Affected and under-investigation findings are results;
/// fixed and not-affected ones are results with an external suppression carrying the VEX
/// justification, so that tools show them as reviewed rather than drop them.
pub fn to_sarif(findings: &[Finding], scanned: &str) -> Value {
    let mut rules: Vec<Value> = Vec::new();
    let mut rule_ids: Vec<&str> = Vec::new();
    for f in findings {
        if rule_ids.contains(&f.vulnerability.as_str()) {
            continue;
        }
        rule_ids.push(&f.vulnerability);
        let help = f.remediations.first().map(|r| r.details.clone()).unwrap_or_default();
        rules.push(json!({
            "id": f.vulnerability,
            "shortDescription": { "text": f.title.clone().unwrap_or_else(|| f.vulnerability.clone()) },
            "help": { "text": if help.is_empty() { format!("See advisory {}", f.advisory) } else { help } },
            "properties": {
                "security-severity": f.cvss.as_ref().map(|c| format!("{:.1}", c.base_score)),
                "tags": ["security", "vulnerability"],
            },
        }));
    }
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let level = match (f.status, f.cvss.as_ref().map(|c| c.base_score)) {
                (FindingStatus::Affected, Some(s)) if s >= 7.0 => "error",
                (FindingStatus::Affected | FindingStatus::UnderInvestigation, _) => "warning",
                _ => "note",
            };
            let subject = match (&f.device, &f.component) {
                (Some(d), Some(c)) => format!("device {d}, component {}", c.purl.as_deref().unwrap_or(&c.name)),
                (Some(d), None) => format!("device {d}"),
                (None, Some(c)) => c.purl.clone().unwrap_or_else(|| c.name.clone()),
                (None, None) => "-".into(),
            };
            let mut result = json!({
                "ruleId": f.vulnerability,
                "level": level,
                "message": { "text": format!(
                    "{subject} is {} by {} ({}): matched by {} ({} {})",
                    f.status.as_str(), f.vulnerability, f.advisory, f.provenance.rule.as_str(),
                    f.provenance.subject_field, f.provenance.version_check
                )},
                "locations": [{
                    "physicalLocation": { "artifactLocation": { "uri": scanned } },
                    "logicalLocations": [{ "name": subject, "kind": "module" }],
                }],
                "properties": {
                    "advisory": f.advisory,
                    "status": f.status.as_str(),
                    "cves": f.cves,
                    "kev": f.kev,
                    "epss": f.epss,
                    "fixedVersions": f.fixed_versions,
                },
            });
            if matches!(f.status, FindingStatus::Fixed | FindingStatus::NotAffected)
                && let Some(object) = result.as_object_mut()
            {
                object.insert(
                    "suppressions".into(),
                    json!([{ "kind": "external", "status": "accepted",
                        "justification": f.justification.clone().unwrap_or_else(|| f.status.as_str().to_owned()) }]),
                );
            }
            result
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "caduceus",
                "informationUri": "https://example.invalid/caduceus",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}
