//! SemVer 2.0.0 (semver.org), and NuGet's variant of it.
//!
//! Precedence: major, minor, patch numerically; a pre-release is lower than its release;
//! pre-release identifiers compare numerically when both are digits, numbers sort before
//! words, words compare in ASCII order, and a shorter list that is a prefix sorts first.
//! Build metadata (`+...`) is ignored.
//!
//! Leniencies for constraint-style versions (cargo, npm, Go): a leading `v` or `V`, and a
//! missing minor or patch (`1`, `1.2`) meaning zero. NuGet allows up to four numbers with
//! leading zeros and compares labels case-insensitively.

use std::cmp::Ordering;

use super::cmp_digits;

/// Which set of rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    SemVer,
    NuGet,
}

struct Version<'a> {
    /// Numeric parts, missing ones absent (compared as zero).
    nums: Vec<&'a str>,
    pre: Vec<&'a str>,
}

fn is_ident_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'-'
}

fn parse(s: &str, flavor: Flavor) -> Option<Version<'_>> {
    let s = s.strip_prefix(['v', 'V']).unwrap_or(s);
    let (rest, build) = match s.split_once('+') {
        Some((r, b)) => (r, Some(b)),
        None => (s, None),
    };
    if let Some(build) = build
        && build.split('.').any(|id| id.is_empty() || !id.bytes().all(is_ident_char))
    {
        return None;
    }
    let (core, pre) = match rest.split_once('-') {
        Some((c, p)) => (c, Some(p)),
        None => (rest, None),
    };
    let max_nums = match flavor {
        Flavor::SemVer => 3,
        Flavor::NuGet => 4,
    };
    let nums: Vec<&str> = core.split('.').collect();
    if nums.is_empty() || nums.len() > max_nums {
        return None;
    }
    for n in &nums {
        if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if flavor == Flavor::SemVer && n.len() > 1 && n.starts_with('0') {
            return None;
        }
    }
    let mut pre_ids = Vec::new();
    if let Some(pre) = pre {
        for id in pre.split('.') {
            if id.is_empty() || !id.bytes().all(is_ident_char) {
                return None;
            }
            if flavor == Flavor::SemVer && id.len() > 1 && id.starts_with('0') && id.bytes().all(|c| c.is_ascii_digit())
            {
                return None;
            }
            pre_ids.push(id);
        }
    }
    Some(Version { nums, pre: pre_ids })
}

fn cmp_ident(a: &str, b: &str, flavor: Flavor) -> Ordering {
    let an = a.bytes().all(|c| c.is_ascii_digit());
    let bn = b.bytes().all(|c| c.is_ascii_digit());
    match (an, bn) {
        (true, true) => cmp_digits(a, b),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
        (false, false) => match flavor {
            Flavor::SemVer => a.cmp(b),
            Flavor::NuGet => a.to_ascii_lowercase().cmp(&b.to_ascii_lowercase()),
        },
    }
}

pub(crate) fn compare(a: &str, b: &str, flavor: Flavor) -> Option<Ordering> {
    let va = parse(a, flavor)?;
    let vb = parse(b, flavor)?;
    let width = va.nums.len().max(vb.nums.len());
    for i in 0..width {
        let x = va.nums.get(i).copied().unwrap_or("0");
        let y = vb.nums.get(i).copied().unwrap_or("0");
        let o = cmp_digits(x, y);
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    Some(match (va.pre.is_empty(), vb.pre.is_empty()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => {
            for (x, y) in va.pre.iter().zip(vb.pre.iter()) {
                let o = cmp_ident(x, y, flavor);
                if o != Ordering::Equal {
                    return Some(o);
                }
            }
            va.pre.len().cmp(&vb.pre.len())
        }
    })
}
