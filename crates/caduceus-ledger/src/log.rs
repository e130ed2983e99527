//! The durable log: seals appended with group commit, the tree stored beside
//! them, and everything read back for checkpoints, proofs and tiles.
//!
//! Files in the ledger directory:
//! - `records`: one 64-byte [`SealRecord`] per entry, in order. The source of
//!   truth. Preallocated in chunks and zeroed a little ahead of the last
//!   record (so that an fdatasync commits only data, not a new file size or
//!   extent map), and synced before any append is acknowledged.
//! - `nodes`: every complete subtree hash in post-order (see [`crate::tree`]),
//!   derived from the records. Written with each batch, synced with the tree
//!   state.
//! - `tree-state`: the size up to which `nodes` is known durable, and the
//!   root there. Replaced atomically. Start-up trusts `nodes` up to it and
//!   rehashes only the records after it.
//! - `LOCK`: held (flock) by the one process that appends.
//!
//! Group commit runs on two threads. The committer takes every queued seal,
//! salts and hashes them, and writes records and nodes; the syncer calls
//! fdatasync on the records and then acknowledges everything written before
//! the call. While one batch is being synced, the next is hashed and
//! written, so throughput grows with the number of concurrent writers and
//! each writer still waits for its own entries to be durable.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::ops::Range;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
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
/// Zeros written ahead of the last record (4,096 records). Preallocated
/// space is unwritten: the first write into it changes the file's extent
/// map, which the fdatasync covering that write must then also commit (one
/// more I/O each time). Writing zeros ahead in chunks pays that once per
/// chunk; on this project's test machine it halves a small fdatasync.
const ZERO_AHEAD_BYTES: u64 = 256 << 10;
/// Longest the syncer waits for the last cohort of writers to append again.
const GATHER: std::time::Duration = std::time::Duration::from_micros(200);
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

struct Queue {
    pending: Vec<Seal>,
    next: u64,
    closed: bool,
    /// The committer sleeps on `queue_ready`: only then is a wake-up (a
    /// futex system call) needed.
    committer_waiting: bool,
}

/// The records file beyond the last record: allocated up to `allocated`,
/// and known to hold written zeros up to `zeroed`.
struct Space {
    allocated: u64,
    zeroed: u64,
}

struct Written {
    size: u64,
    last_seq: u64,
    done: bool,
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
    queue: Mutex<Queue>,
    queue_ready: Condvar,
    written: Mutex<Written>,
    written_ready: Condvar,
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
            queue: Mutex::new(Queue { pending: Vec::new(), next: end, closed: false, committer_waiting: false }),
            queue_ready: Condvar::new(),
            written: Mutex::new(Written { size: end, last_seq, done: false }),
            written_ready: Condvar::new(),
            progress,
            index: Mutex::new(None),
            tree_state: Mutex::new(end),
        });
        let committer = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("ledger-commit".into())
                .spawn(move || inner.commit_loop(frontier, Space { allocated, zeroed: end * RECORD }))
                .map_err(io_error(dir))?
        };
        let syncer = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("ledger-sync".into())
                .spawn(move || inner.sync_loop(end))
                .map_err(io_error(dir))?
        };
        Ok(Self { inner, threads: Mutex::new(vec![committer, syncer]), _lock: lock_file })
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

    /// Queue `count` seals for the committer; returns their indexes.
    fn enqueue(&self, count: usize, push: impl FnOnce(&mut Vec<Seal>)) -> Result<Range<u64>, LedgerError> {
        let mut queue = lock(&self.inner.queue);
        if queue.closed {
            return Err(self.progress().failed.map_or(LedgerError::Closed, LedgerError::Failed));
        }
        let start = queue.next;
        queue.next += count as u64;
        push(&mut queue.pending);
        if queue.committer_waiting {
            queue.committer_waiting = false;
            self.inner.queue_ready.notify_one();
        }
        Ok(start..queue.next)
    }

    /// Wait until the entries `range` are durable.
    async fn durable(&self, range: Range<u64>) -> Result<Range<u64>, LedgerError> {
        let mut progress = self.inner.progress.subscribe();
        let end = range.end;
        let reached = progress
            .wait_for(|p| p.size >= end || p.failed.is_some())
            .await
            .map(|p| (p.size >= end, p.failed.clone()))
            .map_err(|_| LedgerError::Closed)?;
        match reached {
            (true, _) => Ok(range),
            (false, failed) => Err(failed.map_or(LedgerError::Closed, LedgerError::Failed)),
        }
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
            let size = lock(&self.inner.written).size;
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
            let mut queue = lock(&self.inner.queue);
            queue.closed = true;
            self.inner.queue_ready.notify_all();
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
        lock(&self.queue).closed = true;
        let message: Arc<str> = Arc::from(error.to_string());
        self.progress.send_modify(|p| p.failed = Some(message));
    }

    fn commit_loop(self: Arc<Self>, mut frontier: Frontier, mut space: Space) {
        let mut batch: Vec<Seal> = Vec::new();
        let mut records = Vec::new();
        let mut nodes = Vec::new();
        let mut leaves = Vec::new();
        let mut rng = rand::rng();
        loop {
            {
                let mut queue = lock(&self.queue);
                while queue.pending.is_empty() && !queue.closed {
                    queue.committer_waiting = true;
                    queue = wait(&self.queue_ready, queue);
                }
                if queue.pending.is_empty() {
                    break;
                }
                std::mem::swap(&mut queue.pending, &mut batch);
            }
            let start = frontier.size();
            let start_nodes = node_count(start);
            for seal in &batch {
                let mut salt = [0u8; SALT_BYTES];
                rng.fill_bytes(&mut salt);
                let record = SealRecord::new(seal, salt);
                records.extend_from_slice(&record.encode());
                let leaf = merkle::leaf_hash(&record.commitment);
                leaves.push(leaf);
                frontier.push(leaf, |h| nodes.extend_from_slice(h));
            }
            let last_seq = batch.last().map_or(0, |s| s.event_seq);
            let result = self.write_batch(start, start_nodes, &records, &nodes, &mut space);
            if let Err(e) = result {
                self.fail(&e);
                break;
            }
            {
                // Under the index lock, so that an index being built either
                // sees these leaves in the file or gets them here.
                let mut index = lock(&self.index);
                if let Some(map) = index.as_mut() {
                    for (i, leaf) in leaves.iter().enumerate() {
                        map.insert(prefix(leaf), start + i as u64);
                    }
                }
                let mut written = lock(&self.written);
                written.size = frontier.size();
                written.last_seq = last_seq;
                self.written_ready.notify_one();
            }
            batch.clear();
            records.clear();
            nodes.clear();
            leaves.clear();
        }
        lock(&self.written).done = true;
        self.written_ready.notify_one();
    }

    fn write_batch(
        &self,
        start: u64,
        start_nodes: u64,
        records: &[u8],
        nodes: &[u8],
        space: &mut Space,
    ) -> Result<(), LedgerError> {
        let records_path = self.dir.join(RECORDS_FILE);
        let offset = start * RECORD;
        let needed = offset + records.len() as u64;
        if needed + ZERO_AHEAD_BYTES > space.allocated {
            let grow = (needed + ZERO_AHEAD_BYTES - space.allocated).div_ceil(PREALLOCATE_BYTES) * PREALLOCATE_BYTES;
            rustix::fs::fallocate(&self.files.records, rustix::fs::FallocateFlags::empty(), space.allocated, grow)
                .map_err(|e| io_error(&records_path)(e.into()))?;
            // The new size must be durable before records inside it are acknowledged.
            self.files.records.sync_all().map_err(io_error(&records_path))?;
            space.allocated += grow;
        }
        self.files.records.write_all_at(records, offset).map_err(io_error(&records_path))?;
        space.zeroed = space.zeroed.max(needed);
        if needed + ZERO_AHEAD_BYTES / 2 > space.zeroed {
            // Inside the allocation, so the file's size does not change.
            let zeros = vec![0u8; ZERO_AHEAD_BYTES as usize];
            self.files.records.write_all_at(&zeros, space.zeroed).map_err(io_error(&records_path))?;
            space.zeroed += ZERO_AHEAD_BYTES;
        }
        self.files.nodes.write_all_at(nodes, start_nodes * HASH_BYTES).map_err(io_error(&self.dir.join(NODES_FILE)))
    }

    fn sync_loop(self: Arc<Self>, mut synced: u64) {
        // Entries the last fdatasync covered: the writers it released will
        // most likely append again at once. Waiting (briefly) until as many
        // are written lets one fdatasync cover them all instead of splitting
        // them over two (the commit_delay idea of PostgreSQL, adaptive). A
        // lone writer has a cohort of one and never waits.
        let mut cohort = 1u64;
        loop {
            let (target, last_seq, done) = {
                let mut written = lock(&self.written);
                while written.size == synced && !written.done {
                    written = wait(&self.written_ready, written);
                }
                let deadline = std::time::Instant::now() + GATHER;
                while !written.done && written.size - synced < cohort {
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        break;
                    }
                    written = self
                        .written_ready
                        .wait_timeout(written, left)
                        .map(|(guard, _)| guard)
                        .unwrap_or_else(|e| e.into_inner().0);
                }
                (written.size, written.last_seq, written.done)
            };
            if target > synced {
                if let Err(e) = self.files.records.sync_data() {
                    self.fail(&io_error(&self.dir.join(RECORDS_FILE))(e));
                    return;
                }
                cohort = target - synced;
                synced = target;
                self.progress.send_modify(|p| {
                    p.size = target;
                    p.last_seq = last_seq;
                });
            } else if done {
                return;
            }
        }
    }
}
