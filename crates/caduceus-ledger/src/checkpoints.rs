//! Checkpoints: signing tree heads with the log's key (C2SP tlog-checkpoint
//! in a C2SP signed note) and keeping every published checkpoint, in order,
//! in an append-only history that `verify` checks against the tree.
//!
//! The history file `checkpoints` is a sequence of frames, each a big-endian
//! u32 length and the note's bytes. A checkpoint is published (served,
//! returned) only after its frame is synced.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use crate::checkpoint::Checkpoint;
use crate::keys;
use crate::log::LedgerError;
use crate::merkle::Hash;
use crate::note::{MAX_NOTE_BYTES, NoteSigner, NoteVerifier, SignedNote};

pub const CHECKPOINTS_FILE: &str = "checkpoints";
pub const LOG_KEY_FILE: &str = "log.key";
pub const LOG_KEY_KIND: &str = "log";

/// A published checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    pub checkpoint: Checkpoint,
    pub note: SignedNote,
}

impl Published {
    /// The note as served at `/ledger/checkpoint`.
    pub fn encoded(&self) -> String {
        self.note.encode()
    }
}

pub struct Checkpoints {
    dir: PathBuf,
    signer: NoteSigner,
    file: Mutex<File>,
    latest: RwLock<Option<Arc<Published>>>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints").field("origin", &self.signer.name()).finish_non_exhaustive()
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> LedgerError + '_ {
    move |e| LedgerError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// Split the history into notes. A frame cut short at the end (a crash
/// during a write that was never published) is reported as `Err(offset)`
/// in the second value, so `open` can drop it and `verify` can report it.
pub fn read_history(dir: &Path) -> Result<(Vec<Vec<u8>>, Option<u64>), LedgerError> {
    let path = dir.join(CHECKPOINTS_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((Vec::new(), None)),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut notes = Vec::new();
    let mut rest = bytes.as_slice();
    let mut offset = 0u64;
    while !rest.is_empty() {
        let Some((len, body)) = rest.split_first_chunk::<4>() else { return Ok((notes, Some(offset))) };
        let len = u32::from_be_bytes(*len) as usize;
        if len == 0 || len > MAX_NOTE_BYTES {
            return Err(LedgerError::Corrupt(format!(
                "checkpoint history: frame {} at byte {offset} has an impossible length {len}",
                notes.len()
            )));
        }
        let Some((note, after)) = body.split_at_checked(len) else { return Ok((notes, Some(offset))) };
        notes.push(note.to_vec());
        offset += 4 + len as u64;
        rest = after;
    }
    Ok((notes, None))
}

impl Checkpoints {
    /// Load or create the log key (named `origin`, or a generated name) and
    /// the checkpoint history in `dir`.
    pub fn open(dir: &Path, origin: Option<&str>) -> Result<Self, LedgerError> {
        let key = keys::load_or_create(&dir.join(LOG_KEY_FILE), LOG_KEY_KIND, origin, || {
            format!("caduceus.invalid/ledger-{}", keys::random_suffix())
        })?;
        let signer = NoteSigner::from_seed(&key.name, &key.seed)
            .map_err(|e| LedgerError::Invalid(format!("ledger origin `{}`: {e}", key.name)))?;
        let path = dir.join(CHECKPOINTS_FILE);
        let (notes, torn) = read_history(dir)?;
        let file =
            OpenOptions::new().read(true).append(true).create(true).mode(0o600).open(&path).map_err(io(&path))?;
        if let Some(offset) = torn {
            tracing::warn!(offset, "dropping an unpublished, partly written checkpoint");
            file.set_len(offset).map_err(io(&path))?;
            file.sync_all().map_err(io(&path))?;
        }
        let verifier = signer.verifier();
        let latest = match notes.last() {
            Some(bytes) => Some(Arc::new(parse_published(bytes, &verifier, signer.name())?)),
            None => None,
        };
        Ok(Self { dir: dir.to_owned(), signer, file: Mutex::new(file), latest: RwLock::new(latest) })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log's origin (its key's name).
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The note verifier key, `name+keyid+base64key`.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    pub fn verifier(&self) -> NoteVerifier {
        self.signer.verifier()
    }

    /// Sign the checkpoint for a tree head.
    pub fn sign(&self, size: u64, root: Hash) -> Result<SignedNote, LedgerError> {
        let checkpoint = Checkpoint { origin: self.origin().to_owned(), size, root, extensions: Vec::new() };
        self.signer.sign(&checkpoint.to_text()).map_err(|e| LedgerError::Invalid(e.to_string()))
    }

    /// Append a signed (and possibly cosigned) checkpoint to the history
    /// and make it the latest. It must be ours and must not shrink the log.
    pub fn publish(&self, note: SignedNote) -> Result<Arc<Published>, LedgerError> {
        let published = parse_published(note.encode().as_bytes(), &self.verifier(), self.origin())?;
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(latest) = self.latest() {
            let (old, new) = (&latest.checkpoint, &published.checkpoint);
            if new.size < old.size || (new.size == old.size && new.root != old.root) {
                return Err(LedgerError::Invalid(format!(
                    "checkpoint at size {} does not extend the published one at size {}",
                    new.size, old.size
                )));
            }
        }
        let bytes = published.note.encode().into_bytes();
        let len = u32::try_from(bytes.len()).map_err(|_| LedgerError::Invalid("checkpoint too large".into()))?;
        let path = self.dir.join(CHECKPOINTS_FILE);
        let mut frame = len.to_be_bytes().to_vec();
        frame.extend_from_slice(&bytes);
        file.write_all(&frame).map_err(io(&path))?;
        file.sync_data().map_err(io(&path))?;
        let published = Arc::new(published);
        *self.latest.write().unwrap_or_else(PoisonError::into_inner) = Some(published.clone());
        Ok(published)
    }

    pub fn latest(&self) -> Option<Arc<Published>> {
        self.latest.read().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Parse a stored note and check it is a checkpoint of `origin` signed by `verifier`.
pub fn parse_published(bytes: &[u8], verifier: &NoteVerifier, origin: &str) -> Result<Published, LedgerError> {
    let note = SignedNote::parse(bytes).map_err(|e| LedgerError::Corrupt(format!("checkpoint: {e}")))?;
    note.verify(std::slice::from_ref(verifier)).map_err(|e| LedgerError::Corrupt(format!("checkpoint: {e}")))?;
    let checkpoint = Checkpoint::parse(&note.text).map_err(|e| LedgerError::Corrupt(format!("checkpoint: {e}")))?;
    if checkpoint.origin != origin {
        return Err(LedgerError::Corrupt(format!(
            "checkpoint is for `{}`, not this log `{origin}`",
            checkpoint.origin
        )));
    }
    Ok(Published { checkpoint, note })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_are_signed_kept_and_only_grow() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoints = Checkpoints::open(dir.path(), Some("ledger.hospital.example")).unwrap();
        assert!(checkpoints.latest().is_none());
        let first = checkpoints.publish(checkpoints.sign(5, [1; 32]).unwrap()).unwrap();
        assert_eq!(first.checkpoint.size, 5);
        assert!(checkpoints.publish(checkpoints.sign(4, [2; 32]).unwrap()).is_err(), "shrinking");
        assert!(checkpoints.publish(checkpoints.sign(5, [2; 32]).unwrap()).is_err(), "forking");
        checkpoints.publish(checkpoints.sign(9, [3; 32]).unwrap()).unwrap();
        let vkey = checkpoints.verifier_key();
        drop(checkpoints);

        let reopened = Checkpoints::open(dir.path(), None).unwrap();
        assert_eq!(reopened.verifier_key(), vkey);
        assert_eq!(reopened.latest().unwrap().checkpoint.size, 9);
        assert_eq!(read_history(dir.path()).unwrap().0.len(), 2);

        // A frame cut short by a crash is dropped at the next open.
        let mut file = OpenOptions::new().append(true).open(dir.path().join(CHECKPOINTS_FILE)).unwrap();
        file.write_all(&[0, 0, 1, 0, b'x']).unwrap();
        assert!(read_history(dir.path()).unwrap().1.is_some());
        let reopened = Checkpoints::open(dir.path(), None).unwrap();
        assert_eq!(reopened.latest().unwrap().checkpoint.size, 9);
        assert_eq!(read_history(dir.path()).unwrap(), (read_history(dir.path()).unwrap().0, None));
    }
}
