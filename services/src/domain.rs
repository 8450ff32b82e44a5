//! What each participant provides to the shared loop: its books, and how a command changes
//! them, in the same unit of writes that also records the barrier and stages the reply.
//!
//! Each domain states the invariant it keeps in its module's documentation, and keeps it
//! whatever the command: commands are untrusted input (see `tests/hostile_commands.rs`).

use sagaflow_events::{CommandMessage, Forgotten, Participant};
use sagaflow_runtime::writes::Writes;
use sled::IVec;

use crate::barrier::Answer;

/// Why a domain could not do what it was asked, as opposed to refusing it (a refusal is an
/// [`Answer`]).
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// Somewhere outside sled that the domain writes cannot take it now (a full disk for the
    /// mails): the command waits and is tried again; it is never dead-lettered for this.
    #[error("{0}")]
    Unavailable(String),
    /// The books do not allow it without breaking their invariant (a release of more than is
    /// reserved): refused, never applied, and visible.
    #[error("the books do not add up: {0}")]
    Inconsistent(String),
    /// A stored value cannot be read.
    #[error("unreadable record {key}: {error}")]
    Corrupt { key: String, error: String },
    /// The store failed: the process stops.
    #[error("store: {0}")]
    Store(#[from] sled::Error),
}

pub type TxResult<T> = Result<T, DomainError>;

/// Gives up on this input with `e`: none of its writes are kept.
pub fn abort<T>(e: DomainError) -> TxResult<T> {
    Err(e)
}

/// A domain's books as one input sees them: the stored tree under the batch's writes so far.
/// What an input writes here is kept only if the input succeeds.
pub struct Books<'a> {
    writes: &'a Writes<'a>,
    tree: &'a sled::Tree,
}

impl<'a> Books<'a> {
    pub fn new(writes: &'a Writes<'a>, tree: &'a sled::Tree) -> Self {
        Self { writes, tree }
    }

    pub fn get(&self, key: &str) -> TxResult<Option<IVec>> {
        Ok(self.writes.get(self.tree, key.as_bytes())?)
    }

    pub fn insert(&self, key: &str, value: Vec<u8>) {
        self.writes.insert(self.tree, key.as_bytes(), value);
    }

    pub fn remove(&self, key: &str) {
        self.writes.remove(self.tree, key.as_bytes());
    }
}

/// A participant's business.
pub trait Domain: Send + Sync + 'static {
    fn participant(&self) -> Participant;

    /// Performs the action on `books`, or refuses it. A refusal must write nothing.
    fn act(&self, books: &Books<'_>, command: &CommandMessage) -> TxResult<Answer>;

    /// Undoes the action if `action_happened`; a null compensation otherwise.
    fn undo(&self, books: &Books<'_>, command: &CommandMessage, action_happened: bool) -> TxResult<()>;

    /// Drops what the books keep for a saga the orchestrator removed.
    fn forget(&self, books: &Books<'_>, saga: &Forgotten) -> TxResult<()>;

    /// Makes durable what this batch's actions wrote outside sled (notification's mails).
    /// Called once per batch, before the flush that records those actions as done.
    fn make_durable(&self) -> Result<(), DomainError> {
        Ok(())
    }

    /// Sets up a fresh store (inventory's initial stock). Called once at start.
    fn seed(&self, _books: &sled::Tree) -> sled::Result<()> {
        Ok(())
    }

    /// A queue of public events this participant follows, if any (inventory: completions).
    fn event_queue(&self, _topology: &sagaflow_events::Topology) -> Option<String> {
        None
    }

    /// Applies a public event from `event_queue`. Must be idempotent: events may repeat.
    fn on_event(&self, _books: &Books<'_>, _event: &sagaflow_events::PublicEvent) -> TxResult<()> {
        Ok(())
    }

    /// The read-only view served over HTTP at `path()`, as JSON.
    fn view(&self, books: &sled::Tree) -> serde_json::Value;

    /// Where the view is served: `/payments`, `/stock` or `/notifications`.
    fn path(&self) -> &'static str;
}

/// Reads a JSON value from the books.
pub fn get_json<T: serde::de::DeserializeOwned>(books: &Books<'_>, key: &str) -> TxResult<Option<T>> {
    match books.get(key)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .or_else(|e| abort(DomainError::Corrupt { key: key.to_owned(), error: e.to_string() })),
        None => Ok(None),
    }
}

/// Writes a JSON value into the books.
pub fn put_json<T: serde::Serialize>(books: &Books<'_>, key: &str, value: &T) {
    books.insert(key, serde_json::to_vec(value).expect("serialises"));
}

/// Every JSON value under a key prefix of a plain tree, with the rest of its key.
pub fn scan_json<T: serde::de::DeserializeOwned>(tree: &sled::Tree, prefix: &str) -> Vec<(String, T)> {
    tree.scan_prefix(prefix.as_bytes())
        .filter_map(Result::ok)
        .filter_map(|(k, v)| {
            let key = String::from_utf8_lossy(&k[prefix.len()..]).into_owned();
            serde_json::from_slice(&v).ok().map(|v| (key, v))
        })
        .collect()
}
