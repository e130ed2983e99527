//! Devices over HTTP: the inventory (CRUD and CSV import), unknown devices
//! seen on the network, SBOMs attached to a model and version, advisories
//! (CSAF and OSV, versioned), scans, findings and device risk. Reading needs
//! `read_devices`; changing anything needs `manage_devices`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use caduceus_devices::inventory::{Criticality, Device};
use caduceus_devices::matching::Finding;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::access::Caller;
use crate::app::AppState;
use crate::devices::{DevicesApiError, DevicesService, ImportOutcome, ScanSummary, StoredDevice};
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::routes::JsonObject;

/// Path words under `/api/v1/devices/` that cannot be device ids.
const RESERVED_IDS: [&str; 6] = ["unknown", "sboms", "findings", "status", "import", "scan"];

fn service(state: &AppState) -> Result<&Arc<DevicesService>, ApiError> {
    state.devices.as_ref().ok_or_else(|| ApiError::new(ErrorCode::Unavailable, "the device service is not enabled"))
}

impl From<DevicesApiError> for ApiError {
    fn from(err: DevicesApiError) -> Self {
        match err {
            DevicesApiError::Invalid(m) => ApiError::new(ErrorCode::Unprocessable, m),
            DevicesApiError::Server(e) => e.into(),
        }
    }
}

/// Clinical criticality of a device.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CriticalityName {
    LifeSustaining,
    Therapeutic,
    Diagnostic,
    NonClinical,
    Unknown,
}

impl From<CriticalityName> for Criticality {
    fn from(name: CriticalityName) -> Self {
        match name {
            CriticalityName::LifeSustaining => Criticality::LifeSustaining,
            CriticalityName::Therapeutic => Criticality::Therapeutic,
            CriticalityName::Diagnostic => Criticality::Diagnostic,
            CriticalityName::NonClinical => Criticality::NonClinical,
            CriticalityName::Unknown => Criticality::Unknown,
        }
    }
}

/// A device as clients send it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    /// The hospital's asset id: letters, digits and `._:-`.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9._:-]+$")]
    pub id: String,
    #[schema(min_length = 1, max_length = 256)]
    pub manufacturer: String,
    #[schema(min_length = 1, max_length = 256)]
    pub model: String,
    #[schema(max_length = 256)]
    pub serial: Option<String>,
    /// Firmware or software version.
    #[schema(max_length = 256)]
    pub version: Option<String>,
    #[schema(max_length = 256)]
    pub location: Option<String>,
    #[schema(max_length = 64)]
    pub mac: Option<String>,
    #[schema(max_length = 64)]
    pub ip: Option<String>,
    #[schema(max_length = 256)]
    pub hostname: Option<String>,
    #[schema(max_length = 256)]
    pub ae_title: Option<String>,
    #[schema(max_length = 256)]
    pub hl7_application: Option<String>,
    #[schema(max_length = 256)]
    pub clinical_function: Option<String>,
    pub criticality: Option<CriticalityName>,
    #[schema(max_length = 256)]
    pub owner: Option<String>,
    /// `YYYY-MM-DD`.
    #[schema(max_length = 32)]
    pub end_of_support: Option<String>,
    /// CIDR, e.g. `10.20.0.0/16`.
    #[schema(max_length = 64)]
    pub segment: Option<String>,
}

impl From<DeviceInput> for Device {
    fn from(d: DeviceInput) -> Self {
        Device {
            id: d.id,
            manufacturer: d.manufacturer,
            model: d.model,
            serial: d.serial,
            version: d.version,
            location: d.location,
            mac: d.mac,
            ip: d.ip,
            hostname: d.hostname,
            ae_title: d.ae_title,
            hl7_application: d.hl7_application,
            clinical_function: d.clinical_function,
            criticality: d.criticality.map(Criticality::from).unwrap_or_default(),
            owner: d.owner,
            end_of_support: d.end_of_support,
            segment: d.segment,
        }
    }
}

/// A device with what the service learned: exposure and last risk.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeviceView {
    /// The inventory record (the fields of `DeviceInput`).
    #[schema(value_type = Object)]
    pub device: Value,
    /// Seen talking to a peer outside its segment.
    pub exposed: bool,
    /// Risk after the last scan (`score` 0..100, `level`, `explanation`).
    #[schema(value_type = Option<Object>)]
    pub risk: Option<Value>,
}

impl From<StoredDevice> for DeviceView {
    fn from(s: StoredDevice) -> Self {
        DeviceView {
            device: serde_json::to_value(&s.device).unwrap_or(Value::Null),
            exposed: s.exposed,
            risk: s.risk.and_then(|r| serde_json::to_value(r).ok()),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DevicePage {
    #[schema(max_items = 1000)]
    pub devices: Vec<DeviceView>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Return entries whose id sorts after this one.
    #[param(max_length = 256)]
    pub after: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

fn check_after(after: Option<&str>) -> Result<(), ApiError> {
    if after.is_some_and(|a| a.chars().count() > 256) {
        return Err(ApiError::new(ErrorCode::BadRequest, "after must be at most 256 characters"));
    }
    Ok(())
}

fn limit(value: Option<u32>) -> Result<u32, ApiError> {
    match value {
        None => Ok(100),
        Some(n) if (1..=1000).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::new(ErrorCode::BadRequest, "limit must be 1 to 1000")),
    }
}

fn check_id(id: &str) -> Result<(), ApiError> {
    if RESERVED_IDS.contains(&id) {
        return Err(ApiError::new(ErrorCode::Unprocessable, "that id is a reserved path word"));
    }
    Ok(())
}

#[utoipa::path(
    get,
    path = "/api/v1/devices",
    tag = "devices",
    params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = DevicePage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn list_devices(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<PageQuery>,
) -> Result<Json<DevicePage>, ApiError> {
    let limit = limit(query.limit)?;
    check_after(query.after.as_deref())?;
    let devices = service(&state)?.list_devices(query.after.as_deref(), limit).await?;
    Ok(Json(DevicePage { devices: devices.into_iter().map(DeviceView::from).collect() }))
}

#[utoipa::path(
    post,
    path = "/api/v1/devices",
    tag = "devices",
    request_body = DeviceInput,
    security(("bearer" = [])),
    responses(
        (status = 201, body = DeviceView),
        (status = 422, description = "a field is invalid", body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn create_device(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    JsonObject(input): JsonObject<DeviceInput>,
) -> Result<(StatusCode, Json<DeviceView>), ApiError> {
    check_id(&input.id)?;
    let stored = service(&state)?.put_device(input.into()).await?;
    Ok((StatusCode::CREATED, Json(stored.into())))
}

#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, max_length = 128)),
    security(("bearer" = [])),
    responses((status = 200, body = DeviceView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn get_device(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<DeviceView>, ApiError> {
    let stored = service(&state)?.get_device(&id).await?;
    stored.map(|s| Json(s.into())).ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such device"))
}

#[utoipa::path(
    put,
    path = "/api/v1/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, max_length = 128)),
    request_body = DeviceInput,
    security(("bearer" = [])),
    responses(
        (status = 200, body = DeviceView),
        (status = 409, description = "the body's id is not the path's", body = ErrorBody),
        (status = 422, description = "a field is invalid", body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn put_device(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(id): Path<String>,
    JsonObject(input): JsonObject<DeviceInput>,
) -> Result<Json<DeviceView>, ApiError> {
    if input.id != id {
        return Err(ApiError::new(ErrorCode::Conflict, "the body's id must be the path's id"));
    }
    check_id(&id)?;
    let stored = service(&state)?.put_device(input.into()).await?;
    Ok(Json(stored.into()))
}

#[utoipa::path(
    delete,
    path = "/api/v1/devices/{id}",
    tag = "devices",
    params(("id" = String, Path, max_length = 128)),
    security(("bearer" = [])),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn delete_device(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if service(&state)?.delete_device(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(ErrorCode::NotFound, "no such device"))
    }
}

/// What an inventory import took.
#[derive(Debug, Serialize, ToSchema)]
pub struct InventoryReceipt {
    pub imported: u64,
    /// Header columns that are not inventory fields.
    #[schema(max_items = 1000)]
    pub ignored_columns: Vec<String>,
}

#[utoipa::path(
    post,
    path = "/api/v1/devices/import",
    tag = "devices",
    request_body(content = String, content_type = "text/csv",
        description = "An inventory CSV with a header row: id, manufacturer, model, version, and any of serial, \
            location, mac, ip, hostname, ae_title, hl7_application, clinical_function, criticality, owner, \
            end_of_support, segment. Every row is imported, or none."),
    security(("bearer" = [])),
    responses(
        (status = 200, body = InventoryReceipt),
        (status = 415, body = ErrorBody),
        (status = 422, description = "a row is invalid (the message lists line numbers); nothing was imported", body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn import_inventory(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<InventoryReceipt>, ApiError> {
    let essence = content_type(&headers);
    if !matches!(essence.as_str(), "text/csv" | "text/plain" | "application/octet-stream") {
        return Err(ApiError::new(ErrorCode::UnsupportedMediaType, "send the inventory as text/csv"));
    }
    let (imported, ignored_columns) = service(&state)?.import_csv(&body).await?;
    Ok(Json(InventoryReceipt { imported: imported as u64, ignored_columns }))
}

/// A host seen on the network that is not in the inventory.
#[derive(Debug, Serialize, ToSchema)]
pub struct UnknownDevice {
    /// `ip:<address>`.
    #[schema(max_length = 256)]
    pub key: String,
    /// RFC 3339.
    #[schema(max_length = 64)]
    pub first_seen: String,
    #[schema(max_length = 64)]
    pub last_seen: String,
    pub flows: u64,
    /// Ports, protocols, DICOM AE title and HL7 application seen.
    #[schema(value_type = Object)]
    pub hints: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UnknownDevices {
    #[schema(max_items = 1000)]
    pub unknown: Vec<UnknownDevice>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct LimitQuery {
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

#[utoipa::path(
    get,
    path = "/api/v1/devices/unknown",
    tag = "devices",
    params(LimitQuery),
    security(("bearer" = [])),
    responses((status = 200, body = UnknownDevices), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn unknown_devices(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<LimitQuery>,
) -> Result<Json<UnknownDevices>, ApiError> {
    let limit = limit(query.limit)?;
    let rows = service(&state)?.sightings(limit).await?;
    let unknown = rows
        .into_iter()
        .map(|r| UnknownDevice {
            key: r.key,
            first_seen: r.first_seen.to_rfc3339(),
            last_seen: r.last_seen.to_rfc3339(),
            flows: r.flows,
            hints: serde_json::from_str(&r.body).unwrap_or(Value::Null),
        })
        .collect();
    Ok(Json(UnknownDevices { unknown }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SbomQuery {
    #[param(min_length = 1, max_length = 256)]
    pub manufacturer: String,
    #[param(min_length = 1, max_length = 256)]
    pub model: String,
    /// Firmware or software version the SBOM describes.
    #[param(min_length = 1, max_length = 256)]
    pub version: String,
}

/// What an attached SBOM holds, with its NTIA minimum-element gaps.
#[derive(Debug, Serialize, ToSchema)]
pub struct SbomReceipt {
    #[schema(max_length = 64)]
    pub id: String,
    /// `cyclonedx` or `spdx`.
    #[schema(max_length = 32)]
    pub format: String,
    #[schema(max_length = 32)]
    pub spec_version: String,
    pub components: u64,
    pub relationships: u64,
    pub vex_statements: u64,
    /// NTIA minimum elements: document and per-component gaps, counts, `complete`.
    #[schema(value_type = Object)]
    pub ntia: Value,
}

#[utoipa::path(
    post,
    path = "/api/v1/devices/sboms",
    tag = "devices",
    params(SbomQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "CycloneDX 1.2-1.6 (JSON or XML), SPDX 2.2/2.3 (JSON or tag-value) or a Cargo.lock"),
    security(("bearer" = [])),
    responses(
        (status = 201, body = SbomReceipt),
        (status = 400, body = ErrorBody),
        (status = 413, body = ErrorBody),
        (status = 422, description = "not an SBOM this server reads", body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn attach_sbom(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<SbomQuery>,
    body: Bytes,
) -> Result<(StatusCode, Json<SbomReceipt>), ApiError> {
    let (row, sbom) = service(&state)?.attach_sbom(&query.manufacturer, &query.model, &query.version, &body).await?;
    let report = caduceus_devices::sbom::ntia::ntia_gaps(&sbom);
    let mut ntia = serde_json::to_value(&report).unwrap_or(Value::Null);
    if let Some(o) = ntia.as_object_mut() {
        o.insert("complete".into(), report.is_complete().into());
    }
    Ok((
        StatusCode::CREATED,
        Json(SbomReceipt {
            id: row.id,
            format: row.format,
            spec_version: sbom.spec_version.clone(),
            components: sbom.components.len() as u64,
            relationships: sbom.relationships.len() as u64,
            vex_statements: sbom.vex.len() as u64,
            ntia,
        }),
    ))
}

/// An SBOM on file (without its body).
#[derive(Debug, Serialize, ToSchema)]
pub struct SbomSummary {
    #[schema(max_length = 64)]
    pub id: String,
    #[schema(max_length = 256)]
    pub manufacturer: String,
    #[schema(max_length = 256)]
    pub model: String,
    #[schema(max_length = 256)]
    pub version: String,
    #[schema(max_length = 32)]
    pub format: String,
    #[schema(max_length = 64)]
    pub sha256: String,
    #[schema(max_length = 64)]
    pub created: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SbomList {
    #[schema(max_items = 100000)]
    pub sboms: Vec<SbomSummary>,
}

#[utoipa::path(
    get,
    path = "/api/v1/devices/sboms",
    tag = "devices",
    security(("bearer" = [])),
    responses((status = 200, body = SbomList), (status = 503, body = ErrorBody))
)]
pub async fn list_sboms(State(state): State<AppState>, Caller(_caller): Caller) -> Result<Json<SbomList>, ApiError> {
    service(&state)?;
    let rows = state.platform.store.list_sboms().await?;
    let sboms = rows
        .into_iter()
        .map(|r| SbomSummary {
            id: r.id,
            manufacturer: r.manufacturer,
            model: r.model,
            version: r.version,
            format: r.format,
            sha256: r.sha256,
            created: r.created.to_rfc3339(),
        })
        .collect();
    Ok(Json(SbomList { sboms }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AdvisoryQuery {
    /// The file name, when it tells the format (`.yaml` for OSV YAML).
    #[param(max_length = 256)]
    pub name: Option<String>,
}

/// What importing an advisory did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdvisoryReceipt {
    #[schema(max_length = 256)]
    pub id: String,
    #[schema(max_length = 256)]
    pub revision: String,
    /// `csaf` or `osv`.
    #[schema(max_length = 16)]
    pub source: String,
    pub outcome: ImportOutcome,
    pub vulnerabilities: u64,
    pub products: u64,
}

#[utoipa::path(
    post,
    path = "/api/v1/advisories",
    tag = "devices",
    params(AdvisoryQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "A CSAF 2.0 document (JSON) or an OSV advisory (JSON or YAML); `application/json` and \
            `application/yaml` are accepted too. CSAF documents must pass the mandatory tests of CSAF 2.0 §6.1."),
    security(("bearer" = [])),
    responses(
        (status = 200, body = AdvisoryReceipt),
        (status = 413, body = ErrorBody),
        (status = 422, description = "not a valid CSAF or OSV document (the message names the broken rule)", body = ErrorBody),
        (status = 503, body = ErrorBody)
    )
)]
pub async fn import_advisory(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<AdvisoryQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<AdvisoryReceipt>, ApiError> {
    let mut name = query.name.clone();
    if name.is_none() && content_type(&headers).contains("yaml") {
        name = Some("advisory.yaml".into());
    }
    let (advisory, outcome) = service(&state)?.import_advisory(&body, name.as_deref()).await?;
    Ok(Json(AdvisoryReceipt {
        id: advisory.id,
        revision: advisory.revision,
        source: format!("{:?}", advisory.source).to_lowercase(),
        outcome,
        vulnerabilities: advisory.vulnerabilities.len() as u64,
        products: advisory.products.len() as u64,
    }))
}

/// An advisory on file.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdvisorySummary {
    #[schema(max_length = 256)]
    pub id: String,
    #[schema(max_length = 16)]
    pub source: String,
    #[schema(max_length = 256)]
    pub revision: String,
    #[schema(max_length = 64)]
    pub modified: Option<String>,
    #[schema(max_length = 64)]
    pub imported: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdvisoryPage {
    #[schema(max_items = 1000)]
    pub advisories: Vec<AdvisorySummary>,
}

#[utoipa::path(
    get,
    path = "/api/v1/advisories",
    tag = "devices",
    params(PageQuery),
    security(("bearer" = [])),
    responses((status = 200, body = AdvisoryPage), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn list_advisories(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<PageQuery>,
) -> Result<Json<AdvisoryPage>, ApiError> {
    let limit = limit(query.limit)?;
    check_after(query.after.as_deref())?;
    service(&state)?;
    let rows = state.platform.store.list_advisories(query.after.as_deref(), limit).await?;
    let advisories = rows
        .into_iter()
        .map(|r| AdvisorySummary {
            id: r.id,
            source: r.source,
            revision: r.revision,
            modified: r.modified,
            imported: r.imported.to_rfc3339(),
        })
        .collect();
    Ok(Json(AdvisoryPage { advisories }))
}

/// One revision of an advisory as it was imported.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdvisoryRevision {
    #[schema(max_length = 256)]
    pub revision: String,
    #[schema(max_length = 64)]
    pub modified: Option<String>,
    #[schema(max_length = 64)]
    pub sha256: String,
    #[schema(max_length = 64)]
    pub imported: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdvisoryView {
    /// The normalised advisory: products, vulnerabilities, scores, remediations.
    #[schema(value_type = Object)]
    pub advisory: Value,
    /// Every revision imported, oldest first.
    #[schema(max_items = 10000)]
    pub history: Vec<AdvisoryRevision>,
}

#[utoipa::path(
    get,
    path = "/api/v1/advisories/{id}",
    tag = "devices",
    params(("id" = String, Path, max_length = 256)),
    security(("bearer" = [])),
    responses((status = 200, body = AdvisoryView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn get_advisory(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<AdvisoryView>, ApiError> {
    service(&state)?;
    let store = &state.platform.store;
    let row = store.get_advisory(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such advisory"))?;
    let history = store
        .advisory_history(&id)
        .await?
        .into_iter()
        .map(|h| AdvisoryRevision {
            revision: h.revision,
            modified: h.modified,
            sha256: h.sha256,
            imported: h.imported.to_rfc3339(),
        })
        .collect();
    Ok(Json(AdvisoryView { advisory: serde_json::from_str(&row.body).unwrap_or(Value::Null), history }))
}

#[utoipa::path(
    post,
    path = "/api/v1/devices/scan",
    tag = "devices",
    security(("bearer" = [])),
    responses((status = 200, body = ScanSummary), (status = 503, body = ErrorBody))
)]
pub async fn scan(State(state): State<AppState>, Caller(_caller): Caller) -> Result<Json<ScanSummary>, ApiError> {
    Ok(Json(service(&state)?.scan_all().await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindingQuery {
    /// Only this device's findings.
    #[param(max_length = 128)]
    pub device: Option<String>,
    pub status: Option<StatusName>,
    /// 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// A finding's status.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusName {
    Affected,
    UnderInvestigation,
    Fixed,
    NotAffected,
}

impl StatusName {
    fn as_str(self) -> &'static str {
        match self {
            Self::Affected => "affected",
            Self::UnderInvestigation => "under_investigation",
            Self::Fixed => "fixed",
            Self::NotAffected => "not_affected",
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FindingList {
    /// Findings as `devices scan --format json` prints them.
    #[schema(value_type = Vec<Object>, max_items = 1000)]
    pub findings: Vec<Value>,
}

#[utoipa::path(
    get,
    path = "/api/v1/devices/findings",
    tag = "devices",
    params(FindingQuery),
    security(("bearer" = [])),
    responses((status = 200, body = FindingList), (status = 400, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn list_findings(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<FindingQuery>,
) -> Result<Json<FindingList>, ApiError> {
    let limit = limit(query.limit)?;
    service(&state)?;
    if query.device.as_deref().is_some_and(|d| d.chars().count() > 128) {
        return Err(ApiError::new(ErrorCode::BadRequest, "device must be at most 128 characters"));
    }
    let status = query.status.map(StatusName::as_str);
    let rows = state.platform.store.list_findings(query.device.as_deref(), status, limit).await?;
    let findings: Vec<Finding> = rows.iter().filter_map(|r| serde_json::from_str(&r.body).ok()).collect();
    let json = caduceus_devices::report::to_json(&findings);
    Ok(Json(FindingList { findings: json.as_array().cloned().unwrap_or_default() }))
}

/// A device's risk now, and the findings it rests on.
#[derive(Debug, Serialize, ToSchema)]
pub struct RiskView {
    /// `score` 0..100, `level`, the factors and their explanation.
    #[schema(value_type = Object)]
    pub risk: Value,
    #[schema(value_type = Vec<Object>, max_items = 10000)]
    pub findings: Vec<Value>,
}

#[utoipa::path(
    get,
    path = "/api/v1/devices/{id}/risk",
    tag = "devices",
    params(("id" = String, Path, max_length = 128)),
    security(("bearer" = [])),
    responses((status = 200, body = RiskView), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody))
)]
pub async fn device_risk(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(id): Path<String>,
) -> Result<Json<RiskView>, ApiError> {
    let service = service(&state)?;
    let stored = service.get_device(&id).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such device"))?;
    let (findings, risk) = service.assess(&stored).await?;
    let json = caduceus_devices::report::to_json(&findings);
    Ok(Json(RiskView {
        risk: serde_json::to_value(risk).unwrap_or(Value::Null),
        findings: json.as_array().cloned().unwrap_or_default(),
    }))
}

/// Counters of the device service.
#[derive(Debug, Serialize, ToSchema)]
pub struct DevicesStatus {
    pub devices: u64,
    pub advisories: u64,
    /// Advisory products whose version text could not be read (they never match).
    pub unreadable_versions: u64,
    pub scans: u64,
    pub findings_published: u64,
    pub advisories_imported: u64,
    pub advisories_refused: u64,
    pub flows_seen: u64,
    pub epss_scores: u64,
    pub kev_entries: u64,
}

#[utoipa::path(
    get,
    path = "/api/v1/devices/status",
    tag = "devices",
    security(("bearer" = [])),
    responses((status = 200, body = DevicesStatus), (status = 503, body = ErrorBody))
)]
pub async fn status(State(state): State<AppState>, Caller(_caller): Caller) -> Result<Json<DevicesStatus>, ApiError> {
    let service = service(&state)?;
    let store = &state.platform.store;
    let scanner = service.scanner();
    let c = &service.counters;
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    Ok(Json(DevicesStatus {
        devices: store.count_devices().await?,
        advisories: store.count_advisories().await?,
        unreadable_versions: scanner.index.unreadable_versions as u64,
        scans: get(&c.scans),
        findings_published: get(&c.findings_published),
        advisories_imported: get(&c.advisories_imported),
        advisories_refused: get(&c.advisories_refused),
        flows_seen: get(&c.flows_seen),
        epss_scores: scanner.enrichment.epss_len() as u64,
        kev_entries: scanner.enrichment.kev_len() as u64,
    }))
}

fn content_type(headers: &HeaderMap) -> String {
    let value = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}
