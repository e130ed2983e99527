//! The network stage over HTTP: its status (model in use, counters) for
//! `read_alerts`, and pcap upload for `manage_detection` — the capture is
//! assembled into flows that go on the spine like any other source's.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::Caller;
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};

fn network(state: &AppState) -> Result<&Arc<crate::network::NetworkService>, ApiError> {
    state.network.as_ref().ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the network stage is not enabled"))
}

/// The model the network stage scores flows with.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelStatus {
    /// `gbt`, `online` or `onnx`.
    #[schema(max_length = 32)]
    pub kind: String,
    #[schema(max_length = 4096)]
    pub path: String,
    /// Feature columns the model reads, in order.
    #[schema(max_items = 4096)]
    pub features: Vec<String>,
    /// Score at or above which a flow raises an alert.
    pub threshold: f32,
}

/// Counters of the network stage since start.
#[derive(Debug, Serialize, ToSchema)]
pub struct NetworkStatus {
    pub model: Option<ModelStatus>,
    pub flows_ingested: u64,
    pub ids_alerts_ingested: u64,
    pub telemetry_ingested: u64,
    pub source_errors: u64,
    pub flows_judged: u64,
    pub findings_model: u64,
    pub findings_online: u64,
    pub findings_protocol: u64,
    pub findings_baseline: u64,
    /// Devices with a baseline (learning or learned).
    pub baseline_devices: u64,
    /// Devices whose baselines were read back from disk at start.
    pub baseline_devices_restored: u64,
    /// Times the baselines were saved to disk.
    pub baseline_saves: u64,
    pub baseline_save_errors: u64,
    /// Flows the online detector had learned before the restart (read back from disk).
    pub online_flows_restored: u64,
    /// Times the online detector was saved to disk.
    pub online_saves: u64,
    pub online_save_errors: u64,
    pub model_loads: u64,
    pub model_load_errors: u64,
}

#[utoipa::path(
    get,
    path = "/api/v1/network/status",
    tag = "network",
    security(("bearer" = [])),
    responses((status = 200, body = NetworkStatus), (status = 503, body = ErrorBody))
)]
pub async fn status(State(state): State<AppState>, Caller(_caller): Caller) -> Result<Json<NetworkStatus>, ApiError> {
    let service = network(&state)?;
    let c = &service.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let model = service.model().map(|m| ModelStatus {
        kind: m.model.kind().as_str().to_owned(),
        path: m.path.display().to_string(),
        features: m.model.feature_names().to_vec(),
        threshold: m.threshold,
    });
    Ok(Json(NetworkStatus {
        model,
        flows_ingested: get(&c.flows_ingested),
        ids_alerts_ingested: get(&c.ids_alerts_ingested),
        telemetry_ingested: get(&c.telemetry_ingested),
        source_errors: get(&c.source_errors),
        flows_judged: get(&c.flows_judged),
        findings_model: get(&c.findings_model),
        findings_online: get(&c.findings_online),
        findings_protocol: get(&c.findings_protocol),
        findings_baseline: get(&c.findings_baseline),
        baseline_devices: get(&c.baseline_devices),
        baseline_devices_restored: get(&c.baseline_devices_restored),
        baseline_saves: get(&c.baseline_saves),
        baseline_save_errors: get(&c.baseline_save_errors),
        online_flows_restored: get(&c.online_flows_restored),
        online_saves: get(&c.online_saves),
        online_save_errors: get(&c.online_save_errors),
        model_loads: get(&c.model_loads),
        model_load_errors: get(&c.model_load_errors),
    }))
}

/// What a posted capture held.
#[derive(Debug, Serialize, ToSchema)]
pub struct PcapReceipt {
    /// Packets read.
    pub packets: u64,
    /// Packets that were not IP or could not be parsed.
    pub skipped: u64,
    /// Flows assembled and published on the spine.
    pub flows: u64,
}

#[utoipa::path(
    post,
    path = "/api/v1/network/pcap",
    tag = "network",
    // Documented as octet-stream, which every OpenAPI client can send; the
    // handler also takes the registered `application/vnd.tcpdump.pcap`.
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "A pcap or pcapng capture, up to `server.max_body_bytes`; \
            `application/vnd.tcpdump.pcap` is accepted too"),
    security(("bearer" = [])),
    responses(
        (status = 202, body = PcapReceipt),
        (status = 400, description = "not a pcap or pcapng capture", body = ErrorBody),
        (status = 413, description = "body over `server.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "not `application/vnd.tcpdump.pcap` or `application/octet-stream`", body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn post_pcap(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<PcapReceipt>), ApiError> {
    let service = network(&state)?.clone();
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if !matches!(essence.as_str(), "application/vnd.tcpdump.pcap" | "application/octet-stream") {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send the capture as application/vnd.tcpdump.pcap (pcap or pcapng)",
        ));
    }
    let summary = tokio::task::spawn_blocking(move || {
        caduceus_net::pcap::read_pcap(body.as_ref(), &caduceus_net::pcap::PcapOptions::default())
    })
    .await
    .map_err(|_| ApiError::new(ErrorCode::Internal, "reading the capture failed"))?
    .map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("not a readable capture: {e}")))?;
    let flows = service.publish_flows("caduceus", &summary.flows).await;
    Ok((
        StatusCode::ACCEPTED,
        Json(PcapReceipt { packets: summary.packets, skipped: summary.skipped, flows: flows as u64 }),
    ))
}
