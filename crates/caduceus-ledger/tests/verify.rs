#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! Offline verification: a sound ledger passes, and every flipped byte in
//! its records, nodes, tree state or checkpoints is reported.

use std::path::Path;

use caduceus_ledger::checkpoints::Checkpoints;
use caduceus_ledger::verify::{VerifyError, verify_dir};
use caduceus_ledger::{Ledger, Seal};
use rand::{Rng, SeedableRng};

async fn build(dir: &Path, entries: u64) -> Checkpoints {
    let ledger = Ledger::open(dir).unwrap();
    let checkpoints = Checkpoints::open(dir, Some("ledger.test.example")).unwrap();
    let mut seq = 0;
    for chunk in [1, 100, entries / 2, entries] {
        let seals: Vec<Seal> = (seq..chunk).map(|s| Seal { event_seq: s + 1, event_digest: [s as u8; 32] }).collect();
        seq = chunk;
        ledger.append_batch(seals).await.unwrap();
        let (size, root) = ledger.sync_tree().unwrap();
        checkpoints.publish(checkpoints.sign(size, root).unwrap()).unwrap();
    }
    ledger.close().unwrap();
    checkpoints
}

fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

#[tokio::test]
async fn a_sound_ledger_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let checkpoints = build(dir.path(), 1000).await;
    let report = verify_dir(dir.path(), Some(&checkpoints.verifier())).unwrap();
    assert_eq!(report.entries, 1000);
    assert_eq!(report.checkpoints, 4);
    assert_eq!(report.latest_checkpoint, Some(1000));
    assert_eq!(report.origin.as_deref(), Some("ledger.test.example"));
    // With the key file instead of the published key, too.
    assert_eq!(verify_dir(dir.path(), None).unwrap().entries, 1000);
    // Another log's key does not vouch for these checkpoints.
    let other = tempfile::tempdir().unwrap();
    let stranger = Checkpoints::open(other.path(), Some("ledger.test.example")).unwrap();
    assert!(matches!(verify_dir(dir.path(), Some(&stranger.verifier())), Err(VerifyError::Checkpoint { .. })));
}

#[tokio::test]
async fn every_flipped_byte_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original");
    let checkpoints = build(&original, 1000).await;
    let key = checkpoints.verifier();
    let mut rng = rand::rngs::StdRng::seed_from_u64(20261129);
    let files = ["records", "nodes", "tree-state", "checkpoints"];
    for round in 0..200 {
        let copy_dir = dir.path().join(format!("copy{round}"));
        copy(&original, &copy_dir);
        let name = files[round % files.len()];
        let path = copy_dir.join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        // In the records file, aim at the written entries (the rest is
        // preallocated zeros, where a flip is also reported).
        let span = if name == "records" { 1000 * 64 } else { bytes.len() };
        let at = rng.random_range(0..span);
        bytes[at] ^= 1 << rng.random_range(0..8);
        std::fs::write(&path, &bytes).unwrap();
        let result = verify_dir(&copy_dir, Some(&key));
        assert!(result.is_err(), "flip of byte {at} in {name} went unnoticed");
        std::fs::remove_dir_all(&copy_dir).unwrap();
    }
    // Precise reports: a damaged record names its entry, a damaged leaf hash names the leaf.
    let copy_dir = dir.path().join("precise");
    copy(&original, &copy_dir);
    let mut records = std::fs::read(copy_dir.join("records")).unwrap();
    records[417 * 64 + 40] ^= 0x10;
    std::fs::write(copy_dir.join("records"), &records).unwrap();
    assert_eq!(
        verify_dir(&copy_dir, Some(&key)).unwrap_err(),
        VerifyError::Entry { index: 417, problem: "damaged record (checksum mismatch)".into() }
    );
}
