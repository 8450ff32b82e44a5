//! The JSON shapes of the HTTP API, built from stored records.

use sagaflow_runtime::rfc3339;
use sagaflow_saga::{CommandProgress, CommandStatus, HistoryEntry, SagaDefinition, StepState};
use serde::Serialize;
use serde_json::{json, Value};

use crate::record::{SagaRecord, MAX_IGNORED_RECORDED};

/// One line of `GET /orders`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub order_id: String,
    pub saga_id: String,
    pub state: String,
    pub reason: Option<String>,
    pub amount_cents: Option<u64>,
    pub created_at: String,
    pub updated_at: String,
}

pub fn summary(record: &SagaRecord) -> Summary {
    Summary {
        order_id: record.order_id.to_string(),
        saga_id: record.saga_id.to_string(),
        state: record.saga.status().to_string(),
        reason: record.saga.reason().map(str::to_owned),
        amount_cents: record.order.as_ref().map(|o| o.amount_cents.0),
        created_at: rfc3339(record.created_at),
        updated_at: rfc3339(record.updated_at),
    }
}

/// `GET /orders/{id}`: the saga with its steps and timeline.
pub fn detail(record: &SagaRecord, history: &[HistoryEntry], definition: Option<&SagaDefinition>) -> Value {
    let step_name = |i: u32| {
        definition.and_then(|d| d.step(i)).map(|s| s.name.clone()).unwrap_or_else(|| format!("step{i}"))
    };
    let steps: Vec<Value> = record
        .saga
        .steps()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let compensable =
                definition.and_then(|d| d.step(i as u32)).is_some_and(|d| d.compensation.is_some());
            json!({
                "name": step_name(i as u32),
                "state": step_state(s),
                "attempts": s.action().attempts(),
                "lastError": s.action().last_error(),
                "compensation": compensable.then(|| json!({
                    "state": compensation_state(s, record.saga.is_terminal()),
                    "attempts": s.compensation().attempts(),
                    "lastError": s.compensation().last_error(),
                })),
            })
        })
        .collect();
    let history: Vec<Value> = history
        .iter()
        .map(|h| {
            let mut input = serde_json::to_value(&h.input).unwrap_or(Value::Null);
            if let Some(step) = input.get("step").and_then(Value::as_u64) {
                input["step"] = json!(step_name(step as u32));
            }
            if let Some(timer) = input.get_mut("timer") {
                if let Some(step) = timer.get("step").and_then(Value::as_u64) {
                    timer["step"] = json!(step_name(step as u32));
                }
            }
            json!({ "at": rfc3339(h.at.0), "input": input, "ignored": h.ignored.map(|i| i.to_string()) })
        })
        .collect();
    json!({
        "orderId": record.order_id,
        "sagaId": record.saga_id,
        "state": record.saga.status().to_string(),
        "reason": record.saga.reason(),
        "invalid": record.invalid,
        "userId": record.order.as_ref().map(|o| o.user_id.to_string()),
        "amountCents": record.order.as_ref().map(|o| o.amount_cents.0),
        "items": record.order.as_ref().map(|o| &o.lines),
        "paymentId": record.payment_id,
        "createdAt": rfc3339(record.created_at),
        "updatedAt": rfc3339(record.updated_at),
        "finishedAt": record.finished_at.map(rfc3339),
        "durationMs": record.finished_at.map(|f| f.saturating_sub(record.created_at)),
        "traceId": record.trace_id,
        "steps": steps,
        "history": history,
        "historyLength": record.history_len,
        "ignoredRecorded": record.ignored_recorded,
        "ignoredRecordedLimit": MAX_IGNORED_RECORDED,
    })
}

/// One word for where a step stands, compensation included.
fn step_state(s: &StepState) -> &'static str {
    match s.compensation().status() {
        CommandStatus::Succeeded => return "compensated",
        CommandStatus::Waiting | CommandStatus::BackingOff => return "compensating",
        CommandStatus::Exhausted => return "compensation_failed",
        _ => {}
    }
    command_state(s.action())
}

/// A compensation that has not been sent: `not_needed` when it never will be (the saga ended,
/// or there is nothing to undo), `standby` while it would run if the saga compensated.
fn compensation_state(s: &StepState, saga_ended: bool) -> &'static str {
    if s.compensation().status() != &CommandStatus::Idle {
        return command_state(s.compensation());
    }
    let nothing_to_undo = matches!(s.action().status(), CommandStatus::Idle | CommandStatus::Failed { .. });
    if saga_ended || nothing_to_undo {
        "not_needed"
    } else {
        "standby"
    }
}

fn command_state(p: &CommandProgress) -> &'static str {
    match p.status() {
        CommandStatus::Idle => "pending",
        CommandStatus::Waiting => "running",
        CommandStatus::BackingOff => "retrying",
        CommandStatus::Succeeded => "succeeded",
        CommandStatus::Failed { .. } => "failed",
        CommandStatus::Exhausted => "timed_out",
        CommandStatus::Abandoned => "abandoned",
    }
}
