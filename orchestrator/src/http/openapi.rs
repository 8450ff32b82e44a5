//! `GET /openapi.json`: the API as OpenAPI 3.1, generated from the handlers' annotations and
//! the [`sagaflow_api`] types, so it cannot describe an API other than the one served. A test
//! checks that every route is in it and that real answers validate against it.

use axum::response::{IntoResponse, Response};
use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{api, sagas};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "sagaflow orchestrator",
        description = "Orders run as sagas over a broker; so do the sagas defined in files, under /sagas. When `API_TOKEN` is set, every path but /health and /metrics needs `Authorization: Bearer <token>`; a request with a body must be `content-type: application/json`. Every error is a JSON object with an `error` string.",
    ),
    paths(
        api::place_order,
        api::list_orders,
        api::show_order,
        api::stream_orders,
        api::cancel_order,
        api::retry_order,
        sagas::start_saga,
        sagas::list_sagas,
        sagas::show_saga,
        sagas::cancel_saga,
        sagas::retry_saga,
        api::overview,
        api::list_dead_letters,
        api::requeue_dead_letter,
        api::discard_dead_letter,
        api::metrics,
        health,
        parked,
        openapi_json,
        schema_index,
        schema,
    ),
    modifiers(&BearerToken),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// The `bearer` scheme every path but the open ones refers to.
struct BearerToken;

impl Modify for BearerToken {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "This document")))]
pub(super) async fn openapi_json() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The JSON Schemas of the envelopes a participant reads and writes (see
/// [`sagaflow_events::schemas`]), for participants in any language.
#[utoipa::path(get, path = "/schemas", tag = "operations",
    responses((status = 200, body = sagaflow_api::SchemaIndex, description = "The schemas served, by name")))]
pub(super) async fn schema_index() -> Response {
    let schemas = sagaflow_events::schemas::PUBLISHED
        .iter()
        .map(|(name, _)| sagaflow_api::SchemaLink {
            name: (*name).to_owned(),
            href: format!("/schemas/{name}"),
        })
        .collect();
    Json(sagaflow_api::SchemaIndex { schemas }).into_response()
}

#[utoipa::path(get, path = "/schemas/{name}", tag = "operations",
    params(("name" = String, Path, description = "command.json, reply.json, forget-sagas.json, saga-command.json or saga-reply.json")),
    responses(
        (status = 200, content_type = "application/schema+json", body = Object, description = "A JSON Schema (2020-12)"),
        (status = 404, body = sagaflow_api::ErrorBody, description = "No schema of that name"),
    ))]
pub(super) async fn schema(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match sagaflow_events::schemas::PUBLISHED.iter().find(|(n, _)| *n == name) {
        Some((_, text)) => {
            ([(axum::http::header::CONTENT_TYPE, "application/schema+json")], *text).into_response()
        }
        None => sagaflow_runtime::http::errors::JsonError::new(
            axum::http::StatusCode::NOT_FOUND,
            "no such schema: see /schemas",
        )
        .into_response(),
    }
}

// Served by `sagaflow_runtime::http::common_routes`, the same in every program; described here.

/// `200` when the store works and the bus is connected, `503` otherwise. Open without a token.
#[utoipa::path(get, path = "/health", tag = "operations", security(()),
    responses(
        (status = 200, body = sagaflow_api::Health),
        (status = 503, body = sagaflow_api::Health),
    ))]
#[allow(dead_code)]
fn health() {}

/// Messages the broker refused for good, newest last.
#[utoipa::path(get, path = "/outbox/parked", tag = "operations",
    responses((status = 200, body = sagaflow_api::ParkedPage)))]
#[allow(dead_code)]
fn parked() {}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// `{order_id}` and `{orderId}` are the same route.
    fn shape(path: &str) -> String {
        let mut out = String::new();
        let mut in_param = false;
        for c in path.chars() {
            match c {
                '{' => {
                    in_param = true;
                    out.push_str("{}");
                }
                '}' => in_param = false,
                c if !in_param => out.push(c),
                _ => {}
            }
        }
        out
    }

    /// Every `.route("...", get(..).post(..))` of the API's routers, read from their source:
    /// a route added without its annotation fails here. The console's HTML pages (`/` and
    /// `/console/...`) are not the API and are left out.
    #[test]
    fn every_route_served_is_in_the_document_with_its_methods() {
        let sources = [
            include_str!("api.rs"),
            include_str!("sagas.rs"),
            include_str!("mod.rs"),
            include_str!("../../../runtime/src/http/mod.rs"),
        ];
        let mut served = BTreeSet::new();
        for source in sources {
            for line in source.lines().filter(|l| l.contains(".route(\"")) {
                let path = line.split(".route(\"").nth(1).and_then(|r| r.split('"').next()).unwrap();
                if path == "/" || path.starts_with("/console") {
                    continue;
                }
                for method in ["get", "post"] {
                    if line.contains(&format!("{method}(")) {
                        served.insert((shape(path), method));
                    }
                }
            }
        }
        assert!(served.len() >= 14, "the routes were not found in the source: {served:?}");
        let doc = ApiDoc::openapi();
        let mut documented = BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            if item.get.is_some() {
                documented.insert((shape(path), "get"));
            }
            if item.post.is_some() {
                documented.insert((shape(path), "post"));
            }
        }
        let missing: Vec<_> = served.difference(&documented).collect();
        assert!(missing.is_empty(), "served but not in /openapi.json: {missing:?}");
        let extra: Vec<_> = documented.difference(&served).collect();
        assert!(extra.is_empty(), "in /openapi.json but not served: {extra:?}");
    }

    #[test]
    fn the_document_is_openapi_3_1_and_open_paths_need_no_token() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        assert_eq!(doc["paths"]["/health"]["get"]["security"], serde_json::json!([{}]));
        assert_eq!(doc["security"], serde_json::json!([{ "bearer": [] }]));
        assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    }
}
