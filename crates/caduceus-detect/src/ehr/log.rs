//! An EHR access log line (`access.ndjson`) and its conversion into the
//! record-access event the vault itself emits, so that a replayed log —
//! simulated or a hospital's export — travels the same pipeline as live
//! accesses.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use caduceus_core::event::{AccessOutcome, EventError, MAX_RECORD_PATIENTS, MAX_RECORD_QUERY_CHARS, RecordAction};
use caduceus_core::{Actor, ActorKind, EventId, Payload, SecurityEvent, Severity, Status, Target, Timestamp};
use serde::{Deserialize, Serialize};

use super::files::{Limits, LoadError, NdjsonReader, rfc3339};

/// What a search looked for, when the log says so without the query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueryKind {
    /// By a person's name: the classic first step of snooping.
    Name,
    /// By an identifier (MRN, national id).
    Identifier,
    /// Anything else (codes, dates, a patient reference).
    Other,
}

fn allowed() -> AccessOutcome {
    AccessOutcome::Allowed
}

/// One access, as a line of `access.ndjson`. Unknown fields are ignored,
/// so an export may carry more columns than the analytics reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessLine {
    /// Unique id of the line (labels refer to it); `line:N` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(with = "rfc3339")]
    pub time: Timestamp,
    /// The user id (as in `staff.ndjson`).
    pub user: String,
    /// `read`, `vread`, `search`, `history`, `create`, `update`, `delete`,
    /// `export`, `break_glass` (an emergency-access grant), ...
    pub action: RecordAction,
    #[serde(default = "allowed")]
    pub outcome: AccessOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Pseudonymous ids of the patients touched or listed.
    #[serde(default)]
    pub patients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    /// The break-glass grant the access was made under (or issued, for
    /// `break_glass`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_kind: Option<QueryKind>,
    /// The search parameters; values are replaced by `***` on conversion,
    /// only the parameter names are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The client address or workstation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

/// Search parameters that search by a person's name (the last part of a
/// chained, modified parameter name).
const NAME_PARAMS: &[&str] = &["name", "family", "given", "phonetic"];

/// The query with every value replaced by `***`: parameter names only.
pub fn redact_query(query: &str) -> String {
    let query = query.split_once('?').map_or(query, |(_, q)| q);
    let mut out = String::new();
    for part in query.split('&').filter(|p| !p.is_empty()) {
        if !out.is_empty() {
            out.push('&');
        }
        let name = part.split_once('=').map_or(part, |(n, _)| n);
        out.extend(name.chars().filter(|c| c.is_ascii_alphanumeric() || "-_.:".contains(*c)).take(128));
        out.push_str("=***");
        if out.len() > MAX_RECORD_QUERY_CHARS - 16 {
            out.push_str("&...");
            break;
        }
    }
    out
}

/// Whether a search asked by a person's name.
pub fn is_name_search(action: RecordAction, query: Option<&str>) -> bool {
    action == RecordAction::Search
        && query.is_some_and(|q| {
            q.split('&').any(|part| {
                let name = part.split_once('=').map_or(part, |(n, _)| n);
                let last = name.rsplit('.').next().unwrap_or_default();
                let last = last.split(':').next().unwrap_or_default();
                NAME_PARAMS.iter().any(|p| last.eq_ignore_ascii_case(p))
            })
        })
}

impl AccessLine {
    /// The query the event records: the line's, redacted, or one standing
    /// for `query_kind`.
    fn event_query(&self) -> Option<String> {
        match (&self.query, self.query_kind) {
            (Some(query), _) => Some(redact_query(query)),
            (None, Some(QueryKind::Name)) => Some("name=***".into()),
            (None, Some(QueryKind::Identifier)) => Some("identifier=***".into()),
            (None, _) => None,
        }
    }
}

/// The record-access event for a log line, shaped as the vault's audit
/// builds it (severity, status, target for a single patient).
pub fn to_event(line: &AccessLine) -> Result<SecurityEvent, EventError> {
    let mut patients: Vec<String> = Vec::with_capacity(line.patients.len().min(MAX_RECORD_PATIENTS));
    let mut truncated = false;
    for patient in &line.patients {
        if patients.contains(patient) {
            continue;
        }
        if patients.len() == MAX_RECORD_PATIENTS {
            truncated = true;
            break;
        }
        patients.push(patient.clone());
    }
    let target = match patients.as_slice() {
        [patient] => Some(Target { kind: "patient_record".into(), uid: format!("Patient/{patient}") }),
        _ => None,
    };
    let status = match line.outcome {
        AccessOutcome::Allowed => Status::Success,
        AccessOutcome::Denied | AccessOutcome::Failed => Status::Failure,
    };
    let severity = match (line.action, line.outcome) {
        (RecordAction::BreakGlass, _) => Severity::High,
        (_, AccessOutcome::Denied) | (RecordAction::Export | RecordAction::Erase, _) => Severity::Medium,
        _ if line.break_glass.is_some() => Severity::Medium,
        (_, AccessOutcome::Failed) => Severity::Low,
        _ => Severity::Informational,
    };
    let payload = Payload::RecordAccess {
        action: line.action,
        outcome: line.outcome,
        actor: line.user.clone(),
        roles: line.roles.clone(),
        source: line.source.clone().unwrap_or_default(),
        purpose_of_use: line.purpose_of_use.clone(),
        break_glass: line.break_glass.clone(),
        resource_type: line.resource_type.clone(),
        resource: line.resource.clone(),
        patients,
        patients_truncated: truncated,
        query: line.event_query(),
        reasons: Vec::new(),
        detail: None,
        request_id: line.id.clone(),
    };
    let message = format!("record access: {} {}", line.action.as_str(), line.outcome.as_str());
    SecurityEvent::new(
        EventId::new(line.time),
        line.time,
        severity,
        status,
        Actor { kind: ActorKind::User, uid: line.user.clone() },
        target,
        message,
        payload,
    )
}

/// Read `access.ndjson`: every line parsed and checked (it must make a
/// valid event), with its line number.
pub fn read_access_file(path: &Path, limits: &Limits) -> Result<Vec<(usize, AccessLine)>, LoadError> {
    let name = path.file_name().map_or_else(|| "access.ndjson".into(), |n| n.to_string_lossy().into_owned());
    let file = File::open(path).map_err(|e| LoadError::new(&name, None, format!("cannot open: {e}")))?;
    let mut reader = NdjsonReader::new(BufReader::new(file), name, limits.max_line_bytes);
    let mut out = Vec::new();
    while let Some((line, access)) = reader.next_record::<AccessLine>()? {
        if out.len() == limits.max_accesses {
            return Err(reader.error(format!("more than {} accesses", limits.max_accesses)));
        }
        to_event(&access).map_err(|e| reader.error(format!("not a valid record access: {e}")))?;
        out.push((line, access));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn line(text: &str) -> AccessLine {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn converts_to_the_vaults_event() {
        let access = line(
            r#"{"id":"a-1","time":"2025-03-03T07:15:00Z","user":"u-1","action":"search","resource_type":"Patient","patients":["p-1","p-2","p-1"],"query":"Patient?name=smith&birthdate=1970","extra":"ignored"}"#,
        );
        let event = to_event(&access).unwrap();
        assert_eq!(event.actor().uid, "u-1");
        assert_eq!(event.time(), Timestamp(1_740_986_100_000));
        let Payload::RecordAccess { action, outcome, patients, query, request_id, .. } = event.payload() else {
            panic!("not a record access")
        };
        assert_eq!((*action, *outcome), (RecordAction::Search, AccessOutcome::Allowed));
        assert_eq!(patients, &vec!["p-1".to_owned(), "p-2".to_owned()]);
        assert_eq!(query.as_deref(), Some("name=***&birthdate=***"), "values never reach the event");
        assert_eq!(request_id.as_deref(), Some("a-1"));
        assert!(is_name_search(*action, query.as_deref()));
        let kind_only = line(
            r#"{"time":"2025-03-03T07:15:00Z","user":"u-1","action":"search","patients":["p-1"],"query_kind":"name"}"#,
        );
        let event = to_event(&kind_only).unwrap();
        let Payload::RecordAccess { query, .. } = event.payload() else { panic!("not a record access") };
        assert_eq!(query.as_deref(), Some("name=***"));
        assert!(event.target().is_some());
    }

    #[test]
    fn name_searches_are_recognised() {
        assert!(is_name_search(RecordAction::Search, Some("family:exact=***")));
        assert!(is_name_search(RecordAction::Search, Some("code=***&subject:Patient.name=***")));
        assert!(!is_name_search(RecordAction::Search, Some("patient=***&code=***")));
        assert!(!is_name_search(RecordAction::Read, Some("name=***")));
        assert_eq!(redact_query("a=1&&b"), "a=***&b=***");
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.ndjson");
        std::fs::write(
            &path,
            "{\"time\":\"2025-03-03T07:15:00Z\",\"user\":\"u\",\"action\":\"read\",\"patients\":[\"p\"]}\n{\"time\":\"2025-03-03T07:15:00Z\",\"user\":\"u\",\"action\":\"peek\"}\n",
        )
        .unwrap();
        let err = read_access_file(&path, &Limits::default()).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(err.to_string().starts_with("access.ndjson:2: unknown variant"), "{err}");
        let long_user =
            format!("{{\"time\":\"2025-03-03T07:15:00Z\",\"user\":\"{}\",\"action\":\"read\"}}\n", "u".repeat(300));
        std::fs::write(&path, long_user).unwrap();
        let err = read_access_file(&path, &Limits::default()).unwrap_err();
        assert!(err.to_string().contains("access.ndjson:1: not a valid record access"), "{err}");
        std::fs::write(&path, "{\"time\":\"2025-03-03T07:15:00Z\",\"user\":\"u\",\"action\":\"read\"}\n".repeat(3))
            .unwrap();
        let limits = Limits { max_accesses: 2, ..Limits::default() };
        let err = read_access_file(&path, &limits).unwrap_err();
        assert_eq!(err.to_string(), "access.ndjson:3: more than 2 accesses");
    }
}
