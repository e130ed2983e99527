//! A large ledger built in bulk, and the time to generate inclusion and
//! consistency proofs from it.

use std::collections::VecDeque;
use std::future::Future as _;
use std::ops::Range;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use caduceus_ledger::merkle::{self, Hash};
use caduceus_ledger::{Ledger, LedgerError, Seal};
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use tokio::task::JoinHandle;

use crate::Plan;
use crate::util::{self, ScratchLedger};

/// Bulk-build batches in flight at once, so that the ledger hashes and
/// writes one batch while the previous one is being synced.
const IN_FLIGHT: usize = 4;

/// A ledger built with `append_batch` and still open.
pub struct Built {
    pub scratch: ScratchLedger,
    pub size: u64,
    pub build_appends_per_s: f64,
}

impl Built {
    pub async fn close(self) -> anyhow::Result<util::ClosedLedger> {
        self.scratch.close().await
    }
}

/// Append `seals` now, in call order, and return a task that waits for them
/// to be durable. `append_batch` queues its seals before it first waits, so
/// one poll here fixes the order in which batches enter the log (and so
/// event sequence numbers stay in log order), which spawning alone would not.
fn enqueue(ledger: Arc<Ledger>, seals: Vec<Seal>) -> JoinHandle<Result<Range<u64>, LedgerError>> {
    let mut ack = Box::pin(async move { ledger.append_batch(seals).await });
    match ack.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(done) => tokio::spawn(std::future::ready(done)),
        Poll::Pending => tokio::spawn(ack),
    }
}

/// A fresh ledger of `size` synthetic seals, appended `batch` at a time.
pub async fn build(size: u64, batch: u64, label: &str) -> anyhow::Result<Built> {
    let scratch = ScratchLedger::open(label)?;
    util::progress(format!("building a {size}-leaf ledger in {}", scratch.path().display()));
    let start = Instant::now();
    let mut pending = VecDeque::with_capacity(IN_FLIGHT);
    let mut next_report = size / 10;
    for first in (0..size).step_by(usize::try_from(batch)?) {
        let end = (first + batch).min(size);
        // Event sequence numbers start at 1.
        let seals = (first + 1..=end).map(util::seal).collect();
        pending.push_back(enqueue(scratch.ledger.clone(), seals));
        if pending.len() >= IN_FLIGHT
            && let Some(oldest) = pending.pop_front()
        {
            oldest.await??;
        }
        if end >= next_report && end < size {
            util::progress(format!("  {end} leaves queued, {:.1} s", start.elapsed().as_secs_f64()));
            next_report += size / 10;
        }
    }
    while let Some(oldest) = pending.pop_front() {
        oldest.await??;
    }
    let elapsed = start.elapsed();
    anyhow::ensure!(scratch.ledger.size() == size, "built {} leaves, not {size}", scratch.ledger.size());
    let build_appends_per_s = util::rate(size, elapsed);
    util::progress(format!("built in {:.1} s: {build_appends_per_s:.0} appends/s", elapsed.as_secs_f64()));
    Ok(Built { scratch, size, build_appends_per_s })
}

/// What the proof measurement reports.
pub struct Figures {
    pub built: Built,
    pub log_size: u64,
    pub build_appends_per_s: f64,
    pub inclusion_us: f64,
    pub consistency_us: f64,
    pub inclusion_at_log_size_us: f64,
    pub consistency_at_log_size_us: f64,
    pub verified: usize,
}

/// Generate a proof for each query; the total time and the proofs.
pub fn time_each<E>(
    queries: &[(u64, u64)],
    mut prove: impl FnMut(u64, u64) -> Result<Vec<Hash>, E>,
) -> Result<(Duration, Vec<Vec<Hash>>), E> {
    let mut proofs = Vec::with_capacity(queries.len());
    let start = Instant::now();
    for &(a, b) in queries {
        proofs.push(prove(a, b)?);
    }
    Ok((start.elapsed(), proofs))
}

/// `count` (index, size) pairs: any size up to `n`, or always `n`.
fn inclusion_queries(rng: &mut StdRng, n: u64, count: usize, any_size: bool) -> Vec<(u64, u64)> {
    (0..count)
        .map(|_| {
            let size = if any_size { rng.random_range(1..=n) } else { n };
            (rng.random_range(0..size), size)
        })
        .collect()
}

/// `count` (first, second) pairs with `0 < first < second <= n`, the second
/// any size or always `n`.
fn consistency_queries(rng: &mut StdRng, n: u64, count: usize, any_size: bool) -> Vec<(u64, u64)> {
    (0..count)
        .map(|_| {
            let second = if any_size { rng.random_range(2..=n) } else { n };
            (rng.random_range(1..second), second)
        })
        .collect()
}

/// Verify every `every`-th proof; how many were verified.
fn verify_sample(
    ledger: &Ledger,
    queries: &[(u64, u64)],
    proofs: &[Vec<Hash>],
    every: usize,
    inclusion: bool,
) -> anyhow::Result<usize> {
    let mut verified = 0;
    for (&(a, b), proof) in queries.iter().zip(proofs).step_by(every.max(1)) {
        if inclusion {
            let (leaf, root) = (ledger.leaf_hash(a)?, ledger.root(b)?);
            merkle::verify_inclusion(a, b, &leaf, proof, &root)
                .with_context(|| format!("the inclusion proof of {a} in {b} does not verify"))?;
        } else {
            let (first_root, second_root) = (ledger.root(a)?, ledger.root(b)?);
            merkle::verify_consistency(a, b, &first_root, &second_root, proof)
                .with_context(|| format!("the consistency proof from {a} to {b} does not verify"))?;
        }
        verified += 1;
    }
    Ok(verified)
}

/// Build the ledger of `plan.log_size` leaves and time its proofs.
pub async fn run(plan: &Plan) -> anyhow::Result<Figures> {
    let built = build(plan.log_size, plan.build_batch, "proofs").await?;
    let ledger = built.scratch.ledger.clone();
    let (n, count, every, seed) = (built.size, plan.proofs, plan.verify_every, plan.seed);
    let times = tokio::task::spawn_blocking(move || -> anyhow::Result<([f64; 4], usize)> {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut means = [0.0; 4];
        let mut verified = 0;
        for (slot, (inclusion, any_size)) in
            means.iter_mut().zip([(true, true), (false, true), (true, false), (false, false)])
        {
            // Drawn up front: only generation is timed. A first round of
            // other queries warms the caches and is not counted.
            let mut draw = || {
                if inclusion {
                    inclusion_queries(&mut rng, n, count, any_size)
                } else {
                    consistency_queries(&mut rng, n, count, any_size)
                }
            };
            let (warm_up, queries) = (draw(), draw());
            let mut prove =
                |a, b| if inclusion { ledger.inclusion_proof(a, b) } else { ledger.consistency_proof(a, b) };
            time_each(&warm_up, &mut prove)?;
            let (elapsed, proofs) = time_each(&queries, &mut prove)?;
            *slot = util::mean_us(elapsed, queries.len());
            verified += verify_sample(&ledger, &queries, &proofs, every, inclusion)?;
            util::progress(format!(
                "{} proofs{}: {:.2} µs each",
                if inclusion { "inclusion" } else { "consistency" },
                if any_size { " at random sizes" } else { " at the log size" },
                *slot
            ));
        }
        Ok((means, verified))
    })
    .await??;
    let ([inclusion_us, consistency_us, inclusion_at_log_size_us, consistency_at_log_size_us], verified) = times;
    Ok(Figures {
        log_size: built.size,
        build_appends_per_s: built.build_appends_per_s,
        built,
        inclusion_us,
        consistency_us,
        inclusion_at_log_size_us,
        consistency_at_log_size_us,
        verified,
    })
}
