//! Canary files: decoy documents placed in each watched root and its
//! first-level subdirectories, with names that sort first and last (where
//! ransomware walking a directory starts and ends). Nobody has a reason to
//! write, rename or delete them, so any such touch is an alert. Owns placing
//! them without ever overwriting a user's file, the manifest, and removing
//! them (only if still unchanged) on shutdown or after an unclean stop.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::simulate::docs;
use crate::{Result, SensorError};

/// Names that sort early and late in a listing, realistic for a share.
const EARLY: &[&str] = &["!0000_budget_2025.docx", "!0000_invoices_q1.xlsx", "!0001_scan_results.pdf"];
const LATE: &[&str] = &["~zz_archive_2019.xlsx", "~zz_meeting_minutes.docx", "~zz_old_records.pdf"];
/// Size of a canary's content.
const CANARY_BYTES: usize = 12 * 1024;
/// Largest manifest read.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// One placed canary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    pub path: PathBuf,
    /// SHA-256 of the content written, to remove only an unchanged canary.
    pub sha256: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Manifest {
    version: u32,
    canaries: Vec<Canary>,
}

/// The canaries of one sensor run.
#[derive(Debug, Default)]
pub struct CanarySet {
    canaries: Vec<Canary>,
    manifest: Option<PathBuf>,
}

impl CanarySet {
    /// Place canaries (two per directory: one sorting first, one last) in
    /// each root and its first-level subdirectories, at most `max` in all,
    /// and write the manifest when a path is given. A name that exists is
    /// skipped, never overwritten.
    pub fn place(roots: &[PathBuf], manifest: Option<&Path>, max: usize, seed: u64) -> Result<Self> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut set = Self { canaries: Vec::new(), manifest: manifest.map(Path::to_path_buf) };
        let mut dirs = Vec::new();
        for root in roots {
            dirs.push(root.clone());
            let mut subdirs: Vec<PathBuf> = fs::read_dir(root)
                .map_err(|e| SensorError::io(format!("listing {}", root.display()), e))?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect();
            subdirs.sort();
            dirs.extend(subdirs);
        }
        'dirs: for (i, dir) in dirs.iter().enumerate() {
            for names in [EARLY, LATE] {
                if set.canaries.len() >= max {
                    break 'dirs;
                }
                let Some(name) = names.get(i % names.len()) else { continue };
                let path = dir.join(name);
                let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("txt");
                let content = docs::document(&mut rng, ext, CANARY_BYTES, false)?;
                match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                    Ok(mut f) => {
                        f.write_all(&content).map_err(|e| SensorError::io("writing a canary", e))?;
                        set.canaries.push(Canary { path, sha256: hex::encode(Sha256::digest(&content)) });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(SensorError::io("creating a canary", e)),
                }
            }
        }
        set.write_manifest()?;
        Ok(set)
    }

    /// The placed canaries.
    pub fn canaries(&self) -> &[Canary] {
        &self.canaries
    }

    /// Whether `path` is one of the canaries.
    pub fn contains(&self, path: &Path) -> bool {
        self.canaries.iter().any(|c| c.path == path)
    }

    /// Remove the canaries that are still as written (a touched one stays
    /// for the investigation) and the manifest. Returns how many were removed.
    pub fn remove(self) -> Result<usize> {
        let removed = remove_unchanged(&self.canaries);
        if let Some(m) = &self.manifest {
            match fs::remove_file(m) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(SensorError::io("removing the canary manifest", e)),
            }
        }
        Ok(removed)
    }

    fn write_manifest(&self) -> Result<()> {
        let Some(path) = &self.manifest else { return Ok(()) };
        let m = Manifest { version: 1, canaries: self.canaries.clone() };
        let json = serde_json::to_vec_pretty(&m).map_err(|e| SensorError::io("encoding the manifest", e.into()))?;
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, json).map_err(|e| SensorError::io("writing the canary manifest", e))?;
        fs::rename(&tmp, path).map_err(|e| SensorError::io("writing the canary manifest", e))
    }
}

/// Remove the unchanged canaries a previous run listed in `manifest` (it
/// stopped without cleaning up), then the manifest. Returns how many.
pub fn remove_stale(manifest: &Path) -> Result<usize> {
    let meta = match fs::metadata(manifest) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(SensorError::io("reading the canary manifest", e)),
    };
    if meta.len() > MAX_MANIFEST_BYTES {
        return Err(SensorError::Config("canary manifest larger than 1 MiB".into()));
    }
    let bytes = fs::read(manifest).map_err(|e| SensorError::io("reading the canary manifest", e))?;
    let m: Manifest =
        serde_json::from_slice(&bytes).map_err(|e| SensorError::Config(format!("canary manifest unreadable: {e}")))?;
    let removed = remove_unchanged(&m.canaries);
    fs::remove_file(manifest).map_err(|e| SensorError::io("removing the canary manifest", e))?;
    Ok(removed)
}

fn remove_unchanged(canaries: &[Canary]) -> usize {
    let mut removed = 0;
    for c in canaries {
        let unchanged = fs::symlink_metadata(&c.path).is_ok_and(|m| m.is_file() && m.len() <= 4 * CANARY_BYTES as u64)
            && fs::read(&c.path).is_ok_and(|b| hex::encode(Sha256::digest(&b)) == c.sha256);
        if unchanged && fs::remove_file(&c.path).is_ok() {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::ContentSample;

    #[test]
    fn places_two_per_directory_never_overwrites_and_removes_only_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_path_buf();
        fs::create_dir(root.join("lab")).unwrap();
        fs::create_dir(root.join("lab/deep")).unwrap();
        fs::write(root.join("!0000_budget_2025.docx"), b"the user's own file").unwrap();
        let manifest = dir.path().join("manifest.json");
        let set = CanarySet::place(std::slice::from_ref(&root), Some(&manifest), 64, 1).unwrap();
        // Root: the early name exists, so only the late one; lab: both; lab/deep: none.
        assert_eq!(set.canaries().len(), 3, "{:?}", set.canaries());
        assert_eq!(fs::read(root.join("!0000_budget_2025.docx")).unwrap(), b"the user's own file");
        assert!(manifest.exists());
        for c in set.canaries() {
            let b = fs::read(&c.path).unwrap();
            let s = ContentSample::from_head(b.get(..b.len().min(65536)).unwrap(), b.len() as u64);
            assert!(s.kind.is_known() && !s.is_high_entropy(), "{:?}", c.path);
            assert!(set.contains(&c.path));
        }
        let touched = set.canaries().first().unwrap().path.clone();
        fs::write(&touched, b"encrypted").unwrap();
        assert_eq!(set.remove().unwrap(), 2);
        assert!(touched.exists(), "a touched canary stays for the investigation");
        assert!(!manifest.exists());
    }

    #[test]
    fn stale_canaries_of_an_unclean_stop_are_removed_and_the_cap_holds() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            fs::create_dir(dir.path().join(format!("d{i}"))).unwrap();
        }
        let manifest = dir.path().join("m.json");
        let set = CanarySet::place(&[dir.path().to_path_buf()], Some(&manifest), 4, 2).unwrap();
        assert_eq!(set.canaries().len(), 4);
        std::mem::forget(set);
        assert_eq!(remove_stale(&manifest).unwrap(), 4);
        assert_eq!(remove_stale(&manifest).unwrap(), 0);
        fs::write(&manifest, b"{not json").unwrap();
        assert!(remove_stale(&manifest).is_err());
    }
}
