//! The connection, owned by us: connect, declare, consume, relay; on any failure back off with
//! jitter and start again. We do not use lapin's automatic recovery, which can hang after a
//! broker restart; a fresh connection with everything redeclared is simpler to trust.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, Consumer, Event};
use sagaflow_events::Topology;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::AmqpUrl;
use crate::metrics::Counter;
use crate::outbox::Outbox;

/// A queue to consume, and where its deliveries go.
pub struct ConsumerSpec {
    pub queue: String,
    /// Unacknowledged deliveries the broker may hand out at once. Large enough to fill a
    /// group-commit batch, small enough that a crash returns little work.
    pub prefetch: u16,
    pub sink: mpsc::Sender<Delivery>,
}

#[derive(Debug, Default)]
pub struct BusMetrics {
    pub connects: Counter,
    pub disconnects: Counter,
    pub deliveries: Counter,
    /// Deliveries the broker marked as redelivered: what crashes and reconnects cost.
    pub redeliveries: Counter,
}

pub struct Bus {
    pub url: AmqpUrl,
    pub topology: Topology,
    pub consumers: Vec<ConsumerSpec>,
    pub outbox: Arc<Outbox>,
    /// Messages the relay keeps in flight, awaiting confirms.
    pub relay_window: usize,
    /// True while connected; `/health` reads it.
    pub connected: watch::Sender<bool>,
    pub metrics: Arc<BusMetrics>,
}

#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error(transparent)]
    Amqp(#[from] lapin::Error),
    #[error("consumer of {0} ended")]
    ConsumerEnded(String),
    #[error("connection closed")]
    Closed,
}

impl Bus {
    /// Runs until `stop`. `stop_consuming` ends the consumers first, so that a shutting-down
    /// process can finish and acknowledge what it holds while still connected.
    pub async fn run(self, stop_consuming: CancellationToken, stop: CancellationToken) {
        let mut failures: u32 = 0;
        loop {
            let started = Instant::now();
            match self.session(&stop_consuming, &stop).await {
                Ok(()) => return,
                Err(e) => {
                    self.connected.send_replace(false);
                    self.metrics.disconnects.inc();
                    // A session that lived a while was healthy: start the backoff afresh.
                    if started.elapsed() > Duration::from_secs(30) {
                        failures = 0;
                    }
                    failures = failures.saturating_add(1);
                    let delay = backoff(failures);
                    tracing::warn!(error = %e, retry_in_ms = delay.as_millis() as u64, "bus disconnected");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }

    async fn session(
        &self,
        stop_consuming: &CancellationToken,
        stop: &CancellationToken,
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
                    channel,
                    consumer,
                    tag,
                    spec.queue.clone(),
                    spec.sink.clone(),
                    stop_consuming.clone(),
                    self.metrics.clone(),
                ));
            }
        }
        self.connected.send_replace(true);
        self.metrics.connects.inc();
        tracing::info!(url = %self.url, namespace = self.topology.namespace(), "bus connected");

        let relay = self.outbox.relay(&publish, self.relay_window);
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
        self.connected.send_replace(false);
        consumers.abort_all();
        // Closing returns unacknowledged deliveries to their queues at once. When the broker is
        // already gone this fails fast; the timeout covers a half-open socket.
        let _ = tokio::time::timeout(Duration::from_secs(2), connection.close(200, "bye".into())).await;
        result
    }
}

/// Hands deliveries of one consumer to its sink until told to stop or the channel fails.
async fn forward(
    channel: lapin::Channel,
    mut consumer: Consumer,
    tag: String,
    queue: String,
    sink: mpsc::Sender<Delivery>,
    stop: CancellationToken,
    metrics: Arc<BusMetrics>,
) -> Result<(), SessionError> {
    loop {
        tokio::select! {
            _ = stop.cancelled() => {
                let _ = channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                return Ok(());
            }
            item = consumer.next() => match item {
                Some(Ok(delivery)) => {
                    metrics.deliveries.inc();
                    if delivery.redelivered {
                        metrics.redeliveries.inc();
                    }
                    if sink.send(delivery).await.is_err() {
                        return Ok(());
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(SessionError::ConsumerEnded(queue)),
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
