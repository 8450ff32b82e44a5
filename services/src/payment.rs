//! Payment: a ledger of charges and refunds, one entry per saga. It declines by rules that are
//! configuration, and, for demos, at random with a seed.
//!
//! **Invariant: for every saga, `refunded ∈ {0, charged}`, and `charged` is set once, by a
//! charge, to that charge's amount.** A refund returns exactly what was charged (from the
//! ledger, not from the command), so money can neither be created nor wrap around whatever a
//! command says; a refund whose amount disagrees with the charge is refused.

use sagaflow_events::reply::reasons::PAYMENT_DECLINED;
use sagaflow_events::{
    CommandBody, CommandMessage, Forgotten, OrderId, Participant, PaymentId, ReplyOutcome,
};
use serde::{Deserialize, Serialize};

use crate::barrier::Answer;
use crate::config::draw;
use crate::domain::{abort, get_json, put_json, scan_json, Books, Domain, DomainError, TxResult};

/// Money for one saga. `refunded` is 0 or `charged`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ledger {
    pub order_id: OrderId,
    pub charged_cents: u64,
    pub refunded_cents: u64,
    pub payment_id: PaymentId,
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

fn key(saga_id: &str) -> String {
    format!("ledger/{saga_id}")
}

impl Domain for Payment {
    fn participant(&self) -> Participant {
        Participant::Payment
    }

    fn act(&self, books: &Books<'_>, command: &CommandMessage) -> TxResult<Answer> {
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
        let key = key(command.saga_id.as_str());
        // The barrier lets one charge per saga through; a ledger already here means the books
        // and the barrier disagree, and charging again would take the money twice.
        if get_json::<Ledger>(books, &key)?.is_some() {
            return abort(DomainError::Inconsistent(format!("saga {} is charged already", command.saga_id)));
        }
        let payment_id = PaymentId::parse(format!("pay-{}", command.saga_id))
            .or_else(|e| abort(DomainError::Inconsistent(e.to_string())))?;
        let ledger = Ledger {
            order_id: command.order_id.clone(),
            charged_cents: amount_cents.0,
            refunded_cents: 0,
            payment_id: payment_id.clone(),
        };
        put_json(books, &key, &ledger);
        Ok(Answer {
            outcome: ReplyOutcome::Succeeded,
            payment_id: Some(payment_id),
            missing_products: Vec::new(),
        })
    }

    fn undo(&self, books: &Books<'_>, command: &CommandMessage, action_happened: bool) -> TxResult<()> {
        if !action_happened {
            return Ok(());
        }
        let key = key(command.saga_id.as_str());
        let Some(mut ledger) = get_json::<Ledger>(books, &key)? else {
            return abort(DomainError::Inconsistent(format!(
                "no charge of saga {} to refund",
                command.saga_id
            )));
        };
        if let CommandBody::RefundPayment { amount_cents } = &command.body {
            if amount_cents.0 != ledger.charged_cents {
                return abort(DomainError::Inconsistent(format!(
                    "a refund of {amount_cents} for a charge of {}",
                    sagaflow_events::Cents(ledger.charged_cents)
                )));
            }
        }
        ledger.refunded_cents = ledger.charged_cents;
        put_json(books, &key, &ledger);
        Ok(())
    }

    fn forget(&self, books: &Books<'_>, saga: &Forgotten) -> TxResult<()> {
        books.remove(&key(saga.saga_id.as_str()));
        Ok(())
    }

    fn view(&self, books: &sled::Tree) -> serde_json::Value {
        let payments: Vec<serde_json::Value> = scan_json::<Ledger>(books, "ledger/")
            .into_iter()
            .map(|(saga_id, l)| {
                serde_json::json!({
                    "orderId": l.order_id,
                    "sagaId": saga_id,
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
