//! Compiled detections and their evaluation against one event: value
//! matchers (patterns on folded text, regular expressions, networks,
//! numbers, dates, field references), items (a field and its values),
//! selections and the condition tree. Built by `compile.rs`; knows nothing
//! of YAML.

use std::net::IpAddr;

use memchr::memmem::Finder;
use regex::Regex;

use super::event::{Entry, Event, Val};

/// A field name interned by the rule set (folded name → id).
pub(crate) type FieldId = u32;

/// A wildcard pattern, already folded unless the matcher is case-sensitive.
#[derive(Debug)]
pub(crate) enum Pattern {
    /// `*`: any value.
    Any,
    Exact(Box<str>),
    Prefix(Box<str>),
    Suffix(Box<str>),
    /// Boxed: a compiled searcher is a few hundred bytes.
    Contains(Box<Finder<'static>>),
    Glob(Glob),
}

/// A pattern with `*` inside or `?` anywhere: literal segments between
/// stars, each matched leftmost-first (correct because every segment has a
/// fixed length in characters).
#[derive(Debug)]
pub(crate) struct Glob {
    pub(crate) segs: Vec<Seg>,
    pub(crate) anchored_start: bool,
    pub(crate) anchored_end: bool,
}

#[derive(Debug)]
pub(crate) enum Seg {
    Lit(Box<Finder<'static>>),
    /// Characters, `None` for `?` (exactly one character).
    Wild(Vec<Option<char>>),
}

impl Seg {
    /// End of the segment when it matches at byte `at`.
    fn match_at(&self, text: &str, at: usize) -> Option<usize> {
        let rest = text.get(at..)?;
        match self {
            Seg::Lit(f) => rest.as_bytes().starts_with(f.needle()).then(|| at + f.needle().len()),
            Seg::Wild(chars) => {
                let mut it = rest.char_indices();
                for want in chars {
                    let (_, c) = it.next()?;
                    if want.is_some_and(|w| w != c) {
                        return None;
                    }
                }
                Some(it.next().map_or(text.len(), |(i, _)| at + i))
            }
        }
    }

    /// Leftmost (start, end) at or after byte `from`.
    fn find_from(&self, text: &str, from: usize) -> Option<(usize, usize)> {
        let rest = text.get(from..)?;
        match self {
            Seg::Lit(f) => f.find(rest.as_bytes()).map(|i| (from + i, from + i + f.needle().len())),
            Seg::Wild(_) => rest
                .char_indices()
                .map(|(i, _)| from + i)
                .chain(std::iter::once(text.len()))
                .find_map(|start| self.match_at(text, start).map(|end| (start, end))),
        }
    }

    /// Start of the segment when it ends exactly at the end of `text`, not
    /// before byte `min`.
    fn match_end(&self, text: &str, min: usize) -> Option<usize> {
        let start = match self {
            Seg::Lit(f) => text.len().checked_sub(f.needle().len())?,
            Seg::Wild(chars) => {
                let n = chars.len();
                if n == 0 { text.len() } else { text.char_indices().rev().nth(n - 1)?.0 }
            }
        };
        (start >= min && self.match_at(text, start) == Some(text.len())).then_some(start)
    }
}

impl Glob {
    fn matches(&self, text: &str) -> bool {
        let n = self.segs.len();
        let mut pos = 0;
        for (i, seg) in self.segs.iter().enumerate() {
            let first = i == 0;
            let last = i + 1 == n;
            if first && self.anchored_start {
                match seg.match_at(text, 0) {
                    Some(end) => pos = end,
                    None => return false,
                }
                if last && self.anchored_end {
                    return pos == text.len();
                }
            } else if last && self.anchored_end {
                return seg.match_end(text, pos).is_some();
            } else {
                match seg.find_from(text, pos) {
                    Some((_, end)) => pos = end,
                    None => return false,
                }
            }
        }
        // All segments found; an anchored end with no segment after the
        // last star cannot happen (the last piece would be a star).
        !self.anchored_end || pos == text.len()
    }
}

impl Pattern {
    pub(crate) fn matches(&self, text: &str) -> bool {
        match self {
            Pattern::Any => true,
            Pattern::Exact(s) => text == &**s,
            Pattern::Prefix(s) => text.starts_with(&**s),
            Pattern::Suffix(s) => text.ends_with(&**s),
            Pattern::Contains(f) => f.find(text.as_bytes()).is_some(),
            Pattern::Glob(g) => g.matches(text),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl Cmp {
    fn test(self, left: f64, right: f64) -> bool {
        match self {
            Cmp::Eq => left == right,
            Cmp::Lt => left < right,
            Cmp::Lte => left <= right,
            Cmp::Gt => left > right,
            Cmp::Gte => left >= right,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TimePart {
    Minute,
    Hour,
    Day,
    Week,
    Month,
    Year,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RefKind {
    Exact,
    Prefix,
    Suffix,
    Contains,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cidr {
    pub(crate) net: IpAddr,
    pub(crate) prefix: u8,
}

impl Cidr {
    fn contains(&self, text: &str) -> bool {
        let text = text.trim();
        let text = text.split('%').next().unwrap_or(text);
        let Ok(ip) = text.parse::<IpAddr>() else { return false };
        let ip = match (ip, self.net) {
            (IpAddr::V6(v6), IpAddr::V4(_)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            (ip, _) => ip,
        };
        match (ip, self.net) {
            (IpAddr::V4(a), IpAddr::V4(n)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix.min(32))) };
                u32::from(a) & mask == u32::from(n) & mask
            }
            (IpAddr::V6(a), IpAddr::V6(n)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix.min(128))) };
                u128::from(a) & mask == u128::from(n) & mask
            }
            _ => false,
        }
    }
}

/// How one value of a Sigma item is compared with one value of the event.
#[derive(Debug)]
pub(crate) enum Matcher {
    Str {
        pat: Pattern,
        cased: bool,
    },
    Regex(Regex),
    Cidr(Cidr),
    Num(Cmp, f64),
    Time(TimePart, Cmp, f64),
    FieldRef {
        field: FieldId,
        kind: RefKind,
        cased: bool,
    },
    /// `null`: the field is absent or null.
    Null,
    /// `exists`: the field is (or is not) present, whatever its value.
    Exists(bool),
    /// A placeholder with no value configured: never matches.
    Never,
}

/// One item of a selection: a field (or, for keywords, any field) and its
/// values. Each value may have expanded into several matchers (windash,
/// base64offset, placeholders), any of which may match; values combine with
/// OR, or AND under `all`.
#[derive(Debug)]
pub(crate) struct Item {
    pub(crate) field: Option<FieldId>,
    pub(crate) groups: Vec<Vec<Matcher>>,
    pub(crate) all: bool,
    pub(crate) neq: bool,
    /// For a field's list of many `contains` values (OR): one automaton
    /// pass instead of a substring search per value. Same result.
    pub(crate) fast: Option<FastContains>,
}

#[derive(Debug)]
pub(crate) struct FastContains {
    pub(crate) ac: aho_corasick::AhoCorasick,
    pub(crate) cased: bool,
}

/// Values from which a list of `contains` gets an automaton.
const FAST_CONTAINS_MIN: usize = 4;

impl Item {
    pub(crate) fn new(field: Option<FieldId>, groups: Vec<Vec<Matcher>>, all: bool, neq: bool) -> Self {
        let mut item = Item { field, groups, all, neq, fast: None };
        item.fast = item.fast_contains();
        item
    }

    fn fast_contains(&self) -> Option<FastContains> {
        if self.all || self.field.is_none() {
            return None;
        }
        let mut needles: Vec<&[u8]> = Vec::new();
        let mut case = None;
        for m in self.groups.iter().flatten() {
            let Matcher::Str { pat: Pattern::Contains(f), cased } = m else { return None };
            if *case.get_or_insert(*cased) != *cased {
                return None;
            }
            needles.push(f.needle());
        }
        if needles.len() < FAST_CONTAINS_MIN {
            return None;
        }
        let ac =
            aho_corasick::AhoCorasick::builder().kind(Some(aho_corasick::AhoCorasickKind::DFA)).build(needles).ok()?;
        Some(FastContains { ac, cased: case.unwrap_or(false) })
    }
}

/// A search identifier: OR of maps, each map an AND of items.
#[derive(Debug)]
pub(crate) struct Selection {
    pub(crate) alts: Vec<Vec<Item>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    Sel(usize),
    And(Vec<Cond>),
    Or(Vec<Cond>),
    Not(Box<Cond>),
}

#[derive(Debug)]
pub(crate) struct Detection {
    pub(crate) selections: Vec<Selection>,
    pub(crate) condition: Cond,
}

/// Where each field of the event is, by the rule set's field ids: a slot
/// per id, stamped with the generation (one per event) that wrote it, so
/// that nothing is cleared between events and a lookup is one array read.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    slots: Vec<(u32, u32, u32)>,
    generation: u32,
}

impl Slots {
    /// Start a new event over `fields` ids.
    pub(crate) fn begin(&mut self, fields: usize) {
        if self.slots.len() < fields {
            self.slots.resize(fields, (0, 0, 0));
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.slots.iter_mut().for_each(|s| *s = (0, 0, 0));
            self.generation = 1;
        }
    }

    pub(crate) fn set(&mut self, field: FieldId, start: u32, end: u32) {
        let generation = self.generation;
        if let Some(slot) = self.slots.get_mut(field as usize) {
            *slot = (generation, start, end);
        }
    }
}

/// An event as seen by one rule set.
pub(crate) struct Ctx<'a> {
    pub(crate) event: &'a Event,
    pub(crate) slots: &'a Slots,
}

impl<'a> Ctx<'a> {
    pub(crate) fn values(&self, field: FieldId) -> &'a [Entry] {
        match self.slots.slots.get(field as usize) {
            Some(&(generation, start, end)) if generation == self.slots.generation => {
                self.event.entries.get(start as usize..end as usize).unwrap_or(&[])
            }
            _ => &[],
        }
    }
}

fn parse_number(text: &str) -> Option<f64> {
    let t = text.trim();
    if let Some(hex) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        return i64::from_str_radix(hex, 16).ok().map(|v| v as f64);
    }
    t.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Year, month, day, hour, minute of a `YYYY-MM-DD[T ]hh:mm...` date
/// (time zones are not converted, as the modifiers appendix says).
fn date_parts(text: &str) -> Option<(i32, u8, u8, u8, u8)> {
    let b = text.trim().as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = b.get(r)?;
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(s).ok()?.parse().ok()
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let year = i32::try_from(num(0..4)?).ok()?;
    let month = u8::try_from(num(5..7)?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    let (hour, minute) = match b.get(10) {
        Some(b'T' | b't' | b' ') if b.get(13) == Some(&b':') => {
            (u8::try_from(num(11..13)?).ok()?, u8::try_from(num(14..16)?).ok()?)
        }
        None => (0, 0),
        _ => return None,
    };
    Some((year, month, day, hour, minute))
}

fn time_part(text: &str, part: TimePart) -> Option<f64> {
    let (year, month, day, hour, minute) = date_parts(text)?;
    Some(match part {
        TimePart::Minute => f64::from(minute),
        TimePart::Hour => f64::from(hour),
        TimePart::Day => f64::from(day),
        TimePart::Month => f64::from(month),
        TimePart::Year => f64::from(year),
        TimePart::Week => {
            let month = time::Month::try_from(month).ok()?;
            f64::from(time::Date::from_calendar_date(year, month, day).ok()?.iso_week())
        }
    })
}

impl Matcher {
    /// Against one non-null value.
    fn matches_val(&self, val: Val<'_>, ctx: &Ctx<'_>) -> bool {
        match self {
            Matcher::Str { pat, cased } => pat.matches(if *cased { val.raw() } else { val.folded() }),
            Matcher::Regex(re) => re.is_match(val.raw()),
            Matcher::Cidr(net) => net.contains(val.raw()),
            Matcher::Num(cmp, n) => parse_number(val.raw()).is_some_and(|v| cmp.test(v, *n)),
            Matcher::Time(part, cmp, n) => time_part(val.raw(), *part).is_some_and(|v| cmp.test(v, *n)),
            Matcher::FieldRef { field, kind, cased } => ctx.values(*field).iter().any(|other| {
                let Some(other) = ctx.event.val(other) else { return false };
                let (a, b) = if *cased { (val.raw(), other.raw()) } else { (val.folded(), other.folded()) };
                match kind {
                    RefKind::Exact => a == b,
                    RefKind::Prefix => a.starts_with(b),
                    RefKind::Suffix => a.ends_with(b),
                    RefKind::Contains => a.contains(b),
                }
            }),
            Matcher::Null | Matcher::Exists(_) | Matcher::Never => false,
        }
    }

    /// Against a field's entries (all of them: absent is the empty slice).
    fn matches_field(&self, entries: &[Entry], ctx: &Ctx<'_>) -> bool {
        match self {
            Matcher::Null => entries.is_empty() || entries.iter().any(|e| ctx.event.val(e).is_none()),
            Matcher::Exists(want) => entries.is_empty() != *want,
            Matcher::Never => false,
            m => entries.iter().any(|e| ctx.event.val(e).is_some_and(|v| m.matches_val(v, ctx))),
        }
    }

    /// Against any value of the event (keywords).
    fn matches_any(&self, ctx: &Ctx<'_>) -> bool {
        ctx.event.entries.iter().any(|e| !e.alias && ctx.event.val(e).is_some_and(|v| self.matches_val(v, ctx)))
    }
}

impl Item {
    fn eval(&self, ctx: &Ctx<'_>) -> bool {
        match self.field {
            Some(field) => {
                let entries = ctx.values(field);
                if let Some(fast) = &self.fast {
                    let hit = entries.iter().any(|e| {
                        ctx.event
                            .val(e)
                            .is_some_and(|v| fast.ac.is_match(if fast.cased { v.raw() } else { v.folded() }))
                    });
                    return if self.neq { entries.iter().any(|e| ctx.event.val(e).is_some()) && !hit } else { hit };
                }
                let group = |g: &Vec<Matcher>| g.iter().any(|m| m.matches_field(entries, ctx));
                let hit = if self.all { self.groups.iter().all(group) } else { self.groups.iter().any(group) };
                if self.neq { entries.iter().any(|e| ctx.event.val(e).is_some()) && !hit } else { hit }
            }
            None => {
                let group = |g: &Vec<Matcher>| g.iter().any(|m| m.matches_any(ctx));
                let hit = if self.all { self.groups.iter().all(group) } else { self.groups.iter().any(group) };
                if self.neq { !hit } else { hit }
            }
        }
    }
}

impl Selection {
    fn eval(&self, ctx: &Ctx<'_>) -> bool {
        self.alts.iter().any(|items| items.iter().all(|item| item.eval(ctx)))
    }
}

impl Detection {
    pub(crate) fn eval(&self, ctx: &Ctx<'_>) -> bool {
        self.eval_cond(&self.condition, ctx)
    }

    fn eval_cond(&self, cond: &Cond, ctx: &Ctx<'_>) -> bool {
        match cond {
            Cond::Sel(i) => self.selections.get(*i).is_some_and(|s| s.eval(ctx)),
            Cond::And(cs) => cs.iter().all(|c| self.eval_cond(c, ctx)),
            Cond::Or(cs) => cs.iter().any(|c| self.eval_cond(c, ctx)),
            Cond::Not(c) => !self.eval_cond(c, ctx),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn glob(segs: Vec<Seg>, s: bool, e: bool) -> Glob {
        Glob { segs, anchored_start: s, anchored_end: e }
    }
    fn lit(s: &str) -> Seg {
        Seg::Lit(Box::new(Finder::new(s.as_bytes()).into_owned()))
    }

    #[test]
    fn glob_segments() {
        // a*b*c
        let g = glob(vec![lit("a"), lit("b"), lit("c")], true, true);
        assert!(g.matches("abc"));
        assert!(g.matches("axxbyyc"));
        assert!(!g.matches("axxbyycd"));
        assert!(!g.matches("bac"));
        // *ab?d* : ? is one character, including a multi-byte one
        let g = glob(vec![Seg::Wild(vec![Some('a'), Some('b'), None, Some('d')])], false, false);
        assert!(g.matches("xxabcdyy"));
        assert!(g.matches("abéd"));
        assert!(!g.matches("abd"));
        // x*?  (ends with any one char after x)
        let g = glob(vec![lit("x"), Seg::Wild(vec![None])], true, true);
        assert!(g.matches("xy"));
        assert!(g.matches("xyz"));
        assert!(!g.matches("x"));
        // ab*ab must not let the last segment overlap the first
        let g = glob(vec![lit("ab"), lit("ab")], true, true);
        assert!(!g.matches("ab"));
        assert!(g.matches("abab"));
    }

    #[test]
    fn cidr_and_dates() {
        let net = Cidr { net: "10.0.0.0".parse().unwrap(), prefix: 8 };
        assert!(net.contains("10.1.2.3"));
        assert!(net.contains("::ffff:10.1.2.3"));
        assert!(!net.contains("11.1.2.3"));
        assert!(!net.contains("not an ip"));
        let v6 = Cidr { net: "fe80::".parse().unwrap(), prefix: 10 };
        assert!(v6.contains("fe80::1%eth0"));
        assert!(!v6.contains("10.1.2.3"));
        assert_eq!(time_part("2026-04-17 05:24:53.079", TimePart::Hour), Some(5.0));
        assert_eq!(time_part("2026-04-17T05:24:53Z", TimePart::Minute), Some(24.0));
        assert_eq!(time_part("2026-01-01", TimePart::Week), Some(1.0));
        assert_eq!(time_part("yesterday", TimePart::Day), None);
        assert_eq!(parse_number("0x1F"), Some(31.0));
    }
}
