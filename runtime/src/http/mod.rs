//! HTTP, the same for every program: a hardened server ([`server`]), JSON errors for
//! everything, the bearer token ([`auth`]), and the endpoints every program has (`/health`,
//! `/metrics`, `/outbox/parked`).
//!
//! - [`guard`]: every request head is bounded and checked before hyper parses it.
//! - [`server`]: binds first (a taken port is an error before anything else starts), caps
//!   connections, and serves until shutdown.
//! - [`auth`]: `API_TOKEN`, compared in constant time.
//! - [`errors`]: [`JsonError`], and the layer that turns any error answer into JSON.

pub mod auth;
pub mod errors;
pub mod guard;
pub mod server;

use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
pub use errors::{not_found, JsonError};
pub use server::{HttpArgs, HttpServer};

use crate::health::Health;
use crate::outbox::Outbox;

/// `200` when the store works and the bus is connected, `503` otherwise, with the details.
pub fn health(health: &Health) -> Response {
    let bus = health.bus_connected();
    let store = health.store_error();
    let ok = bus && store.is_none();
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "unavailable" },
        "store": match &store { None => "working".to_owned(), Some(e) => format!("failing: {e}") },
        "bus": if bus { "connected" } else { "disconnected" },
    });
    (status, Json(body)).into_response()
}

/// Prometheus text.
pub fn metrics_text(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /outbox/parked`: the messages the broker refused for good, newest last, with why.
pub fn parked(outbox: &Outbox) -> Response {
    let entries: Vec<serde_json::Value> = outbox
        .parked(1000)
        .into_iter()
        .map(|(id, p)| {
            let message = crate::bus::Message::decode(&p.message).ok();
            serde_json::json!({
                "id": id,
                "reason": p.reason,
                "parkedAt": crate::rfc3339(p.parked_at),
                "exchange": message.as_ref().map(|m| m.route.exchange.clone()),
                "routingKey": message.as_ref().map(|m| m.route.key.clone()),
                "kind": message.as_ref().map(|m| m.kind.clone()),
                "correlationId": message.as_ref().map(|m| m.correlation_id.clone()),
                "bytes": message.as_ref().map(|m| m.body.len()),
            })
        })
        .collect();
    Json(serde_json::json!({ "parked": entries, "count": outbox.parked_count() })).into_response()
}

/// The routes every program has, for its router to merge: `/health` and `/outbox/parked`.
/// (`/metrics` differs per program.)
pub fn common_routes(health: Health, outbox: Arc<Outbox>) -> Router {
    use axum::routing::get;
    Router::new()
        .route("/health", get(move || async move { self::health(&health) }))
        .route("/outbox/parked", get(move || async move { parked(&outbox) }))
}

/// The layers every router gets, outermost first: JSON for every error answer, the bearer
/// token, the content type of bodies, and a deadline for reading a body.
pub fn harden(router: Router, args: &HttpArgs) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(Duration::from_millis(args.body_timeout_ms)))
        .layer(axum::middleware::from_fn(errors::json_bodies_only))
        .layer(axum::middleware::from_fn_with_state(args.api_token.clone(), auth::require_token))
        .layer(axum::middleware::from_fn(errors::json_errors))
}
