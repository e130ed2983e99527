//! End to end: simulate a small hospital, write its files, evaluate the
//! record-access analytics on them the way `caduceus detect evaluate` does.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use caduceus_core::{SecurityEvent, Timestamp};
use caduceus_detect::ehr::{Analytics, Assessment, EhrSettings};
use caduceus_detect::evaluate::{AccessProcessor, EvalInput, EvalOptions, evaluate, evaluate_with};
use caduceus_detect::simulate::{SimOptions, simulate};

fn options(seed: u64) -> SimOptions {
    // A small hospital over five days, with more snooping than the target
    // rate so that every kind is there often enough to measure.
    SimOptions { seed, days: 5, staff: 160, patients: 4_000, snoop_rate: 0.005, ..SimOptions::default() }
}

#[test]
fn simulate_then_evaluate() {
    let dir = tempfile::tempdir().unwrap();
    let out = simulate(&options(21)).unwrap();
    out.write(dir.path()).unwrap();
    let report = evaluate(dir.path(), &EvalOptions::default()).unwrap();
    assert_eq!(report.accesses, out.accesses.len());
    assert_eq!(report.positives, out.labels.len());
    assert!(report.positives >= 40, "{}", report.to_text());
    let overall = &report.overall;
    assert!(overall.recall.unwrap() >= 0.9, "{}", report.to_text());
    assert!(overall.false_alerts_per_1000 <= 2.0, "{}", report.to_text());
    assert!(overall.roc_auc.unwrap() >= 0.95, "{}", report.to_text());
    assert!(report.by_kind.len() >= 8, "{}", report.to_text());
    let json = serde_json::to_value(&report).unwrap();
    for key in ["precision", "recall", "false_alerts_per_1000", "roc_auc"] {
        assert!(json["overall"][key].is_number(), "{key}");
    }

    // The same data set with pre-hashed tokens gives the same verdicts.
    let hashed_dir = tempfile::tempdir().unwrap();
    simulate(&SimOptions { pre_hashed: true, ..options(21) }).unwrap().write(hashed_dir.path()).unwrap();
    let hashed = evaluate(hashed_dir.path(), &EvalOptions::default()).unwrap();
    assert_eq!(hashed, report);
}

/// The analytics behind another processor (as the server's engine is).
struct Counting {
    analytics: Analytics,
    observed: u64,
    last_time: Timestamp,
}

impl AccessProcessor for Counting {
    fn observe(&mut self, seq: u64, event: &SecurityEvent) -> Vec<Assessment> {
        assert!(event.time() >= self.last_time, "events come in time order");
        self.last_time = event.time();
        self.observed += 1;
        assert_eq!(seq, self.observed, "sequence numbers are positions");
        self.analytics.observe(seq, event)
    }
    fn advance(&mut self, now: Timestamp) -> Vec<Assessment> {
        self.analytics.advance(now)
    }
}

#[test]
fn a_caller_supplied_processor_sees_every_event_in_order_and_labels_are_read_last() {
    let dir = tempfile::tempdir().unwrap();
    simulate(&options(22)).unwrap().write(dir.path()).unwrap();
    let labels = std::fs::read(dir.path().join("labels.ndjson")).unwrap();
    std::fs::remove_file(dir.path().join("labels.ndjson")).unwrap();
    let options = EvalOptions::default();
    let input = EvalInput::load(dir.path(), &options).unwrap();
    let mut processor = Counting {
        analytics: Analytics::new(input.directory(), EhrSettings::default()),
        observed: 0,
        last_time: Timestamp(0),
    };
    // Without labels the replay runs; only the scoring needs them.
    let err = evaluate_with(&input, &mut processor, 0.5, &options.limits).unwrap_err();
    assert!(err.to_string().starts_with("labels.ndjson: cannot open"), "{err}");
    assert_eq!(processor.observed as usize, input.len());

    std::fs::write(dir.path().join("labels.ndjson"), labels).unwrap();
    let mut processor = Counting {
        analytics: Analytics::new(input.directory(), EhrSettings::default()),
        observed: 0,
        last_time: Timestamp(0),
    };
    let report = evaluate_with(&input, &mut processor, 0.5, &options.limits).unwrap();
    assert_eq!(report, evaluate(dir.path(), &options).unwrap(), "the same as the analytics alone");
}

#[test]
fn malformed_files_are_refused_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    simulate(&SimOptions { days: 1, staff: 80, patients: 1_000, ..SimOptions::default() })
        .unwrap()
        .write(dir.path())
        .unwrap();
    let path = dir.path().join("patients.ndjson");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"patient\":\"p-x\",\"vip\":\"Madonna\"}\n");
    let lines = text.lines().count();
    std::fs::write(&path, text).unwrap();
    let err = evaluate(dir.path(), &EvalOptions::default()).unwrap_err();
    assert_eq!(err.file, "patients.ndjson");
    assert_eq!(err.line, Some(lines));
    assert!(!err.to_string().contains("Madonna"), "no content in errors: {err}");

    let staff = dir.path().join("staff.ndjson");
    std::fs::write(&staff, format!("{}\n", "x".repeat(70_000))).unwrap();
    let err = evaluate(dir.path(), &EvalOptions::default()).unwrap_err();
    assert_eq!(err.to_string(), "staff.ndjson:1: line is longer than 65536 bytes");
}
