//! Generic versions, for ecosystems without rules of their own (firmware, vendor products).
//!
//! A version is ASCII letters, digits and the separators `.-_+~:`. It is split into runs of
//! digits and runs of letters (lowercased); the separators only separate. A leading `v` is ignored, and the first run must be a number: a string that
//! does not start with a number is not a version here. Runs compare pairwise:
//! - numbers by value, however long (`2.8.123e > 2.8.75`);
//! - the words `dev < alpha = a < beta = b < milestone = m < pre = preview < rc = c = cr`
//!   are pre-releases, before the release (`1.0rc1 < 1.0`); the single letters count only
//!   when a number follows (`1.0a1` is alpha 1, `1.0.2a` is a patch);
//! - `final`, `ga`, `release` and `stable` are the release itself;
//! - any other word is a later patch (`4.2.8 < 4.2.8p9 < 4.2.8p18 < 4.2.9`), after the
//!   pre-releases and before any number at the same place;
//! - a missing run is a zero (`1.0 == 1.0.0`).

use std::cmp::Ordering;

use super::cmp_digits;

#[derive(Debug)]
enum Tok {
    Num(String),
    Pre(u8),
    Word(String),
}

fn pre_rank(w: &str, number_follows: bool) -> Option<u8> {
    match w {
        "dev" | "snapshot" => Some(0),
        "alpha" => Some(1),
        "beta" => Some(2),
        "milestone" => Some(3),
        "pre" | "preview" => Some(4),
        "rc" | "cr" => Some(5),
        "a" if number_follows => Some(1),
        "b" if number_follows => Some(2),
        "m" if number_follows => Some(3),
        "c" if number_follows => Some(5),
        _ => None,
    }
}

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    // Letters, digits and the usual separators only: `>=1.0` or `1.0 beta` are not versions.
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_alphanumeric() || b".-_+~:".contains(&c)) {
        return None;
    }
    let lower = s.to_ascii_lowercase();
    let body = lower.strip_prefix('v').unwrap_or(&lower);
    // Runs of ASCII digits or letters, with whether the next run follows directly.
    let mut runs: Vec<(bool, &str, usize)> = Vec::new();
    let bytes = body.as_bytes();
    let mut i = 0usize;
    while i < bytes.len() {
        let c = bytes.get(i).copied().unwrap_or(0);
        if c.is_ascii_alphanumeric() {
            let digit = c.is_ascii_digit();
            let start = i;
            while bytes.get(i).is_some_and(|b| if digit { b.is_ascii_digit() } else { b.is_ascii_alphabetic() }) {
                i += 1;
            }
            runs.push((digit, body.get(start..i).unwrap_or(""), i));
        } else {
            i += 1;
        }
    }
    if !body.bytes().next().is_some_and(|c| c.is_ascii_digit()) {
        return None;
    }
    let mut toks = Vec::with_capacity(runs.len());
    for (k, (digit, text, end)) in runs.iter().enumerate() {
        if *digit {
            toks.push(Tok::Num(text.to_string()));
            continue;
        }
        let number_follows = runs.get(k + 1).is_some_and(|n| n.0 && n.2 - n.1.len() == *end);
        if matches!(*text, "final" | "ga" | "release" | "stable") {
            continue;
        }
        match pre_rank(text, number_follows) {
            Some(r) => toks.push(Tok::Pre(r)),
            None => toks.push(Tok::Word(text.to_string())),
        }
    }
    Some(toks)
}

pub(crate) fn compare(a: &str, b: &str) -> Option<Ordering> {
    let ta = tokenize(a)?;
    let tb = tokenize(b)?;
    let zero = Tok::Num(String::new());
    for i in 0..ta.len().max(tb.len()) {
        let x = ta.get(i).unwrap_or(&zero);
        let y = tb.get(i).unwrap_or(&zero);
        let o = match (x, y) {
            (Tok::Num(p), Tok::Num(q)) => cmp_digits(p, q),
            (Tok::Num(_), _) => Ordering::Greater,
            (_, Tok::Num(_)) => Ordering::Less,
            (Tok::Pre(p), Tok::Pre(q)) => p.cmp(q),
            (Tok::Pre(_), Tok::Word(_)) => Ordering::Less,
            (Tok::Word(_), Tok::Pre(_)) => Ordering::Greater,
            (Tok::Word(p), Tok::Word(q)) => p.cmp(q),
        };
        if o != Ordering::Equal {
            // A missing run stands for zero; against a word or pre-release that zero is the
            // release itself, so the sign comes from the word, not from "number beats word".
            return Some(match (ta.get(i), tb.get(i)) {
                (None, Some(Tok::Pre(_))) | (Some(Tok::Word(_)), None) => Ordering::Greater,
                (None, Some(Tok::Word(_))) | (Some(Tok::Pre(_)), None) => Ordering::Less,
                _ => o,
            });
        }
    }
    Some(Ordering::Equal)
}
