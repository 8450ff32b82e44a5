//! The broker's own ceiling: what RabbitMQ carries with nothing of ours in the way. Persistent
//! messages of the saga's size into quorum queues (the queue type the system declares), published
//! with confirms through the same window as our relay, then consumed with acks. As many queues,
//! publishers and consumers as the system has processes that publish.

use std::time::{Duration, Instant};

use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use tokio::task::JoinSet;

#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ceiling {
    pub messages: usize,
    pub message_bytes: usize,
    pub queues: usize,
    pub publish_per_sec: f64,
    pub consume_per_sec: f64,
    /// Messages carried per second, publish and consume together: messages / (publish time +
    /// consume time). What the saga system's messages are compared with.
    pub messages_per_sec: f64,
}

/// A command as the orchestrator sends it, to size the test messages like the real ones.
pub fn typical_message() -> Vec<u8> {
    let body = serde_json::json!({
        "sagaId": "bench-000000-00001234", "orderId": "bench-000000-00001234", "step": "payment",
        "phase": "action", "attempt": 1, "idempotencyKey": "bench-000000-00001234/payment/action",
        "command": "chargePayment", "userId": "customer7", "amountCents": 4999
    });
    serde_json::to_vec(&body).expect("serialises")
}

pub async fn measure(url: &str, namespace: &str, messages: usize, window: usize) -> anyhow::Result<Ceiling> {
    const QUEUES: usize = 4;
    let body = typical_message();
    let per_queue = messages / QUEUES;
    let queue_names: Vec<String> = (0..QUEUES).map(|i| format!("{namespace}.ceiling.{i}")).collect();
    let setup = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = setup.create_channel().await?;
    for q in &queue_names {
        let mut args = FieldTable::default();
        args.insert(ShortString::from("x-queue-type"), AMQPValue::LongString(LongString::from("quorum")));
        let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        channel.queue_declare(q.as_str().into(), options, args).await?;
    }

    let started = Instant::now();
    let mut publishers = JoinSet::new();
    for q in queue_names.clone() {
        let (url, body) = (url.to_owned(), body.clone());
        publishers.spawn(async move { publish(&url, &q, &body, per_queue, window).await });
    }
    while let Some(r) = publishers.join_next().await {
        r??;
    }
    let publish_time = started.elapsed();

    let started = Instant::now();
    let mut consumers = JoinSet::new();
    for q in queue_names.clone() {
        let url = url.to_owned();
        consumers.spawn(async move { consume(&url, &q, per_queue, window).await });
    }
    while let Some(r) = consumers.join_next().await {
        r??;
    }
    let consume_time = started.elapsed();

    for q in &queue_names {
        let _ = channel.queue_delete(q.as_str().into(), QueueDeleteOptions::default()).await;
    }
    let _ = setup.close(200, "bye".into()).await;
    let total = per_queue * QUEUES;
    let rate = |d: Duration| total as f64 / d.as_secs_f64().max(0.001);
    Ok(Ceiling {
        messages: total,
        message_bytes: body.len(),
        queues: QUEUES,
        publish_per_sec: rate(publish_time).round(),
        consume_per_sec: rate(consume_time).round(),
        messages_per_sec: rate(publish_time + consume_time).round(),
    })
}

/// Publishes `count` persistent messages with at most `window` awaiting their confirms.
async fn publish(url: &str, queue: &str, body: &[u8], count: usize, window: usize) -> anyhow::Result<()> {
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.confirm_select(ConfirmSelectOptions::default()).await?;
    let mut in_flight: std::collections::VecDeque<lapin::PublisherConfirm> =
        std::collections::VecDeque::with_capacity(window);
    for i in 0..count {
        if in_flight.len() == window {
            let confirm = in_flight.pop_front().expect("window is full");
            anyhow::ensure!(confirm.await?.is_ack(), "the broker refused a message");
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(format!("ceiling-{i}").into());
        let confirm = channel
            .basic_publish("".into(), queue.into(), BasicPublishOptions::default(), body, properties)
            .await?;
        in_flight.push_back(confirm);
    }
    for confirm in in_flight {
        anyhow::ensure!(confirm.await?.is_ack(), "the broker refused a message");
    }
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}

/// Consumes `count` messages with manual acks, one ack per message as our consumers do.
async fn consume(url: &str, queue: &str, count: usize, prefetch: usize) -> anyhow::Result<()> {
    use futures_lite::StreamExt;
    let connection = Connection::connect(url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel.basic_qos(prefetch.min(u16::MAX as usize) as u16, BasicQosOptions::default()).await?;
    let mut consumer = channel
        .basic_consume(queue.into(), "ceiling".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await?;
    let mut seen = 0;
    while seen < count {
        let Some(delivery) = consumer.next().await else { anyhow::bail!("consumer of {queue} ended") };
        delivery?.ack(BasicAckOptions::default()).await?;
        seen += 1;
    }
    let _ = connection.close(200, "bye".into()).await;
    Ok(())
}
