//! What the store keeps per saga: a compact record, rewritten when the saga moves, and its
//! history, appended under keys of its own ([`crate::store`]). A record's size does not grow
//! with the saga's past, and has a limit ([`MAX_RECORD_BYTES`]) that nothing it holds can pass.

use std::collections::BTreeMap;

use sagaflow_events::{BusinessId, Order, PaymentId, Reason, SagaId, SagaKey, SagaName};
use sagaflow_saga::Saga;
use serde::{Deserialize, Serialize};

/// The most bytes one stored record may take. The largest order (100 lines of 128-character
/// product ids) with every bounded text at its limit stays well below (see the test).
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Ignored inputs recorded in a saga's history; later ones are only counted in the metrics, so
/// a flood of forged or duplicated replies costs nothing that grows.
pub const MAX_IGNORED_RECORDED: u32 = 32;

/// The most bytes of JSON a defined saga's input may take. With every step's result at its
/// limit (`sagaflow_events::generic::MAX_RESULT_BYTES`), a record stays below
/// [`MAX_RECORD_BYTES`] (see the test).
pub const MAX_INPUT_BYTES: usize = 16 * 1024;

/// One saga with the order (or, for a defined saga, the input) it runs and what operators need
/// to know about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SagaRecord {
    /// The order's id, or `{saga}/{id}` for a defined saga. Named `orderId` in records written
    /// before defined sagas existed.
    #[serde(alias = "orderId")]
    pub key: SagaKey,
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
    /// A saga defined in a file: its input and its steps' results. `None` for an order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defined: Option<Box<Defined>>,
}

/// What a saga of a defined (not the order) saga carries from step to step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Defined {
    pub saga: SagaName,
    pub id: BusinessId,
    /// The input it was started with, checked against the definition's schema; at most
    /// [`MAX_INPUT_BYTES`].
    pub input: serde_json::Value,
    /// Each succeeded action's result, by step name.
    #[serde(default)]
    pub results: BTreeMap<String, serde_json::Value>,
}

impl SagaRecord {
    /// The name of the saga definition it runs: `order`, or a defined saga's.
    pub fn saga_name(&self) -> &str {
        self.defined.as_ref().map_or("order", |d| d.saga.as_str())
    }

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
            key: SagaKey::of_order(&order.order_id),
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
            defined: None,
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
            order_id: sagaflow_events::OrderId::parse(long('o')).unwrap(),
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
            key: SagaKey::of_order(&order.order_id),
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
            defined: None,
        };
        let size = record.encode().len();
        assert!(size < MAX_RECORD_BYTES / 2, "{size} bytes");
    }

    /// A defined saga with the largest input, the most steps, and every result at its limit.
    #[test]
    fn the_largest_defined_saga_fits_the_limit() {
        use sagaflow_saga::definition::MAX_STEPS;
        use sagaflow_saga::{RetryPolicy, StepDefinition};
        let retry = RetryPolicy {
            attempt_timeout: sagaflow_saga::Millis(1),
            max_attempts: Some(1),
            backoff_initial: sagaflow_saga::Millis(1),
            backoff_max: sagaflow_saga::Millis(1),
        };
        let steps = (0..MAX_STEPS)
            .map(|i| StepDefinition {
                name: format!("{}{i:02}", "s".repeat(62)),
                action: "a".repeat(64),
                retry: retry.clone(),
                compensation: None,
            })
            .collect();
        let definition = sagaflow_saga::SagaDefinition::new(steps).unwrap();
        let long = |c: char| std::iter::repeat_n(c, 128).collect::<String>();
        let max_string = |bytes: usize| serde_json::Value::String("x".repeat(bytes - 2));
        let result_bytes = sagaflow_events::generic::MAX_RESULT_BYTES;
        let results = definition
            .steps()
            .iter()
            .map(|s| (s.name.clone(), serde_json::json!({ "r": max_string(result_bytes - 6) })))
            .collect();
        let line = OrderLine {
            product_id: ProductId::parse("p").unwrap(),
            quantity: Quantity::new(1).unwrap(),
            unit_price_cents: Cents(1),
        };
        let lines = OrderLines::new(vec![line]).unwrap();
        let order = Order {
            order_id: sagaflow_events::OrderId::parse("o").unwrap(),
            user_id: UserId::parse("u").unwrap(),
            amount_cents: lines.total(),
            lines,
        };
        let mut record = record_of(&order, &definition);
        record.order = None;
        record.key = SagaKey::parse(format!("{}/{}", &long('t')[..64], long('i'))).unwrap();
        record.defined = Some(Box::new(Defined {
            saga: SagaName::parse(&long('t')[..64]).unwrap(),
            id: BusinessId::parse(long('i')).unwrap(),
            input: max_string(MAX_INPUT_BYTES),
            results,
        }));
        let size = record.encode().len();
        assert!(size < MAX_RECORD_BYTES, "{size} bytes");
    }
}
