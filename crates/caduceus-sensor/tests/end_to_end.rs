//! The simulator and the sensor end to end on temporary directories: every
//! ransomware style is detected within a few files (with fanotify where the
//! kernel allows it, and with inotify alone), the benign workloads raise no
//! ransomware verdict (canaries on and off), and the kill response kills a
//! real simulator process. One binary on purpose (each file in tests/ links
//! separately).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use caduceus_sensor::{
    BenignWorkload, FanotifyMode, MeasureOptions, Order, Report, Response, Sensor, SensorConfig, SimOptions, Style,
    Verdict, measure_benign, measure_style, simulate_ransomware,
};

/// Files a detected run may lose in these small tests (the target, a median
/// of 5, is measured over more trials by the bench).
const MAX_LOST: usize = 8;

fn opts(fanotify: FanotifyMode, canaries: bool, seed: u64) -> MeasureOptions {
    MeasureOptions {
        corpus_files: 30,
        seed,
        canaries,
        fanotify,
        slow_interval: Duration::from_millis(150),
        ..MeasureOptions::default()
    }
}

fn check_styles(fanotify: FanotifyMode, canaries: bool) {
    for style in Style::ALL {
        let m = measure_style(style, &opts(fanotify, canaries, 11)).unwrap();
        eprintln!(
            "{} fanotify={} canaries={canaries}: lost {} of {}, {:?} ms, {:?}",
            style.as_str(),
            m.fanotify,
            m.files_lost,
            m.files_total,
            m.detection_ms,
            m.reasons
        );
        assert!(m.detected, "{style:?} not detected");
        assert!(m.files_lost <= MAX_LOST, "{style:?} lost {}", m.files_lost);
        if fanotify == FanotifyMode::Off {
            assert!(!m.fanotify);
        }
    }
}

#[test]
fn every_style_is_detected_with_inotify_only() {
    check_styles(FanotifyMode::Off, false);
}

#[test]
fn every_style_is_detected_with_fanotify_when_available() {
    if !fanotify_works() {
        eprintln!("SKIP fanotify unavailable here (needs CAP_SYS_ADMIN); the inotify test covers the fallback");
        return;
    }
    check_styles(FanotifyMode::Required, false);
}

#[test]
fn every_style_is_detected_with_canaries() {
    check_styles(FanotifyMode::Auto, true);
}

#[test]
fn benign_workloads_raise_no_ransomware_verdict() {
    for canaries in [false, true] {
        for w in BenignWorkload::ALL {
            let m = measure_benign(w, &opts(FanotifyMode::Auto, canaries, 5)).unwrap();
            eprintln!(
                "benign {} canaries={canaries}: false_alarm={} suspicious={} reasons={:?} {} ms",
                w.as_str(),
                m.false_alarm,
                m.suspicious,
                m.reasons,
                m.elapsed_ms
            );
            assert!(!m.false_alarm, "{w:?} (canaries {canaries}) raised {:?}", m.reasons);
        }
    }
}

fn fanotify_works() -> bool {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = SensorConfig::new(vec![dir.path().to_path_buf()]);
    cfg.fanotify = FanotifyMode::Required;
    Sensor::start(cfg, |_| {}).is_ok()
}

#[test]
fn reports_name_no_files_and_canaries_are_cleaned_up() {
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    caduceus_sensor::make_corpus(&share, 20, 21).unwrap();
    let names: Vec<String> = walk(&share)
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| n.len() > 4)
        .collect();
    let reports = Arc::new(Mutex::new(Vec::<Report>::new()));
    let sink = Arc::clone(&reports);
    let mut cfg = SensorConfig::new(vec![share.clone()]);
    cfg.canaries = true;
    cfg.canary_manifest = Some(dir.path().join("canaries.json"));
    cfg.heartbeat = Some(Duration::from_millis(200));
    let handle = Sensor::start(cfg, move |r| sink.lock().unwrap().push(r.clone())).unwrap();
    assert!(!handle.is_finished());
    let canaries = handle.canary_paths().to_vec();
    assert!(canaries.len() >= 2 && canaries.iter().all(|c| c.exists()));
    assert!(dir.path().join("canaries.json").exists());
    let stop = AtomicBool::new(false);
    let sim = SimOptions { order: Order::Sorted, ..SimOptions::default() };
    simulate_ransomware(&share, Style::Rename, &sim, &stop).unwrap();
    #[allow(clippy::disallowed_methods)] // letting the sensor thread catch up; no runtime here
    std::thread::sleep(Duration::from_millis(500));
    let stats = handle.stop();
    let reports = reports.lock().unwrap();
    let alert = reports.iter().find(|r| r.verdict == Verdict::Ransomware).expect("a ransomware report");
    assert!(alert.canary_touched, "sorted order hits a canary first: {:?}", alert.reasons);
    assert!(reports.iter().any(|r| r.verdict == Verdict::Heartbeat));
    for r in reports.iter() {
        let json = r.to_json();
        for n in &names {
            assert!(!json.contains(n.as_str()), "report names a file: {json}");
        }
        for c in &canaries {
            assert!(!json.contains(&*c.file_name().unwrap().to_string_lossy()));
        }
    }
    // Touched canaries stay for the investigation; the manifest goes.
    assert!(stats.canaries_placed as usize == canaries.len());
    assert!(!dir.path().join("canaries.json").exists());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

const CHILD_DIR: &str = "CADUCEUS_SENSOR_TEST_CHILD_DIR";

/// Not a test on its own: the kill test runs this in a child process (the
/// test binary again) as the ransomware to kill.
#[test]
#[ignore = "run by kill_response_kills_the_encrypting_process in a child process"]
fn child_simulator() {
    let Ok(dir) = std::env::var(CHILD_DIR) else { return };
    let opts = SimOptions { slow_interval: Duration::from_millis(100), ..SimOptions::default() };
    simulate_ransomware(Path::new(&dir), Style::Slow, &opts, &AtomicBool::new(false)).unwrap();
}

#[test]
fn kill_response_kills_the_encrypting_process() {
    if !fanotify_works() {
        eprintln!("SKIP fanotify unavailable: no pid to kill (the /proc scan fallback has its own unit test)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    caduceus_sensor::make_corpus(&share, 40, 33).unwrap();
    let killed = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = Arc::clone(&killed);
    let mut cfg = SensorConfig::new(vec![share.clone()]);
    cfg.fanotify = FanotifyMode::Required;
    cfg.response = Response::Kill;
    let handle = Sensor::start(cfg, move |r| {
        if r.verdict == Verdict::Ransomware {
            sink.lock().unwrap().extend(r.response.iter().cloned());
        }
    })
    .unwrap();
    let started = Instant::now();
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_simulator", "--ignored", "--nocapture"])
        .env(CHILD_DIR, &share)
        .status()
        .unwrap();
    handle.stop();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        status.signal(),
        Some(9),
        "the simulator was not killed: {status:?}, responses {:?}",
        killed.lock().unwrap()
    );
    assert!(started.elapsed() < Duration::from_secs(3), "40 files at 100 ms each would take 4 s");
    let responses = killed.lock().unwrap();
    assert!(responses.iter().any(|r| r.starts_with("killed ")), "{responses:?}");
    let still_plain = walk(&share)
        .iter()
        .filter(|p| {
            let b = std::fs::read(p).unwrap();
            caduceus_sensor::magic::detect(&b[..b.len().min(4096)]).is_known()
        })
        .count();
    assert!(still_plain >= 30, "only {still_plain} of 40 documents survived");
}

/// A writer that ignores the verdict (no kill, no stop flag): with the open
/// gate its next open after the verdict is refused, and every one after it;
/// without the gate it encrypts the whole share.
#[test]
fn open_gate_refuses_a_judged_writer_its_next_files() {
    if !fanotify_works() {
        eprintln!("SKIP fanotify unavailable here (needs CAP_SYS_ADMIN): no permission events, no open gate");
        return;
    }
    for (style, block) in [
        (Style::InPlace, true),
        (Style::Partial, true),
        (Style::CopyDelete, true),
        (Style::Rename, true),
        (Style::InPlace, false),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let share = dir.path().join("share");
        caduceus_sensor::make_corpus(&share, 30, 17).unwrap();
        let responses = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&responses);
        let mut cfg = SensorConfig::new(vec![share.clone()]);
        cfg.fanotify = FanotifyMode::Required;
        cfg.block_judged = block;
        cfg.heartbeat = None;
        let handle = Sensor::start(cfg, move |r| {
            if r.verdict == Verdict::Ransomware {
                sink.lock().unwrap().extend(r.response.iter().cloned());
            }
        })
        .unwrap();
        assert_eq!(handle.gate_active(), block);
        let ignored = AtomicBool::new(false);
        let out = simulate_ransomware(&share, style, &SimOptions::default(), &ignored).unwrap();
        let stats = handle.stop();
        let responses = responses.lock().unwrap().clone();
        eprintln!(
            "{} gate={block}: encrypted {} of {}, {} opens refused, responses {responses:?}, {stats:?}",
            style.as_str(),
            out.files_done,
            out.files_total,
            out.denied
        );
        assert!(stats.ransomware_reports >= 1, "{style:?} not detected");
        if block {
            assert!(out.files_done <= 3, "{style:?}: {} files encrypted past the gate", out.files_done);
            assert_eq!(out.files_done + out.denied, out.files_total);
            assert!(stats.denied_opens as usize >= out.denied);
            assert!(responses.iter().any(|r| r.starts_with("blocked opens")), "{responses:?}");
        } else {
            assert_eq!((out.files_done, out.denied, stats.denied_opens), (out.files_total, 0, 0));
        }
    }
}

#[test]
fn stop_flag_style_measurement_counts_only_documents() {
    let stop = Arc::new(AtomicBool::new(true));
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("s");
    caduceus_sensor::make_corpus(&share, 5, 1).unwrap();
    let out = simulate_ransomware(&share, Style::InPlace, &SimOptions::default(), &stop).unwrap();
    assert_eq!(out.files_done, 0);
    stop.store(false, Ordering::SeqCst);
    let out = simulate_ransomware(&share, Style::InPlace, &SimOptions::default(), &stop).unwrap();
    assert_eq!(out.files_done, 5);
}

#[test]
fn inotify_reads_a_file_renamed_before_its_write_was_seen() {
    use std::sync::mpsc;
    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    caduceus_sensor::make_corpus(&share, 10, 44).unwrap();
    let mut docs: Vec<PathBuf> = walk(&share)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pdf" || e == "docx" || e == "xlsx" || e == "png" || e == "jpg"))
        .collect();
    docs.sort();
    assert!(docs.len() >= 4, "{docs:?}");
    let (blocked_tx, blocked_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let verdicts = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&verdicts);
    let mut cfg = SensorConfig::new(vec![share.clone()]);
    cfg.fanotify = FanotifyMode::Off;
    cfg.heartbeat = None;
    let release_rx = Mutex::new(release_rx);
    let handle = Sensor::start(cfg, move |r| {
        seen.lock().unwrap().push((r.verdict, r.counts.type_changes));
        if r.verdict == Verdict::Suspicious {
            // Hold the sensor thread while the test races it.
            blocked_tx.send(()).unwrap();
            let _ = release_rx.lock().unwrap().recv_timeout(Duration::from_secs(10));
        }
    })
    .unwrap();
    // Two renames to an unknown extension: suspicious, no content evidence.
    for p in &docs[..2] {
        std::fs::rename(p, p.with_extension("locked")).unwrap();
    }
    blocked_rx.recv_timeout(Duration::from_secs(10)).expect("a suspicious report");
    // While the sensor is held: encrypt two documents and rename them at once.
    for p in &docs[2..4] {
        let noise: Vec<u8> = (0..20_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut content = std::fs::read(p).unwrap();
        for (b, n) in content.iter_mut().zip(noise.iter().cycle()) {
            *b ^= n;
        }
        std::fs::write(p, &content).unwrap();
        std::fs::rename(p, p.with_extension("crypt")).unwrap();
    }
    release_tx.send(()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !verdicts.lock().unwrap().iter().any(|(v, _)| *v == Verdict::Ransomware) {
        #[allow(clippy::disallowed_methods)] // waiting for the sensor thread; no runtime here
        std::thread::sleep(Duration::from_millis(20));
    }
    handle.stop();
    let verdicts = verdicts.lock().unwrap();
    assert!(
        verdicts.iter().any(|(v, changes)| *v == Verdict::Ransomware && *changes >= 1),
        "the renamed writes were not read: {verdicts:?}"
    );
}
