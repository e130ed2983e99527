//! The one error shape every API endpoint returns:
//! `{"error": {"code": "...", "message": "..."}}` with a stable, snake_case
//! `code` that clients can match on. Messages never carry secrets or patient
//! data; the `x-request-id` response header ties an error to the server log.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Stable error codes. Adding one is fine; renaming one breaks clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    Unauthorized,
    Forbidden,
    /// The action needs a recent re-authentication: `POST /api/v1/auth/step-up`.
    StepUpRequired,
    NotFound,
    Conflict,
    MethodNotAllowed,
    PayloadTooLarge,
    UnsupportedMediaType,
    Unprocessable,
    Timeout,
    /// Too many attempts: wait for `Retry-After` seconds.
    TooManyRequests,
    SpineFull,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn status(self) -> StatusCode {
        match self {
            Self::BadRequest => StatusCode::BAD_REQUEST,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::Forbidden | Self::StepUpRequired => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Conflict => StatusCode::CONFLICT,
            Self::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::SpineFull | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The code for a status produced outside our handlers (routing, body
    /// limits, timeouts, extractor rejections).
    pub fn for_status(status: StatusCode) -> Self {
        match status {
            StatusCode::UNAUTHORIZED => Self::Unauthorized,
            StatusCode::FORBIDDEN => Self::Forbidden,
            StatusCode::NOT_FOUND => Self::NotFound,
            StatusCode::CONFLICT => Self::Conflict,
            StatusCode::TOO_MANY_REQUESTS => Self::TooManyRequests,
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => Self::UnsupportedMediaType,
            StatusCode::UNPROCESSABLE_ENTITY => Self::Unprocessable,
            StatusCode::REQUEST_TIMEOUT => Self::Timeout,
            StatusCode::SERVICE_UNAVAILABLE => Self::Unavailable,
            s if s.is_client_error() => Self::BadRequest,
            _ => Self::Internal,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// An error as an endpoint returns it.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds for a `Retry-After` header.
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), retry_after_secs: None }
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after_secs = Some(secs);
        self
    }

    /// A 500 whose detail goes to the log, not to the client.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(ErrorCode::Internal, "internal error; see the server log for this request id")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        let mut response =
            (status, Json(ErrorBody { error: ErrorDetail { code: self.code, message: self.message } })).into_response();
        if let Some(secs) = self.retry_after_secs {
            response.headers_mut().insert(axum::http::header::RETRY_AFTER, axum::http::HeaderValue::from(secs));
        }
        if self.code == ErrorCode::Unauthorized {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"caduceus\""),
            );
        }
        response
    }
}

impl From<caduceus_store::StoreError> for ApiError {
    fn from(err: caduceus_store::StoreError) -> Self {
        match err {
            caduceus_store::StoreError::Unavailable(_) => {
                tracing::warn!(error = %err, "storage unavailable");
                Self::new(ErrorCode::Unavailable, "storage is unavailable")
            }
            caduceus_store::StoreError::Invalid(m) => Self::new(ErrorCode::BadRequest, m),
            other => Self::internal(other),
        }
    }
}

impl From<caduceus_spine::SpineError> for ApiError {
    fn from(err: caduceus_spine::SpineError) -> Self {
        match err {
            caduceus_spine::SpineError::Full { .. } => Self::new(ErrorCode::SpineFull, err.to_string()),
            caduceus_spine::SpineError::Closed => Self::new(ErrorCode::Unavailable, "shutting down"),
            caduceus_spine::SpineError::Storage(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

impl From<crate::platform::ServerError> for ApiError {
    fn from(err: crate::platform::ServerError) -> Self {
        use crate::platform::ServerError;
        match err {
            ServerError::Spine(e) => e.into(),
            ServerError::Store(e) => e.into(),
            ServerError::SealTimeout { .. } => {
                tracing::warn!(error = %err, "sealing is slow");
                Self::new(ErrorCode::Unavailable, "the event is stored but not yet sealed in the ledger; retry later")
            }
            ServerError::Ledger(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

impl From<crate::ledger::LedgerServiceError> for ApiError {
    fn from(err: crate::ledger::LedgerServiceError) -> Self {
        use crate::ledger::LedgerServiceError;
        match err {
            LedgerServiceError::Quorum { .. } => Self::new(ErrorCode::Unavailable, err.to_string()),
            LedgerServiceError::Ledger(e) => e.into(),
            other => Self::internal(other),
        }
    }
}

impl From<caduceus_ledger::LedgerError> for ApiError {
    fn from(err: caduceus_ledger::LedgerError) -> Self {
        use caduceus_ledger::LedgerError;
        match err {
            LedgerError::Invalid(m) => Self::new(ErrorCode::BadRequest, m),
            // Asking about entries or sizes the log does not have (yet).
            LedgerError::BeyondLog { .. } | LedgerError::Proof(caduceus_ledger::ProofError::IndexOutOfRange { .. }) => {
                Self::new(ErrorCode::NotFound, err.to_string())
            }
            LedgerError::Proof(e) => Self::new(ErrorCode::BadRequest, e.to_string()),
            LedgerError::Closed => Self::new(ErrorCode::Unavailable, "shutting down"),
            other => Self::internal(other),
        }
    }
}
