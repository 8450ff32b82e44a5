//! Asks the broker about a namespace for operators: how many consumers and messages each queue
//! has, and what sits in the dead letters, one of which can be sent back to the queue it came
//! from or discarded. RabbitMQ answers all of it ([`super::amqp::inspect`]); Kafka answers what
//! a log can ([`super::kafka::inspect`]): the dead letters, and how many there are.

use sagaflow_events::Topology;

use super::Received;
use crate::config::Broker;

/// The most dead letters one look takes.
pub const MAX_BROWSED: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error("the broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("the broker: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("no dead letter {0} among the first {MAX_BROWSED} in the queue")]
    NoSuchDeadLetter(String),
    #[error("dead letter {0} does not say which queue it came from")]
    NoOrigin(String),
    #[error("dead letter {id} came from {queue}, which is not a queue of this namespace")]
    ForeignQueue { id: String, queue: String },
    #[error("the broker did not confirm the requeued message")]
    NotConfirmed,
    #[error(
        "requeueing or discarding a dead letter works on RabbitMQ only: the topic {0} is a log \
         (read it with any Kafka client, and publish again what should run)"
    )]
    NotOnKafka(String),
}

/// A queue as the broker sees it now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueState {
    pub consumers: u32,
    pub messages: u32,
}

/// What to do with a dead letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposal {
    /// Back to the queue it was taken from, as it first arrived.
    Requeue,
    Discard,
}

#[derive(Clone)]
pub struct Inspector {
    broker: Broker,
    topology: Topology,
}

impl Inspector {
    pub fn new(broker: Broker, topology: Topology) -> Self {
        Self { broker, topology }
    }

    /// The state of each named queue that the broker can tell about; others are left out (on
    /// Kafka, only the dead letters: a log has no consumers to count).
    pub async fn queues(&self, names: &[String]) -> Result<Vec<(String, QueueState)>, InspectError> {
        match &self.broker {
            Broker::RabbitMq(url) => {
                super::amqp::inspect::Rabbit { url, topology: &self.topology }.queues(names).await
            }
            Broker::Kafka(settings) => super::kafka::inspect::queues(settings, &self.topology, names).await,
        }
    }

    /// The first [`MAX_BROWSED`] dead letters, oldest first, and how many there are.
    pub async fn dead_letters(&self) -> Result<(Vec<Received>, u32), InspectError> {
        match &self.broker {
            Broker::RabbitMq(url) => {
                super::amqp::inspect::Rabbit { url, topology: &self.topology }.dead_letters().await
            }
            Broker::Kafka(settings) => super::kafka::inspect::dead_letters(settings, &self.topology).await,
        }
    }

    /// Requeues or discards the dead letter whose message id is `id`. Returns the queue it
    /// came from.
    pub async fn dispose(&self, id: &str, disposal: Disposal) -> Result<Option<String>, InspectError> {
        match &self.broker {
            Broker::RabbitMq(url) => {
                super::amqp::inspect::Rabbit { url, topology: &self.topology }.dispose(id, disposal).await
            }
            Broker::Kafka(_) => Err(InspectError::NotOnKafka(self.topology.dead_letter_queue())),
        }
    }
}
