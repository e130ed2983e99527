#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
//! The durable log: appends, restarts, crash snapshots, torn tails, proofs and tiles.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use caduceus_ledger::merkle::{self, Hash};
use caduceus_ledger::seal::RECORD_BYTES;
use caduceus_ledger::{Ledger, LedgerError, Seal};

fn seal(seq: u64) -> Seal {
    let mut digest = [0u8; 32];
    digest[..8].copy_from_slice(&seq.to_be_bytes());
    Seal { event_seq: seq, event_digest: digest }
}

fn leaves(ledger: &Ledger) -> Vec<Hash> {
    (0..ledger.size()).map(|i| merkle::leaf_hash(&ledger.record(i).unwrap().commitment)).collect()
}

async fn append_range(ledger: &Ledger, seqs: std::ops::Range<u64>) {
    ledger.append_batch(seqs.map(seal).collect()).await.unwrap();
}

#[tokio::test]
async fn appends_are_acknowledged_in_order_and_proofs_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    assert_eq!(ledger.size(), 0);
    assert_eq!(ledger.root(0).unwrap(), merkle::empty_root());
    assert_eq!(ledger.append(seal(1)).await.unwrap(), 0);
    assert_eq!(ledger.append_batch((2..=700).map(seal).collect()).await.unwrap(), 1..700);
    assert_eq!(ledger.size(), 700);
    assert_eq!(ledger.progress().last_seq, 700);

    let all = leaves(&ledger);
    for size in [1, 2, 3, 255, 256, 257, 511, 512, 700] {
        let root = ledger.root(size).unwrap();
        assert_eq!(root, merkle::root(&all[..size as usize]));
        for index in [0, size / 2, size - 1] {
            let proof = ledger.inclusion_proof(index, size).unwrap();
            merkle::verify_inclusion(index, size, &all[index as usize], &proof, &root).unwrap();
        }
        for first in [1, size / 3, size] {
            let first = first.max(1);
            let proof = ledger.consistency_proof(first, size).unwrap();
            merkle::verify_consistency(first, size, &ledger.root(first).unwrap(), &root, &proof).unwrap();
        }
    }
    assert!(ledger.root(701).is_err());
    assert!(ledger.inclusion_proof(700, 700).is_err());

    // Every record seals its event's digest with its own salt.
    for i in 0..700 {
        let record = ledger.record(i).unwrap();
        assert_eq!(record.event_seq, i + 1);
        assert!(record.seals(&seal(i + 1).event_digest));
    }
    assert_eq!(ledger.find_event(350).unwrap(), Some(349));
    assert_eq!(ledger.find_event(9999).unwrap(), None);
    assert_eq!(ledger.find_leaf(&all[123]).unwrap(), Some(123));
    append_range(&ledger, 701..702).await;
    assert_eq!(ledger.find_leaf(&ledger.leaf_hash(700).unwrap()).unwrap(), Some(700), "index kept current");
    assert_eq!(ledger.find_leaf(&[0; 32]).unwrap(), None);
}

#[tokio::test]
async fn tiles_and_entry_bundles_hold_the_right_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    let size = 256 * 256 + 300;
    append_range(&ledger, 1..size + 1).await;
    let all = leaves(&ledger);
    let tile = ledger.tile(0, 1, 256, size).unwrap();
    assert_eq!(tile.len(), 256 * 32);
    assert_eq!(&tile[..32], &all[256]);
    assert_eq!(&tile[255 * 32..], &all[511]);
    let partial = ledger.tile(0, 256, 300 - 256, size).unwrap();
    assert_eq!(&partial[..32], &all[256 * 256]);
    // Level 1 holds the roots of each 256-leaf subtree.
    let level1 = ledger.tile(1, 0, 256, size).unwrap();
    assert_eq!(&level1[32..64], &merkle::root(&all[256..512]));
    // Level 2 has one full-width subtree of 65,536 leaves.
    assert_eq!(ledger.tile(2, 0, 1, size).unwrap(), merkle::root(&all[..65536]).to_vec());
    assert!(ledger.tile(2, 0, 2, size).is_err());
    assert!(ledger.tile(0, 258, 1, size).is_err());
    assert!(ledger.tile(0, 0, 0, size).is_err());
    assert!(ledger.tile(9, 0, 1, size).is_err());

    let bundle = ledger.entry_bundle(1, 256, size).unwrap();
    assert_eq!(bundle.len(), 256 * 34);
    assert_eq!(&bundle[..2], &[0, 32]);
    assert_eq!(merkle::leaf_hash(&bundle[2..34]), all[256]);
    assert!(ledger.entry_bundle(257, 45, size).is_err());
    assert_eq!(ledger.entry_bundle(257, 44, size).unwrap().len(), 44 * 34);
}

#[tokio::test]
async fn concurrent_writers_each_get_distinct_durable_entries() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Arc::new(Ledger::open(dir.path()).unwrap());
    let mut tasks = Vec::new();
    for w in 0..64u64 {
        let ledger = ledger.clone();
        tasks.push(tokio::spawn(async move {
            let mut got = Vec::new();
            for i in 0..50u64 {
                got.push(ledger.append(seal(w * 1000 + i)).await.unwrap());
            }
            got
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(all, (0..3200).collect::<Vec<_>>());
    assert_eq!(ledger.size(), 3200);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[tokio::test]
async fn a_restart_keeps_everything_and_a_crash_snapshot_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    let root = {
        let ledger = Ledger::open(&path).unwrap();
        assert!(matches!(Ledger::open(&path), Err(LedgerError::Locked(_))), "one appender at a time");
        append_range(&ledger, 1..1001).await;
        ledger.sync_tree().unwrap();
        append_range(&ledger, 1001..1501).await;
        // A copy taken now looks like the disk after a crash: records past
        // the tree state, nodes possibly short of them.
        copy_dir(&path, &dir.path().join("crashed"));
        let root = ledger.root(1500).unwrap();
        ledger.close().unwrap();
        root
    };
    let reopened = Ledger::open(&path).unwrap();
    assert_eq!(reopened.size(), 1500);
    assert_eq!(reopened.root(1500).unwrap(), root);
    assert_eq!(reopened.progress().last_seq, 1500);
    drop(reopened);

    let crashed = Ledger::open(&dir.path().join("crashed")).unwrap();
    assert_eq!(crashed.size(), 1500);
    assert_eq!(crashed.root(1500).unwrap(), root, "rehashed the entries after the tree state");
    assert_eq!(crashed.append(seal(1501)).await.unwrap(), 1500);
}

#[tokio::test]
async fn a_torn_tail_is_discarded_but_damage_in_the_middle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger");
    {
        let ledger = Ledger::open(&path).unwrap();
        append_range(&ledger, 1..101).await;
    }
    let records = std::fs::OpenOptions::new().read(true).write(true).open(path.join("records")).unwrap();
    // Half a record of garbage just past the end: a write cut short.
    records.write_all_at(&[0xAB; RECORD_BYTES / 2], 100 * RECORD_BYTES as u64).unwrap();
    {
        let ledger = Ledger::open(&path).unwrap();
        assert_eq!(ledger.size(), 100);
        assert_eq!(ledger.append(seal(101)).await.unwrap(), 100, "the torn slot is reused");
    }
    // A damaged acknowledged record with intact ones after it is corruption.
    let mut byte = [0u8; 1];
    records.read_exact_at(&mut byte, 50 * RECORD_BYTES as u64 + 3).unwrap();
    records.write_all_at(&[byte[0] ^ 1], 50 * RECORD_BYTES as u64 + 3).unwrap();
    std::fs::remove_file(path.join("tree-state")).unwrap();
    let error = Ledger::open(&path).unwrap_err();
    assert!(matches!(&error, LedgerError::Corrupt(m) if m.contains("record 50")), "{error}");
}

#[tokio::test]
async fn appends_after_close_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::open(dir.path()).unwrap();
    append_range(&ledger, 1..3).await;
    ledger.close().unwrap();
    assert_eq!(ledger.append(seal(3)).await, Err(LedgerError::Closed));
}
