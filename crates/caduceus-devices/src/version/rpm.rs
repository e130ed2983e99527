//! RPM versions: `[epoch:]version[-release]`, each part compared by `rpmvercmp`.
//!
//! rpmvercmp splits into runs of digits and runs of letters, everything else separating
//! them; digits beat letters; numbers compare by value, letters in ASCII order; `~` sorts
//! before anything (even the end: `1.0~rc1 < 1.0`), `^` after the end but before anything
//! else (`1.0 < 1.0^git1 < 1.0.1`). A missing epoch is 0. When only one side has a release,
//! releases are not compared (`1.0` matches every `1.0-N`), as rpm does for dependency
//! ranges.

use std::cmp::Ordering;

use super::cmp_digits;

fn split_evr(s: &str) -> Option<(&str, &str, Option<&str>)> {
    let s = s.trim();
    if s.is_empty() || s.bytes().any(|c| c.is_ascii_whitespace() || c.is_ascii_control()) {
        return None;
    }
    let (epoch, rest) = match s.split_once(':') {
        Some((e, r)) => {
            if e.is_empty() || !e.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            (e, r)
        }
        None => ("0", s),
    };
    let (version, release) = match rest.rsplit_once('-') {
        Some((v, r)) => (v, Some(r)),
        None => (rest, None),
    };
    if version.is_empty() || release.is_some_and(str::is_empty) || version.contains(':') {
        return None;
    }
    if !version.bytes().any(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    Some((epoch, version, release))
}

fn sep(c: u8) -> bool {
    !c.is_ascii_alphanumeric() && c != b'~' && c != b'^'
}

/// rpm's `rpmvercmp` on one version or release string.
pub(crate) fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    loop {
        while a.get(i).is_some_and(|&c| sep(c)) {
            i += 1;
        }
        while b.get(j).is_some_and(|&c| sep(c)) {
            j += 1;
        }
        let (ca, cb) = (a.get(i).copied(), b.get(j).copied());
        if ca.is_none() && cb.is_none() {
            return Ordering::Equal;
        }
        if ca == Some(b'~') || cb == Some(b'~') {
            if ca != Some(b'~') {
                return Ordering::Greater;
            }
            if cb != Some(b'~') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        if ca == Some(b'^') || cb == Some(b'^') {
            if ca.is_none() {
                return Ordering::Less;
            }
            if cb.is_none() {
                return Ordering::Greater;
            }
            if ca != Some(b'^') {
                return Ordering::Greater;
            }
            if cb != Some(b'^') {
                return Ordering::Less;
            }
            i += 1;
            j += 1;
            continue;
        }
        let (Some(ca), Some(_)) = (ca, cb) else {
            break;
        };
        let numeric = ca.is_ascii_digit();
        let class = |c: &u8| if numeric { c.is_ascii_digit() } else { c.is_ascii_alphabetic() };
        let si = i;
        while a.get(i).is_some_and(class) {
            i += 1;
        }
        let sj = j;
        while b.get(j).is_some_and(class) {
            j += 1;
        }
        let sa = std::str::from_utf8(a.get(si..i).unwrap_or_default()).unwrap_or("");
        let sb = std::str::from_utf8(b.get(sj..j).unwrap_or_default()).unwrap_or("");
        if sb.is_empty() {
            // Different kinds of segment: the number is newer.
            return if numeric { Ordering::Greater } else { Ordering::Less };
        }
        let o = if numeric { cmp_digits(sa, sb) } else { sa.cmp(sb) };
        if o != Ordering::Equal {
            return o;
        }
    }
    // One side ran out: the one with segments left is newer.
    if i >= a.len() { Ordering::Less } else { Ordering::Greater }
}

pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let (ea, va, ra) = split_evr(a)?;
    let (eb, vb, rb) = split_evr(b)?;
    let mut o = cmp_digits(ea, eb).then_with(|| rpmvercmp(va, vb));
    if let (Some(ra), Some(rb)) = (ra, rb) {
        o = o.then_with(|| rpmvercmp(ra, rb));
    }
    Some(o)
}
