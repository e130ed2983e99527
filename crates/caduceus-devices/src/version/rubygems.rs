//! RubyGems versions (`Gem::Version`).
//!
//! Segments are runs of digits or of letters (`1.0.a10` is `[1, 0, "a", 10]`; a `-` means
//! `.pre.`); any letter makes a pre-release. Trailing zeros of the numeric part and of the
//! rest are dropped; segments compare pairwise with a missing one as 0, numbers by value,
//! words in ASCII order, and a word before a number.

use std::cmp::Ordering;

use super::cmp_digits;

#[derive(Debug, Clone, PartialEq)]
enum Seg {
    Num(String),
    Word(String),
}

fn parse(s: &str) -> Option<Vec<Seg>> {
    let s = s.trim();
    let (main, pre) = match s.split_once('-') {
        Some((m, p)) => (m, Some(p)),
        None => (s, None),
    };
    if !main.bytes().next().is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    let ok_main = main.split('.').all(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_alphanumeric()));
    let ok_pre = pre.is_none_or(|p| {
        p.split('.').all(|q| !q.is_empty() && q.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'))
    });
    if !ok_main || !ok_pre {
        return None;
    }
    let text = match pre {
        Some(p) => format!("{main}.pre.{p}"),
        None => main.to_string(),
    };
    let mut segs = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes.get(i).copied().unwrap_or(0);
        if !c.is_ascii_alphanumeric() {
            i += 1;
            continue;
        }
        let digit = c.is_ascii_digit();
        let start = i;
        while bytes.get(i).is_some_and(|b| if digit { b.is_ascii_digit() } else { b.is_ascii_alphabetic() }) {
            i += 1;
        }
        let run = text.get(start..i).unwrap_or("").to_string();
        segs.push(if digit { Seg::Num(run) } else { Seg::Word(run) });
    }
    // canonical_segments: split at the first word, drop trailing zeros of each part.
    let split = segs.iter().position(|s| matches!(s, Seg::Word(_))).unwrap_or(segs.len());
    let rest = segs.split_off(split);
    let mut out = Vec::new();
    for mut part in [segs, rest] {
        while matches!(part.last(), Some(Seg::Num(n)) if n.trim_start_matches('0').is_empty()) {
            part.pop();
        }
        out.extend(part);
    }
    Some(out)
}

pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let sa = parse(a)?;
    let sb = parse(b)?;
    let zero = Seg::Num(String::new());
    for i in 0..sa.len().max(sb.len()) {
        let o = match (sa.get(i).unwrap_or(&zero), sb.get(i).unwrap_or(&zero)) {
            (Seg::Num(x), Seg::Num(y)) => cmp_digits(x, y),
            (Seg::Word(_), Seg::Num(_)) => Ordering::Less,
            (Seg::Num(_), Seg::Word(_)) => Ordering::Greater,
            (Seg::Word(x), Seg::Word(y)) => x.cmp(y),
        };
        if o != Ordering::Equal {
            return Some(o);
        }
    }
    Some(Ordering::Equal)
}
