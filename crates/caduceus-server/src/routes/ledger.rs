//! The ledger over HTTP.
//!
//! Public and read-only, in the C2SP tlog-tiles layout so that existing
//! tiles clients, monitors and witnesses can follow the log without our
//! code: `/ledger/checkpoint`, `/ledger/tile/<L>/<N>[.p/<W>]`,
//! `/ledger/tile/entries/<N>[.p/<W>]`, and the note verifier key at
//! `/ledger/key`. The public log holds only salted commitments, never event
//! data.
//!
//! Behind admin authentication, as JSON: status, on-demand checkpoints,
//! inclusion proofs (by entry index, leaf hash or event sequence number),
//! consistency proofs, and offline proof bundles (C2SP tlog-proof) whose
//! extra data carries the seal's salt and event digest, so an event can be
//! checked against the log with nothing but the bundle and the log's key.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use caduceus_ledger::checkpoints::Published;
use caduceus_ledger::merkle::{self, Hash};
use caduceus_ledger::proof::TlogProof;
use caduceus_ledger::seal::SealRecord;
use caduceus_ledger::tiles::{TileKind, TilePath};
use caduceus_ledger::{Ledger, LedgerError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access::Caller;
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::ledger::LedgerService;

const TEXT: &str = "text/plain; charset=utf-8";

fn service(state: &AppState) -> Result<&Arc<LedgerService>, ApiError> {
    state.platform.ledger.as_ref().ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the ledger is not running"))
}

fn latest(service: &LedgerService) -> Result<Arc<Published>, ApiError> {
    service.latest().ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no checkpoint has been published yet"))
}

/// Run a ledger read off the async threads (it reads files).
async fn read<T: Send + 'static>(
    ledger: &Arc<Ledger>,
    f: impl FnOnce(&Ledger) -> Result<T, LedgerError> + Send + 'static,
) -> Result<T, ApiError> {
    let ledger = ledger.clone();
    tokio::task::spawn_blocking(move || f(&ledger)).await.map_err(ApiError::internal)?.map_err(ApiError::from)
}

fn text(body: String, cache: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(TEXT)),
            (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
        ],
        body,
    )
        .into_response()
}

/// The latest checkpoint, a C2SP signed note (tlog-tiles).
#[utoipa::path(
    get,
    path = "/ledger/checkpoint",
    tag = "ledger",
    responses(
        (status = 200, description = "C2SP tlog-checkpoint signed note", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 404, description = "no checkpoint yet", body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn checkpoint(State(state): State<AppState>) -> Result<Response, ApiError> {
    let published = latest(service(&state)?)?;
    Ok(text(published.encoded(), "no-cache"))
}

/// The log's note verifier key, `name+keyid+base64key` (C2SP signed-note).
#[utoipa::path(
    get,
    path = "/ledger/key",
    tag = "ledger",
    responses(
        (status = 200, description = "verifier key and a newline", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn key(State(state): State<AppState>) -> Result<Response, ApiError> {
    Ok(text(format!("{}\n", service(&state)?.checkpoints.verifier_key()), "no-cache"))
}

/// A hash tile or entry bundle (C2SP tlog-tiles). Registered outside the
/// OpenAPI document: its multi-segment path is specified by C2SP.
pub async fn tile(State(state): State<AppState>, Path(path): Path<String>) -> Response {
    match serve_tile(&state, &path).await {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

async fn serve_tile(state: &AppState, path: &str) -> Result<Response, ApiError> {
    let not_found = || ApiError::new(ErrorCode::NotFound, "no such tile");
    let tile = TilePath::parse(path).map_err(|_| not_found())?;
    let service = service(state)?;
    // Tiles up to the latest checkpoint: clients must not need more, and
    // what they get is then covered by a signed tree head.
    let size = service.latest().map_or(0, |p| p.checkpoint.size);
    let bytes = read(&service.ledger, move |ledger| match tile.kind {
        TileKind::Hashes { level } => ledger.tile(level, tile.index, tile.width, size),
        TileKind::Entries => ledger.entry_bundle(tile.index, tile.width, size),
    })
    .await
    .map_err(|e| if e.code == ErrorCode::BadRequest { not_found() } else { e })?;
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
        ],
        bytes,
    )
        .into_response())
}

/// A checkpoint as JSON.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointView {
    pub origin: String,
    pub size: u64,
    /// Root hash, base64.
    pub root: String,
    /// The signed note, as served at `/ledger/checkpoint`.
    pub note: String,
    /// Names of the witnesses whose cosignatures the note carries.
    pub cosigned_by: Vec<String>,
}

impl CheckpointView {
    fn new(published: &Published) -> Self {
        let origin = published.checkpoint.origin.clone();
        Self {
            size: published.checkpoint.size,
            root: B64.encode(published.checkpoint.root),
            note: published.encoded(),
            cosigned_by: published
                .note
                .signatures
                .iter()
                .filter(|s| s.name != origin)
                .map(|s| s.name.clone())
                .collect(),
            origin,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LedgerStatus {
    pub origin: String,
    /// The note verifier key, as at `/ledger/key`.
    pub verifier_key: String,
    /// Durable entries.
    pub entries: u64,
    /// Spine sequence number of the last sealed event.
    pub last_sealed_seq: u64,
    pub checkpoint: Option<CheckpointView>,
    /// Witnesses asked to cosign, and how many must.
    pub witnesses: usize,
    pub witness_quorum: usize,
    /// This instance's witness cosigner key, when it acts as a witness.
    pub witness_key: Option<String>,
}

/// The ledger's state (admin).
#[utoipa::path(
    get,
    path = "/api/v1/ledger",
    tag = "ledger",
    security(("bearer" = [])),
    responses((status = 200, body = LedgerStatus), (status = 401, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn status(_caller: Caller, State(state): State<AppState>) -> Result<Json<LedgerStatus>, ApiError> {
    let service = service(&state)?;
    let progress = service.ledger.progress();
    let config = &state.platform.config.ledger;
    Ok(Json(LedgerStatus {
        origin: service.checkpoints.origin().to_owned(),
        verifier_key: service.checkpoints.verifier_key(),
        entries: progress.size,
        last_sealed_seq: progress.last_seq,
        checkpoint: service.latest().as_deref().map(CheckpointView::new),
        witnesses: config.witnesses.len(),
        witness_quorum: config.witness_quorum,
        witness_key: service.witness.as_ref().map(|w| w.verifier_key()),
    }))
}

/// Publish a checkpoint now (admin); with witnesses configured, only once
/// the witness quorum has cosigned it.
#[utoipa::path(
    post,
    path = "/api/v1/ledger/checkpoints",
    tag = "ledger",
    security(("bearer" = [])),
    responses(
        (status = 201, body = CheckpointView),
        (status = 401, body = ErrorBody),
        (status = 503, description = "witness quorum not met, or shutting down", body = ErrorBody)
    )
)]
pub async fn publish(
    _caller: Caller,
    State(state): State<AppState>,
) -> Result<(StatusCode, Json<CheckpointView>), ApiError> {
    let published = service(&state)?.publish_checkpoint().await?;
    Ok((StatusCode::CREATED, Json(CheckpointView::new(&published))))
}

/// How a request names an entry: by index, by the spine sequence number of
/// the event it seals, or by its leaf hash. Each is its own path, so every
/// request names exactly one entry.
#[derive(Debug, Clone)]
enum Entry {
    Index(u64),
    Event(u64),
    Leaf(String),
}

async fn resolve_entry(service: &LedgerService, entry: Entry) -> Result<u64, ApiError> {
    let absent = || ApiError::new(ErrorCode::NotFound, "no such entry in the log");
    match entry {
        Entry::Index(index) => Ok(index),
        Entry::Event(seq) => read(&service.ledger, move |l| l.find_event(seq)).await?.ok_or_else(absent),
        Entry::Leaf(leaf) => {
            let leaf = merkle::parse_hash(&leaf)
                .ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "a leaf hash is 64 hex digits"))?;
            read(&service.ledger, move |l| l.find_leaf(&leaf)).await?.ok_or_else(absent)
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SizeQuery {
    /// Tree size to prove against; default: the latest checkpoint's.
    pub size: Option<u64>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub struct LeafPath {
    /// RFC 9162 leaf hash, hex.
    #[param(pattern = "^[0-9a-fA-F]{64}$")]
    pub leaf_hash: String,
}

/// The tree size to prove against, and the checkpoint when it is the latest one.
fn tree_size(service: &LedgerService, size: Option<u64>) -> Result<(u64, Option<Arc<Published>>), ApiError> {
    let latest = service.latest();
    match (size, latest) {
        (None, Some(latest)) => Ok((latest.checkpoint.size, Some(latest))),
        (None, None) => Err(ApiError::new(ErrorCode::NotFound, "no checkpoint has been published yet")),
        (Some(size), latest) => {
            let at_latest = latest.filter(|l| l.checkpoint.size == size);
            Ok((size, at_latest))
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SealView {
    pub event_seq: u64,
    /// The leaf's entry data: SHA-256("seal-v1" || salt || event digest), base64.
    pub commitment: String,
    /// The seal's salt, base64 (not public: the tiles carry only the commitment).
    pub salt: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProofView {
    pub index: u64,
    pub tree_size: u64,
    /// base64
    pub leaf_hash: String,
    /// Sibling hashes, bottom-up, base64 (RFC 9162 §2.1.3).
    pub proof: Vec<String>,
    /// base64
    pub root: String,
    pub seal: SealView,
    /// The signed checkpoint of `tree_size`, when it is the latest one.
    pub checkpoint: Option<String>,
}

fn b64_all(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(|h| B64.encode(h)).collect()
}

impl InclusionProofView {
    /// The view of a proof of entry `index` in the tree of `size`; shared by
    /// the API and `caduceus ledger prove`.
    pub fn new(
        index: u64,
        size: u64,
        record: &SealRecord,
        leaf: &Hash,
        proof: &[Hash],
        root: &Hash,
        checkpoint: Option<&Published>,
    ) -> Self {
        Self {
            index,
            tree_size: size,
            leaf_hash: B64.encode(leaf),
            proof: b64_all(proof),
            root: B64.encode(root),
            seal: SealView {
                event_seq: record.event_seq,
                commitment: B64.encode(record.commitment),
                salt: B64.encode(record.salt),
            },
            checkpoint: checkpoint.map(Published::encoded),
        }
    }
}

impl ConsistencyProofView {
    pub fn new(first: u64, second: u64, first_root: &Hash, second_root: &Hash, proof: &[Hash]) -> Self {
        Self {
            first,
            second,
            first_root: B64.encode(first_root),
            second_root: B64.encode(second_root),
            proof: b64_all(proof),
        }
    }
}

async fn inclusion(state: &AppState, entry: Entry, size: Option<u64>) -> Result<Json<InclusionProofView>, ApiError> {
    let service = service(state)?;
    let index = resolve_entry(service, entry).await?;
    let (size, checkpoint) = tree_size(service, size)?;
    if index >= size {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("entry {index} is not in the tree of size {size}; publish a newer checkpoint"),
        ));
    }
    let (record, leaf, proof, root) = read(&service.ledger, move |l| {
        Ok((l.record(index)?, l.leaf_hash(index)?, l.inclusion_proof(index, size)?, l.root(size)?))
    })
    .await?;
    Ok(Json(InclusionProofView::new(index, size, &record, &leaf, &proof, &root, checkpoint.as_deref())))
}

/// An inclusion proof for entry `index` (admin).
#[utoipa::path(
    get,
    path = "/api/v1/ledger/entries/{index}/inclusion",
    tag = "ledger",
    params(("index" = u64, Path, description = "Entry index, from 0"), SizeQuery),
    security(("bearer" = [])),
    responses((status = 200, body = InclusionProofView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn entry_inclusion(
    _caller: Caller,
    State(state): State<AppState>,
    Path(index): Path<u64>,
    Query(query): Query<SizeQuery>,
) -> Result<Json<InclusionProofView>, ApiError> {
    inclusion(&state, Entry::Index(index), query.size).await
}

/// An inclusion proof for the entry sealing event `seq` (admin).
#[utoipa::path(
    get,
    path = "/api/v1/ledger/events/{seq}/inclusion",
    tag = "ledger",
    params(("seq" = u64, Path, description = "Spine sequence number of the event"), SizeQuery),
    security(("bearer" = [])),
    responses((status = 200, body = InclusionProofView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn event_inclusion(
    _caller: Caller,
    State(state): State<AppState>,
    Path(seq): Path<u64>,
    Query(query): Query<SizeQuery>,
) -> Result<Json<InclusionProofView>, ApiError> {
    inclusion(&state, Entry::Event(seq), query.size).await
}

/// An inclusion proof for the entry with this leaf hash (admin).
#[utoipa::path(
    get,
    path = "/api/v1/ledger/leaves/{leaf_hash}/inclusion",
    tag = "ledger",
    params(LeafPath, SizeQuery),
    security(("bearer" = [])),
    responses((status = 200, body = InclusionProofView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn leaf_inclusion(
    _caller: Caller,
    State(state): State<AppState>,
    Path(leaf): Path<LeafPath>,
    Query(query): Query<SizeQuery>,
) -> Result<Json<InclusionProofView>, ApiError> {
    inclusion(&state, Entry::Leaf(leaf.leaf_hash), query.size).await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// One tree size (at least 1).
    #[param(minimum = 1)]
    pub first: u64,
    /// The other (at least 1); default: the latest checkpoint's. The proof
    /// goes from the smaller to the larger, whichever order they are given in.
    #[param(minimum = 1)]
    pub second: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProofView {
    pub first: u64,
    pub second: u64,
    /// base64
    pub first_root: String,
    /// base64
    pub second_root: String,
    /// RFC 9162 §2.1.4 proof, base64.
    pub proof: Vec<String>,
}

/// A consistency proof between two tree sizes (admin).
#[utoipa::path(
    get,
    path = "/api/v1/ledger/consistency",
    tag = "ledger",
    params(ConsistencyQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, body = ConsistencyProofView),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn consistency(
    _caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyProofView>, ApiError> {
    let service = service(&state)?;
    let (other, _) = tree_size(service, query.second)?;
    let (first, second) = (query.first.min(other), query.first.max(other));
    if first == 0 {
        // Only reachable through a default: the latest checkpoint is of the empty tree.
        let empty = "a consistency proof starts from a non-empty tree, and the latest checkpoint is empty";
        return Err(ApiError::new(if query.first == 0 { ErrorCode::BadRequest } else { ErrorCode::NotFound }, empty));
    }
    let (proof, first_root, second_root) =
        read(&service.ledger, move |l| Ok((l.consistency_proof(first, second)?, l.root(first)?, l.root(second)?)))
            .await?;
    Ok(Json(ConsistencyProofView::new(first, second, &first_root, &second_root, &proof)))
}

/// An offline proof bundle (C2SP tlog-proof) for an entry against the
/// latest checkpoint. Its extra data is the seal's salt (16 bytes) and the
/// event's digest (32 bytes): with the event itself, anyone can recompute
/// the leaf. Check it with `caduceus ledger verify-proof`.
async fn bundle(state: &AppState, entry: Entry) -> Result<Response, ApiError> {
    Ok(text(proof_bundle(state, entry).await?, "no-store"))
}

/// The proof bundle of the event with spine sequence number `seq`, for the
/// vault's patient-verifiable access log.
pub async fn event_proof_bundle(state: &AppState, seq: u64) -> Result<String, ApiError> {
    proof_bundle(state, Entry::Event(seq)).await
}

/// The log's note verifier key, if the ledger runs here.
pub fn verifier_key(state: &AppState) -> Option<String> {
    service(state).ok().map(|s| s.checkpoints.verifier_key().to_string())
}

async fn proof_bundle(state: &AppState, entry: Entry) -> Result<String, ApiError> {
    let service = service(state)?;
    let index = resolve_entry(service, entry).await?;
    let published = latest(service)?;
    let size = published.checkpoint.size;
    if index >= size {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("entry {index} is not in the latest checkpoint (size {size}) yet"),
        ));
    }
    let (record, proof) =
        read(&service.ledger, move |l| Ok((l.record(index)?, l.inclusion_proof(index, size)?))).await?;
    let event = state.platform.store.events_after(record.event_seq.saturating_sub(1), 1).await?;
    let digest = event
        .into_iter()
        .find(|e| e.seq == record.event_seq)
        .map(|e| e.digest.0)
        .filter(|d| record.seals(d))
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "the sealed event is no longer stored"))?;
    let mut extra = record.salt.to_vec();
    extra.extend_from_slice(&digest);
    let bundle = TlogProof { extra: Some(extra), index, proof, checkpoint: published.note.clone() };
    Ok(bundle.encode())
}

/// An offline proof bundle (C2SP tlog-proof) for entry `index` (admin).
#[utoipa::path(
    get,
    path = "/api/v1/ledger/entries/{index}/bundle",
    tag = "ledger",
    params(("index" = u64, Path, description = "Entry index, from 0")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "C2SP tlog-proof", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn entry_bundle(
    _caller: Caller,
    State(state): State<AppState>,
    Path(index): Path<u64>,
) -> Result<Response, ApiError> {
    bundle(&state, Entry::Index(index)).await
}

/// An offline proof bundle (C2SP tlog-proof) for event `seq` (admin).
#[utoipa::path(
    get,
    path = "/api/v1/ledger/events/{seq}/bundle",
    tag = "ledger",
    params(("seq" = u64, Path, description = "Spine sequence number of the event")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "C2SP tlog-proof", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn event_bundle(
    _caller: Caller,
    State(state): State<AppState>,
    Path(seq): Path<u64>,
) -> Result<Response, ApiError> {
    bundle(&state, Entry::Event(seq)).await
}

/// An offline proof bundle (C2SP tlog-proof) for the entry with this leaf hash (admin).
#[utoipa::path(
    get,
    path = "/api/v1/ledger/leaves/{leaf_hash}/bundle",
    tag = "ledger",
    params(LeafPath),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "C2SP tlog-proof", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn leaf_bundle(
    _caller: Caller,
    State(state): State<AppState>,
    Path(leaf): Path<LeafPath>,
) -> Result<Response, ApiError> {
    bundle(&state, Entry::Leaf(leaf.leaf_hash)).await
}
