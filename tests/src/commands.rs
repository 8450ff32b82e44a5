//! Commands as the orchestrator would send them, for tests that play the orchestrator.

use sagaflow_events::{
    Cents, CommandBody, CommandMessage, OrderId, OrderLine, OrderLines, Participant, Phase, ProductId,
    Quantity, SagaId, StepName,
};

/// A command for `participant` about order `order` (whose saga id is the order id, for tests
/// that place each order once), sent now.
pub fn command(
    order: &str,
    participant: Participant,
    phase: Phase,
    attempt: u32,
    body: CommandBody,
) -> CommandMessage {
    let saga_id = SagaId::parse(order).expect("a test order id is a valid saga id");
    let step = StepName::parse(participant.to_string()).expect("a participant is a valid step name");
    CommandMessage {
        idempotency_key: CommandMessage::key_for(&saga_id, &step, phase),
        saga_id,
        order_id: OrderId::parse(order).expect("a valid order id"),
        step,
        phase,
        attempt,
        sent_at: sagaflow_runtime::now_millis(),
        body,
    }
}

/// Lines of (product, quantity), each at 1 cent.
pub fn lines(items: &[(&str, i64)]) -> OrderLines {
    OrderLines::new(
        items
            .iter()
            .map(|(p, q)| OrderLine {
                product_id: ProductId::parse(*p).expect("a valid product id"),
                quantity: Quantity::new(*q).expect("a valid quantity"),
                unit_price_cents: Cents(1),
            })
            .collect(),
    )
    .expect("valid lines")
}

/// Commands the orchestrator would never send, as raw JSON for `participant`'s queue, each of
/// which broke a participant's books when trusted: two lines of one product, each within the
/// stock and together far beyond it; charges of one order under two sagas (u64::MAX, then 1);
/// a refund of a real charge that claims another amount. [`crate::system::System::
/// assert_forgeries_changed_nothing`] checks what must hold afterwards.
pub fn forged() -> Vec<(Participant, Vec<u8>)> {
    let raw = |v: serde_json::Value| serde_json::to_vec(&v).expect("JSON");
    let mut out = vec![(
        Participant::Inventory,
        raw(serde_json::json!({
            "sagaId": "forged-1", "orderId": "forged-1", "step": "inventory", "phase": "action", "attempt": 1,
            "idempotencyKey": "forged-1/inventory/action", "sentAt": 1, "command": "reserveStock",
            "items": [
                { "productId": "abc", "quantity": 60000, "unitPriceCents": 1 },
                { "productId": "abc", "quantity": 60000, "unitPriceCents": 1 },
            ],
        })),
    )];
    for (saga, amount) in [("forged-2", u64::MAX), ("forged-3", 1)] {
        out.push((
            Participant::Payment,
            raw(serde_json::json!({
                "sagaId": saga, "orderId": "forged-order", "step": "payment", "phase": "action", "attempt": 1,
                "idempotencyKey": format!("{saga}/payment/action"), "sentAt": 1, "command": "chargePayment",
                "userId": "u", "amountCents": amount,
            })),
        ));
    }
    out.push((
        Participant::Payment,
        raw(serde_json::json!({
            "sagaId": "forged-3", "orderId": "forged-order", "step": "payment", "phase": "compensation",
            "attempt": 1, "idempotencyKey": "forged-3/payment/compensation", "sentAt": 1,
            "command": "refundPayment", "amountCents": 999,
        })),
    ));
    out
}
