//! What each participant provides to the shared loop.

use sagaflow_events::{CommandMessage, Participant};
use sled::transaction::{ConflictableTransactionError, TransactionalTree};

use crate::barrier::Answer;

pub type TxResult<T> = Result<T, ConflictableTransactionError<String>>;

/// A participant's business: how to do and undo its step, inside the transaction that also
/// records the barrier and stages the reply.
pub trait Domain: Send + Sync + 'static {
    fn participant(&self) -> Participant;

    /// Performs the action on `state`, or refuses it. A refusal must write nothing.
    fn act(&self, state: &TransactionalTree, command: &CommandMessage) -> TxResult<Answer>;

    /// Undoes the action if `action_happened`; a null compensation otherwise. Must succeed.
    fn undo(
        &self,
        state: &TransactionalTree,
        command: &CommandMessage,
        action_happened: bool,
    ) -> TxResult<()>;

    /// Makes durable what this batch's actions wrote outside sled (notification's mails).
    /// Called once per batch, before the flush that records those actions as done.
    fn make_durable(&self) -> std::io::Result<()> {
        Ok(())
    }

    /// Sets up a fresh store (inventory's initial stock). Called once at start.
    fn seed(&self, _state: &sled::Tree) -> sled::Result<()> {
        Ok(())
    }

    /// A queue of public events this participant follows, if any (inventory: completions).
    fn event_queue(&self, _topology: &sagaflow_events::Topology) -> Option<String> {
        None
    }

    /// Applies a public event from `event_queue`. Must be idempotent: events may repeat.
    fn on_event(&self, _state: &TransactionalTree, _event: &sagaflow_events::PublicEvent) -> TxResult<()> {
        Ok(())
    }

    /// The read-only view served over HTTP at `path()`, as JSON.
    fn view(&self, state: &sled::Tree) -> serde_json::Value;

    /// Where the view is served: `/payments`, `/stock` or `/notifications`.
    fn path(&self) -> &'static str;
}

/// Reads a JSON value from a transactional tree.
pub fn get_json<T: serde::de::DeserializeOwned>(tree: &TransactionalTree, key: &str) -> TxResult<Option<T>> {
    match tree.get(key.as_bytes())? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| ConflictableTransactionError::Abort(format!("{key}: {e}"))),
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
