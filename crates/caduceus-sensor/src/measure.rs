//! Measurement of the sensor against the simulator: make a temporary
//! corpus, start the sensor on it, run a ransomware style in a thread whose
//! stop flag the sensor's first ransomware verdict sets (emulating a kill
//! response), and count the documents encrypted before that. Also runs the
//! benign workloads and says whether any alert fired. For the lead's bench
//! and the end-to-end tests; never touches anything but its temporary
//! directory.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::report::{Report, Verdict};
use crate::sensor::{FanotifyMode, Sensor, SensorConfig};
use crate::simulate::{self, BenignWorkload, Order, SimOptions, Style};
use crate::{Result, SensorError};

/// Settings of one measurement.
#[derive(Clone, Debug)]
pub struct MeasureOptions {
    /// Documents in the temporary corpus.
    pub corpus_files: usize,
    pub seed: u64,
    pub canaries: bool,
    pub order: Order,
    /// Pause between files of the `slow` style.
    pub slow_interval: Duration,
    pub fanotify: FanotifyMode,
    /// How long to wait for a late verdict after the simulator finished.
    pub grace: Duration,
    /// Where to make the temporary corpus (default: the system's temp dir).
    pub base_dir: Option<PathBuf>,
    /// [`SensorConfig::realtime`] for the sensor thread.
    pub realtime: bool,
    /// [`SensorConfig::block_judged`]: the open gate refuses the simulator
    /// its next open at the verdict.
    pub block: bool,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        Self {
            corpus_files: 60,
            seed: 1,
            canaries: false,
            order: Order::Shuffled,
            slow_interval: Duration::from_millis(300),
            fanotify: FanotifyMode::Auto,
            grace: Duration::from_secs(2),
            base_dir: None,
            realtime: true,
            block: true,
        }
    }
}

/// The outcome of one ransomware run.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    pub style: Style,
    /// Documents (not canaries) the simulator finished before the verdict.
    pub files_lost: usize,
    /// Documents in the corpus.
    pub files_total: usize,
    pub detected: bool,
    /// From the simulator's start to the first ransomware verdict.
    pub detection_ms: Option<u64>,
    /// The verdict's reasons.
    pub reasons: Vec<String>,
    /// Whether the sensor knew the writer's pid.
    pub fanotify: bool,
    /// Whether the sensor's open gate ran.
    pub gate: bool,
    /// Opens the gate refused the simulator.
    pub denied_opens: usize,
}

/// Median and worst over trials of one style.
#[derive(Clone, Debug, PartialEq)]
pub struct StyleSummary {
    pub style: Style,
    pub trials: usize,
    pub detected: usize,
    pub median_files_lost: f64,
    pub worst_files_lost: usize,
    pub median_detection_ms: Option<f64>,
    pub runs: Vec<Measurement>,
}

/// A benign run: whether it raised an alarm.
#[derive(Clone, Debug, PartialEq)]
pub struct BenignMeasurement {
    pub workload: BenignWorkload,
    /// A ransomware verdict fired: a false alarm.
    pub false_alarm: bool,
    /// Suspicious verdicts (a lower-severity alert).
    pub suspicious: usize,
    pub reasons: Vec<String>,
    pub elapsed_ms: u64,
}

struct Shared {
    first_alert: Option<(Instant, Vec<String>)>,
    suspicious: usize,
    reasons: Vec<String>,
}

fn temp_dir(opts: &MeasureOptions) -> Result<tempfile::TempDir> {
    let b = tempfile::Builder::new()
        .prefix("caduceus-ransim-")
        .tempdir_in(opts.base_dir.clone().unwrap_or_else(std::env::temp_dir));
    b.map_err(|e| SensorError::io("creating the measurement directory", e))
}

fn sensor_config(corpus: PathBuf, opts: &MeasureOptions) -> SensorConfig {
    let mut cfg = SensorConfig::new(vec![corpus]);
    cfg.canaries = opts.canaries;
    cfg.fanotify = opts.fanotify;
    cfg.heartbeat = None;
    cfg.realtime = opts.realtime;
    cfg.block_judged = opts.block;
    cfg
}

/// Run `style` once against a fresh corpus with the sensor watching, the
/// first ransomware verdict stopping the simulator.
pub fn measure_style(style: Style, opts: &MeasureOptions) -> Result<Measurement> {
    let dir = temp_dir(opts)?;
    let corpus = dir.path().join("share");
    simulate::make_corpus(&corpus, opts.corpus_files, opts.seed)?;
    let stop = Arc::new(AtomicBool::new(false));
    let shared = Arc::new(Mutex::new(Shared { first_alert: None, suspicious: 0, reasons: Vec::new() }));
    let (flag, seen) = (Arc::clone(&stop), Arc::clone(&shared));
    let handle = Sensor::start(sensor_config(corpus.clone(), opts), move |r: &Report| {
        if r.verdict == Verdict::Ransomware {
            flag.store(true, Ordering::SeqCst);
            if let Ok(mut s) = seen.lock()
                && s.first_alert.is_none()
            {
                s.first_alert = Some((Instant::now(), r.reasons.clone()));
            }
        }
    })?;
    let canaries = handle.canary_paths().to_vec();
    let fanotify = handle.fanotify_active();
    let gate = handle.gate_active();
    let sim_opts = SimOptions { seed: opts.seed, order: opts.order, slow_interval: opts.slow_interval };
    let started = Instant::now();
    let outcome = simulate::simulate_ransomware(&corpus, style, &sim_opts, &stop);
    // A verdict may come just after the last file.
    let deadline = Instant::now() + opts.grace;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        #[allow(clippy::disallowed_methods)] // waiting for the sensor thread; no runtime here
        std::thread::sleep(Duration::from_millis(10));
    }
    handle.stop();
    let outcome = outcome?;
    let first = shared.lock().ok().and_then(|s| s.first_alert.clone());
    let is_canary = |p: &PathBuf| canaries.iter().any(|c| c == p || p.canonicalize().ok().as_ref() == Some(c));
    let files_lost = outcome.done.iter().filter(|p| !is_canary(p)).count();
    Ok(Measurement {
        style,
        files_lost,
        files_total: opts.corpus_files,
        detected: first.is_some(),
        detection_ms: first
            .as_ref()
            .map(|(t, _)| u64::try_from(t.duration_since(started).as_millis()).unwrap_or(u64::MAX)),
        reasons: first.map(|(_, r)| r).unwrap_or_default(),
        fanotify,
        gate,
        denied_opens: outcome.denied,
    })
}

/// `trials` runs of `style`, each with its own corpus and seed.
pub fn measure_style_trials(style: Style, opts: &MeasureOptions, trials: usize) -> Result<StyleSummary> {
    let mut runs = Vec::with_capacity(trials);
    for t in 0..trials {
        let o = MeasureOptions { seed: opts.seed.wrapping_add(t as u64 * 7919), ..opts.clone() };
        runs.push(measure_style(style, &o)?);
    }
    Ok(summarize(style, runs))
}

/// Median and worst of a set of runs (undetected runs count all their files).
pub fn summarize(style: Style, runs: Vec<Measurement>) -> StyleSummary {
    let lost: Vec<f64> = runs.iter().map(|m| m.files_lost as f64).collect();
    let ms: Vec<f64> = runs.iter().filter_map(|m| m.detection_ms.map(|d| d as f64)).collect();
    StyleSummary {
        style,
        trials: runs.len(),
        detected: runs.iter().filter(|m| m.detected).count(),
        median_files_lost: median(lost).unwrap_or(0.0),
        worst_files_lost: runs.iter().map(|m| m.files_lost).max().unwrap_or(0),
        median_detection_ms: median(ms),
        runs,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v.get(mid).copied() } else { Some((v.get(mid - 1)? + v.get(mid)?) / 2.0) }
}

/// Run a benign workload on a fresh corpus with the sensor watching and
/// report whether any alert fired.
pub fn measure_benign(workload: BenignWorkload, opts: &MeasureOptions) -> Result<BenignMeasurement> {
    let dir = temp_dir(opts)?;
    let corpus = dir.path().join("share");
    simulate::make_corpus(&corpus, opts.corpus_files, opts.seed)?;
    let shared = Arc::new(Mutex::new(Shared { first_alert: None, suspicious: 0, reasons: Vec::new() }));
    let seen = Arc::clone(&shared);
    let handle = Sensor::start(sensor_config(corpus.clone(), opts), move |r: &Report| {
        if let Ok(mut s) = seen.lock() {
            match r.verdict {
                Verdict::Ransomware => {
                    if s.first_alert.is_none() {
                        s.first_alert = Some((Instant::now(), r.reasons.clone()));
                    }
                }
                Verdict::Suspicious => s.suspicious += 1,
                Verdict::Heartbeat => return,
            }
            for reason in &r.reasons {
                if !s.reasons.contains(reason) {
                    s.reasons.push(reason.clone());
                }
            }
        }
    })?;
    let started = Instant::now();
    let outcome = simulate::run_benign(&corpus, workload, opts.seed);
    // Let the sensor drain its queue.
    #[allow(clippy::disallowed_methods)] // waiting for the sensor thread; no runtime here
    std::thread::sleep(opts.grace.min(Duration::from_secs(1)));
    handle.stop();
    outcome?;
    let s = shared.lock().map_err(|_| SensorError::Config("measurement state poisoned".into()))?;
    Ok(BenignMeasurement {
        workload,
        false_alarm: s.first_alert.is_some(),
        suspicious: s.suspicious,
        reasons: s.reasons.clone(),
        elapsed_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_summary() {
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let m = |lost, detected| Measurement {
            style: Style::InPlace,
            files_lost: lost,
            files_total: 10,
            detected,
            detection_ms: detected.then_some(5),
            reasons: vec![],
            fanotify: false,
            gate: false,
            denied_opens: 0,
        };
        let s = summarize(Style::InPlace, vec![m(2, true), m(3, true), m(10, false)]);
        assert_eq!((s.median_files_lost, s.worst_files_lost, s.detected), (3.0, 10, 2));
    }
}
