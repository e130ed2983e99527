//! Caduceus ransomware sensor: watches directory trees for the marks mass
//! encryption leaves (canary files touched, high-entropy rewrites that change
//! a file's type, bursts of renames to unknown extensions and of deletions),
//! scores them per writing process and runs a configured response.
//!
//! Also here: a ransomware simulator that is safe by construction (it only
//! touches a corpus it made itself, guarded by a marker file), benign heavy
//! workloads, and the measurement of files lost before detection.
//!
//! Nothing here names a document in plain text: reports carry keyed hashes of
//! paths relative to the watched root, and only the extension.

pub mod canary;
pub mod entropy;
mod error;
pub mod magic;
pub mod measure;
pub mod report;
pub mod score;
pub mod sensor;
pub mod simulate;

pub use error::SensorError;
pub use measure::{
    BenignMeasurement, MeasureOptions, Measurement, StyleSummary, measure_benign, measure_style, measure_style_trials,
};
pub use report::{Counts, PathHasher, Report, Status, Verdict};
pub use score::ScoreConfig;
pub use sensor::{FanotifyMode, Response, Sensor, SensorConfig, SensorHandle, SensorStats};
pub use simulate::{
    BenignOutcome, BenignWorkload, Order, SimOptions, SimOutcome, Style, is_corpus, make_corpus, run_benign,
    simulate_ransomware,
};

/// Result of this crate's fallible operations.
pub type Result<T, E = SensorError> = std::result::Result<T, E>;
