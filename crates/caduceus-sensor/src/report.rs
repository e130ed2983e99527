//! What the sensor tells the server: a verdict with its reasons, the process
//! when known, counts, and the affected files as keyed hashes. Owns the
//! rule that no file name leaves the sensor in plain text: a file appears as
//! an HMAC of its path relative to the watched root plus its extension.

use std::path::Path;

use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;

/// The sensor's conclusion.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Periodic sign of life with activity counts; not an alert.
    Heartbeat,
    /// Activity that looks like the start of encryption, below the threshold.
    Suspicious,
    /// Mass encryption (or a canary touched): the response has run.
    Ransomware,
}

impl Verdict {
    /// The value of the `verdict` field the Sigma rules match.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Heartbeat => "heartbeat",
            Self::Suspicious => "suspicious",
            Self::Ransomware => "ransomware",
        }
    }
}

/// Counts behind a verdict, over the scoring windows of the actor reported
/// (or since the last heartbeat for a heartbeat).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Files closed after writing.
    pub files_modified: u64,
    /// Files created.
    pub files_created: u64,
    /// Renames.
    pub files_renamed: u64,
    /// Deletions.
    pub files_deleted: u64,
    /// Writes that left a file of unknown type with high-entropy content.
    pub high_entropy_writes: u64,
    /// Writes that turned a known type into unknown, high-entropy content.
    pub type_changes: u64,
    /// Writes that kept the type but jumped from low to high entropy.
    pub entropy_jumps: u64,
    /// Renames from a document extension to an unknown one.
    pub extension_changes: u64,
    /// Deletions of an original next to a new encrypted copy.
    pub copy_delete_pairs: u64,
    /// Canary files written, renamed or deleted.
    pub canary_touches: u64,
}

/// One report of the sensor. Serialises (and [`Report::to_fields`] flattens)
/// to the fields of a `file_event` log record.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    /// Short reason codes, e.g. `canary_touched`, `encrypted_overwrite`.
    pub reasons: Vec<String>,
    /// The score that crossed a threshold (0 for a heartbeat).
    pub score: f64,
    /// The writing process, when fanotify named it.
    pub pid: Option<i32>,
    /// Its executable's file name (from /proc), when known.
    pub process: Option<String>,
    /// Other processes that contributed evidence (the score of several
    /// processes together crossed the threshold).
    pub other_pids: Vec<i32>,
    pub counts: Counts,
    pub canary_touched: bool,
    /// The watched root the affected files are under (a directory the
    /// operator chose, so not patient data).
    pub watch_root: Option<String>,
    /// Affected files as `<keyed hash>.<extension>`, most recent first, at
    /// most [`MAX_REPORTED_FILES`].
    pub files_hashed: Vec<String>,
    /// `fanotify+inotify` or `inotify`.
    pub sensor_mode: &'static str,
    /// What the configured response did (`none`, `killed 1234`, ...).
    pub response: Vec<String>,
    /// Milliseconds since the sensor started.
    pub sensor_uptime_ms: u64,
    /// Heartbeats only: watches, canaries, cache entries, dropped events.
    pub status: Option<Status>,
}

/// Health numbers carried by a heartbeat.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    pub watched_dirs: u64,
    pub canaries: u64,
    pub cache_entries: u64,
    pub events: u64,
    /// Kernel queue overflows: events were lost.
    pub overflows: u64,
}

/// Most file hashes in one report.
pub const MAX_REPORTED_FILES: usize = 16;
/// Longest watch root reported.
const MAX_ROOT_CHARS: usize = 1024;

impl Report {
    /// The flat field map of the `file_event` log record posted to the
    /// server, with keys the Sigma rules match: `verdict`, `reason` (list),
    /// `score`, `pid`, `process`, the counts, `canary_touched` (bool),
    /// `watch_root`, `files_hashed`, `sensor_mode`, `response`.
    pub fn to_fields(&self) -> Map<String, Value> {
        let mut m = Map::new();
        m.insert("verdict".into(), self.verdict.as_str().into());
        m.insert("reason".into(), self.reasons.clone().into());
        m.insert("score".into(), ((self.score * 100.0).round() / 100.0).into());
        if let Some(pid) = self.pid {
            m.insert("pid".into(), pid.into());
        }
        if let Some(p) = &self.process {
            m.insert("process".into(), p.clone().into());
        }
        if !self.other_pids.is_empty() {
            m.insert("other_pids".into(), self.other_pids.clone().into());
        }
        let c = &self.counts;
        for (k, v) in [
            ("files_modified", c.files_modified),
            ("files_created", c.files_created),
            ("files_renamed", c.files_renamed),
            ("files_deleted", c.files_deleted),
            ("high_entropy_writes", c.high_entropy_writes),
            ("type_changes", c.type_changes),
            ("entropy_jumps", c.entropy_jumps),
            ("extension_changes", c.extension_changes),
            ("copy_delete_pairs", c.copy_delete_pairs),
            ("canary_touches", c.canary_touches),
        ] {
            m.insert(k.into(), v.into());
        }
        m.insert("canary_touched".into(), self.canary_touched.into());
        if let Some(root) = &self.watch_root {
            m.insert("watch_root".into(), root.chars().take(MAX_ROOT_CHARS).collect::<String>().into());
        }
        m.insert("files_hashed".into(), self.files_hashed.clone().into());
        m.insert("sensor_mode".into(), self.sensor_mode.into());
        m.insert("response".into(), self.response.clone().into());
        m.insert("sensor_uptime_ms".into(), self.sensor_uptime_ms.into());
        if let Some(s) = &self.status {
            for (k, v) in [
                ("watched_dirs", s.watched_dirs),
                ("canaries", s.canaries),
                ("cache_entries", s.cache_entries),
                ("events", s.events),
                ("overflows", s.overflows),
            ] {
                m.insert(k.into(), v.into());
            }
        }
        m
    }

    /// The report as one JSON object (the fields of [`Report::to_fields`]):
    /// what a response command reads on stdin.
    pub fn to_json(&self) -> String {
        Value::Object(self.to_fields()).to_string()
    }
}

/// Turns paths into keyed hashes: the same file gives the same token for one
/// key (so an analyst can follow a file across reports), but the token does
/// not reveal the name without the key.
#[derive(Clone)]
pub struct PathHasher {
    key: [u8; 32],
}

impl std::fmt::Debug for PathHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PathHasher(**REDACTED**)")
    }
}

/// Longest extension reported; longer ones (which could carry a name) are
/// replaced by `long`.
const MAX_EXTENSION_CHARS: usize = 8;

impl PathHasher {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    /// `<first 16 hex digits of HMAC-SHA256(key, relative path)>.<ext>`.
    pub fn token(&self, relative: &Path) -> String {
        let mut digest = String::with_capacity(16 + 1 + MAX_EXTENSION_CHARS);
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.key) {
            mac.update(relative.as_os_str().as_encoded_bytes());
            let out = mac.finalize().into_bytes();
            digest.push_str(&hex::encode(out.get(..8).unwrap_or_default()));
        }
        if let Some(ext) = safe_extension(relative) {
            digest.push('.');
            digest.push_str(&ext);
        }
        digest
    }
}

/// The extension, lower-cased, when it is short and alphanumeric; `long` for
/// anything else that could carry words.
pub fn safe_extension(path: &Path) -> Option<String> {
    let ext = path.extension()?.to_str().unwrap_or("long");
    if ext.is_empty() {
        return None;
    }
    if ext.len() > MAX_EXTENSION_CHARS || !ext.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Some("long".into());
    }
    Some(ext.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_hide_names_but_keep_short_extensions() {
        let h = PathHasher::new([7; 32]);
        let t = h.token(Path::new("radiology/Jane_Doe_1970-01-01_CT.pdf"));
        assert!(t.ends_with(".pdf"), "{t}");
        assert_eq!(t.len(), 16 + 4);
        assert!(!t.to_lowercase().contains("jane") && !t.contains("1970"));
        assert_eq!(t, h.token(Path::new("radiology/Jane_Doe_1970-01-01_CT.pdf")));
        assert_ne!(t, PathHasher::new([8; 32]).token(Path::new("radiology/Jane_Doe_1970-01-01_CT.pdf")));
        assert!(h.token(Path::new("a/JaneDoeLetter.JohnSmithBirthday")).ends_with(".long"));
        assert!(h.token(Path::new("a/x.Doe-Jane")).ends_with(".long"));
        assert_eq!(h.token(Path::new("a/noext")).len(), 16);
        assert!(!format!("{h:?}").contains('7'));
    }

    #[test]
    fn fields_are_flat_and_carry_no_plain_names() {
        let h = PathHasher::new([1; 32]);
        let report = Report {
            verdict: Verdict::Ransomware,
            reasons: vec!["encrypted_overwrite".into(), "extension_change".into()],
            score: 9.123,
            pid: Some(4242),
            process: Some("evil".into()),
            other_pids: vec![],
            counts: Counts { files_modified: 3, type_changes: 3, ..Counts::default() },
            canary_touched: false,
            watch_root: Some("/srv/share".into()),
            files_hashed: vec![h.token(Path::new("Max_Mustermann_befund.docx"))],
            sensor_mode: "fanotify+inotify",
            response: vec!["killed 4242".into()],
            sensor_uptime_ms: 10,
            status: None,
        };
        let f = report.to_fields();
        assert_eq!(f.get("verdict"), Some(&Value::from("ransomware")));
        assert_eq!(f.get("score"), Some(&Value::from(9.12)));
        assert_eq!(f.get("pid"), Some(&Value::from(4242)));
        assert_eq!(f.get("canary_touched"), Some(&Value::from(false)));
        assert_eq!(f.get("type_changes"), Some(&Value::from(3)));
        assert!(f.values().all(|v| !v.is_object()), "fields must be flat");
        let json = report.to_json();
        assert!(!json.contains("Mustermann") && json.contains(".docx"));
    }
}
