//! CVSS 4.0 (FIRST CVSS v4.0 Specification Document, section 7 "Vector String" and section 8
//! "Scoring"): the vector falls into a macrovector (equivalence classes EQ1–EQ6), whose score
//! comes from FIRST's table; the vector's score is that score lowered by the mean of its
//! proportional severity distances from the macrovector's highest-severity vectors, each
//! scaled by the score gap to the next lower macrovector of that EQ.

use super::v4_table::MACROVECTOR_SCORES;
use super::{MetricDef, parse_metrics, value_of, write_metrics};
use crate::Result;

/// Table 23 order: base (11, mandatory), threat (1), environmental (14), supplemental (6).
const DEFS: &[MetricDef] = &[
    MetricDef { name: "AV", values: &["N", "A", "L", "P"], mandatory: true },
    MetricDef { name: "AC", values: &["L", "H"], mandatory: true },
    MetricDef { name: "AT", values: &["N", "P"], mandatory: true },
    MetricDef { name: "PR", values: &["N", "L", "H"], mandatory: true },
    MetricDef { name: "UI", values: &["N", "P", "A"], mandatory: true },
    MetricDef { name: "VC", values: &["H", "L", "N"], mandatory: true },
    MetricDef { name: "VI", values: &["H", "L", "N"], mandatory: true },
    MetricDef { name: "VA", values: &["H", "L", "N"], mandatory: true },
    MetricDef { name: "SC", values: &["H", "L", "N"], mandatory: true },
    MetricDef { name: "SI", values: &["H", "L", "N"], mandatory: true },
    MetricDef { name: "SA", values: &["H", "L", "N"], mandatory: true },
    // Threat.
    MetricDef { name: "E", values: &["X", "A", "P", "U"], mandatory: false },
    // Environmental.
    MetricDef { name: "CR", values: &["X", "H", "M", "L"], mandatory: false },
    MetricDef { name: "IR", values: &["X", "H", "M", "L"], mandatory: false },
    MetricDef { name: "AR", values: &["X", "H", "M", "L"], mandatory: false },
    MetricDef { name: "MAV", values: &["X", "N", "A", "L", "P"], mandatory: false },
    MetricDef { name: "MAC", values: &["X", "L", "H"], mandatory: false },
    MetricDef { name: "MAT", values: &["X", "N", "P"], mandatory: false },
    MetricDef { name: "MPR", values: &["X", "N", "L", "H"], mandatory: false },
    MetricDef { name: "MUI", values: &["X", "N", "P", "A"], mandatory: false },
    MetricDef { name: "MVC", values: &["X", "H", "L", "N"], mandatory: false },
    MetricDef { name: "MVI", values: &["X", "H", "L", "N"], mandatory: false },
    MetricDef { name: "MVA", values: &["X", "H", "L", "N"], mandatory: false },
    MetricDef { name: "MSC", values: &["X", "H", "L", "N"], mandatory: false },
    MetricDef { name: "MSI", values: &["X", "S", "H", "L", "N"], mandatory: false },
    MetricDef { name: "MSA", values: &["X", "S", "H", "L", "N"], mandatory: false },
    // Supplemental: accepted and kept in the vector, never scored.
    MetricDef { name: "S", values: &["X", "N", "P"], mandatory: false },
    MetricDef { name: "AU", values: &["X", "N", "Y"], mandatory: false },
    MetricDef { name: "R", values: &["X", "A", "U", "I"], mandatory: false },
    MetricDef { name: "V", values: &["X", "D", "C"], mandatory: false },
    MetricDef { name: "RE", values: &["X", "L", "M", "H"], mandatory: false },
    MetricDef { name: "U", values: &["X", "Clear", "Green", "Amber", "Red"], mandatory: false },
];
const THREAT: usize = 11;
const ENVIRONMENTAL: usize = 12;
const SUPPLEMENTAL: usize = 26;

/// A parsed CVSS 4.0 vector.
#[derive(Debug, Clone, PartialEq)]
pub struct V4 {
    values: Vec<Option<&'static str>>,
}

/// Highest-severity vectors of each EQ class (FIRST calculator data), as metric values.
type Max = &'static [&'static [(&'static str, &'static str)]];

const EQ1_MAX: [Max; 3] = [
    &[&[("AV", "N"), ("PR", "N"), ("UI", "N")]],
    &[
        &[("AV", "A"), ("PR", "N"), ("UI", "N")],
        &[("AV", "N"), ("PR", "L"), ("UI", "N")],
        &[("AV", "N"), ("PR", "N"), ("UI", "P")],
    ],
    &[&[("AV", "P"), ("PR", "N"), ("UI", "N")], &[("AV", "A"), ("PR", "L"), ("UI", "P")]],
];
const EQ2_MAX: [Max; 2] = [&[&[("AC", "L"), ("AT", "N")]], &[&[("AC", "H"), ("AT", "N")], &[("AC", "L"), ("AT", "P")]]];

/// `VC VI VA CR IR AR` of the highest vectors of EQ3+EQ6 class `(eq3, eq6)`.
fn eq3eq6_max(eq3: u8, eq6: u8) -> &'static [[&'static str; 6]] {
    match (eq3, eq6) {
        (0, 0) => &[["H", "H", "H", "H", "H", "H"]],
        (0, _) => &[["H", "H", "L", "M", "M", "H"], ["H", "H", "H", "M", "M", "M"]],
        (1, 0) => &[["L", "H", "H", "H", "H", "H"], ["H", "L", "H", "H", "H", "H"]],
        (1, _) => &[
            ["L", "H", "L", "H", "M", "H"],
            ["L", "H", "H", "H", "M", "M"],
            ["H", "L", "H", "M", "H", "M"],
            ["H", "L", "L", "M", "H", "H"],
            ["L", "L", "H", "H", "H", "M"],
        ],
        _ => &[["L", "L", "L", "H", "H", "H"]],
    }
}

/// `SC SI SA` of the highest vector of EQ4 class `eq4`.
fn eq4_max(eq4: u8) -> [&'static str; 3] {
    match eq4 {
        0 => ["H", "S", "S"],
        1 => ["H", "H", "H"],
        _ => ["L", "L", "L"],
    }
}

/// Depth of each class (the calculator's "max severity", in steps of 0.1).
fn depth_eq1(eq1: u8) -> f64 {
    match eq1 {
        0 => 1.0,
        1 => 4.0,
        _ => 5.0,
    }
}
fn depth_eq2(eq2: u8) -> f64 {
    if eq2 == 0 { 1.0 } else { 2.0 }
}
fn depth_eq3eq6(eq3: u8, eq6: u8) -> f64 {
    match (eq3, eq6) {
        (0, 0) => 7.0,
        (0, _) => 6.0,
        (1, _) => 8.0,
        _ => 10.0,
    }
}
fn depth_eq4(eq4: u8) -> f64 {
    match eq4 {
        0 => 6.0,
        1 => 5.0,
        _ => 4.0,
    }
}

/// Severity level of a metric value: 0.0 is the most severe, each step 0.1 less severe.
fn level(metric: &str, value: &str) -> f64 {
    match (metric, value) {
        ("AV", "A") | ("PR", "L") | ("UI", "P") | ("AC", "H") | ("AT", "P") => 0.1,
        ("AV", "L") | ("PR", "H") | ("UI", "A") => 0.2,
        ("AV", "P") => 0.3,
        ("VC" | "VI" | "VA", "L") => 0.1,
        ("VC" | "VI" | "VA", "N") => 0.2,
        ("SC" | "SI" | "SA", "H") => 0.1,
        ("SC" | "SI" | "SA", "L") => 0.2,
        ("SC" | "SI" | "SA", "N") => 0.3,
        ("CR" | "IR" | "AR", "M") => 0.1,
        ("CR" | "IR" | "AR", "L") => 0.2,
        ("E", "P") => 0.1,
        ("E", "U") => 0.2,
        _ => 0.0,
    }
}

fn lookup(eq: [u8; 6]) -> Option<f64> {
    let key = eq.iter().fold(0u32, |acc, d| acc * 10 + u32::from(*d));
    MACROVECTOR_SCORES
        .binary_search_by_key(&key, |(k, _)| *k)
        .ok()
        .and_then(|i| MACROVECTOR_SCORES.get(i))
        .map(|(_, s)| *s)
}

/// Metrics whose distances are measured, in the calculator's order.
const DISTANCE_METRICS: [&str; 15] =
    ["AV", "PR", "UI", "AC", "AT", "VC", "VI", "VA", "SC", "SI", "SA", "CR", "IR", "AR", "E"];

impl V4 {
    pub(super) fn parse_body(body: &str, whole: &str) -> Result<V4> {
        let values = parse_metrics(body, DEFS, true, whole)?;
        Ok(V4 { values })
    }

    fn get(&self, name: &str) -> &'static str {
        value_of(DEFS, &self.values, name)
    }

    /// The value scoring uses: threat and security requirements default to their worst case
    /// (`E:A`, `CR/IR/AR:H`), a defined modified metric replaces its base metric.
    fn effective(&self, name: &str) -> &'static str {
        let raw = self.get(name);
        match name {
            "E" if raw == "X" => return "A",
            "CR" | "IR" | "AR" if raw == "X" => return "H",
            _ => {}
        }
        let modified = match name {
            "AV" => "MAV",
            "AC" => "MAC",
            "AT" => "MAT",
            "PR" => "MPR",
            "UI" => "MUI",
            "VC" => "MVC",
            "VI" => "MVI",
            "VA" => "MVA",
            "SC" => "MSC",
            "SI" => "MSI",
            "SA" => "MSA",
            _ => return raw,
        };
        match self.get(modified) {
            "X" => raw,
            m => m,
        }
    }

    pub(super) fn attack_vector_network(&self) -> bool {
        self.effective("AV") == "N"
    }

    pub(super) fn vector(&self) -> String {
        let mut out = String::from("CVSS:4.0/");
        write_metrics(&mut out, DEFS, &self.values);
        out
    }

    /// `CVSS-B`, `CVSS-BT`, `CVSS-BE` or `CVSS-BTE`: which metric groups the score reflects.
    pub fn nomenclature(&self) -> &'static str {
        let threat = super::any_defined(&self.values, THREAT, ENVIRONMENTAL);
        let env = super::any_defined(&self.values, ENVIRONMENTAL, SUPPLEMENTAL);
        match (threat, env) {
            (false, false) => "CVSS-B",
            (true, false) => "CVSS-BT",
            (false, true) => "CVSS-BE",
            (true, true) => "CVSS-BTE",
        }
    }

    /// The CVSS-B score: the score of the base metrics alone, threat and environmental
    /// metrics ignored (what FIRST's JSON schema calls `baseScore` beside `threatScore` and
    /// `environmentalScore`).
    pub fn base_only_score(&self) -> f64 {
        let values = self.values.iter().enumerate().map(|(i, v)| if i < THREAT { *v } else { None }).collect();
        V4 { values }.score()
    }

    /// The six EQ digits of the vector's macrovector.
    pub fn macrovector(&self) -> [u8; 6] {
        let e = |m: &str| self.effective(m);
        let (av, pr, ui) = (e("AV"), e("PR"), e("UI"));
        let eq1 = if av == "N" && pr == "N" && ui == "N" {
            0
        } else if (av == "N" || pr == "N" || ui == "N") && av != "P" {
            1
        } else {
            2
        };
        let eq2 = if e("AC") == "L" && e("AT") == "N" { 0 } else { 1 };
        let (vc, vi, va) = (e("VC"), e("VI"), e("VA"));
        let eq3 = if vc == "H" && vi == "H" {
            0
        } else if vc == "H" || vi == "H" || va == "H" {
            1
        } else {
            2
        };
        let eq4 = if self.get("MSI") == "S" || self.get("MSA") == "S" {
            0
        } else if e("SC") == "H" || e("SI") == "H" || e("SA") == "H" {
            1
        } else {
            2
        };
        let eq5 = match e("E") {
            "U" => 2,
            "P" => 1,
            _ => 0,
        };
        let eq6 = if (e("CR") == "H" && vc == "H") || (e("IR") == "H" && vi == "H") || (e("AR") == "H" && va == "H") {
            0
        } else {
            1
        };
        [eq1, eq2, eq3, eq4, eq5, eq6]
    }

    /// The score of the vector with every metric it gives (specification section 8.2),
    /// rounded half up to one decimal.
    pub fn score(&self) -> f64 {
        let no_impact = ["VC", "VI", "VA", "SC", "SI", "SA"].iter().all(|m| self.effective(m) == "N");
        if no_impact {
            return 0.0;
        }
        let mv = self.macrovector();
        let [eq1, eq2, eq3, eq4, eq5, eq6] = mv;
        let Some(value) = lookup(mv) else {
            return 0.0;
        };

        // Score of the next lower macrovector of each EQ (None: there is none).
        let lower = |d: [u8; 6]| lookup(d);
        let next_eq1 = lower([eq1 + 1, eq2, eq3, eq4, eq5, eq6]);
        let next_eq2 = lower([eq1, eq2 + 1, eq3, eq4, eq5, eq6]);
        let next_eq3eq6 = match (eq3, eq6) {
            (1, 1) | (0, 1) => lower([eq1, eq2, eq3 + 1, eq4, eq5, eq6]),
            (1, 0) => lower([eq1, eq2, eq3, eq4, eq5, eq6 + 1]),
            (0, 0) => {
                // Two ways down; the higher one bounds the distance.
                match (lower([eq1, eq2, eq3, eq4, eq5, eq6 + 1]), lower([eq1, eq2, eq3 + 1, eq4, eq5, eq6])) {
                    (Some(l), Some(r)) => Some(l.max(r)),
                    _ => None,
                }
            }
            _ => None,
        };
        let next_eq4 = lower([eq1, eq2, eq3, eq4 + 1, eq5, eq6]);
        let next_eq5 = lower([eq1, eq2, eq3, eq4, eq5 + 1, eq6]);

        // Distance of each metric from the first highest-severity vector of the macrovector
        // that is at least as severe in every metric.
        let mut distances = [0.0f64; 15];
        let eq1_max = EQ1_MAX.get(usize::from(eq1)).copied().unwrap_or(&[]);
        let eq2_max = EQ2_MAX.get(usize::from(eq2)).copied().unwrap_or(&[]);
        let eq4m = eq4_max(eq4);
        let e_max = match eq5 {
            0 => "A",
            1 => "P",
            _ => "U",
        };
        'search: for m1 in eq1_max {
            for m2 in eq2_max {
                for m3 in eq3eq6_max(eq3, eq6) {
                    let max_value = |metric: &str| -> &'static str {
                        let from_pairs = m1.iter().chain(m2.iter()).find(|(name, _)| *name == metric).map(|(_, v)| *v);
                        if let Some(v) = from_pairs {
                            return v;
                        }
                        let [vc, vi, va, cr, ir, ar] = *m3;
                        let [sc, si, sa] = eq4m;
                        match metric {
                            "VC" => vc,
                            "VI" => vi,
                            "VA" => va,
                            "CR" => cr,
                            "IR" => ir,
                            "AR" => ar,
                            "SC" => sc,
                            "SI" => si,
                            "SA" => sa,
                            _ => e_max,
                        }
                    };
                    for (slot, metric) in distances.iter_mut().zip(DISTANCE_METRICS) {
                        *slot = level(metric, self.effective(metric)) - level(metric, max_value(metric));
                    }
                    if distances.iter().all(|d| *d >= 0.0) {
                        break 'search;
                    }
                }
            }
        }
        let d = |metric: &str| {
            DISTANCE_METRICS.iter().zip(distances.iter()).find(|(m, _)| **m == metric).map_or(0.0, |(_, v)| *v)
        };
        let dist_eq1 = d("AV") + d("PR") + d("UI");
        let dist_eq2 = d("AC") + d("AT");
        let dist_eq3eq6 = d("VC") + d("VI") + d("VA") + d("CR") + d("IR") + d("AR");
        let dist_eq4 = d("SC") + d("SI") + d("SA");

        const STEP: f64 = 0.1;
        let mut n_lower = 0u32;
        let mut total = 0.0;
        let mut add = |next: Option<f64>, distance: f64, depth: f64| {
            if let Some(next) = next {
                n_lower += 1;
                total += (value - next) * (distance / (depth * STEP));
            }
        };
        add(next_eq1, dist_eq1, depth_eq1(eq1));
        add(next_eq2, dist_eq2, depth_eq2(eq2));
        add(next_eq3eq6, dist_eq3eq6, depth_eq3eq6(eq3, eq6));
        add(next_eq4, dist_eq4, depth_eq4(eq4));
        // EQ5 counts towards the mean with a proportion of 0: its class has no depth.
        add(next_eq5, 0.0, 1.0);
        let mean = if n_lower == 0 { 0.0 } else { total / f64::from(n_lower) };
        let score = (value - mean).clamp(0.0, 10.0);
        (score * 10.0).round() / 10.0
    }
}
