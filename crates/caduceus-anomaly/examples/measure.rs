//! Measures the online detector on a labelled flow CSV: stratified 70/30 split with a fixed seed,
//! fit on the train rows (labels never shown to the detector), score the test rows, print ROC AUC
//! and scoring rows/s on one core as one JSON line.
//!
//! ```text
//! cargo run --release -p caduceus-anomaly --example measure -- \
//!     --csv ../shared/data/unsw-nb15/UNSW_NB15_training-set.csv --label label --drop id,attack_cat \
//!     [--normal 0,normal,BENIGN] [--params '{"window_size":2048}'] [--seed 7] [--order shuffled|file]
//!     [--dump /tmp/split.csv] [--max-rows N (default 5,000,000)] [--train-normal-only] [--seeds N]
//! ```
//!
//! `--csv` may repeat or name a directory (all `*.csv` in name order, e.g. the CIC-IDS2017 sample).
//! Text columns become codes in order of first appearance; empty and non-finite cells are NaN.
//! Train rows stream in `--order`: `shuffled` (default; the split's seeded shuffle) or `file`.
//! `--train-normal-only` fits on the normal train rows only (a clean learning window).
//! `--dump` writes `split,label,f0..` (train rows first, in stream order) so a peer such as
//! River reads exactly the same rows.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use caduceus_anomaly::{OnlineDetector, OnlineParams};

struct Args {
    csv: Vec<PathBuf>,
    label: String,
    normal: Vec<String>,
    drop: Vec<String>,
    params: OnlineParams,
    seed: u64,
    file_order: bool,
    dump: Option<PathBuf>,
    max_rows: usize,
    normal_only: bool,
    seeds: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        csv: Vec::new(),
        label: "label".into(),
        normal: vec!["0".into(), "normal".into(), "benign".into()],
        drop: Vec::new(),
        params: OnlineParams::default(),
        seed: 7,
        file_order: false,
        dump: None,
        max_rows: 5_000_000,
        normal_only: false,
        seeds: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        let list = |s: String| s.split(',').map(|v| v.trim().to_string()).collect::<Vec<_>>();
        match flag.as_str() {
            "--csv" => {
                let p = PathBuf::from(val());
                if p.is_dir() {
                    let mut files: Vec<PathBuf> = std::fs::read_dir(&p)
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .filter(|f| f.extension().is_some_and(|e| e == "csv"))
                        .collect();
                    files.sort();
                    a.csv.extend(files);
                } else {
                    a.csv.push(p);
                }
            }
            "--label" => a.label = val(),
            "--normal" => a.normal = list(val()).into_iter().map(|v| v.to_lowercase()).collect(),
            "--drop" => a.drop = list(val()),
            "--params" => a.params = serde_json::from_str(&val()).expect("params json"),
            "--seed" => a.seed = val().parse().unwrap(),
            "--order" => a.file_order = val() == "file",
            "--dump" => a.dump = Some(PathBuf::from(val())),
            "--max-rows" => a.max_rows = val().parse().unwrap(),
            "--train-normal-only" => a.normal_only = true,
            "--seeds" => a.seeds = val().parse().unwrap(),
            other => panic!("unknown flag {other}"),
        }
    }
    assert!(!a.csv.is_empty(), "--csv is required");
    a
}

/// Numeric rows (row-major), labels (true = attack), feature names.
fn load(a: &Args) -> (Vec<f32>, Vec<bool>, Vec<String>) {
    let mut header: Option<Vec<String>> = None;
    let mut cells: Vec<Vec<String>> = Vec::new();
    let mut labels = Vec::new();
    for path in &a.csv {
        let mut rdr = csv::ReaderBuilder::new().flexible(false).from_path(path).unwrap();
        let h: Vec<String> =
            rdr.headers().unwrap().iter().map(|s| s.trim_start_matches('\u{feff}').trim().to_string()).collect();
        let label_at = h.iter().position(|c| *c == a.label).expect("label column");
        let keep: Vec<usize> = (0..h.len()).filter(|i| *i != label_at && !a.drop.contains(&h[*i])).collect();
        let names: Vec<String> = keep.iter().map(|i| h[*i].clone()).collect();
        match &header {
            None => header = Some(names),
            Some(prev) => assert_eq!(prev, &names, "files differ in columns"),
        }
        for rec in rdr.records() {
            if labels.len() >= a.max_rows {
                break;
            }
            let rec = rec.unwrap();
            let lab = rec.get(label_at).unwrap().trim().to_lowercase();
            labels.push(!a.normal.contains(&lab));
            cells.push(keep.iter().map(|i| rec.get(*i).unwrap_or("").trim().to_string()).collect());
        }
    }
    let names = header.unwrap();
    let dims = names.len();
    let numeric: Vec<bool> =
        (0..dims).map(|j| cells.iter().all(|r| r[j].is_empty() || r[j].parse::<f64>().is_ok())).collect();
    let mut codes: Vec<HashMap<String, f32>> = vec![HashMap::new(); dims];
    let mut rows = Vec::with_capacity(cells.len() * dims);
    for r in &cells {
        for j in 0..dims {
            let c = &r[j];
            let v = if c.is_empty() {
                f32::NAN
            } else if numeric[j] {
                let v = c.parse::<f64>().unwrap() as f32;
                if v.is_finite() { v } else { f32::NAN }
            } else {
                let n = codes[j].len() as f32;
                *codes[j].entry(c.clone()).or_insert(n)
            };
            rows.push(v);
        }
    }
    (rows, labels, names)
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn shuffle(v: &mut [usize], state: &mut u64) {
    for i in (1..v.len()).rev() {
        let j = (splitmix(state) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

/// Stratified split: (train indices in stream order, test indices in file order).
fn split(labels: &[bool], seed: u64, file_order: bool) -> (Vec<usize>, Vec<usize>) {
    let mut state = seed;
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|i| labels[*i] == class).collect();
        shuffle(&mut idx, &mut state);
        let n_train = (idx.len() as f64 * 0.7).round() as usize;
        train.extend_from_slice(&idx[..n_train]);
        test.extend_from_slice(&idx[n_train..]);
    }
    if file_order {
        train.sort_unstable();
    } else {
        shuffle(&mut train, &mut state);
    }
    test.sort_unstable();
    (train, test)
}

/// User + system CPU seconds of this process, from /proc/self/stat (Linux, 100 ticks/s).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

/// ROC AUC with tied scores counted half (Mann-Whitney U).
fn roc_auc(scores: &[f32], labels: &[bool]) -> f64 {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let (mut rank_sum, mut i) = (0.0f64, 0usize);
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += (i..=j).filter(|k| labels[order[*k]]).count() as f64 * avg;
        i = j + 1;
    }
    let pos = labels.iter().filter(|l| **l).count() as f64;
    let neg = labels.len() as f64 - pos;
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

fn main() {
    let a = parse_args();
    let (rows, labels, names) = load(&a);
    let dims = names.len();
    let (mut train, test) = split(&labels, a.seed, a.file_order);
    if a.normal_only {
        // Clean learning window (Kitsune's protocol): labels only choose which train rows form
        // the window; the detector still never sees a label.
        train.retain(|i| !labels[*i]);
    }
    let gather = |idx: &[usize]| -> Vec<f32> {
        idx.iter().flat_map(|i| rows[i * dims..(i + 1) * dims].iter().copied()).collect()
    };
    let train_rows = gather(&train);
    let test_rows = gather(&test);
    let test_labels: Vec<bool> = test.iter().map(|i| labels[*i]).collect();

    if let Some(path) = &a.dump {
        let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        let cols: Vec<String> = (0..dims).map(|j| format!("f{j}")).collect();
        writeln!(w, "split,label,{}", cols.join(",")).unwrap();
        for (part, idx) in [("train", &train), ("test", &test)] {
            for i in idx.iter() {
                let vals: Vec<String> = rows[i * dims..(i + 1) * dims]
                    .iter()
                    .map(|v| if v.is_nan() { String::new() } else { v.to_string() })
                    .collect();
                writeln!(w, "{part},{},{}", u8::from(labels[*i]), vals.join(",")).unwrap();
            }
        }
    }

    let t0 = Instant::now();
    let mut det = OnlineDetector::new(dims, a.params.clone());
    det.fit(&train_rows, dims);
    let fit_secs = t0.elapsed().as_secs_f64();

    let scores: Vec<f32> = test_rows.chunks_exact(dims).map(|x| det.score(x)).collect();
    let mut aucs = vec![roc_auc(&scores, &test_labels)];
    // Further detector seeds (same split) show how much of the AUC is the trees' luck.
    for k in 1..a.seeds {
        let params = OnlineParams { seed: a.params.seed + k, ..a.params.clone() };
        let mut d = OnlineDetector::new(dims, params);
        d.fit(&train_rows, dims);
        let s: Vec<f32> = test_rows.chunks_exact(dims).map(|x| d.score(x)).collect();
        aucs.push(roc_auc(&s, &test_labels));
    }
    let auc = aucs.iter().sum::<f64>() / aucs.len() as f64;
    let auc_min = aucs.iter().copied().fold(f64::INFINITY, f64::min);
    let auc_max = aucs.iter().copied().fold(f64::NEG_INFINITY, f64::max);

    // Throughput: score the test rows repeatedly for at least two seconds on this thread. Per
    // core = rows over this process's CPU time (it has one thread), which stays honest when
    // other work shares the machine; wall-clock rows/s is printed beside it.
    let (mut scored, mut sink) = (0usize, 0.0f32);
    let cpu0 = cpu_secs();
    let t1 = Instant::now();
    while t1.elapsed().as_secs_f64() < 2.0 {
        for x in test_rows.chunks_exact(dims) {
            sink += det.score(x);
        }
        scored += test.len();
    }
    let wall_rows_per_sec = scored as f64 / t1.elapsed().as_secs_f64();
    let rows_per_sec = scored as f64 / (cpu_secs() - cpu0).max(1e-9);
    std::hint::black_box(sink);

    let attacks_train = train.iter().filter(|i| labels[**i]).count();
    println!(
        "{}",
        serde_json::json!({
            "files": a.csv.len(),
            "dims": dims,
            "train": train.len(),
            "train_attack_fraction": attacks_train as f64 / train.len() as f64,
            "test": test.len(),
            "roc_auc": auc,
            "roc_auc_min": auc_min,
            "roc_auc_max": auc_max,
            "seeds": aucs.len(),
            "score_rows_per_sec": rows_per_sec.round(),
            "score_rows_per_sec_wall": wall_rows_per_sec.round(),
            "fit_secs": fit_secs,
            "nodes": det.node_count(),
            "params": serde_json::to_value(&a.params).unwrap(),
        })
    );
}
