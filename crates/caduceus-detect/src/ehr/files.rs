//! The file formats of an access-log data set (documented in
//! `docs/design/ehr-access-log.md`): one JSON object per line in
//! `staff.ndjson`, `patients.ndjson`, `relationships.ndjson`,
//! `access.ndjson` and `labels.ndjson`, and the size-capped reader that
//! parses them.
//!
//! Errors name the file and the line, never the content: a malformed line
//! may hold a name or an address, so values quoted in a parser's message
//! are replaced by `***` before it is shown.

use std::fmt;
use std::io::{BufRead, Read};

use caduceus_core::Timestamp;
use serde::{Deserialize, Serialize};

/// Longest line accepted in any of the files (bytes, without the newline).
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// How much a data set may hold; anything past a cap is an error, not a
/// silent cut, so an evaluation never runs on part of a file unknowingly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_line_bytes: usize,
    pub max_staff: usize,
    pub max_patients: usize,
    pub max_relationships: usize,
    pub max_accesses: usize,
    pub max_labels: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_line_bytes: MAX_LINE_BYTES,
            max_staff: 1_000_000,
            max_patients: 20_000_000,
            max_relationships: 50_000_000,
            max_accesses: 20_000_000,
            max_labels: 20_000_000,
        }
    }
}

/// A data set that could not be read: which file, which line, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct LoadError {
    pub file: String,
    /// 1-based line, where the problem is on one line.
    pub line: Option<usize>,
    pub message: String,
}

impl LoadError {
    pub fn new(file: impl Into<String>, line: Option<usize>, message: impl Into<String>) -> Self {
        Self { file: file.into(), line, message: message.into() }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}: {}", self.file, line, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// Reads NDJSON one line at a time, refusing lines over the cap before they
/// are held in memory whole. Blank lines are skipped.
pub struct NdjsonReader<R> {
    inner: R,
    file: String,
    line: usize,
    max_line_bytes: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> NdjsonReader<R> {
    pub fn new(inner: R, file: impl Into<String>, max_line_bytes: usize) -> Self {
        Self { inner, file: file.into(), line: 0, max_line_bytes, buf: Vec::new() }
    }

    pub fn file(&self) -> &str {
        &self.file
    }

    /// The next non-blank line parsed as `T`, with its 1-based number.
    pub fn next_record<T: serde::de::DeserializeOwned>(&mut self) -> Result<Option<(usize, T)>, LoadError> {
        loop {
            self.buf.clear();
            self.line += 1;
            let limit = u64::try_from(self.max_line_bytes).unwrap_or(u64::MAX).saturating_add(1);
            let read = (&mut self.inner)
                .take(limit)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| LoadError::new(&self.file, Some(self.line), format!("read failed: {e}")))?;
            if read == 0 {
                return Ok(None);
            }
            if self.buf.last() == Some(&b'\n') {
                self.buf.pop();
                if self.buf.last() == Some(&b'\r') {
                    self.buf.pop();
                }
            }
            if self.buf.len() > self.max_line_bytes {
                return Err(self.error(format!("line is longer than {} bytes", self.max_line_bytes)));
            }
            if self.buf.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return match serde_json::from_slice::<T>(&self.buf) {
                Ok(value) => Ok(Some((self.line, value))),
                Err(e) => Err(self.error(describe_json_error(&e))),
            };
        }
    }

    /// An error about the current line.
    pub fn error(&self, message: impl Into<String>) -> LoadError {
        LoadError::new(&self.file, Some(self.line), message)
    }
}

/// A serde_json error in words that cannot carry the line's content:
/// anything the parser quoted is masked.
pub fn describe_json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde_json appends " at line L column C"; the line is always 1 here.
    let text = text.split(" at line ").next().unwrap_or_default();
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    // `unknown variant `X`` names the value in backticks (field names are
    // backticked too, but only a variant is content).
    let text = match text.strip_prefix("unknown variant `").and_then(|rest| rest.split_once('`')) {
        Some((_, rest)) => format!("unknown variant ***{rest}"),
        None => text.to_owned(),
    };
    for c in text.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("***");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    format!("{} (column {})", out.trim(), error.column())
}

/// One member of staff. Give `surname` or `surname_token` (and `address` or
/// `address_token`), not both: plain text is hashed on load and dropped.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StaffLine {
    pub user: String,
    pub role: String,
    pub department: String,
    /// `day` (07–19 every day), `night` (19–07), `office` (08–17 Monday to
    /// Friday), `any` (no fixed hours, the default), or `HH:MM-HH:MM`
    /// optionally followed by days (`mon-fri`, `sat,sun`, `daily`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shift: Option<String>,
    /// The shift's local time as an offset from UTC, in minutes (`60` for
    /// UTC+01:00).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_minutes: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_token: Option<String>,
    /// The member of staff's own patient id, if they are also a patient.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
}

impl fmt::Debug for StaffLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaffLine")
            .field("user", &self.user)
            .field("role", &self.role)
            .field("department", &self.department)
            .finish_non_exhaustive()
    }
}

/// One patient.
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PatientLine {
    /// The pseudonymous id the access log uses.
    pub patient: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub surname_token: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_token: Option<String>,
    /// A VIP (public figure, board member): every access is sensitive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub vip: bool,
    /// Flagged for monitoring for another reason (a victim of violence, a
    /// protected record).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub flagged: bool,
    /// The user id of the patient when the patient is also staff.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee: Option<String>,
    /// Departments the patient is under now, for a directory without
    /// encounters (a snapshot); encounters, when given, take precedence.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub departments: Vec<String>,
}

impl fmt::Debug for PatientLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PatientLine").field("patient", &self.patient).finish_non_exhaustive()
    }
}

/// A relationship between users and patients (or departments), over time.
/// A relationship counts as known from its start: the analytics never uses
/// a record before the time it would have existed in a live system.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RelationshipLine {
    /// A visit or stay: the patient under a department from `start` to
    /// `end` (open when absent), with the users involved (attending,
    /// admitting, treating).
    Encounter {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
        patient: String,
        department: String,
        #[serde(with = "rfc3339")]
        start: Timestamp,
        #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
        end: Option<Timestamp>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        users: Vec<String>,
    },
    /// The user is on the patient's care team from `from` to `to`.
    CareTeam {
        user: String,
        patient: String,
        #[serde(with = "rfc3339")]
        from: Timestamp,
        #[serde(default, with = "rfc3339_opt", skip_serializing_if = "Option::is_none")]
        to: Option<Timestamp>,
    },
    /// An order (test, imaging, medication, consult) for the patient,
    /// placed by `user` and, where known, to be carried out by `department`.
    Order {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user: Option<String>,
        patient: String,
        #[serde(with = "rfc3339")]
        time: Timestamp,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        department: Option<String>,
    },
    /// The user works in `department` from `from` to `to` besides their
    /// own (night cover, on call, a rotation).
    Assignment {
        user: String,
        department: String,
        #[serde(with = "rfc3339")]
        from: Timestamp,
        #[serde(with = "rfc3339")]
        to: Timestamp,
    },
}

/// The truth about one access line, for evaluation only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabelLine {
    /// The access line's `id`.
    pub id: String,
    /// The snooping scenario kind (`vip`, `family`, ...).
    pub kind: String,
    /// Accesses of one scenario share it (a spike of many reads).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
}

/// Parse an RFC 3339 time into a [`Timestamp`] (milliseconds).
pub fn parse_time(text: &str) -> Result<Timestamp, String> {
    let parsed = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|_| "time is not RFC 3339 (e.g. 2025-03-03T07:15:00Z)".to_owned())?;
    let millis = parsed.unix_timestamp_nanos() / 1_000_000;
    i64::try_from(millis).map(Timestamp).map_err(|_| "time is out of range".to_owned())
}

/// RFC 3339 in files, [`Timestamp`] in memory.
pub mod rfc3339 {
    use caduceus_core::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &Timestamp, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&time.to_rfc3339())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Timestamp, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(deserializer)?;
        super::parse_time(&text).map_err(serde::de::Error::custom)
    }
}

/// [`rfc3339`] for optional times.
pub mod rfc3339_opt {
    use caduceus_core::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(time: &Option<Timestamp>, serializer: S) -> Result<S::Ok, S::Error> {
        match time {
            Some(time) => serializer.serialize_str(&time.to_rfc3339()),
            None => serializer.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Timestamp>, D::Error> {
        let text = Option::<std::borrow::Cow<str>>::deserialize(deserializer)?;
        text.map(|t| super::parse_time(&t).map_err(serde::de::Error::custom)).transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_capped_and_errors_name_the_line_without_content() {
        let text = format!(
            "{{\"user\":\"u1\",\"role\":\"nurse\",\"department\":\"A\"}}\n\n{{\"user\":\"u2\",\"role\":7,\"department\":\"A\"}}\n{}\n",
            "x".repeat(200)
        );
        let mut reader = NdjsonReader::new(text.as_bytes(), "staff.ndjson", 100);
        let (line, first) = reader.next_record::<StaffLine>().unwrap().unwrap();
        assert_eq!((line, first.user.as_str()), (1, "u1"));
        let err = reader.next_record::<StaffLine>().unwrap_err();
        assert_eq!(err.line, Some(3));
        assert!(err.to_string().starts_with("staff.ndjson:3: invalid type"), "{err}");
        let err = reader.next_record::<StaffLine>().unwrap_err();
        assert_eq!(err.to_string(), "staff.ndjson:4: line is longer than 100 bytes");
    }

    #[test]
    fn quoted_values_never_reach_an_error() {
        let mut reader = NdjsonReader::new(&b"{\"patient\":\"p1\",\"vip\":\"Smith\"}\n"[..], "patients.ndjson", 1000);
        let err = reader.next_record::<PatientLine>().unwrap_err();
        assert!(!err.to_string().contains("Smith"), "{err}");
        assert!(err.to_string().contains("***"), "{err}");
        let mut reader = NdjsonReader::new(&b"{\"patient\":\"p1\",\"surname\":\"Smi"[..], "patients.ndjson", 1000);
        let err = reader.next_record::<PatientLine>().unwrap_err();
        assert!(!err.to_string().contains("Smi"), "{err}");
    }

    #[test]
    fn relationships_parse_with_times() {
        let line = r#"{"type":"care_team","user":"u1","patient":"p1","from":"2025-03-03T07:00:00+01:00"}"#;
        let parsed: RelationshipLine = serde_json::from_str(line).unwrap();
        assert_eq!(
            parsed,
            RelationshipLine::CareTeam {
                user: "u1".into(),
                patient: "p1".into(),
                from: Timestamp(1_740_981_600_000),
                to: None
            }
        );
        let bad = r#"{"type":"order","patient":"p1","time":"yesterday"}"#;
        assert!(serde_json::from_str::<RelationshipLine>(bad).unwrap_err().to_string().contains("RFC 3339"));
        let unknown = r#"{"type":"friendship","user":"u1"}"#;
        assert!(serde_json::from_str::<RelationshipLine>(unknown).is_err());
    }
}
