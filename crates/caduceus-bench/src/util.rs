//! Helpers shared by the measurements: scratch directories, seals, ledgers
//! that close off the runtime, percentiles, CPU time and load.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use caduceus_ledger::{Hash, Ledger, Seal};
use tempfile::TempDir;

/// Where scratch ledgers go: real disk, not a tmpfs `/tmp`.
const SCRATCH: &str = "/var/tmp";

/// A progress line on stderr (stdout carries only the report).
pub fn progress(line: impl AsRef<str>) {
    eprintln!("[bench] {}", line.as_ref());
}

/// A fresh directory under `/var/tmp`, removed when dropped.
pub fn scratch_dir(label: &str) -> anyhow::Result<TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("caduceus-bench-{label}-"))
        .tempdir_in(SCRATCH)
        .with_context(|| format!("creating a scratch directory in {SCRATCH}"))
}

/// The seal of a synthetic event: its sequence number in the digest.
pub fn seal(seq: u64) -> Seal {
    let mut event_digest = [0x5a; 32];
    if let Some(head) = event_digest.get_mut(..8) {
        head.copy_from_slice(&seq.to_le_bytes());
    }
    Seal { event_seq: seq, event_digest }
}

/// A ledger in its own scratch directory.
pub struct ScratchLedger {
    pub dir: TempDir,
    pub ledger: Arc<Ledger>,
}

/// A closed ledger whose directory is still on disk.
pub struct ClosedLedger {
    pub dir: TempDir,
    pub size: u64,
    pub root: Hash,
}

impl ScratchLedger {
    pub fn open(label: &str) -> anyhow::Result<Self> {
        let dir = scratch_dir(label)?;
        let ledger =
            Ledger::open(dir.path()).with_context(|| format!("opening a ledger in {}", dir.path().display()))?;
        Ok(Self { dir, ledger: Arc::new(ledger) })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Close the ledger (which joins its threads) on a blocking thread.
    /// Every other handle to it must be gone.
    pub async fn close(self) -> anyhow::Result<ClosedLedger> {
        let Self { dir, ledger } = self;
        let (size, root) = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, Hash)> {
            ledger.close()?;
            let size = ledger.size();
            Ok((size, ledger.root(size)?))
        })
        .await??;
        Ok(ClosedLedger { dir, size, root })
    }
}

/// Events per second.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// Mean microseconds per operation.
pub fn mean_us(elapsed: Duration, count: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / count.max(1) as f64
}

/// The nearest-rank percentile `p` (0–100) of sorted samples.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).or(sorted.last()).copied().unwrap_or_default()
}

/// Round for the report.
pub fn round(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// CPU time this process has used, user and system, over every thread
/// alive or gone: fields 14 and 15 of `/proc/self/stat`, in the kernel's
/// fixed user-space tick of 1/100 s. `None` off Linux.
pub fn process_cpu() -> Option<Duration> {
    const TICK: Duration = Duration::from_millis(10);
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u32 = fields.get(11)?.parse().ok()?;
    let stime: u32 = fields.get(12)?.parse().ok()?;
    Some(TICK * utime.saturating_add(stime))
}

/// CPU time per operation since `before`, in `unit`s of a second (1e3 for
/// milliseconds, 1e9 for nanoseconds).
pub fn cpu_per_op(before: Option<Duration>, ops: u64, unit: f64) -> Option<f64> {
    let used = process_cpu()?.checked_sub(before?)?;
    (ops > 0).then(|| used.as_secs_f64() * unit / ops as f64)
}

/// The one-minute load average, from `/proc/loadavg`.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg").ok()?.split_whitespace().next()?.parse().ok()
}

/// A figure of `/proc/self/status` in KiB: `VmHWM` is the peak resident
/// set so far, `VmRSS` the current one. `None` off Linux.
pub fn memory_kib(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&samples, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&samples, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&samples, 100.0), Duration::from_millis(100));
        assert_eq!(percentile(&samples[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
    }

    #[test]
    fn memory_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let peak = memory_kib("VmHWM").unwrap();
            let now = memory_kib("VmRSS").unwrap();
            assert!(peak >= now && now > 0, "peak {peak} KiB, now {now} KiB");
            assert_eq!(memory_kib("NoSuchKey"), None);
        }
    }
}
