//! The one loop every process runs, written once:
//!
//! 1. take what is waiting, up to a batch limit counted in items (a delivery of a batch counts
//!    its items): local jobs first, up to half the batch, then received messages, then more
//!    jobs if there is room. Jobs come first because each one is a caller holding a connection
//!    (`POST /orders`), while a message waits in the broker at no cost to anyone; half, so that
//!    a flood of requests cannot starve the replies that finish sagas;
//! 2. apply each into the batch's [`Writes`]: an input keeps its writes only if it succeeds;
//! 3. make the batch durable: what it wrote outside the store first, then its writes as one
//!    sled transaction ([`Writes::commit`]) and one flush with a real `fdatasync`
//!    ([`Db::make_durable`]): one log write and one sync per batch, whatever its size;
//! 4. release the batch's outbox entries to the relay, answer its local callers, and owe the
//!    broker the acknowledgement of its messages.
//!
//! Acknowledgements go out together, up to [`AckDeferral::delay`] after the first one owed,
//! or at once when enough are owed. Why: a quorum queue takes an ack as a Raft command written
//! to its log, so at a low rate, where each batch holds one delivery, an ack per batch cost the
//! broker a log write per message; one ack with `multiple` covers every delivery of a consumer
//! up to its tag, however many batches they came in. Nothing waits on an ack: the batch's
//! answers and messages are out already. A crash before the ack only means a redelivery, which
//! the applier recognises as a duplicate.
//!
//! A crash before 3 loses the batch's effects, but nothing was acknowledged, answered or
//! published, so the broker redelivers the messages. A crash after 3 keeps everything;
//! redelivered messages are recognised as duplicates. While the store flushes, the next batch
//! gathers: under load, batches grow by themselves.
//!
//! What a process does with one input is its [`Apply`]. Three outcomes are told apart, and the
//! difference matters: a message that cannot be understood is dead-lettered and acknowledged;
//! a store that cannot take a write now ([`ApplyError::Retry`], a full disk for the mails) holds
//! the rest of the batch unacknowledged, turns `/health` to 503 and tries again later, so a
//! storage fault never dead-letters good work; a broken store ([`ApplyError::Fatal`]) stops the
//! process without acknowledging anything of the batch.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sagaflow_events::Topology;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::bus::{dead_letter, Acks, Delivery, Receipt, Received};
use crate::config::AckDeferral;
use crate::db::{Db, DbError};
use crate::health::Health;
use crate::metrics::{Counter, CounterVec, Histogram, Render};
use crate::outbox::Outbox;
use crate::watchdog::Watchdog;
use crate::writes::Writes;

/// Where a pipeline's inputs come from: two channels, so that a job never queues behind the
/// bus's backlog (after an outage, thousands of replies arrive at once).
pub struct Inputs<J> {
    /// What the bus received ([`crate::bus::channel`]).
    pub deliveries: mpsc::Receiver<(Delivery, Receipt)>,
    /// Work from inside the process; `None` for a process that has none.
    pub jobs: Option<mpsc::Receiver<J>>,
}

/// The next job; never ready once the jobs' senders are gone.
async fn next_job<J>(jobs: &mut Option<mpsc::Receiver<J>>) -> J {
    if let Some(receiver) = jobs {
        if let Some(job) = receiver.recv().await {
            return job;
        }
        *jobs = None;
    }
    std::future::pending().await
}

impl<J> Inputs<J> {
    fn try_job(&mut self) -> Option<Input<J>> {
        self.jobs.as_mut()?.try_recv().ok().map(Input::Job)
    }

    fn try_delivery(&mut self) -> Option<Input<J>> {
        self.deliveries.try_recv().ok().map(|(delivery, receipt)| Input::Message(delivery, receipt))
    }
}

/// One input of the pipeline.
// Nearly every input is a message, so boxing it would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Input<J> {
    /// A delivery from the bus (one message, or the items of a batch), and what acknowledges
    /// it.
    Message(Delivery, Receipt),
    /// Work from inside the process (the orchestrator's HTTP requests, timers, sweeps).
    Job(J),
}

impl<J> Input<J> {
    /// What the input weighs in a batch: a delivery of a batch counts its items.
    fn items(&self) -> usize {
        match self {
            Input::Message(delivery, _) => delivery.items().len().max(1),
            Input::Job(_) => 1,
        }
    }
}

/// What became of a received message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Applied (or recognised as a duplicate): acknowledge it with the batch.
    Done,
    /// It cannot be understood: dead-letter it with this reason, and acknowledge it.
    Reject(String),
}

/// Runs once the batch it belongs to is durable: answers a local caller.
pub type Reply = Box<dyn FnOnce() + Send>;

/// Why an input could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The store cannot take the write now: hold the rest of the batch and try again later.
    #[error("storage is failing: {0}")]
    Retry(String),
    /// The store is broken: stop the process without acknowledging the batch.
    #[error(transparent)]
    Fatal(Box<dyn std::error::Error + Send + Sync>),
}

impl ApplyError {
    pub fn fatal(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Fatal(Box::new(e))
    }
}

/// What a process plugs into the pipeline: how each input changes its store.
pub trait Apply: Send + 'static {
    /// Work from inside the process. Its errors are always fatal: a local caller cannot be
    /// held like a message.
    type Job: Send + 'static;

    /// Applies a message (one item of a batch is a message of its own) into `writes`, which
    /// are kept only if the verdict is [`Verdict::Done`].
    fn apply_message(&mut self, message: &Received, writes: &Writes<'_>) -> Result<Verdict, ApplyError>;

    /// Applies a job into `writes`; the reply runs once the batch is durable. An applier that
    /// answers a job with an error discards that job's writes itself ([`Writes::scope`]).
    fn apply_job(&mut self, job: Self::Job, writes: &Writes<'_>) -> Result<Reply, ApplyError>;

    /// Makes durable what the batch wrote outside the store, before the flush that records it
    /// as done (notification's mails).
    fn before_commit(&mut self) -> Result<(), ApplyError> {
        Ok(())
    }

    /// The batch's last step before its commit, once everything is staged: an applier that
    /// keeps a log of its own gathers the batch's entries into records ([`crate::records`]),
    /// as the pipeline does for the outbox.
    fn seal(&mut self, _writes: &Writes<'static>) {}

    /// Runs after each commit, once its acks and replies are out.
    fn after_commit(&mut self) {}
}

/// Why the pipeline stopped.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error(transparent)]
    Store(#[from] DbError),
}

#[derive(Debug)]
pub struct PipelineMetrics {
    /// Inputs per commit.
    pub batch_sizes: Histogram,
    /// Seconds per commit (the flush and its sync).
    pub commit_seconds: Histogram,
    pub commits: Counter,
    pub dead_lettered: Counter,
    /// Batches held back because the store could not take them.
    pub held: Counter,
    /// Keys the commits wrote, by tree: the cost sled charges per key, counted exactly.
    pub keys_written: CounterVec,
}

impl Default for PipelineMetrics {
    fn default() -> Self {
        Self {
            batch_sizes: Histogram::sizes(),
            commit_seconds: Histogram::latency(),
            commits: Counter::default(),
            dead_lettered: Counter::default(),
            held: Counter::default(),
            keys_written: CounterVec::default(),
        }
    }
}

impl PipelineMetrics {
    pub fn render(&self, r: &mut Render) {
        r.histogram("sagaflow_commit_batch_size", "Inputs per group commit.", &self.batch_sizes)
            .histogram(
                "sagaflow_commit_seconds",
                "Time to make one group commit durable.",
                &self.commit_seconds,
            )
            .counter(
                "sagaflow_dead_lettered_total",
                "Messages sent to the dead-letter queue.",
                &self.dead_lettered,
            )
            .counter(
                "sagaflow_batches_held_total",
                "Batches held back while the store was failing.",
                &self.held,
            );
        let keys: Vec<(String, i64)> =
            self.keys_written.snapshot().into_iter().map(|(tree, n)| (tree, n as i64)).collect();
        r.labeled(
            "sagaflow_commit_keys_total",
            "Store keys inserted or removed by group commits, by tree.",
            "counter",
            "tree",
            &keys,
        );
    }
}

/// The longest pause between two tries of a held batch.
const MAX_HOLD: Duration = Duration::from_secs(30);

pub struct Pipeline<A: Apply> {
    pub applier: A,
    pub db: Arc<Db>,
    pub outbox: Arc<Outbox>,
    pub topology: Topology,
    pub health: Health,
    /// Most items per commit (a delivery of a batch counts its items).
    pub max_batch: usize,
    pub metrics: Arc<PipelineMetrics>,
    /// Watches every call into the store: a store that hangs ends the process.
    pub watchdog: Watchdog,
    /// How long acknowledgements may wait to go out together.
    pub acks: AckDeferral,
}

/// The acknowledgements owed for batches that are durable, and when they must go out.
#[derive(Default)]
struct OwedAcks {
    acks: Acks,
    when: AckClock,
}

impl OwedAcks {
    async fn send(&mut self) {
        self.when = AckClock::default();
        std::mem::take(&mut self.acks).send().await;
    }
}

/// When owed acknowledgements go out: the policy of [`OwedAcks`], apart from the broker.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct AckClock {
    /// Deliveries owed.
    owed: usize,
    /// When the first of them was owed, plus the delay.
    due: Option<Instant>,
}

impl AckClock {
    /// Owes `deliveries` more at `now`; true when the acks must go out now.
    fn owe(&mut self, deliveries: usize, now: Instant, policy: AckDeferral) -> bool {
        self.owed += deliveries;
        if self.owed == 0 {
            return false;
        }
        if policy.delay.is_zero() || self.owed >= policy.most {
            return true;
        }
        // The first owed sets the deadline; later ones do not push it back.
        self.due.get_or_insert(now + policy.delay);
        false
    }
}

/// A batch after applying: its writes, what the applied part owes, and the inputs held back.
type Split<J> = (Writes<'static>, Owed, Vec<Input<J>>);

/// What a batch owes once it is durable, in the order its inputs came. (The order matters:
/// acks are folded per consumer, and a tag below one acked before would be refused.)
struct Owed {
    /// Applied deliveries, with the items to dead-letter. Dead letters are staged only when
    /// the batch commits, so that a batch applied again does not stage them twice.
    messages: Vec<Delivered>,
    replies: Vec<Reply>,
}

/// A delivery applied, and which of its items to dead-letter, with why.
struct Delivered {
    delivery: Delivery,
    receipt: Receipt,
    rejected: Vec<(usize, String)>,
}

impl<A: Apply> Pipeline<A> {
    /// Runs until `stop`, then applies and commits what it already holds, and returns. A held
    /// batch is not acknowledged: the broker gives it to the next process.
    pub async fn run(
        mut self,
        mut inputs: Inputs<A::Job>,
        stop: CancellationToken,
    ) -> Result<(), PipelineError> {
        let mut batch: Vec<Input<A::Job>> = Vec::new();
        let mut hold = Duration::ZERO;
        let mut acks = OwedAcks::default();
        loop {
            let due = acks.when.due;
            let stopping = if batch.is_empty() {
                tokio::select! {
                    () = sleep_until(due), if due.is_some() => {
                        acks.send().await;
                        false
                    }
                    job = next_job(&mut inputs.jobs) => {
                        batch.push(Input::Job(job));
                        self.gather(&mut inputs, &mut batch);
                        false
                    }
                    delivery = inputs.deliveries.recv() => match delivery {
                        Some((delivery, receipt)) => {
                            batch.push(Input::Message(delivery, receipt));
                            self.gather(&mut inputs, &mut batch);
                            false
                        }
                        // The bus is gone: nothing more will come.
                        None => true,
                    },
                    _ = stop.cancelled() => {
                        while let Some(input) = inputs.try_job().or_else(|| inputs.try_delivery()) {
                            batch.push(input);
                        }
                        true
                    }
                }
            } else {
                // A held batch: what is durable is acknowledged; wait, then try the batch
                // again before anything new.
                acks.send().await;
                tokio::select! {
                    _ = tokio::time::sleep(hold) => false,
                    _ = stop.cancelled() => return Ok(()),
                }
            };
            if !batch.is_empty() {
                let dog = self.watchdog.clone();
                let (writes, owed, held) = writer_thread(|| dog.watch(|| self.apply_batch(&mut batch)))?;
                batch = held;
                if let Some(unmade) = self.commit(writes, owed, &mut acks).await? {
                    // Nothing of it is durable: hold all of it, in its order. What was applied
                    // is recognised as a duplicate when it is applied again.
                    batch.splice(0..0, unmade);
                }
            }
            if batch.is_empty() {
                hold = Duration::ZERO;
                self.health.store_working();
            } else {
                self.metrics.held.inc();
                hold = (hold * 2).clamp(Duration::from_millis(500), MAX_HOLD);
            }
            if stopping {
                acks.send().await;
                return Ok(());
            }
        }
    }

    /// Fills `batch` with what is waiting, up to [`Self::max_batch`] items: jobs first, up to
    /// half of it, then deliveries, then jobs again (see the module's comment for why).
    fn gather(&self, inputs: &mut Inputs<A::Job>, batch: &mut Vec<Input<A::Job>>) {
        fill(inputs, batch, self.max_batch, Input::items, Inputs::try_job, Inputs::try_delivery);
    }

    /// Makes the batch durable, then lets out what it owes, its acknowledgements into `acks`.
    /// Returns its inputs instead when what it wrote outside the store cannot be made durable
    /// now.
    async fn commit(
        &mut self,
        writes: Writes<'static>,
        owed: Owed,
        acks: &mut OwedAcks,
    ) -> Result<Option<Vec<Input<A::Job>>>, PipelineError> {
        if owed.messages.is_empty() && owed.replies.is_empty() && writes.is_empty() {
            return Ok(None);
        }
        let started = Instant::now();
        let dog = self.watchdog.clone();
        match writer_thread(|| dog.watch(|| self.applier.before_commit())) {
            Ok(()) => {}
            // Local callers cannot be held like messages; only a process without them may hold.
            Err(ApplyError::Retry(e)) if owed.replies.is_empty() => {
                tracing::error!(error = e, "cannot make the batch durable; holding it");
                self.health.store_failing(&e);
                let held = owed.messages.into_iter().map(|d| Input::Message(d.delivery, d.receipt));
                return Ok(Some(held.collect()));
            }
            Err(e) => return Err(e.into()),
        }
        let mut items = owed.replies.len();
        let deliveries = owed.messages.len();
        // Pushed before the batch is durable, but sent only after: a failed commit ends the
        // pipeline, and a held batch never gets here.
        let owing = &mut acks.acks;
        for Delivered { delivery, receipt, rejected } in owed.messages {
            match &delivery {
                Delivery::Unreadable { envelope, reason } => self.dead_letter(&writes, envelope, reason),
                _ => {
                    for (index, reason) in &rejected {
                        self.dead_letter(&writes, &delivery.items()[*index], reason);
                    }
                }
            }
            items += delivery.items().len().max(1);
            owing.push(receipt);
        }
        // Everything is staged by now: the batch's entries are exactly those up to here.
        self.applier.seal(&writes);
        self.outbox.seal(&writes);
        let upto = self.outbox.staged_upto();
        let keys = writer_thread(|| {
            dog.watch(|| {
                let keys = writes.commit()?;
                self.db.make_durable()?;
                Ok::<_, DbError>(keys)
            })
        })?;
        for (tree, n) in keys {
            self.metrics.keys_written.with(&tree).add(n as u64);
        }
        // Durable: now the batch's messages may go out, be acknowledged, and be answered.
        self.outbox.mark_durable(upto);
        self.metrics.commit_seconds.observe(started.elapsed().as_secs_f64());
        self.metrics.batch_sizes.observe(items as f64);
        self.metrics.commits.inc();
        for reply in owed.replies {
            reply();
        }
        if acks.when.owe(deliveries, Instant::now(), self.acks) {
            acks.send().await;
        }
        self.applier.after_commit();
        Ok(None)
    }

    /// Stages the dead letter of a message with the batch's writes.
    fn dead_letter(&self, writes: &Writes<'_>, message: &Received, reason: &str) {
        tracing::warn!(queue = message.queue, reason, "dead-lettering a message");
        self.outbox.stage(writes, &dead_letter(&self.topology, message, reason));
        self.metrics.dead_lettered.inc();
    }

    /// Applies inputs in order. Returns what the applied ones owe, and the inputs held back
    /// from the first one the store could not take.
    fn apply_batch(&mut self, batch: &mut Vec<Input<A::Job>>) -> Result<Split<A::Job>, PipelineError> {
        let writes = Writes::new();
        let mut owed = Owed { messages: Vec::new(), replies: Vec::new() };
        let mut inputs = std::mem::take(batch).into_iter();
        while let Some(input) = inputs.next() {
            let own = writes.child();
            match input {
                Input::Message(delivery, receipt) => {
                    let mut rejected = Vec::new();
                    let mut failing = None;
                    for (index, item) in delivery.items().iter().enumerate() {
                        let item_writes = own.child();
                        match self.applier.apply_message(item, &item_writes) {
                            Ok(Verdict::Done) => item_writes.keep(),
                            Ok(Verdict::Reject(reason)) => rejected.push((index, reason)),
                            Err(ApplyError::Retry(e)) => {
                                failing = Some(e);
                                break;
                            }
                            Err(fatal) => return Err(fatal.into()),
                        }
                    }
                    if let Some(e) = failing {
                        tracing::error!(
                            error = e,
                            "the store cannot take a message; holding it and what follows"
                        );
                        self.health.store_failing(&e);
                        // A delivery is applied whole or not at all: the items before the one
                        // that failed are dropped with it and applied again with it.
                        drop(own);
                        let mut held = vec![Input::Message(delivery, receipt)];
                        held.extend(inputs);
                        return Ok((writes, owed, held));
                    }
                    own.keep();
                    owed.messages.push(Delivered { delivery, receipt, rejected });
                }
                Input::Job(job) => match self.applier.apply_job(job, &own) {
                    Ok(reply) => {
                        own.keep();
                        owed.replies.push(reply);
                    }
                    Err(ApplyError::Retry(e)) => return Err(ApplyError::Fatal(e.into()).into()),
                    Err(fatal) => return Err(fatal.into()),
                },
            }
        }
        Ok((writes, owed, Vec::new()))
    }
}

/// Takes from `source` into `batch` until it weighs `max` items or nothing waits: jobs first,
/// up to half of `max` of them (whatever the batch began with), then deliveries, then jobs
/// again.
fn fill<S, T>(
    source: &mut S,
    batch: &mut Vec<T>,
    max: usize,
    weight: impl Fn(&T) -> usize,
    job: impl Fn(&mut S) -> Option<T>,
    delivery: impl Fn(&mut S) -> Option<T>,
) {
    let mut items: usize = batch.iter().map(&weight).sum();
    let mut jobs = 0;
    while jobs < max / 2 && items < max {
        let Some(input) = job(source) else { break };
        jobs += 1;
        items += weight(&input);
        batch.push(input);
    }
    for next in [&delivery as &dyn Fn(&mut S) -> Option<T>, &job] {
        while items < max {
            let Some(input) = next(source) else { break };
            items += weight(&input);
            batch.push(input);
        }
    }
}

/// Sleeps until `due`; never wakes without one.
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Runs `f` on the writer's thread. On a multi-threaded runtime the worker tells tokio it is
/// blocked, so other tasks move elsewhere; on a current-thread runtime the writer is the thread.
fn writer_thread<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::time::{Duration, Instant};

    use super::{fill, AckClock, AckDeferral};

    /// Waiting jobs and deliveries; an input is a name and its weight in items.
    #[derive(Default)]
    struct Waiting {
        jobs: VecDeque<(&'static str, usize)>,
        deliveries: VecDeque<(&'static str, usize)>,
    }

    fn gathered(waiting: &mut Waiting, first: (&'static str, usize), max: usize) -> Vec<&'static str> {
        let mut batch = vec![first];
        fill(waiting, &mut batch, max, |i| i.1, |w| w.jobs.pop_front(), |w| w.deliveries.pop_front());
        batch.into_iter().map(|i| i.0).collect()
    }

    #[test]
    fn a_job_does_not_wait_behind_a_backlog_of_deliveries() {
        // After an outage: batches of 64 replies queued, and then a request.
        let mut waiting = Waiting::default();
        waiting.deliveries.extend([("replies-2", 64), ("replies-3", 64), ("replies-4", 64)]);
        waiting.jobs.push_back(("request", 1));
        assert_eq!(gathered(&mut waiting, ("replies-1", 64), 128), ["replies-1", "request", "replies-2"]);
        assert_eq!(waiting.deliveries.len(), 2, "the batch is bounded by items, not deliveries");
    }

    #[test]
    fn jobs_take_at_most_half_a_batch_while_deliveries_wait() {
        let mut waiting = Waiting::default();
        waiting.jobs.extend([("j2", 1), ("j3", 1), ("j4", 1), ("j5", 1), ("j6", 1)]);
        waiting.deliveries.extend([("d1", 1), ("d2", 1)]);
        assert_eq!(gathered(&mut waiting, ("j1", 1), 6), ["j1", "j2", "j3", "j4", "d1", "d2"]);
        assert_eq!(waiting.jobs.len(), 2);
    }

    #[test]
    fn acks_wait_from_the_first_owed_until_the_delay_or_the_bound() {
        let policy = AckDeferral { delay: Duration::from_millis(10), most: 4 };
        let t0 = Instant::now();
        let mut clock = AckClock::default();
        assert!(!clock.owe(0, t0, policy), "a batch of jobs alone owes nothing");
        assert_eq!(clock.due, None);
        assert!(!clock.owe(1, t0, policy));
        assert_eq!(clock.due, Some(t0 + Duration::from_millis(10)));
        assert!(!clock.owe(2, t0 + Duration::from_millis(5), policy));
        assert_eq!(clock.due, Some(t0 + Duration::from_millis(10)), "later batches do not push it back");
        assert!(clock.owe(1, t0 + Duration::from_millis(6), policy), "half the prefetch owed goes at once");
    }

    #[test]
    fn without_a_delay_every_commit_acknowledges() {
        let policy = AckDeferral { delay: Duration::ZERO, most: 256 };
        let mut clock = AckClock::default();
        assert!(clock.owe(1, Instant::now(), policy));
    }

    #[test]
    fn jobs_fill_a_batch_when_no_delivery_waits() {
        let mut waiting = Waiting::default();
        waiting.jobs.extend([("j2", 1), ("j3", 1), ("j4", 1), ("j5", 1)]);
        assert_eq!(gathered(&mut waiting, ("j1", 1), 4), ["j1", "j2", "j3", "j4"]);
    }
}
