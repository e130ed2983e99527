//! ONNX models exported by a hospital's data scientist (scikit-learn through skl2onnx, or
//! PyTorch), run with the pure-Rust `tract-onnx`. It owns loading and running one model; which
//! dataset columns feed it is the model module's business.
//!
//! Contract:
//! - Input: the model's first graph input, one float tensor `[N, d]`; `d` is read from the
//!   model's declared input shape.
//! - Output: with two or more outputs, the second (skl2onnx classifiers output `label`, then
//!   `probabilities`); with one, the first. The attack score of a row is the last column of
//!   that output (`[N, k]`), or its value (`[N]`, `[N, 1]`). Export skl2onnx classifiers with
//!   `options={id(model): {'zipmap': False}}` (tract has no ZipMap); a PyTorch model should end
//!   in a sigmoid or softmax, since the score is used as it is.
//! - Supported ONNX-ML operators are tract's: TreeEnsembleClassifier, LinearClassifier,
//!   LinearRegressor, Normalizer, CategoryMapper, plus the standard operator set.
//!
//! A model file is outside input, and tract panics on some malformed graphs (the fuzz target
//! `ml_model` found a graph output that no node produces). Such names are checked here first,
//! with a clear error; every call into tract then runs behind [`guarded`], so a panic tract
//! still has becomes an error for this model instead of taking the server's thread down.

use std::sync::Arc;

use tract_onnx::prelude::*;
use tract_onnx::tract_core::dims;

use crate::onnx_trees::{Trees, check_tree_ensemble};
use crate::{MlError, Result};

/// ONNX files larger than this are refused (tree ensembles of 500 deep trees are ~50 MB).
pub const MAX_ONNX_BYTES: usize = 512 << 20;

/// A loaded, optimised ONNX model.
#[derive(Clone)]
pub struct OnnxModel {
    bytes: Arc<Vec<u8>>,
    plan: Arc<TypedRunnableModel>,
    dims: usize,
    output: usize,
    /// The direct tree evaluator, when the graph is one `TreeEnsembleClassifier` it covers
    /// and it agreed with tract on the probe rows at load (see `onnx_trees`).
    trees: Option<Arc<Trees>>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("bytes", &self.bytes.len())
            .field("dims", &self.dims)
            .field("output", &self.output)
            .field("direct_trees", &self.trees.is_some())
            .finish()
    }
}

fn err(e: impl std::fmt::Display) -> MlError {
    MlError::Onnx(format!("{e:#}"))
}

/// Run `f`, a call into tract, turning a panic into an error. tract's state is not reused
/// after a panic: the model being loaded is dropped, and a run only reads the shared plan.
fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
        .unwrap_or_else(|_| Err(MlError::Onnx(format!("the ONNX runtime (tract) failed while {what} this model"))))
}

/// Every graph output must be a graph input, an initializer or some node's output (tract
/// assumes so), and tree ensembles must be safe for tract to walk.
fn check_names(proto: &tract_onnx::pb::ModelProto) -> Result<()> {
    let graph = proto.graph.as_ref().ok_or_else(|| MlError::Onnx("model has no graph".into()))?;
    let mut known: std::collections::HashSet<&str> = graph.input.iter().map(|i| i.name.as_str()).collect();
    known.extend(graph.initializer.iter().map(|t| t.name.as_str()));
    known.extend(graph.node.iter().flat_map(|n| n.output.iter().map(String::as_str)).filter(|o| !o.is_empty()));
    if let Some(missing) = graph.output.iter().find(|o| !known.contains(o.name.as_str())) {
        return Err(MlError::Onnx(format!(
            "graph output {:?} is not produced by any node, input or initializer",
            missing.name.chars().take(64).collect::<String>()
        )));
    }
    if graph.output.is_empty() {
        return Err(MlError::Onnx("model has no output".into()));
    }
    check_nodes(graph)
}

/// Nodes tract trusts too far (see [`check_tree_ensemble`]), in the graph and its subgraphs.
fn check_nodes(graph: &tract_onnx::pb::GraphProto) -> Result<()> {
    for node in &graph.node {
        check_tree_ensemble(node).map_err(MlError::Onnx)?;
        for a in &node.attribute {
            for g in a.g.iter().chain(&a.graphs) {
                check_nodes(g)?;
            }
        }
    }
    Ok(())
}

impl OnnxModel {
    /// Parse, type and optimise an ONNX model for a batch of `[N, d]` float rows.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<OnnxModel> {
        if bytes.len() > MAX_ONNX_BYTES {
            return Err(MlError::Onnx(format!("model of {} bytes exceeds the limit of {MAX_ONNX_BYTES}", bytes.len())));
        }
        let onnx = tract_onnx::onnx();
        let proto = guarded("reading", || onnx.proto_model_for_read(&mut bytes.as_slice()).map_err(err))?;
        let dims = input_width(&proto)?;
        check_names(&proto)?;
        let (plan, output) = guarded("loading", || {
            let mut model = onnx.model_for_proto_model(&proto).map_err(err)?;
            let n = model.sym("N");
            model.set_input_fact(0, f32::fact(dims!(n, dims)).into()).map_err(err)?;
            let outputs = model.output_outlets().map_err(err)?.len();
            let output = if outputs >= 2 { 1 } else { 0 };
            let plan = model.into_optimized().map_err(err)?.into_runnable().map_err(err)?;
            Ok((plan, output))
        })?;
        let mut m = OnnxModel { bytes: Arc::new(bytes), plan, dims, output, trees: None };
        m.trees = direct_trees(&proto, &m).map(Arc::new);
        Ok(m)
    }

    /// Whether rows are scored by the direct tree evaluator rather than by tract.
    pub fn direct_trees(&self) -> bool {
        self.trees.is_some()
    }

    /// Features per row.
    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The model file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Attack scores of row-major `rows` (`dims` values each).
    pub fn predict_batch(&self, rows: &[f32]) -> Result<Vec<f32>> {
        if self.dims == 0 || !rows.len().is_multiple_of(self.dims) {
            return Err(MlError::Onnx(format!(
                "input of {} values is not a whole number of rows of {}",
                rows.len(),
                self.dims
            )));
        }
        let n = rows.len() / self.dims;
        if n == 0 {
            return Ok(Vec::new());
        }
        if let Some(trees) = &self.trees {
            let mut scratch = Vec::new();
            return Ok(rows.chunks_exact(self.dims).map(|r| trees.score(r, &mut scratch)).collect());
        }
        self.predict_batch_tract(rows, n)
    }

    fn predict_batch_tract(&self, rows: &[f32], n: usize) -> Result<Vec<f32>> {
        guarded("running", || self.predict_batch_tract_unguarded(rows, n))
    }

    fn predict_batch_tract_unguarded(&self, rows: &[f32], n: usize) -> Result<Vec<f32>> {
        let input = Tensor::from_shape(&[n, self.dims], rows).map_err(err)?;
        let outputs = self.plan.run(tvec!(input.into_tvalue())).map_err(err)?;
        let out = outputs.get(self.output).ok_or_else(|| MlError::Onnx("model produced too few outputs".into()))?;
        let out = out.cast_to::<f32>().map_err(err)?;
        let view = out.to_plain_array_view::<f32>().map_err(err)?;
        let shape = view.shape().to_vec();
        let scores: Vec<f32> = match shape.as_slice() {
            [rows_out] if *rows_out == n => view.iter().copied().collect(),
            [rows_out, k] if *rows_out == n && *k >= 1 => {
                view.rows().into_iter().map(|r| r.iter().last().copied().unwrap_or(f32::NAN)).collect()
            }
            _ => {
                return Err(MlError::Onnx(format!("output shape {shape:?} is not [{n}] or [{n}, k]")));
            }
        };
        Ok(scores)
    }

    /// Attack score of one row.
    pub fn predict(&self, row: &[f32]) -> Result<f32> {
        self.predict_batch(row)?.first().copied().ok_or_else(|| MlError::Onnx("no output for the row".into()))
    }
}

/// The direct evaluator for a graph that is exactly one `TreeEnsembleClassifier` reading the
/// input, if it covers the node and scores probe rows as tract does.
fn direct_trees(proto: &tract_onnx::pb::ModelProto, model: &OnnxModel) -> Option<Trees> {
    let graph = proto.graph.as_ref()?;
    let [node] = graph.node.as_slice() else { return None };
    let input = graph.input.iter().find(|i| !graph.initializer.iter().any(|t| t.name == i.name))?;
    if node.input.first() != Some(&input.name) || node.output.len() != 2 || model.output != 1 {
        return None;
    }
    // The probe rows below are `64 * dims` floats; a model declaring an absurd width (a damaged
    // or hostile file) keeps tract rather than making us allocate for it.
    if model.dims > 1 << 16 {
        return None;
    }
    let trees = Trees::from_node(node)?;
    if !trees.reads_within(model.dims) {
        return None;
    }
    // Probe rows: every threshold of every node as a feature value, shifted a little either
    // way, so both sides of each split are taken; plus all-missing and all-zero rows.
    let d = model.dims;
    let thresholds: Vec<f32> = node
        .attribute
        .iter()
        .find(|a| a.name == "nodes_values")
        .map(|a| a.floats.iter().copied().filter(|v| v.is_finite()).collect())
        .unwrap_or_default();
    let mut probe = vec![f32::NAN; d];
    probe.extend(std::iter::repeat_n(0.0, d));
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    for r in 0..62usize {
        for f in 0..d {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let pick = (seed >> 33) as usize;
            let t = thresholds.get(pick % thresholds.len().max(1)).copied().unwrap_or(0.0);
            let nudge = if (seed >> 20) & 1 == 0 { 1.0 - 1e-3 } else { 1.0 + 1e-3 };
            probe.push(if (r + f) % 17 == 0 { f32::NAN } else { t * nudge + (nudge - 1.0) });
        }
    }
    let rows = probe.len() / d.max(1);
    let theirs = model.predict_batch_tract(&probe, rows).ok()?;
    let mut scratch = Vec::new();
    let agree = probe.chunks_exact(d.max(1)).zip(&theirs).all(|(row, t)| {
        let ours = trees.score(row, &mut scratch);
        (ours - t).abs() <= 1e-4 * t.abs().max(1.0) || (ours.is_nan() && t.is_nan())
    });
    agree.then_some(trees)
}

/// The width `d` of the first real input (not an initializer), declared as `[N, d]`.
fn input_width(proto: &tract_onnx::pb::ModelProto) -> Result<usize> {
    use tract_onnx::pb::tensor_shape_proto::dimension::Value;
    use tract_onnx::pb::type_proto;
    let graph = proto.graph.as_ref().ok_or_else(|| MlError::Onnx("model has no graph".into()))?;
    let input = graph
        .input
        .iter()
        .find(|i| !graph.initializer.iter().any(|t| t.name == i.name))
        .ok_or_else(|| MlError::Onnx("model has no input".into()))?;
    let dims: Vec<Option<i64>> = match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t
            .shape
            .as_ref()
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match d.value {
                        Some(Value::DimValue(v)) => Some(v),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    match dims.as_slice() {
        [_, Some(d)] if *d > 0 => usize::try_from(*d).map_err(err),
        _ => Err(MlError::Onnx(
            "the model's first input must be declared as a float tensor [N, d] with a fixed d".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_an_error() {
        assert!(OnnxModel::from_bytes(b"not a model".to_vec()).is_err());
        assert!(OnnxModel::from_bytes(Vec::new()).is_err());
    }

    const FOREST: &[u8] = include_bytes!("../../../fuzz/seeds/ml_model/forest.onnx");

    fn forest_node() -> tract_onnx::pb::NodeProto {
        let proto = tract_onnx::onnx().proto_model_for_read(&mut &FOREST[..]).unwrap();
        proto.graph.unwrap().node.into_iter().find(|n| n.op_type == "TreeEnsembleClassifier").unwrap()
    }

    fn set_ints(node: &mut tract_onnx::pb::NodeProto, name: &str, f: impl FnOnce(&mut Vec<i64>)) {
        f(&mut node.attribute.iter_mut().find(|a| a.name == name).unwrap().ints);
    }

    /// What the fuzz target found in tract (a panic, and an out-of-bounds read where debug
    /// assertions are off) is refused before tract sees the model; a real export still loads.
    #[test]
    fn hostile_graphs_never_reach_tract() {
        let bad = include_bytes!("../../../fuzz/seeds/ml_model/output-no-node-produces.onnx");
        let e = OnnxModel::from_bytes(bad.to_vec()).unwrap_err().to_string();
        assert!(e.contains("is not produced by any node"), "{e}");
        let bad = include_bytes!("../../../fuzz/seeds/ml_model/class-id-past-labels.onnx");
        let e = OnnxModel::from_bytes(bad.to_vec()).unwrap_err().to_string();
        assert!(e.contains("names a class past the 2 declared"), "{e}");
        let forest = OnnxModel::from_bytes(FOREST.to_vec()).unwrap();
        assert!(forest.direct_trees());
        assert!(check_tree_ensemble(&forest_node()).is_ok());

        let mut cycle = forest_node();
        set_ints(&mut cycle, "nodes_truenodeids", |v| v[0] = 0);
        assert!(check_tree_ensemble(&cycle).unwrap_err().contains("reaches one node twice"));
        let mut outside = forest_node();
        set_ints(&mut outside, "nodes_falsenodeids", |v| v[0] = 99);
        assert!(check_tree_ensemble(&outside).unwrap_err().contains("outside its tree"));
        let mut gap = forest_node();
        set_ints(&mut gap, "nodes_nodeids", |v| v[1] = v.iter().max().unwrap() + 1);
        let e = check_tree_ensemble(&gap).unwrap_err();
        assert!(e.contains("not 0, 1, 2"), "{e}");
        let mut short = forest_node();
        set_ints(&mut short, "nodes_treeids", |v| {
            v.pop();
        });
        assert!(check_tree_ensemble(&short).unwrap_err().contains("different lengths"));
    }

    #[test]
    fn model_is_shareable_across_threads() {
        fn check<T: Send + Sync>() {}
        check::<OnnxModel>();
    }
}
