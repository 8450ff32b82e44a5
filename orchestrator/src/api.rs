//! The HTTP API (axum). Reads go straight to the store; everything that changes a saga goes
//! through the engine, so it is committed, flushed and only then answered.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sagaflow_events::{Catalog, OrderId, OrderPlaced};
use sagaflow_runtime::commit::GroupCommit;
use sagaflow_runtime::http::{health, not_found, JsonError};
use sagaflow_saga::{Ignored, Status};
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};

use crate::engine::{new_saga, Job};
use crate::metrics::Metrics;
use crate::store::{Applied, Incoming, Placed, Store};
use crate::view;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub jobs: mpsc::Sender<Job>,
    pub catalog: Arc<Catalog>,
    pub connected: watch::Receiver<bool>,
    pub metrics: Arc<Metrics>,
    pub commit: Arc<GroupCommit>,
}

/// Everything that can go wrong in a request, and its status code: the one place where errors
/// become HTTP.
#[derive(Debug)]
pub enum ApiError {
    Malformed(String),
    Invalid(String),
    TooLarge(String),
    NotFound(String),
    Conflict(String),
    Unavailable(String),
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::Malformed(m) => (StatusCode::BAD_REQUEST, m),
            Self::Invalid(m) => (StatusCode::UNPROCESSABLE_ENTITY, m),
            Self::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            Self::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Self::Conflict(m) => (StatusCode::CONFLICT, m),
            Self::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
            Self::Internal(m) => {
                tracing::error!(error = m, "internal error");
                (StatusCode::INTERNAL_SERVER_ERROR, m)
            }
        };
        JsonError::new(status, message).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Internal(e.to_string())
    }
}

pub fn router(state: ApiState, body_limit: usize) -> Router {
    Router::new()
        .route("/orders", post(place_order).get(list_orders))
        .route("/orders/{order_id}", get(show_order))
        .route("/orders/{order_id}/cancel", post(cancel_order))
        .route("/orders/{order_id}/retry", post(retry_order))
        .route("/health", get(|State(s): State<ApiState>| async move { health(&s.connected) }))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            JsonError::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed on this endpoint")
        })
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

#[tracing::instrument(skip_all)]
async fn place_order(
    State(s): State<ApiState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge(format!("the body is larger than the limit: {}", e.body_text()))
        } else {
            ApiError::Malformed(e.body_text())
        }
    })?;
    let placed: OrderPlaced = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Invalid(format!("not an order: {e}")),
        _ => ApiError::Malformed(format!("not valid JSON: {e}")),
    })?;
    let order_id = match &placed.order_id {
        Some(raw) => OrderId::parse(raw.clone()).map_err(|e| ApiError::Invalid(e.to_string()))?,
        None => OrderId::parse(uuid::Uuid::now_v7().to_string()).expect("a uuid is a valid order id"),
    };
    // An order that can never go through starts nothing.
    placed.validate(order_id.clone(), &s.catalog).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let new = new_saga(order_id, &placed, &s.catalog);
    let (answer, answered) = oneshot::channel();
    s.jobs.send(Job::Place { new, answer }).await.map_err(|_| shutting_down())?;
    let placed = answered.await.map_err(|_| shutting_down())?.map_err(ApiError::Internal)?;
    match placed {
        Placed::Created(r) | Placed::Existing(r) => {
            let location = format!("/orders/{}", r.order_id);
            let body = json!({ "orderId": r.order_id, "state": r.saga.status.to_string() });
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(body)).into_response())
        }
        Placed::Conflict(r) => Err(ApiError::Conflict(format!(
            "orderId {} was already placed with a different body",
            r.order_id
        ))),
    }
}

async fn show_order(State(s): State<ApiState>, Path(order_id): Path<String>) -> Result<Response, ApiError> {
    let record = s.store.get(&order_id)?.ok_or_else(|| unknown(&order_id))?;
    let definition = s.store.definition(&record.definition);
    Ok(Json(view::detail(&record, definition.as_deref())).into_response())
}

async fn list_orders(
    State(s): State<ApiState>,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Malformed(e.body_text()))?;
    let state = match query.get("state") {
        Some(raw) => {
            Some(raw.parse::<Status>().ok().filter(|s| *s != Status::NotStarted).ok_or_else(|| {
                ApiError::Malformed(format!(
                    "unknown state {raw:?}: use running, compensating, completed, compensated or stuck"
                ))
            })?)
        }
        None => None,
    };
    let limit = match query.get("limit") {
        Some(raw) => raw.parse::<usize>().ok().filter(|l| (1..=1000).contains(l)).ok_or_else(|| {
            ApiError::Malformed(format!("limit must be a number from 1 to 1000, not {raw:?}"))
        })?,
        None => 50,
    };
    let after = match query.get("after") {
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::Malformed(format!("after must be a cursor from a previous page, not {raw:?}"))
        })?),
        None => None,
    };
    let (page, next) = s.store.list(state, limit, after)?;
    let orders: Vec<_> = page.iter().map(view::summary).collect();
    Ok(Json(json!({ "orders": orders, "next": next.map(|n| n.to_string()) })).into_response())
}

async fn cancel_order(State(s): State<ApiState>, Path(order_id): Path<String>) -> Result<Response, ApiError> {
    let incoming = Incoming::Cancel { reason: "cancelled".into() };
    let (record, ignored) = control(&s, &order_id, incoming).await?;
    let state = record.saga.status;
    match ignored {
        None | Some(Ignored::AlreadyCompensating) => Ok(accepted(&record)),
        Some(Ignored::PastPointOfNoReturn) => Err(ApiError::Conflict(format!(
            "order {order_id} is past the point of no return (its confirmation is being sent) and cannot be cancelled"
        ))),
        Some(_) => Err(ApiError::Conflict(format!("order {order_id} is already {state}"))),
    }
}

async fn retry_order(State(s): State<ApiState>, Path(order_id): Path<String>) -> Result<Response, ApiError> {
    let (record, ignored) = control(&s, &order_id, Incoming::Retry).await?;
    match ignored {
        None => Ok(accepted(&record)),
        Some(_) => Err(ApiError::Conflict(format!(
            "only a stuck saga can be retried; order {order_id} is {}",
            record.saga.status
        ))),
    }
}

async fn control(
    s: &ApiState,
    order_id: &str,
    incoming: Incoming,
) -> Result<(crate::record::SagaRecord, Option<Ignored>), ApiError> {
    let (answer, answered) = oneshot::channel();
    s.jobs
        .send(Job::Control { order_id: order_id.to_owned(), incoming, answer })
        .await
        .map_err(|_| shutting_down())?;
    match answered.await.map_err(|_| shutting_down())?.map_err(ApiError::Internal)? {
        Applied::UnknownSaga => Err(unknown(order_id)),
        Applied::Recorded { record, ignored, .. } => Ok((record, ignored)),
    }
}

async fn metrics(State(s): State<ApiState>) -> Response {
    let text = s.metrics.render(&s.store, &s.commit);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

fn accepted(record: &crate::record::SagaRecord) -> Response {
    let body = json!({ "orderId": record.order_id, "state": record.saga.status.to_string() });
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

fn unknown(order_id: &str) -> ApiError {
    ApiError::NotFound(format!("no order {order_id}"))
}

fn shutting_down() -> ApiError {
    ApiError::Unavailable("the orchestrator is shutting down".into())
}
