//! `/sagas`: the front door of sagas defined in files (`--saga-file`), beside `/orders`, the
//! order saga's. A saga is named by its definition and the id it was started with; its answers
//! have the order's shapes, with `orderId` holding the saga's key `{saga}/{id}`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sagaflow_events::{BusinessId, SagaKey, SagaName};
use sagaflow_runtime::http::errors::body_rejection;
use sha2::{Digest, Sha256};

use super::api::{self, accepted, ApiError, ApiState, ListQuery};
use crate::engine::{Job, NewDefined, Placed};
use crate::record::MAX_INPUT_BYTES;

/// The input schemas of the sagas this orchestrator starts, compiled once: by saga name,
/// `None` for a definition without one.
pub type InputSchemas = Arc<HashMap<String, Option<Arc<jsonschema::Validator>>>>;

pub(super) fn routes() -> Router<ApiState> {
    Router::new()
        .route("/sagas", get(list_sagas))
        .route("/sagas/{saga}", post(start_saga))
        .route("/sagas/{saga}/{id}", get(show_saga))
        .route("/sagas/{saga}/{id}/cancel", post(cancel_saga))
        .route("/sagas/{saga}/{id}/retry", post(retry_saga))
}

/// A saga's key from a path's definition name and id: 422 when either is not an id.
fn key(saga: &str, id: &str) -> Result<SagaKey, ApiError> {
    let saga = SagaName::parse(saga).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let id = BusinessId::parse(id).map_err(|e| ApiError::Invalid(e.to_string()))?;
    Ok(SagaKey::of(&saga, &id))
}

#[utoipa::path(post, path = "/sagas/{saga}", tag = "sagas",
    params(
        ("saga" = String, Path, description = "A saga defined with --saga-file"),
        ("traceparent" = Option<String>, Header, description = "A W3C trace context to continue"),
    ),
    request_body = sagaflow_api::StartSaga,
    responses(
        (status = 202, description = "The saga is durable (started now, or before with the same input)", body = sagaflow_api::Accepted,
            headers(("location" = String, description = "/sagas/{saga}/{id}"))),
        (status = 400, description = "Not JSON", body = sagaflow_api::ErrorBody),
        (status = 404, description = "No saga of that name is defined", body = sagaflow_api::ErrorBody),
        (status = 409, description = "The id was started with another input", body = sagaflow_api::ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = sagaflow_api::ErrorBody),
        (status = 415, description = "Not content-type: application/json", body = sagaflow_api::ErrorBody),
        (status = 422, description = "The input breaks the definition's schema (the answer says where), is over 16 KiB, or the id is not one", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn start_saga(
    State(s): State<ApiState>,
    Path(saga): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = body.map_err(body_rejection)?;
    let name = SagaName::parse(saga.as_str()).map_err(|e| ApiError::Invalid(e.to_string()))?;
    // The order saga's door is /orders: its input is a typed order, not any JSON.
    let Some(schema) = s.input_schemas.get(name.as_str()) else {
        return Err(ApiError::NotFound(format!("definition {name:?}: start orders with POST /orders")));
    };
    let start: sagaflow_api::StartSaga = serde_json::from_slice(&body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Invalid(format!("not a saga start: {e}")),
        _ => ApiError::Malformed(format!("not valid JSON: {e}")),
    })?;
    let id = match &start.id {
        Some(raw) => BusinessId::parse(raw.as_str()).map_err(|e| ApiError::Invalid(e.to_string()))?,
        None => BusinessId::parse(uuid::Uuid::now_v7().to_string()).expect("a uuid is a valid id"),
    };
    let canonical = serde_json::to_vec(&start.input).expect("JSON serialises");
    if canonical.len() > MAX_INPUT_BYTES {
        return Err(ApiError::Invalid(format!(
            "the input takes {} bytes of JSON; at most {MAX_INPUT_BYTES}",
            canonical.len()
        )));
    }
    if let Some(validator) = schema {
        if let Err(e) = validator.validate(&start.input) {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "the input".to_owned() } else { format!("input{at}") };
            return Err(ApiError::Invalid(format!("{at}: {e}")));
        }
    }
    let new = NewDefined {
        saga: name,
        id,
        input: start.input,
        // serde_json keeps an object's keys sorted, so the same input in another field order
        // hashes the same.
        input_hash: format!("{:x}", Sha256::digest(&canonical)),
        trace: api::caller_trace(&headers),
    };
    match api::ask(&s, |answer| Job::Start { new, answer }).await?? {
        Placed::Created(r) | Placed::Existing(r) => {
            let location = format!("/sagas/{}", r.key);
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, location)], Json(super::view::accepted(&r)))
                .into_response())
        }
        Placed::Conflict(r) => {
            Err(ApiError::Conflict(format!("saga {} was already started with another input", r.key)))
        }
    }
}

#[utoipa::path(get, path = "/sagas/{saga}/{id}", tag = "sagas",
    params(("saga" = String, Path), ("id" = String, Path)),
    responses(
        (status = 200, body = sagaflow_api::OrderDetail, description = "As an order's, with `orderId` the key `{saga}/{id}`, and the saga's `input` and step `results`"),
        (status = 404, body = sagaflow_api::ErrorBody),
        (status = 422, description = "Not a saga name or id", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn show_saga(
    State(s): State<ApiState>,
    Path((saga, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(Json(api::detail_of(&s, &key(&saga, &id)?)?).into_response())
}

#[utoipa::path(get, path = "/sagas", tag = "sagas",
    params(
        ("saga" = Option<String>, Query, description = "Only sagas of this definition (`order` included)"),
        ("state" = Option<sagaflow_api::SagaState>, Query),
        ("reason" = Option<String>, Query),
        ("since" = Option<String>, Query, description = "Created at or after: RFC 3339 or epoch milliseconds"),
        ("until" = Option<String>, Query, description = "Created before: RFC 3339 or epoch milliseconds"),
        ("limit" = Option<u32>, Query, description = "1 to 1000, 50 by default"),
        ("after" = Option<String>, Query, description = "The `next` of the previous page"),
    ),
    responses(
        (status = 200, body = sagaflow_api::OrderPage, description = "Every saga, orders included, newest first"),
        (status = 400, description = "An unknown or malformed parameter", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn list_sagas(
    State(s): State<ApiState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::Malformed(e.body_text()))?;
    Ok(Json(api::list_page(&s, query)?).into_response())
}

#[utoipa::path(post, path = "/sagas/{saga}/{id}/cancel", tag = "sagas",
    params(("saga" = String, Path), ("id" = String, Path)),
    responses(
        (status = 202, description = "Compensating (or already was)", body = sagaflow_api::Accepted),
        (status = 404, body = sagaflow_api::ErrorBody),
        (status = 409, description = "Finished, or past the point of no return", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn cancel_saga(
    State(s): State<ApiState>,
    Path((saga, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(accepted(api::cancel(&s, &key(&saga, &id)?).await?))
}

#[utoipa::path(post, path = "/sagas/{saga}/{id}/retry", tag = "sagas",
    params(("saga" = String, Path), ("id" = String, Path)),
    responses(
        (status = 202, description = "The stuck commands are sent again", body = sagaflow_api::Accepted),
        (status = 404, body = sagaflow_api::ErrorBody),
        (status = 409, description = "Not stuck", body = sagaflow_api::ErrorBody),
    ))]
pub(super) async fn retry_saga(
    State(s): State<ApiState>,
    Path((saga, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    Ok(accepted(api::retry(&s, &key(&saga, &id)?).await?))
}
