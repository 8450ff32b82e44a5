//! Replies: what a participant answers to a command.

use serde::{Deserialize, Serialize};

use crate::ids::{OrderId, PaymentId, ProductId, SagaId, StepName};
use crate::text::Reason;
use crate::Phase;

/// A participant's answer, echoing the command's envelope so the orchestrator can match it to
/// the exact attempt it answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplyMessage {
    pub saga_id: SagaId,
    pub order_id: OrderId,
    pub step: StepName,
    pub phase: Phase,
    pub attempt: u32,
    pub idempotency_key: String,
    #[serde(flatten)]
    pub outcome: ReplyOutcome,
    /// Payment's reference for a charge, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<PaymentId>,
    /// Inventory's list of products it could not reserve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub missing_products: Vec<ProductId>,
}

impl ReplyMessage {
    /// The reply to `command`, echoing its envelope so the orchestrator can match the attempt.
    pub fn answering(command: &crate::CommandMessage, outcome: ReplyOutcome) -> Self {
        Self {
            saga_id: command.saga_id.clone(),
            order_id: command.order_id.clone(),
            step: command.step.clone(),
            phase: command.phase,
            attempt: command.attempt,
            idempotency_key: command.idempotency_key.clone(),
            outcome,
            payment_id: None,
            missing_products: Vec::new(),
        }
    }
}

/// Tagged by `outcome`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(tag = "outcome", rename_all = "camelCase")]
pub enum ReplyOutcome {
    /// Done, now or earlier (a repeated command gets its first answer again).
    Succeeded,
    /// A business refusal: the command had no effect and never will.
    Failed { reason: Reason },
    /// Could not be done now; the orchestrator may try again.
    Transient { reason: Reason },
}

/// The failure reasons participants give; they become the saga's `reason`.
pub mod reasons {
    pub const PAYMENT_DECLINED: &str = "payment_declined";
    pub const OUT_OF_STOCK: &str = "out_of_stock";
    /// An action that arrived after its own compensation: refused, so that nothing hangs.
    pub const ALREADY_COMPENSATED: &str = "already_compensated";
    /// A command a participant has no record of, sent before sagas it has forgotten ended: a
    /// late duplicate of a saga that is gone, refused so that it cannot act twice.
    pub const EXPIRED: &str = "expired";
    /// A command that parsed but cannot be right (see `InvalidCommand`); the reason says more.
    pub const INVALID_COMMAND: &str = "invalid_command";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_is_a_flat_tag() {
        let reply = ReplyMessage {
            saga_id: SagaId::parse("s").unwrap(),
            order_id: OrderId::parse("o").unwrap(),
            step: StepName::parse("inventory").unwrap(),
            phase: Phase::Action,
            attempt: 2,
            idempotency_key: "o/inventory/action".into(),
            outcome: ReplyOutcome::Failed { reason: reasons::OUT_OF_STOCK.into() },
            payment_id: None,
            missing_products: vec![ProductId::parse("abc").unwrap()],
        };
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(json["outcome"], "failed");
        assert_eq!(json["reason"], "out_of_stock");
        assert_eq!(json["missingProducts"][0], "abc");
        assert_eq!(serde_json::from_value::<ReplyMessage>(json).unwrap(), reply);
    }
}
