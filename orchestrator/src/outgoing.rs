//! What a saga's effects become on the bus: commands for participants and public events, and
//! the message that lets participants forget sagas retention removed.

use std::str::FromStr;

use sagaflow_events::public::{InventoryStatus, PaymentStatus};
use sagaflow_events::{ForgetSagas, Forgotten, ForgottenSagas, Participant, PublicEvent, Topology};
use sagaflow_runtime::bus::{Message, Route};
use sagaflow_runtime::telemetry::TraceParent;
use sagaflow_saga::{Effect, SagaDefinition, SagaEvent};

use crate::order_saga::wire_command;
use crate::record::{Defined, SagaRecord};
use crate::saga_file::SagaFile;

/// The AMQP type of a [`ForgetSagas`] message on a participant's command queue.
pub const FORGET_SAGAS: &str = sagaflow_events::topology::kinds::FORGET_SAGAS;

/// The outbox messages for one transition's effects. Timers are not messages: the store keeps
/// the saga's one armed timer in its own index.
pub fn messages(
    topology: &Topology,
    definition: &SagaDefinition,
    record: &SagaRecord,
    effects: &[Effect],
    now: u64,
) -> Vec<Message> {
    let mut out = Vec::new();
    let order_id = record.key.as_str();
    let trace = TraceParent::in_trace(&record.trace_id).unwrap_or_else(|_| TraceParent::new_trace());
    for effect in effects {
        match effect {
            Effect::Send { command } => {
                let Some(order) = &record.order else { continue };
                let Some((participant, wire)) = wire_command(record, order, command, now) else {
                    tracing::error!(order_id, command = command.command, "no wire form for a command");
                    continue;
                };
                let route = Route {
                    exchange: topology.commands_exchange(),
                    key: topology.command_routing_key(participant),
                };
                let body = serde_json::to_vec(&wire).expect("commands serialise");
                out.push(
                    Message::json(route, order_id, &command.command, body)
                        .with_trace(&trace.child())
                        .batchable(),
                );
            }
            Effect::Publish { event } => {
                let Some(public) = public_event(definition, record, event) else { continue };
                let route = Route { exchange: topology.events_exchange(), key: public.routing_key() };
                let body = serde_json::to_vec(&public).expect("events serialise");
                out.push(
                    Message::json(route, order_id, public.name(), body)
                        .with_trace(&trace.child())
                        .skip_while_unbound(),
                );
            }
            Effect::ArmTimer { .. } | Effect::Finished { .. } => {}
        }
    }
    out
}

/// The outbox messages of a defined saga's transition: its commands, each to the queue of
/// the participant its step names, carrying what the file says from the saga's input and its
/// steps' results. A defined saga publishes no public events: those are the order saga's
/// contract.
pub fn defined_messages(
    topology: &Topology,
    file: &SagaFile,
    record: &SagaRecord,
    defined: &Defined,
    effects: &[Effect],
    now: u64,
) -> Vec<Message> {
    let trace = TraceParent::in_trace(&record.trace_id).unwrap_or_else(|_| TraceParent::new_trace());
    let mut out = Vec::new();
    for effect in effects {
        let Effect::Send { command } = effect else { continue };
        let Some(step) = file.step(&command.step_name) else {
            tracing::error!(saga = %record.key, step = command.step_name, "a step its file does not name");
            continue;
        };
        let (spec, phase) = match command.phase {
            sagaflow_saga::Phase::Action => (Some(&step.action), sagaflow_events::Phase::Action),
            sagaflow_saga::Phase::Compensation => {
                (step.compensation.as_ref(), sagaflow_events::Phase::Compensation)
            }
        };
        let Some(spec) = spec else { continue };
        // Bounded by construction (an input of at most 16 KiB and small results), so this
        // refusal is a defect to see in the log, not a message the broker would refuse.
        let payload = match spec.payload(&defined.input, &defined.results) {
            Ok(payload) => payload,
            Err(e) => {
                tracing::error!(saga = %record.key, error = %e, "a command's payload is too large; not sent");
                continue;
            }
        };
        let Ok(step_name) = sagaflow_events::StepName::parse(command.step_name.clone()) else { continue };
        let wire = sagaflow_events::SagaCommand {
            saga_id: record.saga_id.clone(),
            saga: defined.saga.clone(),
            id: defined.id.clone(),
            idempotency_key: sagaflow_events::CommandMessage::key_for(&record.saga_id, &step_name, phase),
            step: step_name,
            phase,
            attempt: command.attempt,
            sent_at: now,
            command: command.command.clone(),
            payload,
        };
        let route = Route { exchange: topology.commands_exchange(), key: step.participant.clone() };
        let body = serde_json::to_vec(&wire).expect("commands serialise");
        // Not batchable: a participant in another language reads one command per message.
        out.push(
            Message::json(route, record.key.as_str(), &command.command, body).with_trace(&trace.child()),
        );
    }
    out
}

/// Tells `participant` that the sagas listed finished before `finished_before` and are gone.
pub fn forget(
    topology: &Topology,
    participant: Participant,
    finished_before: u64,
    sagas: Vec<Forgotten>,
) -> Option<Message> {
    let sagas = ForgottenSagas::new(sagas)?;
    let route =
        Route { exchange: topology.commands_exchange(), key: topology.command_routing_key(participant) };
    let body = serde_json::to_vec(&ForgetSagas { finished_before, sagas }).expect("serialises");
    Some(Message::json(route, "", FORGET_SAGAS, body).batchable())
}

/// The participants a definition's steps talk to.
pub fn participants(definition: &SagaDefinition) -> impl Iterator<Item = Participant> + '_ {
    definition.steps().iter().filter_map(|s| Participant::from_str(&s.name).ok())
}

/// The public event for a saga event, in the shapes of the published examples.
fn public_event(definition: &SagaDefinition, record: &SagaRecord, event: &SagaEvent) -> Option<PublicEvent> {
    let order_id = record.key.order_id()?;
    let amount = record.order.as_ref().map(|o| o.amount_cents);
    let payment_id = record.payment_id.as_ref().map(|p| p.to_string());
    let participant = |step: u32| definition.step(step).and_then(|s| Participant::from_str(&s.name).ok());
    Some(match event {
        SagaEvent::Started => {
            let order = record.order.as_ref()?;
            let placed = order.to_placed();
            PublicEvent::OrderPlaced {
                order_id,
                user_id: placed.user_id,
                items: placed.items,
                amount_cents: Some(order.amount_cents),
            }
        }
        SagaEvent::StepSucceeded { step } => match participant(*step)? {
            Participant::Payment => PublicEvent::PaymentProcessed {
                order_id,
                payment_status: PaymentStatus::Confirmed,
                payment_id,
                amount_cents: amount,
            },
            Participant::Inventory => {
                PublicEvent::InventoryUpdated { order_id, status: InventoryStatus::Reserved }
            }
            Participant::Notification => PublicEvent::NotificationSent { order_id },
        },
        SagaEvent::StepFailed { step, .. } => match participant(*step)? {
            Participant::Payment => PublicEvent::PaymentProcessed {
                order_id,
                payment_status: PaymentStatus::Declined,
                payment_id: None,
                amount_cents: amount,
            },
            Participant::Inventory => {
                PublicEvent::InventoryUpdated { order_id, status: InventoryStatus::OutOfStock }
            }
            Participant::Notification => return None,
        },
        SagaEvent::StepCompensated { step } => match participant(*step)? {
            Participant::Payment => PublicEvent::PaymentProcessed {
                order_id,
                payment_status: PaymentStatus::Refunded,
                payment_id,
                amount_cents: amount,
            },
            Participant::Inventory => {
                PublicEvent::InventoryUpdated { order_id, status: InventoryStatus::Released }
            }
            Participant::Notification => return None,
        },
        SagaEvent::Completed => PublicEvent::OrderCompleted { order_id, amount_cents: amount },
        SagaEvent::Compensated { reason } => {
            PublicEvent::OrderCompensated { order_id, reason: reason.clone() }
        }
        SagaEvent::Stuck { step, .. } => PublicEvent::OrderStuck {
            order_id,
            step: definition.step(*step).map(|s| s.name.clone()).unwrap_or_default(),
            reason: record.saga.reason().unwrap_or_default().to_owned(),
        },
        SagaEvent::CompensationStarted { .. } | SagaEvent::Resumed => return None,
    })
}
