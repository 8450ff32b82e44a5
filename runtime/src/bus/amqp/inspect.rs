//! The RabbitMQ side of the operators' view ([`crate::bus::inspect`]).
//!
//! The broker stays the owner of the dead letters (the chaos verdict and the tests read the
//! queue too): browsing takes up to [`MAX_BROWSED`] messages without acknowledging them and
//! closes the channel, which gives them back in their order. Requeueing publishes with a
//! confirm and only then acknowledges the dead letter, so a crash in between leaves a copy in
//! both places rather than none; the participants' barrier makes the copy harmless.
//!
//! One short-lived connection per call: these are operator actions and page loads, not the hot
//! path, and a connection of its own cannot disturb the process's consumers.

use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use sagaflow_events::{headers, Topology};

use super::properties as amqp;
use crate::bus::dead_letter::{DROPPED_HEADERS, ORIGINAL_PROPERTY_PREFIX};
use crate::bus::inspect::{Disposal, InspectError, QueueState, MAX_BROWSED};
use crate::bus::Received;
use crate::config::AmqpUrl;

/// The RabbitMQ side of [`Inspector`](crate::bus::inspect::Inspector).
pub(crate) struct Rabbit<'a> {
    pub url: &'a AmqpUrl,
    pub topology: &'a Topology,
}

impl Rabbit<'_> {
    async fn connect(&self) -> Result<Connection, InspectError> {
        Ok(Connection::connect(self.url.expose(), ConnectionProperties::default()).await?)
    }

    async fn channel(&self) -> Result<(Connection, Channel), InspectError> {
        let connection = self.connect().await?;
        let channel = connection.create_channel().await?;
        Ok((connection, channel))
    }

    /// The state of each named queue; a queue that does not exist is left out.
    pub async fn queues(&self, names: &[String]) -> Result<Vec<(String, QueueState)>, InspectError> {
        let connection = self.connect().await?;
        let mut out = Vec::new();
        for name in names {
            // A passive declare of a missing queue closes its channel: one channel each.
            let channel = connection.create_channel().await?;
            let passive = QueueDeclareOptions { passive: true, ..QueueDeclareOptions::default() };
            if let Ok(q) = channel.queue_declare(name.as_str().into(), passive, FieldTable::default()).await {
                out.push((
                    name.clone(),
                    QueueState { consumers: q.consumer_count(), messages: q.message_count() },
                ));
                let _ = channel.close(200, "done".into()).await;
            }
        }
        let _ = connection.close(200, "done".into()).await;
        Ok(out)
    }

    /// The first [`MAX_BROWSED`] dead letters, oldest first, and how many the queue holds.
    pub async fn dead_letters(&self) -> Result<(Vec<Received>, u32), InspectError> {
        let (connection, channel) = self.channel().await?;
        let queue = self.topology.dead_letter_queue();
        let (mut seen, mut total) = (Vec::new(), 0);
        while seen.len() < MAX_BROWSED {
            let Some(got) = channel.basic_get(queue.as_str().into(), BasicGetOptions::default()).await?
            else {
                break;
            };
            total = total.max(got.message_count + 1 + seen.len() as u32);
            seen.push(amqp::received(0, &queue, &got.delivery));
        }
        // Closing gives back everything taken and not acknowledged.
        let _ = connection.close(200, "browsed".into()).await;
        Ok((seen, total))
    }

    /// Requeues or discards the dead letter whose message id is `id`. Returns the queue it
    /// came from.
    pub async fn dispose(&self, id: &str, disposal: Disposal) -> Result<Option<String>, InspectError> {
        let (connection, channel) = self.channel().await?;
        let result = self.dispose_on(&channel, id, disposal).await;
        let _ = connection.close(200, "done".into()).await;
        result
    }

    async fn dispose_on(
        &self,
        channel: &Channel,
        id: &str,
        disposal: Disposal,
    ) -> Result<Option<String>, InspectError> {
        let queue = self.topology.dead_letter_queue();
        for _ in 0..MAX_BROWSED {
            let Some(got) = channel.basic_get(queue.as_str().into(), BasicGetOptions::default()).await?
            else {
                break;
            };
            let received = amqp::received(0, &queue, &got.delivery);
            if received.message_id.as_deref() != Some(id) {
                continue;
            }
            let origin = received.header_text(headers::DEAD_LETTER_QUEUE).map(str::to_owned);
            if disposal == Disposal::Requeue {
                let origin = origin.clone().ok_or_else(|| InspectError::NoOrigin(id.to_owned()))?;
                if !self.topology.all_queues().contains(&origin) || origin == queue {
                    return Err(InspectError::ForeignQueue { id: id.to_owned(), queue: origin });
                }
                channel.confirm_select(ConfirmSelectOptions::default()).await?;
                let confirm = channel
                    .basic_publish(
                        "".into(),
                        origin.as_str().into(),
                        BasicPublishOptions::default(),
                        &received.body,
                        as_first_sent(&received),
                    )
                    .await?
                    .await?;
                if !confirm.is_ack() {
                    return Err(InspectError::NotConfirmed);
                }
            }
            got.delivery.acker.ack(BasicAckOptions::default()).await?;
            return Ok(origin);
        }
        Err(InspectError::NoSuchDeadLetter(id.to_owned()))
    }
}

/// The properties the message had before it was dead-lettered: sagaflow's own headers removed,
/// and the properties kept as headers put back as properties where they are harmless.
fn as_first_sent(dead: &Received) -> BasicProperties {
    let mut table = FieldTable::default();
    for (name, value) in &dead.headers {
        let ours = [headers::DEAD_LETTER_REASON, headers::DEAD_LETTER_QUEUE, DROPPED_HEADERS]
            .contains(&name.as_str())
            || name.starts_with(ORIGINAL_PROPERTY_PREFIX);
        if !ours {
            table.insert(ShortString::from(name.as_str()), amqp::amqp_value(value));
        }
    }
    let mut p = BasicProperties::default().with_headers(table).with_delivery_mode(2);
    if let Some(v) = &dead.message_id {
        p = p.with_message_id(v.as_str().into());
    }
    if let Some(v) = &dead.correlation_id {
        p = p.with_correlation_id(v.as_str().into());
    }
    if let Some(v) = &dead.kind {
        p = p.with_type(v.as_str().into());
    }
    if let Some(v) = &dead.content_type {
        p = p.with_content_type(v.as_str().into());
    }
    if let Some(v) = dead.timestamp {
        p = p.with_timestamp(v);
    }
    p
}
