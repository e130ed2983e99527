//! The transparency-dev RFC 6962 proof vectors (inclusion and consistency,
//! negative cases included), read from `../shared/data`. Missing data is a
//! failure, not a skip: these vectors are what proves the hashing correct.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};

use base64::Engine;
use caduceus_ledger::Hash;
use caduceus_ledger::merkle::{verify_consistency, verify_inclusion};
use serde::Deserialize;

fn testdata() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data/ct-merkle-vectors/transparency-dev-merkle/testdata");
    assert!(dir.is_dir(), "test vectors not found at {}", dir.display());
    dir
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(json_files(&path));
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// A hash field; anything that is not 32 bytes of base64 is `None` (the
/// negative vectors include empty and truncated hashes).
fn hash(value: &Option<String>) -> Option<Hash> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(value.as_deref()?).ok()?;
    bytes.try_into().ok()
}

fn hashes(values: &Option<Vec<String>>) -> Option<Vec<Hash>> {
    values.as_deref().unwrap_or_default().iter().map(|v| hash(&Some(v.clone()))).collect()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Inclusion {
    leaf_idx: u64,
    tree_size: u64,
    root: Option<String>,
    leaf_hash: Option<String>,
    proof: Option<Vec<String>>,
    #[serde(default)]
    desc: String,
    #[serde(default)]
    want_err: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Consistency {
    size1: u64,
    size2: u64,
    root1: Option<String>,
    root2: Option<String>,
    proof: Option<Vec<String>>,
    #[serde(default)]
    desc: String,
    #[serde(default)]
    want_err: bool,
}

#[test]
fn every_inclusion_vector() {
    let files = json_files(&testdata().join("inclusion"));
    assert!(files.len() > 50, "only {} inclusion vectors found", files.len());
    let (mut good, mut bad) = (0, 0);
    for file in &files {
        let case: Inclusion = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let outcome = match (hash(&case.leaf_hash), hash(&case.root), hashes(&case.proof)) {
            (Some(leaf), Some(root), Some(proof)) => {
                verify_inclusion(case.leaf_idx, case.tree_size, &leaf, &proof, &root).map_err(|e| e.to_string())
            }
            _ => Err("malformed hash".to_owned()),
        };
        assert_eq!(outcome.is_err(), case.want_err, "{}: {} gave {outcome:?}", file.display(), case.desc);
        if case.want_err { bad += 1 } else { good += 1 }
    }
    assert!(good > 0 && bad > 0, "expected both positive ({good}) and negative ({bad}) cases");
}

#[test]
fn every_consistency_vector() {
    let files = json_files(&testdata().join("consistency"));
    assert!(files.len() > 50, "only {} consistency vectors found", files.len());
    let (mut good, mut bad) = (0, 0);
    for file in &files {
        let case: Consistency = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
        let bytes = |v: &Option<String>| base64::engine::general_purpose::STANDARD.decode(v.as_deref()?).ok();
        let outcome = match (bytes(&case.root1), bytes(&case.root2), hashes(&case.proof)) {
            (Some(r1), Some(r2), Some(proof)) => {
                verify_consistency(case.size1, case.size2, &r1, &r2, &proof).map_err(|e| e.to_string())
            }
            _ => Err("malformed hash".to_owned()),
        };
        assert_eq!(outcome.is_err(), case.want_err, "{}: {} gave {outcome:?}", file.display(), case.desc);
        if case.want_err { bad += 1 } else { good += 1 }
    }
    assert!(good > 0 && bad > 0, "expected both positive ({good}) and negative ({bad}) cases");
}
