//! Random forests for binary classification: bagged, fully grown CART trees (Breiman 2001),
//! trained here and scored by [`crate::gbt`]'s tree arrays with the identity link. It must only
//! be handed training rows (the caller keeps the test split away).
//!
//! Why a forest beside the boosted trees: on data whose signal is in near-unique values of a
//! few coordinates (TON_IoT's GPS tracker: 58,341 distinct positions in 58,960 rows), fully
//! grown bagged trees behave like a nearest-neighbour vote and boosting's binned, shallow trees
//! do not get there (see `docs/design/network.md`). `caduceus detect train --kind best` trains both
//! and keeps the one the validation slice prefers.
//!
//! Why written here rather than taken from a crate: `linfa-trees` grows single trees (no bagging
//! or per-split feature sampling) into its own node type, and `smartcore`'s forest scores by
//! walking boxed nodes; neither gives the flat, versioned node arrays the server hot-loads and
//! the fuzzer already covers. The learner is short: exact splits on sorted values, as
//! scikit-learn's `RandomForestClassifier` makes them.
//!
//! Training, per tree:
//! - a bootstrap sample: `n` draws with replacement, kept as per-row counts (weights);
//! - at each node, features are tried in a random order until `max_features` of them have
//!   varied in the node (more are tried when none of those gives a split);
//! - a feature's split is the cut between two neighbouring distinct values (at their midpoint)
//!   that most lowers the weighted Gini impurity; rows missing the feature go to the side that
//!   lowers it most (to the heavier side when the node has none);
//! - a node becomes a leaf when it is pure, holds fewer than `2 * min_samples_leaf` rows, or is
//!   at `max_depth`. Its value is its weighted attack fraction divided by the number of trees,
//!   so the forest's score is the mean of its trees' votes.

use serde::{Deserialize, Serialize};

use crate::gbt::{Gbt, GbtBody, Link};
use crate::split::SplitMix64;
use crate::{MlError, Result};

/// Training parameters; the defaults are scikit-learn's `RandomForestClassifier`'s.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ForestParams {
    /// Trees in the forest.
    pub trees: usize,
    /// Features tried at each split; 0 picks `floor(sqrt(dims))`, at least 1.
    pub max_features: usize,
    /// Least rows (distinct, before weighting) in a leaf.
    pub min_samples_leaf: usize,
    /// Depth limit (root at depth 0); 0 grows until leaves are pure, bounded by
    /// [`MAX_DEPTH`].
    pub max_depth: usize,
    /// Seed of the bootstrap and feature draws.
    pub seed: u64,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self { trees: 100, max_features: 0, min_samples_leaf: 1, max_depth: 0, seed: 42 }
    }
}

/// No tree grows deeper than this, whatever the data: it bounds the walk of a row at scoring.
pub const MAX_DEPTH: usize = 64;

/// Most trees a forest may have.
pub const MAX_TREES: usize = 10_000;

/// Most nodes over all trees: about 100 MB in memory and 250 MB as a model file, under the
/// reader's 512 MB cap. Fully grown trees have about as many nodes as their sample has
/// impure regions, so millions of training rows can get here; training then stops with an
/// error (raise `min_samples_leaf` or `max_depth`, or use `gbt`).
pub const MAX_NODES: usize = 8_000_000;

/// One row as a split search sees it.
#[derive(Clone, Copy)]
struct Point {
    x: f32,
    w: f64,
    attack: bool,
}

/// A chosen split.
#[derive(Clone, Copy)]
struct Split {
    /// Weighted impurity of the two children (lower is better).
    impurity: f64,
    feature: usize,
    threshold: f32,
    nan_right: bool,
}

/// Class weights: (all, attacks).
#[derive(Clone, Copy, Default)]
struct Tally {
    w: f64,
    pos: f64,
}

impl Tally {
    fn add(&mut self, w: f64, attack: bool) {
        self.w += w;
        if attack {
            self.pos += w;
        }
    }

    fn minus(self, o: Tally) -> Tally {
        Tally { w: self.w - o.w, pos: self.pos - o.pos }
    }

    /// Gini impurity times weight: `2 p (1 - p) w`.
    fn gini(self) -> f64 {
        if self.w <= 0.0 { 0.0 } else { 2.0 * self.pos * (self.w - self.pos) / self.w }
    }
}

/// A tree under construction, in the node arrays of [`GbtBody`] (children side by side).
struct TreeOut<'o> {
    feature: &'o mut Vec<i64>,
    value: &'o mut Vec<f32>,
    left: &'o mut Vec<u32>,
    nan_right: &'o mut Vec<bool>,
}

impl TreeOut<'_> {
    fn push_leaf(&mut self) -> usize {
        let i = self.feature.len();
        self.feature.push(-1);
        self.value.push(0.0);
        self.left.push(0);
        self.nan_right.push(false);
        i
    }

    fn set_leaf(&mut self, i: usize, v: f32) {
        if let Some(slot) = self.value.get_mut(i) {
            *slot = v;
        }
    }

    fn set_split(&mut self, i: usize, s: &Split, left: usize) {
        if let (Some(f), Some(v), Some(l), Some(n)) =
            (self.feature.get_mut(i), self.value.get_mut(i), self.left.get_mut(i), self.nan_right.get_mut(i))
        {
            *f = s.feature as i64;
            *v = s.threshold;
            *l = left as u32;
            *n = s.nan_right;
        }
    }
}

struct Grower<'a> {
    x: &'a [f32],
    y: &'a [u8],
    dims: usize,
    max_features: usize,
    min_leaf: usize,
    max_depth: usize,
    /// Value of a leaf per unit attack fraction (1 / trees).
    scale: f64,
}

impl Grower<'_> {
    fn at(&self, row: u32, f: usize) -> f32 {
        self.x.get(row as usize * self.dims + f).copied().unwrap_or(f32::NAN)
    }

    fn attack(&self, row: u32) -> bool {
        self.y.get(row as usize).is_some_and(|l| *l != 0)
    }

    /// Grow one tree over the bootstrap sample `rows`, the rows whose draw count in `weight`
    /// (indexed by row) is not zero.
    fn grow(&self, rows: &mut [u32], weight: &[u32], rng: &mut SplitMix64, out: &mut TreeOut<'_>) {
        let mut order: Vec<usize> = (0..self.dims).collect();
        let mut points: Vec<Point> = Vec::with_capacity(rows.len());
        let root = out.push_leaf();
        // (node, start, end, depth): an explicit stack, so a deep tree cannot overflow ours.
        let mut stack = vec![(root, 0usize, rows.len(), 0usize)];
        while let Some((node, start, end, depth)) = stack.pop() {
            let Some(seg) = rows.get_mut(start..end) else { continue };
            let mut total = Tally::default();
            for r in seg.iter() {
                total.add(weight_of(weight, *r), self.attack(*r));
            }
            let value = if total.w > 0.0 { (total.pos / total.w * self.scale) as f32 } else { 0.0 };
            out.set_leaf(node, value);
            let pure = total.pos <= 0.0 || total.pos >= total.w;
            if pure || seg.len() < 2 * self.min_leaf || depth >= self.max_depth {
                continue;
            }
            let Some(split) = self.best_split(seg, weight, total, &mut order, &mut points, rng) else {
                continue;
            };
            // Partition: rows going left first.
            let mut w = 0;
            for i in 0..seg.len() {
                let Some(&r) = seg.get(i) else { break };
                let x = self.at(r, split.feature);
                let go_left = if x.is_nan() { !split.nan_right } else { x <= split.threshold };
                if go_left {
                    seg.swap(i, w);
                    w += 1;
                }
            }
            if w == 0 || w == seg.len() {
                continue;
            }
            let left = out.push_leaf();
            let right = out.push_leaf();
            out.set_split(node, &split, left);
            stack.push((right, start + w, end, depth + 1));
            stack.push((left, start, start + w, depth + 1));
        }
    }

    /// The best split of the rows `seg`, trying features in a fresh random order.
    fn best_split(
        &self,
        seg: &[u32],
        weight: &[u32],
        total: Tally,
        order: &mut [usize],
        points: &mut Vec<Point>,
        rng: &mut SplitMix64,
    ) -> Option<Split> {
        shuffle(order, rng);
        let mut best: Option<Split> = None;
        let mut varied = 0;
        for &f in order.iter() {
            if varied >= self.max_features && best.is_some() {
                break;
            }
            points.clear();
            let mut missing = Tally::default();
            let mut missing_rows = 0usize;
            for &r in seg {
                let w = weight_of(weight, r);
                let x = self.at(r, f);
                if x.is_nan() {
                    missing.add(w, self.attack(r));
                    missing_rows += 1;
                } else {
                    points.push(Point { x, w, attack: self.attack(r) });
                }
            }
            points.sort_unstable_by(|a, b| a.x.total_cmp(&b.x));
            let (Some(first), Some(last)) = (points.first(), points.last()) else { continue };
            if first.x == last.x && missing_rows == 0 {
                continue;
            }
            varied += 1;
            if let Some(s) = self.best_cut(f, points, total, missing, missing_rows)
                && best.is_none_or(|b| s.impurity < b.impurity)
            {
                best = Some(s);
            }
        }
        best
    }

    /// The best cut of one feature's sorted values, with the missing rows on either side.
    fn best_cut(&self, f: usize, points: &[Point], total: Tally, missing: Tally, missing_rows: usize) -> Option<Split> {
        let present = total.minus(missing);
        let n = points.len();
        let mut best: Option<Split> = None;
        let mut consider = |left: Tally, left_rows: usize, threshold: f32, nan_right: bool| {
            let right_rows = n + missing_rows - left_rows;
            if left_rows < self.min_leaf || right_rows < self.min_leaf {
                return;
            }
            let impurity = left.gini() + total.minus(left).gini();
            if best.is_none_or(|b| impurity < b.impurity) {
                best = Some(Split { impurity, feature: f, threshold, nan_right });
            }
        };
        let mut left = Tally::default();
        for (i, pair) in points.windows(2).enumerate() {
            let [a, b] = pair else { continue };
            left.add(a.w, a.attack);
            if a.x == b.x {
                continue;
            }
            let threshold = midpoint(a.x, b.x);
            if missing_rows == 0 {
                // No missing rows here: unseen ones later follow the heavier side.
                let nan_right = present.minus(left).w > left.w;
                consider(left, i + 1, threshold, nan_right);
            } else {
                consider(left, i + 1, threshold, true);
                let mut with_missing = left;
                with_missing.w += missing.w;
                with_missing.pos += missing.pos;
                consider(with_missing, i + 1 + missing_rows, threshold, false);
            }
        }
        if missing_rows > 0 && !points.is_empty() {
            // Every present value on one side, the missing rows on the other.
            let threshold = points.last().map_or(f32::MAX, |p| p.x);
            consider(present, n, threshold, true);
        }
        best
    }
}

/// A row's bootstrap draw count, as a weight.
fn weight_of(weight: &[u32], row: u32) -> f64 {
    weight.get(row as usize).copied().map_or(0.0, f64::from)
}

/// A cut between `a < b` that sends `a` left and `b` right.
fn midpoint(a: f32, b: f32) -> f32 {
    let mid = a / 2.0 + b / 2.0;
    if mid >= a && mid < b { mid } else { a }
}

fn shuffle(items: &mut [usize], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// Train a forest on row-major `x` (`dims` values per row) with labels `y` (1 = attack). Rows
/// must be training rows.
pub fn fit(x: &[f32], y: &[u8], dims: usize, params: &ForestParams) -> Result<Gbt> {
    fit_within(x, y, dims, params, MAX_NODES)
}

fn fit_within(x: &[f32], y: &[u8], dims: usize, params: &ForestParams, max_nodes: usize) -> Result<Gbt> {
    let n = y.len();
    if dims == 0 || x.len() != n * dims {
        return Err(MlError::Dataset("feature matrix and labels disagree in size".into()));
    }
    if dims >= (1 << 30) || n >= u32::MAX as usize {
        return Err(MlError::Dataset("too many rows or features for a forest".into()));
    }
    let positives = y.iter().filter(|l| **l != 0).count();
    if positives == 0 || positives == n {
        return Err(MlError::Dataset(
            "training rows hold only one class; a forest needs both normal and attack rows".into(),
        ));
    }
    let trees = params.trees.clamp(1, MAX_TREES);
    let grower = Grower {
        x,
        y,
        dims,
        max_features: match params.max_features {
            0 => ((dims as f64).sqrt() as usize).max(1),
            m => m.min(dims),
        },
        min_leaf: params.min_samples_leaf.max(1),
        max_depth: match params.max_depth {
            0 => MAX_DEPTH,
            d => d.min(MAX_DEPTH),
        },
        scale: 1.0 / trees as f64,
    };
    let mut body = GbtBody {
        dims,
        base_score: 0.0,
        link: Link::Identity,
        roots: Vec::with_capacity(trees),
        feature: Vec::new(),
        value: Vec::new(),
        left: Vec::new(),
        nan_right: Vec::new(),
    };
    let mut counts = vec![0u32; n];
    let mut rows: Vec<u32> = Vec::with_capacity(n);
    for t in 0..trees {
        // One stream per tree, so a tree does not depend on how many draws the others made.
        let mut rng = SplitMix64(params.seed ^ (t as u64).wrapping_mul(0xD1B5_4A32_D192_ED03));
        counts.fill(0);
        for _ in 0..n {
            if let Some(c) = counts.get_mut((rng.next_u64() % n as u64) as usize) {
                *c += 1;
            }
        }
        rows.clear();
        rows.extend(counts.iter().enumerate().filter(|(_, c)| **c > 0).map(|(r, _)| r as u32));
        let root = body.feature.len();
        if root > max_nodes {
            return Err(MlError::Model(format!(
                "the forest passed {max_nodes} nodes after {t} of {trees} trees; raise min_samples_leaf \
                 or max_depth, or train gbt"
            )));
        }
        body.roots.push(root as u32);
        let mut out = TreeOut {
            feature: &mut body.feature,
            value: &mut body.value,
            left: &mut body.left,
            nan_right: &mut body.nan_right,
        };
        grower.grow(&mut rows, &counts, &mut rng, &mut out);
    }
    Gbt::from_body(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Attacks sit on a checkerboard of `x0`, `x1` (a pattern no single threshold finds), with
    /// some `x1` missing (missing means attack) and a noise feature.
    fn checkerboard(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut rng = SplitMix64(seed);
        let mut u = || (rng.next_u64() >> 11) as f32 / (1u64 << 53) as f32;
        let mut x = Vec::with_capacity(n * 3);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let (a, b, noise) = (u(), u(), u());
            let missing = u() < 0.1;
            let cell = ((a * 4.0) as u32 + (b * 4.0) as u32) % 2 == 1;
            x.extend([a, if missing { f32::NAN } else { b }, noise]);
            y.push(u8::from(missing || cell));
        }
        (x, y)
    }

    fn accuracy(g: &Gbt, x: &[f32], y: &[u8]) -> f64 {
        let mut p = Vec::new();
        g.predict_proba_batch(x, &mut p);
        let right = p.iter().zip(y).filter(|(s, l)| (**s >= 0.5) == (**l != 0)).count();
        right as f64 / y.len() as f64
    }

    #[test]
    fn learns_a_checkerboard_and_missing_values() {
        let (x, y) = checkerboard(4000, 1);
        let (tx, ty) = checkerboard(2000, 2);
        let g = fit(&x, &y, 3, &ForestParams { trees: 30, ..ForestParams::default() }).unwrap();
        assert_eq!(g.trees(), 30);
        assert_eq!(g.link(), Link::Identity);
        let acc = accuracy(&g, &tx, &ty);
        assert!(acc > 0.95, "held-out accuracy {acc}");
        // Scores are the mean of the trees' votes: probabilities.
        let mut p = Vec::new();
        g.predict_proba_batch(&tx, &mut p);
        assert!(p.iter().all(|s| (0.0..=1.0 + 1e-5).contains(s)));
        // A missing x1 is an attack, and rows with it missing are scored on that side.
        assert!(g.predict_proba(&[0.1, f32::NAN, 0.5]) > 0.5);
    }

    #[test]
    fn same_seed_same_forest_and_the_file_round_trips() {
        let (x, y) = checkerboard(1500, 3);
        let params = ForestParams { trees: 8, ..ForestParams::default() };
        let a = fit(&x, &y, 3, &params).unwrap();
        let b = fit(&x, &y, 3, &params).unwrap();
        assert_eq!(a, b);
        let c = fit(&x, &y, 3, &ForestParams { seed: 7, ..params }).unwrap();
        assert_ne!(a, c);
        let json = serde_json::to_string(&a).unwrap();
        assert!(json.contains("\"link\":\"identity\""), "{}", &json[..200.min(json.len())]);
        let back: Gbt = serde_json::from_str(&json).unwrap();
        assert_eq!(back, a);
        for row in x.chunks_exact(3).take(200) {
            assert_eq!(a.predict_proba(row).to_bits(), back.predict_proba(row).to_bits());
        }
    }

    #[test]
    fn fully_grown_trees_fit_their_sample_and_respect_limits() {
        let (x, y) = checkerboard(1000, 4);
        // One tree without bootstrap variety would still be a bootstrap; check instead that a
        // forest of deep trees fits the training rows almost exactly.
        let g = fit(&x, &y, 3, &ForestParams { trees: 20, ..ForestParams::default() }).unwrap();
        assert!(accuracy(&g, &x, &y) > 0.99);
        // A depth limit of 1 gives stumps: three nodes per tree at most.
        let stumps = fit(&x, &y, 3, &ForestParams { trees: 5, max_depth: 1, ..ForestParams::default() }).unwrap();
        assert!(stumps.nodes() <= 15, "{} nodes", stumps.nodes());
        // Large leaves: no leaf under 200 rows means few nodes.
        let coarse =
            fit(&x, &y, 3, &ForestParams { trees: 1, min_samples_leaf: 200, ..ForestParams::default() }).unwrap();
        assert!(coarse.nodes() <= 9, "{} nodes", coarse.nodes());
    }

    #[test]
    fn a_forest_past_its_node_budget_is_refused() {
        let (x, y) = checkerboard(1000, 5);
        let err = fit_within(&x, &y, 3, &ForestParams { trees: 10, ..ForestParams::default() }, 100).unwrap_err();
        assert!(err.to_string().contains("min_samples_leaf"), "{err}");
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(fit(&[1.0, 2.0], &[0, 0], 1, &ForestParams::default()).is_err());
        assert!(fit(&[1.0], &[0, 1], 1, &ForestParams::default()).is_err());
        assert!(fit(&[], &[], 0, &ForestParams::default()).is_err());
        // Constant features: no split exists, each tree is one leaf at the attack rate.
        let g = fit(&[1.0, 1.0, 1.0, 1.0], &[0, 1, 0, 1], 1, &ForestParams::default()).unwrap();
        assert_eq!(g.nodes(), g.trees());
    }
}
