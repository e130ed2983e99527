//! Platform status for operators: version, storage backend, spine counters.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use crate::access::Caller;
use crate::app::AppState;
use crate::error::ErrorBody;

#[derive(Debug, Serialize, ToSchema)]
pub struct SpineStatus {
    pub capacity: usize,
    pub head_seq: u64,
    pub depth: u64,
    pub published: u64,
    pub rejected_full: u64,
    pub rejected_closed: u64,
    pub persist_failed: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PlatformStatus {
    pub version: &'static str,
    pub storage: &'static str,
    pub spine: SpineStatus,
}

/// Platform status (admin).
#[utoipa::path(
    get,
    path = "/api/v1/status",
    tag = "operations",
    security(("bearer" = [])),
    responses((status = 200, body = PlatformStatus), (status = 401, body = ErrorBody))
)]
pub async fn status(_caller: Caller, State(state): State<AppState>) -> Json<PlatformStatus> {
    let s = state.platform.spine.stats();
    Json(PlatformStatus {
        version: caduceus_core::VERSION,
        storage: state.platform.store.backend().as_str(),
        spine: SpineStatus {
            capacity: s.capacity,
            head_seq: s.head,
            depth: s.depth,
            published: s.published,
            rejected_full: s.rejected_full,
            rejected_closed: s.rejected_closed,
            persist_failed: s.persist_failed,
        },
    })
}
