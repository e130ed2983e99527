//! Durable append throughput and acknowledgement latency: every figure
//! counts only appends the ledger acknowledged, i.e. after its fdatasync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::util::{self, ScratchLedger};

/// `writers` tokio tasks on a fresh ledger, each appending for `duration`:
/// one seal per `append` when `batch` is 1, else `batch` seals per
/// `append_batch`. Acknowledged appends per second, over the time until the
/// last writer returned.
pub async fn appends_per_s(writers: usize, batch: usize, duration: Duration) -> anyhow::Result<f64> {
    let scratch = ScratchLedger::open(&format!("appends-{writers}x{batch}"))?;
    let next_seq = Arc::new(AtomicU64::new(1));
    let batch_len = batch as u64;
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(writers);
    for _ in 0..writers {
        let ledger = scratch.ledger.clone();
        let next_seq = next_seq.clone();
        tasks.push(tokio::spawn(async move {
            let mut acknowledged = 0u64;
            while start.elapsed() < duration {
                let first = next_seq.fetch_add(batch_len, Ordering::Relaxed);
                if batch_len == 1 {
                    ledger.append(util::seal(first)).await?;
                } else {
                    ledger.append_batch((first..first + batch_len).map(util::seal).collect()).await?;
                }
                acknowledged += batch_len;
            }
            anyhow::Ok(acknowledged)
        }));
    }
    let mut acknowledged = 0;
    for task in tasks {
        acknowledged += task.await??;
    }
    let elapsed = start.elapsed();
    let closed = scratch.close().await?;
    anyhow::ensure!(
        closed.size == acknowledged,
        "the ledger holds {} entries, {acknowledged} acknowledged",
        closed.size
    );
    Ok(util::rate(acknowledged, elapsed))
}

pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub samples: usize,
}

/// Appends not counted before sampling: the first one also allocates the
/// records file.
const WARM_UP: u64 = 20;

/// One writer alone: the time of each `append(..).await`.
pub async fn ack_latency(samples: usize) -> anyhow::Result<Latency> {
    let scratch = ScratchLedger::open("latency")?;
    for seq in 1..=WARM_UP {
        scratch.ledger.append(util::seal(seq)).await?;
    }
    let mut times = Vec::with_capacity(samples);
    for seq in (WARM_UP + 1..).take(samples) {
        let start = Instant::now();
        scratch.ledger.append(util::seal(seq)).await?;
        times.push(start.elapsed());
    }
    scratch.close().await?;
    Ok(summarise(times))
}

/// The disk itself, as context for the figures above: a 64-byte write and
/// an fdatasync on a preallocated file in a scratch directory, `samples`
/// times, with only the fdatasync timed.
pub async fn fdatasync_latency(samples: usize) -> anyhow::Result<Latency> {
    tokio::task::spawn_blocking(move || {
        use std::os::unix::fs::FileExt as _;
        let dir = util::scratch_dir("fdatasync")?;
        let file = std::fs::File::options().read(true).write(true).create_new(true).open(dir.path().join("probe"))?;
        let slots = samples as u64 + 1;
        file.write_all_at(&vec![0u8; usize::try_from(slots * 64)?], 0)?;
        file.sync_all()?;
        let mut times = Vec::with_capacity(samples);
        for slot in (1..slots).take(samples) {
            file.write_all_at(&[0xa5; 64], slot * 64)?;
            let start = Instant::now();
            file.sync_data()?;
            times.push(start.elapsed());
        }
        Ok(summarise(times))
    })
    .await?
}

fn summarise(mut times: Vec<Duration>) -> Latency {
    let mean_ms = times.iter().sum::<Duration>().as_secs_f64() * 1e3 / times.len().max(1) as f64;
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    Latency {
        p50_ms: ms(util::percentile(&times, 50.0)),
        p99_ms: ms(util::percentile(&times, 99.0)),
        mean_ms,
        samples: times.len(),
    }
}
