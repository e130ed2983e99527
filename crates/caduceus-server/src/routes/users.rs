//! Administration of accounts and API keys. Reading needs `manage_identity`;
//! every change also needs a recent re-authentication (step-up).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use caduceus_core::{Redacted, Timestamp};
use caduceus_identity::roles::{Permission, Role};
use caduceus_identity::service::{NewUser, UserChanges};
use caduceus_store::ApiTokenRecord;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::access::Caller;
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::routes::JsonObject;
use crate::routes::auth::{Revoked, UserView};

/// A role, as the API spells it (the schema lists them, so a client knows).
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RoleName {
    Admin,
    SecurityAnalyst,
    Auditor,
    Clinician,
    Nurse,
    Registrar,
    DeviceService,
    Patient,
}

impl From<RoleName> for Role {
    fn from(name: RoleName) -> Self {
        match name {
            RoleName::Admin => Role::Admin,
            RoleName::SecurityAnalyst => Role::SecurityAnalyst,
            RoleName::Auditor => Role::Auditor,
            RoleName::Clinician => Role::Clinician,
            RoleName::Nurse => Role::Nurse,
            RoleName::Registrar => Role::Registrar,
            RoleName::DeviceService => Role::DeviceService,
            RoleName::Patient => Role::Patient,
        }
    }
}

/// A permission, as API-key scopes spell it.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PermissionName {
    ManageIdentity,
    ReadEvents,
    PublishEvents,
    ReadLedger,
    PublishCheckpoints,
    ReadRecords,
    WriteRecords,
    ReadOwnRecord,
    ReadAlerts,
    ManageDetection,
    ReadDevices,
    ManageDevices,
}

impl From<PermissionName> for Permission {
    fn from(name: PermissionName) -> Self {
        match name {
            PermissionName::ManageIdentity => Permission::ManageIdentity,
            PermissionName::ReadEvents => Permission::ReadEvents,
            PermissionName::PublishEvents => Permission::PublishEvents,
            PermissionName::ReadLedger => Permission::ReadLedger,
            PermissionName::PublishCheckpoints => Permission::PublishCheckpoints,
            PermissionName::ReadRecords => Permission::ReadRecords,
            PermissionName::WriteRecords => Permission::WriteRecords,
            PermissionName::ReadOwnRecord => Permission::ReadOwnRecord,
            PermissionName::ReadAlerts => Permission::ReadAlerts,
            PermissionName::ManageDetection => Permission::ManageDetection,
            PermissionName::ReadDevices => Permission::ReadDevices,
            PermissionName::ManageDevices => Permission::ManageDevices,
        }
    }
}

fn roles_of(names: &[RoleName]) -> Vec<Role> {
    names.iter().map(|n| Role::from(*n)).collect()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UserQuery {
    /// Return users whose username sorts after this one.
    pub after: Option<String>,
    /// Page size, 1 to 500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u32>,
}

/// Accounts, in username order.
#[utoipa::path(
    get,
    path = "/api/v1/users",
    tag = "identity",
    params(UserQuery),
    security(("bearer" = [])),
    responses((status = 200, body = [UserView]), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
pub async fn list_users(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Query(query): Query<UserQuery>,
) -> Result<Json<Vec<UserView>>, ApiError> {
    let limit = query.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(ApiError::new(ErrorCode::BadRequest, "limit must be between 1 and 500"));
    }
    let users = state.identity.list_users(query.after.as_deref().unwrap_or(""), limit).await?;
    Ok(Json(users.iter().map(UserView::from).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    /// Letters, digits and `. - _ @`; stored in lower case.
    #[schema(pattern = "^[a-zA-Z0-9._@-]{1,128}$")]
    pub username: String,
    #[serde(default)]
    #[schema(max_length = 256)]
    pub display_name: String,
    /// One or more roles; a patient account has only `patient`.
    #[schema(min_items = 1, max_items = 8)]
    pub roles: Vec<RoleName>,
    /// Omit to have a strong password generated and returned once.
    #[schema(value_type = Option<String>)]
    pub password: Option<Redacted<String>>,
    /// For a patient account: the pseudonymous id of their record.
    pub patient_ref: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: UserView,
    /// The generated password, shown once (absent when one was given).
    pub password: Option<String>,
}

/// Create an account.
#[utoipa::path(
    post,
    path = "/api/v1/users",
    tag = "identity",
    request_body = CreateUser,
    security(("bearer" = [])),
    responses(
        (status = 201, body = CreatedUser),
        (status = 400, body = ErrorBody),
        (status = 403, body = ErrorBody),
        (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
pub async fn create_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonObject(request): JsonObject<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    if request.roles.len() > 8 {
        return Err(ApiError::new(ErrorCode::BadRequest, "at most 8 roles"));
    }
    let new = NewUser {
        username: request.username,
        display_name: request.display_name,
        roles: roles_of(&request.roles),
        password: request.password,
        patient_ref: request.patient_ref,
    };
    let (user, generated) = state.identity.create_user(caller.actor(), new).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser { user: UserView::from(&user), password: generated.map(|p| p.expose().clone()) }),
    ))
}

/// One account.
#[utoipa::path(
    get,
    path = "/api/v1/users/{user_id}",
    tag = "identity",
    security(("bearer" = [])),
    params(("user_id" = String, Path)),
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody))
)]
pub async fn get_user(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(user_id): Path<String>,
) -> Result<Json<UserView>, ApiError> {
    Ok(Json(UserView::from(&state.identity.user(&user_id).await?)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    #[schema(max_length = 256)]
    pub display_name: Option<String>,
    #[schema(min_items = 1, max_items = 8)]
    pub roles: Option<Vec<RoleName>>,
    /// Disabling ends every session of the account.
    pub disabled: Option<bool>,
}

/// Change an account's roles, name or whether it is disabled.
#[utoipa::path(
    patch,
    path = "/api/v1/users/{user_id}",
    tag = "identity",
    request_body = UpdateUser,
    security(("bearer" = [])),
    params(("user_id" = String, Path)),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn update_user(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(user_id): Path<String>,
    JsonObject(request): JsonObject<UpdateUser>,
) -> Result<Json<UserView>, ApiError> {
    if request.roles.as_ref().is_some_and(|r| r.len() > 8) {
        return Err(ApiError::new(ErrorCode::BadRequest, "at most 8 roles"));
    }
    let roles = request.roles.as_deref().map(roles_of);
    if caller.user_id.as_deref() == Some(user_id.as_str())
        && (request.disabled == Some(true) || roles.as_ref().is_some_and(|r| !r.contains(&Role::Admin)))
    {
        return Err(ApiError::new(ErrorCode::Conflict, "you cannot disable yourself or drop your own admin role"));
    }
    let changes = UserChanges { display_name: request.display_name, roles, disabled: request.disabled };
    let user = state.identity.update_user(caller.actor(), &user_id, changes).await?;
    Ok(Json(UserView::from(&user)))
}

/// End every session of an account.
#[utoipa::path(
    post,
    path = "/api/v1/users/{user_id}/revoke-sessions",
    tag = "identity",
    security(("bearer" = [])),
    params(("user_id" = String, Path)),
    responses((status = 200, body = Revoked), (status = 404, body = ErrorBody))
)]
pub async fn revoke_sessions(
    State(state): State<AppState>,
    Caller(_caller): Caller,
    Path(user_id): Path<String>,
) -> Result<Json<Revoked>, ApiError> {
    state.identity.user(&user_id).await?;
    Ok(Json(Revoked { revoked: state.identity.revoke_sessions(&user_id).await? }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    pub token_id: String,
    pub label: String,
    pub role: String,
    pub scopes: Vec<String>,
    pub owner: Option<String>,
    pub created: Timestamp,
    pub expires: Option<Timestamp>,
    pub revoked: Option<Timestamp>,
}

impl From<&ApiTokenRecord> for ApiKeyView {
    fn from(t: &ApiTokenRecord) -> Self {
        Self {
            token_id: t.token_id.clone(),
            label: t.label.clone(),
            role: t.role.clone(),
            scopes: t.scopes.clone(),
            owner: t.owner.clone(),
            created: t.created,
            expires: t.expires,
            revoked: t.revoked,
        }
    }
}

/// API keys, newest first (never their secrets).
#[utoipa::path(
    get,
    path = "/api/v1/api-keys",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 200, body = [ApiKeyView]), (status = 403, body = ErrorBody))
)]
pub async fn list_keys(
    State(state): State<AppState>,
    Caller(_caller): Caller,
) -> Result<Json<Vec<ApiKeyView>>, ApiError> {
    Ok(Json(state.identity.list_keys().await?.iter().map(ApiKeyView::from).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    #[schema(min_length = 1, max_length = 128, pattern = "[^\\s]")]
    pub label: String,
    /// The role the key acts as, e.g. `device-service`.
    pub role: RoleName,
    /// Permissions to limit the key to; empty: all its role grants.
    #[serde(default)]
    pub scopes: Vec<PermissionName>,
    /// Days until the key expires (1 to 730); keys always expire.
    #[schema(minimum = 1, maximum = 730)]
    pub expires_in_days: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    pub key: ApiKeyView,
    /// The secret, shown once.
    pub secret: String,
}

/// Issue a scoped, expiring API key for a service or device.
#[utoipa::path(
    post,
    path = "/api/v1/api-keys",
    tag = "identity",
    request_body = CreateKey,
    security(("bearer" = [])),
    responses((status = 201, body = CreatedKey), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody))
)]
pub async fn create_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    JsonObject(request): JsonObject<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let role = Role::from(request.role);
    let scopes: Vec<Permission> = request.scopes.iter().map(|s| Permission::from(*s)).collect();
    if !(1..=730).contains(&request.expires_in_days) {
        return Err(ApiError::new(ErrorCode::BadRequest, "expires_in_days must be between 1 and 730"));
    }
    let now = state.platform.clock.now();
    let expires = Timestamp(now.as_millis() + i64::from(request.expires_in_days) * 86_400_000);
    let issued = state.identity.issue_key(Some(&caller), &request.label, role, &scopes, Some(expires)).await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey { key: ApiKeyView::from(&issued.record), secret: issued.secret.expose().clone() }),
    ))
}

/// Revoke an API key.
#[utoipa::path(
    delete,
    path = "/api/v1/api-keys/{token_id}",
    tag = "identity",
    security(("bearer" = [])),
    params(("token_id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody))
)]
pub async fn revoke_key(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(token_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    state.identity.revoke_key(caller.actor(), &token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
