//! PEP 440 (Python packaging) versions.
//!
//! `[N!]N(.N)*[{a|b|rc}N][.postN][.devN][+local]`, with the normalisations PEP 440 allows:
//! case-insensitive, a leading `v`, `-`/`_`/`.` separators, spellings `alpha`/`beta`/`c`/
//! `pre`/`preview`/`rev`/`r`, implicit numbers (`1.0a` is `1.0a0`), implicit post releases
//! (`1.0-1`). So `1.0.0a1 == 1.0.0-alpha.1`.
//!
//! Order: epoch, release (trailing zeros ignored), then dev-only releases before pre-releases
//! before the release before post releases; a dev release comes before its non-dev
//! counterpart; a local version sorts after the same public version, local segments that are
//! numbers after ones that are words.

use std::cmp::Ordering;

use super::{cmp_digits, take_while};

struct Version {
    epoch: String,
    release: Vec<String>,
    /// (0 = a, 1 = b, 2 = rc, number)
    pre: Option<(u8, String)>,
    post: Option<String>,
    dev: Option<String>,
    local: Option<Vec<String>>,
}

fn is_sep(c: char) -> bool {
    matches!(c, '-' | '_' | '.')
}

/// An optional separator, then one of `words` (longest spellings listed first).
fn word<'a>(r: &'a str, words: &[&'static str]) -> Option<(&'static str, &'a str)> {
    let after_sep = r.strip_prefix(is_sep).unwrap_or(r);
    for cand in [after_sep, r] {
        for w in words {
            if let Some(rest) = cand.strip_prefix(w) {
                return Some((w, rest));
            }
        }
    }
    None
}

/// An optional separator and a number; `"0"` when there is none.
fn number(r: &str) -> (String, &str) {
    let after_sep = r.strip_prefix(is_sep).unwrap_or(r);
    let (d, rest) = take_while(after_sep, |c| c.is_ascii_digit());
    if d.is_empty() { ("0".to_string(), r) } else { (d.to_string(), rest) }
}

fn parse(input: &str) -> Option<Version> {
    let lower = input.trim().to_ascii_lowercase();
    let mut r: &str = lower.strip_prefix('v').unwrap_or(&lower);
    let (first, rest) = take_while(r, |c| c.is_ascii_digit());
    if first.is_empty() {
        return None;
    }
    let mut epoch = "0".to_string();
    let mut release = vec![first.to_string()];
    r = rest;
    if let Some(rest) = r.strip_prefix('!') {
        epoch = first.to_string();
        let (d, rest) = take_while(rest, |c| c.is_ascii_digit());
        if d.is_empty() {
            return None;
        }
        release = vec![d.to_string()];
        r = rest;
    }
    while let Some(rest) = r.strip_prefix('.') {
        let (d, rest) = take_while(rest, |c| c.is_ascii_digit());
        if d.is_empty() {
            break;
        }
        release.push(d.to_string());
        r = rest;
    }
    let mut pre = None;
    if let Some((w, rest)) = word(r, &["alpha", "beta", "preview", "pre", "rc", "a", "b", "c"]) {
        let rank = match w {
            "alpha" | "a" => 0,
            "beta" | "b" => 1,
            _ => 2,
        };
        let (n, rest) = number(rest);
        pre = Some((rank, n));
        r = rest;
    }
    let mut post = None;
    if let Some((_, rest)) = word(r, &["post", "rev", "r"]) {
        let (n, rest) = number(rest);
        post = Some(n);
        r = rest;
    } else if let Some(rest) = r.strip_prefix('-') {
        let (d, rest) = take_while(rest, |c| c.is_ascii_digit());
        if !d.is_empty() {
            post = Some(d.to_string());
            r = rest;
        }
    }
    let mut dev = None;
    if let Some((_, rest)) = word(r, &["dev"]) {
        let (n, rest) = number(rest);
        dev = Some(n);
        r = rest;
    }
    let mut local = None;
    if let Some(rest) = r.strip_prefix('+') {
        let segs: Vec<String> = rest.split(is_sep).map(str::to_string).collect();
        if segs.iter().any(|s| s.is_empty() || !s.bytes().all(|c| c.is_ascii_alphanumeric())) {
            return None;
        }
        local = Some(segs);
        r = "";
    }
    if !r.is_empty() {
        return None;
    }
    Some(Version { epoch, release, pre, post, dev, local })
}

fn cmp_release(a: &[String], b: &[String]) -> Ordering {
    let n = a.len().max(b.len());
    for i in 0..n {
        let x = a.get(i).map_or("0", String::as_str);
        let y = b.get(i).map_or("0", String::as_str);
        let o = cmp_digits(x, y);
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Pre-release key: dev-only releases lowest, then pre-releases, then everything else.
fn pre_key(v: &Version) -> (u8, u8, &str) {
    match &v.pre {
        Some((rank, n)) => (1, *rank, n.as_str()),
        None if v.post.is_none() && v.dev.is_some() => (0, 0, ""),
        None => (2, 0, ""),
    }
}

fn cmp_local(a: &Option<Vec<String>>, b: &Option<Vec<String>>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(a), Some(b)) => {
            for (x, y) in a.iter().zip(b.iter()) {
                let xn = x.bytes().all(|c| c.is_ascii_digit());
                let yn = y.bytes().all(|c| c.is_ascii_digit());
                let o = match (xn, yn) {
                    (true, true) => cmp_digits(x, y),
                    (true, false) => Ordering::Greater,
                    (false, true) => Ordering::Less,
                    (false, false) => x.cmp(y),
                };
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.len().cmp(&b.len())
        }
    }
}

pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let va = parse(a)?;
    let vb = parse(b)?;
    let o = cmp_digits(&va.epoch, &vb.epoch)
        .then_with(|| cmp_release(&va.release, &vb.release))
        .then_with(|| {
            let (pa, pb) = (pre_key(&va), pre_key(&vb));
            pa.0.cmp(&pb.0).then(pa.1.cmp(&pb.1)).then_with(|| cmp_digits(pa.2, pb.2))
        })
        .then_with(|| match (&va.post, &vb.post) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Less,
            (Some(_), None) => Ordering::Greater,
            (Some(x), Some(y)) => cmp_digits(x, y),
        })
        .then_with(|| match (&va.dev, &vb.dev) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => cmp_digits(x, y),
        })
        .then_with(|| cmp_local(&va.local, &vb.local));
    Some(o)
}
