//! Try gbt parameters on one dataset: test-split F1/AUC, trees, training time and scoring
//! speed. For tuning the defaults; `measure` is the report.
//!
//! ```text
//! cargo run --release -p caduceus-ml --example tune -- DATASET [key=value ...]
//! ```
//! Keys are `GbtParams` fields (learning_rate, max_rounds, max_depth, max_leaves, ...) and
//! `refit` (true/false: fit again on all training rows); with `kind=online` the keys are
//! `OnlineParams` fields and `select` (true/false: choose among `online_candidates` on the
//! validation slice), and the online detector is measured instead; with `kind=forest` they are
//! `ForestParams` fields (trees, max_features, min_samples_leaf, max_depth, seed); several
//! settings can be separated by `--` to try them in one run on one loaded dataset.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use caduceus_anomaly::OnlineParams;
use caduceus_ml::dataset::{Dataset, LoadOptions};
use caduceus_ml::forest::ForestParams;
use caduceus_ml::gbt::GbtParams;
use caduceus_ml::model::{self, ModelKind, TrainOptions};

mod common;
use common::cpu_seconds;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or("usage: tune DATASET [key=value ...]")?);
    let ds = Dataset::load(&path, &LoadOptions::default())?;
    let rest: Vec<String> = args.collect();
    for group in rest.split(|a| a == "--") {
        let online = group.iter().any(|kv| kv == "kind=online");
        if online {
            let mut params = serde_json::to_value(OnlineParams::default())?;
            let mut select = TrainOptions::default().select_online;
            for kv in group.iter().filter(|kv| *kv != "kind=online") {
                let (k, v) = kv.split_once('=').ok_or("expected key=value")?;
                if k == "select" {
                    select = serde_json::from_str(v)?;
                    continue;
                }
                params
                    .as_object_mut()
                    .ok_or("params are not an object")?
                    .insert(k.to_owned(), serde_json::from_str(v)?);
            }
            let opts = TrainOptions {
                online: serde_json::from_value(params)?,
                select_online: select,
                ..TrainOptions::default()
            };
            let t = Instant::now();
            let (m, val) = model::train(&ds, ModelKind::Online, &opts)?;
            let train_s = t.elapsed().as_secs_f64();
            let r = model::evaluate(&m, &ds)?;
            println!(
                "{group:?}: validation auc {:.4} | test auc {:.4} f1 {:.4} | train {train_s:.1}s",
                val.roc_auc.unwrap_or(f64::NAN),
                r.roc_auc.unwrap_or(f64::NAN),
                r.f1
            );
            continue;
        }
        let forest = group.iter().any(|kv| kv == "kind=forest");
        let mut params = if forest {
            serde_json::to_value(ForestParams::default())?
        } else {
            serde_json::to_value(GbtParams::default())?
        };
        let mut refit = TrainOptions::default().refit;
        for kv in group.iter().filter(|kv| *kv != "kind=forest") {
            let (k, v) = kv.split_once('=').ok_or("expected key=value")?;
            if k == "refit" {
                refit = serde_json::from_str(v)?;
                continue;
            }
            params.as_object_mut().ok_or("params are not an object")?.insert(k.to_owned(), serde_json::from_str(v)?);
        }
        let mut opts = TrainOptions { refit, ..TrainOptions::default() };
        let kind = if forest {
            opts.forest = serde_json::from_value(params)?;
            ModelKind::Forest
        } else {
            opts.gbt = serde_json::from_value(params)?;
            ModelKind::Gbt
        };
        let t = Instant::now();
        let (m, val) = model::train(&ds, kind, &opts)?;
        let train_s = t.elapsed().as_secs_f64();
        let r = model::evaluate(&m, &ds)?;
        let reps = (1_000_000 / ds.rows().max(1)).max(1);
        let t = Instant::now();
        let c0 = cpu_seconds(&t);
        let mut sink = 0.0f32;
        for _ in 0..reps {
            sink += m.score_batch(&ds.values)?.iter().sum::<f32>();
        }
        let rps = (ds.rows() * reps) as f64 / (cpu_seconds(&t) - c0);
        // One row at a time, as a single flow is scored.
        let t = Instant::now();
        let c0 = cpu_seconds(&t);
        for _ in 0..reps {
            for row in ds.values.chunks_exact(ds.dims().max(1)) {
                sink += m.score_row(row);
            }
        }
        let one = (ds.rows() * reps) as f64 / (cpu_seconds(&t) - c0);
        let g = m.gbt().ok_or("not gbt")?;
        println!(
            "{group:?}: test f1 {:.4} auc {:.4} | val f1 {:.4} | trees {} nodes {} | train {:.1}s | {:.0} rows/s batched, {:.0} one at a time ({sink:.0})",
            r.f1,
            r.roc_auc.unwrap_or(f64::NAN),
            val.f1,
            g.trees(),
            g.nodes(),
            train_s,
            rps,
            one
        );
    }
    Ok(())
}
