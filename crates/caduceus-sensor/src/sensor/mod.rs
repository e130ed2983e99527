//! The sensor: watches directory trees with inotify (renames, deletions,
//! creations, closes after writing) and, where the kernel allows it
//! (CAP_SYS_ADMIN), fanotify (closes after writing with the writer's pid and
//! an open descriptor to read the content from). Runs on its own thread;
//! owns the watches, the canaries, the engine and the response. Reports go to
//! a callback that must not block (hand them to a channel).

mod engine;
mod gate;
mod response;

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::{self, File};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify, WatchMask};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{EventFFlags, Fanotify, InitFlags, MarkFlags, MaskFlags};

pub use engine::is_extension_change;
pub use response::{Response, process_name, writers_under};

use crate::canary::{self, CanarySet};
use crate::entropy::{HEAD_BYTES, sample_file, sample_written, sample_written_of_len};
use crate::report::{Counts, PathHasher, Report, Status, Verdict};
use crate::score::{Decision, ScoreConfig};
use crate::{Result, SensorError};
use engine::{Engine, InodeKey};
use gate::Gate;
use response::Responder;

/// Whether to use fanotify for the writer's pid.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FanotifyMode {
    /// Use it when the kernel and our privileges allow, else inotify only.
    #[default]
    Auto,
    /// inotify only (no pid, so `kill` falls back to the /proc scan).
    Off,
    /// Fail to start without it.
    Required,
}

/// How the sensor watches and responds.
#[derive(Clone, Debug)]
pub struct SensorConfig {
    /// Directory trees to watch, recursively (subdirectories created later
    /// are added).
    pub roots: Vec<PathBuf>,
    /// Place canary files in each root and its first-level subdirectories.
    pub canaries: bool,
    /// Where to keep the list of placed canaries, so that the next start
    /// removes those an unclean stop left behind.
    pub canary_manifest: Option<PathBuf>,
    /// Most canaries placed.
    pub max_canaries: usize,
    pub fanotify: FanotifyMode,
    pub response: Response,
    /// With `kill` and no pid from fanotify (inotify only), kill every
    /// process that holds a file under the roots open for writing (found in
    /// /proc) at the moment of the verdict. Off by default: it cannot tell
    /// ransomware from a database or editor writing on the same share.
    pub kill_open_file_writers: bool,
    /// Refuse a process judged to be ransomware every further open of a
    /// file under the roots, at the verdict (fanotify permission events; see
    /// `gate`). Every open under the roots then waits until the sensor has
    /// scored the writes before it (microseconds; at most 50 ms). Needs
    /// fanotify; ignored without it.
    pub block_judged: bool,
    /// Keys the hashes of file paths in reports.
    pub hasher: PathHasher,
    pub score: ScoreConfig,
    /// Interval of heartbeat reports; `None` for none.
    pub heartbeat: Option<Duration>,
    /// Files whose type and entropy are learned at start (the rest are
    /// learned when first written).
    pub seed_max_files: usize,
    /// Files remembered (type and entropy).
    pub cache_capacity: usize,
    /// Directories watched at most.
    pub max_watches: usize,
    /// Least time between two runs of a response command.
    pub command_cooldown: Duration,
    /// Nice value for the sensor thread (negative = before other work; needs
    /// CAP_SYS_NICE, else the thread keeps its priority). `None` leaves it.
    pub nice: Option<i32>,
    /// Run the sensor thread at the lowest real-time priority (SCHED_FIFO 1;
    /// needs CAP_SYS_NICE). It then wakes at once on an event even when
    /// every core is busy, which is what keeps files lost low on a loaded
    /// host; its work per wake-up is bounded, and the kernel's real-time
    /// throttling caps it at 95% of one core in an event flood.
    pub realtime: bool,
}

impl SensorConfig {
    /// Defaults for watching `roots`: no canaries, fanotify when possible,
    /// report only, a random path-hash key (pass your own to follow files
    /// across restarts).
    pub fn new(roots: Vec<PathBuf>) -> Self {
        Self {
            roots,
            canaries: false,
            canary_manifest: None,
            max_canaries: 64,
            fanotify: FanotifyMode::Auto,
            response: Response::None,
            kill_open_file_writers: false,
            block_judged: true,
            hasher: PathHasher::new(rand::random()),
            score: ScoreConfig::default(),
            heartbeat: Some(Duration::from_secs(60)),
            seed_max_files: 20_000,
            cache_capacity: 200_000,
            max_watches: 65_536,
            command_cooldown: Duration::from_secs(60),
            nice: Some(-10),
            realtime: true,
        }
    }
}

/// Totals of one sensor run, returned by [`SensorHandle::stop`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SensorStats {
    pub events: u64,
    pub reports: u64,
    pub ransomware_reports: u64,
    pub overflows: u64,
    pub canaries_placed: u64,
    pub canaries_removed: u64,
    pub seeded_files: u64,
    pub watched_dirs: u64,
    pub fanotify: bool,
    /// Whether the open gate ran (judged processes refused their opens).
    pub gate: bool,
    /// Opens under the roots the gate answered.
    pub gated_opens: u64,
    /// Of those, opens that waited for the sensor to catch up.
    pub gate_waits: u64,
    /// Waits cut short at the cap (the open was allowed).
    pub gate_timeouts: u64,
    /// Opens refused to judged processes.
    pub denied_opens: u64,
}

/// The entry point: [`Sensor::start`].
#[derive(Debug)]
pub struct Sensor;

/// A running sensor; stops (and removes its canaries) on [`SensorHandle::stop`] or drop.
#[derive(Debug)]
pub struct SensorHandle {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<SensorStats>>,
    fanotify: bool,
    gate: bool,
    canaries: Vec<PathBuf>,
    roots: Vec<PathBuf>,
}

const INOTIFY_DIR_MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::CLOSE_WRITE)
    .union(WatchMask::MOVED_FROM)
    .union(WatchMask::MOVED_TO)
    .union(WatchMask::DELETE)
    .union(WatchMask::ONLYDIR)
    .union(WatchMask::DONT_FOLLOW);
const INOTIFY_CANARY_MASK: WatchMask = WatchMask::MODIFY.union(WatchMask::ATTRIB).union(WatchMask::DONT_FOLLOW);
/// How long a rename's first half waits for its second before it counts as
/// a move out of the watched trees.
const MOVE_PAIR_MS: u64 = 200;
const MAX_PENDING_MOVES: usize = 1024;
const MAX_MISSED_WRITES: usize = 256;
const POLL_MS: u16 = 100;
/// Consecutive fanotify read failures before falling back to inotify.
const MAX_FANOTIFY_FAILURES: u32 = 16;
const MAX_PROCESS_NAMES: usize = 1024;
/// A new directory's tree is added up to this many subdirectories at once.
const MAX_NEW_TREE_DIRS: usize = 4096;
const MAX_NEW_TREE_FILES: usize = 4096;

impl Sensor {
    /// Set up watches (and canaries), learn the existing files, and start
    /// the sensor thread. Returns once the sensor is watching, so that
    /// anything done afterwards is seen. `on_report` runs on the sensor
    /// thread for every report (alerts and heartbeats).
    pub fn start(config: SensorConfig, on_report: impl FnMut(&Report) + Send + 'static) -> Result<SensorHandle> {
        let roots = canonical_roots(&config.roots)?;
        if let Some(m) = &config.canary_manifest {
            let stale = canary::remove_stale(m)?;
            if stale > 0 {
                tracing::info!(removed = stale, "removed canaries left by an earlier run");
            }
        }
        let canaries = if config.canaries {
            CanarySet::place(&roots, config.canary_manifest.as_deref(), config.max_canaries, rand::random())?
        } else {
            CanarySet::default()
        };
        match Runner::new(config, roots.clone(), canaries) {
            Ok(runner) => {
                let stop = Arc::new(AtomicBool::new(false));
                let fanotify = runner.fanotify.is_some();
                let gate = runner.gate.is_some();
                let canaries = runner.canaries.canaries().iter().map(|c| c.path.clone()).collect();
                let flag = Arc::clone(&stop);
                let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
                let thread = std::thread::Builder::new()
                    .name("file-sensor".into())
                    .spawn(move || runner.run(&flag, on_report, ready_tx))
                    .map_err(|e| SensorError::io("starting the sensor thread", e))?;
                // Return only once the thread runs its loop: the first
                // events must not wait for the thread to be scheduled.
                let _ = ready_rx.recv();
                Ok(SensorHandle { stop, thread: Some(thread), fanotify, gate, canaries, roots })
            }
            Err((e, canaries)) => {
                let _ = canaries.remove();
                Err(e)
            }
        }
    }
}

impl SensorHandle {
    /// Stop watching, remove unchanged canaries, and return the run's totals.
    pub fn stop(mut self) -> SensorStats {
        self.shutdown()
    }

    fn shutdown(&mut self) -> SensorStats {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }

    /// Whether the sensor thread has ended on its own (its descriptors
    /// failed; the log says why): the caller should restart or exit.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Whether fanotify is in use (pids known), else inotify only.
    pub fn fanotify_active(&self) -> bool {
        self.fanotify
    }

    /// Whether the open gate runs (judged processes are refused their opens).
    pub fn gate_active(&self) -> bool {
        self.gate
    }

    /// `fanotify+inotify` or `inotify`.
    pub fn mode(&self) -> &'static str {
        mode_name(self.fanotify)
    }

    /// The canaries placed (names the sensor chose, not users' files).
    pub fn canary_paths(&self) -> &[PathBuf] {
        &self.canaries
    }

    /// The watched roots, canonical.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }
}

impl Drop for SensorHandle {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.shutdown();
        }
    }
}

fn mode_name(fanotify: bool) -> &'static str {
    if fanotify { "fanotify+inotify" } else { "inotify" }
}

fn canonical_roots(roots: &[PathBuf]) -> Result<Vec<PathBuf>> {
    if roots.is_empty() {
        return Err(SensorError::Config("no directory to watch".into()));
    }
    roots
        .iter()
        .map(|r| {
            let c = r.canonicalize().map_err(|e| SensorError::io(format!("watch root {}", r.display()), e))?;
            if !c.is_dir() {
                return Err(SensorError::Config(format!("watch root {} is not a directory", r.display())));
            }
            Ok(c)
        })
        .collect()
}

fn inode_of(meta: &fs::Metadata) -> InodeKey {
    InodeKey { dev: meta.dev(), ino: meta.ino() }
}

/// Open a regular file for sampling without following a symlink.
fn open_regular(path: &Path) -> Option<File> {
    let f = fs::OpenOptions::new().read(true).custom_flags(nix::fcntl::OFlag::O_NOFOLLOW.bits()).open(path).ok()?;
    f.metadata().ok().filter(fs::Metadata::is_file).map(|_| f)
}

#[derive(Debug)]
struct PendingMove {
    cookie: u32,
    from: PathBuf,
    is_dir: bool,
    t: u64,
}

#[derive(Debug)]
struct RawEvent {
    wd: i32,
    mask: EventMask,
    cookie: u32,
    name: Option<OsString>,
}

struct Runner {
    inotify: Inotify,
    fanotify: Option<Fanotify>,
    /// The open gate (with fanotify and `block_judged`).
    gate: Option<Gate>,
    /// Watch descriptor → (directory, whether fanotify marks it too).
    dirs: HashMap<i32, (PathBuf, bool)>,
    canary_watches: HashMap<i32, PathBuf>,
    canaries: CanarySet,
    engine: Engine,
    pending: VecDeque<PendingMove>,
    /// Files closed after writing that were gone (renamed) before inotify's
    /// event could be read; their rename reads them at the new name.
    missed_writes: VecDeque<PathBuf>,
    responder: Responder,
    response: Response,
    kill_open_file_writers: bool,
    command_cooldown: Duration,
    last_command: Option<Instant>,
    heartbeat: Option<Duration>,
    max_watches: usize,
    nice: Option<i32>,
    realtime: bool,
    rt_active: bool,
    fan_failures: u32,
    started: Instant,
    names: HashMap<i32, Option<String>>,
    stats: SensorStats,
    since_heartbeat: Counts,
}

impl Runner {
    fn new(
        config: SensorConfig,
        roots: Vec<PathBuf>,
        canaries: CanarySet,
    ) -> std::result::Result<Self, (SensorError, CanarySet)> {
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => return Err((SensorError::io("inotify init", e), canaries)),
        };
        let fanotify = match (config.fanotify, init_fanotify()) {
            (FanotifyMode::Off, _) => None,
            (_, Ok(f)) => Some(f),
            (FanotifyMode::Auto, Err(e)) => {
                tracing::warn!(error = %e, "fanotify unavailable, inotify only: no pid for writers");
                None
            }
            (FanotifyMode::Required, Err(e)) => {
                return Err((SensorError::io("fanotify init (needs CAP_SYS_ADMIN)", e.into()), canaries));
            }
        };
        let gate = match &fanotify {
            Some(f) if config.block_judged => start_gate(f, &inotify),
            _ => None,
        };
        let engine = Engine::new(roots.clone(), config.hasher.clone(), config.score.clone(), config.cache_capacity);
        let mut runner = Self {
            inotify,
            fanotify,
            gate,
            dirs: HashMap::new(),
            canary_watches: HashMap::new(),
            canaries,
            engine,
            pending: VecDeque::new(),
            missed_writes: VecDeque::new(),
            responder: Responder::default(),
            response: config.response,
            kill_open_file_writers: config.kill_open_file_writers,
            command_cooldown: config.command_cooldown,
            last_command: None,
            heartbeat: config.heartbeat,
            max_watches: config.max_watches,
            nice: config.nice,
            realtime: config.realtime,
            rt_active: false,
            fan_failures: 0,
            started: Instant::now(),
            names: HashMap::new(),
            stats: SensorStats::default(),
            since_heartbeat: Counts::default(),
        };
        let mut seed_budget = config.seed_max_files;
        for root in &roots {
            let dev = match fs::metadata(root) {
                Ok(m) => m.dev(),
                Err(e) => return Err((SensorError::io(format!("watch root {}", root.display()), e), runner.canaries)),
            };
            if let Err(e) = runner.add_tree(root, dev, &mut seed_budget, None) {
                return Err((e, runner.canaries));
            }
        }
        let placed: Vec<PathBuf> = runner.canaries.canaries().iter().map(|c| c.path.clone()).collect();
        for path in placed {
            let key = fs::symlink_metadata(&path).ok().map(|m| inode_of(&m));
            if let Ok(wd) = runner.inotify.watches().add(&path, INOTIFY_CANARY_MASK) {
                runner.canary_watches.insert(wd.get_watch_descriptor_id(), path.clone());
            }
            if let Some(f) = &runner.fanotify {
                let _ = f.mark(MarkFlags::FAN_MARK_ADD, MaskFlags::FAN_MODIFY, nix::fcntl::AT_FDCWD, Some(&path));
            }
            runner.engine.add_canary(path, key);
            runner.stats.canaries_placed += 1;
        }
        runner.stats.fanotify = runner.fanotify.is_some();
        runner.stats.gate = runner.gate.is_some();
        tracing::info!(
            roots = roots.len(),
            dirs = runner.dirs.len(),
            seeded = runner.stats.seeded_files,
            canaries = runner.stats.canaries_placed,
            mode = mode_name(runner.fanotify.is_some()),
            gate = runner.gate.is_some(),
            "file sensor watching"
        );
        Ok(runner)
    }

    /// Watch `top` and the directories below it (same device, no symlinks)
    /// and learn the files in them. With `created_at`, files found are new
    /// (a directory created while watching), so they are scored as writes.
    fn add_tree(
        &mut self,
        top: &Path,
        dev: u64,
        seed_budget: &mut usize,
        created_at: Option<u64>,
    ) -> Result<Vec<(Decision, usize)>> {
        let mut decisions = Vec::new();
        let mut stack = vec![top.to_path_buf()];
        let mut dirs_added = 0usize;
        let mut files_seen = 0usize;
        while let Some(dir) = stack.pop() {
            if self.dirs.len() >= self.max_watches || (created_at.is_some() && dirs_added >= MAX_NEW_TREE_DIRS) {
                tracing::warn!(limit = self.max_watches, "watch limit reached, some directories are not watched");
                break;
            }
            let wd = match self.inotify.watches().add(&dir, INOTIFY_DIR_MASK) {
                Ok(wd) => wd,
                Err(e) if dir == top && created_at.is_none() => {
                    return Err(SensorError::io(format!("watching {}", top.display()), e));
                }
                Err(_) => continue,
            };
            let marked = self.fanotify.as_ref().is_some_and(|f| {
                f.mark(
                    MarkFlags::FAN_MARK_ADD,
                    MaskFlags::FAN_CLOSE_WRITE | MaskFlags::FAN_EVENT_ON_CHILD,
                    nix::fcntl::AT_FDCWD,
                    Some(&dir),
                )
                .is_ok()
            });
            if marked && let Some(g) = &self.gate {
                g.mark(&dir);
            }
            self.dirs.insert(wd.get_watch_descriptor_id(), (dir.clone(), marked));
            dirs_added += 1;
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for entry in entries.filter_map(|e| e.ok()) {
                let Ok(meta) = entry.metadata() else { continue };
                let path = entry.path();
                if meta.is_dir() && meta.dev() == dev {
                    stack.push(path);
                } else if meta.is_file() {
                    if let Some(now) = created_at {
                        if files_seen < MAX_NEW_TREE_FILES {
                            files_seen += 1;
                            decisions.extend(self.on_new_file(now, &path));
                        }
                    } else if *seed_budget > 0
                        && let Some(f) = open_regular(&path)
                        && let Ok(sample) = sample_file(&f, HEAD_BYTES, true)
                    {
                        *seed_budget -= 1;
                        self.engine.seed(&path, inode_of(&meta), &sample);
                        self.stats.seeded_files += 1;
                    }
                }
            }
        }
        self.stats.watched_dirs = self.dirs.len() as u64;
        Ok(decisions)
    }

    /// Real-time (SCHED_FIFO 1) or normal scheduling with the configured
    /// nice value, for the calling (sensor) thread.
    fn set_priority(&mut self, realtime: bool) {
        use thread_priority::{
            NormalThreadSchedulePolicy, RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
        };
        let id = thread_priority::thread_native_id();
        let result = if realtime {
            let fifo = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo);
            thread_priority::set_thread_priority_and_policy(id, ThreadPriority::Min, fifo)
        } else if self.rt_active {
            let other = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
            thread_priority::set_thread_priority_and_policy(id, ThreadPriority::Min, other)
        } else {
            Ok(())
        };
        let was_realtime = self.rt_active;
        match result {
            Ok(()) => self.rt_active = realtime,
            Err(e) => tracing::info!(error = ?e, realtime, "sensor thread priority unchanged"),
        }
        // Leaving real-time also set a nice value; put the configured one back.
        if !self.rt_active
            && let Some(nice) = self.nice.or(was_realtime.then_some(0))
            && let Err(e) = rustix::process::setpriority_process(Some(rustix::thread::gettid()), nice)
        {
            tracing::info!(error = %e, "sensor thread keeps its nice value");
        }
    }

    /// fanotify broke: go on with inotify alone (its close-writes, no pids).
    fn fanotify_failed(&mut self) {
        self.gate = None;
        if self.fanotify.take().is_some() {
            tracing::warn!("fanotify failed, inotify only from now on: no pid for writers");
            for (_, marked) in self.dirs.values_mut() {
                *marked = false;
            }
            self.stats.fanotify = false;
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn run(
        mut self,
        stop: &AtomicBool,
        mut on_report: impl FnMut(&Report),
        ready: std::sync::mpsc::SyncSender<()>,
    ) -> SensorStats {
        self.set_priority(self.realtime);
        if let Some(g) = &self.gate {
            g.set_sensor_thread();
        }
        let mut buffer = vec![0u8; 64 * 1024];
        let mut last_heartbeat = Instant::now();
        let mut last_prune = Instant::now();
        let _ = ready.send(());
        let mut busy = Duration::ZERO;
        let mut duty_since = Instant::now();
        while !stop.load(Ordering::SeqCst) {
            let (ino_ready, fan_ready, fan_broken) = {
                let mut fds = vec![PollFd::new(self.inotify.as_fd(), PollFlags::POLLIN)];
                if let Some(f) = &self.fanotify {
                    fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
                }
                // The gate asks for a drain through its socket (read in
                // `Gate::begin`); poll only wakes for it.
                if let Some(g) = &self.gate {
                    fds.push(PollFd::new(g.wake_fd(), PollFlags::POLLIN));
                }
                let timeout = if self.pending.is_empty() { POLL_MS } else { 20 };
                match poll(&mut fds, PollTimeout::from(timeout)) {
                    Ok(_) => {
                        let revents = |i: usize| fds.get(i).and_then(PollFd::revents).unwrap_or(PollFlags::empty());
                        let broken = PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL;
                        if revents(0).intersects(broken) {
                            tracing::error!("inotify descriptor failed, file sensor stopping");
                            break;
                        }
                        let fan_broken = revents(1).intersects(broken);
                        (revents(0).contains(PollFlags::POLLIN), revents(1).contains(PollFlags::POLLIN), fan_broken)
                    }
                    Err(nix::errno::Errno::EINTR) => (false, false, false),
                    Err(e) => {
                        tracing::error!(error = %e, "file sensor poll failed, stopping");
                        break;
                    }
                }
            };
            if fan_broken {
                self.fanotify_failed();
            }
            let work = Instant::now();
            // With the gate, every round reads both queues until empty (the
            // reads do not block), so that a waiting open learns the verdicts
            // on every write queued before it.
            let gated = self.gate.is_some();
            if let Some(g) = &mut self.gate {
                g.begin();
            }
            let mut emptied = true;
            if fan_ready || gated {
                emptied &= self.drain_fanotify(&mut on_report);
            }
            if ino_ready || gated {
                match self.drain_inotify(&mut buffer, &mut on_report) {
                    Some(all) => emptied &= all,
                    None => {
                        tracing::error!("inotify unreadable, file sensor stopping");
                        break;
                    }
                }
            }
            if let Some(g) = &mut self.gate {
                g.end(emptied);
            }
            busy += work.elapsed();
            if duty_since.elapsed() >= Duration::from_secs(1) {
                // In an event flood a real-time thread would starve the
                // host: leave real-time while busy more than half the time,
                // come back once quiet.
                let duty = busy.as_secs_f64() / duty_since.elapsed().as_secs_f64();
                if self.rt_active && duty > 0.5 {
                    tracing::warn!(duty, "event flood: sensor thread leaves real-time priority");
                    self.set_priority(false);
                } else if self.realtime && !self.rt_active && duty < 0.1 {
                    self.set_priority(true);
                }
                busy = Duration::ZERO;
                duty_since = Instant::now();
            }
            self.expire_moves(&mut on_report);
            if let Some(every) = self.heartbeat
                && last_heartbeat.elapsed() >= every
            {
                last_heartbeat = Instant::now();
                self.send_heartbeat(&mut on_report);
            }
            if last_prune.elapsed() >= Duration::from_secs(1) {
                last_prune = Instant::now();
                let now = self.now();
                self.engine.prune(now);
            }
        }
        if let Some(g) = self.gate.take() {
            let c = g.counters();
            self.stats.gated_opens = c.opens.load(Ordering::Relaxed);
            self.stats.gate_waits = c.waited.load(Ordering::Relaxed);
            self.stats.gate_timeouts = c.timeouts.load(Ordering::Relaxed);
            self.stats.denied_opens = c.denied.load(Ordering::Relaxed);
        }
        let canaries = std::mem::take(&mut self.canaries);
        match canaries.remove() {
            Ok(n) => self.stats.canaries_removed = n as u64,
            Err(e) => tracing::warn!(error = %e, "canaries not removed"),
        }
        self.stats
    }

    /// Read and handle queued fanotify events; true when the queue was read
    /// until empty (false when the per-round cap stopped it first).
    fn drain_fanotify(&mut self, on_report: &mut impl FnMut(&Report)) -> bool {
        for _ in 0..64 {
            let Some(fan) = &self.fanotify else { return true };
            let events = match fan.read_events() {
                Ok(ev) if !ev.is_empty() => ev,
                Ok(_) | Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {
                    self.fan_failures = 0;
                    return true;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "fanotify read failed");
                    self.fan_failures += 1;
                    // Never spin (at real-time priority) on a descriptor that
                    // stays readable but fails: fall back to inotify.
                    if self.fan_failures >= MAX_FANOTIFY_FAILURES {
                        self.fanotify_failed();
                    }
                    return true;
                }
            };
            for ev in events {
                self.stats.events += 1;
                let Some(fd) = ev.fd() else {
                    self.stats.overflows += 1;
                    continue;
                };
                let Ok(path) = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) else { continue };
                if path.as_os_str().as_encoded_bytes().ends_with(b" (deleted)") || self.engine.root_of(&path).is_none()
                {
                    continue;
                }
                let pid = ev.pid();
                let now = self.now();
                let mask = ev.mask();
                if mask.contains(MaskFlags::FAN_MODIFY) && !mask.contains(MaskFlags::FAN_CLOSE_WRITE) {
                    let decided = self.engine.on_canary_touch(now, &path, Some(pid));
                    self.emit(decided, on_report);
                    continue;
                }
                let Ok(file) = fd.try_clone_to_owned().map(File::from) else { continue };
                let Ok(meta) = file.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                let Ok(sample) = sample_written_of_len(&file, meta.len()) else { continue };
                drop(file);
                self.since_heartbeat.files_modified += 1;
                let decided = self.engine.on_write(now, &path, inode_of(&meta), Some(pid), &sample);
                self.emit(decided, on_report);
            }
        }
        false
    }

    /// Read and handle queued inotify events: whether the queue was read
    /// until empty, `None` when inotify failed.
    fn drain_inotify(&mut self, buffer: &mut [u8], on_report: &mut impl FnMut(&Report)) -> Option<bool> {
        for _ in 0..64 {
            let events: Vec<RawEvent> = match self.inotify.read_events(buffer) {
                Ok(evs) => evs
                    .map(|e| RawEvent {
                        wd: e.wd.get_watch_descriptor_id(),
                        mask: e.mask,
                        cookie: e.cookie,
                        name: e.name.map(OsString::from),
                    })
                    .collect(),
                Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted) => {
                    return Some(true);
                }
                Err(e) => {
                    tracing::error!(error = %e, "inotify read failed");
                    return None;
                }
            };
            if events.is_empty() {
                return Some(true);
            }
            for ev in events {
                self.stats.events += 1;
                self.handle_inotify(ev, on_report);
            }
        }
        Some(false)
    }

    fn handle_inotify(&mut self, ev: RawEvent, on_report: &mut impl FnMut(&Report)) {
        let now = self.now();
        if ev.mask.contains(EventMask::Q_OVERFLOW) {
            self.stats.overflows += 1;
            tracing::warn!("inotify queue overflowed, events lost");
            return;
        }
        if let Some(path) = self.canary_watches.get(&ev.wd).cloned() {
            if ev.mask.intersects(EventMask::MODIFY | EventMask::ATTRIB) {
                let decided = self.engine.on_canary_touch(now, &path, None);
                self.emit(decided, on_report);
            }
            if ev.mask.contains(EventMask::IGNORED) {
                self.canary_watches.remove(&ev.wd);
            }
            return;
        }
        if ev.mask.contains(EventMask::IGNORED) {
            self.dirs.remove(&ev.wd);
            return;
        }
        let Some((dir, fan_marked)) = self.dirs.get(&ev.wd).cloned() else { return };
        let Some(name) = &ev.name else { return };
        let path = dir.join(name);
        let is_dir = ev.mask.contains(EventMask::ISDIR);
        if ev.mask.contains(EventMask::MOVED_FROM) {
            if self.pending.len() >= MAX_PENDING_MOVES
                && let Some(old) = self.pending.pop_front()
            {
                self.moved_out(old, on_report);
            }
            self.pending.push_back(PendingMove { cookie: ev.cookie, from: path, is_dir, t: now });
            return;
        }
        if ev.mask.contains(EventMask::MOVED_TO) {
            let from = self.pending.iter().position(|p| p.cookie == ev.cookie).and_then(|i| self.pending.remove(i));
            self.since_heartbeat.files_renamed += 1;
            match (from, is_dir) {
                (Some(m), true) => self.rename_dir(&m.from, &path),
                (None, true) => self.new_dir(now, &path, false, on_report),
                (Some(m), false) => {
                    // inotify names a written file by path: when it was
                    // renamed before we could open it (encrypt, then rename),
                    // or it now has an unknown extension, read it at its new
                    // name, as the write it was.
                    let missed = self.missed_writes.iter().position(|p| *p == m.from);
                    if let Some(i) = missed {
                        self.missed_writes.remove(i);
                    }
                    if !fan_marked
                        && (missed.is_some() || is_extension_change(&m.from, &path))
                        && let Some(f) = open_regular(&path)
                        && let Ok(meta) = f.metadata()
                        && let Ok(sample) = sample_written(&f)
                    {
                        let decided = self.engine.on_write(now, &path, inode_of(&meta), None, &sample);
                        self.emit(decided, on_report);
                    }
                    let key = fs::symlink_metadata(&path).ok().map(|m| inode_of(&m));
                    let decided = self.engine.on_rename(now, &m.from, &path, key);
                    self.emit(decided, on_report);
                }
                (None, false) => {
                    let decided = self.on_new_file(now, &path);
                    self.emit(decided, on_report);
                }
            }
            return;
        }
        if is_dir {
            if ev.mask.contains(EventMask::CREATE) {
                self.new_dir(now, &path, true, on_report);
            }
            return;
        }
        if ev.mask.contains(EventMask::CREATE) {
            self.since_heartbeat.files_created += 1;
            let key = fs::symlink_metadata(&path).ok().filter(fs::Metadata::is_file).map(|m| inode_of(&m));
            let decided = self.engine.on_create(now, &path, key);
            self.emit(decided, on_report);
        } else if ev.mask.contains(EventMask::DELETE) {
            self.since_heartbeat.files_deleted += 1;
            let decided = self.engine.on_delete(now, &path);
            self.emit(decided, on_report);
        } else if ev.mask.contains(EventMask::CLOSE_WRITE) && !fan_marked {
            self.since_heartbeat.files_modified += 1;
            match open_regular(&path) {
                Some(f) => {
                    if let Ok(meta) = f.metadata()
                        && let Ok(sample) = sample_written(&f)
                    {
                        let decided = self.engine.on_write(now, &path, inode_of(&meta), None, &sample);
                        self.emit(decided, on_report);
                    }
                }
                None => {
                    if self.missed_writes.len() >= MAX_MISSED_WRITES {
                        self.missed_writes.pop_front();
                    }
                    self.missed_writes.push_back(path);
                }
            }
        }
    }

    /// A file that arrived with content (moved in, or in a new directory):
    /// a creation and a write.
    fn on_new_file(&mut self, now: u64, path: &Path) -> Option<(Decision, usize)> {
        let f = open_regular(path)?;
        let meta = f.metadata().ok()?;
        let sample = sample_written(&f).ok()?;
        let key = inode_of(&meta);
        let created = self.engine.on_create(now, path, Some(key));
        let written = self.engine.on_write(now, path, key, None, &sample);
        written.or(created)
    }

    fn new_dir(&mut self, now: u64, path: &Path, created: bool, on_report: &mut impl FnMut(&Report)) {
        let Ok(meta) = fs::symlink_metadata(path) else { return };
        if !meta.is_dir() {
            return;
        }
        let mut budget = if created { 0 } else { MAX_NEW_TREE_FILES };
        let created_at = created.then_some(now);
        match self.add_tree(path, meta.dev(), &mut budget, created_at) {
            Ok(decisions) => {
                for d in decisions {
                    self.emit(Some(d), on_report);
                }
            }
            Err(e) => tracing::warn!(error = %e, "new directory not watched"),
        }
    }

    fn rename_dir(&mut self, from: &Path, to: &Path) {
        for (dir, _) in self.dirs.values_mut() {
            if let Ok(rest) = dir.strip_prefix(from) {
                *dir = to.join(rest);
            }
        }
    }

    fn moved_out(&mut self, m: PendingMove, on_report: &mut impl FnMut(&Report)) {
        if m.is_dir {
            return;
        }
        let now = self.now();
        self.since_heartbeat.files_deleted += 1;
        let decided = self.engine.on_delete(now, &m.from);
        self.emit(decided, on_report);
    }

    fn expire_moves(&mut self, on_report: &mut impl FnMut(&Report)) {
        let now = self.now();
        while self.pending.front().is_some_and(|p| now.saturating_sub(p.t) >= MOVE_PAIR_MS) {
            if let Some(m) = self.pending.pop_front() {
                self.moved_out(m, on_report);
            }
        }
    }

    /// The process's name, looked up once per pid (at its first report:
    /// not on the per-event path, where every microsecond is files lost).
    fn name_of(&mut self, pid: i32) -> Option<String> {
        if let Some(name) = self.names.get(&pid) {
            return name.clone();
        }
        if self.names.len() >= MAX_PROCESS_NAMES {
            self.names.clear();
        }
        let name = process_name(pid);
        self.names.insert(pid, name.clone());
        name
    }

    fn emit(&mut self, decided: Option<(Decision, usize)>, on_report: &mut impl FnMut(&Report)) {
        let Some((d, root)) = decided else { return };
        let process = d.pid.and_then(|p| self.name_of(p));
        let mut report = Report {
            verdict: d.verdict,
            reasons: d.reasons,
            score: d.score,
            pid: d.pid,
            process,
            other_pids: d.other_pids,
            counts: d.counts,
            canary_touched: d.canary_touched,
            watch_root: self.engine.roots().get(d.root.unwrap_or(root)).map(|r| r.display().to_string()),
            files_hashed: d.files,
            sensor_mode: mode_name(self.fanotify.is_some()),
            response: Vec::new(),
            sensor_uptime_ms: self.now(),
            status: None,
        };
        if report.verdict == Verdict::Ransomware {
            report.response = self.block(&report);
            report.response.extend(self.respond(&report));
            self.stats.ransomware_reports += 1;
        }
        self.stats.reports += 1;
        tracing::warn!(
            verdict = report.verdict.as_str(),
            score = report.score,
            pid = report.pid,
            reasons = ?report.reasons,
            files = report.files_hashed.len(),
            "file sensor alert"
        );
        on_report(&report);
    }

    /// Refuse the judged processes their next opens (before the verdict is
    /// reported or acted on: the gate may be holding one of them right now).
    fn block(&mut self, report: &Report) -> Vec<String> {
        let Some(g) = &self.gate else { return Vec::new() };
        let own = i32::try_from(std::process::id()).unwrap_or(0);
        judged_pids(report)
            .into_iter()
            .filter(|&pid| pid > 1)
            .map(|pid| {
                g.block(pid);
                if pid == own {
                    // Only the simulator in a measurement: the sensor's own
                    // thread keeps its opens.
                    "blocked opens of this process's other threads".to_string()
                } else {
                    format!("blocked opens of pid {pid}")
                }
            })
            .collect()
    }

    fn respond(&mut self, report: &Report) -> Vec<String> {
        match &self.response {
            Response::None => vec!["none".into()],
            Response::Kill => {
                let mut pids = judged_pids(report);
                if pids.is_empty() && self.kill_open_file_writers {
                    pids = writers_under(self.engine.roots());
                }
                if pids.is_empty() {
                    return vec!["kill: no process known".into()];
                }
                self.responder.kill(&pids)
            }
            Response::Command { program, args } => {
                if self.last_command.is_some_and(|t| t.elapsed() < self.command_cooldown) {
                    return vec!["command: ran recently".into()];
                }
                self.last_command = Some(Instant::now());
                vec![self.responder.command(program, args, report.to_json())]
            }
        }
    }

    fn send_heartbeat(&mut self, on_report: &mut impl FnMut(&Report)) {
        let counts = std::mem::take(&mut self.since_heartbeat);
        let report = Report {
            verdict: Verdict::Heartbeat,
            reasons: Vec::new(),
            score: 0.0,
            pid: None,
            process: None,
            other_pids: Vec::new(),
            counts,
            canary_touched: false,
            watch_root: None,
            files_hashed: Vec::new(),
            sensor_mode: mode_name(self.fanotify.is_some()),
            response: Vec::new(),
            sensor_uptime_ms: self.now(),
            status: Some(Status {
                watched_dirs: self.dirs.len() as u64,
                canaries: self.canary_watches.len() as u64,
                cache_entries: self.engine.cache.len() as u64,
                events: self.stats.events,
                overflows: self.stats.overflows,
            }),
        };
        self.stats.reports += 1;
        on_report(&report);
    }
}

/// The writer a verdict names and the other processes it counted.
fn judged_pids(report: &Report) -> Vec<i32> {
    report.pid.into_iter().chain(report.other_pids.iter().copied()).collect()
}

/// The open gate over the same directories as `fan`, or none (and why in
/// the log) when the kernel refuses permission events.
fn start_gate(fan: &Fanotify, inotify: &Inotify) -> Option<Gate> {
    let started = (|| {
        let notify = fan.as_fd().try_clone_to_owned()?;
        let inotify = inotify.as_fd().try_clone_to_owned()?;
        Gate::start(gate::Watched { notify, inotify }).map_err(std::io::Error::from)
    })();
    started
        .map_err(|e| tracing::warn!(error = %e, "open gate not started: judged processes are not refused their opens"))
        .ok()
}

fn init_fanotify() -> nix::Result<Fanotify> {
    Fanotify::init(
        InitFlags::FAN_CLASS_NOTIF | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK,
        EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC | EventFFlags::O_NOATIME,
    )
}
