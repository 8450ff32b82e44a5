//! The orchestrator's HTTP API as types: what it answers, and nothing else. The server builds
//! these, `sagactl` and the tests read them, and `/openapi.json` is generated from them, so the
//! three cannot drift apart. Bus messages are not here; they are `sagaflow-events`.
//!
//! Times are RFC 3339 strings (`2026-11-26T10:00:00.123Z`) except where a field says epoch
//! milliseconds. Money is in cents.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// An enum of this API as its JSON names it (`not_needed`, `compensation`), for tables and
/// pages.
pub fn word(value: &impl Serialize) -> String {
    serde_json::to_value(value).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

/// Where a saga stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SagaState {
    /// Steps are going forward.
    Running,
    /// A step failed, timed out for good or the order was cancelled: undoing what was done.
    Compensating,
    Completed,
    /// Everything that was done has been undone.
    Compensated,
    /// A compensation ran out of attempts: an operator must look (`POST .../retry`).
    Stuck,
}

impl SagaState {
    pub const ALL: [SagaState; 5] =
        [Self::Running, Self::Compensating, Self::Completed, Self::Compensated, Self::Stuck];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Compensating => "compensating",
            Self::Completed => "completed",
            Self::Compensated => "compensated",
            Self::Stuck => "stuck",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Compensated)
    }
}

impl std::fmt::Display for SagaState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `pad`, not `write_str`: tables align states with `{:<13}`.
        f.pad(self.as_str())
    }
}

impl std::str::FromStr for SagaState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|state| state.as_str() == s).ok_or(())
    }
}

/// `202` to `POST /orders`, `POST /sagas/{saga}`, `.../cancel` and `.../retry`: the change is
/// durable.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    /// The order's id; for a saga defined in a file, its key `{saga}/{id}`.
    pub order_id: String,
    /// The saga definition's name: `order`, or a defined saga's.
    #[serde(default = "order_saga")]
    pub saga: String,
    pub state: SagaState,
}

/// The name of the order saga, for answers that predate other sagas.
fn order_saga() -> String {
    "order".to_owned()
}

/// `POST /sagas/{saga}`: starts a saga of a definition loaded with `--saga-file`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartSaga {
    /// Makes the start idempotent: the same id with the same input is the same saga, with
    /// another input a `409`. Letters, digits and `. _ : -`, at most 128; one is made up
    /// when absent.
    pub id: Option<String>,
    /// Checked against the definition's `input_schema`; at most 16 KiB of JSON.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
}

/// Every error answer, whatever the status.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: String,
}

/// `GET /schemas`: the JSON Schemas of the bus envelopes the orchestrator serves.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SchemaIndex {
    pub schemas: Vec<SchemaLink>,
}

/// One schema: its name and where to get it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SchemaLink {
    pub name: String,
    pub href: String,
}

/// One line of `GET /orders`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderSummary {
    /// The order's id; for a saga defined in a file, its key `{saga}/{id}`.
    pub order_id: String,
    /// The saga definition's name: `order`, or a defined saga's.
    #[serde(default = "order_saga")]
    pub saga: String,
    /// New for every saga: an order id placed again after retention is another saga.
    pub saga_id: String,
    pub state: SagaState,
    pub reason: Option<String>,
    pub amount_cents: Option<u64>,
    pub user_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// `GET /orders`: a page, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OrderPage {
    pub orders: Vec<OrderSummary>,
    /// Pass as `after` for the next page; absent on the last.
    pub next: Option<String>,
}

/// How one step stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepState {
    /// Not sent yet; it will be if the saga goes on.
    Pending,
    /// Never sent, and never will be: the saga turned back or ended before it.
    Skipped,
    Running,
    Retrying,
    Succeeded,
    /// A business refusal: it had no effect.
    Failed,
    /// Every attempt failed or went unanswered: whether it took effect is unknown.
    Exhausted,
    /// In flight when the saga turned back: compensated as if it had happened.
    Abandoned,
    Compensating,
    Compensated,
    CompensationFailed,
}

/// How a step's compensation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CompensationState {
    /// It will never run: the saga ended, or the step did nothing to undo.
    NotNeeded,
    /// It would run if the saga compensated now.
    Standby,
    Running,
    Retrying,
    Succeeded,
    Failed,
    /// Every attempt failed or went unanswered: the saga is `stuck` until retried.
    Exhausted,
    Abandoned,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Step {
    pub name: String,
    pub state: StepState,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// Absent for a step that cannot be undone (the point of no return).
    pub compensation: Option<Compensation>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Compensation {
    pub state: CompensationState,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// One order line.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    pub product_id: String,
    pub quantity: u32,
    pub unit_price_cents: u64,
}

/// The body of `POST /orders` (the `OrderPlaced` event). Unknown fields are ignored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaceOrder {
    /// `OrderPlaced` when given.
    pub event: Option<String>,
    /// The idempotency key: placing the same id with the same body again answers the same saga.
    /// One is made when absent. 1 to 128 characters of `A-Za-z0-9-_.:`, not starting with a dot.
    pub order_id: Option<String>,
    pub user_id: String,
    /// 1 to 100 lines, each product once, from the catalog.
    pub items: Vec<PlaceItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PlaceItem {
    pub product_id: String,
    pub quantity: u32,
}

/// `GET /orders/{orderId}`: the saga, its steps and its timeline.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrderDetail {
    /// The order's id; for a saga defined in a file, its key `{saga}/{id}`.
    pub order_id: String,
    /// The saga definition's name: `order`, or a defined saga's.
    #[serde(default = "order_saga")]
    pub saga: String,
    pub saga_id: String,
    pub state: SagaState,
    pub reason: Option<String>,
    /// Why an order that arrived invalid on the bus was refused.
    pub invalid: Option<String>,
    pub user_id: Option<String>,
    pub amount_cents: Option<u64>,
    pub items: Option<Vec<Item>>,
    pub payment_id: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    /// The W3C trace id every message about this order carries.
    pub trace_id: String,
    /// The saga definition it runs under, to its end: the name and version of its file, and
    /// the fingerprint of its steps. No name or version for a saga stored before they were
    /// recorded.
    pub definition: DefinitionRef,
    /// In the order they run.
    pub steps: Vec<Step>,
    /// The steps to undo, in the order they are undone: what would be undone if the saga
    /// compensated now, what is being undone, or what was (each step's `compensation` says
    /// where it stands).
    pub compensation_plan: Vec<String>,
    /// The newest entries, oldest first.
    pub history: Vec<HistoryItem>,
    /// Entries written in all (the history shows at most the newest 1,000).
    pub history_length: u32,
    pub ignored_recorded: u32,
    /// Ignored inputs beyond this many are counted in `/metrics`, not recorded.
    pub ignored_recorded_limit: u32,
    /// A defined saga's input, as it was started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub input: Option<serde_json::Value>,
    /// A defined saga's step results so far, by step name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub results: Option<std::collections::BTreeMap<String, serde_json::Value>>,
}

/// Which saga definition a saga runs under.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DefinitionRef {
    pub name: Option<String>,
    pub version: Option<u32>,
    pub fingerprint: String,
}

/// One input the saga received, and when.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HistoryItem {
    pub at: String,
    pub input: HistoryInput,
    /// Why the input moved nothing, when it did not.
    pub ignored: Option<String>,
}

/// What happened: the saga started (its first command went out), a participant replied, a timer
/// fired, or an operator cancelled or retried.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum HistoryInput {
    Start,
    #[serde(rename_all = "camelCase")]
    Reply {
        step: String,
        phase: Phase,
        attempt: u32,
        outcome: Outcome,
    },
    TimerFired {
        timer: Timer,
    },
    Cancel {
        reason: String,
    },
    Retry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum Phase {
    Action,
    Compensation,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Outcome {
    Success,
    Failure { reason: String },
    Transient { reason: String },
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Timer {
    pub step: String,
    pub phase: Phase,
    pub attempt: u32,
    /// `attemptTimeout` (the reply is overdue) or `backoff` (time for the next attempt).
    pub kind: String,
}

/// One event of `GET /orders/stream` (`event: change`, `id:` the feed sequence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub order_id: String,
    pub saga_id: String,
    pub state: SagaState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The step the saga waits on now, if it waits on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// `action` or `compensation`, with `step`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// When, in epoch milliseconds.
    pub at: u64,
}

/// `GET /health`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: String,
    /// `working`, or `failing: ...`.
    pub store: String,
    /// `connected` or `disconnected`.
    pub bus: String,
}

/// `GET /outbox/parked`: messages the broker refused for good.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ParkedPage {
    pub parked: Vec<Parked>,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Parked {
    pub id: u64,
    pub reason: String,
    pub parked_at: String,
    pub exchange: Option<String>,
    pub routing_key: Option<String>,
    pub kind: Option<String>,
    pub correlation_id: Option<String>,
    pub bytes: Option<u64>,
}

/// `GET /dead-letters`: what sits in the namespace's dead-letter queue, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterPage {
    pub dead_letters: Vec<DeadLetter>,
    /// Messages in the queue, shown or not.
    pub total: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// The message id: what `requeue` and `discard` take.
    pub id: String,
    pub reason: Option<String>,
    /// The queue it was taken from, where `requeue` sends it back.
    pub queue: Option<String>,
    pub kind: Option<String>,
    pub correlation_id: Option<String>,
    pub bytes: u64,
    /// The start of the body as text (invalid UTF-8 shown as U+FFFD), at most 512 characters.
    pub preview: String,
}

/// `202` to `POST /dead-letters/{id}/requeue` or `/discard`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetterAction {
    pub id: String,
    /// `requeued` or `discarded`.
    pub done: String,
    pub queue: Option<String>,
}

/// `GET /overview`: what the console's first page shows.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Sagas stored, by state.
    pub states: Vec<Count>,
    /// Finished sagas of the last buckets, by reason (`completed` for those that completed).
    pub reasons: Vec<Count>,
    /// One entry per 10-second bucket, oldest first, up to 10 minutes.
    pub throughput: Vec<Bucket>,
    pub outbox_depth: u64,
    pub parked: u64,
    pub bus: String,
    pub store: String,
    /// Each participant as the broker sees its command queue. Empty when the broker cannot be
    /// asked.
    pub participants: Vec<Participant>,
    pub dead_letters: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Bucket {
    /// The bucket's start, epoch milliseconds.
    pub start: u64,
    pub completed: u64,
    pub compensated: u64,
    /// Median time from order placed to the end, of the sagas that ended in the bucket.
    pub p50_ms: Option<u64>,
    pub p99_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Participant {
    pub name: String,
    pub queue: String,
    /// Consumers on the command queue: 0 means nobody is serving it.
    pub consumers: u32,
    /// Commands waiting in the queue.
    pub ready: u32,
}

/// `202` to the console's "retry every stuck saga".
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RetriedStuck {
    pub retried: u64,
    /// Stuck when listed, no longer stuck when their turn came.
    pub skipped: u64,
    pub message: String,
}
