//! The peer: `ct-merkle`'s in-memory tree (`MemoryBackedTree`), which keeps
//! every leaf and node in a `Vec` and writes nothing to disk.
//!
//! Its tree for the proof figures holds the ledger's own entries (the
//! commitments), so that both trees have the same leaves and roots: the
//! peer's proofs are checked against the ledger's proofs and roots.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use caduceus_ledger::Ledger;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use serde_json::json;
use sha2_peer::Sha256;

use crate::Plan;
use crate::proofs::Built;
use crate::util;

pub const NAME: &str = "ct-merkle";
/// As pinned in Cargo.toml.
pub const VERSION: &str = "0.3.0";

type Tree = MemoryBackedTree<Sha256, [u8; 32]>;

/// A synthetic 32-byte entry.
fn entry(n: u64) -> [u8; 32] {
    let mut bytes = [0xa5; 32];
    if let Some(head) = bytes.get_mut(..8) {
        head.copy_from_slice(&n.to_le_bytes());
    }
    bytes
}

/// Pushes per second into a fresh tree: one thread alone for one writer,
/// else `writers` tokio tasks sharing the tree behind a tokio `Mutex`.
async fn push_rate(writers: usize, duration: Duration) -> anyhow::Result<f64> {
    if writers <= 1 {
        return tokio::task::spawn_blocking(move || {
            let mut tree = Tree::new();
            let start = Instant::now();
            let mut n = 0u64;
            while start.elapsed() < duration {
                for _ in 0..256 {
                    tree.push(entry(n));
                    n += 1;
                }
            }
            Ok(util::rate(n, start.elapsed()))
        })
        .await?;
    }
    let tree = Arc::new(tokio::sync::Mutex::new(Tree::new()));
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|_| {
            let (tree, next) = (tree.clone(), next.clone());
            tokio::spawn(async move {
                let mut pushed = 0u64;
                while start.elapsed() < duration {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    tree.lock().await.push(entry(n));
                    pushed += 1;
                }
                pushed
            })
        })
        .collect();
    let mut pushed = 0;
    for task in tasks {
        pushed += task.await?;
    }
    let rate = util::rate(pushed, start.elapsed());
    // Freeing a tree of millions of nodes is not part of the figure.
    tokio::task::spawn_blocking(move || drop(tree)).await?;
    Ok(rate)
}

/// Push rates keyed by writer count, like the ledger's durable appends.
pub async fn appends_per_s(plan: &Plan) -> anyhow::Result<serde_json::Map<String, serde_json::Value>> {
    let mut rates = serde_json::Map::new();
    for writers in plan.writer_counts {
        let rate = push_rate(writers, plan.point).await?;
        util::progress(format!("{NAME} pushes, {writers} writer(s): {rate:.0}/s"));
        rates.insert(writers.to_string(), json!(util::round(rate, 0)));
    }
    Ok(rates)
}

/// The peer's proof figures.
pub struct Figures {
    pub tree_size: u64,
    pub build_appends_per_s: f64,
    pub inclusion_us: f64,
    pub consistency_us: f64,
    pub verified: usize,
}

impl Figures {
    pub fn into_json(self, appends_per_s: serde_json::Map<String, serde_json::Value>) -> serde_json::Value {
        json!({
            "name": NAME,
            "version": VERSION,
            "note": "in memory and not durable: nothing is written to disk, so appends wait for no fdatasync \
                     (compare with durable_appends_per_s only as an upper bound); \"1\" is one thread pushing, \
                     \"16\"/\"256\" are tokio tasks sharing the tree behind a tokio Mutex, one push per lock; \
                     proofs can only be made against the whole tree, so they compare with our *_at_log_size_us",
            "appends_per_s": appends_per_s,
            "tree_size": self.tree_size,
            "build_appends_per_s": util::round(self.build_appends_per_s, 0),
            "inclusion_proof_us": util::round(self.inclusion_us, 2),
            "consistency_proof_us": util::round(self.consistency_us, 2),
            "proofs_verified": self.verified,
        })
    }
}

/// The ledger's entries (commitments), read back through entry bundles.
fn ledger_entries(ledger: &Ledger, size: u64) -> anyhow::Result<Vec<[u8; 32]>> {
    const WIDTH: u64 = caduceus_ledger::log::TILE_WIDTH;
    let mut entries = Vec::with_capacity(usize::try_from(size)?);
    for bundle in 0..size.div_ceil(WIDTH) {
        let width = WIDTH.min(size - bundle * WIDTH);
        let bytes = ledger.entry_bundle(bundle, width, size)?;
        // Each entry is a big-endian u16 length (32) and the commitment.
        for item in bytes.chunks_exact(34) {
            let commitment = item.get(2..).and_then(|c| <[u8; 32]>::try_from(c).ok());
            entries.push(commitment.context("a malformed entry bundle")?);
        }
    }
    anyhow::ensure!(entries.len() as u64 == size, "read {} entries, not {size}", entries.len());
    Ok(entries)
}

fn concat(proof: &[caduceus_ledger::Hash]) -> Vec<u8> {
    proof.iter().flatten().copied().collect()
}

/// Build the peer's tree from the ledger's entries, time its proofs against
/// the whole tree, and check a sample against the ledger.
pub async fn run(plan: &Plan, built: &Built) -> anyhow::Result<Figures> {
    let ledger = built.scratch.ledger.clone();
    let (n, count, every, seed) = (built.size, plan.proofs, plan.verify_every.max(1), plan.seed ^ 0x9e37);
    tokio::task::spawn_blocking(move || {
        let entries = ledger_entries(&ledger, n)?;
        util::progress(format!("building a {n}-leaf {NAME} tree from the ledger's entries"));
        let start = Instant::now();
        let mut tree = Tree::new();
        for e in entries {
            tree.push(e);
        }
        let build_appends_per_s = util::rate(n, start.elapsed());
        util::progress(format!("built in {:.1} s: {build_appends_per_s:.0} pushes/s", start.elapsed().as_secs_f64()));
        let root = tree.root();
        anyhow::ensure!(
            root.as_bytes().as_slice() == ledger.root(n)?.as_slice(),
            "{NAME} and the ledger disagree on the root of the same {n} leaves"
        );

        let mut rng = StdRng::seed_from_u64(seed);
        // A first round of other queries warms the caches and is not counted.
        let warm_up: Vec<u64> = (0..count).map(|_| rng.random_range(1..n)).collect();
        for &index in &warm_up {
            std::hint::black_box(tree.prove_inclusion(usize::try_from(index)?));
            std::hint::black_box(tree.prove_consistency(usize::try_from(n - index)?));
        }
        let indexes: Vec<u64> = (0..count).map(|_| rng.random_range(0..n)).collect();
        let start = Instant::now();
        let mut inclusion: Vec<InclusionProof<Sha256>> = Vec::with_capacity(count);
        for &index in &indexes {
            inclusion.push(tree.prove_inclusion(usize::try_from(index)?));
        }
        let inclusion_us = util::mean_us(start.elapsed(), count);

        let firsts: Vec<u64> = (0..count).map(|_| rng.random_range(1..n)).collect();
        let start = Instant::now();
        let mut consistency: Vec<ConsistencyProof<Sha256>> = Vec::with_capacity(count);
        for &first in &firsts {
            consistency.push(tree.prove_consistency(usize::try_from(n - first)?));
        }
        let consistency_us = util::mean_us(start.elapsed(), count);
        util::progress(format!("{NAME} proofs: inclusion {inclusion_us:.2} µs, consistency {consistency_us:.2} µs"));

        let mut verified = 0;
        for (&index, proof) in indexes.iter().zip(&inclusion).step_by(every) {
            let entry = tree.get(usize::try_from(index)?).context("a leaf is missing")?;
            root.verify_inclusion(entry, index, proof)
                .with_context(|| format!("{NAME}'s inclusion proof of {index} does not verify"))?;
            anyhow::ensure!(
                proof.as_bytes() == concat(&ledger.inclusion_proof(index, n)?),
                "{NAME} and the ledger give different inclusion proofs of {index} in {n}"
            );
            verified += 1;
        }
        for (&first, proof) in firsts.iter().zip(&consistency).step_by(every) {
            let old = RootHash::<Sha256>::new(ledger.root(first)?.into(), first);
            root.verify_consistency(&old, proof)
                .with_context(|| format!("{NAME}'s consistency proof from {first} does not verify"))?;
            anyhow::ensure!(
                proof.as_bytes() == concat(&ledger.consistency_proof(first, n)?),
                "{NAME} and the ledger give different consistency proofs from {first} to {n}"
            );
            verified += 1;
        }
        // Freeing the tree is not part of any figure, but takes a while at 10M.
        drop(tree);
        Ok(Figures { tree_size: n, build_appends_per_s, inclusion_us, consistency_us, verified })
    })
    .await?
}
