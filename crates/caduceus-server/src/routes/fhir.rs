//! The FHIR R4 REST API under `/fhir`: read, vread, create, update
//! (`If-Match`), delete, history, search, batch and transaction bundles,
//! `$everything`, `$export`, `$erase`, `$access-log`, `$break-glass`, and the
//! CapabilityStatement at `/fhir/metadata`.
//!
//! The routes only translate HTTP to vault calls: every decision (scopes,
//! care relationship, consent, break-glass) and every audit event is the
//! vault's. Any signed-in caller reaches the handlers (`Access::Records`);
//! the vault decides what they may see. Errors are OperationOutcomes with
//! the FHIR status codes. These routes are outside the OpenAPI document:
//! FHIR describes itself with its CapabilityStatement.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use caduceus_identity::roles::Permission;
use caduceus_identity::service::Principal;
use caduceus_vault::policy::Scope;
use caduceus_vault::resource;
use caduceus_vault::service::{self, Requester, SearchPage, Stored, Vault, VaultError};
use serde_json::{Map, Value, json};

use crate::access::{Caller, ClientAddr};
use crate::app::AppState;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// Header a client may use to declare its purpose of use (v3 ActReason).
pub const PURPOSE_HEADER: &str = "x-purpose-of-use";

/// Every FHIR route (method, path template), for the access table and the
/// route inventory.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/fhir/metadata"),
    ("POST", "/fhir"),
    ("GET", "/fhir/{resource_type}"),
    ("POST", "/fhir/{resource_type}"),
    ("GET", "/fhir/{resource_type}/{id}"),
    ("PUT", "/fhir/{resource_type}/{id}"),
    ("DELETE", "/fhir/{resource_type}/{id}"),
    ("GET", "/fhir/{resource_type}/{id}/{operation}"),
    ("POST", "/fhir/{resource_type}/{id}/{operation}"),
    ("GET", "/fhir/{resource_type}/{id}/_history/{version}"),
    ("GET", "/api/v1/vault/break-glass"),
    ("POST", "/api/v1/vault/break-glass/{grant_id}/review"),
    ("POST", "/api/v1/vault/assignments"),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/fhir/metadata", get(metadata))
        .route("/fhir", post(bundle))
        .route("/fhir/{resource_type}", get(search).post(create))
        .route("/fhir/{resource_type}/{id}", get(read).put(update).delete(delete))
        .route("/fhir/{resource_type}/{id}/{operation}", get(instance_get).post(instance_post))
        .route("/fhir/{resource_type}/{id}/_history/{version}", get(vread))
        .route("/api/v1/vault/break-glass", get(review_queue))
        .route("/api/v1/vault/break-glass/{grant_id}/review", post(review))
        .route("/api/v1/vault/assignments", post(assign))
}

/// A FHIR error: an OperationOutcome with its status.
pub struct FhirError(StatusCode, Value);

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        fhir_response(self.0, &self.1, HeaderMap::new())
    }
}

impl From<VaultError> for FhirError {
    fn from(e: VaultError) -> Self {
        if matches!(e, VaultError::Storage(_) | VaultError::Keys(_) | VaultError::AuditFailed(_)) {
            tracing::error!(error = %e, "vault request failed");
        }
        let status = StatusCode::from_u16(service::status_of(&e)).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        Self(status, service::operation_outcome(&e))
    }
}

fn invalid(message: impl Into<String>) -> FhirError {
    VaultError::Invalid(message.into()).into()
}

type FhirResult = Result<Response, FhirError>;

fn fhir_response(status: StatusCode, body: &Value, mut headers: HeaderMap) -> Response {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    // FHIR JSON has no empty arrays: a Bundle without entries has no `entry`.
    let empty_entries = body.get("entry").and_then(Value::as_array).is_some_and(Vec::is_empty);
    let bytes = if empty_entries {
        let mut trimmed = body.clone();
        if let Value::Object(map) = &mut trimmed {
            map.remove("entry");
        }
        serde_json::to_vec(&trimmed).unwrap_or_default()
    } else {
        serde_json::to_vec(body).unwrap_or_default()
    };
    (status, headers, bytes).into_response()
}

fn vault(state: &AppState) -> Result<&Arc<Vault>, FhirError> {
    state.vault.as_ref().ok_or_else(|| VaultError::Storage("the vault is not running".to_owned()).into())
}

/// The requester as the vault sees them.
fn requester(
    state: &AppState,
    principal: &Principal,
    addr: &ClientAddr,
    headers: &HeaderMap,
) -> Result<Requester, FhirError> {
    let purpose = match headers.get(PURPOSE_HEADER).map(|v| v.to_str()) {
        None => None,
        Some(Ok(p)) if (1..=32).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_uppercase() || b == b'-') => {
            Some(p.to_owned())
        }
        Some(_) => return Err(invalid("X-Purpose-Of-Use is a v3 ActReason code such as TREAT or ETREAT")),
    };
    let user_id = match (&principal.user_id, &principal.subject) {
        (Some(id), _) => id.clone(),
        (None, caduceus_identity::service::Subject::ApiKey { token_id }) => format!("api-key:{token_id}"),
        (None, _) => principal.name.clone(),
    };
    // An API key limited to fewer permissions than its role narrows the
    // vault's scopes the same way: read-only, or nothing.
    let role_grants = |p: Permission| principal.roles.iter().any(|r| r.grants(p));
    let scopes = if role_grants(Permission::WriteRecords) && !principal.can(Permission::WriteRecords) {
        Some(if principal.can(Permission::ReadRecords) {
            vec![Scope::parse("user/*.rs").map_err(|e| invalid(e.to_string()))?]
        } else {
            Vec::new()
        })
    } else {
        None
    };
    Ok(Requester {
        user_id,
        roles: principal.roles.iter().map(|r| r.name().to_owned()).collect(),
        scopes,
        patient_ref: principal.patient_ref.clone(),
        source: addr.0.clone(),
        purpose_of_use: purpose,
        elevated: principal.is_elevated(state.platform.clock.now()),
    })
}

/// The requester of a FHIR route, as the vault sees them: the
/// authenticated caller, their address and declared purpose of use.
pub struct Who(pub Requester);

impl FromRequestParts<AppState> for Who {
    type Rejection = FhirError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, FhirError> {
        // The access middleware has authenticated every FHIR route already.
        let Caller(principal) = Caller::from_request_parts(parts, state).await.map_err(|_| {
            let outcome = json!({"resourceType": "OperationOutcome",
                                 "issue": [{"severity": "error", "code": "login", "diagnostics": "sign in, or send a bearer token"}]});
            FhirError(StatusCode::UNAUTHORIZED, outcome)
        })?;
        let Ok(addr) = ClientAddr::from_request_parts(parts, state).await;
        requester(state, &principal, &addr, &parts.headers).map(Who)
    }
}

fn base_url(state: &AppState) -> String {
    format!("{}/fhir/", state.public_origin)
}

/// A resource with its `ETag`, `Last-Modified` and, for a creation, `Location`.
fn resource_reply(state: &AppState, status: StatusCode, stored: &Stored, location: bool) -> Response {
    let headers = resource_headers(stored, location, state);
    fhir_response(status, stored.resource.as_ref().unwrap_or(&Value::Null), headers)
}

fn resource_headers(stored: &Stored, location: bool, state: &AppState) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("W/\"{}\"", stored.version)) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&http_date(stored.updated)) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if location {
        let url = format!("{}{}/{}/_history/{}", base_url(state), stored.resource_type, stored.id, stored.version);
        if let Ok(v) = HeaderValue::from_str(&url) {
            headers.insert(header::LOCATION, v);
        }
    }
    headers
}

fn http_date(t: caduceus_core::Timestamp) -> String {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.as_millis()) * 1_000_000)
        .ok()
        .and_then(|d| d.format(&format).ok())
        .unwrap_or_default()
}

/// Read a request body up to the vault's limit and parse it as a resource.
async fn body_json(state: &AppState, body: Body) -> Result<Value, FhirError> {
    let limit = state.platform.config.vault.max_bundle_bytes;
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        FhirError(
            StatusCode::PAYLOAD_TOO_LARGE,
            service::operation_outcome(&VaultError::Invalid(format!("the body is larger than {limit} bytes"))),
        )
    })?;
    let value: Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(format!("the body is not JSON: {}", e.classify_label())))?;
    if resource::depth(&value) > resource::MAX_DEPTH {
        return Err(invalid(format!("the body nests deeper than {} levels", resource::MAX_DEPTH)));
    }
    Ok(value)
}

trait ClassifyLabel {
    fn classify_label(&self) -> &'static str;
}

impl ClassifyLabel for serde_json::Error {
    fn classify_label(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "wrong types",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

async fn resource_body(state: &AppState, body: Body, resource_type: &str) -> Result<Map<String, Value>, FhirError> {
    let value = body_json(state, body).await?;
    let map = resource::check(value).map_err(|e| invalid(e.to_string()))?;
    let found = map.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    if found != resource_type {
        return Err(VaultError::Invalid(format!(
            "the resource type `{}` does not match the URL's `{}`",
            found.chars().take(64).collect::<String>(),
            resource_type.chars().take(64).collect::<String>()
        ))
        .into());
    }
    if serde_json::to_vec(&map).map(|b| b.len()).unwrap_or(usize::MAX) > resource::MAX_RESOURCE_BYTES {
        return Err(FhirError(
            StatusCode::PAYLOAD_TOO_LARGE,
            service::operation_outcome(&VaultError::Invalid(format!(
                "a resource is at most {} bytes",
                resource::MAX_RESOURCE_BYTES
            ))),
        ));
    }
    Ok(map)
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, FhirError> {
    let Some(value) = headers.get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().map_err(|_| invalid("If-Match is not text"))?.trim();
    let inner = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    inner.parse().map(Some).map_err(|_| invalid("If-Match is W/\"<version>\""))
}

fn query_pairs(raw: Option<String>) -> Vec<(String, String)> {
    raw.map(|q| service::parse_query_string(&q)).unwrap_or_default()
}

fn check_type(resource_type: &str) -> Result<(), FhirError> {
    if resource::valid_type(resource_type) {
        Ok(())
    } else {
        Err(FhirError(
            StatusCode::NOT_FOUND,
            service::operation_outcome(&VaultError::NotFound(format!(
                "resource type `{}`",
                resource_type.chars().take(64).collect::<String>()
            ))),
        ))
    }
}

// ----- handlers -----------------------------------------------------------

/// `GET /fhir/metadata`: what this server supports, truthfully.
pub async fn metadata(State(state): State<AppState>) -> Response {
    fhir_response(StatusCode::OK, &capability_statement(&state), HeaderMap::new())
}

pub fn capability_statement(state: &AppState) -> Value {
    let resources: Vec<Value> = resource::SUPPORTED_TYPES
        .iter()
        .map(|t| {
            let read_only = resource::READ_ONLY_TYPES.contains(t);
            let mut interactions = vec!["read", "vread", "search-type", "history-instance"];
            if !read_only {
                interactions.extend(["create", "update", "delete"]);
            }
            let mut params = vec![json!({"name": "_id", "type": "token"}), json!({"name": "_lastUpdated", "type": "date"})];
            params.extend(
                caduceus_vault::search::supported_params(t).into_iter().map(|name| json!({"name": name, "type": param_type(name)})),
            );
            let mut r = json!({
                "type": t,
                "interaction": interactions.iter().map(|i| json!({"code": i})).collect::<Vec<_>>(),
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": !read_only,
                "conditionalCreate": false,
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": params,
            });
            if *t == "Patient"
                && let Value::Object(map) = &mut r {
                    map.insert(
                        "operation".to_owned(),
                        json!([
                            {"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"},
                            {"name": "export", "definition": "urn:caduceus:operation:patient-export"},
                            {"name": "erase", "definition": "urn:caduceus:operation:patient-erase"},
                            {"name": "access-log", "definition": "urn:caduceus:operation:patient-access-log"},
                            {"name": "break-glass", "definition": "urn:caduceus:operation:patient-break-glass"},
                            {"name": "legal-hold", "definition": "urn:caduceus:operation:patient-legal-hold"}
                        ]),
                    );
                }
            r
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": state.platform.clock.now().to_rfc3339(),
        "kind": "instance",
        "software": {"name": "Caduceus", "version": caduceus_core::VERSION},
        "implementation": {"description": "Caduceus patient-record vault", "url": base_url(state).trim_end_matches('/')},
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{
            "mode": "server",
            "security": {
                "cors": false,
                "description": "Bearer tokens or the session cookie (see /api/openapi.json). Every access is decided by role scopes, care relationship and the patient's consent, and audited."
            },
            "resource": resources,
            "interaction": [{"code": "batch"}, {"code": "transaction"}]
        }]
    })
}

/// The FHIR type of a search parameter, for the CapabilityStatement.
fn param_type(name: &str) -> &'static str {
    match name {
        "date" | "birthdate" | "authored" | "recorded" | "period" | "onset-date" | "created" => "date",
        "name" | "family" | "given" | "address" | "address-city" | "address-postalcode" => "string",
        "patient"
        | "subject"
        | "encounter"
        | "participant"
        | "practitioner"
        | "organization"
        | "general-practitioner"
        | "actor"
        | "agent"
        | "performer"
        | "requester"
        | "location" => "reference",
        _ => "token",
    }
}

pub async fn bundle(State(state): State<AppState>, Who(who): Who, body: Body) -> FhirResult {
    let value = body_json(&state, body).await?;
    let response = vault(&state)?.process_bundle(&who, value).await?;
    Ok(fhir_response(StatusCode::OK, &response, HeaderMap::new()))
}

pub async fn search(
    State(state): State<AppState>,
    Who(who): Who,
    Path(resource_type): Path<String>,
    RawQuery(raw): RawQuery,
) -> FhirResult {
    check_type(&resource_type)?;
    let params = query_pairs(raw);
    if resource_type == "AuditEvent" {
        return audit_search(&state, &who, &params).await;
    }
    let page = vault(&state)?.search(&who, &resource_type, &params).await?;
    Ok(fhir_response(StatusCode::OK, &search_bundle(&state, &resource_type, &params, &page), HeaderMap::new()))
}

fn search_bundle(state: &AppState, resource_type: &str, params: &[(String, String)], page: &SearchPage) -> Value {
    let base = base_url(state);
    let mut bundle = service::search_set(page, &base);
    let link = |offset: u64| {
        let mut pairs: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "_offset")
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        pairs.push(format!("_offset={offset}"));
        format!("{base}{resource_type}?{}", pairs.join("&"))
    };
    let mut links = vec![json!({"relation": "self", "url": link(page.offset)})];
    if let Some(next) = page.next_offset {
        links.push(json!({"relation": "next", "url": link(next)}));
    }
    if page.offset > 0 {
        links.push(json!({"relation": "previous", "url": link(page.offset.saturating_sub(u64::from(page.count)))}));
    }
    if let Value::Object(map) = &mut bundle {
        map.insert("link".to_owned(), Value::Array(links));
    }
    bundle
}

/// Percent-encoding of a query component (RFC 3986 unreserved characters
/// pass). Written here because it is a few lines and the vault's links are
/// the only user.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'|' | b',' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

pub async fn create(
    State(state): State<AppState>,
    Who(who): Who,
    Path(resource_type): Path<String>,
    body: Body,
) -> FhirResult {
    check_type(&resource_type)?;
    let map = resource_body(&state, body, &resource_type).await?;
    let stored = vault(&state)?.create(&who, &resource_type, map).await?;
    Ok(resource_reply(&state, StatusCode::CREATED, &stored, true))
}

pub async fn read(
    State(state): State<AppState>,
    Who(who): Who,
    Path((resource_type, id)): Path<(String, String)>,
) -> FhirResult {
    check_type(&resource_type)?;
    if resource_type == "AuditEvent" {
        let event = vault(&state)?.audit_event(&who, &id).await?;
        return Ok(fhir_response(StatusCode::OK, &event, HeaderMap::new()));
    }
    let stored = vault(&state)?.read(&who, &resource_type, &id).await?;
    Ok(resource_reply(&state, StatusCode::OK, &stored, false))
}

pub async fn vread(
    State(state): State<AppState>,
    Who(who): Who,
    Path((resource_type, id, version)): Path<(String, String, String)>,
) -> FhirResult {
    check_type(&resource_type)?;
    let version: u64 = version.parse().map_err(|_| invalid("a version id is a positive integer"))?;
    let stored = vault(&state)?.vread(&who, &resource_type, &id, version).await?;
    Ok(resource_reply(&state, StatusCode::OK, &stored, false))
}

pub async fn update(
    State(state): State<AppState>,
    Who(who): Who,
    headers: HeaderMap,
    Path((resource_type, id)): Path<(String, String)>,
    body: Body,
) -> FhirResult {
    check_type(&resource_type)?;
    let expected = if_match(&headers)?;
    let map = resource_body(&state, body, &resource_type).await?;
    if map.get("id").and_then(Value::as_str) != Some(id.as_str()) {
        return Err(invalid("the resource's id must equal the id in the URL"));
    }
    let (stored, created) = vault(&state)?.update(&who, &resource_type, &id, map, expected).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(resource_reply(&state, status, &stored, created))
}

pub async fn delete(
    State(state): State<AppState>,
    Who(who): Who,
    Path((resource_type, id)): Path<(String, String)>,
) -> FhirResult {
    check_type(&resource_type)?;
    vault(&state)?.delete(&who, &resource_type, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET [type]/[id]/_history`, `$everything`, `$export`, `$access-log`.
pub async fn instance_get(
    State(state): State<AppState>,
    Who(who): Who,
    Path((resource_type, id, operation)): Path<(String, String, String)>,
    RawQuery(raw): RawQuery,
) -> FhirResult {
    check_type(&resource_type)?;
    let vault = vault(&state)?;
    let params = query_pairs(raw);
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    match (resource_type.as_str(), operation.as_str()) {
        (_, "_history") => {
            let count =
                param("_count").map(str::parse::<u32>).transpose().map_err(|_| invalid("_count is a number"))?;
            let versions = vault.history(&who, &resource_type, &id, count.unwrap_or(100)).await?;
            Ok(fhir_response(StatusCode::OK, &history_bundle(&state, &versions), HeaderMap::new()))
        }
        ("Patient", "$everything") => {
            let count =
                param("_count").map(str::parse::<u32>).transpose().map_err(|_| invalid("_count is a number"))?;
            let after = param("_after").and_then(|a| a.split_once('/')).map(|(t, i)| (t.to_owned(), i.to_owned()));
            let (items, next) = vault.everything(&who, &id, after, count.unwrap_or(1000)).await?;
            let base = base_url(&state);
            let mut bundle = json!({
                "resourceType": "Bundle",
                "type": "searchset",
                "total": items.len(),
                "entry": items.iter().map(|s| json!({"fullUrl": format!("{base}{}/{}", s.resource_type, s.id), "resource": s.resource, "search": {"mode": "match"}})).collect::<Vec<_>>(),
            });
            if let (Some((t, i)), Value::Object(map)) = (next, &mut bundle) {
                map.remove("total");
                map.insert(
                    "link".to_owned(),
                    json!([{"relation": "next", "url": format!("{base}Patient/{id}/$everything?_after={t}/{i}")}]),
                );
            }
            Ok(fhir_response(StatusCode::OK, &bundle, HeaderMap::new()))
        }
        ("Patient", "$export") => {
            let items = vault.export(&who, &id).await?;
            if param("_outputFormat").is_some_and(|f| f.contains("ndjson")) {
                let mut out = Vec::new();
                for s in &items {
                    if let Some(r) = &s.resource {
                        out.extend(serde_json::to_vec(r).unwrap_or_default());
                        out.push(b'\n');
                    }
                }
                let mut h = HeaderMap::new();
                h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+ndjson"));
                return Ok((StatusCode::OK, h, out).into_response());
            }
            let bundle = json!({
                "resourceType": "Bundle",
                "type": "collection",
                "timestamp": state.platform.clock.now().to_rfc3339(),
                "entry": items.iter().map(|s| json!({"fullUrl": format!("{}{}/{}", base_url(&state), s.resource_type, s.id), "resource": s.resource})).collect::<Vec<_>>(),
            });
            Ok(fhir_response(StatusCode::OK, &bundle, HeaderMap::new()))
        }
        ("Patient", "$access-log") => access_log(&state, &who, &id, &params).await,
        _ => Err(FhirError(
            StatusCode::NOT_FOUND,
            service::operation_outcome(&VaultError::NotFound(format!(
                "operation `{}`",
                operation.chars().take(64).collect::<String>()
            ))),
        )),
    }
}

/// `$erase`, `$break-glass`, `$legal-hold` on a Patient.
pub async fn instance_post(
    State(state): State<AppState>,
    Who(who): Who,
    Path((resource_type, id, operation)): Path<(String, String, String)>,
    body: Body,
) -> FhirResult {
    check_type(&resource_type)?;
    let vault = vault(&state)?;
    let param_string = |body: &Value, name: &str| -> Option<String> {
        // A FHIR Parameters resource, or a plain JSON object.
        if body.get("resourceType").and_then(Value::as_str) == Some("Parameters") {
            body.get("parameter")?
                .as_array()?
                .iter()
                .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
                .get("valueString")?
                .as_str()
                .map(str::to_owned)
        } else {
            body.get(name)?.as_str().map(str::to_owned)
        }
    };
    match (resource_type.as_str(), operation.as_str()) {
        ("Patient", "$erase") => {
            vault.erase(&who, &id).await?;
            let outcome = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": format!("Patient/{id} was erased: its data key is destroyed and every stored version is unreadable")}]});
            Ok(fhir_response(StatusCode::OK, &outcome, HeaderMap::new()))
        }
        ("Patient", "$break-glass") => {
            let body = body_json(&state, body).await?;
            let reason =
                param_string(&body, "reason").ok_or_else(|| invalid("give a `reason` for the emergency access"))?;
            let grant = vault.break_glass(&who, &id, &reason).await?;
            let value = serde_json::to_value(&grant).unwrap_or(Value::Null);
            Ok(fhir_response(StatusCode::CREATED, &value, HeaderMap::new()))
        }
        ("Patient", "$legal-hold") => {
            let body = body_json(&state, body).await?;
            let hold = param_string(&body, "reason");
            let release = body.get("release").and_then(Value::as_bool).unwrap_or(false);
            if hold.is_none() && !release {
                return Err(invalid("give a `reason` to place a hold, or `\"release\": true` to lift it"));
            }
            vault.set_legal_hold(&who, &id, if release { None } else { hold.as_deref() }).await?;
            let outcome = json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": if release { "legal hold lifted" } else { "legal hold placed" }}]});
            Ok(fhir_response(StatusCode::OK, &outcome, HeaderMap::new()))
        }
        _ => Err(FhirError(
            StatusCode::NOT_FOUND,
            service::operation_outcome(&VaultError::NotFound(format!(
                "operation `{}`",
                operation.chars().take(64).collect::<String>()
            ))),
        )),
    }
}

fn history_bundle(state: &AppState, versions: &[Stored]) -> Value {
    let base = base_url(state);
    json!({
        "resourceType": "Bundle",
        "type": "history",
        "total": versions.len(),
        "entry": versions.iter().map(|s| {
            let url = format!("{base}{}/{}", s.resource_type, s.id);
            let mut entry = json!({
                "fullUrl": url,
                "request": {"method": if s.deleted { "DELETE" } else if s.version == 1 { "POST" } else { "PUT" }, "url": format!("{}/{}", s.resource_type, s.id)},
                "response": {"status": if s.deleted { "204" } else if s.version == 1 { "201" } else { "200" }, "etag": format!("W/\"{}\"", s.version), "lastModified": s.updated.to_rfc3339()},
            });
            if let (Some(r), Value::Object(map)) = (&s.resource, &mut entry) {
                map.insert("resource".to_owned(), r.clone());
            }
            entry
        }).collect::<Vec<_>>(),
    })
}

/// `GET Patient/[id]/$access-log`: who accessed the record, when, why, and
/// the decision; each entry with the event itself and, once sealed into a
/// published checkpoint, its offline proof bundle (C2SP tlog-proof), so the
/// patient can check it with `caduceus ledger verify-proof`.
async fn access_log(state: &AppState, who: &Requester, patient: &str, params: &[(String, String)]) -> FhirResult {
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let after =
        param("_after").map(str::parse::<u64>).transpose().map_err(|_| invalid("_after is a sequence number"))?;
    let count = param("_count").map(str::parse::<u32>).transpose().map_err(|_| invalid("_count is a number"))?;
    let with_proofs = param("proofs") != Some("false");
    let events = vault(state)?.access_log(who, patient, after.unwrap_or(0), count.unwrap_or(200)).await?;
    let mut entries = Vec::with_capacity(events.len());
    for stored in &events {
        let proof =
            if with_proofs { crate::routes::ledger::event_proof_bundle(state, stored.seq).await.ok() } else { None };
        entries.push(json!({
            "seq": stored.seq,
            "access": caduceus_vault::audit::access_log_entry(&stored.event),
            "event": stored.event,
            "proof": proof,
            "sealed": proof.is_some(),
        }));
    }
    let body = json!({
        "patient": format!("Patient/{patient}"),
        "log_key": crate::routes::ledger::verifier_key(state),
        "verify": "save `event` and `proof` of an entry to files, then: caduceus ledger verify-proof --proof PROOF --event EVENT --key LOG_KEY",
        "entries": entries,
        "next": events.last().map(|e| e.seq),
    });
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "application/json")], serde_json::to_vec(&body).unwrap_or_default())
        .into_response())
}

/// `GET AuditEvent?patient=[id]`: the patient's audit trail as AuditEvents.
async fn audit_search(state: &AppState, who: &Requester, params: &[(String, String)]) -> FhirResult {
    let patient = params
        .iter()
        .find(|(k, _)| k == "patient" || k == "entity")
        .map(|(_, v)| v.trim_start_matches("Patient/").to_owned())
        .ok_or_else(|| invalid("AuditEvent search needs `patient`"))?;
    let events = vault(state)?.access_log(who, &patient, 0, 1000).await?;
    let server = vault(state)?.settings().server_name.clone();
    let entries: Vec<Value> = events
        .iter()
        .filter_map(|e| caduceus_vault::audit::audit_event(&e.event, &server))
        .map(|r| json!({"resource": r, "search": {"mode": "match"}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "total": entries.len(), "entry": entries});
    Ok(fhir_response(StatusCode::OK, &bundle, HeaderMap::new()))
}

// ----- break-glass review and assignments (JSON API) ---------------------

pub async fn review_queue(State(state): State<AppState>, Who(who): Who, RawQuery(raw): RawQuery) -> FhirResult {
    let all = query_pairs(raw).iter().any(|(k, v)| k == "all" && v == "true");
    let grants = vault(&state)?.break_glass_queue(&who, !all).await?;
    Ok(axum::Json(json!({"grants": grants})).into_response())
}

pub async fn review(
    State(state): State<AppState>,
    Who(who): Who,
    Path(grant_id): Path<String>,
    body: Body,
) -> FhirResult {
    let body = body_json(&state, body).await?;
    let outcome =
        body.get("outcome").and_then(Value::as_str).ok_or_else(|| invalid("`outcome` is justified or unjustified"))?;
    let note = body.get("note").and_then(Value::as_str);
    let grant = vault(&state)?.review_break_glass(&who, &grant_id, outcome, note).await?;
    Ok(axum::Json(json!(grant)).into_response())
}

pub async fn assign(State(state): State<AppState>, Who(who): Who, body: Body) -> FhirResult {
    let body = body_json(&state, body).await?;
    let field =
        |name: &str| body.get(name).and_then(Value::as_str).ok_or_else(|| invalid(format!("`{name}` is required")));
    let (user, patient) = (field("user_id")?, field("patient")?);
    let detail = body.get("detail").and_then(Value::as_str).unwrap_or("assigned");
    vault(&state)?.assign(&who, user, patient.trim_start_matches("Patient/"), detail).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
