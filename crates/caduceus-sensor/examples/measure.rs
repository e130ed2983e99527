//! Files lost before detection per ransomware style (median and worst over
//! trials) and false alarms on the benign workloads, as one JSON object.
//! `cargo run --release -p caduceus-sensor --example measure -- [TRIALS] [FILES] [STYLE...]`
//! (no styles: all styles, both sensor modes, canaries off and on, and the
//! benign workloads; with styles: only those, fanotify, canaries off).
//! `SENSOR_BLOCK=0` runs without the open gate (judged processes keep their
//! opens), to measure what it changes.
#![allow(clippy::unwrap_used)]

use caduceus_sensor::{BenignWorkload, FanotifyMode, MeasureOptions, Style, measure_benign, measure_style_trials};
use serde_json::json;

fn main() {
    let mut args = std::env::args().skip(1);
    let trials: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(7);
    let files: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200);
    let only: Vec<Style> = args.map(|a| a.parse().unwrap()).collect();
    let quick = !only.is_empty();
    let modes: &[_] = if quick {
        &[("fanotify", FanotifyMode::Auto)]
    } else {
        &[("fanotify", FanotifyMode::Auto), ("inotify", FanotifyMode::Off)]
    };
    let chosen = if quick { only } else { Style::ALL.to_vec() };
    let block = std::env::var("SENSOR_BLOCK").map_or(true, |v| v != "0");
    let mut styles = Vec::new();
    for &(mode, fanotify) in modes {
        for canaries in if quick { vec![false] } else { vec![false, true] } {
            for &style in &chosen {
                let realtime = std::env::var("SENSOR_REALTIME").map_or(true, |v| v != "0");
                let opts = MeasureOptions {
                    corpus_files: files,
                    canaries,
                    fanotify,
                    realtime,
                    block,
                    ..MeasureOptions::default()
                };
                let s = measure_style_trials(style, &opts, trials).unwrap();
                let lost: Vec<usize> = s.runs.iter().map(|m| m.files_lost).collect();
                let ms: Vec<Option<u64>> = s.runs.iter().map(|m| m.detection_ms).collect();
                eprintln!("  detection ms {ms:?}");
                eprintln!(
                    "{mode} canaries={canaries} {}: median {} worst {} {lost:?}",
                    style.as_str(),
                    s.median_files_lost,
                    s.worst_files_lost
                );
                styles.push(json!({
                    "style": style.as_str(), "sensor": mode, "fanotify_active": s.runs.iter().all(|m| m.fanotify),
                    "gate_active": s.runs.iter().all(|m| m.gate),
                    "denied_opens": s.runs.iter().map(|m| m.denied_opens).sum::<usize>(),
                    "canaries": canaries, "trials": s.trials, "detected": s.detected,
                    "median_files_lost": s.median_files_lost, "worst_files_lost": s.worst_files_lost,
                    "median_detection_ms": s.median_detection_ms, "files_lost": lost,
                }));
            }
        }
    }
    let mut benign = Vec::new();
    for canaries in if quick { vec![] } else { vec![false, true] } {
        for w in BenignWorkload::ALL {
            let opts = MeasureOptions { corpus_files: files, canaries, block, ..MeasureOptions::default() };
            let m = measure_benign(w, &opts).unwrap();
            eprintln!(
                "benign {} canaries={canaries}: false_alarm={} suspicious={} {} ms",
                w.as_str(),
                m.false_alarm,
                m.suspicious,
                m.elapsed_ms
            );
            benign.push(json!({
                "workload": w.as_str(), "canaries": canaries, "false_alarm": m.false_alarm,
                "suspicious_reports": m.suspicious, "reasons": m.reasons, "elapsed_ms": m.elapsed_ms,
            }));
        }
    }
    println!("{}", json!({ "ransomware": styles, "benign": benign }));
}
