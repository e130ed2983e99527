//! From a detection item (`Field|mod1|mod2: values`) to compiled matchers:
//! the Sigma string syntax (`*`, `?`, `\` escapes), every value modifier of
//! the modifiers appendix (transformations applied in the order written,
//! then the type modifiers), and the placeholders of `expand`.

use std::collections::BTreeMap;

use memchr::memmem::Finder;
use serde_norway::Value as Yaml;

use super::event::fold;
use super::matcher::{Cidr, Cmp, FieldId, Glob, Item, Matcher, Pattern, RefKind, Seg, TimePart};

/// Most matchers one value may expand into (windash and placeholders
/// multiply).
const MAX_EXPANSION: usize = 4096;
/// Largest compiled regular expression, in bytes.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// A compile error, with the text to look for in the rule to find its line.
#[derive(Debug)]
pub(crate) struct CompileError {
    pub(crate) needle: Option<String>,
    pub(crate) message: String,
}

impl CompileError {
    pub(crate) fn new(needle: Option<&str>, message: impl Into<String>) -> Self {
        Self { needle: needle.map(str::to_owned), message: message.into() }
    }
}

/// Interns field names (folded) to ids.
pub(crate) trait Interner {
    fn intern(&mut self, name: &str) -> FieldId;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Modifier {
    Contains,
    StartsWith,
    EndsWith,
    All,
    Base64,
    Base64Offset,
    Utf16Le,
    Utf16Be,
    Utf16,
    Windash,
    Re,
    ReI,
    ReM,
    ReS,
    Cidr,
    Exists,
    Expand,
    FieldRef,
    Cmp(Cmp),
    Time(TimePart),
    Cased,
    Neq,
}

fn modifier(name: &str, after_re: bool) -> Option<Modifier> {
    Some(match name {
        "contains" => Modifier::Contains,
        "startswith" => Modifier::StartsWith,
        "endswith" => Modifier::EndsWith,
        "all" => Modifier::All,
        "base64" => Modifier::Base64,
        "base64offset" => Modifier::Base64Offset,
        "utf16le" | "wide" => Modifier::Utf16Le,
        "utf16be" => Modifier::Utf16Be,
        "utf16" => Modifier::Utf16,
        "windash" => Modifier::Windash,
        "re" => Modifier::Re,
        "i" if after_re => Modifier::ReI,
        "m" if after_re => Modifier::ReM,
        "s" if after_re => Modifier::ReS,
        "cidr" => Modifier::Cidr,
        "exists" => Modifier::Exists,
        "expand" => Modifier::Expand,
        "fieldref" => Modifier::FieldRef,
        "lt" => Modifier::Cmp(Cmp::Lt),
        "lte" => Modifier::Cmp(Cmp::Lte),
        "gt" => Modifier::Cmp(Cmp::Gt),
        "gte" => Modifier::Cmp(Cmp::Gte),
        "minute" => Modifier::Time(TimePart::Minute),
        "hour" => Modifier::Time(TimePart::Hour),
        "day" => Modifier::Time(TimePart::Day),
        "week" => Modifier::Time(TimePart::Week),
        "month" => Modifier::Time(TimePart::Month),
        "year" => Modifier::Time(TimePart::Year),
        "cased" => Modifier::Cased,
        "neq" => Modifier::Neq,
        _ => return None,
    })
}

/// One piece of a Sigma string: a character, a byte (after a UTF-16
/// encoding), or a wildcard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Piece {
    Char(char),
    Byte(u8),
    Star,
    One,
}

/// Parse the Sigma string syntax: `*` and `?` are wildcards; a backslash
/// escapes `*`, `?` and itself, and is kept as is before anything else.
fn parse_sigma(s: &str) -> Vec<Piece> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&n @ ('*' | '?' | '\\')) => {
                    out.push(Piece::Char(n));
                    chars.next();
                }
                _ => out.push(Piece::Char('\\')),
            },
            '*' => out.push(Piece::Star),
            '?' => out.push(Piece::One),
            c => out.push(Piece::Char(c)),
        }
    }
    out
}

fn plain(s: &str) -> Vec<Piece> {
    s.chars().map(Piece::Char).collect()
}

fn has_wildcards(p: &[Piece]) -> bool {
    p.iter().any(|p| matches!(p, Piece::Star | Piece::One))
}

fn to_bytes(p: &[Piece]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    for piece in p {
        match *piece {
            Piece::Char(c) => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
            Piece::Byte(b) => out.push(b),
            Piece::Star | Piece::One => {}
        }
    }
    out
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    let sym = |i: u32| char::from(B64.get((i & 63) as usize).copied().unwrap_or(b'A'));
    for chunk in bytes.chunks(3) {
        let b0 = u32::from(chunk.first().copied().unwrap_or(0));
        let b1 = u32::from(chunk.get(1).copied().unwrap_or(0));
        let b2 = u32::from(chunk.get(2).copied().unwrap_or(0));
        let n = (b0 << 16) | (b1 << 8) | b2;
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

/// The three encodings of a value at offsets 0, 1 and 2 within a base64
/// stream, without the characters that depend on its neighbours (pySigma's
/// `base64offset`).
fn base64_offsets(bytes: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_CUT: [usize; 3] = [0, 3, 2];
    (0..3usize)
        .filter_map(|i| {
            let mut shifted = vec![b' '; i];
            shifted.extend_from_slice(bytes);
            let enc = base64(&shifted);
            let cut = END_CUT.get((bytes.len() + i) % 3).copied().unwrap_or(0);
            let start = START.get(i).copied().unwrap_or(0);
            let end = enc.len().checked_sub(cut)?;
            enc.get(start..end).filter(|s| !s.is_empty()).map(str::to_owned)
        })
        .collect()
}

fn utf16(p: &[Piece], little: bool, bom: bool) -> Vec<Piece> {
    let mut out = Vec::with_capacity(p.len() * 2 + 2);
    if bom {
        let (a, b) = if little { (0xFF, 0xFE) } else { (0xFE, 0xFF) };
        out.push(Piece::Byte(a));
        out.push(Piece::Byte(b));
    }
    for piece in p {
        match *piece {
            Piece::Char(c) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let [hi, lo] = unit.to_be_bytes();
                    let (first, second) = if little { (lo, hi) } else { (hi, lo) };
                    out.push(Piece::Byte(first));
                    out.push(Piece::Byte(second));
                }
            }
            Piece::Byte(b) => {
                let (first, second) = if little { (b, 0) } else { (0, b) };
                out.push(Piece::Byte(first));
                out.push(Piece::Byte(second));
            }
            w => out.push(w),
        }
    }
    out
}

fn is_word(p: Option<&Piece>) -> bool {
    matches!(p, Some(Piece::Char(c)) if c.is_alphanumeric() || *c == '_')
}

/// `windash`: every `-` or `/` that starts a word after a non-word
/// character (pySigma's `\B[-/]\b`) in each of its five spellings.
fn windash(p: &[Piece]) -> Result<Vec<Vec<Piece>>, String> {
    const DASHES: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];
    let positions: Vec<usize> = (0..p.len())
        .filter(|&i| {
            matches!(p.get(i), Some(Piece::Char('-' | '/')))
                && (i == 0 || !is_word(p.get(i - 1)))
                && is_word(p.get(i + 1))
        })
        .collect();
    let count = 5usize.checked_pow(u32::try_from(positions.len()).unwrap_or(u32::MAX)).unwrap_or(usize::MAX);
    if count > MAX_EXPANSION {
        return Err(format!("windash would expand to more than {MAX_EXPANSION} values"));
    }
    let mut out = vec![p.to_vec()];
    for pos in positions {
        out = out
            .into_iter()
            .flat_map(|v| {
                DASHES.iter().map(move |d| {
                    let mut v = v.clone();
                    if let Some(slot) = v.get_mut(pos) {
                        *slot = Piece::Char(*d);
                    }
                    v
                })
            })
            .collect();
    }
    Ok(out)
}

/// `expand`: `%name%` replaced by each configured value (interpreted as
/// Sigma strings); `\%` is a plain percent. `None` when a placeholder has no
/// values configured.
fn expand(s: &str, placeholders: &BTreeMap<String, Vec<String>>) -> Result<Option<Vec<Vec<Piece>>>, String> {
    let mut variants: Vec<Vec<Piece>> = vec![Vec::new()];
    let mut literal = String::new();
    let mut rest = s;
    let flush = |variants: &mut Vec<Vec<Piece>>, literal: &mut String| {
        if !literal.is_empty() {
            let pieces = parse_sigma(literal);
            for v in variants.iter_mut() {
                v.extend_from_slice(&pieces);
            }
            literal.clear();
        }
    };
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("\\%") {
            flush(&mut variants, &mut literal);
            for v in variants.iter_mut() {
                v.push(Piece::Char('%'));
            }
            rest = after;
            continue;
        }
        if c == '%'
            && let Some(end) = rest.get(1..).and_then(|r| r.find('%'))
        {
            let name = rest.get(1..=end).unwrap_or_default();
            if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-') {
                flush(&mut variants, &mut literal);
                let Some(values) = placeholders.get(name).filter(|v| !v.is_empty()) else { return Ok(None) };
                if variants.len().saturating_mul(values.len()) > MAX_EXPANSION {
                    return Err(format!("placeholders would expand to more than {MAX_EXPANSION} values"));
                }
                variants = variants
                    .into_iter()
                    .flat_map(|v| {
                        values.iter().map(move |value| {
                            let mut v = v.clone();
                            v.extend(parse_sigma(value));
                            v
                        })
                    })
                    .collect();
                rest = rest.get(end + 2..).unwrap_or_default();
                continue;
            }
        }
        literal.push(c);
        rest = rest.get(c.len_utf8()..).unwrap_or_default();
    }
    flush(&mut variants, &mut literal);
    Ok(Some(variants))
}

fn add_star(p: &mut Vec<Piece>, front: bool) {
    if front {
        if p.first() != Some(&Piece::Star) {
            p.insert(0, Piece::Star);
        }
    } else if p.last() != Some(&Piece::Star) {
        p.push(Piece::Star);
    }
}

/// Text of a run of pieces with no wildcard: bytes (after UTF-16) decoded
/// leniently.
fn text_of(p: &[Piece]) -> String {
    if p.iter().any(|x| matches!(x, Piece::Byte(_))) {
        String::from_utf8_lossy(&to_bytes(p)).into_owned()
    } else {
        p.iter().filter_map(|x| if let Piece::Char(c) = x { Some(*c) } else { None }).collect()
    }
}

/// The final pattern, folded unless `cased`.
fn pattern(p: &[Piece], cased: bool) -> Pattern {
    let norm = |s: String| -> String { if cased { s } else { fold(&s).into_owned() } };
    let anchored_start = p.first() != Some(&Piece::Star);
    let anchored_end = p.last() != Some(&Piece::Star);
    // Segments between stars.
    let mut segs: Vec<Vec<Piece>> = Vec::new();
    let mut cur: Vec<Piece> = Vec::new();
    for piece in p {
        if *piece == Piece::Star {
            if !cur.is_empty() {
                segs.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(*piece);
        }
    }
    if !cur.is_empty() {
        segs.push(cur);
    }
    if p.is_empty() {
        return Pattern::Exact("".into());
    }
    if segs.is_empty() {
        return Pattern::Any;
    }
    let any_one = segs.iter().any(|s| s.contains(&Piece::One));
    if !any_one && segs.len() == 1 {
        let text = norm(segs.first().map(|s| text_of(s)).unwrap_or_default());
        return match (anchored_start, anchored_end) {
            (true, true) => Pattern::Exact(text.into()),
            (true, false) => Pattern::Prefix(text.into()),
            (false, true) => Pattern::Suffix(text.into()),
            (false, false) => Pattern::Contains(Box::new(Finder::new(text.as_bytes()).into_owned())),
        };
    }
    let segs = segs
        .iter()
        .map(|s| {
            if s.contains(&Piece::One) {
                // Split at `?`, folding the literal runs.
                let mut chars = Vec::new();
                let mut run: Vec<Piece> = Vec::new();
                let flush = |run: &mut Vec<Piece>, chars: &mut Vec<Option<char>>| {
                    if !run.is_empty() {
                        chars.extend(norm(text_of(run)).chars().map(Some));
                        run.clear();
                    }
                };
                for piece in s {
                    if *piece == Piece::One {
                        flush(&mut run, &mut chars);
                        chars.push(None);
                    } else {
                        run.push(*piece);
                    }
                }
                flush(&mut run, &mut chars);
                Seg::Wild(chars)
            } else {
                Seg::Lit(Box::new(Finder::new(norm(text_of(s)).as_bytes()).into_owned()))
            }
        })
        .collect();
    Pattern::Glob(Glob { segs, anchored_start, anchored_end })
}

fn yaml_scalar_text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        Yaml::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn yaml_number(v: &Yaml) -> Option<f64> {
    match v {
        Yaml::Number(n) => n.as_f64(),
        Yaml::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Split `Field|mod|mod` into the field and its modifiers.
fn parse_key(key: &str) -> Result<(&str, Vec<Modifier>), CompileError> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mut mods = Vec::new();
    let mut after_re = false;
    for name in parts {
        let m = modifier(name.trim(), after_re)
            .ok_or_else(|| CompileError::new(Some(key), format!("unknown value modifier `{name}` in `{key}`")))?;
        after_re = matches!(m, Modifier::Re | Modifier::ReI | Modifier::ReM | Modifier::ReS);
        mods.push(m);
    }
    Ok((field, mods))
}

/// Compile one detection item. `key` is the map key (`Field|mods`, or
/// `|mods` for keywords); `keyword` marks a bare keyword list. Keywords
/// search every value of the event for the text anywhere in it. `all` on a
/// single value, which the appendix discourages, means the same as without.
pub(crate) fn item(
    key: &str,
    value: &Yaml,
    keyword: bool,
    fields: &mut dyn Interner,
    placeholders: &BTreeMap<String, Vec<String>>,
) -> Result<Item, CompileError> {
    let err = |m: String| CompileError::new(Some(key), m);
    let (field_name, mods) = parse_key(key)?;
    let field_name = field_name.trim();
    let has = |m: Modifier| mods.contains(&m);
    let keyword = keyword || field_name.is_empty();
    let field = if keyword { None } else { Some(fields.intern(field_name)) };
    let values: Vec<&Yaml> = match value {
        Yaml::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    if values.is_empty() {
        return Err(err(format!("`{key}` has an empty list of values")));
    }
    let all = has(Modifier::All);
    let neq = has(Modifier::Neq);
    let cased = has(Modifier::Cased);
    let is_type = |m: &Modifier| {
        matches!(
            m,
            Modifier::Re
                | Modifier::ReI
                | Modifier::ReM
                | Modifier::ReS
                | Modifier::Cidr
                | Modifier::Exists
                | Modifier::FieldRef
                | Modifier::Cmp(_)
                | Modifier::Time(_)
        )
    };
    let transforms = |allowed: &[Modifier]| -> Result<(), CompileError> {
        for m in &mods {
            if !matches!(m, Modifier::All | Modifier::Neq | Modifier::Cased) && !is_type(m) && !allowed.contains(m) {
                return Err(err(format!("modifier {m:?} cannot be combined with the type modifiers of `{key}`")));
            }
        }
        Ok(())
    };
    if field.is_none() && mods.iter().any(is_type) {
        return Err(err(format!("`{key}` has no field name for its type modifier")));
    }

    let mut groups: Vec<Vec<Matcher>> = Vec::with_capacity(values.len());
    if has(Modifier::Exists) {
        if mods.len() != 1 || values.len() != 1 {
            return Err(err(format!("`exists` takes one boolean and no other modifier in `{key}`")));
        }
        let Some(Yaml::Bool(b)) = values.first() else {
            return Err(err(format!("`exists` needs true or false in `{key}`")));
        };
        return Ok(Item::new(field, vec![vec![Matcher::Exists(*b)]], false, false));
    }
    if has(Modifier::Re) {
        transforms(&[])?;
        let flag = |m: Modifier| mods.contains(&m);
        for v in &values {
            let Yaml::String(src) = v else { return Err(err(format!("`re` needs a string in `{key}`"))) };
            // Flags inline, so that the index reads them from the source.
            let flags: String = [(Modifier::ReI, 'i'), (Modifier::ReM, 'm'), (Modifier::ReS, 's')]
                .iter()
                .filter(|(m, _)| flag(*m))
                .map(|(_, c)| *c)
                .collect();
            let src = pcre_classes(src);
            let src = if flags.is_empty() { src } else { format!("(?{flags}){src}") };
            let re = regex::RegexBuilder::new(&src).size_limit(REGEX_SIZE_LIMIT).build().map_err(|e| {
                err(format!("unsupported regular expression in `{key}`: {}", last_line(&e.to_string())))
            })?;
            groups.push(vec![Matcher::Regex(re)]);
        }
        return Ok(Item::new(field, groups, all, neq));
    }
    if has(Modifier::Cidr) {
        transforms(&[])?;
        for v in &values {
            let text = yaml_scalar_text(v).ok_or_else(|| err(format!("`cidr` needs a network in `{key}`")))?;
            groups.push(vec![Matcher::Cidr(
                parse_cidr(&text).ok_or_else(|| err(format!("`{text}` is not a CIDR network")))?,
            )]);
        }
        return Ok(Item::new(field, groups, all, neq));
    }
    let time = mods.iter().find_map(|m| if let Modifier::Time(t) = m { Some(*t) } else { None });
    let cmp = mods.iter().find_map(|m| if let Modifier::Cmp(c) = m { Some(*c) } else { None });
    if time.is_some() || cmp.is_some() {
        transforms(&[])?;
        for v in &values {
            let n = yaml_number(v).ok_or_else(|| err(format!("`{key}` needs a number")))?;
            groups.push(vec![match time {
                Some(part) => Matcher::Time(part, cmp.unwrap_or(Cmp::Eq), n),
                None => Matcher::Num(cmp.unwrap_or(Cmp::Eq), n),
            }]);
        }
        return Ok(Item::new(field, groups, all, neq));
    }
    if has(Modifier::FieldRef) {
        transforms(&[Modifier::Contains, Modifier::StartsWith, Modifier::EndsWith])?;
        let kind = if has(Modifier::Contains) {
            RefKind::Contains
        } else if has(Modifier::StartsWith) {
            RefKind::Prefix
        } else if has(Modifier::EndsWith) {
            RefKind::Suffix
        } else {
            RefKind::Exact
        };
        for v in &values {
            let Yaml::String(other) = v else { return Err(err(format!("`fieldref` needs a field name in `{key}`"))) };
            groups.push(vec![Matcher::FieldRef { field: fields.intern(other.trim()), kind, cased }]);
        }
        return Ok(Item::new(field, groups, all, neq));
    }

    // String matching, with transformations in the order written.
    for v in &values {
        if matches!(v, Yaml::Null) {
            if mods.iter().any(|m| !matches!(m, Modifier::Neq)) {
                return Err(err(format!("`null` takes no modifier in `{key}`")));
            }
            groups.push(vec![Matcher::Null]);
            continue;
        }
        let text = yaml_scalar_text(v)
            .ok_or_else(|| err(format!("`{key}` has a value that is not a string, number or boolean")))?;
        let mut variants: Vec<Vec<Piece>> = if has(Modifier::Expand) {
            match expand(&text, placeholders).map_err(err)? {
                Some(v) => v,
                None => {
                    groups.push(vec![Matcher::Never]);
                    continue;
                }
            }
        } else if matches!(v, Yaml::String(_)) {
            vec![parse_sigma(&text)]
        } else {
            vec![plain(&text)]
        };
        if keyword {
            for p in &mut variants {
                add_star(p, true);
                add_star(p, false);
            }
        }
        for m in &mods {
            variants = match m {
                Modifier::Contains => variants
                    .into_iter()
                    .map(|mut p| {
                        add_star(&mut p, true);
                        add_star(&mut p, false);
                        p
                    })
                    .collect(),
                Modifier::StartsWith => variants
                    .into_iter()
                    .map(|mut p| {
                        add_star(&mut p, false);
                        p
                    })
                    .collect(),
                Modifier::EndsWith => variants
                    .into_iter()
                    .map(|mut p| {
                        add_star(&mut p, true);
                        p
                    })
                    .collect(),
                Modifier::Windash => {
                    let mut out = Vec::new();
                    for p in &variants {
                        out.extend(windash(p).map_err(err)?);
                    }
                    out
                }
                Modifier::Base64 | Modifier::Base64Offset => {
                    let mut out = Vec::new();
                    for p in &variants {
                        if has_wildcards(p) {
                            return Err(err(format!("`{key}`: a value with wildcards cannot be base64-encoded")));
                        }
                        let bytes = to_bytes(p);
                        if *m == Modifier::Base64 {
                            out.push(plain(&base64(&bytes)));
                        } else {
                            out.extend(base64_offsets(&bytes).iter().map(|s| plain(s)));
                        }
                    }
                    out
                }
                Modifier::Utf16Le => variants.iter().map(|p| utf16(p, true, false)).collect(),
                Modifier::Utf16Be => variants.iter().map(|p| utf16(p, false, false)).collect(),
                Modifier::Utf16 => variants.iter().map(|p| utf16(p, true, true)).collect(),
                _ => variants,
            };
            if variants.len() > MAX_EXPANSION {
                return Err(err(format!("`{key}` expands to more than {MAX_EXPANSION} values")));
            }
        }
        groups.push(variants.iter().map(|p| Matcher::Str { pat: pattern(p, cased), cased }).collect());
    }
    Ok(Item::new(field, groups, all, neq))
}

/// `\w`, `\d` and `\s` match ASCII only in PCRE (the flavour Sigma
/// names), but all of Unicode in the `regex` crate, where `\w{1,64}` alone
/// compiles past any sane size limit: spell them as PCRE means them.
fn pcre_classes(src: &str) -> String {
    let mut out = String::with_capacity(src.len() + 16);
    let mut in_class = false;
    let mut chars = src.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let Some(n) = chars.next() else {
                    out.push(c);
                    break;
                };
                let (inside, outside) = match n {
                    'w' => ("0-9A-Za-z_", "[0-9A-Za-z_]"),
                    'd' => ("0-9", "[0-9]"),
                    's' => ("\\t\\n\\x0B\\x0C\\r ", "[\\t\\n\\x0B\\x0C\\r ]"),
                    'W' if !in_class => ("", "[^0-9A-Za-z_]"),
                    'D' if !in_class => ("", "[^0-9]"),
                    'S' if !in_class => ("", "[^\\t\\n\\x0B\\x0C\\r ]"),
                    _ => {
                        out.push(c);
                        out.push(n);
                        continue;
                    }
                };
                out.push_str(if in_class { inside } else { outside });
            }
            '[' if !in_class => {
                in_class = true;
                out.push(c);
                // A `]` or `^]` right after the opening is a literal.
                if chars.peek() == Some(&'^') {
                    out.push('^');
                    chars.next();
                }
                if chars.peek() == Some(&']') {
                    out.push(']');
                    chars.next();
                }
            }
            ']' if in_class => {
                in_class = false;
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn last_line(s: &str) -> String {
    s.lines().rfind(|l| !l.trim().is_empty()).unwrap_or(s).trim().to_owned()
}

fn parse_cidr(text: &str) -> Option<Cidr> {
    let text = text.trim();
    let (addr, prefix) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p.trim().parse::<u8>().ok()?)),
        None => (text, None),
    };
    let net: std::net::IpAddr = addr.trim().parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    let prefix = prefix.unwrap_or(max);
    (prefix <= max).then_some(Cidr { net, prefix })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;

    #[test]
    fn pcre_classes_are_ascii() {
        assert_eq!(pcre_classes(r"-k\s\w{1,64}"), r"-k[\t\n\x0B\x0C\r ][0-9A-Za-z_]{1,64}");
        assert_eq!(pcre_classes(r"[\w.]+\.\d"), r"[0-9A-Za-z_.]+\.[0-9]");
        assert_eq!(pcre_classes(r"[^]\d]\W"), r"[^]0-9][^0-9A-Za-z_]");
        let re = regex::Regex::new(&pcre_classes(r"^\w+$")).unwrap();
        assert!(re.is_match("abc_1"));
        assert!(!re.is_match("é"));
    }

    #[test]
    fn sigma_escapes() {
        assert_eq!(parse_sigma("a\\*b"), vec![Piece::Char('a'), Piece::Char('*'), Piece::Char('b')]);
        assert_eq!(parse_sigma("a\\\\*"), vec![Piece::Char('a'), Piece::Char('\\'), Piece::Star]);
        assert_eq!(parse_sigma("C:\\Win"), plain("C:\\Win"));
        assert_eq!(parse_sigma("\\\\\\*"), vec![Piece::Char('\\'), Piece::Char('*')]);
        assert_eq!(parse_sigma("\\\\\\\\"), plain("\\\\"));
        assert_eq!(parse_sigma("a?"), vec![Piece::Char('a'), Piece::One]);
        assert_eq!(parse_sigma("end\\"), plain("end\\"));
    }

    #[test]
    fn base64_variants() {
        assert_eq!(base64(b"cmd"), "Y21k");
        assert_eq!(base64(b"ab"), "YWI=");
        // pySigma's test vector.
        assert_eq!(base64_offsets(b"foobar"), vec!["Zm9vYmFy", "Zvb2Jhc", "mb29iYX"]);
    }

    #[test]
    fn windash_only_at_word_starts() {
        let v = windash(&plain("cmd -c a-b /x")).unwrap();
        assert_eq!(v.len(), 25);
        assert!(v.iter().any(|p| text_of(p) == "cmd /c a-b -x"));
        assert!(v.iter().all(|p| text_of(p).contains("a-b")));
    }

    #[test]
    fn placeholders_expand() {
        let mut ph = BTreeMap::new();
        ph.insert("Admins".to_owned(), vec!["root".to_owned(), "adm*".to_owned()]);
        let v = expand("%Admins%\\%x%", &ph).unwrap().unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(text_of(&v[0]), "root%x%");
        assert_eq!(v[1][3], Piece::Star);
        assert!(expand("%Missing%", &ph).unwrap().is_none());
    }
}
