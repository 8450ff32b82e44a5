//! The bus: one RabbitMQ connection per process, with our own reconnect loop.
//!
//! - [`topology`]: declares every exchange and queue of the namespace (all durable; queues are
//!   quorum queues with a dead-letter exchange and a delivery limit).
//! - [`session`]: connects, declares, starts the consumers and the outbox relay, and when
//!   anything breaks, backs off with jitter and does it all again.
//! - [`dead_letter`]: turns a message that cannot be handled into an outbox entry for the
//!   dead-letter exchange, with the reason in its headers.

pub mod dead_letter;
pub mod session;
pub mod topology;

pub use dead_letter::dead_letter;
pub use session::{Bus, BusMetrics, ConsumerSpec};

/// Reads a string header (or property) of a delivery.
pub fn header(delivery: &lapin::message::Delivery, name: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    match headers.inner().get(name)? {
        lapin::types::AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        lapin::types::AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}
