//! Half-Space Trees (Tan, Ting & Liu, IJCAI 2011), the streaming density estimator behind the
//! online detector.
//!
//! Owns the trees over the unit cube and their two mass windows: `latest` counts the rows of the
//! window being filled, `reference` the last complete window; scoring reads only `reference`.
//! It never scales features (see `scale`) and never reads a clock.
//!
//! Unlike River's `HalfSpaceTrees`, which allocates all `2^(h+1) - 1` nodes of every tree up
//! front (65,535 per tree at height 15), a node here gets its children only once `size_limit`
//! rows of the current window have reached it, and at each window change nodes that a score walk
//! can no longer reach are dropped. A node's split is a pure function of (seed, tree, position in
//! the tree, the cell's bounds), so a dropped node comes back identical. Since at most
//! `window / size_limit` nodes per level can hold `size_limit` rows, a tree never holds more than
//! `4 * (height + 1) * window / size_limit + 1` nodes (3,265 with the defaults), whatever the
//! window size or the data.
//!
//! The late children undercount: rows that passed a node before it reached `size_limit` are not
//! in its children's counts. The error is below `size_limit` rows per node, the resolution the
//! score works at anyway; on UNSW-NB15 and CIC-IDS2017 it changed ROC AUC by less than 0.002
//! while halving the nodes held.

use serde::{Deserialize, Serialize};

/// Deepest trees allowed: heap positions stay far inside `u64` and `2^depth` masses inside the
/// score's `u64` sums.
pub(crate) const MAX_HEIGHT: u32 = 24;

/// Marks a missing child or a node without a split.
const NONE: u32 = u32::MAX;

/// Padding of the split range inside a cell, as in the paper and River: splits fall in the middle
/// 70% of the cell so no cell is made vanishingly thin.
const PADDING: f32 = 0.15;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Node {
    /// Split feature, or [`NONE`] for a leaf (deepest level, or a cell no feature can split).
    feature: u32,
    threshold: f32,
    /// Rows of the window being filled that passed through this node.
    latest: u32,
    /// Rows of the last complete window that passed through this node.
    reference: u32,
    left: u32,
    right: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Tree {
    /// `nodes[0]` is the root.
    nodes: Vec<Node>,
}

/// One step of a walk: the split taken, to rebuild a cell's bounds when creating a node.
#[derive(Clone, Copy)]
struct Step {
    feature: u32,
    threshold: f32,
    left: bool,
}

/// A forest of Half-Space Trees over `[0, 1]^dims`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Forest {
    seed: u64,
    height: u32,
    window: u32,
    /// Score walks stop below this many reference rows in a node (the paper's 0.1 * window).
    size_limit: u32,
    /// Whether each feature may be split on (constant features are not).
    active: Vec<bool>,
    trees: Vec<Tree>,
    /// Rows counted in `latest` so far.
    latest_rows: u32,
    /// Rows in the reference window; zero until the first window completes.
    reference_rows: u32,
}

impl Forest {
    pub(crate) fn new(active: Vec<bool>, n_trees: usize, height: u32, window: u32, size_limit: u32, seed: u64) -> Self {
        let mut forest = Self {
            seed,
            height,
            window: window.max(1),
            size_limit,
            active,
            trees: Vec::with_capacity(n_trees),
            latest_rows: 0,
            reference_rows: 0,
        };
        for t in 0..n_trees {
            let root = forest.make_node(t, 1, 0, &[]);
            forest.trees.push(Tree { nodes: vec![root] });
        }
        forest
    }

    /// Tree depth, never above [`MAX_HEIGHT`] even if a stored model says otherwise.
    fn height(&self) -> u32 {
        self.height.min(MAX_HEIGHT)
    }

    /// Whether a reference window exists (scores before that carry no information).
    pub(crate) fn ready(&self) -> bool {
        self.reference_rows > 0
    }

    /// Total nodes held, for memory accounting.
    pub(crate) fn node_count(&self) -> usize {
        self.trees.iter().map(|t| t.nodes.len()).sum()
    }

    /// Adds one scaled row (values in `[0, 1]`, NaN = missing) to the latest window.
    pub(crate) fn learn(&mut self, x: &[f32]) {
        let mut path: Vec<Step> = Vec::with_capacity(self.height() as usize);
        for t in 0..self.trees.len() {
            self.learn_tree(t, x, &mut path);
        }
        self.latest_rows = self.latest_rows.saturating_add(1);
        if self.latest_rows >= self.window {
            self.pivot();
        }
    }

    /// Makes the rows learned so far the reference even if the window is not full (used at the
    /// end of a batch fit shorter than one window).
    pub(crate) fn pivot(&mut self) {
        if self.latest_rows == 0 {
            return;
        }
        let limit = self.size_limit.min(self.latest_rows / 10).max(1);
        let height = self.height();
        for tree in &mut self.trees {
            tree.nodes = compact(&tree.nodes, limit, height);
        }
        self.reference_rows = self.latest_rows;
        self.latest_rows = 0;
    }

    fn learn_tree(&mut self, t: usize, x: &[f32], path: &mut Vec<Step>) {
        path.clear();
        let mut idx = 0usize;
        let mut heap = 1u64;
        let height = self.height();
        for depth in 0..=height {
            let Some(node) = self.trees.get_mut(t).and_then(|tr| tr.nodes.get_mut(idx)) else {
                return;
            };
            node.latest = node.latest.saturating_add(1);
            if depth == height || node.feature == NONE {
                return;
            }
            let (feature, threshold, left_child, right_child, seen) =
                (node.feature, node.threshold, node.left, node.right, node.latest);
            let go_left = match x.get(feature as usize) {
                Some(v) if !v.is_nan() => *v < threshold,
                _ => {
                    let nodes = self.trees.get(t).map(|tr| tr.nodes.as_slice()).unwrap_or(&[]);
                    latest_of(nodes, left_child) >= latest_of(nodes, right_child)
                }
            };
            path.push(Step { feature, threshold, left: go_left });
            heap = heap.wrapping_mul(2).wrapping_add(u64::from(!go_left));
            let child = if go_left { left_child } else { right_child };
            if child == NONE && seen < self.size_limit {
                // A score walk never goes below a node holding fewer than `size_limit` rows, so
                // cells under it need not exist yet (see the module docs).
                return;
            }
            idx = if child == NONE {
                let made = self.make_node(t, heap, depth + 1, path);
                let Some(tree) = self.trees.get_mut(t) else { return };
                let new_idx = tree.nodes.len() as u32;
                tree.nodes.push(made);
                if let Some(parent) = tree.nodes.get_mut(idx) {
                    if go_left {
                        parent.left = new_idx;
                    } else {
                        parent.right = new_idx;
                    }
                }
                new_idx as usize
            } else {
                child as usize
            };
        }
    }

    /// Sum over trees of the reference mass along the row's path, each level weighted by
    /// `2^depth`, divided by trees and reference rows: a multi-resolution density, large where
    /// the reference window was dense. Zero when no reference window exists yet.
    pub(crate) fn density(&self, x: &[f32]) -> f64 {
        if self.reference_rows == 0 {
            return 0.0;
        }
        let limit = self.size_limit.min(self.reference_rows / 10).max(1);
        let mut total = 0.0f64;
        for tree in &self.trees {
            let nodes = tree.nodes.as_slice();
            let mut idx = 0usize;
            let mut sum = 0u64;
            for depth in 0..=self.height() {
                let Some(node) = nodes.get(idx) else { break };
                let r = node.reference;
                sum = sum.saturating_add(u64::from(r).checked_shl(depth).unwrap_or(u64::MAX));
                if r < limit || depth == self.height() || node.feature == NONE {
                    break;
                }
                let go_left = match x.get(node.feature as usize) {
                    Some(v) if !v.is_nan() => *v < node.threshold,
                    _ => reference_of(nodes, node.left) >= reference_of(nodes, node.right),
                };
                let child = if go_left { node.left } else { node.right };
                if child == NONE {
                    break;
                }
                idx = child as usize;
            }
            total += sum as f64;
        }
        total / (self.trees.len().max(1) as f64 * f64::from(self.reference_rows))
    }

    /// The largest possible [`Self::density`] (every reference row in every cell of the path).
    pub(crate) fn max_density(&self) -> f64 {
        (2.0f64).powi(self.height() as i32 + 1) - 1.0
    }

    /// A new node at heap position `heap` (root = 1) and `depth`, whose cell is the unit cube cut
    /// by `path`.
    fn make_node(&self, t: usize, heap: u64, depth: u32, path: &[Step]) -> Node {
        let mut node = Node { feature: NONE, threshold: 0.0, latest: 0, reference: 0, left: NONE, right: NONE };
        if depth >= self.height() {
            return node;
        }
        // Cell bounds: the unit cube cut by the path; inactive features have no width.
        let mut lo: Vec<f32> = vec![0.0; self.active.len()];
        let mut hi: Vec<f32> = self.active.iter().map(|a| if *a { 1.0 } else { 0.0 }).collect();
        for step in path {
            let j = step.feature as usize;
            if step.left {
                if let Some(h) = hi.get_mut(j) {
                    *h = h.min(step.threshold);
                }
            } else if let Some(l) = lo.get_mut(j) {
                *l = l.max(step.threshold);
            }
        }
        let total: f32 = lo.iter().zip(&hi).map(|(l, h)| (h - l).max(0.0)).sum();
        if total <= 0.0 {
            return node;
        }
        let mut bits = mix(self.seed ^ mix(t as u64 + 1) ^ mix(heap.wrapping_mul(0x9E37_79B9)));
        let u1 = unit(bits);
        bits = mix(bits);
        let u2 = unit(bits);
        // Feature chosen with probability proportional to the cell's width along it (as River).
        let mut target = u1 * total;
        let mut chosen = None;
        for (j, (l, h)) in lo.iter().zip(&hi).enumerate() {
            let w = (h - l).max(0.0);
            if w > 0.0 {
                chosen = Some((j, *l, w));
                if target < w {
                    break;
                }
                target -= w;
            }
        }
        if let Some((j, l, w)) = chosen {
            node.feature = j as u32;
            node.threshold = l + w * (PADDING + u2 * (1.0 - 2.0 * PADDING));
        }
        node
    }
}

fn latest_of(nodes: &[Node], idx: u32) -> u32 {
    nodes.get(idx as usize).map_or(0, |n| n.latest)
}

fn reference_of(nodes: &[Node], idx: u32) -> u32 {
    nodes.get(idx as usize).map_or(0, |n| n.reference)
}

/// The tree after a window change: `latest` becomes `reference`, and only nodes that a score
/// walk can reach are kept (non-zero new reference, parent at or above `limit`).
/// Walks at most `height` levels, so a damaged tree (say, from an edited model file) with a
/// child pointing back up cannot make it loop.
fn compact(nodes: &[Node], limit: u32, height: u32) -> Vec<Node> {
    let mut out: Vec<Node> = Vec::new();
    let Some(root) = nodes.first() else { return out };
    out.push(Node { reference: root.latest, latest: 0, left: NONE, right: NONE, ..root.clone() });
    // (index in `nodes`, index in `out`, depth)
    let mut stack: Vec<(usize, usize, u32)> = vec![(0, 0, 0)];
    while let Some((old, new, depth)) = stack.pop() {
        let Some(node) = nodes.get(old) else { continue };
        if node.latest < limit || depth >= height {
            continue;
        }
        for (child, is_left) in [(node.left, true), (node.right, false)] {
            let Some(c) = nodes.get(child as usize) else { continue };
            if c.latest == 0 {
                continue;
            }
            let at = out.len();
            out.push(Node { reference: c.latest, latest: 0, left: NONE, right: NONE, ..c.clone() });
            if let Some(parent) = out.get_mut(new) {
                if is_left {
                    parent.left = at as u32;
                } else {
                    parent.right = at as u32;
                }
            }
            stack.push((child as usize, at, depth + 1));
        }
    }
    out
}

/// SplitMix64 finaliser. Hand-written rather than a `rand` generator because a node's split must
/// be a pure function of its position (so dropped nodes return identical), which a sequential
/// generator cannot give.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in `[0, 1)` from the top 24 bits.
fn unit(bits: u64) -> f32 {
    (bits >> 40) as f32 / (1u64 << 24) as f32
}
