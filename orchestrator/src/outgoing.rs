//! What a saga's effects become on the bus: commands for participants and public events.

use std::str::FromStr;

use sagaflow_events::public::{InventoryStatus, PaymentStatus};
use sagaflow_events::{Participant, PublicEvent, Topology};
use sagaflow_runtime::outbox::OutboxMessage;
use sagaflow_runtime::telemetry::traceparent;
use sagaflow_saga::{Effect, SagaDefinition, SagaEvent};

use crate::order_saga::wire_command;
use crate::record::SagaRecord;

/// The outbox messages for one transition's effects. Timers are not messages: the store keeps
/// the saga's one armed timer in its own index.
pub fn messages(
    topology: &Topology,
    definition: &SagaDefinition,
    record: &SagaRecord,
    effects: &[Effect],
) -> Vec<OutboxMessage> {
    let mut out = Vec::new();
    let order_id = record.order_id.as_str();
    for effect in effects {
        match effect {
            Effect::Send { command } => {
                let Some(order) = &record.order else { continue };
                let Some((participant, wire)) = wire_command(order, command) else {
                    tracing::error!(order_id, command = command.command, "no wire form for a command");
                    continue;
                };
                let body = serde_json::to_string(&wire).expect("commands serialise");
                out.push(
                    OutboxMessage::new(
                        topology.commands_exchange(),
                        topology.command_routing_key(participant),
                        order_id.to_owned(),
                        &command.command,
                        body,
                    )
                    .with_traceparent(Some(traceparent(&record.trace_id))),
                );
            }
            Effect::Publish { event } => {
                let Some(public) = public_event(definition, record, event) else { continue };
                let body = serde_json::to_string(&public).expect("events serialise");
                out.push(
                    OutboxMessage::new(
                        topology.events_exchange(),
                        public.routing_key(),
                        order_id.to_owned(),
                        public.name(),
                        body,
                    )
                    .with_traceparent(Some(traceparent(&record.trace_id))),
                );
            }
            Effect::ArmTimer { .. } | Effect::Finished { .. } => {}
        }
    }
    out
}

/// The public event for a saga event, in the shapes of the published examples.
fn public_event(definition: &SagaDefinition, record: &SagaRecord, event: &SagaEvent) -> Option<PublicEvent> {
    let order_id = record.order_id.clone();
    let amount = record.order.as_ref().map(|o| o.amount_cents);
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
                payment_id: record.payment_id.clone(),
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
                payment_id: record.payment_id.clone(),
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
            reason: record.saga.reason.clone().unwrap_or_default(),
        },
        SagaEvent::CompensationStarted { .. } | SagaEvent::Resumed => return None,
    })
}
