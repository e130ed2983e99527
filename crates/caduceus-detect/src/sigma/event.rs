//! Normalised events: a log source (product, services, categories) and a
//! flat list of named values, each value lowercased once so that the many
//! case-insensitive comparisons of Sigma never fold text again. Owns the
//! generic JSON flattening and our own payloads; Windows event logs are in
//! `windows.rs`. Never reads rules.

use std::borrow::Cow;

use caduceus_core::{Payload, SecurityEvent, Status};
use serde_json::Value;

use super::FieldMap;
use super::LogSource;
use crate::FieldLookup;

/// Most values one event keeps; the rest of a larger record is ignored, so
/// that one oversized record cannot make matching slow.
pub const MAX_EVENT_FIELDS: usize = 1024;
/// Deepest nesting of JSON objects and arrays flattened.
const MAX_DEPTH: usize = 32;

/// Lowercase for case-insensitive matching, one character at a time (so
/// that folding a string folds each of its substrings the same way, which
/// the literal index relies on). Borrows when nothing changes.
pub(crate) fn fold(s: &str) -> Cow<'_, str> {
    if s.is_ascii() {
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Cow::Owned(s.to_ascii_lowercase());
        }
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        out.extend(c.to_lowercase());
    }
    if out == s { Cow::Borrowed(s) } else { Cow::Owned(out) }
}

/// Append `fold(s)` to `out` without an intermediate string; true if it
/// differs from `s`.
fn push_folded(out: &mut String, s: &str) -> bool {
    if s.is_ascii() {
        if !s.bytes().any(|b| b.is_ascii_uppercase()) {
            return false;
        }
        let start = out.len();
        out.push_str(s);
        if let Some(tail) = out.get_mut(start..) {
            tail.make_ascii_lowercase();
        }
        return true;
    }
    let start = out.len();
    for c in s.chars() {
        out.extend(c.to_lowercase());
    }
    out.get(start..) != Some(s)
}

/// Field names compare without regard to ASCII case (`CommandLine` and
/// `commandline` are one field), as Windows field names vary in case
/// between producers, and without spaces (the specification: "strip all
/// spaces", so Defender's `Source Name` is `SourceName`).
pub(crate) fn fold_name(s: &str) -> Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase() || b == b' ') {
        Cow::Owned(s.chars().filter(|c| *c != ' ').map(|c| c.to_ascii_lowercase()).collect())
    } else {
        Cow::Borrowed(s)
    }
}

/// A range of an event's text.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

/// The first eight bytes of a name, big-endian: orders like the name, so
/// sorting and grouping compare one integer before any bytes.
fn name_prefix(name: &str) -> u64 {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(name.bytes()) {
        *k = b;
    }
    u64::from_be_bytes(key)
}

/// One value of a field. Names and values live in one buffer per event
/// (`Event::text`): building an event is one growing string, not three
/// allocations per field, and matching reads memory that sits together.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Folded field name.
    name: Span,
    /// `name_prefix` of the name.
    prefix: u64,
    /// `index::name_hash` of the name, for the rule set's lookup.
    pub(crate) hash: u64,
    /// The first entry of its name (entries are sorted by name).
    pub(crate) first: bool,
    /// The value as it came (numbers and booleans as their JSON text).
    raw: Span,
    /// The same, folded (equal to `raw` when folding changes nothing).
    folded: Span,
    null: bool,
    /// A second name for a value already present (a nested leaf's last key,
    /// a field-map alias): keyword search skips it so each value is searched
    /// once.
    pub(crate) alias: bool,
}

/// A non-null value, as matchers see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Val<'a> {
    raw: &'a str,
    folded: &'a str,
}

impl<'a> Val<'a> {
    pub(crate) fn raw(&self) -> &'a str {
        self.raw
    }

    pub(crate) fn folded(&self) -> &'a str {
        self.folded
    }
}

/// A normalised event: its log source and its fields (flattened, Sigma
/// names). Field names are matched without regard to ASCII case; a field
/// may hold several values (a JSON array), any of which may match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub(crate) product: Option<Box<str>>,
    pub(crate) services: Vec<Box<str>>,
    pub(crate) categories: Vec<Box<str>>,
    text: String,
    /// Sorted by name (stable, so values of one field keep their order).
    pub(crate) entries: Vec<Entry>,
}

/// Most bytes of text one event keeps (names and values, folded copies
/// included); values beyond it are dropped like fields beyond
/// [`MAX_EVENT_FIELDS`].
pub const MAX_EVENT_TEXT: usize = 4 << 20;

/// Collects entries, capped, and sorts them once at the end.
pub(crate) struct Builder {
    text: String,
    entries: Vec<Entry>,
    /// Reused to format numbers.
    digits: String,
}

impl Default for Builder {
    fn default() -> Self {
        Self { text: String::with_capacity(4096), entries: Vec::with_capacity(48), digits: String::new() }
    }
}

impl Builder {
    fn span_of(&mut self, write: impl FnOnce(&mut String)) -> Span {
        let start = self.text.len();
        write(&mut self.text);
        Span {
            start: u32::try_from(start).unwrap_or(u32::MAX),
            end: u32::try_from(self.text.len()).unwrap_or(u32::MAX),
        }
    }

    fn get(&self, span: Span) -> &str {
        self.text.get(span.start as usize..span.end as usize).unwrap_or_default()
    }

    fn full(&self, extra: usize) -> bool {
        self.entries.len() >= MAX_EVENT_FIELDS || self.text.len().saturating_add(extra) > MAX_EVENT_TEXT
    }

    /// Write a folded name (ASCII lowercase, no spaces) into the buffer.
    fn name(&mut self, name: &str) -> (Span, u64, u64) {
        let span = self.span_of(|t| {
            let start = t.len();
            if name.contains(' ') {
                t.extend(name.chars().filter(|c| *c != ' '));
            } else {
                t.push_str(name);
            }
            if let Some(tail) = t.get_mut(start..) {
                tail.make_ascii_lowercase();
            }
        });
        let folded = self.get(span);
        (span, name_prefix(folded), super::index::name_hash(folded.as_bytes()))
    }

    /// Add a value.
    fn push_value(&mut self, name: &str, value: &str, alias: bool) {
        if self.full(name.len() + value.len() * 2) {
            return;
        }
        let (name, prefix, hash) = self.name(name);
        let raw = self.span_of(|t| t.push_str(value));
        // Fold straight into the buffer; give the bytes back if nothing
        // changed.
        let start = self.text.len();
        let folded = if push_folded(&mut self.text, value) {
            Span {
                start: u32::try_from(start).unwrap_or(u32::MAX),
                end: u32::try_from(self.text.len()).unwrap_or(u32::MAX),
            }
        } else {
            self.text.truncate(start);
            raw
        };
        self.entries.push(Entry { name, prefix, hash, first: false, raw, folded, null: false, alias });
    }

    pub(crate) fn push_text(&mut self, name: &str, value: &str) {
        self.push_value(name, value, false);
    }

    pub(crate) fn push_null(&mut self, name: &str) {
        self.push_null_as(name, false);
    }

    fn push_null_as(&mut self, name: &str, alias: bool) {
        if self.full(name.len()) {
            return;
        }
        let (name, prefix, hash) = self.name(name);
        let empty = Span { start: name.end, end: name.end };
        self.entries.push(Entry { name, prefix, hash, first: false, raw: empty, folded: empty, null: true, alias });
    }

    fn push_scalar(&mut self, name: &str, value: &Value, alias: bool) {
        use std::fmt::Write as _;
        match value {
            Value::Null => self.push_null_as(name, alias),
            Value::String(s) => self.push_value(name, s, alias),
            Value::Bool(b) => self.push_value(name, if *b { "true" } else { "false" }, alias),
            Value::Number(n) => {
                let mut digits = std::mem::take(&mut self.digits);
                digits.clear();
                // Writing to a String cannot fail.
                _ = write!(digits, "{n}");
                self.push_value(name, &digits, alias);
                self.digits = digits;
            }
            Value::Array(_) | Value::Object(_) => {}
        }
    }

    /// A JSON scalar (objects and arrays are ignored here).
    pub(crate) fn push_json(&mut self, name: &str, value: &Value) {
        self.push_scalar(name, value, false);
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        let name = fold_name(name);
        self.entries.iter().any(|e| self.get(e.name) == name)
    }

    /// Add `to` as a second name for every value of `from`, unless the event
    /// already has a field `to`.
    pub(crate) fn alias(&mut self, from: &str, to: &str) {
        if to.is_empty() || self.has(to) {
            return;
        }
        let from = fold_name(from);
        let copies: Vec<Entry> = self.entries.iter().filter(|e| self.get(e.name) == from).copied().collect();
        for entry in copies {
            if self.full(to.len()) {
                return;
            }
            let (name, prefix, hash) = self.name(to);
            self.entries.push(Entry { name, prefix, hash, alias: true, ..entry });
        }
    }

    /// Flatten a JSON value: nested objects joined with `.`, and every leaf
    /// also under its last key (as Sigma backends for nested logs do);
    /// arrays give a field several values.
    pub(crate) fn flatten(&mut self, path: &mut String, key: &str, value: &Value, depth: usize) {
        if depth > MAX_DEPTH {
            return;
        }
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    self.flatten(path, k, v, depth + 1);
                    path.truncate(len);
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.flatten(path, key, item, depth + 1);
                }
            }
            scalar => {
                if !path.is_empty() {
                    self.push_scalar(path, scalar, false);
                }
                if path.as_str() != key && !key.is_empty() {
                    self.push_scalar(key, scalar, true);
                }
            }
        }
    }

    pub(crate) fn finish(mut self, product: Option<&str>, services: &[&str], categories: &[&str]) -> Event {
        let text = std::mem::take(&mut self.text);
        let name = |e: &Entry| text.get(e.name.start as usize..e.name.end as usize).unwrap_or_default();
        self.entries.sort_by(|a, b| a.prefix.cmp(&b.prefix).then_with(|| name(a).cmp(name(b))));
        let mut previous: Option<(u64, &str)> = None;
        for e in &mut self.entries {
            let key = (e.prefix, name(e));
            e.first = previous != Some(key);
            previous = Some(key);
        }
        let norm = |s: &str| -> Box<str> { fold(s.trim()).into() };
        Event {
            product: product.filter(|p| !p.trim().is_empty()).map(norm),
            services: services.iter().filter(|s| !s.trim().is_empty()).map(|s| norm(s)).collect(),
            categories: categories.iter().filter(|s| !s.trim().is_empty()).map(|s| norm(s)).collect(),
            text,
            entries: self.entries,
        }
    }
}

impl Event {
    /// From a flat or nested JSON object (nested objects flattened with '.';
    /// also each leaf reachable by its last key, as Sigma backends for evtx
    /// do). A value that is not an object gives an event with no fields.
    pub fn from_json(logsource: LogSource, value: &Value) -> Event {
        let mut b = Builder::default();
        if value.is_object() {
            b.flatten(&mut String::new(), "", value, 0);
        }
        let services: Vec<&str> = logsource.service.as_deref().into_iter().collect();
        let categories: Vec<&str> = logsource.category.as_deref().into_iter().collect();
        b.finish(logsource.product.as_deref(), &services, &categories)
    }

    /// From a caduceus [`SecurityEvent`]: a `LogRecord` keeps its own log
    /// source and fields; our own payloads become product `caduceus` with a
    /// service per component (`vault`, `identity`, `platform`, `detect`) and
    /// fields named as in the payload. The field map then adds the Sigma name
    /// of each of our fields as a second name. A detection finding gets no
    /// fields, so that rules cannot fire on their own findings.
    pub fn from_security_event(event: &SecurityEvent, map: &FieldMap) -> Event {
        let mut b = Builder::default();
        let text = |b: &mut Builder, name: &str, value: &str| b.push_text(name, value);
        let opt = |b: &mut Builder, name: &str, value: &Option<String>| match value {
            Some(v) => b.push_text(name, v),
            None => b.push_null(name),
        };
        let status = match event.status() {
            Status::Success => "success",
            Status::Failure => "failure",
            Status::Unknown => "unknown",
            Status::Other => "other",
        };
        let (product, service, category): (Option<&str>, Option<&str>, Option<&str>) = match event.payload() {
            Payload::LogRecord { product, service, category, fields } => {
                for (k, v) in fields {
                    let mut path = k.clone();
                    b.flatten(&mut path, k, v, 1);
                }
                (product.as_deref(), service.as_deref(), category.as_deref())
            }
            Payload::RecordAccess {
                action,
                outcome,
                actor,
                roles,
                source,
                purpose_of_use,
                break_glass,
                resource_type,
                resource,
                query,
                reasons,
                ..
            } => {
                text(&mut b, "action", action.as_str());
                text(&mut b, "outcome", outcome.as_str());
                text(&mut b, "actor", actor);
                for role in roles {
                    text(&mut b, "roles", role);
                }
                text(&mut b, "source", source);
                opt(&mut b, "purpose_of_use", purpose_of_use);
                opt(&mut b, "break_glass", break_glass);
                opt(&mut b, "resource_type", resource_type);
                opt(&mut b, "resource", resource);
                opt(&mut b, "query", query);
                for reason in reasons {
                    text(&mut b, "reasons", reason);
                }
                (Some("caduceus"), Some("vault"), Some("record_access"))
            }
            Payload::Authentication { activity, account, methods, source, session_id, failure } => {
                text(&mut b, "activity", &snake(activity));
                text(&mut b, "account", account);
                text(&mut b, "methods", methods);
                text(&mut b, "source", source);
                opt(&mut b, "session_id", session_id);
                opt(&mut b, "failure", failure);
                text(&mut b, "status", status);
                (Some("caduceus"), Some("identity"), Some("authentication"))
            }
            Payload::AccountChange { change, account, detail } => {
                text(&mut b, "change", &snake(change));
                text(&mut b, "account", account);
                text(&mut b, "detail", detail);
                text(&mut b, "actor", &event.actor().uid);
                (Some("caduceus"), Some("identity"), Some("account_change"))
            }
            Payload::ApiTokenIssued { token_id, label } => {
                text(&mut b, "token_id", token_id);
                text(&mut b, "label", label);
                text(&mut b, "actor", &event.actor().uid);
                (Some("caduceus"), Some("identity"), Some("api_token"))
            }
            Payload::ConfigChange { key, detail } => {
                text(&mut b, "key", key);
                text(&mut b, "detail", detail);
                text(&mut b, "actor", &event.actor().uid);
                (Some("caduceus"), Some("platform"), Some("config_change"))
            }
            Payload::ServiceLifecycle { phase, version } => {
                text(&mut b, "phase", &snake(phase));
                text(&mut b, "version", version);
                (Some("caduceus"), Some("platform"), Some("service_lifecycle"))
            }
            Payload::DetectionFinding { .. } => (Some("caduceus"), Some("detect"), None),
            Payload::VulnerabilityFinding {
                activity,
                device,
                component,
                advisory,
                vulnerability,
                cves,
                status,
                cvss_tenths,
                kev,
                risk,
                ..
            } => {
                text(&mut b, "activity", &snake(activity));
                text(&mut b, "device", device);
                opt(&mut b, "component", component);
                text(&mut b, "advisory", advisory);
                text(&mut b, "vulnerability", vulnerability);
                for cve in cves {
                    text(&mut b, "cves", cve);
                }
                text(&mut b, "status", status);
                match cvss_tenths {
                    Some(c) => text(&mut b, "cvss", &format!("{:.1}", f64::from(*c) / 10.0)),
                    None => b.push_null("cvss"),
                }
                text(&mut b, "kev", if *kev { "true" } else { "false" });
                text(&mut b, "risk", &risk.to_string());
                (Some("caduceus"), Some("devices"), Some("vulnerability_finding"))
            }
        };
        for (ours, theirs) in map.iter() {
            b.alias(ours, theirs);
        }
        let services: Vec<&str> = service.into_iter().collect();
        let categories: Vec<&str> = category.into_iter().collect();
        b.finish(product, &services, &categories)
    }

    /// The log source; where the event belongs to several categories (a
    /// Sysmon registry event is `registry_set` and `registry_event`), the
    /// first.
    pub fn logsource(&self) -> LogSource {
        LogSource {
            product: self.product.as_deref().map(str::to_owned),
            service: self.services.first().map(|s| s.to_string()),
            category: self.categories.first().map(|s| s.to_string()),
        }
    }

    /// Every category the event belongs to.
    pub fn categories(&self) -> impl Iterator<Item = &str> {
        self.categories.iter().map(|c| &**c)
    }

    /// Every service the event belongs to.
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.services.iter().map(|c| &**c)
    }

    /// The fields as (folded name, value as it came); null values are left
    /// out and second names (aliases) are included.
    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().filter(|e| !e.null).map(|e| (self.name(e), self.span(e.raw)))
    }

    /// Number of values held (aliases included).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn span(&self, span: Span) -> &str {
        self.text.get(span.start as usize..span.end as usize).unwrap_or_default()
    }

    pub(crate) fn name(&self, e: &Entry) -> &str {
        self.span(e.name)
    }

    /// The value of an entry; `None` when null.
    pub(crate) fn val(&self, e: &Entry) -> Option<Val<'_>> {
        (!e.null).then(|| Val { raw: self.span(e.raw), folded: self.span(e.folded) })
    }

    /// The entries of one (folded) field name.
    pub(crate) fn values_named(&self, folded_name: &str) -> &[Entry] {
        let start = self.entries.partition_point(|e| self.name(e) < folded_name);
        let end =
            start + self.entries.get(start..).map_or(0, |rest| rest.partition_point(|e| self.name(e) == folded_name));
        self.entries.get(start..end).unwrap_or(&[])
    }
}

fn snake<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

impl FieldLookup for Event {
    /// The first non-null value of the field (name matched without regard to
    /// ASCII case).
    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        let name = fold_name(name);
        self.values_named(&name).iter().find_map(|e| self.val(e)).map(|v| Cow::Borrowed(v.raw()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]
    use super::*;
    use serde_json::json;

    #[test]
    fn fold_is_per_character() {
        assert_eq!(fold("CMD.EXE"), "cmd.exe");
        assert!(matches!(fold("already"), Cow::Borrowed(_)));
        assert_eq!(fold("ÄBΣ"), "äbσ");
        // Folding a whole equals folding its parts (the index relies on it).
        let s = "XΣY";
        assert_eq!(fold(s), format!("{}{}", fold("XΣ"), fold("Y")));
    }

    #[test]
    fn from_json_flattens_and_keeps_last_keys() {
        let ev = Event::from_json(
            LogSource { product: Some("Linux".into()), service: None, category: Some("process_creation".into()) },
            &json!({"process": {"Image": "/bin/sh", "args": ["-c", "id"]}, "pid": 7, "gone": null}),
        );
        assert_eq!(ev.field("process.image").as_deref(), Some("/bin/sh"));
        assert_eq!(ev.field("Image").as_deref(), Some("/bin/sh"));
        assert_eq!(ev.field("pid").as_deref(), Some("7"));
        assert_eq!(ev.field("gone"), None);
        assert_eq!(ev.values_named("args").len(), 2);
        assert_eq!(ev.logsource().product.as_deref(), Some("linux"));
    }
}
