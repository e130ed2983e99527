//! Turning CSAF `product_version_range` names into `vers:` ranges.
//!
//! CSAF 2.0 asks for a `vers:` URI here, but real advisories mostly write free text. The forms
//! CISA actually uses are translated into `vers:generic/...`: comparator lists (`<= 3.2`,
//! `>= 1.0 | <= 2.0`, `>= V2.0 and < V2.1.6`), `All versions [< X]`, CISA's own
//! `vers:all/<V2.9.7` and the word forms `prior to X`, `before X`, `X and prior`/`earlier`.
//! Text with conditions, dates, several disjoint upper bounds or remarks in parentheses is
//! not guessed at: the caller keeps it as unparsed.

/// The `vers:` URI for a range name, or `None` when the text cannot be translated faithfully.
pub fn translate_range(text: &str) -> Option<String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.len() > 200 {
        return None;
    }
    if let Some(rest) = strip_prefix_ci(trimmed, "vers:") {
        return translate_vers(rest);
    }
    let constraints = translate_words(trimmed)?;
    render(&constraints)
}

/// One `vers` constraint: comparator (empty for equality) and version.
#[derive(Debug, Clone, PartialEq)]
struct Constraint {
    op: &'static str,
    version: String,
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) { s.get(prefix.len()..) } else { None }
}

fn strip_suffix_ci<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let cut = s.len().checked_sub(suffix.len())?;
    let tail = s.get(cut..)?;
    if tail.eq_ignore_ascii_case(suffix) { s.get(..cut) } else { None }
}

/// `vers:<scheme>/<constraints>`: a proper URI is kept; CISA's `vers:all/...` (there is no
/// scheme `all`) becomes `vers:generic/...`, splitting run-together constraints.
fn translate_vers(rest: &str) -> Option<String> {
    let (scheme, body) = rest.split_once('/')?;
    let scheme = scheme.trim().to_ascii_lowercase();
    if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.') {
        return None;
    }
    let body = body.trim();
    if scheme != "all" {
        if body.is_empty() || body.contains(char::is_whitespace) {
            return None;
        }
        return Some(format!("vers:{scheme}/{body}"));
    }
    if body == "*" {
        return Some("vers:generic/*".to_owned());
    }
    let constraints = parse_constraints(body)?;
    render(&constraints)
}

/// The free-text forms.
fn translate_words(text: &str) -> Option<Vec<Constraint>> {
    let mut s = collapse_spaces(text);
    // "1.02.15 (build 286)": the build number adds nothing a version comparison can use.
    if let Some(open) = s.to_ascii_lowercase().rfind(" (build ")
        && s.ends_with(')')
        && s.get(open + 8..s.len() - 1).is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    {
        s.truncate(open);
    }
    // "All versions", "All BIOS versions", "All_versions" prefix.
    for prefix in ["all versions", "all bios versions", "all_versions"] {
        if let Some(rest) = strip_prefix_ci(&s, prefix) {
            let rest = rest.trim();
            if rest.is_empty() {
                return Some(vec![Constraint { op: "*", version: String::new() }]);
            }
            if !rest.starts_with(['<', '>', '=']) {
                // "All versions with ...", "All versions only if ...": conditional.
                return None;
            }
            s = rest.to_owned();
            break;
        }
    }
    let lower = s.to_ascii_lowercase();
    // Word forms with one bound.
    for (prefix, op) in [
        ("prior to ", "<"),
        ("versions prior to ", "<"),
        ("before ", "<"),
        ("versions before ", "<"),
        ("earlier than ", "<"),
        ("up to and including ", "<="),
        ("up to ", "<="),
    ] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let start = s.len().checked_sub(rest.len())?;
            let version = clean_version(s.get(start..)?)?;
            return Some(vec![Constraint { op, version }]);
        }
    }
    for (suffix, op) in [
        (" and prior", "<="),
        (" and earlier", "<="),
        (" or earlier", "<="),
        (" or prior", "<="),
        (" and older", "<="),
        (" and later", ">="),
        (" and newer", ">="),
        (" or later", ">="),
        (" and above", ">="),
    ] {
        if let Some(head) = strip_suffix_ci(&s, suffix) {
            let head = strip_prefix_ci(head.trim(), "versions ").unwrap_or(head);
            let head = strip_prefix_ci(head.trim(), "version ").unwrap_or(head);
            let version = clean_version(head)?;
            return Some(vec![Constraint { op, version }]);
        }
    }
    // "0 < 9.8.12": a lower bound written before the comparator.
    if let Some((low, high)) = s.split_once(" < ")
        && is_plain_number(low.trim())
        && !high.contains(['<', '>', '|'])
    {
        return Some(vec![
            Constraint { op: ">", version: clean_version(low)? },
            Constraint { op: "<", version: clean_version(high)? },
        ]);
    }
    let joined = replace_ci(&s, " and ", "|");
    parse_constraints(&joined)
}

fn is_plain_number(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_digit() || c == '.')
}

fn collapse_spaces(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn replace_ci(s: &str, needle: &str, with: &str) -> String {
    let lower = s.to_ascii_lowercase();
    let mut out = String::with_capacity(s.len());
    let mut pos = 0;
    while let Some(found) = lower.get(pos..).and_then(|rest| rest.find(needle)) {
        let at = pos + found;
        out.push_str(s.get(pos..at).unwrap_or_default());
        out.push_str(with);
        pos = at + needle.len();
    }
    out.push_str(s.get(pos..).unwrap_or_default());
    out
}

/// A list of constraints separated by `|` or run together (`>=V5.4<V5.5 SP1`).
fn parse_constraints(body: &str) -> Option<Vec<Constraint>> {
    let mut out = Vec::new();
    let mut rest = body.trim();
    while !rest.is_empty() {
        rest = rest.trim_start_matches(|c: char| c == '|' || c.is_whitespace());
        if rest.is_empty() {
            break;
        }
        let (op, after) = if let Some(r) = rest.strip_prefix("<=") {
            ("<=", r)
        } else if let Some(r) = rest.strip_prefix(">=") {
            (">=", r)
        } else if let Some(r) = rest.strip_prefix("!=") {
            ("!=", r)
        } else if let Some(r) = rest.strip_prefix('<') {
            ("<", r)
        } else if let Some(r) = rest.strip_prefix('>') {
            (">", r)
        } else if let Some(r) = rest.strip_prefix('=') {
            ("", r)
        } else {
            ("", rest)
        };
        let end = after.find(['|', '<', '>', '=', '!']).unwrap_or(after.len());
        let (raw, tail) = after.split_at_checked(end)?;
        // A bare version run into a comparator (`A10 < A11`) is ambiguous.
        if op.is_empty() && tail.starts_with(['<', '>', '=', '!']) {
            return None;
        }
        if raw.trim() == "*" && op.is_empty() {
            out.push(Constraint { op: "*", version: String::new() });
        } else {
            let (op, version) = expand_wildcard(op, &clean_version(raw)?)?;
            out.push(Constraint { op, version });
        }
        rest = tail;
    }
    if out.is_empty() { None } else { Some(out) }
}

/// `11.x` style wildcards: `<= 11.x` is `< 12`, `< 3.x` is `< 3`, `>= 6.x` is `>= 6`.
fn expand_wildcard(op: &'static str, version: &str) -> Option<(&'static str, String)> {
    let parts: Vec<&str> = version.split('.').collect();
    let wild = |p: &&str| p.eq_ignore_ascii_case("x") || *p == "*";
    // `8.1x`, `R16x`: a wildcard glued to a number says nothing precise.
    let glued = |p: &&str| {
        p.len() > 1 && (p.ends_with(['x', 'X'])) && p.chars().rev().nth(1).is_some_and(|c| c.is_ascii_digit())
    };
    if parts.iter().any(glued) {
        return None;
    }
    let Some(first_wild) = parts.iter().position(wild) else {
        if version.contains(['*']) {
            return None;
        }
        return Some((op, version.to_owned()));
    };
    // Only trailing wildcards, after at least one numeric component.
    let (fixed, wilds) = parts.split_at_checked(first_wild)?;
    if fixed.is_empty() || !wilds.iter().all(wild) || !fixed.iter().all(|p| is_plain_number(p)) {
        return None;
    }
    let prefix = fixed.join(".");
    match op {
        "<" | ">=" => Some((op, prefix)),
        "<=" | ">" => {
            let (head, last) = fixed.split_at_checked(fixed.len().checked_sub(1)?)?;
            let next = last.first()?.parse::<u64>().ok()?.checked_add(1)?;
            let mut bumped: Vec<String> = head.iter().map(|s| (*s).to_owned()).collect();
            bumped.push(next.to_string());
            Some((if op == "<=" { "<" } else { ">=" }, bumped.join(".")))
        }
        _ => None,
    }
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// Words that may follow a version number (`V5.1 SP1 HF4`, `V18 Update 1`, `1.8.4 Service Pack 01`).
const QUALIFIERS: [&str; 6] = ["update", "upd", "patch", "service", "pack", "build"];

/// A version as written, or `None` when the "version" is really prose.
fn clean_version(raw: &str) -> Option<String> {
    let v = collapse_spaces(raw);
    let v = v.trim_end_matches('.').trim();
    if v.is_empty() || v.len() > 64 || !v.chars().any(|c| c.is_ascii_digit() || c.is_ascii_uppercase()) {
        // Needs a digit, or a capital letter version such as `K` or `N`.
        return None;
    }
    if v.contains(['(', ')', ',', ';', '/', '"', '\'']) || !v.is_ascii() {
        return None;
    }
    for word in v.split(|c: char| !c.is_ascii_alphabetic()) {
        let w = word.to_ascii_lowercase();
        if MONTHS.contains(&w.as_str())
            || ["on", "with", "if", "only", "and", "or", "through", "versions", "version", "all"].contains(&w.as_str())
        {
            return None;
        }
        if w.len() >= 5 && !QUALIFIERS.contains(&w.as_str()) {
            return None;
        }
    }
    Some(v.to_owned())
}

/// `vers:generic/<c>|<c>` after checking the constraints make a well-formed range.
fn render(constraints: &[Constraint]) -> Option<String> {
    if constraints.iter().any(|c| c.op == "*") {
        return if constraints.len() == 1 { Some("vers:generic/*".to_owned()) } else { None };
    }
    // Ignoring equalities, bounds must alternate lower/upper (never two upper bounds in a row).
    let mut last_kind: Option<bool> = None;
    for c in constraints {
        let upper = match c.op {
            "<" | "<=" => true,
            ">" | ">=" => false,
            _ => continue,
        };
        if last_kind == Some(upper) {
            return None;
        }
        last_kind = Some(upper);
    }
    let parts: Vec<String> = constraints.iter().map(|c| format!("{}{}", c.op, encode(&c.version))).collect();
    Some(format!("vers:generic/{}", parts.join("|")))
}

/// Percent-encode what a `vers` version may not contain literally.
fn encode(version: &str) -> String {
    let mut out = String::with_capacity(version.len());
    for c in version.chars() {
        match c {
            ' ' => out.push_str("%20"),
            '%' => out.push_str("%25"),
            '|' => out.push_str("%7C"),
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::translate_range;

    #[test]
    fn forms_cisa_uses() {
        let cases = [
            ("vers:all/*", Some("vers:generic/*")),
            ("All versions", Some("vers:generic/*")),
            ("vers:all/<V2.9.7", Some("vers:generic/<V2.9.7")),
            ("vers:all/>=V5.4<V5.5 SP1", Some("vers:generic/>=V5.4|<V5.5%20SP1")),
            ("< V4.1.4", Some("vers:generic/<V4.1.4")),
            ("<=3.2", Some("vers:generic/<=3.2")),
            (">= 1.3 | <= 3.1", Some("vers:generic/>=1.3|<=3.1")),
            ("All versions >= V2.0 and < V2.5", Some("vers:generic/>=V2.0|<V2.5")),
            ("prior to 4.1", Some("vers:generic/<4.1")),
            ("versions before 10.2", Some("vers:generic/<10.2")),
            ("10.1 and prior", Some("vers:generic/<=10.1")),
            ("<= 11.x", Some("vers:generic/<12")),
            ("< 3.x", Some("vers:generic/<3")),
            ("8.001|8.002|9.001", Some("vers:generic/8.001|8.002|9.001")),
            ("0 < 9.8.12", Some("vers:generic/>0|<9.8.12")),
            ("vers:semver/>=1.0.0|<2.0.0", Some("vers:semver/>=1.0.0|<2.0.0")),
            ("< april 1, 2018", None),
            ("All versions with OIS Extension Module", None),
            ("<= U61 |<= L81", None),
            ("< 19.0.1 | < 18.0.1", None),
            ("<= 11.2 on Windows 8.1 with IIS 7.5", None),
            ("<= 4.11.00 (Versions removed from the scope of this advisory)", None),
            ("< SIMATIC WinAC RTX 2010 SP3", None),
            ("< 8.1x", None),
            ("A10 < A11", None),
            ("1.02.15 (build 286)", Some("vers:generic/1.02.15")),
        ];
        for (text, want) in cases {
            assert_eq!(translate_range(text).as_deref(), want, "{text}");
        }
    }
}
