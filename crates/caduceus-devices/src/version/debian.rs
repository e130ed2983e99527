//! Debian package versions (Debian Policy 5.6.12, dpkg's `verrevcmp`).
//!
//! `[epoch:]upstream[-revision]`: the epoch is a number (default 0); the revision is what
//! follows the last `-`. Upstream and revision compare alike: alternately a run of non-digits,
//! compared character by character where `~` sorts before everything (even the end), letters
//! before non-letters; then a run of digits compared numerically.

use std::cmp::Ordering;

use super::cmp_digits;

struct Version<'a> {
    epoch: &'a str,
    upstream: &'a str,
    revision: &'a str,
}

fn parse(s: &str) -> Option<Version<'_>> {
    let s = s.trim();
    if s.is_empty() || s.bytes().any(|c| c.is_ascii_whitespace()) {
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
    let (upstream, revision) = match rest.rsplit_once('-') {
        Some((u, r)) => {
            if r.is_empty() {
                return None;
            }
            (u, r)
        }
        None => (rest, ""),
    };
    if !upstream.bytes().next().is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    if !upstream.bytes().all(|c| c.is_ascii_alphanumeric() || b".+~-".contains(&c)) {
        return None;
    }
    if !revision.bytes().all(|c| c.is_ascii_alphanumeric() || b".+~".contains(&c)) {
        return None;
    }
    Some(Version { epoch, upstream, revision })
}

/// dpkg's weight of one non-digit character; 0 is the end of the string (or a digit).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

/// dpkg's `verrevcmp`.
pub(crate) fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0usize, 0usize);
    let digit_at = |s: &[u8], k: usize| s.get(k).is_some_and(|c| c.is_ascii_digit());
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit_at(a, i)) || (j < b.len() && !digit_at(b, j)) {
            let ac = order(a.get(i).copied());
            let bc = order(b.get(j).copied());
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        let si = i;
        while digit_at(a, i) {
            i += 1;
        }
        let sj = j;
        while digit_at(b, j) {
            j += 1;
        }
        let da = std::str::from_utf8(a.get(si..i).unwrap_or_default()).unwrap_or("");
        let db = std::str::from_utf8(b.get(sj..j).unwrap_or_default()).unwrap_or("");
        let o = cmp_digits(da, db);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let va = parse(a)?;
    let vb = parse(b)?;
    Some(
        cmp_digits(va.epoch, vb.epoch)
            .then_with(|| verrevcmp(va.upstream, vb.upstream))
            .then_with(|| verrevcmp(va.revision, vb.revision)),
    )
}
