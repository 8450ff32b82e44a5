//! The bus: one RabbitMQ connection per process, with our own reconnect loop. Nothing above
//! this module sees an AMQP type: messages go out as [`Message`] and come in as [`Received`]
//! with a [`Receipt`] to acknowledge them by.
//!
//! - [`message`]: the broker-neutral messages, with bounded headers.
//! - [`amqp`]: their AMQP properties and headers.
//! - [`topology`]: declares every exchange and queue of the namespace (all durable; queues are
//!   quorum queues with a dead-letter exchange and a delivery limit).
//! - [`session`]: connects, declares, consumes exclusively, runs the relay, and when anything
//!   breaks, backs off with jitter and does it all again.
//! - [`relay`]: publishes durable outbox entries with confirms, and parks what the broker
//!   keeps refusing.
//! - [`dead_letter`]: a message that cannot be understood, as an entry for the dead-letter
//!   exchange with its original bytes and the reason.
//! - [`inspect`]: queue depths and consumers, and the dead letters, for operators.
//! - [`acks`]: the acknowledgements a batch owes, folded per consumer.
//! - [`batch`]: several messages for one queue as one broker message, and back.
//! - [`unbound`]: public events that nobody listens to, held back instead of paid for.

pub mod acks;
pub mod amqp;
pub mod batch;
pub mod dead_letter;
pub mod inspect;
pub mod message;
pub mod relay;
pub mod session;
pub mod topology;
pub mod unbound;

pub use acks::Acks;
pub use batch::Delivery;
pub use dead_letter::dead_letter;
pub use message::{HeaderValue, Headers, Message, Received, Route};
pub use session::{Bus, BusError, BusMetrics, ConsumerSpec};

/// What acknowledges one received message: which consumer took it and its delivery tag.
pub struct Receipt {
    pub(crate) consumer: usize,
    pub(crate) tag: u64,
    pub(crate) acker: lapin::Acker,
}
