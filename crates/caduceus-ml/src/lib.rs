//! Caduceus ML: learn and score labelled or unlabelled flow features.
//!
//! The pieces, in the order data flows through them:
//! - [`dataset`] loads a CSV file or a directory of CSVs (UNSW-NB15, CIC-IDS2017, TON_IoT
//!   or any CSV with a named label column) into a row-major `f32` matrix with labels;
//! - [`split`] is the one fixed train/test split every number in this project is measured on;
//! - [`gbt`] is the supervised model (gradient-boosted trees, written here) and [`forest`] its
//!   alternative (a random forest scored by the same tree arrays); the online kind is
//!   `caduceus_anomaly::OnlineDetector` fitted without labels, and [`onnx`] runs a model
//!   exported from scikit-learn or PyTorch;
//! - [`model`] is the versioned model file the server hot-loads, with `train` and `evaluate`;
//! - [`metrics`] turns scores into precision, recall, F1, ROC AUC and a confusion matrix.
//!
//! This crate does no I/O beyond reading the files it is given and writing the model file it is
//! asked to write; it keeps no clock and logs nothing that came from a data file.

pub mod dataset;
pub mod forest;
pub mod gbt;
pub mod metrics;
pub mod model;
pub mod onnx;
mod onnx_trees;
pub mod split;

pub use dataset::{Dataset, Feature, FeatureKind, Limits, LoadOptions};
pub use metrics::{Confusion, Report, SplitKind};
pub use model::{FeatureValue, Model, ModelKind, TrainOptions, evaluate, train, train_best};

/// Everything that can go wrong in this crate. Messages name the file, line and column where one
/// is involved, never a cell's contents (a data file may hold anything).
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// Reading a file failed.
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A CSV file is malformed at a given line.
    #[error("{file}, line {line}: {reason}")]
    Csv { file: String, line: u64, reason: String },
    /// A size cap was exceeded.
    #[error("{file}: {what} exceeds the limit of {limit}")]
    Limit { file: String, what: &'static str, limit: u64 },
    /// The dataset does not fit what was asked of it (missing label column, no rows, one class).
    #[error("dataset: {0}")]
    Dataset(String),
    /// A model file is malformed, of an unknown version, or does not fit the data.
    #[error("model: {0}")]
    Model(String),
    /// The ONNX runtime refused the model or the input.
    #[error("onnx: {0}")]
    Onnx(String),
}

/// The crate's result type.
pub type Result<T, E = MlError> = std::result::Result<T, E>;

/// Fuzz entry point: a model file from bytes (our JSON `gbt`/`online` files, or ONNX, which
/// tract parses and our tree evaluator reads), then a row of values and a row of missing values
/// scored. Never panics; the result is dropped.
pub fn fuzz_model(bytes: &[u8]) {
    if let Ok(model) = Model::from_bytes(bytes)
        && model.dims() <= 4096
    {
        let _ = model.score_row(&vec![0.5; model.dims()]);
        let _ = model.score_row(&vec![f32::NAN; model.dims()]);
    }
}

/// Fuzz entry point: parse a CSV from bytes with small caps. Never panics; the result is dropped.
///
/// The label column is the last header cell, so that random input gets past the header.
pub fn fuzz_dataset(bytes: &[u8]) {
    let first_line = bytes.split(|b| *b == b'\n').next().unwrap_or_default();
    let label = String::from_utf8_lossy(first_line)
        .rsplit(',')
        .next()
        .map(|s| s.trim().trim_start_matches('\u{feff}').to_owned());
    let opts = LoadOptions {
        label_column: label,
        limits: Limits {
            max_total_bytes: 1 << 20,
            max_rows: 10_000,
            max_columns: 64,
            max_cell_bytes: 1024,
            max_vocabulary: 1024,
        },
        ..LoadOptions::default()
    };
    if let Ok(ds) = Dataset::from_reader(bytes, "fuzz", &opts) {
        let _ = split::indices(&ds.labels, &split::SplitSpec::default());
    }
}
