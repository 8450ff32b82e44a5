//! What each participant provides to the shared loop: its books, and how a command changes
//! them, inside the transaction that also records the barrier and stages the reply.
//!
//! Each domain states the invariant it keeps in its module's documentation, and keeps it
//! whatever the command: commands are untrusted input (see `tests/hostile_commands.rs`).

use sagaflow_events::{CommandMessage, Forgotten, Participant};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::barrier::Answer;

/// Why a domain could not do what it was asked, as opposed to refusing it (a refusal is an
/// [`Answer`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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
}

pub type TxResult<T> = Result<T, ConflictableTransactionError<DomainError>>;

/// Aborts the transaction with `e`.
pub fn abort<T>(e: DomainError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(e))
}

/// A participant's business.
pub trait Domain: Send + Sync + 'static {
    fn participant(&self) -> Participant;

    /// Performs the action on `books`, or refuses it. A refusal must write nothing.
    fn act(&self, books: &TransactionalTree, command: &CommandMessage) -> TxResult<Answer>;

    /// Undoes the action if `action_happened`; a null compensation otherwise.
    fn undo(
        &self,
        books: &TransactionalTree,
        command: &CommandMessage,
        action_happened: bool,
    ) -> TxResult<()>;

    /// Drops what the books keep for a saga the orchestrator removed.
    fn forget(&self, books: &TransactionalTree, saga: &Forgotten) -> TxResult<()>;

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
    fn on_event(&self, _books: &TransactionalTree, _event: &sagaflow_events::PublicEvent) -> TxResult<()> {
        Ok(())
    }

    /// The read-only view served over HTTP at `path()`, as JSON.
    fn view(&self, books: &sled::Tree) -> serde_json::Value;

    /// Where the view is served: `/payments`, `/stock` or `/notifications`.
    fn path(&self) -> &'static str;
}

/// Reads a JSON value from a transactional tree.
pub fn get_json<T: serde::de::DeserializeOwned>(tree: &TransactionalTree, key: &str) -> TxResult<Option<T>> {
    match tree.get(key.as_bytes())? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .or_else(|e| abort(DomainError::Corrupt { key: key.to_owned(), error: e.to_string() })),
        None => Ok(None),
    }
}

/// Writes a JSON value into a transactional tree.
pub fn put_json<T: serde::Serialize>(tree: &TransactionalTree, key: &str, value: &T) -> TxResult<()> {
    tree.insert(key.as_bytes(), serde_json::to_vec(value).expect("serialises"))?;
    Ok(())
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
