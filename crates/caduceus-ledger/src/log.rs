//! The durable log: seals appended with group commit, the tree stored beside
//! them, and everything read back for checkpoints, proofs and tiles.
//!
//! Files in the ledger directory:
//! - `records`: one 64-byte [`SealRecord`] per entry, in order. The source of
//!   truth. Preallocated in chunks (so that an fdatasync does not also have
//!   to commit a new file size) and synced before any append is acknowledged.
//! - `nodes`: every complete subtree hash in post-order (see [`crate::tree`]),
//!   derived from the records. Written with each batch, synced with the tree
//!   state.
//! - `tree-state`: the size up to which `nodes` is known durable, and the
//!   root there. Replaced atomically. Start-up trusts `nodes` up to it and
//!   rehashes only the records after it.
//! - `LOCK`: held (flock) by the one process that appends.
//!
//! Group commit: appenders queue their seals, and whoever finds seals due
//! and nobody committing commits them (salts and hashes them, and writes
//! records and nodes): an appender whose seals complete the expected cohort
//! (or fill a chunk), otherwise the one sync thread once it stops waiting for
//! more. The sync thread calls fdatasync on the records and then
//! acknowledges everything written before the call. While one batch is being
//! synced, the next is hashed and written, so throughput grows with the
//! number of concurrent writers and each writer still waits for its own
//! entries to be durable.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;
use tokio::sync::watch;

use crate::merkle::{self, Hash, ProofError};
use crate::seal::{RECORD_BYTES, SALT_BYTES, Seal, SealRecord, is_blank};
use crate::tree::{self, Frontier, NodeSource, node_count, node_position};

pub const RECORDS_FILE: &str = "records";
pub const NODES_FILE: &str = "nodes";
pub const TREE_STATE_FILE: &str = "tree-state";
pub const LOCK_FILE: &str = "LOCK";
const TREE_STATE_HEADER: &str = "caduceus ledger tree state v1";
/// Records file growth step (131,072 records).
const PREALLOCATE_BYTES: u64 = 8 << 20;
/// Zeros written ahead of the records (4,096 records). Preallocated space is
/// unwritten: the first write into it changes the file's block map, which
/// every fdatasync covering such a write must commit too (one more I/O).
/// Writing zeros ahead in chunks pays that once per chunk instead.
const ZERO_AHEAD_BYTES: u64 = 256 << 10;
/// Longest the syncer waits, after acknowledging a cohort of writers, for
/// them to append again.
const GATHER: std::time::Duration = std::time::Duration::from_micros(500);
/// Cohorts up to this size are gathered whole; of larger ones, a quarter.
const GATHER_ALL: u64 = 32;
/// Queued seals an appender commits at once, without waiting for the rest
/// of its cohort: hashing them overlaps the other appenders.
const COMMIT_CHUNK: usize = 64;
/// Batches an appender commits in a row before leaving the rest to others.
const COMMIT_ROUNDS: u32 = 4;
/// Most seals one `append_batch` may carry.
pub const MAX_BATCH: usize = 1 << 20;
/// Entries (or hashes) per full tile, C2SP tlog-tiles.
pub const TILE_WIDTH: u64 = 256;
/// Tree levels per tile level.
pub const TILE_HEIGHT: u32 = 8;
const HASH_BYTES: u64 = 32;
const RECORD: u64 = RECORD_BYTES as u64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger I/O on {path}: {message}")]
    Io { path: String, message: String },
    #[error("ledger is corrupt: {0}")]
    Corrupt(String),
    #[error("the ledger in {0} is in use by another process")]
    Locked(String),
    #[error(transparent)]
    Proof(#[from] ProofError),
    #[error("tree size {size} is beyond the log's {entries} entries")]
    BeyondLog { size: u64, entries: u64 },
    #[error("the ledger is closed")]
    Closed,
    #[error("the ledger stopped after a write failure: {0}")]
    Failed(Arc<str>),
    #[error("{0}")]
    Invalid(String),
}

fn io_error(path: &Path) -> impl Fn(std::io::Error) -> LedgerError + '_ {
    move |e| LedgerError::Io { path: path.display().to_string(), message: e.to_string() }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind
    // (queues, counters), which stays usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn wait<'a, T>(condvar: &Condvar, guard: MutexGuard<'a, T>) -> MutexGuard<'a, T> {
    condvar.wait(guard).unwrap_or_else(PoisonError::into_inner)
}

/// What is durable, as seen by appenders and readers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// Entries durable on disk (acknowledged).
    pub size: u64,
    /// The event sequence number of the last durable entry (0 if none).
    pub last_seq: u64,
    /// Set once a write failed; the ledger takes no more appends.
    pub failed: Option<Arc<str>>,
}

/// What the sync thread sleeps for on `sync_ready`: only then is a wake-up
/// (a futex system call) needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SyncerWait {
    Awake,
    /// Anything queued or written.
    Work,
    /// Entries written up to this size.
    Written(u64),
}

struct State {
    /// Seals queued and not yet taken by a committer.
    pending: Vec<Seal>,
    /// The index the next queued seal gets.
    next: u64,
    closed: bool,
    failed: bool,
    /// An appender or the syncer is committing; it takes the seals that
    /// become due until none are.
    committing: bool,
    /// Queued seals are due for committing once `next` reaches this (the
    /// expected cohort has appended), or a chunk of them is queued.
    commit_at: u64,
    /// Entries written to the files (not yet necessarily durable).
    written: u64,
    written_seq: u64,
    syncer: SyncerWait,
}

impl State {
    fn due(&self) -> bool {
        !self.pending.is_empty() && (self.next >= self.commit_at || self.pending.len() >= COMMIT_CHUNK)
    }

    /// Whether the syncer sleeps for what just changed: then it must be
    /// woken (after the lock is released).
    fn wake_syncer(&mut self) -> bool {
        let wake = match self.syncer {
            SyncerWait::Awake => false,
            SyncerWait::Work => true,
            SyncerWait::Written(size) => {
                self.written >= size || self.closed || (!self.committing && !self.pending.is_empty())
            }
        };
        if wake {
            self.syncer = SyncerWait::Awake;
        }
        wake
    }
}

/// The committing side: the tree frontier and the write buffers. Held by
/// whoever commits (`State::committing` says who may).
struct Committer {
    frontier: Frontier,
    /// Length of the records file (preallocated).
    allocated: u64,
    /// Bytes of the records file known written (records or zeros).
    zeroed: u64,
    records: Vec<u8>,
    nodes: Vec<u8>,
    leaves: Vec<Hash>,
    zeros: Vec<u8>,
}

/// The ledger's two data files, and every read of them bounded by a tree
/// size: shared by the appending [`Ledger`] and the read-only
/// [`crate::reader::Snapshot`].
pub(crate) struct Files {
    pub(crate) dir: PathBuf,
    pub(crate) records: File,
    pub(crate) nodes: File,
}

struct Inner {
    dir: PathBuf,
    files: Files,
    state: Mutex<State>,
    sync_ready: Condvar,
    committer: Mutex<Committer>,
    /// Durable entries, for appenders waiting (also in `progress`).
    durable: AtomicU64,
    failed: AtomicBool,
    /// Appenders waiting for their entries: the size each waits for.
    waiters: Mutex<Vec<(u64, Waker)>>,
    progress: watch::Sender<Progress>,
    /// Leaf-hash prefix → index, built on first lookup.
    index: Mutex<Option<HashMap<u64, u64>>>,
    /// Serialises tree-state updates.
    tree_state: Mutex<u64>,
}

/// An open, appendable ledger. Cheap to share behind an `Arc`.
pub struct Ledger {
    inner: Arc<Inner>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    _lock: File,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").field("dir", &self.inner.dir).field("size", &self.size()).finish()
    }
}

/// Complete subtree hashes read from the `nodes` file, bounded by a tree size.
pub(crate) struct FileNodes<'a> {
    pub(crate) file: &'a File,
    pub(crate) size: u64,
    pub(crate) path: &'a Path,
}

impl NodeSource for FileNodes<'_> {
    type Error = LedgerError;
    fn node(&self, level: u32, index: u64) -> Result<Hash, LedgerError> {
        if level >= 64 || index >= self.size >> level {
            return Err(ProofError::IndexOutOfRange { index, size: self.size.checked_shr(level).unwrap_or(0) }.into());
        }
        let mut hash = [0u8; 32];
        self.file.read_exact_at(&mut hash, node_position(level, index) * HASH_BYTES).map_err(io_error(self.path))?;
        Ok(hash)
    }
}

pub(crate) fn open_file(path: &Path, write: bool) -> Result<File, LedgerError> {
    let mut options = OpenOptions::new();
    options.read(true);
    if write {
        options.write(true).create(true).mode(0o600);
    }
    options.open(path).map_err(io_error(path))
}

/// Read the tree state: the size up to which `nodes` is durable, and its root.
pub(crate) fn read_tree_state(dir: &Path) -> Result<Option<(u64, Hash)>, LedgerError> {
    let path = dir.join(TREE_STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(bytes) if bytes.len() <= 256 => bytes,
        Ok(_) => return Err(LedgerError::Corrupt(format!("{} is too large", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&path)(e)),
    };
    let bad = || LedgerError::Corrupt(format!("{} is malformed", path.display()));
    let text = std::str::from_utf8(&text).map_err(|_| bad())?;
    let mut lines = text.strip_suffix('\n').ok_or_else(bad)?.split('\n');
    if lines.next() != Some(TREE_STATE_HEADER) {
        return Err(bad());
    }
    let size = lines.next().and_then(|l| l.parse::<u64>().ok()).ok_or_else(bad)?;
    let root = lines.next().and_then(|l| B64.decode(l).ok()).and_then(|r| <Hash>::try_from(r).ok()).ok_or_else(bad)?;
    if lines.next().is_some() {
        return Err(bad());
    }
    Ok(Some((size, root)))
}

/// Replace a small file atomically and durably: temp file, fsync, rename, fsync the directory.
pub(crate) fn replace_file(dir: &Path, name: &str, contents: &[u8]) -> Result<(), LedgerError> {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    let mut file =
        OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&temp).map_err(io_error(&temp))?;
    file.write_all(contents).map_err(io_error(&temp))?;
    file.sync_all().map_err(io_error(&temp))?;
    std::fs::rename(&temp, &path).map_err(io_error(&path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_error(dir))
}

fn write_tree_state(dir: &Path, size: u64, root: &Hash) -> Result<(), LedgerError> {
    let text = format!("{TREE_STATE_HEADER}\n{size}\n{}\n", B64.encode(root));
    replace_file(dir, TREE_STATE_FILE, text.as_bytes())
}

/// Whether a process holds the ledger in `dir` open for appending. Offline
/// checks refuse to run beside it: its writes in flight would look like
/// damage.
pub fn in_use(dir: &Path) -> bool {
    let Ok(lock) = File::open(dir.join(LOCK_FILE)) else { return false };
    let free = rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared).is_ok();
    // Dropping the file releases the shared lock at once.
    !free
}

/// Create a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> Result<(), LedgerError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io_error(dir))
}

/// Where the valid records end, checked from `from`: the first slot that is
/// blank or fails its checksum. Anything after it must be blank or invalid
/// too (a torn tail of a write that was never acknowledged); a valid record
/// after a bad one is corruption. Returns (end, whether a non-blank torn
/// tail follows).
pub(crate) fn scan_records(file: &File, path: &Path, from: u64, slots: u64) -> Result<(u64, bool), LedgerError> {
    const CHUNK: u64 = 4096;
    let mut end: Option<u64> = None;
    let mut torn = false;
    let mut buf = vec![0u8; (CHUNK * RECORD) as usize];
    let mut at = from;
    while at < slots {
        let n = CHUNK.min(slots - at);
        let bytes = buf.get_mut(..(n * RECORD) as usize).unwrap_or_default();
        file.read_exact_at(bytes, at * RECORD).map_err(io_error(path))?;
        for (i, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let index = at + i as u64;
            let Ok(record) = <&[u8; RECORD_BYTES]>::try_from(chunk) else { continue };
            let valid = SealRecord::decode(record).is_ok();
            match end {
                None if valid => {}
                None => {
                    end = Some(index);
                    torn |= !is_blank(record);
                }
                Some(first_bad) if valid => {
                    return Err(LedgerError::Corrupt(format!(
                        "record {first_bad} is damaged but record {index} after it is intact"
                    )));
                }
                Some(_) => torn |= !is_blank(record),
            }
        }
        at += n;
    }
    Ok((end.unwrap_or(slots), torn))
}

impl Ledger {
    /// Open (or create) the ledger in `dir`, recovering from a crash: a
    /// torn, unacknowledged tail is discarded, and records after the last
    /// tree state are rehashed.
    pub fn open(dir: &Path) -> Result<Self, LedgerError> {
        create_private_dir(dir)?;
        let lock_path = dir.join(LOCK_FILE);
        let lock_file = open_file(&lock_path, true)?;
        rustix::fs::flock(&lock_file, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| LedgerError::Locked(dir.display().to_string()))?;

        let records_path = dir.join(RECORDS_FILE);
        let nodes_path = dir.join(NODES_FILE);
        let records = open_file(&records_path, true)?;
        let nodes = open_file(&nodes_path, true)?;
        let (state_size, state_root) = read_tree_state(dir)?.unwrap_or((0, merkle::empty_root()));

        let allocated = records.metadata().map_err(io_error(&records_path))?.len();
        let slots = allocated / RECORD;
        if slots < state_size {
            return Err(LedgerError::Corrupt(format!(
                "the records hold {slots} entries but the tree state says {state_size}"
            )));
        }
        let (end, torn) = scan_records(&records, &records_path, state_size, slots)?;
        if torn {
            tracing::warn!(from = end, "discarding a torn, unacknowledged tail of the ledger");
            let zeros = vec![0u8; ((slots - end) * RECORD) as usize];
            records.write_all_at(&zeros, end * RECORD).map_err(io_error(&records_path))?;
        }

        let nodes_len = nodes.metadata().map_err(io_error(&nodes_path))?.len();
        let want = node_count(state_size) * HASH_BYTES;
        if nodes_len < want {
            return Err(LedgerError::Corrupt(format!(
                "the tree state says {state_size} entries but the stored nodes end before them"
            )));
        }
        nodes.set_len(want).map_err(io_error(&nodes_path))?;
        let source = FileNodes { file: &nodes, size: state_size, path: &nodes_path };
        let mut frontier = Frontier::load(&source, state_size)?;
        if frontier.root() != state_root {
            return Err(LedgerError::Corrupt(format!(
                "the stored nodes do not give the tree state's root at size {state_size}"
            )));
        }

        // Rehash what was appended after the last tree state.
        let mut last_seq = 0;
        let mut buf = Vec::new();
        let mut at = state_size;
        while at < end {
            let n = 4096.min(end - at);
            let mut bytes = vec![0u8; (n * RECORD) as usize];
            records.read_exact_at(&mut bytes, at * RECORD).map_err(io_error(&records_path))?;
            for chunk in bytes.chunks_exact(RECORD_BYTES) {
                let record = <&[u8; RECORD_BYTES]>::try_from(chunk)
                    .ok()
                    .and_then(|r| SealRecord::decode(r).ok())
                    .ok_or_else(|| LedgerError::Corrupt("a record changed during recovery".into()))?;
                frontier.push(merkle::leaf_hash(&record.commitment), |h| buf.extend_from_slice(h));
            }
            nodes.write_all_at(&buf, node_count(at) * HASH_BYTES).map_err(io_error(&nodes_path))?;
            buf.clear();
            at += n;
        }
        if end > 0 {
            let mut bytes = [0u8; RECORD_BYTES];
            records.read_exact_at(&mut bytes, (end - 1) * RECORD).map_err(io_error(&records_path))?;
            last_seq = SealRecord::decode(&bytes).map(|r| r.event_seq).unwrap_or(0);
        }
        records.sync_data().map_err(io_error(&records_path))?;
        nodes.sync_data().map_err(io_error(&nodes_path))?;
        if end != state_size {
            write_tree_state(dir, end, &frontier.root())?;
            tracing::info!(from = state_size, to = end, "ledger rehashed entries appended after its last tree state");
        }

        let (progress, _) = watch::channel(Progress { size: end, last_seq, failed: None });
        let inner = Arc::new(Inner {
            dir: dir.to_owned(),
            files: Files { dir: dir.to_owned(), records, nodes },
            state: Mutex::new(State {
                pending: Vec::new(),
                next: end,
                closed: false,
                failed: false,
                committing: false,
                commit_at: end,
                written: end,
                written_seq: last_seq,
                syncer: SyncerWait::Awake,
            }),
            sync_ready: Condvar::new(),
            committer: Mutex::new(Committer {
                frontier,
                allocated,
                zeroed: end * RECORD,
                records: Vec::new(),
                nodes: Vec::new(),
                leaves: Vec::new(),
                zeros: Vec::new(),
            }),
            durable: AtomicU64::new(end),
            failed: AtomicBool::new(false),
            waiters: Mutex::new(Vec::new()),
            progress,
            index: Mutex::new(None),
            tree_state: Mutex::new(end),
        });
        let syncer = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("ledger-sync".into())
                .spawn(move || inner.sync_loop(end))
                .map_err(io_error(dir))?
        };
        Ok(Self { inner, threads: Mutex::new(vec![syncer]), _lock: lock_file })
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// Append one seal; returns its index once it is durable.
    pub async fn append(&self, seal: Seal) -> Result<u64, LedgerError> {
        let range = self.enqueue(1, |pending| pending.push(seal))?;
        self.durable(range).await.map(|r| r.start)
    }

    /// Append seals in order; returns their indexes once all are durable.
    pub async fn append_batch(&self, seals: Vec<Seal>) -> Result<Range<u64>, LedgerError> {
        if seals.len() > MAX_BATCH {
            return Err(LedgerError::Invalid(format!("at most {MAX_BATCH} seals per batch")));
        }
        let range = self.enqueue(seals.len(), |pending| {
            if pending.is_empty() {
                *pending = seals;
            } else {
                pending.extend(seals);
            }
        })?;
        self.durable(range).await
    }

    /// Queue `count` seals; returns their indexes. Commits them (and what
    /// else is queued) at once if they are due and nobody is committing.
    fn enqueue(&self, count: usize, push: impl FnOnce(&mut Vec<Seal>)) -> Result<Range<u64>, LedgerError> {
        let inner = &*self.inner;
        let mut state = lock(&inner.state);
        if state.closed {
            drop(state);
            return Err(self.progress().failed.map_or(LedgerError::Closed, LedgerError::Failed));
        }
        let start = state.next;
        state.next += count as u64;
        push(&mut state.pending);
        let range = start..state.next;
        if !state.committing && state.due() {
            state.committing = true;
            let batch = std::mem::take(&mut state.pending);
            drop(state);
            inner.commit(batch, COMMIT_ROUNDS, u64::MAX);
        } else if state.wake_syncer() {
            drop(state);
            inner.sync_ready.notify_one();
        }
        Ok(range)
    }

    /// Wait until the entries `range` are durable.
    async fn durable(&self, range: Range<u64>) -> Result<Range<u64>, LedgerError> {
        let end = range.end;
        std::future::poll_fn(|cx| self.inner.poll_durable(end, cx)).await?;
        Ok(range)
    }

    /// Wait until the entry sealing event `seq` is durable (seals arrive in
    /// event order).
    pub async fn wait_for_seq(&self, seq: u64) -> Result<(), LedgerError> {
        let mut progress = self.inner.progress.subscribe();
        let failed = progress
            .wait_for(|p| p.last_seq >= seq || p.failed.is_some())
            .await
            .map(|p| if p.last_seq >= seq { None } else { p.failed.clone() })
            .map_err(|_| LedgerError::Closed)?;
        failed.map_or(Ok(()), |f| Err(LedgerError::Failed(f)))
    }

    pub fn progress(&self) -> Progress {
        self.inner.progress.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.inner.progress.subscribe()
    }

    /// Durable entries.
    pub fn size(&self) -> u64 {
        self.inner.progress.borrow().size
    }

    fn bounded(&self, size: u64) -> Result<&Files, LedgerError> {
        let durable = self.size();
        if size > durable {
            return Err(LedgerError::BeyondLog { size, entries: durable });
        }
        Ok(&self.inner.files)
    }

    /// The tree head at `size`.
    pub fn root(&self, size: u64) -> Result<Hash, LedgerError> {
        self.bounded(size)?.root(size)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.bounded(size)?.inclusion_proof(index, size)
    }

    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, LedgerError> {
        self.bounded(second)?.consistency_proof(first, second)
    }

    /// The RFC 9162 leaf hash of entry `index`.
    pub fn leaf_hash(&self, index: u64) -> Result<Hash, LedgerError> {
        self.inner.files.leaf_hash(index, self.size())
    }

    /// The stored seal of entry `index`.
    pub fn record(&self, index: u64) -> Result<SealRecord, LedgerError> {
        self.inner.files.record(index, self.size())
    }

    /// The index of the entry with this leaf hash, if any.
    pub fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, LedgerError> {
        let mut index = lock(&self.inner.index);
        if index.is_none() {
            // Built once, from the stored leaf hashes; later appends keep it
            // current (the committer takes this lock after writing).
            let size = lock(&self.inner.state).written;
            let nodes = self.inner.files.nodes_at(size);
            let mut map = HashMap::with_capacity(size as usize);
            for i in 0..size {
                map.insert(prefix(&nodes.node(0, i)?), i);
            }
            *index = Some(map);
        }
        let candidate = index.as_ref().and_then(|m| m.get(&prefix(leaf)).copied());
        drop(index);
        let size = self.size();
        match candidate {
            Some(i) if i < size && self.leaf_hash(i)? == *leaf => Ok(Some(i)),
            // The rare 64-bit prefix collision: look at every leaf.
            Some(i) if i < size => self.inner.files.scan_for_leaf(leaf, size),
            _ => Ok(None),
        }
    }

    /// The index of the entry sealing event `seq` (entries are in event order).
    pub fn find_event(&self, seq: u64) -> Result<Option<u64>, LedgerError> {
        self.inner.files.find_event(seq, self.size())
    }

    /// A C2SP tlog-tiles hash tile: level `level`, tile `index`, `width`
    /// hashes, within the tree of `size` entries.
    pub fn tile(&self, level: u32, index: u64, width: u64, size: u64) -> Result<Vec<u8>, LedgerError> {
        self.bounded(size)?.tile(level, index, width, size)
    }

    /// A C2SP tlog-tiles entry bundle: entries `256·index ..` (`width` of
    /// them), each a big-endian u16 length and the entry's commitment.
    pub fn entry_bundle(&self, index: u64, width: u64, size: u64) -> Result<Vec<u8>, LedgerError> {
        self.bounded(size)?.entry_bundle(index, width, size)
    }

    /// Make the stored tree durable up to the acknowledged size and record
    /// it as the new tree state; returns that size and its root.
    pub fn sync_tree(&self) -> Result<(u64, Hash), LedgerError> {
        let mut synced = lock(&self.inner.tree_state);
        let size = self.size();
        let root = self.root(size)?;
        if size != *synced {
            self.inner.files.nodes.sync_data().map_err(io_error(&self.inner.dir))?;
            write_tree_state(&self.inner.dir, size, &root)?;
            *synced = size;
        }
        Ok((size, root))
    }

    /// Stop taking appends, finish what is queued, and sync the tree.
    /// Blocks while the threads finish.
    pub fn close(&self) -> Result<(), LedgerError> {
        {
            let mut state = lock(&self.inner.state);
            state.closed = true;
            state.syncer = SyncerWait::Awake;
            self.inner.sync_ready.notify_one();
        }
        let threads: Vec<_> = lock(&self.threads).drain(..).collect();
        for thread in threads {
            if thread.join().is_err() {
                tracing::error!("a ledger thread panicked");
            }
        }
        if let Some(failed) = self.progress().failed {
            return Err(LedgerError::Failed(failed));
        }
        self.sync_tree().map(|_| ())
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if !lock(&self.threads).is_empty()
            && let Err(e) = self.close()
        {
            tracing::error!(error = %e, "closing the ledger failed");
        }
    }
}

impl Files {
    pub(crate) fn nodes_at(&self, size: u64) -> FileNodes<'_> {
        FileNodes { file: &self.nodes, size, path: &self.dir }
    }

    pub(crate) fn root(&self, size: u64) -> Result<Hash, LedgerError> {
        tree::root(&self.nodes_at(size), size)
    }

    pub(crate) fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        tree::inclusion_proof(&self.nodes_at(size), index, size)
    }

    pub(crate) fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, LedgerError> {
        tree::consistency_proof(&self.nodes_at(second), first, second)
    }

    pub(crate) fn leaf_hash(&self, index: u64, size: u64) -> Result<Hash, LedgerError> {
        self.nodes_at(size).node(0, index)
    }

    pub(crate) fn record(&self, index: u64, size: u64) -> Result<SealRecord, LedgerError> {
        if index >= size {
            return Err(ProofError::IndexOutOfRange { index, size }.into());
        }
        let mut bytes = [0u8; RECORD_BYTES];
        self.records.read_exact_at(&mut bytes, index * RECORD).map_err(io_error(&self.dir))?;
        SealRecord::decode(&bytes).map_err(|e| LedgerError::Corrupt(format!("record {index}: {e}")))
    }

    pub(crate) fn scan_for_leaf(&self, leaf: &Hash, size: u64) -> Result<Option<u64>, LedgerError> {
        let nodes = self.nodes_at(size);
        for i in 0..size {
            if nodes.node(0, i)? == *leaf {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    pub(crate) fn find_event(&self, seq: u64, size: u64) -> Result<Option<u64>, LedgerError> {
        let (mut lo, mut hi) = (0u64, size);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let found = self.record(mid, size)?.event_seq;
            if found == seq {
                return Ok(Some(mid));
            }
            if found < seq {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(None)
    }

    pub(crate) fn tile(&self, level: u32, index: u64, width: u64, size: u64) -> Result<Vec<u8>, LedgerError> {
        let nodes = self.nodes_at(size);
        let tree_level = level.checked_mul(TILE_HEIGHT).filter(|l| *l < 64).ok_or(missing_tile())?;
        let first = index.checked_mul(TILE_WIDTH).ok_or(missing_tile())?;
        if !(1..=TILE_WIDTH).contains(&width) || first + width > size >> tree_level {
            return Err(missing_tile());
        }
        let mut out = Vec::with_capacity((width * HASH_BYTES) as usize);
        if tree_level == 0 {
            // Leaves of one tile span 511 consecutive post-order slots: one read.
            let start = node_position(0, first);
            let stop = node_position(0, first + width - 1) + 1;
            let mut span = vec![0u8; ((stop - start) * HASH_BYTES) as usize];
            self.nodes.read_exact_at(&mut span, start * HASH_BYTES).map_err(io_error(&self.dir))?;
            for i in first..first + width {
                let at = ((node_position(0, i) - start) * HASH_BYTES) as usize;
                out.extend_from_slice(span.get(at..at + 32).ok_or(missing_tile())?);
            }
        } else {
            for i in first..first + width {
                out.extend_from_slice(&nodes.node(tree_level, i)?);
            }
        }
        Ok(out)
    }

    pub(crate) fn entry_bundle(&self, index: u64, width: u64, size: u64) -> Result<Vec<u8>, LedgerError> {
        let first = index.checked_mul(TILE_WIDTH).ok_or(missing_tile())?;
        if !(1..=TILE_WIDTH).contains(&width) || first + width > size {
            return Err(missing_tile());
        }
        let mut bytes = vec![0u8; (width * RECORD) as usize];
        self.records.read_exact_at(&mut bytes, first * RECORD).map_err(io_error(&self.dir))?;
        let mut out = Vec::with_capacity((width * 34) as usize);
        for (i, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let record = <&[u8; RECORD_BYTES]>::try_from(chunk)
                .ok()
                .and_then(|r| SealRecord::decode(r).ok())
                .ok_or_else(|| LedgerError::Corrupt(format!("record {} is damaged", first + i as u64)))?;
            out.extend_from_slice(&32u16.to_be_bytes());
            out.extend_from_slice(&record.commitment);
        }
        Ok(out)
    }
}

fn missing_tile() -> LedgerError {
    LedgerError::Invalid("no such tile in this tree".into())
}

fn prefix(hash: &Hash) -> u64 {
    let [a, b, c, d, e, f, g, h, ..] = *hash;
    u64::from_le_bytes([a, b, c, d, e, f, g, h])
}

impl Inner {
    fn fail(&self, error: &LedgerError) {
        tracing::error!(error = %error, "ledger write failed; no more appends are taken");
        {
            let mut state = lock(&self.state);
            state.closed = true;
            state.failed = true;
            state.syncer = SyncerWait::Awake;
            self.sync_ready.notify_one();
        }
        let message: Arc<str> = Arc::from(error.to_string());
        self.progress.send_modify(|p| p.failed = Some(message));
        self.failed.store(true, Ordering::Release);
        let waiters = std::mem::take(&mut *lock(&self.waiters));
        for (_, waker) in waiters {
            waker.wake();
        }
    }

    /// Ready once `size` entries are durable (or the ledger failed).
    fn poll_durable(&self, size: u64, cx: &mut Context<'_>) -> Poll<Result<(), LedgerError>> {
        let ready = || {
            if self.durable.load(Ordering::Acquire) >= size {
                Some(Ok(()))
            } else if self.failed.load(Ordering::Acquire) {
                Some(Err(self.progress.borrow().failed.clone().map_or(LedgerError::Closed, LedgerError::Failed)))
            } else {
                None
            }
        };
        if let Some(result) = ready() {
            return Poll::Ready(result);
        }
        let mut waiters = lock(&self.waiters);
        // Again under the lock: the syncer publishes, then takes it.
        if let Some(result) = ready() {
            return Poll::Ready(result);
        }
        waiters.push((size, cx.waker().clone()));
        Poll::Pending
    }

    /// Make `size` entries durable for readers and waiting appenders.
    fn publish(&self, size: u64, last_seq: u64, woken: &mut Vec<Waker>) {
        self.progress.send_modify(|p| {
            p.size = size;
            p.last_seq = last_seq;
        });
        self.durable.store(size, Ordering::Release);
        woken.extend(lock(&self.waiters).extract_if(.., |(end, _)| *end <= size).map(|(_, waker)| waker));
        for waker in woken.drain(..) {
            waker.wake();
        }
    }

    /// Commit `batch`, then (for at most `rounds` batches in all) the seals
    /// that became due meanwhile, while fewer than `until` entries are
    /// written. The caller set `State::committing`; this clears it.
    fn commit(&self, mut batch: Vec<Seal>, mut rounds: u32, until: u64) {
        let mut committer = lock(&self.committer);
        loop {
            if self.failed.load(Ordering::Acquire) {
                lock(&self.state).committing = false;
                return;
            }
            let start = match committer.write(&self.files, &batch) {
                Ok(start) => start,
                Err(e) => {
                    self.fail(&e);
                    lock(&self.state).committing = false;
                    return;
                }
            };
            // Under the index lock, so that an index being built either
            // sees these leaves in the file or gets them here.
            let mut index = lock(&self.index);
            if let Some(map) = index.as_mut() {
                for (i, leaf) in committer.leaves.iter().enumerate() {
                    map.insert(prefix(leaf), start + i as u64);
                }
            }
            let mut state = lock(&self.state);
            drop(index);
            state.written = committer.frontier.size();
            state.written_seq = batch.last().map_or(state.written_seq, |s| s.event_seq);
            batch.clear();
            rounds = rounds.saturating_sub(1);
            let more = rounds > 0 && state.written < until && state.due();
            if more {
                std::mem::swap(&mut state.pending, &mut batch);
            } else {
                state.committing = false;
                if state.pending.is_empty() {
                    // Keep the allocation.
                    std::mem::swap(&mut state.pending, &mut batch);
                }
            }
            let wake = state.wake_syncer();
            drop(state);
            if wake {
                self.sync_ready.notify_one();
            }
            if !more {
                return;
            }
        }
    }

    fn sync_loop(self: Arc<Self>, mut synced: u64) {
        // After an fdatasync, the writers it released will most likely
        // append again at once. Waiting (briefly) for some of them lets one
        // fdatasync cover many instead of one each (the commit_delay idea of
        // PostgreSQL, adaptive): the appender completing that part of the
        // cohort commits and wakes this thread. Only part of a large cohort
        // is waited for: the rest is woken, hashed and written while the
        // fdatasync runs, so the CPUs and the disk overlap. A lone writer has
        // a cohort of one and never waits.
        let mut woken = Vec::new();
        loop {
            let (target, last_seq) = {
                let mut state = lock(&self.state);
                let mut deadline = std::time::Instant::now() + GATHER;
                loop {
                    if state.written >= state.commit_at || state.closed {
                        break;
                    }
                    let idle = state.written == synced && state.pending.is_empty() && !state.committing;
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        if !idle {
                            break;
                        }
                        // Nothing came: sleep until something is queued.
                        state.syncer = SyncerWait::Work;
                        state = wait(&self.sync_ready, state);
                        deadline = std::time::Instant::now() + GATHER;
                        continue;
                    }
                    state.syncer = SyncerWait::Written(state.commit_at);
                    state = self
                        .sync_ready
                        .wait_timeout(state, left)
                        .map(|(guard, _)| guard)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                // Everything queued by now goes into this fdatasync, and
                // whatever is queued during it is committed at once.
                let flush_to = state.next;
                state.commit_at = flush_to;
                loop {
                    if state.failed {
                        return;
                    }
                    if state.written >= flush_to {
                        break;
                    }
                    if state.committing {
                        state.syncer = SyncerWait::Written(flush_to);
                        state = wait(&self.sync_ready, state);
                    } else {
                        state.committing = true;
                        let batch = std::mem::take(&mut state.pending);
                        drop(state);
                        self.commit(batch, u32::MAX, flush_to);
                        state = lock(&self.state);
                    }
                }
                state.syncer = SyncerWait::Awake;
                if state.written == synced {
                    if state.closed {
                        return;
                    }
                    continue;
                }
                (state.written, state.written_seq)
            };
            if let Err(e) = self.files.records.sync_data() {
                self.fail(&io_error(&self.dir.join(RECORDS_FILE))(e));
                return;
            }
            let cohort = target - synced;
            synced = target;
            {
                let mut state = lock(&self.state);
                state.commit_at = state.commit_at.max(target + (cohort / 4).max(cohort.min(GATHER_ALL)));
            }
            self.publish(target, last_seq, &mut woken);
        }
    }
}
impl Committer {
    /// Salt and hash `batch`, and write its records and nodes; returns the
    /// index of its first entry.
    fn write(&mut self, files: &Files, batch: &[Seal]) -> Result<u64, LedgerError> {
        self.records.clear();
        self.nodes.clear();
        self.leaves.clear();
        let start = self.frontier.size();
        let start_nodes = node_count(start);
        let mut rng = rand::rng();
        for seal in batch {
            let mut salt = [0u8; SALT_BYTES];
            rng.fill_bytes(&mut salt);
            let record = SealRecord::new(seal, salt);
            self.records.extend_from_slice(&record.encode());
            let leaf = merkle::leaf_hash(&record.commitment);
            self.leaves.push(leaf);
            let nodes = &mut self.nodes;
            self.frontier.push(leaf, |h| nodes.extend_from_slice(h));
        }
        let records_path = files.dir.join(RECORDS_FILE);
        let offset = start * RECORD;
        let needed = offset + self.records.len() as u64;
        if needed > self.zeroed {
            // A large write makes a long fdatasync anyway: not worth writing
            // its bytes twice.
            let large = self.records.len() as u64 >= ZERO_AHEAD_BYTES / 4;
            let zero_to = if large { needed } else { needed + ZERO_AHEAD_BYTES };
            if zero_to > self.allocated {
                let grow = (zero_to - self.allocated).div_ceil(PREALLOCATE_BYTES) * PREALLOCATE_BYTES;
                rustix::fs::fallocate(&files.records, rustix::fs::FallocateFlags::empty(), self.allocated, grow)
                    .map_err(|e| io_error(&records_path)(e.into()))?;
                // The new size must be durable before records inside it are acknowledged.
                files.records.sync_all().map_err(io_error(&records_path))?;
                self.allocated += grow;
            }
            let from = self.zeroed.max(needed);
            if zero_to > from {
                self.zeros.resize((zero_to - from) as usize, 0);
                files.records.write_all_at(&self.zeros, from).map_err(io_error(&records_path))?;
            }
            self.zeroed = zero_to;
        }
        files.records.write_all_at(&self.records, offset).map_err(io_error(&records_path))?;
        files
            .nodes
            .write_all_at(&self.nodes, start_nodes * HASH_BYTES)
            .map_err(io_error(&files.dir.join(NODES_FILE)))?;
        Ok(start)
    }
}
