//! The online detector: learned scaling into the unit cube, then Half-Space Trees.
//!
//! Owns the detector's life cycle (warm-up, batch fit, streaming updates, scoring). It never sees
//! labels: everything it learns comes from the rows themselves.

use serde::{Deserialize, Serialize};

use crate::hst::Forest;
use crate::scale::{Scaler, Scaling};

/// Tuning of the [`OnlineDetector`]. The defaults are the measured choice (see the crate docs).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OnlineParams {
    /// Seed of the tree splits; the same seed and rows give the same scores.
    pub seed: u64,
    /// Number of trees (1 to 1,024); more trees smooth the score at linear cost.
    pub n_trees: usize,
    /// Depth of each tree (capped at 24). Memory does not grow with it beyond the cells the
    /// data fills (see `hst`).
    pub height: u32,
    /// Rows per mass window: the reference profile scores are read against is the last complete
    /// window, so it is also how much recent traffic "normal" is learned from.
    pub window_size: u32,
    /// A score walk stops in a node holding fewer than this fraction of the reference window
    /// (the paper's 0.1 with 250-row windows; a larger window affords a finer limit).
    pub size_limit: f32,
    /// How features are mapped into the unit cube.
    pub scaling: Scaling,
    /// Empty space left on each side of the learned range inside the unit cube, so values
    /// beyond anything seen fall into cells without mass (0 = River's behaviour).
    pub margin: f32,
    /// Also split on features that never varied while learning, so a change in one of them
    /// (a flag that is always 0 in normal traffic) stands out; costs tree depth when many
    /// features are constant.
    pub watch_constant: bool,
    /// Rows buffered before the scaling is learned when the detector starts from `learn_one`
    /// alone (a batch `fit` learns it from all its rows).
    pub warmup_rows: usize,
}

impl Default for OnlineParams {
    fn default() -> Self {
        Self {
            seed: 42,
            n_trees: 25,
            height: 15,
            window_size: 4096,
            size_limit: 0.02,
            scaling: Scaling::MinMax,
            margin: 0.2,
            watch_constant: true,
            warmup_rows: 1024,
        }
    }
}

/// Unsupervised detector that learns normal behaviour from unlabelled rows, batch or streaming.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OnlineDetector {
    dims: usize,
    params: OnlineParams,
    scaler: Option<Scaler>,
    forest: Option<Forest>,
    /// Rows seen by `learn_one` before the scaling was learned (row-major; NaN is missing).
    #[serde(with = "crate::serde_nan")]
    warmup: Vec<f32>,
}

/// Rows up to this width are scaled on the stack.
const STACK_DIMS: usize = 128;

/// Widest rows handled; a detector claiming more (a damaged model file) learns and scores
/// nothing rather than allocating without bound.
const MAX_DIMS: usize = 1 << 16;

/// Runs `f` on `x` scaled into the unit cube (`dims` wide, missing values NaN).
fn with_scaled<R>(scaler: &Scaler, dims: usize, x: &[f32], f: impl FnOnce(&[f32]) -> R) -> R {
    if dims <= STACK_DIMS {
        let mut buf = [f32::NAN; STACK_DIMS];
        let scaled = buf.get_mut(..dims).unwrap_or(&mut []);
        scaler.apply(x, scaled);
        f(scaled)
    } else {
        let mut scaled = vec![f32::NAN; dims.min(MAX_DIMS)];
        scaler.apply(x, &mut scaled);
        f(&scaled)
    }
}

impl OnlineDetector {
    /// A detector for rows of `dims` features (at most 65,536).
    pub fn new(dims: usize, params: OnlineParams) -> Self {
        Self { dims, params, scaler: None, forest: None, warmup: Vec::new() }
    }

    /// Learns from `rows` (row-major, `dims` features each, NaN = missing); labels are never
    /// used. On a fresh detector the scaling is learned from these rows first. Rows are then
    /// streamed in order, and if they were fewer than one window they become the reference
    /// anyway. Does nothing when `dims` differs from the detector's width.
    pub fn fit(&mut self, rows: &[f32], dims: usize) {
        if dims != self.dims || dims == 0 {
            return;
        }
        if self.scaler.is_none() {
            let mut all = std::mem::take(&mut self.warmup);
            all.extend_from_slice(rows);
            self.start(&all);
        } else {
            for row in rows.chunks_exact(dims) {
                self.learn_one(row);
            }
        }
        if let Some(forest) = &mut self.forest
            && !forest.ready()
        {
            forest.pivot();
        }
    }

    /// Anomaly score in `[0, 1]`; higher is more anomalous. Zero until a reference window
    /// exists. Missing values (NaN, or a row shorter than `dims`) follow the busier branch.
    pub fn score(&self, x: &[f32]) -> f32 {
        let (Some(scaler), Some(forest)) = (&self.scaler, &self.forest) else { return 0.0 };
        if !forest.ready() {
            return 0.0;
        }
        let density = with_scaled(scaler, self.dims, x, |scaled| forest.density(scaled));
        let max = forest.max_density();
        (1.0 - density.ln_1p() / max.ln_1p()).clamp(0.0, 1.0) as f32
    }

    /// Scores `rows` (row-major, `dims` wide); empty when `dims` differs from the detector's.
    pub fn score_batch(&self, rows: &[f32], dims: usize) -> Vec<f32> {
        if dims != self.dims || dims == 0 {
            return Vec::new();
        }
        rows.chunks_exact(dims).map(|x| self.score(x)).collect()
    }

    /// Learns one row online: the first `warmup_rows` rows are buffered to learn the scaling,
    /// after that each row is O(trees * height).
    pub fn learn_one(&mut self, x: &[f32]) {
        let Some(scaler) = &self.scaler else {
            if self.dims > MAX_DIMS {
                return;
            }
            let mut row = x.to_vec();
            row.resize(self.dims, f32::NAN);
            self.warmup.extend_from_slice(&row);
            if self.warmup.len() >= self.params.warmup_rows.max(1).saturating_mul(self.dims) {
                let all = std::mem::take(&mut self.warmup);
                self.start(&all);
            }
            return;
        };
        if let Some(forest) = &mut self.forest {
            with_scaled(scaler, self.dims, x, |scaled| forest.learn(scaled));
        }
    }

    /// Number of features per row.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The parameters the detector was built with.
    pub fn params(&self) -> &OnlineParams {
        &self.params
    }

    /// Tree nodes currently held (memory is about 24 bytes each).
    pub fn node_count(&self) -> usize {
        self.forest.as_ref().map_or(0, Forest::node_count)
    }

    /// Learns the scaling from `rows`, builds the trees and streams `rows` into them.
    fn start(&mut self, rows: &[f32]) {
        let p = &self.params;
        let scaler = Scaler::learn(p.scaling, p.margin, p.watch_constant, rows, self.dims);
        let window = p.window_size.max(1);
        let size_limit = ((window as f32 * p.size_limit).round() as u32).max(1);
        let mut forest = Forest::new(
            scaler.active().collect(),
            p.n_trees.clamp(1, 1024),
            p.height.clamp(1, crate::hst::MAX_HEIGHT),
            window,
            size_limit,
            p.seed,
        );
        let mut scaled = vec![f32::NAN; self.dims];
        for row in rows.chunks_exact(self.dims) {
            scaler.apply(row, &mut scaled);
            forest.learn(&scaled);
        }
        self.scaler = Some(scaler);
        self.forest = Some(forest);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use crate::hst::mix;

    /// A detector saved while it is still buffering rows with missing values reads back
    /// (JSON has no NaN), and goes on to learn and score as the original does.
    #[test]
    fn a_detector_saved_mid_warmup_with_missing_values_reads_back() {
        let params = OnlineParams { warmup_rows: 8, window_size: 16, ..OnlineParams::default() };
        let mut det = OnlineDetector::new(3, params);
        det.learn_one(&[1.0, f32::NAN, 3.0]);
        det.learn_one(&[2.0]);
        let json = serde_json::to_string(&det).unwrap();
        assert!(json.contains("null"), "{json}");
        let mut back: OnlineDetector = serde_json::from_str(&json).unwrap();
        let mut state = 7u64;
        for _ in 0..64 {
            let row = [noise(&mut state), noise(&mut state), noise(&mut state)];
            det.learn_one(&row);
            back.learn_one(&row);
        }
        for probe in [[0.0, 0.0, 0.0], [9.0, -9.0, 9.0], [0.5, f32::NAN, 0.1]] {
            assert_eq!(det.score(&probe).to_bits(), back.score(&probe).to_bits());
        }
    }

    /// Deterministic standard-normal-ish values (sum of uniforms) for synthetic data.
    fn noise(state: &mut u64) -> f32 {
        let mut s = 0.0;
        for _ in 0..4 {
            *state = mix(*state);
            s += (*state >> 40) as f32 / (1u64 << 24) as f32;
        }
        (s - 2.0) * 1.7
    }

    /// `n` rows around (10, 200, 3000, 5) with a little noise: a flow-like cluster.
    fn cluster(n: usize, seed: u64) -> Vec<f32> {
        let mut st = seed;
        let mut rows = Vec::with_capacity(n * 4);
        for _ in 0..n {
            rows.push(10.0 + noise(&mut st));
            rows.push(200.0 + 20.0 * noise(&mut st));
            rows.push(3000.0 + 300.0 * noise(&mut st));
            rows.push(5.0);
        }
        rows
    }

    fn fitted(seed: u64) -> OnlineDetector {
        let mut d = OnlineDetector::new(4, OnlineParams { seed, ..OnlineParams::default() });
        d.fit(&cluster(20_000, 1), 4);
        d
    }

    #[test]
    fn same_seed_same_scores_other_seed_other_scores() {
        let probe = cluster(50, 99);
        let scores = |d: &OnlineDetector| probe.chunks(4).map(|x| d.score(x)).collect::<Vec<_>>();
        assert_eq!(scores(&fitted(7)), scores(&fitted(7)));
        assert_ne!(scores(&fitted(7)), scores(&fitted(8)));
    }

    #[test]
    fn injected_anomaly_scores_above_normal_points() {
        let d = fitted(3);
        let normal: Vec<f32> = cluster(500, 42).chunks(4).map(|x| d.score(x)).collect();
        for anomaly in [[10.0, 200.0, 900_000.0, 5.0], [60.0, 5.0, 3000.0, 5.0], [10.0, 200.0, 3000.0, 9.0]] {
            let s = d.score(&anomaly);
            let above = normal.iter().filter(|n| **n < s).count();
            assert!(above >= normal.len() * 99 / 100, "{anomaly:?}: {s} above only {above}");
        }
        assert!(normal.iter().all(|s| (0.0..=1.0).contains(s)));
    }

    #[test]
    fn missing_values_are_tolerated() {
        let mut rows = cluster(1000, 5);
        for (i, v) in rows.iter_mut().enumerate() {
            if i % 7 == 0 {
                *v = f32::NAN;
            }
        }
        let mut d = OnlineDetector::new(4, OnlineParams::default());
        d.fit(&rows, 4);
        for x in [[f32::NAN; 4], [10.0, f32::NAN, 3000.0, 5.0], [1e30, -1e30, f32::INFINITY, f32::NAN]] {
            let s = d.score(&x);
            assert!((0.0..=1.0).contains(&s), "{x:?} -> {s}");
        }
        // A short row treats the absent features as missing; a long one ignores the extra.
        assert!((0.0..=1.0).contains(&d.score(&[10.0])));
        assert!((0.0..=1.0).contains(&d.score(&[10.0, 200.0, 3000.0, 5.0, 1.0, 2.0])));
        // The missing value follows the busier branch, so a normal row with one value missing
        // still scores like a normal row rather than an outlier.
        let full = d.score(&[10.0, 200.0, 3000.0, 5.0]);
        let gap = d.score(&[10.0, f32::NAN, 3000.0, 5.0]);
        assert!((full - gap).abs() < 0.2, "{full} vs {gap}");
    }

    #[test]
    fn serde_round_trip_keeps_scores() {
        let d = fitted(11);
        let json = serde_json::to_string(&d).unwrap();
        let back: OnlineDetector = serde_json::from_str(&json).unwrap();
        let probe = cluster(100, 4);
        for x in probe.chunks(4) {
            assert_eq!(d.score(x), back.score(x));
        }
        assert_eq!(back.dims(), 4);
    }

    #[test]
    fn streaming_start_warms_up_then_scores() {
        let params = OnlineParams { window_size: 200, warmup_rows: 300, ..OnlineParams::default() };
        let mut d = OnlineDetector::new(4, params);
        let rows = cluster(1000, 8);
        for x in rows.chunks(4).take(299) {
            d.learn_one(x);
        }
        assert_eq!(d.score(&[10.0, 200.0, 3000.0, 5.0]), 0.0, "nothing learned yet");
        for x in rows.chunks(4).skip(299) {
            d.learn_one(x);
        }
        let far = d.score(&[10.0, 200.0, 900_000.0, 5.0]);
        let near = d.score(&[10.0, 200.0, 3000.0, 5.0]);
        assert!(far > near, "{far} <= {near}");
    }

    #[test]
    fn memory_stays_bounded_while_streaming() {
        let params = OnlineParams { window_size: 500, size_limit: 0.02, ..OnlineParams::default() };
        // 4 * (height + 1) * window / size_limit + 1 per tree (see `hst`).
        let bound = params.n_trees * (4 * (params.height as usize + 1) * 50 + 1);
        let mut d = OnlineDetector::new(4, params);
        let mut st = 77u64;
        for _ in 0..20_000 {
            // Wandering data keeps visiting new cells.
            let x = [noise(&mut st) * 1e3, noise(&mut st) * 1e3, noise(&mut st), noise(&mut st)];
            d.learn_one(&x);
            assert!(d.node_count() <= bound);
        }
    }

    #[test]
    fn a_damaged_model_file_neither_panics_nor_loops() {
        let d = fitted(5);
        let mut v = serde_json::to_value(&d).unwrap();
        // Point every left child back at the root: a cycle.
        for tree in v["forest"]["trees"].as_array_mut().unwrap() {
            for node in tree["nodes"].as_array_mut().unwrap() {
                node["left"] = 0.into();
                node["reference"] = u32::MAX.into();
            }
        }
        v["forest"]["height"] = 200.into();
        let mut back: OnlineDetector = serde_json::from_value(v).unwrap();
        for x in cluster(4200, 6).chunks(4) {
            assert!((0.0..=1.0).contains(&back.score(x)));
            back.learn_one(x);
        }
    }

    #[test]
    fn wrong_width_fit_is_ignored() {
        let mut d = OnlineDetector::new(4, OnlineParams::default());
        d.fit(&[1.0, 2.0, 3.0], 3);
        assert_eq!(d.score(&[1.0, 2.0, 3.0, 4.0]), 0.0);
    }
}
