//! Alpine apk versions: `N(.N)*[a-z](_suffix[N])*[-rN]`.
//!
//! Numbers compare by value (after the first, one with a leading zero compares as a decimal
//! fraction, i.e. as text); a version with more numbers is newer; then the optional letter
//! (none first); then suffixes, `alpha < beta < pre < rc < (none) < cvs < svn < git < hg < p`,
//! each with its number; then the `-rN` package revision.

use std::cmp::Ordering;

use super::{cmp_digits, take_while};

struct Version<'a> {
    nums: Vec<&'a str>,
    letter: Option<u8>,
    suffixes: Vec<(u8, &'a str)>,
    revision: &'a str,
}

const RELEASE_RANK: u8 = 4;

fn suffix_rank(w: &str) -> Option<u8> {
    Some(match w {
        "alpha" => 0,
        "beta" => 1,
        "pre" => 2,
        "rc" => 3,
        "cvs" => 5,
        "svn" => 6,
        "git" => 7,
        "hg" => 8,
        "p" => 9,
        _ => return None,
    })
}

fn parse(s: &str) -> Option<Version<'_>> {
    let (first, mut r) = take_while(s, |c| c.is_ascii_digit());
    if first.is_empty() {
        return None;
    }
    let mut nums = vec![first];
    while let Some(rest) = r.strip_prefix('.') {
        let (d, rest) = take_while(rest, |c| c.is_ascii_digit());
        if d.is_empty() {
            return None;
        }
        nums.push(d);
        r = rest;
    }
    let mut letter = None;
    if let Some(c) = r.bytes().next().filter(u8::is_ascii_lowercase) {
        letter = Some(c);
        r = r.get(1..)?;
    }
    let mut suffixes = Vec::new();
    while let Some(rest) = r.strip_prefix('_') {
        let (w, rest) = take_while(rest, |c| c.is_ascii_lowercase());
        let rank = suffix_rank(w)?;
        let (d, rest) = take_while(rest, |c| c.is_ascii_digit());
        suffixes.push((rank, d));
        r = rest;
    }
    let mut revision = "";
    if let Some(rest) = r.strip_prefix("-r") {
        let (d, rest) = take_while(rest, |c| c.is_ascii_digit());
        if d.is_empty() {
            return None;
        }
        revision = d;
        r = rest;
    }
    if !r.is_empty() {
        return None;
    }
    Some(Version { nums, letter, suffixes, revision })
}

pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let va = parse(a)?;
    let vb = parse(b)?;
    for (i, (x, y)) in va.nums.iter().zip(vb.nums.iter()).enumerate() {
        let fractional = i > 0 && (x.starts_with('0') || y.starts_with('0'));
        let o = if fractional { x.cmp(y) } else { cmp_digits(x, y) };
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    let o = va.nums.len().cmp(&vb.nums.len()).then(va.letter.cmp(&vb.letter));
    if o != Ordering::Equal {
        return Some(o);
    }
    for i in 0..va.suffixes.len().max(vb.suffixes.len()) {
        let (ra, na) = va.suffixes.get(i).copied().unwrap_or((RELEASE_RANK, ""));
        let (rb, nb) = vb.suffixes.get(i).copied().unwrap_or((RELEASE_RANK, ""));
        let o = ra.cmp(&rb).then_with(|| cmp_digits(na, nb));
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    Some(cmp_digits(va.revision, vb.revision))
}
