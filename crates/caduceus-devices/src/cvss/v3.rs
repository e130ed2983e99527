//! CVSS 3.0 and 3.1 (FIRST Specification Documents, section 7 "CVSS v3.x Equations" and
//! Appendix A "Floating Point Rounding" of 3.1).

use super::{MetricDef, any_defined, parse_metrics, value_of, write_metrics};
use crate::Result;

const DEFS: &[MetricDef] = &[
    MetricDef { name: "AV", values: &["N", "A", "L", "P"], mandatory: true },
    MetricDef { name: "AC", values: &["L", "H"], mandatory: true },
    MetricDef { name: "PR", values: &["N", "L", "H"], mandatory: true },
    MetricDef { name: "UI", values: &["N", "R"], mandatory: true },
    MetricDef { name: "S", values: &["U", "C"], mandatory: true },
    MetricDef { name: "C", values: &["H", "L", "N"], mandatory: true },
    MetricDef { name: "I", values: &["H", "L", "N"], mandatory: true },
    MetricDef { name: "A", values: &["H", "L", "N"], mandatory: true },
    // Temporal.
    MetricDef { name: "E", values: &["X", "H", "F", "P", "U"], mandatory: false },
    MetricDef { name: "RL", values: &["X", "U", "W", "T", "O"], mandatory: false },
    MetricDef { name: "RC", values: &["X", "C", "R", "U"], mandatory: false },
    // Environmental.
    MetricDef { name: "CR", values: &["X", "H", "M", "L"], mandatory: false },
    MetricDef { name: "IR", values: &["X", "H", "M", "L"], mandatory: false },
    MetricDef { name: "AR", values: &["X", "H", "M", "L"], mandatory: false },
    MetricDef { name: "MAV", values: &["X", "N", "A", "L", "P"], mandatory: false },
    MetricDef { name: "MAC", values: &["X", "L", "H"], mandatory: false },
    MetricDef { name: "MPR", values: &["X", "N", "L", "H"], mandatory: false },
    MetricDef { name: "MUI", values: &["X", "N", "R"], mandatory: false },
    MetricDef { name: "MS", values: &["X", "U", "C"], mandatory: false },
    MetricDef { name: "MC", values: &["X", "H", "L", "N"], mandatory: false },
    MetricDef { name: "MI", values: &["X", "H", "L", "N"], mandatory: false },
    MetricDef { name: "MA", values: &["X", "H", "L", "N"], mandatory: false },
];
const TEMPORAL: usize = 8;
const ENVIRONMENTAL: usize = 11;

/// Which 3.x: the equations differ in rounding and in the modified impact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Minor {
    Zero,
    One,
}

/// A parsed CVSS 3.0 or 3.1 vector.
#[derive(Debug, Clone, PartialEq)]
pub struct V3 {
    minor: Minor,
    values: Vec<Option<&'static str>>,
}

impl V3 {
    pub(super) fn parse_body(body: &str, minor: Minor, whole: &str) -> Result<V3> {
        let values = parse_metrics(body, DEFS, false, whole)?;
        Ok(V3 { minor, values })
    }

    pub(super) fn version(&self) -> &'static str {
        match self.minor {
            Minor::Zero => "3.0",
            Minor::One => "3.1",
        }
    }

    fn get(&self, name: &str) -> &'static str {
        value_of(DEFS, &self.values, name)
    }

    /// The modified metric `M<name>` when defined, else the base metric `name`.
    fn modified(&self, name: &str) -> &'static str {
        let m = match name {
            "AV" => "MAV",
            "AC" => "MAC",
            "PR" => "MPR",
            "UI" => "MUI",
            "S" => "MS",
            "C" => "MC",
            "I" => "MI",
            "A" => "MA",
            _ => "",
        };
        match self.get(m) {
            "X" => self.get(name),
            v => v,
        }
    }

    pub(super) fn attack_vector_network(&self) -> bool {
        self.modified("AV") == "N"
    }

    pub(super) fn vector(&self) -> String {
        let mut out = format!("CVSS:{}/", self.version());
        write_metrics(&mut out, DEFS, &self.values);
        out
    }

    fn roundup(&self, x: f64) -> f64 {
        match self.minor {
            // 3.0 section 7.4: the smallest number, to one decimal, equal to or above the input.
            Minor::Zero => (x * 10.0).ceil() / 10.0,
            // 3.1 Appendix A: the same, done on integers so that 4.000000000000001 stays 4.0.
            Minor::One => {
                let int_input = (x * 100_000.0).round();
                if int_input % 10_000.0 == 0.0 {
                    int_input / 100_000.0
                } else {
                    ((int_input / 10_000.0).floor() + 1.0) / 10.0
                }
            }
        }
    }

    fn exploitability(av: &str, ac: &str, pr: &str, ui: &str, changed: bool) -> f64 {
        let av = match av {
            "N" => 0.85,
            "A" => 0.62,
            "L" => 0.55,
            _ => 0.2,
        };
        let ac = if ac == "L" { 0.77 } else { 0.44 };
        let pr = match (pr, changed) {
            ("N", _) => 0.85,
            ("L", false) => 0.62,
            ("L", true) => 0.68,
            (_, false) => 0.27,
            (_, true) => 0.5,
        };
        let ui = if ui == "N" { 0.85 } else { 0.62 };
        8.22 * av * ac * pr * ui
    }

    fn cia(v: &str) -> f64 {
        match v {
            "H" => 0.56,
            "L" => 0.22,
            _ => 0.0,
        }
    }

    /// The base score (section 7.1).
    pub fn base_score(&self) -> f64 {
        let changed = self.get("S") == "C";
        let iss = 1.0
            - (1.0 - Self::cia(self.get("C"))) * (1.0 - Self::cia(self.get("I"))) * (1.0 - Self::cia(self.get("A")));
        let impact = if changed { 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15) } else { 6.42 * iss };
        let exploitability =
            Self::exploitability(self.get("AV"), self.get("AC"), self.get("PR"), self.get("UI"), changed);
        if impact <= 0.0 {
            0.0
        } else if changed {
            self.roundup((1.08 * (impact + exploitability)).min(10.0))
        } else {
            self.roundup((impact + exploitability).min(10.0))
        }
    }

    fn temporal_factor(&self) -> f64 {
        let e = match self.get("E") {
            "F" => 0.97,
            "P" => 0.94,
            "U" => 0.91,
            _ => 1.0,
        };
        let rl = match self.get("RL") {
            "W" => 0.97,
            "T" => 0.96,
            "O" => 0.95,
            _ => 1.0,
        };
        let rc = match self.get("RC") {
            "R" => 0.96,
            "U" => 0.92,
            _ => 1.0,
        };
        e * rl * rc
    }

    /// The temporal score (section 7.2), when a temporal metric is given.
    pub fn temporal_score(&self) -> Option<f64> {
        any_defined(&self.values, TEMPORAL, ENVIRONMENTAL)
            .then(|| self.roundup(self.base_score() * self.temporal_factor()))
    }

    /// The environmental score (section 7.3), when an environmental metric is given.
    pub fn environmental_score(&self) -> Option<f64> {
        if !any_defined(&self.values, ENVIRONMENTAL, DEFS.len()) {
            return None;
        }
        let req = |name: &str| match self.get(name) {
            "H" => 1.5,
            "L" => 0.5,
            _ => 1.0,
        };
        let changed = self.modified("S") == "C";
        let miss = (1.0
            - (1.0 - req("CR") * Self::cia(self.modified("C")))
                * (1.0 - req("IR") * Self::cia(self.modified("I")))
                * (1.0 - req("AR") * Self::cia(self.modified("A"))))
        .min(0.915);
        let impact = if !changed {
            6.42 * miss
        } else {
            match self.minor {
                Minor::Zero => 7.52 * (miss - 0.029) - 3.25 * (miss - 0.02).powi(15),
                Minor::One => 7.52 * (miss - 0.029) - 3.25 * (miss * 0.9731 - 0.02).powi(13),
            }
        };
        let exploitability = Self::exploitability(
            self.modified("AV"),
            self.modified("AC"),
            self.modified("PR"),
            self.modified("UI"),
            changed,
        );
        if impact <= 0.0 {
            return Some(0.0);
        }
        let sum =
            if changed { (1.08 * (impact + exploitability)).min(10.0) } else { (impact + exploitability).min(10.0) };
        Some(self.roundup(self.roundup(sum) * self.temporal_factor()))
    }
}
