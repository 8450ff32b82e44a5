//! Payment: a ledger of charges and refunds per order. It declines by rules that are
//! configuration, and, for demos, at random with a seed.

use sagaflow_events::reply::reasons::PAYMENT_DECLINED;
use sagaflow_events::{CommandBody, CommandMessage, Participant, ReplyOutcome};
use serde::{Deserialize, Serialize};
use sled::transaction::TransactionalTree;

use crate::barrier::Answer;
use crate::config::draw;
use crate::domain::{get_json, put_json, scan_json, Domain, TxResult};

/// Money per order. A refund always returns exactly what was charged, so the net is either
/// nothing or the order's amount.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub charged_cents: u64,
    pub refunded_cents: u64,
    pub payment_id: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct Payment {
    /// Decline orders above this amount.
    pub decline_over_cents: Option<u64>,
    /// Decline these users.
    pub deny_users: Vec<String>,
    /// Decline this share of orders at random (0 to 1), seeded by `seed`.
    pub decline_rate: f64,
    pub seed: u64,
}

impl Domain for Payment {
    fn participant(&self) -> Participant {
        Participant::Payment
    }

    fn act(&self, state: &TransactionalTree, command: &CommandMessage) -> TxResult<Answer> {
        let CommandBody::ChargePayment { user_id, amount_cents } = &command.body else {
            return Ok(Answer::refused("not a charge"));
        };
        let over_limit = self.decline_over_cents.is_some_and(|limit| amount_cents.0 > limit);
        let denied = self.deny_users.iter().any(|u| u == user_id.as_str());
        let unlucky =
            self.decline_rate > 0.0 && draw(self.seed, command.order_id.as_str(), 0xD0) < self.decline_rate;
        if over_limit || denied || unlucky {
            return Ok(Answer::refused(PAYMENT_DECLINED));
        }
        let key = format!("ledger/{}", command.order_id);
        let mut ledger: Ledger = get_json(state, &key)?.unwrap_or_default();
        ledger.charged_cents += amount_cents.0;
        let payment_id = format!("pay-{}", command.order_id);
        ledger.payment_id = Some(payment_id.clone());
        put_json(state, &key, &ledger)?;
        Ok(Answer {
            outcome: ReplyOutcome::Succeeded,
            payment_id: Some(payment_id),
            missing_products: Vec::new(),
        })
    }

    fn undo(
        &self,
        state: &TransactionalTree,
        command: &CommandMessage,
        action_happened: bool,
    ) -> TxResult<()> {
        if !action_happened {
            return Ok(());
        }
        let key = format!("ledger/{}", command.order_id);
        let mut ledger: Ledger = get_json(state, &key)?.unwrap_or_default();
        ledger.refunded_cents = ledger.charged_cents;
        put_json(state, &key, &ledger)
    }

    fn view(&self, state: &sled::Tree) -> serde_json::Value {
        let payments: Vec<serde_json::Value> = scan_json::<Ledger>(state, "ledger/")
            .into_iter()
            .map(|(order_id, l)| {
                serde_json::json!({
                    "orderId": order_id,
                    "chargedCents": l.charged_cents,
                    "refundedCents": l.refunded_cents,
                    "paymentId": l.payment_id,
                })
            })
            .collect();
        serde_json::json!({ "payments": payments })
    }

    fn path(&self) -> &'static str {
        "/payments"
    }
}
