//! The test's own Kafka client: raw records to a namespace's topics (garbage, hostile headers,
//! forged commands), and the dead-letter topic read back from the beginning.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use sagaflow_events::Topology;

pub struct KafkaTestBus {
    pub brokers: String,
    pub topology: Topology,
    producer: FutureProducer,
}

/// A dead letter as read from the topic.
#[derive(Debug)]
pub struct Letter {
    pub body: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
}

impl Letter {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    }
}

impl KafkaTestBus {
    pub fn new(brokers: &str, namespace: &str) -> Self {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("message.max.bytes", "2000000")
            .create()
            .expect("a producer");
        Self { brokers: brokers.to_owned(), topology: Topology::new(namespace), producer }
    }

    /// Sends `body` with `headers` to `topic`, as it is, and waits for the broker to have it.
    pub async fn publish_raw(&self, topic: &str, key: &str, body: &[u8], headers: &[(&str, &[u8])]) {
        let mut owned = OwnedHeaders::new();
        for (key, value) in headers {
            owned = owned.insert(Header { key, value: Some(*value) });
        }
        let record = FutureRecord::to(topic).key(key).payload(body).headers(owned);
        self.producer
            .send(record, Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)
            .expect("the broker takes it");
    }

    /// Whether the broker has `topic` (with at least one partition).
    pub fn topic_exists(&self, topic: &str) -> bool {
        let consumer: BaseConsumer =
            ClientConfig::new().set("bootstrap.servers", &self.brokers).create().expect("a consumer");
        let metadata = consumer.fetch_metadata(None, Duration::from_secs(5)).expect("metadata");
        metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
    }

    /// Every record in the dead-letter topic now.
    pub fn dead_letters(&self) -> Vec<Letter> {
        let topic = self.topology.dead_letter_queue();
        let timeout = Duration::from_secs(5);
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set("group.id", format!("{topic}.test-reader"))
            .set("enable.auto.commit", "false")
            .create()
            .expect("a consumer");
        let metadata = consumer.fetch_metadata(Some(&topic), timeout).expect("metadata");
        let mut letters = Vec::new();
        for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
            let (low, high) = consumer.fetch_watermarks(&topic, partition.id(), timeout).expect("watermarks");
            if high <= low {
                continue;
            }
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&topic, partition.id(), Offset::Offset(low)).unwrap();
            consumer.assign(&list).unwrap();
            let deadline = std::time::Instant::now() + timeout;
            let mut read = low;
            while read < high && std::time::Instant::now() < deadline {
                if let Some(Ok(record)) = consumer.poll(Duration::from_millis(200)) {
                    read = record.offset() + 1;
                    let headers = record
                        .headers()
                        .map(|h| {
                            h.iter()
                                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                                .collect()
                        })
                        .unwrap_or_default();
                    letters.push(Letter { body: record.payload().unwrap_or_default().to_vec(), headers });
                }
            }
        }
        letters
    }
}
