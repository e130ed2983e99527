//! The detection benchmark (issue 6): events per second on one core with
//! the whole SigmaHQ corpus loaded, through our Sigma engine alone and
//! through the full detection pipeline, against the naive baseline
//! (`sigma-rust`, every rule on every event) measured in the same run; the
//! record-access analytics' rate; memory. Prints one JSON object.
//!
//! Sections of the report:
//!
//! - `rules`: the built-in rules, then the corpus (every `rules*` directory
//!   of the SigmaHQ checkout in the shared data, or the `--rules`
//!   directories) added to one `RuleSet`, as the server loads them; rules
//!   loaded, those that failed (with a sample of the errors), correlations,
//!   the index's figures, and the load time (index built included).
//! - `events`: the pool, generated once from a seed (`mix.rs` documents the
//!   mix): `pool` distinct events, 1.5% of them the SigmaHQ regression
//!   events (real attacks recorded as evtx-JSON), the rest benign Windows
//!   (Sysmon, Security) and Linux (process creation, auditd) events. Also
//!   the rules firing on benign events, and whether normalising through the
//!   spine (`from_security_event`) matches the same rules as reading the
//!   record directly (`from_evtx_json`/`from_json`): events that differ and
//!   the rules matched one way only.
//! - `engine_only`: the pool normalised once into `sigma::Event`s (untimed),
//!   then `RuleSet::matches` over it, pass after pass, for at least
//!   `point_s`.
//! - `pipeline`: what the detection stage does per spine event, timed the
//!   same way: a `SecurityEvent` carrying a `Payload::LogRecord` (Windows
//!   records as the evtx-JSON a shipper forwards, Linux records flat, the
//!   shipper's log source) through `pipeline::Engine::process`:
//!   `Event::from_security_event`, the indexed match, correlations, and a
//!   `Finding` built for every match; at the end of each pass
//!   `Engine::advance` to its last event. Findings are not turned into
//!   events nor published: that is the spine's cost, not detection's.
//! - `breakdown`: CPU nanoseconds per event of each step alone.
//! - `naive_sigma_rust`: `sigma-rust` 0.7 parses the same rule files (one
//!   rule per file: files with several YAML documents fail) and evaluates
//!   every rule on every event of the first `sample_events` of the pool,
//!   its events built from the same flattened fields (`MixEvent::
//!   flat_fields`). It has no log-source filtering, so it also runs Windows
//!   rules on Linux records (and rules whose detection is all `not ...`
//!   match unrelated events); `with_logsource_filter` adds the filter a
//!   caller would write, a second, kinder baseline. The slowest rules and
//!   the median rule's check time show where its time goes.
//! - `speedup`: ours over the naive baseline, events per second.
//! - `ehr`: the record-access analytics on a simulated hospital's access
//!   log, alone and inside the engine.
//! - `memory`: resident set (`VmRSS`) and its peak (`VmHWM`, KiB) before and
//!   after loading the rules (their difference bounds the rule set with its
//!   index from above), after the timed runs, after the baseline (the
//!   pool of events, hundreds of MB, is the benchmark's own). The `ehr`
//!   section has the growth of the resident set while the directory
//!   (staff, patients, relationships) was built.
//! - `targets`: the (500,000 events/s per core through the full
//!   pipeline, 200 times the naive baseline), met or not.
//!
//! Everything runs on the calling thread, one core. Rates are wall-clock;
//! `*_per_cpu_sec` divide by the process's CPU time over the same span
//! (10 ms resolution), which stays meaningful on a busy machine; the load
//! average is reported before and after.

mod mix;
mod naive;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use caduceus_core::event::{EventId, Payload};
use caduceus_core::{Actor, ActorKind, SecurityEvent, Severity, Status};
use caduceus_detect::ehr::{AccessLine, Analytics, Directory, EhrSettings, Limits, to_event};
use caduceus_detect::pipeline::{Engine, Output};
use caduceus_detect::sigma::{Event, FieldMap, LogSource, RuleSet};
use caduceus_detect::simulate::{SimOptions, simulate};
use serde_json::{Value, json};

use crate::util;
use mix::MixEvent;

/// The SigmaHQ checkout in the shared data beside this repository.
pub const SIGMA_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/sigma/sigma-rules");
/// Its regression events.
pub const REGRESSION_DIR: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/sigma/sigma-rules/regression_data");

/// The aims: events per second per core through the full corpus,
/// and the lead over the naive baseline.
pub const TARGET_EVENTS_PER_SEC: f64 = 500_000.0;
pub const TARGET_SPEEDUP: f64 = 200.0;

/// Seed of the simulated hospital.
const EHR_SEED: u64 = 6;

/// Failure messages kept in the report.
const ERRORS_SHOWN: usize = 20;
/// Rules named among those firing on benign events.
const TOP_RULES: usize = 8;

#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    /// Rule directories; empty: every `rules*` directory of `SIGMA_DIR`.
    pub rules: Vec<PathBuf>,
    pub regression: PathBuf,
    /// Distinct events generated.
    pub pool: usize,
    /// Least time each timed point runs (whole passes over the pool).
    pub point: Duration,
    /// Events the naive baseline evaluates.
    pub naive_sample: usize,
    /// Days of the simulated hospital's access log.
    pub ehr_days: u32,
    pub seed: u64,
}

impl Plan {
    pub fn new(quick: bool) -> Self {
        Self {
            quick,
            rules: Vec::new(),
            regression: PathBuf::from(REGRESSION_DIR),
            pool: if quick { 5_000 } else { 20_000 },
            point: if quick { Duration::from_millis(500) } else { Duration::from_secs(5) },
            naive_sample: if quick { 100 } else { 500 },
            ehr_days: if quick { 3 } else { 28 },
            seed: 0x00ca_d0ce,
        }
    }

    /// The rule directories this plan loads.
    pub fn rule_dirs(&self) -> anyhow::Result<Vec<PathBuf>> {
        if !self.rules.is_empty() {
            return Ok(self.rules.clone());
        }
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(SIGMA_DIR).with_context(|| format!("listing {SIGMA_DIR}"))? {
            let path = entry?.path();
            if path.is_dir() && path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("rules")) {
                dirs.push(path);
            }
        }
        dirs.sort();
        if dirs.is_empty() {
            bail!("no rules* directories under {SIGMA_DIR}");
        }
        Ok(dirs)
    }
}

/// One timed point over the pool.
#[derive(Debug, Clone, Default)]
struct Point {
    events: u64,
    passes: u64,
    seconds: f64,
    cpu_seconds: Option<f64>,
    /// Rule matches (engine only) or findings (pipeline).
    matches: u64,
    /// Events with at least one match, over one pass.
    matched_events: u64,
    /// Regression events with at least one match, over one pass.
    malicious_matched: u64,
}

impl Point {
    fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.seconds.max(f64::MIN_POSITIVE)
    }

    fn events_per_cpu_sec(&self) -> Option<f64> {
        self.cpu_seconds.filter(|c| *c > 0.0).map(|c| self.events as f64 / c)
    }

    fn json(&self, matches_key: &str) -> Value {
        json!({
            "events": self.events,
            "passes": self.passes,
            "seconds": util::round(self.seconds, 3),
            "events_per_sec": util::round(self.events_per_sec(), 0),
            "events_per_cpu_sec": self.events_per_cpu_sec().map(|v| util::round(v, 0)),
            "ns_per_event": util::round(self.seconds * 1e9 / self.events.max(1) as f64, 1),
            matches_key: self.matches,
            format!("{matches_key}_per_sec"): util::round(self.matches as f64 / self.seconds.max(f64::MIN_POSITIVE), 0),
            "matched_events_per_pass": self.matched_events,
            "malicious_matched_per_pass": self.malicious_matched,
        })
    }
}

/// Run passes over `count` items until `point` has passed; `pass` returns
/// the matches of one pass.
fn timed(point: Duration, count: usize, mut pass: impl FnMut() -> u64) -> Point {
    let cpu = util::process_cpu();
    let started = Instant::now();
    let mut out = Point::default();
    loop {
        out.matches += pass();
        out.passes += 1;
        out.events += count as u64;
        if started.elapsed() >= point {
            break;
        }
    }
    out.seconds = started.elapsed().as_secs_f64();
    out.cpu_seconds = util::process_cpu().zip(cpu).and_then(|(a, b)| a.checked_sub(b)).map(|d| d.as_secs_f64());
    out
}

/// The normalised event our engine sees when it reads the record itself.
fn normalise(event: &MixEvent) -> anyhow::Result<Event> {
    if event.is_evtx() {
        return Event::from_evtx_json(&event.body).context("a generated Windows event did not normalise");
    }
    let source = &event.source;
    let logsource = LogSource {
        product: Some(source.product.to_owned()),
        service: source.service.map(str::to_owned),
        category: source.categories.first().map(|c| (*c).to_owned()),
    };
    Ok(Event::from_json(logsource, &event.body))
}

/// The event as the spine delivers it: a `LogRecord` with the shipper's
/// log source and the record's fields as they came.
fn spine_event(event: &MixEvent) -> anyhow::Result<SecurityEvent> {
    let source = &event.source;
    let fields = event.body.as_object().cloned().context("a generated event is not a JSON object")?;
    let host = event.flat_fields().get("Computer").and_then(Value::as_str).unwrap_or("unknown-host").to_owned();
    let message = format!("{} record from {host}", source.product);
    let payload = Payload::LogRecord {
        product: Some(source.product.to_owned()),
        service: source.service.map(str::to_owned),
        category: source.categories.first().map(|c| (*c).to_owned()),
        fields,
    };
    let actor = Actor { kind: ActorKind::Device, uid: host };
    Ok(SecurityEvent::new(
        EventId::new(event.time),
        event.time,
        Severity::Informational,
        Status::Success,
        actor,
        None,
        message,
        payload,
    )?)
}

/// The whole run; the report as one JSON object.
pub fn run(plan: &Plan) -> anyhow::Result<Value> {
    let started = Instant::now();
    let load_before = util::load_average();
    let cores = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let rss_start = util::memory_kib("VmRSS");

    // Rules.
    let dirs = plan.rule_dirs()?;
    util::progress(format!("loading Sigma rules from {} directories", dirs.len()));
    let load_started = Instant::now();
    // As the server does: the built-in rules first, then the corpus.
    let mut rules = RuleSet::new();
    let builtin_errors = caduceus_detect::builtin::add_to(&mut rules);
    let builtin = rules.len();
    let report = rules.add_dirs(&dirs);
    let index = rules.prepare();
    let rules = Arc::new(rules);
    let load_s = load_started.elapsed().as_secs_f64();
    let rss_rules = util::memory_kib("VmRSS");
    let hwm_rules = util::memory_kib("VmHWM");
    let correlations = rules.correlations().len();
    util::progress(format!(
        "{} rules loaded, {} failed, {correlations} correlations, in {load_s:.2} s",
        report.loaded,
        report.errors.len()
    ));
    if report.loaded == 0 {
        bail!("no rule loaded from {dirs:?}");
    }
    let errors: Vec<String> = report.errors.iter().take(ERRORS_SHOWN).map(|e| short_error(&e.to_string())).collect();

    // The record-access analytics, first, while the resident set has not
    // yet grown and shrunk (their memory is read from its growth).
    let field_map = FieldMap::default();
    let ehr = ehr_section(plan, &rules, &field_map)?;

    // Events.
    let regression = mix::load_regression(&plan.regression)?;
    let pool = mix::generate(plan.pool, plan.seed, &regression)?;
    let normalised: Vec<Event> = pool.iter().map(normalise).collect::<anyhow::Result<_>>()?;
    let spine: Vec<SecurityEvent> = pool.iter().map(spine_event).collect::<anyhow::Result<_>>()?;
    let mut mix_counts = BTreeMap::new();
    for event in &pool {
        *mix_counts.entry(event.kind.name()).or_insert(0usize) += 1;
    }
    let malicious = pool.iter().filter(|e| e.malicious()).count();
    util::progress(format!("{} events generated ({malicious} malicious), normalised", pool.len()));

    let (disagreeing, only_one_way) = agreement(&rules, &spine, &normalised, &field_map);
    let mut scratch = Vec::new();

    // Engine only, after an untimed pass that also says what fires.
    let fired = fired(&rules, &normalised, &pool);
    let mut engine_only = timed(plan.point, normalised.len(), || {
        let mut matches = 0u64;
        for event in &normalised {
            scratch.clear();
            rules.matches(std::hint::black_box(event), &mut scratch);
            matches += scratch.len() as u64;
        }
        matches
    });
    engine_only.matched_events = fired.events;
    engine_only.malicious_matched = fired.malicious;
    util::progress(format!(
        "engine only: {:.0} events/s ({:.0} per CPU-second), {} matches",
        engine_only.events_per_sec(),
        engine_only.events_per_cpu_sec().unwrap_or(0.0),
        engine_only.matches
    ));

    // Where a pipeline event's time goes: each step alone, half a point
    // each, as CPU nanoseconds per event.
    let half = plan.point / 2;
    let spine_normalise = timed(half, spine.len(), || {
        let mut fields = 0u64;
        for record in &spine {
            fields += Event::from_security_event(std::hint::black_box(record), &field_map).len() as u64;
        }
        fields
    });
    let direct_normalise = timed(half, pool.len(), || {
        let mut fields = 0u64;
        for event in &pool {
            fields += normalise(std::hint::black_box(event)).map(|e| e.len() as u64).unwrap_or_default();
        }
        fields
    });
    let mean_fields = |p: &Point| util::round(p.matches as f64 / p.events.max(1) as f64, 1);
    let per_event_ns = |p: &Point| p.cpu_seconds.map(|c| util::round(c * 1e9 / p.events.max(1) as f64, 0));
    let breakdown = json!({
        "from_security_event_cpu_ns": per_event_ns(&spine_normalise),
        "from_security_event_fields": mean_fields(&spine_normalise),
        "direct_normalise_cpu_ns": per_event_ns(&direct_normalise),
        "direct_normalise_fields": mean_fields(&direct_normalise),
        "matches_cpu_ns": per_event_ns(&engine_only),
    });

    // Our matches on the naive sample, for comparison.
    let sample = plan.naive_sample.min(pool.len());
    let ours_on_sample: u64 = normalised
        .iter()
        .take(sample)
        .map(|event| {
            scratch.clear();
            rules.matches(event, &mut scratch);
            scratch.len() as u64
        })
        .sum();

    // The full pipeline: the detection stage's engine, one spine event at
    // a time; at the end of each pass time advances to its last event, as
    // the stage does on its tick (correlation windows close).
    let mut engine = Engine::new(Arc::clone(&rules), None, field_map.clone());
    let mut output = Output::default();
    let last_time = spine.last().map(SecurityEvent::time);
    let mut pipeline_pass = |output: &mut Output| -> (u64, u64, u64) {
        let (mut total, mut events, mut malicious) = (0u64, 0u64, 0u64);
        for ((seq, record), mixed) in (0u64..).zip(&spine).zip(&pool) {
            output.clear();
            engine.process(seq, std::hint::black_box(record), output);
            total += output.findings.len() as u64;
            if !output.findings.is_empty() {
                events += 1;
                malicious += u64::from(mixed.malicious());
            }
        }
        if let Some(now) = last_time {
            output.clear();
            engine.advance(now, output);
            total += output.findings.len() as u64;
        }
        (total, events, malicious)
    };
    let (_, matched_events, malicious_matched) = pipeline_pass(&mut output);
    let mut pipeline = timed(plan.point, spine.len(), || pipeline_pass(&mut output).0);
    pipeline.matched_events = matched_events;
    pipeline.malicious_matched = malicious_matched;
    util::progress(format!(
        "pipeline: {:.0} events/s ({:.0} per CPU-second), {} findings",
        pipeline.events_per_sec(),
        pipeline.events_per_cpu_sec().unwrap_or(0.0),
        pipeline.matches
    ));
    let rss_run = util::memory_kib("VmRSS");
    let hwm_run = util::memory_kib("VmHWM");
    let load_after_ours = util::load_average();
    drop(engine);

    // The naive baseline.
    let files = naive::rule_files(&dirs)?;
    let naive_rules = naive::load(&files)?;
    util::progress(format!(
        "sigma-rust parsed {} of {} rule files ({} failed) in {:.2} s",
        naive_rules.rules.len(),
        naive_rules.files,
        naive_rules.failed,
        naive_rules.load_s
    ));
    let naive_events: Vec<(sigma_rust::Event, &mix::Source)> =
        pool.iter().take(sample).map(|e| Ok((naive::event(e)?, &e.source))).collect::<anyhow::Result<_>>()?;
    let unfiltered = naive::run(&naive_rules.rules, &naive_events, false);
    let filtered = naive::run(&naive_rules.rules, &naive_events, true);
    util::progress(format!(
        "sigma-rust: {:.0} events/s, {:.0} rule checks/s; with a log-source filter {:.0} events/s",
        unfiltered.events_per_sec(),
        unfiltered.rule_checks_per_sec(),
        filtered.events_per_sec()
    ));
    let hwm_naive = util::memory_kib("VmHWM");
    drop(naive_events);
    let naive_loaded = naive_rules.rules.len();
    drop(naive_rules.rules);

    let speedup = |ours: f64, theirs: f64| if theirs > 0.0 { util::round(ours / theirs, 1) } else { 0.0 };
    let naive_point = |p: &naive::NaivePoint| {
        json!({
            "events_per_sec": util::round(p.events_per_sec(), 1),
            "events_per_cpu_sec": p.events_per_cpu_sec().map(|v| util::round(v, 1)),
            "rule_checks": p.rule_checks,
            "rule_checks_per_sec": util::round(p.rule_checks_per_sec(), 0),
            "rules_per_event": util::round(p.rule_checks as f64 / p.events.max(1) as f64, 1),
            "seconds": util::round(p.seconds, 3),
            "matches": p.matches,
            "median_rule_check_ns": util::round(p.median_rule_check_ns, 0),
            "slowest_rules": p.slowest.iter().map(|(title, share)| json!({"title": title, "time_share": util::round(*share, 3)})).collect::<Vec<_>>(),
        })
    };
    let mut naive_json = naive_point(&unfiltered);
    if let Some(map) = naive_json.as_object_mut() {
        map.insert("rules_loaded".into(), json!(naive_loaded));
        map.insert("rule_files".into(), json!(naive_rules.files));
        map.insert("rules_failed".into(), json!(naive_rules.failed));
        map.insert("load_s".into(), json!(util::round(naive_rules.load_s, 2)));
        map.insert("sample_events".into(), json!(sample));
        map.insert("ours_matches_on_sample".into(), json!(ours_on_sample));
        map.insert("logsource_filtering".into(), json!(false));
        map.insert(
            "note".into(),
            json!("sigma-rust has no log-source filtering: every parsed rule is evaluated on every event, Windows rules on Linux records included; with_logsource_filter adds the filter a caller would write"),
        );
        map.insert("with_logsource_filter".into(), naive_point(&filtered));
    }

    Ok(json!({
        "benchmark": "detect",
        "quick": plan.quick,
        "point_s": plan.point.as_secs_f64(),
        "machine": {"cores": cores, "threads_used": 1, "os": std::env::consts::OS, "arch": std::env::consts::ARCH},
        "load_average": {"before": load_before, "after_ours": load_after_ours, "after": util::load_average()},
        "rules": {
            "dirs": dirs.iter().map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()).collect::<Vec<_>>(),
            "loaded": report.loaded,
            "failed": report.errors.len(),
            "builtin_loaded": builtin,
            "builtin_failed": builtin_errors.len(),
            "correlations": correlations,
            "load_s": util::round(load_s, 2),
            "index": {
                "logsource_buckets": index.buckets,
                "indexed_rules": index.indexed_rules,
                "always_evaluated_rules": index.always_rules,
                "literals": index.literals,
            },
            "errors_sample": errors,
        },
        "events": {
            "pool": pool.len(),
            "seed": plan.seed,
            "malicious": malicious,
            "malicious_fraction": util::round(malicious as f64 / pool.len().max(1) as f64, 4),
            "regression_events": regression.len(),
            "mix": mix_counts,
            "spine_and_direct_normalisation_disagree": disagreeing,
            "rules_matched_one_way_only": only_one_way,
            "rules_firing_on_benign_events": fired.benign_top,
        },
        "engine_only": engine_only.json("matches"),
        "pipeline": pipeline.json("findings"),
        "breakdown": breakdown,
        "naive_sigma_rust": naive_json,
        "speedup": {
            "pipeline": speedup(pipeline.events_per_sec(), unfiltered.events_per_sec()),
            "engine_only": speedup(engine_only.events_per_sec(), unfiltered.events_per_sec()),
            "pipeline_vs_logsource_filtered": speedup(pipeline.events_per_sec(), filtered.events_per_sec()),
            "pipeline_per_cpu_sec": unfiltered.events_per_cpu_sec().zip(pipeline.events_per_cpu_sec()).map(|(n, p)| speedup(p, n)),
        },
        "ehr": ehr,
        "memory": {
            "rss_kib_start": rss_start,
            "rss_kib_after_rules": rss_rules,
            "rules_rss_kib": delta_kib(rss_rules, rss_start),
            "hwm_kib_after_rules": hwm_rules,
            "rss_kib_after_run": rss_run,
            "hwm_kib_after_run": hwm_run,
            "hwm_kib_after_naive": hwm_naive,
        },
        "targets": {
            "events_per_sec": {
                "target": TARGET_EVENTS_PER_SEC,
                "measured": util::round(pipeline.events_per_sec(), 0),
                "met": pipeline.events_per_sec() >= TARGET_EVENTS_PER_SEC,
                "per_cpu_sec": pipeline.events_per_cpu_sec().map(|v| util::round(v, 0)),
            },
            "speedup": {
                "target": TARGET_SPEEDUP,
                "measured": speedup(pipeline.events_per_sec(), unfiltered.events_per_sec()),
                "met": pipeline.events_per_sec() >= TARGET_SPEEDUP * unfiltered.events_per_sec(),
            },
        },
        "total_s": util::round(started.elapsed().as_secs_f64(), 1),
    }))
}

/// Does the spine path see what the engine sees? Per event, the rules
/// matched after `from_security_event` against those matched on the record
/// read directly: the events that differ, and each rule matched one way
/// only with its count.
fn agreement(
    rules: &RuleSet,
    spine: &[SecurityEvent],
    normalised: &[Event],
    field_map: &FieldMap,
) -> (usize, BTreeMap<String, u64>) {
    let (mut through_spine, mut direct) = (Vec::new(), Vec::new());
    let mut disagreeing = 0;
    let mut one_way = BTreeMap::new();
    for (record, event) in spine.iter().zip(normalised) {
        rules.matches(&Event::from_security_event(record, field_map), &mut through_spine);
        rules.matches(event, &mut direct);
        if through_spine == direct {
            continue;
        }
        disagreeing += 1;
        for (list, other, way) in [(&through_spine, &direct, "spine_only"), (&direct, &through_spine, "direct_only")] {
            for index in list.iter().filter(|i| !other.contains(i)) {
                let title = rules.rule_at(*index).map(|r| r.title.as_str()).unwrap_or_default();
                *one_way.entry(format!("{way}: {title}")).or_insert(0) += 1;
            }
        }
    }
    (disagreeing, one_way)
}

/// What one pass over the pool fires.
struct Fired {
    /// Events with at least one match.
    events: u64,
    /// Regression (malicious) events with at least one match.
    malicious: u64,
    /// The rules firing on the most benign events: the mix's false
    /// positives, to judge the mix (and the rules) by.
    benign_top: Vec<Value>,
}

fn fired(rules: &RuleSet, normalised: &[Event], pool: &[MixEvent]) -> Fired {
    let mut out = Fired { events: 0, malicious: 0, benign_top: Vec::new() };
    let mut benign: HashMap<usize, u64> = HashMap::new();
    let mut matched = Vec::new();
    for (event, mixed) in normalised.iter().zip(pool) {
        rules.matches(event, &mut matched);
        if matched.is_empty() {
            continue;
        }
        out.events += 1;
        if mixed.malicious() {
            out.malicious += 1;
        } else {
            for &index in &matched {
                *benign.entry(index).or_default() += 1;
            }
        }
    }
    let mut top: Vec<(u64, usize)> = benign.into_iter().map(|(index, n)| (n, index)).collect();
    top.sort_unstable_by(|a, b| b.cmp(a));
    out.benign_top = top
        .iter()
        .take(TOP_RULES)
        .filter_map(|(n, index)| {
            let rule = rules.rule_at(*index)?;
            Some(json!({"title": rule.title, "level": rule.level, "events": n}))
        })
        .collect();
    out
}

/// A rule error with the corpus path shortened to what follows `rules`.
fn short_error(message: &str) -> String {
    match message.find("/rules") {
        Some(at) => message.get(at + 1..).unwrap_or(message).to_owned(),
        None => message.to_owned(),
    }
}

/// The simulated hospital the analytics are timed on (the defaults of
/// `caduceus simulate ehr-access`: 400 staff, 20,000 patients, 0.1%
/// snooping), over fewer days in a quick run.
fn ehr_options(plan: &Plan) -> SimOptions {
    SimOptions { seed: EHR_SEED, days: plan.ehr_days, ..SimOptions::default() }
}

/// Record-access analytics events per second: a simulated access log,
/// written and read back as `caduceus detect evaluate` does (directory and
/// accesses only, never the labels), its lines turned into the vault's
/// record-access events untimed, then fed in time order, one pass, through
/// the analytics alone and through the whole engine (the SigmaHQ corpus
/// and the built-in rules loaded, the analytics inside).
fn ehr_section(plan: &Plan, rules: &Arc<RuleSet>, field_map: &FieldMap) -> anyhow::Result<Value> {
    let options = ehr_options(plan);
    let started = Instant::now();
    let simulated = simulate(&options)?;
    let simulate_s = started.elapsed().as_secs_f64();
    let dir = util::scratch_dir("detect-ehr")?;
    simulated.write(dir.path())?;
    let rss_before_directory = util::memory_kib("VmRSS");
    let directory = Arc::new(Directory::load_dir(dir.path(), &Limits::default(), None)?);
    let rss_directory = util::memory_kib("VmRSS");
    let mut lines: Vec<&AccessLine> = simulated.accesses.iter().collect();
    lines.sort_by_key(|line| line.time);
    let events: Vec<SecurityEvent> = lines.into_iter().map(to_event).collect::<Result<_, _>>()?;
    util::progress(format!(
        "simulated {} record accesses over {} days in {simulate_s:.1} s",
        events.len(),
        options.days
    ));

    let mut analytics = Analytics::new(Arc::clone(&directory), EhrSettings::default());
    let (mut assessments, mut alerts) = (0u64, 0u64);
    let cpu = util::process_cpu();
    let timer = Instant::now();
    for (seq, event) in (1u64..).zip(&events) {
        for batch in [analytics.advance(event.time()), analytics.observe(seq, std::hint::black_box(event))] {
            assessments += batch.len() as u64;
            alerts += batch.iter().filter(|a| a.alert).count() as u64;
        }
    }
    let flushed = analytics.flush();
    assessments += flushed.len() as u64;
    alerts += flushed.iter().filter(|a| a.alert).count() as u64;
    let alone = finish_point(events.len(), timer, cpu);
    let users = analytics.users();
    drop(analytics);

    let mut engine =
        Engine::new(Arc::clone(rules), Some(Analytics::new(directory, EhrSettings::default())), field_map.clone());
    let mut output = Output::default();
    let mut findings = 0u64;
    let cpu = util::process_cpu();
    let timer = Instant::now();
    for (seq, event) in (1u64..).zip(&events) {
        output.clear();
        engine.advance(event.time(), &mut output);
        engine.process(seq, std::hint::black_box(event), &mut output);
        findings += output.findings.len() as u64;
    }
    output.clear();
    engine.advance(caduceus_core::Timestamp(i64::MAX), &mut output);
    findings += output.findings.len() as u64;
    let through_engine = finish_point(events.len(), timer, cpu);
    util::progress(format!(
        "record-access analytics: {:.0} events/s alone, {:.0} through the engine",
        alone.events_per_sec(),
        through_engine.events_per_sec()
    ));
    let point = |p: &Point| {
        json!({
            "events_per_sec": util::round(p.events_per_sec(), 0),
            "events_per_cpu_sec": p.events_per_cpu_sec().map(|v| util::round(v, 0)),
            "seconds": util::round(p.seconds, 3),
        })
    };
    Ok(json!({
        "seed": options.seed,
        "days": options.days,
        "staff": options.staff,
        "patients": options.patients,
        "snoop_rate": options.snoop_rate,
        "accesses": events.len(),
        "simulate_s": util::round(simulate_s, 2),
        "analytics": point(&alone),
        "assessments": assessments,
        "alerts": alerts,
        "engine": point(&through_engine),
        "engine_findings": findings,
        "directory_rss_kib": delta_kib(rss_directory, rss_before_directory),
        "users_with_state": users,
    }))
}

/// Growth of the resident set between two readings, KiB: an upper bound on
/// what was built in between (the allocator keeps what was freed).
fn delta_kib(after: Option<u64>, before: Option<u64>) -> Option<u64> {
    after.zip(before).map(|(a, b)| a.saturating_sub(b))
}

/// A single pass of `events` started at `timer`, CPU time since `cpu`.
fn finish_point(events: usize, timer: Instant, cpu: Option<Duration>) -> Point {
    Point {
        events: events as u64,
        passes: 1,
        seconds: timer.elapsed().as_secs_f64(),
        cpu_seconds: util::process_cpu().zip(cpu).and_then(|(a, b)| a.checked_sub(b)).map(|d| d.as_secs_f64()),
        ..Point::default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    /// A tiny run over two small rule directories: the command works end
    /// to end and its report has every section.
    #[test]
    fn a_tiny_run_reports_every_section() {
        let plan = Plan {
            quick: true,
            rules: vec![
                PathBuf::from(SIGMA_DIR).join("rules/linux"),
                PathBuf::from(SIGMA_DIR).join("rules/windows/registry"),
            ],
            regression: PathBuf::from(REGRESSION_DIR),
            pool: 600,
            point: Duration::from_millis(1),
            naive_sample: 20,
            ehr_days: 1,
            seed: 1,
        };
        let report = run(&plan).unwrap();
        let text = serde_json::to_string_pretty(&report).unwrap();
        let report: Value = serde_json::from_str(&text).unwrap();
        for key in [
            "rules",
            "events",
            "pipeline",
            "engine_only",
            "naive_sigma_rust",
            "speedup",
            "ehr",
            "memory",
            "load_average",
        ] {
            assert!(report.get(key).is_some(), "{key} missing from {text}");
        }
        assert!(report["rules"]["loaded"].as_u64().unwrap() > 100, "{}", report["rules"]);
        assert!(report["rules"]["failed"].is_u64());
        assert_eq!(report["events"]["pool"], 600);
        assert_eq!(report["events"]["malicious"], 9);
        for section in ["pipeline", "engine_only"] {
            assert!(report[section]["events_per_sec"].as_f64().unwrap() > 0.0, "{}", report[section]);
            assert!(report[section]["events"].as_u64().unwrap() >= 600);
        }
        let naive = &report["naive_sigma_rust"];
        assert!(naive["rules_loaded"].as_u64().unwrap() > 100, "{naive}");
        assert_eq!(naive["sample_events"], 20);
        assert!(naive["events_per_sec"].as_f64().unwrap() > 0.0);
        assert!(naive["rule_checks_per_sec"].as_f64().unwrap() > 0.0);
        assert!(
            naive["with_logsource_filter"]["rule_checks"].as_u64().unwrap() < naive["rule_checks"].as_u64().unwrap(),
            "the filter skips rules"
        );
        assert!(report["speedup"]["pipeline"].as_f64().unwrap() > 0.0);
        let ehr = &report["ehr"];
        assert!(ehr["accesses"].as_u64().unwrap() > 1000, "{ehr}");
        assert!(ehr["assessments"].as_u64().unwrap() > 0, "{ehr}");
        assert!(ehr["analytics"]["events_per_sec"].as_f64().unwrap() > 0.0, "{ehr}");
        assert!(ehr["engine"]["events_per_sec"].as_f64().unwrap() > 0.0, "{ehr}");
        if cfg!(target_os = "linux") {
            assert!(report["memory"]["hwm_kib_after_run"].as_u64().unwrap() > 0);
        }
    }
}
