//! The detection stage's core, free of I/O: one event in, findings out.
//! The server runs it over the spine (and publishes what it finds back on
//! the spine); `caduceus detect test-rules` and `caduceus detect evaluate`
//! run the same engine over files, so offline results are the server's.

use std::sync::Arc;

use caduceus_core::event::Payload;
use caduceus_core::{SecurityEvent, Timestamp};

use crate::alerts::level_severity;
use crate::correlation::{CorrelationHit, Correlator};
use crate::ehr::{Analytics, Assessment};
use crate::sigma::{Event, FieldMap, Rule, RuleSet};
use crate::{FieldLookup, Finding, FindingKind};

/// Counters of what the engine has seen and found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub sigma_matches: u64,
    pub correlation_hits: u64,
    pub ehr_assessments: u64,
    pub findings: u64,
}

/// What processing produced. Kept across calls by the caller so that its
/// vectors are reused.
#[derive(Debug, Default)]
pub struct Output {
    pub findings: Vec<Finding>,
    /// Every record access scored by the analytics, alerting or not (the
    /// evaluation's ROC curve needs the scores below the threshold too).
    pub assessments: Vec<Assessment>,
}

impl Output {
    pub fn clear(&mut self) {
        self.findings.clear();
        self.assessments.clear();
    }
}

/// Sigma rules, their correlations and the record-access analytics.
pub struct Engine {
    rules: Arc<RuleSet>,
    correlator: Correlator,
    ehr: Option<Analytics>,
    field_map: FieldMap,
    /// Rules referenced by a correlation that does not `generate` their
    /// own findings: they feed the correlation only (Sigma spec).
    quiet: std::collections::HashSet<usize>,
    scratch: Vec<usize>,
    stats: EngineStats,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("stats", &self.stats).finish_non_exhaustive()
    }
}

/// Fields that name the machine or account an event is about, in order of
/// preference, for grouping alerts.
const ENTITY_FIELDS: [&str; 8] =
    ["Computer", "Hostname", "host.name", "hostname", "ComputerName", "User", "SubjectUserName", "actor"];

fn entity_of(event: &Event) -> Option<String> {
    ENTITY_FIELDS.iter().find_map(|name| event.field(name).map(|v| v.into_owned()))
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>, ehr: Option<Analytics>, field_map: FieldMap) -> Self {
        let correlator = Correlator::new(rules.correlations().to_vec());
        let quiet = quiet_rules(&rules);
        Self { rules, correlator, ehr, field_map, quiet, scratch: Vec::new(), stats: EngineStats::default() }
    }

    /// Replace the rules (after a rule was added, enabled or disabled).
    /// Correlation state starts afresh: windows over the old rules would
    /// count events the new rules may not match.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.correlator = Correlator::new(rules.correlations().to_vec());
        self.quiet = quiet_rules(&rules);
        self.rules = rules;
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    pub fn analytics_mut(&mut self) -> Option<&mut Analytics> {
        self.ehr.as_mut()
    }

    pub fn stats(&self) -> EngineStats {
        self.stats
    }

    /// Run one event (spine sequence `seq`) through everything. Findings
    /// themselves are not examined again: a finding about a finding would
    /// loop.
    pub fn process(&mut self, seq: u64, event: &SecurityEvent, out: &mut Output) {
        if matches!(event.payload(), Payload::DetectionFinding { .. }) {
            return;
        }
        self.stats.events += 1;
        let normalised = Event::from_security_event(event, &self.field_map);
        let entity = (!matches!(event.payload(), Payload::LogRecord { .. })).then(|| event.actor().uid.clone());
        self.run_rules(seq, event.time(), entity, &normalised, out);
        if let (Some(ehr), Payload::RecordAccess { .. }) = (self.ehr.as_mut(), event.payload()) {
            let assessments = ehr.observe(seq, event);
            self.push_assessments(assessments, out);
        }
        self.stats.findings = self.stats.findings.saturating_add(out.findings.len() as u64);
    }

    /// Run a normalised event through the Sigma rules and correlations
    /// only (`caduceus detect test-rules` feeds events that are not ours).
    /// `entity` defaults to the host or user the event names.
    pub fn run_rules(&mut self, seq: u64, time: Timestamp, entity: Option<String>, event: &Event, out: &mut Output) {
        self.scratch.clear();
        self.rules.matches(event, &mut self.scratch);
        let time_ms = time.as_millis();
        let mut entity = entity;
        for &index in &self.scratch {
            let Some(rule) = self.rules.rule_at(index) else { continue };
            self.stats.sigma_matches += 1;
            let entity = entity.get_or_insert_with(|| entity_of(event).unwrap_or_default()).clone();
            let entity = (!entity.is_empty()).then_some(entity);
            let hits = self.correlator.observe(&rule.id, rule.name.as_deref(), time_ms, seq, event);
            for hit in hits {
                self.stats.correlation_hits += 1;
                out.findings.push(correlation_finding(&hit, &self.correlator, time, entity.clone()));
            }
            if !self.quiet.contains(&index) {
                out.findings.push(sigma_finding(rule, seq, time, entity));
            }
        }
    }

    /// Time has passed: close correlation windows and run the analytics'
    /// deferred checks.
    pub fn advance(&mut self, now: Timestamp, out: &mut Output) {
        let before = out.findings.len();
        for hit in self.correlator.advance(now.as_millis()) {
            self.stats.correlation_hits += 1;
            out.findings.push(correlation_finding(&hit, &self.correlator, now, None));
        }
        if let Some(ehr) = self.ehr.as_mut() {
            let assessments = ehr.advance(now);
            self.push_assessments(assessments, out);
        }
        self.stats.findings = self.stats.findings.saturating_add((out.findings.len() - before) as u64);
    }

    fn push_assessments(&mut self, assessments: Vec<Assessment>, out: &mut Output) {
        for assessment in assessments {
            self.stats.ehr_assessments += 1;
            if assessment.alert {
                out.findings.push(assessment.to_finding());
            }
            out.assessments.push(assessment);
        }
    }
}

/// Indices of the rules whose matches only feed correlations.
fn quiet_rules(rules: &RuleSet) -> std::collections::HashSet<usize> {
    let referenced: std::collections::HashSet<&str> =
        rules.correlations().iter().filter(|c| !c.generate).flat_map(|c| c.rules.iter().map(String::as_str)).collect();
    (0..)
        .map_while(|i| rules.rule_at(i).map(|r| (i, r)))
        .filter(|(_, r)| {
            referenced.contains(r.id.as_str()) || r.name.as_deref().is_some_and(|n| referenced.contains(n))
        })
        .map(|(i, _)| i)
        .collect()
}

fn sigma_finding(rule: &Rule, seq: u64, time: Timestamp, entity: Option<String>) -> Finding {
    let explanation = match &rule.description {
        Some(description) => format!("Sigma rule \"{}\" matched: {}", rule.title, description),
        None => format!("Sigma rule \"{}\" matched", rule.title),
    };
    Finding {
        kind: FindingKind::Sigma,
        rule_id: rule.id.clone(),
        rule_title: rule.title.clone(),
        severity: level_severity(rule.level.as_deref()),
        time,
        entity,
        patients: Vec::new(),
        score: None,
        explanation,
        context: rule.falsepositives.iter().map(|f| format!("possible false positive: {f}")).collect(),
        tags: rule.tags.clone(),
        events: vec![seq],
    }
}

fn correlation_finding(
    hit: &CorrelationHit,
    correlator: &Correlator,
    now: Timestamp,
    entity: Option<String>,
) -> Finding {
    let rule = correlator.rule(hit.rule);
    let group = hit.group.iter().map(|(field, value)| format!("{field}={value}")).collect::<Vec<_>>().join(", ");
    let entity = hit.group.first().map(|(_, value)| value.clone()).or(entity);
    Finding {
        kind: FindingKind::Correlation,
        rule_id: hit.id.clone(),
        rule_title: hit.title.clone(),
        severity: level_severity(rule.and_then(|r| r.level.as_deref())),
        time: if hit.last_ms > 0 { Timestamp(hit.last_ms) } else { now },
        entity,
        patients: Vec::new(),
        score: None,
        explanation: match rule {
            Some(rule) => format!("Sigma correlation \"{}\": {}", hit.title, hit.explain(rule)),
            None => format!(
                "Sigma correlation \"{}\" met its condition{}",
                hit.title,
                if group.is_empty() { String::new() } else { format!(" for {group}") }
            ),
        },
        context: Vec::new(),
        tags: rule.map(|r| r.tags.clone()).unwrap_or_default(),
        events: hit.events.clone(),
    }
}

/// The evaluation replays a labelled log through the whole engine, Sigma
/// rules included, exactly as the server would run it.
impl crate::evaluate::AccessProcessor for Engine {
    fn observe(&mut self, seq: u64, event: &SecurityEvent) -> Vec<Assessment> {
        let mut out = Output::default();
        self.process(seq, event, &mut out);
        out.assessments
    }

    fn advance(&mut self, now: Timestamp) -> Vec<Assessment> {
        let mut out = Output::default();
        Engine::advance(self, now, &mut out);
        out.assessments
    }
}
