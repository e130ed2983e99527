//! HTTP handlers, one module per area. Each handler is annotated with
//! `#[utoipa::path]` so that it appears in `/api/openapi.json`.

pub mod alerts;
pub mod auth;
pub mod detect;
pub mod devices;
pub mod events;
pub mod fhir;
pub mod health;
pub mod ledger;
pub mod network;
pub mod status;
pub mod users;
pub mod witness;

use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// A JSON request body that must be an object of the documented shape.
/// (serde would also build a struct from an array of its fields, which the
/// schema does not allow.) Rejections never echo a value from the body: a
/// misplaced password must not come back in an error.
#[derive(Debug)]
pub struct JsonObject<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonObject<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<serde_json::Value>::from_request(request, state)
            .await
            .map_err(|e| ApiError::new(ErrorCode::for_status(e.status()), e.body_text()))?;
        if !value.is_object() {
            return Err(ApiError::new(ErrorCode::Unprocessable, "the body must be a JSON object"));
        }
        serde_json::from_value(value).map(JsonObject).map_err(|e| {
            let text = e.to_string();
            // Field names are safe to repeat; values are not.
            let detail = if text.starts_with("missing field") || text.starts_with("unknown field") {
                text.split(", expected").next().unwrap_or_default().to_owned()
            } else {
                "a field has the wrong type or value".to_owned()
            };
            ApiError::new(ErrorCode::Unprocessable, format!("the body does not match the schema: {detail}"))
        })
    }
}
