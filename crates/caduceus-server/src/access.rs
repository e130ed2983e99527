//! Authentication and authorisation of every request, in one place.
//!
//! Every route declares what it needs in [`POLICY`]; the middleware looks
//! the matched route up before any handler runs, and a route without a
//! declaration is refused (fail closed). `tests/identity.rs` enumerates every
//! route of the router and fails if one is missing here, then checks that
//! each protected route answers 401 without credentials and 403 to a role
//! without the permission.
//!
//! Credentials: a bearer token (a session secret `cas_…` or an API key
//! `cad_…`) or the session cookie. Unsafe requests authenticated by the
//! cookie must carry the session's CSRF token in `X-CSRF-Token` and, when
//! the browser sends one, an `Origin` equal to the public URL's.

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use caduceus_identity::roles::Permission;
use caduceus_identity::service::{self, IdentityError, Principal};
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::error::{ApiError, ErrorCode};

/// The session cookie. `__Host-` makes browsers insist on Secure, Path=/
/// and no Domain, so no other host can set or read it.
pub const SESSION_COOKIE: &str = "__Host-caduceus-session";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// What a route requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// Any signed-in caller, including a privileged user who must still
    /// enrol a second factor (enrolment, sign-out, "who am I").
    SignedIn,
    /// A caller holding the permission.
    Allowed(Permission),
    /// Any fully signed-in caller (no pending second-factor enrolment): the
    /// vault's own policy decides, per patient and resource.
    Records,
    /// A caller holding the permission (or, with `None`, any fully signed-in
    /// user acting on their own account) whose session re-authenticated
    /// recently (step-up).
    Elevated(Option<Permission>),
}

use Access::{Allowed, Elevated, Public, Records, SignedIn};
use Permission::{
    ManageDetection, ManageDevices, ManageIdentity, PublishCheckpoints, PublishEvents, ReadAlerts, ReadDevices,
    ReadEvents, ReadLedger,
};

/// Every route, by method and path template. Public routes are the short list
/// of those marked `Public`.
pub const POLICY: &[(&str, &str, Access)] = &[
    // Operations and the API document.
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/metrics", Public),
    ("GET", "/api/openapi.json", Public),
    // The ledger's public face (C2SP checkpoints and tiles) and the witness
    // endpoint, which authenticates by the log's signature.
    ("GET", "/ledger/checkpoint", Public),
    ("GET", "/ledger/key", Public),
    ("GET", "/ledger/tile/{*path}", Public),
    ("POST", "/witness/add-checkpoint", Public),
    // Sign-in.
    ("POST", "/api/v1/auth/login", Public),
    ("POST", "/api/v1/auth/login/second-factor", Public),
    ("POST", "/api/v1/auth/login/passkey/begin", Public),
    ("POST", "/api/v1/auth/passkey/begin", Public),
    ("POST", "/api/v1/auth/passkey/finish", Public),
    ("GET", "/api/v1/auth/oidc/login", Public),
    ("GET", "/api/v1/auth/oidc/callback", Public),
    // The caller's own session and account.
    ("GET", "/api/v1/auth/session", SignedIn),
    ("POST", "/api/v1/auth/logout", SignedIn),
    ("POST", "/api/v1/auth/logout-all", SignedIn),
    ("POST", "/api/v1/auth/step-up", SignedIn),
    ("POST", "/api/v1/auth/step-up/passkey/begin", SignedIn),
    ("GET", "/api/v1/account/sessions", SignedIn),
    ("POST", "/api/v1/account/password", SignedIn),
    ("POST", "/api/v1/account/totp", SignedIn),
    ("POST", "/api/v1/account/totp/confirm", SignedIn),
    ("DELETE", "/api/v1/account/totp", Elevated(None)),
    ("POST", "/api/v1/account/recovery-codes", Elevated(None)),
    ("GET", "/api/v1/account/passkeys", SignedIn),
    ("POST", "/api/v1/account/passkeys/begin", SignedIn),
    ("POST", "/api/v1/account/passkeys/finish", SignedIn),
    ("DELETE", "/api/v1/account/passkeys/{credential_id}", Elevated(None)),
    // Administration of accounts and keys.
    ("GET", "/api/v1/users", Allowed(ManageIdentity)),
    ("POST", "/api/v1/users", Elevated(Some(ManageIdentity))),
    ("GET", "/api/v1/users/{user_id}", Allowed(ManageIdentity)),
    ("PATCH", "/api/v1/users/{user_id}", Elevated(Some(ManageIdentity))),
    ("POST", "/api/v1/users/{user_id}/revoke-sessions", Elevated(Some(ManageIdentity))),
    ("GET", "/api/v1/api-keys", Allowed(ManageIdentity)),
    ("POST", "/api/v1/api-keys", Elevated(Some(ManageIdentity))),
    ("DELETE", "/api/v1/api-keys/{token_id}", Elevated(Some(ManageIdentity))),
    // Events and status.
    ("GET", "/api/v1/events", Allowed(ReadEvents)),
    ("POST", "/api/v1/events", Allowed(PublishEvents)),
    ("GET", "/api/v1/status", Allowed(ReadEvents)),
    // Ledger proofs and checkpoints.
    ("GET", "/api/v1/ledger", Allowed(ReadLedger)),
    ("POST", "/api/v1/ledger/checkpoints", Allowed(PublishCheckpoints)),
    ("GET", "/api/v1/ledger/entries/{index}/inclusion", Allowed(ReadLedger)),
    ("GET", "/api/v1/ledger/events/{seq}/inclusion", Allowed(ReadLedger)),
    ("GET", "/api/v1/ledger/leaves/{leaf_hash}/inclusion", Allowed(ReadLedger)),
    ("GET", "/api/v1/ledger/consistency", Allowed(ReadLedger)),
    ("GET", "/api/v1/ledger/entries/{index}/bundle", Allowed(ReadLedger)),
    ("GET", "/api/v1/ledger/events/{seq}/bundle", Allowed(ReadLedger)),
    ("GET", "/api/v1/ledger/leaves/{leaf_hash}/bundle", Allowed(ReadLedger)),
    // The vault (FHIR): what a caller may see is decided per patient by the
    // vault's policy; the CapabilityStatement is public.
    ("GET", "/fhir/metadata", Public),
    ("POST", "/fhir", Records),
    ("GET", "/fhir/{resource_type}", Records),
    ("POST", "/fhir/{resource_type}", Records),
    ("GET", "/fhir/{resource_type}/{id}", Records),
    ("PUT", "/fhir/{resource_type}/{id}", Records),
    ("DELETE", "/fhir/{resource_type}/{id}", Records),
    ("GET", "/fhir/{resource_type}/{id}/{operation}", Records),
    ("POST", "/fhir/{resource_type}/{id}/{operation}", Records),
    ("GET", "/fhir/{resource_type}/{id}/_history/{version}", Records),
    ("GET", "/api/v1/vault/break-glass", Records),
    ("POST", "/api/v1/vault/break-glass/{grant_id}/review", Records),
    ("POST", "/api/v1/vault/assignments", Records),
    // Detection rules: read by analysts and auditors, changed by analysts.
    ("GET", "/api/v1/detect/rules", Allowed(ReadAlerts)),
    ("POST", "/api/v1/detect/rules", Allowed(ManageDetection)),
    ("GET", "/api/v1/detect/rules/{rule_id}", Allowed(ReadAlerts)),
    ("DELETE", "/api/v1/detect/rules/{rule_id}", Allowed(ManageDetection)),
    ("POST", "/api/v1/detect/rules/{rule_id}/enable", Allowed(ManageDetection)),
    ("POST", "/api/v1/detect/rules/{rule_id}/disable", Allowed(ManageDetection)),
    ("POST", "/api/v1/detect/rules/test", Allowed(ReadAlerts)),
    // The network stage: its status is read like alerts; a posted capture
    // becomes flows on the spine, like a sensor's.
    ("GET", "/api/v1/network/status", Allowed(ReadAlerts)),
    ("POST", "/api/v1/network/pcap", Allowed(ManageDetection)),
    // Devices: read by admins, analysts and auditors; changed by admins and
    // analysts (biomedical engineering works through an analyst's account or key).
    ("GET", "/api/v1/devices", Allowed(ReadDevices)),
    ("POST", "/api/v1/devices", Allowed(ManageDevices)),
    ("GET", "/api/v1/devices/{id}", Allowed(ReadDevices)),
    ("PUT", "/api/v1/devices/{id}", Allowed(ManageDevices)),
    ("DELETE", "/api/v1/devices/{id}", Allowed(ManageDevices)),
    ("POST", "/api/v1/devices/import", Allowed(ManageDevices)),
    ("GET", "/api/v1/devices/unknown", Allowed(ReadDevices)),
    ("GET", "/api/v1/devices/sboms", Allowed(ReadDevices)),
    ("POST", "/api/v1/devices/sboms", Allowed(ManageDevices)),
    ("GET", "/api/v1/advisories", Allowed(ReadDevices)),
    ("POST", "/api/v1/advisories", Allowed(ManageDevices)),
    ("GET", "/api/v1/advisories/{id}", Allowed(ReadDevices)),
    ("POST", "/api/v1/devices/scan", Allowed(ManageDevices)),
    ("GET", "/api/v1/devices/findings", Allowed(ReadDevices)),
    ("GET", "/api/v1/devices/{id}/risk", Allowed(ReadDevices)),
    ("GET", "/api/v1/devices/status", Allowed(ReadDevices)),
    // Alerts: read by admins, analysts and auditors; triaged by admins and
    // analysts. Suppressing silences detection, so it needs a recent
    // re-authentication; lifting a suppression does not.
    ("GET", "/api/v1/alerts", Allowed(ReadAlerts)),
    ("GET", "/api/v1/alerts/{id}", Allowed(ReadAlerts)),
    ("POST", "/api/v1/alerts/{id}/acknowledge", Allowed(ManageDetection)),
    ("POST", "/api/v1/alerts/{id}/assign", Allowed(ManageDetection)),
    ("POST", "/api/v1/alerts/{id}/close", Allowed(ManageDetection)),
    ("POST", "/api/v1/alerts/{id}/suppress", Elevated(Some(ManageDetection))),
    ("GET", "/api/v1/suppressions", Allowed(ReadAlerts)),
    ("POST", "/api/v1/suppressions", Elevated(Some(ManageDetection))),
    ("DELETE", "/api/v1/suppressions/{id}", Allowed(ManageDetection)),
];

pub fn access_for(method: &Method, path: &str) -> Option<Access> {
    POLICY.iter().find(|(m, p, _)| *m == method.as_str() && *p == path).map(|(_, _, a)| *a)
}

impl From<IdentityError> for ApiError {
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::BadCredentials => Self::new(ErrorCode::Unauthorized, "invalid credentials"),
            IdentityError::Unauthenticated => {
                Self::new(ErrorCode::Unauthorized, "sign in first, or the session has ended")
            }
            IdentityError::Throttled { retry_after_ms } => {
                let secs = u64::try_from(retry_after_ms.max(1)).unwrap_or(1).div_ceil(1000);
                Self::new(ErrorCode::TooManyRequests, format!("too many attempts; try again in {secs} s"))
                    .retry_after(secs)
            }
            IdentityError::Forbidden(m) => Self::new(ErrorCode::Forbidden, m),
            IdentityError::StepUpRequired => Self::new(ErrorCode::StepUpRequired, err.to_string()),
            IdentityError::BadRequest(m) => Self::new(ErrorCode::BadRequest, m),
            IdentityError::NotFound(m) => Self::new(ErrorCode::NotFound, m),
            IdentityError::Conflict(m) => Self::new(ErrorCode::Conflict, m),
            IdentityError::Password(e) => Self::new(ErrorCode::Unprocessable, e.to_string()),
            IdentityError::SsoDisabled => Self::new(ErrorCode::NotFound, err.to_string()),
            IdentityError::Sso(m) => {
                tracing::warn!(problem = %m, "single sign-on failed");
                Self::new(ErrorCode::Unauthorized, "single sign-on failed")
            }
            IdentityError::Store(e) => e.into(),
            IdentityError::Audit(m) => {
                tracing::warn!(problem = %m, "audit event could not be recorded");
                Self::new(ErrorCode::Unavailable, "the audit trail is unavailable; try again")
            }
            IdentityError::Internal(m) => Self::internal(m),
        }
    }
}

/// The credentials a request carries, and whether they came in the cookie.
fn credentials(headers: &HeaderMap) -> Option<(String, bool)> {
    if let Some(value) = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let token = value.strip_prefix("Bearer ").or_else(|| value.strip_prefix("bearer "))?.trim();
        return Some((token.to_owned(), false));
    }
    cookie(headers, SESSION_COOKIE).map(|c| (c, true))
}

/// One cookie's value from the `Cookie` headers.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn unsafe_method(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Reject a cookie-authenticated unsafe request from another origin.
fn check_csrf(state: &AppState, headers: &HeaderMap, secret: &str) -> Result<(), ApiError> {
    let forbidden = || ApiError::new(ErrorCode::Forbidden, "missing or wrong X-CSRF-Token for this session");
    let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()).ok_or_else(forbidden)?;
    if !bool::from(sent.as_bytes().ct_eq(service::csrf_token(secret).as_bytes())) {
        return Err(forbidden());
    }
    if let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
        && origin != state.public_origin
    {
        return Err(ApiError::new(ErrorCode::Forbidden, "cross-origin request refused"));
    }
    Ok(())
}

/// The route-level middleware that enforces [`POLICY`].
pub async fn authorize(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let Some(path) = request.extensions().get::<MatchedPath>().map(|p| p.as_str().to_owned()) else {
        return next.run(request).await;
    };
    let Some(access) = access_for(request.method(), &path) else {
        tracing::error!(route = %path, method = %request.method(), "route has no access declaration; refused");
        return ApiError::new(ErrorCode::Forbidden, "this endpoint declares no access rule").into_response();
    };
    if access == Public {
        return next.run(request).await;
    }
    let headers = request.headers().clone();
    let method = request.method().clone();
    match authenticate(&state, &headers, &method, access).await {
        Ok(principal) => {
            request.extensions_mut().insert(principal);
            next.run(request).await
        }
        Err(e) => e.into_response(),
    }
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    method: &Method,
    access: Access,
) -> Result<Principal, ApiError> {
    let (secret, from_cookie) = credentials(headers)
        .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "sign in, or send a bearer token"))?;
    let identity = &state.identity;
    let principal = if secret.starts_with(service::API_KEY_PREFIX) && !from_cookie {
        identity.authenticate_key(&secret).await?
    } else {
        identity.authenticate_session(&secret).await?
    };
    if from_cookie && unsafe_method(method) {
        check_csrf(state, headers, &secret)?;
    }
    let now = state.platform.clock.now();
    let restricted =
        || ApiError::new(ErrorCode::Forbidden, "your role requires a second factor: enrol TOTP or a passkey first");
    match access {
        Public | SignedIn => {}
        Records => {
            if principal.restricted {
                return Err(restricted());
            }
        }
        Allowed(permission) => {
            if principal.restricted {
                return Err(restricted());
            }
            if !principal.can(permission) {
                return Err(ApiError::new(ErrorCode::Forbidden, "your role does not allow this"));
            }
        }
        Elevated(permission) => {
            if principal.restricted {
                return Err(restricted());
            }
            if permission.is_some_and(|p| !principal.can(p)) {
                return Err(ApiError::new(ErrorCode::Forbidden, "your role does not allow this"));
            }
            if permission.is_none() && principal.session().is_none() {
                return Err(ApiError::new(ErrorCode::Forbidden, "this is done from a signed-in session"));
            }
            if !principal.is_elevated(now) {
                return Err(IdentityError::StepUpRequired.into());
            }
        }
    }
    Ok(principal)
}

/// The authenticated caller of a protected route.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Caller)
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "sign in, or send a bearer token"))
    }
}

/// The client address, as the connection reports it.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let addr = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        Ok(ClientAddr(addr))
    }
}
