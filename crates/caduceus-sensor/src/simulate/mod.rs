//! A ransomware simulator for measuring the sensor, safe by construction: it
//! only touches a directory holding the marker file that [`make_corpus`]
//! wrote there, only regular files inside it (no symlinks followed, no other
//! file system), and nothing else. Styles follow real families: in place,
//! copy-then-delete, encrypt-and-rename, intermittent (partial) and slow.
//! The "encryption" is a seeded ChaCha20 keystream XOR: real encryption is
//! not needed, high-entropy output is. Also benign heavy workloads (zip a
//! folder, a git checkout, a backup copy, a compile) for false positives.

pub(crate) mod docs;

use std::fs::{self, File};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::{Result, SensorError};

/// The marker file that makes a directory the simulator's own.
pub const MARKER: &str = ".caduceus-ransomware-sim";
const MARKER_MAGIC: &str = "caduceus ransomware simulator corpus v1";
/// Most files the simulator creates or touches in one corpus.
pub const MAX_CORPUS_FILES: usize = 100_000;
/// Bytes of one file the simulator reads or encrypts at most.
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
const SUBDIRS: &[&str] = &["radiology", "lab", "admin", "letters"];

/// How the simulated ransomware encrypts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Style {
    /// Overwrite each file with its encryption.
    InPlace,
    /// Write `name.ext.locked`, then delete the original.
    CopyDelete,
    /// Encrypt in place, then rename to a new random extension.
    Rename,
    /// Encrypt only the first 4 KiB of every other 64 KiB block
    /// (intermittent encryption, as LockFile and BlackCat do).
    Partial,
    /// In place, one file every [`SimOptions::slow_interval`].
    Slow,
}

impl Style {
    pub const ALL: [Style; 5] = [Self::InPlace, Self::CopyDelete, Self::Rename, Self::Partial, Self::Slow];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InPlace => "in-place",
            Self::CopyDelete => "copy-delete",
            Self::Rename => "rename",
            Self::Partial => "partial",
            Self::Slow => "slow",
        }
    }
}

impl FromStr for Style {
    type Err = SensorError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s).ok_or_else(|| {
            SensorError::Config(format!("unknown style {s:?}: in-place, copy-delete, rename, partial or slow"))
        })
    }
}

/// A benign heavy workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BenignWorkload {
    /// Zip the corpus into one archive (one large high-entropy file, a ZIP by magic).
    Zip,
    /// A git checkout: many small text writes, compressed objects,
    /// `index.lock` → `index`, files deleted and recreated.
    Git,
    /// Copy the whole corpus to a new folder.
    Backup,
    /// A compile: many object files and libraries written and rewritten.
    Compile,
}

impl BenignWorkload {
    pub const ALL: [BenignWorkload; 4] = [Self::Zip, Self::Git, Self::Backup, Self::Compile];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Zip => "zip",
            Self::Git => "git",
            Self::Backup => "backup",
            Self::Compile => "compile",
        }
    }
}

impl FromStr for BenignWorkload {
    type Err = SensorError;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|w| w.as_str() == s)
            .ok_or_else(|| SensorError::Config(format!("unknown workload {s:?}: zip, git, backup or compile")))
    }
}

/// The order files are attacked in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Directory by directory, names sorted (what walking a share gives;
    /// canaries named to sort first are hit first).
    Sorted,
    /// A seeded random order (canaries help least).
    #[default]
    Shuffled,
}

/// Simulator settings.
#[derive(Clone, Debug)]
pub struct SimOptions {
    pub seed: u64,
    pub order: Order,
    /// Pause between files of the `slow` style.
    pub slow_interval: Duration,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self { seed: 1, order: Order::Shuffled, slow_interval: Duration::from_secs(5) }
    }
}

/// What a simulation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimOutcome {
    /// Files encrypted before the stop flag was seen (or all).
    pub files_done: usize,
    /// Files in the corpus at start.
    pub files_total: usize,
    pub bytes_written: u64,
    pub elapsed: Duration,
    /// Whether the stop flag ended the run.
    pub stopped: bool,
    /// The files encrypted, in order (paths inside the simulator's corpus).
    pub done: Vec<PathBuf>,
    /// Files the system refused to open (a sensor's open gate): skipped, as
    /// ransomware moves on to the next file.
    pub denied: usize,
}

/// Write a corpus of `n` realistic documents (PDF, DOCX, XLSX, CSV, TXT,
/// PNG, JPEG, RTF, DOC, DICOM; 4 KiB to 1 MiB, most small) in `dir` and a
/// few subfolders, with the marker. `dir` must be absent or empty.
/// Returns the bytes written.
pub fn make_corpus(dir: &Path, n: usize, seed: u64) -> Result<u64> {
    if n > MAX_CORPUS_FILES {
        return Err(SensorError::Refused(format!("a corpus has at most {MAX_CORPUS_FILES} files")));
    }
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(SensorError::Refused(format!("{} is not empty", dir.display())));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|e| SensorError::io(format!("creating {}", dir.display()), e))?;
        }
        Err(e) => return Err(SensorError::io(format!("reading {}", dir.display()), e)),
    }
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let marker = format!("{MARKER_MAGIC}\n{:016x}\n", rng.next_u64());
    write_new(&dir.join(MARKER), marker.as_bytes())?;
    for sub in SUBDIRS {
        fs::create_dir(dir.join(sub)).map_err(|e| SensorError::io("creating a corpus folder", e))?;
    }
    let mut bytes = 0u64;
    for i in 0..n {
        let ext = docs::KINDS.get(i % docs::KINDS.len()).copied().unwrap_or("txt");
        // Log-uniform sizes between 4 KiB and 1 MiB.
        let size = (4096.0 * 256f64.powf(rng.random::<f64>().powi(2))) as usize;
        let content = docs::document(&mut rng, ext, size, true)?;
        let folder =
            if i % 5 == 0 { dir.to_path_buf() } else { dir.join(SUBDIRS.get(i % SUBDIRS.len()).unwrap_or(&"lab")) };
        let words: Vec<String> = docs::sentence(&mut rng)
            .split(' ')
            .take(2)
            .map(|w| w.chars().filter(char::is_ascii_alphanumeric).collect())
            .collect();
        write_new(&folder.join(format!("{}_{i:04}.{ext}", words.join("_"))), &content)?;
        bytes += content.len() as u64;
    }
    Ok(bytes)
}

fn write_new(path: &Path, content: &[u8]) -> Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| SensorError::io("creating a corpus file", e))?;
    f.write_all(content).map_err(|e| SensorError::io("writing a corpus file", e))
}

/// Whether `dir` is a corpus the simulator made (holds its marker).
pub fn is_corpus(dir: &Path) -> bool {
    check_corpus(dir).is_ok()
}

fn check_corpus(dir: &Path) -> Result<PathBuf> {
    let root = dir.canonicalize().map_err(|e| SensorError::io(format!("corpus {}", dir.display()), e))?;
    if root.parent().is_none() {
        return Err(SensorError::Refused("never the file system root".into()));
    }
    let marker = root.join(MARKER);
    let meta = fs::symlink_metadata(&marker)
        .map_err(|_| SensorError::Refused(format!("{} has no simulator marker", dir.display())))?;
    if !meta.is_file() || meta.len() > 4096 {
        return Err(SensorError::Refused(format!("{} has no valid simulator marker", dir.display())));
    }
    let text = fs::read_to_string(&marker).map_err(|e| SensorError::io("reading the marker", e))?;
    if !text.starts_with(MARKER_MAGIC) {
        return Err(SensorError::Refused(format!("{} has no valid simulator marker", dir.display())));
    }
    Ok(root)
}

/// The regular files of the corpus (not the marker), directory by
/// directory with names sorted, staying on the corpus's file system.
fn corpus_files(root: &Path) -> Result<Vec<PathBuf>> {
    let dev = fs::metadata(root).map_err(|e| SensorError::io("reading the corpus", e))?.dev();
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let mut entries: Vec<PathBuf> = fs::read_dir(&dir)
            .map_err(|e| SensorError::io("listing the corpus", e))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        let mut subdirs = Vec::new();
        for path in entries {
            let Ok(meta) = fs::symlink_metadata(&path) else { continue };
            if meta.dev() != dev || !path.starts_with(root) {
                continue;
            }
            if meta.is_dir() {
                subdirs.push(path);
            } else if meta.is_file() && path != root.join(MARKER) {
                out.push(path);
                if out.len() > MAX_CORPUS_FILES {
                    return Err(SensorError::Refused(format!("corpus has more than {MAX_CORPUS_FILES} files")));
                }
            }
        }
        subdirs.reverse();
        stack.extend(subdirs);
    }
    Ok(out)
}

/// Encrypt the corpus in `dir` in `style`, checking `stop` before each file
/// (set it to emulate a kill). Refuses a directory without the marker.
pub fn simulate_ransomware(dir: &Path, style: Style, opts: &SimOptions, stop: &AtomicBool) -> Result<SimOutcome> {
    let root = check_corpus(dir)?;
    let mut files = corpus_files(&root)?;
    let mut rng = ChaCha20Rng::seed_from_u64(opts.seed ^ 0x5eed_0fc0_ffee);
    if opts.order == Order::Shuffled {
        files.shuffle(&mut rng);
    }
    let new_ext: String = (0..5).map(|_| char::from(b'a' + rng.random_range(0..26u8))).collect();
    let started = Instant::now();
    let mut out = SimOutcome { files_total: files.len(), ..SimOutcome::default() };
    for (i, path) in files.iter().enumerate() {
        if style == Style::Slow && i > 0 && pause(opts.slow_interval, stop) {
            out.stopped = true;
            break;
        }
        if stop.load(Ordering::SeqCst) {
            out.stopped = true;
            break;
        }
        let written = match encrypt_one(path, style, &mut rng, &new_ext) {
            Ok(n) => n,
            Err(SensorError::Io { source, .. }) if source.kind() == std::io::ErrorKind::PermissionDenied => {
                out.denied += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        out.bytes_written += written;
        out.files_done += 1;
        out.done.push(path.clone());
    }
    out.elapsed = started.elapsed();
    Ok(out)
}

/// Encrypt one file in `style`; returns the bytes written.
fn encrypt_one(path: &Path, style: Style, rng: &mut ChaCha20Rng, new_ext: &str) -> Result<u64> {
    Ok(match style {
        Style::InPlace | Style::Slow => encrypt_in_place(path, rng, false)?,
        Style::Partial => encrypt_in_place(path, rng, true)?,
        Style::Rename => {
            let n = encrypt_in_place(path, rng, false)?;
            let mut to = path.to_path_buf().into_os_string();
            to.push(".");
            to.push(new_ext);
            fs::rename(path, PathBuf::from(to)).map_err(|e| SensorError::io("renaming a corpus file", e))?;
            n
        }
        Style::CopyDelete => {
            let mut content = read_bounded(path)?;
            xor_keystream(&mut content, rng);
            let mut to = path.to_path_buf().into_os_string();
            to.push(".locked");
            write_new(Path::new(&to), &content)?;
            fs::remove_file(path).map_err(|e| SensorError::io("deleting a corpus file", e))?;
            content.len() as u64
        }
    })
}

/// Sleep `interval` in short steps; true when `stop` was set meanwhile.
fn pause(interval: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + interval;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return true;
        }
        let step = until.saturating_duration_since(Instant::now()).min(Duration::from_millis(20));
        #[allow(clippy::disallowed_methods)] // the slow style's pacing is the point; no runtime thread here
        std::thread::sleep(step);
    }
    stop.load(Ordering::SeqCst)
}

fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| SensorError::io("reading a corpus file", e))?;
    let mut content = Vec::new();
    f.take(MAX_FILE_BYTES).read_to_end(&mut content).map_err(|e| SensorError::io("reading a corpus file", e))?;
    Ok(content)
}

fn xor_keystream(data: &mut [u8], rng: &mut ChaCha20Rng) {
    let mut key = [0u8; 4096];
    for chunk in data.chunks_mut(key.len()) {
        rng.fill_bytes(&mut key);
        for (b, k) in chunk.iter_mut().zip(key.iter()) {
            *b ^= k;
        }
    }
}

/// Overwrite `path` with its encryption (the same inode, as in-place
/// ransomware does). `partial` encrypts the first 4 KiB of every other
/// 64 KiB block only. Returns the bytes written.
fn encrypt_in_place(path: &Path, rng: &mut ChaCha20Rng, partial: bool) -> Result<u64> {
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| SensorError::io("opening a corpus file", e))?;
    let len = f.metadata().map_err(|e| SensorError::io("reading a corpus file", e))?.len().min(MAX_FILE_BYTES);
    let io = |e| SensorError::io("encrypting a corpus file", e);
    if partial {
        let mut written = 0u64;
        let mut offset = 0u64;
        let mut block = vec![0u8; 4096];
        while offset < len {
            let n = usize::try_from((len - offset).min(4096)).unwrap_or(4096);
            let buf = block.get_mut(..n).unwrap_or_default();
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
            f.read_exact(buf).map_err(io)?;
            xor_keystream(buf, rng);
            f.seek(SeekFrom::Start(offset)).map_err(io)?;
            f.write_all(buf).map_err(io)?;
            written += n as u64;
            offset += 2 * 64 * 1024;
        }
        return Ok(written);
    }
    let mut content = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    (&mut f).take(len).read_to_end(&mut content).map_err(io)?;
    xor_keystream(&mut content, rng);
    f.seek(SeekFrom::Start(0)).map_err(io)?;
    f.write_all(&content).map_err(io)?;
    Ok(content.len() as u64)
}

/// What a benign workload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BenignOutcome {
    pub files_written: usize,
    pub files_renamed: usize,
    pub files_deleted: usize,
    pub bytes_written: u64,
    pub elapsed: Duration,
}

/// Run a benign heavy workload in the simulator's corpus `dir` (it writes
/// only new folders inside it and reads the documents).
pub fn run_benign(dir: &Path, workload: BenignWorkload, seed: u64) -> Result<BenignOutcome> {
    let root = check_corpus(dir)?;
    let started = Instant::now();
    let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xbe_9196);
    let mut out = match workload {
        BenignWorkload::Zip => zip_folder(&root, &mut rng)?,
        BenignWorkload::Git => git_checkout(&root, &mut rng)?,
        BenignWorkload::Backup => backup_copy(&root, &mut rng)?,
        BenignWorkload::Compile => compile(&root, &mut rng)?,
    };
    out.elapsed = started.elapsed();
    Ok(out)
}

fn unique_dir(root: &Path, prefix: &str, rng: &mut ChaCha20Rng) -> Result<PathBuf> {
    let d = root.join(format!("{prefix}-{:08x}", rng.next_u32()));
    fs::create_dir(&d).map_err(|e| SensorError::io("creating a workload folder", e))?;
    Ok(d)
}

/// The corpus's documents (not what earlier workloads wrote).
fn documents(root: &Path) -> Result<Vec<PathBuf>> {
    let mut files = corpus_files(root)?;
    files.retain(|f| {
        f.extension().and_then(|e| e.to_str()).is_some_and(|e| docs::KINDS.contains(&e))
            && f.strip_prefix(root).is_ok_and(|rel| rel.components().count() <= 2)
    });
    Ok(files)
}

fn zip_folder(root: &Path, rng: &mut ChaCha20Rng) -> Result<BenignOutcome> {
    let files = documents(root)?;
    let path = root.join(format!("archive-{:08x}.zip", rng.next_u32()));
    let f = fs::OpenOptions::new()
        .write(true)
        .read(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| SensorError::io("creating the archive", e))?;
    let zerr = |e: zip::result::ZipError| SensorError::io("writing the archive", std::io::Error::other(e.to_string()));
    let mut w = zip::ZipWriter::new(f);
    let options = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for file in &files {
        let name = file.strip_prefix(root).unwrap_or(file).to_string_lossy().into_owned();
        w.start_file(name, options).map_err(zerr)?;
        w.write_all(&read_bounded(file)?).map_err(|e| SensorError::io("writing the archive", e))?;
    }
    let f = w.finish().map_err(zerr)?;
    let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
    Ok(BenignOutcome { files_written: 1, bytes_written: bytes, ..BenignOutcome::default() })
}

fn backup_copy(root: &Path, rng: &mut ChaCha20Rng) -> Result<BenignOutcome> {
    let files = documents(root)?;
    let dest = unique_dir(root, "backup", rng)?;
    let mut out = BenignOutcome::default();
    for file in files {
        let rel = file.strip_prefix(root).unwrap_or(&file);
        let to = dest.join(rel);
        if let Some(parent) = to.parent() {
            fs::create_dir_all(parent).map_err(|e| SensorError::io("creating a backup folder", e))?;
        }
        out.bytes_written += fs::copy(&file, &to).map_err(|e| SensorError::io("copying a file", e))?;
        out.files_written += 1;
    }
    Ok(out)
}

fn git_checkout(root: &Path, rng: &mut ChaCha20Rng) -> Result<BenignOutcome> {
    use flate2::Compression;
    use flate2::write::ZlibEncoder;
    let repo = unique_dir(root, "repo", rng)?;
    let git = repo.join(".git");
    let io = |e| SensorError::io("git workload", e);
    fs::create_dir_all(git.join("objects")).map_err(io)?;
    fs::create_dir_all(repo.join("src")).map_err(io)?;
    let mut out = BenignOutcome::default();
    let mut names: Vec<String> = (0..120).map(|i| format!("src/module_{i}.rs")).collect();
    for round in 0..3 {
        // Check out: write the work tree files of this "branch".
        for name in &names {
            let mut code = String::new();
            for line in 0..rng.random_range(10..120) {
                code.push_str(&format!(
                    "    let value_{line} = compute({}, \"{}\");\n",
                    rng.random_range(0..1000),
                    docs::sentence(rng)
                ));
            }
            fs::write(repo.join(name), &code).map_err(io)?;
            out.files_written += 1;
            out.bytes_written += code.len() as u64;
            // Its loose object: zlib-compressed, written to a temporary name and renamed.
            let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
            z.write_all(format!("blob {}\0", code.len()).as_bytes()).map_err(io)?;
            z.write_all(code.as_bytes()).map_err(io)?;
            let obj = z.finish().map_err(io)?;
            let id = format!("{:040x}", u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64()));
            let (fan, rest) = id.split_at(2);
            let obj_dir = git.join("objects").join(fan);
            fs::create_dir_all(&obj_dir).map_err(io)?;
            let tmp = obj_dir.join(format!("tmp_obj_{:06x}", rng.next_u32() & 0xff_ffff));
            fs::write(&tmp, &obj).map_err(io)?;
            fs::rename(&tmp, obj_dir.join(rest)).map_err(io)?;
            out.files_written += 1;
            out.files_renamed += 1;
        }
        // The index: index.lock written, then renamed over index.
        let mut index = b"DIRC\0\0\0\x02".to_vec();
        index.extend(u32::try_from(names.len()).unwrap_or(0).to_be_bytes());
        for name in &names {
            index.extend([0u8; 8]);
            index.extend(u32::from(rng.random::<u16>()).to_be_bytes());
            index.extend([0u8; 28]);
            let mut sha = [0u8; 20];
            rng.fill_bytes(&mut sha);
            index.extend(sha);
            index.extend(u16::try_from(name.len()).unwrap_or(0).to_be_bytes());
            index.extend(name.as_bytes());
            index.extend([0u8; 2]);
        }
        fs::write(git.join("index.lock"), &index).map_err(io)?;
        fs::rename(git.join("index.lock"), git.join("index")).map_err(io)?;
        fs::write(git.join("HEAD"), format!("ref: refs/heads/branch-{round}\n")).map_err(io)?;
        out.files_written += 2;
        out.files_renamed += 1;
        // Switching branches deletes some files and adds others.
        for name in names.drain(..30) {
            fs::remove_file(repo.join(name)).map_err(io)?;
            out.files_deleted += 1;
        }
        names.extend((0..30).map(|i| format!("src/feature_{round}_{i}.rs")));
    }
    Ok(out)
}

/// Machine-code-like bytes: mostly zeros and common opcodes, some noise
/// (medium entropy, as object files have).
fn code_bytes(rng: &mut ChaCha20Rng, n: usize) -> Vec<u8> {
    const OPS: [u8; 16] =
        [0x48, 0x89, 0x8b, 0xe8, 0xc3, 0x0f, 0x85, 0x84, 0x83, 0xff, 0x24, 0x44, 0x55, 0x5d, 0x31, 0xc0];
    // xorshift64: these bytes need only look like code, and megabytes of
    // them must be cheap even in a debug build.
    let mut x = rng.next_u64() | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            match (x >> 56) as u8 {
                0..=89 => 0,
                r @ 90..=219 => OPS.get(usize::from(r % 16)).copied().unwrap_or(0),
                _ => (x >> 8) as u8,
            }
        })
        .collect()
}

fn compile(root: &Path, rng: &mut ChaCha20Rng) -> Result<BenignOutcome> {
    let target = unique_dir(root, "target", rng)?;
    let deps = target.join("debug").join("deps");
    let io = |e| SensorError::io("compile workload", e);
    fs::create_dir_all(&deps).map_err(io)?;
    let mut out = BenignOutcome::default();
    let elf = |rng: &mut ChaCha20Rng, n: usize| {
        let mut v = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x01\0\x3e\0".to_vec();
        v.extend(code_bytes(rng, n));
        v
    };
    let mut objects = Vec::new();
    for i in 0..150 {
        let size = rng.random_range(8 * 1024..120 * 1024);
        let o = deps.join(format!("unit_{i}-{:016x}.o", rng.next_u64()));
        let bytes = elf(rng, size);
        fs::write(&o, &bytes).map_err(io)?;
        fs::write(o.with_extension("d"), format!("{}: src/unit_{i}.rs\n", o.display())).map_err(io)?;
        out.files_written += 2;
        out.bytes_written += bytes.len() as u64;
        objects.push(o);
    }
    for i in 0..10 {
        let mut lib = b"!<arch>\n".to_vec();
        for _ in 0..5 {
            lib.extend(format!("{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n", "unit.o/", 0, 0, 0, 644, 65536).as_bytes());
            lib.extend(elf(rng, 65536));
        }
        fs::write(deps.join(format!("libcrate_{i}-{:016x}.rlib", rng.next_u64())), &lib).map_err(io)?;
        out.files_written += 1;
        out.bytes_written += lib.len() as u64;
    }
    // An incremental rebuild rewrites a third of the objects in place.
    for o in objects.iter().step_by(3) {
        let size = rng.random_range(8 * 1024..120 * 1024);
        fs::write(o, elf(rng, size)).map_err(io)?;
        out.files_written += 1;
    }
    let binary = elf(rng, 2 * 1024 * 1024);
    fs::write(target.join("debug").join("hospital-app"), &binary).map_err(io)?;
    out.files_written += 1;
    out.bytes_written += binary.len() as u64;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::{HEAD_BYTES, sample_file};
    use crate::magic::FileKind;

    #[test]
    fn refuses_directories_it_did_not_make() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("someone_elses.docx"), b"keep me").unwrap();
        let stop = AtomicBool::new(false);
        let err = simulate_ransomware(dir.path(), Style::InPlace, &SimOptions::default(), &stop).unwrap_err();
        assert!(matches!(err, SensorError::Refused(_)), "{err}");
        assert!(make_corpus(dir.path(), 5, 1).is_err(), "not empty");
        assert!(run_benign(dir.path(), BenignWorkload::Zip, 1).is_err());
        fs::write(dir.path().join(MARKER), b"forged").unwrap();
        assert!(simulate_ransomware(dir.path(), Style::InPlace, &SimOptions::default(), &stop).is_err());
        assert_eq!(fs::read(dir.path().join("someone_elses.docx")).unwrap(), b"keep me");
        assert!(!is_corpus(Path::new("/")));
    }

    #[test]
    fn does_not_follow_symlinks_out_of_the_corpus() {
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim.txt");
        fs::write(&victim, b"outside the corpus").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("c");
        make_corpus(&corpus, 6, 2).unwrap();
        std::os::unix::fs::symlink(&victim, corpus.join("link.txt")).unwrap();
        std::os::unix::fs::symlink(outside.path(), corpus.join("linkdir")).unwrap();
        let out =
            simulate_ransomware(&corpus, Style::InPlace, &SimOptions::default(), &AtomicBool::new(false)).unwrap();
        assert_eq!(out.files_done, 6);
        assert_eq!(fs::read(&victim).unwrap(), b"outside the corpus");
    }

    #[test]
    fn every_style_encrypts_every_file_and_stop_is_honoured() {
        for style in Style::ALL {
            let dir = tempfile::tempdir().unwrap();
            let corpus = dir.path().join("c");
            make_corpus(&corpus, 12, 3).unwrap();
            let opts = SimOptions { slow_interval: Duration::from_millis(5), ..SimOptions::default() };
            let out = simulate_ransomware(&corpus, style, &opts, &AtomicBool::new(false)).unwrap();
            assert_eq!((out.files_done, out.files_total, out.stopped), (12, 12, false), "{style:?}");
            let files = corpus_files(&corpus.canonicalize().unwrap()).unwrap();
            assert_eq!(files.len(), 12);
            for f in &files {
                let s = sample_file(&File::open(f).unwrap(), HEAD_BYTES, true).unwrap();
                assert_eq!(s.kind, FileKind::Unknown, "{style:?}");
                assert!(s.is_high_entropy(), "{style:?}");
                let ext = f.extension().unwrap().to_str().unwrap();
                match style {
                    Style::CopyDelete => assert_eq!(ext, "locked"),
                    Style::Rename => assert!(ext.len() == 5 && !docs::KINDS.contains(&ext)),
                    _ => assert!(docs::KINDS.contains(&ext)),
                }
            }
            let stopped = simulate_ransomware(&corpus, style, &opts, &AtomicBool::new(true)).unwrap();
            assert_eq!((stopped.files_done, stopped.stopped), (0, true));
        }
    }

    #[test]
    fn corpus_has_varied_types_and_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("c");
        let bytes = make_corpus(&corpus, 40, 9).unwrap();
        let files = corpus_files(&corpus.canonicalize().unwrap()).unwrap();
        assert_eq!(files.len(), 40);
        assert!(bytes > 40 * 4096 / 3);
        let mut kinds = std::collections::HashSet::new();
        for f in &files {
            let s = sample_file(&File::open(f).unwrap(), HEAD_BYTES, true).unwrap();
            assert!(s.kind.is_known(), "{f:?}");
            kinds.insert(s.kind);
        }
        assert!(kinds.len() >= 8, "{kinds:?}");
        assert!(files.iter().any(|f| f.parent() != Some(corpus.canonicalize().unwrap().as_path())));
    }

    #[test]
    fn benign_workloads_run_and_keep_the_documents() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("c");
        make_corpus(&corpus, 10, 4).unwrap();
        let before = corpus_files(&corpus.canonicalize().unwrap()).unwrap();
        for w in BenignWorkload::ALL {
            let out = run_benign(&corpus, w, 5).unwrap();
            assert!(out.files_written >= 1, "{w:?}");
        }
        for f in &before {
            let s = sample_file(&File::open(f).unwrap(), HEAD_BYTES, true).unwrap();
            assert!(s.kind.is_known());
        }
        assert_eq!("git".parse::<BenignWorkload>().unwrap(), BenignWorkload::Git);
        assert_eq!("copy-delete".parse::<Style>().unwrap(), Style::CopyDelete);
        assert!("wipe".parse::<Style>().is_err());
    }
}
