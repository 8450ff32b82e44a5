//! The engine: the single writer of the saga store.
//!
//! Every input, whatever its source (a reply, an order from the bus or from HTTP, a timer, an
//! operator's cancel or retry), becomes a [`Job`] on one channel. The engine takes whatever
//! jobs are waiting (up to a batch limit), applies each in its own transaction, flushes once,
//! and only then acknowledges the deliveries and answers the HTTP callers. While it flushes, the
//! next batch gathers: under load, batches grow by themselves.
//!
//! One writer means no transaction ever conflicts, and the order in which inputs reach a saga
//! is the order in which they were taken off the channel.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use lapin::message::Delivery;
use sagaflow_events::{Catalog, OrderPlaced, ReplyMessage, Topology};
use sagaflow_runtime::bus::dead_letter;
use sagaflow_runtime::commit::{Acks, GroupCommit};
use sagaflow_runtime::now_millis;
use sagaflow_saga::{Effect, SagaEvent, Timer};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::store::{Applied, Incoming, NewSaga, Placed, Store, StoreError};

/// Where a delivery came from.
#[derive(Debug, Clone, Copy)]
pub enum Source {
    Intake,
    Replies,
}

pub enum Job {
    Delivery {
        source: Source,
        delivery: Box<Delivery>,
    },
    Place {
        new: NewSaga,
        answer: oneshot::Sender<Result<Placed, String>>,
    },
    Control {
        order_id: String,
        incoming: Incoming,
        answer: oneshot::Sender<Result<Applied, String>>,
    },
    Timer {
        order_id: String,
        key: Vec<u8>,
        timer: Timer,
    },
    /// Retention: remove up to `limit` sagas that finished at or before `cutoff`.
    Sweep {
        cutoff: u64,
        limit: usize,
        answer: oneshot::Sender<usize>,
    },
}

/// Timer index keys handed to the engine and not yet applied, so the timer task does not hand
/// the same timer over twice.
pub type TimersInFlight = Arc<Mutex<HashSet<Vec<u8>>>>;

pub struct Engine {
    pub store: Arc<Store>,
    pub commit: Arc<GroupCommit>,
    pub catalog: Arc<Catalog>,
    pub topology: Topology,
    pub metrics: Arc<Metrics>,
    pub timers_in_flight: TimersInFlight,
    /// Woken after every commit: new timers may be due earlier than the timer task thinks.
    pub timer_wake: Arc<Notify>,
    pub max_batch: usize,
}

/// What to do once a batch is durable.
#[derive(Default)]
struct AfterCommit {
    acks: Acks,
    answers: Vec<Box<dyn FnOnce() + Send>>,
}

impl Engine {
    /// Runs until `stop`, then applies and commits what it already holds, and returns.
    pub async fn run(self, mut jobs: mpsc::Receiver<Job>, stop: CancellationToken) -> Result<(), StoreError> {
        let mut batch = Vec::with_capacity(self.max_batch);
        loop {
            let stopping = tokio::select! {
                n = jobs.recv_many(&mut batch, self.max_batch) => {
                    if n == 0 {
                        return Ok(());
                    }
                    false
                }
                _ = stop.cancelled() => {
                    while let Ok(job) = jobs.try_recv() {
                        batch.push(job);
                    }
                    true
                }
            };
            let size = batch.len();
            if size > 0 {
                let after = tokio::task::block_in_place(|| self.apply_batch(&mut batch))?;
                // Flush before anything leaves: acks, answers and published messages.
                self.commit.commit(size).await?;
                after.acks.send().await;
                for answer in after.answers {
                    answer();
                }
                self.timer_wake.notify_one();
            }
            if stopping {
                return Ok(());
            }
        }
    }

    fn apply_batch(&self, batch: &mut Vec<Job>) -> Result<AfterCommit, StoreError> {
        let mut after = AfterCommit::default();
        for job in batch.drain(..) {
            match job {
                Job::Delivery { source, delivery } => {
                    match source {
                        Source::Intake => self.intake(&delivery)?,
                        Source::Replies => self.reply(&delivery)?,
                    }
                    after.acks.push(source as usize, delivery.delivery_tag, delivery.acker);
                }
                Job::Place { new, answer } => {
                    let result = fatal_or_message(self.place(new))?;
                    after.answers.push(Box::new(move || {
                        let _ = answer.send(result);
                    }));
                }
                Job::Control { order_id, incoming, answer } => {
                    let result = fatal_or_message(self.apply(&order_id, &incoming))?;
                    after.answers.push(Box::new(move || {
                        let _ = answer.send(result);
                    }));
                }
                Job::Timer { order_id, key, timer } => {
                    let incoming = Incoming::Timer { timer, key: key.clone() };
                    let result = self.apply(&order_id, &incoming);
                    self.timers_in_flight.lock().unwrap_or_else(|p| p.into_inner()).remove(&key);
                    result?;
                }
                Job::Sweep { cutoff, limit, answer } => {
                    let removed = self.store.remove_finished(cutoff, limit)?;
                    self.metrics.sagas_removed.add(removed as u64);
                    if removed > 0 {
                        tracing::debug!(removed, "finished sagas past retention removed");
                    }
                    after.answers.push(Box::new(move || {
                        let _ = answer.send(removed);
                    }));
                }
            }
        }
        Ok(after)
    }

    fn place(&self, new: NewSaga) -> Result<Placed, StoreError> {
        let placed = self.store.place(new, now_millis())?;
        if let Placed::Created(record) = &placed {
            self.metrics.orders_placed.inc();
            tracing::info!(order_id = %record.order_id, trace_id = record.trace_id, state = %record.saga.status, "saga created");
        }
        Ok(placed)
    }

    fn apply(&self, order_id: &str, incoming: &Incoming) -> Result<Applied, StoreError> {
        let now = now_millis();
        let applied = self.store.apply(order_id, incoming, now)?;
        match &applied {
            Applied::UnknownSaga => {}
            Applied::Recorded { ignored: Some(why), record, .. } => {
                self.metrics.inputs_ignored.inc();
                tracing::debug!(order_id, trace_id = record.trace_id, ignored = %why, "input recorded and ignored");
            }
            Applied::Recorded { ignored: None, record, effects, reply_waited_ms } => {
                self.metrics.inputs_applied.inc();
                if let Some(ms) = reply_waited_ms {
                    self.metrics.step_seconds.observe(*ms as f64 / 1000.0);
                }
                for effect in effects {
                    match effect {
                        Effect::Finished { status } => {
                            self.metrics
                                .saga_seconds
                                .observe(now.saturating_sub(record.created_at) as f64 / 1000.0);
                            tracing::info!(order_id, trace_id = record.trace_id, %status, reason = record.saga.reason.as_deref(), "saga finished");
                        }
                        Effect::Publish { event: SagaEvent::Stuck { .. } } => {
                            tracing::warn!(order_id, trace_id = record.trace_id, "saga stuck: a compensation keeps failing; POST /orders/{order_id}/retry once it can succeed");
                        }
                        _ => {}
                    }
                }
            }
        }
        Ok(applied)
    }

    /// An `OrderPlaced` from the intake queue: starts a saga exactly as `POST /orders` does.
    fn intake(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let queue = self.topology.intake_queue();
        let placed: OrderPlaced = match serde_json::from_slice(&delivery.data) {
            Ok(p) => p,
            Err(e) => return self.dead_letter(&queue, delivery, &format!("not an OrderPlaced message: {e}")),
        };
        let order_id = match placed.parsed_order_id() {
            Some(Ok(id)) => id,
            Some(Err(e)) => return self.dead_letter(&queue, delivery, &format!("invalid orderId: {e}")),
            None => return self.dead_letter(&queue, delivery, "orderId is missing"),
        };
        let new = new_saga(order_id, &placed, &self.catalog);
        match self.place(new)? {
            Placed::Created(_) | Placed::Existing(_) => Ok(()),
            Placed::Conflict(existing) => self.dead_letter(
                &queue,
                delivery,
                &format!("orderId {} already names a different order", existing.order_id),
            ),
        }
    }

    /// A participant's reply.
    fn reply(&self, delivery: &Delivery) -> Result<(), StoreError> {
        let reply: ReplyMessage = match serde_json::from_slice(&delivery.data) {
            Ok(r) => r,
            Err(e) => {
                let queue = self.topology.replies_queue();
                return self.dead_letter(&queue, delivery, &format!("not a reply message: {e}"));
            }
        };
        let order_id = reply.order_id.to_string();
        if let Applied::UnknownSaga = self.apply(&order_id, &Incoming::Reply(reply))? {
            self.metrics.replies_for_unknown_sagas.inc();
            tracing::info!(order_id, "reply for a saga this store does not hold; recorded and acknowledged");
        }
        Ok(())
    }

    fn dead_letter(&self, queue: &str, delivery: &Delivery, reason: &str) -> Result<(), StoreError> {
        tracing::warn!(queue, reason, "dead-lettering a message");
        self.metrics.dead_lettered.inc();
        self.store.stage_alone(&dead_letter(&self.topology, queue, delivery, reason))
    }
}

/// The saga to create for an order, valid or not. The body hash is taken over the normalised
/// order, so the same order sent with other spacing or field order is still the same order.
pub fn new_saga(order_id: sagaflow_events::OrderId, placed: &OrderPlaced, catalog: &Catalog) -> NewSaga {
    let order = placed.validate(order_id.clone(), catalog).map_err(|e| e.to_string());
    let canonical = match &order {
        Ok(order) => serde_json::to_vec(order),
        Err(_) => serde_json::to_vec(&OrderPlaced { event: None, order_id: None, ..placed.clone() }),
    }
    .expect("orders serialise");
    let body_hash = format!("{:x}", Sha256::digest(&canonical));
    NewSaga { order_id, order, body_hash }
}

/// Storage failures stop the engine (the process restarts and recovers); anything else is the
/// caller's answer.
fn fatal_or_message<T>(r: Result<T, StoreError>) -> Result<Result<T, String>, StoreError> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(StoreError::Sled(e)) => Err(StoreError::Sled(e)),
        Err(other) => Ok(Err(other.to_string())),
    }
}
