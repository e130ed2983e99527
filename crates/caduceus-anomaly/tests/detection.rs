//! End-to-end detection: the detector on the real UNSW-NB15 partition (a subsample, so debug
//! builds stay quick), and damped statistics feeding the detector on a packet stream.
//!
//! UNSW-NB15 runs two protocols on one stratified split: fitting on the raw train rows, 55% of
//! which are attacks (the labels are never shown, so the detector has to live with them), and
//! fitting on a clean learning window (the normal train rows only, as Kitsune trains). The test
//! split is the same.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;

use caduceus_anomaly::{DampedParams, DampedStats, OnlineDetector, OnlineParams};

const UNSW: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/unsw-nb15/UNSW_NB15_training-set.csv");

/// Every `step`-th row: features (text columns as codes in order of first appearance) and labels.
fn load(step: usize) -> (Vec<f32>, Vec<bool>, usize) {
    let mut rdr = csv::Reader::from_path(UNSW).expect("UNSW-NB15 csv under shared/data");
    let header: Vec<String> =
        rdr.headers().unwrap().iter().map(|h| h.trim_start_matches('\u{feff}').to_string()).collect();
    let label_at = header.iter().position(|h| h == "label").unwrap();
    let keep: Vec<usize> =
        (0..header.len()).filter(|i| !["id", "attack_cat", "label"].contains(&header[*i].as_str())).collect();
    let mut codes: Vec<HashMap<String, f32>> = vec![HashMap::new(); header.len()];
    let (mut rows, mut labels) = (Vec::new(), Vec::new());
    for (n, rec) in rdr.records().enumerate() {
        if n % step != 0 {
            continue;
        }
        let rec = rec.unwrap();
        labels.push(&rec[label_at] != "0");
        for &j in &keep {
            let cell = &rec[j];
            let v = match cell.parse::<f32>() {
                Ok(v) => v,
                Err(_) => {
                    let next = codes[j].len() as f32;
                    *codes[j].entry(cell.to_string()).or_insert(next)
                }
            };
            rows.push(v);
        }
    }
    (rows, labels, keep.len())
}

fn shuffle(v: &mut [usize], state: &mut u64) {
    for i in (1..v.len()).rev() {
        // SplitMix64 step.
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        let j = ((z ^ (z >> 31)) % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
}

fn roc_auc(scores: &[f32], labels: &[bool]) -> f64 {
    let (mut wins, mut pos, mut neg) = (0.0f64, 0usize, 0usize);
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*a].total_cmp(&scores[*b]));
    let mut i = 0;
    let mut neg_below = 0usize;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let tied_neg = (i..=j).filter(|k| !labels[order[*k]]).count();
        let tied_pos = j + 1 - i - tied_neg;
        wins += tied_pos as f64 * (neg_below as f64 + tied_neg as f64 / 2.0);
        neg_below += tied_neg;
        pos += tied_pos;
        neg += tied_neg;
        i = j + 1;
    }
    wins / (pos as f64 * neg as f64)
}

/// Measured 0.754 on this subsample with the default parameters (the computation is
/// deterministic). The raw-rows AUC is printed, not asserted: with attacks the majority of the
/// rows learned, any density-based detector ranks the dense attack clusters as normal (River's
/// HalfSpaceTrees reaches 0.39 on the full split), so a floor there would reward a worse density
/// estimate rather than a better detector.
const CLEAN_FLOOR: f64 = 0.75;

#[test]
fn unsw_nb15_auc() {
    let (rows, labels, dims) = load(3);
    // Stratified 70/30 split with a fixed seed; train rows stream in shuffled order (the file is
    // sorted in long blocks of one class, and a windowed detector fed that order only learns
    // the last block).
    let mut state = 7u64;
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for class in [false, true] {
        let mut idx: Vec<usize> = (0..labels.len()).filter(|i| labels[*i] == class).collect();
        shuffle(&mut idx, &mut state);
        let n_train = idx.len() * 7 / 10;
        train.extend_from_slice(&idx[..n_train]);
        test.extend_from_slice(&idx[n_train..]);
    }
    shuffle(&mut train, &mut state);
    let gather = |idx: &[usize]| -> Vec<f32> {
        idx.iter().flat_map(|i| rows[i * dims..(i + 1) * dims].iter().copied()).collect()
    };
    let test_rows = gather(&test);
    let test_labels: Vec<bool> = test.iter().map(|i| labels[*i]).collect();
    let clean: Vec<usize> = train.iter().copied().filter(|i| !labels[*i]).collect();

    let auc_after_fit = |train_idx: &[usize]| {
        let mut d = OnlineDetector::new(dims, OnlineParams::default());
        d.fit(&gather(train_idx), dims);
        let scores = d.score_batch(&test_rows, dims);
        roc_auc(&scores, &test_labels)
    };
    let clean_auc = auc_after_fit(&clean);
    let raw_auc = auc_after_fit(&train);
    assert!((0.0..=1.0).contains(&raw_auc));
    eprintln!("unsw-nb15 subsample: clean-window auc {clean_auc:.4}, raw (55% attacks) auc {raw_auc:.4}");
    assert!(clean_auc >= CLEAN_FLOOR, "clean-window auc {clean_auc}");
}

/// SplitMix64 uniform in [0, 1).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) as f64 / u64::MAX as f64
}

/// Twenty devices poll a server about ten times a second and get answers; after a learning
/// minute one new host floods the server with small packets. Scored on the damped statistics,
/// the flood's packets must rank above the devices' packets of the same seconds.
#[test]
fn damped_statistics_expose_a_flood() {
    let mut stats = DampedStats::new(DampedParams::default());
    let width = stats.width();
    let mut rng = 3u64;
    // (time, src, dst, size, is_attack)
    let mut packets: Vec<(f64, String, String, f64, bool)> = Vec::new();
    for d in 0..20 {
        let dev = format!("10.1.0.{d}");
        let mut t = uniform(&mut rng) * 0.1;
        while t < 80.0 {
            let size = 300.0 + 100.0 * uniform(&mut rng);
            packets.push((t, dev.clone(), "10.0.0.1".into(), size, false));
            packets.push((t + 0.002, "10.0.0.1".into(), dev.clone(), 2.0 * size, false));
            t += 0.08 + 0.04 * uniform(&mut rng);
        }
    }
    let mut t = 70.0;
    while t < 72.0 {
        packets.push((t, "10.9.9.9".into(), "10.0.0.1".into(), 60.0, true));
        t += 0.001;
    }
    packets.sort_by(|a, b| a.0.total_cmp(&b.0));

    let mut learn = Vec::new();
    let mut scored: Vec<(Vec<f32>, bool)> = Vec::new();
    for (t, src, dst, size, attack) in &packets {
        let f = stats.update(src, dst, *size, *t);
        assert_eq!(f.len(), width);
        if *t < 60.0 {
            learn.extend_from_slice(&f);
        } else if (70.0..72.0).contains(t) {
            scored.push((f, *attack));
        }
    }
    let mut det = OnlineDetector::new(width, OnlineParams::default());
    det.fit(&learn, width);
    let mut normal: Vec<f32> = Vec::new();
    let mut flood: Vec<f32> = Vec::new();
    for (f, attack) in &scored {
        let s = det.score(f);
        if *attack { flood.push(s) } else { normal.push(s) }
    }
    normal.sort_by(f32::total_cmp);
    flood.sort_by(f32::total_cmp);
    let p99_normal = normal[normal.len() * 99 / 100];
    let median_flood = flood[flood.len() / 2];
    eprintln!("flood median score {median_flood:.4}, devices p99 {p99_normal:.4}");
    assert!(median_flood > p99_normal, "flood {median_flood} vs devices p99 {p99_normal}");
}
