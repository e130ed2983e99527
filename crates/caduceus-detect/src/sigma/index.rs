//! The rule index, the reason this engine is fast: rules are bucketed by
//! log source, and each rule contributes a set of necessary literals —
//! (field, text) pairs at least one of which must hold in any event it
//! matches — taken from its compiled condition (regular expressions
//! included: the strings their syntax tree requires). Per (bucket, field),
//! an anchor filter over the substrings (see [`SubIndex`]) and a hash map
//! over the whole values turn a single pass over an event's values into the
//! few rules that could match; only those are evaluated. Rules with no such
//! literal are evaluated for every event of their bucket. Where a rule
//! offers several literal sets (`a and b`), the one least likely to occur
//! in everyday telemetry is taken.
//!
//! Soundness (the index never loses a match) rests on three facts: a
//! selection's literals come only from positive items (never under `not`
//! or `neq`); folding is per character, so the folded value contains the
//! folded literal whenever the value matches; and a literal set stands for
//! a disjunction, so an OR takes every branch's set while an AND may take
//! any one child's.

use std::collections::HashMap;
use std::sync::Arc;

use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use foldhash::fast::RandomState;
use regex::Regex;
use regex_syntax::hir::literal::{ExtractKind, Extractor};
use regex_syntax::hir::{Class, Hir, HirKind};

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

/// Values everyday Windows telemetry is full of (folded). Used only to rank
/// literals — a literal found in them would make its rule a candidate for
/// most events — never to decide a match.
const EVERYDAY: &[&str] = &[
    "c:\\windows\\system32\\svchost.exe -k netsvcs -p -s schedule",
    "c:\\windows\\syswow64\\rundll32.exe c:\\windows\\system32\\shell32.dll,control_rundll",
    "c:\\windows\\explorer.exe",
    "c:\\windows\\system32\\services.exe",
    "c:\\windows\\system32\\cmd.exe /c ",
    "c:\\windows\\system32\\conhost.exe 0xffffffff -forcev1",
    "c:\\windows\\system32\\windowspowershell\\v1.0\\powershell.exe",
    "c:\\windows\\system32\\wbem\\wmiprvse.exe",
    "c:\\windows\\system32\\drivers\\",
    "c:\\windows\\temp\\",
    "c:\\windows\\prefetch\\",
    "c:\\windows\\installer\\",
    "c:\\windows\\microsoft.net\\framework64\\v4.0.30319\\",
    "c:\\windows\\winsxs\\",
    "c:\\program files\\",
    "c:\\program files (x86)\\",
    "c:\\program files\\common files\\microsoft shared\\",
    "c:\\programdata\\microsoft\\windows defender\\platform\\",
    "c:\\users\\public\\",
    "c:\\users\\alice\\appdata\\local\\temp\\",
    "c:\\users\\alice\\appdata\\roaming\\microsoft\\windows\\start menu\\programs\\",
    "c:\\users\\alice\\appdata\\local\\microsoft\\windows\\inetcache\\",
    "c:\\users\\alice\\downloads\\",
    "c:\\users\\alice\\desktop\\",
    "c:\\users\\alice\\documents\\",
    "c:\\windows\\system32\\kernel32.dll",
    "c:\\windows\\system32\\ntdll.dll",
    "c:\\windows\\system32\\config\\systemprofile\\",
    "microsoft corporation",
    "microsoft® windows® operating system",
    "microsoft windows",
    "windows",
    "medium",
    "high",
    "system",
    "s-1-16-8192",
    "s-1-16-12288",
    "s-1-16-16384",
    "nt authority\\system",
    "nt authority\\local service",
    "nt authority\\network service",
    "true",
    "false",
    "tcp",
    "udp",
    "valid",
    "setvalue",
    "createkey",
    "dword (0x00000001)",
    "hklm\\system\\currentcontrolset\\services\\",
    "hklm\\software\\microsoft\\windows\\currentversion\\",
    "hku\\s-1-5-21-1-2-3-1001\\software\\microsoft\\windows\\currentversion\\explorer\\",
    "hklm\\software\\wow6432node\\",
    "\\registry\\machine\\software\\classes\\",
    "sha1=,md5=,sha256=,imphash=",
    "https://www.microsoft.com/",
    "http://",
];

impl Lit {
    /// Rough selectivity: longer is rarer, a whole-value equality is rarer
    /// than a substring, and a literal inside everyday values is common.
    fn score(&self) -> u32 {
        let len = u32::try_from(self.text.chars().count()).unwrap_or(u32::MAX).min(16);
        let everyday = match self.kind {
            Kind::Eq => EVERYDAY.contains(&&*self.text),
            Kind::Sub => EVERYDAY.iter().any(|v| v.contains(&*self.text)),
        };
        match (self.kind, everyday) {
            (_, true) => 1,
            (Kind::Eq, false) => len + 2,
            (Kind::Sub, false) => len,
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

/// Most strings in one exact set while analysing a regular expression.
const MAX_EXACT: usize = 64;
/// Longest string kept in an exact set.
const MAX_EXACT_LEN: usize = 32;

/// Folded bytes (the index compares folded text); bytes that are not
/// UTF-8 stay as they are.
fn fold_bytes(b: &[u8]) -> Vec<u8> {
    match std::str::from_utf8(b) {
        Ok(s) => fold(s).as_bytes().to_vec(),
        Err(_) => b.to_vec(),
    }
}

fn dedup(mut set: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    set.sort();
    set.dedup();
    set
}

/// The finite set of strings a subexpression matches exactly (folded), if
/// small: literals, small classes (`[Ee]`, as `(?i)` produces, folds to
/// one), fixed repetitions and alternations of those, and their
/// concatenations.
fn exact(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    match hir.kind() {
        HirKind::Empty => Some(vec![Vec::new()]),
        HirKind::Literal(lit) => Some(vec![fold_bytes(&lit.0)]),
        HirKind::Class(Class::Unicode(c)) => {
            let mut out = Vec::new();
            for r in c.ranges() {
                for ch in r.start()..=r.end() {
                    if out.len() >= 4 {
                        return None;
                    }
                    let mut buf = [0u8; 4];
                    out.push(fold_bytes(ch.encode_utf8(&mut buf).as_bytes()));
                }
            }
            Some(dedup(out))
        }
        HirKind::Class(Class::Bytes(c)) => {
            let mut out = Vec::new();
            for r in c.ranges() {
                for b in r.start()..=r.end() {
                    if out.len() >= 4 {
                        return None;
                    }
                    out.push(vec![b.to_ascii_lowercase()]);
                }
            }
            Some(dedup(out))
        }
        HirKind::Capture(c) => exact(&c.sub),
        HirKind::Repetition(rep) if rep.max == Some(rep.min) && rep.min <= 8 => {
            let one = exact(&rep.sub)?;
            let mut acc = vec![Vec::new()];
            for _ in 0..rep.min {
                acc = product(&acc, &one)?;
            }
            Some(acc)
        }
        HirKind::Concat(items) => {
            let mut acc = vec![Vec::new()];
            for item in items {
                acc = product(&acc, &exact(item)?)?;
            }
            Some(acc)
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for alt in alts {
                out.extend(exact(alt)?);
                if out.len() > MAX_EXACT {
                    return None;
                }
            }
            Some(dedup(out))
        }
        HirKind::Look(_) | HirKind::Repetition(_) => None,
    }
}

fn product(a: &[Vec<u8>], b: &[Vec<u8>]) -> Option<Vec<Vec<u8>>> {
    if a.len().saturating_mul(b.len()) > MAX_EXACT {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            if s.len() > MAX_EXACT_LEN {
                return None;
            }
            out.push(s);
        }
    }
    Some(dedup(out))
}

/// Quality of a set of alternatives: the shortest member (longer is rarer).
fn set_quality(set: &[Vec<u8>]) -> usize {
    set.iter().map(Vec::len).min().unwrap_or(0)
}

fn better_set(a: Option<Vec<Vec<u8>>>, b: Option<Vec<Vec<u8>>>) -> Option<Vec<Vec<u8>>> {
    match (a, b) {
        (Some(a), Some(b)) => {
            Some(if (set_quality(&b), std::cmp::Reverse(b.len())) > (set_quality(&a), std::cmp::Reverse(a.len())) {
                b
            } else {
                a
            })
        }
        (a, None) => a,
        (None, b) => b,
    }
}

/// A set of strings at least one of which occurs in every match (inside
/// it, anywhere): what the index may rely on for a `re` value.
fn required(hir: &Hir) -> Option<Vec<Vec<u8>>> {
    if let Some(set) = exact(hir)
        && set.iter().all(|s| !s.is_empty())
    {
        return Some(set);
    }
    match hir.kind() {
        HirKind::Capture(c) => required(&c.sub),
        HirKind::Repetition(rep) if rep.min >= 1 => required(&rep.sub),
        HirKind::Concat(items) => {
            // Runs of adjacent exact items give longer strings; any item's
            // own requirement also holds for the whole.
            let mut best = None;
            let mut run: Option<Vec<Vec<u8>>> = None;
            for item in items {
                match exact(item) {
                    Some(set) => {
                        run = match run.take() {
                            Some(r) => match product(&r, &set) {
                                Some(p) => Some(p),
                                None => {
                                    best = better_set(best, Some(r));
                                    Some(set)
                                }
                            },
                            None => Some(set),
                        };
                    }
                    None => {
                        best = better_set(best, run.take().filter(|r| r.iter().all(|s| !s.is_empty())));
                        best = better_set(best, required(item));
                    }
                }
            }
            better_set(best, run.filter(|r| r.iter().all(|s| !s.is_empty())))
        }
        HirKind::Alternation(alts) => {
            let mut out = Vec::new();
            for alt in alts {
                out.extend(required(alt)?);
            }
            Some(out)
        }
        _ => None,
    }
}

/// Literals every match of a regular expression contains, folded: the
/// required strings of its syntax tree, or else its finite prefix or
/// suffix set, whichever is more selective.
pub(crate) fn regex_literals(re: &Regex) -> Option<Vec<String>> {
    // The `re` sub-modifiers are written inline into the source when the
    // rule is compiled, so this parse sees the same flags; under `i` the
    // case variants fold to the same literals.
    let hir = regex_syntax::parse(re.as_str()).ok()?;
    let mut candidates: Vec<Vec<Vec<u8>>> = Vec::new();
    candidates.extend(required(&hir));
    for kind in [ExtractKind::Prefix, ExtractKind::Suffix] {
        let seq = Extractor::new().kind(kind).extract(&hir);
        if let Some(lits) = seq.literals() {
            candidates.push(lits.iter().map(|l| l.as_bytes().to_vec()).collect());
        }
    }
    let mut best: Option<Vec<String>> = None;
    for set in candidates {
        let mut texts: Vec<String> = Vec::with_capacity(set.len());
        for lit in &set {
            let Ok(s) = std::str::from_utf8(lit) else {
                texts.clear();
                break;
            };
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
        let min = |v: &Vec<String>| v.iter().map(String::len).min().unwrap_or(0);
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

/// Substring literals of one field, found by 4-byte anchors. The scan
/// probes every `step`-th 4-byte window of the value against a bitmap
/// (shared by the bucket, tens of kilobytes, so it stays in cache) and only
/// on a hit looks the window up and checks the literals behind it. A
/// literal at least `step + 3` bytes long is entered under `step`
/// consecutive 4-byte pieces of itself (chosen to be rare in everyday
/// values), so whatever its position in the value one of them falls on a
/// probed window. Shorter literals, at most a few dozen, go to a small
/// automaton, which searches them with SIMD. An Aho-Corasick DFA over all
/// of thousands of literals instead is megabytes, and its per-byte table
/// reads miss the cache.
#[derive(Clone, Debug, Default)]
struct SubIndex {
    /// Literal text and its rules.
    lits: Vec<(Box<[u8]>, Vec<u32>)>,
    /// Anchor → range of `by_anchor`.
    anchors: Map<u32, (u32, u32)>,
    /// (literal, offset of the anchor in it).
    by_anchor: Vec<(u32, u32)>,
    step: usize,
    /// Shared by all fields of a bucket (see `Bucket::share_bitmap`), so
    /// that one bitmap, not one per field, sits in the cache.
    bits: Arc<[u64]>,
    shift: u32,
    short: Option<AhoCorasick>,
    short_rules: Vec<Vec<u32>>,
}

/// Most literals left to the automaton (its SIMD search handles up to 64).
const MAX_SHORT: usize = 48;
/// Widest step: every fourth window (each literal then has four anchors;
/// wider steps make the bitmap outgrow the cache and lose more than they
/// save, narrower ones probe more: measured on the SigmaHQ corpus).
const MAX_STEP: usize = 4;

const ANCHOR_MUL: u32 = 0x9E37_79B1;

fn anchor_at(bytes: &[u8], at: usize) -> Option<u32> {
    let w: [u8; 4] = bytes.get(at..at + 4)?.try_into().ok()?;
    Some(u32::from_le_bytes(w))
}

/// A bitmap over anchors' hashes: about 16 bits per anchor keeps false
/// hits near 6%.
fn bitmap(anchors: impl Iterator<Item = u32>, count: usize) -> (Arc<[u64]>, u32) {
    let want = (count * 16).next_power_of_two().clamp(1 << 10, 1 << 19);
    let shift = 32 - want.trailing_zeros();
    let mut bits = vec![0u64; want / 64];
    for anchor in anchors {
        let h = (anchor.wrapping_mul(ANCHOR_MUL) >> shift) as usize;
        if let Some(word) = bits.get_mut(h / 64) {
            *word |= 1u64 << (h % 64);
        }
    }
    (bits.into(), shift)
}

impl SubIndex {
    fn build(subs: Vec<(Box<str>, Vec<u32>)>) -> Result<SubIndex, Vec<u32>> {
        // How often each 4-byte piece occurs in everyday values, and among
        // this field's literals: the anchor of a literal is its piece least
        // common in both.
        let mut everyday: Map<u32, u32> = Map::default();
        for v in EVERYDAY {
            for i in 0..v.len().saturating_sub(3) {
                if let Some(a) = anchor_at(v.as_bytes(), i) {
                    *everyday.entry(a).or_default() += 1;
                }
            }
        }
        let mut shared: Map<u32, u32> = Map::default();
        for (text, _) in &subs {
            let b = text.as_bytes();
            for i in 0..b.len().saturating_sub(3) {
                if let Some(a) = anchor_at(b, i) {
                    *shared.entry(a).or_default() += 1;
                }
            }
        }
        // The widest step that leaves few literals too short for it.
        let short_for = |step: usize| subs.iter().filter(|(t, _)| t.len() < step + 3).count();
        let step = (1..=MAX_STEP).rev().find(|&st| short_for(st) <= MAX_SHORT).unwrap_or(1);
        let mut index = SubIndex { step, ..SubIndex::default() };
        let mut short_patterns: Vec<Box<str>> = Vec::new();
        let mut grouped: Map<u32, Vec<(u32, u32)>> = Map::default();
        let rarity = |a: u32| (everyday.get(&a).copied().unwrap_or(0), shared.get(&a).copied().unwrap_or(0));
        for (text, mut rules) in subs {
            rules.sort_unstable();
            rules.dedup();
            let b = text.as_bytes();
            if b.len() < 4 || b.len() < step + 3 {
                short_patterns.push(text);
                index.short_rules.push(rules);
                continue;
            }
            // The run of `step` pieces whose commonest piece is rarest.
            let best = (0..=b.len() - step - 3).min_by_key(|&o| {
                let worst =
                    (o..o + step).filter_map(|i| anchor_at(b, i)).map(rarity).max().unwrap_or((u32::MAX, u32::MAX));
                (worst, o)
            });
            let Some(offset) = best else { continue };
            let id = u32::try_from(index.lits.len()).unwrap_or(u32::MAX);
            for i in offset..offset + step {
                if let Some(a) = anchor_at(b, i) {
                    grouped.entry(a).or_default().push((id, u32::try_from(i).unwrap_or(0)));
                }
            }
            index.lits.push((b.into(), rules));
        }
        let mut anchors: Vec<(u32, Vec<(u32, u32)>)> = grouped.into_iter().collect();
        anchors.sort_unstable();
        let (bits, shift) = bitmap(anchors.iter().map(|(a, _)| *a), anchors.len());
        index.bits = bits;
        index.shift = shift;
        for (anchor, ids) in anchors {
            let start = u32::try_from(index.by_anchor.len()).unwrap_or(u32::MAX);
            index.by_anchor.extend(ids);
            let end = u32::try_from(index.by_anchor.len()).unwrap_or(u32::MAX);
            index.anchors.insert(anchor, (start, end));
        }
        if !short_patterns.is_empty() {
            match AhoCorasick::builder()
                .match_kind(MatchKind::Standard)
                .kind(Some(AhoCorasickKind::DFA))
                .build(short_patterns.iter().map(|p| p.as_bytes()))
            {
                Ok(ac) => index.short = Some(ac),
                Err(_) => {
                    let mut rules: Vec<u32> = index.short_rules.into_iter().flatten().collect();
                    rules.extend(index.lits.into_iter().flat_map(|(_, r)| r));
                    return Err(rules);
                }
            }
        }
        Ok(index)
    }

    fn is_empty(&self) -> bool {
        self.lits.is_empty() && self.short.is_none()
    }

    fn scan(&self, text: &[u8], out: &mut Vec<u32>) {
        self.scan_anchored(text, out);
        self.scan_short(text, out);
    }

    fn scan_anchored(&self, text: &[u8], out: &mut Vec<u32>) {
        if self.lits.is_empty() {
            return;
        }
        for (i, w) in text.windows(4).enumerate().step_by(self.step.max(1)) {
            let Ok(w) = <[u8; 4]>::try_from(w) else { continue };
            let anchor = u32::from_le_bytes(w);
            let h = (anchor.wrapping_mul(ANCHOR_MUL) >> self.shift) as usize;
            if self.bits.get(h / 64).is_none_or(|word| word & (1u64 << (h % 64)) == 0) {
                continue;
            }
            let Some(&(start, end)) = self.anchors.get(&anchor) else { continue };
            for &(id, offset) in self.by_anchor.get(start as usize..end as usize).unwrap_or(&[]) {
                let Some((lit, rules)) = self.lits.get(id as usize) else { continue };
                let Some(at) = i.checked_sub(offset as usize) else { continue };
                if text.get(at..at + lit.len()) == Some(&lit[..]) {
                    out.extend_from_slice(rules);
                }
            }
        }
    }

    fn scan_short(&self, text: &[u8], out: &mut Vec<u32>) {
        if let Some(ac) = &self.short {
            for m in ac.find_overlapping_iter(text) {
                if let Some(rules) = self.short_rules.get(m.pattern().as_usize()) {
                    out.extend_from_slice(rules);
                }
            }
        }
    }
}

/// The literals of one field (or of any field) within a bucket.
#[derive(Clone, Debug, Default)]
struct FieldIndex {
    eq: Map<Box<str>, Vec<u32>>,
    /// Lengths of the `eq` keys (bit n: length n; bit 255: 255 or more), so
    /// that most values are not hashed at all.
    eq_lens: [u64; 4],
    subs: SubIndex,
}

impl FieldIndex {
    fn scan(&self, text: &str, out: &mut Vec<u32>) {
        let len = text.len().min(255);
        if self.eq_lens.get(len / 64).is_some_and(|w| w & (1u64 << (len % 64)) != 0)
            && let Some(rules) = self.eq.get(text)
        {
            out.extend_from_slice(rules);
        }
        if !self.subs.is_empty() {
            self.subs.scan(text.as_bytes(), out);
        }
    }

    /// Everything but the short literals (keywords scan those once, over
    /// all values joined).
    fn scan_long(&self, text: &str, out: &mut Vec<u32>) {
        let len = text.len().min(255);
        if self.eq_lens.get(len / 64).is_some_and(|w| w & (1u64 << (len % 64)) != 0)
            && let Some(rules) = self.eq.get(text)
        {
            out.extend_from_slice(rules);
        }
        self.subs.scan_anchored(text.as_bytes(), out);
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
        let mut subs: Vec<(Box<str>, Vec<u32>)> = self.subs.into_iter().collect();
        subs.sort();
        let mut eq_lens = [0u64; 4];
        for key in self.eq.keys() {
            let len = key.len().min(255);
            if let Some(w) = eq_lens.get_mut(len / 64) {
                *w |= 1u64 << (len % 64);
            }
        }
        match SubIndex::build(subs) {
            Ok(subs) => Ok(FieldIndex { eq: self.eq, eq_lens, subs }),
            Err(mut rules) => {
                rules.extend(self.eq.into_values().flatten());
                Err(rules)
            }
        }
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
    /// One bitmap for all the bucket's fields: an event's values are
    /// scanned against many fields' literals in turn, and separate bitmaps
    /// would push each other out of the L1 cache.
    fn share_bitmap(&mut self) {
        let subs = || self.fields.iter().map(|(_, f)| &f.subs).chain(self.any.iter().map(|a| &a.subs));
        let count: usize = subs().map(|s| s.anchors.len()).sum();
        if count == 0 {
            return;
        }
        let all: Vec<u32> = subs().flat_map(|s| s.anchors.keys().copied()).collect();
        let (bits, shift) = bitmap(all.into_iter(), count);
        for (_, f) in &mut self.fields {
            f.subs.bits = bits.clone();
            f.subs.shift = shift;
        }
        if let Some(any) = &mut self.any {
            any.subs.bits = bits;
            any.subs.shift = shift;
        }
    }

    fn candidates(&self, ctx: &Ctx<'_>, joined: &mut Option<String>, out: &mut Vec<u32>) {
        out.extend_from_slice(&self.always);
        for (id, index) in &self.fields {
            for entry in ctx.values(*id) {
                if let Some(val) = ctx.event.val(entry) {
                    index.scan(val.folded(), out);
                }
            }
        }
        if let Some(any) = &self.any {
            for entry in &ctx.event.entries {
                if !entry.alias
                    && let Some(val) = ctx.event.val(entry)
                {
                    any.scan_long(val.folded(), out);
                }
            }
            if any.subs.short.is_some() {
                // Short keywords: one automaton pass over all values joined;
                // a literal found across a boundary only adds a candidate,
                // which evaluation then rejects.
                let text = joined.get_or_insert_with(|| {
                    let mut text = String::with_capacity(ctx.event.entries.len() * 32);
                    for entry in &ctx.event.entries {
                        if !entry.alias
                            && let Some(val) = ctx.event.val(entry)
                        {
                            text.push_str(val.folded());
                            text.push('\n');
                        }
                    }
                    text
                });
                any.subs.scan_short(text.as_bytes(), out);
            }
        }
    }
}

/// Field names the rules use → ids, for the per-event lookup of every
/// event field: an open-addressing table hashed on the name's first and
/// last eight bytes and its length (a few nanoseconds, against tens for a
/// general hash map). Every name sits within `MAX_PROBE` slots of its home
/// (the table grows until it does), so a lookup never probes further, and
/// names crafted to collide cost no more than that.
#[derive(Clone, Debug, Default)]
pub(crate) struct NameTable {
    slots: Vec<Option<(u64, FieldId, Box<str>)>>,
    mask: usize,
}

const MAX_PROBE: usize = 8;

/// The hash of a (folded) field name; events store it with each name.
pub(crate) fn name_hash(name: &[u8]) -> u64 {
    let n = name.len();
    // Byte by byte below eight: a variable-length copy would call memmove.
    let word = |b: &[u8]| -> u64 {
        match b.get(..8).and_then(|w| <[u8; 8]>::try_from(w).ok()) {
            Some(w) => u64::from_le_bytes(w),
            None => b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
        }
    };
    let head = word(name);
    let tail = word(name.get(n.saturating_sub(8)..).unwrap_or(&[]));
    let middle = name
        .get(8..n.saturating_sub(8))
        .map_or(0, |m| m.iter().fold(0u64, |acc, &x| acc.rotate_left(7) ^ u64::from(x)));
    let h = (head ^ tail.rotate_left(31) ^ middle.rotate_left(17) ^ (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 29)
}

impl NameTable {
    pub(crate) fn build<'a>(names: impl Iterator<Item = (&'a str, FieldId)> + Clone) -> NameTable {
        let count = names.clone().count();
        let mut size = (count * 4).next_power_of_two().max(16);
        'grow: loop {
            let mask = size - 1;
            let mut slots: Vec<Option<(u64, FieldId, Box<str>)>> = vec![None; size];
            for (name, id) in names.clone() {
                let hash = name_hash(name.as_bytes());
                let home = hash as usize;
                let free =
                    (0..MAX_PROBE).map(|p| (home + p) & mask).find(|&i| slots.get(i).is_some_and(Option::is_none));
                match free.and_then(|i| slots.get_mut(i)) {
                    Some(slot) => *slot = Some((hash, id, name.into())),
                    None => {
                        size *= 2;
                        continue 'grow;
                    }
                }
            }
            return NameTable { slots, mask };
        }
    }

    /// The id of a name whose `name_hash` is `hash`.
    pub(crate) fn get(&self, name: &str, hash: u64) -> Option<FieldId> {
        let home = hash as usize;
        for p in 0..MAX_PROBE {
            match self.slots.get((home + p) & self.mask)? {
                Some((h, id, n)) if *h == hash && **n == *name => return Some(*id),
                Some(_) => {}
                None => return None,
            }
        }
        None
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
    pub(crate) names: NameTable,
    syms: Map<Box<str>, u32>,
    bucket_of: Map<(u32, u32, u32), usize>,
    buckets: Vec<Bucket>,
    pub(crate) stats: IndexStats,
}

impl Index {
    pub(crate) fn build<'a>(rules: &[Rule], names: impl Iterator<Item = (&'a str, FieldId)> + Clone) -> Index {
        let names = NameTable::build(names);
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
            let mut bucket = Bucket { always, fields, any };
            bucket.share_bitmap();
            buckets.push(bucket);
        }
        stats.buckets = buckets.len();
        Index { names, syms, bucket_of, buckets, stats }
    }

    /// The buckets whose rules admit the event's log source.
    fn buckets_for(&self, event: &Event, out: &mut Vec<usize>) {
        let known = |s: &str| self.syms.get(s).copied();
        let mut products = [NONE; 2];
        let np = match event.product.as_deref().and_then(known) {
            Some(p) => {
                products[1] = p;
                2
            }
            None => 1,
        };
        let services = || std::iter::once(NONE).chain(event.services.iter().filter_map(|s| known(s)));
        let categories = || std::iter::once(NONE).chain(event.categories.iter().filter_map(|s| known(s)));
        for &p in products.get(..np).unwrap_or(&[]) {
            for s in services() {
                for c in categories() {
                    if let Some(&b) = self.bucket_of.get(&(p, s, c)) {
                        out.push(b);
                    }
                }
            }
        }
    }

    /// Candidate rules for the event (unsorted, possibly repeated).
    pub(crate) fn candidates(&self, ctx: &Ctx<'_>, buckets: &mut Vec<usize>, out: &mut Vec<u32>) {
        buckets.clear();
        self.buckets_for(ctx.event, buckets);
        let mut joined = None;
        for &b in buckets.iter() {
            if let Some(bucket) = self.buckets.get(b) {
                bucket.candidates(ctx, &mut joined, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    fn lits(src: &str) -> Option<Vec<String>> {
        regex_literals(&Regex::new(src).unwrap())
    }

    #[test]
    fn regex_required_literals() {
        // Under (?i), `s` also matches the long s (U+017F), which does not
        // fold to `s`: both spellings are kept, so the index stays sound.
        assert_eq!(
            lits(r#"(?i)\.exe["']?\s+[^"]{0,64}werfaultsecure\.exe"#),
            Some(vec!["werfaultsecure.exe".to_owned(), "werfault\u{17f}ecure.exe".to_owned()])
        );
        assert_eq!(lits(r"\w+`(?:\w+|-|.)`"), Some(vec!["`".to_owned()]));
        assert_eq!(lits(r"(foo|bar)\d+bazz"), Some(vec!["bazz".to_owned()]));
        assert_eq!(lits(r"(foo|bar)\d+"), Some(vec!["bar".to_owned(), "foo".to_owned()]));
        assert_eq!(lits(r"\s[a-fA-F0-9]{64}\s"), None);
        assert_eq!(lits(r"a?b?"), None);
        // Every literal found really is in every match.
        for (re, text) in [(r"(?i)abc\d+def", "xxABC12DEFyy"), (r"(ab|cd)+ef", "cdcdef"), (r"x{3}y", "xxxy")] {
            let found = lits(re).unwrap();
            assert!(found.iter().any(|l| fold(text).contains(l.as_str())), "{re}: {found:?}");
        }
    }
}
