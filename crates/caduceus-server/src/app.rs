//! The HTTP application: routes (each documented in the OpenAPI document),
//! and the layers every request passes through — request ids, metrics and
//! access log, body size limit, timeout, panic catching, JSON errors and
//! security headers.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http_body_util::BodyExt;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody, ErrorCode, ErrorDetail};
use crate::metrics::{HttpLabels, Metrics};
use crate::platform::Platform;
use crate::platform::ServerError;
use crate::routes::{alerts, auth, detect, devices, events, health, ledger, network, status, users, witness};
use caduceus_identity::service::IdentityService;

/// Shared state of every handler.
#[derive(Clone, Debug)]
pub struct AppState {
    pub platform: Arc<Platform>,
    pub metrics: Arc<Metrics>,
    pub identity: Arc<IdentityService>,
    /// The patient-record vault (absent only in tests that do not need it).
    pub vault: Option<Arc<caduceus_vault::service::Vault>>,
    /// Detection rules and alerts (absent when `detect.enabled` is false,
    /// and in tests that do not need it).
    pub detect: Option<Arc<crate::detect::DetectService>>,
    /// The network stage (absent when `network.enabled` is false, and in
    /// tests that do not need it).
    pub network: Option<Arc<crate::network::NetworkService>>,
    /// Devices, SBOMs, advisories and scans (absent when `devices.enabled`
    /// is false, and in tests that do not need it).
    pub devices: Option<Arc<crate::devices::DevicesService>>,
    /// `scheme://host[:port]` of the public URL, for CSRF origin checks.
    pub public_origin: String,
}

impl AppState {
    /// Build the state, contacting the OpenID Connect provider if one is configured.
    pub async fn start(platform: Arc<Platform>) -> Result<Self, ServerError> {
        let identity = crate::identity::service(&platform, true).await?;
        let vault = crate::vault::open(&platform).await?;
        let detect = if platform.config.detect.enabled {
            Some(crate::detect::DetectService::open(&platform, Some(vault.clone())).await?)
        } else {
            None
        };
        let network = platform.config.network.enabled.then(|| crate::network::NetworkService::open(&platform));
        let devices = if platform.config.devices.enabled {
            Some(crate::devices::DevicesService::open(&platform).await?)
        } else {
            None
        };
        let mut state = Self::with_parts(platform, identity, detect);
        state.vault = Some(vault);
        if let Some(network) = &network {
            Arc::get_mut(&mut state.metrics)
                .map(|metrics| metrics.register_network(network.clone()))
                .unwrap_or_else(|| tracing::warn!("network metrics not registered"));
        }
        state.network = network;
        state.devices = devices;
        Ok(state)
    }

    pub fn with_identity(platform: Arc<Platform>, identity: Arc<IdentityService>) -> Self {
        Self::with_parts(platform, identity, None)
    }

    fn with_parts(
        platform: Arc<Platform>,
        identity: Arc<IdentityService>,
        detect: Option<Arc<crate::detect::DetectService>>,
    ) -> Self {
        let mut metrics = Metrics::new(platform.spine.clone(), platform.ledger.clone());
        if let Some(detect) = &detect {
            metrics.register_detection(detect.clone());
        }
        let public_origin =
            crate::identity::public_url(&platform).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        Self {
            platform,
            metrics: Arc::new(metrics),
            identity,
            vault: None,
            detect,
            network: None,
            devices: None,
            public_origin,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Caduceus API",
        description = "Self-hosted security platform for hospitals and clinics. Errors share one shape: \
                       `{\"error\": {\"code\", \"message\"}}` with a stable `code`.",
        license(name = "AGPL-3.0-or-later")
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail, ErrorCode)),
    tags(
        (name = "operations", description = "Liveness, readiness, metrics"),
        (name = "events", description = "The security event spine"),
        (name = "ledger", description = "The tamper-evident ledger: C2SP checkpoints and tiles (public), proofs (admin)"),
        (name = "witness", description = "C2SP tlog-witness: cosigning partner logs' checkpoints"),
        (name = "identity", description = "Sign-in, sessions, second factors, accounts and API keys"),
        (name = "network", description = "The network stage: flow model in use, counters, pcap upload"),
        (name = "alerts", description = "Alerts raised by detection: list, triage, suppressions"),
        (name = "devices", description = "Device inventory, SBOMs, advisories (CSAF, OSV), vulnerability findings and risk"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("cad_…").build()),
        );
    }
}

/// Payload variants refuse unknown fields (`deny_unknown_fields`), which
/// utoipa does not carry over to the variants of an internally tagged enum:
/// say it in the document so clients and API fuzzers know.
struct ClosedPayloads;

impl utoipa::Modify for ClosedPayloads {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        let Some(components) = openapi.components.as_mut() else { return };
        let Some(RefOr::T(Schema::OneOf(one_of))) = components.schemas.get_mut("Payload") else { return };
        for item in &mut one_of.items {
            if let RefOr::T(Schema::Object(object)) = item {
                object.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(false)));
            }
        }
    }
}

/// Every operation documents every status it can answer, from one place:
/// the access rules say which need credentials (401, 403), a request body
/// can be malformed (400, 413, 415, 422), sign-in can be throttled (429),
/// and storage or the audit trail can be unavailable (503).
struct StandardErrors;

impl utoipa::Modify for StandardErrors {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        for (path, item) in &mut openapi.paths.paths {
            let operations = [
                ("GET", item.get.as_mut()),
                ("POST", item.post.as_mut()),
                ("PUT", item.put.as_mut()),
                ("PATCH", item.patch.as_mut()),
                ("DELETE", item.delete.as_mut()),
            ];
            for (method, operation) in operations {
                let Some(operation) = operation else { continue };
                let Ok(method) = method.parse::<axum::http::Method>() else { continue };
                let access = crate::access::access_for(&method, path);
                let identity = path.starts_with("/api/v1/auth")
                    || path.starts_with("/api/v1/account")
                    || path.starts_with("/api/v1/users")
                    || path.starts_with("/api/v1/api-keys");
                let mut statuses = vec![("400", "Bad request")];
                if access.is_some_and(|a| a != crate::access::Access::Public) {
                    statuses.push(("401", "Not signed in, or the credentials are no longer valid"));
                    statuses.push(("403", "Not allowed (role, scope, second factor, step-up or CSRF)"));
                }
                if operation.request_body.is_some() {
                    statuses.extend([
                        ("413", "Body too large"),
                        ("415", "Body is not JSON"),
                        ("422", "Body does not match the schema"),
                    ]);
                }
                if identity {
                    statuses.extend([
                        ("401", "Invalid credentials"),
                        ("404", "No such resource or ceremony"),
                        ("409", "Conflict"),
                        ("429", "Too many attempts; see Retry-After"),
                        ("503", "Storage or the audit trail is unavailable"),
                    ]);
                }
                for (status, description) in statuses {
                    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// The routes and their OpenAPI document, before layers.
pub fn api() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(events::list_events, events::submit_event))
        .routes(routes!(status::status))
        .routes(routes!(ledger::checkpoint))
        .routes(routes!(ledger::key))
        .routes(routes!(ledger::status))
        .routes(routes!(ledger::publish))
        .routes(routes!(ledger::entry_inclusion))
        .routes(routes!(ledger::event_inclusion))
        .routes(routes!(ledger::leaf_inclusion))
        .routes(routes!(ledger::consistency))
        .routes(routes!(ledger::entry_bundle))
        .routes(routes!(ledger::event_bundle))
        .routes(routes!(ledger::leaf_bundle))
        .routes(routes!(witness::add_checkpoint))
        .routes(routes!(auth::login))
        .routes(routes!(auth::second_factor))
        .routes(routes!(auth::passkey_second_factor))
        .routes(routes!(auth::passkey_begin))
        .routes(routes!(auth::passkey_finish))
        .routes(routes!(auth::oidc_login))
        .routes(routes!(auth::oidc_callback))
        .routes(routes!(auth::session))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::logout_all))
        .routes(routes!(auth::step_up))
        .routes(routes!(auth::step_up_passkey))
        .routes(routes!(auth::my_sessions))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::totp_begin, auth::totp_remove))
        .routes(routes!(auth::totp_confirm))
        .routes(routes!(auth::recovery_codes))
        .routes(routes!(auth::passkeys))
        .routes(routes!(auth::passkey_register_begin))
        .routes(routes!(auth::passkey_register_finish))
        .routes(routes!(auth::passkey_remove))
        .routes(routes!(users::list_users, users::create_user))
        .routes(routes!(users::get_user, users::update_user))
        .routes(routes!(users::revoke_sessions))
        .routes(routes!(users::list_keys, users::create_key))
        .routes(routes!(users::revoke_key))
        .routes(routes!(detect::list_rules, detect::create_rule))
        .routes(routes!(detect::get_rule, detect::delete_rule))
        .routes(routes!(detect::enable_rule))
        .routes(routes!(detect::disable_rule))
        .routes(routes!(detect::test_rules))
        .routes(routes!(alerts::list_alerts))
        .routes(routes!(alerts::get_alert))
        .routes(routes!(alerts::acknowledge))
        .routes(routes!(alerts::assign))
        .routes(routes!(alerts::close))
        .routes(routes!(alerts::suppress))
        .routes(routes!(alerts::list_suppressions, alerts::create_suppression))
        .routes(routes!(alerts::delete_suppression))
        .routes(routes!(network::status))
        .routes(routes!(network::post_pcap))
        .routes(routes!(devices::list_devices, devices::create_device))
        .routes(routes!(devices::get_device, devices::put_device, devices::delete_device))
        .routes(routes!(devices::import_inventory))
        .routes(routes!(devices::unknown_devices))
        .routes(routes!(devices::list_sboms, devices::attach_sbom))
        .routes(routes!(devices::list_advisories, devices::import_advisory))
        .routes(routes!(devices::get_advisory))
        .routes(routes!(devices::scan))
        .routes(routes!(devices::list_findings))
        .routes(routes!(devices::device_risk))
        .routes(routes!(devices::status))
        .split_for_parts();
    // C2SP specifies the tile paths (several segments under one prefix),
    // which an OpenAPI path cannot express.
    let router = router.route(UNDOCUMENTED_ROUTES[0].1, get(ledger::tile));
    // FHIR describes itself (GET /fhir/metadata), not in OpenAPI.
    let router = router.merge(crate::routes::fhir::router());
    // After the routes: only then are their schemas in the document.
    utoipa::Modify::modify(&ClosedPayloads, &mut doc);
    utoipa::Modify::modify(&StandardErrors, &mut doc);
    (router, doc)
}

/// Routes outside the OpenAPI document (method, path): with the
/// document's paths and the FHIR routes, these are every route of the router.
pub const UNDOCUMENTED_ROUTES: [(&str, &str); 2] = [("GET", "/ledger/tile/{*path}"), ("GET", "/api/openapi.json")];

/// Every route of the router, as (method, path template), for the
/// route-inventory test.
pub fn route_inventory() -> Vec<(String, String)> {
    let (_, doc) = api();
    let mut routes: Vec<(String, String)> = UNDOCUMENTED_ROUTES
        .iter()
        .chain(crate::routes::fhir::ROUTES)
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    for (path, item) in &doc.paths.paths {
        let operations = [
            ("GET", item.get.is_some()),
            ("POST", item.post.is_some()),
            ("PUT", item.put.is_some()),
            ("PATCH", item.patch.is_some()),
            ("DELETE", item.delete.is_some()),
            ("HEAD", item.head.is_some()),
            ("OPTIONS", item.options.is_some()),
        ];
        for (method, present) in operations {
            if present {
                routes.push((method.to_owned(), path.clone()));
            }
        }
    }
    routes
}

/// The OpenAPI document as served at `/api/openapi.json`.
pub fn openapi_json() -> String {
    let (_, doc) = api();
    doc.to_pretty_json().unwrap_or_else(|_| "{}".into())
}

/// The complete application with every layer.
pub fn build(state: AppState) -> Router {
    let config = &state.platform.config.server;
    let (router, doc) = api();
    let doc = Arc::new(doc.to_pretty_json().unwrap_or_else(|_| "{}".into()));
    let plaintext = config.danger_plaintext_http;

    let router = router
        .route(
            UNDOCUMENTED_ROUTES[1].1,
            get(move || {
                let doc = doc.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], doc.as_str().to_owned()) }
            }),
        )
        // Route-level, before any handler: authentication and the route's
        // declared access (see `access::POLICY`).
        .route_layer(middleware::from_fn_with_state(state.clone(), crate::access::authorize))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Route-level: MatchedPath is known here, so metrics and the access
        // log use route templates, never concrete paths.
        .layer(middleware::from_fn_with_state(state.metrics.clone(), observe))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .with_state(state.clone());

    let x_request_id = HeaderName::from_static("x-request-id");
    let hsts = if plaintext { None } else { Some(HeaderValue::from_static("max-age=31536000")) };
    router.layer(
        ServiceBuilder::new()
            .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION, header::COOKIE]))
            .layer(SetRequestIdLayer::new(x_request_id.clone(), MakeRequestUuid))
            .layer(PropagateRequestIdLayer::new(x_request_id))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ))
            .layer(SetResponseHeaderLayer::if_not_present(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")))
            .layer(SetResponseHeaderLayer::if_not_present(header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .layer(SetResponseHeaderLayer::if_not_present(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ))
            .layer(SetResponseHeaderLayer::overriding(header::STRICT_TRANSPORT_SECURITY, hsts))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(middleware::from_fn(json_errors))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                Duration::from_secs(config.request_timeout_secs),
            ))
            .layer(RequestBodyLimitLayer::new(config.max_body_bytes)),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint; see /api/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "method not allowed on this endpoint")
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    // The panic message may contain request data: it is not logged or echoed.
    tracing::error!("a request handler panicked");
    ApiError::new(ErrorCode::Internal, "internal error").into_response()
}

/// Metrics and one structured log line per request, from one timing and one
/// route lookup. Unrouted requests share the label `unmatched`, so scanners
/// cannot blow up the metrics' cardinality.
async fn observe(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let request_id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    // Every line logged while handling the request carries its id and route.
    let span = tracing::info_span!("request", request_id = %request_id, route = %route);
    let response = next.run(request).instrument(span.clone()).await;
    let seconds = started.elapsed().as_secs_f64();
    let status = response.status().as_u16();
    span.in_scope(|| tracing::info!(%method, status, latency_ms = seconds * 1000.0, "request"));
    metrics.observe(HttpLabels { method, route, status }, seconds);
    response
}

/// Errors produced outside our handlers (body limits, timeouts, extractor
/// rejections) come as plain text; give them the one JSON error shape.
/// Marks a response whose error body a protocol specifies (C2SP
/// tlog-witness answers a 409 with a size in `text/x.tlog.size`): it is
/// passed through as is, not rewritten into our JSON error shape.
#[derive(Debug, Clone, Copy)]
pub struct ProtocolBody;

async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || response.extensions().get::<ProtocolBody>().is_some()
    {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("application/fhir+json"));
    if is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    // Rejection texts are short; read at most 4 KiB of them.
    let text = match http_body_util::Limited::new(body, 4096).collect().await {
        Ok(collected) => String::from_utf8_lossy(&collected.to_bytes()).trim().to_owned(),
        Err(_) => String::new(),
    };
    let message = if text.is_empty() { status.canonical_reason().unwrap_or("error").to_lowercase() } else { text };
    let code = ErrorCode::for_status(status);
    let body = ErrorBody { error: ErrorDetail { code, message } };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, Body::from(bytes))
}
