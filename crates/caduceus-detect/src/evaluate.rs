//! Evaluation of the record-access analytics on a labelled access log
//! (`caduceus detect evaluate --input DIR`).
//!
//! The replay and the scoring are kept apart on purpose: [`EvalInput`]
//! loads the directory and the access log (never the labels), the replay
//! turns each line into the vault's record-access event and feeds the
//! events in time order through an [`AccessProcessor`] — the analytics
//! alone, or the server's whole detection engine — and only when every
//! access has been scored are `labels.ndjson` read and the metrics
//! computed: precision, recall, false alerts per 1,000 accesses and ROC
//! AUC, overall and per scenario kind.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use caduceus_core::{SecurityEvent, Timestamp};
use serde::Serialize;

use crate::ehr::files::{LabelLine, Limits, LoadError, NdjsonReader};
use crate::ehr::log::{AccessLine, read_access_file, to_event};
use crate::ehr::{Analytics, Assessment, Directory, EhrSettings, TokenKey};

/// What an evaluation runs the accesses through.
pub trait AccessProcessor {
    /// One record-access event (spine sequence `seq`); the assessments that
    /// are final now.
    fn observe(&mut self, seq: u64, event: &SecurityEvent) -> Vec<Assessment>;
    /// Time has reached `now`: the deferred assessments that are due.
    fn advance(&mut self, now: Timestamp) -> Vec<Assessment>;
    /// The replay is over: everything still waiting.
    fn finish(&mut self) -> Vec<Assessment> {
        self.advance(Timestamp(i64::MAX))
    }
}

impl AccessProcessor for Analytics {
    fn observe(&mut self, seq: u64, event: &SecurityEvent) -> Vec<Assessment> {
        Analytics::observe(self, seq, event)
    }
    fn advance(&mut self, now: Timestamp) -> Vec<Assessment> {
        Analytics::advance(self, now)
    }
}

/// Options of an evaluation.
#[derive(Debug, Clone, Default)]
pub struct EvalOptions {
    pub limits: Limits,
    pub settings: EhrSettings,
    /// The key pre-hashed tokens in the files were made with, when plain
    /// text in one file must compare with tokens in another.
    pub token_key: Option<TokenKey>,
}

/// A data set ready to replay: the directory and the access lines in time
/// order. Holds no labels.
#[derive(Debug)]
pub struct EvalInput {
    dir: PathBuf,
    directory: Arc<Directory>,
    /// (line number, line), sorted by time; the file order breaks ties.
    accesses: Vec<(usize, AccessLine)>,
    /// Each access's id (the line's `id`, or `line:N`), in the same order.
    ids: Vec<String>,
}

impl EvalInput {
    /// Load `staff.ndjson`, `patients.ndjson`, `relationships.ndjson` and
    /// `access.ndjson` from `dir`.
    pub fn load(dir: &Path, options: &EvalOptions) -> Result<EvalInput, LoadError> {
        let directory = Directory::load_dir(dir, &options.limits, options.token_key.clone())?;
        let mut accesses = read_access_file(&dir.join("access.ndjson"), &options.limits)?;
        accesses.sort_by_key(|(_, line)| line.time);
        let mut seen = HashSet::with_capacity(accesses.len());
        let mut ids = Vec::with_capacity(accesses.len());
        for (number, line) in &accesses {
            let id = line.id.clone().unwrap_or_else(|| format!("line:{number}"));
            if !seen.insert(id.clone()) {
                return Err(LoadError::new("access.ndjson", Some(*number), "duplicate access id"));
            }
            ids.push(id);
        }
        Ok(EvalInput { dir: dir.to_owned(), directory: Arc::new(directory), accesses, ids })
    }

    /// The directory, for building the processor (the analytics, or the
    /// engine that holds it).
    pub fn directory(&self) -> Arc<Directory> {
        self.directory.clone()
    }

    pub fn len(&self) -> usize {
        self.accesses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accesses.is_empty()
    }

    /// Replay every access, in time order, through `processor`: before each
    /// access, time advances to it; at the end, everything still waiting is
    /// scored. Sequence numbers are 1-based positions in time order.
    pub fn replay<P: AccessProcessor + ?Sized>(&self, processor: &mut P) -> Result<Scores, LoadError> {
        let mut scores = Scores::new(self.accesses.len());
        for (index, (number, line)) in self.accesses.iter().enumerate() {
            scores.absorb(processor.advance(line.time));
            let event = to_event(line).map_err(|e| {
                LoadError::new("access.ndjson", Some(*number), format!("not a valid record access: {e}"))
            })?;
            scores.absorb(processor.observe(index as u64 + 1, &event));
        }
        scores.absorb(processor.finish());
        Ok(scores)
    }
}

/// The highest score each access got, whether it alerted, and the pattern
/// of its highest-scoring alert.
#[derive(Debug, Clone)]
pub struct Scores {
    score: Vec<f64>,
    alert: Vec<bool>,
    pattern: Vec<Option<&'static str>>,
    /// Assessments received.
    pub assessments: usize,
}

impl Scores {
    fn new(len: usize) -> Self {
        Self { score: vec![0.0; len], alert: vec![false; len], pattern: vec![None; len], assessments: 0 }
    }

    fn absorb(&mut self, assessments: Vec<Assessment>) {
        for a in assessments {
            self.assessments += 1;
            let Some(index) = usize::try_from(a.seq).ok().and_then(|s| s.checked_sub(1)) else { continue };
            let (Some(score), Some(alert), Some(pattern)) =
                (self.score.get_mut(index), self.alert.get_mut(index), self.pattern.get_mut(index))
            else {
                continue;
            };
            if a.alert && (!*alert || a.score > *score) {
                *pattern = Some(a.pattern());
            }
            *alert |= a.alert;
            *score = score.max(a.score);
        }
    }
}

/// Precision, recall, false alerts and ROC AUC.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Share of alerts that are snooping. Per kind: of the alerts whose
    /// strongest signal names this pattern.
    pub precision: Option<f64>,
    /// Share of snooping accesses that alerted.
    pub recall: Option<f64>,
    /// Alerts on legitimate accesses per 1,000 accesses (per kind: those
    /// whose strongest signal names this pattern).
    pub false_alerts_per_1000: f64,
    /// Rank-based (Mann–Whitney) area under the ROC curve of the per-access
    /// score; per kind: that kind's snooping against all legitimate accesses.
    pub roc_auc: Option<f64>,
    pub positives: usize,
    /// Snooping accesses that alerted.
    pub true_alerts: usize,
    pub false_alerts: usize,
}

/// The evaluation's result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub accesses: usize,
    pub positives: usize,
    pub alerts: usize,
    pub threshold: f64,
    pub overall: Metrics,
    pub by_kind: BTreeMap<String, Metrics>,
    /// False alerts by the pattern of their strongest signal.
    pub false_alerts_by_pattern: BTreeMap<String, usize>,
    /// Label lines naming no access.
    pub unmatched_labels: usize,
}

impl Report {
    /// A table for people.
    pub fn to_text(&self) -> String {
        let f = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |v| format!("{v:.3}"));
        let mut out = format!(
            "{} accesses, {} snooping, {} alerts (threshold {:.2})\n\n{:<22} {:>9} {:>9} {:>9} {:>14} {:>9}\n",
            self.accesses,
            self.positives,
            self.alerts,
            self.threshold,
            "kind",
            "positives",
            "precision",
            "recall",
            "false/1000",
            "roc_auc"
        );
        let mut row = |name: &str, m: &Metrics| {
            out.push_str(&format!(
                "{:<22} {:>9} {:>9} {:>9} {:>14.3} {:>9}\n",
                name,
                m.positives,
                f(m.precision),
                f(m.recall),
                m.false_alerts_per_1000,
                f(m.roc_auc)
            ));
        };
        row("overall", &self.overall);
        for (kind, m) in &self.by_kind {
            row(kind, m);
        }
        if !self.false_alerts_by_pattern.is_empty() {
            let parts: Vec<String> = self.false_alerts_by_pattern.iter().map(|(k, v)| format!("{k} {v}")).collect();
            out.push_str(&format!("\nfalse alerts by pattern: {}\n", parts.join(", ")));
        }
        if self.unmatched_labels > 0 {
            out.push_str(&format!("{} label lines name no access\n", self.unmatched_labels));
        }
        out
    }
}

/// Replay `input` through `processor`, then read the labels and measure.
pub fn evaluate_with<P: AccessProcessor + ?Sized>(
    input: &EvalInput,
    processor: &mut P,
    threshold: f64,
    limits: &Limits,
) -> Result<Report, LoadError> {
    let scores = input.replay(processor)?;
    let labels = read_labels(&input.dir.join("labels.ndjson"), limits)?;
    Ok(measure(&input.ids, &scores, &labels, threshold))
}

/// Load `dir` and evaluate the analytics on it with `options.settings`.
pub fn evaluate(dir: &Path, options: &EvalOptions) -> Result<Report, LoadError> {
    let input = EvalInput::load(dir, options)?;
    let mut analytics = Analytics::new(input.directory(), options.settings.clone());
    evaluate_with(&input, &mut analytics, options.settings.alert_threshold, &options.limits)
}

/// Read `labels.ndjson` (size-capped, line-numbered errors).
pub fn read_labels(path: &Path, limits: &Limits) -> Result<Vec<LabelLine>, LoadError> {
    let file = File::open(path).map_err(|e| LoadError::new("labels.ndjson", None, format!("cannot open: {e}")))?;
    let mut reader = NdjsonReader::new(BufReader::new(file), "labels.ndjson", limits.max_line_bytes);
    let mut out = Vec::new();
    while let Some((_, label)) = reader.next_record::<LabelLine>()? {
        if out.len() == limits.max_labels {
            return Err(reader.error(format!("more than {} labels", limits.max_labels)));
        }
        if label.kind.trim().is_empty() || label.kind.chars().count() > 64 {
            return Err(reader.error("kind must be 1 to 64 characters"));
        }
        out.push(label);
    }
    Ok(out)
}

/// The metrics of per-access scores against labels.
pub fn measure(ids: &[String], scores: &Scores, labels: &[LabelLine], threshold: f64) -> Report {
    let index: HashMap<&str, usize> = ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    let mut kind_of: Vec<Option<&str>> = vec![None; ids.len()];
    let mut unmatched_labels = 0;
    for label in labels {
        match index.get(label.id.as_str()).and_then(|i| kind_of.get_mut(*i)) {
            Some(slot) => *slot = Some(label.kind.as_str()),
            None => unmatched_labels += 1,
        }
    }
    let n = ids.len();
    let per_1000 = |count: usize| if n == 0 { 0.0 } else { count as f64 * 1000.0 / n as f64 };
    let ratio = |a: usize, b: usize| (b > 0).then(|| a as f64 / b as f64);

    let mut negatives: Vec<f64> = Vec::new();
    let mut positives: Vec<f64> = Vec::new();
    let mut by_kind_scores: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut by_kind_alerts: BTreeMap<&str, usize> = BTreeMap::new();
    // Per pattern of the alert: (true, false) alerts.
    let mut by_pattern: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let (mut alerts, mut true_alerts, mut false_alerts) = (0usize, 0usize, 0usize);
    for (i, kind) in kind_of.iter().enumerate() {
        let score = scores.score.get(i).copied().unwrap_or(0.0);
        let alert = scores.alert.get(i).copied().unwrap_or(false);
        let pattern = scores.pattern.get(i).copied().flatten().unwrap_or("unexplained");
        match kind {
            Some(kind) => {
                positives.push(score);
                by_kind_scores.entry(kind).or_default().push(score);
                if alert {
                    *by_kind_alerts.entry(kind).or_default() += 1;
                }
            }
            None => negatives.push(score),
        }
        if alert {
            alerts += 1;
            let entry = by_pattern.entry(pattern).or_default();
            if kind.is_some() {
                true_alerts += 1;
                entry.0 += 1;
            } else {
                false_alerts += 1;
                entry.1 += 1;
            }
        }
    }
    negatives.sort_by(f64::total_cmp);
    let overall = Metrics {
        precision: ratio(true_alerts, alerts),
        recall: ratio(true_alerts, positives.len()),
        false_alerts_per_1000: per_1000(false_alerts),
        roc_auc: roc_auc_sorted(&positives, &negatives),
        positives: positives.len(),
        true_alerts,
        false_alerts,
    };
    let by_kind = by_kind_scores
        .iter()
        .map(|(kind, scores)| {
            let detected = by_kind_alerts.get(kind).copied().unwrap_or(0);
            let (t, f) = by_pattern.get(kind).copied().unwrap_or((0, 0));
            let metrics = Metrics {
                precision: ratio(t, t + f),
                recall: ratio(detected, scores.len()),
                false_alerts_per_1000: per_1000(f),
                roc_auc: roc_auc_sorted(scores, &negatives),
                positives: scores.len(),
                true_alerts: detected,
                false_alerts: f,
            };
            ((*kind).to_owned(), metrics)
        })
        .collect();
    let false_alerts_by_pattern =
        by_pattern.iter().filter(|(_, (_, f))| *f > 0).map(|(k, (_, f))| ((*k).to_owned(), *f)).collect();
    Report {
        accesses: n,
        positives: overall.positives,
        alerts,
        threshold,
        overall,
        by_kind,
        false_alerts_by_pattern,
        unmatched_labels,
    }
}

/// ROC AUC by the Mann–Whitney statistic: the chance that a random
/// positive scores above a random negative, ties counting half.
pub fn roc_auc(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    let mut sorted = negatives.to_vec();
    sorted.sort_by(f64::total_cmp);
    roc_auc_sorted(positives, &sorted)
}

fn roc_auc_sorted(positives: &[f64], negatives: &[f64]) -> Option<f64> {
    if positives.is_empty() || negatives.is_empty() {
        return None;
    }
    let mut sum = 0.0;
    for p in positives {
        let below = negatives.partition_point(|n| n < p);
        let up_to = negatives.partition_point(|n| n <= p);
        sum += below as f64 + 0.5 * (up_to - below) as f64;
    }
    Some(sum / (positives.len() as f64 * negatives.len() as f64))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_known_examples() {
        assert_eq!(roc_auc(&[0.9, 0.8], &[0.1, 0.2, 0.3]), Some(1.0));
        assert_eq!(roc_auc(&[0.1], &[0.5, 0.9]), Some(0.0));
        assert_eq!(roc_auc(&[0.5], &[0.5]), Some(0.5), "a tie counts half");
        // 0.8 beats all four negatives, 0.6 and 0.4 beat three each: 10 of 12 pairs.
        let auc = roc_auc(&[0.8, 0.6, 0.4], &[0.7, 0.3, 0.2, 0.1]).unwrap();
        assert!((auc - 10.0 / 12.0).abs() < 1e-12, "{auc}");
        assert_eq!(roc_auc(&[], &[0.1]), None);
    }

    fn assessment(seq: u64, score: f64, alert: bool) -> Assessment {
        Assessment {
            seq,
            time: Timestamp(0),
            user: "u".into(),
            patient: "p".into(),
            action: caduceus_core::event::RecordAction::Read,
            score,
            alert,
            signals: vec![],
            explained_by: vec![],
            events: vec![seq],
        }
    }

    #[test]
    fn metrics_from_scores_and_labels() {
        let ids: Vec<String> = (1..=10).map(|i| format!("a{i}")).collect();
        let mut scores = Scores::new(10);
        // a1, a2 snooping (vip, family); a1 alerts; a3 false alert; a2 missed.
        scores.absorb(vec![assessment(1, 0.9, true), assessment(2, 0.3, false), assessment(3, 0.7, true)]);
        scores.absorb(vec![assessment(1, 0.2, false), assessment(99, 1.0, true)]);
        let labels = vec![
            LabelLine { id: "a1".into(), kind: "vip".into(), scenario: None },
            LabelLine { id: "a2".into(), kind: "family".into(), scenario: None },
            LabelLine { id: "zz".into(), kind: "vip".into(), scenario: None },
        ];
        let report = measure(&ids, &scores, &labels, 0.5);
        assert_eq!((report.accesses, report.positives, report.alerts), (10, 2, 2));
        assert_eq!(report.overall.precision, Some(0.5));
        assert_eq!(report.overall.recall, Some(0.5));
        assert!((report.overall.false_alerts_per_1000 - 100.0).abs() < 1e-9);
        assert_eq!(report.by_kind["vip"].recall, Some(1.0));
        assert_eq!(report.by_kind["family"].recall, Some(0.0));
        // family's 0.3 beats the seven zeros and loses to 0.7.
        assert!((report.by_kind["family"].roc_auc.unwrap() - 7.0 / 8.0).abs() < 1e-12);
        assert_eq!(report.unmatched_labels, 1);
        assert_eq!(report.false_alerts_by_pattern.get("explained"), Some(&1));
        let json = serde_json::to_value(&report).unwrap();
        for key in ["precision", "recall", "false_alerts_per_1000", "roc_auc"] {
            assert!(json["overall"].get(key).is_some(), "{key}");
            assert!(json["by_kind"]["vip"].get(key).is_some(), "{key}");
        }
        assert!(report.to_text().contains("overall"));
    }
}
