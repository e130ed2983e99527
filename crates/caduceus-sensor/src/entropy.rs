//! Shannon entropy of written content, read in a bounded way: the first
//! 64 KiB of a file plus a few 4 KiB blocks sampled across the rest, so that
//! partial (intermittent) encryption of a large file still shows. Owns no
//! policy: the scorer decides what a high value means.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::magic::{self, FileKind};

/// Bytes read from the start of a file.
pub const HEAD_BYTES: usize = 64 * 1024;
/// Size of an entropy block.
pub const BLOCK_BYTES: usize = 4096;
/// Blocks sampled beyond the head of a large file.
pub const SAMPLED_BLOCKS: usize = 4;
/// Entropy (bits per byte) above which a full-size block looks encrypted or
/// compressed.
pub const HIGH_ENTROPY: f64 = 7.5;

/// Shannon entropy of `bytes` in bits per byte (0 for an empty slice).
pub fn shannon_entropy(bytes: &[u8]) -> f64 {
    entropy_of(&histogram(bytes), bytes.len())
}

fn histogram(bytes: &[u8]) -> [u32; 256] {
    let mut counts = [0u32; 256];
    for &b in bytes {
        if let Some(c) = counts.get_mut(usize::from(b)) {
            *c += 1;
        }
    }
    counts
}

fn entropy_of(counts: &[u32; 256], len: usize) -> f64 {
    if len == 0 {
        return 0.0;
    }
    let n = len as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum()
}

/// The entropy a block of `len` bytes must reach to count as high. Short
/// samples of random data fall short of 8 bits per byte (the plug-in
/// estimator's bias is about 255 / (2 n ln 2)), so the bar drops for them;
/// below 256 bytes nothing counts as high.
pub fn high_entropy_threshold(len: usize) -> f64 {
    if len < 256 {
        return f64::INFINITY;
    }
    let bias = 255.0 / (2.0 * len as f64 * std::f64::consts::LN_2);
    HIGH_ENTROPY.min(8.0 - (2.0 * bias).max(0.5))
}

/// What the sensor learned from one read of a file's content.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ContentSample {
    /// File type by magic bytes.
    pub kind: FileKind,
    /// File length when sampled.
    pub len: u64,
    /// Entropy of the whole head (up to 64 KiB).
    pub head_entropy: f64,
    /// Highest entropy of any sampled block.
    pub max_block_entropy: f64,
    /// Blocks whose entropy cleared their size's bar.
    pub high_blocks: u16,
    /// Blocks measured.
    pub blocks: u16,
}

impl ContentSample {
    /// Whether any sampled block looks encrypted (or compressed).
    pub fn is_high_entropy(&self) -> bool {
        self.high_blocks > 0
    }

    /// Sample a byte buffer that holds the start of a file (tests, seeding).
    pub fn from_head(head: &[u8], len: u64) -> Self {
        let mut sample = Self {
            kind: magic::detect(head),
            len,
            head_entropy: 0.0,
            max_block_entropy: 0.0,
            high_blocks: 0,
            blocks: 0,
        };
        // One pass: the head's histogram is the sum of its blocks'.
        let mut total = [0u32; 256];
        for block in head.chunks(BLOCK_BYTES) {
            let counts = sample.add_block(block);
            for (t, c) in total.iter_mut().zip(counts.iter()) {
                *t += c;
            }
        }
        sample.head_entropy = entropy_of(&total, head.len());
        sample
    }

    fn add_block(&mut self, block: &[u8]) -> [u32; 256] {
        let counts = histogram(block);
        if block.is_empty() {
            return counts;
        }
        let e = entropy_of(&counts, block.len());
        self.max_block_entropy = self.max_block_entropy.max(e);
        self.blocks = self.blocks.saturating_add(1);
        if e >= high_entropy_threshold(block.len()) {
            self.high_blocks = self.high_blocks.saturating_add(1);
        }
        counts
    }
}

/// Read at most `head_limit` bytes from the start of `file` and, when the
/// file is longer than 64 KiB and `sample_tail` is set, [`SAMPLED_BLOCKS`]
/// blocks spread over the rest. Reads at most 80 KiB however large the file.
pub fn sample_file(file: &File, head_limit: usize, sample_tail: bool) -> io::Result<ContentSample> {
    sample_file_of_len(file, file.metadata()?.len(), head_limit, sample_tail)
}

fn sample_file_of_len(file: &File, len: u64, head_limit: usize, sample_tail: bool) -> io::Result<ContentSample> {
    let head_limit = head_limit.min(HEAD_BYTES);
    let want = usize::try_from(len).unwrap_or(usize::MAX).min(head_limit);
    let mut head = vec![0u8; want];
    let got = read_full_at(file, &mut head, 0)?;
    head.truncate(got);
    let mut sample = ContentSample::from_head(&head, len);
    let head_len = head.len() as u64;
    if sample_tail && len > head_len + BLOCK_BYTES as u64 {
        let span = len - head_len - BLOCK_BYTES as u64;
        let mut block = vec![0u8; BLOCK_BYTES];
        for i in 1..=SAMPLED_BLOCKS as u64 {
            let offset = head_len + span * i / SAMPLED_BLOCKS as u64;
            let got = read_full_at(file, &mut block, offset)?;
            if let Some(read) = block.get(..got) {
                sample.add_block(read);
            }
        }
    }
    Ok(sample)
}

/// Sample `file` for the sensor: the first block alone when it already
/// shows unknown, high-entropy content (the encrypted case, decided with one
/// 4 KiB read so the sensor keeps up with fast encryption), else the head and
/// sampled blocks as [`sample_file`] does.
pub fn sample_written(file: &File) -> io::Result<ContentSample> {
    sample_written_of_len(file, file.metadata()?.len())
}

/// [`sample_written`] for a file whose length the caller has from `fstat`.
pub fn sample_written_of_len(file: &File, len: u64) -> io::Result<ContentSample> {
    let quick = sample_file_of_len(file, len, BLOCK_BYTES, false)?;
    if quick.kind == FileKind::Unknown && quick.is_high_entropy() {
        return Ok(quick);
    }
    if len <= BLOCK_BYTES as u64 {
        return Ok(quick);
    }
    sample_file_of_len(file, len, HEAD_BYTES, true)
}

fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while let Some(rest) = buf.get_mut(done..) {
        if rest.is_empty() {
            break;
        }
        match file.read_at(rest, offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngCore, SeedableRng};
    use std::io::Write;

    fn random(n: usize) -> Vec<u8> {
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
        let mut v = vec![0u8; n];
        rng.fill_bytes(&mut v);
        v
    }

    #[test]
    fn entropy_of_constant_uniform_and_random_bytes() {
        assert_eq!(shannon_entropy(&[]), 0.0);
        assert_eq!(shannon_entropy(&[42; 1000]), 0.0);
        let uniform: Vec<u8> = (0..=255u8).cycle().take(256 * 16).collect();
        assert!((shannon_entropy(&uniform) - 8.0).abs() < 1e-9);
        let two: Vec<u8> = [0u8, 1].iter().copied().cycle().take(1000).collect();
        assert!((shannon_entropy(&two) - 1.0).abs() < 1e-9);
        assert!(shannon_entropy(&random(65536)) > 7.99);
    }

    #[test]
    fn text_is_low_and_random_is_high_at_every_sample_size() {
        let text = b"Patient presented with mild symptoms; follow-up in two weeks. ".repeat(100);
        assert!(shannon_entropy(&text) < 5.0);
        for n in [256usize, 512, 1024, 4096] {
            let r = random(n);
            let e = shannon_entropy(&r);
            assert!(e >= high_entropy_threshold(n), "random block of {n} bytes: {e}");
            let t = text.get(..n).unwrap();
            assert!(shannon_entropy(t) < high_entropy_threshold(n));
        }
        assert!(high_entropy_threshold(100).is_infinite());
        assert_eq!(high_entropy_threshold(4096), HIGH_ENTROPY);
    }

    #[test]
    fn sampling_finds_an_encrypted_block_deep_in_a_large_file() {
        let mut content = b"%PDF-1.7\n".to_vec();
        content.extend(b"BT /F1 12 Tf (plain text line) Tj ET\n".repeat(20_000));
        let len = content.len();
        // Encrypt one 64 KiB block in the middle, as intermittent ransomware does.
        let mid = len / 2;
        content.splice(mid..mid + 65536, random(65536));
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&content).unwrap();
        let head_only = sample_file(&f, HEAD_BYTES, false).unwrap();
        assert_eq!(head_only.kind, FileKind::Pdf);
        assert!(!head_only.is_high_entropy());
        let sampled = sample_file(&f, HEAD_BYTES, true).unwrap();
        assert!(sampled.is_high_entropy(), "{sampled:?}");
        assert_eq!(sampled.len, len as u64);
        assert!(sampled.blocks <= (HEAD_BYTES / BLOCK_BYTES + SAMPLED_BLOCKS) as u16);
    }

    #[test]
    fn written_files_are_decided_on_one_block_when_encrypted() {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(&random(200_000)).unwrap();
        let s = sample_written(&f).unwrap();
        assert_eq!((s.kind, s.blocks, s.is_high_entropy()), (FileKind::Unknown, 1, true));
        let mut g = tempfile::tempfile().unwrap();
        g.write_all(&b"%PDF-1.7\n".repeat(30_000)).unwrap();
        let s = sample_written(&g).unwrap();
        assert_eq!(s.kind, FileKind::Pdf);
        assert_eq!(usize::from(s.blocks), HEAD_BYTES / BLOCK_BYTES + SAMPLED_BLOCKS);
    }

    #[test]
    fn short_and_empty_files_sample_cleanly() {
        let f = tempfile::tempfile().unwrap();
        let s = sample_file(&f, HEAD_BYTES, true).unwrap();
        assert_eq!(s.kind, FileKind::Empty);
        assert_eq!(s.blocks, 0);
        assert!(!s.is_high_entropy());
    }
}
