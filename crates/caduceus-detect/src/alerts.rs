//! Alerts, as logic without I/O: which findings group together, how
//! severe an alert is, which MITRE ATT&CK techniques and tactics its tags
//! name, and the JSON view the API and the outputs show. Storing and
//! merging alerts is the store's (`caduceus_store::detect`); sending them
//! is `outputs`'.

use caduceus_core::Severity;
use caduceus_store::detect::{AlertRow, AlertStatus, NewAlert};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::finding::{Finding, FindingKind};

/// The key under which findings group into one alert: the rule and the
/// entity, and for record-access findings the patients too (each
/// user–patient pair is its own case for a privacy officer). A JSON array,
/// so that no rule id or entity can make two different keys equal.
pub fn group_key(finding: &Finding) -> String {
    let mut parts: Vec<&str> =
        vec![finding.kind.as_str(), finding.rule_id.as_str(), finding.entity.as_deref().unwrap_or("")];
    let mut patients: Vec<&str> = Vec::new();
    if finding.kind == FindingKind::Ehr {
        patients = finding.patients.iter().map(String::as_str).collect();
        patients.sort_unstable();
        patients.dedup();
    }
    parts.extend(patients);
    serde_json::Value::from(parts).to_string()
}

/// A finding as the store takes it. `finding_seq` is the spine seq of its
/// Detection Finding event and `id` that event's uid: the alert it opens
/// is named after it, so storing it twice (a replay) is recognised.
pub fn new_alert(finding: &Finding, finding_seq: u64, id: String) -> NewAlert {
    NewAlert {
        id,
        rule_id: finding.rule_id.clone(),
        rule_title: finding.rule_title.clone(),
        kind: finding.kind.as_str().to_owned(),
        severity: finding.severity,
        entity: finding.entity.clone(),
        group_key: group_key(finding),
        time: finding.time,
        score: finding.score,
        explanation: finding.explanation.clone(),
        context: finding.context.clone(),
        tags: finding.tags.clone(),
        patients: finding.patients.clone(),
        events: finding.events.clone(),
        finding_seq: Some(finding_seq),
    }
}

/// A Sigma `level` as an OCSF severity. A rule without a level (or with one
/// the specification does not define) counts as medium: loud enough to be
/// seen, not so loud that it pages anyone.
pub fn level_severity(level: Option<&str>) -> Severity {
    match level.map(|l| l.trim().to_ascii_lowercase()).as_deref() {
        Some("informational") => Severity::Informational,
        Some("low") => Severity::Low,
        Some("high") => Severity::High,
        Some("critical") => Severity::Critical,
        _ => Severity::Medium,
    }
}

/// An anomaly score (0..=1) as an OCSF severity. The bands follow how
/// privacy officers triage: 0.95 and above is near-certain snooping,
/// 0.8 likely, 0.6 worth a look.
pub fn score_severity(score: f64) -> Severity {
    if score.is_nan() {
        return Severity::Unknown;
    }
    match score {
        s if s >= 0.95 => Severity::Critical,
        s if s >= 0.8 => Severity::High,
        s if s >= 0.6 => Severity::Medium,
        s if s >= 0.3 => Severity::Low,
        _ => Severity::Informational,
    }
}

/// The severity of a finding from its rule's level and, where the
/// analytics score, its score: the higher of the two.
pub fn severity(level: Option<&str>, score: Option<f64>) -> Severity {
    match (level, score) {
        (None, Some(score)) => score_severity(score),
        (level, Some(score)) => level_severity(level).max(score_severity(score)),
        (level, None) => level_severity(level),
    }
}

/// The lower-case name of a severity, as Sigma levels are spelled.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Unknown => "unknown",
        Severity::Informational => "informational",
        Severity::Low => "low",
        Severity::Medium => "medium",
        Severity::High => "high",
        Severity::Critical => "critical",
        Severity::Fatal => "fatal",
        Severity::Other => "other",
    }
}

/// What an alert's tags say in MITRE ATT&CK terms.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Attack {
    /// Technique and sub-technique ids, e.g. `T1059.001`.
    #[schema(max_items = 64)]
    pub techniques: Vec<String>,
    /// Tactic names, e.g. `Privilege Escalation`.
    #[schema(max_items = 64)]
    pub tactics: Vec<String>,
    /// Threat group ids, e.g. `G0032`.
    #[schema(max_items = 64)]
    pub groups: Vec<String>,
    /// Software ids, e.g. `S0154`.
    #[schema(max_items = 64)]
    pub software: Vec<String>,
}

impl Attack {
    pub fn is_empty(&self) -> bool {
        self.techniques.is_empty() && self.tactics.is_empty() && self.groups.is_empty() && self.software.is_empty()
    }
}

/// `t1059`, `t1059.001` (Sigma's spelling of techniques).
fn technique(tag: &str) -> Option<String> {
    let rest = tag.strip_prefix('t')?;
    let (main, sub) = match rest.split_once('.') {
        Some((main, sub)) => (main, Some(sub)),
        None => (rest, None),
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(main, 4) || sub.is_some_and(|s| !digits(s, 3)) {
        return None;
    }
    Some(format!("T{}", rest))
}

/// `g0032`, `s0154`: a letter and four digits.
fn object_id(tag: &str, letter: char) -> Option<String> {
    let rest = tag.strip_prefix(letter)?;
    (rest.len() == 4 && rest.bytes().all(|b| b.is_ascii_digit()))
        .then(|| format!("{}{rest}", letter.to_ascii_uppercase()))
}

/// `privilege-escalation` (or `privilege_escalation`) → `Privilege Escalation`;
/// `command-and-control` → `Command and Control`. Any tactic name is
/// accepted, so tactics ATT&CK adds later (`stealth`) show as well.
fn tactic(tag: &str) -> Option<String> {
    if tag.is_empty() || tag.len() > 64 || !tag.bytes().all(|b| b.is_ascii_lowercase() || b == b'-' || b == b'_') {
        return None;
    }
    let words: Vec<String> = tag
        .split(['-', '_'])
        .filter(|w| !w.is_empty())
        .enumerate()
        .map(|(i, w)| {
            if i > 0 && matches!(w, "and" | "of" | "or") {
                return w.to_owned();
            }
            let mut chars = w.chars();
            chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
        })
        .collect();
    (!words.is_empty()).then(|| words.join(" "))
}

/// The ATT&CK techniques, tactics, groups and software named by Sigma
/// tags (`attack.t1059.001`, `attack.execution`, `attack.g0032`,
/// `attack.s0154`), each once, in tag order. Other tags (`cve.…`,
/// `detection.…`, data sources `attack.ds…`) are not ATT&CK objects to show.
pub fn attack(tags: &[String]) -> Attack {
    let mut out = Attack::default();
    let push = |list: &mut Vec<String>, item: String| {
        if !list.contains(&item) && list.len() < 64 {
            list.push(item);
        }
    };
    for tag in tags {
        let lower = tag.trim().to_ascii_lowercase();
        let Some(name) = lower.strip_prefix("attack.") else { continue };
        if let Some(t) = technique(name) {
            push(&mut out.techniques, t);
        } else if let Some(g) = object_id(name, 'g') {
            push(&mut out.groups, g);
        } else if let Some(s) = object_id(name, 's') {
            push(&mut out.software, s);
        } else if name.starts_with("ds") && name.get(2..).is_some_and(|d| d.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        } else if let Some(t) = tactic(name) {
            push(&mut out.tactics, t);
        }
    }
    out
}

/// Where an alert is in triage, as the API spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Open,
    Acknowledged,
    Closed,
    Suppressed,
}

impl From<AlertStatus> for AlertState {
    fn from(status: AlertStatus) -> Self {
        match status {
            AlertStatus::Open => Self::Open,
            AlertStatus::Acknowledged => Self::Acknowledged,
            AlertStatus::Closed => Self::Closed,
            AlertStatus::Suppressed => Self::Suppressed,
        }
    }
}

impl From<AlertState> for AlertStatus {
    fn from(state: AlertState) -> Self {
        match state {
            AlertState::Open => Self::Open,
            AlertState::Acknowledged => Self::Acknowledged,
            AlertState::Closed => Self::Closed,
            AlertState::Suppressed => Self::Suppressed,
        }
    }
}

/// A triage step: who, when, and for closing and suppressing, why (and
/// until when).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TriageStep {
    /// The user or API key that took the step.
    #[schema(max_length = 256)]
    pub by: String,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    #[schema(max_length = 64)]
    pub at_time: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1024)]
    pub reason: Option<String>,
    /// The end of a suppression (ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<i64>,
}

/// An alert as the API returns it and the webhook sends it. Patients are
/// pseudonymous ids; nothing here names a person but staff accounts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    #[schema(max_length = 64)]
    pub id: String,
    #[schema(max_length = 256)]
    pub rule_id: String,
    #[schema(max_length = 256)]
    pub rule_title: String,
    /// `sigma`, `correlation`, `ehr`, `network` or `baseline`.
    #[schema(max_length = 32)]
    pub kind: String,
    pub severity_id: Severity,
    /// `informational`, `low`, `medium`, `high` or `critical`.
    #[schema(max_length = 16)]
    pub severity: String,
    pub status: AlertState,
    /// Who or what it is about: a user id, a host.
    #[schema(max_length = 256)]
    pub entity: Option<String>,
    #[schema(max_length = 256)]
    pub assignee: Option<String>,
    /// First and last finding, ms since the Unix epoch, and as RFC 3339.
    pub first_seen: i64,
    #[schema(max_length = 64)]
    pub first_seen_time: String,
    pub last_seen: i64,
    #[schema(max_length = 64)]
    pub last_seen_time: String,
    /// How many findings it groups.
    #[schema(minimum = 1)]
    pub count: u64,
    /// The highest anomaly score of its findings (record-access analytics).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub score: Option<f64>,
    /// Why it fired, in plain words.
    #[schema(max_length = 4096)]
    pub explanation: String,
    /// What explains the access, or what was looked for and not found.
    #[schema(max_items = 32)]
    pub context: Vec<String>,
    #[schema(max_items = 64)]
    pub tags: Vec<String>,
    pub attack: Attack,
    /// Pseudonymous ids of the patients concerned.
    #[schema(max_items = 1000)]
    pub patients: Vec<String>,
    /// Spine seqs of the events that made it fire.
    #[schema(max_items = 1000)]
    pub events: Vec<u64>,
    /// Spine seqs of its Detection Finding events.
    #[schema(max_items = 1000)]
    pub findings: Vec<u64>,
    pub acknowledged: Option<TriageStep>,
    pub assigned: Option<TriageStep>,
    pub closed: Option<TriageStep>,
    pub suppressed: Option<TriageStep>,
    pub created: i64,
    pub updated: i64,
}

/// `text` cut to at most `max` characters (the view's documented bounds
/// hold whatever was stored).
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => text.get(..end).unwrap_or_default().to_owned(),
        None => text.to_owned(),
    }
}

fn clip_all(items: &[String], max_items: usize, max_len: usize) -> Vec<String> {
    items.iter().take(max_items).map(|s| clip(s, max_len)).collect()
}

impl From<&AlertRow> for AlertView {
    fn from(row: &AlertRow) -> Self {
        let step = |by: &str, at: caduceus_core::Timestamp| TriageStep {
            by: clip(by, 256),
            at: at.as_millis(),
            at_time: at.to_rfc3339(),
            reason: None,
            until: None,
        };
        let severity_id = row.severity;
        Self {
            id: clip(&row.id, 64),
            rule_id: clip(&row.rule_id, 256),
            rule_title: clip(&row.rule_title, 256),
            kind: clip(&row.kind, 32),
            severity_id,
            severity: severity_name(severity_id).to_owned(),
            status: row.status.into(),
            entity: row.entity.as_deref().map(|e| clip(e, 256)),
            assignee: row.assignee.as_deref().map(|a| clip(a, 256)),
            first_seen: row.first_seen.as_millis(),
            first_seen_time: row.first_seen.to_rfc3339(),
            last_seen: row.last_seen.as_millis(),
            last_seen_time: row.last_seen.to_rfc3339(),
            count: row.count.max(1),
            score: row.score.filter(|s| s.is_finite()).map(|s| s.clamp(0.0, 1.0)),
            explanation: clip(&row.explanation, 4096),
            context: clip_all(&row.context, 32, 4096),
            tags: clip_all(&row.tags, 64, 256),
            attack: attack(&row.tags),
            patients: clip_all(&row.patients, 1000, 256),
            events: row.events.iter().take(1000).copied().collect(),
            findings: row.findings.iter().take(1000).copied().collect(),
            acknowledged: row.acknowledged.as_ref().map(|s| step(&s.by, s.at)),
            assigned: row.assigned.as_ref().map(|s| step(&s.by, s.at)),
            closed: row.closed.as_ref().map(|s| TriageStep {
                reason: row.close_reason.as_deref().map(|r| clip(r, 1024)),
                ..step(&s.by, s.at)
            }),
            suppressed: row.suppressed.as_ref().map(|s| TriageStep {
                reason: Some(clip(&s.reason, 1024)),
                until: Some(s.until.as_millis()),
                ..step(&s.by, s.at)
            }),
            created: row.created.as_millis(),
            updated: row.updated.as_millis(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use caduceus_core::Timestamp;
    use caduceus_store::detect::{Stamp, SuppressStamp};

    use super::*;

    fn finding(kind: FindingKind, rule: &str, entity: Option<&str>, patients: &[&str]) -> Finding {
        Finding {
            kind,
            rule_id: rule.into(),
            rule_title: "title".into(),
            severity: Severity::High,
            time: Timestamp(1_767_225_600_000),
            entity: entity.map(Into::into),
            patients: patients.iter().map(|p| (*p).to_owned()).collect(),
            score: Some(0.9),
            explanation: "same surname as the user".into(),
            context: vec!["no encounter".into()],
            tags: vec!["attack.t1078".into()],
            events: vec![7, 9],
        }
    }

    #[test]
    fn group_keys_separate_rules_entities_and_patients() {
        let a = group_key(&finding(FindingKind::Sigma, "r1", Some("alice"), &["p1"]));
        assert_eq!(a, r#"["sigma","r1","alice"]"#, "sigma findings group by rule and entity only");
        assert_eq!(a, group_key(&finding(FindingKind::Sigma, "r1", Some("alice"), &["p2"])));
        assert_ne!(a, group_key(&finding(FindingKind::Sigma, "r1", Some("bob"), &[])));
        assert_ne!(a, group_key(&finding(FindingKind::Sigma, "r2", Some("alice"), &[])));
        assert_ne!(a, group_key(&finding(FindingKind::Correlation, "r1", Some("alice"), &[])));
        assert_eq!(group_key(&finding(FindingKind::Sigma, "r1", None, &[])), r#"["sigma","r1",""]"#);
        // Record access: each user–patient pair, whatever the order of patients.
        let ehr = group_key(&finding(FindingKind::Ehr, "snoop", Some("u1"), &["p2", "p1", "p2"]));
        assert_eq!(ehr, r#"["ehr","snoop","u1","p1","p2"]"#);
        assert_ne!(ehr, group_key(&finding(FindingKind::Ehr, "snoop", Some("u1"), &["p1"])));
        // A separator inside a value cannot forge another key.
        let tricky = group_key(&finding(FindingKind::Sigma, "r1\",\"alice", None, &[]));
        assert_ne!(tricky, a);
        assert_eq!(serde_json::from_str::<Vec<String>>(&tricky).unwrap()[1], "r1\",\"alice");
    }

    #[test]
    fn new_alert_carries_the_finding() {
        let f = finding(FindingKind::Ehr, "snoop", Some("u1"), &["p1"]);
        let n = new_alert(&f, 42, "0193-uid".into());
        assert_eq!((n.id.as_str(), n.finding_seq, n.kind.as_str()), ("0193-uid", Some(42), "ehr"));
        assert_eq!(n.group_key, group_key(&f));
        assert_eq!((n.events, n.patients, n.score), (vec![7, 9], vec!["p1".to_owned()], Some(0.9)));
    }

    #[test]
    fn severity_from_level_and_score() {
        assert_eq!(level_severity(Some("informational")), Severity::Informational);
        assert_eq!(level_severity(Some("low")), Severity::Low);
        assert_eq!(level_severity(Some("medium")), Severity::Medium);
        assert_eq!(level_severity(Some(" HIGH ")), Severity::High);
        assert_eq!(level_severity(Some("critical")), Severity::Critical);
        assert_eq!(level_severity(None), Severity::Medium);
        assert_eq!(level_severity(Some("catastrophic")), Severity::Medium);
        let bands = [(0.0, 1), (0.29, 1), (0.3, 2), (0.59, 2), (0.6, 3), (0.8, 4), (0.949, 4), (0.95, 5), (1.0, 5)];
        for (score, id) in bands {
            assert_eq!(u8::from(score_severity(score)), id, "score {score}");
        }
        assert_eq!(score_severity(f64::NAN), Severity::Unknown);
        assert_eq!(severity(Some("low"), Some(0.97)), Severity::Critical, "the higher wins");
        assert_eq!(severity(Some("high"), Some(0.1)), Severity::High);
        assert_eq!(severity(None, Some(0.65)), Severity::Medium);
        assert_eq!(severity(Some("low"), None), Severity::Low);
        assert_eq!(severity_name(Severity::Critical), "critical");
    }

    #[test]
    fn attack_tags_become_techniques_tactics_groups_and_software() {
        let tags: Vec<String> = [
            "attack.t1059.001",
            "attack.execution",
            "attack.T1059.001",
            "attack.t1003",
            "attack.privilege-escalation",
            "attack.defense_evasion",
            "attack.command-and-control",
            "attack.stealth",
            "attack.g0032",
            "attack.s0154",
            "attack.ds0005",
            "attack.t10591",
            "attack.t1059.01",
            "attack.",
            "attack.Bad Tag!",
            "cve.2021-44228",
            "detection.threat-hunting",
            "car.2013-05-004",
        ]
        .iter()
        .map(|t| (*t).to_owned())
        .collect();
        let a = attack(&tags);
        assert_eq!(a.techniques, ["T1059.001", "T1003"]);
        assert_eq!(
            a.tactics,
            ["Execution", "Privilege Escalation", "Defense Evasion", "Command and Control", "Stealth"]
        );
        assert_eq!(a.groups, ["G0032"]);
        assert_eq!(a.software, ["S0154"]);
        assert!(attack(&["cve.2021-44228".to_owned()]).is_empty());
    }

    #[test]
    fn the_view_shows_triage_and_keeps_its_documented_bounds() {
        let at = Timestamp(1_767_225_600_000);
        let row = AlertRow {
            id: "a1".into(),
            rule_id: "r".repeat(300),
            rule_title: "Suspicious PowerShell".into(),
            kind: "sigma".into(),
            severity: Severity::High,
            entity: Some("alice".into()),
            group_key: "k".into(),
            status: AlertStatus::Closed,
            assignee: Some("soc-2".into()),
            first_seen: at,
            last_seen: Timestamp(at.0 + 1000),
            count: 3,
            score: Some(1.7),
            explanation: "é".repeat(5000),
            context: vec!["c".into(); 40],
            tags: vec!["attack.t1059.001".into(), "attack.execution".into()],
            patients: vec![],
            events: vec![1, 2],
            findings: vec![3],
            created: at,
            updated: at,
            acknowledged: Some(Stamp { by: "ana".into(), at }),
            assigned: None,
            closed: Some(Stamp { by: "ana".into(), at }),
            close_reason: Some("benign admin script".into()),
            suppressed: Some(SuppressStamp { by: "bo".into(), at, reason: "noisy".into(), until: Timestamp(at.0 + 5) }),
        };
        let view = AlertView::from(&row);
        assert_eq!((view.severity.as_str(), u8::from(view.severity_id)), ("high", 4));
        assert_eq!(view.status, AlertState::Closed);
        assert_eq!(view.first_seen_time, "2026-01-01T00:00:00Z");
        assert_eq!(view.rule_id.chars().count(), 256);
        assert_eq!(view.explanation.chars().count(), 4096);
        assert_eq!(view.context.len(), 32);
        assert_eq!(view.score, Some(1.0));
        assert_eq!(view.attack.techniques, ["T1059.001"]);
        assert_eq!(view.closed.as_ref().unwrap().reason.as_deref(), Some("benign admin script"));
        assert_eq!(view.suppressed.as_ref().unwrap().until, Some(at.0 + 5));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["status"], "closed");
        assert_eq!(json["severity_id"], 4);
        assert!(json["acknowledged"].get("reason").is_none(), "absent, not null");
        assert_eq!(serde_json::from_value::<AlertView>(json).unwrap(), view);
    }
}
