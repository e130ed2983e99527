//! Detection rules: list the loaded Sigma rules, add rules, enable and
//! disable them, and test rules against sample events before they go live.
//! Reading needs `read_alerts`; changes need `manage_detection` and are
//! recorded on the spine.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use caduceus_core::{Payload, Severity};
use caduceus_detect::offline;
use caduceus_detect::sigma::RuleSet;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access::Caller;
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::routes::JsonObject;

/// Largest rule file accepted through the API (64 Ki characters, at most
/// 256 KiB of UTF-8: within the default body limit).
const MAX_RULE_BYTES: usize = 256 * 1024;
const MAX_RULE_CHARS: usize = 64 * 1024;
/// Most sample events in one rule test.
const MAX_TEST_EVENTS: usize = 200;

fn detect(state: &AppState) -> Result<&Arc<crate::detect::DetectService>, ApiError> {
    state.detect.as_ref().ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "detection is not enabled"))
}

/// A loaded rule.
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    #[schema(max_length = 256)]
    pub id: String,
    #[schema(max_length = 1024)]
    pub title: String,
    /// `informational`, `low`, `medium`, `high` or `critical`.
    #[schema(max_length = 32)]
    pub level: Option<String>,
    #[schema(max_items = 64)]
    pub tags: Vec<String>,
    /// `product/service/category`, empty parts as `*`.
    #[schema(max_length = 1024)]
    pub logsource: String,
    pub enabled: bool,
    /// `api` for rules added through the API, else the file.
    #[schema(max_length = 4096)]
    pub origin: String,
    /// `detection` or `correlation`.
    #[schema(max_length = 32)]
    pub kind: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleError {
    #[schema(max_length = 4096)]
    pub file: String,
    pub line: Option<u64>,
    #[schema(max_length = 4096)]
    pub message: String,
}

impl From<&caduceus_detect::RuleError> for RuleError {
    fn from(e: &caduceus_detect::RuleError) -> Self {
        Self { file: e.file.clone(), line: e.line.map(|l| l as u64), message: e.message.clone() }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RulePage {
    pub rules: Vec<RuleView>,
    /// Rules matching the filter, before `limit`/`offset`.
    pub total: u64,
    /// Rules that did not load, with file, line and reason.
    pub errors: Vec<RuleError>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RuleQuery {
    /// Only enabled (true) or disabled (false) rules.
    pub enabled: Option<bool>,
    /// Words to find in the title, id or tags (case-insensitive).
    #[param(max_length = 256)]
    pub q: Option<String>,
    /// At most this many (1..=500, default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

fn views(rules: &RuleSet, api_rules: &[String]) -> Vec<RuleView> {
    let mut out: Vec<RuleView> = rules
        .rules()
        .map(|rule| RuleView {
            id: rule.id.clone(),
            title: rule.title.clone(),
            level: rule.level.clone(),
            tags: rule.tags.clone(),
            logsource: logsource_text(&rule.logsource),
            enabled: rules.is_enabled(&rule.id).unwrap_or(false),
            origin: if api_rules.contains(&rule.id) { "api".into() } else { rule.file.clone() },
            kind: "detection".into(),
        })
        .collect();
    out.extend(rules.correlations().iter().map(|c| RuleView {
        id: c.id.clone(),
        title: c.title.clone(),
        level: c.level.clone(),
        tags: c.tags.clone(),
        logsource: "*/*/*".into(),
        enabled: true,
        origin: if api_rules.contains(&c.id) { "api".into() } else { c.file.clone() },
        kind: "correlation".into(),
    }));
    out
}

fn logsource_text(source: &caduceus_detect::sigma::LogSource) -> String {
    let part = |p: &Option<String>| p.clone().unwrap_or_else(|| "*".into());
    format!("{}/{}/{}", part(&source.product), part(&source.service), part(&source.category))
}

/// The detection rules, as loaded.
#[utoipa::path(
    get,
    path = "/api/v1/detect/rules",
    tag = "detection",
    params(RuleQuery),
    security(("bearer" = [])),
    responses((status = 200, body = RulePage), (status = 503, body = ErrorBody))
)]
pub async fn list_rules(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<RuleQuery>,
) -> Result<Json<RulePage>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(ErrorCode::BadRequest, "limit must be between 1 and 500"));
    }
    if query.offset.is_some_and(|o| o > 1_000_000) {
        return Err(ApiError::new(ErrorCode::BadRequest, "offset is at most 1000000"));
    }
    if query.q.as_ref().is_some_and(|q| q.len() > 256) {
        return Err(ApiError::new(ErrorCode::BadRequest, "q is at most 256 characters"));
    }
    let loaded = detect(&state)?.loaded();
    let needle = query.q.as_deref().map(str::to_lowercase);
    let matching: Vec<RuleView> = views(&loaded.rules, &loaded.api_rules)
        .into_iter()
        .filter(|r| query.enabled.is_none_or(|e| r.enabled == e))
        .filter(|r| {
            needle.as_deref().is_none_or(|n| {
                r.title.to_lowercase().contains(n) || r.id.contains(n) || r.tags.iter().any(|t| t.contains(n))
            })
        })
        .collect();
    let total = matching.len() as u64;
    let rules = matching.into_iter().skip(query.offset.unwrap_or(0) as usize).take(limit as usize).collect();
    Ok(Json(RulePage { rules, total, errors: loaded.errors.iter().take(1000).map(RuleError::from).collect() }))
}

/// One rule.
#[utoipa::path(
    get,
    path = "/api/v1/detect/rules/{rule_id}",
    tag = "detection",
    params(("rule_id" = String, Path, max_length = 256)),
    security(("bearer" = [])),
    responses((status = 200, body = RuleView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn get_rule(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(rule_id): Path<String>,
) -> Result<Json<RuleView>, ApiError> {
    let loaded = detect(&state)?.loaded();
    views(&loaded.rules, &loaded.api_rules)
        .into_iter()
        .find(|r| r.id == rule_id)
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such rule"))
}

/// A Sigma rule file to add: one or more YAML documents (detection rules
/// and correlations).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// The rule(s) in Sigma YAML (at most 64 Ki characters).
    #[schema(max_length = 65536)]
    pub yaml: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AddedRules {
    /// Ids of the rules added.
    pub ids: Vec<String>,
}

/// Check a rule file on its own and with the rules already loaded (ids
/// must not collide). Errors name the line.
fn check_rule_file(loaded: &crate::detect::LoadedRules, yaml: &str) -> Result<Vec<String>, ApiError> {
    if yaml.len() > MAX_RULE_BYTES || yaml.chars().count() > MAX_RULE_CHARS {
        return Err(ApiError::new(
            ErrorCode::Unprocessable,
            format!("a rule file is at most {MAX_RULE_CHARS} characters"),
        ));
    }
    let mut scratch = RuleSet::new();
    let ids = scratch
        .add_yaml("api", yaml)
        .map_err(|e| ApiError::new(ErrorCode::Unprocessable, format!("the rule does not load: {e}")))?;
    if let Some(taken) = ids
        .iter()
        .find(|id| loaded.rules.rule(id).is_some() || loaded.rules.correlations().iter().any(|c| &c.id == *id))
    {
        return Err(ApiError::new(ErrorCode::Conflict, format!("a rule with id {taken} is already loaded")));
    }
    Ok(ids)
}

/// Add rules. They are checked first: a rule that does not load is
/// refused with its line and reason.
#[utoipa::path(
    post,
    path = "/api/v1/detect/rules",
    tag = "detection",
    request_body = NewRule,
    security(("bearer" = [])),
    responses(
        (status = 201, body = AddedRules),
        (status = 409, description = "a rule with that id exists", body = ErrorBody),
        (status = 422, description = "the rule does not load", body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn create_rule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonObject(request): JsonObject<NewRule>,
) -> Result<(StatusCode, Json<AddedRules>), ApiError> {
    let service = detect(&state)?;
    let ids = check_rule_file(&service.loaded(), &request.yaml)?;
    let Some(first) = ids.first() else {
        return Err(ApiError::new(ErrorCode::Unprocessable, "the file holds no rule"));
    };
    let now = state.platform.clock.now();
    let row = caduceus_store::detect::RuleRow {
        id: first.clone(),
        title: scratch_title(&request.yaml, first),
        yaml: request.yaml.clone(),
        enabled: true,
        created_by: caller.actor().uid,
        created: now,
        updated: now,
    };
    state.platform.store.put_rule(&row).await?;
    service.reload().await?;
    record(&state, &caller, "detect.rule.created", &format!("rules {} added", ids.join(", "))).await?;
    Ok((StatusCode::CREATED, Json(AddedRules { ids })))
}

/// The title of a rule in a file already checked to load.
fn scratch_title(yaml: &str, id: &str) -> String {
    let mut scratch = RuleSet::new();
    let _ = scratch.add_yaml("api", yaml);
    scratch.rule(id).map(|r| r.title.clone()).unwrap_or_else(|| id.to_owned())
}

/// Remove a rule added through the API (rules from files stay; disable them instead).
#[utoipa::path(
    delete,
    path = "/api/v1/detect/rules/{rule_id}",
    tag = "detection",
    params(("rule_id" = String, Path, max_length = 256)),
    security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn delete_rule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(rule_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let service = detect(&state)?;
    if !state.platform.store.delete_rule(&rule_id).await? {
        let loaded = service.loaded();
        if loaded.rules.rule(&rule_id).is_some() {
            return Err(ApiError::new(
                ErrorCode::Conflict,
                "the rule comes from a rules directory; disable it instead",
            ));
        }
        return Err(ApiError::new(ErrorCode::NotFound, "no such rule"));
    }
    service.reload().await?;
    record(&state, &caller, "detect.rule.deleted", &format!("rule {rule_id} removed")).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn set_enabled(
    state: &AppState,
    caller: &caduceus_identity::service::Principal,
    rule_id: &str,
    enabled: bool,
) -> Result<Json<RuleView>, ApiError> {
    let service = detect(state)?;
    if service.loaded().rules.rule(rule_id).is_none() {
        return Err(ApiError::new(ErrorCode::NotFound, "no such rule"));
    }
    state.platform.store.set_rule_enabled(rule_id, enabled, &caller.actor().uid, state.platform.clock.now()).await?;
    service.reload().await?;
    let verb = if enabled { "enabled" } else { "disabled" };
    record(state, caller, &format!("detect.rule.{verb}"), &format!("rule {rule_id} {verb}")).await?;
    let loaded = service.loaded();
    views(&loaded.rules, &loaded.api_rules)
        .into_iter()
        .find(|r| r.id == rule_id)
        .map(Json)
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such rule"))
}

/// Turn a rule on.
#[utoipa::path(
    post,
    path = "/api/v1/detect/rules/{rule_id}/enable",
    tag = "detection",
    params(("rule_id" = String, Path, max_length = 256)),
    security(("bearer" = [])),
    responses((status = 200, body = RuleView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn enable_rule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(rule_id): Path<String>,
) -> Result<Json<RuleView>, ApiError> {
    set_enabled(&state, &caller, &rule_id, true).await
}

/// Turn a rule off (it stays loaded; the choice survives restarts).
#[utoipa::path(
    post,
    path = "/api/v1/detect/rules/{rule_id}/disable",
    tag = "detection",
    params(("rule_id" = String, Path, max_length = 256)),
    security(("bearer" = [])),
    responses((status = 200, body = RuleView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn disable_rule(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(rule_id): Path<String>,
) -> Result<Json<RuleView>, ApiError> {
    set_enabled(&state, &caller, &rule_id, false).await
}

/// Rules to try against sample events: a new rule file (`yaml`), or loaded
/// rules by id (`rule_ids`), or, with neither, every loaded rule.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleTest {
    #[schema(max_length = 65536)]
    pub yaml: Option<String>,
    #[schema(max_items = 1000)]
    pub rule_ids: Option<Vec<String>>,
    /// Events: Caduceus events, Windows events as evtx JSON, or flat JSON
    /// objects with an optional `logsource` member.
    #[schema(min_items = 1, max_items = 200, value_type = Vec<Object>)]
    pub events: Vec<serde_json::Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventResult {
    /// Position of the event in the request.
    pub event: u64,
    /// Ids of the rules that fired on it.
    pub rules: Vec<String>,
    /// Why the event could not be examined.
    #[schema(max_length = 4096)]
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleTestResult {
    pub results: Vec<EventResult>,
}

/// Run rules over sample events, without raising alerts.
#[utoipa::path(
    post,
    path = "/api/v1/detect/rules/test",
    tag = "detection",
    request_body = RuleTest,
    security(("bearer" = [])),
    responses((status = 200, body = RuleTestResult), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn test_rules(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    JsonObject(request): JsonObject<RuleTest>,
) -> Result<Json<RuleTestResult>, ApiError> {
    if request.events.is_empty() || request.events.len() > MAX_TEST_EVENTS {
        return Err(ApiError::new(ErrorCode::Unprocessable, format!("give 1 to {MAX_TEST_EVENTS} events")));
    }
    // The schema says objects; anything else is the request's fault, not one event's.
    if let Some(i) = request.events.iter().position(|e| !e.is_object()) {
        return Err(ApiError::new(ErrorCode::Unprocessable, format!("event {i} is not a JSON object")));
    }
    let service = detect(&state)?;
    let loaded = service.loaded();
    // With `rule_ids`, the loaded rules run and only those ids are reported.
    let mut only = None;
    let rules = match (&request.yaml, &request.rule_ids) {
        (Some(yaml), _) => {
            if yaml.len() > MAX_RULE_BYTES || yaml.chars().count() > MAX_RULE_CHARS {
                return Err(ApiError::new(
                    ErrorCode::Unprocessable,
                    format!("a rule file is at most {MAX_RULE_CHARS} characters"),
                ));
            }
            let mut scratch = RuleSet::new();
            scratch
                .add_yaml("api", yaml)
                .map_err(|e| ApiError::new(ErrorCode::Unprocessable, format!("the rule does not load: {e}")))?;
            Arc::new(scratch)
        }
        (None, Some(ids)) => {
            if let Some(missing) = ids.iter().find(|id| loaded.rules.rule(id).is_none()) {
                return Err(ApiError::new(ErrorCode::Unprocessable, format!("no loaded rule has id {missing}")));
            }
            only = Some(ids.iter().cloned().collect::<std::collections::HashSet<String>>());
            loaded.rules.clone()
        }
        (None, None) => loaded.rules.clone(),
    };
    let map = service.field_map().clone();
    let events = request.events;
    let results = tokio::task::spawn_blocking(move || offline::test_rules(rules, &events, &map))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Internal, "the rule test failed"))?;
    Ok(Json(RuleTestResult {
        results: results
            .into_iter()
            .map(|r| EventResult {
                event: r.event as u64,
                rules: r.rules.into_iter().filter(|id| only.as_ref().is_none_or(|o| o.contains(id))).collect(),
                error: r.error,
            })
            .collect(),
    }))
}

/// Record a change to the rules on the spine.
async fn record(
    state: &AppState,
    caller: &caduceus_identity::service::Principal,
    key: &str,
    detail: &str,
) -> Result<(), ApiError> {
    let payload = Payload::ConfigChange { key: key.to_owned(), detail: detail.chars().take(4000).collect() };
    state.platform.record(Severity::Informational, caller.actor(), None, "detection rules changed", payload).await?;
    Ok(())
}
