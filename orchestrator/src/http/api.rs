//! The HTTP API (axum). Reads go straight to the store; everything that changes a saga goes
//! through the engine, so it is committed, made durable and only then answered.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sagaflow_events::{Catalog, OrderId, OrderPlaced, SagaKey};
use sagaflow_runtime::bus::inspect::{Disposal, InspectError, Inspector};
use sagaflow_runtime::health::Health;
use sagaflow_runtime::http::errors::body_rejection;
use sagaflow_runtime::http::JsonError;
use sagaflow_runtime::pipeline::PipelineMetrics;
use sagaflow_runtime::telemetry::TraceParent;
use sagaflow_saga::{Ignored, Status};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use super::view;
use crate::engine::{new_saga, Control, Controlled, Job, Placed};
use crate::feed::{Cursor, Read};
use crate::metrics::Metrics;
use crate::store::{ListFilter, Store, StoreError};

/// The most history entries one answer shows (the newest).
const HISTORY_SHOWN: usize = 1_000;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<Store>,
    pub jobs: mpsc::Sender<Job>,
    pub catalog: Arc<Catalog>,
    pub health: Health,
    pub metrics: Arc<Metrics>,
    pub pipeline: Arc<PipelineMetrics>,
    /// Ends the event streams when the orchestrator stops.
    pub stop: tokio_util::sync::CancellationToken,
    /// Asks the broker about queues and dead letters.
    pub inspector: Inspector,
    pub topology: sagaflow_events::Topology,
    /// The input schemas of the defined sagas this orchestrator starts.
    pub input_schemas: super::sagas::InputSchemas,
}

/// Everything that can go wrong in a request, and its status code: the one place where errors
/// become HTTP.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no saga {0}")]
    NotFound(String),
    #[error("{0}")]
    Gone(String),
    #[error("{0}")]
    Conflict(String),
    #[error("the orchestrator is shutting down")]
    ShuttingDown,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Broker(#[from] InspectError),
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
            Self::Gone(_) => StatusCode::GONE,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            Self::Body(e) => e.status,
            Self::Broker(InspectError::NoSuchDeadLetter(_)) => StatusCode::NOT_FOUND,
            Self::Broker(InspectError::NoOrigin(_) | InspectError::ForeignQueue { .. }) => {
                StatusCode::CONFLICT
            }
            Self::Broker(InspectError::NotOnKafka(_)) => StatusCode::NOT_IMPLEMENTED,
            Self::Broker(_) => StatusCode::BAD_GATEWAY,
            Self::Store(StoreError::UnknownSaga(_)) => StatusCode::NOT_FOUND,
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
        .route("/orders/stream", get(stream_orders))
        .route("/orders/{order_id}", get(show_order))
        .route("/orders/{order_id}/cancel", post(cancel_order))
        .route("/orders/{order_id}/retry", post(retry_order))
        .merge(super::sagas::routes())
        .route("/metrics", get(metrics))
        .route("/overview", get(overview))
        .route("/dead-letters", get(list_dead_letters))
        .route("/dead-letters/{id}/requeue", post(requeue_dead_letter))
        .route("/dead-letters/{id}/discard", post(discard_dead_letter))
        .with_state(state)
        .merge(common)
}

/// An order id from a path or a body: 422 when it is not one.
fn order_id(raw: &str) -> Result<OrderId, ApiError> {
    OrderId::parse(raw).map_err(|e| ApiError::Invalid(e.to_string()))
}

/// The W3C trace the caller sent, if it sent a valid one (a saga starts a new trace otherwise).
pub(super) fn caller_trace(headers: &HeaderMap) -> Option<TraceParent> {
    headers
        .get(sagaflow_events::headers::TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<TraceParent>().ok())
}

/// The saga of an order id from a path: 422 when it is not one.
fn order_key(raw: &str) -> Result<SagaKey, ApiError> {
    Ok(SagaKey::of_order(&order_id(raw)?))
}

/// Any saga's key (an order id, or `{saga}/{id}`), as the console and `sagactl` name sagas:
/// 422 when it is neither.
pub(super) fn any_key(raw: &str) -> Result<SagaKey, ApiError> {
    SagaKey::parse(raw).map_err(|e| ApiError::Invalid(e.to_string()))
}

#[utoipa::path(post, path = "/orders", tag = "orders",
    request_body = sagaflow_api::PlaceOrder,
    params(("traceparent" = Option<String>, Header, description = "A W3C trace context to continue; a new trace is started otherwise")),
    responses(
        (status = 202, description = "The saga is durable (placed now, or placed before with the same body)", body = sagaflow_api::Accepted,
            headers(("location" = String, description = "/orders/{orderId}"))),
        (status = 400, description = "Not JSON", body = sagaflow_api::ErrorBody),
        (status = 409, description = "The orderId was placed with another body", body = sagaflow_api::ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = sagaflow_api::ErrorBody),
        (status = 415, description = "Not content-type: application/json", body = sagaflow_api::ErrorBody),
        (status = 422, description = "Not an order that can go through", body = sagaflow_api::ErrorBody),
        (status = 503, description = "Shutting down", body = sagaflow_api::ErrorBody),
    ))]
#[tracing::instrument(skip_all)]
pub(super) async fn place_order(
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
    let new = new_saga(order_id, &placed, &s.catalog, caller_trace(&headers));
    let placed = ask(&s, |answer| Job::Place { new, answer }).await??;
    match placed {
        Placed::Created(r) | Placed::Existing(r) => {
            let location = format!("/orders/{}", r.key);
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(view::accepted(&r)))
                .into_response())
        }
        Placed::Conflict(r) => {
            Err(ApiError::Conflict(format!("orderId {} was already placed with a different body", r.key)))
        }
    }
}

#[utoipa::path(get, path = "/orders/{orderId}", tag = "orders",
    params(("orderId" = String, Path)),
    responses(
        (status = 200, body = sagaflow_api::OrderDetail),
        (status = 404, description = "Unknown order", body = sagaflow_api::ErrorBody),
        (status = 422, description = "Not an order id", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn show_order(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    Ok(Json(detail_of(&s, &order_key(&raw)?)?).into_response())
}

/// A saga by its key: 404 when unknown.
fn record_of(s: &ApiState, key: &SagaKey) -> Result<crate::record::SagaRecord, ApiError> {
    s.store.get(key.as_str())?.ok_or_else(|| ApiError::NotFound(key.to_string()))
}

/// One line of `GET /orders` for one saga (the console's id filter).
pub(super) fn summary_of(s: &ApiState, key: &SagaKey) -> Result<sagaflow_api::OrderSummary, ApiError> {
    Ok(view::summary(&record_of(s, key)?))
}

/// `GET /orders/{orderId}`'s answer, `GET /sagas/{saga}/{id}`'s, and the console's saga page.
pub(super) fn detail_of(s: &ApiState, key: &SagaKey) -> Result<sagaflow_api::OrderDetail, ApiError> {
    let record = record_of(s, key)?;
    let definition = s.store.definition(&record.definition);
    let history = s.store.history(&record, HISTORY_SHOWN)?;
    let label = s.store.label(&record.definition);
    Ok(view::detail(&record, &history, definition.as_deref(), label))
}

/// `GET /orders`'s query. Every parameter is optional; one this does not name is a 400, not
/// silently ignored, and so is one given twice.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct ListQuery {
    pub state: Option<String>,
    pub limit: Option<String>,
    pub after: Option<String>,
    pub reason: Option<String>,
    pub user_id: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    /// Only sagas of this definition (`GET /sagas` and the console; `/orders` lists orders).
    pub saga: Option<String>,
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

/// `GET /orders/stream`'s query: filters, and where to resume (as `Last-Event-ID` does).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct StreamQuery {
    order_id: Option<String>,
    state: Option<String>,
    after: Option<String>,
}

/// One thing the feed gave a stream, as its Server-Sent Event.
fn event(read: Read) -> Event {
    match read {
        Read::Change(seq, change) => Event::default()
            .id(seq.to_string())
            .event("change")
            .data(serde_json::to_string(&change).expect("a change serialises")),
        Read::Lagging { behind } => {
            Event::default().event("lagging").data(json!({ "behind": behind }).to_string())
        }
        Read::Lagged { resume_after, keeps } => Event::default()
            .event("lagged")
            .data(json!({ "resumeAfter": resume_after, "keeps": keeps }).to_string()),
    }
}

/// `GET /orders/stream`: Server-Sent Events, one `change` per saga state or step change, with
/// the feed sequence as its id. `Last-Event-ID` (or `?after=`) resumes after that change, as
/// far back as the feed keeps (`CHANGE_FEED_KEEP`); further back is a `410`. A client that falls
/// behind costs the engine nothing (it reads the durable feed at its own pace); it is told
/// once it is half the feed behind (`lagging`), and when the feed has dropped what it had not
/// read yet it gets `lagged` and the stream ends.
#[utoipa::path(get, path = "/orders/stream", tag = "orders",
    params(
        ("orderId" = Option<String>, Query, description = "Only this saga's changes: an order id, or a defined saga's key `{saga}/{id}`"),
        ("state" = Option<sagaflow_api::SagaState>, Query, description = "Only changes into this state"),
        ("after" = Option<String>, Query, description = "Resume after this event id (as Last-Event-ID)"),
        ("last-event-id" = Option<String>, Header, description = "Resume after this event id"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = sagaflow_api::Change,
            description = "`event: change` with a `Change` as data and the feed sequence as id; `lagging` when half the feed behind; `lagged` (then the end) when the feed dropped unread changes"),
        (status = 400, body = sagaflow_api::ErrorBody),
        (status = 410, description = "Asked to resume further back than the feed keeps", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn stream_orders(
    State(s): State<ApiState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Malformed(e.body_text()))?;
    let state = query.state.as_deref().map(parse_state).transpose()?.map(view::state);
    let order = query.order_id.as_deref().map(any_key).transpose()?.map(|o| o.to_string());
    let resume = match headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or_default())
        .or(query.after.as_deref())
    {
        Some(raw) => Some(raw.parse::<u64>().map_err(|_| {
            ApiError::Malformed(format!("Last-Event-ID must be an event id from this stream, not {raw:?}"))
        })?),
        None => None,
    };
    let feed = s.store.feed();
    let durable = feed.subscribe();
    let position = match resume {
        Some(after) => {
            let oldest = feed.oldest().map_err(StoreError::from)?;
            if after.saturating_add(1) < oldest {
                return Err(ApiError::Gone(format!(
                    "the feed keeps the last {} changes: it can resume after {} at the earliest, not after {after}",
                    feed.keeps(),
                    oldest - 1
                )));
            }
            after
        }
        None => *durable.borrow(),
    };
    let (store, stop) = (s.store.clone(), s.stop.clone());
    let start = (Cursor::new(position, order, state), durable, std::collections::VecDeque::new());
    let events = futures_util::stream::unfold(start, move |(mut cursor, mut durable, mut ready)| {
        let (store, stop) = (store.clone(), stop.clone());
        async move {
            loop {
                if let Some(event) = ready.pop_front() {
                    return Some((Ok::<_, std::convert::Infallible>(event), (cursor, durable, ready)));
                }
                if cursor.ended() {
                    return None;
                }
                match cursor.read(store.feed()) {
                    Ok(read) if !read.is_empty() => ready.extend(read.into_iter().map(event)),
                    Ok(_) => tokio::select! {
                        changed = durable.changed() => if changed.is_err() { return None },
                        () = stop.cancelled() => return None,
                    },
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the change feed");
                        let error = json!({ "error": e.to_string() }).to_string();
                        ready.push_back(Event::default().event("error").data(error));
                        cursor.end();
                    }
                }
            }
        }
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// A state name of the API (not `not_started`).
fn parse_state(raw: &str) -> Result<Status, ApiError> {
    raw.parse::<Status>().ok().filter(|s| *s != Status::NotStarted).ok_or_else(|| {
        ApiError::Malformed(format!(
            "unknown state {raw:?}: use running, compensating, completed, compensated or stuck"
        ))
    })
}

#[utoipa::path(get, path = "/orders", tag = "orders",
    params(
        ("state" = Option<sagaflow_api::SagaState>, Query),
        ("reason" = Option<String>, Query),
        ("userId" = Option<String>, Query),
        ("since" = Option<String>, Query, description = "Created at or after: RFC 3339 or epoch milliseconds"),
        ("until" = Option<String>, Query, description = "Created before: RFC 3339 or epoch milliseconds"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, 50 by default"),
        ("after" = Option<String>, Query, description = "The `next` of the previous page"),
    ),
    responses(
        (status = 200, body = sagaflow_api::OrderPage),
        (status = 400, description = "An unknown or malformed parameter", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn list_orders(
    State(s): State<ApiState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Malformed(e.body_text()))?;
    if query.saga.as_deref().is_some_and(|saga| saga != "order") {
        return Err(ApiError::Malformed(
            "/orders lists orders; GET /sagas?saga=... lists other sagas".into(),
        ));
    }
    Ok(Json(list_page(&s, ListQuery { saga: Some("order".into()), ..query })?).into_response())
}

/// One page of `GET /orders` (and of the console's list).
pub(super) fn list_page(s: &ApiState, query: ListQuery) -> Result<sagaflow_api::OrderPage, ApiError> {
    let state = query.state.as_deref().map(parse_state).transpose()?;
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
        saga: bounded("saga", query.saga)?,
    };
    let (page, next) = s.store.list(&filter, limit, after)?;
    let orders = page.iter().map(view::summary).collect();
    Ok(sagaflow_api::OrderPage { orders, next: next.map(|n| n.to_string()) })
}

#[utoipa::path(post, path = "/orders/{orderId}/cancel", tag = "orders",
    params(("orderId" = String, Path)),
    responses(
        (status = 202, description = "Compensating (or already was)", body = sagaflow_api::Accepted),
        (status = 404, body = sagaflow_api::ErrorBody),
        (status = 409, description = "Finished, or past the point of no return", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn cancel_order(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    cancel(&s, &order_key(&raw)?).await.map(accepted)
}

/// Asks a saga to compensate: a conflict when it has finished or is past its point of no
/// return.
pub(super) async fn cancel(s: &ApiState, key: &SagaKey) -> Result<sagaflow_api::Accepted, ApiError> {
    let raw = key.as_str();
    let (record, ignored) = control(s, key, Control::Cancel).await?;
    let state = record.saga.status();
    match ignored {
        None | Some(Ignored::AlreadyCompensating) => Ok(view::accepted(&record)),
        Some(Ignored::PastPointOfNoReturn) => Err(ApiError::Conflict(format!(
            "saga {raw} is past the point of no return (a step without compensation has begun) and cannot be cancelled"
        ))),
        Some(_) => Err(ApiError::Conflict(format!("saga {raw} is already {state}"))),
    }
}

#[utoipa::path(post, path = "/orders/{orderId}/retry", tag = "orders",
    params(("orderId" = String, Path)),
    responses(
        (status = 202, description = "The stuck compensations are sent again", body = sagaflow_api::Accepted),
        (status = 404, body = sagaflow_api::ErrorBody),
        (status = 409, description = "Not stuck", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn retry_order(
    State(s): State<ApiState>,
    Path(raw): Path<String>,
) -> Result<Response, ApiError> {
    Ok(accepted(retry(&s, &order_key(&raw)?).await?))
}

/// Asks a stuck saga to try its compensations again: a conflict when it is not stuck.
pub(super) async fn retry(s: &ApiState, key: &SagaKey) -> Result<sagaflow_api::Accepted, ApiError> {
    let raw = key.as_str();
    let (record, ignored) = control(s, key, Control::Retry).await?;
    match ignored {
        None => Ok(view::accepted(&record)),
        Some(_) => Err(ApiError::Conflict(format!(
            "only a stuck saga can be retried; saga {raw} is {}",
            record.saga.status()
        ))),
    }
}

async fn control(
    s: &ApiState,
    key: &SagaKey,
    control: Control,
) -> Result<(crate::record::SagaRecord, Option<Ignored>), ApiError> {
    let order_id = key.to_string();
    match ask(s, |answer| Job::Control { order_id, control, answer }).await?? {
        Controlled::UnknownSaga => Err(ApiError::NotFound(key.to_string())),
        Controlled::Recorded { record, ignored } => Ok((record, ignored)),
    }
}

/// Hands a job to the engine and waits for its answer, which comes once it is durable.
pub(super) async fn ask<T>(
    s: &ApiState,
    job: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Job,
) -> Result<Result<T, StoreError>, ApiError> {
    let (answer, answered) = oneshot::channel();
    s.jobs.send(job(answer)).await.map_err(|_| ApiError::ShuttingDown)?;
    answered.await.map_err(|_| ApiError::ShuttingDown)
}

#[utoipa::path(get, path = "/metrics", tag = "operations", security(()),
    responses((status = 200, content_type = "text/plain", body = String, description = "Prometheus text; open without a token")))]
pub(super) async fn metrics(State(s): State<ApiState>) -> Response {
    sagaflow_runtime::http::metrics_text(s.metrics.render(&s.store, &s.pipeline))
}

/// `202` with where the saga stands now.
pub(super) fn accepted(body: sagaflow_api::Accepted) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

#[utoipa::path(get, path = "/overview", tag = "operations",
    responses((status = 200, body = sagaflow_api::Overview, description = "What the console's first page shows")))]
pub(super) async fn overview(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(overview_of(&s).await?).into_response())
}

/// Counts, the last ten minutes, health, and what the broker says about the participants and
/// the dead letters (left out, not an error, when the broker cannot be asked).
pub async fn overview_of(s: &ApiState) -> Result<sagaflow_api::Overview, ApiError> {
    let states = s
        .store
        .counts()?
        .into_iter()
        .filter(|(status, _)| *status != Status::NotStarted)
        .map(|(status, n)| sagaflow_api::Count { name: status.to_string(), count: n.max(0) as u64 })
        .collect();
    let (throughput, reasons) = s.metrics.recent.snapshot(sagaflow_runtime::now_millis());
    let participants = s.topology.participant_names();
    let mut queues: Vec<String> = participants.iter().map(|p| s.topology.command_queue_of(p)).collect();
    queues.push(s.topology.dead_letter_queue());
    let seen = tokio::time::timeout(std::time::Duration::from_secs(2), s.inspector.queues(&queues))
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let state_of = |queue: &str| seen.iter().find(|(q, _)| q == queue).map(|(_, state)| state.clone());
    let outbox = s.store.outbox();
    Ok(sagaflow_api::Overview {
        states,
        reasons,
        throughput,
        outbox_depth: outbox.depth() as u64,
        parked: outbox.parked_count() as u64,
        bus: if s.health.bus_connected() { "connected" } else { "disconnected" }.to_owned(),
        store: s.health.store_error().map_or_else(|| "working".to_owned(), |e| format!("failing: {e}")),
        participants: participants
            .iter()
            .zip(&queues)
            .filter_map(|(p, queue)| {
                let state = state_of(queue)?;
                Some(sagaflow_api::Participant {
                    name: p.clone(),
                    queue: queue.clone(),
                    consumers: state.consumers,
                    ready: state.messages,
                })
            })
            .collect(),
        dead_letters: state_of(&s.topology.dead_letter_queue()).map(|q| u64::from(q.messages)),
    })
}

/// The most characters of a dead letter's body shown.
const PREVIEW_CHARS: usize = 512;

#[utoipa::path(get, path = "/dead-letters", tag = "dead letters",
    responses(
        (status = 200, body = sagaflow_api::DeadLetterPage, description = "The oldest 200, oldest first"),
        (status = 502, description = "The broker cannot be asked", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn list_dead_letters(State(s): State<ApiState>) -> Result<Response, ApiError> {
    Ok(Json(dead_letters_of(&s).await?).into_response())
}

pub async fn dead_letters_of(s: &ApiState) -> Result<sagaflow_api::DeadLetterPage, ApiError> {
    let (letters, total) = s.inspector.dead_letters().await?;
    let dead_letters = letters
        .iter()
        .map(|d| sagaflow_api::DeadLetter {
            id: d.message_id.clone().unwrap_or_default(),
            reason: d.header_text(sagaflow_events::headers::DEAD_LETTER_REASON).map(str::to_owned),
            queue: d.header_text(sagaflow_events::headers::DEAD_LETTER_QUEUE).map(str::to_owned),
            kind: d.kind.clone(),
            correlation_id: d.correlation_id.clone(),
            bytes: d.body.len() as u64,
            // A character takes at most four bytes: no need to decode a large body whole.
            preview: String::from_utf8_lossy(&d.body[..d.body.len().min(PREVIEW_CHARS * 4)])
                .chars()
                .take(PREVIEW_CHARS)
                .collect(),
        })
        .collect();
    Ok(sagaflow_api::DeadLetterPage { dead_letters, total: u64::from(total) })
}

#[utoipa::path(post, path = "/dead-letters/{id}/requeue", tag = "dead letters",
    params(("id" = String, Path, description = "The dead letter's message id")),
    responses(
        (status = 202, body = sagaflow_api::DeadLetterAction, description = "Sent back to its queue, as it first arrived"),
        (status = 404, description = "Not among the oldest 200", body = sagaflow_api::ErrorBody),
        (status = 409, description = "It does not say where it came from", body = sagaflow_api::ErrorBody),
        (status = 502, body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn requeue_dead_letter(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    dispose(&s, id, Disposal::Requeue).await
}

#[utoipa::path(post, path = "/dead-letters/{id}/discard", tag = "dead letters",
    params(("id" = String, Path, description = "The dead letter's message id")),
    responses(
        (status = 202, body = sagaflow_api::DeadLetterAction, description = "Removed for good"),
        (status = 404, description = "Not among the oldest 200", body = sagaflow_api::ErrorBody),
        (status = 502, body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn discard_dead_letter(
    State(s): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    dispose(&s, id, Disposal::Discard).await
}

async fn dispose(s: &ApiState, id: String, disposal: Disposal) -> Result<Response, ApiError> {
    let queue = s.inspector.dispose(&id, disposal).await?;
    let done = match disposal {
        Disposal::Requeue => "requeued",
        Disposal::Discard => "discarded",
    };
    tracing::info!(id, done, queue, "dead letter handled by an operator");
    let body = sagaflow_api::DeadLetterAction { id, done: done.to_owned(), queue };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
