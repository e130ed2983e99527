//! CVSS 2.0 (FIRST, "A Complete Guide to the Common Vulnerability Scoring System Version 2.0",
//! section 3.2 equations and section 3.3 weights).

use super::{MetricDef, any_defined, parse_metrics, value_of, vector_error, write_metrics};
use crate::Result;

const DEFS: &[MetricDef] = &[
    MetricDef { name: "AV", values: &["L", "A", "N"], mandatory: true },
    MetricDef { name: "AC", values: &["H", "M", "L"], mandatory: true },
    MetricDef { name: "Au", values: &["M", "S", "N"], mandatory: true },
    MetricDef { name: "C", values: &["N", "P", "C"], mandatory: true },
    MetricDef { name: "I", values: &["N", "P", "C"], mandatory: true },
    MetricDef { name: "A", values: &["N", "P", "C"], mandatory: true },
    // Temporal.
    MetricDef { name: "E", values: &["U", "POC", "F", "H", "ND"], mandatory: false },
    MetricDef { name: "RL", values: &["OF", "TF", "W", "U", "ND"], mandatory: false },
    MetricDef { name: "RC", values: &["UC", "UR", "C", "ND"], mandatory: false },
    // Environmental.
    MetricDef { name: "CDP", values: &["N", "L", "LM", "MH", "H", "ND"], mandatory: false },
    MetricDef { name: "TD", values: &["N", "L", "M", "H", "ND"], mandatory: false },
    MetricDef { name: "CR", values: &["L", "M", "H", "ND"], mandatory: false },
    MetricDef { name: "IR", values: &["L", "M", "H", "ND"], mandatory: false },
    MetricDef { name: "AR", values: &["L", "M", "H", "ND"], mandatory: false },
];
const TEMPORAL: usize = 6;
const ENVIRONMENTAL: usize = 9;

/// A parsed CVSS 2.0 vector.
#[derive(Debug, Clone, PartialEq)]
pub struct V2 {
    values: Vec<Option<&'static str>>,
}

impl V2 {
    pub(super) fn parse_vector(v: &str) -> Result<V2> {
        let mut body = v;
        if let Some(inner) = body.strip_prefix('(') {
            body = inner.strip_suffix(')').ok_or_else(|| vector_error(v, "unbalanced parenthesis"))?;
        }
        body = body.strip_prefix("CVSS2#").or_else(|| body.strip_prefix("CVSS:2.0/")).unwrap_or(body);
        let values = parse_metrics(body, DEFS, false, v)?;
        Ok(V2 { values })
    }

    fn get(&self, name: &str) -> &'static str {
        value_of(DEFS, &self.values, name)
    }

    pub(super) fn attack_vector_network(&self) -> bool {
        self.get("AV") == "N"
    }

    pub(super) fn vector(&self) -> String {
        let mut out = String::new();
        write_metrics(&mut out, DEFS, &self.values);
        out
    }

    fn impact_weight(v: &str) -> f64 {
        match v {
            "P" => 0.275,
            "C" => 0.660,
            _ => 0.0,
        }
    }

    fn exploitability(&self) -> f64 {
        let av = match self.get("AV") {
            "L" => 0.395,
            "A" => 0.646,
            _ => 1.0,
        };
        let ac = match self.get("AC") {
            "H" => 0.35,
            "M" => 0.61,
            _ => 0.71,
        };
        let au = match self.get("Au") {
            "M" => 0.45,
            "S" => 0.56,
            _ => 0.704,
        };
        20.0 * av * ac * au
    }

    fn base_equation(impact: f64, exploitability: f64) -> f64 {
        let f = if impact == 0.0 { 0.0 } else { 1.176 };
        round1(((0.6 * impact) + (0.4 * exploitability) - 1.5) * f)
    }

    /// BaseScore = round_to_1_decimal(((0.6*Impact)+(0.4*Exploitability)-1.5)*f(Impact)).
    pub fn base_score(&self) -> f64 {
        let c = Self::impact_weight(self.get("C"));
        let i = Self::impact_weight(self.get("I"));
        let a = Self::impact_weight(self.get("A"));
        let impact = 10.41 * (1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a));
        Self::base_equation(impact, self.exploitability())
    }

    fn temporal_factor(&self) -> f64 {
        let e = match self.get("E") {
            "U" => 0.85,
            "POC" => 0.9,
            "F" => 0.95,
            _ => 1.0,
        };
        let rl = match self.get("RL") {
            "OF" => 0.87,
            "TF" => 0.90,
            "W" => 0.95,
            _ => 1.0,
        };
        let rc = match self.get("RC") {
            "UC" => 0.90,
            "UR" => 0.95,
            _ => 1.0,
        };
        e * rl * rc
    }

    /// TemporalScore = round_to_1_decimal(BaseScore*Exploitability*RemediationLevel*ReportConfidence),
    /// when a temporal metric is given.
    pub fn temporal_score(&self) -> Option<f64> {
        any_defined(&self.values, TEMPORAL, ENVIRONMENTAL).then(|| round1(self.base_score() * self.temporal_factor()))
    }

    /// The environmental score (guide section 3.2.3), when an environmental metric is given.
    pub fn environmental_score(&self) -> Option<f64> {
        if !any_defined(&self.values, ENVIRONMENTAL, DEFS.len()) {
            return None;
        }
        let req = |name: &str| match self.get(name) {
            "L" => 0.5,
            "H" => 1.51,
            _ => 1.0,
        };
        let c = Self::impact_weight(self.get("C")) * req("CR");
        let i = Self::impact_weight(self.get("I")) * req("IR");
        let a = Self::impact_weight(self.get("A")) * req("AR");
        let adjusted_impact = (10.41 * (1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a))).min(10.0);
        let adjusted_base = Self::base_equation(adjusted_impact, self.exploitability());
        let adjusted_temporal = round1(adjusted_base * self.temporal_factor());
        let cdp = match self.get("CDP") {
            "L" => 0.1,
            "LM" => 0.3,
            "MH" => 0.4,
            "H" => 0.5,
            _ => 0.0,
        };
        let td = match self.get("TD") {
            "N" => 0.0,
            "L" => 0.25,
            "M" => 0.75,
            _ => 1.0,
        };
        Some(round1((adjusted_temporal + (10.0 - adjusted_temporal) * cdp) * td))
    }
}

/// Round to one decimal, halves up. The small nudge keeps products such as 6.85 (stored as
/// 6.8499999...) rounding the way the guide's decimal arithmetic does.
fn round1(x: f64) -> f64 {
    ((x * 10.0) + 1e-9).round() / 10.0
}
