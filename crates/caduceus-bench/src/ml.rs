//! `caduceus-bench ml`: the flow models and the ransomware sensor against
//! the targets of issue 7, with the peers measured in the same run.
//!
//! Detection quality, per data set (UNSW-NB15, the CIC-IDS2017 sample, each
//! TON_IoT device file): the rows are split once by `caduceus_ml::split`
//! (stratified by label, seed 42, 30 % test), the split is written to a file
//! and both sides read it, so every model learns from the same training
//! rows and is scored on the same test rows; fitting never sees a test row.
//! - ours: `gbt` (supervised) and `online` (unsupervised; labels unused),
//!   trained with `caduceus_ml::train` and scored with `caduceus_ml::evaluate`
//!   on the test split;
//! - peers, in a virtualenv the bench makes (`/var/tmp/caduceus-bench-venv`,
//!   pinned below): scikit-learn `RandomForestClassifier(n_estimators=100)`
//!   and River `HalfSpaceTrees` after `MinMaxScaler`
//!   (`crates/caduceus-ml/python/peers.py` says exactly how).
//! - the two online detectors once more with seeds 42, 1, 2, 3 and 4 each,
//!   compared by their mean ROC AUC: one seed's AUC wanders by several
//!   hundredths where the data carry little signal.
//!
//! Cross-network: the UNSW-NB15 and CIC-IDS2017 rows are both read as flows
//! (`caduceus_net::flowcsv`), reduced to the features both describe, and a
//! model trained on one is scored on all rows of the other — reported as it
//! comes out, however poor.
//!
//! Speed: rows scored per second on one core for each model (`gbt`,
//! `online`, and an ONNX export of the scikit-learn forest through tract),
//! twice: in batches of 512 rows, as the server scores the flows of one
//! read from the spine (`score_flows`), and one row at a time.
//!
//! Ransomware: `caduceus_sensor::measure_style_trials` per encryption style
//! (files lost before the alert stops the simulator: median and worst),
//! with and without canaries, and every benign workload (false alarms).

// The report is built by indexing `serde_json::Value` objects by key, which
// only panics on a non-object; every value indexed here is a `json!({..})`.
#![allow(clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use caduceus_ml::{Dataset, LoadOptions, Model, ModelKind, TrainOptions};
use serde_json::{Value, json};

use crate::util::{progress, round, scratch_dir};

/// The peers' virtualenv and its pins.
const VENV: &str = "/var/tmp/caduceus-bench-venv";
/// The pins the tests use too (scikit-learn, skl2onnx, River, ...).
fn requirements() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testing/ml/requirements.txt")
}

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub quick: bool,
    pub trials: usize,
    pub skip_peers: bool,
}

impl Plan {
    pub fn new(quick: bool, skip_peers: bool) -> Self {
        Self { quick, trials: if quick { 3 } else { 7 }, skip_peers }
    }
}

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data").join(rel)
}

/// The data sets: (name, path).
fn datasets(quick: bool) -> Vec<(String, PathBuf)> {
    let mut out = vec![
        ("unsw-nb15".to_owned(), shared("unsw-nb15/UNSW_NB15_training-set.csv")),
        (
            "cic-ids2017-improved-sample".to_owned(),
            shared("cic-ids2017-improved-sample/nids-daten/sampled_CICIDS2017_improved_rnd_5000"),
        ),
    ];
    let devices: &[&str] = if quick {
        &["Fridge"]
    } else {
        &["Fridge", "GPS_Tracker", "Garage_Door", "Modbus", "Motion_Light", "Thermostat"]
    };
    for device in devices {
        out.push((
            format!("ton-iot/{}", device.to_lowercase()),
            shared(&format!("ton-iot/train_test_iot/Train_Test_IoT_{device}.csv")),
        ));
    }
    out
}

/// Make the peers' virtualenv unless it is there with every pin.
fn ensure_venv() -> anyhow::Result<PathBuf> {
    let python = Path::new(VENV).join("bin/python");
    let check = "import sklearn, river, skl2onnx, onnx, pandas, numpy; assert sklearn.__version__ == '1.5.2'";
    let ready = Command::new(&python).args(["-c", check]).output().map(|o| o.status.success()).unwrap_or(false);
    if !ready {
        progress(format!("making the peers' virtualenv in {VENV}"));
        let status = Command::new("python3").args(["-m", "venv", VENV]).status()?;
        if !status.success() {
            bail!("python3 -m venv {VENV} failed");
        }
        let status = Command::new(Path::new(VENV).join("bin/pip"))
            .args(["install", "--quiet", "-r"])
            .arg(requirements())
            .status()?;
        if !status.success() {
            bail!("pip install into {VENV} failed");
        }
    }
    Ok(python)
}

fn peers_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../caduceus-ml/python/peers.py")
}

/// Run one peer on a split; its JSON report.
fn peer(python: &Path, dataset: &Path, split: &Path, model: &str) -> anyhow::Result<Value> {
    peer_seeded(python, dataset, split, model, 42)
}

fn peer_seeded(python: &Path, dataset: &Path, split: &Path, model: &str, seed: u64) -> anyhow::Result<Value> {
    let output = Command::new(python)
        .arg(peers_script())
        .arg("--dataset")
        .arg(dataset)
        .arg("--split-file")
        .arg(split)
        .args(["--model", model, "--jobs", "1", "--seed"])
        .arg(seed.to_string())
        .output()
        .context("running peers.py")?;
    if !output.status.success() {
        bail!("peers.py --model {model} failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text.lines().rev().find(|l| l.trim_start().starts_with('{')).unwrap_or_default();
    serde_json::from_str(line).with_context(|| format!("peers.py printed no JSON: {text}"))
}

fn metrics(report: &caduceus_ml::Report) -> Value {
    let v = serde_json::to_value(report).unwrap_or(Value::Null);
    let pick = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "precision": pick("precision"),
        "recall": pick("recall"),
        "f1": pick("f1"),
        "roc_auc": pick("roc_auc"),
        "confusion_matrix": pick("confusion_matrix"),
        "rows": pick("rows"),
        "split": pick("split"),
    })
}

fn peer_metrics(v: &Value) -> Value {
    let pick = |k: &str| v.get(k).cloned().unwrap_or(Value::Null);
    json!({
        "precision": pick("precision"),
        "recall": pick("recall"),
        "f1": pick("f1"),
        "roc_auc": pick("roc_auc"),
        "confusion_matrix": pick("confusion_matrix"),
        "rows": pick("rows"),
        "train_seconds": pick("train_seconds"),
    })
}

fn num(v: &Value, k: &str) -> Option<f64> {
    v.get(k).and_then(Value::as_f64)
}

/// Timing rounds per speed; the median is reported (this machine's timings
/// wander by 20 % between rounds), the best beside it.
const ROUNDS: usize = 5;

/// Median and best of [`ROUNDS`] rounds of `round`, each taking at least
/// `at_least / ROUNDS` and answering (rows scored, seconds).
fn rounds(
    at_least: Duration,
    mut round: impl FnMut(Duration) -> anyhow::Result<(u64, f64)>,
) -> anyhow::Result<(f64, f64)> {
    let mut rates = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let (n, secs) = round(at_least / ROUNDS as u32)?;
        rates.push(n as f64 / secs.max(1e-9));
    }
    rates.sort_by(f64::total_cmp);
    Ok((rates.get(ROUNDS / 2).copied().unwrap_or(0.0), rates.last().copied().unwrap_or(0.0)))
}

/// Rows scored per second on this thread, one row at a time, for at least
/// `at_least`: (median, best) of [`ROUNDS`].
fn rate(rows: &[&[f32]], at_least: Duration, mut score: impl FnMut(&[f32]) -> f32) -> (f64, f64) {
    let mut sink = 0f32;
    let out = rounds(at_least, |each| {
        let mut n = 0u64;
        let started = Instant::now();
        while started.elapsed() < each {
            for row in rows {
                sink += score(row);
            }
            n += rows.len() as u64;
        }
        Ok((n, started.elapsed().as_secs_f64()))
    });
    std::hint::black_box(sink);
    out.unwrap_or((0.0, 0.0))
}

/// The server's spine read: at most this many flows are scored in one call.
const SERVER_BATCH: usize = 512;

/// Rows scored per second on this thread in batches of [`SERVER_BATCH`]
/// rows, for at least `at_least`: (median, best) of [`ROUNDS`].
fn rate_batched(model: &Model, rows: &[&[f32]], at_least: Duration) -> anyhow::Result<(f64, f64)> {
    let batches: Vec<Vec<f32>> =
        rows.chunks(SERVER_BATCH).map(|b| b.iter().flat_map(|r| r.iter().copied()).collect()).collect();
    let mut sink = 0f32;
    let out = rounds(at_least, |each| {
        let mut n = 0u64;
        let started = Instant::now();
        while started.elapsed() < each {
            for batch in &batches {
                let scores = model.score_batch(batch)?;
                n += scores.len() as u64;
                sink += scores.first().copied().unwrap_or(0.0);
            }
        }
        Ok((n, started.elapsed().as_secs_f64()))
    });
    std::hint::black_box(sink);
    out
}

/// Seeds both online detectors are also measured with (the default, 42, first).
const SEEDS: [u64; 5] = [42, 1, 2, 3, 4];

/// Quality and speed on one data set.
fn one_dataset(plan: &Plan, python: Option<&Path>, name: &str, path: &Path, scratch: &Path) -> anyhow::Result<Value> {
    progress(format!("{name}: loading"));
    let opts = LoadOptions::default();
    let ds = Dataset::load(path, &opts).with_context(|| format!("loading {}", path.display()))?;
    let split_file = scratch.join(format!("{}.split.json", name.replace('/', "_")));
    let train_opts = TrainOptions::default();
    caduceus_ml::split::write_split_file(&split_file, &ds, &train_opts.split, &opts.normal_values)?;
    let mut out = json!({
        "rows": ds.rows(),
        "features": ds.dims(),
        "attacks": ds.attacks(),
    });
    let mut speed = serde_json::Map::new();
    let test_rows: Vec<usize> = caduceus_ml::split::indices(&ds.labels, &train_opts.split).test;
    let rows: Vec<&[f32]> = test_rows.iter().filter_map(|&i| ds.row(i)).take(20_000).collect();
    let point = if plan.quick { Duration::from_millis(500) } else { Duration::from_secs(2) };
    let mut validation = Vec::new();
    for kind in [ModelKind::Gbt, ModelKind::Forest, ModelKind::Online] {
        progress(format!("{name}: training {}", kind.as_str()));
        let started = Instant::now();
        let (model, val) = caduceus_ml::train(&ds, kind, &train_opts)?;
        validation.push(val);
        let train_seconds = started.elapsed().as_secs_f64();
        let report = caduceus_ml::evaluate(&model, &ds)?;
        let mut m = metrics(&report);
        m["train_seconds"] = json!(round(train_seconds, 2));
        out[kind.as_str()] = m;
        let (batched, batched_best) = rate_batched(&model, &rows, point)?;
        let (one, one_best) = rate(&rows, point, |r| model.score_row(r));
        speed.insert(kind.as_str().to_owned(), json!(round(batched, 0)));
        speed.insert(format!("{}_best", kind.as_str()), json!(round(batched_best, 0)));
        speed.insert(format!("{}_one_at_a_time", kind.as_str()), json!(round(one, 0)));
        speed.insert(format!("{}_one_at_a_time_best", kind.as_str()), json!(round(one_best, 0)));
    }
    // `detect train --kind best`: the supervised kind the validation slice prefers.
    if let [gbt_val, forest_val, ..] = validation.as_slice() {
        let chosen = if caduceus_ml::model::prefer_forest(gbt_val, forest_val) { "forest" } else { "gbt" };
        out["best"] = json!({
            "chosen": chosen,
            "by": "F1 on the validation slice of the training rows",
            "gbt_validation_f1": round(gbt_val.f1, 4),
            "forest_validation_f1": round(forest_val.f1, 4),
            "f1": out[chosen]["f1"].clone(),
            "roc_auc": out[chosen]["roc_auc"].clone(),
            "rows_per_s": speed.get(chosen).cloned(),
        });
    }
    if let Some(python) = python {
        for (key, model) in [("sklearn_random_forest", "rf"), ("river_half_space_trees", "river-hst")] {
            progress(format!("{name}: peer {model}"));
            match peer(python, path, &split_file, model) {
                Ok(v) => out[key] = peer_metrics(&v),
                Err(e) => out[key] = json!({ "error": e.to_string() }),
            }
        }
        // Both unsupervised detectors are random forests of random splits: one seed's ROC AUC
        // wanders by several hundredths where the data carry little signal, so they are also
        // compared as the mean over the same five seeds.
        progress(format!("{name}: online detectors over {} seeds", SEEDS.len()));
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for seed in SEEDS {
            let mut opts = train_opts.clone();
            opts.online.seed = seed;
            let (model, _) = caduceus_ml::train(&ds, ModelKind::Online, &opts)?;
            ours.extend(caduceus_ml::evaluate(&model, &ds)?.roc_auc);
            match peer_seeded(python, path, &split_file, "river-hst", seed) {
                Ok(v) => theirs.extend(num(&v, "roc_auc")),
                Err(e) => progress(format!("{name}: river seed {seed}: {e}")),
            }
        }
        let mean = |v: &[f64]| (v.len() == SEEDS.len()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        // Sample standard deviation over the seeds: how far one seed's AUC wanders.
        let sd = |v: &[f64]| {
            mean(v).map(|m| (v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / (v.len().max(2) - 1) as f64).sqrt())
        };
        out["online_seeds"] = json!({
            "seeds": SEEDS,
            "online_roc_auc": ours.iter().map(|a| round(*a, 4)).collect::<Vec<_>>(),
            "river_hst_roc_auc": theirs.iter().map(|a| round(*a, 4)).collect::<Vec<_>>(),
            "online_mean": mean(&ours).map(|m| round(m, 4)),
            "river_hst_mean": mean(&theirs).map(|m| round(m, 4)),
            "online_sd": sd(&ours).map(|m| round(m, 4)),
            "river_hst_sd": sd(&theirs).map(|m| round(m, 4)),
        });
        let gbt_f1 = num(&out["gbt"], "f1");
        let best_f1 = num(&out["best"], "f1");
        let rf_f1 = num(&out["sklearn_random_forest"], "f1");
        let online_auc = num(&out["online"], "roc_auc");
        let hst_auc = num(&out["river_half_space_trees"], "roc_auc");
        out["targets"] = json!({
            "gbt_f1_at_least_random_forest": gbt_f1.zip(rf_f1).map(|(a, b)| a >= b),
            "best_f1_at_least_random_forest": best_f1.zip(rf_f1).map(|(a, b)| a >= b),
            "online_auc_at_least_half_space_trees": online_auc.zip(hst_auc).map(|(a, b)| a >= b),
            "online_mean_auc_at_least_half_space_trees": mean(&ours).zip(mean(&theirs)).map(|(a, b)| a >= b),
        });
    }
    speed.insert("batch_rows".to_owned(), json!(SERVER_BATCH));
    speed.insert("rounds".to_owned(), json!(format!("median of {ROUNDS}; _best: the fastest round")));
    out["scored_rows_per_s_one_core"] = Value::Object(speed);
    Ok(out)
}

/// The features UNSW-NB15 and CIC-IDS2017 rows both describe, by their
/// UNSW names (`caduceus_net::Flow::feature` answers them for either).
const COMMON: [&str; 10] = ["dur", "spkts", "dpkts", "sbytes", "dbytes", "smean", "dmean", "rate", "sload", "dload"];

/// A data set's rows as flows, reduced to the common features, written as
/// CSV with a `label` column.
fn common_csv(path: &Path, out: &Path) -> anyhow::Result<usize> {
    use std::io::Write;
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(path)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "csv"))
            .collect();
        v.sort();
        v
    } else {
        vec![path.to_owned()]
    };
    let mut w = std::io::BufWriter::new(std::fs::File::create(out)?);
    writeln!(w, "{},label", COMMON.join(","))?;
    let mut n = 0;
    for file in files {
        let reader = std::io::BufReader::new(std::fs::File::open(&file)?);
        for row in caduceus_net::flowcsv::FlowCsvReader::new(reader) {
            let Ok(row) = row else { continue };
            let Some(label) = row.label.as_deref() else { continue };
            let attack = !matches!(label.trim().to_ascii_lowercase().as_str(), "0" | "normal" | "benign");
            let cells: Vec<String> = COMMON
                .iter()
                .map(|name| match row.flow.feature(name) {
                    Some(caduceus_net::NetFeature::Num(v)) if v.is_finite() => v.to_string(),
                    _ => String::new(),
                })
                .collect();
            writeln!(w, "{},{}", cells.join(","), u8::from(attack))?;
            n += 1;
        }
    }
    w.flush()?;
    Ok(n)
}

/// Train on one network's flows, score all of the other's.
fn cross_network(scratch: &Path) -> anyhow::Result<Value> {
    let unsw = scratch.join("unsw-common.csv");
    let cic = scratch.join("cic-common.csv");
    let n_unsw = common_csv(&shared("unsw-nb15/UNSW_NB15_training-set.csv"), &unsw)?;
    let n_cic =
        common_csv(&shared("cic-ids2017-improved-sample/nids-daten/sampled_CICIDS2017_improved_rnd_5000"), &cic)?;
    let opts = LoadOptions { label_column: Some("label".into()), ..LoadOptions::default() };
    let a = Dataset::load(&unsw, &opts)?;
    let b = Dataset::load(&cic, &opts)?;
    let mut out = json!({ "features": COMMON, "unsw_rows": n_unsw, "cic_rows": n_cic });
    for (key, train, test) in [("unsw_to_cic", &a, &b), ("cic_to_unsw", &b, &a)] {
        let (model, _) = caduceus_ml::train(train, ModelKind::Gbt, &TrainOptions::default())?;
        let own = caduceus_ml::evaluate(&model, train)?;
        let other = caduceus_ml::evaluate(&model, test)?;
        out[key] = json!({ "own_test_split": metrics(&own), "other_network_all_rows": metrics(&other) });
    }
    Ok(out)
}

/// An ONNX export of a scikit-learn forest, scored through tract.
fn onnx_speed(python: &Path, scratch: &Path, quick: bool) -> anyhow::Result<Value> {
    let model_path = scratch.join("rf.onnx");
    let script = r#"
import sys, numpy as np, pandas as pd
from sklearn.ensemble import RandomForestClassifier
from skl2onnx import to_onnx
df = pd.read_csv(sys.argv[1], encoding="utf-8-sig")
y = (df["label"] != 0).astype(int).values
X = df.drop(columns=["id", "label", "attack_cat", "proto", "service", "state"]).astype(np.float32).values
m = RandomForestClassifier(n_estimators=100, max_depth=12, random_state=0, n_jobs=1).fit(X, y)
onx = to_onnx(m, X[:1], options={id(m): {"zipmap": False}}, target_opset={"": 17, "ai.onnx.ml": 3})
open(sys.argv[2], "wb").write(onx.SerializeToString())
"#;
    let status = Command::new(python)
        .args(["-c", script])
        .arg(shared("unsw-nb15/UNSW_NB15_training-set.csv"))
        .arg(&model_path)
        .status()?;
    if !status.success() {
        bail!("exporting the forest to ONNX failed");
    }
    let model = Model::load(&model_path)?;
    let dims = model.dims();
    let ds = Dataset::load(
        &shared("unsw-nb15/UNSW_NB15_training-set.csv"),
        &LoadOptions {
            drop_columns: Some(["id", "attack_cat", "proto", "service", "state"].map(String::from).to_vec()),
            ..LoadOptions::default()
        },
    )?;
    let rows: Vec<&[f32]> = (0..ds.rows()).filter_map(|i| ds.row(i)).filter(|r| r.len() == dims).take(5000).collect();
    let point = if quick { Duration::from_millis(500) } else { Duration::from_secs(2) };
    let (one_at_a_time, _) = rate(&rows, point, |r| model.score_row(r));
    let (batched, _) = rate_batched(&model, &rows, point)?;
    Ok(json!({
        "model": "scikit-learn RandomForestClassifier(100 trees, depth 12) via skl2onnx, run by tract",
        "rows_per_s_one_at_a_time": round(one_at_a_time, 0),
        "rows_per_s_batches_of_512": round(batched, 0),
        "direct_tree_evaluator": model.onnx().is_some_and(|o| o.direct_trees()),
    }))
}

fn ransomware(plan: &Plan) -> anyhow::Result<Value> {
    use caduceus_sensor::{BenignWorkload, MeasureOptions, Style};
    let mut styles = serde_json::Map::new();
    // The default sensor (open gate on), with and without canaries; then
    // without the gate, where the verdict races the writer.
    for (name, canaries, block) in
        [("without_canaries", false, true), ("with_canaries", true, true), ("without_open_gate", false, false)]
    {
        let mut per = serde_json::Map::new();
        for style in [Style::InPlace, Style::CopyDelete, Style::Rename, Style::Partial, Style::Slow] {
            progress(format!("ransomware: {} ({name})", style.as_str()));
            let opts = MeasureOptions { canaries, block, ..MeasureOptions::default() };
            let s = caduceus_sensor::measure_style_trials(style, &opts, plan.trials)?;
            per.insert(
                style.as_str().to_owned(),
                json!({
                    "trials": s.trials,
                    "detected": s.detected,
                    "median_files_lost": s.median_files_lost,
                    "worst_files_lost": s.worst_files_lost,
                    "median_detection_ms": s.median_detection_ms,
                    "files_per_corpus": opts.corpus_files,
                    "open_gate": s.runs.iter().all(|m| m.gate),
                    "opens_denied": s.runs.iter().map(|m| m.denied_opens).sum::<usize>(),
                }),
            );
        }
        styles.insert(name.to_owned(), Value::Object(per));
    }
    let mut benign = serde_json::Map::new();
    for (canaries, block) in [(false, true), (true, true), (false, false)] {
        for workload in [BenignWorkload::Zip, BenignWorkload::Git, BenignWorkload::Backup, BenignWorkload::Compile] {
            progress(format!("benign: {} (canaries {canaries}, open gate {block})", workload.as_str()));
            let opts = MeasureOptions { canaries, block, ..MeasureOptions::default() };
            let b = caduceus_sensor::measure_benign(workload, &opts)?;
            let suffix = match (canaries, block) {
                (true, _) => "+canaries",
                (false, false) => "-open_gate",
                (false, true) => "",
            };
            benign.insert(
                format!("{}{suffix}", workload.as_str()),
                json!({
                    "false_alarm": b.false_alarm, "suspicious_reports": b.suspicious, "reasons": b.reasons,
                    "elapsed_ms": b.elapsed_ms,
                }),
            );
        }
    }
    Ok(json!({ "styles": styles, "benign": benign }))
}

pub fn run(plan: &Plan) -> anyhow::Result<Value> {
    let scratch = scratch_dir("ml")?;
    let python = if plan.skip_peers { None } else { Some(ensure_venv()?) };
    let mut quality = serde_json::Map::new();
    for (name, path) in datasets(plan.quick) {
        let v = one_dataset(plan, python.as_deref(), &name, &path, scratch.path())?;
        quality.insert(name, v);
    }
    progress("cross-network");
    let cross = cross_network(scratch.path()).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    let onnx = match &python {
        Some(python) => {
            onnx_speed(python, scratch.path(), plan.quick).unwrap_or_else(|e| json!({ "error": e.to_string() }))
        }
        None => Value::Null,
    };
    let ransomware = ransomware(plan)?;
    Ok(json!({
        "quick": plan.quick,
        "machine": { "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) },
        "split": "stratified by label, seed 42, 30 % test (caduceus_ml::split); peers read the same split file",
        "peers_requirements": "testing/ml/requirements.txt",
        "datasets": quality,
        "cross_network": cross,
        "onnx": onnx,
        "targets": {
            "gbt_rows_per_s": 1_000_000,
            "online_rows_per_s": 200_000,
            "ransomware_median_files_lost": 5,
        },
        "ransomware": ransomware,
    }))
}
