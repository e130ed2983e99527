//! Alerts and suppressions: list and read alerts (`read_alerts`), and
//! triage them — acknowledge, assign, close, suppress — and manage
//! suppressions (`manage_detection`). Every change is recorded on the spine
//! as an API Activity event naming the alert or suppression, never its free
//! text (a reason may mention a patient). The store enforces which step may
//! follow which, atomically.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use caduceus_core::{Payload, Severity, Target, Timestamp};
use caduceus_detect::alerts::{AlertState, AlertView};
use caduceus_identity::service::Principal;
use caduceus_store::StoreError;
use caduceus_store::detect::{AlertAction, AlertFilter, AlertRow, SuppressionRow};
use serde::{Deserialize, Serialize};
use utoipa::openapi::schema::{AdditionalProperties, AnyOfBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{KnownFormat, RefOr, SchemaFormat};
use utoipa::{IntoParams, PartialSchema, ToSchema};

use crate::access::Caller;
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::routes::JsonObject;

/// Longest a suppression may last: 90 days. A suppression is a decision
/// to stop looking; it must come up for review.
pub const MAX_SUPPRESS_MINUTES: u32 = 90 * 24 * 60;
/// Longest reason for closing or suppressing.
pub const MAX_REASON_CHARS: usize = 1024;
/// Longest assignee, rule id or entity.
pub const MAX_NAME_CHARS: usize = 256;
/// The latest time a filter may name (9999-12-31T23:59:59.999Z).
const MAX_TIME_MS: i64 = 253_402_300_799_999;

/// A severity, as Sigma levels are spelled.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SeverityLevel {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

impl From<SeverityLevel> for Severity {
    fn from(level: SeverityLevel) -> Self {
        match level {
            SeverityLevel::Informational => Severity::Informational,
            SeverityLevel::Low => Severity::Low,
            SeverityLevel::Medium => Severity::Medium,
            SeverityLevel::High => Severity::High,
            SeverityLevel::Critical => Severity::Critical,
        }
    }
}

/// Which part of the engine raised an alert.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    Sigma,
    Correlation,
    Ehr,
    Network,
    Baseline,
}

impl AlertKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Sigma => "sigma",
            Self::Correlation => "correlation",
            Self::Ehr => "ehr",
            Self::Network => "network",
            Self::Baseline => "baseline",
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    #[param(inline)]
    pub status: Option<AlertState>,
    /// At least this severity.
    #[param(inline)]
    pub severity: Option<SeverityLevel>,
    #[param(max_length = 256)]
    pub rule_id: Option<String>,
    /// A user id or host name.
    #[param(max_length = 256)]
    pub entity: Option<String>,
    #[param(inline)]
    pub kind: Option<AlertKind>,
    /// Alerts active at or after this time (ms since the Unix epoch).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub since: Option<i64>,
    /// Alerts active at or before this time (ms since the Unix epoch).
    #[param(minimum = 0, maximum = 253_402_300_799_999_i64)]
    pub until: Option<i64>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,15}\\.[A-Za-z0-9-]{1,64}$")]
    pub cursor: Option<String>,
}

/// One page of alerts, newest activity first. An alert that gains a
/// finding while pages are read moves to the front.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPage {
    #[schema(max_items = 500)]
    pub alerts: Vec<AlertView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[schema(max_length = 96)]
    pub next_cursor: Option<String>,
}

fn cursor_of(alert: &AlertRow) -> Option<String> {
    let id_ok = (1..=64).contains(&alert.id.len()) && alert.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (id_ok && (0..=999_999_999_999_999).contains(&alert.last_seen.0))
        .then(|| format!("{}.{}", alert.last_seen.0, alert.id))
}

/// `<last_seen ms>.<alert id>`, exactly as the documented pattern.
fn parse_cursor(cursor: &str) -> Option<(Timestamp, String)> {
    let (ms, id) = cursor.split_once('.')?;
    let digits = (1..=15).contains(&ms.len()) && ms.bytes().all(|b| b.is_ascii_digit());
    let id_ok = (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    (digits && id_ok).then(|| Some((Timestamp(ms.parse().ok()?), id.to_owned()))).flatten()
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::BadRequest, message)
}

fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such alert")
}

fn check_len(what: &str, value: &str, max: usize) -> Result<(), ApiError> {
    let n = value.chars().count();
    if n == 0 || n > max {
        return Err(ApiError::new(ErrorCode::Unprocessable, format!("{what} must be 1 to {max} characters")));
    }
    Ok(())
}

fn check_minutes(minutes: u32) -> Result<(), ApiError> {
    if !(1..=MAX_SUPPRESS_MINUTES).contains(&minutes) {
        return Err(ApiError::new(
            ErrorCode::Unprocessable,
            format!("duration_minutes must be 1 to {MAX_SUPPRESS_MINUTES} (90 days)"),
        ));
    }
    Ok(())
}

/// Alerts, filtered, newest activity first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "A page of alerts", body = AlertPage),
        (status = 400, description = "A filter is out of range", body = ErrorBody),
        (status = 503, description = "Storage or the audit trail is unavailable", body = ErrorBody)
    )
)]
pub async fn list_alerts(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<AlertQuery>,
) -> Result<Json<AlertPage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(bad_request("limit must be between 1 and 500"));
    }
    for (name, value) in [("rule_id", &query.rule_id), ("entity", &query.entity)] {
        if value.as_ref().is_some_and(|v| v.chars().count() > MAX_NAME_CHARS) {
            return Err(bad_request(format!("{name} is at most {MAX_NAME_CHARS} characters")));
        }
    }
    for (name, value) in [("since", query.since), ("until", query.until)] {
        if value.is_some_and(|v| !(0..=MAX_TIME_MS).contains(&v)) {
            return Err(bad_request(format!("{name} must be between 0 and {MAX_TIME_MS} (ms since the epoch)")));
        }
    }
    let after = match &query.cursor {
        Some(cursor) => Some(parse_cursor(cursor).ok_or_else(|| bad_request("cursor is not one this API returned"))?),
        None => None,
    };
    let filter = AlertFilter {
        status: query.status.map(Into::into),
        severity_min: query.severity.map(Into::into),
        rule_id: query.rule_id,
        entity: query.entity,
        kind: query.kind.map(|k| k.as_str().to_owned()),
        since: query.since.map(Timestamp),
        until: query.until.map(Timestamp),
        after,
        limit,
    };
    let rows = state.platform.store.list_alerts(&filter).await?;
    let next_cursor = if rows.len() == limit as usize { rows.last().and_then(cursor_of) } else { None };
    Ok(Json(AlertPage { alerts: rows.iter().map(AlertView::from).collect(), next_cursor }))
}

/// One alert, with its explanation and triage history.
#[utoipa::path(
    get,
    path = "/api/v1/alerts/{id}",
    tag = "alerts",
    params(("id" = String, Path, max_length = 256)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The alert", body = AlertView),
        (status = 404, description = "No such alert or suppression", body = ErrorBody),
        (status = 503, description = "Storage or the audit trail is unavailable", body = ErrorBody)
    )
)]
pub async fn get_alert(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<AlertView>, ApiError> {
    let row = state.platform.store.get_alert(&id).await?.ok_or_else(not_found)?;
    Ok(Json(AlertView::from(&row)))
}

/// Apply a triage step; record it on the spine. The step is stored first
/// and then recorded (as account changes are): if the spine refuses the
/// event, the caller gets the error and the step stands.
async fn triage(
    state: &AppState,
    caller: &Principal,
    id: &str,
    action: AlertAction,
    what: &str,
) -> Result<AlertRow, ApiError> {
    let now = state.platform.clock.now();
    let row = match state.platform.store.update_alert(id, &action, now).await {
        Ok(Some(row)) => row,
        Ok(None) => return Err(not_found()),
        Err(StoreError::Conflict(message)) => {
            return Err(ApiError::new(ErrorCode::Conflict, format!("{message}; {what} is not possible")));
        }
        Err(e) => return Err(e.into()),
    };
    let detail = match &action {
        AlertAction::Acknowledge { .. } => format!("alert {id} acknowledged"),
        AlertAction::Assign { assignee: Some(to), .. } => format!("alert {id} assigned to {to}"),
        AlertAction::Assign { assignee: None, .. } => format!("alert {id} unassigned"),
        AlertAction::Close { .. } => format!("alert {id} closed"),
        AlertAction::Suppress { until, suppression_id, .. } => {
            format!("alert {id} suppressed until {} (suppression {suppression_id})", until.to_rfc3339())
        }
    };
    record(state, caller, &format!("detect.alert.{what}"), Target { kind: "alert".into(), uid: id.to_owned() }, detail)
        .await?;
    Ok(row)
}

/// Record a change on the spine. The detail names ids, never free text.
async fn record(
    state: &AppState,
    caller: &Principal,
    key: &str,
    target: Target,
    detail: String,
) -> Result<(), ApiError> {
    let payload = Payload::ConfigChange { key: key.to_owned(), detail: detail.chars().take(4000).collect() };
    state.platform.record(Severity::Informational, caller.actor(), Some(target), "alert triage", payload).await?;
    Ok(())
}

/// Acknowledge an open alert: someone is on it. Acknowledging again changes nothing.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/acknowledge",
    tag = "alerts",
    params(("id" = String, Path, max_length = 256)),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The alert", body = AlertView),
        (status = 404, description = "No such alert or suppression", body = ErrorBody),
        (status = 409, description = "The alert is closed or suppressed", body = ErrorBody),
        (status = 503, description = "Storage or the audit trail is unavailable", body = ErrorBody)
    )
)]
pub async fn acknowledge(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<AlertView>, ApiError> {
    let by = caller.actor().uid;
    let row = triage(&state, &caller, &id, AlertAction::Acknowledge { by }, "acknowledged").await?;
    Ok(Json(AlertView::from(&row)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Who works on it (a username or a team); null or absent: nobody.
    #[schema(min_length = 1, max_length = 256)]
    pub assignee: Option<String>,
}

/// Give an alert to someone, or to nobody.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/assign",
    tag = "alerts",
    params(("id" = String, Path, max_length = 256)),
    request_body = Assignment,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The alert", body = AlertView),
        (status = 404, description = "No such alert or suppression", body = ErrorBody),
        (status = 409, description = "The alert is closed", body = ErrorBody),
        (status = 422, description = "The body does not match the schema", body = ErrorBody),
        (status = 503, description = "Storage or the audit trail is unavailable", body = ErrorBody)
    )
)]
pub async fn assign(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonObject(request): JsonObject<Assignment>,
) -> Result<Json<AlertView>, ApiError> {
    if let Some(assignee) = &request.assignee {
        check_len("assignee", assignee, MAX_NAME_CHARS)?;
    }
    let action = AlertAction::Assign { by: caller.actor().uid, assignee: request.assignee };
    let row = triage(&state, &caller, &id, action, "assigned").await?;
    Ok(Json(AlertView::from(&row)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Closing {
    /// Why: what it was, what was done.
    #[schema(min_length = 1, max_length = 1024)]
    pub reason: String,
}

/// Close an alert, saying why. A later finding opens a new alert.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/close",
    tag = "alerts",
    params(("id" = String, Path, max_length = 256)),
    request_body = Closing,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The alert", body = AlertView),
        (status = 404, description = "No such alert or suppression", body = ErrorBody),
        (status = 409, description = "The alert is closed already", body = ErrorBody),
        (status = 422, description = "The body does not match the schema", body = ErrorBody),
        (status = 503, description = "Storage or the audit trail is unavailable", body = ErrorBody)
    )
)]
pub async fn close(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonObject(request): JsonObject<Closing>,
) -> Result<Json<AlertView>, ApiError> {
    check_len("reason", &request.reason, MAX_REASON_CHARS)?;
    let action = AlertAction::Close { by: caller.actor().uid, reason: request.reason };
    let row = triage(&state, &caller, &id, action, "closed").await?;
    Ok(Json(AlertView::from(&row)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Suppressing {
    /// Why these findings need no attention for now.
    #[schema(min_length = 1, max_length = 1024)]
    pub reason: String,
    /// How long, in minutes (at most 90 days).
    #[schema(minimum = 1, maximum = 129_600)]
    pub duration_minutes: u32,
}

/// A suppression, as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionView {
    #[schema(max_length = 64)]
    pub id: String,
    /// Absent: any rule.
    #[schema(max_length = 256)]
    pub rule_id: Option<String>,
    /// Absent: any entity.
    #[schema(max_length = 256)]
    pub entity: Option<String>,
    #[schema(max_length = 1024)]
    pub reason: String,
    #[schema(max_length = 256)]
    pub created_by: String,
    pub created: i64,
    #[schema(max_length = 64)]
    pub created_time: String,
    pub expires: i64,
    #[schema(max_length = 64)]
    pub expires_time: String,
    /// Not expired yet.
    pub active: bool,
}

impl SuppressionView {
    fn of(row: &SuppressionRow, now: Timestamp) -> Self {
        Self {
            id: row.id.clone(),
            rule_id: row.rule_id.clone(),
            entity: row.entity.clone(),
            reason: row.reason.clone(),
            created_by: row.created_by.clone(),
            created: row.created.as_millis(),
            created_time: row.created.to_rfc3339(),
            expires: row.expires.as_millis(),
            expires_time: row.expires.to_rfc3339(),
            active: row.expires > now,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressedAlert {
    pub alert: AlertView,
    pub suppression: SuppressionView,
}

fn expiry(now: Timestamp, minutes: u32) -> Timestamp {
    Timestamp(now.as_millis().saturating_add(i64::from(minutes) * 60_000))
}

/// Suppress an alert and, until the suppression expires, every new finding
/// of its rule about its entity (stored as suppressed alerts, not open
/// ones). An alert without an entity suppresses its rule for every entity.
#[utoipa::path(
    post,
    path = "/api/v1/alerts/{id}/suppress",
    tag = "alerts",
    params(("id" = String, Path, max_length = 256)),
    request_body = Suppressing,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The alert, and the suppression made", body = SuppressedAlert),
        (status = 404, description = "No such alert or suppression", body = ErrorBody),
        (status = 409, description = "The alert is closed", body = ErrorBody),
        (status = 422, description = "The body does not match the schema", body = ErrorBody),
        (status = 503, description = "Storage or the audit trail is unavailable", body = ErrorBody)
    )
)]
pub async fn suppress(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
    JsonObject(request): JsonObject<Suppressing>,
) -> Result<Json<SuppressedAlert>, ApiError> {
    check_len("reason", &request.reason, MAX_REASON_CHARS)?;
    check_minutes(request.duration_minutes)?;
    let now = state.platform.clock.now();
    let suppression_id = uuid::Uuid::new_v4().to_string();
    let action = AlertAction::Suppress {
        by: caller.actor().uid,
        reason: request.reason,
        until: expiry(now, request.duration_minutes),
        suppression_id: suppression_id.clone(),
    };
    let row = triage(&state, &caller, &id, action, "suppressed").await?;
    let suppression = state
        .platform
        .store
        .get_suppression(&suppression_id)
        .await?
        .ok_or_else(|| ApiError::internal("a suppression just created is missing"))?;
    Ok(Json(SuppressedAlert { alert: AlertView::from(&row), suppression: SuppressionView::of(&suppression, now) }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SuppressionQuery {
    /// Also list expired suppressions (default: only active ones).
    pub include_expired: Option<bool>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionList {
    #[schema(max_items = 500)]
    pub suppressions: Vec<SuppressionView>,
}

/// Suppressions, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/suppressions",
    tag = "alerts",
    params(SuppressionQuery),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Suppressions, newest first", body = SuppressionList),
        (status = 400, description = "A filter is out of range", body = ErrorBody),
        (status = 503, description = "Storage or the audit trail is unavailable", body = ErrorBody)
    )
)]
pub async fn list_suppressions(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<SuppressionQuery>,
) -> Result<Json<SuppressionList>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(bad_request("limit must be between 1 and 500"));
    }
    let now = state.platform.clock.now();
    let active_at = if query.include_expired.unwrap_or(false) { None } else { Some(now) };
    let rows = state.platform.store.list_suppressions(active_at, limit).await?;
    Ok(Json(SuppressionList { suppressions: rows.iter().map(|r| SuppressionView::of(r, now)).collect() }))
}

/// A suppression to create: of a rule, of an entity, or of a rule for one
/// entity (at least one of the two). Its schema says so (`anyOf`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSuppression {
    pub rule_id: Option<String>,
    pub entity: Option<String>,
    pub reason: String,
    pub duration_minutes: u32,
}

impl PartialSchema for NewSuppression {
    /// Two object shapes, one requiring `rule_id` and one requiring
    /// `entity`, each closed to other fields.
    fn schema() -> RefOr<Schema> {
        let text = |max: usize, description: &str| {
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(max))
                .description(Some(description))
        };
        let nullable_text = |max: usize, description: &str| {
            ObjectBuilder::new()
                .schema_type(utoipa::openapi::schema::SchemaType::from_iter([Type::String, Type::Null]))
                .min_length(Some(1))
                .max_length(Some(max))
                .description(Some(description))
        };
        let rule_doc = "Suppress findings of this rule (absent: of any rule).";
        let entity_doc = "Suppress findings about this user or host (absent: about any).";
        let shape = |required: &str| {
            let (rule, entity) = if required == "rule_id" {
                (text(MAX_NAME_CHARS, rule_doc), nullable_text(MAX_NAME_CHARS, entity_doc))
            } else {
                (nullable_text(MAX_NAME_CHARS, rule_doc), text(MAX_NAME_CHARS, entity_doc))
            };
            ObjectBuilder::new()
                .property("rule_id", rule)
                .property("entity", entity)
                .property("reason", text(MAX_REASON_CHARS, "Why these findings need no attention for now."))
                .property(
                    "duration_minutes",
                    ObjectBuilder::new()
                        .schema_type(Type::Integer)
                        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int32)))
                        .minimum(Some(1))
                        .maximum(Some(MAX_SUPPRESS_MINUTES))
                        .description(Some("How long, in minutes (at most 90 days).")),
                )
                .required(required)
                .required("reason")
                .required("duration_minutes")
                .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        AnyOfBuilder::new()
            .item(shape("rule_id"))
            .item(shape("entity"))
            .description(Some("A suppression of a rule, of an entity, or of a rule for one entity."))
            .into()
    }
}

impl ToSchema for NewSuppression {}

/// Create a suppression: while it lasts, new findings it matches are
/// stored as suppressed alerts.
#[utoipa::path(
    post,
    path = "/api/v1/suppressions",
    tag = "alerts",
    request_body = NewSuppression,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "The suppression made", body = SuppressionView),
        (status = 422, description = "The body does not match the schema", body = ErrorBody),
        (status = 503, description = "Storage or the audit trail is unavailable", body = ErrorBody)
    )
)]
pub async fn create_suppression(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonObject(request): JsonObject<NewSuppression>,
) -> Result<(StatusCode, Json<SuppressionView>), ApiError> {
    if request.rule_id.is_none() && request.entity.is_none() {
        return Err(ApiError::new(
            ErrorCode::Unprocessable,
            "name a rule_id, an entity or both: a suppression of everything is not allowed",
        ));
    }
    for (name, value) in [("rule_id", &request.rule_id), ("entity", &request.entity)] {
        if let Some(value) = value {
            check_len(name, value, MAX_NAME_CHARS)?;
        }
    }
    check_len("reason", &request.reason, MAX_REASON_CHARS)?;
    check_minutes(request.duration_minutes)?;
    let now = state.platform.clock.now();
    let row = SuppressionRow {
        id: uuid::Uuid::new_v4().to_string(),
        rule_id: request.rule_id,
        entity: request.entity,
        reason: request.reason,
        created_by: caller.actor().uid,
        created: now,
        expires: expiry(now, request.duration_minutes),
    };
    state.platform.store.add_suppression(&row).await?;
    let scope = match (&row.rule_id, &row.entity) {
        (Some(rule), Some(entity)) => format!("rule {rule} for entity {entity}"),
        (Some(rule), None) => format!("rule {rule} for every entity"),
        (None, Some(entity)) => format!("every rule for entity {entity}"),
        (None, None) => String::new(),
    };
    let detail = format!("suppression {} created: {scope} until {}", row.id, row.expires.to_rfc3339());
    let target = Target { kind: "suppression".into(), uid: row.id.clone() };
    record(&state, &caller, "detect.suppression.created", target, detail).await?;
    Ok((StatusCode::CREATED, Json(SuppressionView::of(&row, now))))
}

/// Lift a suppression at once. Alerts it suppressed stay suppressed.
#[utoipa::path(
    delete,
    path = "/api/v1/suppressions/{id}",
    tag = "alerts",
    params(("id" = String, Path, max_length = 256)),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Lifted"),
        (status = 404, description = "No such alert or suppression", body = ErrorBody),
        (status = 503, description = "Storage or the audit trail is unavailable", body = ErrorBody)
    )
)]
pub async fn delete_suppression(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !state.platform.store.delete_suppression(&id).await? {
        return Err(ApiError::new(ErrorCode::NotFound, "no such suppression"));
    }
    let target = Target { kind: "suppression".into(), uid: id.clone() };
    record(&state, &caller, "detect.suppression.deleted", target, format!("suppression {id} deleted")).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

    use super::*;

    #[test]
    fn cursors_round_trip_and_match_their_pattern_exactly() {
        assert_eq!(
            parse_cursor("1767225600000.0193a000-7000-8000"),
            Some((Timestamp(1_767_225_600_000), "0193a000-7000-8000".into()))
        );
        for bad in [
            "",
            ".",
            "1.",
            ".a",
            "1.a.b",
            "1234567890123456.a",
            "1.a b",
            "1.a\n",
            "x.a",
            "-1.a",
            &format!("1.{}", "a".repeat(65)),
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_new_suppression_schema_needs_a_rule_or_an_entity() {
        let json = serde_json::to_value(NewSuppression::schema()).unwrap();
        let shapes = json["anyOf"].as_array().unwrap();
        assert_eq!(shapes.len(), 2);
        assert_eq!(shapes[0]["required"], serde_json::json!(["rule_id", "reason", "duration_minutes"]));
        assert_eq!(shapes[1]["required"], serde_json::json!(["entity", "reason", "duration_minutes"]));
        assert_eq!(shapes[0]["additionalProperties"], false);
        assert_eq!(shapes[0]["properties"]["duration_minutes"]["maximum"], 129_600);
        assert_eq!(shapes[1]["properties"]["rule_id"]["type"], serde_json::json!(["string", "null"]));
    }
}
