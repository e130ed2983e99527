//! Rules run over files instead of the spine: what `caduceus detect
//! test-rules` and the rule-test API do. Events come as a JSON array, one
//! JSON object, or NDJSON, each event in one of three shapes:
//!
//! - a Caduceus event (as `/api/v1/events` returns it);
//! - a Windows event rendered as JSON by evtx tools (`{"Event": {"System":
//!   ..., "EventData": ...}}`), its log source derived from its channel and
//!   event id;
//! - any other JSON object: its fields as they are, with an optional
//!   `"logsource": {"product", "service", "category"}` member.

use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use caduceus_core::{SecurityEvent, Timestamp};
use serde::Serialize;
use serde_json::Value;

use crate::pipeline::{Engine, Output};
use crate::sigma::{Event, FieldMap, LogSource, RuleSet};

/// Largest events file read.
pub const MAX_EVENTS_FILE_BYTES: u64 = 512 * 1024 * 1024;
/// Largest single event.
pub const MAX_EVENT_BYTES: usize = 1024 * 1024;
/// Most events in one file.
pub const MAX_EVENTS: usize = 10_000_000;

/// An events file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("{path}:{line}: {message}")]
    Parse { path: String, line: usize, message: String },
}

/// Read events from a file (JSON array, one object, or NDJSON).
pub fn read_events(path: &Path) -> Result<Vec<Value>, EventsError> {
    let name = path.display().to_string();
    let io = |message: String| EventsError::Io { path: name.clone(), message };
    let file = std::fs::File::open(path).map_err(|e| io(e.to_string()))?;
    let size = file.metadata().map_err(|e| io(e.to_string()))?.len();
    if size > MAX_EVENTS_FILE_BYTES {
        return Err(io(format!("{size} bytes; at most {MAX_EVENTS_FILE_BYTES} are read")));
    }
    let mut text = String::new();
    file.take(MAX_EVENTS_FILE_BYTES).read_to_string(&mut text).map_err(|e| io(e.to_string()))?;
    parse_events(&name, &text)
}

/// Parse events from text (JSON array, one object, or NDJSON).
pub fn parse_events(name: &str, text: &str) -> Result<Vec<Value>, EventsError> {
    let trimmed = text.trim_start();
    let parse_error = |line: usize, message: String| EventsError::Parse { path: name.to_owned(), line, message };
    if trimmed.starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(text).map_err(|e| parse_error(e.line(), e.to_string()))?;
        if values.len() > MAX_EVENTS {
            return Err(parse_error(1, format!("{} events; at most {MAX_EVENTS}", values.len())));
        }
        if let Some(i) = values.iter().position(|v| !v.is_object()) {
            return Err(parse_error(1, format!("element {i} is not a JSON object")));
        }
        return Ok(values);
    }
    // One object over several lines, or NDJSON (one object per line).
    if let Ok(value) = serde_json::from_str::<Value>(text)
        && value.is_object()
    {
        return Ok(vec![value]);
    }
    let mut events = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        if line.trim().is_empty() {
            continue;
        }
        if line.len() > MAX_EVENT_BYTES {
            return Err(parse_error(line_no, format!("event of {} bytes; at most {MAX_EVENT_BYTES}", line.len())));
        }
        let value: Value = serde_json::from_str(line).map_err(|e| parse_error(line_no, e.to_string()))?;
        if !value.is_object() {
            return Err(parse_error(line_no, "not a JSON object".into()));
        }
        if events.len() >= MAX_EVENTS {
            return Err(parse_error(line_no, format!("more than {MAX_EVENTS} events")));
        }
        events.push(value);
    }
    Ok(events)
}

/// An event in one of the accepted shapes, normalised, with its time where
/// it carries one.
pub fn normalise(value: &Value, map: &FieldMap) -> Result<(Event, Option<Timestamp>), String> {
    if value.get("schema_version").is_some() && value.get("payload").is_some() {
        let event: SecurityEvent =
            serde_json::from_value(value.clone()).map_err(|e| format!("not a valid Caduceus event: {e}"))?;
        return Ok((Event::from_security_event(&event, map), Some(event.time())));
    }
    if let Some(record) = value.get("Event")
        && record.get("System").is_some()
    {
        let time =
            record.pointer("/System/TimeCreated/#attributes/SystemTime").and_then(Value::as_str).and_then(parse_time);
        let event = Event::from_evtx_json(value).ok_or("a Windows event without a usable System section")?;
        return Ok((event, time));
    }
    let Some(object) = value.as_object() else { return Err("not a JSON object".into()) };
    let source = object.get("logsource");
    let text = |key: &str| source.and_then(|s| s.get(key)).and_then(Value::as_str).map(str::to_owned);
    let logsource = LogSource { product: text("product"), service: text("service"), category: text("category") };
    let time = ["@timestamp", "timestamp", "time", "UtcTime", "TimeCreated"]
        .iter()
        .find_map(|k| object.get(*k).and_then(Value::as_str).and_then(parse_time));
    let mut fields = object.clone();
    fields.remove("logsource");
    Ok((Event::from_json(logsource, &Value::Object(fields)), time))
}

/// RFC 3339, or the `2024-01-02 03:04:05.678` form Sysmon writes (UTC).
fn parse_time(text: &str) -> Option<Timestamp> {
    use time::format_description::well_known::Rfc3339;
    let parsed = time::OffsetDateTime::parse(text, &Rfc3339).ok().or_else(|| {
        let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
        time::PrimitiveDateTime::parse(text, format).ok().map(|t| t.assume_utc())
    })?;
    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000).ok().map(Timestamp)
}

/// The rules that fired on one event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventResult {
    /// 0-based position of the event in the input.
    pub event: usize,
    /// Ids of the rules (and correlations) that fired, in rule order.
    pub rules: Vec<String>,
    /// Why the event could not be examined, if it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Run the rules over events in order, correlations included (events
/// without a time are taken to be one second apart, in order). Correlations
/// that only close at the end (`lt` conditions) are reported on the last event.
pub fn test_rules(rules: Arc<RuleSet>, events: &[Value], map: &FieldMap) -> Vec<EventResult> {
    let mut engine = Engine::new(rules, None, map.clone());
    let mut out = Output::default();
    let mut results = Vec::with_capacity(events.len());
    let mut last_time = Timestamp(0);
    for (i, value) in events.iter().enumerate() {
        out.clear();
        let seq = i as u64 + 1;
        match normalise(value, map) {
            Ok((event, time)) => {
                let time = time.unwrap_or(Timestamp(last_time.as_millis() + 1000));
                last_time = Timestamp(last_time.as_millis().max(time.as_millis()));
                engine.run_rules(seq, time, None, &event, &mut out);
                let mut fired: Vec<String> = out.findings.iter().map(|f| f.rule_id.clone()).collect();
                fired.dedup();
                results.push(EventResult { event: i, rules: fired, error: None });
            }
            Err(error) => results.push(EventResult { event: i, rules: Vec::new(), error: Some(error) }),
        }
    }
    out.clear();
    engine.advance(Timestamp(last_time.as_millis().saturating_add(366 * 86_400_000)), &mut out);
    if let Some(last) = results.last_mut() {
        last.rules.extend(out.findings.iter().map(|f| f.rule_id.clone()));
    }
    results
}
