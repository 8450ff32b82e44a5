//! Messages that cannot be handled go to the namespace's dead-letter queue with the reason in
//! their headers. They are written to the outbox like any other message, in the same batch as
//! their acknowledgement, so a dead letter is never lost between the ack and the publish.

use lapin::message::Delivery;
use sagaflow_events::{headers, Topology};

use crate::outbox::OutboxMessage;

/// The outbox entry that carries `delivery` to the dead-letter exchange.
pub fn dead_letter(topology: &Topology, queue: &str, delivery: &Delivery, reason: &str) -> OutboxMessage {
    let correlation =
        delivery.properties.correlation_id().as_ref().map(|c| c.as_str().to_owned()).unwrap_or_default();
    let kind = delivery
        .properties
        .kind()
        .as_ref()
        .map(|k| k.as_str().to_owned())
        .unwrap_or_else(|| "unknown".into());
    // The body is kept as text; bytes that are not UTF-8 are replaced, which only a message that
    // was never JSON can contain.
    let body = String::from_utf8_lossy(&delivery.data).into_owned();
    let mut message =
        OutboxMessage::new(topology.dead_letter_exchange(), String::new(), correlation, &kind, body)
            .with_header(headers::DEAD_LETTER_REASON, truncate(reason, 512))
            .with_header(headers::DEAD_LETTER_QUEUE, queue);
    if let Some(original) = delivery.properties.message_id() {
        message = message.with_header("x-sagaflow-original-message-id", original.as_str());
    }
    message.traceparent = crate::bus::header(delivery, headers::TRACEPARENT);
    message
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}
