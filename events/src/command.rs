//! Commands: what the orchestrator asks a participant to do.

use serde::{Deserialize, Serialize};

use crate::ids::{Cents, OrderId, UserId};
use crate::order::OrderLine;
use crate::topology::Participant;
use crate::Phase;

/// A command with its envelope. The envelope says which saga, step, phase and attempt it
/// belongs to, so that the reply can be matched to exactly that attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CommandMessage {
    pub saga_id: String,
    pub order_id: OrderId,
    /// The step's name in the saga definition, such as `payment`.
    pub step: String,
    pub phase: Phase,
    pub attempt: u32,
    /// The same for every retry of one action, different for its compensation: the participant
    /// applies each key at most once.
    pub idempotency_key: String,
    #[serde(flatten)]
    pub body: CommandBody,
}

/// The business part of a command, tagged by `command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "camelCase", rename_all_fields = "camelCase")]
pub enum CommandBody {
    ChargePayment { user_id: UserId, amount_cents: Cents },
    RefundPayment { amount_cents: Cents },
    ReserveStock { items: Vec<OrderLine> },
    ReleaseStock { items: Vec<OrderLine> },
    SendNotification { user_id: UserId, amount_cents: Cents, items: Vec<OrderLine> },
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

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    #[test]
    fn command_names_on_the_wire_match_the_kind_names() {
        let msg = CommandMessage {
            saga_id: "o-1".into(),
            order_id: OrderId::parse("o-1").unwrap(),
            step: "payment".into(),
            phase: Phase::Action,
            attempt: 1,
            idempotency_key: "o-1/payment/action".into(),
            body: CommandBody::ChargePayment {
                user_id: UserId::parse("u").unwrap(),
                amount_cents: Cents(1250),
            },
        };
        let json: serde_json::Value = serde_json::to_value(&msg).unwrap();
        assert_eq!(json["command"], "chargePayment");
        assert_eq!(json["amountCents"], 1250);
        assert_eq!(json["idempotencyKey"], "o-1/payment/action");
        assert_eq!(json["command"], CommandKind::ChargePayment.to_string());
        let back: CommandMessage = serde_json::from_value(json).unwrap();
        assert_eq!(back, msg);
        for kind in CommandKind::iter() {
            let name: &'static str = kind.into();
            assert_eq!(name.parse::<CommandKind>().unwrap(), kind);
        }
    }
}
