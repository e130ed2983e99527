//! The naive baseline: the `sigma-rust` crate (0.7) evaluating every rule
//! it can parse on every event, which is how a Sigma library without an
//! index is used. `sigma-rust` has no notion of a rule's log source (a
//! Windows registry rule is run on a Linux auditd record too), so the
//! baseline is also measured with the log-source filter a caller would add
//! (`Source::admits`), to show how much of our lead the index alone earns.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context as _, anyhow};
use sigma_rust::{Event, Rule};

use super::mix::{MixEvent, Source};
use crate::util;

/// Largest rule file read (the biggest SigmaHQ rule is a few tens of KB).
const MAX_RULE_FILE: u64 = 1024 * 1024;

/// Every `.yml`/`.yaml` file under the directories, sorted.
pub fn rule_files(dirs: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for dir in dirs {
        collect(dir, &mut files).with_context(|| format!("listing {}", dir.display()))?;
    }
    files.sort();
    Ok(files)
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(path);
        }
    }
    Ok(())
}

/// The rules `sigma-rust` could parse, one per file (it reads one YAML
/// document: files holding several, such as correlation rules with their
/// base rules, and rules using syntax it lacks, fail).
pub struct NaiveRules {
    pub rules: Vec<Rule>,
    pub files: usize,
    pub failed: usize,
    pub load_s: f64,
}

pub fn load(files: &[PathBuf]) -> anyhow::Result<NaiveRules> {
    let started = Instant::now();
    let mut rules = Vec::with_capacity(files.len());
    let mut failed = 0;
    for file in files {
        let size = std::fs::metadata(file)?.len();
        if size > MAX_RULE_FILE {
            failed += 1;
            continue;
        }
        let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        match sigma_rust::rule_from_yaml(&text) {
            Ok(rule) => rules.push(rule),
            Err(_) => failed += 1,
        }
    }
    Ok(NaiveRules { rules, files: files.len(), failed, load_s: started.elapsed().as_secs_f64() })
}

/// A `sigma-rust` event built from the event's flat fields (what a caller
/// of the crate hands it: it does not read evtx envelopes itself).
pub fn event(event: &MixEvent) -> anyhow::Result<Event> {
    Event::try_from(serde_json::Value::Object(event.flat_fields()))
        .map_err(|e| anyhow!("building a sigma-rust event: {e:?}"))
}

/// One timed pass of the baseline.
#[derive(Debug, Clone, Default)]
pub struct NaivePoint {
    pub events: u64,
    pub rule_checks: u64,
    pub matches: u64,
    pub seconds: f64,
    pub cpu_seconds: Option<f64>,
    /// Median over the rules of one rule's mean check time: what a
    /// typical rule costs, against the mean the slow rules dominate.
    pub median_rule_check_ns: f64,
    /// The rules taking the most time: title and share of the total.
    pub slowest: Vec<(String, f64)>,
}

impl NaivePoint {
    pub fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }

    pub fn rule_checks_per_sec(&self) -> f64 {
        self.rule_checks as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }

    pub fn events_per_cpu_sec(&self) -> Option<f64> {
        self.cpu_seconds.filter(|c| *c > 0.0).map(|c| self.events as f64 / c)
    }
}

/// Rules named in `NaivePoint::slowest`.
const SLOWEST: usize = 5;

/// Evaluate every rule on every event (`filter`: only the rules whose log
/// source admits the event), single-threaded. The loop is rule-major (each
/// rule over all the events, then the next) so that each rule's time can
/// be taken without a clock read per check; the checks are the same.
pub fn run(rules: &[Rule], events: &[(Event, &Source)], filter: bool) -> NaivePoint {
    let cpu = util::process_cpu();
    let started = Instant::now();
    let mut point = NaivePoint { events: events.len() as u64, ..NaivePoint::default() };
    let mut per_rule: Vec<(f64, u64, &str)> = Vec::with_capacity(rules.len());
    for rule in rules {
        let rule_started = Instant::now();
        let ls = &rule.logsource;
        let mut checks = 0u64;
        for (event, source) in events {
            if filter && !source.admits(ls.product.as_deref(), ls.service.as_deref(), ls.category.as_deref()) {
                continue;
            }
            checks += 1;
            if std::hint::black_box(rule.is_match(event)) {
                point.matches += 1;
            }
        }
        point.rule_checks += checks;
        per_rule.push((rule_started.elapsed().as_secs_f64(), checks, rule.title.as_str()));
    }
    point.seconds = started.elapsed().as_secs_f64();
    point.cpu_seconds =
        util::process_cpu().zip(cpu).and_then(|(after, before)| after.checked_sub(before)).map(|d| d.as_secs_f64());

    let mut per_check: Vec<f64> =
        per_rule.iter().filter(|(_, checks, _)| *checks > 0).map(|(s, checks, _)| s * 1e9 / *checks as f64).collect();
    per_check.sort_by(f64::total_cmp);
    point.median_rule_check_ns = per_check.get(per_check.len() / 2).copied().unwrap_or_default();
    let total: f64 = per_rule.iter().map(|(s, _, _)| s).sum();
    per_rule.sort_by(|a, b| b.0.total_cmp(&a.0));
    point.slowest = per_rule
        .iter()
        .take(SLOWEST)
        .map(|(s, _, title)| ((*title).to_owned(), s / total.max(f64::MIN_POSITIVE)))
        .collect();
    point
}
