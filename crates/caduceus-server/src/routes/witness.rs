//! The witness (C2SP tlog-witness), when `witness.enabled`: partner logs
//! send their checkpoints with a consistency proof to
//! `POST /witness/add-checkpoint`, and get a timestamped cosignature only if
//! the checkpoint extends the last one cosigned for that log. There is no
//! authentication beyond the log's signature on the checkpoint, as the spec
//! says.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::app::{AppState, ProtocolBody};
use caduceus_ledger::witness::TEXT_CONTENT_TYPE;

use crate::error::{ApiError, ErrorBody, ErrorCode};

/// Cosign a checkpoint of a witnessed log (C2SP tlog-witness).
#[utoipa::path(
    post,
    path = "/witness/add-checkpoint",
    tag = "witness",
    request_body(content = String, description = "old size, consistency proof, blank line, signed checkpoint", content_type = "text/plain"),
    responses(
        (status = 200, description = "cosignature line(s)", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 400, description = "malformed request", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 403, description = "the log's signature does not verify", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 404, description = "unknown log, or not a witness", body = String, content_type = "text/plain; charset=utf-8"),
        (status = 409, description = "old size is not the latest cosigned size", body = String, content_type = "text/x.tlog.size"),
        (status = 413, body = ErrorBody),
        (status = 422, description = "the consistency proof does not verify", body = String, content_type = "text/plain; charset=utf-8")
    )
)]
pub async fn add_checkpoint(State(state): State<AppState>, body: Bytes) -> Result<Response, ApiError> {
    let Some(witness) = state.platform.ledger.as_ref().and_then(|l| l.witness.clone()) else {
        // As the protocol answers an unknown log: text, not our JSON shape.
        return Ok(protocol_answer(
            StatusCode::NOT_FOUND,
            TEXT_CONTENT_TYPE,
            "this instance is not a witness\n".into(),
        ));
    };
    if body.len() > caduceus_ledger::witness::MAX_REQUEST_BYTES {
        return Err(ApiError::new(ErrorCode::PayloadTooLarge, "request too large"));
    }
    let now_secs = u64::try_from(state.platform.clock.now().as_millis() / 1000).unwrap_or(0);
    // Persisting the new state syncs a file: off the async threads.
    let result = tokio::task::spawn_blocking(move || witness.add_checkpoint(&body, now_secs))
        .await
        .map_err(ApiError::internal)?;
    Ok(match result {
        Ok(cosignature) => {
            ([(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"))], cosignature)
                .into_response()
        }
        Err(rejection) => {
            let status = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::BAD_REQUEST);
            if status.is_server_error() {
                tracing::error!(error = %rejection, "witness failed");
            } else {
                tracing::info!(status = status.as_u16(), reason = %rejection, "witness refused a checkpoint");
            }
            protocol_answer(status, rejection.content_type(), rejection.body())
        }
    })
}

/// A response whose body the protocol defines, passed through untouched.
fn protocol_answer(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], body).into_response();
    response.extensions_mut().insert(ProtocolBody);
    response
}
