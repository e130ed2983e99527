//! Measures the live path on one core: damped statistics per packet, then a detector score on
//! the 100 features. Synthetic traffic: 2,000 hosts talking to 50 servers on random ports.
//!
//! ```text
//! cargo run --release -p caduceus-anomaly --example stream [-- PACKETS]
//! ```
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use std::time::Instant;

use caduceus_anomaly::{DampedParams, DampedStats, FlowKey, OnlineDetector, OnlineParams};

fn next(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// User + system CPU seconds of this process (one thread), from /proc/self/stat at 100 ticks/s,
/// so the rates stay per core when other work shares the machine.
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn main() {
    let n: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let mut stats = DampedStats::new(DampedParams::default());
    let width = stats.width();
    let hosts: Vec<u64> = (0..2000).map(|i| stats.key(&format!("10.1.{}.{}", i / 256, i % 256))).collect();
    let servers: Vec<u64> = (0..50).map(|i| stats.key(&format!("10.0.0.{i}"))).collect();
    let mut rng = 1u64;
    let keys: Vec<(FlowKey, f64)> = (0..n)
        .map(|_| {
            let r = next(&mut rng);
            let key = FlowKey {
                src_host: hosts[(r % 2000) as usize],
                src_port: 30_000 + (r >> 20) as u16 % 64,
                dst_host: servers[((r >> 11) % 50) as usize],
                dst_port: 443,
            };
            (key, 64.0 + ((r >> 40) % 1400) as f64)
        })
        .collect();

    let mut out = vec![0.0f32; width];
    let mut learn = Vec::with_capacity(100_000 * width);
    let (t0, c0) = (Instant::now(), cpu_secs());
    for (i, (key, size)) in keys.iter().enumerate() {
        stats.update_into(key, *size, i as f64 * 1e-4, &mut out);
        if i < 100_000 {
            learn.extend_from_slice(&out);
        }
    }
    let damped_wall = n as f64 / t0.elapsed().as_secs_f64();
    let damped_rate = n as f64 / (cpu_secs() - c0).max(1e-9);

    let mut det = OnlineDetector::new(width, OnlineParams::default());
    det.fit(&learn, width);
    let rows: Vec<&[f32]> = learn.chunks_exact(width).collect();
    let (t1, c1) = (Instant::now(), cpu_secs());
    let mut sink = 0.0f32;
    for _ in 0..5 {
        for r in &rows {
            sink += det.score(r);
        }
    }
    let score_wall = (5 * rows.len()) as f64 / t1.elapsed().as_secs_f64();
    let score_rate = (5 * rows.len()) as f64 / (cpu_secs() - c1).max(1e-9);
    std::hint::black_box(sink);
    println!(
        "{{\"packets\":{n},\"damped_updates_per_cpu_sec\":{damped_rate:.0},\"damped_updates_per_wall_sec\":{damped_wall:.0},\"score_100_features_per_cpu_sec\":{score_rate:.0},\"score_100_features_per_wall_sec\":{score_wall:.0},\"tracked\":\"{:?}\"}}",
        stats.tracked()
    );
}
