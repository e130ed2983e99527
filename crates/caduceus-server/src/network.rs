//! The network stage: flow sources that feed the spine, and one durable
//! consumer that judges every flow.
//!
//! Sources (each bounded, each a producer on the spine):
//! - Zeek `conn.log` (TSV or JSON) and Suricata `eve.json` files, followed
//!   like `tail -F`: new complete lines every second, rotation and
//!   truncation noticed, the read offset kept in `data_dir/network/` so a
//!   restart neither loses nor repeats lines. Suricata's own alerts are
//!   forwarded as log records for the Sigma rules.
//! - Device telemetry from an MQTT broker.
//! - pcap files posted to `POST /api/v1/network/pcap`, assembled into flows.
//!
//! Every flow is a `LogRecord` (category `network_connection`) on the spine,
//! so the Sigma rules see it too. The `network` consumer reads them back and
//! raises Detection Findings from four judges:
//! - the flow model (`network.model`, reloaded when the file changes),
//! - the online anomaly detector, which learns the live traffic with
//!   Kitsune-style damped statistics per host and channel,
//! - healthcare-protocol checks (DICOM AE titles, HL7 senders),
//! - per-device baselines (new peer, port, protocol, volume, hour).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use caduceus_core::event::Payload;
use caduceus_core::{Actor, Severity, Timestamp};
use caduceus_detect::{Finding, FindingKind};
use caduceus_ml::{FeatureValue, Model};
use caduceus_net::baseline::{BASELINE_STATE_VERSION, BaselineParams, BaselineState, Baselines};
use caduceus_net::{Flow, NetFeature};
use caduceus_spine::{SpineError, Subscription};
use caduceus_store::StoredEvent;
use serde::{Deserialize, Serialize};

use crate::platform::{Platform, ServerError};

/// The consumer that judges flows.
pub const NETWORK_CONSUMER: &str = "network";
/// Longest line read from a followed log; longer lines are skipped.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most bytes read from a followed log in one pass.
const MAX_READ_BYTES: usize = 4 * 1024 * 1024;
/// How often followed logs and the model file are looked at.
const POLL: Duration = Duration::from_secs(1);
/// Most flows the stage takes from the spine at once.
const BATCH: usize = 512;
/// How often the baselines are written to disk while flows arrive (and once more when the
/// spine closes): a restart loses at most this much learning, never the baselines.
const BASELINE_SAVE_EVERY: Duration = Duration::from_secs(60);
/// Largest `baselines.json` read back (bounded by `BaselineParams`' limits well below this).
const MAX_BASELINE_FILE: u64 = 256 * 1024 * 1024;
/// How often the online detector is written to disk while flows arrive (and once more when the
/// spine closes). Its half-space trees are tens of megabytes of JSON, and a window of flows
/// changes them little, so less often than the baselines.
const ONLINE_SAVE_EVERY: Duration = Duration::from_secs(600);
/// Largest `online.json` read back (as large as a model file may be).
const MAX_ONLINE_FILE: u64 = caduceus_ml::model::MAX_MODEL_BYTES;
/// The version of `online.json`.
const ONLINE_STATE_VERSION: u32 = 1;

/// Counters for `/metrics` and the status endpoint.
#[derive(Debug, Default)]
pub struct NetworkCounters {
    /// Flows published by the sources.
    pub flows_ingested: AtomicU64,
    /// Suricata alerts forwarded.
    pub ids_alerts_ingested: AtomicU64,
    /// Telemetry messages from MQTT.
    pub telemetry_ingested: AtomicU64,
    /// Lines a source could not read.
    pub source_errors: AtomicU64,
    /// Flows judged by the consumer.
    pub flows_judged: AtomicU64,
    pub findings_model: AtomicU64,
    pub findings_online: AtomicU64,
    pub findings_protocol: AtomicU64,
    pub findings_baseline: AtomicU64,
    /// Devices with a baseline (learning or learned).
    pub baseline_devices: AtomicU64,
    /// Devices whose baselines were read back from `baselines.json` at start.
    pub baseline_devices_restored: AtomicU64,
    /// Times the baselines were written to `baselines.json`.
    pub baseline_saves: AtomicU64,
    /// Writes of `baselines.json` that failed (the next one retries).
    pub baseline_save_errors: AtomicU64,
    /// Flows the online detector had learned before the restart, read back from `online.json`.
    pub online_flows_restored: AtomicU64,
    /// Times the online detector was written to `online.json`.
    pub online_saves: AtomicU64,
    /// Writes of `online.json` that failed (the next one retries).
    pub online_save_errors: AtomicU64,
    /// Model files loaded (the first and every reload).
    pub model_loads: AtomicU64,
    /// Model files that failed to load (the previous model stays).
    pub model_load_errors: AtomicU64,
    /// Nanoseconds spent judging flows.
    pub busy_nanos: AtomicU64,
}

/// The loaded model and where it came from.
#[derive(Debug)]
pub struct LoadedModel {
    pub model: Model,
    pub path: PathBuf,
    pub modified: Option<std::time::SystemTime>,
    pub threshold: f32,
}

/// Everything the network stage shares between its tasks.
pub struct NetworkService {
    platform: Arc<Platform>,
    pub counters: NetworkCounters,
    model: RwLock<Option<Arc<LoadedModel>>>,
    model_generation: AtomicU64,
    state_dir: PathBuf,
    /// Set at shutdown: the sources and the model watcher stop.
    closing: std::sync::atomic::AtomicBool,
    /// The flow judge, awaited at shutdown so its last baseline save completes.
    consumer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for NetworkService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NetworkService")
    }
}

impl NetworkService {
    /// Prepare the stage and load the model, if one is configured. A model
    /// that does not load is reported and the stage runs without it.
    pub fn open(platform: &Arc<Platform>) -> Arc<Self> {
        let service = Arc::new(Self {
            platform: platform.clone(),
            counters: NetworkCounters::default(),
            model: RwLock::new(None),
            model_generation: AtomicU64::new(0),
            state_dir: platform.config.data_dir.join("network"),
            closing: std::sync::atomic::AtomicBool::new(false),
            consumer: std::sync::Mutex::new(None),
        });
        service.reload_model_if_changed();
        service
    }

    /// Stop the sources and the model watcher (the consumer stops when the
    /// spine closes).
    pub fn stop(&self) {
        self.closing.store(true, Ordering::Relaxed);
    }

    /// The model in use, if any.
    pub fn model(&self) -> Option<Arc<LoadedModel>> {
        self.model.read().ok().and_then(|m| m.clone())
    }

    /// Load the configured model when its file is new or changed. Returns
    /// whether a new model is in use.
    pub fn reload_model_if_changed(&self) -> bool {
        let Some(path) = self.platform.config.network.model.clone() else {
            return false;
        };
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        if let Some(current) = self.model()
            && current.modified == modified
        {
            return false;
        }
        match Model::load(&path) {
            Ok(model) => {
                let threshold =
                    self.platform.config.network.model_threshold.map(|t| t as f32).unwrap_or_else(|| model.threshold());
                tracing::info!(model = %path.display(), kind = ?model.kind(), features = model.feature_names().len(), "network: model loaded");
                if let Ok(mut slot) = self.model.write() {
                    *slot = Some(Arc::new(LoadedModel { model, path, modified, threshold }));
                }
                self.counters.model_loads.fetch_add(1, Ordering::Relaxed);
                self.model_generation.fetch_add(1, Ordering::SeqCst);
                true
            }
            Err(e) => {
                // Remember the bad file's time so that it is not retried
                // every second; a new write is tried again.
                if self.model().is_none_or(|m| m.modified != modified) {
                    tracing::error!(model = %path.display(), error = %e, "network: model not loaded; keeping the previous one");
                    self.counters.model_load_errors.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(current) = self.model()
                    && let Ok(mut slot) = self.model.write()
                {
                    *slot = Some(Arc::new(LoadedModel {
                        model: current.model.clone(),
                        path: current.path.clone(),
                        modified,
                        threshold: current.threshold,
                    }));
                }
                false
            }
        }
    }

    /// Start the sources, the model watcher and the consumer.
    pub async fn start(self: &Arc<Self>) -> Result<(), ServerError> {
        std::fs::create_dir_all(&self.state_dir)
            .map_err(|e| ServerError::Io(format!("cannot create {}: {e}", self.state_dir.display())))?;
        let config = &self.platform.config.network;
        for path in &config.zeek_logs {
            tokio::spawn(self.clone().follow(path.clone(), SourceFormat::Zeek));
        }
        for path in &config.eve_logs {
            tokio::spawn(self.clone().follow(path.clone(), SourceFormat::Eve));
        }
        if let Some(broker) = &config.mqtt_broker {
            let input = mqtt_input(config, broker)?;
            self.clone().start_mqtt(input);
        }
        if config.model.is_some() {
            let service = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(POLL);
                loop {
                    tick.tick().await;
                    let s = service.clone();
                    let _ = tokio::task::spawn_blocking(move || s.reload_model_if_changed()).await;
                    if service.closing.load(Ordering::Relaxed) {
                        break;
                    }
                }
            });
        }
        let subscription = self.platform.spine.subscribe(NETWORK_CONSUMER).await?;
        let consumer = tokio::spawn(self.clone().run(subscription));
        if let Ok(mut slot) = self.consumer.lock() {
            *slot = Some(consumer);
        }
        Ok(())
    }

    /// After the spine has closed: wait (up to 10 s) for the flow judge to save the baselines
    /// and stop.
    pub async fn finish(&self) {
        let consumer = self.consumer.lock().ok().and_then(|mut slot| slot.take());
        if let Some(consumer) = consumer
            && tokio::time::timeout(Duration::from_secs(10), consumer).await.is_err()
        {
            tracing::warn!("network: the flow judge did not stop within 10 s");
        }
    }

    /// Publish one source record on the spine, waiting while it is full.
    /// Returns false once the spine is closed.
    async fn publish(&self, payload: Payload, message: &str) -> bool {
        let event = match self.platform.event(Severity::Informational, Actor::system(), None, message, payload) {
            Ok(event) => event,
            Err(e) => {
                self.counters.source_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, "network: record not representable as an event");
                return true;
            }
        };
        self.publish_event(event).await
    }

    /// Publish flows (from a source or a posted pcap). Returns how many were
    /// published before the spine closed.
    pub async fn publish_flows(&self, product: &str, flows: &[Flow]) -> usize {
        let mut n = 0;
        for flow in flows {
            if !self.publish(flow.to_payload(product), "network flow").await {
                break;
            }
            n += 1;
            self.counters.flows_ingested.fetch_add(1, Ordering::Relaxed);
        }
        n
    }
}

// ---------------------------------------------------------------- sources

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SourceFormat {
    Zeek,
    Eve,
}

/// Where a followed log was read up to, kept across restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct FollowState {
    /// The file's inode when it was read; another inode means rotation.
    inode: u64,
    offset: u64,
    /// Zeek TSV header lines (`#fields`, `#types`, ...) seen at the start of
    /// the file: needed to read the lines after them.
    headers: Vec<String>,
}

fn inode_of(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino()
}

impl NetworkService {
    fn state_file(&self, path: &Path) -> PathBuf {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(path.to_string_lossy().as_bytes());
        self.state_dir.join(format!("follow-{}.json", hex::encode(digest.get(..8).unwrap_or_default())))
    }

    /// Follow a log file like `tail -F`, publishing what it holds.
    async fn follow(self: Arc<Self>, path: PathBuf, format: SourceFormat) {
        let state_file = self.state_file(&path);
        let mut state: FollowState =
            std::fs::read(&state_file).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok()).unwrap_or_default();
        let mut warned = false;
        let mut tick = tokio::time::interval(POLL);
        loop {
            tick.tick().await;
            if self.closing.load(Ordering::Relaxed) {
                return;
            }
            let (p, s) = (path.clone(), state.clone());
            let read = tokio::task::spawn_blocking(move || read_new_lines(&p, s)).await;
            let (lines, next) = match read {
                Ok(Ok(read)) => {
                    warned = false;
                    read
                }
                Ok(Err(e)) => {
                    if !warned {
                        tracing::warn!(file = %path.display(), error = %e, "network: cannot read the log yet");
                        warned = true;
                    }
                    continue;
                }
                Err(_) => continue,
            };
            if lines.is_empty() && next.offset == state.offset && next.inode == state.inode {
                continue;
            }
            let mut records = Vec::new();
            match format {
                SourceFormat::Zeek => {
                    let mut text = next.headers.join("\n");
                    text.push('\n');
                    text.push_str(&lines.join("\n"));
                    let mut reader = caduceus_net::zeek::ZeekReader::new(std::io::Cursor::new(text.into_bytes()));
                    for item in reader.by_ref() {
                        match item {
                            Ok(flow) => records.push(flow.to_payload("zeek")),
                            Err(_) => {
                                self.counters.source_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
                SourceFormat::Eve => {
                    let text = lines.join("\n");
                    let mut reader = caduceus_net::eve::EveReader::new(std::io::Cursor::new(text.into_bytes()));
                    for item in reader.by_ref() {
                        match item {
                            Ok(caduceus_net::eve::EveRecord::Flow(flow)) => records.push(flow.to_payload("suricata")),
                            Ok(caduceus_net::eve::EveRecord::Alert(alert)) => {
                                self.counters.ids_alerts_ingested.fetch_add(1, Ordering::Relaxed);
                                records.push(alert.to_payload("suricata"));
                            }
                            Err(_) => {
                                self.counters.source_errors.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                }
            }
            for payload in records {
                let is_flow =
                    matches!(&payload, Payload::LogRecord { category: Some(c), .. } if c == "network_connection");
                if !self.publish(payload, "network record").await {
                    return;
                }
                if is_flow {
                    self.counters.flows_ingested.fetch_add(1, Ordering::Relaxed);
                }
            }
            // The offset moves only once what it covers is on the spine.
            state = next;
            if let Ok(bytes) = serde_json::to_vec(&state)
                && let Err(e) = std::fs::write(&state_file, bytes)
            {
                tracing::warn!(error = %e, "network: cannot save the read offset");
            }
        }
    }

    fn start_mqtt(self: Arc<Self>, input: caduceus_net::mqtt::MqttInput) {
        let (mut receiver, handle) = match input.spawn(self.platform.clock.clone()) {
            Ok(started) => started,
            Err(e) => {
                tracing::error!(error = %e, "network: MQTT input not started");
                return;
            }
        };
        tokio::spawn(async move {
            // The handle lives as long as the task that reads its records.
            let _handle = handle;
            while let Some(telemetry) = receiver.recv().await {
                self.counters.telemetry_ingested.fetch_add(1, Ordering::Relaxed);
                if !self.publish(telemetry.to_payload(), "device telemetry").await {
                    return;
                }
            }
        });
    }
}

/// Read the complete lines added to `path` since `state`. A file that
/// shrank or has another inode was rotated: read it from the start.
fn read_new_lines(path: &Path, mut state: FollowState) -> std::io::Result<(Vec<String>, FollowState)> {
    let mut file = std::fs::File::open(path)?;
    let meta = file.metadata()?;
    let inode = inode_of(&meta);
    if inode != state.inode || meta.len() < state.offset {
        state = FollowState { inode, offset: 0, headers: Vec::new() };
    }
    file.seek(SeekFrom::Start(state.offset))?;
    let mut buf = Vec::new();
    file.take(MAX_READ_BYTES as u64).read_to_end(&mut buf)?;
    // Only complete lines; the rest is read next time. A line longer than
    // the cap with no end in sight is skipped whole.
    let end = match buf.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if buf.len() >= MAX_LINE_BYTES => {
            state.offset += buf.len() as u64;
            return Ok((Vec::new(), state));
        }
        None => 0,
    };
    let mut lines = Vec::new();
    for raw in buf.get(..end).unwrap_or_default().split(|&b| b == b'\n') {
        if raw.is_empty() || raw.len() > MAX_LINE_BYTES {
            continue;
        }
        let line = String::from_utf8_lossy(raw).trim_end_matches('\r').to_owned();
        if line.starts_with('#') {
            // A new header block (Zeek writes one at each file start).
            if line.starts_with("#separator") {
                state.headers.clear();
            }
            if state.headers.len() < 16 {
                state.headers.push(line);
            }
            continue;
        }
        lines.push(line);
    }
    state.offset += end as u64;
    Ok((lines, state))
}

// ---------------------------------------------------------------- judging

/// The online detector on live traffic: damped statistics of the flow's
/// hosts and channel, then the unsupervised detector.
struct Online {
    stats: caduceus_anomaly::DampedStats,
    detector: caduceus_anomaly::OnlineDetector,
    seen: u64,
}

/// What `online.json` keeps of the online detector: its trees and how many flows it has seen,
/// so a restart neither reopens the warm-up nor forgets what normal traffic looks like. The
/// damped statistics are not kept: their slowest rate halves every 100 s, so after any restart
/// but the quickest they would have decayed to nothing, which is where fresh ones start (a host
/// back from a quiet spell, as the detector has seen many times).
/// `D` is the detector when read, a borrow of it when written.
#[derive(Serialize, Deserialize)]
struct OnlineState<D> {
    version: u32,
    seen: u64,
    detector: D,
}

impl Online {
    fn dims() -> usize {
        caduceus_anomaly::DampedStats::feature_names().len() + FLOW_FEATURES.len()
    }

    fn new() -> Self {
        Self::with_detector(
            caduceus_anomaly::OnlineDetector::new(Self::dims(), caduceus_anomaly::OnlineParams::default()),
            0,
        )
    }

    fn with_detector(detector: caduceus_anomaly::OnlineDetector, seen: u64) -> Self {
        Self { stats: caduceus_anomaly::DampedStats::new(caduceus_anomaly::DampedParams::default()), detector, seen }
    }

    /// The detector saved in `path`, if there is one. `Err` when the file is there but is not
    /// an online state of this version and width: learning then starts again.
    fn read(path: &Path) -> Result<Option<Online>, String> {
        let Some(state): Option<OnlineState<caduceus_anomaly::OnlineDetector>> =
            read_state(path, MAX_ONLINE_FILE, "an online detector state")?
        else {
            return Ok(None);
        };
        if state.version != ONLINE_STATE_VERSION {
            return Err(format!("{} has state version {}, not {ONLINE_STATE_VERSION}", path.display(), state.version));
        }
        if state.detector.dims() != Self::dims() {
            return Err(format!(
                "{} holds a detector of {} features, not {}",
                path.display(),
                state.detector.dims(),
                Self::dims()
            ));
        }
        Ok(Some(Self::with_detector(state.detector, state.seen)))
    }

    fn to_json(&self) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&OnlineState { version: ONLINE_STATE_VERSION, seen: self.seen, detector: &self.detector })
    }

    /// Score the flow, then learn it. The score is `None` while warming up.
    fn judge(&mut self, flow: &Flow, warmup: u64) -> Option<f32> {
        let src = flow.src_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let dst = flow.dst_ip.map(|ip| ip.to_string()).unwrap_or_default();
        let mut x = self.stats.update(&src, &dst, flow.bytes() as f64, flow.start + flow.duration);
        for name in FLOW_FEATURES {
            x.push(match flow.feature(name) {
                Some(NetFeature::Num(v)) => v as f32,
                _ => f32::NAN,
            });
        }
        let score = (self.seen >= warmup).then(|| self.detector.score(&x));
        self.detector.learn_one(&x);
        self.seen += 1;
        score
    }
}

/// Flow statistics the online detector sees besides the damped statistics.
const FLOW_FEATURES: [&str; 8] = ["dur", "spkts", "dpkts", "sbytes", "dbytes", "smean", "dmean", "dst_port"];

impl NetworkService {
    async fn run(self: Arc<Self>, mut subscription: Box<dyn Subscription>) {
        let config = self.platform.config.network.clone();
        let classes: HashMap<IpAddr, String> =
            config.device_classes.iter().filter_map(|(ip, class)| Some((ip.parse().ok()?, class.clone()))).collect();
        let params = BaselineParams {
            learning_secs: config.baseline_learning_hours as f64 * 3600.0,
            ..BaselineParams::default()
        };
        let baselines_path = self.state_dir.join("baselines.json");
        let mut baselines = match read_baselines(&baselines_path) {
            Ok(Some(state)) => {
                let restored = state.device_count() as u64;
                self.counters.baseline_devices_restored.store(restored, Ordering::Relaxed);
                tracing::info!(devices = restored, "network: device baselines restored");
                Baselines::restore(params, move |ip| classes.get(&ip).cloned(), state)
            }
            Ok(None) => Baselines::with_classes(params, classes),
            Err(reason) => {
                // Learning starts again; the unreadable file is kept beside for a look.
                tracing::warn!(%reason, "network: saved baselines not used, learning anew");
                let _ = std::fs::rename(&baselines_path, baselines_path.with_extension("json.unreadable"));
                Baselines::with_classes(params, classes)
            }
        };
        let online_path = self.state_dir.join("online.json");
        let mut online = config.online_detector.then(|| match Online::read(&online_path) {
            Ok(Some(online)) => {
                self.counters.online_flows_restored.store(online.seen, Ordering::Relaxed);
                tracing::info!(flows = online.seen, "network: online detector restored");
                online
            }
            Ok(None) => Online::new(),
            Err(reason) => {
                tracing::warn!(%reason, "network: saved online detector not used, learning anew");
                let _ = std::fs::rename(&online_path, online_path.with_extension("json.unreadable"));
                Online::new()
            }
        });
        let mut state =
            SavedState { baselines_path, online_path, baselines_saved: Instant::now(), online_saved: Instant::now() };
        self.judge_flows(&mut subscription, &mut baselines, &mut online, &mut state).await;
        // The spine closed: keep what was learned.
        self.save_baselines(&state.baselines_path, &baselines).await;
        if let Some(online) = &online {
            self.save_online(&state.online_path, online).await;
        }
    }

    /// Judge flows until the spine closes, saving the baselines every
    /// [`BASELINE_SAVE_EVERY`] and the online detector every [`ONLINE_SAVE_EVERY`].
    async fn judge_flows(
        &self,
        subscription: &mut Box<dyn Subscription>,
        baselines: &mut Baselines,
        online: &mut Option<Online>,
        saved: &mut SavedState,
    ) {
        let config = self.platform.config.network.clone();
        let known_ae: Vec<String> = config.known_ae_titles.iter().map(|t| t.trim().to_owned()).collect();
        let hl7_senders: Vec<IpAddr> = config.hl7_senders.iter().filter_map(|ip| ip.parse().ok()).collect();
        let mut events = Vec::with_capacity(BATCH);
        loop {
            let first = match subscription.next().await {
                Ok(Some(stored)) => stored,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(error = %e, "network: reading the spine failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            events.clear();
            events.push(first);
            while events.len() < BATCH {
                match tokio::time::timeout(Duration::from_millis(1), subscription.next()).await {
                    Ok(Ok(Some(stored))) => events.push(stored),
                    _ => break,
                }
            }
            let model = self.model();
            let mut findings = Vec::new();
            let started = Instant::now();
            let flows: Vec<(&StoredEvent, Flow)> = events
                .iter()
                .filter_map(|stored| {
                    let Payload::LogRecord { category: Some(category), fields, .. } = stored.event.payload() else {
                        return None;
                    };
                    if category != "network_connection" {
                        return None;
                    }
                    Some((stored, Flow::from_fields(fields)?))
                })
                .collect();
            // The model scores the whole batch in one call: its batch path walks several flows
            // through each tree side by side, which is what the speed target is measured on.
            let scores = model.as_ref().map(|loaded| score_flows(&loaded.model, flows.iter().map(|(_, f)| f)));
            for (n, (stored, flow)) in flows.iter().enumerate() {
                self.counters.flows_judged.fetch_add(1, Ordering::Relaxed);
                let time = stored.event.time();
                let judge = Judge { seq: stored.seq, time, flow };
                if let Some(loaded) = &model {
                    let score = scores.as_ref().and_then(|s| s.get(n)).copied().unwrap_or(f32::NAN);
                    if score >= loaded.threshold {
                        self.counters.findings_model.fetch_add(1, Ordering::Relaxed);
                        findings.push(judge.model_finding(loaded, score));
                    }
                }
                if let Some(online) = online.as_mut()
                    && let Some(score) = online.judge(flow, config.online_warmup)
                    && f64::from(score) >= config.online_threshold
                {
                    self.counters.findings_online.fetch_add(1, Ordering::Relaxed);
                    findings.push(judge.online_finding(score, config.online_threshold));
                }
                for finding in judge.protocol_findings(&known_ae, &hl7_senders) {
                    self.counters.findings_protocol.fetch_add(1, Ordering::Relaxed);
                    findings.push(finding);
                }
                for alert in baselines.observe(flow) {
                    self.counters.findings_baseline.fetch_add(1, Ordering::Relaxed);
                    findings.push(judge.baseline_finding(&alert));
                }
            }
            self.counters.busy_nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
            for finding in findings {
                let event = match finding.to_event(self.platform.clock.now()) {
                    Ok(event) => event,
                    Err(e) => {
                        tracing::error!(error = %e, rule = %finding.rule_id, "network: finding not representable as an event");
                        continue;
                    }
                };
                if !self.publish_event(event).await {
                    return;
                }
            }
            if let Some(last) = events.last()
                && let Err(e) = subscription.ack(last.seq).await
            {
                tracing::warn!(error = %e, "network: acknowledging failed");
            }
            self.counters.baseline_devices.store(baselines.state().device_count() as u64, Ordering::Relaxed);
            if saved.baselines_saved.elapsed() >= BASELINE_SAVE_EVERY {
                self.save_baselines(&saved.baselines_path, baselines).await;
                saved.baselines_saved = Instant::now();
            }
            if let Some(online) = online.as_ref()
                && saved.online_saved.elapsed() >= ONLINE_SAVE_EVERY
            {
                self.save_online(&saved.online_path, online).await;
                saved.online_saved = Instant::now();
            }
        }
    }

    /// Write the online detector to `path`, as [`Self::save_baselines`] writes the baselines.
    async fn save_online(&self, path: &Path, online: &Online) {
        let c = &self.counters;
        save_json(path, online.to_json(), &c.online_saves, &c.online_save_errors, "the online detector").await;
    }

    /// Write the baselines to `path` (a temporary file renamed over it, so a crash mid-write
    /// leaves the previous copy). A failure is counted and logged; the next save retries.
    async fn save_baselines(&self, path: &Path, baselines: &Baselines) {
        let c = &self.counters;
        let json = serde_json::to_vec(baselines.state());
        save_json(path, json, &c.baseline_saves, &c.baseline_save_errors, "baselines").await;
    }

    /// Publish an event, waiting while the spine is full. Returns false
    /// once the spine is closed.
    async fn publish_event(&self, event: caduceus_core::SecurityEvent) -> bool {
        loop {
            match self.platform.spine.try_publish(event.clone()).await {
                Ok(_) => return true,
                Err(SpineError::Full { .. }) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(SpineError::Closed) => return false,
                Err(e) => {
                    tracing::error!(error = %e, "network: publishing failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }
}

/// Where the judge keeps what it learned, and when it last wrote each.
struct SavedState {
    baselines_path: PathBuf,
    online_path: PathBuf,
    baselines_saved: Instant,
    online_saved: Instant,
}

/// Write serialised state to `path` off the async threads (a temporary file renamed over it,
/// so a crash mid-write leaves the previous copy), counting the save or the failure.
async fn save_json(path: &Path, json: serde_json::Result<Vec<u8>>, saves: &AtomicU64, errors: &AtomicU64, what: &str) {
    let written = match json {
        Ok(bytes) => {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || {
                let tmp = path.with_extension("json.tmp");
                std::fs::write(&tmp, bytes)?;
                std::fs::rename(&tmp, &path)
            })
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()))
        }
        Err(e) => Err(e.to_string()),
    };
    match written {
        Ok(()) => {
            saves.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "network: writing {what} failed");
        }
    }
}

/// Score a flow with the model: its fields by the model's feature names.
pub fn score_flow(model: &Model, flow: &Flow) -> f32 {
    score_flows(model, [flow]).first().copied().unwrap_or(f32::NAN)
}

/// Score flows with the model in one batch, one score per flow (NaN where the model cannot
/// read flows: an ONNX model without feature names, or one that failed).
pub fn score_flows<'f>(model: &Model, flows: impl IntoIterator<Item = &'f Flow>) -> Vec<f32> {
    let mut rows = Vec::new();
    let mut n = 0usize;
    let mut readable = true;
    for flow in flows {
        n += 1;
        // Categories are owned by the flow's answers; keep them here so the
        // model can borrow them while it reads the row.
        let texts: Vec<(&str, String)> = model
            .feature_names()
            .iter()
            .filter_map(|name| match flow.feature(name) {
                Some(NetFeature::Text(t)) => Some((name.as_str(), t)),
                _ => None,
            })
            .collect();
        readable &= model.push_row_with(
            &|name| match flow.feature(name)? {
                NetFeature::Num(v) => Some(FeatureValue::Num(v)),
                NetFeature::Text(_) => {
                    texts.iter().find(|(n, _)| *n == name).map(|(_, t)| FeatureValue::Text(t.as_str()))
                }
            },
            &mut rows,
        );
    }
    if !readable {
        return vec![f32::NAN; n];
    }
    match model.score_batch(&rows) {
        Ok(scores) if scores.len() == n => scores,
        Ok(_) | Err(_) => vec![f32::NAN; n],
    }
}

/// The findings one flow may raise.
struct Judge<'a> {
    seq: u64,
    time: Timestamp,
    flow: &'a Flow,
}

impl Judge<'_> {
    fn describe(&self) -> String {
        let f = self.flow;
        let host = |ip: Option<IpAddr>, port: Option<u16>| match (ip, port) {
            (Some(ip), Some(port)) => format!("{ip}:{port}"),
            (Some(ip), None) => ip.to_string(),
            _ => "?".to_owned(),
        };
        let app = f.app_proto.as_deref().map(|a| format!(" ({a})")).unwrap_or_default();
        format!(
            "{} → {} {}{app}, {} packets, {} bytes, {:.1} s",
            host(f.src_ip, f.src_port),
            host(f.dst_ip, f.dst_port),
            f.transport.name(),
            f.packets(),
            f.bytes(),
            f.duration
        )
    }

    fn finding(&self, kind: FindingKind, rule_id: &str, title: &str, severity: Severity) -> Finding {
        Finding {
            kind,
            rule_id: rule_id.to_owned(),
            rule_title: title.to_owned(),
            severity,
            time: self.time,
            entity: self.flow.src_ip.map(|ip| ip.to_string()),
            patients: Vec::new(),
            score: None,
            explanation: String::new(),
            context: Vec::new(),
            tags: Vec::new(),
            events: vec![self.seq],
        }
    }

    fn model_finding(&self, loaded: &LoadedModel, score: f32) -> Finding {
        let mut f = self.finding(
            FindingKind::Network,
            "caduceus-net-model",
            "Flow classified as an attack by the flow model",
            Severity::High,
        );
        f.score = Some(f64::from(score));
        f.explanation = format!(
            "the {:?} model scored {score:.3} (threshold {:.3}): {}",
            loaded.model.kind(),
            loaded.threshold,
            self.describe()
        );
        f.context = vec![format!("model file {}", loaded.path.display())];
        f.tags = vec!["attack.initial_access".into()];
        f
    }

    fn online_finding(&self, score: f32, threshold: f64) -> Finding {
        let mut f = self.finding(
            FindingKind::Network,
            "caduceus-net-anomaly",
            "Anomalous flow (online detector)",
            Severity::Medium,
        );
        f.score = Some(f64::from(score));
        f.explanation = format!(
            "unlike the traffic learned so far (score {score:.3}, threshold {threshold:.2}): {}",
            self.describe()
        );
        f
    }

    fn protocol_findings(&self, known_ae: &[String], hl7_senders: &[IpAddr]) -> Vec<Finding> {
        let mut out = Vec::new();
        match &self.flow.app {
            Some(caduceus_net::AppInfo::Dicom { called_ae, move_destinations, commands, .. })
                if !known_ae.is_empty() =>
            {
                let unknown =
                    |ae: &str| !known_ae.iter().any(|k| k.eq_ignore_ascii_case(ae.trim())) && !ae.trim().is_empty();
                for dest in move_destinations.iter().filter(|d| unknown(d)) {
                    let mut f = self.finding(
                        FindingKind::Network,
                        "caduceus-net-dicom-move-unknown-ae",
                        "DICOM C-MOVE to an unknown AE title",
                        Severity::High,
                    );
                    f.explanation = format!(
                        "C-MOVE asks the archive to send studies to AE title `{dest}`, which is not a known AE title: {}",
                        self.describe()
                    );
                    f.tags = vec!["attack.exfiltration".into(), "attack.t1041".into()];
                    out.push(f);
                }
                if let Some(called) = called_ae
                    && unknown(called)
                {
                    let mut f = self.finding(
                        FindingKind::Network,
                        "caduceus-net-dicom-unknown-ae",
                        "DICOM association with an unknown AE title",
                        Severity::Medium,
                    );
                    f.explanation = format!(
                        "association to AE title `{called}` ({}), not a known AE title: {}",
                        if commands.is_empty() { "no command seen".to_owned() } else { commands.join(", ") },
                        self.describe()
                    );
                    out.push(f);
                }
            }
            Some(caduceus_net::AppInfo::Hl7 { message_types, sending_application, .. }) if !hl7_senders.is_empty() => {
                if let Some(src) = self.flow.src_ip
                    && !hl7_senders.contains(&src)
                {
                    let mut f = self.finding(
                        FindingKind::Network,
                        "caduceus-net-hl7-unexpected-sender",
                        "HL7 from a host that is not an interface engine",
                        Severity::High,
                    );
                    f.explanation = format!(
                        "{src} sent HL7 ({}; sending application `{}`) but is not a configured interface engine: {}",
                        message_types.join(", "),
                        sending_application.as_deref().unwrap_or("-"),
                        self.describe()
                    );
                    f.tags = vec!["attack.t1565".into()];
                    out.push(f);
                }
            }
            _ => {}
        }
        out
    }

    fn baseline_finding(&self, alert: &caduceus_net::baseline::BaselineAlert) -> Finding {
        let kind = alert.kind.as_str();
        let title = match alert.kind {
            caduceus_net::baseline::AlertKind::NewPeer => "Device talked to a new peer",
            caduceus_net::baseline::AlertKind::NewPort => "Device used a new port",
            caduceus_net::baseline::AlertKind::NewProtocol => "Device used a new protocol",
            caduceus_net::baseline::AlertKind::VolumeAnomaly => "Device sent an unusual volume",
            caduceus_net::baseline::AlertKind::OffHours => "Device active at an unusual hour",
        };
        let mut f = self.finding(FindingKind::Baseline, &format!("caduceus-baseline-{kind}"), title, Severity::Low);
        f.entity = Some(alert.device.to_string());
        f.score = alert.score.map(|z| (z / 10.0).clamp(0.0, 1.0));
        f.explanation = alert.explanation();
        f.context = vec![format!("observed: {}", alert.observed), format!("baseline: {}", alert.baseline)];
        if let Some(class) = &alert.device_class {
            f.context.push(format!("device class: {class}"));
        }
        f
    }
}

/// The saved baselines, if there are any. `Err` when the file is there but is not a baseline
/// state of this version (or is too large): learning then starts again.
fn read_baselines(path: &Path) -> Result<Option<BaselineState>, String> {
    let Some(state): Option<BaselineState> = read_state(path, MAX_BASELINE_FILE, "a baseline state")? else {
        return Ok(None);
    };
    if state.version != BASELINE_STATE_VERSION {
        return Err(format!("{} has state version {}, not {BASELINE_STATE_VERSION}", path.display(), state.version));
    }
    Ok(Some(state))
}

/// Saved state of type `T` from `path` (at most `limit` bytes): `None` when there is no file,
/// `Err` when it cannot be read or is not `what`.
fn read_state<T: serde::de::DeserializeOwned>(path: &Path, limit: u64, what: &str) -> Result<Option<T>, String> {
    let bytes = match read_capped(path, limit) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{} is not {what}: {e}", path.display()))
}

/// A whole file of at most `limit` bytes; a larger one is an `InvalidData` error.
fn read_capped(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {limit} bytes")));
    }
    Ok(bytes)
}

/// Largest MQTT CA or password file read.
const MAX_MQTT_FILE: u64 = 1024 * 1024;

fn read_small(path: &Path, what: &str) -> Result<Vec<u8>, ServerError> {
    read_capped(path, MAX_MQTT_FILE)
        .map_err(|e| ServerError::Io(format!("cannot read the {what} {}: {e}", path.display())))
}

/// The MQTT input the configuration describes: broker, topics, CA file and login.
fn mqtt_input(
    config: &caduceus_core::config::NetworkConfig,
    broker: &str,
) -> Result<caduceus_net::mqtt::MqttInput, ServerError> {
    let mut input = caduceus_net::mqtt::MqttInput::new(broker, config.mqtt_topics.clone(), "caduceus-network");
    if let Some(path) = &config.mqtt_ca_file {
        input.ca_pem = Some(read_small(path, "MQTT CA file")?);
    }
    if let Some(username) = &config.mqtt_username {
        let password = match &config.mqtt_password_file {
            Some(path) => {
                let bytes = read_small(path, "MQTT password file")?;
                let text = String::from_utf8(bytes)
                    .map_err(|_| ServerError::Io("the MQTT password file is not UTF-8".into()))?;
                text.lines().next().unwrap_or_default().to_owned()
            }
            None => String::new(),
        };
        input.credentials = Some(caduceus_net::mqtt::MqttCredentials {
            username: username.clone(),
            password: caduceus_core::Redacted::new(password),
        });
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn following_reads_only_complete_lines_and_notices_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("conn.log");
        std::fs::write(&path, "#separator \\x09\n#fields\tts\nline one\npartial").unwrap();
        let (lines, state) = read_new_lines(&path, FollowState::default()).unwrap();
        assert_eq!(lines, ["line one"]);
        assert_eq!(state.headers, ["#separator \\x09", "#fields\tts"]);
        std::fs::write(&path, "#separator \\x09\n#fields\tts\nline one\npartial line\nthird\n").unwrap();
        let (lines, state) = read_new_lines(&path, state).unwrap();
        assert_eq!(lines, ["partial line", "third"]);
        // Truncated (rotated in place): read again from the start.
        std::fs::write(&path, "fresh\n").unwrap();
        let (lines, state) = read_new_lines(&path, state).unwrap();
        assert_eq!(lines, ["fresh"]);
        assert!(state.headers.is_empty());
    }
}
