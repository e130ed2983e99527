//! The sensor's memory and judgement of single file events, independent of
//! where they came from (inotify, fanotify, or a test): a bounded cache of
//! each file's last known type and entropy (keyed by inode, with a path
//! index), pairing of copy-then-delete, attribution of events without a pid,
//! and the signals each event shows, fed to the scorer. Does no I/O except
//! `stat` in the caller; never logs a path.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::ffi::OsStr;
use std::hash::BuildHasher;
use std::path::{Path, PathBuf};

use crate::entropy::ContentSample;
use crate::magic::{self, FileKind};
use crate::report::PathHasher;
use crate::score::{Decision, Observation, ScoreConfig, Scorer, Signal};

/// A file's identity across renames.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct InodeKey {
    pub dev: u64,
    pub ino: u64,
}

impl InodeKey {
    fn id(self) -> u64 {
        self.ino ^ self.dev.rotate_left(40)
    }
}

/// What the sensor last knew of a file.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FileInfo {
    pub kind: FileKind,
    pub high_entropy: bool,
    /// The last writer fanotify named.
    pub writer: Option<i32>,
    /// Created while the sensor watched (so a first write is a new file).
    pub created: bool,
}

impl FileInfo {
    pub fn from_sample(s: &ContentSample, writer: Option<i32>, created: bool) -> Self {
        Self { kind: s.kind, high_entropy: s.is_high_entropy(), writer, created }
    }
}

/// Bounded cache: inode → info, and path → inode. When full, an arbitrary
/// entry goes (a miss only weakens one signal: the file then looks new).
#[derive(Debug)]
pub(crate) struct FileCache {
    by_ino: HashMap<InodeKey, FileInfo>,
    by_path: HashMap<u64, InodeKey>,
    hasher: RandomState,
    capacity: usize,
}

impl FileCache {
    pub fn new(capacity: usize) -> Self {
        Self { by_ino: HashMap::new(), by_path: HashMap::new(), hasher: RandomState::new(), capacity: capacity.max(16) }
    }

    pub fn len(&self) -> usize {
        self.by_ino.len()
    }

    fn path_key(&self, path: &Path) -> u64 {
        self.hasher.hash_one(path.as_os_str().as_encoded_bytes())
    }

    pub fn insert(&mut self, path: &Path, key: InodeKey, info: FileInfo) {
        if self.by_ino.len() >= self.capacity
            && !self.by_ino.contains_key(&key)
            && let Some(old) = self.by_ino.keys().next().copied()
        {
            self.by_ino.remove(&old);
        }
        self.by_ino.insert(key, info);
        let pk = self.path_key(path);
        if self.by_path.len() >= self.capacity
            && !self.by_path.contains_key(&pk)
            && let Some(old) = self.by_path.keys().next().copied()
        {
            self.by_path.remove(&old);
        }
        self.by_path.insert(pk, key);
    }

    pub fn get(&self, key: InodeKey) -> Option<FileInfo> {
        self.by_ino.get(&key).copied()
    }

    pub fn inode_at(&self, path: &Path) -> Option<InodeKey> {
        self.by_path.get(&self.path_key(path)).copied()
    }

    fn remove_path(&mut self, path: &Path) -> Option<(InodeKey, Option<FileInfo>)> {
        let key = self.by_path.remove(&self.path_key(path))?;
        Some((key, self.by_ino.remove(&key)))
    }

    fn move_path(&mut self, from: &Path, to: &Path) -> (Option<InodeKey>, Option<InodeKey>) {
        let moved = self.by_path.remove(&self.path_key(from));
        let replaced = match moved {
            Some(key) => self.by_path.insert(self.path_key(to), key),
            None => self.by_path.remove(&self.path_key(to)),
        };
        (moved, replaced.filter(|r| Some(*r) != moved))
    }
}

/// Extensions a rename may go to without suspicion: editors' backups and
/// temporary names.
const BENIGN_TARGET_EXTENSIONS: &[&str] =
    &["tmp", "temp", "bak", "old", "orig", "swp", "swo", "backup", "part", "partial", "crdownload", "lock", "new"];

fn lower_ext(path: &Path) -> Option<String> {
    path.extension().and_then(OsStr::to_str).map(str::to_ascii_lowercase)
}

/// Whether renaming `from` to `to` moves a document to an unknown extension
/// (`a.docx` → `a.docx.locked`, `a.pdf` → `a.x7k2q`).
pub fn is_extension_change(from: &Path, to: &Path) -> bool {
    let Some(from_ext) = lower_ext(from) else { return false };
    if !magic::is_document_extension(&from_ext) {
        return false;
    }
    match lower_ext(to) {
        None => to.file_name() != from.file_stem(),
        Some(to_ext) => {
            to_ext != from_ext
                && !magic::is_document_extension(&to_ext)
                && !to_ext.ends_with('~')
                && !BENIGN_TARGET_EXTENSIONS.contains(&to_ext.as_str())
        }
    }
}

/// Whether `new` looks like an encrypted copy of `original` in the same
/// directory: `a.docx` → `a.docx.locked` or `a.locked`.
fn is_copy_of(original: &Path, new: &Path) -> bool {
    if original.parent() != new.parent() {
        return false;
    }
    let (Some(o), Some(n)) = (original.file_name(), new.file_name()) else { return false };
    let (o, n) = (o.as_encoded_bytes(), n.as_encoded_bytes());
    if n.len() > o.len() && n.starts_with(o) {
        return true;
    }
    match (original.file_stem(), new.file_stem()) {
        (Some(a), Some(b)) => a == b && original.extension() != new.extension(),
        _ => false,
    }
}

const RECENT_CAP: usize = 256;
const DIR_WRITERS_CAP: usize = 4096;

#[derive(Debug)]
struct Recent {
    t: u64,
    path: PathBuf,
    pid: Option<i32>,
}

/// The engine: turns file events into scorer observations.
#[derive(Debug)]
pub(crate) struct Engine {
    roots: Vec<PathBuf>,
    hasher: PathHasher,
    pub cache: FileCache,
    scorer: Scorer,
    burst_ms: u64,
    canary_paths: HashSet<PathBuf>,
    canary_inodes: HashSet<InodeKey>,
    recent_new: VecDeque<Recent>,
    recent_deletes: VecDeque<Recent>,
    dir_writers: HashMap<u64, (i32, u64)>,
    dir_hasher: RandomState,
}

impl Engine {
    pub fn new(roots: Vec<PathBuf>, hasher: PathHasher, score: ScoreConfig, cache_capacity: usize) -> Self {
        let burst_ms = score.burst_window_ms;
        Self {
            roots,
            hasher,
            cache: FileCache::new(cache_capacity),
            scorer: Scorer::new(score),
            burst_ms,
            canary_paths: HashSet::new(),
            canary_inodes: HashSet::new(),
            recent_new: VecDeque::new(),
            recent_deletes: VecDeque::new(),
            dir_writers: HashMap::new(),
            dir_hasher: RandomState::new(),
        }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    pub fn add_canary(&mut self, path: PathBuf, key: Option<InodeKey>) {
        if let Some(k) = key {
            self.canary_inodes.insert(k);
        }
        self.canary_paths.insert(path);
    }

    pub fn is_canary(&self, path: &Path, key: Option<InodeKey>) -> bool {
        key.is_some_and(|k| self.canary_inodes.contains(&k)) || self.canary_paths.contains(path)
    }

    /// The watched root holding `path` (the longest matching one).
    pub fn root_of(&self, path: &Path) -> Option<usize> {
        self.roots
            .iter()
            .enumerate()
            .filter(|(_, r)| path.starts_with(r))
            .max_by_key(|(_, r)| r.as_os_str().len())
            .map(|(i, _)| i)
    }

    fn token(&self, root: usize, path: &Path) -> String {
        let rel = self.roots.get(root).and_then(|r| path.strip_prefix(r).ok()).unwrap_or(path);
        self.hasher.token(rel)
    }

    fn dir_key(&self, path: &Path) -> u64 {
        self.dir_hasher.hash_one(path.parent().unwrap_or(path).as_os_str().as_encoded_bytes())
    }

    fn note_writer(&mut self, path: &Path, pid: i32, now: u64) {
        if self.dir_writers.len() >= DIR_WRITERS_CAP {
            self.dir_writers.clear();
        }
        self.dir_writers.insert(self.dir_key(path), (pid, now));
    }

    /// The process that most recently wrote in `path`'s directory, within
    /// the burst window: the best guess for an event without a pid.
    fn guess_writer(&self, path: &Path, now: u64) -> Option<i32> {
        self.dir_writers
            .get(&self.dir_key(path))
            .filter(|(_, t)| now.saturating_sub(*t) <= self.burst_ms)
            .map(|(p, _)| *p)
    }

    fn trim_recent(&mut self, now: u64) {
        let burst = self.burst_ms;
        for q in [&mut self.recent_new, &mut self.recent_deletes] {
            while q.front().is_some_and(|r| r.t.saturating_add(burst) < now) || q.len() > RECENT_CAP {
                q.pop_front();
            }
        }
    }

    fn observe(
        &mut self,
        now: u64,
        root: usize,
        path: &Path,
        pid: Option<i32>,
        file_id: u64,
        signals: &[Signal],
    ) -> Option<(Decision, usize)> {
        let token =
            if signals.iter().any(|s| !matches!(s, Signal::Write | Signal::Create | Signal::Rename | Signal::Delete)) {
                self.token(root, path)
            } else {
                String::new()
            };
        let obs = Observation { pid, root, file_id, token: &token, signals };
        self.scorer.observe(now, &obs).map(|d| (d, root))
    }

    /// Seed the cache with a file present at start.
    pub fn seed(&mut self, path: &Path, key: InodeKey, sample: &ContentSample) {
        self.cache.insert(path, key, FileInfo::from_sample(sample, None, false));
    }

    /// A file appeared (its content comes with the close-write that follows).
    pub fn on_create(&mut self, now: u64, path: &Path, key: Option<InodeKey>) -> Option<(Decision, usize)> {
        let root = self.root_of(path)?;
        if let Some(k) = key
            && self.cache.get(k).is_none()
        {
            // (fanotify may have reported the first write already.)
            let info = FileInfo { kind: FileKind::Empty, high_entropy: false, writer: None, created: true };
            self.cache.insert(path, k, info);
        }
        let pid = self.guess_writer(path, now);
        let id = key.map_or_else(|| self.cache.path_key(path), InodeKey::id);
        self.observe(now, root, path, pid, id, &[Signal::Create])
    }

    /// A file was closed after writing; `sample` is its new content.
    pub fn on_write(
        &mut self,
        now: u64,
        path: &Path,
        key: InodeKey,
        pid: Option<i32>,
        sample: &ContentSample,
    ) -> Option<(Decision, usize)> {
        let root = self.root_of(path)?;
        self.trim_recent(now);
        let prior = self.cache.get(key);
        let high = sample.is_high_entropy();
        let unknown = sample.kind == FileKind::Unknown;
        let mut signals = vec![Signal::Write];
        if high && unknown {
            signals.push(Signal::HighEntropyWrite);
        }
        if self.is_canary(path, Some(key)) {
            signals.push(Signal::Canary);
        }
        let mut pid = pid;
        match prior {
            Some(p) if p.kind.is_known() => {
                if unknown && high {
                    signals.push(Signal::EncryptedOverwrite);
                } else if sample.kind == p.kind && high && !p.high_entropy {
                    signals.push(Signal::EntropyJump);
                }
            }
            Some(p) if !p.created && p.kind == FileKind::Unknown => {}
            _ => {
                if unknown && high {
                    signals.push(Signal::NewEncryptedFile);
                    if let Some(i) = self.recent_deletes.iter().position(|d| is_copy_of(&d.path, path)) {
                        signals.push(Signal::CopyDeletePair);
                        if let Some(d) = self.recent_deletes.remove(i) {
                            pid = pid.or(d.pid);
                        }
                    } else {
                        self.recent_new.push_back(Recent { t: now, path: path.to_path_buf(), pid });
                    }
                }
            }
        }
        let created = prior.is_some_and(|p| p.created);
        self.cache.insert(path, key, FileInfo::from_sample(sample, pid, created));
        if let Some(p) = pid {
            self.note_writer(path, p, now);
        }
        self.observe(now, root, path, pid, key.id(), &signals)
    }

    /// A file was deleted (or moved out of the watched trees).
    pub fn on_delete(&mut self, now: u64, path: &Path) -> Option<(Decision, usize)> {
        let root = self.root_of(path)?;
        self.trim_recent(now);
        let removed = self.cache.remove_path(path);
        let info = removed.and_then(|(_, i)| i);
        let file_id = removed.map_or_else(|| self.cache.path_key(path), |(k, _)| k.id());
        let mut signals = vec![Signal::Delete];
        if self.is_canary(path, removed.map(|(k, _)| k)) {
            signals.push(Signal::Canary);
        }
        if info.is_some_and(|i| i.kind.is_document()) {
            signals.push(Signal::DocumentDelete);
        }
        let mut pid = info.and_then(|i| i.writer);
        if let Some(i) = self.recent_new.iter().position(|n| is_copy_of(path, &n.path)) {
            signals.push(Signal::CopyDeletePair);
            if let Some(n) = self.recent_new.remove(i) {
                pid = pid.or(n.pid);
            }
        } else if info.is_none_or(|i| i.kind.is_known()) {
            self.recent_deletes.push_back(Recent { t: now, path: path.to_path_buf(), pid });
        }
        let pid = pid.or_else(|| self.guess_writer(path, now));
        self.observe(now, root, path, pid, file_id, &signals)
    }

    /// A file was renamed within the watched trees. `moved` is the renamed
    /// file's inode (from `stat` of `to`), when known.
    pub fn on_rename(
        &mut self,
        now: u64,
        from: &Path,
        to: &Path,
        moved: Option<InodeKey>,
    ) -> Option<(Decision, usize)> {
        let root = self.root_of(to).or_else(|| self.root_of(from))?;
        let (indexed, replaced) = self.cache.move_path(from, to);
        let key = moved.or(indexed);
        if let (Some(k), None) = (moved, indexed) {
            // The path index had lost it: re-attach the inode to its new name.
            if let Some(info) = self.cache.get(k) {
                self.cache.insert(to, k, info);
            }
        }
        let info = key.and_then(|k| self.cache.get(k));
        let mut signals = vec![Signal::Rename];
        if self.is_canary(from, key) || self.is_canary(to, None) {
            signals.push(Signal::Canary);
        }
        if is_extension_change(from, to) {
            signals.push(Signal::ExtensionChange);
        }
        // Rename over an existing file: an encrypted temporary replacing a document.
        if let Some(old) = replaced.and_then(|r| self.cache.get(r))
            && old.kind.is_known()
            && let Some(new) = info
            && new.kind == FileKind::Unknown
            && new.high_entropy
        {
            signals.push(Signal::EncryptedOverwrite);
        }
        let pid = info.and_then(|i| i.writer).or_else(|| self.guess_writer(to, now));
        let id = key.map_or_else(|| self.cache.path_key(to), InodeKey::id);
        self.observe(now, root, to, pid, id, &signals)
    }

    /// A canary was modified (seen before its close, or an attribute change).
    pub fn on_canary_touch(&mut self, now: u64, path: &Path, pid: Option<i32>) -> Option<(Decision, usize)> {
        let root = self.root_of(path)?;
        // The same id as the canary's close-write, so one touch counts once.
        let id = self.cache.inode_at(path).map_or_else(|| self.cache.path_key(path), InodeKey::id);
        self.observe(now, root, path, pid, id, &[Signal::Canary])
    }

    /// Drop expired state.
    pub fn prune(&mut self, now: u64) {
        self.scorer.prune(now);
        self.trim_recent(now);
        let burst = self.burst_ms;
        self.dir_writers.retain(|_, (_, t)| now.saturating_sub(*t) <= burst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Verdict;
    use rand::{RngCore, SeedableRng};

    fn engine() -> Engine {
        Engine::new(vec![PathBuf::from("/share")], PathHasher::new([3; 32]), ScoreConfig::default(), 1000)
    }

    fn key(ino: u64) -> InodeKey {
        InodeKey { dev: 1, ino }
    }

    fn pdf() -> ContentSample {
        ContentSample::from_head(&b"%PDF-1.7\nBT (text) Tj ET\n".repeat(300), 7500)
    }

    fn encrypted() -> ContentSample {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut b = vec![0u8; 8192];
        rng.fill_bytes(&mut b);
        ContentSample::from_head(&b, 8192)
    }

    #[test]
    fn in_place_encryption_of_seeded_files_is_ransomware_by_the_second() {
        let mut e = engine();
        for i in 0..5 {
            e.seed(Path::new(&format!("/share/a/Doe_{i}.pdf")), key(i), &pdf());
        }
        let d = e.on_write(1, Path::new("/share/a/Doe_0.pdf"), key(0), Some(77), &encrypted()).unwrap().0;
        assert_eq!(d.verdict, Verdict::Suspicious);
        let (d, root) = e.on_write(2, Path::new("/share/a/Doe_1.pdf"), key(1), Some(77), &encrypted()).unwrap();
        assert_eq!((d.verdict, d.pid, root), (Verdict::Ransomware, Some(77), 0));
        assert!(d.files.iter().all(|f| f.ends_with(".pdf") && !f.contains("Doe")));
        // A benign rewrite of a PDF as a PDF is nothing.
        assert!(e.on_write(3, Path::new("/share/a/Doe_2.pdf"), key(2), Some(78), &pdf()).is_none());
    }

    #[test]
    fn copy_then_delete_pairs_in_either_order() {
        let mut e = engine();
        for i in 0..4 {
            e.seed(Path::new(&format!("/share/r{i}.pdf")), key(i), &pdf());
        }
        // Order 1: encrypted copy, then the original's deletion.
        e.on_create(1, Path::new("/share/r0.pdf.locked"), Some(key(100)));
        assert!(e.on_write(2, Path::new("/share/r0.pdf.locked"), key(100), Some(9), &encrypted()).is_none());
        let d = e.on_delete(3, Path::new("/share/r0.pdf")).unwrap().0;
        assert_eq!((d.verdict, d.pid), (Verdict::Suspicious, Some(9)));
        assert_eq!(d.counts.copy_delete_pairs, 1);
        // Order 2 (events read from two queues): deletion first.
        e.on_delete(4, Path::new("/share/r1.pdf"));
        let d = e.on_write(5, Path::new("/share/r1.pdf.locked"), key(101), Some(9), &encrypted()).unwrap().0;
        assert_eq!(d.verdict, Verdict::Ransomware);
        assert_eq!(d.counts.copy_delete_pairs, 2);
    }

    #[test]
    fn rename_to_unknown_extension_and_rename_over() {
        assert!(is_extension_change(Path::new("/s/a.docx"), Path::new("/s/a.docx.locked")));
        assert!(is_extension_change(Path::new("/s/a.pdf"), Path::new("/s/a.x7k2q")));
        assert!(!is_extension_change(Path::new("/s/index.lock"), Path::new("/s/index")));
        assert!(!is_extension_change(Path::new("/s/a.docx"), Path::new("/s/a.docx~")));
        assert!(!is_extension_change(Path::new("/s/a.docx"), Path::new("/s/a.docx.bak")));
        assert!(!is_extension_change(Path::new("/s/a.tmp"), Path::new("/s/a.docx")));
        assert!(!is_extension_change(Path::new("/s/a.jpeg"), Path::new("/s/a.jpg")));
        let mut e = engine();
        e.seed(Path::new("/share/x.pdf"), key(1), &pdf());
        e.on_create(1, Path::new("/share/.tmp1"), Some(key(2)));
        e.on_write(2, Path::new("/share/.tmp1"), key(2), None, &encrypted());
        let d = e.on_rename(3, Path::new("/share/.tmp1"), Path::new("/share/x.pdf"), Some(key(2))).unwrap().0;
        assert_eq!(d.counts.type_changes, 1);
        assert_eq!(e.cache.inode_at(Path::new("/share/x.pdf")), Some(key(2)));
    }

    #[test]
    fn canaries_and_paths_outside_the_roots() {
        let mut e = engine();
        e.add_canary(PathBuf::from("/share/!0000_budget.docx"), Some(key(5)));
        let d = e.on_delete(1, Path::new("/share/!0000_budget.docx")).unwrap().0;
        assert!(d.canary_touched && d.verdict == Verdict::Ransomware);
        assert!(e.on_write(2, Path::new("/elsewhere/x"), key(9), None, &encrypted()).is_none());
        assert_eq!(e.root_of(Path::new("/share/a/b")), Some(0));
        assert_eq!(e.root_of(Path::new("/sharex/a")), None);
    }

    #[test]
    fn intermittent_encryption_behind_an_intact_header_is_an_entropy_jump() {
        let mut e = engine();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let plain = b"%PDF-1.7\nBT (text) Tj ET\n".repeat(3000);
        e.seed(Path::new("/share/big.pdf"), key(1), &ContentSample::from_head(&plain, 75_000));
        let mut attacked = plain.clone();
        let mut block = vec![0u8; 8192];
        rng.fill_bytes(&mut block);
        attacked.splice(16_384..16_384 + 8192, block);
        let s = ContentSample::from_head(&attacked, 75_000);
        assert_eq!(s.kind, FileKind::Pdf);
        e.on_write(1, Path::new("/share/big.pdf"), key(1), Some(4), &s);
        let d = e.on_write(2, Path::new("/share/big.pdf"), key(1), Some(4), &s);
        assert!(d.is_none(), "the same file counts once");
        e.seed(Path::new("/share/b2.pdf"), key(2), &ContentSample::from_head(&plain, 75_000));
        let d = e.on_write(3, Path::new("/share/b2.pdf"), key(2), Some(4), &s).unwrap().0;
        assert_eq!((d.verdict, d.counts.entropy_jumps), (Verdict::Suspicious, 2));
    }

    #[test]
    fn the_cache_is_bounded() {
        let mut c = FileCache::new(16);
        let info = FileInfo { kind: FileKind::Pdf, high_entropy: false, writer: None, created: false };
        for i in 0..1000 {
            c.insert(Path::new(&format!("/s/{i}")), key(i), info);
        }
        assert!(c.len() <= 16 && c.by_path.len() <= 16);
    }
}
