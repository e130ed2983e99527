//! Read-only access to a ledger directory, for the CLI and auditors: proofs
//! against the latest checkpoint in the history, without the appender's
//! lock, so it works beside a running server. Everything read is within the
//! checkpoint's tree size, which the server never rewrites.

use std::fs::File;
use std::path::Path;

use crate::checkpoints::{self, LOG_KEY_FILE, LOG_KEY_KIND, Published};
use crate::keys;
use crate::log::{Files, LedgerError, NODES_FILE, RECORDS_FILE};
use crate::merkle::Hash;
use crate::note::{NoteSigner, NoteVerifier};
use crate::seal::{RECORD_BYTES, SealRecord};
use crate::tree::node_count;

pub struct Snapshot {
    files: Files,
    latest: Option<Published>,
    verifier: NoteVerifier,
    /// Entries written (the valid prefix of the records), which may run
    /// ahead of the latest checkpoint.
    entries: u64,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot").field("dir", &self.files.dir).field("size", &self.size()).finish()
    }
}

/// The log's verifier: the given key, or the one derived from the key file.
pub fn log_verifier(dir: &Path, key: Option<&NoteVerifier>) -> Result<NoteVerifier, LedgerError> {
    if let Some(key) = key {
        return Ok(key.clone());
    }
    let material = keys::read(&dir.join(LOG_KEY_FILE), LOG_KEY_KIND)?;
    let signer =
        NoteSigner::from_seed(&material.name, &material.seed).map_err(|e| LedgerError::Invalid(e.to_string()))?;
    Ok(signer.verifier())
}

impl Snapshot {
    /// Open `dir` at its latest checkpoint, checked with `key` (or the key file).
    pub fn open(dir: &Path, key: Option<&NoteVerifier>) -> Result<Self, LedgerError> {
        let verifier = log_verifier(dir, key)?;
        let (notes, _) = checkpoints::read_history(dir)?;
        let latest = match notes.last() {
            Some(bytes) => Some(checkpoints::parse_published(bytes, &verifier, &verifier.name)?),
            None => None,
        };
        let io = |path: &Path, e: std::io::Error| LedgerError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let records_path = dir.join(RECORDS_FILE);
        let nodes_path = dir.join(NODES_FILE);
        let records = File::open(&records_path).map_err(|e| io(&records_path, e))?;
        let nodes = File::open(&nodes_path).map_err(|e| io(&nodes_path, e))?;
        let size = latest.as_ref().map_or(0, |p| p.checkpoint.size);
        let have_records = records.metadata().map_err(|e| io(&records_path, e))?.len() / RECORD_BYTES as u64;
        let have_nodes = nodes.metadata().map_err(|e| io(&nodes_path, e))?.len() / 32;
        if have_records < size || have_nodes < node_count(size) {
            return Err(LedgerError::Corrupt(format!(
                "the latest checkpoint has {size} entries but the files hold fewer; \
                 if the server crashed, start it once to recover"
            )));
        }
        let entries = written_entries(&records, have_records).map_err(|e| io(&records_path, e))?.max(size);
        Ok(Self { files: Files { dir: dir.to_owned(), records, nodes }, latest, verifier, entries })
    }

    /// Entries written, checkpointed or not.
    pub fn entries(&self) -> u64 {
        self.entries
    }

    /// Entries covered by the latest checkpoint.
    pub fn size(&self) -> u64 {
        self.latest.as_ref().map_or(0, |p| p.checkpoint.size)
    }

    pub fn latest(&self) -> Option<&Published> {
        self.latest.as_ref()
    }

    pub fn verifier(&self) -> &NoteVerifier {
        &self.verifier
    }

    fn check(&self, size: u64) -> Result<(), LedgerError> {
        if size > self.size() {
            return Err(LedgerError::BeyondLog { size, entries: self.size() });
        }
        Ok(())
    }

    pub fn root(&self, size: u64) -> Result<Hash, LedgerError> {
        self.check(size)?;
        self.files.root(size)
    }

    pub fn inclusion_proof(&self, index: u64, size: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check(size)?;
        self.files.inclusion_proof(index, size)
    }

    pub fn consistency_proof(&self, first: u64, second: u64) -> Result<Vec<Hash>, LedgerError> {
        self.check(second)?;
        self.files.consistency_proof(first, second)
    }

    pub fn leaf_hash(&self, index: u64) -> Result<Hash, LedgerError> {
        self.files.leaf_hash(index, self.size())
    }

    /// The seal of entry `index` (any written entry, checkpointed or not).
    pub fn record(&self, index: u64) -> Result<SealRecord, LedgerError> {
        self.files.record(index, self.entries)
    }

    /// The entry with this leaf hash (a scan: this reader keeps no index).
    pub fn find_leaf(&self, leaf: &Hash) -> Result<Option<u64>, LedgerError> {
        self.files.scan_for_leaf(leaf, self.size())
    }

    pub fn find_event(&self, seq: u64) -> Result<Option<u64>, LedgerError> {
        self.files.find_event(seq, self.entries)
    }
}

/// The written prefix of a records file: slots are written in order into a
/// preallocated (zeroed) file, so the first blank slot ends it. Found by
/// bisection.
fn written_entries(records: &File, slots: u64) -> std::io::Result<u64> {
    use std::os::unix::fs::FileExt;
    let blank = |index: u64| -> std::io::Result<bool> {
        let mut bytes = [0u8; RECORD_BYTES];
        records.read_exact_at(&mut bytes, index * RECORD_BYTES as u64)?;
        Ok(crate::seal::is_blank(&bytes))
    };
    let (mut lo, mut hi) = (0u64, slots);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if blank(mid)? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}
