//! HTTP pieces every program shares: JSON errors, `/health`, and serving until shutdown.

use std::net::SocketAddr;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// An error answer: a status code and `{"error": "..."}`. Every handler's errors end up here,
/// so the mapping from error to status lives in one place per program.
#[derive(Debug)]
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

/// `200` when the store is open and the bus connected, `503` otherwise, with the details.
pub fn health(connected: &watch::Receiver<bool>) -> Response {
    let bus = *connected.borrow();
    let status = if bus { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if bus { "ok" } else { "unavailable" },
        "store": "open",
        "bus": if bus { "connected" } else { "disconnected" },
    });
    (status, Json(body)).into_response()
}

/// A handler for unknown paths, so that even a 404 is JSON.
pub async fn not_found() -> JsonError {
    JsonError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

/// Binds `addr` and serves `router` until `stop`, then lets open requests finish.
pub async fn serve(addr: SocketAddr, router: axum::Router, stop: CancellationToken) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    // The bound address, which differs from `addr` when it asked for port 0.
    let addr = listener.local_addr()?;
    tracing::info!(%addr, "HTTP listening");
    axum::serve(listener, router).with_graceful_shutdown(stop.cancelled_owned()).await
}
