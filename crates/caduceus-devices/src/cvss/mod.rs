//! CVSS vectors: parse and score versions 2.0, 3.0, 3.1 and 4.0.
//!
//! Written here from FIRST's specifications (CVSS v2 Complete Guide, CVSS v3.0 and v3.1
//! Specification Documents section 7 and appendix A, CVSS v4.0 Specification Document
//! section 8) and, for 4.0, from the data tables FIRST publishes with its calculator: the 270
//! macrovector scores, the highest-severity vectors of each equivalence class and their depths.
//! Why not a crate: RustSec's `cvss` (2.2) scores 3.x base metrics and 4.0 but has no v2 and no
//! 3.x temporal or environmental scores, which advisories and the risk score need. Our own
//! code also never panics on hostile input and reports errors the way the rest of this crate does.
//!
//! What "the score" is differs by version, as the specifications define it:
//! - 2.0 and 3.x: [`Cvss::base_score`] is the base score; the temporal and environmental
//!   scores are separate ([`Cvss::temporal_score`], [`Cvss::environmental_score`]) and present
//!   only when the vector carries such metrics.
//! - 4.0: one score per vector, computed from every metric the vector gives (base, threat,
//!   environmental; supplemental metrics never change it). Its name says which groups went in
//!   ([`V4::nomenclature`]: `CVSS-B`, `CVSS-BT`, `CVSS-BE`, `CVSS-BTE`). CSAF 2.1 and NVD put
//!   that number in `baseScore`, and so does [`Cvss::base_score`].
//!
//! Parsing rules: metric names and values are case-sensitive, each metric appears at most
//! once, every base metric is mandatory, `X` / `ND` (not defined) are accepted wherever the
//! specification lists them. 2.0 and 3.x metrics may come in any order (tools differ, the
//! 3.x specifications only recommend an order); 4.0 metrics must be in the specification's
//! order (Table 23), as FIRST's calculator and JSON schema require.

mod v2;
mod v3;
mod v4;
mod v4_table;

pub use v2::V2;
pub use v3::V3;
pub use v4::V4;

use crate::{DevicesError, Result, check_size};

/// Longest vector accepted (a 4.0 vector with every metric is about 190 bytes).
pub const MAX_VECTOR_BYTES: usize = 1024;

/// A parsed CVSS vector of any supported version.
#[derive(Debug, Clone, PartialEq)]
pub enum Cvss {
    V2(V2),
    V3(V3),
    V4(V4),
}

/// Qualitative severity rating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    /// The rating of a 3.x or 4.0 score (specification table "Qualitative Severity Rating
    /// Scale"): 0.0 None, 0.1–3.9 Low, 4.0–6.9 Medium, 7.0–8.9 High, 9.0–10.0 Critical.
    pub fn from_score(score: f64) -> Self {
        if score <= 0.0 {
            Self::None
        } else if score < 4.0 {
            Self::Low
        } else if score < 7.0 {
            Self::Medium
        } else if score < 9.0 {
            Self::High
        } else {
            Self::Critical
        }
    }

    /// The rating of a 2.0 score as NVD publishes it: 0.0–3.9 Low, 4.0–6.9 Medium,
    /// 7.0–10.0 High (CVSS 2.0 itself defines no scale).
    pub fn from_v2_score(score: f64) -> Self {
        if score < 4.0 {
            Self::Low
        } else if score < 7.0 {
            Self::Medium
        } else {
            Self::High
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Cvss {
    /// Parse a vector: `CVSS:3.1/...`, `CVSS:3.0/...`, `CVSS:4.0/...`, or a 2.0 vector
    /// `AV:N/AC:L/Au:N/C:P/I:P/A:P` (optionally in parentheses, as NVD wrote them, or with a
    /// `CVSS2#` or `CVSS:2.0/` prefix). Surrounding whitespace is ignored.
    pub fn parse(vector: &str) -> Result<Cvss> {
        check_size("cvss vector", vector.as_bytes(), MAX_VECTOR_BYTES)?;
        let v = vector.trim();
        if let Some(body) = v.strip_prefix("CVSS:3.1/") {
            return V3::parse_body(body, v3::Minor::One, v).map(Cvss::V3);
        }
        if let Some(body) = v.strip_prefix("CVSS:3.0/") {
            return V3::parse_body(body, v3::Minor::Zero, v).map(Cvss::V3);
        }
        if let Some(body) = v.strip_prefix("CVSS:4.0/") {
            return V4::parse_body(body, v).map(Cvss::V4);
        }
        if v.starts_with("CVSS:") && !v.starts_with("CVSS:2.0/") {
            return Err(vector_error(v, "unsupported CVSS version prefix"));
        }
        V2::parse_vector(v).map(Cvss::V2)
    }

    /// `"2.0"`, `"3.0"`, `"3.1"` or `"4.0"`.
    pub fn version(&self) -> &'static str {
        match self {
            Self::V2(_) => "2.0",
            Self::V3(v) => v.version(),
            Self::V4(_) => "4.0",
        }
    }

    /// The base score, rounded as the version's specification says (2.0: to one decimal;
    /// 3.x: Roundup; 4.0: the score of the whole vector, see the module documentation).
    pub fn base_score(&self) -> f64 {
        match self {
            Self::V2(v) => v.base_score(),
            Self::V3(v) => v.base_score(),
            Self::V4(v) => v.score(),
        }
    }

    /// The temporal score (2.0, 3.x) when the vector has a temporal metric; 4.0 has none (its
    /// threat metric is part of [`Cvss::base_score`]).
    pub fn temporal_score(&self) -> Option<f64> {
        match self {
            Self::V2(v) => v.temporal_score(),
            Self::V3(v) => v.temporal_score(),
            Self::V4(_) => None,
        }
    }

    /// The environmental score (2.0, 3.x) when the vector has an environmental metric.
    pub fn environmental_score(&self) -> Option<f64> {
        match self {
            Self::V2(v) => v.environmental_score(),
            Self::V3(v) => v.environmental_score(),
            Self::V4(_) => None,
        }
    }

    /// The most specific score the vector gives: environmental, else temporal, else base.
    pub fn score(&self) -> f64 {
        self.environmental_score().or_else(|| self.temporal_score()).unwrap_or_else(|| self.base_score())
    }

    /// Severity of [`Cvss::base_score`] on the version's scale (2.0: Low/Medium/High).
    pub fn severity(&self) -> Severity {
        match self {
            Self::V2(v) => Severity::from_v2_score(v.base_score()),
            Self::V3(v) => Severity::from_score(v.base_score()),
            Self::V4(v) => Severity::from_score(v.score()),
        }
    }

    /// The vector in canonical form: the version prefix (none for 2.0), metrics in the
    /// specification's order, not-defined (`X`/`ND`) metrics left out.
    pub fn vector(&self) -> String {
        match self {
            Self::V2(v) => v.vector(),
            Self::V3(v) => v.vector(),
            Self::V4(v) => v.vector(),
        }
    }

    /// True when the attack vector is Network: the modified attack vector if the vector
    /// sets one (it describes this environment), else the base `AV`.
    pub fn attack_vector_network(&self) -> bool {
        match self {
            Self::V2(v) => v.attack_vector_network(),
            Self::V3(v) => v.attack_vector_network(),
            Self::V4(v) => v.attack_vector_network(),
        }
    }
}

impl std::str::FromStr for Cvss {
    type Err = DevicesError;
    fn from_str(s: &str) -> Result<Self> {
        Cvss::parse(s)
    }
}

/// Fuzz entry point: parse a vector and score it, dropping the result.
pub fn fuzz_cvss(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data)
        && let Ok(c) = Cvss::parse(s)
    {
        let _ = (c.score(), c.severity(), c.vector(), c.attack_vector_network());
    }
}

/// One metric a version defines: its abbreviation, allowed values, and whether it is mandatory.
pub(crate) struct MetricDef {
    pub name: &'static str,
    pub values: &'static [&'static str],
    pub mandatory: bool,
}

/// A "not defined" value that is the same as leaving the metric out.
fn is_not_defined(value: &str) -> bool {
    value == "X" || value == "ND"
}

/// Split `body` (`K:V/K:V/...`) into one value per definition in `defs` (None: absent).
/// `ordered`: metrics must appear in the order of `defs`.
pub(crate) fn parse_metrics(
    body: &str,
    defs: &[MetricDef],
    ordered: bool,
    whole: &str,
) -> Result<Vec<Option<&'static str>>> {
    let mut found: Vec<Option<&'static str>> = vec![None; defs.len()];
    let mut last_index: Option<usize> = None;
    if body.is_empty() {
        return Err(vector_error(whole, "no metrics"));
    }
    for part in body.split('/') {
        let Some((name, value)) = part.split_once(':') else {
            return Err(vector_error(whole, &format!("component {:?} is not METRIC:VALUE", cap(part))));
        };
        let Some((index, def)) = defs.iter().enumerate().find(|(_, d)| d.name == name) else {
            return Err(vector_error(whole, &format!("unknown metric {:?}", cap(name))));
        };
        let Some(value) = def.values.iter().find(|v| **v == value) else {
            return Err(vector_error(
                whole,
                &format!("metric {name} has invalid value {:?} (allowed: {})", cap(value), def.values.join(", ")),
            ));
        };
        let Some(slot) = found.get_mut(index) else {
            return Err(vector_error(whole, "internal: metric index out of range"));
        };
        if slot.is_some() {
            return Err(vector_error(whole, &format!("metric {name} appears more than once")));
        }
        if ordered && last_index.is_some_and(|l| l > index) {
            return Err(vector_error(whole, &format!("metric {name} is out of the specification's order")));
        }
        last_index = Some(index);
        *slot = Some(value);
    }
    for (def, value) in defs.iter().zip(&found) {
        if def.mandatory && value.is_none() {
            return Err(vector_error(whole, &format!("mandatory base metric {} is missing", def.name)));
        }
    }
    Ok(found)
}

/// Append `NAME:VALUE` for every present, defined metric, in definition order.
pub(crate) fn write_metrics(out: &mut String, defs: &[MetricDef], values: &[Option<&'static str>]) {
    for (def, value) in defs.iter().zip(values) {
        if let Some(v) = value
            && (def.mandatory || !is_not_defined(v))
        {
            if !out.is_empty() && !out.ends_with('/') {
                out.push('/');
            }
            out.push_str(def.name);
            out.push(':');
            out.push_str(v);
        }
    }
}

/// True when some metric from index `from` on is present with a defined value.
pub(crate) fn any_defined(values: &[Option<&'static str>], from: usize, to: usize) -> bool {
    values.iter().skip(from).take(to.saturating_sub(from)).flatten().any(|v| !is_not_defined(v))
}

/// The value of metric `name`, or `"X"` when absent.
pub(crate) fn value_of(defs: &[MetricDef], values: &[Option<&'static str>], name: &str) -> &'static str {
    defs.iter().zip(values).find(|(d, _)| d.name == name).and_then(|(_, v)| *v).unwrap_or("X")
}

/// At most 64 characters of an input value, for error messages.
pub(crate) fn cap(s: &str) -> String {
    s.chars().take(64).collect()
}

pub(crate) fn vector_error(vector: &str, reason: &str) -> DevicesError {
    DevicesError::Value { kind: "cvss vector", value: cap(vector), reason: reason.to_string() }
}
