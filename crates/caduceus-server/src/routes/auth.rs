//! Sign-in, sessions and the caller's own account: passwords, TOTP,
//! recovery codes, passkeys, single sign-on, step-up and sign-out.
//!
//! A sign-in asks for `"session": "cookie"` (a browser: the secret goes only
//! into an HttpOnly, Secure, SameSite=Strict cookie, and the response
//! carries the CSRF token to send as `X-CSRF-Token`) or `"bearer"` (an API
//! client: the response carries the token once).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use caduceus_core::Timestamp;
use caduceus_identity::service::{LoginStep, NewSession, SecondFactor, SessionKind};
use caduceus_store::{PasskeyRecord, SessionRecord, UserRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use subtle::ConstantTimeEq;
use utoipa::{IntoParams, ToSchema};

use crate::access::{Caller, ClientAddr, SESSION_COOKIE};
use crate::app::AppState;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::routes::JsonObject;
use caduceus_core::Redacted;

/// Where a new session's secret goes.
#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionMode {
    Cookie,
    #[default]
    Bearer,
}

impl From<SessionMode> for SessionKind {
    fn from(mode: SessionMode) -> Self {
        match mode {
            SessionMode::Cookie => SessionKind::Cookie,
            SessionMode::Bearer => SessionKind::Bearer,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    #[schema(max_length = 128)]
    pub username: String,
    #[schema(max_length = 1024)]
    #[schema(value_type = String)]
    pub password: Redacted<String>,
    #[serde(default)]
    pub session: SessionMode,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondFactorRequest {
    /// From the `mfa_required` answer.
    #[schema(value_type = String)]
    pub mfa_token: Redacted<String>,
    /// A code from the authenticator app.
    #[schema(value_type = Option<String>)]
    pub totp: Option<Redacted<String>>,
    /// One of the account's recovery codes (each works once).
    #[schema(value_type = Option<String>)]
    pub recovery_code: Option<Redacted<String>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaTokenRequest {
    #[schema(value_type = String)]
    pub mfa_token: Redacted<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyLoginRequest {
    #[serde(default)]
    pub session: SessionMode,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyFinishRequest {
    /// From the `begin` answer.
    pub ceremony: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, as JSON.
    #[schema(value_type = Object)]
    pub credential: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyChallenge {
    pub ceremony: String,
    /// Options for `navigator.credentials.create()` or `.get()`.
    #[schema(value_type = Object)]
    pub options: Value,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserView {
    pub user_id: String,
    pub username: String,
    pub display_name: String,
    pub roles: Vec<String>,
    pub disabled: bool,
    /// Signs in through the OpenID Connect provider.
    pub sso: bool,
    pub created: Timestamp,
}

impl From<&UserRecord> for UserView {
    fn from(u: &UserRecord) -> Self {
        Self {
            user_id: u.user_id.clone(),
            username: u.username.clone(),
            display_name: u.display_name.clone(),
            roles: u.roles.clone(),
            disabled: u.disabled.is_some(),
            sso: u.external.is_some(),
            created: u.created,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum LoginResponse {
    /// Signed in. A bearer session carries `token` (shown once); a cookie
    /// session carries `csrf_token` for unsafe requests.
    Authenticated {
        session_id: String,
        user: UserView,
        methods: Vec<String>,
        expires: Timestamp,
        /// A privileged account without a second factor: only enrolment
        /// and sign-out are allowed until one is enrolled.
        restricted: bool,
        token: Option<String>,
        csrf_token: Option<String>,
    },
    /// The password was right; finish with a second factor.
    MfaRequired { mfa_token: String, methods: Vec<String>, expires_in_secs: u64 },
}

fn session_cookie(value: &str, max_age_secs: i64) -> HeaderValue {
    let cookie = format!("{SESSION_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// The answer to a completed sign-in: the session, and the cookie for a browser.
fn authenticated(state: &AppState, session: NewSession) -> Response {
    let cookie = session.kind == SessionKind::Cookie;
    let max_age = (session.expires.as_millis() - state.platform.clock.now().as_millis()) / 1000;
    let body = LoginResponse::Authenticated {
        session_id: session.session_id,
        user: UserView::from(&session.user),
        methods: session.methods,
        expires: session.expires,
        restricted: session.restricted,
        token: (!cookie).then(|| session.secret.expose().clone()),
        csrf_token: cookie.then_some(session.csrf_token),
    };
    let mut response = Json(body).into_response();
    if cookie {
        response.headers_mut().insert(header::SET_COOKIE, session_cookie(session.secret.expose(), max_age));
    }
    response
}

fn login_step(state: &AppState, step: LoginStep) -> Response {
    match step {
        LoginStep::Authenticated(session) => authenticated(state, *session),
        LoginStep::MfaRequired { mfa_token, methods, expires_in_secs } => Json(LoginResponse::MfaRequired {
            mfa_token: mfa_token.expose().clone(),
            methods: methods.into_iter().map(str::to_owned).collect(),
            expires_in_secs,
        })
        .into_response(),
    }
}

/// Sign in with a username and password. Unknown users and wrong passwords
/// get the same 401; repeated failures get 429 with `Retry-After`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login",
    tag = "identity",
    request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, body = ErrorBody),
        (status = 429, body = ErrorBody, headers(("Retry-After" = u64)))
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    JsonObject(request): JsonObject<LoginRequest>,
) -> Result<Response, ApiError> {
    let step = state
        .identity
        .login_password(&request.username, request.password.expose(), &source, request.session.into())
        .await?;
    Ok(login_step(&state, step))
}

/// Finish a sign-in with a TOTP code or a recovery code. A wrong code ends
/// the pending sign-in: start again with the password.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login/second-factor",
    tag = "identity",
    request_body = SecondFactorRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody))
)]
pub async fn second_factor(
    State(state): State<AppState>,
    JsonObject(request): JsonObject<SecondFactorRequest>,
) -> Result<Response, ApiError> {
    let factor = second_factor_of(request.totp, request.recovery_code)?
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "give `totp` or `recovery_code`"))?;
    let session = state.identity.login_second_factor(request.mfa_token.expose(), factor).await?;
    Ok(authenticated(&state, session))
}

fn second_factor_of(
    totp: Option<Redacted<String>>,
    recovery: Option<Redacted<String>>,
) -> Result<Option<SecondFactor>, ApiError> {
    match (totp, recovery) {
        (Some(_), Some(_)) => Err(ApiError::new(ErrorCode::BadRequest, "give either `totp` or `recovery_code`")),
        (Some(code), None) => Ok(Some(SecondFactor::Totp(code))),
        (None, Some(code)) => Ok(Some(SecondFactor::RecoveryCode(code))),
        (None, None) => Ok(None),
    }
}

/// Start a passkey assertion as the second factor of a pending sign-in;
/// finish it at `/api/v1/auth/passkey/finish`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/login/passkey/begin",
    tag = "identity",
    request_body = MfaTokenRequest,
    responses((status = 200, body = PasskeyChallenge), (status = 401, body = ErrorBody))
)]
pub async fn passkey_second_factor(
    State(state): State<AppState>,
    JsonObject(request): JsonObject<MfaTokenRequest>,
) -> Result<Json<PasskeyChallenge>, ApiError> {
    let (ceremony, options) = state.identity.begin_passkey_second_factor(request.mfa_token.expose()).await?;
    Ok(Json(PasskeyChallenge { ceremony, options }))
}

/// Start a passwordless sign-in with a passkey (a discoverable credential:
/// no username needed).
#[utoipa::path(
    post,
    path = "/api/v1/auth/passkey/begin",
    tag = "identity",
    request_body = PasskeyLoginRequest,
    responses((status = 200, body = PasskeyChallenge))
)]
pub async fn passkey_begin(
    State(state): State<AppState>,
    JsonObject(request): JsonObject<PasskeyLoginRequest>,
) -> Result<Json<PasskeyChallenge>, ApiError> {
    let (ceremony, options) = state.identity.begin_passkey_login(request.session.into())?;
    Ok(Json(PasskeyChallenge { ceremony, options }))
}

/// Finish a passkey sign-in (passwordless or second factor).
#[utoipa::path(
    post,
    path = "/api/v1/auth/passkey/finish",
    tag = "identity",
    request_body = PasskeyFinishRequest,
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn passkey_finish(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    JsonObject(request): JsonObject<PasskeyFinishRequest>,
) -> Result<Response, ApiError> {
    match state.identity.finish_passkey(&request.ceremony, &request.credential, None, &source).await? {
        Some(session) => Ok(authenticated(&state, session)),
        None => Err(ApiError::new(ErrorCode::BadRequest, "that ceremony is a re-authentication")),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OidcLoginQuery {
    /// `cookie` (default, a browser) or `bearer`.
    pub session: Option<String>,
}

/// Ties a single sign-on to the browser that started it (RFC 6749 §10.12):
/// the callback must come with this cookie, holding a digest of its
/// `state`. Without it, an attacker could send a victim the callback link of
/// the attacker's own sign-in and sign the victim in to the attacker's
/// account (login CSRF). `SameSite=Lax`: the provider's redirect back is a
/// cross-site top-level navigation.
pub const OIDC_BINDING_COOKIE: &str = "__Host-caduceus-sso";
/// As long as identity keeps a pending sign-in.
const OIDC_BINDING_MAX_AGE_SECS: u64 = 600;

fn oidc_binding(oidc_state: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::new().chain_update(b"caduceus-sso-binding-v1\0").chain_update(oidc_state).finalize())
}

fn oidc_binding_cookie(value: &str, max_age_secs: u64) -> HeaderValue {
    let cookie =
        format!("{OIDC_BINDING_COOKIE}={value}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={max_age_secs}");
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static("invalid=1"))
}

/// Start single sign-on: redirects to the OpenID Connect provider, with a
/// cookie that ties the sign-in to this browser.
#[utoipa::path(
    get,
    path = "/api/v1/auth/oidc/login",
    tag = "identity",
    params(OidcLoginQuery),
    responses((status = 303, description = "to the provider"), (status = 404, body = ErrorBody))
)]
pub async fn oidc_login(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    Query(query): Query<OidcLoginQuery>,
) -> Result<Response, ApiError> {
    let kind = if query.session.as_deref() == Some("bearer") { SessionKind::Bearer } else { SessionKind::Cookie };
    let url = state.identity.begin_oidc(kind, &source)?;
    let oidc_state = url.query_pairs().find(|(k, _)| k == "state").map(|(_, v)| v.into_owned()).unwrap_or_default();
    let mut response = Redirect::to(url.as_str()).into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, oidc_binding_cookie(&oidc_binding(&oidc_state), OIDC_BINDING_MAX_AGE_SECS));
    Ok(response)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OidcCallbackQuery {
    pub state: Option<String>,
    pub code: Option<String>,
    /// Set by the provider when the user or the provider refused.
    pub error: Option<String>,
}

/// Where the provider sends the browser back; completes the sign-in.
#[utoipa::path(
    get,
    path = "/api/v1/auth/oidc/callback",
    tag = "identity",
    params(OidcCallbackQuery),
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody))
)]
pub async fn oidc_callback(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    headers: HeaderMap,
    Query(query): Query<OidcCallbackQuery>,
) -> Result<Response, ApiError> {
    if query.error.is_some() {
        return Err(ApiError::new(ErrorCode::Unauthorized, "the identity provider refused the sign-in"));
    }
    let (Some(oidc_state), Some(code)) = (query.state, query.code) else {
        return Err(ApiError::new(ErrorCode::Unauthorized, "the identity provider did not complete the sign-in"));
    };
    if oidc_state.len() > 512 || code.len() > 4096 {
        return Err(ApiError::new(ErrorCode::BadRequest, "state or code is too long"));
    }
    let bound = crate::access::cookie(&headers, OIDC_BINDING_COOKIE)
        .is_some_and(|c| bool::from(c.as_bytes().ct_eq(oidc_binding(&oidc_state).as_bytes())));
    if !bound {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "this sign-in was not started in this browser; start again",
        ));
    }
    let session = state.identity.complete_oidc(&oidc_state, &code, &source).await?;
    let mut response = authenticated(&state, session);
    response.headers_mut().append(header::SET_COOKIE, oidc_binding_cookie("", 0));
    Ok(response)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    pub session_id: String,
    pub user: Option<UserView>,
    /// `cookie`, `bearer`, or `api_key`.
    pub kind: String,
    pub roles: Vec<String>,
    pub permissions: Vec<String>,
    pub methods: Vec<String>,
    pub restricted: bool,
    pub expires: Option<Timestamp>,
    pub elevated_until: Option<Timestamp>,
    pub idle_timeout_secs: u64,
}

/// Who the caller is, what they may do, and how long the session lasts.
#[utoipa::path(
    get,
    path = "/api/v1/auth/session",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 200, body = SessionView), (status = 401, body = ErrorBody))
)]
pub async fn session(State(state): State<AppState>, Caller(principal): Caller) -> Result<Json<SessionView>, ApiError> {
    let user = match &principal.user_id {
        Some(id) => Some(UserView::from(&state.identity.user(id).await?)),
        None => None,
    };
    let (session_id, kind, methods, expires, elevated_until) = match principal.session() {
        Some(s) => {
            let elevated = s.elevated_until.load(std::sync::atomic::Ordering::Relaxed);
            (
                s.session_id.clone(),
                s.kind.as_str().to_owned(),
                s.methods.clone(),
                Some(s.expires),
                (elevated > 0).then_some(Timestamp(elevated)),
            )
        }
        None => {
            let id = match &principal.subject {
                caduceus_identity::service::Subject::ApiKey { token_id } => token_id.clone(),
                caduceus_identity::service::Subject::Session(s) => s.session_id.clone(),
            };
            (id, "api_key".to_owned(), vec!["api_key".to_owned()], None, None)
        }
    };
    Ok(Json(SessionView {
        session_id,
        user,
        kind,
        roles: principal.roles.iter().map(|r| r.name().to_owned()).collect(),
        permissions: principal.permissions.iter().map(|p| p.name().to_owned()).collect(),
        methods,
        restricted: principal.restricted,
        expires,
        elevated_until,
        idle_timeout_secs: state.platform.config.identity.idle_timeout_secs,
    }))
}

fn clear_cookie() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0));
    response
}

/// Sign out: end this session.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody))
)]
pub async fn logout(State(state): State<AppState>, Caller(principal): Caller) -> Result<Response, ApiError> {
    state.identity.logout(&principal).await?;
    Ok(clear_cookie())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Revoked {
    pub revoked: u64,
}

/// Sign out everywhere: end every session of this account.
#[utoipa::path(
    post,
    path = "/api/v1/auth/logout-all",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody))
)]
pub async fn logout_all(State(state): State<AppState>, Caller(principal): Caller) -> Result<Response, ApiError> {
    let revoked = state.identity.logout_everywhere(&principal).await?;
    let mut response = Json(Revoked { revoked }).into_response();
    response.headers_mut().insert(header::SET_COOKIE, session_cookie("", 0));
    Ok(response)
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepUpRequest {
    /// For an account without a second factor.
    #[schema(value_type = Option<String>)]
    pub password: Option<Redacted<String>>,
    #[schema(value_type = Option<String>)]
    pub totp: Option<Redacted<String>>,
    #[schema(value_type = Option<String>)]
    pub recovery_code: Option<Redacted<String>>,
    /// Finishes a passkey re-authentication begun at `/api/v1/auth/step-up/passkey/begin`.
    pub ceremony: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub credential: Option<Value>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StepUpResponse {
    pub elevated_until: Timestamp,
}

/// Re-authenticate for privileged actions (a short elevated window).
#[utoipa::path(
    post,
    path = "/api/v1/auth/step-up",
    tag = "identity",
    security(("bearer" = [])),
    request_body = StepUpRequest,
    responses((status = 200, body = StepUpResponse), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody))
)]
pub async fn step_up(
    State(state): State<AppState>,
    ClientAddr(source): ClientAddr,
    Caller(principal): Caller,
    JsonObject(request): JsonObject<StepUpRequest>,
) -> Result<Json<StepUpResponse>, ApiError> {
    if let (Some(ceremony), Some(credential)) = (&request.ceremony, &request.credential) {
        state.identity.finish_passkey(ceremony, credential, Some(&principal), &source).await?;
        let session = principal.session().ok_or_else(|| ApiError::new(ErrorCode::BadRequest, "not a session"))?;
        let until = session.elevated_until.load(std::sync::atomic::Ordering::Relaxed);
        return Ok(Json(StepUpResponse { elevated_until: Timestamp(until) }));
    }
    let factor = second_factor_of(request.totp, request.recovery_code)?;
    let password = request.password.as_ref().map(|p| p.expose().as_str());
    let until = state.identity.step_up(&principal, password, factor, &source).await?;
    Ok(Json(StepUpResponse { elevated_until: until }))
}

/// Start a passkey re-authentication; finish it at `/api/v1/auth/step-up`
/// with `ceremony` and `credential`.
#[utoipa::path(
    post,
    path = "/api/v1/auth/step-up/passkey/begin",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 200, body = PasskeyChallenge), (status = 401, body = ErrorBody))
)]
pub async fn step_up_passkey(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<Json<PasskeyChallenge>, ApiError> {
    let (ceremony, options) = state.identity.begin_passkey_step_up(&principal).await?;
    Ok(Json(PasskeyChallenge { ceremony, options }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SessionSummary {
    pub session_id: String,
    pub kind: String,
    pub methods: Vec<String>,
    pub source: String,
    pub created: Timestamp,
    pub last_seen: Timestamp,
    pub expires: Timestamp,
    pub revoked: Option<Timestamp>,
}

impl From<&SessionRecord> for SessionSummary {
    fn from(s: &SessionRecord) -> Self {
        Self {
            session_id: s.session_id.clone(),
            kind: s.kind.clone(),
            methods: s.methods.clone(),
            source: s.source.clone(),
            created: s.created,
            last_seen: s.last_seen,
            expires: s.expires,
            revoked: s.revoked,
        }
    }
}

/// The caller's sessions, live and ended.
#[utoipa::path(
    get,
    path = "/api/v1/account/sessions",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 200, body = [SessionSummary]), (status = 401, body = ErrorBody))
)]
pub async fn my_sessions(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<Json<Vec<SessionSummary>>, ApiError> {
    let user_id = principal.user_id.ok_or_else(|| ApiError::new(ErrorCode::Forbidden, "an API key has no sessions"))?;
    let sessions = state.identity.sessions_of(&user_id).await?;
    Ok(Json(sessions.iter().map(SessionSummary::from).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    #[schema(value_type = String)]
    pub current_password: Redacted<String>,
    #[schema(value_type = String)]
    pub new_password: Redacted<String>,
}

/// Change the caller's password; every other session of the account ends.
#[utoipa::path(
    post,
    path = "/api/v1/account/password",
    tag = "identity",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 204), (status = 401, body = ErrorBody), (status = 422, body = ErrorBody))
)]
pub async fn change_password(
    State(state): State<AppState>,
    Caller(principal): Caller,
    JsonObject(request): JsonObject<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    state
        .identity
        .change_password(&principal, request.current_password.expose(), request.new_password.expose())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrolmentView {
    /// The secret in base32, for typing into an app by hand.
    pub secret: String,
    /// The `otpauth://` URI.
    pub uri: String,
    /// The URI as a QR code, an SVG image.
    pub qr_svg: String,
}

/// Start TOTP enrolment: scan the QR code, then confirm with a first code.
#[utoipa::path(
    post,
    path = "/api/v1/account/totp",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 200, body = TotpEnrolmentView), (status = 409, body = ErrorBody))
)]
pub async fn totp_begin(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<Json<TotpEnrolmentView>, ApiError> {
    let enrolment = state.identity.begin_totp(&principal).await?;
    Ok(Json(TotpEnrolmentView {
        secret: enrolment.secret_base32.expose().clone(),
        uri: enrolment.uri.expose().clone(),
        qr_svg: enrolment.qr_svg,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[schema(value_type = String)]
    pub code: Redacted<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Shown once: each works once, instead of a second factor.
    pub recovery_codes: Vec<String>,
}

/// Confirm TOTP enrolment with a first code. The first second factor of an
/// account comes with recovery codes.
#[utoipa::path(
    post,
    path = "/api/v1/account/totp/confirm",
    tag = "identity",
    security(("bearer" = [])),
    request_body = CodeRequest,
    responses((status = 200, body = RecoveryCodes), (status = 401, body = ErrorBody))
)]
pub async fn totp_confirm(
    State(state): State<AppState>,
    Caller(principal): Caller,
    JsonObject(request): JsonObject<CodeRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let codes = state.identity.confirm_totp(&principal, request.code.expose()).await?.unwrap_or_default();
    Ok(Json(RecoveryCodes { recovery_codes: codes.iter().map(|c| c.expose().clone()).collect() }))
}

/// Remove the caller's TOTP (needs a recent re-authentication).
#[utoipa::path(
    delete,
    path = "/api/v1/account/totp",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody))
)]
pub async fn totp_remove(State(state): State<AppState>, Caller(principal): Caller) -> Result<StatusCode, ApiError> {
    state.identity.remove_totp(&principal).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the caller's recovery codes (needs a recent re-authentication).
#[utoipa::path(
    post,
    path = "/api/v1/account/recovery-codes",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 403, body = ErrorBody))
)]
pub async fn recovery_codes(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let codes = state.identity.regenerate_recovery_codes(&principal).await?;
    Ok(Json(RecoveryCodes { recovery_codes: codes.iter().map(|c| c.expose().clone()).collect() }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PasskeyView {
    /// base64url, no padding.
    pub credential_id: String,
    pub name: String,
    pub created: Timestamp,
    pub last_used: Option<Timestamp>,
}

impl From<&PasskeyRecord> for PasskeyView {
    fn from(p: &PasskeyRecord) -> Self {
        use base64::Engine;
        Self {
            credential_id: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&p.credential_id),
            name: p.name.clone(),
            created: p.created,
            last_used: p.last_used,
        }
    }
}

/// The caller's passkeys.
#[utoipa::path(
    get,
    path = "/api/v1/account/passkeys",
    tag = "identity",
    security(("bearer" = [])),
    responses((status = 200, body = [PasskeyView]))
)]
pub async fn passkeys(
    State(state): State<AppState>,
    Caller(principal): Caller,
) -> Result<Json<Vec<PasskeyView>>, ApiError> {
    Ok(Json(state.identity.list_passkeys(&principal).await?.iter().map(PasskeyView::from).collect()))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasskeyName {
    /// A name to tell the passkey apart (e.g. "ward 3 laptop").
    #[schema(max_length = 64)]
    pub name: Option<String>,
}

/// Start registering a passkey (user verification and a discoverable
/// credential are required).
#[utoipa::path(
    post,
    path = "/api/v1/account/passkeys/begin",
    tag = "identity",
    security(("bearer" = [])),
    request_body = PasskeyName,
    responses((status = 200, body = PasskeyChallenge))
)]
pub async fn passkey_register_begin(
    State(state): State<AppState>,
    Caller(principal): Caller,
    JsonObject(request): JsonObject<PasskeyName>,
) -> Result<Json<PasskeyChallenge>, ApiError> {
    let name = request.name.unwrap_or_default();
    let (ceremony, options) = state.identity.begin_passkey_registration(&principal, &name).await?;
    Ok(Json(PasskeyChallenge { ceremony, options }))
}

/// Finish registering a passkey with the authenticator's response.
#[utoipa::path(
    post,
    path = "/api/v1/account/passkeys/finish",
    tag = "identity",
    security(("bearer" = [])),
    request_body = PasskeyFinishRequest,
    responses((status = 201, body = PasskeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody))
)]
pub async fn passkey_register_finish(
    State(state): State<AppState>,
    Caller(principal): Caller,
    JsonObject(request): JsonObject<PasskeyFinishRequest>,
) -> Result<(StatusCode, Json<PasskeyView>), ApiError> {
    let record = state.identity.finish_passkey_registration(&principal, &request.ceremony, &request.credential).await?;
    Ok((StatusCode::CREATED, Json(PasskeyView::from(&record))))
}

/// Remove one of the caller's passkeys (needs a recent re-authentication).
#[utoipa::path(
    delete,
    path = "/api/v1/account/passkeys/{credential_id}",
    tag = "identity",
    security(("bearer" = [])),
    params(("credential_id" = String, Path, description = "base64url")),
    responses((status = 204), (status = 404, body = ErrorBody))
)]
pub async fn passkey_remove(
    State(state): State<AppState>,
    Caller(principal): Caller,
    Path(credential_id): Path<String>,
) -> Result<StatusCode, ApiError> {
    use base64::Engine;
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(credential_id.as_bytes())
        .map_err(|_| ApiError::new(ErrorCode::BadRequest, "credential_id is base64url"))?;
    state.identity.remove_passkey(&principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
