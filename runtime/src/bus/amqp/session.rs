//! One AMQP session, owned by us: connect, declare, consume, relay; on any failure it ends,
//! and [`Bus::run`](crate::bus::Bus::run) backs off with jitter and starts another. We do not
//! use lapin's automatic recovery, which can hang after a broker restart; a fresh connection
//! with everything redeclared is simpler to trust.
//!
//! **One process consumes a queue, and always with the same store.** Each process keeps its
//! barrier or its sagas in its own store, so a second instance on the same namespace would
//! miss the first one's records (a redelivered command could charge twice). Quorum queues
//! ignore AMQP's exclusive consume, so before consuming a queue a process claims it:
//! - its lock, an exclusive queue (`{queue}.lock`) that only one connection can hold and that
//!   goes with the connection; a process refused the lock at start-up gives up with one clear
//!   line, and one that consumed before and is refused after a reconnect stands by;
//! - its owner, a durable queue (`{queue}.owner`) holding the id of the store that consumes
//!   it; a process with another store stops instead of taking the queue over.

use std::sync::Arc;
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, Consumer, Event};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::properties as amqp;
use super::relay::{self, RelayState};
use super::unbound::Unbound;
use crate::bus::{Bus, BusMetrics, Delivery, Receipt, ReceiptOf, SessionError, Sink};
use crate::config::AmqpUrl;

/// How long a session may take to connect, declare, claim and start consuming. A node that
/// accepts the TCP connection but never answers (still booting, or stalled) would otherwise
/// hold the session in its setup for good: the bus stays down, and with it the timers that
/// retry and time out sagas.
const SETUP_TIMEOUT: Duration = Duration::from_secs(20);

pub(in crate::bus) async fn session(
    bus: &Bus,
    url: &AmqpUrl,
    stop_consuming: &CancellationToken,
    stop: &CancellationToken,
    relay_state: &mut RelayState,
    consumed: &mut bool,
) -> Result<(), SessionError> {
    let set_up_by = tokio::time::Instant::now() + SETUP_TIMEOUT;
    let timed_out = |_| SessionError::SetupTimedOut(SETUP_TIMEOUT);
    let connect = Connection::connect(url.expose(), ConnectionProperties::default());
    let connection = tokio::select! {
        _ = stop.cancelled() => return Ok(()),
        connected = tokio::time::timeout_at(set_up_by, connect) => connected.map_err(timed_out)??,
    };
    // Listened to from the start: under a resource alarm the broker blocks the setup's own
    // publish (the claim of a fresh namespace), and that must be reported by name, not only as
    // a setup that took too long. A block that came before the listener is in the status.
    let mut events = connection.events_listener();
    if connection.status().blocked() {
        report_blocked(bus, "(not heard: the block came before the session listened)");
    }
    let result = async {
        let setup = tokio::time::timeout_at(set_up_by, open(bus, &connection, stop_consuming, consumed));
        tokio::pin!(setup);
        let opened = loop {
            tokio::select! {
                _ = stop.cancelled() => return Ok(()),
                opened = &mut setup => break opened.map_err(timed_out)??,
                // Only the broker's blocks are news here. An error also fails the setup's
                // pending call, and the setup's own error says more: a queue another instance
                // holds must end as `Exclusive`, not as the connection's error.
                Some(event) = events.next() => report_flow(bus, &event),
            }
        };
        serve(bus, url, opened, &mut events, stop_consuming, stop, relay_state).await
    }
    .await;
    bus.health.set_bus(false);
    bus.metrics.blocked.set(0);
    // Closing returns unacknowledged deliveries to their queues at once. When the broker is
    // already gone this fails fast; the timeout covers a half-open socket and a silent node.
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.close(200, "bye".into())).await;
    result
}

/// The session once it is set up: relays the outbox and forwards deliveries until told to
/// stop, or until the relay, a consumer or the connection fails.
async fn serve(
    bus: &Bus,
    url: &AmqpUrl,
    Opened { publish, mut consumers }: Opened,
    events: &mut (impl futures_lite::Stream<Item = Event> + Unpin),
    stop_consuming: &CancellationToken,
    stop: &CancellationToken,
    relay_state: &mut RelayState,
) -> Result<(), SessionError> {
    bus.health.set_bus(true);
    bus.metrics.connects.inc();
    tracing::info!(url = %url, namespace = bus.topology.namespace(), "bus connected");

    let mut unbound = Unbound::new(bus.events_unbound_recheck);
    let skipped = &bus.metrics.events_skipped;
    let relay = relay::run(&bus.outbox, &publish, bus.relay_window, &mut unbound, skipped, relay_state);
    tokio::pin!(relay);
    let result = loop {
        tokio::select! {
            _ = stop.cancelled() => break Ok(()),
            r = &mut relay => break r.map_err(SessionError::from),
            Some(joined) = consumers.join_next() => match joined {
                Ok(Ok(())) if stop_consuming.is_cancelled() => continue,
                Ok(Ok(())) => break Err(SessionError::Closed),
                Ok(Err(e)) => break Err(e),
                Err(e) => break Err(SessionError::ConsumerEnded(e.to_string())),
            },
            event = events.next() => if let Err(e) = on_event(bus, event) {
                break Err(e);
            },
        }
    };
    consumers.abort_all();
    result
}

/// What a session does with an event of its connection: an error or the end of the events
/// ends the session; a block by the broker is reported until it lifts.
fn on_event(bus: &Bus, event: Option<Event>) -> Result<(), SessionError> {
    match event {
        Some(Event::Error(e)) => Err(e.into()),
        Some(event) => {
            report_flow(bus, &event);
            Ok(())
        }
        None => Err(SessionError::Closed),
    }
}

/// Reports the broker blocking and unblocking publishing. Nothing is lost while it blocks: the
/// relay's publishes wait, and the outbox keeps every message. Say so, or sagas would stall
/// without a word.
fn report_flow(bus: &Bus, event: &Event) {
    match event {
        Event::ConnectionBlocked(reason) => report_blocked(bus, reason),
        Event::ConnectionUnblocked => {
            bus.metrics.blocked.set(0);
            tracing::info!("the broker accepts publishing again");
        }
        _ => {}
    }
}

fn report_blocked(bus: &Bus, reason: &str) {
    bus.metrics.blocked.set(1);
    tracing::warn!(
        reason,
        "the broker blocks publishing (a resource alarm); messages wait in the outbox until it lifts"
    );
}

/// A session's connection once it is set up: the channel the relay publishes on, and one
/// forwarding task per consumer.
struct Opened {
    publish: lapin::Channel,
    consumers: JoinSet<Result<(), SessionError>>,
}

/// Declares the topology and (unless told to stop consuming) claims and consumes the
/// process's queues.
async fn open(
    bus: &Bus,
    connection: &Connection,
    stop_consuming: &CancellationToken,
    consumed: &mut bool,
) -> Result<Opened, SessionError> {
    let setup = connection.create_channel().await?;
    super::topology::declare(&setup, &bus.topology).await?;
    let publish = connection.create_channel().await?;
    publish.confirm_select(ConfirmSelectOptions::default()).await?;

    let mut consumers = JoinSet::new();
    if !stop_consuming.is_cancelled() {
        for spec in &bus.consumers {
            claim(bus, connection, &publish, &spec.queue).await?;
        }
        for (from, spec) in bus.consumers.iter().enumerate() {
            let channel = connection.create_channel().await?;
            channel.basic_qos(spec.prefetch, BasicQosOptions::default()).await?;
            let tag = format!("{}-{}", spec.queue, std::process::id());
            let consumer = channel
                .basic_consume(
                    spec.queue.as_str().into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            consumers.spawn(forward(
                Forward {
                    channel,
                    tag,
                    queue: spec.queue.clone(),
                    from,
                    sink: bus.sink.clone(),
                    metrics: bus.metrics.clone(),
                },
                consumer,
                stop_consuming.clone(),
            ));
        }
        *consumed = true;
    }
    Ok(Opened { publish, consumers })
}

/// Claims `queue` for this process: its lock for this connection, then its owner for this
/// process's store (see the module's comment).
async fn claim(
    bus: &Bus,
    connection: &Connection,
    publish: &lapin::Channel,
    queue: &str,
) -> Result<(), SessionError> {
    let channel = connection.create_channel().await?;
    let lock = QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
    channel
        .queue_declare(bus.topology.lock_queue(queue).as_str().into(), lock, FieldTable::default())
        .await
        .map_err(|e| match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp)
                if amqp.kind() == &AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) =>
            {
                SessionError::Exclusive(queue.to_owned())
            }
            _ => SessionError::Amqp(e),
        })?;
    let owner = bus.topology.owner_queue(queue);
    let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
    channel.queue_declare(owner.as_str().into(), durable, FieldTable::default()).await?;
    match channel.basic_get(owner.as_str().into(), BasicGetOptions { no_ack: false }).await? {
        Some(message) => {
            let holder = String::from_utf8_lossy(&message.delivery.data).into_owned();
            message.delivery.nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() }).await?;
            if holder != bus.store_id {
                return Err(SessionError::OtherStore { queue: queue.to_owned(), owner: holder });
            }
        }
        None => {
            let properties = lapin::BasicProperties::default().with_delivery_mode(2);
            publish
                .basic_publish(
                    "".into(),
                    owner.as_str().into(),
                    BasicPublishOptions::default(),
                    bus.store_id.as_bytes(),
                    properties,
                )
                .await?
                .await?;
        }
    }
    let _ = channel.close(200, "claimed".into()).await;
    Ok(())
}

/// One consumer's forwarding task and what it needs.
struct Forward {
    channel: lapin::Channel,
    tag: String,
    queue: String,
    from: usize,
    sink: Sink,
    metrics: Arc<BusMetrics>,
}

/// Hands deliveries of one consumer to the pipeline until told to stop or the channel fails.
async fn forward(f: Forward, mut consumer: Consumer, stop: CancellationToken) -> Result<(), SessionError> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = f.channel.basic_cancel(f.tag.as_str().into(), BasicCancelOptions::default()).await;
                return Ok(());
            }
            item = consumer.next() => match item {
                Some(Ok(delivery)) => {
                    f.metrics.deliveries.inc();
                    if delivery.redelivered {
                        f.metrics.redeliveries.inc();
                    }
                    let received = Delivery::of(amqp::received(f.from, &f.queue, &delivery));
                    let receipt = Receipt(ReceiptOf::Amqp { consumer: f.from, tag: delivery.delivery_tag, acker: delivery.acker });
                    if f.sink.send((received, receipt)).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(SessionError::ConsumerEnded(f.queue.clone())),
            }
        }
    }
}
