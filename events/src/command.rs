//! Commands: what the orchestrator asks a participant to do, and the message that lets a
//! participant forget sagas that are gone.
//!
//! Participants read commands as untrusted input: the types below cannot hold a repeated line,
//! an overflowing total, a bad id or an unbounded reason, and [`CommandMessage::check_for`]
//! refuses what a participant can see is not for it.

use serde::{Deserialize, Serialize};

use crate::ids::{Cents, OrderId, SagaId, StepName, UserId};
use crate::order::OrderLines;
use crate::topology::Participant;
use crate::Phase;

/// A command with its envelope. The envelope says which saga, step, phase and attempt it
/// belongs to, so that the reply can be matched to exactly that attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CommandMessage {
    pub saga_id: SagaId,
    pub order_id: OrderId,
    /// The step's name in the saga definition, such as `payment`.
    pub step: StepName,
    pub phase: Phase,
    pub attempt: u32,
    /// The same for every retry of one action, different for its compensation: the participant
    /// applies each key at most once. Always `{sagaId}/{step}/{phase}` (see `key_for`).
    pub idempotency_key: String,
    /// When the orchestrator committed the command, in ms since the epoch. A participant that
    /// has forgotten finished sagas refuses a command it has no record of if it was sent
    /// before they finished: it can only be a late duplicate of a saga that is gone.
    #[serde(default)]
    pub sent_at: u64,
    #[serde(flatten)]
    pub body: CommandBody,
}

/// The business part of a command, tagged by `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "command", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum CommandBody {
    ChargePayment { user_id: UserId, amount_cents: Cents },
    RefundPayment { amount_cents: Cents },
    ReserveStock { items: OrderLines },
    ReleaseStock { items: OrderLines },
    SendNotification { user_id: UserId, amount_cents: Cents, items: OrderLines },
}

/// The command names, for definitions, metrics and logs.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[strum(serialize_all = "camelCase")]
pub enum CommandKind {
    ChargePayment,
    RefundPayment,
    ReserveStock,
    ReleaseStock,
    SendNotification,
}

impl CommandKind {
    pub fn participant(self) -> Participant {
        match self {
            Self::ChargePayment | Self::RefundPayment => Participant::Payment,
            Self::ReserveStock | Self::ReleaseStock => Participant::Inventory,
            Self::SendNotification => Participant::Notification,
        }
    }

    pub fn phase(self) -> Phase {
        match self {
            Self::RefundPayment | Self::ReleaseStock => Phase::Compensation,
            _ => Phase::Action,
        }
    }
}

impl CommandBody {
    pub fn kind(&self) -> CommandKind {
        match self {
            Self::ChargePayment { .. } => CommandKind::ChargePayment,
            Self::RefundPayment { .. } => CommandKind::RefundPayment,
            Self::ReserveStock { .. } => CommandKind::ReserveStock,
            Self::ReleaseStock { .. } => CommandKind::ReleaseStock,
            Self::SendNotification { .. } => CommandKind::SendNotification,
        }
    }
}

/// Why a participant refuses a command that parsed but cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidCommand {
    #[error("{kind} is not a command for {participant}")]
    NotFor { kind: CommandKind, participant: Participant },
    #[error("{kind} is not a command of the {phase} phase")]
    WrongPhase { kind: CommandKind, phase: Phase },
    #[error("{participant} serves the step named {participant}, not {step}")]
    WrongStep { step: StepName, participant: Participant },
    #[error("the idempotency key does not match the saga, step and phase")]
    KeyMismatch,
    #[error("attempts are counted from 1")]
    ZeroAttempt,
    #[error("the amount {amount} does not match the lines' total {total}")]
    AmountMismatch { amount: Cents, total: Cents },
}

impl CommandMessage {
    /// The key every attempt of one saga's step and phase carries.
    pub fn key_for(saga: &SagaId, step: &StepName, phase: Phase) -> String {
        format!("{saga}/{step}/{phase}")
    }

    /// What a participant can check on its own before it touches its books: the command is
    /// for it and for its phase, its envelope is consistent, and its amounts add up.
    pub fn check_for(&self, participant: Participant) -> Result<(), InvalidCommand> {
        let kind = self.body.kind();
        if kind.participant() != participant {
            return Err(InvalidCommand::NotFor { kind, participant });
        }
        if kind.phase() != self.phase {
            return Err(InvalidCommand::WrongPhase { kind, phase: self.phase });
        }
        if self.step.as_str() != <&str>::from(participant) {
            return Err(InvalidCommand::WrongStep { step: self.step.clone(), participant });
        }
        if self.idempotency_key != Self::key_for(&self.saga_id, &self.step, self.phase) {
            return Err(InvalidCommand::KeyMismatch);
        }
        if self.attempt == 0 {
            return Err(InvalidCommand::ZeroAttempt);
        }
        if let CommandBody::SendNotification { amount_cents, items, .. } = &self.body {
            if *amount_cents != items.total() {
                return Err(InvalidCommand::AmountMismatch { amount: *amount_cents, total: items.total() });
            }
        }
        Ok(())
    }
}

/// Sent by the orchestrator to every participant when retention removed finished sagas: what a
/// participant recorded for them (barrier records, books) may go too, so that participants'
/// stores follow the same retention window as the orchestrator's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForgetSagas {
    /// Every saga listed finished, and every command of theirs was sent, at or before this
    /// time (ms since the epoch).
    pub finished_before: u64,
    pub sagas: ForgottenSagas,
}

/// One saga to forget, and how it ended (inventory sells a reservation a completed order left).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Forgotten {
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub completed: bool,
}

/// At most [`MAX_FORGOTTEN`] sagas, so one message stays small.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Forgotten>", into = "Vec<Forgotten>")]
pub struct ForgottenSagas(Vec<Forgotten>);

/// The most sagas one [`ForgetSagas`] names.
pub const MAX_FORGOTTEN: usize = 5_000;

impl ForgottenSagas {
    /// `None` for more than [`MAX_FORGOTTEN`] sagas.
    pub fn new(sagas: Vec<Forgotten>) -> Option<Self> {
        (sagas.len() <= MAX_FORGOTTEN).then_some(Self(sagas))
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Forgotten> {
        self.0.iter()
    }
}

impl TryFrom<Vec<Forgotten>> for ForgottenSagas {
    type Error = String;
    fn try_from(sagas: Vec<Forgotten>) -> Result<Self, String> {
        let count = sagas.len();
        Self::new(sagas).ok_or_else(|| format!("at most {MAX_FORGOTTEN} sagas per message, not {count}"))
    }
}

impl schemars::JsonSchema for ForgottenSagas {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ForgottenSagas".into()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "array",
            "items": generator.subschema_for::<Forgotten>(),
            "maxItems": MAX_FORGOTTEN,
        })
    }
}

impl From<ForgottenSagas> for Vec<Forgotten> {
    fn from(sagas: ForgottenSagas) -> Self {
        sagas.0
    }
}

#[cfg(test)]
mod tests {
    use strum::IntoEnumIterator;

    use super::*;

    fn charge() -> CommandMessage {
        let saga_id = SagaId::parse("s-1").unwrap();
        let step = StepName::parse("payment").unwrap();
        CommandMessage {
            idempotency_key: CommandMessage::key_for(&saga_id, &step, Phase::Action),
            saga_id,
            order_id: OrderId::parse("o-1").unwrap(),
            step,
            phase: Phase::Action,
            attempt: 1,
            sent_at: 1_000,
            body: CommandBody::ChargePayment {
                user_id: UserId::parse("u").unwrap(),
                amount_cents: Cents(1250),
            },
        }
    }

    #[test]
    fn command_names_on_the_wire_match_the_kind_names() {
        let msg = charge();
        let json: serde_json::Value = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["command"], "chargePayment");
        assert_eq!(json["amountCents"], 1250);
        assert_eq!(json["idempotencyKey"], "s-1/payment/action");
        assert_eq!(json["sentAt"], 1_000);
        assert_eq!(json["command"], CommandKind::ChargePayment.to_string());
        let back: CommandMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, msg);
        for kind in CommandKind::iter() {
            let name: &'static str = kind.into();
            assert_eq!(name.parse::<CommandKind>().unwrap(), kind);
        }
    }

    #[test]
    fn participants_refuse_what_is_not_theirs_or_does_not_add_up() {
        assert_eq!(charge().check_for(Participant::Payment), Ok(()));
        assert!(matches!(charge().check_for(Participant::Inventory), Err(InvalidCommand::NotFor { .. })));
        let mut wrong_phase = charge();
        wrong_phase.phase = Phase::Compensation;
        assert!(matches!(
            wrong_phase.check_for(Participant::Payment),
            Err(InvalidCommand::WrongPhase { .. })
        ));
        let mut forged_key = charge();
        forged_key.idempotency_key = "s-2/payment/action".into();
        assert_eq!(forged_key.check_for(Participant::Payment), Err(InvalidCommand::KeyMismatch));
        let mut other_step = charge();
        other_step.step = StepName::parse("payment2").unwrap();
        other_step.idempotency_key =
            CommandMessage::key_for(&other_step.saga_id, &other_step.step, Phase::Action);
        assert!(matches!(other_step.check_for(Participant::Payment), Err(InvalidCommand::WrongStep { .. })));
        let mut zero = charge();
        zero.attempt = 0;
        assert_eq!(zero.check_for(Participant::Payment), Err(InvalidCommand::ZeroAttempt));
    }

    #[test]
    fn a_forget_message_is_bounded() {
        let one = Forgotten {
            saga_id: SagaId::generate(),
            order_id: OrderId::parse("o").unwrap(),
            completed: true,
        };
        assert!(ForgottenSagas::new(vec![one.clone(); MAX_FORGOTTEN]).is_some());
        let too_many = serde_json::to_string(&vec![one; MAX_FORGOTTEN + 1]).unwrap();
        assert!(serde_json::from_str::<ForgottenSagas>(&too_many).is_err());
    }
}
