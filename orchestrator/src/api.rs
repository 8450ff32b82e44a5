//! The HTTP API (axum). Reads go straight to the store; everything that changes a saga goes
//! through the engine, so it is committed, made durable and only then answered.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sagaflow_events::{Catalog, OrderId, OrderPlaced};
use sagaflow_runtime::health::Health;
use sagaflow_runtime::http::errors::body_rejection;
use sagaflow_runtime::http::JsonError;
use sagaflow_runtime::pipeline::{Input, PipelineMetrics};
use sagaflow_runtime::telemetry::TraceParent;
use sagaflow_saga::{Ignored, Status};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::engine::{new_saga, Control, Controlled, Job, Placed};
use crate::metrics::Metrics;
use crate::store::{ListFilter, Store, StoreError};
use crate::view;

/// The most history entries one answer shows (the newest).
const HISTORY_SHOWN: usize = 1_000;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub jobs: mpsc::Sender<Input<Job>>,
    pub catalog: Arc<Catalog>,
    pub health: Health,
    pub metrics: Arc<Metrics>,
    pub pipeline: Arc<PipelineMetrics>,
}

/// Everything that can go wrong in a request, and its status code: the one place where errors
/// become HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no order {0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the orchestrator is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A body that could not be read, already with its status.
    #[error(transparent)]
    Body(#[from] JsonError),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Body(e) => e.status,
            Self::Store(e) => {
                tracing::error!(error = %e, "store error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        JsonError::new(status, self.to_string()).into_response()
    }
}

pub fn router(state: ApiState) -> Router {
    let common = sagaflow_runtime::http::common_routes(state.health.clone(), state.store.outbox().clone());
    Router::new()
        .route("/orders", post(place_order).get(list_orders))
        .route("/orders/{order_id}", get(show_order))
        .route("/orders/{order_id}/cancel", post(cancel_order))
        .route("/orders/{order_id}/retry", post(retry_order))
        .route("/metrics", get(metrics))
        .with_state(state)
        .merge(common)
}

/// An order id from a path or a body: 422 when it is not one.
fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|e| ApiError::Invalid(e.to_string()))
}

#[tracing::instrument(skip_all)]
async fn place_order(
    State(s): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_rejection)?;
    let placed: OrderPlaced = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Invalid(format!("not an order: {e}")),
        _ => ApiError::Malformed(format!("not valid JSON: {e}")),
    })?;
    let order_id = match &placed.order_id {
        Some(raw) => order_id(raw)?,
        None => OrderId::parse(uuid::Uuid::now_v7().to_string()).expect("a uuid is a valid order id"),
    };
    // An order that can never go through starts nothing.
    placed.validate(order_id.clone(), &s.catalog).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let trace = headers
        .get(sagaflow_events::headers::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceParent>().ok());
    let new = new_saga(order_id, &placed, &s.catalog, trace);
    let placed = ask(&s, |answer| Job::Place { new, answer }).await??;
    match placed {
        Placed::Created(r) | Placed::Existing(r) => {
            let location = format!("/orders/{}", r.order_id);
            let body = json!({ "orderId": r.order_id, "state": r.saga.status().to_string() });
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(body)).into_response())
        }
        Placed::Conflict(r) => Err(ApiError::Conflict(format!(
            "orderId {} was already placed with a different body",
            r.order_id
        ))),
    }
}

async fn show_order(State(s): State<ApiState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let id = order_id(&raw)?;
    let record = s.store.get(id.as_str())?.ok_or_else(|| ApiError::NotFound(raw))?;
    let definition = s.store.definition(&record.definition);
    let history = s.store.history(&record, HISTORY_SHOWN)?;
    Ok(Json(view::detail(&record, &history, definition.as_deref())).into_response())
}

/// `GET /orders`'s query. Every parameter is optional; one this does not name is a 400, not
/// silently ignored, and so is one given twice.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ListQuery {
    state: Option<String>,
    limit: Option<String>,
    after: Option<String>,
    reason: Option<String>,
    user_id: Option<String>,
    since: Option<String>,
    until: Option<String>,
}

/// A point in time as RFC 3339 (`2026-11-26T10:00:00Z`) or epoch milliseconds.
fn parse_time(name: &str, raw: &str) -> Result<u64, ApiError> {
    if let Ok(millis) = raw.parse::<u64>() {
        return Ok(millis);
    }
    humantime::parse_rfc3339_weak(raw)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| u64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            ApiError::Malformed(format!(
                "{name} must be an RFC 3339 time (2026-11-26T10:00:00Z) or epoch milliseconds, not {raw:?}"
            ))
        })
}

async fn list_orders(
    State(s): State<ApiState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Malformed(e.body_text()))?;
    let state = match &query.state {
        Some(raw) => {
            Some(raw.parse::<Status>().ok().filter(|s| *s != Status::NotStarted).ok_or_else(|| {
                ApiError::Malformed(format!(
                    "unknown state {raw:?}: use running, compensating, completed, compensated or stuck"
                ))
            })?)
        }
        None => None,
    };
    let limit = match &query.limit {
        Some(raw) => raw.parse::<usize>().ok().filter(|l| (1..=1000).contains(l)).ok_or_else(|| {
            ApiError::Malformed(format!("limit must be a number from 1 to 1000, not {raw:?}"))
        })?,
        None => 50,
    };
    let after = match &query.after {
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::Malformed(format!("after must be a cursor from a previous page, not {raw:?}"))
        })?),
        None => None,
    };
    let bounded = |name: &str, value: Option<String>| match value {
        Some(v) if v.is_empty() || v.len() > 128 => {
            Err(ApiError::Malformed(format!("{name} must be 1 to 128 characters")))
        }
        v => Ok(v),
    };
    let filter = ListFilter {
        state,
        reason: bounded("reason", query.reason)?,
        user_id: bounded("userId", query.user_id)?,
        since: query.since.as_deref().map(|raw| parse_time("since", raw)).transpose()?,
        until: query.until.as_deref().map(|raw| parse_time("until", raw)).transpose()?,
    };
    let (page, next) = s.store.list(&filter, limit, after)?;
    let orders: Vec<_> = page.iter().map(view::summary).collect();
    Ok(Json(json!({ "orders": orders, "next": next.map(|n| n.to_string()) })).into_response())
}

async fn cancel_order(State(s): State<ApiState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let (record, ignored) = control(&s, &raw, Control::Cancel).await?;
    let state = record.saga.status();
    match ignored {
        None | Some(Ignored::AlreadyCompensating) => Ok(accepted(&record)),
        Some(Ignored::PastPointOfNoReturn) => Err(ApiError::Conflict(format!(
            "order {raw} is past the point of no return (its confirmation is being sent) and cannot be cancelled"
        ))),
        Some(_) => Err(ApiError::Conflict(format!("order {raw} is already {state}"))),
    }
}

async fn retry_order(State(s): State<ApiState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let (record, ignored) = control(&s, &raw, Control::Retry).await?;
    match ignored {
        None => Ok(accepted(&record)),
        Some(_) => Err(ApiError::Conflict(format!(
            "only a stuck saga can be retried; order {raw} is {}",
            record.saga.status()
        ))),
    }
}

async fn control(
    s: &ApiState,
    raw: &str,
    control: Control,
) -> Result<(crate::record::SagaRecord, Option<Ignored>), ApiError> {
    let id = order_id(raw)?;
    let order_id = id.to_string();
    match ask(s, |answer| Job::Control { order_id, control, answer }).await?? {
        Controlled::UnknownSaga => Err(ApiError::NotFound(raw.to_owned())),
        Controlled::Recorded { record, ignored } => Ok((record, ignored)),
    }
}

/// Hands a job to the engine and waits for its answer, which comes once it is durable.
async fn ask<T>(
    s: &ApiState,
    job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
) -> Result<Result<T, StoreError>, ApiError> {
    let (answer, answered) = oneshot::channel();
    s.jobs.send(Input::Job(job(answer))).await.map_err(|_| ApiError::ShuttingDown)?;
    answered.await.map_err(|_| ApiError::ShuttingDown)
}

async fn metrics(State(s): State<ApiState>) -> Response {
    sagaflow_runtime::http::metrics_text(s.metrics.render(&s.store, &s.pipeline))
}

fn accepted(record: &crate::record::SagaRecord) -> Response {
    let body = json!({ "orderId": record.order_id, "state": record.saga.status().to_string() });
    (StatusCode::ACCEPTED, Json(body)).into_response()
}
