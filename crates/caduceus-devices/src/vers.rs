//! `vers:` version range specifiers (package-url/vers-spec), and OSV range evaluation.
//!
//! A `vers` is `vers:<scheme>/<constraint>|<constraint>...`, each constraint an optional
//! comparator (`=`, `!=`, `<`, `<=`, `>`, `>=`) and a percent-encoded version, or the single
//! constraint `*` for every version. Containment follows the spec's algorithm: equality and
//! exclusion first, then the sorted range constraints read as alternating lower and upper
//! bounds.

use std::cmp::Ordering;
use std::fmt;

use crate::model::{OsvEvent, OsvRange};
use crate::version::{Scheme, compare};
use crate::{DevicesError, Result};

/// A comparator of one constraint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparator {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Comparator {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Eq => "=",
            Self::Ne => "!=",
            Self::Lt => "<",
            Self::Le => "<=",
            Self::Gt => ">",
            Self::Ge => ">=",
        }
    }
}

/// One constraint: a comparator and a (decoded) version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Constraint {
    pub comparator: Comparator,
    pub version: String,
}

/// A parsed `vers:` range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersRange {
    /// The rules its versions follow.
    pub scheme: Scheme,
    /// The scheme name as written (lowercased), e.g. `npm` for [`Scheme::Semver`].
    pub scheme_name: String,
    /// True for `vers:<scheme>/*`: every version.
    pub all: bool,
    /// The constraints in the order given (empty when `all`).
    pub constraints: Vec<Constraint>,
}

/// Longest `vers` accepted.
const MAX_VERS_LEN: usize = 8 * 1024;

fn err(value: &str, reason: impl Into<String>) -> DevicesError {
    DevicesError::Value { kind: "vers", value: short(value), reason: reason.into() }
}

/// At most 64 characters of a value, for error messages.
pub(crate) fn short(s: &str) -> String {
    if s.chars().count() <= 64 { s.to_string() } else { s.chars().take(61).chain("...".chars()).collect() }
}

/// Decode `%XX` escapes; `None` on a bad escape or invalid UTF-8.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return Some(s.to_string());
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

impl VersRange {
    /// Parse a `vers:` URI. Every version must be valid in the scheme's rules.
    pub fn parse(s: &str) -> Result<VersRange> {
        if s.len() > MAX_VERS_LEN {
            return Err(err(s, "too long"));
        }
        let compact: String = s.chars().filter(|c| !c.is_whitespace()).collect();
        let Some((head, rest)) = compact.split_once(':') else {
            return Err(err(s, "no `vers:` prefix"));
        };
        if !head.eq_ignore_ascii_case("vers") {
            return Err(err(s, "no `vers:` prefix"));
        }
        let Some((scheme_name, body)) = rest.split_once('/') else {
            return Err(err(s, "no `/` after the scheme"));
        };
        let scheme_name = scheme_name.to_ascii_lowercase();
        if scheme_name.is_empty() || !scheme_name.bytes().all(|c| c.is_ascii_alphanumeric() || b".-+".contains(&c)) {
            return Err(err(s, "bad scheme name"));
        }
        let scheme = Scheme::from_vers_scheme(&scheme_name);
        let body = body.trim_matches('|');
        if body.is_empty() {
            return Err(err(s, "no constraints"));
        }
        if body == "*" {
            return Ok(VersRange { scheme, scheme_name, all: true, constraints: Vec::new() });
        }
        let mut constraints = Vec::new();
        for part in body.split('|') {
            if part.is_empty() {
                return Err(err(s, "empty constraint"));
            }
            let (comparator, ver) = if let Some(v) = part.strip_prefix(">=") {
                (Comparator::Ge, v)
            } else if let Some(v) = part.strip_prefix("<=") {
                (Comparator::Le, v)
            } else if let Some(v) = part.strip_prefix("!=") {
                (Comparator::Ne, v)
            } else if let Some(v) = part.strip_prefix('<') {
                (Comparator::Lt, v)
            } else if let Some(v) = part.strip_prefix('>') {
                (Comparator::Gt, v)
            } else if let Some(v) = part.strip_prefix('=') {
                (Comparator::Eq, v)
            } else {
                (Comparator::Eq, part)
            };
            if ver == "*" {
                return Err(err(s, "`*` must be the only constraint"));
            }
            let Some(version) = percent_decode(ver) else {
                return Err(err(s, "bad percent-encoding"));
            };
            if version.is_empty() {
                return Err(err(s, "constraint without a version"));
            }
            if compare(scheme, &version, &version).is_none() {
                return Err(err(s, format!("version {:?} is not valid for {}", short(&version), scheme)));
            }
            constraints.push(Constraint { comparator, version });
        }
        Ok(VersRange { scheme, scheme_name, all: false, constraints })
    }

    /// A range of every version.
    pub fn all(scheme: Scheme) -> VersRange {
        VersRange { scheme, scheme_name: scheme.as_str().to_string(), all: true, constraints: Vec::new() }
    }

    /// Whether `version` is in the range; `None` when it is not a valid version of the scheme.
    pub fn contains(&self, version: &str) -> Option<bool> {
        if self.all {
            return Some(true);
        }
        compare(self.scheme, version, version)?;
        let cmp = |v: &str| compare(self.scheme, version, v);
        let mut ranges = Vec::new();
        for c in &self.constraints {
            match c.comparator {
                Comparator::Eq => {
                    if cmp(&c.version)? == Ordering::Equal {
                        return Some(true);
                    }
                }
                Comparator::Ne => {
                    if cmp(&c.version)? == Ordering::Equal {
                        return Some(false);
                    }
                }
                _ => ranges.push(c),
            }
        }
        if ranges.is_empty() {
            return Some(false);
        }
        // Sort the bounds by version (all were validated at parse time).
        let mut sorted = ranges;
        sorted.sort_by(|a, b| compare(self.scheme, &a.version, &b.version).unwrap_or(Ordering::Equal));
        let satisfies = |c: &Constraint| -> Option<bool> {
            let o = cmp(&c.version)?;
            Some(match c.comparator {
                Comparator::Lt => o == Ordering::Less,
                Comparator::Le => o != Ordering::Greater,
                Comparator::Gt => o == Ordering::Greater,
                Comparator::Ge => o != Ordering::Less,
                Comparator::Eq => o == Ordering::Equal,
                Comparator::Ne => o != Ordering::Equal,
            })
        };
        let is_upper = |c: &Constraint| matches!(c.comparator, Comparator::Lt | Comparator::Le);
        let is_lower = |c: &Constraint| matches!(c.comparator, Comparator::Gt | Comparator::Ge);
        if let Some(first) = sorted.first()
            && is_upper(first)
            && satisfies(first)?
        {
            return Some(true);
        }
        if let Some(last) = sorted.last()
            && is_lower(last)
            && satisfies(last)?
        {
            return Some(true);
        }
        for pair in sorted.windows(2) {
            if let [lo, hi] = pair
                && is_lower(lo)
                && is_upper(hi)
                && satisfies(lo)?
                && satisfies(hi)?
            {
                return Some(true);
            }
        }
        Some(false)
    }
}

impl fmt::Display for VersRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "vers:{}/", self.scheme_name)?;
        if self.all {
            return f.write_str("*");
        }
        for (i, c) in self.constraints.iter().enumerate() {
            if i > 0 {
                f.write_str("|")?;
            }
            let op = if c.comparator == Comparator::Eq { "" } else { c.comparator.as_str() };
            write!(f, "{op}{}", encode_version(&c.version))?;
        }
        Ok(())
    }
}

fn encode_version(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '%' | '|' | '<' | '>' | '=' | '!' | '*' | ' ' => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.push_str(&format!("%{b:02X}"));
                }
            }
            _ => out.push(c),
        }
    }
    out
}

/// The scheme an OSV range's versions follow: SEMVER ranges are SemVer, ECOSYSTEM ranges
/// follow their ecosystem; GIT ranges (commit hashes) have none.
fn osv_range_scheme(range: &OsvRange, ecosystem_scheme: Scheme) -> Option<Scheme> {
    match range.kind.to_ascii_uppercase().as_str() {
        "SEMVER" => Some(Scheme::Semver),
        "ECOSYSTEM" => Some(range.ecosystem.as_deref().map_or(ecosystem_scheme, Scheme::from_osv_ecosystem)),
        _ => None,
    }
}

fn event_version(e: &OsvEvent) -> &str {
    match e {
        OsvEvent::Introduced(v) | OsvEvent::Fixed(v) | OsvEvent::LastAffected(v) | OsvEvent::Limit(v) => v,
    }
}

/// One SEMVER or ECOSYSTEM range, read once: its events checked and put in version order
/// (`introduced: "0"` first). `Unknown` when an event's version cannot be read in the scheme:
/// such a range can say neither yes nor no.
#[derive(Debug, Clone)]
enum PreparedRange {
    Events { scheme: Scheme, events: Vec<OsvEvent> },
    Unknown,
}

impl PreparedRange {
    fn new(range: &OsvRange, scheme: Scheme) -> PreparedRange {
        let is_zero = |e: &OsvEvent| matches!(e, OsvEvent::Introduced(v) if v == "0");
        let readable = |e: &OsvEvent| is_zero(e) || compare(scheme, event_version(e), event_version(e)).is_some();
        if !range.events.iter().all(readable) {
            return PreparedRange::Unknown;
        }
        let mut events = range.events.clone();
        events.sort_by(|a, b| match (is_zero(a), is_zero(b)) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (false, false) => compare(scheme, event_version(a), event_version(b)).unwrap_or(Ordering::Equal),
        });
        PreparedRange::Events { scheme, events }
    }

    /// OSV's evaluation: walk the events in version order, switching "affected" on at
    /// `introduced` and off at `fixed`, after `last_affected`, and at `limit`. `None` when a
    /// version cannot be compared.
    fn contains(&self, version: &str) -> Option<bool> {
        let PreparedRange::Events { scheme, events } = self else { return None };
        let mut affected = false;
        for e in events {
            match e {
                OsvEvent::Introduced(v) => {
                    if v == "0" || compare(*scheme, version, v)? != Ordering::Less {
                        affected = true;
                    }
                }
                OsvEvent::Fixed(v) | OsvEvent::Limit(v) => {
                    if compare(*scheme, version, v)? != Ordering::Less {
                        affected = false;
                    }
                }
                OsvEvent::LastAffected(v) => {
                    if compare(*scheme, version, v)? == Ordering::Greater {
                        affected = false;
                    }
                }
            }
        }
        Some(affected)
    }
}

/// One OSV `affected[]` entry's versions and ranges, read once so that checking a version
/// costs a hash lookup, a binary search and a few comparisons. PyPA entries list hundreds of
/// versions; comparing against each one, parsing both sides every time, was most of a fleet
/// scan's time.
#[derive(Debug, Clone)]
pub struct OsvMatcher {
    scheme: Scheme,
    /// Every listed version as written.
    listed: std::collections::HashSet<String>,
    /// The listed versions readable in `scheme`, in its order (for equal-but-differently-written
    /// versions: `1.0` and `1.0.0`).
    sorted: Vec<String>,
    ranges: Vec<PreparedRange>,
}

impl OsvMatcher {
    /// `ecosystem_scheme` orders the `versions` list and ECOSYSTEM ranges without their own
    /// ecosystem. GIT ranges (commits are not versions) are left out.
    pub fn new(ranges: &[OsvRange], versions: &[String], ecosystem_scheme: Scheme) -> OsvMatcher {
        let mut sorted: Vec<String> =
            versions.iter().filter(|v| compare(ecosystem_scheme, v, v).is_some()).cloned().collect();
        sorted.sort_by(|a, b| compare(ecosystem_scheme, a, b).unwrap_or(Ordering::Equal));
        OsvMatcher {
            scheme: ecosystem_scheme,
            listed: versions.iter().cloned().collect(),
            sorted,
            ranges: ranges
                .iter()
                .filter_map(|r| osv_range_scheme(r, ecosystem_scheme).map(|scheme| PreparedRange::new(r, scheme)))
                .collect(),
        }
    }

    /// Whether `version` is affected: listed, or inside a range. `None` when the answer
    /// depends on a range whose versions (or `version`) cannot be compared in the scheme.
    pub fn contains(&self, version: &str) -> Option<bool> {
        if self.listed.contains(version) {
            return Some(true);
        }
        if compare(self.scheme, version, version).is_some()
            && self.sorted.binary_search_by(|v| compare(self.scheme, v, version).unwrap_or(Ordering::Less)).is_ok()
        {
            return Some(true);
        }
        let mut unknown = false;
        for range in &self.ranges {
            match range.contains(version) {
                Some(true) => return Some(true),
                Some(false) => {}
                None => unknown = true,
            }
        }
        if unknown { None } else { Some(false) }
    }
}

/// Whether `version` is affected by one OSV `affected[]` entry: listed in `versions`, or in
/// one of its SEMVER/ECOSYSTEM `ranges`. GIT ranges are ignored (commits are not versions),
/// so for them only the `versions` list applies. `None` when the answer depends on a range
/// whose versions (or `version`) cannot be compared in the scheme. Checking many versions
/// against one entry: build an [`OsvMatcher`] once.
pub fn osv_contains(ranges: &[OsvRange], versions: &[String], ecosystem_scheme: Scheme, version: &str) -> Option<bool> {
    OsvMatcher::new(ranges, versions, ecosystem_scheme).contains(version)
}

/// Every `fixed` version of the non-GIT ranges, in order, without duplicates.
pub fn osv_fixed_versions(ranges: &[OsvRange]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for range in ranges {
        if range.kind.eq_ignore_ascii_case("GIT") {
            continue;
        }
        for e in &range.events {
            if let OsvEvent::Fixed(v) = e
                && !out.contains(v)
            {
                out.push(v.clone());
            }
        }
    }
    out
}
