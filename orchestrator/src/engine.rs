//! The engine: where a saga changes. It is the orchestrator's [`Apply`] for the shared
//! pipeline, so it is the store's only writer and takes one input at a time.
//!
//! Every input, whatever its source (an order from HTTP or the bus, a reply, a timer, an
//! operator's cancel or retry, a retention sweep), is one unit of the batch's writes: read the record, run the
//! core's transition, record the input in the history, write the record, stage the messages.
//! What an input is worth is decided here and nowhere else:
//! - a message that cannot be understood is dead-lettered;
//! - a reply for another incarnation of the order (an id placed again after retention) or a
//!   saga this store does not hold is counted and dropped;
//! - an ignored input is recorded while a saga has few, then only counted, so a flood of forged
//!   or duplicated replies costs nothing that grows;
//! - a broken store stops the process; any other store error concerns one saga and is
//!   answered (HTTP) or dead-lettered (bus).

use std::collections::BTreeMap;
use std::sync::Arc;

use sagaflow_events::{
    BusinessId, Catalog, Forgotten, OrderId, OrderPlaced, Participant, Reason, ReplyMessage, ReplyOutcome,
    SagaId, SagaKey, SagaName, SagaReply, Topology,
};
use sagaflow_runtime::bus::Received;
use sagaflow_runtime::now_millis;
use sagaflow_runtime::pipeline::{Apply, ApplyError, Reply, Verdict};
use sagaflow_runtime::telemetry::TraceParent;
use sagaflow_runtime::writes::Writes;
use sagaflow_saga::{
    Effect, HistoryEntry, Ignored, Input, Outcome, Saga, SagaDefinition, SagaEvent, Timer, Timestamp,
};
use sha2::{Digest, Sha256};
use tokio::sync::{oneshot, Notify};

use crate::metrics::Metrics;
use crate::outgoing;
use crate::record::{Defined, SagaRecord, MAX_IGNORED_RECORDED};
use crate::store::{Indexed, Store, StoreError, Tx, TxResult};
use crate::timers::{HeldTimers, RETRY_AFTER_MS};

/// The engine's consumers, in the order the bus is given them.
pub const INTAKE: usize = 0;
pub const REPLIES: usize = 1;

/// Work from inside the process.
pub enum Job {
    Place {
        new: NewSaga,
        answer: oneshot::Sender<Result<Placed, StoreError>>,
    },
    /// Starts a saga of a definition other than the order saga's.
    Start {
        new: NewDefined,
        answer: oneshot::Sender<Result<Placed, StoreError>>,
    },
    Control {
        order_id: String,
        control: Control,
        answer: oneshot::Sender<Result<Controlled, StoreError>>,
    },
    /// A timer index entry fell due. `None`: its value could not be read; the engine fires what
    /// the saga's record armed for that time, or forgets the entry if it armed nothing.
    Timer {
        order_id: String,
        key: Vec<u8>,
        timer: Option<Timer>,
    },
    /// Retention: remove up to `limit` sagas that finished at or before `cutoff`.
    Sweep {
        cutoff: u64,
        limit: usize,
        answer: oneshot::Sender<usize>,
    },
}

/// An operator's request about one saga.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Cancel,
    Retry,
}

/// A saga to create.
#[derive(Debug, Clone)]
pub struct NewSaga {
    pub order_id: OrderId,
    /// `Err(why)` for an order that arrived invalid: its saga is created and ends at once.
    pub order: Result<sagaflow_events::Order, Reason>,
    pub body_hash: String,
    /// The trace the order arrived in, if it carried one.
    pub trace: Option<TraceParent>,
}

/// A saga of a defined saga to create, its input already checked against the definition's
/// schema and size limit.
#[derive(Debug, Clone)]
pub struct NewDefined {
    pub saga: SagaName,
    pub id: BusinessId,
    pub input: serde_json::Value,
    /// A hash of the input: the same id with another input is a conflict.
    pub input_hash: String,
    pub trace: Option<TraceParent>,
}

#[derive(Debug)]
pub enum Placed {
    Created(SagaRecord),
    /// The same order was placed before: nothing new starts.
    Existing(SagaRecord),
    /// The order id is taken by a different order.
    Conflict(SagaRecord),
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // Short-lived and moved once; boxing would only add an allocation.
pub enum Controlled {
    UnknownSaga,
    /// The request was recorded; `ignored` says why if it moved nothing.
    Recorded {
        record: SagaRecord,
        ignored: Option<Ignored>,
    },
}

/// An input for an existing saga, before it is resolved against the saga's definition.
enum Incoming {
    Reply(Answer),
    Timer { timer: Timer, key: Vec<u8> },
    Control(Control),
}

/// A participant's answer, to an order saga's typed command or to a defined saga's, with what
/// the engine reads of it.
struct Answer {
    key: SagaKey,
    saga_id: SagaId,
    step: sagaflow_events::StepName,
    phase: sagaflow_events::Phase,
    attempt: u32,
    outcome: ReplyOutcome,
    /// Payment's reference for a charge (order saga).
    payment_id: Option<sagaflow_events::PaymentId>,
    /// A defined saga's step result.
    result: Option<sagaflow_events::StepResult>,
}

impl Answer {
    /// An order saga's reply, or else a defined saga's; the error says why it is neither.
    fn parse(body: &[u8]) -> Result<Self, String> {
        match serde_json::from_slice::<ReplyMessage>(body) {
            Ok(r) => Ok(Self {
                key: SagaKey::of_order(&r.order_id),
                saga_id: r.saga_id,
                step: r.step,
                phase: r.phase,
                attempt: r.attempt,
                outcome: r.outcome,
                payment_id: r.payment_id,
                result: None,
            }),
            Err(as_order) => match serde_json::from_slice::<SagaReply>(body) {
                Ok(r) => Ok(Self {
                    key: r.key(),
                    saga_id: r.saga_id,
                    step: r.step,
                    phase: r.phase,
                    attempt: r.attempt,
                    outcome: r.outcome,
                    payment_id: None,
                    result: r.result,
                }),
                // A body that names an order is meant as an order's reply: say what is wrong
                // with it as that.
                Err(_) if !body_has_field(body, "saga") => Err(format!("not a reply message: {as_order}")),
                Err(as_defined) => Err(format!("not a reply message: {as_defined}")),
            },
        }
    }
}

/// Whether a JSON object has a top-level field `name`, without reading the rest into types.
fn body_has_field(body: &[u8], name: &str) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(body)
        .is_ok_and(|fields| fields.contains_key(name))
}

/// What one input did to an existing saga.
#[allow(clippy::large_enum_variant)] // Short-lived and moved once; boxing would only add an allocation.
enum Applied {
    UnknownSaga,
    /// A reply for another saga under the same order id.
    OtherSaga,
    Recorded {
        record: SagaRecord,
        ignored: Option<Ignored>,
        effects: Vec<Effect>,
        /// An accepted reply: how long its command waited, for the step metrics.
        answered: Option<Answered>,
    },
}

/// A reply that moved a saga: its step, phase and outcome (labels from the definition and a
/// fixed set of words, never from the message) and how long after its command it came.
struct Answered {
    step: String,
    phase: sagaflow_saga::Phase,
    outcome: &'static str,
    waited_ms: u64,
}

pub struct Engine {
    pub store: Arc<Store>,
    pub catalog: Arc<Catalog>,
    pub topology: Topology,
    pub metrics: Arc<Metrics>,
    /// Timers handed over by the timer task, told when each is applied or could not be.
    pub held_timers: HeldTimers,
    /// Woken after every commit: new timers may be due earlier than the timer task thinks.
    pub timer_wake: Arc<Notify>,
}

impl Apply for Engine {
    type Job = Job;

    fn apply_message(&mut self, message: &Received, writes: &Writes<'_>) -> Result<Verdict, ApplyError> {
        match message.from {
            INTAKE => self.intake(message, writes),
            REPLIES => self.reply(message, writes),
            other => Ok(Verdict::Reject(format!("no consumer {other}"))),
        }
    }

    fn apply_job(&mut self, job: Job, writes: &Writes<'_>) -> Result<Reply, ApplyError> {
        Ok(match job {
            Job::Place { new, answer } => {
                let result = answered(self.place(writes, new, now_millis()))?;
                Box::new(move || {
                    let _ = answer.send(result);
                })
            }
            Job::Start { new, answer } => {
                let result = answered(self.start_defined(writes, new, now_millis()))?;
                Box::new(move || {
                    let _ = answer.send(result);
                })
            }
            Job::Control { order_id, control, answer } => {
                let result = answered(self.control(writes, &order_id, control))?;
                Box::new(move || {
                    let _ = answer.send(result);
                })
            }
            Job::Timer { order_id, key, timer } => {
                let now = now_millis();
                let timer = match timer {
                    Some(timer) => Some(timer),
                    // The index entry could not be read. Its key still names the saga and the
                    // due time, and the saga's record says which timer it armed for then: read
                    // in this batch, not from what was committed before it.
                    None => answered(self.store.transaction(writes, |tx| tx.armed_timer(&order_id, &key)))?
                        .unwrap_or_else(|e| {
                            tracing::error!(order_id, error = %e, "cannot read the saga of an unreadable timer");
                            None
                        }),
                };
                let result = match timer {
                    Some(timer) => self
                        .apply(writes, &order_id, &Incoming::Timer { timer, key: key.clone() }, now)
                        .map(drop),
                    None => self.store.transaction(writes, |tx| tx.forget_timer(&key)),
                };
                // A timer the saga cannot take now (its record cannot be read, say) is tried
                // again later, not handed straight back to fail again.
                let retry_at = match answered(result)? {
                    Ok(()) => None,
                    Err(e) => {
                        tracing::error!(order_id, error = %e, "a timer could not be applied; trying again in {RETRY_AFTER_MS} ms");
                        Some(now.saturating_add(RETRY_AFTER_MS))
                    }
                };
                // The timer task may hand this timer over again only once its removal is
                // committed: until then it still reads it as due.
                let held = self.held_timers.clone();
                Box::new(move || {
                    let mut held = held.lock().unwrap_or_else(|p| p.into_inner());
                    match retry_at {
                        None => held.applied(&key),
                        Some(at) => held.failed(key, at),
                    }
                })
            }
            Job::Sweep { cutoff, limit, answer } => {
                let removed = self.sweep(writes, cutoff, limit).map_err(ApplyError::fatal)?;
                Box::new(move || {
                    let _ = answer.send(removed);
                })
            }
        })
    }

    fn seal(&mut self, writes: &Writes<'static>) {
        self.store.feed().seal(writes);
    }

    fn after_commit(&mut self) {
        self.store.feed().mark_durable();
        self.timer_wake.notify_one();
    }
}

/// A broken store stops the pipeline; any other error is the caller's answer.
fn answered<T>(result: Result<T, StoreError>) -> Result<Result<T, StoreError>, ApplyError> {
    match result {
        Err(e) if e.is_fatal() => Err(ApplyError::fatal(e)),
        other => Ok(other),
    }
}

impl Engine {
    /// An `OrderPlaced` from the intake queue: starts a saga exactly as `POST /orders` does.
    fn intake(&self, message: &Received, writes: &Writes<'_>) -> Result<Verdict, ApplyError> {
        let placed: OrderPlaced = match serde_json::from_slice(&message.body) {
            Ok(p) => p,
            Err(e) => return Ok(Verdict::Reject(format!("not an OrderPlaced message: {e}"))),
        };
        let order_id = match placed.parsed_order_id() {
            Some(Ok(id)) => id,
            Some(Err(e)) => return Ok(Verdict::Reject(format!("invalid orderId: {e}"))),
            None => return Ok(Verdict::Reject("orderId is missing".into())),
        };
        let new = new_saga(order_id, &placed, &self.catalog, message.trace());
        match answered(self.place(writes, new, now_millis()))? {
            Ok(Placed::Created(_) | Placed::Existing(_)) => Ok(Verdict::Done),
            Ok(Placed::Conflict(existing)) => {
                Ok(Verdict::Reject(format!("orderId {} already names a different order", existing.key)))
            }
            Err(e) => Ok(Verdict::Reject(e.to_string())),
        }
    }

    /// A participant's reply.
    fn reply(&self, message: &Received, writes: &Writes<'_>) -> Result<Verdict, ApplyError> {
        let reply = match Answer::parse(&message.body) {
            Ok(r) => r,
            Err(why) => return Ok(Verdict::Reject(why)),
        };
        let order_id = reply.key.to_string();
        match answered(self.apply(writes, &order_id, &Incoming::Reply(reply), now_millis()))? {
            Ok(Applied::UnknownSaga | Applied::OtherSaga) => {
                self.metrics.replies_for_unknown_sagas.inc();
                tracing::debug!(
                    order_id,
                    "reply for a saga this store does not hold; counted and acknowledged"
                );
                Ok(Verdict::Done)
            }
            Ok(Applied::Recorded { .. }) => Ok(Verdict::Done),
            Err(e) => Ok(Verdict::Reject(e.to_string())),
        }
    }

    /// Creates a saga and starts it, or finds the one placed before with this order id.
    pub fn place(&self, writes: &Writes<'_>, new: NewSaga, now: u64) -> Result<Placed, StoreError> {
        let definition = self.store.current_definition();
        let key = SagaKey::of_order(&new.order_id);
        let placed = self.store.transaction(writes, |tx| {
            if let Some(existing) = tx.record(key.as_str())? {
                return Ok(same_or_conflict(existing, &new.body_hash));
            }
            let mut record =
                self.new_record(tx, key, &definition, definition.fingerprint(), new.trace, now)?;
            record.order = new.order.clone().ok();
            record.invalid = new.order.clone().err();
            record.body_hash = new.body_hash.clone();
            let input = if record.order.is_some() {
                Input::Start
            } else {
                Input::Cancel { reason: sagaflow_events::order::INVALID_ORDER_REASON.into() }
            };
            self.begin(tx, record, &definition, input, now)
        })?;
        if let Placed::Created(record) = &placed {
            self.metrics.orders_placed.inc();
            tracing::info!(order_id = %record.key, trace_id = record.trace_id, state = %record.saga.status(), "saga created");
        }
        Ok(placed)
    }

    /// Creates a saga of a defined saga and starts it, or finds the one started before with
    /// this id.
    pub fn start_defined(
        &self,
        writes: &Writes<'_>,
        new: NewDefined,
        now: u64,
    ) -> Result<Placed, StoreError> {
        let key = SagaKey::of(&new.saga, &new.id);
        let Some((fingerprint, definition)) = self.store.current_defined(new.saga.as_str()) else {
            return Err(StoreError::UnknownSaga(new.saga.to_string()));
        };
        let placed = self.store.transaction(writes, |tx| {
            if let Some(existing) = tx.record(key.as_str())? {
                return Ok(same_or_conflict(existing, &new.input_hash));
            }
            let mut record = self.new_record(tx, key, &definition, fingerprint, new.trace, now)?;
            record.body_hash = new.input_hash.clone();
            record.defined = Some(Box::new(Defined {
                saga: new.saga.clone(),
                id: new.id.clone(),
                input: new.input.clone(),
                results: Default::default(),
            }));
            self.begin(tx, record, &definition, Input::Start, now)
        })?;
        if let Placed::Created(record) = &placed {
            self.metrics.orders_placed.inc();
            tracing::info!(saga = %record.key, trace_id = record.trace_id, state = %record.saga.status(), "saga created");
        }
        Ok(placed)
    }

    /// A saga's record before its first input.
    fn new_record(
        &self,
        tx: &Tx<'_>,
        key: SagaKey,
        definition: &SagaDefinition,
        fingerprint: String,
        trace: Option<TraceParent>,
        now: u64,
    ) -> TxResult<SagaRecord> {
        let saga_id = SagaId::generate();
        Ok(SagaRecord {
            key,
            saga: Saga::new(saga_id.as_str(), definition, seed_of(&saga_id)),
            saga_id,
            order: None,
            invalid: None,
            definition: fingerprint,
            body_hash: String::new(),
            created_at: now,
            updated_at: now,
            created_seq: tx.next_seq()?,
            finished_at: None,
            trace_id: trace.unwrap_or_else(TraceParent::new_trace).trace_id(),
            payment_id: None,
            command_sent_at: now,
            history_len: 0,
            ignored_recorded: 0,
            defined: None,
        })
    }

    /// Applies a new saga's first input, and writes it with its history and messages.
    fn begin(
        &self,
        tx: &Tx<'_>,
        mut record: SagaRecord,
        definition: &SagaDefinition,
        input: Input,
        now: u64,
    ) -> TxResult<Placed> {
        let applied = record.saga.apply(definition, &input, Timestamp(now));
        if record.saga.is_terminal() {
            record.finished_at = Some(now);
        }
        tx.append_history(
            &mut record,
            &HistoryEntry { at: Timestamp(now), input, ignored: applied.ignored },
        )?;
        tx.create(&record)?;
        for message in self.messages(definition, &record, &applied.effects, now) {
            tx.stage(&message)?;
        }
        Ok(Placed::Created(record))
    }

    /// What a transition's effects become on the bus, for the saga's kind.
    fn messages(
        &self,
        definition: &SagaDefinition,
        record: &SagaRecord,
        effects: &[Effect],
        now: u64,
    ) -> Vec<sagaflow_runtime::bus::Message> {
        match &record.defined {
            None => outgoing::messages(&self.topology, definition, record, effects, now),
            Some(defined) => match self.store.file(&record.definition) {
                Some(file) => {
                    outgoing::defined_messages(&self.topology, &file, record, defined, effects, now)
                }
                None => {
                    tracing::error!(saga = %record.key, definition = record.definition, "no file for a defined saga's definition");
                    Vec::new()
                }
            },
        }
    }

    fn control(
        &self,
        writes: &Writes<'_>,
        order_id: &str,
        control: Control,
    ) -> Result<Controlled, StoreError> {
        Ok(match self.apply(writes, order_id, &Incoming::Control(control), now_millis())? {
            Applied::UnknownSaga | Applied::OtherSaga => Controlled::UnknownSaga,
            Applied::Recorded { record, ignored, .. } => Controlled::Recorded { record, ignored },
        })
    }

    /// Applies one input to an existing saga, in one transaction.
    fn apply(
        &self,
        writes: &Writes<'_>,
        order_id: &str,
        incoming: &Incoming,
        now: u64,
    ) -> Result<Applied, StoreError> {
        let outcome = self.store.transaction(writes, |tx| {
            let fired = match incoming {
                Incoming::Timer { key, .. } => Some(key.as_slice()),
                _ => None,
            };
            let Some(mut record) = tx.record(order_id)? else {
                // A stale timer of a saga that is gone must not fire for ever.
                if let Some(key) = fired {
                    tx.forget_timer(key)?;
                }
                return Ok(Applied::UnknownSaga);
            };
            if let Incoming::Reply(reply) = incoming {
                if reply.saga_id != record.saga_id {
                    return Ok(Applied::OtherSaga);
                }
            }
            let definition = self.store.definition_of(&record)?;
            let before = Indexed::of(&record);
            let input = core_input(&definition, incoming);
            let applied = record.saga.apply(&definition, &input, Timestamp(now));
            let entry = HistoryEntry { at: Timestamp(now), input, ignored: applied.ignored };
            if applied.ignored.is_some() {
                // Recorded while a saga has few; after that only counted, and nothing is written:
                // what an ignored input costs must not grow with the saga's past.
                if record.ignored_recorded >= MAX_IGNORED_RECORDED {
                    if let Some(key) = fired {
                        tx.forget_timer(key)?;
                    }
                    return Ok(Applied::Recorded {
                        record,
                        ignored: applied.ignored,
                        effects: Vec::new(),
                        answered: None,
                    });
                }
                record.ignored_recorded += 1;
            } else {
                self.moved(&mut record, incoming, &applied.effects, now);
            }
            let answered = match &entry.input {
                Input::Reply { step, phase, outcome, .. } if applied.ignored.is_none() => Some(Answered {
                    step: definition.step(*step).map_or_else(|| format!("step{step}"), |s| s.name.clone()),
                    phase: *phase,
                    outcome: match outcome {
                        Outcome::Success => "success",
                        Outcome::Failure { .. } => "failure",
                        Outcome::Transient { .. } => "transient",
                    },
                    waited_ms: now.saturating_sub(record.command_sent_at),
                }),
                _ => None,
            };
            if applied.effects.iter().any(|e| matches!(e, Effect::Send { .. })) {
                record.command_sent_at = now;
            }
            tx.append_history(&mut record, &entry)?;
            tx.update(before, &record, fired)?;
            for message in self.messages(&definition, &record, &applied.effects, now) {
                tx.stage(&message)?;
            }
            Ok(Applied::Recorded { record, ignored: applied.ignored, effects: applied.effects, answered })
        })?;
        self.observe(order_id, &outcome, now);
        Ok(outcome)
    }

    /// What a saga that moved keeps besides its state: payment's reference, or a defined
    /// saga's step result, from a reply the core accepted.
    fn moved(&self, record: &mut SagaRecord, incoming: &Incoming, effects: &[Effect], now: u64) {
        record.updated_at = now;
        if let Incoming::Reply(reply @ Answer { outcome: ReplyOutcome::Succeeded, .. }) = incoming {
            if let Some(id) = &reply.payment_id {
                record.payment_id.get_or_insert_with(|| id.clone());
            }
            // Only an action's result is kept: later steps carry what the action gave.
            let action = reply.phase == sagaflow_events::Phase::Action;
            if let (Some(defined), Some(result), true) = (&mut record.defined, &reply.result, action) {
                defined.results.insert(reply.step.to_string(), result.clone().into_value());
            }
        }
        if effects.iter().any(|e| matches!(e, Effect::Finished { .. })) {
            record.finished_at = Some(now);
        }
    }

    fn observe(&self, order_id: &str, outcome: &Applied, now: u64) {
        let Applied::Recorded { record, ignored, effects, answered } = outcome else { return };
        if let Some(why) = ignored {
            self.metrics.inputs_ignored.inc();
            tracing::debug!(order_id, trace_id = record.trace_id, ignored = %why, "input ignored");
            return;
        }
        self.metrics.inputs_applied.inc();
        if let Some(a) = answered {
            let labels = [("step", a.step.as_str()), ("phase", a.phase.into()), ("outcome", a.outcome)];
            self.metrics.step_seconds.with(&labels).observe(a.waited_ms as f64 / 1000.0);
        }
        for effect in effects {
            match effect {
                Effect::Finished { status } => {
                    let took = now.saturating_sub(record.created_at);
                    let completed = *status == sagaflow_saga::Status::Completed;
                    let outcome = if completed { "completed" } else { "compensated" };
                    self.metrics.saga_seconds.with(&[("outcome", outcome)]).observe(took as f64 / 1000.0);
                    self.metrics.recent.ended(now, completed, record.saga.reason(), took);
                    tracing::info!(order_id, trace_id = record.trace_id, %status, reason = record.saga.reason(), "saga finished");
                }
                Effect::Publish { event: SagaEvent::Stuck { .. } } => {
                    tracing::warn!(order_id, trace_id = record.trace_id, "saga stuck: a command keeps failing; retry it (sagactl retry {order_id}) once it can succeed");
                }
                _ => {}
            }
        }
    }

    /// Retention: removes finished sagas past the window, and tells each participant which it
    /// may forget, in the same transaction.
    fn sweep(&self, writes: &Writes<'_>, cutoff: u64, limit: usize) -> Result<usize, StoreError> {
        let candidates = self.store.finished_before(cutoff, limit)?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let removed = self.store.transaction(writes, |tx| {
            let mut forgotten: BTreeMap<Participant, Vec<Forgotten>> = BTreeMap::new();
            let mut removed = 0usize;
            for id in &candidates {
                // Read again inside the transaction: only what is still finished and old goes.
                let Some(record) = tx.record(id)? else { continue };
                let old = record.finished_at.is_some_and(|at| at <= cutoff);
                if !old || !record.saga.is_terminal() {
                    continue;
                }
                tx.remove(&record)?;
                removed += 1;
                // Only the order saga's participants are told: they are ours. A defined
                // saga's participant keys what it keeps by saga id, which is never used again.
                let Some(order_id) = record.key.order_id() else { continue };
                let completed = record.saga.status() == sagaflow_saga::Status::Completed;
                if let Some(definition) = self.store.definition(&record.definition) {
                    for participant in outgoing::participants(&definition) {
                        forgotten.entry(participant).or_default().push(Forgotten {
                            saga_id: record.saga_id.clone(),
                            order_id: order_id.clone(),
                            completed,
                        });
                    }
                }
            }
            stage_forgets(tx, &self.topology, cutoff, forgotten)?;
            Ok(removed)
        })?;
        self.metrics.sagas_removed.add(removed as u64);
        if removed > 0 {
            tracing::debug!(removed, "finished sagas past retention removed");
        }
        Ok(removed)
    }
}

fn stage_forgets(
    tx: &crate::store::Tx<'_>,
    topology: &Topology,
    cutoff: u64,
    forgotten: BTreeMap<Participant, Vec<Forgotten>>,
) -> TxResult<()> {
    for (participant, sagas) in forgotten {
        for chunk in sagas.chunks(sagaflow_events::command::MAX_FORGOTTEN) {
            if let Some(message) = outgoing::forget(topology, participant, cutoff, chunk.to_vec()) {
                tx.stage(&message)?;
            }
        }
    }
    Ok(())
}

/// The core's input for one incoming input, with the step found by name in the saga's own
/// definition. An unknown step name becomes an index the core ignores as unknown.
fn core_input(definition: &SagaDefinition, incoming: &Incoming) -> Input {
    match incoming {
        Incoming::Reply(reply) => {
            let step = definition.index_of(reply.step.as_str()).unwrap_or(u32::MAX);
            let phase = match reply.phase {
                sagaflow_events::Phase::Action => sagaflow_saga::Phase::Action,
                sagaflow_events::Phase::Compensation => sagaflow_saga::Phase::Compensation,
            };
            let outcome = match &reply.outcome {
                ReplyOutcome::Succeeded => Outcome::Success,
                ReplyOutcome::Failed { reason } => Outcome::Failure { reason: reason.to_string() },
                ReplyOutcome::Transient { reason } => Outcome::Transient { reason: reason.to_string() },
            };
            Input::Reply { step, phase, attempt: reply.attempt, outcome }
        }
        Incoming::Timer { timer, .. } => Input::TimerFired { timer: *timer },
        Incoming::Control(Control::Cancel) => Input::Cancel { reason: "cancelled".into() },
        Incoming::Control(Control::Retry) => Input::Retry,
    }
}

/// The saga placed before under the same key: the same one again, or a conflict.
fn same_or_conflict(existing: SagaRecord, body_hash: &str) -> Placed {
    if existing.body_hash == body_hash {
        Placed::Existing(existing)
    } else {
        Placed::Conflict(existing)
    }
}

/// The saga's jitter seed: fixed at creation and stored, so replay reproduces every timer.
fn seed_of(saga_id: &SagaId) -> u64 {
    let digest = Sha256::digest(saga_id.as_str().as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The saga to create for an order, valid or not. The body hash is taken over the normalised
/// order, so the same order sent with other spacing or field order is still the same order.
pub fn new_saga(
    order_id: OrderId,
    placed: &OrderPlaced,
    catalog: &Catalog,
    trace: Option<TraceParent>,
) -> NewSaga {
    let order = placed.validate(order_id.clone(), catalog).map_err(|e| Reason::new(&e.to_string()));
    let canonical = match &order {
        Ok(order) => serde_json::to_vec(order),
        Err(_) => serde_json::to_vec(&OrderPlaced { event: None, order_id: None, ..placed.clone() }),
    }
    .expect("orders serialise");
    let body_hash = format!("{:x}", Sha256::digest(&canonical));
    NewSaga { order_id, order, body_hash, trace }
}
