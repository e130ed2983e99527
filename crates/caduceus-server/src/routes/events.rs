//! The event spine over HTTP: read the persisted events in order, and submit
//! one (for sensors and integrations; admin only until identity lands).

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use caduceus_core::{Actor, Payload, SecurityEvent, Severity, Target};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access::Caller;
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};

/// Most events one page returns.
pub const MAX_PAGE: u32 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventQuery {
    /// Return events with `seq` greater than this (default 0: from the start).
    pub after: Option<u64>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventRecord {
    pub seq: u64,
    /// SHA-256 of the event's RFC 8785 canonical form, hex.
    pub digest: String,
    pub event: SecurityEvent,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// Pass as `after` to get the next page; absent on the last page.
    pub next_after: Option<u64>,
}

/// List persisted events in spine order (admin).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(EventQuery),
    security(("bearer" = [])),
    responses((status = 200, body = EventPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn list_events(
    _caller: Caller,
    State(state): State<AppState>,
    Query(query): Query<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::new(ErrorCode::BadRequest, format!("limit must be between 1 and {MAX_PAGE}")));
    }
    let stored = state.platform.store.events_after(query.after.unwrap_or(0), limit).await?;
    let next_after = if stored.len() == limit as usize { stored.last().map(|e| e.seq) } else { None };
    let events =
        stored.into_iter().map(|s| EventRecord { seq: s.seq, digest: s.digest.to_hex(), event: s.event }).collect();
    Ok(Json(EventPage { events, next_after }))
}

/// An event to publish; the server assigns its id and time.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventSubmission {
    pub severity_id: Severity,
    pub actor: Actor,
    pub target: Option<Target>,
    #[schema(max_length = 4096)]
    pub message: String,
    pub payload: Payload,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventReceipt {
    pub seq: u64,
    pub digest: String,
}

/// Publish an event onto the spine; answers once it is durable (admin).
#[utoipa::path(
    post,
    path = "/api/v1/events",
    tag = "events",
    request_body = EventSubmission,
    security(("bearer" = [])),
    responses(
        (status = 202, body = EventReceipt),
        (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 413, description = "body over `server.max_body_bytes`", body = ErrorBody),
        (status = 415, description = "not `Content-Type: application/json`", body = ErrorBody),
        (status = 422, description = "JSON that does not match the schema", body = ErrorBody),
        (status = 503, description = "spine full or shutting down", body = ErrorBody)
    )
)]
pub async fn submit_event(
    _caller: Caller,
    State(state): State<AppState>,
    Json(submission): Json<EventSubmission>,
) -> Result<(StatusCode, Json<EventReceipt>), ApiError> {
    let platform = &state.platform;
    // Alerts come from the detection engine only: a sensor sends what it
    // saw (a `log_record`), and the rules decide.
    if matches!(submission.payload, caduceus_core::Payload::DetectionFinding { .. }) {
        return Err(ApiError::new(
            ErrorCode::Unprocessable,
            "detection findings are made by the detection engine; submit a log_record instead",
        ));
    }
    let event = platform
        .event(submission.severity_id, submission.actor, submission.target, &submission.message, submission.payload)
        .map_err(|e| ApiError::new(ErrorCode::BadRequest, e.to_string()))?;
    let receipt = platform.publish(event).await?;
    Ok((StatusCode::ACCEPTED, Json(EventReceipt { seq: receipt.seq, digest: receipt.digest.to_hex() })))
}
