//! Gradient-boosted decision trees for binary classification: histogram training and flat-array
//! inference. It owns the trees and their on-disk body; it must only be handed training rows
//! (the caller keeps the test split away) and knows nothing of columns or files.
//!
//! Why written here rather than taken from a crate: the scoring path has to run at
//! ≥ 1,000,000 rows/s per core, which wants every tree in one flat node array scored in a tight
//! loop; the model body is part of a versioned file format the server hot-loads, so its layout
//! must not move with a dependency's release; and it must bring no C code. `perpetual`
//! 3.0.0-rc.2 was looked at: it pulls rayon and sysinfo, its nodes carry a separate missing-value
//! branch, per-node category sets and boxed statistics (so scoring is pointer-chasing through
//! `Vec<Node>` structs of ~100 bytes), and a release candidate's serde layout is no file format to
//! promise. `linfa` has no boosting. So: a compact LightGBM-style learner.
//!
//! Training:
//! - Features are cut into at most 255 quantile bins (4,095 for rows of at most 8 features,
//!   where single sensor values carry the signal; from up to 200,000 sampled rows); a
//!   feature with fewer distinct values gets one bin per value, cut at midpoints. Missing
//!   values (NaN) have their own bin and go, at each split, to the side that gains most (the
//!   larger child when the node saw none).
//! - Logistic loss; trees grow leaf-wise (best gain first) up to `max_leaves` and `max_depth`,
//!   with L2 regularisation `lambda`, `min_child_weight` (hessian) and `min_samples_leaf`;
//!   histograms of the larger child come from the parent's minus the smaller child's.
//! - Shrinkage `learning_rate`; boosting stops early when the validation log-loss has not
//!   improved for `early_stopping_rounds`, and the trees after the best round are dropped.
//!
//! Inference: nodes are 12 bytes (`meta`: feature index and flags, `value`: threshold or leaf
//! value, `left`: the left child, whose right sibling is `left + 1`). A row goes left when
//! `x <= threshold`, and a missing `x` follows the node's learned direction.

use serde::{Deserialize, Serialize};

use crate::{MlError, Result};

/// Training parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GbtParams {
    /// Shrinkage applied to every leaf value.
    pub learning_rate: f32,
    /// Upper bound on boosting rounds (trees).
    pub max_rounds: usize,
    /// Depth limit of a tree (root at depth 0); 0 picks 6, or 8 for rows of at most 8
    /// features (sensor telemetry, where exact value combinations carry the signal).
    pub max_depth: usize,
    /// Leaf limit of a tree; 0 picks 63, or 255 for rows of at most 8 features.
    pub max_leaves: usize,
    /// Least hessian sum in a child.
    pub min_child_weight: f64,
    /// Least rows in a child.
    pub min_samples_leaf: usize,
    /// L2 regularisation of leaf values.
    pub lambda: f64,
    /// Least gain for a split.
    pub min_split_gain: f64,
    /// Bins per feature (at most 65,535); 0 picks 255, or 4,095 for rows of at most 8
    /// features, where single sensor values carry the signal (TON_IoT) and histograms stay
    /// small.
    pub max_bins: usize,
    /// Stop after this many rounds without a better validation loss.
    pub early_stopping_rounds: usize,
    /// Rows sampled to place bin boundaries.
    pub bin_sample_rows: usize,
}

impl Default for GbtParams {
    fn default() -> Self {
        Self {
            learning_rate: 0.5,
            max_rounds: 500,
            max_depth: 0,
            max_leaves: 0,
            min_child_weight: 1e-3,
            min_samples_leaf: 2,
            lambda: 1.0,
            min_split_gain: 1e-6,
            max_bins: 0,
            early_stopping_rounds: 30,
            bin_sample_rows: 200_000,
        }
    }
}

/// What training did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FitInfo {
    /// Rounds run before stopping.
    pub rounds_run: usize,
    /// Trees kept (the best validation round).
    pub trees: usize,
    /// Validation log-loss at the best round (`None` without validation rows).
    pub best_validation_logloss: Option<f64>,
}

const LEAF: u32 = 1 << 31;
const NAN_RIGHT: u32 = 1 << 30;
const FEATURE_MASK: u32 = NAN_RIGHT - 1;

/// One tree node, 12 bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Node {
    /// Feature index, or flags `LEAF` / `NAN_RIGHT`.
    meta: u32,
    /// Threshold of an internal node, value of a leaf.
    value: f32,
    /// Left child; the right child is `left + 1`.
    left: u32,
}

/// How the summed leaf values (plus the base score) become a probability of attack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// Boosted trees: the sum is a log-odds margin, passed through the logistic function.
    #[default]
    Logistic,
    /// A random forest ([`crate::forest`]): each leaf holds its attack fraction divided by the
    /// number of trees, so the sum is already the forest's mean probability.
    Identity,
}

impl Link {
    fn is_logistic(&self) -> bool {
        *self == Link::Logistic
    }

    #[inline]
    fn apply(self, sum: f32) -> f32 {
        match self {
            Link::Logistic => sigmoid(sum),
            Link::Identity => sum,
        }
    }
}

/// A trained ensemble: every tree's nodes in one array, plus the dense scoring layout.
#[derive(Clone, Debug, PartialEq)]
pub struct Gbt {
    dims: usize,
    base_score: f32,
    link: Link,
    nodes: Vec<Node>,
    roots: Vec<u32>,
    dense: Option<Dense>,
}

/// Trees no deeper than this are scored in the dense layout.
const MAX_DENSE_DEPTH: usize = 8;

/// The scoring layout: every tree padded to a complete binary tree of one depth `D`, stored
/// in heap order (children of `i` at `2i+1`, `2i+2`). A row takes exactly `D` steps per tree
/// with no data-dependent exit, so the walks of [`LANES`] trees run side by side and overlap
/// in the CPU instead of stalling on a mispredicted "is this a leaf" branch. A leaf above
/// depth `D` is copied into every padded slot under it, so the padding nodes' tests do not
/// matter.
///
/// Trees are stored in groups of [`LANES`], interleaved: heap slot `i` of the group's tree
/// `k` sits at `i * LANES + k`. The eight roots share one cache line, the next level two, and
/// a group's walks are addressed from one base at fixed offsets, so they fit in registers. The
/// last group is filled up with trees whose leaves are all zero.
#[derive(Clone, Debug, PartialEq)]
struct Dense {
    depth: usize,
    /// Internal nodes (slot `2^D - 1` of each tree unused): (meta = feature | `NAN_RIGHT`,
    /// threshold).
    nodes: Vec<(u32, f32)>,
    /// Leaves: the walk's final heap slot minus `2^D - 1`.
    leaves: Vec<f32>,
}

/// Independent walks interleaved: rows of one tree, or trees of one row.
const LANES: usize = 8;

/// Rows up to this many features are copied into a buffer this wide before the dense walk:
/// a power of two, so `meta & (PAD - 1)` is a feature read the compiler proves in bounds.
const PAD: usize = 128;
type Padded = [f32; PAD];

fn pad(row: &[f32], dims: usize) -> Padded {
    let mut p = [f32::NAN; PAD];
    for (slot, x) in p.iter_mut().zip(row.iter().take(dims)) {
        *slot = *x;
    }
    p
}

/// A row as the dense walk reads it.
trait Features {
    /// The feature a node's `meta` names (NaN when there is none).
    fn at(&self, meta: u32) -> f32;
}

impl Features for &[f32] {
    #[inline(always)]
    fn at(&self, meta: u32) -> f32 {
        self.get((meta & FEATURE_MASK) as usize).copied().unwrap_or(f32::NAN)
    }
}

impl Features for Padded {
    #[inline(always)]
    fn at(&self, meta: u32) -> f32 {
        // Features are below `dims <= PAD`, checked when the model was read; the mask also
        // drops the flag bits.
        self.get(meta as usize & (PAD - 1)).copied().unwrap_or(f32::NAN)
    }
}

impl Dense {
    fn build(nodes: &[Node], roots: &[u32]) -> Option<Dense> {
        fn depth(nodes: &[Node], i: usize, level: usize) -> usize {
            match nodes.get(i) {
                Some(n) if n.meta & LEAF == 0 && level <= MAX_DENSE_DEPTH => {
                    let l = n.left as usize;
                    depth(nodes, l, level + 1).max(depth(nodes, l + 1, level + 1))
                }
                _ => level,
            }
        }
        let d = roots.iter().map(|r| depth(nodes, *r as usize, 0)).max().unwrap_or(0);
        if d > MAX_DENSE_DEPTH {
            return None;
        }
        let stride = 1usize << d;
        let groups = roots.len().div_ceil(LANES);
        // Groups of `LANES` trees, each `2^D * LANES` slots in both arrays.
        let mut dense = Dense {
            depth: d,
            nodes: vec![(0, 0.0); groups * stride * LANES],
            leaves: vec![0.0; groups * stride * LANES],
        };
        let mut tree_nodes = vec![(0, 0.0); stride];
        let mut tree_leaves = vec![0.0; stride];
        for (t, root) in roots.iter().enumerate() {
            tree_nodes.fill((0, 0.0));
            tree_leaves.fill(0.0);
            fill(&mut tree_nodes, &mut tree_leaves, d, nodes, *root as usize, 0, 0);
            let (g, k) = (t / LANES, t % LANES);
            for (i, (n, l)) in tree_nodes.iter().zip(&tree_leaves).enumerate() {
                let at = (g * stride + i) * LANES + k;
                if let (Some(slot), Some(leaf)) = (dense.nodes.get_mut(at), dense.leaves.get_mut(at)) {
                    *slot = *n;
                    *leaf = *l;
                }
            }
        }
        Some(dense)
    }

    /// Add every tree's leaf value to `acc`, one entry per row of `rows`.
    fn accumulate(&self, rows: &[f32], dims: usize, acc: &mut [f32]) {
        if dims == 0 {
            return;
        }
        for (a, row) in acc.iter_mut().zip(rows.chunks_exact(dims)) {
            self.add_row(row, dims, a);
        }
    }

    /// Add one row's leaves to `acc` (in tree order, as the batch path adds them, so both
    /// give the same bits).
    fn add_row(&self, row: &[f32], dims: usize, acc: &mut f32) {
        let clean = !row.iter().any(|x| x.is_nan());
        if dims <= PAD {
            let padded = pad(row, dims);
            if clean {
                self.add_row_at::<true, _>(&padded, acc);
            } else {
                self.add_row_at::<false, _>(&padded, acc);
            }
        } else if clean {
            self.add_row_at::<true, _>(&row, acc);
        } else {
            self.add_row_at::<false, _>(&row, acc);
        }
    }

    fn add_row_at<const CLEAN: bool, R: Features>(&self, row: &R, acc: &mut f32) {
        match self.depth {
            0 => self.add_row_d::<0, CLEAN, R>(row, acc),
            1 => self.add_row_d::<1, CLEAN, R>(row, acc),
            2 => self.add_row_d::<2, CLEAN, R>(row, acc),
            3 => self.add_row_d::<3, CLEAN, R>(row, acc),
            4 => self.add_row_d::<4, CLEAN, R>(row, acc),
            5 => self.add_row_d::<5, CLEAN, R>(row, acc),
            6 => self.add_row_d::<6, CLEAN, R>(row, acc),
            7 => self.add_row_d::<7, CLEAN, R>(row, acc),
            _ => self.add_row_d::<8, CLEAN, R>(row, acc),
        }
    }

    /// Add every tree's leaf for one row to `acc` in tree order, the `LANES` trees of a group
    /// walked in lockstep. `CLEAN` rows hold no missing value, so the step skips the NaN test.
    fn add_row_d<const D: usize, const CLEAN: bool, R: Features>(&self, row: &R, acc: &mut f32) {
        let span = LANES << D;
        let internal = (1usize << D) - 1;
        for (nodes, leaves) in self.nodes.chunks_exact(span).zip(self.leaves.chunks_exact(span)) {
            // Slot of lane k: `i * LANES + k` for heap slot `i`; going down to `2i + 1 + right`
            // is `2 * slot - k + LANES * (1 + right)`.
            let mut slot: [usize; LANES] = std::array::from_fn(|k| k);
            for _ in 0..D {
                for (k, j) in slot.iter_mut().enumerate() {
                    // `j < LANES * 2^D`, so the mask changes nothing; it lets the compiler
                    // see the read is inside the group.
                    let (m, t) = nodes.get(*j & (span - 1)).copied().unwrap_or((0, 0.0));
                    let x = row.at(m);
                    let right = if CLEAN { x > t } else { (x > t) | (x.is_nan() & (m & NAN_RIGHT != 0)) };
                    *j = 2 * *j - k + LANES * (1 + usize::from(right));
                }
            }
            for j in slot {
                *acc += leaves.get((j - internal * LANES) & (span - 1)).copied().unwrap_or(0.0);
            }
        }
    }
}

/// Place node `i` at heap position `h` on `level` of one dense tree of depth `d`.
fn fill(tree_nodes: &mut [(u32, f32)], leaves: &mut [f32], d: usize, nodes: &[Node], i: usize, h: usize, level: usize) {
    let Some(n) = nodes.get(i) else { return };
    if n.meta & LEAF != 0 {
        let span = 1usize << (d - level);
        let first = (h + 1) * span - (1usize << d);
        if let Some(slots) = leaves.get_mut(first..first + span) {
            slots.fill(n.value);
        }
        return;
    }
    if let Some(slot) = tree_nodes.get_mut(h) {
        *slot = (n.meta, n.value);
    }
    let l = n.left as usize;
    fill(tree_nodes, leaves, d, nodes, l, 2 * h + 1, level + 1);
    fill(tree_nodes, leaves, d, nodes, l + 1, 2 * h + 2, level + 1);
}

/// The serialised body: struct-of-arrays, one entry per node.
#[derive(Serialize, Deserialize)]
pub(crate) struct GbtBody {
    pub(crate) dims: usize,
    pub(crate) base_score: f32,
    /// Absent (logistic) in boosted models, so their files are as before.
    #[serde(default, skip_serializing_if = "Link::is_logistic")]
    pub(crate) link: Link,
    pub(crate) roots: Vec<u32>,
    /// Feature index of an internal node; -1 marks a leaf.
    pub(crate) feature: Vec<i64>,
    /// Threshold (internal) or value (leaf).
    pub(crate) value: Vec<f32>,
    /// Left child (right is left + 1); 0 for a leaf.
    pub(crate) left: Vec<u32>,
    /// Missing values go right at this node.
    pub(crate) nan_right: Vec<bool>,
}

impl Serialize for Gbt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let body = GbtBody {
            dims: self.dims,
            base_score: self.base_score,
            link: self.link,
            roots: self.roots.clone(),
            feature: self
                .nodes
                .iter()
                .map(|n| if n.meta & LEAF != 0 { -1 } else { i64::from(n.meta & FEATURE_MASK) })
                .collect(),
            value: self.nodes.iter().map(|n| n.value).collect(),
            left: self.nodes.iter().map(|n| n.left).collect(),
            nan_right: self.nodes.iter().map(|n| n.meta & NAN_RIGHT != 0).collect(),
        };
        body.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Gbt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let body = GbtBody::deserialize(d)?;
        Gbt::from_body(body).map_err(serde::de::Error::custom)
    }
}

impl Gbt {
    /// Rebuild and check a body: every child index must point forward and inside the array
    /// (so scoring always ends), every feature must be below `dims`, every value finite.
    pub(crate) fn from_body(b: GbtBody) -> Result<Gbt> {
        let n = b.feature.len();
        if b.value.len() != n || b.left.len() != n || b.nan_right.len() != n {
            return Err(MlError::Model("gbt node arrays differ in length".into()));
        }
        if b.dims == 0 || b.dims > FEATURE_MASK as usize || n >= u32::MAX as usize {
            return Err(MlError::Model("gbt body too large".into()));
        }
        if !b.base_score.is_finite() {
            return Err(MlError::Model("gbt base score is not finite".into()));
        }
        let mut nodes = Vec::with_capacity(n);
        for (i, (((f, v), l), nr)) in b.feature.iter().zip(&b.value).zip(&b.left).zip(&b.nan_right).enumerate() {
            if !v.is_finite() {
                return Err(MlError::Model(format!("gbt node {i}: value not finite")));
            }
            if *f < 0 {
                nodes.push(Node { meta: LEAF, value: *v, left: 0 });
                continue;
            }
            let feature = usize::try_from(*f).unwrap_or(usize::MAX);
            if feature >= b.dims {
                return Err(MlError::Model(format!("gbt node {i}: feature out of range")));
            }
            let left = *l as usize;
            if left <= i || left.saturating_add(1) >= n {
                return Err(MlError::Model(format!("gbt node {i}: child out of range")));
            }
            let meta = feature as u32 | if *nr { NAN_RIGHT } else { 0 };
            nodes.push(Node { meta, value: *v, left: *l });
        }
        if b.roots.iter().any(|r| *r as usize >= n) {
            return Err(MlError::Model("gbt root out of range".into()));
        }
        let mut g = Gbt::assemble(b.dims, b.base_score, nodes, b.roots);
        g.link = b.link;
        Ok(g)
    }

    fn assemble(dims: usize, base_score: f32, nodes: Vec<Node>, roots: Vec<u32>) -> Gbt {
        let dense = Dense::build(&nodes, &roots);
        Gbt { dims, base_score, link: Link::Logistic, nodes, roots, dense }
    }

    /// How the summed leaves become a probability.
    pub fn link(&self) -> Link {
        self.link
    }

    /// Number of input features.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Number of trees.
    pub fn trees(&self) -> usize {
        self.roots.len()
    }

    /// Number of nodes over all trees.
    pub fn nodes(&self) -> usize {
        self.nodes.len()
    }

    /// The raw sum of one row's leaves and the base score (log-odds for a boosted model, the
    /// probability itself for a forest); a short row reads missing features as NaN.
    pub fn margin(&self, row: &[f32]) -> f32 {
        if let Some(dense) = &self.dense {
            let mut acc = self.base_score;
            match row.get(..self.dims) {
                Some(row) => dense.add_row(row, self.dims, &mut acc),
                None => {
                    let mut padded = row.to_vec();
                    padded.resize(self.dims, f32::NAN);
                    dense.add_row(&padded, self.dims, &mut acc);
                }
            }
            return acc;
        }
        let mut sum = self.base_score;
        for &root in &self.roots {
            sum += leaf_value(&self.nodes, root, row);
        }
        sum
    }

    /// Probability of attack for one row.
    pub fn predict_proba(&self, row: &[f32]) -> f32 {
        self.link.apply(self.margin(row))
    }

    /// Probabilities for row-major `rows` (`dims` values each), written to `out`.
    ///
    /// Rows are scored in blocks, tree by tree, so a tree's nodes stay in cache and the
    /// independent traversals of a block overlap in the CPU.
    pub fn predict_proba_batch(&self, rows: &[f32], out: &mut Vec<f32>) {
        const BLOCK: usize = 64;
        out.clear();
        if self.dims == 0 {
            return;
        }
        let mut acc = [0f32; BLOCK];
        for block in rows.chunks(self.dims * BLOCK) {
            let k = block.len() / self.dims;
            acc.fill(self.base_score);
            if let Some(dense) = &self.dense {
                dense.accumulate(block, self.dims, &mut acc);
            } else {
                for &root in &self.roots {
                    for (a, row) in acc.iter_mut().zip(block.chunks_exact(self.dims)) {
                        *a += leaf_value(&self.nodes, root, row);
                    }
                }
            }
            out.extend(acc.iter().take(k).map(|m| self.link.apply(*m)));
        }
    }
}

#[inline]
fn leaf_value(nodes: &[Node], root: u32, row: &[f32]) -> f32 {
    let mut i = root as usize;
    loop {
        let Some(n) = nodes.get(i) else {
            return 0.0;
        };
        if n.meta & LEAF != 0 {
            return n.value;
        }
        let x = row.get((n.meta & FEATURE_MASK) as usize).copied().unwrap_or(f32::NAN);
        let right = (x > n.value) | (x.is_nan() & (n.meta & NAN_RIGHT != 0));
        i = n.left as usize + usize::from(right);
    }
}

fn sigmoid(m: f32) -> f32 {
    1.0 / (1.0 + (-m).exp())
}

/// Bin boundaries per feature: value bin `i` holds `uppers[i-1] < x <= uppers[i]`; codes are
/// `0` for missing and `1 + i` for value bin `i`.
struct BinMapper {
    uppers: Vec<Vec<f32>>,
}

impl BinMapper {
    fn fit(rows: &[f32], dims: usize, params: &GbtParams) -> BinMapper {
        let n = rows.len().checked_div(dims).unwrap_or(0);
        let step = n.div_ceil(params.bin_sample_rows.max(1)).max(1);
        let max_bins = match params.max_bins {
            0 if dims <= 8 => 4095,
            0 => 255,
            b => b.clamp(2, 65_535),
        };
        let mut uppers = Vec::with_capacity(dims);
        let mut vals: Vec<f32> = Vec::new();
        for f in 0..dims {
            vals.clear();
            vals.extend(
                rows.chunks_exact(dims).step_by(step).filter_map(|r| r.get(f).copied()).filter(|v| !v.is_nan()),
            );
            vals.sort_unstable_by(f32::total_cmp);
            let mut distinct: Vec<(f32, usize)> = Vec::new();
            for v in &vals {
                match distinct.last_mut() {
                    Some((last, c)) if *last == *v => *c += 1,
                    _ => distinct.push((*v, 1)),
                }
            }
            let mut u: Vec<f32> = Vec::new();
            let total = vals.len() as f64;
            let mut cum = 0usize;
            for (k, pair) in distinct.windows(2).enumerate() {
                let [(a, ca), (b, _)] = pair else { continue };
                cum += ca;
                let take = if distinct.len() <= max_bins {
                    true
                } else {
                    let want = (u.len() + 1) as f64 * total / max_bins as f64;
                    cum as f64 >= want
                };
                if take {
                    let mid = a / 2.0 + b / 2.0;
                    let cut = if mid >= *a && mid < *b { mid } else { *a };
                    if u.last().is_none_or(|l| *l < cut) {
                        u.push(cut);
                    }
                }
                if u.len() + 1 >= max_bins || k + 2 >= distinct.len() {
                    break;
                }
            }
            uppers.push(u);
        }
        BinMapper { uppers }
    }

    fn code(&self, f: usize, x: f32) -> u16 {
        if x.is_nan() {
            return 0;
        }
        let u = self.uppers.get(f).map_or(&[][..], Vec::as_slice);
        let i = u.partition_point(|b| *b < x);
        u16::try_from(i + 1).unwrap_or(u16::MAX)
    }

    /// Value bins of feature `f`.
    fn bins(&self, f: usize) -> usize {
        self.uppers.get(f).map_or(1, |u| u.len() + 1)
    }

    /// Histogram slots per feature: the missing bin and the most value bins of any feature.
    fn width(&self) -> usize {
        1 + (0..self.uppers.len()).map(|f| self.bins(f)).max().unwrap_or(1)
    }

    /// The threshold meaning "value bins 1..=k go left".
    fn threshold(&self, f: usize, k: usize) -> f32 {
        self.uppers.get(f).and_then(|u| u.get(k.wrapping_sub(1))).copied().unwrap_or(f32::MAX)
    }
}

#[derive(Clone, Copy, Default)]
struct Bin {
    g: f64,
    h: f64,
    n: u32,
}

impl Bin {
    fn add(&mut self, o: &Bin) {
        self.g += o.g;
        self.h += o.h;
        self.n += o.n;
    }
    fn minus(&self, o: &Bin) -> Bin {
        Bin { g: self.g - o.g, h: self.h - o.h, n: self.n.saturating_sub(o.n) }
    }
}

#[derive(Clone, Copy)]
struct SplitInfo {
    gain: f64,
    feature: usize,
    /// Value bins 1..=k go left.
    k: usize,
    nan_right: bool,
}

struct Leaf {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    total: Bin,
    hist: Option<Vec<Bin>>,
    best: Option<SplitInfo>,
}

/// Column-major binned training data and the per-row gradients.
struct Trainer<'a> {
    params: &'a GbtParams,
    mapper: &'a BinMapper,
    dims: usize,
    n: usize,
    codes: Vec<u16>,
    /// Histogram slots per feature.
    width: usize,
    grad: Vec<f32>,
    hess: Vec<f32>,
}

/// A tree under construction.
#[derive(Clone, Copy)]
struct TmpNode {
    leaf: bool,
    feature: usize,
    threshold: f32,
    nan_right: bool,
    left: usize,
    value: f32,
}

impl Trainer<'_> {
    fn hist(&self, rows: &[u32]) -> Vec<Bin> {
        let mut h = vec![Bin::default(); self.dims * self.width];
        for (f, hf) in h.chunks_exact_mut(self.width).enumerate() {
            let Some(col) = self.codes.get(f * self.n..(f + 1) * self.n) else {
                continue;
            };
            for &r in rows {
                let r = r as usize;
                if let (Some(c), Some(g), Some(hs)) = (col.get(r), self.grad.get(r), self.hess.get(r))
                    && let Some(b) = hf.get_mut(*c as usize)
                {
                    b.g += f64::from(*g);
                    b.h += f64::from(*hs);
                    b.n += 1;
                }
            }
        }
        h
    }

    fn leaf_weight(&self, b: &Bin) -> f64 {
        -b.g / (b.h + self.params.lambda)
    }

    fn score(&self, b: &Bin) -> f64 {
        b.g * b.g / (b.h + self.params.lambda)
    }

    fn child_ok(&self, b: &Bin) -> bool {
        b.h >= self.params.min_child_weight && b.n as usize >= self.params.min_samples_leaf.max(1)
    }

    fn best_split(&self, hist: &[Bin], total: &Bin) -> Option<SplitInfo> {
        let parent = self.score(total);
        let mut best: Option<SplitInfo> = None;
        for (f, hf) in hist.chunks_exact(self.width).enumerate() {
            let nb = self.mapper.bins(f);
            let miss = hf.first().copied().unwrap_or_default();
            let mut acc = Bin::default();
            // k = value bins going left; k == nb sends every value left and missing right.
            for k in 1..=nb {
                if let Some(b) = hf.get(k) {
                    acc.add(b);
                }
                if k == nb && miss.n == 0 {
                    break;
                }
                let options: [(Bin, bool); 2] = {
                    let with_miss = {
                        let mut l = acc;
                        l.add(&miss);
                        l
                    };
                    [(acc, true), (with_miss, false)]
                };
                for (left, nan_right) in options {
                    if !nan_right && (miss.n == 0 || k == nb) {
                        continue;
                    }
                    let right = total.minus(&left);
                    if !self.child_ok(&left) || !self.child_ok(&right) {
                        continue;
                    }
                    let gain = 0.5 * (self.score(&left) + self.score(&right) - parent);
                    if gain > self.params.min_split_gain && best.is_none_or(|b| gain > b.gain) {
                        // Without missing values here, send unseen missing values to the
                        // larger child.
                        let nan_right = if miss.n == 0 { right.n > left.n } else { nan_right };
                        best = Some(SplitInfo { gain, feature: f, k, nan_right });
                    }
                }
            }
        }
        best
    }

    fn splittable(&self, leaf: &Leaf) -> bool {
        leaf.depth < self.params.max_depth && leaf.end - leaf.start >= 2 * self.params.min_samples_leaf.max(1)
    }

    /// Grow one tree over `rows` (reordered in place); returns its nodes and, per leaf, the row
    /// range and value.
    fn grow(&self, rows: &mut [u32], scratch: &mut Vec<u32>) -> (Vec<TmpNode>, Vec<(usize, usize, f32)>) {
        let lr = f64::from(self.params.learning_rate);
        let mut nodes = vec![TmpNode { leaf: true, feature: 0, threshold: 0.0, nan_right: false, left: 0, value: 0.0 }];
        let root_hist = self.hist(rows);
        let mut total = Bin::default();
        if let Some(h0) = root_hist.get(..self.width) {
            for b in h0 {
                total.add(b);
            }
        }
        let mut root = Leaf { node: 0, start: 0, end: rows.len(), depth: 0, total, hist: None, best: None };
        if self.splittable(&root) {
            root.best = self.best_split(&root_hist, &total);
        }
        root.hist = Some(root_hist);
        let mut leaves = vec![root];
        while leaves.len() < self.params.max_leaves.max(2) {
            let pick = leaves.iter().enumerate().filter_map(|(i, l)| l.best.map(|b| (i, b.gain))).fold(
                None,
                |acc: Option<(usize, f64)>, (i, g)| match acc {
                    Some((_, bg)) if bg >= g => acc,
                    _ => Some((i, g)),
                },
            );
            let Some((pick, _)) = pick else { break };
            let leaf = leaves.swap_remove(pick);
            let Some(split) = leaf.best else { break };
            let Some(parent_hist) = leaf.hist else { break };
            let Some(seg) = rows.get_mut(leaf.start..leaf.end) else { break };
            let col = self.codes.get(split.feature * self.n..(split.feature + 1) * self.n).unwrap_or_default();
            // Stable partition: left rows first, both halves keep ascending order.
            scratch.clear();
            let mut w = 0;
            for i in 0..seg.len() {
                let Some(&r) = seg.get(i) else { break };
                let c = col.get(r as usize).copied().unwrap_or(0) as usize;
                let go_left = if c == 0 { !split.nan_right } else { c <= split.k };
                if go_left {
                    if let Some(slot) = seg.get_mut(w) {
                        *slot = r;
                    }
                    w += 1;
                } else {
                    scratch.push(r);
                }
            }
            if let Some(tail) = seg.get_mut(w..) {
                tail.copy_from_slice(scratch);
            }
            let mid = leaf.start + w;
            let (small_range, small_is_left) =
                if w <= seg.len() - w { (leaf.start..mid, true) } else { (mid..leaf.end, false) };
            let small_hist = self.hist(rows.get(small_range).unwrap_or_default());
            let big_hist: Vec<Bin> = parent_hist.iter().zip(&small_hist).map(|(p, s)| p.minus(s)).collect();
            let (left_hist, right_hist) = if small_is_left { (small_hist, big_hist) } else { (big_hist, small_hist) };
            let sum = |h: &[Bin]| {
                let mut t = Bin::default();
                for b in h.get(..self.width).unwrap_or_default() {
                    t.add(b);
                }
                t
            };
            let left_node = nodes.len();
            if let Some(p) = nodes.get_mut(leaf.node) {
                *p = TmpNode {
                    leaf: false,
                    feature: split.feature,
                    threshold: self.mapper.threshold(split.feature, split.k),
                    nan_right: split.nan_right,
                    left: left_node,
                    value: 0.0,
                };
            }
            for (node, start, end, hist) in
                [(left_node, leaf.start, mid, left_hist), (left_node + 1, mid, leaf.end, right_hist)]
            {
                nodes.push(TmpNode { leaf: true, feature: 0, threshold: 0.0, nan_right: false, left: 0, value: 0.0 });
                let total = sum(&hist);
                let mut child = Leaf { node, start, end, depth: leaf.depth + 1, total, hist: None, best: None };
                if self.splittable(&child) {
                    child.best = self.best_split(&hist, &total);
                }
                if child.best.is_some() {
                    child.hist = Some(hist);
                }
                leaves.push(child);
            }
        }
        let mut out = Vec::with_capacity(leaves.len());
        for l in &leaves {
            let v = (self.leaf_weight(&l.total) * lr) as f32;
            let v = if v.is_finite() { v } else { 0.0 };
            if let Some(n) = nodes.get_mut(l.node) {
                n.value = v;
            }
            out.push((l.start, l.end, v));
        }
        (nodes, out)
    }
}

/// Train on row-major `x` (`dims` values per row) with labels `y` (1 = attack); `valid_x`/
/// `valid_y` drive early stopping and may be empty. Both must come from training rows.
pub fn fit(
    x: &[f32],
    y: &[u8],
    valid_x: &[f32],
    valid_y: &[u8],
    dims: usize,
    params: &GbtParams,
) -> Result<(Gbt, FitInfo)> {
    let n = y.len();
    if dims == 0 || x.len() != n * dims || valid_x.len() != valid_y.len() * dims {
        return Err(MlError::Dataset("feature matrix and labels disagree in size".into()));
    }
    if dims > FEATURE_MASK as usize || n >= u32::MAX as usize {
        return Err(MlError::Dataset("too many rows or features for gbt".into()));
    }
    let positives = y.iter().filter(|l| **l != 0).count();
    if positives == 0 || positives == n {
        return Err(MlError::Dataset(
            "training rows hold only one class; gbt needs both normal and attack rows".into(),
        ));
    }
    let narrow = dims <= 8;
    let resolved = GbtParams {
        max_depth: match params.max_depth {
            0 if narrow => 8,
            0 => 6,
            d => d,
        },
        max_leaves: match params.max_leaves {
            0 if narrow => 255,
            0 => 63,
            l => l,
        },
        ..params.clone()
    };
    let params = &resolved;
    let mapper = BinMapper::fit(x, dims, params);
    let mut codes = vec![0u16; n * dims];
    for (f, col) in codes.chunks_exact_mut(n.max(1)).enumerate().take(dims) {
        for (c, row) in col.iter_mut().zip(x.chunks_exact(dims)) {
            *c = mapper.code(f, row.get(f).copied().unwrap_or(f32::NAN));
        }
    }
    let p0 = positives as f64 / n as f64;
    let base_score = (p0 / (1.0 - p0)).ln() as f32;
    let mut trainer = Trainer {
        params,
        mapper: &mapper,
        dims,
        n,
        codes,
        width: mapper.width(),
        grad: vec![0.0; n],
        hess: vec![0.0; n],
    };
    let mut margin = vec![base_score; n];
    let mut valid_margin = vec![base_score; valid_y.len()];
    let mut gbt = Gbt { dims, base_score, link: Link::Logistic, nodes: Vec::new(), roots: Vec::new(), dense: None };
    let mut rows: Vec<u32> = (0..n as u32).collect();
    let mut scratch = Vec::with_capacity(n);
    let mut best: Option<(f64, usize)> = None;
    let mut rounds_run = 0;
    for round in 0..params.max_rounds {
        for ((g, h), (m, l)) in trainer.grad.iter_mut().zip(trainer.hess.iter_mut()).zip(margin.iter().zip(y)) {
            let p = sigmoid(*m);
            *g = p - f32::from(u8::from(*l != 0));
            *h = (p * (1.0 - p)).max(1e-6);
        }
        for (i, r) in rows.iter_mut().enumerate() {
            *r = i as u32;
        }
        let (tmp, leaves) = trainer.grow(&mut rows, &mut scratch);
        rounds_run = round + 1;
        for (start, end, v) in leaves {
            for r in rows.get(start..end).unwrap_or_default() {
                if let Some(m) = margin.get_mut(*r as usize) {
                    *m += v;
                }
            }
        }
        let offset = gbt.nodes.len();
        gbt.roots.push(offset as u32);
        gbt.nodes.extend(tmp.iter().map(|t| Node {
            meta: if t.leaf { LEAF } else { t.feature as u32 | if t.nan_right { NAN_RIGHT } else { 0 } },
            value: if t.leaf { t.value } else { t.threshold },
            left: if t.leaf { 0 } else { (t.left + offset) as u32 },
        }));
        if tmp.len() <= 1 && gbt.trees() > 1 {
            // A single-leaf tree means no split gains any more.
            break;
        }
        if valid_y.is_empty() {
            continue;
        }
        let root = offset as u32;
        let mut loss = 0.0f64;
        for ((m, row), l) in valid_margin.iter_mut().zip(valid_x.chunks_exact(dims)).zip(valid_y) {
            *m += leaf_value(&gbt.nodes, root, row);
            loss += logloss(*m, *l);
        }
        let loss = loss / valid_y.len() as f64;
        // An improvement must be worth having: near-perfect separation keeps shaving the
        // loss by ever smaller amounts, which would only add trees.
        if best.is_none_or(|(b, _)| loss < b - (1e-4 * b).max(1e-7)) {
            best = Some((loss, round + 1));
        } else if best.is_some_and(|(_, r)| round + 1 - r >= params.early_stopping_rounds.max(1)) {
            break;
        }
    }
    if let Some((_, keep)) = best {
        gbt.truncate(keep);
    }
    let gbt = Gbt::assemble(gbt.dims, gbt.base_score, gbt.nodes, gbt.roots);
    let info = FitInfo { rounds_run, trees: gbt.trees(), best_validation_logloss: best.map(|b| b.0) };
    Ok((gbt, info))
}

fn logloss(margin: f32, label: u8) -> f64 {
    // log(1 + e^-m) for attacks, log(1 + e^m) for normal rows, computed stably.
    let m = f64::from(if label != 0 { margin } else { -margin });
    if m > 0.0 { (-m).exp().ln_1p() } else { -m + m.exp().ln_1p() }
}

impl Gbt {
    /// Keep the first `trees` trees.
    fn truncate(&mut self, trees: usize) {
        if trees >= self.roots.len() {
            return;
        }
        let end = self.roots.get(trees).map_or(self.nodes.len(), |r| *r as usize);
        self.roots.truncate(trees);
        self.nodes.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows where the attack rule is `x0 > 0.5 xor x1 is missing`, plus noise features.
    fn synthetic(n: usize, seed: u64) -> (Vec<f32>, Vec<u8>) {
        let mut s = seed;
        let mut next = || {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 33) as f32) / (1u64 << 31) as f32
        };
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a = next();
            let missing = next() < 0.2;
            let b = if missing { f32::NAN } else { next() };
            let c = next();
            x.extend([a, b, c]);
            y.push(u8::from((a > 0.5) ^ missing));
        }
        (x, y)
    }

    #[test]
    fn learns_threshold_and_missing_direction() {
        let (x, y) = synthetic(4000, 1);
        let (vx, vy) = synthetic(1000, 2);
        let (gbt, info) = fit(&x, &y, &vx, &vy, 3, &GbtParams::default()).unwrap();
        assert!(info.trees >= 1 && info.trees <= info.rounds_run);
        let (tx, ty) = synthetic(1000, 3);
        let mut p = Vec::new();
        gbt.predict_proba_batch(&tx, &mut p);
        assert_eq!(p.len(), 1000);
        let correct = p.iter().zip(&ty).filter(|(p, y)| (**p >= 0.5) == (**y == 1)).count();
        assert!(correct >= 980, "{correct}");
        // Batch and single-row scoring agree.
        for (i, row) in tx.chunks_exact(3).enumerate().take(100) {
            assert_eq!(gbt.predict_proba(row), p[i]);
        }
        // A missing feature follows the learned direction: b missing flips the rule.
        assert!(gbt.predict_proba(&[0.9, f32::NAN, 0.5]) < 0.5);
        assert!(gbt.predict_proba(&[0.1, f32::NAN, 0.5]) > 0.5);
        // Short rows read as missing.
        assert!(gbt.predict_proba(&[0.9]).is_finite());
    }

    #[test]
    fn dense_layout_scores_like_the_node_walk() {
        let (x, y) = synthetic(3000, 5);
        for max_depth in [1, 3, 6] {
            let params = GbtParams { max_rounds: 30, max_depth, ..GbtParams::default() };
            let (gbt, _) = fit(&x, &y, &[], &[], 3, &params).unwrap();
            let dense = gbt.dense.as_ref().unwrap();
            assert!(dense.depth <= max_depth);
            let (tx, _) = synthetic(500, 6);
            for row in tx.chunks_exact(3) {
                let walk: f32 = gbt.base_score + gbt.roots.iter().map(|r| leaf_value(&gbt.nodes, *r, row)).sum::<f32>();
                assert!((gbt.margin(row) - walk).abs() < 1e-5, "{max_depth}");
            }
            // The batch path gives the same bits as one row at a time.
            let mut batch = Vec::new();
            gbt.predict_proba_batch(&tx, &mut batch);
            let one: Vec<f32> = tx.chunks_exact(3).map(|r| gbt.predict_proba(r)).collect();
            assert_eq!(batch, one);
        }
        // Rows wider than the padded buffer are read in place, with the same result.
        let wide = 3 + PAD;
        let wide_x: Vec<f32> =
            x.chunks_exact(3).flat_map(|r| r.iter().copied().chain((0..PAD).map(|i| i as f32))).collect();
        let params = GbtParams { max_rounds: 20, max_depth: 4, ..GbtParams::default() };
        let (gbt, _) = fit(&wide_x, &y, &[], &[], wide, &params).unwrap();
        assert!(gbt.dense.is_some());
        for row in wide_x.chunks_exact(wide).take(500) {
            let walk: f32 = gbt.base_score + gbt.roots.iter().map(|r| leaf_value(&gbt.nodes, *r, row)).sum::<f32>();
            assert!((gbt.margin(row) - walk).abs() < 1e-5);
        }
        // Deeper than the dense layout takes: scored by the node walk.
        let params =
            GbtParams { max_rounds: 5, max_depth: 20, max_leaves: 200, min_samples_leaf: 1, ..GbtParams::default() };
        let (noisy_x, _) = synthetic(3000, 8);
        let noisy_y: Vec<u8> = (0..3000).map(|i| u8::from(i % 7 < 3)).collect();
        let (gbt, _) = fit(&noisy_x, &noisy_y, &[], &[], 3, &params).unwrap();
        assert!(gbt.dense.is_none());
        assert!(gbt.predict_proba(&[0.5, 0.5, 0.5]).is_finite());
    }

    #[test]
    fn body_round_trip_and_validation() {
        let (x, y) = synthetic(500, 4);
        let (gbt, _) = fit(&x, &y, &[], &[], 3, &GbtParams { max_rounds: 5, ..GbtParams::default() }).unwrap();
        assert_eq!(gbt.trees(), 5);
        let json = serde_json::to_string(&gbt).unwrap();
        let back: Gbt = serde_json::from_str(&json).unwrap();
        assert_eq!(back, gbt);
        // A child pointing backwards would loop forever: rejected.
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["left"][0] = serde_json::json!(0);
        assert!(serde_json::from_value::<Gbt>(v).is_err());
        let mut v: serde_json::Value = serde_json::from_str(&json).unwrap();
        v["feature"][0] = serde_json::json!(7);
        assert!(serde_json::from_value::<Gbt>(v).is_err());
    }

    #[test]
    fn one_class_is_an_error() {
        let err = fit(&[1.0, 2.0], &[1, 1], &[], &[], 1, &GbtParams::default()).unwrap_err();
        assert!(err.to_string().contains("only one class"));
    }

    #[test]
    fn bins_respect_cap_and_order() {
        let x: Vec<f32> = (0..10_000).map(|i| i as f32).collect();
        let m = BinMapper::fit(&x, 1, &GbtParams { max_bins: 255, ..GbtParams::default() });
        assert_eq!(m.bins(0), 255);
        assert!(m.uppers[0].windows(2).all(|w| w[0] < w[1]));
        assert_eq!(m.code(0, f32::NAN), 0);
        assert_eq!(m.code(0, -1.0), 1);
        assert_eq!(m.code(0, 1e9), 255);
        let few = [1.0f32, 1.0, 2.0, 5.0];
        let m = BinMapper::fit(&few, 1, &GbtParams::default());
        assert_eq!(m.uppers[0], vec![1.5, 3.5]);
        assert_eq!(m.code(0, 2.0), 2);
    }
}
