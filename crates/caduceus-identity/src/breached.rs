//! An offline breached-password list in the Have I Been Pwned format, for
//! hospitals whose servers may not reach the HIBP range API (NIST SP
//! 800-63B: "passwords obtained from previous breach corpuses"). It owns
//! looking a password up in a list on disk; it must not read the list into
//! memory (the SHA-1 file is about 40 GB), log or return anything that
//! identifies the password, or decide policy (the caller refuses or warns).
//!
//! Two layouts, told apart by `BreachedList::open`:
//! - one file, "SHA-1 ordered by hash" as HIBP offers it for download or as
//!   the PwnedPasswordsDownloader writes by default: one `HASH40:COUNT` line
//!   per hash, upper-case hex, CRLF or LF endings, sorted by hash. It is
//!   searched by bisection with positional reads, resynchronising on line
//!   boundaries: about 35 probes of at most 128 bytes each, whatever its size;
//! - a directory of range files as the downloader writes with per-prefix
//!   output: `<dir>/ABCDE.txt` holds the `SUFFIX35:COUNT` lines of the hashes
//!   starting with `ABCDE`; the one file a lookup needs is searched the same
//!   way.
//!
//! Hand-written because no maintained crate reads the offline HIBP files:
//! the crates that exist call the online range API, which an air-gapped
//! network cannot reach. The format is simple enough that a short reader,
//! with every line read capped and every malformed line an error rather
//! than a panic, is less risk than a dependency.
//!
//! Lookups do blocking file I/O: call `count` from a blocking thread
//! (`tokio::task::spawn_blocking`) in an async server.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

/// The longest line read, in bytes: a line is 40 hex digits, a colon, a
/// count of at most 20 digits and CRLF (63 bytes); more is malformed.
pub const MAX_LINE: usize = 128;

/// Hex digits of a whole SHA-1 and of the suffix in a range file (the
/// first five digits are the file's name).
const HASH_DIGITS: usize = 40;
const PREFIX_DIGITS: usize = 5;
const SUFFIX_DIGITS: usize = HASH_DIGITS - PREFIX_DIGITS;
/// HIBP's NTLM files use 32 hex digits; named in the error when seen.
const NTLM_DIGITS: usize = 32;
const NTLM_SUFFIX_DIGITS: usize = NTLM_DIGITS - PREFIX_DIGITS;
/// Lines checked at the start of a list by `open`.
const CHECKED_LINES: usize = 4;
/// The first range file, which every complete download has.
const FIRST_RANGE: &str = "00000.txt";

#[derive(Debug, thiserror::Error)]
pub enum BreachedError {
    #[error("cannot read the breached-password list at {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("the breached-password list at {} is malformed at byte {offset}: {reason}", path.display())]
    Malformed { path: PathBuf, offset: u64, reason: &'static str },
    /// A range file is missing from a range directory: the download is
    /// incomplete. The file name is left out, since it is the first five
    /// hex digits of the password's SHA-1 (20 bits an attacker holding the
    /// logs would not have to guess); errors in a range file found during a
    /// lookup name the directory for the same reason.
    #[error("the breached-password directory {} lacks a range file: the download is incomplete", dir.display())]
    MissingRange { dir: PathBuf },
}

/// An opened breached-password list (either layout). Lookups take `&self`
/// and use positional reads, so one list can serve many threads.
#[derive(Debug)]
pub struct BreachedList {
    layout: Layout,
}

#[derive(Debug)]
enum Layout {
    /// One sorted file of whole hashes.
    Sorted { path: PathBuf, file: File, start: u64, end: u64 },
    /// A directory of per-prefix range files.
    Ranges { dir: PathBuf },
}

impl BreachedList {
    /// Open a list: a sorted `HASH:COUNT` file or a directory of range
    /// files, checking that the first lines (and a file's last line, which
    /// a truncated download breaks) look right.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, BreachedError> {
        let path = path.as_ref().to_path_buf();
        let metadata = std::fs::metadata(&path).map_err(|source| BreachedError::Io { path: path.clone(), source })?;
        if metadata.is_dir() {
            let first = path.join(FIRST_RANGE);
            let file = match File::open(&first) {
                Ok(file) => file,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(BreachedError::Malformed {
                        path,
                        offset: 0,
                        reason: "a directory of range files needs 00000.txt and the other five-hex-digit range files",
                    });
                }
                Err(source) => return Err(BreachedError::Io { path: first, source }),
            };
            Lines::new(&file, &first, SUFFIX_DIGITS)?.check()?;
            Ok(Self { layout: Layout::Ranges { dir: path } })
        } else {
            let file = File::open(&path).map_err(|source| BreachedError::Io { path: path.clone(), source })?;
            let lines = Lines::new(&file, &path, HASH_DIGITS)?;
            lines.check()?;
            let (start, end) = (lines.start, lines.end);
            Ok(Self { layout: Layout::Sorted { path, file, start, end } })
        }
    }

    /// How often the password appears in the breach corpus, or `None` if
    /// it does not (a padding line with count 0 counts as absent).
    pub fn count(&self, password: &str) -> Result<Option<u64>, BreachedError> {
        let digest = Sha1::digest(password.as_bytes());
        let hex = data_encoding::HEXUPPER.encode(&digest);
        let hex = hex.as_bytes();
        let count = match &self.layout {
            Layout::Sorted { path, file, start, end } => {
                Lines { file, path, key_digits: HASH_DIGITS, start: *start, end: *end }.find(hex)?
            }
            Layout::Ranges { dir } => {
                let (prefix, suffix) = hex.split_at_checked(PREFIX_DIGITS).ok_or(BreachedError::MissingRange {
                    // Unreachable: a SHA-1 has 40 hex digits.
                    dir: dir.clone(),
                })?;
                let name = format!("{}.txt", String::from_utf8_lossy(prefix));
                let path = dir.join(name);
                let file = match File::open(&path) {
                    Ok(file) => file,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        return Err(BreachedError::MissingRange { dir: dir.clone() });
                    }
                    // The directory, not the file, so as not to name the prefix.
                    Err(source) => return Err(BreachedError::Io { path: dir.clone(), source }),
                };
                // Errors name the directory, not the file, as above.
                Lines::new(&file, dir, SUFFIX_DIGITS)?.find(suffix)?
            }
        };
        Ok(count.filter(|&n| n > 0))
    }
}

/// A view of sorted `KEY:COUNT` lines in `start..end` of a file, `end`
/// being just after the last line's last character (trailing line breaks
/// excluded), so every line in the range is followed by `\n` but the last.
struct Lines<'a> {
    file: &'a File,
    path: &'a Path,
    key_digits: usize,
    start: u64,
    end: u64,
}

/// One parsed line: its key (upper-cased hex) and count.
#[derive(Debug)]
struct Line {
    key: Vec<u8>,
    count: u64,
}

impl<'a> Lines<'a> {
    /// The lines of a whole file, with its trailing line breaks (and a
    /// UTF-8 byte-order mark some tools add) left out.
    fn new(file: &'a File, path: &'a Path, key_digits: usize) -> Result<Self, BreachedError> {
        let len = file.metadata().map_err(|source| BreachedError::Io { path: path.to_path_buf(), source })?.len();
        let mut lines = Lines { file, path, key_digits, start: 0, end: len };
        let mut head = [0_u8; 3];
        if lines.read(0, &mut head)? == 3 && head == [0xEF, 0xBB, 0xBF] {
            lines.start = 3;
        }
        let mut tail = [0_u8; MAX_LINE];
        let tail_start = len.saturating_sub(MAX_LINE as u64).max(lines.start);
        let n = lines.read(tail_start, &mut tail)?;
        let content = tail.get(..n).unwrap_or_default();
        let kept = content.iter().rposition(|&b| b != b'\n' && b != b'\r').map_or(0, |i| i + 1);
        lines.end = tail_start + kept as u64;
        if lines.end <= lines.start {
            return Err(lines.malformed(0, "the list is empty"));
        }
        Ok(lines)
    }

    /// Check the first few lines (well formed, strictly ascending) and the
    /// last one (well formed, after the first).
    fn check(&self) -> Result<(), BreachedError> {
        let mut at = self.start;
        let mut previous: Option<Vec<u8>> = None;
        for _ in 0..CHECKED_LINES {
            let (line, next) = self.line_at(at)?;
            if previous.as_ref().is_some_and(|p| *p >= line.key) {
                return Err(self.malformed(at, "the lines are not sorted by hash"));
            }
            previous = Some(line.key);
            match next {
                Some(next) => at = next,
                None => return Ok(()),
            }
        }
        let last = self.last_line_start()?;
        let (line, _) = self.line_at(last)?;
        if previous.is_some_and(|p| p >= line.key) {
            return Err(self.malformed(last, "the lines are not sorted by hash"));
        }
        Ok(())
    }

    /// The count on the line whose key is `key`, by bisection over byte
    /// offsets: the answer is the first line starting at or after the
    /// smallest offset whose following line has a key not below `key`.
    fn find(&self, key: &[u8]) -> Result<Option<u64>, BreachedError> {
        let (mut low, mut high) = (self.start, self.end);
        while low < high {
            let middle = low + (high - low) / 2;
            let Some(at) = self.line_start_from(middle)? else {
                high = middle;
                continue;
            };
            let (line, _) = self.line_at(at)?;
            if line.key.as_slice() < key {
                // Every offset up to `at` leads to this line or an earlier one.
                low = at + 1;
            } else {
                high = middle;
            }
        }
        let Some(at) = self.line_start_from(low)? else { return Ok(None) };
        let (line, _) = self.line_at(at)?;
        Ok((line.key.as_slice() == key).then_some(line.count))
    }

    /// The first line start at or after `offset`, if any line starts there.
    fn line_start_from(&self, offset: u64) -> Result<Option<u64>, BreachedError> {
        if offset <= self.start {
            return Ok(Some(self.start));
        }
        if offset >= self.end {
            return Ok(None);
        }
        // A line starts at `offset` if the byte before it ends a line.
        let from = offset - 1;
        let mut buf = [0_u8; MAX_LINE];
        let n = self.read(from, &mut buf)?;
        match buf.get(..n).unwrap_or_default().iter().position(|&b| b == b'\n') {
            Some(i) => {
                let at = from + i as u64 + 1;
                Ok((at < self.end).then_some(at))
            }
            None if from + (n as u64) >= self.end => Ok(None),
            None => Err(self.malformed(from, "a line is longer than 128 bytes")),
        }
    }

    /// Where the last line starts.
    fn last_line_start(&self) -> Result<u64, BreachedError> {
        let from = self.end.saturating_sub(MAX_LINE as u64).max(self.start);
        let mut buf = [0_u8; MAX_LINE];
        let n = self.read(from, &mut buf)?;
        match buf.get(..n).unwrap_or_default().iter().rposition(|&b| b == b'\n') {
            Some(i) => Ok(from + i as u64 + 1),
            None if from == self.start => Ok(self.start),
            None => Err(self.malformed(from, "a line is longer than 128 bytes")),
        }
    }

    /// Parse the line starting at `at`; also where the next one starts.
    fn line_at(&self, at: u64) -> Result<(Line, Option<u64>), BreachedError> {
        let mut buf = [0_u8; MAX_LINE];
        let n = self.read(at, &mut buf)?;
        let read = buf.get(..n).unwrap_or_default();
        let (text, next) = match read.iter().position(|&b| b == b'\n') {
            Some(i) => (read.get(..i).unwrap_or_default(), Some(at + i as u64 + 1)),
            None if at + (n as u64) >= self.end => (read, None),
            None => return Err(self.malformed(at, "a line is longer than 128 bytes")),
        };
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let line = parse(text, self.key_digits).map_err(|reason| self.malformed(at, reason))?;
        Ok((line, next.filter(|&n| n < self.end)))
    }

    /// Read up to `buf.len()` bytes at `offset`, stopping at `end`.
    fn read(&self, offset: u64, buf: &mut [u8]) -> Result<usize, BreachedError> {
        let wanted = usize::try_from(self.end.saturating_sub(offset)).unwrap_or(usize::MAX).min(buf.len());
        let buf = buf.get_mut(..wanted).unwrap_or_default();
        let mut filled = 0;
        while let Some(rest) = buf.get_mut(filled..).filter(|r| !r.is_empty()) {
            match read_at(self.file, rest, offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => return Err(BreachedError::Io { path: self.path.to_path_buf(), source }),
            }
        }
        Ok(filled)
    }

    fn malformed(&self, offset: u64, reason: &'static str) -> BreachedError {
        BreachedError::Malformed { path: self.path.to_path_buf(), offset, reason }
    }
}

/// Parse one line (without its line break) of keys with `key_digits` hex
/// digits.
fn parse(text: &[u8], key_digits: usize) -> Result<Line, &'static str> {
    let Some(colon) = text.iter().position(|&b| b == b':') else {
        return Err("a line is not HASH:COUNT");
    };
    let (key, count) = text.split_at(colon);
    let count = count.get(1..).unwrap_or_default();
    if !key.iter().all(u8::is_ascii_hexdigit) {
        return Err("a hash is not hexadecimal");
    }
    if key.len() != key_digits {
        let ntlm = if key_digits == HASH_DIGITS { NTLM_DIGITS } else { NTLM_SUFFIX_DIGITS };
        return Err(if key.len() == ntlm {
            "the hashes are NTLM, not SHA-1: download the SHA-1 list"
        } else if key_digits == HASH_DIGITS {
            "a hash does not have 40 hex digits (a range file needs its directory)"
        } else {
            "a range file suffix does not have 35 hex digits"
        });
    }
    if count.is_empty() || count.len() > 20 || !count.iter().all(u8::is_ascii_digit) {
        return Err("a count is not a decimal number");
    }
    let count = std::str::from_utf8(count).ok().and_then(|c| c.parse::<u64>().ok()).ok_or("a count is too large")?;
    Ok(Line { key: key.to_ascii_uppercase(), count })
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(windows)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::windows::fs::FileExt::seek_read(file, buf, offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_strictly() {
        let good = parse(b"000000005AD76BD555C1D6D771DE417A4B87E4B4:4", HASH_DIGITS).unwrap();
        assert_eq!(good.count, 4);
        let lower = parse(b"000000005ad76bd555c1d6d771de417a4b87e4b4:4", HASH_DIGITS).unwrap();
        assert_eq!(lower.key, good.key);
        for bad in [
            &b""[..],
            b"000000005AD76BD555C1D6D771DE417A4B87E4B4",
            b"000000005AD76BD555C1D6D771DE417A4B87E4B4:",
            b"000000005AD76BD555C1D6D771DE417A4B87E4B4:-1",
            b"000000005AD76BD555C1D6D771DE417A4B87E4B4: 4",
            b"000000005AD76BD555C1D6D771DE417A4B87E4B4:99999999999999999999",
            b"000000005AD76BD555C1D6D771DE417A4B87E4BZ:4",
            b"000000005AD76BD555C1D6D771DE417A4B87E4:4",
            b"00000000DD7F2A1C68A35673713783CA:4",
        ] {
            assert!(parse(bad, HASH_DIGITS).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert!(parse(b"00000000DD7F2A1C68A35673713783CA:4", HASH_DIGITS).unwrap_err().contains("NTLM"));
    }
}
