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
