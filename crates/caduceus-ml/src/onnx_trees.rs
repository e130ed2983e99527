//! A direct evaluator for ONNX-ML `TreeEnsembleClassifier`, the one node skl2onnx writes for a
//! scikit-learn forest or gradient-boosting classifier.
//!
//! Why not tract alone: tract 0.23 finds a leaf's class weights by skipping through every
//! earlier leaf of the ensemble (`outer_iter().skip(start)`), so each tree costs time in the
//! number of leaves before it: a 100-tree forest of depth 12 scored 43 rows per second. This
//! walks the same nodes with the leaf's weights at hand. The model is still parsed, typed and
//! run by tract at load; [`OnnxModel`](crate::onnx::OnnxModel) uses this evaluator only when
//! the graph is that single node and both agree on probe rows, and keeps tract otherwise.
//!
//! Semantics (ONNX-ML operator spec, as tract and onnxruntime read it): a node sends the row
//! to its true child when the comparison holds (`BRANCH_LEQ`: `x <= value`, ...), a missing
//! value to the true child when `nodes_missing_value_tracks_true` says so; a class's score is
//! the sum of the leaf weights reached for it plus `base_values`, then `post_transform`. With
//! one score column and two class labels (binary gradient boosting) the attack probability is
//! the transformed score itself.

use tract_onnx::pb::{AttributeProto, NodeProto};

/// Comparisons a branch may make.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

#[derive(Clone, Copy, Debug)]
struct Node {
    mode: Mode,
    feature: u32,
    value: f32,
    nan_true: bool,
    /// Flat indices of the children.
    true_child: u32,
    false_child: u32,
    /// Range of this leaf's votes in `votes`.
    votes: (u32, u32),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Post {
    None,
    Logistic,
    Softmax,
}

/// A tree ensemble classifier read from an ONNX node.
#[derive(Clone, Debug)]
pub(crate) struct Trees {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    /// (score column, weight) per vote.
    votes: Vec<(u32, f32)>,
    columns: usize,
    base: Vec<f32>,
    post: Post,
    /// Longest root-to-leaf walk, so a damaged model cannot loop.
    max_steps: usize,
    /// Highest feature index read.
    max_feature: usize,
}

fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

fn ints<'a>(node: &'a NodeProto, name: &str) -> &'a [i64] {
    attr(node, name).map_or(&[], |a| a.ints.as_slice())
}

fn floats<'a>(node: &'a NodeProto, name: &str) -> &'a [f32] {
    attr(node, name).map_or(&[], |a| a.floats.as_slice())
}

/// Refuse a `TreeEnsembleClassifier` or `TreeEnsembleRegressor` node that tract 0.23 could not
/// walk safely; `Ok` for any other node.
///
/// tract's tree ensemble trusts the file. It reads class ids and child node ids without
/// bounds checks (`get_unchecked`) and follows children until it reaches a leaf. A damaged
/// or hostile file could make it read out of bounds or loop forever; the fuzz target
/// `ml_model` found the first, a class id past the labels. So before tract sees the node:
/// - every class (or target) id must be below the number of labels (or targets);
/// - every tree's node ids must be exactly 0, 1, 2 and so on (tract addresses children as
///   the tree's first node plus the id);
/// - every branch's children must be nodes of its own tree;
/// - the walk from each root must reach no node twice (no cycle).
pub(crate) fn check_tree_ensemble(node: &NodeProto) -> std::result::Result<(), String> {
    let classifier = match node.op_type.as_str() {
        "TreeEnsembleClassifier" => true,
        "TreeEnsembleRegressor" => false,
        _ => return Ok(()),
    };
    let (labels, ids) = if classifier {
        let labels = ints(node, "classlabels_int64s")
            .len()
            .max(attr(node, "classlabels_strings").map_or(0, |a| a.strings.len()));
        (labels, ints(node, "class_ids"))
    } else {
        let targets = attr(node, "n_targets").map_or(0, |a| a.i);
        (usize::try_from(targets).unwrap_or(0), ints(node, "target_ids"))
    };
    if ids.iter().any(|c| usize::try_from(*c).map_or(true, |c| c >= labels)) {
        return Err(format!("{}: a leaf names a class past the {labels} declared", node.op_type));
    }
    let tree_ids = ints(node, "nodes_treeids");
    let node_ids = ints(node, "nodes_nodeids");
    let trues = ints(node, "nodes_truenodeids");
    let falses = ints(node, "nodes_falsenodeids");
    let modes = attr(node, "nodes_modes").map_or(&[][..], |a| a.strings.as_slice());
    let n = tree_ids.len();
    if [node_ids.len(), trues.len(), falses.len(), modes.len()].iter().any(|l| *l != n) {
        return Err(format!("{}: node attributes of different lengths", node.op_type));
    }
    // Per tree, by node id: unset, or the node's children (`None` for a leaf).
    type Slots = Vec<Option<Option<(i64, i64)>>>;
    let mut trees: std::collections::BTreeMap<i64, Slots> = Default::default();
    for i in 0..n {
        let (Some(t), Some(id), Some(mode), Some(l), Some(r)) =
            (tree_ids.get(i), node_ids.get(i), modes.get(i), trues.get(i), falses.get(i))
        else {
            return Err(format!("{}: node attributes of different lengths", node.op_type));
        };
        let nodes = trees.entry(*t).or_default();
        let Some(id) = usize::try_from(*id).ok().filter(|id| *id < n) else {
            return Err(format!("{}: a node id out of range", node.op_type));
        };
        if nodes.len() <= id {
            nodes.resize(id + 1, None);
        }
        let Some(slot) = nodes.get_mut(id) else { continue };
        if slot.is_some() {
            return Err(format!("{}: a node id given twice in one tree", node.op_type));
        }
        *slot = Some((mode.as_slice() != b"LEAF").then_some((*l, *r)));
    }
    for nodes in trees.values() {
        if nodes.iter().any(Option::is_none) {
            return Err(format!("{}: a tree's node ids are not 0, 1, 2, ...", node.op_type));
        }
        let mut seen = vec![false; nodes.len()];
        let mut stack = vec![0i64];
        while let Some(id) = stack.pop() {
            let Some(k) = usize::try_from(id).ok().filter(|k| *k < nodes.len()) else {
                return Err(format!("{}: a branch points outside its tree", node.op_type));
            };
            if seen.get(k).copied().unwrap_or(true) {
                return Err(format!("{}: a tree reaches one node twice", node.op_type));
            }
            if let Some(s) = seen.get_mut(k) {
                *s = true;
            }
            if let Some(Some(Some((l, r)))) = nodes.get(k) {
                stack.push(*l);
                stack.push(*r);
            }
        }
    }
    Ok(())
}

impl Trees {
    /// Read a `TreeEnsembleClassifier` node; `None` for anything this evaluator does not
    /// cover (tract then runs the model).
    pub(crate) fn from_node(node: &NodeProto) -> Option<Trees> {
        if node.op_type != "TreeEnsembleClassifier" {
            return None;
        }
        // Values given only as tensors, or string-valued attributes we do not read.
        if attr(node, "nodes_values_as_tensor").is_some()
            || attr(node, "class_weights_as_tensor").is_some()
            || attr(node, "base_values_as_tensor").is_some()
        {
            return None;
        }
        let tree_ids = ints(node, "nodes_treeids");
        let node_ids = ints(node, "nodes_nodeids");
        let features = ints(node, "nodes_featureids");
        let values = floats(node, "nodes_values");
        let modes = &attr(node, "nodes_modes")?.strings;
        let trues = ints(node, "nodes_truenodeids");
        let falses = ints(node, "nodes_falsenodeids");
        let missing = ints(node, "nodes_missing_value_tracks_true");
        let n = tree_ids.len();
        if n == 0
            || [node_ids.len(), features.len(), values.len(), modes.len(), trues.len(), falses.len()]
                .iter()
                .any(|l| *l != n)
            || (!missing.is_empty() && missing.len() != n)
        {
            return None;
        }
        let labels = attr(node, "classlabels_int64s")
            .map(|a| a.ints.len())
            .filter(|l| *l > 0)
            .or_else(|| attr(node, "classlabels_strings").map(|a| a.strings.len()))?;
        let class_trees = ints(node, "class_treeids");
        let class_nodes = ints(node, "class_nodeids");
        let class_ids = ints(node, "class_ids");
        let class_weights = floats(node, "class_weights");
        let v = class_trees.len();
        if [class_nodes.len(), class_ids.len(), class_weights.len()].iter().any(|l| *l != v) {
            return None;
        }
        let columns = class_ids.iter().copied().max().map_or(0, |m| m + 1);
        let columns = usize::try_from(columns).ok()?;
        // One column for two labels (binary boosting), else one column per label.
        if !(columns == labels || (columns == 1 && labels == 2)) {
            return None;
        }
        let post = match attr(node, "post_transform").map(|a| a.s.as_slice()) {
            None | Some(b"NONE") => Post::None,
            Some(b"LOGISTIC") => Post::Logistic,
            Some(b"SOFTMAX") => Post::Softmax,
            Some(_) => return None,
        };
        let base = floats(node, "base_values").to_vec();
        if !base.is_empty() && base.len() != columns {
            return None;
        }

        // (tree, node id) -> flat index.
        let mut index = std::collections::HashMap::with_capacity(n);
        for (i, (t, id)) in tree_ids.iter().zip(node_ids).enumerate() {
            if index.insert((*t, *id), u32::try_from(i).ok()?).is_some() {
                return None;
            }
        }
        let mut votes_of: Vec<Vec<(u32, f32)>> = vec![Vec::new(); n];
        for (((t, id), c), w) in class_trees.iter().zip(class_nodes).zip(class_ids).zip(class_weights) {
            let at = *index.get(&(*t, *id))? as usize;
            votes_of.get_mut(at)?.push((u32::try_from(*c).ok()?, *w));
        }
        let mut nodes = Vec::with_capacity(n);
        let mut votes = Vec::new();
        let mut roots: Vec<(i64, u32)> = Vec::new();
        let mut max_feature = 0usize;
        for i in 0..n {
            let t = *tree_ids.get(i)?;
            let mode = match modes.get(i)?.as_slice() {
                b"BRANCH_LEQ" => Mode::Leq,
                b"BRANCH_LT" => Mode::Lt,
                b"BRANCH_GTE" => Mode::Gte,
                b"BRANCH_GT" => Mode::Gt,
                b"BRANCH_EQ" => Mode::Eq,
                b"BRANCH_NEQ" => Mode::Neq,
                b"LEAF" => Mode::Leaf,
                _ => return None,
            };
            let (true_child, false_child) = if mode == Mode::Leaf {
                (0, 0)
            } else {
                (*index.get(&(t, *trues.get(i)?))?, *index.get(&(t, *falses.get(i)?))?)
            };
            let feature = u32::try_from(*features.get(i)?).ok()?;
            if mode != Mode::Leaf {
                max_feature = max_feature.max(feature as usize);
            }
            let start = u32::try_from(votes.len()).ok()?;
            votes.extend(votes_of.get(i)?.iter().copied());
            let end = u32::try_from(votes.len()).ok()?;
            nodes.push(Node {
                mode,
                feature,
                value: *values.get(i)?,
                nan_true: missing.get(i).is_some_and(|m| *m != 0),
                true_child,
                false_child,
                votes: (start, end),
            });
            if *node_ids.get(i)? == 0 {
                roots.push((t, u32::try_from(i).ok()?));
            }
        }
        // Trees in id order, as the scores are summed in.
        roots.sort_unstable();
        let roots: Vec<u32> = roots.into_iter().map(|(_, r)| r).collect();
        if roots.is_empty() {
            return None;
        }
        Some(Trees { nodes, roots, votes, columns, base, post, max_steps: n, max_feature })
    }

    /// Whether rows of `dims` features can be scored (every feature a node reads exists).
    pub(crate) fn reads_within(&self, dims: usize) -> bool {
        self.max_feature < dims
    }

    /// The attack score of one row: the last probability column, as the tract path reads it.
    pub(crate) fn score(&self, row: &[f32], scores: &mut Vec<f32>) -> f32 {
        scores.clear();
        scores.resize(self.columns, 0.0);
        for &root in &self.roots {
            let mut i = root as usize;
            let mut steps = 0usize;
            while let Some(node) = self.nodes.get(i) {
                if node.mode == Mode::Leaf {
                    let (a, b) = node.votes;
                    for (c, w) in self.votes.get(a as usize..b as usize).unwrap_or_default() {
                        if let Some(s) = scores.get_mut(*c as usize) {
                            *s += *w;
                        }
                    }
                    break;
                }
                steps += 1;
                if steps > self.max_steps {
                    break;
                }
                let x = row.get(node.feature as usize).copied().unwrap_or(f32::NAN);
                let go_true = if x.is_nan() {
                    node.nan_true
                } else {
                    match node.mode {
                        Mode::Leq => x <= node.value,
                        Mode::Lt => x < node.value,
                        Mode::Gte => x >= node.value,
                        Mode::Gt => x > node.value,
                        Mode::Eq => x == node.value,
                        Mode::Neq => x != node.value,
                        Mode::Leaf => false,
                    }
                };
                i = if go_true { node.true_child } else { node.false_child } as usize;
            }
        }
        for (s, b) in scores.iter_mut().zip(&self.base) {
            *s += *b;
        }
        match self.post {
            Post::None => {}
            Post::Logistic => scores.iter_mut().for_each(|s| *s = 1.0 / (1.0 + (-*s).exp())),
            Post::Softmax => {
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                scores.iter_mut().for_each(|s| *s /= sum);
            }
        }
        scores.last().copied().unwrap_or(f32::NAN)
    }
}
