//! The REST chain: the design sagaflow replaces, built from the same domains so the bench can
//! compare the two on equal terms (`sagactl bench`).
//!
//! `POST /chain/orders` runs this service's action on the same ledger or stock code, makes it
//! durable, then calls the next service in the chain (`CHAIN_NEXT`) and waits. If the next
//! hop refuses or cannot be reached, this hop undoes its own action before answering: the
//! classic synchronous chain with compensation on the way back. What it lacks is what the saga
//! adds: nothing retries, nothing remembers an order whose caller gave up, and an outage of any
//! hop fails every order that reaches it.
//!
//! Answers: `200 {"outcome":"completed"}`; `409 {"outcome":"refused","reason":...}` for a
//! business refusal anywhere down the chain; `502` when a later hop could not be reached.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sagaflow_events::{
    Cents, CommandBody, CommandMessage, OrderId, OrderLines, Participant, Phase, ReplyOutcome, SagaId,
    StepName, UserId,
};
use sagaflow_runtime::db::Db;
use sagaflow_runtime::writes::Writes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use sagaflow_runtime::http::HttpArgs;
use sagaflow_services::domain::{Books, Domain, DomainError, TxResult};

/// The order as the chain passes it on, priced by the caller.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainOrder {
    pub order_id: OrderId,
    pub user_id: UserId,
    pub amount_cents: Cents,
    pub items: OrderLines,
}

struct Hop<D> {
    domain: D,
    db: Arc<Db>,
    state: sled::Tree,
    next: Option<String>,
    http: reqwest::Client,
    /// Requests run concurrently; their reads and writes of the books must not interleave.
    writer: std::sync::Mutex<()>,
}

impl<D: Domain> Hop<D> {
    /// Runs `f` on the books and commits what it wrote, one request at a time.
    fn write<T>(&self, f: impl FnOnce(&Books<'_>) -> TxResult<T>) -> Result<T, DomainError> {
        let _one_writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let writes = Writes::new();
        let out = f(&Books::new(&writes, &self.state))?;
        writes.commit()?;
        Ok(out)
    }
}

/// Where a hop serves, keeps its books, and calls next.
pub struct HopArgs {
    pub http: HttpArgs,
    pub data_dir: std::path::PathBuf,
    /// The next hop's base URL, if this is not the last.
    pub next: Option<String>,
}

/// Serves the chain endpoint until `stop`. No bus: in this design there is none.
pub async fn run<D: Domain>(
    domain: D,
    args: HopArgs,
    default_port: u16,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let participant = domain.participant();
    let server = sagaflow_runtime::http::HttpServer::bind(&args.http, default_port).await?;
    let db = Arc::new(Db::open(&args.data_dir.join("store.sled"))?);
    let state = db.sled().open_tree("state")?;
    domain.seed(&state)?;
    let path = domain.path();
    let hop = Arc::new(Hop {
        domain,
        db: db.clone(),
        state,
        next: args.next.clone(),
        http: reqwest::Client::new(),
        writer: Default::default(),
    });
    let view = hop.clone();
    let router = Router::new()
        .route("/chain/orders", post(handle::<D>))
        .route(path, get(move || async move { Json(view.domain.view(&view.state)) }))
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "ok", "mode": "rest-chain" })) }))
        .fallback(sagaflow_runtime::http::not_found)
        .with_state(hop);
    tracing::info!(%participant, next = ?args.next, "{participant} ready in REST chain mode");
    server.serve(router, stop).await;
    db.make_durable()?;
    Ok(())
}

async fn handle<D: Domain>(State(hop): State<Arc<Hop<D>>>, Json(order): Json<ChainOrder>) -> Response {
    let participant = hop.domain.participant();
    let action = command(participant, &order, Phase::Action);
    let answer = match hop.write(|books| hop.domain.act(books, &action)) {
        Ok(answer) => answer,
        Err(e) => return answer(StatusCode::INTERNAL_SERVER_ERROR, "error", &e.to_string()),
    };
    if let ReplyOutcome::Failed { reason } | ReplyOutcome::Transient { reason } = &answer.outcome {
        return self::answer(StatusCode::CONFLICT, "refused", reason.as_str());
    }
    let hop_ = hop.clone();
    let durable = tokio::task::spawn_blocking(move || hop_.domain.make_durable()).await;
    if let Err(e) = flush(&hop.db).await {
        return self::answer(StatusCode::INTERNAL_SERVER_ERROR, "error", &e);
    }
    if !matches!(durable, Ok(Ok(()))) {
        return self::answer(StatusCode::INTERNAL_SERVER_ERROR, "error", "could not make the action durable");
    }
    let Some(next) = &hop.next else { return self::answer(StatusCode::OK, "completed", "") };
    let downstream = hop.http.post(format!("{next}/chain/orders")).json(&order).send().await;
    let (status, outcome, reason) = match downstream {
        Ok(r) if r.status().is_success() => return self::answer(StatusCode::OK, "completed", ""),
        Ok(r) if r.status() == StatusCode::CONFLICT => {
            let body: serde_json::Value = r.json().await.unwrap_or_default();
            (StatusCode::CONFLICT, "refused", body["reason"].as_str().unwrap_or("refused").to_owned())
        }
        Ok(r) => (StatusCode::BAD_GATEWAY, "failed", format!("{next} answered {}", r.status())),
        Err(e) => (StatusCode::BAD_GATEWAY, "failed", format!("{next} unreachable: {e}")),
    };
    // The rest of the chain did not happen: undo this hop before answering.
    if let Some(undo) = undo_command(participant, &order) {
        if let Err(e) = hop.write(|books| hop.domain.undo(books, &undo, true)) {
            return self::answer(StatusCode::INTERNAL_SERVER_ERROR, "error", &format!("undo failed: {e}"));
        }
        let _ = flush(&hop.db).await;
    }
    self::answer(status, outcome, &reason)
}

/// Durable before answering, as a REST service with a database commits before its 200. On the
/// blocking pool: many concurrent `flush_async` calls stalled this hop for good in the bench.
async fn flush(db: &Arc<Db>) -> Result<(), String> {
    let db = db.clone();
    match tokio::task::spawn_blocking(move || db.make_durable()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

fn answer(status: StatusCode, outcome: &str, reason: &str) -> Response {
    (status, Json(serde_json::json!({ "outcome": outcome, "reason": reason }))).into_response()
}

/// The same command the orchestrator would send this participant, so the domain code cannot
/// tell the two designs apart.
fn command(participant: Participant, order: &ChainOrder, phase: Phase) -> CommandMessage {
    let body = match participant {
        Participant::Payment => {
            CommandBody::ChargePayment { user_id: order.user_id.clone(), amount_cents: order.amount_cents }
        }
        Participant::Inventory => CommandBody::ReserveStock { items: order.items.clone() },
        Participant::Notification => CommandBody::SendNotification {
            user_id: order.user_id.clone(),
            amount_cents: order.amount_cents,
            items: order.items.clone(),
        },
    };
    let saga_id = SagaId::parse(order.order_id.as_str()).expect("an order id is a valid saga id");
    let step = StepName::parse(participant.to_string()).expect("a participant's name is a valid step name");
    CommandMessage {
        idempotency_key: CommandMessage::key_for(&saga_id, &step, phase),
        saga_id,
        order_id: order.order_id.clone(),
        step,
        phase,
        attempt: 1,
        sent_at: sagaflow_runtime::now_millis(),
        body,
    }
}

fn undo_command(participant: Participant, order: &ChainOrder) -> Option<CommandMessage> {
    let body = match participant {
        Participant::Payment => CommandBody::RefundPayment { amount_cents: order.amount_cents },
        Participant::Inventory => CommandBody::ReleaseStock { items: order.items.clone() },
        Participant::Notification => return None,
    };
    Some(CommandMessage { body, ..command(participant, order, Phase::Compensation) })
}
