//! Measure training time, test-split quality and scoring speed of the gbt and online models on
//! datasets, optionally beside the Python peers (scikit-learn RandomForest, River
//! HalfSpaceTrees) on the same split.
//!
//! ```text
//! cargo run --release -p caduceus-ml --example measure -- \
//!     [--python /var/tmp/ml-venv/bin/python] [--online] [--split-dir DIR] DATASET...
//! ```
//! Prints one JSON object per dataset and model. `--split-dir` keeps the split files written
//! for the peers (default: a temporary directory).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use caduceus_ml::dataset::{Dataset, LoadOptions};
use caduceus_ml::model::{self, ModelKind, TrainOptions};
use caduceus_ml::split::{self, SplitSpec};

mod common;
use common::cpu_seconds;

fn main() -> Result<(), Box<dyn Error>> {
    let mut python: Option<String> = None;
    let mut online = false;
    let mut split_dir: Option<PathBuf> = None;
    let mut datasets = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--python" => python = args.next(),
            "--online" => online = true,
            "--split-dir" => split_dir = args.next().map(PathBuf::from),
            _ => datasets.push(PathBuf::from(a)),
        }
    }
    let tmp = tempfile::tempdir()?;
    let split_dir = split_dir.unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&split_dir)?;
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/peers.py");
    for (i, path) in datasets.iter().enumerate() {
        let opts = LoadOptions::default();
        let t = Instant::now();
        let ds = Dataset::load(path, &opts)?;
        let load_s = t.elapsed().as_secs_f64();
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let split_file = split_dir.join(format!("split-{i}-{name}.json"));
        split::write_split_file(&split_file, &ds, &SplitSpec::default(), &opts.normal_values)?;
        let kinds: &[ModelKind] = if online { &[ModelKind::Gbt, ModelKind::Online] } else { &[ModelKind::Gbt] };
        for &kind in kinds {
            let t = Instant::now();
            let (m, _val) = model::train(&ds, kind, &TrainOptions::default())?;
            let train_s = t.elapsed().as_secs_f64();
            let report = model::evaluate(&m, &ds)?;
            // Scoring speed, one core: every row of the dataset in the model's feature order.
            let rows: Vec<f32> = ds.values.clone();
            let n = ds.rows();
            let reps = (2_000_000 / n.max(1)).max(1);
            // Rows per CPU-second of this thread.
            let t = Instant::now();
            let c0 = cpu_seconds(&t);
            let mut sink = 0.0f32;
            for _ in 0..reps {
                for s in m.score_batch(&rows)? {
                    sink += s;
                }
            }
            let batch_rps = (n * reps) as f64 / (cpu_seconds(&t) - c0);
            let t = Instant::now();
            let c0 = cpu_seconds(&t);
            for _ in 0..reps {
                for r in rows.chunks_exact(ds.dims()) {
                    sink += m.score_row(r);
                }
            }
            let row_rps = (n * reps) as f64 / (cpu_seconds(&t) - c0);
            let trees = m.gbt().map(|g| (g.trees(), g.nodes()));
            let out = serde_json::json!({
                "dataset": name,
                "rows": n,
                "features": ds.dims(),
                "model": kind.as_str(),
                "load_seconds": load_s,
                "train_seconds": train_s,
                "trees": trees.map(|t| t.0),
                "nodes": trees.map(|t| t.1),
                "test": report,
                "score_rows_per_second_batch": batch_rps.round(),
                "score_rows_per_second_single": row_rps.round(),
                "checksum": sink,
            });
            println!("{out}");
        }
        if let Some(py) = &python {
            let models: &[&str] = if online { &["rf", "river-hst"] } else { &["rf"] };
            for model in models {
                let out = Command::new(py)
                    .arg(&peers)
                    .arg("--dataset")
                    .arg(path)
                    .arg("--split-file")
                    .arg(&split_file)
                    .arg("--model")
                    .arg(model)
                    .output()?;
                let text = String::from_utf8_lossy(&out.stdout);
                if out.status.success() {
                    println!("{{\"dataset\":{:?},\"peer\":{}}}", name, text.trim());
                } else {
                    eprintln!("peer {model} failed on {name}: {}", String::from_utf8_lossy(&out.stderr));
                }
            }
        }
    }
    Ok(())
}
