//! Scanning stored bytes for patient data: every file below a directory, and
//! which of a set of values occur in some bytes. Shared by the server's
//! `vault_at_rest` test and, through `#[path]`, the `caduceus` crate's `cli`
//! tests (ledger and vault).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Every file below `dir`, recursively.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

/// Which of `needles` occur in `haystack`, ASCII case-insensitively. One
/// pass over the haystack, indexed by each needle's first four bytes.
pub fn occurrences<S: AsRef<str>>(haystack: &[u8], needles: &[S]) -> Vec<String> {
    let hay = haystack.to_ascii_lowercase();
    let lowered: Vec<Vec<u8>> = needles.iter().map(|n| n.as_ref().as_bytes().to_ascii_lowercase()).collect();
    let mut by_prefix: HashMap<[u8; 4], Vec<usize>> = HashMap::new();
    for (i, n) in lowered.iter().enumerate() {
        assert!(n.len() >= 4, "needle {:?} is too short to search for", needles[i].as_ref());
        by_prefix.entry([n[0], n[1], n[2], n[3]]).or_default().push(i);
    }
    let mut first_two = vec![false; 1 << 16];
    for key in by_prefix.keys() {
        first_two[(usize::from(key[0]) << 8) | usize::from(key[1])] = true;
    }
    let mut found = vec![false; needles.len()];
    for i in 0..hay.len().saturating_sub(3) {
        if !first_two[(usize::from(hay[i]) << 8) | usize::from(hay[i + 1])] {
            continue;
        }
        if let Some(candidates) = by_prefix.get(&[hay[i], hay[i + 1], hay[i + 2], hay[i + 3]]) {
            for &c in candidates {
                if hay[i..].starts_with(&lowered[c]) {
                    found[c] = true;
                }
            }
        }
    }
    needles.iter().zip(found).filter(|(_, f)| *f).map(|(n, _)| n.as_ref().to_owned()).collect()
}
