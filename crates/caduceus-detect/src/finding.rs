//! What the engine found, before it becomes an event and an alert.

use caduceus_core::event::{EventError, EventId};
use caduceus_core::{Actor, Payload, SecurityEvent, Severity, Status, Timestamp};
use serde::{Deserialize, Serialize};

/// Which part of the engine found it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FindingKind {
    /// A Sigma detection rule matched one event.
    Sigma,
    /// A Sigma correlation rule's condition was met over several events.
    Correlation,
    /// The record-access analytics scored an access as unexplained.
    Ehr,
    /// The network stage: a flow model, the online anomaly detector, or a
    /// healthcare-protocol check (unknown DICOM AE title, unexpected HL7 sender).
    Network,
    /// A device broke the baseline it learned (new peer, port, protocol,
    /// volume or hour).
    Baseline,
}

impl FindingKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sigma => "sigma",
            Self::Correlation => "correlation",
            Self::Ehr => "ehr",
            Self::Network => "network",
            Self::Baseline => "baseline",
        }
    }
}

/// One finding. Never carries a patient's name or other identifying value:
/// patients are pseudonymous ids, explanations are about relationships
/// ("same surname as the user"), not their content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub kind: FindingKind,
    pub rule_id: String,
    pub rule_title: String,
    pub severity: Severity,
    /// When it happened (the time of the last event that made it fire).
    pub time: Timestamp,
    /// Who or what it is about (user id, host name), for grouping alerts.
    pub entity: Option<String>,
    pub patients: Vec<String>,
    /// Anomaly score in 0..=1, where the analytics score.
    pub score: Option<f64>,
    /// Why it fired, in plain words.
    pub explanation: String,
    /// What explains the access, or what was looked for and not found.
    pub context: Vec<String>,
    /// Rule tags (MITRE ATT&CK `attack.t1059.001`, ...).
    pub tags: Vec<String>,
    /// Spine sequence numbers of the events that made it fire.
    pub events: Vec<u64>,
}

/// Longest text kept from a rule title or explanation line in an event.
const MAX_LINE: usize = 500;

fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

impl Finding {
    /// The OCSF Detection Finding event for this finding, stamped `now`
    /// (the event time stays in the payload's `events`). Over-long parts are
    /// clipped so that a finding always becomes an event.
    pub fn to_event(&self, now: Timestamp) -> Result<SecurityEvent, EventError> {
        let mut patients = self.patients.clone();
        patients.truncate(caduceus_core::event::MAX_FINDING_ITEMS * 31);
        let mut events = self.events.clone();
        events.truncate(1000);
        let payload = Payload::DetectionFinding {
            kind: self.kind.as_str().to_owned(),
            rule_id: clip(&self.rule_id, 256),
            rule_title: clip(&self.rule_title, 256),
            entity: self.entity.as_deref().map(|e| clip(e, 256)),
            patients,
            score_milli: self.score.map(|s| (s.clamp(0.0, 1.0) * 1000.0).round() as u32),
            explanation: clip(&self.explanation, 4000),
            context: self
                .context
                .iter()
                .take(caduceus_core::event::MAX_FINDING_ITEMS)
                .map(|c| clip(c, MAX_LINE))
                .collect(),
            tags: self.tags.iter().take(caduceus_core::event::MAX_FINDING_ITEMS).map(|t| clip(t, 256)).collect(),
            events,
        };
        let message = clip(&format!("{}: {}", self.kind.as_str(), self.rule_title), 1000);
        SecurityEvent::new(
            EventId::new(now),
            now,
            self.severity,
            Status::Success,
            Actor::system(),
            None,
            message,
            payload,
        )
    }
}
