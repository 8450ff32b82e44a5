//! What the orchestrator serves over HTTP, all on one router:
//!
//! - [`api`]: the JSON API (`/orders`, its stream, dead letters, the overview).
//! - [`sagas`]: `/sagas`, the same for sagas defined in files.
//! - [`view`]: stored records turned into the API's answers ([`sagaflow_api`] types).
//! - [`openapi`]: `/openapi.json`, generated from the handlers and those types, and
//!   `/schemas/`, the JSON Schemas of the bus envelopes.
//! - [`console`]: the operator's web console at `/`, server-rendered from the same views.

pub mod api;
pub mod console;
pub mod openapi;
pub mod sagas;
pub mod view;

/// Every route the orchestrator serves.
pub fn router(state: api::ApiState) -> axum::Router {
    api::router(state.clone())
        .route("/openapi.json", axum::routing::get(openapi::openapi_json))
        .route("/schemas", axum::routing::get(openapi::schema_index))
        .route("/schemas/{name}", axum::routing::get(openapi::schema))
        .merge(console::router().with_state(state))
}
