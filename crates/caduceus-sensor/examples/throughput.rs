//! How fast the sensor digests file events and learns a tree at start, and
//! what the open gate costs: the same rewrites and a read of every file,
//! with the gate, with fanotify but no gate, and with inotify only.
//! `cargo run --release -p caduceus-sensor --example throughput -- [FILES]`
#![allow(clippy::unwrap_used, clippy::disallowed_methods)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use caduceus_sensor::{FanotifyMode, Sensor, SensorConfig, Verdict};

fn main() {
    let files: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    for (fanotify, block) in [(FanotifyMode::Auto, true), (FanotifyMode::Auto, false), (FanotifyMode::Off, false)] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("share");
        std::fs::create_dir(&root).unwrap();
        let text = b"ward,admitted,systolic\n3,2025-01-01,120\n".repeat(100);
        for i in 0..files {
            std::fs::write(root.join(format!("seed_{i}.csv")), &text).unwrap();
        }
        let seen = Arc::new(AtomicU64::new(0));
        let s2 = Arc::clone(&seen);
        let mut cfg = SensorConfig::new(vec![root.clone()]);
        cfg.fanotify = fanotify;
        cfg.block_judged = block;
        cfg.heartbeat = Some(Duration::from_millis(20));
        let t = Instant::now();
        let h = Sensor::start(cfg, move |r| {
            if r.verdict == Verdict::Heartbeat {
                s2.store(r.status.unwrap().events, Ordering::SeqCst);
            }
        })
        .unwrap();
        let seed_s = t.elapsed().as_secs_f64();
        let mode = format!("{}{}", h.mode(), if h.gate_active() { "+gate" } else { "" });
        let t = Instant::now();
        for i in 0..files {
            std::fs::write(root.join(format!("seed_{i}.csv")), &text).unwrap();
        }
        let written_s = t.elapsed().as_secs_f64();
        // Each rewrite is one close-write (fanotify) or one inotify event.
        while seen.load(Ordering::SeqCst) < files as u64 && t.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(5));
        }
        let all_s = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut bytes = 0;
        for i in 0..files {
            bytes += std::fs::read(root.join(format!("seed_{i}.csv"))).unwrap().len();
        }
        let read_s = t.elapsed().as_secs_f64();
        assert_eq!(bytes, files * text.len());
        let stats = h.stop();
        println!(
            "{mode}: seeded {} files in {seed_s:.2} s ({:.0}/s); {files} rewrites written in {written_s:.2} s, all {} events digested after {all_s:.2} s ({:.0} events/s), overflows {}; then {files} files read in {read_s:.3} s ({:.0} opens/s; gate: {} opens, {} waited, {} timed out)",
            stats.seeded_files,
            stats.seeded_files as f64 / seed_s,
            stats.events,
            stats.events as f64 / all_s,
            stats.overflows,
            files as f64 / read_s,
            stats.gated_opens,
            stats.gate_waits,
            stats.gate_timeouts
        );
    }
}
