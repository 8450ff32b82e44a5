//! The Kafka side of the operators' view ([`crate::bus::inspect`]): the dead-letter topic, read
//! from its beginning by a client of its own that joins no group and commits nothing, so that
//! looking changes nothing. The other queues are left out: a topic has no consumers to count,
//! and what waits depends on a group's offsets, not on the topic.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};
use sagaflow_events::Topology;

use super::record;
use crate::bus::inspect::{InspectError, QueueState, MAX_BROWSED};
use crate::bus::Received;
use crate::config::KafkaSettings;

const TIMEOUT: Duration = Duration::from_secs(5);

fn reader(settings: &KafkaSettings, topology: &Topology) -> Result<BaseConsumer, InspectError> {
    Ok(super::client(settings)
        .set("group.id", format!("{}.inspector", topology.dead_letter_queue()))
        .set("enable.auto.commit", "false")
        .create()?)
}

/// (partition, low, high) of every partition of `topic`.
fn watermarks(consumer: &BaseConsumer, topic: &str) -> Result<Vec<(i32, i64, i64)>, InspectError> {
    let metadata = consumer.fetch_metadata(Some(topic), TIMEOUT)?;
    let mut out = Vec::new();
    for partition in metadata.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions()) {
        let (low, high) = consumer.fetch_watermarks(topic, partition.id(), TIMEOUT)?;
        out.push((partition.id(), low, high));
    }
    Ok(out)
}

fn count(marks: &[(i32, i64, i64)]) -> u32 {
    let total: i64 = marks.iter().map(|(_, low, high)| (high - low).max(0)).sum();
    u32::try_from(total).unwrap_or(u32::MAX)
}

/// The dead letters' count, if `names` asks for the dead-letter queue.
pub(crate) async fn queues(
    settings: &KafkaSettings,
    topology: &Topology,
    names: &[String],
) -> Result<Vec<(String, QueueState)>, InspectError> {
    let queue = topology.dead_letter_queue();
    if !names.contains(&queue) {
        return Ok(Vec::new());
    }
    let (settings, topology) = (settings.clone(), topology.clone());
    tokio::task::spawn_blocking(move || {
        let consumer = reader(&settings, &topology)?;
        let messages = count(&watermarks(&consumer, &queue)?);
        Ok(vec![(queue, QueueState { consumers: 0, messages })])
    })
    .await
    .unwrap_or_else(|e| Err(InspectError::NotOnKafka(e.to_string())))
}

/// The first [`MAX_BROWSED`] dead letters (partition by partition, each oldest first), and how
/// many the topic holds.
pub(crate) async fn dead_letters(
    settings: &KafkaSettings,
    topology: &Topology,
) -> Result<(Vec<Received>, u32), InspectError> {
    let (settings, topology) = (settings.clone(), topology.clone());
    tokio::task::spawn_blocking(move || {
        let topic = topology.dead_letter_queue();
        let consumer = reader(&settings, &topology)?;
        let marks = watermarks(&consumer, &topic)?;
        let mut seen = Vec::new();
        for &(partition, low, high) in &marks {
            if high <= low || seen.len() >= MAX_BROWSED {
                continue;
            }
            let mut list = TopicPartitionList::new();
            list.add_partition_offset(&topic, partition, Offset::Offset(low))?;
            consumer.assign(&list)?;
            let deadline = std::time::Instant::now() + TIMEOUT;
            let mut next = low;
            while next < high && seen.len() < MAX_BROWSED && std::time::Instant::now() < deadline {
                if let Some(polled) = consumer.poll(Duration::from_millis(200)) {
                    let got = polled?;
                    next = rdkafka::Message::offset(&got) + 1;
                    seen.push(record::received(0, &topic, &got));
                }
            }
        }
        Ok((seen, count(&marks)))
    })
    .await
    .unwrap_or_else(|e| Err(InspectError::NotOnKafka(e.to_string())))
}
