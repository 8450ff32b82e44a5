//! The order saga: the one place that knows which participant each step talks to, which
//! commands do and undo it, and how the core's abstract commands become wire messages.
//!
//! The saga core knows nothing of orders; this module is the bridge.

use std::str::FromStr;

use sagaflow_events::{CommandBody, CommandKind, CommandMessage, Order, Participant, Phase, StepName};
use sagaflow_saga::{Compensation, DefinitionError, Millis, RetryPolicy, SagaDefinition, StepDefinition};

/// The order of the steps, as given by `--steps payment,inventory,notification`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepOrder(Vec<Participant>);

impl Default for StepOrder {
    /// The order of the published example.
    fn default() -> Self {
        Self(vec![Participant::Payment, Participant::Inventory, Participant::Notification])
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum StepOrderError {
    #[error("unknown step {0:?}: the steps are payment, inventory and notification")]
    Unknown(String),
    #[error("step {0} is listed twice")]
    Repeated(Participant),
    #[error("step {0} is missing: every order needs payment, inventory and notification")]
    Missing(Participant),
    #[error(transparent)]
    Definition(#[from] DefinitionError),
}

impl FromStr for StepOrder {
    type Err = StepOrderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut steps = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let p = Participant::from_str(name).map_err(|_| StepOrderError::Unknown(name.to_owned()))?;
            if steps.contains(&p) {
                return Err(StepOrderError::Repeated(p));
            }
            steps.push(p);
        }
        for p in [Participant::Payment, Participant::Inventory, Participant::Notification] {
            if !steps.contains(&p) {
                return Err(StepOrderError::Missing(p));
            }
        }
        // Checks the rest (notification, which cannot be undone, must come last).
        let order = Self(steps);
        order.definition(&RetrySettings::default())?;
        Ok(order)
    }
}

impl std::fmt::Display for StepOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|p| p.into()).collect();
        f.write_str(&names.join(","))
    }
}

/// How hard the orchestrator tries before it gives up on a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySettings {
    /// Wait for one reply this long before sending the command again.
    pub attempt_timeout: Millis,
    /// Attempts of an action (payment, inventory) before its outcome counts as unknown and the
    /// saga compensates with reason `timed_out`.
    pub action_attempts: u32,
    /// Attempts of a compensation before the saga is `stuck` and waits for an operator.
    pub compensation_attempts: u32,
    pub backoff_initial: Millis,
    pub backoff_max: Millis,
}

impl Default for RetrySettings {
    fn default() -> Self {
        Self {
            attempt_timeout: Millis(5_000),
            action_attempts: 4,
            compensation_attempts: 8,
            backoff_initial: Millis(250),
            backoff_max: Millis(10_000),
        }
    }
}

impl StepOrder {
    pub fn participants(&self) -> &[Participant] {
        &self.0
    }

    /// The saga definition for this order of steps.
    pub fn definition(&self, retry: &RetrySettings) -> Result<SagaDefinition, DefinitionError> {
        let policy = |attempts: u32| RetryPolicy {
            attempt_timeout: retry.attempt_timeout,
            max_attempts: Some(attempts),
            backoff_initial: retry.backoff_initial,
            backoff_max: retry.backoff_max,
        };
        let steps = self
            .0
            .iter()
            .map(|&p| {
                let (action, undo) = commands_of(p);
                StepDefinition {
                    name: p.to_string(),
                    action: action.to_string(),
                    retry: policy(retry.action_attempts),
                    compensation: undo.map(|c| Compensation {
                        command: c.to_string(),
                        retry: policy(retry.compensation_attempts),
                    }),
                }
            })
            .collect();
        SagaDefinition::new(steps)
    }
}

/// The action and the compensation of each participant's step.
pub fn commands_of(p: Participant) -> (CommandKind, Option<CommandKind>) {
    match p {
        Participant::Payment => (CommandKind::ChargePayment, Some(CommandKind::RefundPayment)),
        Participant::Inventory => (CommandKind::ReserveStock, Some(CommandKind::ReleaseStock)),
        // An email cannot be unsent: notification is the point of no return.
        Participant::Notification => (CommandKind::SendNotification, None),
    }
}

/// Turns the core's abstract command into the wire message for its participant, sent at `now`.
/// `None` if the command names something this module does not know, which a valid definition
/// never does.
pub fn wire_command(
    record: &crate::record::SagaRecord,
    order: &Order,
    command: &sagaflow_saga::Command,
    now: u64,
) -> Option<(Participant, CommandMessage)> {
    let participant = Participant::from_str(&command.step_name).ok()?;
    let kind = CommandKind::from_str(&command.command).ok()?;
    let body = match kind {
        CommandKind::ChargePayment => {
            CommandBody::ChargePayment { user_id: order.user_id.clone(), amount_cents: order.amount_cents }
        }
        CommandKind::RefundPayment => CommandBody::RefundPayment { amount_cents: order.amount_cents },
        CommandKind::ReserveStock => CommandBody::ReserveStock { items: order.lines.clone() },
        CommandKind::ReleaseStock => CommandBody::ReleaseStock { items: order.lines.clone() },
        CommandKind::SendNotification => CommandBody::SendNotification {
            user_id: order.user_id.clone(),
            amount_cents: order.amount_cents,
            items: order.lines.clone(),
        },
    };
    let phase = match command.phase {
        sagaflow_saga::Phase::Action => Phase::Action,
        sagaflow_saga::Phase::Compensation => Phase::Compensation,
    };
    let step = StepName::parse(command.step_name.clone()).ok()?;
    Some((
        participant,
        CommandMessage {
            saga_id: record.saga_id.clone(),
            order_id: order.order_id.clone(),
            idempotency_key: CommandMessage::key_for(&record.saga_id, &step, phase),
            step,
            phase,
            attempt: command.attempt,
            sent_at: now,
            body,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_documented_step_orders_parse() {
        for text in ["payment,inventory,notification", "inventory,payment,notification"] {
            let order: StepOrder = text.parse().unwrap();
            assert_eq!(order.to_string(), text);
            assert_eq!(order.definition(&RetrySettings::default()).unwrap().len(), 3);
        }
    }

    #[test]
    fn bad_step_orders_say_why() {
        assert!(matches!("payment,inventory".parse::<StepOrder>(), Err(StepOrderError::Missing(_))));
        assert!(matches!("payment,payment".parse::<StepOrder>(), Err(StepOrderError::Repeated(_))));
        assert!(matches!("shipping".parse::<StepOrder>(), Err(StepOrderError::Unknown(_))));
        assert!(matches!(
            "notification,payment,inventory".parse::<StepOrder>(),
            Err(StepOrderError::Definition(DefinitionError::CompensableAfterPointOfNoReturn { .. }))
        ));
    }
}
