//! The saga store, in sled. It only stores: the engine ([`crate::engine`]) decides what a saga
//! does; this module keeps records, histories and the indexes that follow them consistent.
//!
//! Trees:
//! - `sagas`: saga key (an order id, or `{saga}/{id}`) -> [`SagaRecord`] (JSON): where the saga stands. Compact, and rewritten
//!   only when the saga moves.
//! - `history`: creation sequence (8 bytes) + entry index (4 bytes) -> [`HistoryEntry`]: each
//!   input, appended under its own key, so recording one costs the same however long the saga.
//! - `timers`: due time (8 bytes, big-endian) + order id -> the saga's one armed timer. Ordered
//!   by due time, so the timer task reads only what is due.
//! - `by_state`: state code (1 byte) + creation sequence -> order id, for listing by state.
//! - `by_created`: creation sequence -> order id, for listing newest first.
//! - `meta`: saga counts per state, and every saga definition in use by its fingerprint, with
//!   the saga name and version of the file it came from (and, for a defined saga, the file).
//! - `outbox`: messages to publish (see `sagaflow_runtime::outbox`).
//! - `changes`: the change feed, one entry per state or step change ([`crate::feed`]).
//!
//! **Everything one input changes is one unit ([`Store::transaction`], [`Tx`])**: the new
//! state, its history entry, the commands and events it emits and the timer it arms are kept
//! together or not at all, in the batch's [`Writes`], which the pipeline commits as one sled
//! transaction and makes durable with one flush. Nothing is acknowledged, answered or
//! published before that.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use sagaflow_runtime::bus::Message;
use sagaflow_runtime::db::Db;
use sagaflow_runtime::outbox::Outbox;
use sagaflow_runtime::writes::Writes;
use sagaflow_saga::{HistoryEntry, SagaDefinition, Status, Timer, Timestamp};

use crate::feed::{Change, Feed, FeedError};
use crate::record::{SagaRecord, MAX_RECORD_BYTES};
use crate::saga_file::SagaFile;

/// Where the definitions' labels are kept in `meta`, by fingerprint.
const LABEL_PREFIX: &[u8] = b"definition-label:";

/// Where defined sagas' files are kept in `meta`, by fingerprint: what the engine reads from
/// the file (participants, carried fields) for a saga that started under it.
const FILE_PREFIX: &[u8] = b"definition-file:";

/// Where every definition a stored saga may run under is kept in `meta`, by fingerprint.
const DEFINITION_PREFIX: &[u8] = b"definition:";

/// What `meta` says about definitions, by fingerprint, while the store opens.
struct Known {
    definitions: HashMap<String, Arc<SagaDefinition>>,
    labels: HashMap<String, DefinitionLabel>,
    files: HashMap<String, Arc<SagaFile>>,
}

impl Known {
    /// Records a definition new sagas start with, with its label and (for a defined saga) its
    /// file, unless `meta` has them already. The first label a definition was started with
    /// stays: the same steps under a later version number are still the definition the
    /// earlier sagas run under.
    fn keep(
        &mut self,
        meta: &sled::Tree,
        fingerprint: &str,
        definition: SagaDefinition,
        label: DefinitionLabel,
        file: Option<SagaFile>,
    ) -> Result<Arc<SagaDefinition>, StoreError> {
        let key = |prefix: &[u8]| [prefix, fingerprint.as_bytes()].concat();
        if !self.definitions.contains_key(fingerprint) {
            meta.insert(key(DEFINITION_PREFIX), serde_json::to_vec(&definition).expect("serialises"))?;
            self.definitions.insert(fingerprint.to_owned(), Arc::new(definition));
        }
        if !self.labels.contains_key(fingerprint) {
            meta.insert(key(LABEL_PREFIX), serde_json::to_vec(&label).expect("serialises"))?;
            self.labels.insert(fingerprint.to_owned(), label);
        }
        if let Some(file) = file.filter(|_| !self.files.contains_key(fingerprint)) {
            meta.insert(key(FILE_PREFIX), serde_json::to_vec(&file).expect("serialises"))?;
            self.files.insert(fingerprint.to_owned(), Arc::new(file));
        }
        Ok(self.definitions[fingerprint].clone())
    }
}

/// Every `meta` entry under `prefix`, by the rest of its key (a fingerprint).
fn read_meta<T: serde::de::DeserializeOwned>(
    meta: &sled::Tree,
    prefix: &[u8],
) -> Result<HashMap<String, T>, StoreError> {
    let mut found = HashMap::new();
    for entry in meta.scan_prefix(prefix) {
        let (key, value) = entry?;
        let fingerprint = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
        let item = serde_json::from_slice(&value)
            .map_err(|e| StoreError::Corrupt { key: fingerprint.clone(), error: e.to_string() })?;
        found.insert(fingerprint, item);
    }
    Ok(found)
}

/// A saga defined in a file, ready to run: new sagas of its name start with it.
#[derive(Debug, Clone)]
pub struct DefinedSaga {
    pub file: SagaFile,
    pub definition: SagaDefinition,
}

/// The saga's name and version in the file a definition came from, for operators.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DefinitionLabel {
    pub name: String,
    pub version: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
    #[error("store holds an unreadable record for {key}: {error}")]
    Corrupt { key: String, error: String },
    #[error("saga {order_id} runs under definition {fingerprint}, which this store does not know")]
    UnknownDefinition { order_id: String, fingerprint: String },
    #[error("no saga named {0:?} is defined")]
    UnknownSaga(String),
    #[error("the record of {order_id} would be {bytes} bytes, over the limit of {MAX_RECORD_BYTES}")]
    RecordTooLarge { order_id: String, bytes: usize },
    #[error(transparent)]
    Durability(#[from] sagaflow_runtime::db::DbError),
    #[error(transparent)]
    Feed(#[from] FeedError),
}

impl StoreError {
    /// True when the store itself failed, and the process must stop; the other errors concern
    /// one saga and are answered or dead-lettered.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Sled(_) | Self::Durability(_) | Self::Feed(FeedError::Sled(_)))
    }
}

pub type TxResult<T> = Result<T, StoreError>;

pub struct Store {
    db: Arc<Db>,
    sagas: sled::Tree,
    history: sled::Tree,
    timers: sled::Tree,
    by_state: sled::Tree,
    by_created: sled::Tree,
    meta: sled::Tree,
    outbox: Arc<Outbox>,
    feed: Feed,
    /// The definition new orders start with.
    current: Arc<SagaDefinition>,
    /// The fingerprint new sagas of each defined saga start with, by the saga's name.
    current_defined: HashMap<String, String>,
    /// Every definition a stored saga may run under, by fingerprint.
    definitions: RwLock<HashMap<String, Arc<SagaDefinition>>>,
    /// The files of defined sagas' definitions, by fingerprint.
    files: HashMap<String, Arc<SagaFile>>,
    /// Which saga file and version each known definition came from, by fingerprint.
    labels: HashMap<String, DefinitionLabel>,
    /// The largest record written since start, for `/metrics` and the bench.
    largest_record: std::sync::atomic::AtomicUsize,
}

/// What the indexes hold for a saga before it moves: its state and its armed timer.
#[derive(Debug, Clone, Copy)]
pub struct Indexed {
    pub status: Status,
    pub timer: Option<(Timer, Timestamp)>,
}

impl Indexed {
    pub fn of(record: &SagaRecord) -> Self {
        Self { status: record.saga.status(), timer: record.saga.timer() }
    }
}

/// A timer index entry that fell due ([`Store::due_timers`]).
#[derive(Debug, PartialEq)]
pub struct DueTimer {
    /// Its index key: the due time and the saga's key.
    pub key: Vec<u8>,
    pub order_id: String,
    /// What the entry says the saga armed; `None` when it cannot be read (a future `Timer`
    /// encoding, say), for the engine to settle from the saga's record ([`Tx::armed_timer`]).
    pub timer: Option<Timer>,
}

impl Store {
    /// Opens (or creates) the store. Opening reads no saga: recovery is the timer index and the
    /// outbox, both already on disk, so start-up time does not grow with the number of sagas.
    /// Opens the store, with `definition` (from the file and version `label` names) for new
    /// sagas. Every definition a stored saga runs under stays known, with its label.
    pub fn open(db: Arc<Db>, definition: SagaDefinition, label: DefinitionLabel) -> Result<Self, StoreError> {
        Self::open_with(db, definition, label, Vec::new())
    }

    /// [`Store::open`], with sagas defined in files beside the order saga. Each one's file is
    /// kept by its fingerprint, as the order saga's definition is.
    pub fn open_with(
        db: Arc<Db>,
        definition: SagaDefinition,
        label: DefinitionLabel,
        defined: Vec<DefinedSaga>,
    ) -> Result<Self, StoreError> {
        let sled = db.sled();
        let outbox = Outbox::open(sled)?;
        let meta = sled.open_tree("meta")?;
        let mut known = Known {
            definitions: read_meta::<SagaDefinition>(&meta, DEFINITION_PREFIX)?
                .into_iter()
                .map(|(fingerprint, d)| (fingerprint, Arc::new(d)))
                .collect(),
            labels: read_meta(&meta, LABEL_PREFIX)?,
            files: read_meta::<SagaFile>(&meta, FILE_PREFIX)?
                .into_iter()
                .map(|(fingerprint, f)| (fingerprint, Arc::new(f)))
                .collect(),
        };
        let fingerprint = definition.fingerprint();
        let current = known.keep(&meta, &fingerprint, definition, label, None)?;
        let mut current_defined = HashMap::new();
        for DefinedSaga { file, definition } in defined {
            let fingerprint = file.fingerprint(&definition);
            let label = DefinitionLabel { name: file.name.clone(), version: file.version };
            current_defined.insert(file.name.clone(), fingerprint.clone());
            known.keep(&meta, &fingerprint, definition, label, Some(file))?;
        }
        let Known { definitions, labels, files } = known;
        Ok(Self {
            sagas: sled.open_tree("sagas")?,
            history: sled.open_tree("history")?,
            timers: sled.open_tree("timers")?,
            by_state: sled.open_tree("by_state")?,
            by_created: sled.open_tree("by_created")?,
            meta,
            outbox,
            feed: Feed::open(sled)?,
            current,
            current_defined,
            definitions: RwLock::new(definitions),
            files,
            labels,
            largest_record: Default::default(),
            db,
        })
    }

    pub fn db(&self) -> &Arc<Db> {
        &self.db
    }

    pub fn feed(&self) -> &Feed {
        &self.feed
    }

    /// Keeps the last `keep` changes in the change feed.
    pub fn keeping_changes(mut self, keep: u64) -> Self {
        self.feed = self.feed.keeping(keep);
        self
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// The definition new sagas start with.
    pub fn current_definition(&self) -> Arc<SagaDefinition> {
        self.current.clone()
    }

    /// The fingerprint and definition new sagas of the defined saga `name` start with.
    pub fn current_defined(&self, name: &str) -> Option<(String, Arc<SagaDefinition>)> {
        let fingerprint = self.current_defined.get(name)?;
        Some((fingerprint.clone(), self.definition(fingerprint)?))
    }

    /// Defined sagas still in flight (running, compensating or stuck) whose saga this store
    /// does not start any more, by saga name: how many, and the first few keys. Reads only
    /// the state index, which holds sagas in flight and not the finished past.
    pub fn in_flight_without_definition(&self) -> Result<BTreeMap<String, (usize, Vec<String>)>, StoreError> {
        let mut orphans: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        for status in [Status::Running, Status::Compensating, Status::Stuck] {
            let range = state_key(status, 0).to_vec()..vec![status_code(status) + 1];
            for entry in self.by_state.range(range) {
                let (_, key) = entry?;
                let key = String::from_utf8_lossy(&key).into_owned();
                let Some((saga, _)) = key.split_once('/') else { continue };
                if self.current_defined.contains_key(saga) {
                    continue;
                }
                let (count, examples) = orphans.entry(saga.to_owned()).or_default();
                *count += 1;
                if examples.len() < 5 {
                    examples.push(key);
                }
            }
        }
        Ok(orphans)
    }

    /// The file of a defined saga's definition.
    pub fn file(&self, fingerprint: &str) -> Option<Arc<SagaFile>> {
        self.files.get(fingerprint).cloned()
    }

    pub fn definition(&self, fingerprint: &str) -> Option<Arc<SagaDefinition>> {
        self.definitions.read().unwrap_or_else(|p| p.into_inner()).get(fingerprint).cloned()
    }

    /// The file's saga name and version a definition came from; `None` for one stored before
    /// definitions had labels.
    pub fn label(&self, fingerprint: &str) -> Option<&DefinitionLabel> {
        self.labels.get(fingerprint)
    }

    /// The definition a stored saga runs under.
    pub fn definition_of(&self, record: &SagaRecord) -> Result<Arc<SagaDefinition>, StoreError> {
        self.definition(&record.definition).ok_or_else(|| StoreError::UnknownDefinition {
            order_id: record.key.to_string(),
            fingerprint: record.definition.clone(),
        })
    }

    /// The largest record written since start, in bytes.
    pub fn largest_record(&self) -> usize {
        self.largest_record.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Runs `f` over the store as one unit of `writes`: what it writes is kept only if it
    /// succeeds.
    pub fn transaction<T>(&self, writes: &Writes<'_>, f: impl FnOnce(&Tx<'_>) -> TxResult<T>) -> TxResult<T> {
        writes.scope(|writes| f(&Tx { writes, store: self }))
    }

    pub fn get(&self, order_id: &str) -> Result<Option<SagaRecord>, StoreError> {
        self.sagas.get(order_id)?.map(|bytes| decode(order_id, &bytes)).transpose()
    }

    /// The saga's history, oldest first; at most the last `limit` entries.
    pub fn history(&self, record: &SagaRecord, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let prefix = record.created_seq.to_be_bytes();
        let mut entries = Vec::new();
        for entry in self.history.scan_prefix(prefix).rev().take(limit) {
            let (key, value) = entry?;
            let entry: HistoryEntry = serde_json::from_slice(&value).map_err(|e| StoreError::Corrupt {
                key: format!("history of {} #{:?}", record.key, &key[8..]),
                error: e.to_string(),
            })?;
            entries.push(entry);
        }
        entries.reverse();
        Ok(entries)
    }

    /// A page of sagas, newest first, optionally of one state, starting after the cursor
    /// (a creation sequence from a previous page). Returns the page and the next cursor.
    pub fn list(
        &self,
        filter: &ListFilter,
        limit: usize,
        after: Option<u64>,
    ) -> Result<(Vec<SagaRecord>, Option<u64>), StoreError> {
        let ids: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match filter.state {
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
        // The last saga looked at: where the next page starts, when there may be more.
        let mut last_scanned = None;
        let mut more = false;
        for (scanned, entry) in ids.enumerate() {
            if page.len() == limit || scanned == MAX_SCANNED_PER_PAGE {
                more = true;
                break;
            }
            let (key, id) = entry?;
            last_scanned =
                key.len().checked_sub(8).and_then(|at| key[at..].try_into().ok()).map(u64::from_be_bytes);
            let Some(record) = self.get(&String::from_utf8_lossy(&id))? else { continue };
            if filter.since.is_some_and(|since| record.created_at < since) {
                // Newest first: everything further down is older still.
                break;
            }
            if filter.matches(&record) {
                page.push(record);
            }
        }
        let next = if more { last_scanned } else { None };
        Ok((page, next))
    }

    /// Order ids of up to `limit` finished sagas (completed or compensated) that finished at or
    /// before `cutoff`, oldest first by creation. The scan of a state stops at the first one
    /// not old enough, so a sweep costs what it removes, not what the store holds.
    pub fn finished_before(&self, cutoff: u64, limit: usize) -> Result<Vec<String>, StoreError> {
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
        Ok(candidates)
    }

    /// Armed timers due at or before `now` that `skip` does not pass over: (index key, order id,
    /// timer), at most `limit`. Skipped ones are not decoded: under overload thousands of due
    /// timers wait with the engine, and the timer task looks past them at every scan.
    ///
    /// An entry whose value cannot be read is handed over all the same, with no timer, not
    /// passed over for ever, which would leave its saga waiting without saying so.
    pub fn due_timers(
        &self,
        now: u64,
        limit: usize,
        skip: impl Fn(&[u8]) -> bool,
    ) -> Result<Vec<DueTimer>, StoreError> {
        let mut due = Vec::new();
        for entry in self.timers.range(..(now.saturating_add(1)).to_be_bytes()) {
            let (key, value) = entry?;
            if skip(&key) {
                continue;
            }
            if due.len() == limit {
                break;
            }
            let order_id = String::from_utf8_lossy(&key[8..]).into_owned();
            let timer = serde_json::from_slice(&value)
                .inspect_err(|e| tracing::warn!(order_id, error = %e, "unreadable timer index entry"))
                .ok();
            due.push(DueTimer { key: key.to_vec(), order_id, timer });
        }
        Ok(due)
    }

    /// When the earliest armed timer is due.
    pub fn next_due(&self) -> Result<Option<u64>, StoreError> {
        Ok(self.timers.first()?.map(|(key, _)| timer_due(&key)))
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

/// Most sagas one page of a filtered list looks at. A filter that matches few sagas returns
/// a short page and a cursor to go on from, so that no request scans the whole store.
pub const MAX_SCANNED_PER_PAGE: usize = 10_000;

/// Which sagas a list shows. Every field narrows it; none set lists every saga.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    pub state: Option<Status>,
    /// The saga's reason (`payment_declined`, `timed_out`, ...).
    pub reason: Option<String>,
    pub user_id: Option<String>,
    /// Created at or after, in epoch milliseconds.
    pub since: Option<u64>,
    /// Created before, in epoch milliseconds.
    pub until: Option<u64>,
    /// The saga definition's name (`order`, `trip`, ...).
    pub saga: Option<String>,
}

impl ListFilter {
    fn matches(&self, record: &SagaRecord) -> bool {
        self.reason.as_deref().is_none_or(|r| record.saga.reason() == Some(r))
            && self
                .user_id
                .as_deref()
                .is_none_or(|u| record.order.as_ref().is_some_and(|o| o.user_id.as_str() == u))
            && self.until.is_none_or(|until| record.created_at < until)
            && self.saga.as_deref().is_none_or(|saga| record.saga_name() == saga)
    }
}

/// One unit of writes over every tree of the store.
pub struct Tx<'a> {
    writes: &'a Writes<'a>,
    store: &'a Store,
}

impl Tx<'_> {
    pub fn record(&self, order_id: &str) -> TxResult<Option<SagaRecord>> {
        self.writes
            .get(&self.store.sagas, order_id.as_bytes())?
            .map(|bytes| decode(order_id, &bytes))
            .transpose()
    }

    /// A new creation sequence: the listing order, and the name of the saga's history keys.
    /// Never given twice, even across a crash (sled persists its id generator).
    pub fn next_seq(&self) -> TxResult<u64> {
        Ok(self.store.db.sled().generate_id()?)
    }

    /// Writes a saga that did not exist, with its indexes.
    pub fn create(&self, record: &SagaRecord) -> TxResult<()> {
        self.writes.insert(&self.store.by_created, &record.created_seq.to_be_bytes(), record.key.as_str());
        self.write(None, record)
    }

    /// Writes a saga after it moved from `before`, with every index that follows its state and
    /// its timer. `fired` is the timer index key of a timer that just fired, if one did.
    pub fn update(&self, before: Indexed, record: &SagaRecord, fired: Option<&[u8]>) -> TxResult<()> {
        if let Some(key) = fired {
            self.writes.remove(&self.store.timers, key);
        }
        self.write(Some(before), record)
    }

    fn write(&self, before: Option<Indexed>, record: &SagaRecord) -> TxResult<()> {
        let id = record.key.as_str();
        let bytes = record.encode();
        if bytes.len() > MAX_RECORD_BYTES {
            return Err(StoreError::RecordTooLarge { order_id: id.to_owned(), bytes: bytes.len() });
        }
        let (old_status, old_timer) = match before {
            Some(b) => (Some(b.status), b.timer),
            None => (None, None),
        };
        let waits_on = |timer: Option<(Timer, Timestamp)>| timer.map(|(t, _)| (t.step, t.phase));
        if old_status != Some(record.saga.status()) || waits_on(old_timer) != waits_on(record.saga.timer()) {
            self.store.feed.append(self.writes, &self.change(record));
        }
        let (writes, store) = (self.writes, self.store);
        // The timer index holds exactly the saga's one armed timer.
        let timer = record.saga.timer();
        if old_timer != timer {
            if let Some((_, at)) = old_timer {
                writes.remove(&store.timers, timer_key(at.0, id.as_bytes()));
            }
            if let Some((timer, at)) = timer {
                writes.insert(
                    &store.timers,
                    timer_key(at.0, id.as_bytes()),
                    serde_json::to_vec(&timer).expect("serialises"),
                );
            }
        }
        let status = record.saga.status();
        if old_status != Some(status) {
            if let Some(old) = old_status {
                writes.remove(&store.by_state, &state_key(old, record.created_seq));
                self.add_count(old, -1)?;
            }
            writes.insert(&store.by_state, &state_key(status, record.created_seq), id);
            self.add_count(status, 1)?;
        }
        store.largest_record.fetch_max(bytes.len(), std::sync::atomic::Ordering::Relaxed);
        writes.insert(&store.sagas, id, bytes);
        Ok(())
    }

    /// What the change feed says about `record` now.
    fn change(&self, record: &SagaRecord) -> Change {
        let waiting = record.saga.timer().map(|(t, _)| t);
        let definition = self.store.definition_of(record).ok();
        Change {
            order_id: record.key.to_string(),
            saga_id: record.saga_id.to_string(),
            state: crate::http::view::state(record.saga.status()),
            reason: record.saga.reason().map(str::to_owned),
            step: waiting.and_then(|t| Some(definition?.step(t.step)?.name.clone())),
            phase: waiting.map(|t| crate::http::view::phase(t.phase)),
            at: record.updated_at,
        }
    }

    /// Appends an entry to the saga's history and counts it in the record (which the caller
    /// writes in the same transaction).
    pub fn append_history(&self, record: &mut SagaRecord, entry: &HistoryEntry) -> TxResult<()> {
        let key = history_key(record.created_seq, record.history_len);
        self.writes.insert(&self.store.history, &key, serde_json::to_vec(entry).expect("serialises"));
        record.history_len = record.history_len.saturating_add(1);
        Ok(())
    }

    /// Removes a saga with its history and indexes.
    pub fn remove(&self, record: &SagaRecord) -> TxResult<()> {
        let id = record.key.as_str();
        let status = record.saga.status();
        let (writes, store) = (self.writes, self.store);
        writes.remove(&store.sagas, id);
        writes.remove(&store.by_state, &state_key(status, record.created_seq));
        writes.remove(&store.by_created, &record.created_seq.to_be_bytes());
        if let Some((_, at)) = record.saga.timer() {
            writes.remove(&store.timers, timer_key(at.0, id.as_bytes()));
        }
        for index in 0..record.history_len {
            writes.remove(&store.history, &history_key(record.created_seq, index));
        }
        self.add_count(status, -1)
    }

    /// The timer the saga's record armed for the due time that index `key` names: what an
    /// index entry that cannot be read stood for. `None` when the record is gone, cannot be
    /// read (it then arms nothing it could fire) or armed nothing for that time: the entry is
    /// stale, and only to be forgotten.
    pub fn armed_timer(&self, order_id: &str, key: &[u8]) -> TxResult<Option<Timer>> {
        let record = match self.record(order_id) {
            Ok(record) => record,
            Err(StoreError::Corrupt { .. }) => None,
            Err(e) => return Err(e),
        };
        let armed = record.and_then(|record| record.saga.timer());
        Ok(armed.filter(|(_, at)| at.0 == timer_due(key)).map(|(timer, _)| timer))
    }

    /// Forgets a stale timer index entry: its saga is gone, or armed nothing for that time.
    pub fn forget_timer(&self, key: &[u8]) -> TxResult<()> {
        self.writes.remove(&self.store.timers, key);
        Ok(())
    }

    /// Stages a message in the outbox.
    pub fn stage(&self, message: &Message) -> TxResult<()> {
        self.store.outbox.stage(self.writes, message);
        Ok(())
    }

    fn add_count(&self, status: Status, delta: i64) -> TxResult<()> {
        let key = count_key(status);
        let current = self.writes.get(&self.store.meta, key.as_bytes())?.map(|v| decode_i64(&v)).unwrap_or(0);
        self.writes.insert(&self.store.meta, key.as_bytes(), &(current + delta).to_be_bytes());
        Ok(())
    }
}

fn decode(key: &str, bytes: &[u8]) -> Result<SagaRecord, StoreError> {
    serde_json::from_slice(bytes)
        .map_err(|e| StoreError::Corrupt { key: key.to_owned(), error: e.to_string() })
}

/// A timer index key: the due time, big-endian so that keys sort by it, then the saga's key
/// byte for byte.
fn timer_key(due: u64, saga_key: &[u8]) -> Vec<u8> {
    let mut key = Vec::with_capacity(8 + saga_key.len());
    key.extend_from_slice(&due.to_be_bytes());
    key.extend_from_slice(saga_key);
    key
}

/// The due time a [`timer_key`] starts with.
fn timer_due(key: &[u8]) -> u64 {
    u64::from_be_bytes(key[..8].try_into().expect("8-byte prefix"))
}

fn history_key(seq: u64, index: u32) -> [u8; 12] {
    let mut key = [0u8; 12];
    key[..8].copy_from_slice(&seq.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
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

fn decode_i64(bytes: &[u8]) -> i64 {
    bytes.try_into().map(i64::from_be_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sagaflow_saga::{Phase, TimerKind};

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = Arc::new(Db::open(&dir.path().join("sagas.sled")).expect("db"));
        let store =
            Store::open(db, crate::order_saga::default_definition(), crate::order_saga::default_label())
                .expect("store");
        (dir, store)
    }

    fn arm(store: &Store, due: u64, order_id: &str) {
        let timer = Timer { step: 0, phase: Phase::Action, attempt: 1, kind: TimerKind::AttemptTimeout };
        store
            .timers
            .insert(timer_key(due, order_id.as_bytes()), serde_json::to_vec(&timer).expect("serialises"))
            .expect("insert");
    }

    #[test]
    fn due_timers_pass_over_the_skipped_ones_without_counting_them() {
        let (_dir, store) = store();
        for (due, id) in [(10, "a"), (20, "b"), (30, "c"), (40, "d"), (99, "later")] {
            arm(&store, due, id);
        }
        let ids = |due: Vec<DueTimer>| due.into_iter().map(|d| d.order_id).collect::<Vec<_>>();
        assert_eq!(ids(store.due_timers(50, 10, |_| false).unwrap()), ["a", "b", "c", "d"]);
        // Under overload the first due timers wait with the engine: the limit counts only the
        // ones handed over now, so the ones behind them are not starved.
        let waiting = [timer_key(10, b"a"), timer_key(20, b"b")];
        let skip = |key: &[u8]| waiting.iter().any(|w| w == key);
        assert_eq!(ids(store.due_timers(50, 1, skip).unwrap()), ["c"]);
        assert_eq!(ids(store.due_timers(50, 10, skip).unwrap()), ["c", "d"]);
        assert_eq!(store.next_due().unwrap(), Some(10));
    }

    #[test]
    fn an_unreadable_timer_is_handed_over_without_a_timer_not_passed_over() {
        let (_dir, store) = store();
        store.timers.insert(timer_key(10, b"gone"), b"{not a timer".to_vec()).unwrap();
        arm(&store, 20, "b");
        let due = store.due_timers(50, 10, |_| false).unwrap();
        let got: Vec<_> = due.iter().map(|d| (d.order_id.as_str(), d.timer.is_some())).collect();
        assert_eq!(got, [("gone", false), ("b", true)]);
    }

    #[test]
    fn an_unreadable_timer_stands_for_what_its_record_armed_then_or_for_nothing() {
        let (_dir, store) = store();
        let definition = crate::order_saga::default_definition();
        let mut record =
            crate::record::tests::record_of(&crate::order_saga::tests::default_order(), &definition);
        record.saga.apply(&definition, &sagaflow_saga::Input::Start, Timestamp(1_000));
        let (armed, at) = record.saga.timer().expect("a started saga waits on its first step");
        store.sagas.insert(record.key.as_str(), record.encode()).unwrap();
        store.sagas.insert("o-unreadable", b"\xff".to_vec()).unwrap();
        let armed_timer = |order_id: &str, due: u64| {
            let writes = Writes::new();
            store.transaction(&writes, |tx| tx.armed_timer(order_id, &timer_key(due, order_id.as_bytes())))
        };
        assert_eq!(armed_timer(record.key.as_str(), at.0).unwrap(), Some(armed));
        assert_eq!(armed_timer(record.key.as_str(), at.0 + 1).unwrap(), None, "armed for another time");
        assert_eq!(armed_timer("o-gone", at.0).unwrap(), None);
        assert_eq!(armed_timer("o-unreadable", at.0).unwrap(), None);
    }
}
