//! The train/test split every number in this project is measured on. It owns which row is a
//! training row and which a test row; fitting code must only ever be handed training rows.
//!
//! The split (quoted by the bench and the README): **stratified by label, seed 42, 30 % test**.
//! Exactly:
//! 1. A SplitMix64 generator is seeded with 42.
//! 2. For label 0, then label 1: the row indices with that label, ascending, are shuffled by
//!    Fisher–Yates (`for i in (1..n).rev() { j = next_u64() % (i + 1); swap(i, j) }`) with that
//!    one generator; the first `round(n * 0.3)` (half away from zero) are test rows, the rest
//!    training rows.
//! 3. Both lists are sorted ascending.
//!
//! The validation slice (early stopping, threshold choice) is carved from the training rows
//! alone by the same procedure with seed 43 and 20 %: the test rows never influence a model.
//!
//! [`write_split_file`] writes the split as JSON for the Python peers (`python/peers.py`), so
//! that they do not reimplement it.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::dataset::{Dataset, FeatureKind};
use crate::{MlError, Result};

/// The seed of the test split.
pub const SEED: u64 = 42;
/// The fraction of rows (per label) in the test split.
pub const TEST_FRACTION: f64 = 0.3;
/// The seed of the validation slice carved from the training rows.
pub const VALIDATION_SEED: u64 = 43;
/// The fraction of training rows (per label) in the validation slice.
pub const VALIDATION_FRACTION: f64 = 0.2;

/// How a split was made; stored in model files so evaluation can redo it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SplitSpec {
    pub seed: u64,
    pub test_fraction: f64,
    /// Always `"label"`: the split keeps the attack rate of both parts equal.
    pub stratify: Stratify,
}

/// What the split is stratified by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stratify {
    Label,
}

impl Default for SplitSpec {
    fn default() -> Self {
        Self { seed: SEED, test_fraction: TEST_FRACTION, stratify: Stratify::Label }
    }
}

/// Row indices of the two parts, each ascending.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fully specified, the same on every platform.
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Split the rows `0..labels.len()` as the module doc says.
pub fn indices(labels: &[u8], spec: &SplitSpec) -> Split {
    let all: Vec<usize> = (0..labels.len()).collect();
    split_subset(&all, labels, spec.seed, spec.test_fraction)
}

/// Carve the validation slice from training rows: returns (fit rows, validation rows).
pub fn validation(train: &[usize], labels: &[u8]) -> (Vec<usize>, Vec<usize>) {
    let s = split_subset(train, labels, VALIDATION_SEED, VALIDATION_FRACTION);
    (s.train, s.test)
}

/// Stratified split of `rows` (row indices into `labels`).
fn split_subset(rows: &[usize], labels: &[u8], seed: u64, fraction: f64) -> Split {
    let mut rng = SplitMix64(seed);
    let mut train = Vec::with_capacity(rows.len());
    let mut test = Vec::new();
    for class in [0u8, 1u8] {
        let mut idx: Vec<usize> =
            rows.iter().copied().filter(|r| labels.get(*r).map(|l| u8::from(*l != 0)) == Some(class)).collect();
        for i in (1..idx.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            idx.swap(i, j);
        }
        let n_test = ((idx.len() as f64) * fraction.clamp(0.0, 1.0)).round() as usize;
        let n_test = n_test.min(idx.len());
        let (t, rest) = idx.split_at(n_test);
        test.extend_from_slice(t);
        train.extend_from_slice(rest);
    }
    train.sort_unstable();
    test.sort_unstable();
    Split { train, test }
}

/// The split file read by `python/peers.py`: the split, and the columns the Rust side used, so
/// the peer learns the same features from the same rows.
#[derive(Debug, Serialize, Deserialize)]
pub struct SplitFile {
    /// Always `"caduceus-split"`.
    pub format: String,
    /// Always 1.
    pub version: u32,
    pub spec: SplitSpec,
    pub fingerprint: String,
    pub rows: usize,
    pub label_column: String,
    pub normal_values: Vec<String>,
    pub dropped_columns: Vec<String>,
    /// Feature columns with their kind: `numeric` or `categorical`.
    pub features: Vec<SplitFeature>,
    /// Attack rows in each part, so the reader can check it labelled the rows the same way.
    pub train_attacks: usize,
    pub test_attacks: usize,
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

/// A feature column named in a split file.
#[derive(Debug, Serialize, Deserialize)]
pub struct SplitFeature {
    pub name: String,
    pub kind: String,
}

/// Write the split of `ds` (with `spec`) to `path` as JSON; `normal_values` are the label values
/// the dataset was loaded with.
pub fn write_split_file(path: &Path, ds: &Dataset, spec: &SplitSpec, normal_values: &[String]) -> Result<Split> {
    let split = indices(&ds.labels, spec);
    let attacks = |rows: &[usize]| rows.iter().filter(|r| ds.labels.get(**r) == Some(&1)).count();
    let file = SplitFile {
        format: "caduceus-split".to_owned(),
        version: 1,
        spec: *spec,
        fingerprint: ds.fingerprint.clone(),
        rows: ds.rows(),
        label_column: ds.label_column.clone(),
        normal_values: normal_values.to_vec(),
        dropped_columns: ds.dropped_columns.clone(),
        features: ds
            .features
            .iter()
            .map(|f| SplitFeature {
                name: f.name.clone(),
                kind: match f.kind {
                    FeatureKind::Numeric => "numeric".to_owned(),
                    FeatureKind::Categorical { .. } => "categorical".to_owned(),
                },
            })
            .collect(),
        train_attacks: attacks(&split.train),
        test_attacks: attacks(&split.test),
        train: split.train,
        test: split.test,
    };
    let json = serde_json::to_vec(&file).map_err(|e| MlError::Dataset(e.to_string()))?;
    std::fs::write(path, json).map_err(|source| MlError::Io { file: path.display().to_string(), source })?;
    Ok(Split { train: file.train, test: file.test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize, every: usize) -> Vec<u8> {
        (0..n).map(|i| u8::from(i % every == 0)).collect()
    }

    #[test]
    fn deterministic_and_disjoint() {
        let l = labels(1000, 3);
        let a = indices(&l, &SplitSpec::default());
        let b = indices(&l, &SplitSpec::default());
        assert_eq!(a, b);
        assert_eq!(a.train.len() + a.test.len(), 1000);
        let mut all: Vec<usize> = a.train.iter().chain(&a.test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
        let other = indices(&l, &SplitSpec { seed: 7, ..SplitSpec::default() });
        assert_ne!(a.test, other.test);
    }

    #[test]
    fn stratified_by_label() {
        let l = labels(1000, 4); // 250 attacks, 750 normal
        let s = indices(&l, &SplitSpec::default());
        let test_attacks = s.test.iter().filter(|r| l[**r] == 1).count();
        assert_eq!(test_attacks, 75); // round(250 * 0.3)
        assert_eq!(s.test.len() - test_attacks, 225); // round(750 * 0.3)
        let (fit, val) = validation(&s.train, &l);
        assert_eq!(fit.len() + val.len(), s.train.len());
        assert!(val.iter().all(|r| s.train.binary_search(r).is_ok()));
        assert_eq!(val.iter().filter(|r| l[**r] == 1).count(), 35); // round(175 * 0.2)
    }

    #[test]
    fn known_first_draws() {
        // Pins the generator and the shuffle so the documented procedure cannot drift.
        let mut g = SplitMix64(42);
        assert_eq!(g.next_u64(), 0xBDD7_3226_2FEB_6E95);
        let l = vec![0u8; 10];
        let s = indices(&l, &SplitSpec::default());
        assert_eq!(s.test.len(), 3);
        assert_eq!(s, indices(&l, &SplitSpec::default()));
    }
}
