//! Scoring speed of one gbt model, measured several times (best and median), for tuning the
//! scoring kernels on a machine whose timings wander.
//!
//! ```text
//! cargo run --release -p caduceus-ml --example speed -- DATASET MODEL [REPEATS [DROP,COLUMNS]]
//! ```
//! Any saved model can be measured (an ONNX file too); `DROP,COLUMNS` are left out of the
//! dataset so its columns match the model's.
//! Trains the default gbt on `DATASET` and saves it to `MODEL` when that file does not exist;
//! then scores every row of `DATASET` in batches of 512 (as the server does) and one at a
//! time, printing rows per CPU-second of this thread.

use std::error::Error;
use std::path::PathBuf;
use std::time::Instant;

use caduceus_ml::dataset::{Dataset, LoadOptions};
use caduceus_ml::model::{self, Model, ModelKind, TrainOptions};

mod common;
use common::cpu_seconds;

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let data = PathBuf::from(args.next().ok_or("usage: speed DATASET MODEL [REPEATS]")?);
    let path = PathBuf::from(args.next().ok_or("usage: speed DATASET MODEL [REPEATS]")?);
    let repeats: usize = args.next().map(|r| r.parse()).transpose()?.unwrap_or(7);
    let drop: Option<Vec<String>> = args.next().map(|d| d.split(',').map(String::from).collect());
    let ds = Dataset::load(&data, &LoadOptions { drop_columns: drop, ..LoadOptions::default() })?;
    let m = if path.exists() {
        Model::load(&path)?
    } else {
        let (m, _) = model::train(&ds, ModelKind::Gbt, &TrainOptions::default())?;
        m.save(&path)?;
        m
    };
    let d = m.dims().max(1);
    if m.dims() != ds.dims() {
        return Err(format!("the model reads {} features, the dataset has {}", m.dims(), ds.dims()).into());
    }
    // Rows in a shuffled order (as a test split samples them), not the file's: files are often
    // sorted by class or time, which flatters the cache.
    let mut order: Vec<usize> = (0..ds.rows()).collect();
    let mut seed = 42u64;
    for i in (1..order.len()).rev() {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        order.swap(i, (seed >> 33) as usize % (i + 1));
    }
    let shuffled: Vec<f32> =
        order.iter().filter_map(|&r| ds.values.get(r * d..(r + 1) * d)).flatten().copied().collect();
    let batches: Vec<&[f32]> = shuffled.chunks(d * 512).collect();
    let mut sink = 0.0f32;
    let mut batched = Vec::new();
    let mut single = Vec::new();
    for _ in 0..repeats {
        let (t, c0) = (Instant::now(), cpu_seconds(&Instant::now()));
        for b in &batches {
            sink += m.score_batch(b)?.first().copied().unwrap_or(0.0);
        }
        batched.push(ds.rows() as f64 / (cpu_seconds(&t) - c0));
        let (t, c0) = (Instant::now(), cpu_seconds(&Instant::now()));
        for row in shuffled.chunks_exact(d) {
            sink += m.score_row(row);
        }
        single.push(ds.rows() as f64 / (cpu_seconds(&t) - c0));
    }
    let show = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        format!("best {:.0}, median {:.0}", v.last().unwrap_or(&0.0), v.get(v.len() / 2).unwrap_or(&0.0))
    };
    println!("batches of 512: {} rows/s | one at a time: {} rows/s ({sink:.0})", show(batched), show(single));
    Ok(())
}
