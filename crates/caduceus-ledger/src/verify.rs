//! Offline verification of a ledger directory, without a running server:
//! every record's checksum, the whole tree recomputed from the entries and
//! compared hash by hash with the stored nodes, the tree state, and every
//! checkpoint in the history (signature, origin, growth, and its root
//! against the recomputed tree — which also proves each checkpoint
//! consistent with every other). The first problem is reported precisely.
//!
//! Run it on a stopped ledger (or on a copy): an appending server changes
//! the files underneath it. After a crash, start the server once first; it
//! discards an unacknowledged torn tail and rebuilds the nodes.

use std::fs::File;
use std::io::{BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::checkpoints::{self, LOG_KEY_FILE, LOG_KEY_KIND};
use crate::keys;
use crate::log::{NODES_FILE, RECORDS_FILE, read_tree_state};
use crate::merkle::{self, Hash};
use crate::note::{NoteSigner, NoteVerifier};
use crate::seal::{RECORD_BYTES, SealRecord, is_blank};
use crate::tree::Frontier;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub root: Hash,
    pub origin: Option<String>,
    pub checkpoints: usize,
    pub latest_checkpoint: Option<u64>,
    pub tree_state: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}")]
    Io(String),
    #[error("entry {index}: {problem}")]
    Entry { index: u64, problem: String },
    #[error("stored hash of {what} does not match the hash recomputed from the entries")]
    Node { level: u32, index: u64, what: String },
    #[error("nodes file: {0}")]
    Nodes(String),
    #[error("tree state: {0}")]
    TreeState(String),
    #[error("checkpoint #{ordinal}: {problem}")]
    Checkpoint { ordinal: usize, problem: String },
    #[error("key: {0}")]
    Key(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> VerifyError + '_ {
    move |e| VerifyError::Io(format!("cannot read {}: {e}", path.display()))
}

fn describe_node(level: u32, index: u64) -> String {
    if level == 0 {
        format!("leaf {index}")
    } else {
        let first = index << level;
        format!("the subtree of entries {first}..{} (level {level}, node {index})", first + (1 << level))
    }
}

/// A tree size whose root must come out of the recomputation.
struct Expected {
    size: u64,
    root: Hash,
    /// `Some(ordinal)` for a checkpoint, `None` for the tree state.
    checkpoint: Option<usize>,
}

/// Verify the ledger in `dir`. `key` is the log's published verifier key;
/// without it, the key file in `dir` is used (which proves less: whoever
/// could rewrite the directory could replace that too).
pub fn verify_dir(dir: &Path, key: Option<&NoteVerifier>) -> Result<VerifyReport, VerifyError> {
    // Checkpoints first: their sizes and roots are checked during the pass.
    let (notes, torn) =
        checkpoints::read_history(dir).map_err(|e| VerifyError::Checkpoint { ordinal: 0, problem: e.to_string() })?;
    if let Some(offset) = torn {
        return Err(VerifyError::Checkpoint {
            ordinal: notes.len(),
            problem: format!("the history is cut short at byte {offset}"),
        });
    }
    let verifier = match key {
        Some(key) => Some(key.clone()),
        None if dir.join(LOG_KEY_FILE).exists() => {
            let material =
                keys::read(&dir.join(LOG_KEY_FILE), LOG_KEY_KIND).map_err(|e| VerifyError::Key(e.to_string()))?;
            let signer =
                NoteSigner::from_seed(&material.name, &material.seed).map_err(|e| VerifyError::Key(e.to_string()))?;
            Some(signer.verifier())
        }
        None => None,
    };
    let mut expected = Vec::new();
    if !notes.is_empty() {
        let Some(verifier) = &verifier else {
            return Err(VerifyError::Key("checkpoints exist but there is no key to check them with".into()));
        };
        let mut previous = 0u64;
        for (ordinal, bytes) in notes.iter().enumerate() {
            let published = checkpoints::parse_published(bytes, verifier, &verifier.name)
                .map_err(|e| VerifyError::Checkpoint { ordinal, problem: e.to_string() })?;
            let size = published.checkpoint.size;
            if size < previous {
                return Err(VerifyError::Checkpoint {
                    ordinal,
                    problem: format!("size {size} is smaller than the previous checkpoint's {previous}"),
                });
            }
            previous = size;
            expected.push(Expected { size, root: published.checkpoint.root, checkpoint: Some(ordinal) });
        }
    }
    let tree_state = read_tree_state(dir).map_err(|e| VerifyError::TreeState(e.to_string()))?;
    if let Some((size, root)) = tree_state {
        expected.push(Expected { size, root, checkpoint: None });
    }
    expected.sort_by_key(|e| e.size);

    // One pass over the records, recomputing the tree in post-order, which
    // is the order of the nodes file.
    let records_path = dir.join(RECORDS_FILE);
    let nodes_path = dir.join(NODES_FILE);
    let records = File::open(&records_path).map_err(io(&records_path))?;
    let slots = records.metadata().map_err(io(&records_path))?.len() / RECORD_BYTES as u64;
    let nodes_file = File::open(&nodes_path).map_err(io(&nodes_path))?;
    let nodes_len = nodes_file.metadata().map_err(io(&nodes_path))?.len();
    let mut nodes = BufReader::with_capacity(1 << 20, nodes_file);
    let mut nodes_read = 0u64;
    let state_size = tree_state.map_or(0, |(s, _)| s);

    let mut frontier = Frontier::default();
    let mut emitted: Vec<Hash> = Vec::with_capacity(64);
    let mut targets = expected.iter().peekable();
    let mut end: Option<u64> = None;
    let mut check_targets = |count: u64, frontier: &Frontier| -> Result<(), VerifyError> {
        while let Some(target) = targets.next_if(|t| t.size == count) {
            if frontier.root() != target.root {
                return Err(match target.checkpoint {
                    Some(ordinal) => VerifyError::Checkpoint {
                        ordinal,
                        problem: format!("its root is not the root of the first {count} entries"),
                    },
                    None => VerifyError::TreeState(format!("its root is not the root of the first {count} entries")),
                });
            }
        }
        Ok(())
    };
    check_targets(0, &frontier)?;

    const CHUNK: u64 = 16 * 1024;
    let mut buf = vec![0u8; CHUNK as usize * RECORD_BYTES];
    let mut at = 0u64;
    while at < slots {
        let n = CHUNK.min(slots - at);
        let bytes = buf.get_mut(..n as usize * RECORD_BYTES).unwrap_or_default();
        records.read_exact_at(bytes, at * RECORD_BYTES as u64).map_err(io(&records_path))?;
        for (i, chunk) in bytes.chunks_exact(RECORD_BYTES).enumerate() {
            let index = at + i as u64;
            let Ok(slot) = <&[u8; RECORD_BYTES]>::try_from(chunk) else { continue };
            if is_blank(slot) {
                end.get_or_insert(index);
                continue;
            }
            if let Some(end) = end {
                return Err(VerifyError::Entry {
                    index,
                    problem: format!("data after the end of the log (entry {end} is blank)"),
                });
            }
            let record = SealRecord::decode(slot)
                .map_err(|e| VerifyError::Entry { index, problem: format!("damaged record ({e})") })?;
            frontier.push(merkle::leaf_hash(&record.commitment), |h| emitted.push(*h));
            for (level, hash) in (0u32..).zip(emitted.drain(..)) {
                if nodes_read >= nodes_len {
                    if index < state_size {
                        return Err(VerifyError::Nodes(format!(
                            "ends at {nodes_read} hashes, before the tree state's {state_size} entries"
                        )));
                    }
                    continue;
                }
                let mut stored = [0u8; 32];
                nodes.read_exact(&mut stored).map_err(io(&nodes_path))?;
                nodes_read += 32;
                if stored != hash {
                    return Err(VerifyError::Node {
                        level,
                        index: index >> level,
                        what: describe_node(level, index >> level),
                    });
                }
            }
            check_targets(index + 1, &frontier)?;
        }
        at += n;
    }
    let entries = frontier.size();
    if nodes_read < nodes_len {
        return Err(VerifyError::Nodes(format!(
            "holds {} more bytes than the {entries} entries account for",
            nodes_len - nodes_read
        )));
    }
    if let Some(target) = targets.next() {
        let problem = format!("size {} is beyond the log's {entries} entries", target.size);
        return Err(match target.checkpoint {
            Some(ordinal) => VerifyError::Checkpoint { ordinal, problem },
            None => VerifyError::TreeState(problem),
        });
    }
    Ok(VerifyReport {
        entries,
        root: frontier.root(),
        origin: verifier.map(|v| v.name),
        checkpoints: notes.len(),
        latest_checkpoint: expected.iter().filter(|e| e.checkpoint.is_some()).map(|e| e.size).max(),
        tree_state: tree_state.map(|(s, _)| s),
    })
}
