//! Declares the namespace's exchanges, queues and bindings. Every process declares all of them
//! on every (re)connection: declaring is idempotent, and whoever starts first creates them, so
//! no message is ever published to a queue that does not exist yet.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};
use sagaflow_events::Topology;

/// How many times the broker hands out one message before dead-lettering it. Our consumers
/// never requeue on purpose, so only a message that is in flight through this many crashes
/// reaches it: a poison message that kills its consumer, not a slow one.
pub const DELIVERY_LIMIT: i64 = 50;

pub async fn declare(channel: &Channel, topology: &Topology) -> Result<(), lapin::Error> {
    let durable = ExchangeDeclareOptions { durable: true, ..ExchangeDeclareOptions::default() };
    let exchanges = [
        (topology.intake_exchange(), ExchangeKind::Fanout),
        (topology.commands_exchange(), ExchangeKind::Direct),
        (topology.replies_exchange(), ExchangeKind::Fanout),
        (topology.events_exchange(), ExchangeKind::Topic),
        (topology.dead_letter_exchange(), ExchangeKind::Fanout),
    ];
    for (name, kind) in exchanges {
        channel.exchange_declare(name.as_str().into(), kind, durable, FieldTable::default()).await?;
    }

    // The dead-letter queue itself has no dead-letter exchange: it is the end of the line.
    queue(channel, &topology.dead_letter_queue(), None).await?;
    bind(channel, &topology.dead_letter_queue(), &topology.dead_letter_exchange(), "").await?;

    let dlx = Some(topology.dead_letter_exchange());
    queue(channel, &topology.intake_queue(), dlx.as_deref()).await?;
    bind(channel, &topology.intake_queue(), &topology.intake_exchange(), "").await?;
    queue(channel, &topology.replies_queue(), dlx.as_deref()).await?;
    bind(channel, &topology.replies_queue(), &topology.replies_exchange(), "").await?;
    let completions = topology.completions_queue();
    queue(channel, &completions, dlx.as_deref()).await?;
    bind(channel, &completions, &topology.events_exchange(), &topology.event_routing_key("OrderCompleted"))
        .await?;
    // Each participant's queue is bound by its name, those of defined sagas included.
    for participant in topology.participant_names() {
        let q = topology.command_queue_of(&participant);
        queue(channel, &q, dlx.as_deref()).await?;
        bind(channel, &q, &topology.commands_exchange(), &participant).await?;
    }
    Ok(())
}

/// A durable quorum queue: replicated where there are several nodes, kept across broker
/// restarts, and with a delivery limit that ends poison loops.
async fn queue(
    channel: &Channel,
    name: &str,
    dead_letter_exchange: Option<&str>,
) -> Result<(), lapin::Error> {
    let mut args = FieldTable::default();
    args.insert(ShortString::from("x-queue-type"), AMQPValue::LongString(LongString::from("quorum")));
    if let Some(dlx) = dead_letter_exchange {
        args.insert(
            ShortString::from("x-dead-letter-exchange"),
            AMQPValue::LongString(LongString::from(dlx)),
        );
        args.insert(ShortString::from("x-delivery-limit"), AMQPValue::LongLongInt(DELIVERY_LIMIT));
    }
    let options = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(name.into(), options, args).await?;
    Ok(())
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> Result<(), lapin::Error> {
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

/// Deletes every queue and exchange of the namespace, with whatever they hold. For tests and
/// demos that made a namespace of their own: quorum queues cost the broker a Raft group each,
/// so leaving them behind slows it down for everyone.
pub async fn delete(channel: &Channel, topology: &Topology) -> Result<(), lapin::Error> {
    use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
    for queue in topology.all_queues() {
        channel.queue_delete(queue.as_str().into(), QueueDeleteOptions::default()).await?;
    }
    for exchange in topology.all_exchanges() {
        channel.exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default()).await?;
    }
    Ok(())
}
