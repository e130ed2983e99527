//! Detection quality from scores and labels: precision, recall, F1, accuracy, exact ROC AUC and
//! the confusion matrix. Pure functions; it knows nothing of models or files.
//!
//! A row is predicted an attack when its score is at or above the threshold. Where a ratio has
//! a zero denominator (no predicted attacks, no attacks) it is 0, as scikit-learn reports it.
//! ROC AUC is the Mann–Whitney statistic with mid-ranks for ties, so it equals scikit-learn's
//! `roc_auc_score`; it is absent when the rows hold only one class.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Counts of the four outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    pub tp: u64,
    pub fp: u64,
    pub tn: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
}

impl Confusion {
    /// Count outcomes of `scores >= threshold` against `labels` (1 = attack).
    pub fn at(scores: &[f32], labels: &[u8], threshold: f32) -> Confusion {
        let mut c = Confusion::default();
        for (s, l) in scores.iter().zip(labels) {
            match (*s >= threshold, *l != 0) {
                (true, true) => c.tp += 1,
                (true, false) => c.fp += 1,
                (false, false) => c.tn += 1,
                (false, true) => c.fn_ += 1,
            }
        }
        c
    }

    pub fn precision(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.tp, self.tp + self.fn_)
    }

    pub fn f1(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    pub fn accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.tp + self.fp + self.tn + self.fn_)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Exact ROC AUC (rank-based, ties get mid-ranks); `None` with only one class present. NaN
/// scores rank lowest.
pub fn roc_auc(scores: &[f32], labels: &[u8]) -> Option<f64> {
    let n = scores.len().min(labels.len());
    let mut order: Vec<(f32, bool)> =
        scores.iter().zip(labels).map(|(s, l)| (if s.is_nan() { f32::NEG_INFINITY } else { *s }, *l != 0)).collect();
    order.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives = order.iter().filter(|(_, p)| *p).count();
    let negatives = n - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut rank_sum = 0.0f64;
    let mut i = 0;
    while let Some(&(score, _)) = order.get(i) {
        let mut j = i;
        while order.get(j + 1).is_some_and(|(s, _)| *s == score) {
            j += 1;
        }
        // Rows i..=j share one score: each gets the mean of ranks i+1..=j+1.
        let mid_rank = (i + j + 2) as f64 / 2.0;
        let pos_in_group = order.get(i..=j).map_or(0, |g| g.iter().filter(|(_, p)| *p).count());
        rank_sum += mid_rank * pos_in_group as f64;
        i = j + 1;
    }
    let p = positives as f64;
    Some((rank_sum - p * (p + 1.0) / 2.0) / (p * negatives as f64))
}

/// The threshold maximising F1 over `scores` (ties keep the higher threshold); the threshold is
/// the midpoint between the lowest score taken as attack and the next lower score.
pub fn best_f1_threshold(scores: &[f32], labels: &[u8]) -> f32 {
    let mut order: Vec<(f32, bool)> =
        scores.iter().zip(labels).filter(|(s, _)| !s.is_nan()).map(|(s, l)| (*s, *l != 0)).collect();
    order.sort_by(|a, b| b.0.total_cmp(&a.0));
    let positives = order.iter().filter(|(_, p)| *p).count() as u64;
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut best = (0.0f64, 0.5f32);
    let mut i = 0;
    while let Some(&(s, _)) = order.get(i) {
        while let Some(&(t, p)) = order.get(i)
            && t == s
        {
            if p {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let f1 = ratio(2 * tp, tp + fp + positives);
        if f1 > best.0 {
            let next = order.get(i).map_or(s, |n| n.0);
            let mid = s / 2.0 + next / 2.0;
            // Keep `score >= threshold` true for `s` even when the midpoint rounds up to it.
            best = (f1, if mid > next && mid <= s { mid } else { s });
        }
    }
    best.1
}

/// Which rows a report was computed on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitKind {
    /// The test rows of the model's own training file.
    Test,
    /// Every row (a file the model was not trained on).
    All,
    /// The validation slice carved from the training rows (reported by training).
    Validation,
}

impl fmt::Display for SplitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SplitKind::Test => "test",
            SplitKind::All => "all",
            SplitKind::Validation => "validation",
        })
    }
}

/// A detection-quality report; its JSON keys are the ones `caduceus detect evaluate --json`
/// prints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Absent (null) when the rows hold only one class.
    pub roc_auc: Option<f64>,
    pub accuracy: f64,
    pub confusion_matrix: Confusion,
    pub rows: u64,
    pub split: SplitKind,
    pub model_kind: String,
    pub threshold: f32,
}

impl Report {
    /// Score `scores` against `labels` at `threshold`.
    pub fn compute(scores: &[f32], labels: &[u8], threshold: f32, split: SplitKind, model_kind: &str) -> Report {
        let c = Confusion::at(scores, labels, threshold);
        Report {
            precision: c.precision(),
            recall: c.recall(),
            f1: c.f1(),
            roc_auc: roc_auc(scores, labels),
            accuracy: c.accuracy(),
            confusion_matrix: c,
            rows: scores.len().min(labels.len()) as u64,
            split,
            model_kind: model_kind.to_owned(),
            threshold,
        }
    }

    /// A plain-text table for a terminal.
    pub fn to_table(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.confusion_matrix;
        writeln!(f, "model {}  rows {} ({})  threshold {:.4}", self.model_kind, self.rows, self.split, self.threshold)?;
        writeln!(f, "  precision  {:.4}", self.precision)?;
        writeln!(f, "  recall     {:.4}", self.recall)?;
        writeln!(f, "  f1         {:.4}", self.f1)?;
        match self.roc_auc {
            Some(a) => writeln!(f, "  roc_auc    {a:.4}")?,
            None => writeln!(f, "  roc_auc    n/a (one class)")?,
        }
        writeln!(f, "  accuracy   {:.4}", self.accuracy)?;
        writeln!(f, "  confusion matrix   predicted attack   predicted normal")?;
        writeln!(f, "    actual attack    {:>16}   {:>16}", c.tp, c.fn_)?;
        write!(f, "    actual normal    {:>16}   {:>16}", c.fp, c.tn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_and_ratios_by_hand() {
        // scores  .9 .8 .7 .6 .4 .3 .2 .1 ; threshold .5
        // labels   1  1  0  1  1  0  0  0
        let s = [0.9, 0.8, 0.7, 0.6, 0.4, 0.3, 0.2, 0.1];
        let l = [1, 1, 0, 1, 1, 0, 0, 0];
        let c = Confusion::at(&s, &l, 0.5);
        assert_eq!(c, Confusion { tp: 3, fp: 1, tn: 3, fn_: 1 });
        assert_eq!(c.precision(), 0.75);
        assert_eq!(c.recall(), 0.75);
        assert_eq!(c.f1(), 0.75);
        assert_eq!(c.accuracy(), 0.75);
        // Pairs (pos, neg) ordered right: of 16, wrong are (.6,.7) and (.4,.7): 14/16.
        assert_eq!(roc_auc(&s, &l), Some(14.0 / 16.0));
    }

    #[test]
    fn auc_with_ties() {
        // All scores equal: every pair is a tie, AUC 0.5.
        assert_eq!(roc_auc(&[0.5; 4], &[1, 0, 1, 0]), Some(0.5));
        // pos: .8, .5 ; neg: .5, .2  -> pairs: (.8,.5)=1 (.8,.2)=1 (.5,.5)=.5 (.5,.2)=1 -> 3.5/4
        assert_eq!(roc_auc(&[0.8, 0.5, 0.5, 0.2], &[1, 1, 0, 0]), Some(0.875));
        assert_eq!(roc_auc(&[0.1, 0.2], &[1, 1]), None);
        // Perfectly inverted.
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[1, 1, 0, 0]), Some(0.0));
    }

    #[test]
    fn zero_denominators() {
        let c = Confusion::at(&[0.1, 0.2], &[0, 0], 0.5);
        assert_eq!(c.precision(), 0.0);
        assert_eq!(c.recall(), 0.0);
        assert_eq!(c.f1(), 0.0);
        assert_eq!(c.accuracy(), 1.0);
    }

    #[test]
    fn best_threshold_separates() {
        let s = [0.9, 0.8, 0.3, 0.2, 0.7];
        let l = [1, 1, 0, 0, 1];
        let t = best_f1_threshold(&s, &l);
        assert!(t > 0.3 && t <= 0.7, "{t}");
        assert_eq!(Confusion::at(&s, &l, t).f1(), 1.0);
    }

    #[test]
    fn report_json_keys() {
        let r = Report::compute(&[0.9, 0.1], &[1, 0], 0.5, SplitKind::Test, "gbt");
        let v = serde_json::to_value(&r).unwrap();
        for k in ["precision", "recall", "f1", "roc_auc", "accuracy", "confusion_matrix", "rows", "split", "model_kind"]
        {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["split"], "test");
        assert_eq!(v["confusion_matrix"]["fn"], 0);
        assert_eq!(v["confusion_matrix"]["tp"], 1);
        assert!(r.to_table().contains("f1         1.0000"));
    }
}
