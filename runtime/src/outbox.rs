//! The transactional outbox: messages that a state change must send are staged in the same
//! [`Writes`] as the change, and committed in the same sled transaction, so both happen or
//! neither does. The relay
//! ([`crate::bus::relay`]) publishes what the outbox holds and removes an entry once the broker
//! confirmed it.
//!
//! Three rules keep this exact:
//! - **Publish only what is durable.** An entry is released to the relay only after the flush
//!   that made it durable ([`Outbox::mark_durable`]); otherwise a crash could lose the state
//!   change while its command was already out (a charge for an order nobody remembers).
//! - **Publish again after any doubt.** After a reconnect or a restart the relay starts from the
//!   oldest entry; receivers deduplicate.
//! - **Never retry for ever what the broker refuses.** An entry the broker keeps refusing (it
//!   closes the channel, or nacks it) is moved to the `parked` tree with the reason, counted,
//!   and shown at `GET /outbox/parked`; everything behind it flows on.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::bus::message::Message;
use crate::metrics::Counter;
use crate::writes::Writes;

/// The outbox of one process: a sled tree keyed by a monotonic id, the durable watermark, and
/// the entries set aside.
pub struct Outbox {
    tree: sled::Tree,
    /// Entries the broker refused for good, with why: id -> [`ParkedEntry`].
    parked: sled::Tree,
    /// The highest id staged so far. Ids start at 1: the watermark starts at 0 meaning
    /// "nothing yet", and an entry with id 0 would never move it, so the relay would not wake.
    staged: AtomicU64,
    /// The highest id known to be on disk: the relay publishes up to here and no further.
    durable: watch::Sender<u64>,
    pub metrics: OutboxMetrics,
}

#[derive(Debug, Default)]
pub struct OutboxMetrics {
    /// Messages published and confirmed by the broker.
    pub published: Counter,
    /// Messages moved aside because the broker kept refusing them.
    pub parked: Counter,
}

/// An entry the broker refused, kept for an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParkedEntry {
    /// Why it was set aside: the broker's last refusal.
    pub reason: String,
    /// When (ms since the epoch).
    pub parked_at: u64,
    /// The message as it would have gone out, in [`Message::encode`] form.
    #[serde(with = "hex_bytes")]
    pub message: Vec<u8>,
}

impl Outbox {
    /// Opens the outbox. Whatever it holds on opening was recovered from disk, so all of it is
    /// durable and will be published again: that is the outbox's part of crash recovery.
    pub fn open(db: &sled::Db) -> sled::Result<Arc<Self>> {
        let tree = db.open_tree("outbox")?;
        let parked = db.open_tree("outbox.parked")?;
        let last = tree.last()?.map(|(k, _)| key_id(&k)).unwrap_or(0);
        let (durable, _) = watch::channel(last);
        Ok(Arc::new(Self {
            tree,
            parked,
            staged: AtomicU64::new(last),
            durable,
            metrics: OutboxMetrics::default(),
        }))
    }

    pub fn tree(&self) -> &sled::Tree {
        &self.tree
    }

    /// Stages a message with the batch's other writes: it is committed with them or not at all.
    pub fn stage(&self, writes: &Writes<'_>, message: &Message) {
        writes.insert(&self.tree, &self.next_id().to_be_bytes(), message.encode());
    }

    /// Stages one message on its own, outside any batch (tests and tools).
    pub fn stage_alone(&self, message: &Message) -> sled::Result<()> {
        self.tree.insert(self.next_id().to_be_bytes(), message.encode())?;
        Ok(())
    }

    /// A new entry id. Ids only grow while the process runs, and start above every entry on
    /// disk. An id staged by an input that is then discarded is a gap the relay skips.
    fn next_id(&self) -> u64 {
        // The pipeline is the only stager, so ids come in the order entries are staged.
        self.staged.fetch_add(1, Ordering::AcqRel) + 1
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

    /// The durable watermark, for the relay.
    pub fn watch_durable(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// Messages waiting to be published.
    pub fn depth(&self) -> usize {
        self.tree.len()
    }

    /// Up to `limit` entries with ids in `from..=upto`. An entry that cannot be read (only a
    /// bug writes one) is parked at once rather than skipped for ever.
    pub fn read(&self, from: u64, upto: u64, limit: usize) -> Vec<(u64, Message)> {
        let mut out = Vec::new();
        for entry in self.tree.range(from.to_be_bytes()..=upto.to_be_bytes()) {
            if out.len() == limit {
                break;
            }
            let Ok((k, v)) = entry else { break };
            let id = key_id(&k);
            match Message::decode(&v) {
                Ok(m) => out.push((id, m)),
                Err(e) => self.park(id, &format!("the outbox entry cannot be read: {e}")),
            }
        }
        out
    }

    /// One entry, if it is still waiting.
    pub fn get(&self, id: u64) -> Option<Message> {
        let bytes = self.tree.get(id.to_be_bytes()).ok()??;
        Message::decode(&bytes).ok()
    }

    /// The broker confirmed `id`: it leaves the outbox. Not flushed: if the removal is lost in
    /// a crash the message goes out again, which receivers absorb.
    pub fn confirmed(&self, id: u64) {
        if self.tree.remove(id.to_be_bytes()).is_ok() {
            self.metrics.published.inc();
        }
    }

    /// Removes `id` without publishing it: a public event that no queue is bound to.
    pub fn skipped(&self, id: u64) {
        let _ = self.tree.remove(id.to_be_bytes());
    }

    /// Moves `id` aside with `reason`, so that what follows it can flow.
    pub fn park(&self, id: u64, reason: &str) {
        use sled::Transactional;
        let key = id.to_be_bytes();
        let moved = (&self.tree, &self.parked).transaction(|(tree, parked)| {
            let Some(message) = tree.remove(&key)? else { return Ok(false) };
            let entry = ParkedEntry {
                reason: reason.to_owned(),
                parked_at: crate::now_millis(),
                message: message.to_vec(),
            };
            parked.insert(&key, serde_json::to_vec(&entry).expect("a parked entry serialises"))?;
            Ok::<_, sled::transaction::ConflictableTransactionError<()>>(true)
        });
        match moved {
            Ok(true) => {
                self.metrics.parked.inc();
                tracing::error!(
                    id,
                    reason,
                    "the broker keeps refusing an outbox entry; parked it, and what follows flows on"
                );
            }
            Ok(false) => {}
            Err(e) => tracing::error!(id, error = ?e, "could not park an outbox entry"),
        }
    }

    /// Parked entries, oldest first, at most `limit`.
    pub fn parked(&self, limit: usize) -> Vec<(u64, ParkedEntry)> {
        self.parked
            .iter()
            .take(limit)
            .filter_map(|e| {
                let (k, v) = e.ok()?;
                Some((key_id(&k), serde_json::from_slice(&v).ok()?))
            })
            .collect()
    }

    /// How many entries are parked.
    pub fn parked_count(&self) -> usize {
        self.parked.len()
    }
}

fn key_id(key: &[u8]) -> u64 {
    let mut bytes = [0u8; 8];
    let n = key.len().min(8);
    bytes[8 - n..].copy_from_slice(&key[key.len() - n..]);
    u64::from_be_bytes(bytes)
}

/// Bytes as a hex string in JSON: parked messages are read by people and tools.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(bytes.len() * 2);
        for b in bytes {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        (0..text.len())
            .step_by(2)
            .map(|i| text.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(|| serde::de::Error::custom("not hex"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::message::Route;

    #[test]
    fn a_parked_entry_leaves_the_queue_and_keeps_its_message_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let outbox = Outbox::open(&db).unwrap();
        let route = Route { exchange: "x".into(), key: String::new() };
        for body in [b"one".to_vec(), b"two".to_vec(), vec![0xff, 0xfe]] {
            outbox.stage_alone(&Message::json(route.clone(), "o", "k", body)).unwrap();
        }
        let all = outbox.read(0, u64::MAX, 10);
        assert_eq!(all.len(), 3);
        outbox.park(all[1].0, "FRAME_ERROR");
        let left: Vec<Vec<u8>> = outbox.read(0, u64::MAX, 10).into_iter().map(|(_, m)| m.body).collect();
        assert_eq!(left, [b"one".to_vec(), vec![0xff, 0xfe]]);
        let parked = outbox.parked(10);
        assert_eq!(parked.len(), 1);
        assert_eq!(parked[0].1.reason, "FRAME_ERROR");
        assert_eq!(Message::decode(&parked[0].1.message).unwrap().body, b"two");
        let json = serde_json::to_string(&parked[0].1).unwrap();
        assert_eq!(serde_json::from_str::<ParkedEntry>(&json).unwrap(), parked[0].1);
        assert_eq!(outbox.metrics.parked.get(), 1);
    }
}
