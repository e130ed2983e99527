//! Tests that need Python (from `TEST_PYTHON`, with scikit-learn, skl2onnx, onnx, numpy,
//! pandas and river): an ONNX model exported by skl2onnx scores in Rust as in Python, and the
//! peers script runs on a split written by Rust. Without `TEST_PYTHON` they skip loudly, unless
//! `TEST_REQUIRE_PYTHON=1`, in which case they fail.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use caduceus_ml::dataset::{Dataset, FeatureKind, LoadOptions};
use caduceus_ml::metrics::SplitKind;
use caduceus_ml::model::{self, FeatureValue, Model, ModelKind, OnnxSidecar};
use caduceus_ml::split::{self, SplitSpec};

fn data(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/")).join(rel)
}

/// The Python interpreter to use, or `None` (after a loud SKIP) when there is none.
fn python(modules: &str) -> Option<String> {
    let required = std::env::var("TEST_REQUIRE_PYTHON").is_ok_and(|v| v == "1");
    let Ok(py) = std::env::var("TEST_PYTHON") else {
        assert!(!required, "TEST_REQUIRE_PYTHON=1 but TEST_PYTHON is not set");
        eprintln!("SKIP: TEST_PYTHON is not set (a Python with {modules})");
        return None;
    };
    let ok = Command::new(&py).arg("-c").arg(format!("import {modules}")).status().is_ok_and(|s| s.success());
    if !ok {
        assert!(!required, "TEST_PYTHON={py} cannot import {modules}");
        eprintln!("SKIP: TEST_PYTHON={py} cannot import {modules}");
        return None;
    }
    Some(py)
}

fn run_python(py: &str, script: &Path, args: &[&str]) -> String {
    let out = Command::new(py).arg(script).args(args).output().unwrap();
    assert!(out.status.success(), "python failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Trains two scikit-learn models on UNSW-NB15's numeric columns, exports them with skl2onnx
/// and writes scikit-learn's own probabilities for every 80th row.
const EXPORT: &str = r#"
import json, sys
import numpy as np, pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from skl2onnx import to_onnx

csv_path, names_path, out_dir = sys.argv[1:4]
names = json.load(open(names_path))
df = pd.read_csv(csv_path, encoding="utf-8-sig")
X = df[names].to_numpy(dtype=np.float32)
y = df["label"].to_numpy()
train = np.arange(0, len(df), 7)
rows = np.arange(0, len(df), 80)[:1000]
models = {
    "rf": RandomForestClassifier(n_estimators=20, max_depth=10, random_state=0),
    # Plain LinearClassifier: tract has no ONNX-ML Scaler, so no StandardScaler in front.
    "logreg": LogisticRegression(max_iter=300),
}
result = {"rows": rows.tolist()}
for key, m in models.items():
    m.fit(X[train], y[train])
    onx = to_onnx(m, X[:1], options={id(m): {"zipmap": False}})
    with open(f"{out_dir}/{key}.onnx", "wb") as f:
        f.write(onx.SerializeToString())
    result[key] = m.predict_proba(X[rows])[:, 1].astype(float).tolist()
json.dump(result, open(f"{out_dir}/proba.json", "w"))
"#;

#[test]
fn sklearn_onnx_scores_match_python() {
    let Some(py) = python("sklearn, skl2onnx, onnx, numpy, pandas") else {
        return;
    };
    let csv = data("unsw-nb15/UNSW_NB15_training-set.csv");
    let ds = Dataset::load(&csv, &LoadOptions::default()).unwrap();
    let names: Vec<String> =
        ds.features.iter().filter(|f| f.kind == FeatureKind::Numeric).map(|f| f.name.clone()).collect();
    assert_eq!(names.len(), 39, "42 features minus proto, service, state");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("export.py");
    std::fs::write(&script, EXPORT).unwrap();
    let names_path = dir.path().join("names.json");
    std::fs::write(&names_path, serde_json::to_vec(&names).unwrap()).unwrap();
    let t = std::time::Instant::now();
    run_python(&py, &script, &[csv.to_str().unwrap(), names_path.to_str().unwrap(), dir.path().to_str().unwrap()]);
    eprintln!("python export took {:?}", t.elapsed());
    let proba: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("proba.json")).unwrap()).unwrap();
    let rows: Vec<usize> = proba["rows"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(rows.len(), 1000);
    let cols: Vec<usize> = names.iter().map(|n| ds.features.iter().position(|f| &f.name == n).unwrap()).collect();
    let mut x = Vec::new();
    for &r in &rows {
        let row = ds.row(r).unwrap();
        x.extend(cols.iter().map(|c| row[*c]));
    }
    for key in ["rf", "logreg"] {
        let onnx_path = dir.path().join(format!("{key}.onnx"));
        // With a sidecar naming the inputs, Model::load matches dataset columns by name.
        let sidecar = OnnxSidecar { features: names.clone(), threshold: None };
        std::fs::write(dir.path().join(format!("{key}.onnx.json")), serde_json::to_vec(&sidecar).unwrap()).unwrap();
        let t = std::time::Instant::now();
        let m = Model::load(&onnx_path).unwrap();
        eprintln!("{key}: loaded in {:?}", t.elapsed());
        assert_eq!(m.kind(), ModelKind::Onnx);
        assert_eq!(m.feature_names(), names.as_slice());
        // Tree ensembles are scored by the direct evaluator (tract's is far too slow), the
        // linear model by tract; both must match Python below.
        assert_eq!(m.onnx().unwrap().direct_trees(), key != "logreg", "{key}");
        let ours = m.score_batch(&x).unwrap();
        eprintln!("{key}: scored 1000 rows at {:?}", t.elapsed());
        let theirs: Vec<f64> = proba[key].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
        assert_eq!(ours.len(), theirs.len());
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            assert!((f64::from(*a) - b).abs() <= 1e-4, "{key} row {}: rust {a} python {b}", rows[i]);
        }
        // One row through the single-row and live-flow paths gives the same score.
        let first = &x[..names.len()];
        assert!((m.score_row(first) - ours[0]).abs() <= 1e-6);
        let live =
            m.score_with(&|name| names.iter().position(|n| n == name).map(|i| FeatureValue::Num(f64::from(first[i]))));
        assert!((live - ours[0]).abs() <= 1e-6);
        // Evaluating another file (not its training file: split "all"): the sampled rows. (The
        // whole file is too slow for tract in a debug build.)
        let sample = ds.select_rows(&rows);
        let report = model::evaluate(&m, &sample).unwrap();
        eprintln!("{key}: evaluated at {:?}", t.elapsed());
        assert_eq!(report.split, SplitKind::All);
        assert_eq!(report.rows, 1000);
        assert!(report.roc_auc.unwrap() > 0.8, "{key}: {report}");
        // Without the sidecar, the inputs are the dataset's columns in order, and UNSW-NB15's
        // categorical columns are refused with a clear error.
        let bare = Model::from_bytes(&std::fs::read(&onnx_path).unwrap()).unwrap();
        let err = model::evaluate(&bare, &ds).unwrap_err().to_string();
        assert!(err.contains("sidecar") || err.contains("categorical"), "{err}");
    }
}

#[test]
fn peers_script_runs_on_a_rust_split() {
    let Some(py) = python("sklearn, numpy, pandas, river") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("toy.csv");
    let mut text = String::from("\u{feff}id,a,proto,b,label\r\n");
    for i in 0..3000u32 {
        let attack = i % 4 == 0;
        let a = if attack { 50 + i % 30 } else { i % 40 };
        let proto = if attack && i % 3 == 0 { "udp" } else { "tcp" };
        let b = if i % 10 == 0 { "-".to_owned() } else { (i % 13).to_string() };
        text.push_str(&format!("{i},{a},{proto},{b},{}\r\n", if attack { "attack" } else { "normal" }));
    }
    std::fs::write(&csv, text).unwrap();
    let opts = LoadOptions {
        label_column: Some("label".into()),
        drop_columns: Some(vec!["id".into()]),
        ..LoadOptions::default()
    };
    let ds = Dataset::load(&csv, &opts).unwrap();
    let split_file = dir.path().join("split.json");
    let s = split::write_split_file(&split_file, &ds, &SplitSpec::default(), &opts.normal_values).unwrap();
    let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/peers.py");
    for model_name in ["rf", "river-hst"] {
        let out = run_python(
            &py,
            &peers,
            &["--dataset", csv.to_str().unwrap(), "--split-file", split_file.to_str().unwrap(), "--model", model_name],
        );
        let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
        for k in ["precision", "recall", "f1", "roc_auc", "accuracy", "confusion_matrix"] {
            assert!(v.get(k).is_some(), "{model_name}: missing {k} in {out}");
        }
        assert_eq!(v["rows"].as_u64().unwrap() as usize, s.test.len());
        if model_name == "rf" {
            assert!(v["f1"].as_f64().unwrap() > 0.95, "{out}");
        }
    }
}
