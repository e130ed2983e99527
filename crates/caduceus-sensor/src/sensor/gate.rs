//! The open gate: fanotify permission events (`FAN_OPEN_PERM`) on the watched
//! directories, so that a process judged to be ransomware is refused its next
//! open of a file there — at the verdict, whatever the speed of its writer.
//!
//! Without it the verdict races the encryption: a writer that encrypts a
//! file in 100 µs finishes several more while the sensor reads, scores and
//! kills. The gate closes the race by ordering. A process closes file `N`
//! (the close-write event is queued on the sensor's notification group)
//! before it opens file `N + 1` (the permission event, queued on the gate's
//! group). The gate answers that open only once the sensor thread has
//! handled every event queued so far, so the verdict on `N` is known when
//! `N + 1` is opened. While nothing is waiting to be scored, opens are
//! answered at once.
//!
//! The sensor thread's own opens (it samples files) are answered at once: it
//! would otherwise wait for itself. Any wait is capped ([`MAX_WAIT`]): a stalled
//! sensor slows opens under the roots, it never blocks them. When the gate's
//! descriptor closes (the sensor stops or dies), the kernel allows every
//! open still waiting.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyEvent, FanotifyResponse, InitFlags, MarkFlags, MaskFlags, Response,
};

/// Longest an open waits for the sensor thread to catch up.
pub(crate) const MAX_WAIT: Duration = Duration::from_millis(50);
/// How long a judged process stays refused (it is normally killed first).
pub(crate) const BLOCK_FOR: Duration = Duration::from_secs(600);
/// Processes refused at once; the oldest block is dropped beyond it.
const MAX_BLOCKED: usize = 1024;
/// The gate's poll interval when idle (to notice the stop flag).
const POLL_MS: u16 = 100;

/// Counters of one run.
#[derive(Debug, Default)]
pub(crate) struct GateCounters {
    pub(crate) opens: AtomicU64,
    pub(crate) waited: AtomicU64,
    pub(crate) denied: AtomicU64,
    pub(crate) timeouts: AtomicU64,
}

/// What the gate and the sensor thread share.
#[derive(Debug)]
struct Shared {
    /// Tickets the gate took: each asks the sensor thread for one full drain.
    requested: AtomicU64,
    /// The highest ticket a finished drain covered.
    completed: Mutex<u64>,
    drained: Condvar,
    /// The sensor thread is between reading events and finishing with them.
    busy: AtomicBool,
    /// The sensor thread's id: its own opens pass at once.
    sensor_tid: AtomicI32,
    /// Judged processes (thread-group ids) and until when they are refused.
    blocked: Mutex<HashMap<i32, Instant>>,
    counters: GateCounters,
}

/// The sensor thread's side: marks directories, reports drains, blocks pids.
#[derive(Debug)]
pub(crate) struct Gate {
    fan: Arc<Fanotify>,
    shared: Arc<Shared>,
    /// Readable when the gate wants a drain.
    wake: UnixDatagram,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// The ticket seen at the start of the current drain.
    round: u64,
}

/// Descriptors whose pending events the gate waits for: the sensor's
/// notification group and its inotify instance (duplicates, polled only).
pub(crate) struct Watched {
    pub(crate) notify: OwnedFd,
    pub(crate) inotify: OwnedFd,
}

impl Gate {
    /// A permission group (needs CAP_SYS_ADMIN and a kernel with
    /// `FAN_REPORT_TID`, 4.20), its thread started.
    pub(crate) fn start(watched: Watched) -> nix::Result<Self> {
        let fan = Arc::new(Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_NONBLOCK | InitFlags::FAN_REPORT_TID,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )?);
        let (wake, ping) = UnixDatagram::pair().map_err(io_to_nix)?;
        wake.set_nonblocking(true).map_err(io_to_nix)?;
        ping.set_nonblocking(true).map_err(io_to_nix)?;
        let shared = Arc::new(Shared {
            requested: AtomicU64::new(0),
            completed: Mutex::new(0),
            drained: Condvar::new(),
            busy: AtomicBool::new(false),
            sensor_tid: AtomicI32::new(rustix::thread::gettid().as_raw_nonzero().get()),
            blocked: Mutex::new(HashMap::new()),
            counters: GateCounters::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let worker = Worker { fan: Arc::clone(&fan), shared: Arc::clone(&shared), ping, watched };
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("file-sensor-gate".into())
            .spawn(move || worker.run(&flag))
            .map_err(io_to_nix)?;
        Ok(Self { fan, shared, wake, stop, thread: Some(thread), round: 0 })
    }

    /// Gate opens of files directly in `dir`.
    pub(crate) fn mark(&self, dir: &std::path::Path) -> bool {
        self.fan
            .mark(
                MarkFlags::FAN_MARK_ADD,
                MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_EVENT_ON_CHILD,
                nix::fcntl::AT_FDCWD,
                Some(dir),
            )
            .is_ok()
    }

    /// The calling thread is the sensor thread from now on.
    pub(crate) fn set_sensor_thread(&self) {
        self.shared.sensor_tid.store(rustix::thread::gettid().as_raw_nonzero().get(), Ordering::SeqCst);
    }

    /// The descriptor to poll for drain requests.
    pub(crate) fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Before reading events: the sensor thread is busy, and every ticket
    /// taken so far will be covered once the queues are empty.
    pub(crate) fn begin(&mut self) {
        self.shared.busy.store(true, Ordering::SeqCst);
        let mut buf = [0u8; 64];
        while self.wake.recv(&mut buf).is_ok() {}
        self.round = self.shared.requested.load(Ordering::SeqCst);
    }

    /// After reading events: `emptied` when both queues were read until
    /// empty, so the tickets seen at [`Gate::begin`] are covered.
    pub(crate) fn end(&mut self, emptied: bool) {
        if emptied && let Ok(mut done) = self.shared.completed.lock() {
            *done = (*done).max(self.round);
        }
        self.shared.busy.store(false, Ordering::SeqCst);
        self.shared.drained.notify_all();
    }

    /// Refuse `pid`'s opens under the roots from now on.
    pub(crate) fn block(&self, pid: i32) {
        if let Ok(mut blocked) = self.shared.blocked.lock() {
            let now = Instant::now();
            blocked.retain(|_, until| *until > now);
            if blocked.len() >= MAX_BLOCKED
                && let Some(oldest) = blocked.iter().min_by_key(|(_, until)| **until).map(|(p, _)| *p)
            {
                blocked.remove(&oldest);
            }
            blocked.insert(pid, now + BLOCK_FOR);
        }
    }

    pub(crate) fn counters(&self) -> &GateCounters {
        &self.shared.counters
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn io_to_nix(e: std::io::Error) -> nix::Error {
    e.raw_os_error().map_or(nix::Error::EIO, nix::Error::from_raw)
}

/// The gate's thread: reads permission events and answers each.
struct Worker {
    fan: Arc<Fanotify>,
    shared: Arc<Shared>,
    ping: UnixDatagram,
    watched: Watched,
}

impl Worker {
    fn run(self, stop: &AtomicBool) {
        let mut queue: VecDeque<FanotifyEvent> = VecDeque::new();
        while !stop.load(Ordering::SeqCst) {
            if queue.is_empty() {
                let mut fds = [PollFd::new(self.fan.as_fd(), PollFlags::POLLIN)];
                match poll(&mut fds, PollTimeout::from(POLL_MS)) {
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "open gate poll failed, gate stopping");
                        return;
                    }
                }
                self.read_into(&mut queue);
            }
            while let Some(ev) = queue.pop_front() {
                let allow = self.decide(&ev, &mut queue);
                self.answer(&ev, allow);
            }
        }
    }

    fn read_into(&self, queue: &mut VecDeque<FanotifyEvent>) {
        match self.fan.read_events() {
            Ok(events) => queue.extend(events),
            Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => {}
            Err(e) => tracing::warn!(error = %e, "open gate read failed"),
        }
    }

    fn answer(&self, ev: &FanotifyEvent, allow: bool) {
        let Some(fd) = ev.fd() else { return };
        let response = if allow { Response::FAN_ALLOW } else { Response::FAN_DENY };
        if let Err(e) = self.fan.write_response(FanotifyResponse::new(fd, response)) {
            tracing::warn!(error = %e, "open gate could not answer");
        }
    }

    /// Whether to allow the open `ev`; may wait for the sensor thread. Opens
    /// of the sensor thread arriving meanwhile are answered at once, the
    /// others queued behind `ev`.
    fn decide(&self, ev: &FanotifyEvent, queue: &mut VecDeque<FanotifyEvent>) -> bool {
        let tid = ev.pid();
        let counters = &self.shared.counters;
        counters.opens.fetch_add(1, Ordering::Relaxed);
        if tid == self.shared.sensor_tid.load(Ordering::SeqCst) {
            return true;
        }
        if self.sensor_behind() {
            counters.waited.fetch_add(1, Ordering::Relaxed);
            if !self.wait_for_drain(queue) {
                counters.timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
        let refused = self.is_blocked(tid);
        if refused {
            counters.denied.fetch_add(1, Ordering::Relaxed);
        }
        !refused
    }

    /// Events are waiting to be scored, or being scored.
    fn sensor_behind(&self) -> bool {
        if self.shared.busy.load(Ordering::SeqCst) {
            return true;
        }
        let mut fds = [
            PollFd::new(self.watched.notify.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.watched.inotify.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(n) => n > 0,
            Err(_) => true,
        }
    }

    /// Take a ticket, wake the sensor thread and wait until a drain covers
    /// it; false on timeout.
    fn wait_for_drain(&self, queue: &mut VecDeque<FanotifyEvent>) -> bool {
        let ticket = self.shared.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _ = self.ping.send(&[1]);
        let deadline = Instant::now() + MAX_WAIT;
        loop {
            let Ok(done) = self.shared.completed.lock() else { return false };
            if *done >= ticket {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            let slice = (deadline - now).min(Duration::from_millis(1));
            let Ok((done, _)) = self.shared.drained.wait_timeout(done, slice) else { return false };
            if *done >= ticket {
                return true;
            }
            drop(done);
            // The sensor thread may itself be waiting on an open of ours.
            let before = queue.len();
            self.read_into(queue);
            let sensor = self.shared.sensor_tid.load(Ordering::SeqCst);
            let mut i = before;
            while i < queue.len() {
                if queue.get(i).is_some_and(|e| e.pid() == sensor) {
                    if let Some(ev) = queue.remove(i) {
                        self.shared.counters.opens.fetch_add(1, Ordering::Relaxed);
                        self.answer(&ev, true);
                    }
                } else {
                    i += 1;
                }
            }
        }
    }

    /// Whether thread `tid` belongs to a judged process.
    fn is_blocked(&self, tid: i32) -> bool {
        let Ok(blocked) = self.shared.blocked.lock() else { return false };
        if blocked.is_empty() {
            return false;
        }
        let now = Instant::now();
        let hit = |pid: i32| blocked.get(&pid).is_some_and(|until| *until > now);
        hit(tid) || thread_group_of(tid).is_some_and(hit)
    }
}

/// The process (thread-group id) a thread belongs to, from /proc.
fn thread_group_of(tid: i32) -> Option<i32> {
    let status = fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("Tgid:")).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thread_group_of_this_thread_is_this_process() {
        let tid = rustix::thread::gettid().as_raw_nonzero().get();
        assert_eq!(thread_group_of(tid), i32::try_from(std::process::id()).ok());
        assert_eq!(thread_group_of(-5), None);
    }
}
