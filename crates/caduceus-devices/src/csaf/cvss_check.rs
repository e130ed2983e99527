//! CVSS checks the CSAF validator needs (tests 6.1.8, 6.1.9, 6.1.10): vector syntax, the
//! JSON property names and values each metric maps to, and the v2 / v3.x score formulas.
//!
//! Kept here rather than in [`crate::cvss`] so the validator stays self-contained: it needs
//! the CVSS JSON property vocabulary, which the scorer does not.

/// One metric: vector abbreviation, JSON property, and (vector value, JSON value) pairs.
pub type MetricDef = (&'static str, &'static str, &'static [(&'static str, &'static str)]);

const NLH: &[(&str, &str)] = &[("N", "NONE"), ("L", "LOW"), ("H", "HIGH")];
const XNLH: &[(&str, &str)] = &[("X", "NOT_DEFINED"), ("N", "NONE"), ("L", "LOW"), ("H", "HIGH")];
const REQ3: &[(&str, &str)] = &[("X", "NOT_DEFINED"), ("L", "LOW"), ("M", "MEDIUM"), ("H", "HIGH")];

/// CVSS 3.x metrics in the order the vector must list them; the first eight are mandatory.
pub const V3_METRICS: &[MetricDef] = &[
    ("AV", "attackVector", &[("N", "NETWORK"), ("A", "ADJACENT_NETWORK"), ("L", "LOCAL"), ("P", "PHYSICAL")]),
    ("AC", "attackComplexity", &[("L", "LOW"), ("H", "HIGH")]),
    ("PR", "privilegesRequired", NLH),
    ("UI", "userInteraction", &[("N", "NONE"), ("R", "REQUIRED")]),
    ("S", "scope", &[("U", "UNCHANGED"), ("C", "CHANGED")]),
    ("C", "confidentialityImpact", NLH),
    ("I", "integrityImpact", NLH),
    ("A", "availabilityImpact", NLH),
    (
        "E",
        "exploitCodeMaturity",
        &[("X", "NOT_DEFINED"), ("U", "UNPROVEN"), ("P", "PROOF_OF_CONCEPT"), ("F", "FUNCTIONAL"), ("H", "HIGH")],
    ),
    (
        "RL",
        "remediationLevel",
        &[
            ("X", "NOT_DEFINED"),
            ("O", "OFFICIAL_FIX"),
            ("T", "TEMPORARY_FIX"),
            ("W", "WORKAROUND"),
            ("U", "UNAVAILABLE"),
        ],
    ),
    ("RC", "reportConfidence", &[("X", "NOT_DEFINED"), ("U", "UNKNOWN"), ("R", "REASONABLE"), ("C", "CONFIRMED")]),
    ("CR", "confidentialityRequirement", REQ3),
    ("IR", "integrityRequirement", REQ3),
    ("AR", "availabilityRequirement", REQ3),
    (
        "MAV",
        "modifiedAttackVector",
        &[("X", "NOT_DEFINED"), ("N", "NETWORK"), ("A", "ADJACENT_NETWORK"), ("L", "LOCAL"), ("P", "PHYSICAL")],
    ),
    ("MAC", "modifiedAttackComplexity", &[("X", "NOT_DEFINED"), ("L", "LOW"), ("H", "HIGH")]),
    ("MPR", "modifiedPrivilegesRequired", XNLH),
    ("MUI", "modifiedUserInteraction", &[("X", "NOT_DEFINED"), ("N", "NONE"), ("R", "REQUIRED")]),
    ("MS", "modifiedScope", &[("X", "NOT_DEFINED"), ("U", "UNCHANGED"), ("C", "CHANGED")]),
    ("MC", "modifiedConfidentialityImpact", XNLH),
    ("MI", "modifiedIntegrityImpact", XNLH),
    ("MA", "modifiedAvailabilityImpact", XNLH),
];

const NPC: &[(&str, &str)] = &[("N", "NONE"), ("P", "PARTIAL"), ("C", "COMPLETE")];
const REQ2: &[(&str, &str)] = &[("L", "LOW"), ("M", "MEDIUM"), ("H", "HIGH"), ("ND", "NOT_DEFINED")];

/// CVSS 2.0 metrics in vector order; the first six are mandatory.
pub const V2_METRICS: &[MetricDef] = &[
    ("AV", "accessVector", &[("L", "LOCAL"), ("A", "ADJACENT_NETWORK"), ("N", "NETWORK")]),
    ("AC", "accessComplexity", &[("H", "HIGH"), ("M", "MEDIUM"), ("L", "LOW")]),
    ("Au", "authentication", &[("M", "MULTIPLE"), ("S", "SINGLE"), ("N", "NONE")]),
    ("C", "confidentialityImpact", NPC),
    ("I", "integrityImpact", NPC),
    ("A", "availabilityImpact", NPC),
    (
        "E",
        "exploitability",
        &[("U", "UNPROVEN"), ("POC", "PROOF_OF_CONCEPT"), ("F", "FUNCTIONAL"), ("H", "HIGH"), ("ND", "NOT_DEFINED")],
    ),
    (
        "RL",
        "remediationLevel",
        &[
            ("OF", "OFFICIAL_FIX"),
            ("TF", "TEMPORARY_FIX"),
            ("W", "WORKAROUND"),
            ("U", "UNAVAILABLE"),
            ("ND", "NOT_DEFINED"),
        ],
    ),
    (
        "RC",
        "reportConfidence",
        &[("UC", "UNCONFIRMED"), ("UR", "UNCORROBORATED"), ("C", "CONFIRMED"), ("ND", "NOT_DEFINED")],
    ),
    (
        "CDP",
        "collateralDamagePotential",
        &[
            ("N", "NONE"),
            ("L", "LOW"),
            ("LM", "LOW_MEDIUM"),
            ("MH", "MEDIUM_HIGH"),
            ("H", "HIGH"),
            ("ND", "NOT_DEFINED"),
        ],
    ),
    ("TD", "targetDistribution", &[("N", "NONE"), ("L", "LOW"), ("M", "MEDIUM"), ("H", "HIGH"), ("ND", "NOT_DEFINED")]),
    ("CR", "confidentialityRequirement", REQ2),
    ("IR", "integrityRequirement", REQ2),
    ("AR", "availabilityRequirement", REQ2),
];

/// Parsed vector: (abbreviation, value) in order. `Err` says what is wrong.
pub type Parsed = Vec<(&'static str, String)>;

/// Parse a vector (`CVSS:3.1/...` or a bare v2 vector) against a metric table: known
/// metrics, allowed values, the table's order, each at most once, mandatory ones present.
pub fn parse_vector(body: &str, table: &[MetricDef], mandatory: usize) -> Result<Parsed, String> {
    let mut out: Parsed = Vec::new();
    let mut next_index = 0usize;
    for part in body.split('/') {
        let Some((key, value)) = part.split_once(':') else {
            return Err(format!("malformed component {:?}", cap(part)));
        };
        let Some(offset) = table.iter().skip(next_index).position(|(k, _, _)| *k == key) else {
            return Err(format!("unknown, repeated or out-of-order metric {:?}", cap(key)));
        };
        let index = next_index + offset;
        let Some((abbr, _, values)) = table.get(index) else {
            return Err("metric table".to_owned());
        };
        if !values.iter().any(|(v, _)| *v == value) {
            return Err(format!("metric {abbr} has invalid value {:?}", cap(value)));
        }
        out.push((abbr, value.to_owned()));
        next_index = index + 1;
    }
    for (abbr, _, _) in table.iter().take(mandatory) {
        if !out.iter().any(|(a, _)| a == abbr) {
            return Err(format!("base metric {abbr} missing"));
        }
    }
    Ok(out)
}

fn cap(s: &str) -> String {
    s.chars().take(64).collect()
}

fn get<'a>(parsed: &'a Parsed, abbr: &str, default: &'a str) -> &'a str {
    parsed.iter().find(|(a, _)| *a == abbr).map(|(_, v)| v.as_str()).unwrap_or(default)
}

/// Scores a v3 vector yields: base, temporal, environmental.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub base: f64,
    pub temporal: f64,
    pub environmental: f64,
}

fn roundup(x: f64, minor: u8) -> f64 {
    if minor == 0 {
        return (x * 10.0).ceil() / 10.0;
    }
    let int_input = (x * 100_000.0).round() as i64;
    if int_input % 10_000 == 0 { int_input as f64 / 100_000.0 } else { ((int_input / 10_000) + 1) as f64 / 10.0 }
}

/// CVSS 3.0 / 3.1 scores (`minor` is 0 or 1).
pub fn v3_scores(p: &Parsed, minor: u8) -> Scores {
    let av = |v: &str| -> f64 {
        match v {
            "N" => 0.85,
            "A" => 0.62,
            "L" => 0.55,
            _ => 0.2,
        }
    };
    let ac = |v: &str| if v == "L" { 0.77 } else { 0.44 };
    let pr = |v: &str, changed: bool| match (v, changed) {
        ("N", _) => 0.85,
        ("L", false) => 0.62,
        ("L", true) => 0.68,
        (_, false) => 0.27,
        (_, true) => 0.5,
    };
    let ui = |v: &str| if v == "N" { 0.85 } else { 0.62 };
    let cia = |v: &str| -> f64 {
        match v {
            "H" => 0.56,
            "L" => 0.22,
            _ => 0.0,
        }
    };
    let req = |v: &str| match v {
        "H" => 1.5,
        "L" => 0.5,
        _ => 1.0,
    };
    let base_or = |m: &str, b: &str| -> String {
        let v = get(p, m, "X");
        if v == "X" { get(p, b, "X").to_owned() } else { v.to_owned() }
    };

    let changed = get(p, "S", "U") == "C";
    let iss = 1.0 - (1.0 - cia(get(p, "C", "N"))) * (1.0 - cia(get(p, "I", "N"))) * (1.0 - cia(get(p, "A", "N")));
    let impact = if changed { 7.52 * (iss - 0.029) - 3.25 * (iss - 0.02).powi(15) } else { 6.42 * iss };
    let expl =
        8.22 * av(get(p, "AV", "N")) * ac(get(p, "AC", "L")) * pr(get(p, "PR", "N"), changed) * ui(get(p, "UI", "N"));
    let base = if impact <= 0.0 {
        0.0
    } else if changed {
        roundup((1.08 * (impact + expl)).min(10.0), minor)
    } else {
        roundup((impact + expl).min(10.0), minor)
    };

    let e = match get(p, "E", "X") {
        "F" => 0.97,
        "P" => 0.94,
        "U" => 0.91,
        _ => 1.0,
    };
    let rl = match get(p, "RL", "X") {
        "W" => 0.97,
        "T" => 0.96,
        "O" => 0.95,
        _ => 1.0,
    };
    let rc = match get(p, "RC", "X") {
        "R" => 0.96,
        "U" => 0.92,
        _ => 1.0,
    };
    let temporal = roundup(base * e * rl * rc, minor);

    let m_changed = base_or("MS", "S") == "C";
    let miss = (1.0
        - (1.0 - req(get(p, "CR", "X")) * cia(&base_or("MC", "C")))
            * (1.0 - req(get(p, "IR", "X")) * cia(&base_or("MI", "I")))
            * (1.0 - req(get(p, "AR", "X")) * cia(&base_or("MA", "A"))))
    .min(0.915);
    let m_impact = if m_changed {
        if minor == 0 {
            7.52 * (miss - 0.029) - 3.25 * (miss - 0.02).powi(15)
        } else {
            7.52 * (miss - 0.029) - 3.25 * (miss * 0.9731 - 0.02).powi(13)
        }
    } else {
        6.42 * miss
    };
    let m_expl = 8.22
        * av(&base_or("MAV", "AV"))
        * ac(&base_or("MAC", "AC"))
        * pr(&base_or("MPR", "PR"), m_changed)
        * ui(&base_or("MUI", "UI"));
    let environmental = if m_impact <= 0.0 {
        0.0
    } else if m_changed {
        roundup(roundup((1.08 * (m_impact + m_expl)).min(10.0), minor) * e * rl * rc, minor)
    } else {
        roundup(roundup((m_impact + m_expl).min(10.0), minor) * e * rl * rc, minor)
    };
    Scores { base, temporal, environmental }
}

fn round1(x: f64) -> f64 {
    (x * 10.0 + 1e-9).round() / 10.0
}

/// CVSS 2.0 scores.
pub fn v2_scores(p: &Parsed) -> Scores {
    let cia = |v: &str| match v {
        "P" => 0.275,
        "C" => 0.66,
        _ => 0.0,
    };
    let av = match get(p, "AV", "N") {
        "L" => 0.395,
        "A" => 0.646,
        _ => 1.0,
    };
    let ac = match get(p, "AC", "L") {
        "H" => 0.35,
        "M" => 0.61,
        _ => 0.71,
    };
    let au = match get(p, "Au", "N") {
        "M" => 0.45,
        "S" => 0.56,
        _ => 0.704,
    };
    let (c, i, a) = (cia(get(p, "C", "N")), cia(get(p, "I", "N")), cia(get(p, "A", "N")));
    let expl = 20.0 * av * ac * au;
    let base_from = |impact: f64| {
        let f = if impact == 0.0 { 0.0 } else { 1.176 };
        round1(((0.6 * impact) + (0.4 * expl) - 1.5) * f)
    };
    let impact = 10.41 * (1.0 - (1.0 - c) * (1.0 - i) * (1.0 - a));
    let base = base_from(impact);
    let e = match get(p, "E", "ND") {
        "U" => 0.85,
        "POC" => 0.9,
        "F" => 0.95,
        _ => 1.0,
    };
    let rl = match get(p, "RL", "ND") {
        "OF" => 0.87,
        "TF" => 0.9,
        "W" => 0.95,
        _ => 1.0,
    };
    let rc = match get(p, "RC", "ND") {
        "UC" => 0.9,
        "UR" => 0.95,
        _ => 1.0,
    };
    let temporal = round1(base * e * rl * rc);
    let req = |v: &str| match v {
        "L" => 0.5,
        "H" => 1.51,
        _ => 1.0,
    };
    let adj_impact = (10.41
        * (1.0
            - (1.0 - c * req(get(p, "CR", "ND")))
                * (1.0 - i * req(get(p, "IR", "ND")))
                * (1.0 - a * req(get(p, "AR", "ND")))))
    .min(10.0);
    let adj_temporal = round1(base_from(adj_impact) * e * rl * rc);
    let cdp = match get(p, "CDP", "ND") {
        "L" => 0.1,
        "LM" => 0.3,
        "MH" => 0.4,
        "H" => 0.5,
        _ => 0.0,
    };
    let td = match get(p, "TD", "ND") {
        "N" => 0.0,
        "L" => 0.25,
        "M" => 0.75,
        _ => 1.0,
    };
    let environmental = round1((adj_temporal + (10.0 - adj_temporal) * cdp) * td);
    Scores { base, temporal, environmental }
}

/// CVSS 3.x qualitative severity of a score.
pub fn severity(score: f64) -> &'static str {
    if score <= 0.0 {
        "NONE"
    } else if score < 4.0 {
        "LOW"
    } else if score < 7.0 {
        "MEDIUM"
    } else if score < 9.0 {
        "HIGH"
    } else {
        "CRITICAL"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v3(vector: &str) -> Result<Scores, String> {
        let (prefix, body) = vector.split_at_checked(9).ok_or("short")?;
        let minor = if prefix == "CVSS:3.0/" { 0 } else { 1 };
        Ok(v3_scores(&parse_vector(body, V3_METRICS, 8)?, minor))
    }

    #[test]
    fn known_scores() -> Result<(), String> {
        assert_eq!(v3("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H")?.base, 9.8);
        assert_eq!(v3("CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:H/A:H")?.base, 10.0);
        assert_eq!(v3("CVSS:3.1/AV:L/AC:L/PR:H/UI:R/S:U/C:H/I:H/A:H")?.base, 6.5);
        assert_eq!(v3("CVSS:3.1/AV:N/AC:L/PR:L/UI:N/S:U/C:L/I:N/A:N")?.base, 4.3);
        let p = parse_vector("AV:N/AC:L/Au:N/C:C/I:C/A:C", V2_METRICS, 6)?;
        assert_eq!(v2_scores(&p).base, 10.0);
        let p = parse_vector("AV:N/AC:L/Au:N/C:P/I:P/A:P", V2_METRICS, 6)?;
        assert_eq!(v2_scores(&p).base, 7.5);
        assert!(parse_vector("AV:N/AC:L/Au:N/C:P/I:P", V2_METRICS, 6).is_err());
        Ok(())
    }
}
