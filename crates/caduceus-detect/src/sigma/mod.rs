//! Sigma rules: loading (SigmaHQ YAML, every value modifier, correlation
//! documents handed to `crate::correlation`), normalising events to Sigma's
//! field names and log sources, and matching an event against the whole
//! rule set. Owns no state beyond the rules; never emits findings.
//!
//! # Why our own engine
//!
//! The target is at least 500,000 events per second per core against the
//! full SigmaHQ corpus (about 3,600 rules), at least 200 times a naive
//! engine that evaluates every rule on every event. `sigma-rust` is such an
//! engine: about 7 million rule checks per second per core, i.e. some 2,300
//! events per second against 3,000 rules. No per-rule speed-up closes a gap
//! of that size; only not evaluating most rules does. So rules are compiled
//! into an index (see `index.rs`): bucketed by log source, and within a
//! bucket reached through the literals they need, so that one pass over an
//! event's values names the handful of rules worth evaluating (about 7 of
//! the 3,780, on ordinary Windows activity). That index needs the compiled
//! form of every rule's condition and values, hence an engine of our own.
//! The `throughput` measurement in `tests/sigma_corpus.rs` prints where it
//! stands; `matches_unindexed` is the naive engine it is compared with.
//!
//! # Semantics chosen where the specification leaves room
//!
//! - Strings match case-insensitively (per-character lowercase) unless
//!   `cased`; `re` is case-sensitive unless `re|i`.
//! - Field names match regardless of ASCII case.
//! - Keywords (lists of strings, `'|all'`) match text anywhere in any value.
//! - `null` matches an absent or null field; `exists` only looks at presence.
//! - `neq` holds when the field is present and equals none of the values.
//! - `expand` placeholders take their values from
//!   [`RuleSet::set_placeholders`]; a placeholder with no configured values
//!   still loads but that value never matches (so `filter|expand` filters
//!   nothing and `selection|expand` selects nothing).
//! - `windash` follows pySigma: a `-` or `/` starting a word after a
//!   non-word character takes all five dash spellings.
//! - `base64`/`base64offset` output is compared like any string
//!   (case-insensitively unless `cased`).
//! - A Windows event belongs to every category its event id maps to
//!   (Sysmon 13 is `registry_set` and `registry_event`), and a rule that
//!   names no service matches any service of its product and category.

mod compile;
mod condition;
mod event;
mod fieldmap;
mod index;
mod matcher;
mod parse;
mod windows;

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use foldhash::fast::RandomState;

pub use event::{Event, MAX_EVENT_FIELDS, MAX_EVENT_TEXT};
pub use fieldmap::FieldMap;
pub use index::IndexStats;
pub use parse::{MAX_DOCUMENTS, MAX_RULE_FILE_BYTES};

use crate::RuleError;
use crate::correlation::CorrelationRule;
use compile::Interner;
use event::fold_name;
use index::Index;
use matcher::{Ctx, Detection, FieldId, Slots};

/// A Sigma log source. On a rule, the parts it names; on an event, what it
/// is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct LogSource {
    pub product: Option<String>,
    pub service: Option<String>,
    pub category: Option<String>,
}

/// A rule's log source, lowercased for matching.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct SourceKey {
    pub(crate) product: Option<Box<str>>,
    pub(crate) service: Option<Box<str>>,
    pub(crate) category: Option<Box<str>>,
}

impl SourceKey {
    pub(crate) fn of(ls: &LogSource) -> Self {
        let norm = |s: &Option<String>| -> Option<Box<str>> {
            s.as_deref().map(|s| event::fold(s.trim()).into_owned()).filter(|s| !s.is_empty()).map(Into::into)
        };
        Self { product: norm(&ls.product), service: norm(&ls.service), category: norm(&ls.category) }
    }

    /// Every part the rule names equals the event's (for services and
    /// categories: is one of the event's).
    fn admits(&self, event: &Event) -> bool {
        self.product.as_ref().is_none_or(|p| event.product.as_ref() == Some(p))
            && self.service.as_ref().is_none_or(|s| event.services.contains(s))
            && self.category.as_ref().is_none_or(|c| event.categories.contains(c))
    }
}

/// One loaded Sigma detection rule.
#[derive(Debug)]
pub struct Rule {
    pub id: String,
    pub name: Option<String>,
    pub title: String,
    pub status: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    /// Lowercased (`informational`, `low`, `medium`, `high`, `critical`).
    pub level: Option<String>,
    pub tags: Vec<String>,
    pub logsource: LogSource,
    pub falsepositives: Vec<String>,
    /// Fields worth showing an analyst.
    pub fields: Vec<String>,
    pub references: Vec<String>,
    /// Where it came from (`api:<id>` for uploaded rules) and the line its
    /// YAML document starts on.
    pub file: String,
    pub line: usize,
    pub(crate) key: SourceKey,
    pub(crate) detection: Detection,
}

/// What loading directories did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Rules and correlations loaded.
    pub loaded: usize,
    pub errors: Vec<RuleError>,
}

#[derive(Debug, Default)]
struct FieldTable {
    ids: HashMap<Box<str>, FieldId, RandomState>,
}

impl Interner for FieldTable {
    fn intern(&mut self, name: &str) -> FieldId {
        let name = fold_name(name);
        if let Some(id) = self.ids.get(&*name) {
            return *id;
        }
        let id = FieldId::try_from(self.ids.len()).unwrap_or(FieldId::MAX);
        self.ids.insert(name.into(), id);
        id
    }
}

/// A set of compiled rules and correlations, indexed for matching. Adding
/// rules invalidates the index; it is rebuilt on the next match.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    enabled: Vec<bool>,
    by_id: HashMap<String, usize>,
    fields: FieldTable,
    placeholders: BTreeMap<String, Vec<String>>,
    correlations: Vec<CorrelationRule>,
    index: OnceLock<Index>,
}

/// Per-thread buffers reused by [`RuleSet::matches`].
#[derive(Default)]
struct Scratch {
    slots: Slots,
    buckets: Vec<usize>,
    candidates: Vec<u32>,
}

/// Deepest directory nesting walked (symbolic-link loops end here).
const MAX_DIR_DEPTH: usize = 32;

fn collect_files(path: &Path, depth: usize, out: &mut Vec<PathBuf>, errors: &mut Vec<RuleError>) {
    if depth > MAX_DIR_DEPTH {
        errors.push(RuleError::new(path.display().to_string(), None, "directory nested too deep"));
        return;
    }
    if path.is_file() {
        out.push(path.to_owned());
        return;
    }
    let entries = match std::fs::read_dir(path) {
        Ok(entries) => entries,
        Err(e) => {
            errors.push(RuleError::new(path.display().to_string(), None, format!("cannot read directory: {e}")));
            return;
        }
    };
    let mut children: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    children.sort();
    for child in children {
        if child.is_dir() {
            collect_files(&child, depth + 1, out, errors);
        } else if child.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(child);
        }
    }
}

fn read_capped(path: &Path) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let mut bytes = Vec::new();
    file.take(MAX_RULE_FILE_BYTES as u64 + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() > MAX_RULE_FILE_BYTES {
        return Err(format!("larger than {MAX_RULE_FILE_BYTES} bytes"));
    }
    String::from_utf8(bytes).map_err(|_| "not UTF-8".to_owned())
}

impl RuleSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Values of `expand` placeholders (`%Admins%` → names), for rules
    /// added from now on.
    pub fn set_placeholders(&mut self, placeholders: BTreeMap<String, Vec<String>>) {
        self.placeholders = placeholders;
    }

    /// Load every .yml/.yaml under the directories (recursively, in path
    /// order; a path that is a file is loaded as one). Bad rules are
    /// reported, not fatal.
    pub fn load_dirs(dirs: &[PathBuf]) -> (RuleSet, LoadReport) {
        let mut set = RuleSet::new();
        let report = set.add_dirs(dirs);
        (set, report)
    }

    /// As [`RuleSet::load_dirs`], into this set.
    pub fn add_dirs(&mut self, dirs: &[PathBuf]) -> LoadReport {
        let mut report = LoadReport::default();
        let mut files = Vec::new();
        for dir in dirs {
            collect_files(dir, 0, &mut files, &mut report.errors);
        }
        for file in files {
            let name = file.display().to_string();
            match read_capped(&file) {
                Ok(text) => match self.add_yaml(&name, &text) {
                    Ok(ids) => report.loaded += ids.len(),
                    Err(e) => report.errors.push(e),
                },
                Err(message) => report.errors.push(RuleError::new(name, None, message)),
            }
        }
        report
    }

    /// Parse one file's text (may hold several YAML documents, incl.
    /// correlation rules). Returns the ids added. `file` names the source in
    /// errors. All or nothing: if any document is bad, nothing is added. A
    /// rule whose id is already loaded is an error.
    pub fn add_yaml(&mut self, file: &str, text: &str) -> Result<Vec<String>, RuleError> {
        if text.len() > MAX_RULE_FILE_BYTES {
            return Err(RuleError::new(file, None, format!("larger than {MAX_RULE_FILE_BYTES} bytes")));
        }
        let docs = parse::documents(text);
        if docs.len() > MAX_DOCUMENTS {
            return Err(RuleError::new(file, None, format!("more than {MAX_DOCUMENTS} YAML documents")));
        }
        if docs.is_empty() {
            return Err(RuleError::new(file, None, "no YAML document"));
        }
        let mut rules = Vec::new();
        let mut correlations = Vec::new();
        for doc in &docs {
            match parse::document(file, doc, &mut self.fields, &self.placeholders)? {
                parse::Parsed::Rule(rule) => rules.push((*rule, doc.line)),
                parse::Parsed::Correlation(c) => correlations.push(*c),
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (rule, line) in &rules {
            if let Some(&other) = self.by_id.get(&rule.id) {
                let where_ = self.rules.get(other).map(|r| format!("{}:{}", r.file, r.line)).unwrap_or_default();
                return Err(RuleError::new(
                    file,
                    Some(*line),
                    format!("rule id {} is already loaded from {where_}", rule.id),
                ));
            }
            if seen.contains(&rule.id.as_str()) {
                return Err(RuleError::new(
                    file,
                    Some(*line),
                    format!("rule id {} appears twice in the file", rule.id),
                ));
            }
            seen.push(&rule.id);
        }
        let mut ids = Vec::with_capacity(rules.len() + correlations.len());
        for (rule, _) in rules {
            ids.push(rule.id.clone());
            self.by_id.insert(rule.id.clone(), self.rules.len());
            self.rules.push(rule);
            self.enabled.push(true);
        }
        for c in correlations {
            ids.push(c.id.clone());
            self.correlations.push(c);
        }
        self.index = OnceLock::new();
        Ok(ids)
    }

    /// Enable or disable a rule by id; false if there is no such rule.
    pub fn set_enabled(&mut self, id: &str, enabled: bool) -> bool {
        match self.by_id.get(id).and_then(|&i| self.enabled.get_mut(i)) {
            Some(slot) => {
                *slot = enabled;
                true
            }
            None => false,
        }
    }

    /// Whether the rule is enabled; `None` if there is no such rule.
    pub fn is_enabled(&self, id: &str) -> Option<bool> {
        self.by_id.get(id).and_then(|&i| self.enabled.get(i)).copied()
    }

    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    pub fn rule(&self, id: &str) -> Option<&Rule> {
        self.by_id.get(id).and_then(|&i| self.rules.get(i))
    }

    pub fn rule_at(&self, index: usize) -> Option<&Rule> {
        self.rules.get(index)
    }

    /// Position of a rule, as [`RuleSet::matches`] reports it.
    pub fn index_of(&self, id: &str) -> Option<usize> {
        self.by_id.get(id).copied()
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn correlations(&self) -> &[CorrelationRule] {
        &self.correlations
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index::build(&self.rules, self.fields.ids.iter().map(|(n, id)| (&**n, *id))))
    }

    /// Build the index now rather than on the first match.
    pub fn prepare(&self) -> IndexStats {
        self.index().stats
    }

    /// Record where each field of the event is, by this set's field ids;
    /// names no rule uses are left out.
    fn resolve_into(&self, event: &Event, slots: &mut Slots) {
        slots.begin(self.fields.ids.len());
        let names = &self.index().names;
        let mut i = 0;
        let entries = &event.entries;
        while let Some(first) = entries.get(i) {
            let name = event.name(first);
            let mut end = i + 1;
            while entries.get(end).is_some_and(|e| !e.first) {
                end += 1;
            }
            if let Some(id) = names.get(name, first.hash)
                && let (Ok(s), Ok(e)) = (u32::try_from(i), u32::try_from(end))
            {
                slots.set(id, s, e);
            }
            i = end;
        }
    }

    fn resolve(&self, event: &Event) -> Slots {
        let mut slots = Slots::default();
        self.resolve_into(event, &mut slots);
        slots
    }

    /// Indices of the enabled rules whose detection matches, ascending
    /// (indexed: only candidate rules are evaluated). Replaces `out`'s
    /// contents.
    pub fn matches(&self, event: &Event, out: &mut Vec<usize>) {
        // Per-thread buffers: this runs for every event, and allocating
        // them each time costs as much as a tenth of it.
        thread_local! {
            static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
        }
        SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
            Ok(mut scratch) => self.matches_with(event, out, &mut scratch),
            Err(_) => self.matches_with(event, out, &mut Scratch::default()),
        });
    }

    fn matches_with(&self, event: &Event, out: &mut Vec<usize>, scratch: &mut Scratch) {
        out.clear();
        let Scratch { slots, buckets, candidates } = scratch;
        candidates.clear();
        self.resolve_into(event, slots);
        let ctx = Ctx { event, slots };
        self.index().candidates(&ctx, buckets, candidates);
        candidates.sort_unstable();
        candidates.dedup();
        for &c in candidates.iter() {
            let i = c as usize;
            if self.enabled.get(i).copied().unwrap_or(false)
                && let Some(rule) = self.rules.get(i)
                && rule.detection.eval(&ctx)
            {
                out.push(i);
            }
        }
    }

    /// The rules the index would evaluate for this event (enabled or not),
    /// ascending: a diagnostic of how selective the index is.
    pub fn candidates(&self, event: &Event, out: &mut Vec<usize>) {
        out.clear();
        let slots = self.resolve(event);
        let ctx = Ctx { event, slots: &slots };
        let mut candidates = Vec::new();
        self.index().candidates(&ctx, &mut Vec::new(), &mut candidates);
        candidates.sort_unstable();
        candidates.dedup();
        out.extend(candidates.into_iter().map(|c| c as usize));
    }

    /// The same, evaluating every rule (for tests proving the index loses
    /// nothing).
    pub fn matches_unindexed(&self, event: &Event, out: &mut Vec<usize>) {
        out.clear();
        let slots = self.resolve(event);
        let ctx = Ctx { event, slots: &slots };
        for (i, rule) in self.rules.iter().enumerate() {
            if self.enabled.get(i).copied().unwrap_or(false) && rule.key.admits(event) && rule.detection.eval(&ctx) {
                out.push(i);
            }
        }
    }
}

impl Event {
    /// From an evtx-JSON record (`{"Event":{"System":..,"EventData":..}}`):
    /// derives the Windows log source (product windows, service from
    /// Channel, category from the Sysmon/Security/PowerShell event id) and
    /// the fields. `None` without a System section.
    pub fn from_evtx_json(value: &serde_json::Value) -> Option<Event> {
        windows::from_evtx_json(value)
    }
}
