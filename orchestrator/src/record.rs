//! What the store keeps per saga: a compact record, rewritten when the saga moves, and its
//! history, appended under keys of its own ([`crate::store`]). A record's size does not grow
//! with the saga's past, and has a limit ([`MAX_RECORD_BYTES`]) that nothing it holds can pass.

use sagaflow_events::{Order, OrderId, PaymentId, Reason, SagaId};
use sagaflow_saga::Saga;
use serde::{Deserialize, Serialize};

/// The most bytes one stored record may take. The largest order (100 lines of 128-character
/// product ids) with every bounded text at its limit stays well below (see the test).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Ignored inputs recorded in a saga's history; later ones are only counted in the metrics, so
/// a flood of forged or duplicated replies costs nothing that grows.
pub const MAX_IGNORED_RECORDED: u32 = 32;

/// One saga with the order it runs and what operators need to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaRecord {
    pub order_id: OrderId,
    /// New for every saga: an order id placed again after retention is another saga.
    pub saga_id: SagaId,
    /// The state machine's state (its history is stored apart).
    pub saga: Saga,
    /// The validated order; `None` for an order that arrived invalid on the bus, whose saga
    /// ended `compensated` with reason `invalid_order` at once.
    pub order: Option<Order>,
    /// Why an invalid order was refused, for operators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<Reason>,
    /// The fingerprint of the definition the saga runs under. A saga keeps its definition even
    /// if the configured step order changes while it is in flight.
    pub definition: String,
    /// A hash of the order as placed: the same `orderId` with another body is a conflict.
    pub body_hash: String,
    /// Milliseconds since the epoch.
    pub created_at: u64,
    /// When the saga last moved.
    pub updated_at: u64,
    /// Position in the listing order (newest first); also names the saga's history keys.
    pub created_seq: u64,
    pub finished_at: Option<u64>,
    /// The W3C trace id shared by every message about this order.
    pub trace_id: String,
    /// Payment's reference for the charge, once known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment_id: Option<PaymentId>,
    /// When the command now awaited was sent, to measure step latency.
    #[serde(default)]
    pub command_sent_at: u64,
    /// History entries written so far: the next one's index.
    #[serde(default)]
    pub history_len: u32,
    /// Ignored inputs recorded in the history (at most [`MAX_IGNORED_RECORDED`]).
    #[serde(default)]
    pub ignored_recorded: u32,
}

impl SagaRecord {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("records serialise")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use sagaflow_events::{Cents, OrderLine, OrderLines, ProductId, Quantity, UserId};
    use sagaflow_saga::{Input, Outcome, Phase, Timestamp};

    use super::*;

    /// A fresh record of `order`'s saga.
    pub(crate) fn record_of(order: &Order, definition: &sagaflow_saga::SagaDefinition) -> SagaRecord {
        let saga_id = SagaId::generate();
        SagaRecord {
            order_id: order.order_id.clone(),
            saga: Saga::new(saga_id.as_str(), definition, 1),
            saga_id,
            order: Some(order.clone()),
            invalid: None,
            definition: definition.fingerprint(),
            body_hash: String::new(),
            created_at: 1,
            updated_at: 1,
            created_seq: 1,
            finished_at: None,
            trace_id: "0".repeat(32),
            payment_id: None,
            command_sent_at: 0,
            history_len: 0,
            ignored_recorded: 0,
        }
    }

    /// The largest record anything can make: every bounded field at its bound, and a saga that
    /// went through every step, compensation and failure with the longest reasons.
    #[test]
    fn the_largest_possible_record_fits_the_limit() {
        let long = |c: char| std::iter::repeat_n(c, 128).collect::<String>();
        let lines = (0..sagaflow_events::order::MAX_ITEMS)
            .map(|i| OrderLine {
                product_id: ProductId::parse(format!("{}{i:03}", &long('p')[..125])).unwrap(),
                quantity: Quantity::new(i64::from(u32::MAX)).unwrap(),
                unit_price_cents: Cents(1),
            })
            .collect();
        let lines = OrderLines::new(lines).unwrap();
        let order = Order {
            order_id: OrderId::parse(long('o')).unwrap(),
            user_id: UserId::parse(long('u')).unwrap(),
            amount_cents: lines.total(),
            lines,
        };
        let definition = crate::order_saga::default_definition();
        let mut saga = Saga::new(SagaId::generate().as_str(), &definition, u64::MAX);
        let reason = "r".repeat(sagaflow_events::text::MAX_REASON_LEN);
        let now = Timestamp(u64::MAX / 2);
        saga.apply(&definition, &Input::Start, now);
        saga.apply(
            &definition,
            &Input::Reply { step: 0, phase: Phase::Action, attempt: 1, outcome: Outcome::Success },
            now,
        );
        let transient = Outcome::Transient { reason: reason.clone() };
        saga.apply(
            &definition,
            &Input::Reply { step: 1, phase: Phase::Action, attempt: 1, outcome: transient },
            now,
        );
        let record = SagaRecord {
            order_id: order.order_id.clone(),
            saga_id: SagaId::generate(),
            saga,
            order: Some(order),
            invalid: Some(Reason::new(&reason)),
            definition: "f".repeat(16),
            body_hash: "h".repeat(64),
            created_at: u64::MAX,
            updated_at: u64::MAX,
            created_seq: u64::MAX,
            finished_at: Some(u64::MAX),
            trace_id: "t".repeat(32),
            payment_id: Some(PaymentId::parse(long('y')).unwrap()),
            command_sent_at: u64::MAX,
            history_len: u32::MAX,
            ignored_recorded: MAX_IGNORED_RECORDED,
        };
        let size = record.encode().len();
        assert!(size < MAX_RECORD_BYTES / 2, "{size} bytes");
    }
}
