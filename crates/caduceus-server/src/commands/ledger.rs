//! `caduceus ledger ...`: offline work on a ledger directory — full
//! verification, proofs against the latest checkpoint — and checking a
//! C2SP tlog-proof bundle with nothing but the log's public key. None of
//! these needs a running server; proofs also work beside one, while
//! `verify` wants the server stopped (or a copy of its directory).

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use caduceus_core::SecurityEvent;
use caduceus_ledger::cosignature::{CosignatureVerifier, verify_cosigned};
use caduceus_ledger::merkle::{self, Hash};
use caduceus_ledger::note::NoteVerifier;
use caduceus_ledger::proof::{MAX_PROOF_BYTES, TlogProof};
use caduceus_ledger::reader::Snapshot;
use caduceus_ledger::seal::{SALT_BYTES, commitment};
use caduceus_ledger::verify::verify_dir;
use serde_json::json;

use crate::platform::ServerError;
use crate::routes::ledger::{ConsistencyProofView, InclusionProofView};

/// Largest event file `verify-proof --event` reads.
const MAX_EVENT_FILE: u64 = 1024 * 1024;

fn fail(message: impl Into<String>) -> ServerError {
    ServerError::Io(message.into())
}

/// The ledger directory: `DIR/ledger` for a data directory, or `DIR` itself.
pub fn resolve_dir(dir: &Path) -> PathBuf {
    let nested = crate::ledger::ledger_dir(dir);
    if nested.join("records").exists() { nested } else { dir.to_owned() }
}

/// A verifier key given inline (`name+id+key`) or as a file holding one.
fn read_key<T>(value: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, ServerError> {
    if let Ok(key) = parse(value) {
        return Ok(key);
    }
    let text = read_small(Path::new(value), 4096).map_err(|e| fail(format!("key `{value}` is not a key ({e})")))?;
    let text = String::from_utf8(text).map_err(|_| fail(format!("key file {value} is not text")))?;
    parse(text.trim()).map_err(|e| fail(format!("key file {value}: {e}")))
}

fn note_key(value: &str) -> Result<NoteVerifier, ServerError> {
    read_key(value, |v| NoteVerifier::parse(v).map_err(|e| e.to_string()))
}

fn read_small(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{} is larger than {limit} bytes", path.display()));
    }
    Ok(bytes)
}

/// `caduceus ledger verify --data-dir DIR [--key KEY] [--config FILE] [--json]`
///
/// First the ledger itself (`verify_dir`), then the events against their
/// seals: every stored event must match the salted commitment the ledger
/// sealed, so an event row rewritten in the database (body and digest
/// together) is caught, and so is a sealed event deleted from it. The store
/// is the one `--config` names, or the SQLite database in the data directory.
pub async fn verify(
    data_dir: &Path,
    key: Option<&str>,
    config: Option<&Path>,
    as_json: bool,
) -> Result<(), ServerError> {
    let dir = resolve_dir(data_dir);
    if caduceus_ledger::log::in_use(&dir) {
        return Err(fail(format!(
            "the ledger in {} is in use by a running server: stop it, or verify a copy (cp -a)",
            dir.display()
        )));
    }
    let key = key.map(note_key).transpose()?;
    let failed = |e: String| {
        if as_json {
            println!("{}", json!({ "ok": false, "error": e }));
        }
        fail(format!("ledger verification failed in {}: {e}", dir.display()))
    };
    let report = verify_dir(&dir, key.as_ref()).map_err(|e| failed(e.to_string()))?;
    let store_config = match config {
        Some(path) => Some(crate::config::load(path)?),
        None => {
            let config = caduceus_core::config::Config::with_data_dir(data_dir);
            matches!(config.storage_target(), Ok(caduceus_core::config::StorageTarget::Sqlite(p)) if p.exists())
                .then_some(config)
        }
    };
    let events = match store_config {
        Some(config) => {
            let store = caduceus_store::open(&config).await?;
            let snapshot = Snapshot::open(&dir, key.as_ref()).map_err(|e| failed(e.to_string()))?;
            let checked = check_events(store.as_ref(), &snapshot).await;
            store.close().await;
            Some(checked.map_err(failed)?)
        }
        None => None,
    };
    if as_json {
        let out = json!({
            "ok": true,
            "entries": report.entries,
            "root": B64.encode(report.root),
            "origin": report.origin,
            "checkpoints": report.checkpoints,
            "latest_checkpoint": report.latest_checkpoint,
            "events_checked": events.as_ref().map(|e| e.sealed),
            "events_not_yet_sealed": events.as_ref().map(|e| e.unsealed),
        });
        println!("{out}");
        return Ok(());
    }
    println!(
        "ledger ok: {} entries, root {}, {} checkpoints{}",
        report.entries,
        B64.encode(report.root),
        report.checkpoints,
        report.latest_checkpoint.map(|s| format!(" (latest at size {s})")).unwrap_or_default()
    );
    match events {
        Some(e) => println!(
            "events ok: {} stored events match their seals{}",
            e.sealed,
            if e.unsealed > 0 { format!("; {} newest not sealed yet", e.unsealed) } else { String::new() }
        ),
        None => println!("  no event store found beside it (give --config): only the ledger was checked"),
    }
    if key.is_none() {
        println!("  checked with the key file in {}; pass --key with the published key to prove more", dir.display());
    }
    Ok(())
}

/// What the events check found.
#[derive(Debug, Default)]
struct EventsChecked {
    sealed: u64,
    /// Events after the last sealed one (a server stopped mid-way).
    unsealed: u64,
}

/// Walk the stored events and the seals together, both in `seq` order.
async fn check_events(store: &dyn caduceus_store::Store, snapshot: &Snapshot) -> Result<EventsChecked, String> {
    const PAGE: u32 = 500;
    let ledger = |e: caduceus_ledger::LedgerError| e.to_string();
    let entries = snapshot.entries();
    let last_sealed = match entries {
        0 => 0,
        n => snapshot.record(n - 1).map_err(ledger)?.event_seq,
    };
    let mut checked = EventsChecked::default();
    let mut index = 0u64;
    let mut after = 0u64;
    loop {
        let page = store.events_after(after, PAGE).await.map_err(|e| format!("reading events: {e}"))?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for event in &page {
            let record = if index < entries { Some(snapshot.record(index).map_err(ledger)?) } else { None };
            match record {
                Some(record) if record.event_seq < event.seq => return Err(missing(record.event_seq, index)),
                Some(record) if record.event_seq == event.seq => {
                    if !record.seals(&event.digest.0) {
                        return Err(format!(
                            "event {} does not match its seal (entry {index}): the stored event was altered",
                            event.seq
                        ));
                    }
                    checked.sealed += 1;
                    index += 1;
                }
                _ if event.seq <= last_sealed => {
                    return Err(format!(
                        "event {} was never sealed, though later events were: it was inserted",
                        event.seq
                    ));
                }
                _ => checked.unsealed += 1,
            }
        }
        if page.len() < PAGE as usize {
            break;
        }
    }
    if index < entries {
        return Err(missing(snapshot.record(index).map_err(ledger)?.event_seq, index));
    }
    Ok(checked)
}

fn missing(seq: u64, index: u64) -> String {
    format!("event {seq} is sealed (entry {index}) but missing from the store: it was deleted")
}

/// Which entry `prove` is about.
#[derive(Debug, Clone)]
pub enum Entry {
    Index(u64),
    LeafHash(String),
    EventSeq(u64),
}

fn parse_hash(text: &str) -> Result<Hash, ServerError> {
    merkle::parse_hash(text).ok_or_else(|| fail("a hash is 32 bytes, hex or base64"))
}

/// `caduceus ledger prove --data-dir DIR (--index N | --leaf-hash H | --event-seq S) [--size N]`
pub fn prove(data_dir: &Path, entry: Entry, size: Option<u64>, key: Option<&str>) -> Result<(), ServerError> {
    let key = key.map(note_key).transpose()?;
    let snapshot = Snapshot::open(&resolve_dir(data_dir), key.as_ref()).map_err(|e| fail(e.to_string()))?;
    let latest = snapshot.latest().ok_or_else(|| fail("no checkpoint has been published yet"))?;
    let size = size.unwrap_or(snapshot.size());
    let ledger = |e: caduceus_ledger::LedgerError| fail(e.to_string());
    let index = match entry {
        Entry::Index(i) => Some(i),
        Entry::LeafHash(h) => snapshot.find_leaf(&parse_hash(&h)?).map_err(ledger)?,
        Entry::EventSeq(s) => snapshot.find_event(s).map_err(ledger)?,
    }
    .ok_or_else(|| fail("no such entry in the latest checkpoint"))?;
    if index >= size {
        return Err(fail(format!("entry {index} is not in the tree of size {size}")));
    }
    let view = InclusionProofView::new(
        index,
        size,
        &snapshot.record(index).map_err(ledger)?,
        &snapshot.leaf_hash(index).map_err(ledger)?,
        &snapshot.inclusion_proof(index, size).map_err(ledger)?,
        &snapshot.root(size).map_err(ledger)?,
        (size == latest.checkpoint.size).then_some(latest),
    );
    print_json(&view)
}

/// `caduceus ledger consistency --data-dir DIR --first A [--second B]`
pub fn consistency(data_dir: &Path, first: u64, second: Option<u64>, key: Option<&str>) -> Result<(), ServerError> {
    let key = key.map(note_key).transpose()?;
    let snapshot = Snapshot::open(&resolve_dir(data_dir), key.as_ref()).map_err(|e| fail(e.to_string()))?;
    let second = second.unwrap_or(snapshot.size());
    if first == 0 || first > second {
        return Err(fail("need 1 <= first <= second"));
    }
    let ledger = |e: caduceus_ledger::LedgerError| fail(e.to_string());
    let view = ConsistencyProofView::new(
        first,
        second,
        &snapshot.root(first).map_err(ledger)?,
        &snapshot.root(second).map_err(ledger)?,
        &snapshot.consistency_proof(first, second).map_err(ledger)?,
    );
    print_json(&view)
}

fn print_json(value: &impl serde::Serialize) -> Result<(), ServerError> {
    println!("{}", serde_json::to_string_pretty(value).map_err(|e| fail(e.to_string()))?);
    Ok(())
}

/// What `verify-proof` is given.
#[derive(Debug)]
pub struct ProofCheck<'a> {
    pub proof: &'a Path,
    pub key: &'a str,
    /// The event the bundle should prove (its JSON, as the API returns it).
    pub event: Option<&'a Path>,
    /// The leaf hash, when the bundle carries no seal.
    pub leaf_hash: Option<&'a str>,
    pub witnesses: &'a [String],
    pub quorum: usize,
}

/// `caduceus ledger verify-proof --proof FILE --key KEY [--event FILE] [--witness KEY --quorum N]`
pub fn verify_proof(check: &ProofCheck<'_>) -> Result<(), ServerError> {
    let log = note_key(check.key)?;
    let bytes = read_small(check.proof, MAX_PROOF_BYTES as u64).map_err(fail)?;
    let bundle = TlogProof::parse(&bytes).map_err(|e| fail(format!("proof bundle: {e}")))?;
    let seal = bundle.extra.as_deref().and_then(|extra| {
        let (salt, digest) = extra.split_at_checked(SALT_BYTES)?;
        Some((<[u8; SALT_BYTES]>::try_from(salt).ok()?, <[u8; 32]>::try_from(digest).ok()?))
    });
    let leaf = match (check.leaf_hash, seal) {
        (Some(leaf), _) => parse_hash(leaf)?,
        (None, Some((salt, digest))) => {
            if let Some(path) = check.event {
                let bytes = read_small(path, MAX_EVENT_FILE).map_err(fail)?;
                let event: SecurityEvent =
                    serde_json::from_slice(&bytes).map_err(|e| fail(format!("event {}: {e}", path.display())))?;
                let actual = event.digest().map_err(|e| fail(format!("event {}: {e}", path.display())))?;
                if actual.0 != digest {
                    return Err(fail(
                        "the event does not match the sealed digest: it was altered, or it is another event",
                    ));
                }
            }
            merkle::leaf_hash(&commitment(&salt, &digest))
        }
        (None, None) => return Err(fail("the bundle carries no seal; give --leaf-hash")),
    };
    let checkpoint = bundle.verify(&leaf, &log.name, &log).map_err(|e| fail(format!("proof does not verify: {e}")))?;
    let witnesses = check
        .witnesses
        .iter()
        .map(|w| read_key(w, |v| CosignatureVerifier::parse(v).map_err(|e| e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let cosigned = verify_cosigned(&bundle.checkpoint, std::slice::from_ref(&log), &witnesses, check.quorum)
        .map_err(|e| fail(format!("witness policy not met: {e}")))?;
    println!(
        "proof ok: entry {} is in {} at tree size {}{}{}",
        bundle.index,
        checkpoint.origin,
        checkpoint.size,
        if check.event.is_some() { ", and the event matches its seal" } else { "" },
        if cosigned.is_empty() {
            String::new()
        } else {
            format!(
                ", cosigned by {}",
                cosigned.iter().map(|c| c.signature.name.as_str()).collect::<Vec<_>>().join(", ")
            )
        }
    );
    Ok(())
}
