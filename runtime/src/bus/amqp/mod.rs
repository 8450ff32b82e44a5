//! The RabbitMQ transport.
//!
//! - [`properties`]: [`Message`](crate::bus::Message) and [`Received`](crate::bus::Received)
//!   as AMQP properties and headers.
//! - [`topology`]: declares every exchange and queue of the namespace (all durable; queues are
//!   quorum queues with a dead-letter exchange and a delivery limit).
//! - [`session`]: connects, declares, consumes exclusively and runs the relay.
//! - [`relay`]: publishes durable outbox entries with confirms, batching what is ready together
//!   for one queue, and parks what the broker keeps refusing.
//! - [`unbound`]: public events that nobody listens to, held back instead of paid for.
//! - [`inspect`]: queue depths and consumers, and the dead letters, for operators
//!   ([`crate::bus::inspect`]).

pub(crate) mod inspect;
pub mod properties;
pub mod relay;
mod session;
pub mod topology;
pub mod unbound;

pub use relay::RelayState;
pub(in crate::bus) use session::session;
