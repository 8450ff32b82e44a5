//! The connection, owned by us: connect, declare, consume, relay; on any failure back off with
//! jitter and start again. We do not use lapin's automatic recovery, which can hang after a
//! broker restart; a fresh connection with everything redeclared is simpler to trust.
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
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::{
    BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, Consumer, Event};
use sagaflow_events::Topology;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::relay::{self, RelayState};
use super::unbound::Unbound;
use super::{amqp, Delivery, Receipt};
use crate::config::AmqpUrl;
use crate::health::Health;
use crate::metrics::Counter;
use crate::outbox::Outbox;
use crate::pipeline::Input;

/// A queue to consume. Its index in [`Bus::consumers`] tells its deliveries apart.
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

pub struct Bus<J> {
    pub url: AmqpUrl,
    pub topology: Topology,
    pub consumers: Vec<ConsumerSpec>,
    /// Where deliveries go: the process's pipeline.
    pub sink: mpsc::Sender<Input<J>>,
    pub outbox: Arc<Outbox>,
    /// Messages the relay keeps in flight, awaiting confirms.
    pub relay_window: usize,
    /// How long the relay skips public events for a route that no queue is bound to (zero:
    /// never).
    pub events_unbound_recheck: Duration,
    pub health: Health,
    pub metrics: Arc<BusMetrics>,
    /// The id of the process's store: what its queues' owner must be.
    pub store_id: String,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("another process holds the lock of {0}")]
    Exclusive(String),
    #[error("{queue} belongs to the store {owner}")]
    OtherStore { queue: String, owner: String },
    #[error("consumer of {0} ended")]
    ConsumerEnded(String),
    #[error("connection closed")]
    Closed,
}

impl<J: Send + 'static> Bus<J> {
    /// Runs until `stop`. `stop_consuming` ends the consumers first, so that a shutting-down
    /// process can finish and acknowledge what it holds while still connected.
    pub async fn run(
        self,
        stop_consuming: CancellationToken,
        stop: CancellationToken,
    ) -> Result<(), BusError> {
        let mut failures: u32 = 0;
        let mut relay = RelayState::default();
        let mut consumed = false;
        let mut refused_since: Option<Instant> = None;
        loop {
            let started = Instant::now();
            match self.session(&stop_consuming, &stop, &mut relay, &mut consumed).await {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.health.set_bus(false);
                    self.metrics.disconnects.inc();
                    relay.session_failed(&self.outbox, &e.to_string());
                    if let SessionError::OtherStore { queue, owner } = e {
                        return Err(BusError::OtherStore { queue, owner, ours: self.store_id.clone() });
                    }
                    if let SessionError::Exclusive(queue) = &e {
                        let since = *refused_since.get_or_insert_with(Instant::now);
                        if !consumed && since.elapsed() > EXCLUSIVE_GRACE {
                            return Err(BusError::AnotherInstance { queue: queue.clone() });
                        }
                        tracing::error!(queue, "another process consumes this queue; standing by");
                    } else {
                        refused_since = None;
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
    }

    async fn session(
        &self,
        stop_consuming: &CancellationToken,
        stop: &CancellationToken,
        relay_state: &mut RelayState,
        consumed: &mut bool,
    ) -> Result<(), SessionError> {
        let connection = Connection::connect(self.url.expose(), ConnectionProperties::default()).await?;
        let mut events = connection.events_listener();
        let setup = connection.create_channel().await?;
        super::topology::declare(&setup, &self.topology).await?;
        let publish = connection.create_channel().await?;
        publish.confirm_select(ConfirmSelectOptions::default()).await?;

        let mut consumers = JoinSet::new();
        if !stop_consuming.is_cancelled() {
            for spec in &self.consumers {
                self.claim(&connection, &publish, &spec.queue).await?;
            }
            for (from, spec) in self.consumers.iter().enumerate() {
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
                        sink: self.sink.clone(),
                        metrics: self.metrics.clone(),
                    },
                    consumer,
                    stop_consuming.clone(),
                ));
            }
            *consumed = true;
        }
        self.health.set_bus(true);
        self.metrics.connects.inc();
        tracing::info!(url = %self.url, namespace = self.topology.namespace(), "bus connected");

        let mut unbound = Unbound::new(self.events_unbound_recheck);
        let skipped = &self.metrics.events_skipped;
        let relay = relay::run(&self.outbox, &publish, self.relay_window, &mut unbound, skipped, relay_state);
        tokio::pin!(relay);
        let result = loop {
            tokio::select! {
                _ = stop.cancelled() => break Ok(()),
                r = &mut relay => break match r {
                    Err(e) => Err(e.into()),
                    Ok(()) => Ok(()),
                },
                Some(joined) = consumers.join_next() => match joined {
                    Ok(Ok(())) if stop_consuming.is_cancelled() => continue,
                    Ok(Ok(())) => break Err(SessionError::Closed),
                    Ok(Err(e)) => break Err(e),
                    Err(e) => break Err(SessionError::ConsumerEnded(e.to_string())),
                },
                event = events.next() => match event {
                    Some(Event::Error(e)) => break Err(e.into()),
                    Some(_) => continue,
                    None => break Err(SessionError::Closed),
                },
            }
        };
        self.health.set_bus(false);
        consumers.abort_all();
        // Closing returns unacknowledged deliveries to their queues at once. When the broker is
        // already gone this fails fast; the timeout covers a half-open socket.
        let _ = tokio::time::timeout(Duration::from_secs(2), connection.close(200, "bye".into())).await;
        result
    }
}

impl<J> Bus<J> {
    /// Claims `queue` for this process: its lock for this connection, then its owner for this
    /// process's store (see the module's comment).
    async fn claim(
        &self,
        connection: &Connection,
        publish: &lapin::Channel,
        queue: &str,
    ) -> Result<(), SessionError> {
        let channel = connection.create_channel().await?;
        let lock =
            QueueDeclareOptions { exclusive: true, auto_delete: true, ..QueueDeclareOptions::default() };
        channel
            .queue_declare(self.topology.lock_queue(queue).as_str().into(), lock, FieldTable::default())
            .await
            .map_err(|e| match e.kind() {
                lapin::ErrorKind::ProtocolError(amqp)
                    if amqp.kind() == &AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED) =>
                {
                    SessionError::Exclusive(queue.to_owned())
                }
                _ => SessionError::Amqp(e),
            })?;
        let owner = self.topology.owner_queue(queue);
        let durable = QueueDeclareOptions { durable: true, ..QueueDeclareOptions::default() };
        channel.queue_declare(owner.as_str().into(), durable, FieldTable::default()).await?;
        match channel.basic_get(owner.as_str().into(), BasicGetOptions { no_ack: false }).await? {
            Some(message) => {
                let holder = String::from_utf8_lossy(&message.delivery.data).into_owned();
                message
                    .delivery
                    .nack(BasicNackOptions { requeue: true, ..BasicNackOptions::default() })
                    .await?;
                if holder != self.store_id {
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
                        self.store_id.as_bytes(),
                        properties,
                    )
                    .await?
                    .await?;
            }
        }
        let _ = channel.close(200, "claimed".into()).await;
        Ok(())
    }
}

/// One consumer's forwarding task and what it needs.
struct Forward<J> {
    channel: lapin::Channel,
    tag: String,
    queue: String,
    from: usize,
    sink: mpsc::Sender<Input<J>>,
    metrics: Arc<BusMetrics>,
}

/// Hands deliveries of one consumer to the pipeline until told to stop or the channel fails.
async fn forward<J>(
    f: Forward<J>,
    mut consumer: Consumer,
    stop: CancellationToken,
) -> Result<(), SessionError> {
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
                    let receipt = Receipt { consumer: f.from, tag: delivery.delivery_tag, acker: delivery.acker };
                    if f.sink.send(Input::Message(received, receipt)).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(SessionError::ConsumerEnded(f.queue.clone())),
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
