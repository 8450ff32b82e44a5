//! The order saga: the one place that knows which participant each step talks to, which
//! commands do and undo it, and how the core's abstract commands become wire messages.
//!
//! The saga core knows nothing of orders; this module is the bridge.

use std::str::FromStr;

use sagaflow_events::{CommandBody, CommandKind, CommandMessage, Order, Participant, Phase, StepName};
use sagaflow_saga::{Compensation, DefinitionError, Millis, RetryPolicy, SagaDefinition, StepDefinition};

use crate::saga_file::{CommandSpec, Rule, SagaFile, SagaFileError};

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
        let overrides = Overrides { steps: Some(order.clone()), ..Overrides::default() };
        match definition(&SagaFile::order(), &overrides) {
            Err(SagaFileError { rule: Rule::Definition(e), .. }) => Err(e.into()),
            _ => Ok(order),
        }
    }
}

impl std::fmt::Display for StepOrder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.0.iter().map(|p| p.into()).collect();
        f.write_str(&names.join(","))
    }
}

/// What the flags say about the order saga, each `None` when not given; what is given
/// overrides the definition file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    pub steps: Option<StepOrder>,
    /// Wait for one reply this long before sending the command again.
    pub attempt_timeout: Option<Millis>,
    /// Attempts of an action before its outcome counts as unknown (reason `timed_out`).
    pub action_attempts: Option<u32>,
    /// Attempts of a compensation before the saga is `stuck`.
    pub compensation_attempts: Option<u32>,
    pub backoff_initial: Option<Millis>,
    pub backoff_max: Option<Millis>,
}

impl Overrides {
    fn apply(&self, retry: &mut RetryPolicy, attempts: Option<u32>) {
        if let Some(t) = self.attempt_timeout {
            retry.attempt_timeout = t;
        }
        if let Some(n) = attempts {
            retry.max_attempts = Some(n.max(1));
        }
        if let Some(b) = self.backoff_initial {
            retry.backoff_initial = b;
        }
        if let Some(b) = self.backoff_max {
            retry.backoff_max = b;
        }
        retry.backoff_max = retry.backoff_max.max(retry.backoff_initial);
    }
}

/// Why a file that names the order saga cannot be it: the order saga's participants are
/// sagaflow's own services, whose commands are typed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OrderRule {
    #[error("the order saga's participants are payment, inventory and notification, not {0:?}")]
    NotAParticipant(String),
    #[error("in the order saga a step is named after its participant ({0})")]
    NamedOtherwise(Participant),
    #[error("{participant}'s {what} is {expected}, not {got:?}")]
    WrongCommand { participant: Participant, what: &'static str, expected: String, got: String },
    #[error("{0} carries exactly {1:?} (the fields its typed command has)")]
    Carries(CommandKind, Vec<String>),
    #[error("the order saga needs a {0} step")]
    Missing(Participant),
}

/// The order saga's definition: `file` (sagas/order.toml unless a file names `order`),
/// checked against the typed commands, with the flags' overrides applied.
pub fn definition(file: &SagaFile, overrides: &Overrides) -> Result<SagaDefinition, SagaFileError> {
    let mut steps = Vec::with_capacity(file.steps.len());
    for step in &file.steps {
        let refuse = |rule| file.refuse(Some(&step.name), Rule::OrderSaga(rule));
        let participant = Participant::from_str(&step.participant)
            .map_err(|_| refuse(OrderRule::NotAParticipant(step.participant.clone())))?;
        if step.name != step.participant {
            return Err(refuse(OrderRule::NamedOtherwise(participant)));
        }
        let (action, undo) = commands_of(participant);
        check_command(participant, "action", action, Some(&step.action)).map_err(refuse)?;
        match undo {
            Some(undo) => check_command(participant, "compensation", undo, step.compensation.as_ref())
                .map_err(refuse)?,
            None if step.compensation.is_some() => {
                return Err(refuse(OrderRule::WrongCommand {
                    participant,
                    what: "compensation",
                    expected: "none".into(),
                    got: step.compensation.as_ref().map(|c| c.command.clone()).unwrap_or_default(),
                }))
            }
            None => {}
        }
        steps.push((participant, step));
    }
    for p in [Participant::Payment, Participant::Inventory, Participant::Notification] {
        if !steps.iter().any(|(q, _)| *q == p) {
            return Err(file.refuse(None, Rule::OrderSaga(OrderRule::Missing(p))));
        }
    }
    if let Some(order) = &overrides.steps {
        steps.sort_by_key(|(p, _)| order.0.iter().position(|q| q == p));
    }
    let steps = steps
        .into_iter()
        .map(|(_, s)| {
            let mut action = s.action.retry.clone();
            overrides.apply(&mut action, overrides.action_attempts);
            StepDefinition {
                name: s.name.clone(),
                action: s.action.command.clone(),
                retry: action,
                compensation: s.compensation.as_ref().map(|c| {
                    let mut retry = c.retry.clone();
                    overrides.apply(&mut retry, overrides.compensation_attempts);
                    Compensation { command: c.command.clone(), retry }
                }),
            }
        })
        .collect();
    SagaDefinition::new(steps).map_err(|e| file.refuse_definition(e))
}

/// The label of the order saga as shipped (`sagas/order.toml`).
pub fn default_label() -> crate::store::DefinitionLabel {
    let file = SagaFile::order();
    crate::store::DefinitionLabel { name: file.name, version: file.version }
}

/// The definition every saga gets when nothing is configured: `sagas/order.toml` as shipped.
pub fn default_definition() -> SagaDefinition {
    definition(&SagaFile::order(), &Overrides::default())
        .expect("sagas/order.toml is the order saga (tested)")
}

fn check_command(
    participant: Participant,
    what: &'static str,
    expected: CommandKind,
    got: Option<&CommandSpec>,
) -> Result<(), OrderRule> {
    let name = got.map(|c| c.command.as_str()).unwrap_or_default();
    if name != <&str>::from(expected) {
        return Err(OrderRule::WrongCommand {
            participant,
            what,
            expected: expected.to_string(),
            got: name.to_owned(),
        });
    }
    let carries = carried_fields(expected);
    if got.is_some_and(|c| c.carries != carries) {
        return Err(OrderRule::Carries(expected, carries));
    }
    Ok(())
}

/// What each typed command carries from the order, as a definition file writes it.
pub fn carried_fields(kind: CommandKind) -> Vec<String> {
    let fields: &[&str] = match kind {
        CommandKind::ChargePayment => &["userId", "amountCents"],
        CommandKind::RefundPayment => &["amountCents"],
        CommandKind::ReserveStock | CommandKind::ReleaseStock => &["items"],
        CommandKind::SendNotification => &["userId", "amountCents", "items"],
    };
    fields.iter().map(|f| format!("input.{f}")).collect()
}

impl StepOrder {
    pub fn participants(&self) -> &[Participant] {
        &self.0
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
pub(crate) mod tests {
    use super::*;

    #[test]
    fn both_documented_step_orders_parse() {
        for text in ["payment,inventory,notification", "inventory,payment,notification"] {
            let order: StepOrder = text.parse().unwrap();
            assert_eq!(order.to_string(), text);
            let overrides = Overrides { steps: Some(order.clone()), ..Overrides::default() };
            let definition = definition(&SagaFile::order(), &overrides).unwrap();
            assert_eq!(
                definition.steps().iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(","),
                text
            );
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

    #[test]
    fn flags_override_the_file() {
        let overrides = Overrides {
            steps: Some("inventory,payment,notification".parse().unwrap()),
            attempt_timeout: Some(Millis(900)),
            action_attempts: Some(2),
            compensation_attempts: Some(0),
            backoff_initial: Some(Millis(20_000)),
            backoff_max: None,
        };
        let d = definition(&SagaFile::order(), &overrides).unwrap();
        assert_eq!(d.steps()[0].name, "inventory");
        let retry = &d.steps()[0].retry;
        assert_eq!((retry.attempt_timeout, retry.max_attempts), (Millis(900), Some(2)));
        // A backoff's max is never below its initial wait; attempts are at least one.
        assert_eq!(retry.backoff_max, Millis(20_000));
        assert_eq!(d.steps()[1].compensation.as_ref().unwrap().retry.max_attempts, Some(1));
        // What the flags leave alone, the file says.
        let d = definition(&SagaFile::order(), &Overrides::default()).unwrap();
        assert_eq!(d.steps()[1].compensation.as_ref().unwrap().retry.max_attempts, Some(8));
    }

    /// A file that names the order saga must be the order saga: its participants, commands and
    /// carried fields are typed. Each way of breaking that is refused, naming the step.
    #[test]
    fn a_file_naming_the_order_saga_must_keep_its_commands() {
        let cases = [
            ("participant = \"payment\"", "participant = \"billing\"", Some("payment"), "not \"billing\""),
            ("name = \"inventory\"", "name = \"stock\"", Some("stock"), "named after its participant"),
            ("\"chargePayment\"", "\"charge\"", Some("payment"), "action is chargePayment"),
            ("\"releaseStock\"", "\"releaseStocks\"", Some("inventory"), "compensation is releaseStock"),
            (
                "compensation = { command = \"releaseStock\", carries = [\"input.items\"] }\n",
                "",
                Some("inventory"),
                "compensation is releaseStock",
            ),
            (
                "action = { command = \"sendNotification\"",
                "compensation = { command = \"unsend\" }\naction = { command = \"sendNotification\"",
                Some("notification"),
                "compensation is none",
            ),
            ("[\"input.items\"] }\n\n#", "[\"input.lines\"] }\n\n#", Some("inventory"), "carries exactly"),
        ];
        for (from, to, step, rule) in cases {
            assert!(crate::saga_file::ORDER_SAGA.contains(from), "{from}");
            let text = crate::saga_file::ORDER_SAGA.replacen(from, to, 1);
            let file = SagaFile::parse(std::path::Path::new("order.toml"), &text).unwrap();
            let e = definition(&file, &Overrides::default()).unwrap_err();
            assert_eq!(e.step.as_deref(), step, "{e}");
            assert!(e.to_string().contains(rule), "{e} should say {rule:?}");
        }
        let no_mail = crate::saga_file::ORDER_SAGA.split("# An email").next().unwrap();
        let file = SagaFile::parse(std::path::Path::new("order.toml"), no_mail).unwrap();
        let e = definition(&file, &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("needs a notification step"), "{e}");
    }

    /// What a definition file says a command carries is what its wire form holds.
    #[test]
    fn carried_fields_are_the_wire_commands_fields() {
        use strum::IntoEnumIterator;
        let order = default_order();
        let definition = default_definition();
        let record = crate::record::tests::record_of(&order, &definition);
        for kind in CommandKind::iter() {
            let step = kind.participant().to_string();
            let phase = match kind.phase() {
                Phase::Action => sagaflow_saga::Phase::Action,
                Phase::Compensation => sagaflow_saga::Phase::Compensation,
            };
            let command = sagaflow_saga::Command {
                step: definition.index_of(&step).unwrap(),
                step_name: step,
                phase,
                command: kind.to_string(),
                attempt: 1,
                idempotency_key: String::new(),
            };
            let (_, wire) = wire_command(&record, &order, &command, 0).unwrap();
            let json = serde_json::to_value(&wire.body).unwrap();
            let mut fields: Vec<String> = json
                .as_object()
                .unwrap()
                .keys()
                .filter(|k| *k != "command")
                .map(|k| format!("input.{k}"))
                .collect();
            let mut carried = carried_fields(kind);
            fields.sort();
            carried.sort();
            assert_eq!(fields, carried, "{kind}");
        }
    }

    /// An order of two of product `abc`, with id `o-1`.
    pub(crate) fn default_order() -> Order {
        let lines = sagaflow_events::OrderLines::new(vec![sagaflow_events::OrderLine {
            product_id: sagaflow_events::ProductId::parse("abc").unwrap(),
            quantity: sagaflow_events::Quantity::new(2).unwrap(),
            unit_price_cents: sagaflow_events::Cents(100),
        }])
        .unwrap();
        Order {
            order_id: sagaflow_events::OrderId::parse("o-1").unwrap(),
            user_id: sagaflow_events::UserId::parse("u-1").unwrap(),
            amount_cents: lines.total(),
            lines,
        }
    }
}
