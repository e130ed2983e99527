//! Helpers the measuring examples share.

use std::time::Instant;

/// CPU time of this thread in seconds (Linux `/proc/thread-self/schedstat`): speeds are per
/// core-second even when other work shares the machine. Wall time where it is unavailable.
pub fn cpu_seconds(wall: &Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or_else(|| wall.elapsed().as_secs_f64(), |ns| ns / 1e9)
}
