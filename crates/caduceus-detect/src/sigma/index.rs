//! The rule index, the reason this engine is fast: rules are bucketed by
//! log source, and each rule contributes a set of necessary literals —
//! (field, text) pairs at least one of which must hold in any event it
//! matches — taken from its compiled condition. Per (bucket, field), one
//! Aho-Corasick automaton over the substrings and one hash map over the
//! whole values turn a single pass over an event's values into the few
//! rules that could match; only those are evaluated. Rules with no such
//! literal are evaluated for every event of their bucket.
//!
//! Soundness (the index never loses a match) rests on three facts: a
//! selection's literals come only from positive items (never under `not`
//! or `neq`); folding is per character, so the folded value contains the
//! folded literal whenever the value matches; and a literal set stands for
//! a disjunction, so an OR takes every branch's set while an AND may take
//! any one child's.

use std::collections::HashMap;

use aho_corasick::{AhoCorasick, MatchKind};
use foldhash::fast::RandomState;
use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};

use super::Rule;
use super::event::{Event, fold};
use super::matcher::{Cond, Ctx, Detection, FieldId, Item, Matcher, Pattern, Seg};

type Map<K, V> = HashMap<K, V, RandomState>;

/// Sentinel symbol for "the rule does not name this part of the log source".
const NONE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    /// The whole (folded) value equals the text.
    Eq,
    /// The (folded) value contains the text.
    Sub,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Lit {
    /// `None`: any field (keywords).
    field: Option<FieldId>,
    kind: Kind,
    text: Box<str>,
}

impl Lit {
    /// Rough selectivity: longer is rarer; a whole-value equality is rarer
    /// than a substring of the same length.
    fn score(&self) -> u32 {
        let len = u32::try_from(self.text.chars().count()).unwrap_or(u32::MAX).min(16);
        match self.kind {
            Kind::Eq => len + 4,
            Kind::Sub => len,
        }
    }
}

/// A disjunction of literals: a matching event satisfies at least one.
#[derive(Clone, Debug)]
struct LitSet {
    lits: Vec<Lit>,
    quality: u32,
}

impl LitSet {
    fn of(lits: Vec<Lit>) -> Option<Self> {
        let quality = lits.iter().map(Lit::score).min()?;
        Some(Self { lits, quality })
    }

    fn better(self, other: Self) -> Self {
        if (other.quality, std::cmp::Reverse(other.lits.len())) > (self.quality, std::cmp::Reverse(self.lits.len())) {
            other
        } else {
            self
        }
    }

    /// Every branch must contribute.
    fn union(sets: impl IntoIterator<Item = Option<LitSet>>) -> Option<LitSet> {
        let mut lits = Vec::new();
        for set in sets {
            lits.extend(set?.lits);
        }
        lits.sort_by(|a, b| (a.field, a.kind as u8, &a.text).cmp(&(b.field, b.kind as u8, &b.text)));
        lits.dedup();
        Self::of(lits)
    }

    /// Any one child suffices (AND): keep the best.
    fn best(sets: impl IntoIterator<Item = Option<LitSet>>) -> Option<LitSet> {
        sets.into_iter().flatten().reduce(LitSet::better)
    }
}

/// Literals every match of a regular expression contains: its finite
/// prefix (or suffix) set, whichever is more selective, folded.
pub(crate) fn regex_literals(re: &Regex) -> Option<Vec<String>> {
    // The `re` sub-modifiers are written inline into the source when the
    // rule is compiled, so this parse sees the same flags; under `i` the
    // extractor lists the case variants, which fold to the right literals.
    let hir = regex_syntax::parse(re.as_str()).ok()?;
    let mut best: Option<Vec<String>> = None;
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let seq = Extractor::new().kind(kind).extract(&hir);
        let Some(lits) = seq.literals() else { continue };
        let mut texts: Vec<String> = Vec::with_capacity(lits.len());
        for lit in lits {
            let Ok(s) = std::str::from_utf8(lit.as_bytes()) else { return None };
            if s.is_empty() {
                texts.clear();
                break;
            }
            texts.push(fold(s).into_owned());
        }
        if texts.is_empty() {
            continue;
        }
        texts.sort();
        texts.dedup();
        let min = |v: &Vec<String>| v.iter().map(|t| t.chars().count()).min().unwrap_or(0);
        if best.as_ref().is_none_or(|b| min(&texts) > min(b)) {
            best = Some(texts);
        }
    }
    best
}

fn matcher_lits(m: &Matcher, field: Option<FieldId>) -> Option<Vec<Lit>> {
    let sub = |text: &str| -> Option<Vec<Lit>> {
        (!text.is_empty()).then(|| vec![Lit { field, kind: Kind::Sub, text: fold(text).into() }])
    };
    match m {
        Matcher::Str { pat, cased } => {
            let norm = |s: &str| -> Box<str> { if *cased { fold(s).into() } else { s.into() } };
            match pat {
                Pattern::Any => None,
                Pattern::Exact(s) if field.is_some() => Some(vec![Lit { field, kind: Kind::Eq, text: norm(s) }]),
                Pattern::Exact(s) | Pattern::Prefix(s) | Pattern::Suffix(s) => {
                    (!s.is_empty()).then(|| vec![Lit { field, kind: Kind::Sub, text: norm(s) }])
                }
                Pattern::Contains(f) => {
                    let s = std::str::from_utf8(f.needle()).ok()?;
                    (!s.is_empty()).then(|| vec![Lit { field, kind: Kind::Sub, text: norm(s) }])
                }
                Pattern::Glob(g) => {
                    let mut longest = String::new();
                    for seg in &g.segs {
                        match seg {
                            Seg::Lit(f) => {
                                let s = std::str::from_utf8(f.needle()).ok()?;
                                if s.len() > longest.len() {
                                    longest = s.to_owned();
                                }
                            }
                            Seg::Wild(chars) => {
                                for run in chars.split(Option::is_none) {
                                    let s: String = run.iter().flatten().collect();
                                    if s.len() > longest.len() {
                                        longest = s;
                                    }
                                }
                            }
                        }
                    }
                    (!longest.is_empty()).then(|| vec![Lit { field, kind: Kind::Sub, text: norm(&longest) }])
                }
            }
        }
        Matcher::Regex(re) => {
            let texts = regex_literals(re)?;
            let mut out = Vec::with_capacity(texts.len());
            for t in texts {
                out.extend(sub(&t)?);
            }
            Some(out)
        }
        _ => None,
    }
}

fn item_lits(item: &Item) -> Option<LitSet> {
    if item.neq {
        return None;
    }
    let group = |g: &Vec<Matcher>| -> Option<LitSet> {
        let mut lits = Vec::new();
        for m in g {
            lits.extend(matcher_lits(m, item.field)?);
        }
        LitSet::of(lits)
    };
    if item.all { LitSet::best(item.groups.iter().map(group)) } else { LitSet::union(item.groups.iter().map(group)) }
}

fn cond_lits(det: &Detection, cond: &Cond) -> Option<LitSet> {
    match cond {
        Cond::Sel(i) => {
            let sel = det.selections.get(*i)?;
            LitSet::union(sel.alts.iter().map(|items| LitSet::best(items.iter().map(item_lits))))
        }
        Cond::And(cs) => LitSet::best(cs.iter().map(|c| cond_lits(det, c))),
        Cond::Or(cs) => LitSet::union(cs.iter().map(|c| cond_lits(det, c))),
        Cond::Not(_) => None,
    }
}

/// The literals of one field (or of any field) within a bucket.
#[derive(Clone, Debug, Default)]
struct FieldIndex {
    eq: Map<Box<str>, Vec<u32>>,
    ac: Option<AhoCorasick>,
    /// Pattern id → rules.
    ac_rules: Vec<Vec<u32>>,
}

impl FieldIndex {
    fn scan(&self, text: &str, out: &mut Vec<u32>) {
        if let Some(rules) = self.eq.get(text) {
            out.extend_from_slice(rules);
        }
        if let Some(ac) = &self.ac {
            for m in ac.find_overlapping_iter(text) {
                if let Some(rules) = self.ac_rules.get(m.pattern().as_usize()) {
                    out.extend_from_slice(rules);
                }
            }
        }
    }
}

#[derive(Default)]
struct FieldIndexBuilder {
    eq: Map<Box<str>, Vec<u32>>,
    subs: Map<Box<str>, Vec<u32>>,
}

impl FieldIndexBuilder {
    /// On failure (an automaton too large), the rules it would have
    /// indexed, for the caller to evaluate always.
    fn build(self) -> Result<FieldIndex, Vec<u32>> {
        let mut patterns: Vec<Box<str>> = Vec::with_capacity(self.subs.len());
        let mut ac_rules = Vec::with_capacity(self.subs.len());
        let mut subs: Vec<(Box<str>, Vec<u32>)> = self.subs.into_iter().collect();
        subs.sort();
        for (text, mut rules) in subs {
            rules.sort_unstable();
            rules.dedup();
            patterns.push(text);
            ac_rules.push(rules);
        }
        let ac = if patterns.is_empty() {
            None
        } else {
            match AhoCorasick::builder().match_kind(MatchKind::Standard).build(patterns.iter().map(|p| p.as_bytes())) {
                Ok(ac) => Some(ac),
                Err(_) => {
                    let mut rules: Vec<u32> = ac_rules.into_iter().flatten().collect();
                    rules.extend(self.eq.into_values().flatten());
                    return Err(rules);
                }
            }
        };
        Ok(FieldIndex { eq: self.eq, ac, ac_rules })
    }
}

#[derive(Clone, Debug, Default)]
struct Bucket {
    /// Rules with no necessary literal.
    always: Vec<u32>,
    /// Sorted by field id.
    fields: Vec<(FieldId, FieldIndex)>,
    /// Keyword literals, searched in every value.
    any: Option<FieldIndex>,
}

impl Bucket {
    fn candidates(&self, ctx: &Ctx<'_>, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.always);
        // Merge the event's fields (sorted by id) with the bucket's.
        let mut fi = self.fields.iter().peekable();
        for &(id, start, end) in ctx.ids {
            while fi.peek().is_some_and(|(f, _)| *f < id) {
                fi.next();
            }
            let Some((f, index)) = fi.peek() else { break };
            if *f != id {
                continue;
            }
            for entry in ctx.event.entries.get(start as usize..end as usize).unwrap_or(&[]) {
                if !entry.val.is_null() {
                    index.scan(entry.val.folded(), out);
                }
            }
        }
        if let Some(any) = &self.any {
            for entry in &ctx.event.entries {
                if !entry.alias && !entry.val.is_null() {
                    any.scan(entry.val.folded(), out);
                }
            }
        }
    }
}

/// Statistics of an index, for tests and reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Distinct log sources rules name.
    pub buckets: usize,
    /// Rules reached through a literal.
    pub indexed_rules: usize,
    /// Rules evaluated on every event of their log source.
    pub always_rules: usize,
    /// Distinct literals in all automata and hash maps.
    pub literals: usize,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    syms: Map<Box<str>, u32>,
    bucket_of: Map<(u32, u32, u32), usize>,
    buckets: Vec<Bucket>,
    pub(crate) stats: IndexStats,
}

impl Index {
    pub(crate) fn build(rules: &[Rule]) -> Index {
        let mut syms: Map<Box<str>, u32> = Map::default();
        let mut sym = |s: &Option<Box<str>>| -> u32 {
            match s {
                None => NONE,
                Some(s) => {
                    let next = u32::try_from(syms.len()).unwrap_or(NONE - 1);
                    *syms.entry(s.clone()).or_insert(next)
                }
            }
        };
        let mut bucket_of: Map<(u32, u32, u32), usize> = Map::default();
        struct Building {
            always: Vec<u32>,
            fields: Map<FieldId, FieldIndexBuilder>,
            any: FieldIndexBuilder,
        }
        let mut building: Vec<Building> = Vec::new();
        let mut stats = IndexStats::default();
        for (i, rule) in rules.iter().enumerate() {
            let Ok(ri) = u32::try_from(i) else { break };
            let key = (sym(&rule.key.product), sym(&rule.key.service), sym(&rule.key.category));
            let b = *bucket_of.entry(key).or_insert_with(|| {
                building.push(Building {
                    always: Vec::new(),
                    fields: Map::default(),
                    any: FieldIndexBuilder::default(),
                });
                building.len() - 1
            });
            let Some(bucket) = building.get_mut(b) else { continue };
            match cond_lits(&rule.detection, &rule.detection.condition) {
                None => {
                    bucket.always.push(ri);
                    stats.always_rules += 1;
                }
                Some(set) => {
                    stats.indexed_rules += 1;
                    for lit in set.lits {
                        let target = match lit.field {
                            Some(f) => bucket.fields.entry(f).or_default(),
                            None => &mut bucket.any,
                        };
                        let map = match lit.kind {
                            Kind::Eq => &mut target.eq,
                            Kind::Sub => &mut target.subs,
                        };
                        map.entry(lit.text).or_default().push(ri);
                    }
                }
            }
        }
        let mut buckets = Vec::with_capacity(building.len());
        for b in building {
            let mut always = b.always;
            let mut fields = Vec::with_capacity(b.fields.len());
            for (f, fib) in b.fields {
                stats.literals += fib.eq.len() + fib.subs.len();
                match fib.build() {
                    Ok(index) => fields.push((f, index)),
                    Err(rules) => always.extend(rules),
                }
            }
            fields.sort_by_key(|(f, _)| *f);
            stats.literals += b.any.eq.len() + b.any.subs.len();
            let any = if b.any.eq.is_empty() && b.any.subs.is_empty() {
                None
            } else {
                match b.any.build() {
                    Ok(index) => Some(index),
                    Err(rules) => {
                        always.extend(rules);
                        None
                    }
                }
            };
            always.sort_unstable();
            always.dedup();
            buckets.push(Bucket { always, fields, any });
        }
        stats.buckets = buckets.len();
        Index { syms, bucket_of, buckets, stats }
    }

    /// Candidate rules for the event (unsorted, possibly repeated).
    pub(crate) fn candidates(&self, ctx: &Ctx<'_>, out: &mut Vec<u32>) {
        let event: &Event = ctx.event;
        let known = |s: &str| self.syms.get(s).copied();
        let mut products = [NONE; 2];
        let np = match event.product.as_deref().and_then(known) {
            Some(p) => {
                products[1] = p;
                2
            }
            None => 1,
        };
        let mut services = vec![NONE];
        services.extend(event.services.iter().filter_map(|s| known(s)));
        let mut categories = vec![NONE];
        categories.extend(event.categories.iter().filter_map(|s| known(s)));
        for &p in products.get(..np).unwrap_or(&[]) {
            for &s in &services {
                for &c in &categories {
                    if let Some(bucket) = self.bucket_of.get(&(p, s, c)).and_then(|&b| self.buckets.get(b)) {
                        bucket.candidates(ctx, out);
                    }
                }
            }
        }
    }
}
