//! The Kafka transport: the same delivery rules as on RabbitMQ, in Kafka's terms.
//!
//! - **Topics from the namespace.** Every topic is created up front with the configured number
//!   of partitions ([`Topology::kafka_topics`]); a route names its topic
//!   ([`Topology::kafka_topic`]), a consumed queue the topic it reads
//!   ([`Topology::kafka_source`]). Records are keyed by order id, so one order's messages stay
//!   in order within a partition.
//! - **The relay** publishes only durable outbox entries, through an idempotent producer
//!   (`acks=all`), and removes an entry only once its delivery report says the broker has it.
//!   Each record goes alone: librdkafka batches per partition by itself, so our
//!   [`batch`](crate::bus::batch) envelope would only add a layer. A record the broker refuses
//!   while it takes others (or refuses for what it is: too large, invalid) is struck; after
//!   [`STRIKES`] it is parked with the broker's reason, and everything behind it flows on. A
//!   broker that fails everything parks nothing: the session ends and starts again
//!   ([`Failures`]).
//! - **Consumers** take every partition of their topic ([`assign_all`]) and commit, in the
//!   consumer group named after their queue, each partition's next offset once the batch is
//!   durable ([`Offsets`]); auto-commit is off. A crash before the commit hands the records to
//!   the next start; the barrier and the saga store recognise them as duplicates. There is no
//!   rebalance to hand a partition back in: one process consumes a queue.
//! - **One store per queue.** Kafka splits a group's partitions among its members, and each
//!   process keeps its records in its own store, so a second member would take part of the
//!   first one's work without its records. Kafka has no exclusive consumer, and not every
//!   Kafka-protocol broker can list a group's members (tansu cannot), so the guard is the
//!   owner: before consuming a queue, a process reads the last record of the queue's owner
//!   topic (`{queue}.owner`, one partition), which names the store that consumes it, and writes
//!   its own store's id there if there is none ([`claim`]). A process with another store
//!   stops with one line instead of joining. Two live instances always have two stores (a
//!   store's folder is locked), so a second instance is refused as soon as the first one has
//!   claimed its queues; only two first starts at the same moment could both pass.
//! - **Public events** go each to the topic of its routing key; an event nobody reads costs one
//!   append, so nothing is held back as on RabbitMQ.

pub mod inspect;
mod record;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::{Message as _, Offset, TopicPartitionList};
use sagaflow_events::Topology;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::message::Message;
use super::strikes::{Strikes, STRIKES};
use super::{Bus, Delivery, Receipt, ReceiptOf, SessionError};
use crate::config::KafkaSettings;
use crate::outbox::Outbox;

/// How often the session asks the broker for its metadata, to tell `/health` whether the
/// broker is reachable (librdkafka reconnects by itself and would otherwise say nothing).
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// A consumer in its group, shared by the receipts of what it delivered: they commit through it.
pub struct GroupConsumer {
    consumer: StreamConsumer,
    topic: String,
}

/// The offsets a batch owes: per consumer and partition, the highest one it took.
#[derive(Default)]
pub struct Offsets {
    owed: Vec<(Arc<GroupConsumer>, HashMap<i32, i64>)>,
}

impl Offsets {
    pub(crate) fn owe(&mut self, consumer: Arc<GroupConsumer>, partition: i32, offset: i64) {
        let at = match self.owed.iter().position(|(c, _)| Arc::ptr_eq(c, &consumer)) {
            Some(at) => at,
            None => {
                self.owed.push((consumer, HashMap::new()));
                self.owed.len() - 1
            }
        };
        let highest = self.owed[at].1.entry(partition).or_insert(offset);
        *highest = (*highest).max(offset);
    }

    /// Commits, for each partition, the offset after the highest taken: everything up to it is
    /// durable (the pipeline holds back a record only with every later one of its partition).
    /// Asynchronous: a commit that is lost only means records handed out again, as duplicates.
    pub(crate) fn commit(self) {
        for (group, partitions) in self.owed {
            let mut list = TopicPartitionList::with_capacity(partitions.len());
            for (partition, offset) in partitions {
                if let Err(e) = list.add_partition_offset(&group.topic, partition, Offset::Offset(offset + 1))
                {
                    tracing::warn!(error = %e, "cannot name an offset to commit");
                }
            }
            if let Err(e) = group.consumer.commit(&list, CommitMode::Async) {
                tracing::debug!(error = %e, "commit failed; the records will be delivered again");
            }
        }
    }
}

pub(crate) fn client(settings: &KafkaSettings) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", settings.brokers.as_str()).set("log_level", "4");
    config
}

/// One session: create the topics, start the producer and the consumers, relay until
/// something breaks or `stop`.
pub(in crate::bus) async fn session(
    bus: &Bus,
    settings: &KafkaSettings,
    stop_consuming: &CancellationToken,
    stop: &CancellationToken,
    strikes: &mut Strikes,
    consumed: &mut bool,
) -> Result<(), SessionError> {
    create_topics(settings, &bus.topology).await?;
    let producer: FutureProducer = client(settings)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // Ready records leave at once; those that come while one is in flight travel together.
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .create()?;

    let mut consumers = JoinSet::new();
    if !stop_consuming.is_cancelled() {
        let mut groups = Vec::with_capacity(bus.consumers.len());
        for spec in &bus.consumers {
            let topic = bus
                .topology
                .kafka_source(&spec.queue)
                .ok_or_else(|| SessionError::UnknownQueue(spec.queue.clone()))?;
            let consumer: StreamConsumer = client(settings)
                .set("group.id", &spec.queue)
                .set("enable.auto.commit", "false")
                .set("auto.offset.reset", "earliest")
                .set("fetch.wait.max.ms", settings.fetch_wait_ms.to_string())
                .create()?;
            let owner = bus.topology.owner_queue(&spec.queue);
            claim(settings, &producer, &owner, &spec.queue, &bus.store_id).await?;
            groups.push(Arc::new(GroupConsumer { consumer, topic }));
        }
        for (from, (spec, group)) in bus.consumers.iter().zip(groups).enumerate() {
            let assigned = group.clone();
            tokio::task::spawn_blocking(move || assign_all(&assigned))
                .await
                .map_err(|e| SessionError::ConsumerEnded(e.to_string()))??;
            let forward = Forward {
                group,
                from,
                queue: spec.queue.clone(),
                sink: bus.sink.clone(),
                metrics: bus.metrics.clone(),
            };
            consumers.spawn(forward.run(stop_consuming.clone()));
        }
        *consumed = true;
    }
    bus.health.set_bus(true);
    bus.metrics.connects.inc();
    tracing::info!(brokers = %settings.brokers, namespace = bus.topology.namespace(), "bus connected (kafka)");

    let mut probe = tokio::time::interval(PROBE_EVERY);
    let result = {
        let relay = relay(&bus.outbox, &producer, &bus.topology, bus.relay_window, strikes);
        tokio::pin!(relay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                r = &mut relay => break r,
                Some(joined) = consumers.join_next() => match joined {
                    Ok(Ok(())) if stop_consuming.is_cancelled() => continue,
                    Ok(Ok(())) => break Err(SessionError::Closed),
                    Ok(Err(e)) => break Err(e),
                    Err(e) => break Err(SessionError::ConsumerEnded(e.to_string())),
                },
                _ = probe.tick() => {
                    let client = producer.clone();
                    let reachable = tokio::task::spawn_blocking(move || {
                        client.client().fetch_metadata(None, Duration::from_secs(2)).is_ok()
                    })
                    .await
                    .unwrap_or(false);
                    bus.health.set_bus(reachable);
                }
            }
        }
    };
    bus.health.set_bus(false);
    consumers.abort_all();
    // What was handed to the producer and not reported yet is still in the outbox: the next
    // session or start sends it again.
    let _ = tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(2))).await;
    result
}

/// Every topic of the namespace, with its partitions: the topics of [`Topology::kafka_topics`],
/// and one single-partition owner topic per consumed queue ([`claim`]).
pub fn namespace_topics(topology: &Topology, partitions: u16) -> Vec<(String, i32)> {
    let topics = topology.kafka_topics().into_iter().map(|t| (t, i32::from(partitions)));
    let owners = topology.consumed_queues().into_iter().map(|q| (topology.owner_queue(&q), 1));
    topics.chain(owners).collect()
}

/// Creates every topic of the namespace; one that exists already is left as it is.
async fn create_topics(settings: &KafkaSettings, topology: &Topology) -> Result<(), SessionError> {
    let admin: AdminClient<DefaultClientContext> = client(settings).create()?;
    let topics = namespace_topics(topology, settings.partitions);
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, partitions)| NewTopic::new(t, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code))
                    .inspect_err(|_| tracing::error!(topic, "cannot create topic"))?
            }
        }
    }
    Ok(())
}

/// Deletes every topic of the namespace, with what it holds (`sagactl purge --bus kafka`); one
/// that does not exist is no error. Returns the topics deleted.
pub async fn delete_topics(settings: &KafkaSettings, topology: &Topology) -> Result<Vec<String>, KafkaError> {
    let admin: AdminClient<DefaultClientContext> = client(settings).create()?;
    let topics: Vec<String> = namespace_topics(topology, 1).into_iter().map(|(t, _)| t).collect();
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let mut deleted = Vec::new();
    for result in admin.delete_topics(&names, &options).await? {
        match result {
            Ok(topic) => deleted.push(topic),
            Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((_, code)) => return Err(KafkaError::AdminOp(code)),
        }
    }
    Ok(deleted)
}

/// Claims `queue` for the store `store_id` (see the module's comment): the owner topic names
/// it already, or names nobody and is made to, through the session's producer.
async fn claim(
    settings: &KafkaSettings,
    producer: &FutureProducer,
    owner: &str,
    queue: &str,
    store_id: &str,
) -> Result<(), SessionError> {
    let (reading, topic) = (settings.clone(), owner.to_owned());
    let holder = tokio::task::spawn_blocking(move || last_record(&reading, &topic))
        .await
        .map_err(|e| SessionError::ConsumerEnded(e.to_string()))??;
    match holder {
        Some(holder) if holder == store_id => Ok(()),
        Some(holder) => Err(SessionError::OtherStore { queue: queue.to_owned(), owner: holder }),
        None => {
            let record = FutureRecord::to(owner).key(queue).payload(store_id);
            producer.send(record, Duration::from_secs(10)).await.map_err(|(e, _)| e)?;
            Ok(())
        }
    }
}

/// The payload of the last record of partition 0 of `topic`, if it has one. Blocking.
fn last_record(settings: &KafkaSettings, topic: &str) -> Result<Option<String>, SessionError> {
    use rdkafka::consumer::BaseConsumer;
    let timeout = Duration::from_secs(10);
    let reader: BaseConsumer = client(settings)
        .set("group.id", format!("{topic}.reader"))
        .set("enable.auto.commit", "false")
        .create()?;
    let (low, high) = reader.fetch_watermarks(topic, 0, timeout)?;
    if high <= low {
        return Ok(None);
    }
    let mut at = TopicPartitionList::new();
    at.add_partition_offset(topic, 0, Offset::Offset(high - 1))?;
    reader.assign(&at)?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match reader.poll(Duration::from_millis(200)) {
            Some(Ok(record)) => {
                return Ok(Some(String::from_utf8_lossy(record.payload().unwrap_or_default()).into_owned()))
            }
            Some(Err(e)) => return Err(e.into()),
            None if std::time::Instant::now() > deadline => return Err(SessionError::Closed),
            None => {}
        }
    }
}

/// Takes every partition of the consumer's topic, from the offset its group committed.
///
/// Assigned, not subscribed: the process is the only consumer of its queues (see [`claim`]),
/// so there is nothing to balance, and no rebalance can hand a partition to a member that
/// died or take one from under a batch in flight. Offsets are still committed in the group
/// named after the queue, which is where the next start (or any Kafka tool) reads them.
/// Blocking: run it off the runtime.
fn assign_all(group: &GroupConsumer) -> Result<(), SessionError> {
    let metadata = group.consumer.fetch_metadata(Some(&group.topic), Duration::from_secs(10))?;
    let mut list = TopicPartitionList::new();
    for topic in metadata.topics().iter().filter(|t| t.name() == group.topic) {
        for partition in topic.partitions() {
            list.add_partition_offset(&group.topic, partition.id(), Offset::Stored)?;
        }
    }
    if list.count() == 0 {
        return Err(SessionError::UnknownQueue(group.topic.clone()));
    }
    group.consumer.assign(&list)?;
    Ok(())
}

/// One consumer's forwarding task and what it needs.
struct Forward {
    group: Arc<GroupConsumer>,
    from: usize,
    queue: String,
    sink: super::Sink,
    metrics: Arc<super::BusMetrics>,
}

impl Forward {
    /// Hands records to the pipeline until told to stop. Errors that librdkafka reports on the
    /// stream (a broker away, a rebalance) are passing: it reconnects by itself.
    async fn run(self, stop: CancellationToken) -> Result<(), SessionError> {
        let mut stream = self.group.consumer.stream();
        loop {
            let input = tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                item = stream.next() => match item {
                    Some(Ok(record)) => {
                        self.metrics.deliveries.inc();
                        let received = Delivery::of(record::received(self.from, &self.queue, &record));
                        let receipt = Receipt(ReceiptOf::Kafka {
                            partition: record.partition(),
                            offset: record.offset(),
                            consumer: self.group.clone(),
                        });
                        (received, receipt)
                    }
                    Some(Err(e)) => {
                        tracing::debug!(queue = self.queue, error = %e, "consumer error");
                        continue;
                    }
                    None => return Err(SessionError::ConsumerEnded(self.queue.clone())),
                }
            };
            if self.sink.send(input).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Is this a refusal of the record itself, whatever the broker's state? (Anything else may be
/// a broker that is unwell: see [`Failures`].)
fn refusal_of_the_record(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessage
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::InvalidTimestamp
                | RDKafkaErrorCode::MessageBatchTooLarge
                | RDKafkaErrorCode::InvalidRequiredAcks
                | RDKafkaErrorCode::PolicyViolation
        )
    )
}

/// What failed in one session, and whether the broker took anything meanwhile.
///
/// A failure counts against its entry (a strike) only if the broker is shown to work: it is a
/// refusal of the record itself, or the broker took another of our records in the same
/// session. A broker that fails everything (tansu answers every request with an error while it
/// shuts down; a real broker may lose its storage) is an outage, not a reason to park innocent
/// messages: the session ends and the next one sends them again, after the backoff.
#[derive(Default)]
struct Failures {
    took_any: bool,
    failed: Vec<(u64, SendError)>,
}

impl Failures {
    /// Parks what must be parked and returns the session's end, if it must end.
    fn settle(self, outbox: &Outbox, strikes: &mut Strikes) -> Result<(), SessionError> {
        let mut end = None;
        for (id, error) in self.failed {
            let fault = match &error {
                SendError::NoTopic { .. } => true,
                SendError::Kafka(e) => (self.took_any || refusal_of_the_record(e)) && strikes.strike(id),
            };
            if fault {
                tracing::warn!(id, error = %error, "outbox entry parked");
                outbox.park(id, &format!("the broker refused it {STRIKES} times, last: {error}"));
            } else if let (None, SendError::Kafka(error)) = (&end, error) {
                end = Some(SessionError::Entry { id, error });
            }
        }
        end.map_or(Ok(()), Err)
    }
}

/// Publishes durable entries until an entry fails (then, once what is in flight has reported,
/// the session ends, and the next one sends again what was not reported) or the outbox is
/// dropped.
async fn relay(
    outbox: &Arc<Outbox>,
    producer: &FutureProducer,
    topology: &Topology,
    window: usize,
    strikes: &mut Strikes,
) -> Result<(), SessionError> {
    let window = window.max(1);
    let mut durable = outbox.watch_durable();
    let mut in_flight: VecDeque<(u64, DeliveryFuture)> = VecDeque::with_capacity(window);
    let mut next: u64 = 0;
    let mut failures = Failures::default();
    loop {
        // Once something failed, nothing new goes out: what is in flight reports, then the
        // failures are settled.
        let failing = !failures.failed.is_empty();
        if failing && in_flight.is_empty() {
            let took_any = failures.took_any;
            failures.settle(outbox, strikes)?;
            failures = Failures { took_any, failed: Vec::new() };
            continue;
        }
        let upto = *durable.borrow_and_update();
        let room = window.saturating_sub(in_flight.len());
        if !failing && room > 0 && next <= upto {
            let entries = outbox.read(next, upto, room);
            if let Some(&(last, _)) = entries.last() {
                for (id, message) in entries {
                    match send(producer, topology, &message) {
                        Ok(delivery) => in_flight.push_back((id, delivery)),
                        Err(e) => failures.failed.push((id, e)),
                    }
                }
                next = last + 1;
                continue;
            }
        }
        tokio::select! {
            report = async { (&mut in_flight.front_mut().expect("not empty").1).await }, if !in_flight.is_empty() => {
                let (id, _) = in_flight.pop_front().expect("not empty");
                match report {
                    Ok(Ok(_)) => {
                        outbox.confirmed(id);
                        strikes.cleared(id);
                        failures.took_any = true;
                    }
                    Ok(Err((e, _))) => failures.failed.push((id, SendError::Kafka(e))),
                    Err(_canceled) => return Err(SessionError::Closed),
                }
            }
            changed = durable.changed(), if !failing && room > 0 => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error("no topic for the route {exchange:?} {key:?} in this namespace")]
    NoTopic { exchange: String, key: String },
    #[error(transparent)]
    Kafka(KafkaError),
}

/// Hands one message to the producer.
fn send(
    producer: &FutureProducer,
    topology: &Topology,
    message: &Message,
) -> Result<DeliveryFuture, SendError> {
    let route = &message.route;
    let topic = topology
        .kafka_topic(&route.exchange, &route.key)
        .ok_or_else(|| SendError::NoTopic { exchange: route.exchange.clone(), key: route.key.clone() })?;
    let mut record = FutureRecord::to(&topic)
        .key(message.correlation_id.as_bytes())
        .payload(&message.body)
        .headers(record::headers(message));
    if let Some(seconds) = message.timestamp {
        record = record.timestamp(i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX));
    }
    producer.send_result(record).map_err(|(e, _)| SendError::Kafka(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outbox() -> (tempfile::TempDir, Arc<Outbox>) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let outbox = Outbox::open(&db).unwrap();
        for i in 0..3u8 {
            let route = crate::bus::Route { exchange: "x".into(), key: String::new() };
            outbox.stage_alone(&Message::json(route, "o", "k", vec![i])).unwrap();
        }
        (dir, outbox)
    }

    fn failed(took_any: bool, ids: &[u64], code: RDKafkaErrorCode) -> Failures {
        let failed =
            ids.iter().map(|id| (*id, SendError::Kafka(KafkaError::MessageProduction(code)))).collect();
        Failures { took_any, failed }
    }

    #[test]
    fn a_broker_that_fails_everything_parks_nothing_however_often() {
        let (_dir, outbox) = outbox();
        let mut strikes = Strikes::default();
        for _ in 0..10 {
            let settled = failed(false, &[1, 2, 3], RDKafkaErrorCode::Unknown).settle(&outbox, &mut strikes);
            assert!(settled.is_err(), "the session ends and tries again");
        }
        assert_eq!(outbox.parked_count(), 0);
    }

    #[test]
    fn an_entry_that_fails_while_others_pass_is_parked_at_its_third_strike() {
        let (_dir, outbox) = outbox();
        let mut strikes = Strikes::default();
        for round in 1..=STRIKES {
            let _ = failed(true, &[2], RDKafkaErrorCode::Unknown).settle(&outbox, &mut strikes);
            assert_eq!(outbox.parked_count(), usize::from(round == STRIKES), "round {round}");
        }
        // A record the broker refuses for what it is needs no other record to pass.
        for _ in 0..STRIKES {
            let _ = failed(false, &[3], RDKafkaErrorCode::MessageSizeTooLarge).settle(&outbox, &mut strikes);
        }
        assert_eq!(outbox.parked_count(), 2);
    }
}
