//! Liveness, readiness and metrics, for load balancers and Prometheus.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the process is alive.
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness: the process is up and answering.
#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok", version: caduceus_core::VERSION })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` when storage answers.
    pub status: &'static str,
    /// `sqlite` or `postgres`.
    pub storage: &'static str,
}

/// Readiness: storage is reachable, so requests can be served.
#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    responses((status = 200, body = Readiness), (status = 503, body = ErrorBody))
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let store = &state.platform.store;
    store.ping().await.map_err(|e| {
        tracing::warn!(error = %e, "readiness check failed");
        ApiError::new(ErrorCode::Unavailable, "storage is unreachable")
    })?;
    Ok(Json(Readiness { status: "ready", storage: store.backend().as_str() }))
}

/// Prometheus metrics in the OpenMetrics text format.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"))
)]
pub async fn metrics(State(state): State<AppState>) -> Result<impl IntoResponse, ApiError> {
    let body = state.metrics.render().map_err(ApiError::internal)?;
    Ok(([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body))
}
