//! Errors as JSON: every error answer, whoever made it (a handler, an extractor, a layer), is an
//! object with an `error` field and the right status code.

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// An error answer: a status code and `{"error": "..."}`. Handlers' errors end up here, so the
/// mapping from error to status lives in one place per program.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct JsonError {
    pub status: StatusCode,
    pub message: String,
}

impl JsonError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self { status, message: message.into() }
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

/// For unknown paths, so that even a 404 is JSON.
pub async fn not_found() -> JsonError {
    JsonError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

pub async fn method_not_allowed() -> JsonError {
    JsonError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
}

/// The most of a plain-text error body kept in its JSON form.
const MAX_MESSAGE: usize = 500;

/// Turns any error answer that is not JSON (an extractor's plain-text rejection, a layer's
/// empty 408) into `{"error": ...}` with the same status.
pub async fn json_errors(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"));
    // (An HTML error is the console's, for a browser that asked for a page.)
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024).await.unwrap_or_default();
    let mut message: String = String::from_utf8_lossy(&text).chars().take(MAX_MESSAGE).collect();
    if message.trim().is_empty() {
        message = status.canonical_reason().unwrap_or("error").to_owned();
    }
    let mut response = JsonError::new(status, message).into_response();
    // Keep what the layer said about the connection and authentication.
    for name in [header::CONNECTION, header::WWW_AUTHENTICATE, header::RETRY_AFTER] {
        if let Some(value) = parts.headers.get(&name) {
            response.headers_mut().insert(name, value.clone());
        }
    }
    response
}

/// A request with a body must say it is JSON. This also closes the door on cross-site "simple"
/// POSTs, which a browser sends as form or plain text without asking first.
pub async fn json_bodies_only(request: Request, next: Next) -> Response {
    let has_body = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|n| n > 0);
    if has_body && !is_json(request.headers().get(header::CONTENT_TYPE)) {
        let mut response = JsonError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "a request body must be JSON, sent with content-type: application/json",
        )
        .into_response();
        // The body was not read: do not keep the connection for another request.
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
        return response;
    }
    next.run(request).await
}

pub(crate) fn is_json(content_type: Option<&HeaderValue>) -> bool {
    let Some(value) = content_type.and_then(|v| v.to_str().ok()) else { return false };
    let essence = value.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// A body that could not be read, as the right answer: too large, too slow, or broken.
pub fn body_rejection(e: axum::extract::rejection::BytesRejection) -> JsonError {
    let text = e.body_text();
    let status = if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if text.to_ascii_lowercase().contains("timed out") || text.contains("timeout") {
        StatusCode::REQUEST_TIMEOUT
    } else {
        StatusCode::BAD_REQUEST
    };
    JsonError::new(status, text)
}

#[cfg(test)]
mod tests {
    use super::is_json;
    use axum::http::HeaderValue;

    #[test]
    fn json_content_types_are_recognised_with_parameters() {
        assert!(is_json(Some(&HeaderValue::from_static("application/json"))));
        assert!(is_json(Some(&HeaderValue::from_static("Application/JSON; charset=utf-8"))));
        assert!(!is_json(Some(&HeaderValue::from_static("text/plain"))));
        assert!(!is_json(Some(&HeaderValue::from_static("application/x-www-form-urlencoded"))));
        assert!(!is_json(None));
    }
}
