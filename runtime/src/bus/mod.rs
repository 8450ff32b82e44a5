//! The bus: one connection to the broker per process, with our own reconnect loop. Nothing
//! above this module sees a broker's type: messages go out as [`Message`] and come in as
//! [`Received`] with a [`Receipt`] to acknowledge them by. Two transports sit behind it, chosen
//! by [`Broker`]: RabbitMQ ([`amqp`]) and Kafka ([`kafka`]).
//!
//! Broker-neutral:
//! - [`message`]: the messages, with bounded headers.
//! - [`batch`]: several messages for one queue as one broker message, and back.
//! - [`dead_letter`]: a message that cannot be understood, as an entry for the dead-letter
//!   route with its original bytes and the reason.
//! - [`inspect`]: what operators see of the broker (queue depths, dead letters).
//! - [`strikes`]: refusals counted per outbox entry, until it is parked.
//! - [`acks`]: the acknowledgements a batch owes, folded per consumer (AMQP) or per partition
//!   (Kafka offsets).
//!
//! Each transport's session connects, declares what it needs, consumes, and runs the relay
//! (publishes durable outbox entries, parks what the broker keeps refusing). [`Bus::run`]
//! starts a session, and when anything breaks, backs off with jitter and starts another.

pub mod acks;
pub mod amqp;
pub mod batch;
pub mod dead_letter;
pub mod inspect;
pub mod kafka;
pub mod message;
pub mod strikes;

use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_events::Topology;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use acks::Acks;
pub use batch::Delivery;
pub use dead_letter::dead_letter;
pub use message::{HeaderValue, Headers, Message, Received, Route};

use crate::config::Broker;
use crate::health::Health;
use crate::metrics::{Counter, Gauge};
use crate::outbox::Outbox;

/// What acknowledges one received message.
pub struct Receipt(pub(crate) ReceiptOf);

pub(crate) enum ReceiptOf {
    /// Which consumer took it, its delivery tag, and its channel's acker.
    Amqp { consumer: usize, tag: u64, acker: lapin::Acker },
    /// Its partition and offset, and the consumer that commits it.
    Kafka { partition: i32, offset: i64, consumer: Arc<kafka::GroupConsumer> },
}

/// A queue to consume (on Kafka, the topic [`Topology::kafka_source`] names, read in the
/// consumer group of the queue's name). Its index in [`Bus::consumers`] tells its deliveries
/// apart.
pub struct ConsumerSpec {
    pub queue: String,
    /// Unacknowledged deliveries the broker may hand out at once. Large enough to fill a
    /// group-commit batch, small enough that a crash returns little work.
    pub prefetch: u16,
}

#[derive(Debug, Default)]
pub struct BusMetrics {
    pub connects: Counter,
    pub disconnects: Counter,
    pub deliveries: Counter,
    /// Deliveries the broker marked as redelivered: what crashes and reconnects cost.
    pub redeliveries: Counter,
    /// Public events not sent because no queue was bound to their route.
    pub events_skipped: Counter,
    /// 1 while the broker blocks this process's publishing (RabbitMQ's disk or memory alarm).
    pub blocked: Gauge,
}

/// How long a process that never consumed may be refused its queues before it gives up: long
/// enough for the broker to notice that a killed predecessor's connection is gone.
pub const EXCLUSIVE_GRACE: Duration = Duration::from_secs(15);

/// Why the bus stopped for good.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error(
        "{queue} belongs to the store {owner}, and this process's store is {ours}: taking it over would lose \
         that store's records (start with the DATA_DIR that consumed it, or use another SAGA_NAMESPACE)"
    )]
    OtherStore { queue: String, owner: String, ours: String },
    #[error(
        "another process consumes {queue} on this namespace; a second instance would miss the first one's \
         records, so this one does not start (stop the other, or give this one its own SAGA_NAMESPACE)"
    )]
    AnotherInstance { queue: String },
}

pub struct Bus {
    pub broker: Broker,
    pub topology: Topology,
    pub consumers: Vec<ConsumerSpec>,
    /// Where deliveries go: the process's pipeline ([`channel`]).
    pub sink: Sink,
    pub outbox: Arc<Outbox>,
    /// Messages the relay keeps in flight, awaiting confirms.
    pub relay_window: usize,
    /// How long the relay skips public events for a route that no queue is bound to (zero:
    /// never). RabbitMQ only: on Kafka an event is one append to its own topic.
    pub events_unbound_recheck: Duration,
    pub health: Health,
    pub metrics: Arc<BusMetrics>,
    /// The id of the process's store: what its queues' owner must be.
    pub store_id: String,
}

/// Where the bus hands what it received: the pipeline's [`crate::pipeline::Inputs`].
pub type Sink = mpsc::Sender<(Delivery, Receipt)>;

/// The channel from the bus to the pipeline, sized so that the consumers never wait on it: each
/// holds at most its prefetch unacknowledged. (On Kafka, where nothing bounds what is in
/// flight, a full channel holds the consumer back.)
pub fn channel(consumers: &[ConsumerSpec]) -> (Sink, mpsc::Receiver<(Delivery, Receipt)>) {
    let in_flight: usize = consumers.iter().map(|c| usize::from(c.prefetch)).sum();
    mpsc::channel(in_flight.max(1))
}

/// Why one session ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error(transparent)]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("another process holds the lock of {0}")]
    Exclusive(String),
    #[error("{queue} belongs to the store {owner}")]
    OtherStore { queue: String, owner: String },
    #[error("consumer of {0} ended")]
    ConsumerEnded(String),
    #[error("{0} is not a queue of this namespace")]
    UnknownQueue(String),
    #[error("outbox entry {id} failed: {error}")]
    Entry { id: u64, error: rdkafka::error::KafkaError },
    #[error("connection closed")]
    Closed,
    #[error("the session's setup took longer than {0:?}")]
    SetupTimedOut(Duration),
}

/// What a transport remembers across its sessions.
enum Memory {
    Amqp(amqp::RelayState),
    Kafka(strikes::Strikes),
}

impl Bus {
    /// Runs until `stop`. `stop_consuming` ends the consumers first, so that a shutting-down
    /// process can finish and acknowledge what it holds while still connected.
    pub async fn run(
        self,
        stop_consuming: CancellationToken,
        stop: CancellationToken,
    ) -> Result<(), BusError> {
        let mut failures: u32 = 0;
        let mut memory = match self.broker {
            Broker::RabbitMq(_) => Memory::Amqp(amqp::RelayState::default()),
            Broker::Kafka(_) => Memory::Kafka(strikes::Strikes::default()),
        };
        let mut consumed = false;
        let mut refused_since: Option<Instant> = None;
        loop {
            let started = Instant::now();
            let ended = match (&self.broker, &mut memory) {
                (Broker::RabbitMq(url), Memory::Amqp(relay)) => {
                    amqp::session(&self, url, &stop_consuming, &stop, relay, &mut consumed).await
                }
                (Broker::Kafka(settings), Memory::Kafka(strikes)) => {
                    kafka::session(&self, settings, &stop_consuming, &stop, strikes, &mut consumed).await
                }
                _ => unreachable!("the memory is made for the broker"),
            };
            let Err(e) = ended else { return Ok(()) };
            self.health.set_bus(false);
            self.metrics.disconnects.inc();
            if let Memory::Amqp(relay) = &mut memory {
                relay.session_failed(&self.outbox, &e.to_string());
            }
            match e {
                SessionError::OtherStore { queue, owner } => {
                    return Err(BusError::OtherStore { queue, owner, ours: self.store_id.clone() })
                }
                SessionError::Exclusive(ref queue) => {
                    let since = *refused_since.get_or_insert_with(Instant::now);
                    if !consumed && since.elapsed() > EXCLUSIVE_GRACE {
                        return Err(BusError::AnotherInstance { queue: queue.clone() });
                    }
                    tracing::error!(queue, "another process consumes this queue; standing by");
                }
                _ => refused_since = None,
            }
            // A session that lived a while was healthy: start the backoff afresh.
            if started.elapsed() > Duration::from_secs(30) {
                failures = 0;
            }
            failures = failures.saturating_add(1);
            let delay = backoff(failures);
            tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "bus disconnected");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = stop.cancelled() => return Ok(()),
            }
        }
    }
}

/// 100 ms doubling to 5 s, with equal jitter so that many processes reconnecting after a broker
/// restart do not arrive all at once.
fn backoff(failures: u32) -> Duration {
    let base = 100u64.saturating_mul(1 << failures.min(7)).min(5_000);
    let jitter = (uuid::Uuid::new_v4().as_u128() as u64) % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        for f in 1..20 {
            let d = backoff(f).as_millis() as u64;
            let base = (100u64 << f.min(7)).min(5_000);
            assert!(d >= base / 2 && d <= base, "{f}: {d}");
        }
    }
}
