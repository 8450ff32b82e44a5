//! The saga store, in sled.
//!
//! Trees:
//! - `sagas`: order id -> [`SagaRecord`] (JSON): the state and its history.
//! - `outbox`: messages to publish (see `sagaflow_runtime::outbox`).
//! - `timers`: due time (8 bytes, big-endian) + order id -> the saga's one armed timer. Ordered by
//!   due time, so the timer task reads only what is due.
//! - `by_state`: state code (1 byte) + creation sequence -> order id, for listing by state.
//! - `by_created`: creation sequence -> order id, for listing newest first.
//! - `meta`: saga counts per state, and every saga definition in use by its fingerprint.
//!
//! **Every input is one transaction over all of these**: the new state, the commands and events
//! it emits and the timer it arms commit together or not at all. Durability comes later, from
//! the group commit's flush; nothing is acknowledged or published before it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};

use sagaflow_events::{Order, OrderId, ReplyMessage, ReplyOutcome, Topology};
use sagaflow_runtime::outbox::Outbox;
use sagaflow_saga::{Effect, Ignored, Input, Outcome, Saga, SagaDefinition, Status, Timer, Timestamp};
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};
use sled::Transactional;

use crate::outgoing;
use crate::record::SagaRecord;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store holds an unreadable record for {key}: {error}")]
    Corrupt { key: String, error: String },
    #[error("saga {order_id} runs under definition {fingerprint}, which this store does not know")]
    UnknownDefinition { order_id: String, fingerprint: String },
}

impl From<TransactionError<StoreError>> for StoreError {
    fn from(e: TransactionError<StoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => StoreError::Sled(e),
        }
    }
}

/// A saga to create.
#[derive(Debug, Clone)]
pub struct NewSaga {
    pub order_id: OrderId,
    /// `Err(why)` for an order that arrived invalid: its saga is created and ends at once.
    pub order: Result<Order, String>,
    pub body_hash: String,
}

#[derive(Debug)]
pub enum Placed {
    Created(SagaRecord),
    /// The same order was placed before: nothing new starts.
    Existing(SagaRecord),
    /// The order id is taken by a different order.
    Conflict(SagaRecord),
}

/// An input for an existing saga, before it is resolved against the saga's definition.
#[derive(Debug, Clone)]
pub enum Incoming {
    Reply(ReplyMessage),
    Timer { timer: Timer, key: Vec<u8> },
    Cancel { reason: String },
    Retry,
}

#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // Short-lived and moved once; boxing would only add an allocation.
pub enum Applied {
    UnknownSaga,
    /// The input was recorded; `ignored` says why if it moved nothing.
    Recorded {
        record: SagaRecord,
        ignored: Option<Ignored>,
        effects: Vec<Effect>,
        /// For an accepted reply: how long after its command was sent it came.
        reply_waited_ms: Option<u64>,
    },
}

pub struct Store {
    db: sled::Db,
    sagas: sled::Tree,
    timers: sled::Tree,
    by_state: sled::Tree,
    by_created: sled::Tree,
    meta: sled::Tree,
    outbox: Arc<Outbox>,
    topology: Topology,
    /// The definition new sagas start with.
    current: Arc<SagaDefinition>,
    /// Every definition a stored saga may run under, by fingerprint.
    definitions: RwLock<HashMap<String, Arc<SagaDefinition>>>,
}

type Trees<'a> = (
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
    &'a TransactionalTree,
);

impl Store {
    /// Opens (or creates) the store. Opening reads no saga: recovery is the timer index and the
    /// outbox, both already on disk, so start-up time does not grow with the number of sagas.
    pub fn open(path: &Path, topology: Topology, definition: SagaDefinition) -> Result<Self, StoreError> {
        let db = sagaflow_runtime::open_db(path)?;
        let outbox = Outbox::open(&db)?;
        let meta = db.open_tree("meta")?;
        let mut definitions = HashMap::new();
        for entry in meta.scan_prefix(b"definition:") {
            let (key, value) = entry?;
            let fingerprint = String::from_utf8_lossy(&key[b"definition:".len()..]).into_owned();
            let d: SagaDefinition = serde_json::from_slice(&value)
                .map_err(|e| StoreError::Corrupt { key: fingerprint.clone(), error: e.to_string() })?;
            definitions.insert(fingerprint, Arc::new(d));
        }
        let fingerprint = definition.fingerprint();
        if !definitions.contains_key(&fingerprint) {
            meta.insert(
                format!("definition:{fingerprint}"),
                serde_json::to_vec(&definition).expect("serialises"),
            )?;
        }
        let current = Arc::new(definition);
        definitions.insert(fingerprint, current.clone());
        Ok(Self {
            sagas: db.open_tree("sagas")?,
            timers: db.open_tree("timers")?,
            by_state: db.open_tree("by_state")?,
            by_created: db.open_tree("by_created")?,
            meta,
            db,
            outbox,
            topology,
            current,
            definitions: RwLock::new(definitions),
        })
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    pub fn definition(&self, fingerprint: &str) -> Option<Arc<SagaDefinition>> {
        self.definitions.read().unwrap_or_else(|p| p.into_inner()).get(fingerprint).cloned()
    }

    /// Creates a saga and starts it, or finds the one placed before with this order id.
    pub fn place(&self, new: NewSaga, now: u64) -> Result<Placed, StoreError> {
        let definition = self.current.clone();
        let fingerprint = definition.fingerprint();
        let placed = self.transaction(|trees| {
            let (sagas, _, _, _, by_created, _) = trees;
            if let Some(bytes) = sagas.get(new.order_id.as_str())? {
                let existing = decode(new.order_id.as_str(), &bytes)?;
                return Ok(if existing.body_hash == new.body_hash {
                    Placed::Existing(existing)
                } else {
                    Placed::Conflict(existing)
                });
            }
            let seq = by_created.generate_id()?;
            let seed = seed_of(new.order_id.as_str(), seq);
            let mut record = SagaRecord {
                order_id: new.order_id.clone(),
                saga: Saga::new(new.order_id.as_str(), &definition, seed),
                order: new.order.clone().ok(),
                invalid: new.order.clone().err(),
                definition: fingerprint.clone(),
                body_hash: new.body_hash.clone(),
                created_at: now,
                created_seq: seq,
                finished_at: None,
                trace_id: sagaflow_runtime::telemetry::new_trace_id(),
                payment_id: None,
                command_sent_at: now,
            };
            let input = if record.order.is_some() {
                Input::Start
            } else {
                Input::Cancel { reason: sagaflow_events::order::INVALID_ORDER_REASON.into() }
            };
            let effects = record.saga.apply(&definition, input, Timestamp(now));
            by_created.insert(&seq.to_be_bytes(), new.order_id.as_str())?;
            self.persist(trees, &definition, &mut record, None, None, &effects, now)?;
            Ok(Placed::Created(record))
        })?;
        Ok(placed)
    }

    /// Applies one input to an existing saga.
    pub fn apply(&self, order_id: &str, incoming: &Incoming, now: u64) -> Result<Applied, StoreError> {
        self.transaction(|trees| {
            let (sagas, _, timers, _, _, _) = trees;
            let Some(bytes) = sagas.get(order_id)? else {
                // A stale timer of a saga that is gone must not fire for ever.
                if let Incoming::Timer { key, .. } = incoming {
                    timers.remove(key.as_slice())?;
                }
                return Ok(Applied::UnknownSaga);
            };
            let mut record = decode(order_id, &bytes)?;
            let definition = self.definition(&record.definition).ok_or_else(|| {
                abort(StoreError::UnknownDefinition {
                    order_id: order_id.to_owned(),
                    fingerprint: record.definition.clone(),
                })
            })?;
            let before = (record.saga.status, record.saga.timer);
            let input = match incoming {
                Incoming::Reply(reply) => {
                    if let (Some(id), ReplyOutcome::Succeeded) = (&reply.payment_id, &reply.outcome) {
                        record.payment_id.get_or_insert_with(|| id.clone());
                    }
                    core_reply(&definition, reply)
                }
                Incoming::Timer { timer, .. } => Input::TimerFired { timer: *timer },
                Incoming::Cancel { reason } => Input::Cancel { reason: reason.clone() },
                Incoming::Retry => Input::Retry,
            };
            let effects = record.saga.apply(&definition, input, Timestamp(now));
            let ignored = record.saga.history.last().and_then(|h| h.ignored);
            let reply_waited_ms = match incoming {
                Incoming::Reply(_) if ignored.is_none() => Some(now.saturating_sub(record.command_sent_at)),
                _ => None,
            };
            let fired = match incoming {
                Incoming::Timer { key, .. } => Some(key.as_slice()),
                _ => None,
            };
            self.persist(trees, &definition, &mut record, Some(before), fired, &effects, now)?;
            Ok(Applied::Recorded { record, ignored, effects, reply_waited_ms })
        })
    }

    /// Writes a saga after a transition, with everything that must change with it.
    #[allow(clippy::too_many_arguments)]
    fn persist(
        &self,
        trees: Trees<'_>,
        definition: &SagaDefinition,
        record: &mut SagaRecord,
        before: Option<(Status, Option<(Timer, Timestamp)>)>,
        fired_timer: Option<&[u8]>,
        effects: &[Effect],
        now: u64,
    ) -> Result<(), ConflictableTransactionError<StoreError>> {
        let (sagas, outbox, timers, by_state, _, meta) = trees;
        let id = record.order_id.as_str();
        let (old_status, old_timer) = match before {
            Some((s, t)) => (Some(s), t),
            None => (None, None),
        };

        // The timer index holds exactly the saga's one armed timer.
        if let Some(key) = fired_timer {
            timers.remove(key)?;
        }
        if old_timer != record.saga.timer {
            if let Some((_, at)) = old_timer {
                timers.remove(timer_key(at.0, id))?;
            }
            if let Some((timer, at)) = record.saga.timer {
                timers.insert(timer_key(at.0, id), serde_json::to_vec(&timer).expect("serialises"))?;
            }
        }

        let status = record.saga.status;
        if old_status != Some(status) {
            if let Some(old) = old_status {
                by_state.remove(&state_key(old, record.created_seq))?;
                add_count(meta, old, -1)?;
            }
            by_state.insert(&state_key(status, record.created_seq), id)?;
            add_count(meta, status, 1)?;
            if status.is_terminal() {
                record.finished_at = Some(now);
            }
        }
        if effects.iter().any(|e| matches!(e, Effect::Send { .. })) {
            record.command_sent_at = now;
        }

        for message in outgoing::messages(&self.topology, definition, record, effects) {
            self.outbox.stage(outbox, &message)?;
        }
        sagas.insert(id, serde_json::to_vec(record).expect("records serialise"))?;
        Ok(())
    }

    fn transaction<T>(
        &self,
        f: impl Fn(Trees<'_>) -> Result<T, ConflictableTransactionError<StoreError>>,
    ) -> Result<T, StoreError> {
        let trees =
            (&self.sagas, self.outbox.tree(), &self.timers, &self.by_state, &self.by_created, &self.meta);
        Ok(trees.transaction(|(a, b, c, d, e, g)| f((a, b, c, d, e, g)))?)
    }

    pub fn get(&self, order_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        match self.sagas.get(order_id)? {
            Some(bytes) => Ok(Some(decode(order_id, &bytes).map_err(|e| match e {
                ConflictableTransactionError::Abort(e) => e,
                other => StoreError::Corrupt { key: order_id.into(), error: format!("{other:?}") },
            })?)),
            None => Ok(None),
        }
    }

    /// A page of sagas, newest first, optionally of one state, starting after the cursor
    /// (a creation sequence from a previous page). Returns the page and the next cursor.
    pub fn list(
        &self,
        state: Option<Status>,
        limit: usize,
        after: Option<u64>,
    ) -> Result<(Vec<SagaRecord>, Option<u64>), StoreError> {
        let ids: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match state {
            None => {
                let end = after.unwrap_or(u64::MAX);
                Box::new(self.by_created.range(..end.to_be_bytes()).rev())
            }
            Some(s) => {
                let start = state_key(s, 0);
                let end = match after {
                    Some(seq) => state_key(s, seq).to_vec(),
                    None => vec![status_code(s) + 1],
                };
                Box::new(self.by_state.range(start.to_vec()..end).rev())
            }
        };
        let mut page = Vec::new();
        let mut more = false;
        for entry in ids {
            let (_, id) = entry?;
            if page.len() == limit {
                more = true;
                break;
            }
            if let Some(record) = self.get(&String::from_utf8_lossy(&id))? {
                page.push(record);
            }
        }
        let next = if more { page.last().map(|r| r.created_seq) } else { None };
        Ok((page, next))
    }

    /// Armed timers due at or before `now`: (index key, order id, timer).
    pub fn due_timers(&self, now: u64, limit: usize) -> Result<Vec<(Vec<u8>, String, Timer)>, StoreError> {
        let mut due = Vec::new();
        for entry in self.timers.range(..(now.saturating_add(1)).to_be_bytes()).take(limit) {
            let (key, value) = entry?;
            let order_id = String::from_utf8_lossy(&key[8..]).into_owned();
            match serde_json::from_slice(&value) {
                Ok(timer) => due.push((key.to_vec(), order_id, timer)),
                Err(e) => tracing::error!(order_id, error = %e, "unreadable timer; skipped"),
            }
        }
        Ok(due)
    }

    /// When the earliest armed timer is due.
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.timers.first()?.map(|(k, _)| u64::from_be_bytes(k[..8].try_into().expect("8-byte prefix"))))
    }

    /// How many sagas are in each state.
    pub fn counts(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        use strum::IntoEnumIterator;
        let mut counts = Vec::new();
        for status in Status::iter().filter(|s| *s != Status::NotStarted) {
            let n = self.meta.get(count_key(status))?.map(|v| decode_i64(&v)).unwrap_or(0);
            counts.push((status, n));
        }
        Ok(counts)
    }

    /// Armed timers, for metrics.
    pub fn armed_timers(&self) -> usize {
        self.timers.len()
    }
}

/// Turns a participant's reply into the core's input, finding the step by name in the saga's
/// own definition. An unknown step name becomes an index the core ignores as unknown.
fn core_reply(definition: &SagaDefinition, reply: &ReplyMessage) -> Input {
    let step = definition.index_of(&reply.step).unwrap_or(u32::MAX);
    let phase = match reply.phase {
        sagaflow_events::Phase::Action => sagaflow_saga::Phase::Action,
        sagaflow_events::Phase::Compensation => sagaflow_saga::Phase::Compensation,
    };
    let outcome = match &reply.outcome {
        ReplyOutcome::Succeeded => Outcome::Success,
        ReplyOutcome::Failed { reason } => Outcome::Failure { reason: reason.clone() },
        ReplyOutcome::Transient { reason } => Outcome::Transient { reason: reason.clone() },
    };
    Input::Reply { step, phase, attempt: reply.attempt, outcome }
}

fn decode(key: &str, bytes: &[u8]) -> Result<SagaRecord, ConflictableTransactionError<StoreError>> {
    serde_json::from_slice(bytes)
        .map_err(|e| abort(StoreError::Corrupt { key: key.to_owned(), error: e.to_string() }))
}

fn abort(e: StoreError) -> ConflictableTransactionError<StoreError> {
    ConflictableTransactionError::Abort(e)
}

fn timer_key(due: u64, order_id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + order_id.len());
    key.extend_from_slice(&due.to_be_bytes());
    key.extend_from_slice(order_id.as_bytes());
    key
}

fn status_code(status: Status) -> u8 {
    match status {
        Status::NotStarted => 0,
        Status::Running => 1,
        Status::Compensating => 2,
        Status::Completed => 3,
        Status::Compensated => 4,
        Status::Stuck => 5,
    }
}

fn state_key(status: Status, seq: u64) -> [u8; 9] {
    let mut key = [0u8; 9];
    key[0] = status_code(status);
    key[1..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn count_key(status: Status) -> String {
    format!("count:{status}")
}

fn add_count(
    meta: &TransactionalTree,
    status: Status,
    delta: i64,
) -> Result<(), ConflictableTransactionError<StoreError>> {
    let key = count_key(status);
    let current = meta.get(key.as_bytes())?.map(|v| decode_i64(&v)).unwrap_or(0);
    meta.insert(key.as_bytes(), &(current + delta).to_be_bytes())?;
    Ok(())
}

fn decode_i64(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

/// The saga's jitter seed: fixed at creation and stored, so replay reproduces every timer.
fn seed_of(order_id: &str, seq: u64) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seq;
    for byte in order_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl Store {
    /// Stages one message on its own, such as a dead letter.
    pub fn stage_alone(&self, message: &sagaflow_runtime::outbox::OutboxMessage) -> Result<(), StoreError> {
        self.outbox
            .tree()
            .transaction(|tx| {
                self.outbox.stage(tx, message)?;
                Ok::<_, ConflictableTransactionError<StoreError>>(())
            })
            .map_err(StoreError::from)
    }
}

/// Retention: finished sagas leave the store once old enough, so that its size follows the
/// work in flight and the retention window, not the whole history.
impl Store {
    /// Removes up to `limit` finished sagas (completed or compensated) that finished at or
    /// before `cutoff` (ms since the epoch). Stuck sagas stay: they wait for an operator.
    /// Sagas are visited oldest first by creation; the sweep of a state stops at the first
    /// one not old enough, so a sweep costs what it removes, not what the store holds.
    pub fn remove_finished(&self, cutoff: u64, limit: usize) -> Result<usize, StoreError> {
        let mut candidates = Vec::new();
        for status in [Status::Completed, Status::Compensated] {
            let range = state_key(status, 0).to_vec()..vec![status_code(status) + 1];
            for entry in self.by_state.range(range) {
                if candidates.len() >= limit {
                    break;
                }
                let (_, id) = entry?;
                let id = String::from_utf8_lossy(&id).into_owned();
                match self.get(&id)? {
                    Some(r) if r.finished_at.is_some_and(|at| at <= cutoff) => candidates.push(id),
                    Some(_) => break,
                    None => {}
                }
            }
        }
        if candidates.is_empty() {
            return Ok(0);
        }
        let removed = self.transaction(|trees| {
            let (sagas, _, _, by_state, by_created, meta) = trees;
            let mut removed = 0usize;
            let mut per_status: HashMap<Status, i64> = HashMap::new();
            for id in &candidates {
                // Read again inside the transaction: only what is still finished and old goes.
                let Some(bytes) = sagas.get(id.as_str())? else { continue };
                let record = decode(id, &bytes)?;
                let status = record.saga.status;
                let old = record.finished_at.is_some_and(|at| at <= cutoff);
                if !old || !matches!(status, Status::Completed | Status::Compensated) {
                    continue;
                }
                sagas.remove(id.as_str())?;
                by_state.remove(&state_key(status, record.created_seq))?;
                by_created.remove(&record.created_seq.to_be_bytes())?;
                *per_status.entry(status).or_default() -= 1;
                removed += 1;
            }
            for (status, delta) in &per_status {
                add_count(meta, *status, *delta)?;
            }
            Ok(removed)
        })?;
        Ok(removed)
    }

    /// Bench and tooling only: writes `count` copies of a finished saga under new order ids, as
    /// if that many orders had run. Much faster than running them, and the same bytes on disk.
    pub fn import_finished(
        &self,
        template: &SagaRecord,
        ids: impl Iterator<Item = OrderId>,
    ) -> Result<usize, StoreError> {
        assert!(template.saga.status.is_terminal(), "the template must be a finished saga");
        let status = template.saga.status;
        let mut imported = 0i64;
        let mut sagas = sled::Batch::default();
        let mut by_state = sled::Batch::default();
        let mut by_created = sled::Batch::default();
        let write = |sagas: &mut sled::Batch, by_state: &mut sled::Batch, by_created: &mut sled::Batch| {
            self.sagas.apply_batch(std::mem::take(sagas))?;
            self.by_state.apply_batch(std::mem::take(by_state))?;
            self.by_created.apply_batch(std::mem::take(by_created))
        };
        for order_id in ids {
            let seq = self.db.generate_id()?;
            let mut record = template.clone();
            record.order_id = order_id.clone();
            record.saga.id = order_id.to_string();
            record.created_seq = seq;
            if let Some(order) = record.order.as_mut() {
                order.order_id = order_id.clone();
            }
            sagas.insert(order_id.as_str(), serde_json::to_vec(&record).expect("records serialise"));
            by_state.insert(&state_key(status, seq), order_id.as_str());
            by_created.insert(&seq.to_be_bytes(), order_id.as_str());
            imported += 1;
            if imported % 10_000 == 0 {
                write(&mut sagas, &mut by_state, &mut by_created)?;
            }
        }
        write(&mut sagas, &mut by_state, &mut by_created)?;
        let key = count_key(status);
        let current = self.meta.get(key.as_bytes())?.map(|v| decode_i64(&v)).unwrap_or(0);
        self.meta.insert(key.as_bytes(), &(current + imported).to_be_bytes())?;
        self.db.flush()?;
        Ok(imported as usize)
    }
}
