//! Sigma v2 correlation rules: parsing them (`event_count`, `value_count`,
//! `temporal`, `temporal_ordered`, and the v2.1 metrics `value_sum`,
//! `value_avg`, `value_percentile`) and evaluating them over the matches of
//! base rules, on event time, in bounded memory. It reads no clock and does
//! no I/O: time comes with each event and through [`Correlator::advance`].
//!
//! # Evaluation (what the Sigma specification leaves to the backend)
//!
//! - **Windows.** A window of `timespan` is closed at both ends: events at
//!   `t` and `t + timespan` are in one window. Windows slide: for a
//!   condition with only lower bounds (`gt`, `gte`; the default of the
//!   temporal types), the window ending at each event is checked, so a
//!   burst is caught wherever it starts.
//! - **Upper bounds** (`lt`, `lte`, `eq`, `neq`, or a range such as
//!   `gt: 100, lte: 200`) cannot be judged while more events may still
//!   come, so they are judged when a window closes: a group's window opens
//!   at its first event not already in a window and closes `timespan` later;
//!   once the watermark passes its end, its count is checked. A group with
//!   no events has no window: "fewer than N" is only ever said of groups
//!   that were seen.
//! - **De-duplication.** After a group fires on a sliding window ending at
//!   `t`, it does not fire again for windows ending at or before
//!   `t + timespan`: the next hit is about events that all came after this
//!   one. Closing windows never overlap, so they need no such rule.
//! - **Out-of-order events** are placed by event time in a per-group
//!   buffer. The watermark is the largest event time seen (or passed to
//!   [`Correlator::advance`]) minus the allowed lateness; events are judged
//!   in event-time order once the watermark reaches them, so any arrival
//!   order within the lateness gives the same hits as time order. An event
//!   older than the watermark comes too late: it is dropped and counted.
//!   The default lateness is [`DEFAULT_LATENESS_MS`] (10 s): enough for
//!   hosts whose clocks NTP keeps within a second or two and for events
//!   batched by their shippers; it delays hits by as much. Callers replaying
//!   old logs pass event time to `advance`, not the wall clock.
//! - **Bounded memory.** Groups per rule, events per group and events in
//!   all are capped; what is dropped to stay within the caps (the oldest
//!   events of a group, the least recently active groups) is counted in
//!   [`CorrelatorStats`], never silent. State older than every window that
//!   could still need it is released as the watermark moves.
//! - **Chaining.** A correlation may refer to another correlation (by id
//!   or name). The inner correlation's hits feed the outer one as events at
//!   the time they fired, their fields being the inner group-by values.
//!   Like referenced base rules, an inner correlation's own hits are only
//!   reported when a correlation referring to it sets `generate`.
//!   Reference cycles and chains deeper than [`MAX_CHAIN_DEPTH`] are
//!   rejected (see [`Correlator::problems`]).

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, VecDeque};
use std::fmt;

use serde_norway::{Mapping, Value};

use crate::error::RuleError;
use crate::fields::FieldLookup;

/// Longest title, as the specification's schema allows.
pub const MAX_TITLE_LEN: usize = 256;
/// Longest id, name, rule reference, field or alias.
pub const MAX_NAME_LEN: usize = 256;
/// Longest description (the schema's limit).
pub const MAX_DESCRIPTION_LEN: usize = 65_535;
/// Most rules one correlation may refer to.
pub const MAX_RULE_REFS: usize = 64;
/// Most group-by fields.
pub const MAX_GROUP_BY: usize = 16;
/// Most aliases.
pub const MAX_ALIASES: usize = 32;
/// Most tags or false-positive notes.
pub const MAX_TAGS: usize = 64;
/// Longest timespan: a year. Longer windows would hold state for longer
/// than any log retention we plan for.
pub const MAX_TIMESPAN_MS: i64 = 365 * DAY_MS;
/// Largest count a condition may name: windows keep their events, so a
/// count is also a memory bound.
pub const MAX_COUNT_THRESHOLD: u64 = 100_000;
/// Deepest chain of correlations referring to correlations.
pub const MAX_CHAIN_DEPTH: usize = 8;
/// Default allowed lateness of out-of-order events (see the module docs).
pub const DEFAULT_LATENESS_MS: i64 = 10_000;

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60 * SECOND_MS;
const HOUR_MS: i64 = 60 * MINUTE_MS;
const DAY_MS: i64 = 24 * HOUR_MS;

const TYPE_NAMES: &str = "event_count, value_count, temporal, temporal_ordered, value_sum, value_avg, value_percentile";
const CORRELATION_KEYS: [&str; 7] = ["type", "rules", "aliases", "group-by", "timespan", "condition", "generate"];
const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];
const STATUSES: [&str; 5] = ["stable", "test", "experimental", "deprecated", "unsupported"];

/// A parsed Sigma correlation rule.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationRule {
    /// The rule's id; without one, its name; without either, `file:line`.
    pub id: String,
    /// The name other correlations may refer to it by.
    pub name: Option<String>,
    pub title: String,
    pub description: Option<String>,
    pub status: Option<String>,
    /// Sigma level (`informational` … `critical`).
    pub level: Option<String>,
    pub tags: Vec<String>,
    pub falsepositives: Vec<String>,
    pub taxonomy: Option<String>,
    pub kind: CorrelationKind,
    /// Referenced rules (base rules or correlations), by id or name, in
    /// the order given (the order `temporal_ordered` requires).
    pub rules: Vec<String>,
    /// Fields (or aliases) whose values separate groups; empty: one group.
    pub group_by: Vec<String>,
    pub timespan_ms: i64,
    pub condition: Condition,
    /// Whether the referenced rules also fire on their own.
    pub generate: bool,
    /// Alias name → referenced rule (as written in `rules`) → that rule's
    /// field holding the value.
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    /// Where the rule came from (a file, or `api`).
    pub file: String,
    /// 1-based line of the rule's YAML document, where known.
    pub line: Option<usize>,
}

/// What a correlation measures in a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorrelationKind {
    /// Matching events.
    EventCount,
    /// Distinct values of `field`.
    ValueCount { field: String },
    /// Distinct referenced rules that matched, in any order.
    Temporal,
    /// Referenced rules matched in the listed order (the longest such
    /// prefix of the list).
    TemporalOrdered,
    /// Sum of the numeric `field`.
    ValueSum { field: String },
    /// Average of the numeric `field`.
    ValueAvg { field: String },
    /// The `percentile`th percentile (nearest rank) of the numeric `field`.
    ValuePercentile { field: String, percentile: u8 },
}

impl CorrelationKind {
    /// The Sigma name of the type.
    pub fn name(&self) -> &'static str {
        match self {
            Self::EventCount => "event_count",
            Self::ValueCount { .. } => "value_count",
            Self::Temporal => "temporal",
            Self::TemporalOrdered => "temporal_ordered",
            Self::ValueSum { .. } => "value_sum",
            Self::ValueAvg { .. } => "value_avg",
            Self::ValuePercentile { .. } => "value_percentile",
        }
    }

    /// The field whose values are measured, for the value types.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::ValueCount { field }
            | Self::ValueSum { field }
            | Self::ValueAvg { field }
            | Self::ValuePercentile { field, .. } => Some(field),
            Self::EventCount | Self::Temporal | Self::TemporalOrdered => None,
        }
    }

    /// Whether the measure is a count (whole numbers, conditions checked
    /// against integers).
    fn counts(&self) -> bool {
        matches!(self, Self::EventCount | Self::ValueCount { .. } | Self::Temporal | Self::TemporalOrdered)
    }
}

/// A comparison in a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Gt,
    Gte,
    Lt,
    Lte,
    Eq,
    Neq,
}

impl CompareOp {
    const ALL: [Self; 6] = [Self::Gt, Self::Gte, Self::Lt, Self::Lte, Self::Eq, Self::Neq];

    /// The key in a Sigma condition.
    pub fn key(self) -> &'static str {
        match self {
            Self::Gt => "gt",
            Self::Gte => "gte",
            Self::Lt => "lt",
            Self::Lte => "lte",
            Self::Eq => "eq",
            Self::Neq => "neq",
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Self::Gt => ">",
            Self::Gte => ">=",
            Self::Lt => "<",
            Self::Lte => "<=",
            Self::Eq => "=",
            Self::Neq => "!=",
        }
    }

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Self::Gt => value > bound,
            Self::Gte => value >= bound,
            Self::Lt => value < bound,
            Self::Lte => value <= bound,
            Self::Eq => value == bound,
            Self::Neq => value != bound,
        }
    }
}

/// When a correlation matches: every comparison must hold (a range is two
/// comparisons).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    pub bounds: Vec<(CompareOp, f64)>,
}

impl Condition {
    /// Whether `value` meets every comparison.
    pub fn holds(&self, value: f64) -> bool {
        self.bounds.iter().all(|(op, bound)| op.holds(value, *bound))
    }

    /// Whether the condition bounds the measure from above (`lt`, `lte`,
    /// `eq`, `neq`): such a condition can only be judged once a window is
    /// complete.
    pub fn needs_closed_window(&self) -> bool {
        self.bounds.iter().any(|(op, _)| !matches!(op, CompareOp::Gt | CompareOp::Gte))
    }

    /// The largest bound, for sizing buffers.
    fn max_bound(&self) -> f64 {
        self.bounds.iter().map(|(_, b)| *b).fold(0.0, f64::max)
    }

    /// Whether some whole number in `lo..=hi` meets the condition (the
    /// candidates are the ends and the points around each bound).
    fn satisfiable_between(&self, lo: u64, hi: u64) -> bool {
        let mut candidates = vec![lo, hi];
        for (_, bound) in &self.bounds {
            let b = bound.max(0.0) as u64;
            candidates.extend([b.saturating_sub(1), b, b.saturating_add(1)]);
        }
        candidates.into_iter().filter(|c| (lo..=hi).contains(c)).any(|c| self.holds(c as f64))
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (op, bound)) in self.bounds.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{} {}", op.symbol(), number(*bound))?;
        }
        Ok(())
    }
}

/// A whole number without its `.0`.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { format!("{value}") }
}

/// A duration in the Sigma notation where it divides evenly.
pub fn format_timespan(ms: i64) -> String {
    for (unit, size) in [("d", DAY_MS), ("h", HOUR_MS), ("m", MINUTE_MS), ("s", SECOND_MS)] {
        if ms >= size && ms % size == 0 {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// Parse a Sigma timespan: a whole number and one of `s`, `m`, `h`, `d`
/// (as the specification lists them); returns milliseconds.
pub fn parse_timespan(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    if digits.is_empty() {
        return Err(format!("timespan \"{text}\" must be a whole number followed by s, m, h or d (e.g. 5m)"));
    }
    let size = match unit {
        "s" => SECOND_MS,
        "m" => MINUTE_MS,
        "h" => HOUR_MS,
        "d" => DAY_MS,
        "" => return Err(format!("timespan \"{text}\" has no unit; add s, m, h or d (e.g. {text}s)")),
        _ => return Err(format!("timespan \"{text}\" has an unknown unit \"{unit}\"; use s, m, h or d")),
    };
    let count: i64 = digits.parse().map_err(|_| format!("timespan \"{text}\" is too long"))?;
    let ms = count.checked_mul(size).filter(|ms| *ms <= MAX_TIMESPAN_MS).ok_or_else(|| {
        format!("timespan \"{text}\" is longer than the {} allowed", format_timespan(MAX_TIMESPAN_MS))
    })?;
    if ms == 0 {
        return Err(format!("timespan \"{text}\" must be longer than zero"));
    }
    Ok(ms)
}

/// Parse one YAML document (already known to have a `correlation` key).
/// `file` names the source and `line` the document's first line in
/// errors; see [`parse_with_text`] for errors pointing at the exact line.
pub fn parse(doc: &Value, file: &str, line: Option<usize>) -> Result<CorrelationRule, RuleError> {
    parse_located(doc, &Loc { file, line, text: None })
}

/// [`parse`], given also the document's text (starting at `line`), so
/// that errors name the line of the offending key.
pub fn parse_with_text(doc: &Value, file: &str, line: Option<usize>, text: &str) -> Result<CorrelationRule, RuleError> {
    parse_located(doc, &Loc { file, line, text: Some(text) })
}

/// Where a document came from, to turn a key path into a line.
struct Loc<'a> {
    file: &'a str,
    line: Option<usize>,
    text: Option<&'a str>,
}

impl Loc<'_> {
    fn err(&self, path: &[&str], message: impl Into<String>) -> RuleError {
        let located = self.text.and_then(|text| key_line(text, path)).map(|offset| self.line.unwrap_or(1) + offset);
        RuleError::new(self.file, located.or(self.line), message)
    }
}

/// 0-based line of the key at `path` (nested mapping keys) in a YAML
/// document's text; the deepest key found when the full path is not.
fn key_line(text: &str, path: &[&str]) -> Option<usize> {
    let mut found = None;
    let mut parent_indent: Option<usize> = None;
    let mut depth = 0;
    for (i, raw) in text.lines().enumerate() {
        let Some(key) = path.get(depth) else { break };
        let trimmed = raw.trim_start();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = raw.len() - trimmed.len();
        if let Some(parent) = parent_indent
            && indent <= parent
        {
            break;
        }
        let right_level = match parent_indent {
            Some(parent) => indent > parent,
            None => indent == 0,
        };
        if right_level && is_key(trimmed, key) {
            found = Some(i);
            parent_indent = Some(indent);
            depth += 1;
        }
    }
    found
}

fn is_key(line: &str, key: &str) -> bool {
    let line = line.strip_prefix("- ").unwrap_or(line);
    let rest = line
        .strip_prefix(key)
        .or_else(|| line.strip_prefix('"').and_then(|l| l.strip_prefix(key)).and_then(|l| l.strip_prefix('"')))
        .or_else(|| line.strip_prefix('\'').and_then(|l| l.strip_prefix(key)).and_then(|l| l.strip_prefix('\'')));
    rest.is_some_and(|rest| rest.trim_start().starts_with(':'))
}

/// A present, non-null value.
fn get<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(key).filter(|v| !v.is_null())
}

fn text_of(value: &Value) -> Option<&str> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

fn checked_name(value: &Value, loc: &Loc, path: &[&str], what: &str) -> Result<String, RuleError> {
    let text = text_of(value).ok_or_else(|| loc.err(path, format!("{what} must be text")))?;
    let text = text.trim();
    if text.is_empty() {
        return Err(loc.err(path, format!("{what} is empty")));
    }
    if text.len() > MAX_NAME_LEN {
        return Err(loc.err(path, format!("{what} is longer than {MAX_NAME_LEN} characters")));
    }
    Ok(text.to_owned())
}

fn optional_text(map: &Mapping, key: &str, max: usize, loc: &Loc, path: &[&str]) -> Result<Option<String>, RuleError> {
    let Some(value) = get(map, key) else { return Ok(None) };
    let text = text_of(value).ok_or_else(|| loc.err(path, format!("{key} must be text")))?;
    if text.len() > max {
        return Err(loc.err(path, format!("{key} is longer than {max} characters")));
    }
    Ok(Some(text.trim().to_owned()))
}

/// A string or a list of strings, as a list.
fn name_list(value: &Value, max: usize, loc: &Loc, path: &[&str], what: &str) -> Result<Vec<String>, RuleError> {
    let items: Vec<&Value> = match value {
        Value::Sequence(items) => items.iter().collect(),
        other => vec![other],
    };
    if items.len() > max {
        return Err(loc.err(path, format!("{what} has {} entries; at most {max} are allowed", items.len())));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let name = checked_name(item, loc, path, &format!("each entry of {what}"))?;
        if out.contains(&name) {
            return Err(loc.err(path, format!("{what} lists \"{name}\" twice")));
        }
        out.push(name);
    }
    Ok(out)
}

fn parse_located(doc: &Value, loc: &Loc) -> Result<CorrelationRule, RuleError> {
    let top = doc.as_mapping().ok_or_else(|| loc.err(&[], "a correlation rule must be a YAML mapping"))?;

    let title = optional_text(top, "title", MAX_TITLE_LEN, loc, &["title"])?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| loc.err(&["title"], "missing title"))?;
    let id = get(top, "id").map(|v| checked_name(v, loc, &["id"], "id")).transpose()?;
    let name = get(top, "name").map(|v| checked_name(v, loc, &["name"], "name")).transpose()?;
    let description = optional_text(top, "description", MAX_DESCRIPTION_LEN, loc, &["description"])?;
    let taxonomy = optional_text(top, "taxonomy", MAX_NAME_LEN, loc, &["taxonomy"])?;
    let status = optional_text(top, "status", MAX_NAME_LEN, loc, &["status"])?;
    if let Some(status) = &status
        && !STATUSES.contains(&status.as_str())
    {
        return Err(loc.err(&["status"], format!("status \"{status}\" is not one of {}", STATUSES.join(", "))));
    }
    let level = optional_text(top, "level", MAX_NAME_LEN, loc, &["level"])?;
    if let Some(level) = &level
        && !LEVELS.contains(&level.as_str())
    {
        return Err(loc.err(&["level"], format!("level \"{level}\" is not one of {}", LEVELS.join(", "))));
    }
    let tags = match get(top, "tags") {
        Some(v) => name_list(v, MAX_TAGS, loc, &["tags"], "tags")?,
        None => Vec::new(),
    };
    let falsepositives = match get(top, "falsepositives") {
        Some(Value::Sequence(items)) if items.len() > MAX_TAGS => {
            return Err(loc.err(&["falsepositives"], format!("falsepositives has more than {MAX_TAGS} entries")));
        }
        Some(Value::Sequence(items)) => items.iter().filter_map(text_of).map(str::to_owned).collect(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(_) => return Err(loc.err(&["falsepositives"], "falsepositives must be text or a list of text")),
        None => Vec::new(),
    };

    let corr = match get(top, "correlation") {
        Some(Value::Mapping(m)) => m,
        Some(_) => return Err(loc.err(&["correlation"], "correlation must be a mapping")),
        None => return Err(loc.err(&[], "missing correlation section")),
    };
    for key in corr.keys() {
        let key_text = text_of(key).unwrap_or("");
        if CORRELATION_KEYS.contains(&key_text) {
            continue;
        }
        let message = match key_text {
            "field" => "field belongs in the condition section (condition: {field: ..., gte: ...})".to_owned(),
            "group_by" | "groupby" => "unknown key \"group_by\" in correlation; did you mean group-by?".to_owned(),
            "" => "correlation has a key that is not text".to_owned(),
            other => format!("unknown key \"{other}\" in correlation; expected {}", CORRELATION_KEYS.join(", ")),
        };
        return Err(loc.err(&["correlation", key_text], message));
    }

    let type_name = match get(corr, "type") {
        Some(v) => text_of(v).ok_or_else(|| loc.err(&["correlation", "type"], "correlation type must be text"))?,
        None => return Err(loc.err(&["correlation"], format!("missing correlation type (one of {TYPE_NAMES})"))),
    };
    if !TYPE_NAMES.split(", ").any(|t| t == type_name) {
        return Err(loc.err(
            &["correlation", "type"],
            format!("unknown correlation type \"{type_name}\"; expected one of {TYPE_NAMES}"),
        ));
    }
    let rules = match get(corr, "rules") {
        Some(v) => name_list(v, MAX_RULE_REFS, loc, &["correlation", "rules"], "rules")?,
        None => return Err(loc.err(&["correlation"], "missing rules: the rules (ids or names) to correlate")),
    };
    if rules.is_empty() {
        return Err(loc.err(&["correlation", "rules"], "rules is empty"));
    }
    let group_by = match get(corr, "group-by") {
        Some(v) => name_list(v, MAX_GROUP_BY, loc, &["correlation", "group-by"], "group-by")?,
        None => Vec::new(),
    };
    let timespan_ms = match get(corr, "timespan") {
        Some(Value::String(text)) => parse_timespan(text).map_err(|m| loc.err(&["correlation", "timespan"], m))?,
        Some(Value::Number(n)) => {
            return Err(loc.err(
                &["correlation", "timespan"],
                format!("timespan {n} has no unit; write e.g. {n}s, {n}m, {n}h or {n}d"),
            ));
        }
        Some(_) => return Err(loc.err(&["correlation", "timespan"], "timespan must be text such as 5m")),
        None => return Err(loc.err(&["correlation"], "missing timespan (e.g. timespan: 5m)")),
    };
    let generate = parse_generate(top, corr, loc)?;
    let aliases = parse_aliases(corr, &rules, loc)?;

    let condition_map = match get(corr, "condition") {
        Some(Value::Mapping(m)) => Some(m),
        Some(_) => {
            return Err(loc.err(&["correlation", "condition"], "condition must be a mapping such as {gte: 10}"));
        }
        None => None,
    };
    let field = match condition_map.and_then(|m| get(m, "field")) {
        Some(Value::Sequence(items)) if items.len() == 1 => {
            items.first().map(|v| checked_name(v, loc, &["correlation", "condition", "field"], "field")).transpose()?
        }
        Some(Value::Sequence(_)) => {
            return Err(loc.err(
                &["correlation", "condition", "field"],
                "counting several fields together is not supported; name one field",
            ));
        }
        Some(v) => Some(checked_name(v, loc, &["correlation", "condition", "field"], "field")?),
        None => None,
    };
    let percentile = match condition_map.and_then(|m| get(m, "percentile")) {
        Some(v) => {
            let p = v.as_u64().filter(|p| (1..=100).contains(p)).ok_or_else(|| {
                loc.err(&["correlation", "condition", "percentile"], "percentile must be a whole number from 1 to 100")
            })?;
            Some(p as u8)
        }
        None => None,
    };

    let needs_field = |kind: &str| {
        field.clone().ok_or_else(|| {
            loc.err(
                &["correlation", "condition"],
                format!("{kind} needs the field to measure in its condition (condition: {{field: ..., gte: ...}})"),
            )
        })
    };
    let kind = match type_name {
        "event_count" => CorrelationKind::EventCount,
        "value_count" => CorrelationKind::ValueCount { field: needs_field("value_count")? },
        "temporal" => CorrelationKind::Temporal,
        "temporal_ordered" => CorrelationKind::TemporalOrdered,
        "value_sum" => CorrelationKind::ValueSum { field: needs_field("value_sum")? },
        "value_avg" => CorrelationKind::ValueAvg { field: needs_field("value_avg")? },
        // The specification names the median as percentile 50 and gives no
        // default; pySigma reads `percentile` from the condition. Without
        // one we take the median.
        "value_percentile" => CorrelationKind::ValuePercentile {
            field: needs_field("value_percentile")?,
            percentile: percentile.unwrap_or(50),
        },
        other => {
            return Err(loc.err(
                &["correlation", "type"],
                format!("unknown correlation type \"{other}\"; expected one of {TYPE_NAMES}"),
            ));
        }
    };
    if field.is_some() && kind.field().is_none() {
        return Err(loc.err(
            &["correlation", "condition", "field"],
            format!("{} counts events, not values: field is only for the value types", kind.name()),
        ));
    }
    if percentile.is_some() && !matches!(kind, CorrelationKind::ValuePercentile { .. }) {
        return Err(loc.err(&["correlation", "condition", "percentile"], "percentile is only for value_percentile"));
    }
    let temporal = matches!(kind, CorrelationKind::Temporal | CorrelationKind::TemporalOrdered);
    if temporal && rules.len() < 2 {
        return Err(loc.err(
            &["correlation", "rules"],
            format!("{} needs at least two rules to relate; use event_count for one", kind.name()),
        ));
    }

    let condition = match condition_map {
        Some(map) => parse_condition(map, &kind, loc)?,
        None if temporal => Condition { bounds: vec![(CompareOp::Gte, rules.len() as f64)] },
        None => {
            return Err(loc.err(
                &["correlation"],
                format!("missing condition: {} needs one such as condition: {{gte: 10}}", kind.name()),
            ));
        }
    };
    if temporal && !condition.satisfiable_between(1, rules.len() as u64) {
        return Err(loc.err(
            &["correlation", "condition"],
            format!("condition {condition} can never hold: at most {} rules can match", rules.len()),
        ));
    }
    if kind.counts() && !condition.satisfiable_between(1, u64::MAX) {
        return Err(loc.err(&["correlation", "condition"], format!("condition {condition} can never hold")));
    }

    // Every group-by alias (and an aliased value field) must name a field
    // for every referenced rule, or events of that rule could not be grouped.
    let value_alias = kind.field().filter(|f| aliases.contains_key(*f));
    for alias in group_by.iter().map(String::as_str).chain(value_alias) {
        if let Some(map) = aliases.get(alias)
            && let Some(missing) = rules.iter().find(|r| !map.contains_key(*r))
        {
            return Err(loc.err(
                &["correlation", "aliases", alias],
                format!("alias \"{alias}\" names no field for rule \"{missing}\""),
            ));
        }
    }

    let id = match (id, &name) {
        (Some(id), _) => id,
        (None, Some(name)) => name.clone(),
        (None, None) => format!("{}:{}", loc.file, loc.line.unwrap_or(1)),
    };
    Ok(CorrelationRule {
        id,
        name,
        title,
        description,
        status,
        level,
        tags,
        falsepositives,
        taxonomy,
        kind,
        rules,
        group_by,
        timespan_ms,
        condition,
        generate,
        aliases,
        file: loc.file.to_owned(),
        line: loc.line,
    })
}

/// `generate` sits in the correlation section in pySigma and at the top in
/// the specification's schema; both are read.
fn parse_generate(top: &Mapping, corr: &Mapping, loc: &Loc) -> Result<bool, RuleError> {
    let read = |map: &Mapping, path: &[&str]| -> Result<Option<bool>, RuleError> {
        match get(map, "generate") {
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(loc.err(path, "generate must be true or false")),
            None => Ok(None),
        }
    };
    let inner = read(corr, &["correlation", "generate"])?;
    let outer = read(top, &["generate"])?;
    match (inner, outer) {
        (Some(a), Some(b)) if a != b => Err(loc.err(&["generate"], "generate is given twice with different values")),
        (a, b) => Ok(a.or(b).unwrap_or(false)),
    }
}

fn parse_aliases(
    corr: &Mapping,
    rules: &[String],
    loc: &Loc,
) -> Result<BTreeMap<String, BTreeMap<String, String>>, RuleError> {
    let mut out = BTreeMap::new();
    let Some(value) = get(corr, "aliases") else { return Ok(out) };
    let Value::Mapping(map) = value else {
        return Err(loc.err(&["correlation", "aliases"], "aliases must be a mapping: alias → rule → field"));
    };
    if map.len() > MAX_ALIASES {
        return Err(loc.err(&["correlation", "aliases"], format!("more than {MAX_ALIASES} aliases")));
    }
    for (alias, fields) in map {
        let alias = checked_name(alias, loc, &["correlation", "aliases"], "alias name")?;
        let path = ["correlation", "aliases", alias.as_str()];
        let Value::Mapping(fields) = fields else {
            return Err(loc.err(&path, format!("alias \"{alias}\" must map rule names to field names")));
        };
        let mut per_rule = BTreeMap::new();
        for (rule, field) in fields {
            let rule = checked_name(rule, loc, &path, "rule name in an alias")?;
            if !rules.contains(&rule) {
                return Err(loc.err(
                    &path,
                    format!("alias \"{alias}\" names rule \"{rule}\", which is not among this correlation's rules"),
                ));
            }
            let field = checked_name(field, loc, &path, "field name in an alias")?;
            per_rule.insert(rule, field);
        }
        out.insert(alias, per_rule);
    }
    Ok(out)
}

fn parse_condition(map: &Mapping, kind: &CorrelationKind, loc: &Loc) -> Result<Condition, RuleError> {
    let mut bounds = Vec::new();
    for key in map.keys() {
        let key = text_of(key).unwrap_or("");
        if key == "field" || key == "percentile" || CompareOp::ALL.iter().any(|op| op.key() == key) {
            continue;
        }
        return Err(loc.err(
            &["correlation", "condition", key],
            format!("unknown condition key \"{key}\"; expected gt, gte, lt, lte, eq, neq (and field)"),
        ));
    }
    for op in CompareOp::ALL {
        let Some(value) = get(map, op.key()) else { continue };
        let path = ["correlation", "condition", op.key()];
        let bound = if kind.counts() {
            let n = value.as_u64().ok_or_else(|| {
                loc.err(&path, format!("condition {} must be a whole number of at least 0", op.key()))
            })?;
            if n > MAX_COUNT_THRESHOLD {
                return Err(
                    loc.err(&path, format!("condition {} {n} is above the {MAX_COUNT_THRESHOLD} allowed", op.key()))
                );
            }
            n as f64
        } else {
            value
                .as_f64()
                .filter(|v| v.is_finite())
                .ok_or_else(|| loc.err(&path, format!("condition {} must be a number", op.key())))?
        };
        bounds.push((op, bound));
    }
    if bounds.is_empty() {
        return Err(loc.err(&["correlation", "condition"], "condition has no comparison (gt, gte, lt, lte, eq or neq)"));
    }
    Ok(Condition { bounds })
}

// ---------------------------------------------------------------------------
// Evaluation
// ---------------------------------------------------------------------------

/// Limits of a [`Correlator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CorrelatorOptions {
    /// How far behind the newest event time an event may arrive and still
    /// count (see the module docs). Hits wait this long.
    pub lateness_ms: i64,
    /// Events that claim to be further ahead of the last `advance(now)`
    /// than this are dropped (a host with a wrong clock would otherwise
    /// push the watermark forward and make every other event late).
    pub max_future_ms: i64,
    /// Most groups one correlation keeps; beyond it the least recently
    /// active groups are dropped.
    pub max_groups_per_rule: usize,
    /// Most events one group keeps (raised to the rule's count threshold
    /// where that is higher); beyond it the oldest are dropped.
    pub max_events_per_group: usize,
    /// Most events kept over all correlations and groups.
    pub max_buffered_events: usize,
    /// Most event sequence numbers one hit carries (the first and last
    /// halves are kept).
    pub max_hit_events: usize,
}

impl Default for CorrelatorOptions {
    fn default() -> Self {
        Self {
            lateness_ms: DEFAULT_LATENESS_MS,
            max_future_ms: HOUR_MS,
            max_groups_per_rule: 10_000,
            max_events_per_group: 1_000,
            // About 100 MB of buffered events at most.
            max_buffered_events: 1_000_000,
            max_hit_events: 100,
        }
    }
}

/// What the correlator has counted: inputs, and everything it dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorrelatorStats {
    /// Base-rule matches and inner correlation hits taken in.
    pub inputs: u64,
    /// Inputs older than the watermark, dropped.
    pub late_dropped: u64,
    /// Inputs too far ahead of the last `advance`, dropped.
    pub future_dropped: u64,
    /// Inputs without a group-by field, skipped.
    pub missing_group_field: u64,
    /// Inputs to a value type without (a numeric) value, skipped.
    pub missing_value: u64,
    /// Oldest events dropped because their group's buffer was full.
    pub events_dropped: u64,
    /// Groups dropped to stay within the group or event caps.
    pub groups_evicted: u64,
    /// Events lost with those groups.
    pub evicted_events: u64,
    /// Hits returned to the caller.
    pub hits: u64,
    /// Hits of inner correlations that only fed a chain.
    pub chained_hits: u64,
    /// Groups held now.
    pub groups: usize,
    /// Events buffered now.
    pub buffered_events: usize,
}

/// A correlation that fired for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct CorrelationHit {
    /// Index of the rule in [`Correlator::rules`].
    pub rule: usize,
    pub id: String,
    pub title: String,
    /// The group: each group-by name with its value.
    pub group: Vec<(String, String)>,
    /// Events in the window that fired (for `temporal_ordered`: in the
    /// ordered chain).
    pub count: u64,
    /// The measure the condition was checked on: the count, distinct
    /// values, distinct rules, sum, average or percentile.
    pub value: f64,
    /// Event time of the window's first and last events.
    pub first_ms: i64,
    pub last_ms: i64,
    /// Event time at which the condition was met: the last event for
    /// sliding windows, the window's end for closing ones.
    pub fired_ms: i64,
    /// Spine sequence numbers of the events (at most
    /// [`CorrelatorOptions::max_hit_events`]: the first and last halves).
    pub events: Vec<u64>,
}

impl CorrelationHit {
    /// Why the hit fired, in plain words.
    pub fn explain(&self, rule: &CorrelationRule) -> String {
        let span = format_timespan(rule.timespan_ms);
        let rules = rule.rules.join(", ");
        let measured = match &rule.kind {
            CorrelationKind::EventCount => format!("{} events matched {rules} within {span}", self.count),
            CorrelationKind::ValueCount { field } => {
                format!(
                    "{} distinct values of {field} in {} events of {rules} within {span}",
                    number(self.value),
                    self.count
                )
            }
            CorrelationKind::Temporal => {
                format!("{} of the rules {rules} matched within {span}", number(self.value))
            }
            CorrelationKind::TemporalOrdered => {
                format!(
                    "{} of the rules {} matched in that order within {span}",
                    number(self.value),
                    rule.rules.join(" then ")
                )
            }
            CorrelationKind::ValueSum { field } => {
                format!("{field} summed to {} over {} events within {span}", number(self.value), self.count)
            }
            CorrelationKind::ValueAvg { field } => {
                format!("{field} averaged {} over {} events within {span}", number(self.value), self.count)
            }
            CorrelationKind::ValuePercentile { field, percentile } => format!(
                "the {percentile}th percentile of {field} was {} over {} events within {span}",
                number(self.value),
                self.count
            ),
        };
        let group = if self.group.is_empty() {
            String::new()
        } else {
            let pairs: Vec<String> = self.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!(" for {}", pairs.join(", "))
        };
        format!("{measured}{group} (condition: {} {})", rule.kind.name(), rule.condition)
    }
}

/// Whether a rule's condition is judged on sliding windows as events come,
/// or on whole windows once they close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sliding,
    Closing,
}

/// How one referenced rule's events are read.
#[derive(Debug, Clone)]
struct InputSpec {
    /// Field per group-by entry (aliases resolved).
    group_fields: Vec<String>,
    /// Field holding the measured value, for the value types.
    value_field: Option<String>,
}

#[derive(Debug, Clone)]
struct Compiled {
    mode: Mode,
    inputs: Vec<InputSpec>,
    /// Whether hits go to the caller (not only to an outer correlation).
    reported: bool,
    events_cap: usize,
    /// Correlations fed by this one's hits, with the input index there.
    dependents: Vec<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    None,
    Text(Box<str>),
    Num(f64),
}

#[derive(Debug, Clone)]
struct Entry {
    time: i64,
    seq: u64,
    input: usize,
    val: Val,
    /// Further sequence numbers, for an inner correlation's hit.
    more: Option<Box<[u64]>>,
}

impl Entry {
    fn key(&self) -> (i64, u64) {
        (self.time, self.seq)
    }

    fn seqs(&self) -> impl Iterator<Item = u64> + '_ {
        std::iter::once(self.seq).chain(self.more.iter().flat_map(|m| m.iter().copied()))
    }
}

/// Running measures over the sliding window.
#[derive(Debug, Clone, Default)]
struct Agg {
    values: HashMap<Box<str>, u32>,
    per_input: Vec<u32>,
    sum: f64,
    nums: u32,
}

impl Agg {
    fn add(&mut self, entry: &Entry) {
        if let Some(n) = self.per_input.get_mut(entry.input) {
            *n += 1;
        }
        match &entry.val {
            Val::Text(text) => match self.values.get_mut(text) {
                Some(n) => *n += 1,
                None => {
                    self.values.insert(text.clone(), 1);
                }
            },
            Val::Num(x) => {
                self.sum += x;
                self.nums += 1;
            }
            Val::None => {}
        }
    }

    fn remove(&mut self, entry: &Entry) {
        if let Some(n) = self.per_input.get_mut(entry.input) {
            *n = n.saturating_sub(1);
        }
        match &entry.val {
            Val::Text(text) => {
                if let Some(n) = self.values.get_mut(text) {
                    *n -= 1;
                    if *n == 0 {
                        self.values.remove(text);
                    }
                }
            }
            Val::Num(x) => {
                self.nums = self.nums.saturating_sub(1);
                // Exact zero once empty, so rounding does not accumulate.
                self.sum = if self.nums == 0 { 0.0 } else { self.sum - x };
            }
            Val::None => {}
        }
    }
}

/// Entries `lo..hi` of a group's buffer: a window being judged.
#[derive(Clone, Copy)]
struct Window<'a> {
    buf: &'a VecDeque<Entry>,
    lo: usize,
    hi: usize,
}

impl<'a> Window<'a> {
    /// The entries (the range clamped, so never out of bounds).
    fn iter(self) -> std::collections::vec_deque::Iter<'a, Entry> {
        let hi = self.hi.min(self.buf.len());
        self.buf.range(self.lo.min(hi)..hi)
    }

    fn len(self) -> usize {
        self.hi.min(self.buf.len()).saturating_sub(self.lo)
    }
}

/// The measure over `window` (event-time order), `agg` holding the same
/// window's running measures. `None` when there is
/// nothing to measure (an average of no values). Only the ordered and
/// percentile types walk the window.
fn measure(kind: &CorrelationKind, agg: &Agg, window: Window<'_>) -> Option<f64> {
    Some(match kind {
        CorrelationKind::EventCount => window.len() as f64,
        CorrelationKind::ValueCount { .. } => agg.values.len() as f64,
        CorrelationKind::Temporal => agg.per_input.iter().filter(|n| **n > 0).count() as f64,
        CorrelationKind::TemporalOrdered => ordered_chain(window.iter(), agg.per_input.len()).len() as f64,
        CorrelationKind::ValueSum { .. } => agg.sum,
        CorrelationKind::ValueAvg { .. } => {
            if agg.nums == 0 {
                return None;
            }
            agg.sum / f64::from(agg.nums)
        }
        CorrelationKind::ValuePercentile { percentile, .. } => {
            let mut nums: Vec<f64> =
                window.iter().filter_map(|e| if let Val::Num(x) = e.val { Some(x) } else { None }).collect();
            if nums.is_empty() {
                return None;
            }
            // Nearest rank: the smallest value with at least p% at or below.
            let rank = (f64::from(*percentile) / 100.0 * nums.len() as f64).ceil() as usize;
            let index = rank.clamp(1, nums.len()) - 1;
            let (_, value, _) = nums.select_nth_unstable_by(index, f64::total_cmp);
            *value
        }
    })
}

/// The longest prefix of the rules matched in order within `window`
/// (greedy earliest match, which finds the longest).
fn ordered_chain<'a>(window: impl Iterator<Item = &'a Entry>, inputs: usize) -> Vec<&'a Entry> {
    let mut chain = Vec::new();
    for entry in window {
        if chain.len() == inputs {
            break;
        }
        if entry.input == chain.len() {
            chain.push(entry);
        }
    }
    chain
}

#[derive(Debug)]
struct Group {
    key: Box<[String]>,
    /// Events sorted by (time, seq); `[..done]` have been judged.
    buf: VecDeque<Entry>,
    done: usize,
    /// Sliding: first entry of the window ending at the last judged entry.
    win_start: usize,
    agg: Agg,
    /// Sliding: no hit for windows ending at or before this time.
    muted_until: Option<i64>,
    /// Closing: the open window's start time and first entry.
    anchor: Option<i64>,
    anchor_idx: usize,
    /// The time this group is queued under in the pending heap.
    queued: Option<i64>,
    /// Newest event time, for evicting the least recently active groups.
    last_time: i64,
}

impl Group {
    fn new(key: Box<[String]>, inputs: usize) -> Self {
        Self {
            key,
            buf: VecDeque::new(),
            done: 0,
            win_start: 0,
            agg: Agg { per_input: vec![0; inputs], ..Agg::default() },
            muted_until: None,
            anchor: None,
            anchor_idx: 0,
            queued: None,
            last_time: i64::MIN,
        }
    }

    /// Drop the oldest entry, keeping the window bookkeeping right.
    fn pop_front(&mut self, mode: Mode) -> Option<Entry> {
        let entry = self.buf.pop_front()?;
        if self.done > 0 {
            if self.win_start > 0 {
                self.win_start -= 1;
            } else if mode == Mode::Sliding {
                self.agg.remove(&entry);
            }
            self.done -= 1;
        }
        self.anchor_idx = self.anchor_idx.saturating_sub(1);
        Some(entry)
    }

    fn is_idle(&self, frontier: i64) -> bool {
        self.buf.is_empty() && self.anchor.is_none() && self.muted_until.is_none_or(|m| m < frontier)
    }
}

#[derive(Debug, Default)]
struct RuleState {
    groups: HashMap<u64, Group>,
    keys: HashMap<Box<[String]>, u64>,
    next_gid: u64,
    /// Groups with events waiting for the watermark, by earliest time.
    pending: BinaryHeap<Reverse<(i64, u64)>>,
    /// Closing windows by end time.
    deadlines: BinaryHeap<Reverse<(i64, u64)>>,
}

/// A hit before it is addressed to its rule.
struct RawHit {
    group: Box<[String]>,
    count: u64,
    value: f64,
    first_ms: i64,
    last_ms: i64,
    fired_ms: i64,
    events: Vec<u64>,
}

/// An inner correlation's hit on its way to an outer one.
#[derive(Debug)]
struct Chained {
    input: usize,
    time: i64,
    group: Vec<(String, String)>,
    events: Vec<u64>,
}

/// Fields of an inner correlation's hit: its group-by values.
struct HitFields<'a>(&'a [(String, String)]);

impl FieldLookup for HitFields<'_> {
    fn field(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| Cow::Borrowed(v.as_str()))
    }
}

/// Running counters (the public [`CorrelatorStats`] adds the gauges).
#[derive(Debug, Default)]
struct Counters {
    stats: CorrelatorStats,
    buffered: usize,
}

/// Evaluates correlation rules over base-rule matches.
#[derive(Debug)]
pub struct Correlator {
    rules: Vec<CorrelationRule>,
    compiled: Vec<Compiled>,
    states: Vec<RuleState>,
    /// Enabled rules, inner correlations before outer ones.
    order: Vec<usize>,
    /// Base-rule reference (id or name) → (correlation, input index).
    index: HashMap<String, Vec<(usize, usize)>>,
    inbox: Vec<Vec<Chained>>,
    options: CorrelatorOptions,
    problems: Vec<RuleError>,
    counters: Counters,
    /// Newest event time seen or passed to `advance`.
    max_seen: i64,
    last_now: Option<i64>,
}

/// How correlations refer to each other.
struct Graph {
    /// Enabled rules, sources before the rules they feed.
    order: Vec<usize>,
    /// For each rule and input: the correlations that input refers to.
    sources: Vec<Vec<Vec<usize>>>,
    problems: Vec<RuleError>,
}

fn analyse(rules: &[CorrelationRule]) -> Graph {
    let mut by_ref: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, rule) in rules.iter().enumerate() {
        by_ref.entry(rule.id.as_str()).or_default().push(i);
        if let Some(name) = &rule.name
            && name != &rule.id
        {
            by_ref.entry(name.as_str()).or_default().push(i);
        }
    }
    let sources: Vec<Vec<Vec<usize>>> = rules
        .iter()
        .map(|rule| rule.rules.iter().map(|r| by_ref.get(r.as_str()).cloned().unwrap_or_default()).collect())
        .collect();
    // Kahn's algorithm: what remains unordered sits on a cycle (or behind one).
    let mut feeds: Vec<Vec<usize>> = vec![Vec::new(); rules.len()];
    let mut indegree = vec![0usize; rules.len()];
    for (d, inputs) in sources.iter().enumerate() {
        let mut distinct: Vec<usize> = inputs.iter().flatten().copied().collect();
        distinct.sort_unstable();
        distinct.dedup();
        for c in distinct {
            if let Some(f) = feeds.get_mut(c) {
                f.push(d);
            }
            if let Some(n) = indegree.get_mut(d) {
                *n += 1;
            }
        }
    }
    let mut ready: VecDeque<usize> = (0..rules.len()).filter(|i| indegree.get(*i) == Some(&0)).collect();
    let mut order = Vec::with_capacity(rules.len());
    let mut depth = vec![0usize; rules.len()];
    while let Some(c) = ready.pop_front() {
        order.push(c);
        let here = depth.get(c).copied().unwrap_or(0);
        for &d in feeds.get(c).map(Vec::as_slice).unwrap_or(&[]) {
            if let Some(dd) = depth.get_mut(d) {
                *dd = (*dd).max(here + 1);
            }
            if let Some(n) = indegree.get_mut(d) {
                *n -= 1;
                if *n == 0 {
                    ready.push_back(d);
                }
            }
        }
    }
    let mut enabled = vec![false; rules.len()];
    let mut problems = Vec::new();
    for &i in &order {
        if let (Some(e), Some(rule)) = (enabled.get_mut(i), rules.get(i)) {
            if depth.get(i).copied().unwrap_or(0) >= MAX_CHAIN_DEPTH {
                problems.push(RuleError::new(
                    &rule.file,
                    rule.line,
                    format!("correlation \"{}\" sits deeper than {MAX_CHAIN_DEPTH} correlations in a chain", rule.id),
                ));
            } else {
                *e = true;
            }
        }
    }
    for (i, rule) in rules.iter().enumerate() {
        if !order.contains(&i) {
            problems.push(RuleError::new(
                &rule.file,
                rule.line,
                format!("correlation \"{}\" refers to itself through a cycle of correlations", rule.id),
            ));
        }
    }
    order.retain(|i| enabled.get(*i) == Some(&true));
    Graph { order, sources, problems }
}

/// Problems with how correlations refer to each other (cycles, chains too
/// deep): the rules named are not evaluated.
pub fn check_references(rules: &[CorrelationRule]) -> Vec<RuleError> {
    analyse(rules).problems
}

impl Correlator {
    /// A correlator with the default [`CorrelatorOptions`].
    pub fn new(rules: Vec<CorrelationRule>) -> Self {
        Self::with_options(rules, CorrelatorOptions::default())
    }

    pub fn with_options(rules: Vec<CorrelationRule>, options: CorrelatorOptions) -> Self {
        let graph = analyse(&rules);
        let mut compiled: Vec<Compiled> = rules.iter().map(|rule| compile(rule, &options)).collect();
        let mut index: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        let mut referrers: Vec<Vec<usize>> = vec![Vec::new(); rules.len()];
        for &d in &graph.order {
            let (Some(rule), Some(inputs)) = (rules.get(d), graph.sources.get(d)) else { continue };
            for (input, (reference, sources)) in rule.rules.iter().zip(inputs).enumerate() {
                if sources.is_empty() {
                    index.entry(reference.clone()).or_default().push((d, input));
                }
                for &c in sources {
                    if let Some(comp) = compiled.get_mut(c) {
                        comp.dependents.push((d, input));
                    }
                    if let Some(r) = referrers.get_mut(c) {
                        r.push(d);
                    }
                }
            }
        }
        for (c, comp) in compiled.iter_mut().enumerate() {
            let referring = referrers.get(c).map(Vec::as_slice).unwrap_or(&[]);
            comp.reported = referring.is_empty() || referring.iter().any(|d| rules.get(*d).is_some_and(|r| r.generate));
        }
        let states = rules.iter().map(|_| RuleState::default()).collect();
        let inbox = rules.iter().map(|_| Vec::new()).collect();
        Self {
            rules,
            compiled,
            states,
            order: graph.order,
            index,
            inbox,
            options,
            problems: graph.problems,
            counters: Counters::default(),
            max_seen: i64::MIN,
            last_now: None,
        }
    }

    pub fn rules(&self) -> &[CorrelationRule] {
        &self.rules
    }

    pub fn rule(&self, index: usize) -> Option<&CorrelationRule> {
        self.rules.get(index)
    }

    /// Rules that are not evaluated, and why.
    pub fn problems(&self) -> &[RuleError] {
        &self.problems
    }

    pub fn options(&self) -> &CorrelatorOptions {
        &self.options
    }

    /// Whether a base rule (by id or name) feeds any correlation.
    pub fn references(&self, rule_id: &str, rule_name: Option<&str>) -> bool {
        self.index.contains_key(rule_id) || rule_name.is_some_and(|n| self.index.contains_key(n))
    }

    pub fn stats(&self) -> CorrelatorStats {
        CorrelatorStats {
            groups: self.states.iter().map(|s| s.groups.len()).sum(),
            buffered_events: self.counters.buffered,
            ..self.counters.stats
        }
    }

    /// Event time up to which everything has been judged; events older
    /// than this are late. `None` before any event.
    pub fn watermark(&self) -> Option<i64> {
        (self.max_seen != i64::MIN).then(|| self.frontier())
    }

    fn frontier(&self) -> i64 {
        self.max_seen.saturating_sub(self.options.lateness_ms.max(0))
    }

    /// A base rule matched an event (time in ms since epoch, spine seq).
    /// Returns the correlations that fire now — which, with a lateness
    /// above zero, are those whose windows the watermark has just reached.
    pub fn observe(
        &mut self,
        rule_id: &str,
        rule_name: Option<&str>,
        time_ms: i64,
        seq: u64,
        fields: &dyn FieldLookup,
    ) -> Vec<CorrelationHit> {
        let mut targets: Vec<(usize, usize)> = self.index.get(rule_id).cloned().unwrap_or_default();
        if let Some(name) = rule_name
            && name != rule_id
            && let Some(more) = self.index.get(name)
        {
            targets.extend(more.iter().copied());
            targets.sort_unstable();
            targets.dedup();
        }
        if self.last_now.is_some_and(|now| time_ms > now.saturating_add(self.options.max_future_ms)) {
            self.counters.stats.future_dropped += targets.len() as u64;
            return Vec::new();
        }
        if !targets.is_empty() && time_ms < self.frontier() {
            self.counters.stats.late_dropped += targets.len() as u64;
            return Vec::new();
        }
        for (c, input) in targets {
            self.counters.stats.inputs += 1;
            self.take(c, input, time_ms, seq, None, fields);
        }
        self.max_seen = self.max_seen.max(time_ms);
        self.finalize()
    }

    /// Time has reached `now_ms` (on the same clock as event times): judge
    /// what the watermark now covers, close windows that ended (this is
    /// where `lt`/`lte`/`eq`/`neq` conditions fire), and release state no
    /// window can need.
    pub fn advance(&mut self, now_ms: i64) -> Vec<CorrelationHit> {
        self.last_now = Some(self.last_now.map_or(now_ms, |n| n.max(now_ms)));
        self.max_seen = self.max_seen.max(now_ms);
        let hits = self.finalize();
        self.sweep();
        hits
    }

    /// End of input: judge everything still waiting and close every open
    /// window. Later events are all late.
    pub fn flush(&mut self) -> Vec<CorrelationHit> {
        self.max_seen = i64::MAX;
        let hits = self.finalize();
        self.sweep();
        hits
    }

    /// Queue one input for correlation `c`.
    fn take(
        &mut self,
        c: usize,
        input: usize,
        time: i64,
        seq: u64,
        more: Option<Box<[u64]>>,
        fields: &dyn FieldLookup,
    ) {
        let (Some(rule), Some(comp)) = (self.rules.get(c), self.compiled.get(c)) else { return };
        let Some(spec) = comp.inputs.get(input) else { return };
        let mut key = Vec::with_capacity(spec.group_fields.len());
        for field in &spec.group_fields {
            match fields.field(field) {
                Some(value) => key.push(value.into_owned()),
                None => {
                    self.counters.stats.missing_group_field += 1;
                    return;
                }
            }
        }
        let val = match (&rule.kind, &spec.value_field) {
            (CorrelationKind::ValueCount { .. }, Some(field)) => match fields.field(field) {
                Some(v) => Val::Text(v.into_owned().into_boxed_str()),
                None => Val::None,
            },
            (_, Some(field)) => match fields.field(field).and_then(|v| v.trim().parse::<f64>().ok()) {
                Some(x) if x.is_finite() => Val::Num(x),
                _ => Val::None,
            },
            (_, None) => Val::None,
        };
        if spec.value_field.is_some() && val == Val::None {
            self.counters.stats.missing_value += 1;
            return;
        }
        let entry = Entry { time, seq, input, val, more };
        self.insert(c, key.into_boxed_slice(), entry);
    }

    fn insert(&mut self, c: usize, key: Box<[String]>, mut entry: Entry) {
        let (Some(rule), Some(comp), Some(state)) = (self.rules.get(c), self.compiled.get(c), self.states.get_mut(c))
        else {
            return;
        };
        let inputs = rule.rules.len();
        let gid = match state.keys.get(&key) {
            Some(gid) => *gid,
            None => {
                if state.groups.len() >= self.options.max_groups_per_rule.max(1) {
                    evict_oldest(state, state.groups.len() / 16 + 1, &mut self.counters);
                }
                let gid = state.next_gid;
                state.next_gid += 1;
                state.keys.insert(key.clone(), gid);
                state.groups.insert(gid, Group::new(key, inputs));
                gid
            }
        };
        let Some(group) = state.groups.get_mut(&gid) else { return };
        // Entries before `done` were judged; an input landing among them
        // (a tie at the watermark, or an inner hit) goes right after them.
        let sorted = match group.buf.back() {
            // In order, the common case: no search.
            Some(last) if last.key() <= entry.key() => group.buf.len(),
            _ => group.buf.partition_point(|e| e.key() <= entry.key()),
        };
        let pos = sorted.max(group.done);
        if pos == group.done
            && let Some(prev) = group.done.checked_sub(1).and_then(|i| group.buf.get(i))
        {
            entry.time = entry.time.max(prev.time);
        }
        let time = entry.time;
        group.buf.insert(pos, entry);
        group.last_time = group.last_time.max(time);
        self.counters.buffered += 1;
        if group.queued.is_none_or(|q| time < q) {
            group.queued = Some(time);
            state.pending.push(Reverse((time, gid)));
        }
        while group.buf.len() > comp.events_cap {
            if group.pop_front(comp.mode).is_some() {
                self.counters.buffered = self.counters.buffered.saturating_sub(1);
                self.counters.stats.events_dropped += 1;
            }
        }
        if self.counters.buffered > self.options.max_buffered_events {
            self.evict_globally();
        }
    }

    /// Over the global event cap: drop the least recently active groups
    /// until an eighth of the cap is free again.
    fn evict_globally(&mut self) {
        let target = self.options.max_buffered_events - self.options.max_buffered_events / 8;
        let mut all: Vec<(i64, usize, u64)> = self
            .states
            .iter()
            .enumerate()
            .flat_map(|(c, s)| s.groups.iter().map(move |(gid, g)| (g.last_time, c, *gid)))
            .collect();
        all.sort_unstable();
        for (_, c, gid) in all {
            if self.counters.buffered <= target {
                break;
            }
            if let Some(state) = self.states.get_mut(c) {
                remove_group(state, gid, &mut self.counters, true);
            }
        }
    }

    /// Judge everything the watermark covers, inner correlations first so
    /// that their hits reach outer ones in the same pass.
    fn finalize(&mut self) -> Vec<CorrelationHit> {
        let frontier = self.frontier();
        let mut out = Vec::new();
        for position in 0..self.order.len() {
            let Some(&c) = self.order.get(position) else { continue };
            let inbox = self.inbox.get_mut(c).map(std::mem::take).unwrap_or_default();
            for chained in inbox {
                self.counters.stats.inputs += 1;
                let more = (chained.events.len() > 1).then(|| chained.events.get(1..).unwrap_or(&[]).into());
                let seq = chained.events.first().copied().unwrap_or(0);
                self.take(c, chained.input, chained.time, seq, more, &HitFields(&chained.group));
            }
            let raw = self.judge(c, frontier);
            if raw.is_empty() {
                continue;
            }
            let (Some(rule), Some(comp)) = (self.rules.get(c), self.compiled.get(c)) else { continue };
            for hit in raw {
                let group: Vec<(String, String)> =
                    rule.group_by.iter().cloned().zip(hit.group.iter().cloned()).collect();
                for &(d, input) in &comp.dependents {
                    if let Some(inbox) = self.inbox.get_mut(d) {
                        inbox.push(Chained {
                            input,
                            time: hit.fired_ms,
                            group: group.clone(),
                            events: hit.events.clone(),
                        });
                    }
                }
                let hit = CorrelationHit {
                    rule: c,
                    id: rule.id.clone(),
                    title: rule.title.clone(),
                    group,
                    count: hit.count,
                    value: hit.value,
                    first_ms: hit.first_ms,
                    last_ms: hit.last_ms,
                    fired_ms: hit.fired_ms,
                    events: hit.events,
                };
                if comp.reported {
                    self.counters.stats.hits += 1;
                    out.push(hit);
                } else {
                    self.counters.stats.chained_hits += 1;
                }
            }
        }
        out.sort_by(|a, b| (a.fired_ms, a.rule, &a.group).cmp(&(b.fired_ms, b.rule, &b.group)));
        out
    }

    /// Judge correlation `c`'s groups up to `frontier`.
    fn judge(&mut self, c: usize, frontier: i64) -> Vec<RawHit> {
        let (Some(rule), Some(comp), Some(state)) = (self.rules.get(c), self.compiled.get(c), self.states.get_mut(c))
        else {
            return Vec::new();
        };
        let mut hits = Vec::new();
        let ctx = Judge { rule, comp, frontier, max_hit_events: self.options.max_hit_events };
        while let Some(Reverse((time, gid))) = state.pending.peek().copied()
            && time <= frontier
        {
            state.pending.pop();
            let Some(group) = state.groups.get_mut(&gid) else { continue };
            if group.queued != Some(time) {
                continue;
            }
            group.queued = None;
            ctx.group(group, gid, &mut state.deadlines, &mut hits, &mut self.counters);
            if let Some(next) = group.buf.get(group.done) {
                group.queued = Some(next.time);
                state.pending.push(Reverse((next.time, gid)));
            }
        }
        while let Some(Reverse((end, gid))) = state.deadlines.peek().copied()
            && end < frontier
        {
            state.deadlines.pop();
            let Some(group) = state.groups.get_mut(&gid) else { continue };
            if group.anchor.map(|a| a.saturating_add(rule.timespan_ms)) != Some(end) {
                continue;
            }
            ctx.group(group, gid, &mut state.deadlines, &mut hits, &mut self.counters);
        }
        hits
    }

    /// Release what no window can need any more, and idle groups.
    fn sweep(&mut self) {
        let frontier = self.frontier();
        for (c, state) in self.states.iter_mut().enumerate() {
            let (Some(rule), Some(comp)) = (self.rules.get(c), self.compiled.get(c)) else { continue };
            let mut idle = Vec::new();
            for (gid, group) in &mut state.groups {
                trim(group, comp.mode, rule.timespan_ms, frontier, &mut self.counters);
                if group.is_idle(frontier) {
                    idle.push(*gid);
                }
            }
            for gid in idle {
                remove_group(state, gid, &mut self.counters, false);
            }
            if state.groups.is_empty() {
                state.pending.clear();
                state.deadlines.clear();
            }
        }
    }
}

fn compile(rule: &CorrelationRule, options: &CorrelatorOptions) -> Compiled {
    let resolve = |name: &str, reference: &str| -> String {
        rule.aliases.get(name).and_then(|m| m.get(reference)).cloned().unwrap_or_else(|| name.to_owned())
    };
    let inputs = rule
        .rules
        .iter()
        .map(|reference| InputSpec {
            group_fields: rule.group_by.iter().map(|g| resolve(g, reference)).collect(),
            value_field: rule.kind.field().map(|f| resolve(f, reference)),
        })
        .collect();
    let mode = if rule.condition.needs_closed_window() { Mode::Closing } else { Mode::Sliding };
    // A count threshold above the cap could never be reached.
    let needed = if rule.kind.counts() { rule.condition.max_bound() as usize + 1 } else { 0 };
    Compiled {
        mode,
        inputs,
        reported: true,
        events_cap: options.max_events_per_group.max(needed).max(1),
        dependents: Vec::new(),
    }
}

/// Drop `count` of the least recently active groups.
fn evict_oldest(state: &mut RuleState, count: usize, counters: &mut Counters) {
    let mut by_age: Vec<(i64, u64)> = state.groups.iter().map(|(gid, g)| (g.last_time, *gid)).collect();
    let count = count.min(by_age.len());
    if count == 0 {
        return;
    }
    if count < by_age.len() {
        by_age.select_nth_unstable(count - 1);
    }
    for (_, gid) in by_age.into_iter().take(count) {
        remove_group(state, gid, counters, true);
    }
}

fn remove_group(state: &mut RuleState, gid: u64, counters: &mut Counters, evicted: bool) {
    if let Some(group) = state.groups.remove(&gid) {
        state.keys.remove(&group.key);
        counters.buffered = counters.buffered.saturating_sub(group.buf.len());
        if evicted {
            counters.stats.groups_evicted += 1;
            counters.stats.evicted_events += group.buf.len() as u64;
        }
    }
}

/// Release judged entries no future window can include: before the
/// sliding window's start or the open closing window, or older than the
/// watermark minus the timespan.
fn trim(group: &mut Group, mode: Mode, span: i64, frontier: i64, counters: &mut Counters) {
    let oldest_needed = frontier.saturating_sub(span);
    while group.done > 0
        && let Some(front) = group.buf.front()
    {
        let unneeded = match mode {
            Mode::Sliding => group.win_start > 0 || front.time < oldest_needed,
            Mode::Closing => match group.anchor {
                Some(_) => group.anchor_idx > 0,
                None => true,
            },
        };
        if !unneeded {
            break;
        }
        group.pop_front(mode);
        counters.buffered = counters.buffered.saturating_sub(1);
    }
    if group.muted_until.is_some_and(|m| m < frontier) {
        group.muted_until = None;
    }
}

/// What judging one rule's groups needs.
struct Judge<'a> {
    rule: &'a CorrelationRule,
    comp: &'a Compiled,
    frontier: i64,
    max_hit_events: usize,
}

impl Judge<'_> {
    /// Judge a group's entries up to the watermark, in event-time order.
    fn group(
        &self,
        group: &mut Group,
        gid: u64,
        deadlines: &mut BinaryHeap<Reverse<(i64, u64)>>,
        hits: &mut Vec<RawHit>,
        counters: &mut Counters,
    ) {
        let span = self.rule.timespan_ms;
        match self.comp.mode {
            Mode::Sliding => {
                while let Some(entry) = group.buf.get(group.done)
                    && entry.time <= self.frontier
                {
                    let time = entry.time;
                    group.agg.add(entry);
                    group.done += 1;
                    let start = time.saturating_sub(span);
                    while group.win_start < group.done
                        && let Some(old) = group.buf.get(group.win_start)
                        && old.time < start
                    {
                        group.agg.remove(old);
                        group.win_start += 1;
                    }
                    if group.muted_until.is_some_and(|m| time <= m) {
                        continue;
                    }
                    let window = Window { buf: &group.buf, lo: group.win_start, hi: group.done };
                    if let Some(hit) = self.hit(&group.key, &group.agg, window, time, None) {
                        group.muted_until = Some(time.saturating_add(span));
                        hits.push(hit);
                    }
                }
            }
            Mode::Closing => {
                while let Some(entry) = group.buf.get(group.done)
                    && entry.time <= self.frontier
                {
                    let time = entry.time;
                    if let Some(anchor) = group.anchor
                        && time > anchor.saturating_add(span)
                    {
                        self.close(group, hits);
                    }
                    if group.anchor.is_none() {
                        group.anchor = Some(time);
                        group.anchor_idx = group.done;
                        deadlines.push(Reverse((time.saturating_add(span), gid)));
                    }
                    group.done += 1;
                }
                if let Some(anchor) = group.anchor
                    && anchor.saturating_add(span) < self.frontier
                {
                    self.close(group, hits);
                }
            }
        }
        trim(group, self.comp.mode, span, self.frontier, counters);
    }

    /// Judge the closing window that is open, and close it.
    fn close(&self, group: &mut Group, hits: &mut Vec<RawHit>) {
        let Some(anchor) = group.anchor.take() else { return };
        let end = anchor.saturating_add(self.rule.timespan_ms);
        let lo = group.anchor_idx.min(group.done);
        let judged = Window { buf: &group.buf, lo, hi: group.done };
        let window = Window { hi: lo + judged.iter().take_while(|e| e.time <= end).count(), ..judged };
        let mut agg = Agg { per_input: vec![0; self.rule.rules.len()], ..Agg::default() };
        window.iter().for_each(|e| agg.add(e));
        if let Some(hit) = self.hit(&group.key, &agg, window, end, Some(anchor)) {
            hits.push(hit);
        }
    }

    /// A hit for `window` if it meets the condition.
    fn hit(&self, key: &[String], agg: &Agg, window: Window<'_>, fired_ms: i64, anchor: Option<i64>) -> Option<RawHit> {
        let value = measure(&self.rule.kind, agg, window)?;
        if !self.rule.condition.holds(value) {
            return None;
        }
        let chosen: Vec<&Entry> = if self.rule.kind == CorrelationKind::TemporalOrdered {
            ordered_chain(window.iter(), self.rule.rules.len())
        } else {
            window.iter().collect()
        };
        let first_ms = anchor.or_else(|| chosen.first().map(|e| e.time)).unwrap_or(fired_ms);
        let last_ms = chosen.last().map_or(fired_ms, |e| e.time);
        Some(RawHit {
            group: key.into(),
            count: chosen.len() as u64,
            value,
            first_ms,
            last_ms,
            fired_ms,
            events: bounded_seqs(&chosen, self.max_hit_events),
        })
    }
}

/// Sequence numbers of `entries`: all of them, or the first and last
/// halves of `max`.
fn bounded_seqs(entries: &[&Entry], max: usize) -> Vec<u64> {
    let all: Vec<u64> = entries.iter().flat_map(|e| e.seqs()).collect();
    if all.len() <= max {
        return all;
    }
    let head = max.div_ceil(2);
    let tail = max - head;
    all.iter().take(head).chain(all.iter().skip(all.len() - tail)).copied().collect()
}
