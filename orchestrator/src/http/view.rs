//! The HTTP API's answers ([`sagaflow_api`] types), built from stored records. The console
//! renders the same values, so the page and the JSON cannot disagree.

use sagaflow_api as api;
use sagaflow_runtime::rfc3339;
use sagaflow_saga::{
    CommandProgress, CommandStatus, HistoryEntry, Input, Outcome, Phase, SagaDefinition, Status, StepState,
    TimerKind,
};

use crate::record::{SagaRecord, MAX_IGNORED_RECORDED};

/// A saga's state as the API names it. `not_started` is never stored (a saga is created
/// started), so it reads as `running`.
pub fn state(status: Status) -> api::SagaState {
    match status {
        Status::NotStarted | Status::Running => api::SagaState::Running,
        Status::Compensating => api::SagaState::Compensating,
        Status::Completed => api::SagaState::Completed,
        Status::Compensated => api::SagaState::Compensated,
        Status::Stuck => api::SagaState::Stuck,
    }
}

pub fn phase(phase: Phase) -> api::Phase {
    match phase {
        Phase::Action => api::Phase::Action,
        Phase::Compensation => api::Phase::Compensation,
    }
}

/// One line of `GET /orders`.
pub fn summary(record: &SagaRecord) -> api::OrderSummary {
    api::OrderSummary {
        order_id: record.key.to_string(),
        saga: record.saga_name().to_owned(),
        saga_id: record.saga_id.to_string(),
        state: state(record.saga.status()),
        reason: record.saga.reason().map(str::to_owned),
        amount_cents: record.order.as_ref().map(|o| o.amount_cents.0),
        user_id: record.order.as_ref().map(|o| o.user_id.to_string()),
        created_at: rfc3339(record.created_at),
        updated_at: rfc3339(record.updated_at),
    }
}

pub fn accepted(record: &SagaRecord) -> api::Accepted {
    api::Accepted {
        order_id: record.key.to_string(),
        saga: record.saga_name().to_owned(),
        state: state(record.saga.status()),
    }
}

/// `GET /orders/{id}`: the saga with its steps, its compensation plan and its timeline.
pub fn detail(
    record: &SagaRecord,
    history: &[HistoryEntry],
    definition: Option<&SagaDefinition>,
    label: Option<&crate::store::DefinitionLabel>,
) -> api::OrderDetail {
    let step_name = |i: u32| {
        definition.and_then(|d| d.step(i)).map(|s| s.name.clone()).unwrap_or_else(|| format!("step{i}"))
    };
    let ended = record.saga.is_terminal();
    let steps: Vec<api::Step> = record
        .saga
        .steps()
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let compensable =
                definition.and_then(|d| d.step(i as u32)).is_some_and(|d| d.compensation.is_some());
            api::Step {
                name: step_name(i as u32),
                state: step_state(s, record.saga.status()),
                attempts: s.action().attempts(),
                last_error: error_of(s.action()),
                compensation: compensable.then(|| api::Compensation {
                    state: compensation_state(s, ended),
                    attempts: s.compensation().attempts(),
                    last_error: error_of(s.compensation()),
                }),
            }
        })
        .collect();
    // Reverse order: every step whose compensation runs, would run, or ran.
    let compensation_plan = steps
        .iter()
        .rev()
        .filter(|s| s.compensation.as_ref().is_some_and(|c| c.state != api::CompensationState::NotNeeded))
        .map(|s| s.name.clone())
        .collect();
    let history = history
        .iter()
        .map(|h| api::HistoryItem {
            at: rfc3339(h.at.0),
            input: history_input(&h.input, &step_name),
            ignored: h.ignored.map(|i| i.to_string()),
        })
        .collect();
    let order = record.order.as_ref();
    api::OrderDetail {
        order_id: record.key.to_string(),
        saga: record.saga_name().to_owned(),
        saga_id: record.saga_id.to_string(),
        state: state(record.saga.status()),
        reason: record.saga.reason().map(str::to_owned),
        invalid: record.invalid.as_ref().map(|r| r.to_string()),
        user_id: order.map(|o| o.user_id.to_string()),
        amount_cents: order.map(|o| o.amount_cents.0),
        items: order.map(|o| {
            o.lines
                .iter()
                .map(|l| api::Item {
                    product_id: l.product_id.to_string(),
                    quantity: l.quantity.get(),
                    unit_price_cents: l.unit_price_cents.0,
                })
                .collect()
        }),
        payment_id: record.payment_id.as_ref().map(|p| p.to_string()),
        created_at: rfc3339(record.created_at),
        updated_at: rfc3339(record.updated_at),
        finished_at: record.finished_at.map(rfc3339),
        duration_ms: record.finished_at.map(|f| f.saturating_sub(record.created_at)),
        definition: api::DefinitionRef {
            name: label.map(|l| l.name.clone()),
            version: label.map(|l| l.version),
            fingerprint: record.definition.clone(),
        },
        trace_id: record.trace_id.clone(),
        steps,
        compensation_plan,
        history,
        history_length: record.history_len,
        ignored_recorded: record.ignored_recorded,
        ignored_recorded_limit: MAX_IGNORED_RECORDED,
        input: record.defined.as_ref().map(|d| d.input.clone()),
        results: record.defined.as_ref().map(|d| d.results.clone()),
    }
}

fn history_input(input: &Input, step_name: &impl Fn(u32) -> String) -> api::HistoryInput {
    match input {
        Input::Start => api::HistoryInput::Start,
        Input::Retry => api::HistoryInput::Retry,
        Input::Cancel { reason } => api::HistoryInput::Cancel { reason: reason.clone() },
        Input::Reply { step, phase: p, attempt, outcome } => api::HistoryInput::Reply {
            step: step_name(*step),
            phase: phase(*p),
            attempt: *attempt,
            outcome: match outcome {
                Outcome::Success => api::Outcome::Success,
                Outcome::Failure { reason } => api::Outcome::Failure { reason: reason.clone() },
                Outcome::Transient { reason } => api::Outcome::Transient { reason: reason.clone() },
            },
        },
        Input::TimerFired { timer } => api::HistoryInput::TimerFired {
            timer: api::Timer {
                step: step_name(timer.step),
                phase: phase(timer.phase),
                attempt: timer.attempt,
                kind: match timer.kind {
                    TimerKind::AttemptTimeout => "attemptTimeout",
                    TimerKind::Backoff => "backoff",
                }
                .to_owned(),
            },
        },
    }
}

/// The last error of a command: a business failure's reason, or what the last failed attempt
/// said.
fn error_of(p: &CommandProgress) -> Option<String> {
    match p.status() {
        CommandStatus::Failed { reason } => Some(reason.clone()),
        _ => p.last_error().map(str::to_owned),
    }
}

/// One word for where a step stands, compensation included. An action never sent is
/// `pending` only while the saga may still send it; otherwise it is `skipped`.
fn step_state(s: &StepState, saga: Status) -> api::StepState {
    match s.compensation().status() {
        CommandStatus::Succeeded => return api::StepState::Compensated,
        CommandStatus::Waiting | CommandStatus::BackingOff => return api::StepState::Compensating,
        CommandStatus::Exhausted => return api::StepState::CompensationFailed,
        _ => {}
    }
    match s.action().status() {
        CommandStatus::Idle if matches!(saga, Status::Running | Status::NotStarted) => {
            api::StepState::Pending
        }
        CommandStatus::Idle => api::StepState::Skipped,
        CommandStatus::Waiting => api::StepState::Running,
        CommandStatus::BackingOff => api::StepState::Retrying,
        CommandStatus::Succeeded => api::StepState::Succeeded,
        CommandStatus::Failed { .. } => api::StepState::Failed,
        CommandStatus::Exhausted => api::StepState::Exhausted,
        CommandStatus::Abandoned => api::StepState::Abandoned,
    }
}

/// A compensation that has not been sent: `not_needed` when it never will be (the saga ended,
/// or there is nothing to undo), `standby` while it would run if the saga compensated.
fn compensation_state(s: &StepState, saga_ended: bool) -> api::CompensationState {
    let p: &CommandProgress = s.compensation();
    match p.status() {
        CommandStatus::Idle => {
            let nothing_to_undo =
                matches!(s.action().status(), CommandStatus::Idle | CommandStatus::Failed { .. });
            if saga_ended || nothing_to_undo {
                api::CompensationState::NotNeeded
            } else {
                api::CompensationState::Standby
            }
        }
        CommandStatus::Waiting => api::CompensationState::Running,
        CommandStatus::BackingOff => api::CompensationState::Retrying,
        CommandStatus::Succeeded => api::CompensationState::Succeeded,
        CommandStatus::Failed { .. } => api::CompensationState::Failed,
        CommandStatus::Exhausted => api::CompensationState::Exhausted,
        CommandStatus::Abandoned => api::CompensationState::Abandoned,
    }
}
