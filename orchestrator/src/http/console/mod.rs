//! The operator's console at `/`: pages rendered on the server (maud) from the same values the
//! JSON API answers ([`super::view`]), so a page and `GET /orders/{id}` cannot disagree.
//!
//! No build step and no CDN: the stylesheet, our script and htmx (vendored with its licence in
//! `orchestrator/console/`) are compiled into the binary. Pages update live: the script follows
//! `GET /orders/stream` and has htmx reload the parts marked `data-live`, at most once a second.
//! Actions post to the JSON API itself (`/orders/{id}/cancel`, `/dead-letters/{id}/requeue`,
//! ...); the one console-only action is retrying every stuck saga at once.
//!
//! With `API_TOKEN` set the console asks for the token once and trades it for a session cookie
//! (`sagaflow_runtime::http::auth`); nothing here, its static files included, is served without
//! one. A page's error is an HTML page for a browser and the API's JSON error for anything else.

mod chart;
mod pages;

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use maud::Markup;

use super::api::{self, ApiError, ApiState, ListQuery};

/// Files the console serves, compiled in.
const ASSETS: [(&str, &str, &str); 3] = [
    ("console.css", "text/css; charset=utf-8", include_str!("../../../console/console.css")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("../../../console/console.js")),
    ("htmx.min.js", "text/javascript; charset=utf-8", include_str!("../../../console/vendor/htmx.min.js")),
];

pub fn router() -> Router<ApiState> {
    Router::new()
        .route("/", get(overview_page))
        .route("/console/sagas", get(sagas_page))
        .route("/console/sagas/{order_id}", get(saga_page))
        .route("/console/dead-letters", get(dead_letters_page))
        .route("/console/fragments/overview", get(overview_fragment))
        .route("/console/fragments/sagas", get(sagas_fragment))
        .route("/console/fragments/sagas/{order_id}", get(saga_fragment))
        .route("/console/fragments/dead-letters", get(dead_letters_fragment))
        .route("/console/actions/retry-stuck", post(retry_stuck))
        .route("/console/assets/{name}", get(asset))
}

/// A console page that could not be made: for a browser, an HTML page with the error; for
/// anything else the API's JSON error. The status is the API's either way.
struct ConsoleError {
    error: ApiError,
    html: bool,
}

trait ForPage<T> {
    fn for_page(self, headers: &HeaderMap) -> Result<T, ConsoleError>;
}

impl<T> ForPage<T> for Result<T, ApiError> {
    fn for_page(self, headers: &HeaderMap) -> Result<T, ConsoleError> {
        self.map_err(|error| ConsoleError {
            error,
            html: sagaflow_runtime::http::auth::accepts_html(headers),
        })
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        if !self.html {
            return self.error.into_response();
        }
        let message = self.error.to_string();
        let status = self.error.into_response().status();
        (status, Html(pages::error(status, &message).into_string())).into_response()
    }
}

fn html(markup: Markup) -> Response {
    let mut response = Html(markup.into_string()).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    response
}

async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => ([(header::CONTENT_TYPE, *content_type)], *body).into_response(),
        None => sagaflow_runtime::http::not_found().await.into_response(),
    }
}

async fn overview_page(State(s): State<ApiState>, headers: HeaderMap) -> Result<Response, ConsoleError> {
    let overview = api::overview_of(&s).await.for_page(&headers)?;
    Ok(html(pages::overview_page(&overview)))
}

async fn overview_fragment(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let overview = api::overview_of(&s).await?;
    Ok(html(pages::overview(&overview)))
}

/// The list's filters as a form sends them: every field present, empty when unused.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaFilters {
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub reason: String,
    #[serde(default)]
    pub user_id: String,
    #[serde(default)]
    pub since: String,
    #[serde(default)]
    pub until: String,
    #[serde(default)]
    pub order_id: String,
    /// The saga definition's name (`order`, `trip`, ...).
    #[serde(default)]
    pub saga: String,
    #[serde(default)]
    pub after: String,
}

impl SagaFilters {
    fn given(value: &str) -> Option<String> {
        let value = value.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }

    fn query(&self) -> ListQuery {
        ListQuery {
            state: Self::given(&self.state),
            limit: Some("50".into()),
            after: Self::given(&self.after),
            reason: Self::given(&self.reason),
            user_id: Self::given(&self.user_id),
            since: Self::given(&self.since),
            until: Self::given(&self.until),
            saga: Self::given(&self.saga),
        }
    }

    /// The same filters as a query string, without the cursor (for the live reload and paging).
    pub fn encoded(&self) -> String {
        let pairs = [
            ("state", &self.state),
            ("reason", &self.reason),
            ("userId", &self.user_id),
            ("since", &self.since),
            ("until", &self.until),
            ("orderId", &self.order_id),
            ("saga", &self.saga),
        ];
        pairs
            .iter()
            .filter(|(_, v)| !v.trim().is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v.trim())))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// What a query value keeps as it is: RFC 3986's unreserved characters.
const UNRESERVED: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// Percent-encodes a query value (everything but unreserved characters).
fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, UNRESERVED).to_string()
}

/// The page of sagas the filters select; an order id selects that one saga.
fn sagas_of(s: &ApiState, filters: &SagaFilters) -> Result<sagaflow_api::OrderPage, ApiError> {
    if let Some(id) = SagaFilters::given(&filters.order_id) {
        return match api::any_key(&id).and_then(|key| api::summary_of(s, &key)) {
            Ok(summary) => Ok(sagaflow_api::OrderPage { orders: vec![summary], next: None }),
            Err(ApiError::NotFound(_)) => Ok(sagaflow_api::OrderPage { orders: vec![], next: None }),
            Err(e) => Err(e),
        };
    }
    api::list_page(s, filters.query())
}

async fn sagas_page(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Query(filters): Query<SagaFilters>,
) -> Result<Response, ConsoleError> {
    let page = sagas_of(&s, &filters).for_page(&headers)?;
    Ok(html(pages::sagas_page(&filters, &page)))
}

async fn sagas_fragment(
    State(s): State<ApiState>,
    Query(filters): Query<SagaFilters>,
) -> Result<Response, ApiError> {
    let page = sagas_of(&s, &filters)?;
    Ok(html(pages::saga_rows(&filters, &page)))
}

async fn saga_page(
    State(s): State<ApiState>,
    headers: HeaderMap,
    Path(raw): Path<String>,
) -> Result<Response, ConsoleError> {
    let detail = api::any_key(&raw).and_then(|key| api::detail_of(&s, &key)).for_page(&headers)?;
    Ok(html(pages::saga_page(&detail)))
}

async fn saga_fragment(State(s): State<ApiState>, Path(raw): Path<String>) -> Result<Response, ApiError> {
    let detail = api::detail_of(&s, &api::any_key(&raw)?)?;
    Ok(html(pages::saga(&detail)))
}

/// (A broker that cannot be asked is shown on the page, not an error of the page.)
async fn dead_letters_page(State(s): State<ApiState>) -> Response {
    let letters = api::dead_letters_of(&s).await.map_err(|e| e.to_string());
    html(pages::dead_letters_page(letters.as_ref()))
}

async fn dead_letters_fragment(State(s): State<ApiState>) -> Response {
    let letters = api::dead_letters_of(&s).await.map_err(|e| e.to_string());
    html(pages::dead_letters(letters.as_ref()))
}

/// Retries every saga that is stuck now, page by page; one that healed meanwhile is skipped.
async fn retry_stuck(State(s): State<ApiState>) -> Result<Response, ApiError> {
    let (mut retried, mut skipped, mut after) = (0u64, 0u64, None);
    loop {
        let query = ListQuery {
            state: Some("stuck".into()),
            limit: Some("1000".into()),
            after,
            ..Default::default()
        };
        let page = api::list_page(&s, query)?;
        for order in &page.orders {
            match api::retry(&s, &api::any_key(&order.order_id)?).await {
                Ok(_) => retried += 1,
                Err(ApiError::Conflict(_)) => skipped += 1,
                Err(e) => return Err(e),
            }
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let message = format!("retried {retried} stuck sagas ({skipped} were no longer stuck)");
    Ok((StatusCode::ACCEPTED, Json(sagaflow_api::RetriedStuck { retried, skipped, message })).into_response())
}
