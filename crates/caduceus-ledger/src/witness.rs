//! C2SP tlog-witness (c2sp.org/tlog-witness), the `add-checkpoint` call,
//! both ends, without HTTP:
//! - the request body ("add-checkpoint": an `old N` line, up to 63
//!   consistency proof lines, a blank line, the checkpoint):
//!   [`AddCheckpointRequest`];
//! - the witness: its checks in the order the spec gives them, each with the
//!   status code the spec requires ([`WitnessRejection`]), the atomic
//!   check-and-update of the latest cosigned checkpoint of each log, and the
//!   tlog-cosignature it answers with: [`Witness`];
//! - where that state lives: [`WitnessStateStore`], on disk in one JSON file
//!   replaced atomically ([`FileWitnessState`]) or in memory;
//! - the log's side: reading a witness's 200 and 409 answers
//!   ([`parse_cosignature_response`], [`parse_conflict_size`]).
//!
//! It must not do I/O beyond the state file, nor read a clock (the caller
//! passes the time), nor log: the rejection says what happened and the HTTP
//! layer decides what to record (the spec allows logging refused but validly
//! signed checkpoints as evidence of misbehaviour).
//!
//! Not implemented: `sign-subtree` (optional, needs ML-DSA-44) and the
//! monitoring endpoint (a SHOULD; it needs the whole cosigned note kept).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;

use crate::checkpoint::{Checkpoint, CheckpointError, parse_canonical_decimal};
use crate::cosignature::{CosignatureError, CosignatureSigner, CosignatureVerifier, MAX_TIMESTAMP};
use crate::merkle::{self, Hash, ProofError};
use crate::note::{MAX_NOTE_BYTES, NoteError, NoteSignature, NoteVerifier, SignedNote};

/// Most consistency proof lines a request may carry (the spec's limit).
pub const MAX_PROOF_LINES: usize = 63;
/// Largest request body accepted: a note, and room for the `old` line and
/// 63 proof lines of 45 bytes each.
pub const MAX_REQUEST_BYTES: usize = MAX_NOTE_BYTES + 64 * 64;
/// Largest 200 response a log accepts from a witness.
pub const MAX_RESPONSE_BYTES: usize = MAX_NOTE_BYTES;
/// The content type of a 409 response, whose body is the witness's size.
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";
/// The content type of the other responses (cosignatures, error messages).
pub const TEXT_CONTENT_TYPE: &str = "text/plain; charset=utf-8";

const OLD_PREFIX: &str = "old ";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request is larger than {MAX_REQUEST_BYTES} bytes")]
    TooLarge,
    #[error("request is malformed: {0}")]
    Malformed(&'static str),
    #[error("request checkpoint: {0}")]
    Note(NoteError),
}

/// An `add-checkpoint` request body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCheckpointRequest {
    /// The size of the latest checkpoint the witness cosigned, as the log
    /// believes it (0 at first).
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    pub checkpoint: SignedNote,
}

impl AddCheckpointRequest {
    /// Parse a request body strictly: every line ends in a newline, the old
    /// size is a canonical decimal, each proof line is one base64 hash, and
    /// what follows the blank line is a well-formed signed note. Neither the
    /// note's signatures nor its text (as a checkpoint) are checked here.
    pub fn parse(body: &[u8]) -> Result<Self, RequestError> {
        if body.len() > MAX_REQUEST_BYTES {
            return Err(RequestError::TooLarge);
        }
        let body = std::str::from_utf8(body).map_err(|_| RequestError::Malformed("not UTF-8"))?;
        // No header line is empty, so the first blank line ends the header.
        let (head, note) =
            body.split_once("\n\n").ok_or(RequestError::Malformed("no blank line before the checkpoint"))?;
        let mut lines = head.split('\n');
        let old =
            lines.next().and_then(|l| l.strip_prefix(OLD_PREFIX)).ok_or(RequestError::Malformed("no old size line"))?;
        let old_size =
            parse_canonical_decimal(old).ok_or(RequestError::Malformed("old size is not a canonical decimal"))?;
        let mut proof = Vec::new();
        for line in lines {
            if proof.len() == MAX_PROOF_LINES {
                return Err(RequestError::Malformed("more than 63 consistency proof lines"));
            }
            let hash = B64.decode(line).map_err(|_| RequestError::Malformed("proof line is not base64"))?;
            proof.push(Hash::try_from(hash).map_err(|_| RequestError::Malformed("proof line is not a 32-byte hash"))?);
        }
        let checkpoint = SignedNote::parse(note.as_bytes()).map_err(RequestError::Note)?;
        Ok(Self { old_size, proof, checkpoint })
    }

    pub fn encode(&self) -> String {
        let mut out = format!("{OLD_PREFIX}{}\n", self.old_size);
        crate::proof::push_hashes_and_note(&mut out, &self.proof, &self.checkpoint);
        out
    }
}

/// Why a witness refused a checkpoint, with the HTTP answer the spec
/// requires for it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WitnessRejection {
    #[error("{0}")]
    BadRequest(#[from] RequestError),
    #[error("{0}")]
    BadCheckpoint(CheckpointError),
    #[error("unknown log `{0}`")]
    UnknownLog(String),
    #[error("checkpoint of `{origin}` is not signed by the log: {error}")]
    BadLogSignature { origin: String, error: NoteError },
    #[error("old size {old_size} is larger than the checkpoint size {size}")]
    OldSizeAfterCheckpoint { old_size: u64, size: u64 },
    #[error("old size {old_size} is not the witness's latest size {latest_size}")]
    Conflict { old_size: u64, latest_size: u64 },
    #[error("a checkpoint of size 0 must have the empty tree's root")]
    EmptyTreeRoot,
    #[error("a consistency proof from size 0 must be empty")]
    ProofFromEmptyTree,
    #[error("checkpoint is not consistent with the one cosigned at size {latest_size}: {error}")]
    Inconsistent { latest_size: u64, error: ProofError },
    /// The witness itself failed (its state store, its clock): nothing was
    /// cosigned. The detail is for the operator's log, not the client.
    #[error("witness failure: {0}")]
    Internal(String),
}

impl WitnessRejection {
    /// The HTTP status code (tlog-witness, "add-checkpoint").
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(RequestError::TooLarge) => 413,
            Self::BadRequest(_) | Self::BadCheckpoint(_) | Self::OldSizeAfterCheckpoint { .. } => 400,
            Self::BadLogSignature { .. } => 403,
            Self::UnknownLog(_) => 404,
            Self::Conflict { .. } => 409,
            Self::EmptyTreeRoot | Self::ProofFromEmptyTree | Self::Inconsistent { .. } => 422,
            Self::Internal(_) => 500,
        }
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Self::Conflict { .. } => SIZE_CONTENT_TYPE,
            _ => TEXT_CONTENT_TYPE,
        }
    }

    /// The response body: for a 409 the witness's latest size and a
    /// newline, as the spec requires; otherwise a one-line explanation.
    pub fn body(&self) -> String {
        match self {
            Self::Conflict { latest_size, .. } => format!("{latest_size}\n"),
            Self::Internal(_) => "internal witness error\n".to_owned(),
            other => format!("{other}\n"),
        }
    }
}

/// The latest checkpoint a witness cosigned for one log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogState {
    pub size: u64,
    pub root: Hash,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("witness state {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("witness state {path} is corrupt: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

/// Where a witness keeps the latest cosigned checkpoint of each log. The
/// witness calls it with a lock held, so implementations need no locking
/// of their own; `store` must be durable when it returns.
pub trait WitnessStateStore: Send {
    fn load(&self, origin: &str) -> Result<Option<LogState>, StateError>;
    fn store(&mut self, origin: &str, state: LogState) -> Result<(), StateError>;
}

/// State kept in memory only, for tests and fuzzing: a witness that forgets
/// what it cosigned can be made to cosign a fork.
#[derive(Debug, Default)]
pub struct MemoryWitnessState {
    logs: HashMap<String, LogState>,
}

impl MemoryWitnessState {
    pub fn new() -> Self {
        Self::default()
    }
}

impl WitnessStateStore for MemoryWitnessState {
    fn load(&self, origin: &str) -> Result<Option<LogState>, StateError> {
        Ok(self.logs.get(origin).copied())
    }

    fn store(&mut self, origin: &str, state: LogState) -> Result<(), StateError> {
        self.logs.insert(origin.to_owned(), state);
        Ok(())
    }
}

/// The on-disk encoding of [`FileWitnessState`]; `version` is bumped on any
/// incompatible change so old files stay readable.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    logs: BTreeMap<String, StoredLog>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredLog {
    size: u64,
    /// Base64, as in checkpoints.
    root: String,
}

const STATE_VERSION: u32 = 1;
/// A sanity cap on the state file (one small entry per witnessed log).
const MAX_STATE_BYTES: u64 = 16 * 1024 * 1024;

/// Every log's latest cosigned checkpoint in one JSON file,
/// `witness-state.json` in a directory the witness owns (one process at a
/// time). Each update writes a new file (mode 0600), syncs it, renames it
/// over the old one and syncs the directory, so a crash leaves either the
/// old state or the new one. Read once at open, then served from memory.
#[derive(Debug)]
pub struct FileWitnessState {
    path: PathBuf,
    logs: BTreeMap<String, LogState>,
}

impl FileWitnessState {
    pub const FILE_NAME: &str = "witness-state.json";

    /// Open (creating the directory, mode 0700, if needed) and read the
    /// state; a missing file is an empty state, an unreadable one an error.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let path = dir.join(Self::FILE_NAME);
        let io = |source| StateError::Io { path: path.clone(), source };
        let corrupt = |reason: String| StateError::Corrupt { path: path.clone(), reason };
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(io)?;
        let file = match std::fs::File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { path, logs: BTreeMap::new() });
            }
            Err(e) => return Err(io(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE_BYTES + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(corrupt(format!("larger than {MAX_STATE_BYTES} bytes")));
        }
        let stored: StateFile = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if stored.version != STATE_VERSION {
            return Err(corrupt(format!("unknown version {}", stored.version)));
        }
        let mut logs = BTreeMap::new();
        for (origin, log) in stored.logs {
            let root = B64
                .decode(&log.root)
                .ok()
                .and_then(|r| Hash::try_from(r).ok())
                .ok_or_else(|| corrupt(format!("root of `{origin}` is not a base64 32-byte hash")))?;
            logs.insert(origin, LogState { size: log.size, root });
        }
        Ok(Self { path, logs })
    }

    fn encode(logs: &BTreeMap<String, LogState>) -> Result<Vec<u8>, serde_json::Error> {
        let logs = logs
            .iter()
            .map(|(origin, s)| (origin.clone(), StoredLog { size: s.size, root: B64.encode(s.root) }))
            .collect();
        let mut bytes = serde_json::to_vec_pretty(&StateFile { version: STATE_VERSION, logs })?;
        bytes.push(b'\n');
        Ok(bytes)
    }

    /// Replace the file: temporary file, fsync, rename, fsync the directory.
    fn replace(&self, bytes: &[u8]) -> std::io::Result<()> {
        let dir = self.path.parent().ok_or_else(|| std::io::Error::other("state file has no directory"))?;
        let temporary = self.path.with_extension("json.tmp");
        match std::fs::remove_file(&temporary) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let written = options.open(&temporary).and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&temporary, &self.path)) {
            // Best effort: the old state file is intact either way.
            let _ = std::fs::remove_file(&temporary);
            return Err(e);
        }
        std::fs::File::open(dir)?.sync_all()
    }
}

impl WitnessStateStore for FileWitnessState {
    fn load(&self, origin: &str) -> Result<Option<LogState>, StateError> {
        Ok(self.logs.get(origin).copied())
    }

    fn store(&mut self, origin: &str, state: LogState) -> Result<(), StateError> {
        let mut logs = self.logs.clone();
        logs.insert(origin.to_owned(), state);
        let bytes = Self::encode(&logs)
            .map_err(|e| StateError::Io { path: self.path.clone(), source: std::io::Error::other(e) })?;
        self.replace(&bytes).map_err(|source| StateError::Io { path: self.path.clone(), source })?;
        // Only once the file holds it does the new state become visible.
        self.logs = logs;
        Ok(())
    }
}

/// A witness: cosigns checkpoints of the logs it is configured with, each
/// only if it extends the last one it cosigned for that log.
pub struct Witness {
    signer: CosignatureSigner,
    /// Trusted keys by origin (several during a log's key rotation).
    logs: HashMap<String, Vec<NoteVerifier>>,
    /// Held from reading the latest state to cosigning, so that two racing
    /// requests can't both pass the check against the same old state.
    state: Mutex<Box<dyn WitnessStateStore>>,
}

impl std::fmt::Debug for Witness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Witness")
            .field("signer", &self.signer)
            .field("logs", &self.logs.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Witness {
    /// A witness cosigning with `signer` for `logs`, (origin, log key)
    /// pairs; an origin may appear more than once, with each of its keys.
    pub fn new(
        signer: CosignatureSigner,
        logs: Vec<(String, NoteVerifier)>,
        state: Box<dyn WitnessStateStore>,
    ) -> Self {
        let mut by_origin: HashMap<String, Vec<NoteVerifier>> = HashMap::new();
        for (origin, key) in logs {
            by_origin.entry(origin).or_default().push(key);
        }
        Self { signer, logs: by_origin, state: Mutex::new(state) }
    }

    /// The witness's cosigner vkey, for the logs' configuration.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// Handle an `add-checkpoint` request body at time `now_secs` (POSIX
    /// seconds, not 0). On success the new state is persisted and the body
    /// of the 200 response is returned: one cosignature line.
    pub fn add_checkpoint(&self, body: &[u8], now_secs: u64) -> Result<String, WitnessRejection> {
        if now_secs == 0 || now_secs > MAX_TIMESTAMP {
            // "The cosignature MUST NOT omit the timestamp."
            return Err(WitnessRejection::Internal(format!("clock reads {now_secs}")));
        }
        let request = AddCheckpointRequest::parse(body)?;
        let checkpoint = Checkpoint::parse(&request.checkpoint.text).map_err(WitnessRejection::BadCheckpoint)?;
        let origin = checkpoint.origin.as_str();
        let keys = self.logs.get(origin).ok_or_else(|| WitnessRejection::UnknownLog(origin.to_owned()))?;
        // Signatures from other keys (cosignatures among them) are ignored;
        // a trusted key's bad signature, or none at all, is a 403.
        request
            .checkpoint
            .verify(keys)
            .map_err(|error| WitnessRejection::BadLogSignature { origin: origin.to_owned(), error })?;
        if request.old_size > checkpoint.size {
            return Err(WitnessRejection::OldSizeAfterCheckpoint { old_size: request.old_size, size: checkpoint.size });
        }

        let mut state = self.state.lock().map_err(|_| WitnessRejection::Internal("state lock poisoned".into()))?;
        let latest = state.load(origin).map_err(|e| WitnessRejection::Internal(e.to_string()))?;
        let latest_size = latest.map_or(0, |l| l.size);
        if request.old_size != latest_size {
            return Err(WitnessRejection::Conflict { old_size: request.old_size, latest_size });
        }
        if checkpoint.size == 0 && checkpoint.root != merkle::empty_root() {
            return Err(WitnessRejection::EmptyTreeRoot);
        }
        match latest {
            // Nothing cosigned yet (or only the empty tree): every tree
            // extends the empty one, so there is nothing to prove.
            Some(LogState { size: 0, .. }) | None => {
                if !request.proof.is_empty() {
                    return Err(WitnessRejection::ProofFromEmptyTree);
                }
            }
            // Equal sizes need equal roots and an empty proof, which
            // `verify_consistency` checks too.
            Some(latest) => {
                merkle::verify_consistency(
                    latest.size,
                    checkpoint.size,
                    &latest.root,
                    &checkpoint.root,
                    &request.proof,
                )
                .map_err(|error| WitnessRejection::Inconsistent { latest_size, error })?;
            }
        }
        let new = LogState { size: checkpoint.size, root: checkpoint.root };
        if latest != Some(new) {
            state.store(origin, new).map_err(|e| WitnessRejection::Internal(e.to_string()))?;
        }
        let cosignature = self
            .signer
            .cosign(&request.checkpoint.text, now_secs)
            .map_err(|e| WitnessRejection::Internal(e.to_string()))?;
        Ok(cosignature.line())
    }
}

/// Errors reading a witness's answer, on the log's side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("witness response is larger than {MAX_RESPONSE_BYTES} bytes")]
    TooLarge,
    #[error("witness response is malformed: {0}")]
    Malformed(&'static str),
    #[error("witness response signature line: {0}")]
    SignatureLine(NoteError),
    #[error("{0}")]
    Cosignature(#[from] CosignatureError),
}

/// Read a witness's 200 response to a request for `checkpoint_text`: one or
/// more signature lines, of which the one from `expected` must verify and
/// carry a non-zero timestamp. Lines from other keys are ignored. Returns
/// that line, to add to the log's checkpoint note.
pub fn parse_cosignature_response(
    body: &[u8],
    expected: &CosignatureVerifier,
    checkpoint_text: &str,
) -> Result<NoteSignature, ResponseError> {
    if body.len() > MAX_RESPONSE_BYTES {
        return Err(ResponseError::TooLarge);
    }
    let body = std::str::from_utf8(body).map_err(|_| ResponseError::Malformed("not UTF-8"))?;
    if body.chars().any(|c| c < ' ' && c != '\n') {
        return Err(ResponseError::Malformed("control character"));
    }
    let lines = body.strip_suffix('\n').ok_or(ResponseError::Malformed("does not end in a newline"))?;
    let signatures = lines
        .split('\n')
        .map(NoteSignature::parse_line)
        .collect::<Result<Vec<_>, _>>()
        .map_err(ResponseError::SignatureLine)?;
    let note = SignedNote { text: checkpoint_text.to_owned(), signatures };
    let verified = crate::cosignature::verify_cosignatures(&note, std::slice::from_ref(expected))?;
    let latest = verified.into_iter().next().ok_or_else(|| CosignatureError::Missing(expected.name.clone()))?;
    if latest.timestamp == 0 {
        return Err(ResponseError::Malformed("cosignature has no timestamp"));
    }
    Ok(latest.signature)
}

/// Read a witness's 409 response body: its latest cosigned size for the
/// log, a canonical decimal and a newline.
pub fn parse_conflict_size(body: &[u8]) -> Result<u64, ResponseError> {
    std::str::from_utf8(body)
        .ok()
        .and_then(|b| b.strip_suffix('\n'))
        .and_then(parse_canonical_decimal)
        .ok_or(ResponseError::Malformed("409 body is not a size and a newline"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example request body of tlog-witness, "add-checkpoint".
    const SPEC_REQUEST: &str = "old 20852014\n\
        PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n\
        jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=\n\
        5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=\n\
        /6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0=\n\
        \n\
        example.com/behind-the-sofa\n\
        20852163\n\
        CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\
        \n\
        \u{2014} example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\
        \u{2014} example.com/behind-the-sofa opLqBQsREYCgu6xQkYQwJr9fo45a62DN9EdmHXnZdXNqlcVGlCum2Wks+49/V6267UEjw6QUXTS5Rovnzv++qbSzm9Q=\n";

    #[test]
    fn the_spec_example_request_parses_and_round_trips() {
        let request = AddCheckpointRequest::parse(SPEC_REQUEST.as_bytes()).unwrap();
        assert_eq!(request.old_size, 20_852_014);
        assert_eq!(request.proof.len(), 4);
        assert_eq!(request.checkpoint.signatures.len(), 2);
        assert_eq!(Checkpoint::parse(&request.checkpoint.text).unwrap().size, 20_852_163);
        assert_eq!(request.encode(), SPEC_REQUEST);
    }

    #[test]
    fn malformed_requests_are_refused() {
        let good = SPEC_REQUEST;
        let hash = "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=\n";
        for bad in [
            good.replace("old 20852014", "old 020852014"),
            good.replace("old 20852014", "old -1"),
            good.replace("old 20852014", "old "),
            good.replace("old 20852014", "old  1"),
            good.replace("old 20852014", "Old 1"),
            good.replace("old 20852014", "old 99999999999999999999"),
            good.replace("old 20852014\n", ""),
            good.replace("old 20852014\n", "old 1\r\n"),
            good.replace("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=", "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpka="),
            good.replace("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=", "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDD"),
            good.replace("PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=", "!!"),
            good.replacen("\n\n", "\n", 1),
            good.replacen(hash, &hash.repeat(61), 1),
            format!("{}\n", good.split("\n\n").next().unwrap()),
            good.trim_end().to_owned(),
            good.replace("\u{2014} ", "- "),
        ] {
            assert!(AddCheckpointRequest::parse(bad.as_bytes()).is_err(), "{bad:?} was accepted");
        }
        // 63 proof lines are allowed: 4 in the example, plus 59.
        let most = good.replacen(hash, &hash.repeat(60), 1);
        assert_eq!(AddCheckpointRequest::parse(most.as_bytes()).unwrap().proof.len(), 63);
        assert_eq!(AddCheckpointRequest::parse(&vec![b'a'; MAX_REQUEST_BYTES + 1]), Err(RequestError::TooLarge));
        assert_eq!(
            AddCheckpointRequest::parse(b"old 0\n\n"),
            Err(RequestError::Note(NoteError::Malformed("no blank line before the signatures")))
        );
    }

    #[test]
    fn rejections_map_to_the_spec_answers() {
        let conflict = WitnessRejection::Conflict { old_size: 3, latest_size: 20 };
        assert_eq!(
            (conflict.status(), conflict.content_type(), conflict.body()),
            (409, SIZE_CONTENT_TYPE, "20\n".into())
        );
        assert_eq!(parse_conflict_size(conflict.body().as_bytes()), Ok(20));
        for (rejection, status) in [
            (WitnessRejection::BadRequest(RequestError::TooLarge), 413),
            (WitnessRejection::BadRequest(RequestError::Malformed("x")), 400),
            (WitnessRejection::OldSizeAfterCheckpoint { old_size: 2, size: 1 }, 400),
            (WitnessRejection::BadLogSignature { origin: "o".into(), error: NoteError::NoKnownSignature }, 403),
            (WitnessRejection::UnknownLog("o".into()), 404),
            (WitnessRejection::EmptyTreeRoot, 422),
            (WitnessRejection::ProofFromEmptyTree, 422),
            (WitnessRejection::Inconsistent { latest_size: 1, error: ProofError::RootMismatch }, 422),
            (WitnessRejection::Internal("disk full at /secret/path".into()), 500),
        ] {
            assert_eq!(rejection.status(), status, "{rejection}");
            assert_eq!(rejection.content_type(), TEXT_CONTENT_TYPE);
            assert!(rejection.body().ends_with('\n'));
        }
        // Internal details stay out of the response.
        assert!(!WitnessRejection::Internal("/secret/path".into()).body().contains("secret"));
    }

    #[test]
    fn conflict_sizes_are_strict() {
        assert_eq!(parse_conflict_size(b"0\n"), Ok(0));
        assert_eq!(parse_conflict_size(b"18446744073709551615\n"), Ok(u64::MAX));
        for bad in [&b"5"[..], b"05\n", b"5\n\n", b" 5\n", b"\n", b"-1\n", b"18446744073709551616\n", b"\xff\n"] {
            assert!(parse_conflict_size(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn cosignature_responses() {
        let text = "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n";
        let w1 = CosignatureSigner::from_seed("w1.example", &[1; 32]).unwrap();
        let other = CosignatureSigner::from_seed("w2.example", &[2; 32]).unwrap();
        let ours = w1.cosign(text, 1_700_000_000).unwrap();
        let body = format!("{}{}", other.cosign(text, 5).unwrap().line(), ours.line());
        // Unknown keys are ignored.
        assert_eq!(parse_cosignature_response(body.as_bytes(), &w1.verifier(), text), Ok(ours.clone()));
        // A cosignature of another checkpoint does not verify.
        let other_text = text.replace("\n0\n", "\n1\n");
        assert_eq!(
            parse_cosignature_response(body.as_bytes(), &w1.verifier(), &other_text),
            Err(ResponseError::Cosignature(CosignatureError::BadSignature("w1.example".into())))
        );
        // Only the other witness answered.
        assert_eq!(
            parse_cosignature_response(other.cosign(text, 5).unwrap().line().as_bytes(), &w1.verifier(), text),
            Err(ResponseError::Cosignature(CosignatureError::Missing("w1.example".into())))
        );
        let zero = w1.cosign(text, 0).unwrap().line();
        assert!(matches!(
            parse_cosignature_response(zero.as_bytes(), &w1.verifier(), text),
            Err(ResponseError::Malformed(_))
        ));
        for bad in [String::new(), "\n".into(), ours.line().trim_end().to_owned(), format!("{}\n", ours.line())] {
            assert!(parse_cosignature_response(bad.as_bytes(), &w1.verifier(), text).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_state_file_is_replaced_whole_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let state_dir = dir.path().join("witness");
        let mut state = FileWitnessState::open(&state_dir).unwrap();
        assert_eq!(state.load("a").unwrap(), None);
        let root = merkle::leaf_hash(b"x");
        state.store("a", LogState { size: 1, root }).unwrap();
        state.store("b", LogState { size: 0, root: merkle::empty_root() }).unwrap();
        let path = state_dir.join(FileWitnessState::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"version\": 1"), "{text}");
        assert!(!state_dir.join("witness-state.json.tmp").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let reopened = FileWitnessState::open(&state_dir).unwrap();
        assert_eq!(reopened.load("a").unwrap(), Some(LogState { size: 1, root }));
        assert_eq!(reopened.load("b").unwrap().map(|s| s.size), Some(0));
    }

    #[test]
    fn a_corrupt_state_file_is_an_error_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FileWitnessState::FILE_NAME);
        for bad in [
            "",
            "{",
            "[]",
            r#"{"version":2,"logs":{}}"#,
            r#"{"version":1,"logs":{"a":{"size":1,"root":"AAAA"}}}"#,
            r#"{"version":1,"logs":{"a":{"size":-1,"root":"47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}}}"#,
            r#"{"version":1,"logs":{},"extra":true}"#,
        ] {
            std::fs::write(&path, bad).unwrap();
            let error = FileWitnessState::open(dir.path()).unwrap_err();
            assert!(matches!(error, StateError::Corrupt { .. }), "{bad:?}: {error}");
            assert!(error.to_string().contains("is corrupt"), "{error}");
        }
    }
}
