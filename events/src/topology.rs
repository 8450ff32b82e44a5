//! Every name on the bus, derived from one value: the namespace (`SAGA_NAMESPACE`). Two systems
//! with different namespaces share a broker without seeing each other's messages, which is also
//! how parallel tests stay apart.
//!
//! The layout:
//!
//! ```text
//! {ns}.intake      fanout   -> {ns}.orchestrator.intake     OrderPlaced from outside
//! {ns}.commands    direct   -> {ns}.payment.commands        key "payment"
//!                           -> {ns}.inventory.commands      key "inventory"
//!                           -> {ns}.notification.commands   key "notification"
//! {ns}.replies     fanout   -> {ns}.orchestrator.replies    participants' answers
//! {ns}.events      topic       public events, keys like "order.completed"; bind your own queue
//!                           -> {ns}.inventory.completions  key "order.completed"
//! {ns}.dead-letter fanout   -> {ns}.dead-letters            unparseable or poison messages
//! ```
//!
//! On Kafka there are no exchanges: a route names a topic ([`Topology::kafka_topic`]), and a
//! queue reads one ([`Topology::kafka_source`]). Each queue above becomes the topic of the same
//! name, and each public event's routing key a topic of its own (`{ns}.events.order.completed`),
//! so that a consumer of one event reads nothing else (subscribe to `^{ns}\.events\..*` for all).

use crate::public::routing_key_of;

/// The participants of the order saga; each has its own command queue.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    strum::Display,
    strum::EnumString,
    strum::IntoStaticStr,
    strum::EnumIter,
)]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum Participant {
    Payment,
    Inventory,
    Notification,
}

/// The names of one namespace's exchanges and queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topology {
    namespace: String,
    /// Participants of sagas defined in files, beside the order saga's three: each has a
    /// command queue too, declared by the orchestrator.
    defined: Vec<String>,
}

impl Topology {
    pub fn new(namespace: impl Into<String>) -> Self {
        Self { namespace: namespace.into(), defined: Vec::new() }
    }

    /// The same namespace, with the participants that defined sagas name (a name the order
    /// saga already has is not added twice).
    pub fn with_participants<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        for name in names {
            let builtin = name.parse::<Participant>().is_ok();
            if !builtin && !self.defined.iter().any(|d| d == name) {
                self.defined.push(name.to_owned());
            }
        }
        self
    }

    /// Every participant's name: the order saga's, then those of defined sagas.
    pub fn participant_names(&self) -> Vec<String> {
        use strum::IntoEnumIterator;
        let mut names: Vec<String> = Participant::iter().map(|p| p.to_string()).collect();
        names.extend(self.defined.iter().cloned());
        names
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.namespace)
    }

    pub fn intake_exchange(&self) -> String {
        self.name("intake")
    }

    pub fn intake_queue(&self) -> String {
        self.name("orchestrator.intake")
    }

    pub fn commands_exchange(&self) -> String {
        self.name("commands")
    }

    pub fn command_queue(&self, participant: Participant) -> String {
        self.command_queue_of(participant.into())
    }

    /// The routing key of a participant's commands on the commands exchange.
    pub fn command_routing_key(&self, participant: Participant) -> String {
        participant.to_string()
    }

    /// The command queue of a participant by name, such as a defined saga's `flights`.
    pub fn command_queue_of(&self, participant: &str) -> String {
        self.name(&format!("{participant}.commands"))
    }

    /// Every command queue, the order saga's and those of defined sagas.
    fn command_queues(&self) -> Vec<String> {
        self.participant_names().iter().map(|p| self.command_queue_of(p)).collect()
    }

    pub fn replies_exchange(&self) -> String {
        self.name("replies")
    }

    pub fn replies_queue(&self) -> String {
        self.name("orchestrator.replies")
    }

    /// Every exchange of the namespace.
    pub fn all_exchanges(&self) -> [String; 5] {
        [
            self.intake_exchange(),
            self.commands_exchange(),
            self.replies_exchange(),
            self.events_exchange(),
            self.dead_letter_exchange(),
        ]
    }

    pub fn events_exchange(&self) -> String {
        self.name("events")
    }

    /// The routing key of a public event, from its name (`OrderCompleted` -> `order.completed`).
    pub fn event_routing_key(&self, event_name: &str) -> String {
        routing_key_of(event_name)
    }

    pub fn dead_letter_exchange(&self) -> String {
        self.name("dead-letter")
    }

    pub fn dead_letter_queue(&self) -> String {
        self.name("dead-letters")
    }

    /// Inventory's queue of `OrderCompleted` events: a completed order's reservation becomes a
    /// sale, so that nothing stays reserved once an order is through.
    pub fn completions_queue(&self) -> String {
        self.name("inventory.completions")
    }

    /// The lock of a consumed queue: an exclusive queue that only the consuming process's
    /// connection may hold, so a second instance is refused.
    pub fn lock_queue(&self, queue: &str) -> String {
        format!("{queue}.lock")
    }

    /// Which store a consumed queue belongs to: one message naming the store of the process
    /// that consumes it, so that no process with another store takes it over.
    pub fn owner_queue(&self, queue: &str) -> String {
        format!("{queue}.owner")
    }

    /// Kafka: the topic a message for `exchange` with routing `key` goes to, or `None` for a
    /// route that does not exist in this namespace.
    pub fn kafka_topic(&self, exchange: &str, key: &str) -> Option<String> {
        if exchange == self.intake_exchange() {
            Some(self.intake_queue())
        } else if exchange == self.commands_exchange() {
            self.participant_names().iter().find(|p| *p == key).map(|p| self.command_queue_of(p))
        } else if exchange == self.replies_exchange() {
            Some(self.replies_queue())
        } else if exchange == self.events_exchange() {
            crate::public::PUBLIC_EVENT_NAMES
                .iter()
                .any(|name| routing_key_of(name) == key)
                .then(|| self.event_topic(key))
        } else if exchange == self.dead_letter_exchange() {
            Some(self.dead_letter_queue())
        } else if exchange.is_empty() {
            // The default exchange routes to the queue the key names.
            self.kafka_source(key)
        } else {
            None
        }
    }

    /// Kafka: the topic of one public event's routing key.
    pub fn event_topic(&self, routing_key: &str) -> String {
        self.name(&format!("events.{routing_key}"))
    }

    /// Kafka: the topic that a queue of this namespace reads, or `None` for a queue that is not
    /// one of ours.
    pub fn kafka_source(&self, queue: &str) -> Option<String> {
        if queue == self.completions_queue() {
            return Some(self.event_topic(&routing_key_of("OrderCompleted")));
        }
        let mut ours = vec![self.intake_queue(), self.replies_queue(), self.dead_letter_queue()];
        ours.extend(self.command_queues());
        ours.into_iter().find(|q| q == queue)
    }

    /// Kafka: every topic of the namespace, to create before anything is sent.
    pub fn kafka_topics(&self) -> Vec<String> {
        let mut topics = vec![self.intake_queue(), self.replies_queue(), self.dead_letter_queue()];
        topics.extend(self.command_queues());
        topics.extend(
            crate::public::PUBLIC_EVENT_NAMES.iter().map(|name| self.event_topic(&routing_key_of(name))),
        );
        topics
    }

    /// The queues that are consumed, and so have a lock and an owner.
    pub fn consumed_queues(&self) -> Vec<String> {
        use strum::IntoEnumIterator;
        let mut queues = vec![self.intake_queue(), self.replies_queue(), self.completions_queue()];
        queues.extend(Participant::iter().map(|p| self.command_queue(p)));
        queues
    }

    /// Every durable queue the system declares, for tests and tools that purge or inspect them.
    pub fn all_queues(&self) -> Vec<String> {
        let mut queues = vec![
            self.intake_queue(),
            self.replies_queue(),
            self.dead_letter_queue(),
            self.completions_queue(),
        ];
        queues.extend(self.command_queues());
        let owners: Vec<String> = self.consumed_queues().iter().map(|q| self.owner_queue(q)).collect();
        queues.extend(owners);
        queues
    }
}

/// Names of the message kinds (the AMQP `type` property) that are not commands, replies or events.
pub mod kinds {
    /// A `ForgetSagas` on a participant's command queue: retention removed these sagas.
    pub const FORGET_SAGAS: &str = "forgetSagas";
}

/// Names of the AMQP headers sagaflow sets.
pub mod headers {
    /// W3C trace context, so one order can be followed through every process's logs.
    pub const TRACEPARENT: &str = "traceparent";
    /// Why a message was dead-lettered.
    pub const DEAD_LETTER_REASON: &str = "x-sagaflow-reason";
    /// The queue a dead-lettered message was taken from.
    pub const DEAD_LETTER_QUEUE: &str = "x-sagaflow-queue";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_carries_the_namespace() {
        let t = Topology::new("test-42");
        let mut names = t.all_queues();
        names.extend([
            t.intake_exchange(),
            t.commands_exchange(),
            t.replies_exchange(),
            t.events_exchange(),
            t.dead_letter_exchange(),
        ]);
        assert!(names.iter().all(|n| n.starts_with("test-42.")), "{names:?}");
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "two things share a name: {names:?}");
        assert_eq!(t.command_queue(Participant::Payment), "test-42.payment.commands");
    }

    #[test]
    fn on_kafka_every_route_names_a_topic_that_is_created_and_every_consumed_queue_reads_one() {
        let t = Topology::new("ns");
        let topics = t.kafka_topics();
        let unique: std::collections::BTreeSet<_> = topics.iter().collect();
        assert_eq!(unique.len(), topics.len(), "{topics:?}");
        let mut routes = vec![
            (t.intake_exchange(), String::new()),
            (t.replies_exchange(), String::new()),
            (t.dead_letter_exchange(), String::new()),
        ];
        use strum::IntoEnumIterator;
        routes.extend(Participant::iter().map(|p| (t.commands_exchange(), t.command_routing_key(p))));
        routes.extend(
            crate::public::PUBLIC_EVENT_NAMES.iter().map(|n| (t.events_exchange(), routing_key_of(n))),
        );
        for (exchange, key) in routes {
            let topic = t.kafka_topic(&exchange, &key).unwrap_or_else(|| panic!("{exchange} {key}"));
            assert!(topics.contains(&topic), "{topic}");
        }
        for queue in t.consumed_queues() {
            let topic = t.kafka_source(&queue).unwrap_or_else(|| panic!("{queue}"));
            assert!(topics.contains(&topic), "{topic}");
        }
        assert_eq!(t.kafka_source(&t.completions_queue()).unwrap(), "ns.events.order.completed");
        assert_eq!(t.kafka_topic(&t.commands_exchange(), "nobody"), None);
        assert_eq!(t.kafka_topic(&t.events_exchange(), "order.unknown"), None);
        assert_eq!(t.kafka_topic("elsewhere", ""), None);
    }
}
