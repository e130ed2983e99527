//! The ledger inside the server: the sealer that puts every spine event into
//! the log, checkpoint publishing (on an interval and on demand) with the
//! configured witnesses' cosignatures, and the witness this instance runs
//! for partner logs.
//!
//! Files live in `data_dir/ledger/` whatever the database: the log is its
//! own append-only store (see `caduceus_ledger::log`), and its keys never
//! enter the database.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use caduceus_core::config::{Config, WitnessEndpoint};
use caduceus_ledger::checkpoints::{Checkpoints, Published};
use caduceus_ledger::cosignature::{CosignatureSigner, CosignatureVerifier};
use caduceus_ledger::keys;
use caduceus_ledger::note::{NoteSignature, NoteVerifier, SignedNote};
use caduceus_ledger::witness::{self, AddCheckpointRequest, FileWitnessState, Witness};
use caduceus_ledger::{Ledger, LedgerError, Seal};
use caduceus_spine::Spine;
use futures_util::FutureExt as _;
use tokio::task::JoinHandle;

/// Most events sealed in one batch.
const SEAL_BATCH: usize = 4096;
/// Witness answers are small: a few signature lines, or a size.
const MAX_WITNESS_RESPONSE: usize = 64 * 1024;
pub const WITNESS_KEY_FILE: &str = "witness.key";
pub const WITNESS_KEY_KIND: &str = "witness";

#[derive(Debug, thiserror::Error)]
pub enum LedgerServiceError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("only {got} of the {need} required witnesses cosigned: {details}")]
    Quorum { got: usize, need: usize, details: String },
    #[error("ledger task failed: {0}")]
    Task(String),
    #[error("{0}")]
    Config(String),
}

/// The ledger directory for a configuration.
pub fn ledger_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("ledger")
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct LedgerCounters {
    pub checkpoints_published: std::sync::atomic::AtomicU64,
    pub checkpoints_withheld: std::sync::atomic::AtomicU64,
    pub witness_failures: std::sync::atomic::AtomicU64,
}

pub struct LedgerService {
    pub ledger: Arc<Ledger>,
    pub checkpoints: Arc<Checkpoints>,
    pub witness: Option<Arc<Witness>>,
    pub counters: LedgerCounters,
    witnesses: Vec<WitnessClient>,
    quorum: usize,
    /// Serialises publishing, so checkpoints go out in order.
    publishing: tokio::sync::Mutex<()>,
    sealer: Mutex<Option<JoinHandle<()>>>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LedgerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerService").field("origin", &self.checkpoints.origin()).finish_non_exhaustive()
    }
}

impl LedgerService {
    /// Open the log (recovering from a crash), load or create its key, start
    /// sealing spine events and publishing checkpoints.
    pub async fn start(config: &Config, spine: Arc<dyn Spine>) -> Result<Arc<Self>, LedgerServiceError> {
        let dir = ledger_dir(&config.data_dir);
        let origin = config.ledger.origin.clone();
        let (ledger, checkpoints) = blocking(move || {
            let ledger = Ledger::open(&dir)?;
            let checkpoints = Checkpoints::open(&dir, origin.as_deref())?;
            Ok((ledger, checkpoints))
        })
        .await?;
        let witnesses = config
            .ledger
            .witnesses
            .iter()
            .map(|w| WitnessClient::new(w, Duration::from_secs(config.ledger.witness_timeout_secs)))
            .collect::<Result<Vec<_>, _>>()?;
        let witness = if config.witness.enabled { Some(Arc::new(open_witness(config)?)) } else { None };
        tracing::info!(
            origin = checkpoints.origin(),
            entries = ledger.size(),
            vkey = %checkpoints.verifier_key(),
            "ledger ready"
        );
        let service = Arc::new(Self {
            ledger: Arc::new(ledger),
            checkpoints: Arc::new(checkpoints),
            witness,
            counters: LedgerCounters::default(),
            witnesses,
            quorum: config.ledger.witness_quorum,
            publishing: tokio::sync::Mutex::new(()),
            sealer: Mutex::new(None),
            ticker: Mutex::new(None),
        });
        let subscription = spine.subscribe("ledger").await.map_err(|e| LedgerServiceError::Task(e.to_string()))?;
        let sealer = tokio::spawn(seal_events(service.ledger.clone(), subscription));
        *service.sealer.lock().unwrap_or_else(PoisonError::into_inner) = Some(sealer);
        let interval = Duration::from_secs(config.ledger.checkpoint_interval_secs);
        let ticker = tokio::spawn(publish_periodically(Arc::downgrade(&service), interval));
        *service.ticker.lock().unwrap_or_else(PoisonError::into_inner) = Some(ticker);
        Ok(service)
    }

    /// The latest published checkpoint.
    pub fn latest(&self) -> Option<Arc<Published>> {
        self.checkpoints.latest()
    }

    /// Sign the current tree head, gather the witnesses' cosignatures and
    /// publish it if the witness policy is met. With nothing new since the
    /// last checkpoint, that one is returned.
    pub async fn publish_checkpoint(&self) -> Result<Arc<Published>, LedgerServiceError> {
        let _publishing = self.publishing.lock().await;
        let ledger = self.ledger.clone();
        let (size, root) = blocking(move || ledger.sync_tree()).await?;
        if let Some(latest) = self.latest()
            && latest.checkpoint.size == size
        {
            return Ok(latest);
        }
        let mut note = self.checkpoints.sign(size, root)?;
        if !self.witnesses.is_empty() {
            let previous = self.latest().map(|p| p.checkpoint.size);
            let results = futures_util::future::join_all(
                self.witnesses.iter().map(|w| w.cosign(&self.ledger, &note, size, previous)),
            )
            .await;
            let mut failures = Vec::new();
            for (client, result) in self.witnesses.iter().zip(results) {
                match result {
                    Ok(signature) => note.signatures.push(signature),
                    Err(e) => {
                        self.counters.witness_failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tracing::warn!(witness = %client.verifier.name, error = %e, "witness did not cosign");
                        failures.push(format!("{}: {e}", client.verifier.name));
                    }
                }
            }
            let got = note.signatures.len() - 1;
            if got < self.quorum {
                self.counters.checkpoints_withheld.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                return Err(LedgerServiceError::Quorum { got, need: self.quorum, details: failures.join("; ") });
            }
        }
        let checkpoints = self.checkpoints.clone();
        let published = blocking(move || checkpoints.publish(note)).await?;
        self.counters.checkpoints_published.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(size, "checkpoint published");
        Ok(published)
    }

    /// Wait for the sealer to seal everything the spine delivered (the spine
    /// must be closed first), publish a last checkpoint, and close the log.
    pub async fn shutdown(&self) {
        let ticker = self.ticker.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(ticker) = ticker {
            ticker.abort();
        }
        let sealer = self.sealer.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(sealer) = sealer
            && let Err(e) = sealer.await
        {
            tracing::error!(error = %e, "the sealer task failed");
        }
        if let Err(e) = self.publish_checkpoint().await {
            tracing::warn!(error = %e, "no final checkpoint");
        }
        let ledger = self.ledger.clone();
        if let Err(e) = blocking(move || ledger.close()).await {
            tracing::error!(error = %e, "closing the ledger failed");
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, LedgerServiceError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| LedgerServiceError::Task(e.to_string()))?.map_err(Into::into)
}

/// Seal every event delivered to the `ledger` consumer, in order, in
/// batches; acknowledge them on the spine only once durable in the log.
/// Events sealed before a crash but not acknowledged are recognised by
/// their sequence number and not sealed twice.
async fn seal_events(ledger: Arc<Ledger>, mut subscription: Box<dyn caduceus_spine::Subscription>) {
    let mut sealed_up_to = ledger.progress().last_seq;
    loop {
        let first = match subscription.next().await {
            Ok(Some(event)) => event,
            Ok(None) => return,
            Err(e) => {
                tracing::error!(error = %e, "the sealer cannot read the spine; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut batch = vec![first];
        // Whatever else is already delivered, without waiting.
        while batch.len() < SEAL_BATCH {
            match subscription.next().now_or_never() {
                Some(Ok(Some(event))) => batch.push(event),
                _ => break,
            }
        }
        let last = batch.last().map_or(0, |e| e.seq);
        let seals: Vec<Seal> = batch
            .iter()
            .filter(|e| e.seq > sealed_up_to)
            .map(|e| Seal { event_seq: e.seq, event_digest: e.digest.0 })
            .collect();
        if !seals.is_empty() {
            if let Err(e) = ledger.append_batch(seals).await {
                // Appends after a write failure fail for good: stop sealing,
                // so the spine fills up and producers get errors, never a
                // silent acknowledgement of an unsealed event.
                tracing::error!(error = %e, "sealing failed; the ledger takes no more events");
                return;
            }
            sealed_up_to = last;
        }
        if let Err(e) = subscription.ack(last).await {
            tracing::warn!(error = %e, "the sealer could not acknowledge on the spine");
        }
    }
}

async fn publish_periodically(service: std::sync::Weak<LedgerService>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(service) = service.upgrade() else { return };
        let grown = service.latest().is_none_or(|p| p.checkpoint.size < service.ledger.size());
        if grown && let Err(e) = service.publish_checkpoint().await {
            tracing::warn!(error = %e, "checkpoint not published");
        }
    }
}

fn open_witness(config: &Config) -> Result<Witness, LedgerServiceError> {
    let dir = ledger_dir(&config.data_dir);
    caduceus_ledger::log::create_private_dir(&dir)?;
    let key =
        keys::load_or_create(&dir.join(WITNESS_KEY_FILE), WITNESS_KEY_KIND, config.witness.name.as_deref(), || {
            format!("caduceus.invalid/witness-{}", keys::random_suffix())
        })?;
    let signer = CosignatureSigner::from_seed(&key.name, &key.seed)
        .map_err(|e| LedgerServiceError::Config(format!("witness.name `{}`: {e}", key.name)))?;
    let mut logs = Vec::new();
    for log in &config.witness.logs {
        let verifier = NoteVerifier::parse(&log.vkey)
            .map_err(|e| LedgerServiceError::Config(format!("witness.logs `{}` vkey: {e}", log.origin)))?;
        logs.push((log.origin.clone(), verifier));
    }
    let state = FileWitnessState::open(&dir.join("witness-state"))
        .map_err(|e| LedgerServiceError::Config(format!("witness state: {e}")))?;
    tracing::info!(name = signer.name(), vkey = %signer.verifier_key(), logs = logs.len(), "witness ready");
    Ok(Witness::new(signer, logs, Box::new(state)))
}

/// A witness this log asks for cosignatures (C2SP tlog-witness, client side).
struct WitnessClient {
    verifier: CosignatureVerifier,
    url: String,
    http: reqwest::Client,
    /// The size this witness last cosigned, as far as we know.
    known_size: Mutex<Option<u64>>,
}

#[derive(Debug, thiserror::Error)]
enum WitnessCallError {
    #[error("request failed: {0}")]
    Http(String),
    #[error("answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error(transparent)]
    Response(#[from] witness::ResponseError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("says it cosigned size {0}, beyond our log")]
    AheadOfUs(u64),
}

impl WitnessClient {
    fn new(endpoint: &WitnessEndpoint, timeout: Duration) -> Result<Self, LedgerServiceError> {
        let verifier = CosignatureVerifier::parse(&endpoint.vkey)
            .map_err(|e| LedgerServiceError::Config(format!("ledger.witnesses vkey `{}`: {e}", endpoint.vkey)))?;
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .https_only(endpoint.url.starts_with("https://"))
            .redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = &endpoint.ca_cert {
            let pem = std::fs::read(ca)
                .map_err(|e| LedgerServiceError::Config(format!("ledger.witnesses ca_cert {}: {e}", ca.display())))?;
            let cert = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| LedgerServiceError::Config(format!("ledger.witnesses ca_cert {}: {e}", ca.display())))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| LedgerServiceError::Config(format!("witness client: {e}")))?;
        let url = format!("{}/add-checkpoint", endpoint.url.trim_end_matches('/'));
        Ok(Self { verifier, url, http, known_size: Mutex::new(None) })
    }

    /// Ask for a cosignature of `note` (a checkpoint of `size`). Starts from
    /// the size we believe the witness has; a 409 tells its real one, and
    /// the request is made once more from there.
    async fn cosign(
        &self,
        ledger: &Ledger,
        note: &SignedNote,
        size: u64,
        previous: Option<u64>,
    ) -> Result<NoteSignature, WitnessCallError> {
        let known = *self.known_size.lock().unwrap_or_else(PoisonError::into_inner);
        let mut old_size = known.or(previous).unwrap_or(0).min(size);
        for _ in 0..2 {
            let proof = if old_size == 0 { Vec::new() } else { ledger.consistency_proof(old_size, size)? };
            let body = AddCheckpointRequest { old_size, proof, checkpoint: note.clone() }.encode();
            let response =
                self.http.post(&self.url).body(body).send().await.map_err(|e| WitnessCallError::Http(e.to_string()))?;
            let status = response.status().as_u16();
            let bytes = read_capped(response).await?;
            match status {
                200 => {
                    let signature = witness::parse_cosignature_response(&bytes, &self.verifier, &note.text)?;
                    *self.known_size.lock().unwrap_or_else(PoisonError::into_inner) = Some(size);
                    return Ok(signature);
                }
                409 => {
                    let theirs = witness::parse_conflict_size(&bytes)?;
                    if theirs > size {
                        return Err(WitnessCallError::AheadOfUs(theirs));
                    }
                    *self.known_size.lock().unwrap_or_else(PoisonError::into_inner) = Some(theirs);
                    old_size = theirs;
                }
                _ => {
                    let body = String::from_utf8_lossy(bytes.get(..200).unwrap_or(&bytes)).trim().to_owned();
                    return Err(WitnessCallError::Refused { status, body });
                }
            }
        }
        Err(WitnessCallError::Refused { status: 409, body: "the witness's size kept changing".into() })
    }
}

async fn read_capped(mut response: reqwest::Response) -> Result<Vec<u8>, WitnessCallError> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| WitnessCallError::Http(e.to_string()))? {
        if body.len() + chunk.len() > MAX_WITNESS_RESPONSE {
            return Err(WitnessCallError::Http("response too large".into()));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
