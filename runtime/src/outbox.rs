//! The transactional outbox and its relay.
//!
//! A message that a state change must send is written into the `outbox` tree in the same sled
//! transaction as the state change, so both happen or neither does. The relay publishes what the
//! outbox holds with publisher confirms and removes an entry only once the broker confirmed it.
//!
//! Two rules keep this exact:
//! - **Publish only what is durable.** An entry is published only after the flush that made it
//!   durable ([`Outbox::mark_durable`]); otherwise a crash could lose the state change while its
//!   command was already out (a charge for an order nobody remembers).
//! - **Publish again after any doubt.** After a reconnect or a restart the relay starts from the
//!   oldest entry; receivers deduplicate.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use serde::{Deserialize, Serialize};
use sled::transaction::{TransactionalTree, UnabortableTransactionError};
use tokio::sync::watch;

use crate::metrics::Counter;

/// A message waiting to be published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboxMessage {
    pub exchange: String,
    pub routing_key: String,
    /// Unique per message; receivers may deduplicate on it.
    pub message_id: String,
    /// The order id, so one order can be followed across processes.
    pub correlation_id: String,
    /// The AMQP `type` property: the command, reply or event name.
    pub kind: String,
    pub traceparent: Option<String>,
    /// Extra headers, such as the reason of a dead-lettered message.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The JSON body.
    pub body: String,
}

impl OutboxMessage {
    /// A new message with a fresh message id.
    pub fn new(
        exchange: String,
        routing_key: String,
        correlation_id: String,
        kind: &str,
        body: String,
    ) -> Self {
        Self {
            exchange,
            routing_key,
            message_id: uuid::Uuid::now_v7().to_string(),
            correlation_id,
            kind: kind.to_owned(),
            traceparent: None,
            headers: Vec::new(),
            body,
        }
    }

    pub fn with_traceparent(mut self, traceparent: Option<String>) -> Self {
        self.traceparent = traceparent;
        self
    }

    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    fn properties(&self) -> BasicProperties {
        let mut headers = FieldTable::default();
        if let Some(tp) = &self.traceparent {
            headers.insert(
                ShortString::from(sagaflow_events::headers::TRACEPARENT),
                AMQPValue::LongString(LongString::from(tp.as_str())),
            );
        }
        for (k, v) in &self.headers {
            headers
                .insert(ShortString::from(k.as_str()), AMQPValue::LongString(LongString::from(v.as_str())));
        }
        BasicProperties::default()
            .with_delivery_mode(2) // persistent
            .with_content_type("application/json".into())
            .with_message_id(self.message_id.as_str().into())
            .with_correlation_id(self.correlation_id.as_str().into())
            .with_type(self.kind.as_str().into())
            .with_timestamp(crate::now_millis() / 1000)
            .with_headers(headers)
    }
}

/// The outbox of one process: a sled tree keyed by a monotonic id, plus the durable watermark.
pub struct Outbox {
    tree: sled::Tree,
    /// The highest id written by a committed transaction so far.
    staged: AtomicU64,
    /// The highest id known to be on disk: the relay publishes up to here and no further.
    durable: watch::Sender<u64>,
    pub published: Counter,
}

impl Outbox {
    /// Opens the outbox. Whatever it holds on opening was recovered from disk, so all of it is
    /// durable and will be published again: that is the outbox's part of crash recovery.
    pub fn open(db: &sled::Db) -> sled::Result<Arc<Self>> {
        let tree = db.open_tree("outbox")?;
        let last = tree.last()?.map(|(k, _)| key_id(&k)).unwrap_or(0);
        let (durable, _) = watch::channel(last);
        Ok(Arc::new(Self { tree, staged: AtomicU64::new(last), durable, published: Counter::default() }))
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Writes a message inside a transaction that includes the outbox tree.
    pub fn stage(
        &self,
        tx: &TransactionalTree,
        message: &OutboxMessage,
    ) -> Result<(), UnabortableTransactionError> {
        // Ids start at 1: the watermark starts at 0 meaning "nothing yet", and an entry with
        // id 0 would never move it, so the relay would not wake for it.
        let id = tx.generate_id()? + 1;
        let bytes = serde_json::to_vec(message).expect("an outbox message always serialises");
        tx.insert(&id.to_be_bytes(), bytes)?;
        // A transaction may run its closure again; fetch_max keeps this right either way.
        self.staged.fetch_max(id, Ordering::AcqRel);
        Ok(())
    }

    /// The highest id staged so far. Take it *before* a flush and pass it to
    /// [`mark_durable`](Self::mark_durable) after, so entries staged during the flush wait for
    /// the next one.
    pub fn staged_upto(&self) -> u64 {
        self.staged.load(Ordering::Acquire)
    }

    /// Lets the relay publish everything up to `id`: call after the flush that made it durable.
    pub fn mark_durable(&self, id: u64) {
        self.durable.send_if_modified(|d| {
            let moved = id > *d;
            *d = (*d).max(id);
            moved
        });
    }

    /// Messages waiting to be published.
    pub fn depth(&self) -> usize {
        self.tree.len()
    }

    /// Publishes durable entries with confirms until the channel fails (then returns the error,
    /// and the bus reconnects) or the outbox is dropped.
    ///
    /// A sliding window: up to `window` messages await their confirms while newer durable
    /// entries keep going out. (Waiting for a whole batch's confirms before publishing the next
    /// batch put a quorum queue's confirm latency on every hop of every saga.) An entry leaves
    /// the outbox only when the broker has confirmed it.
    pub async fn relay(self: &Arc<Self>, channel: &Channel, window: usize) -> Result<(), lapin::Error> {
        let window = window.max(1);
        let mut durable = self.durable.subscribe();
        let mut in_flight: VecDeque<(u64, PublisherConfirm)> = VecDeque::with_capacity(window);
        let mut next: u64 = 0;
        loop {
            let upto = *durable.borrow_and_update();
            let room = window - in_flight.len();
            if room > 0 && next <= upto {
                let batch = self.read(next, upto, room);
                if let Some(&(last, _)) = batch.last() {
                    for (id, message) in &batch {
                        let confirm = channel
                            .basic_publish(
                                message.exchange.as_str().into(),
                                message.routing_key.as_str().into(),
                                BasicPublishOptions::default(),
                                message.body.as_bytes(),
                                message.properties(),
                            )
                            .await?;
                        in_flight.push_back((*id, confirm));
                    }
                    next = last + 1;
                    continue;
                }
            }
            // Nothing to publish now, or the window is full: wait for a confirm or new entries.
            tokio::select! {
                confirmation = async { (&mut in_flight.front_mut().expect("not empty").1).await }, if !in_flight.is_empty() => {
                    let (id, _) = in_flight.pop_front().expect("not empty");
                    match confirmation? {
                        Confirmation::Ack(_) | Confirmation::NotRequested => {
                            // Removing is not flushed: if it is lost in a crash the message goes
                            // out again, which receivers absorb.
                            let _ = self.tree.remove(id.to_be_bytes());
                            self.published.inc();
                        }
                        Confirmation::Nack(_) => {
                            // Publish again from here; what follows goes again too, and
                            // receivers absorb the duplicates.
                            tracing::warn!(id, "broker refused a message; it will be published again");
                            next = next.min(id);
                        }
                    }
                }
                changed = durable.changed(), if room > 0 => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Up to `limit` entries with ids in `from..=upto`.
    fn read(&self, from: u64, upto: u64, limit: usize) -> Vec<(u64, OutboxMessage)> {
        self.tree
            .range(from.to_be_bytes()..=upto.to_be_bytes())
            .take(limit)
            .filter_map(|entry| {
                let (k, v) = entry.ok()?;
                let id = key_id(&k);
                match serde_json::from_slice(&v) {
                    Ok(m) => Some((id, m)),
                    Err(e) => {
                        // Only a bug can write such an entry; keep it for inspection.
                        tracing::error!(id, error = %e, "outbox entry cannot be read; skipped");
                        None
                    }
                }
            })
            .collect()
    }
}

fn key_id(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(bytes)
}
