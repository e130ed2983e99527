//! Device risk: one number from 0 to 100 and the factors that made it, in words.
//!
//! The score is meant to sort a biomedical engineer's morning list, so it is explainable
//! rather than clever (see `docs/design/devices.md`):
//!
//! 1. Each *affected* (or under-investigation, at half weight) finding gets a likelihood of
//!    harm `f = severity × exploitation`:
//!    - severity = CVSS base score / 10 (5.0 when the advisory gives no score);
//!    - exploitation = 1.0 when the CVE is in CISA's KEV catalogue, else `0.3 + 0.7 × EPSS`
//!      when an EPSS score is loaded, else 0.5.
//! 2. The findings combine as independent chances: `v = 1 − Π(1 − f)`; many medium findings
//!    add up, but never past 1.
//! 3. Clinical criticality scales it: life-sustaining 1.0, therapeutic 0.85 (and unknown,
//!    until classified), diagnostic 0.7, non-clinical 0.5.
//! 4. Network exposure: a device seen talking outside its segment keeps the full weight; one
//!    that is not (or has not been seen) is scaled by 0.75; a network-reachable (AV:N) finding
//!    on an exposed device is what drives the top of the scale.
//! 5. End of support: when it has passed, 0.15 is added (no fix will come), capped at 1.
//!
//! `score = round(100 × min(1, v × criticality × exposure + end_of_support))`.
//! Fixed and not-affected findings do not count.

use serde::{Deserialize, Serialize};

use crate::inventory::{Criticality, Device};
use crate::matching::Finding;
use crate::model::FindingStatus;

/// What the risk score knows about a device beyond its findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Context {
    /// Seen talking to a peer outside its segment.
    pub exposed: bool,
    /// Today's date, for end of support.
    pub today: (i32, u8, u8),
}

/// A device's risk with its factors.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Risk {
    /// 0 to 100.
    pub score: u32,
    /// `critical` (≥ 80), `high` (≥ 60), `medium` (≥ 30), `low` (> 0) or `none`.
    pub level: String,
    pub affected: usize,
    pub kev: usize,
    /// The combined likelihood before clinical weighting (0..1).
    pub vulnerability: f64,
    pub criticality: f64,
    pub exposure: f64,
    pub end_of_support: f64,
    /// One line per factor, for people.
    pub explanation: Vec<String>,
    /// What to do first: the remediation of the worst finding.
    pub top_finding: Option<String>,
}

/// Score one device from its findings.
pub fn score(device: &Device, findings: &[Finding], context: Context) -> Risk {
    let mut not_harmed = 1.0_f64;
    let mut affected = 0;
    let mut kev = 0;
    let mut worst: Option<(f64, &Finding)> = None;
    for finding in findings {
        let weight = match finding.status {
            FindingStatus::Affected => 1.0,
            FindingStatus::UnderInvestigation => 0.5,
            FindingStatus::Fixed | FindingStatus::NotAffected => continue,
        };
        affected += 1;
        let severity = finding.cvss.as_ref().map_or(0.5, |c| (c.base_score / 10.0).clamp(0.0, 1.0));
        let exploitation = if finding.kev {
            kev += 1;
            1.0
        } else {
            finding.epss.map_or(0.5, |e| 0.3 + 0.7 * e.clamp(0.0, 1.0))
        };
        let f = weight * severity * exploitation;
        not_harmed *= 1.0 - f;
        if worst.is_none_or(|(w, _)| f > w) {
            worst = Some((f, finding));
        }
    }
    let vulnerability = 1.0 - not_harmed;
    let criticality = match device.criticality {
        Criticality::LifeSustaining => 1.0,
        Criticality::Therapeutic | Criticality::Unknown => 0.85,
        Criticality::Diagnostic => 0.7,
        Criticality::NonClinical => 0.5,
    };
    let exposure = if context.exposed { 1.0 } else { 0.75 };
    let eos = device.out_of_support(context.today);
    let end_of_support = if eos { 0.15 } else { 0.0 };
    let raw = (vulnerability * criticality * exposure + end_of_support).min(1.0);
    let score = (raw * 100.0).round() as u32;
    let level = match score {
        80.. => "critical",
        60..=79 => "high",
        30..=59 => "medium",
        1..=29 => "low",
        0 => "none",
    };
    let mut explanation =
        vec![format!("{affected} open finding(s), {kev} in CISA KEV: combined likelihood {vulnerability:.2}")];
    explanation.push(format!("clinical criticality {}: × {criticality:.2}", device.criticality.as_str()));
    explanation.push(if context.exposed {
        "seen talking outside its network segment: × 1.00".to_owned()
    } else {
        "not seen outside its network segment: × 0.75".to_owned()
    });
    if eos {
        explanation
            .push(format!("past end of support ({}): + 0.15", device.end_of_support.as_deref().unwrap_or_default()));
    }
    let top_finding = worst.map(|(_, f)| {
        let fix = f
            .remediations
            .iter()
            .find(|r| r.category == "vendor_fix")
            .or_else(|| f.remediations.first())
            .map(|r| r.details.chars().take(200).collect::<String>());
        let fixed = (!f.fixed_versions.is_empty()).then(|| format!("fixed in {}", f.fixed_versions.join(", ")));
        let action = fixed.or(fix).unwrap_or_else(|| "no fix published: isolate and monitor".to_owned());
        format!("{} ({}): {action}", f.vulnerability, f.advisory)
    });
    Risk {
        score,
        level: level.to_owned(),
        affected,
        kev,
        vulnerability,
        criticality,
        exposure,
        end_of_support,
        explanation,
        top_finding,
    }
}
