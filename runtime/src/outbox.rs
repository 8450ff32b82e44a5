//! The transactional outbox: messages that a state change must send are staged in the same
//! [`Writes`] as the change, and committed in the same sled transaction, so both happen or
//! neither does. The relay
//! ([`crate::bus::relay`]) publishes what the outbox holds and lets go of an entry once the
//! broker confirmed it.
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
//!
//! **One record for a batch's entries** ([`crate::records`]). Every entry has its own id, but
//! the entries a group commit staged are stored together ([`Outbox::seal`]): one key per
//! record instead of one per message, which made the outbox 16 of the orchestrator's ~47 sled
//! writes per saga (counted by a trace of sled's log). A record leaves the tree when the last of
//! its entries is confirmed, skipped or parked; until then the process remembers which are done
//! ([`Outbox`]'s `open`), so that within one run nothing confirmed goes out twice. After a
//! restart a record's confirmed entries may go out again, which the second rule allows.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::bus::message::Message;
use crate::metrics::Counter;
use crate::records::{self, key_id};
use crate::writes::Writes;

/// The outbox of one process: a sled tree of records keyed by their first entry's id, the
/// durable watermark, and the entries set aside.
pub struct Outbox {
    tree: sled::Tree,
    /// Entries the broker refused for good, with why: id -> [`ParkedEntry`].
    parked: sled::Tree,
    /// The highest id staged so far. Ids start at 1: the watermark starts at 0 meaning
    /// "nothing yet", and an entry with id 0 would never move it, so the relay would not wake.
    staged: AtomicU64,
    /// The highest id known to be on disk: the relay publishes up to here and no further.
    durable: watch::Sender<u64>,
    /// For every record the relay has read and not finished: the ids in it still waiting.
    open: Mutex<BTreeMap<u64, BTreeSet<u64>>>,
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
        // Above every id on disk, parked ones included: a parked entry is kept under its id.
        let last_waiting = match tree.last()? {
            Some((k, v)) => {
                let key = key_id(&k);
                records::entries(key, &v).ok().and_then(|e| e.last().map(|&(id, _)| id)).unwrap_or(key)
            }
            None => 0,
        };
        let last_parked = parked.last()?.map_or(0, |(k, _)| key_id(&k));
        let last = last_waiting.max(last_parked);
        let (durable, _) = watch::channel(last);
        Ok(Arc::new(Self {
            tree,
            parked,
            staged: AtomicU64::new(last),
            durable,
            open: Mutex::default(),
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

    /// Gathers the entries staged in a batch's `writes` into records, just before the batch is
    /// committed ([`records::seal`]). Entries keep their ids.
    pub fn seal(&self, writes: &Writes<'static>) {
        records::seal(writes, &self.tree);
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

    /// Messages waiting to be published (those held back included).
    pub fn depth(&self) -> usize {
        // A copy, so that a long outbox does not hold up the relay while it is counted.
        let open = self.lock().clone();
        self.tree
            .iter()
            .filter_map(Result::ok)
            .map(|(k, v)| match open.get(&key_id(&k)) {
                Some(waiting) => waiting.len(),
                None => records::entries(key_id(&k), &v).map_or(1, |e| e.len()),
            })
            .sum()
    }

    /// Up to `limit` waiting entries with ids in `from..=upto`. An entry that cannot be read
    /// (only a bug writes one) is parked at once rather than skipped for ever.
    pub fn read(&self, from: u64, upto: u64, limit: usize) -> Vec<(u64, Message)> {
        let mut out = Vec::new();
        let mut unreadable = Vec::new();
        {
            let mut open = self.lock();
            let start = records::holding(&self.tree, from).unwrap_or(from);
            'records: for record in self.tree.range(start.to_be_bytes()..=upto.to_be_bytes()) {
                let Ok((k, v)) = record else { break };
                let key = key_id(&k);
                let entries = match records::entries(key, &v) {
                    Ok(entries) => entries,
                    Err(e) => {
                        unreadable.push((key, format!("the outbox record cannot be read: {e}")));
                        continue;
                    }
                };
                let waiting = open.entry(key).or_insert_with(|| entries.iter().map(|&(id, _)| id).collect());
                for (id, bytes) in entries {
                    if id < from || id > upto || !waiting.contains(&id) {
                        continue;
                    }
                    if out.len() == limit {
                        break 'records;
                    }
                    match Message::decode(bytes) {
                        Ok(m) => out.push((id, m)),
                        Err(e) => unreadable.push((id, format!("the outbox entry cannot be read: {e}"))),
                    }
                }
            }
        }
        for (id, reason) in unreadable {
            self.park(id, &reason);
        }
        out
    }

    /// One entry, if it is still waiting.
    pub fn get(&self, id: u64) -> Option<Message> {
        let open = self.lock();
        let key = records::holding(&self.tree, id)?;
        if open.get(&key).is_some_and(|waiting| !waiting.contains(&id)) {
            return None;
        }
        let record = self.tree.get(key.to_be_bytes()).ok()??;
        let entries = records::entries(key, &record).ok()?;
        let &(_, bytes) = entries.iter().find(|&&(entry, _)| entry == id)?;
        Message::decode(bytes).ok()
    }

    /// The broker confirmed `id`: it is done. Not flushed: if the removal of its record is
    /// lost in a crash the message goes out again, which receivers absorb.
    pub fn confirmed(&self, id: u64) {
        if self.done(id) {
            self.metrics.published.inc();
        }
    }

    /// Lets `id` go without publishing it: a public event that no queue is bound to.
    pub fn skipped(&self, id: u64) {
        self.done(id);
    }

    /// Marks `id` done; its record leaves the tree with the last of its entries. False if `id`
    /// was not waiting.
    fn done(&self, id: u64) -> bool {
        let mut open = self.lock();
        let Some((key, waiting)) = self.open_record(&mut open, id) else { return false };
        if !waiting.remove(&id) {
            return false;
        }
        if waiting.is_empty() {
            open.remove(&key);
            let _ = self.tree.remove(key.to_be_bytes());
        }
        true
    }

    /// Moves `id` aside with `reason`, so that what follows it can flow: its record is
    /// rewritten without it (and without the entries already done), in one transaction with
    /// the parking, so that a crash neither loses it nor brings it back.
    pub fn park(&self, id: u64, reason: &str) {
        use sled::transaction::ConflictableTransactionError;
        use sled::Transactional;
        let mut open = self.lock();
        let Some(key) = records::holding(&self.tree, id) else { return };
        let waiting = open.get(&key).cloned();
        let moved = (&self.tree, &self.parked).transaction(|(tree, parked)| {
            let Some(record) = tree.get(key.to_be_bytes())? else { return Ok(None) };
            let (message, rest) = match records::entries(key, &record) {
                Ok(entries) => {
                    let Some(&(_, message)) = entries.iter().find(|&&(entry, _)| entry == id) else {
                        return Ok(None);
                    };
                    let rest: Vec<(u64, &[u8])> = entries
                        .into_iter()
                        .filter(|&(entry, _)| {
                            entry != id && waiting.as_ref().is_none_or(|w| w.contains(&entry))
                        })
                        .collect();
                    (message.to_vec(), rest)
                }
                // A record that cannot be read at all is parked whole, under its key.
                Err(_) if id == key => (record.to_vec(), Vec::new()),
                Err(_) => return Ok(None),
            };
            let entry = ParkedEntry { reason: reason.to_owned(), parked_at: crate::now_millis(), message };
            parked
                .insert(&id.to_be_bytes(), serde_json::to_vec(&entry).expect("a parked entry serialises"))?;
            if rest.is_empty() {
                tree.remove(&key.to_be_bytes())?;
            } else {
                tree.insert(&key.to_be_bytes(), records::encode(rest.iter().copied()))?;
            }
            Ok::<_, ConflictableTransactionError<()>>(Some(
                rest.iter().map(|&(entry, _)| entry).collect::<BTreeSet<u64>>(),
            ))
        });
        match moved {
            Ok(Some(rest)) => {
                if rest.is_empty() {
                    open.remove(&key);
                } else {
                    open.insert(key, rest);
                }
                self.metrics.parked.inc();
                tracing::error!(
                    id,
                    reason,
                    "the broker keeps refusing an outbox entry; parked it, and what follows flows on"
                );
            }
            Ok(None) => {}
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

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, BTreeSet<u64>>> {
        self.open.lock().expect("no thread panics holding the outbox's open records")
    }

    /// The waiting ids of the record that holds `id`, read from the tree if no one read it yet.
    fn open_record<'a>(
        &self,
        open: &'a mut BTreeMap<u64, BTreeSet<u64>>,
        id: u64,
    ) -> Option<(u64, &'a mut BTreeSet<u64>)> {
        // Records never overlap: an open one that holds `id` is the one. Otherwise ask the tree.
        let known =
            open.range(..=id).next_back().filter(|(_, waiting)| waiting.contains(&id)).map(|(&k, _)| k);
        let key = match known {
            Some(key) => key,
            None => records::holding(&self.tree, id)?,
        };
        let waiting = match open.entry(key) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let record = self.tree.get(key.to_be_bytes()).ok()??;
                let entries = records::entries(key, &record).ok()?;
                e.insert(entries.iter().map(|&(entry, _)| entry).collect())
            }
        };
        Some((key, waiting))
    }
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
    use proptest::prelude::*;

    fn message(body: Vec<u8>) -> Message {
        Message::json(Route { exchange: "x".into(), key: "k".into() }, "o", "kind", body)
    }

    /// Stages `bodies` as one batch, seals it and commits it, as the pipeline does.
    fn commit_batch(outbox: &Outbox, bodies: &[Vec<u8>]) {
        let writes = Writes::new();
        for body in bodies {
            // Each through an input's own child, as the pipeline stages them.
            let input = writes.child();
            outbox.stage(&input, &message(body.clone()));
            input.keep();
        }
        outbox.seal(&writes);
        writes.commit().unwrap();
        outbox.mark_durable(outbox.staged_upto());
    }

    fn waiting(outbox: &Outbox) -> Vec<(u64, Vec<u8>)> {
        outbox.read(0, u64::MAX, usize::MAX).into_iter().map(|(id, m)| (id, m.body)).collect()
    }

    #[test]
    fn a_batch_is_one_record_that_leaves_with_its_last_entry() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let outbox = Outbox::open(&db).unwrap();
        let bodies: Vec<Vec<u8>> = (0..5u8).map(|i| vec![b'a' + i]).collect();
        commit_batch(&outbox, &bodies);
        assert_eq!(outbox.tree().len(), 1, "five entries, one key");
        assert_eq!(waiting(&outbox), (1..=5).zip(bodies.clone()).collect::<Vec<_>>());
        assert_eq!(outbox.depth(), 5);

        outbox.confirmed(2);
        outbox.skipped(4);
        assert_eq!(waiting(&outbox).iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 3, 5]);
        assert_eq!(outbox.get(2), None, "a confirmed entry is not handed out again");
        assert_eq!(outbox.get(3).unwrap().body, bodies[2]);
        assert_eq!((outbox.depth(), outbox.tree().len()), (3, 1));
        assert_eq!(outbox.metrics.published.get(), 1);

        for id in [1, 3, 5, 5] {
            outbox.confirmed(id);
        }
        assert_eq!((outbox.depth(), outbox.tree().len()), (0, 0));
        assert_eq!(outbox.metrics.published.get(), 4, "a second confirm of one entry counts nothing");
    }

    #[test]
    fn a_parked_entry_leaves_its_record_and_a_restart_brings_back_only_what_waits() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let outbox = Outbox::open(&db).unwrap();
        commit_batch(&outbox, &[b"1".to_vec(), b"2".to_vec(), b"3".to_vec(), b"4".to_vec()]);
        assert_eq!(waiting(&outbox).len(), 4);
        outbox.confirmed(1);
        outbox.park(2, "PRECONDITION_FAILED");
        assert_eq!(waiting(&outbox).iter().map(|(id, _)| *id).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(Message::decode(&outbox.parked(10)[0].1.message).unwrap().body, b"2");
        drop(outbox);

        let outbox = Outbox::open(&db).unwrap();
        assert_eq!(waiting(&outbox).iter().map(|(id, _)| *id).collect::<Vec<_>>(), [3, 4]);
        assert_eq!(outbox.staged_upto(), 4, "new ids start above every entry on disk");
        commit_batch(&outbox, &[b"5".to_vec()]);
        assert_eq!(waiting(&outbox).iter().map(|(id, _)| *id).collect::<Vec<_>>(), [3, 4, 5]);
    }

    #[test]
    fn a_record_that_cannot_be_read_is_parked_whole_and_the_rest_flows() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let outbox = Outbox::open(&db).unwrap();
        commit_batch(&outbox, &[b"1".to_vec(), b"2".to_vec()]);
        let mut cut = records::encode([(3, &message(b"3".to_vec()).encode()[..])]);
        cut.pop();
        outbox.tree().insert(3u64.to_be_bytes(), cut).unwrap();
        let (nine, eight) = (message(b"9".to_vec()).encode(), message(b"8".to_vec()).encode());
        let backwards = records::encode([(9, &nine[..]), (8, &eight[..])]);
        outbox.tree().insert(8u64.to_be_bytes(), backwards).unwrap();
        outbox.tree().insert(10u64.to_be_bytes(), message(b"10".to_vec()).encode()).unwrap();

        assert_eq!(waiting(&outbox).iter().map(|(id, _)| *id).collect::<Vec<_>>(), [1, 2, 10]);
        let parked: Vec<u64> = outbox.parked(10).into_iter().map(|(id, _)| id).collect();
        assert_eq!(parked, [3, 8]);
        assert_eq!(outbox.depth(), 3);
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// A batch of entries with these body sizes.
        Batch(Vec<usize>),
        /// Confirm, skip or park the waiting entry at this index (modulo how many wait).
        Confirm(usize),
        Skip(usize),
        Park(usize),
        /// The process restarts on the same store.
        Restart,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => prop::collection::vec(prop_oneof![4 => 1..600usize, 1 => 600..6000usize], 0..30).prop_map(Step::Batch),
            4 => any::<usize>().prop_map(Step::Confirm),
            1 => any::<usize>().prop_map(Step::Skip),
            1 => any::<usize>().prop_map(Step::Park),
            1 => Just(Step::Restart),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever mix of batches, confirms, parkings and restarts: nothing committed is lost,
        /// nothing done comes back in the same run, nothing parked ever comes back, and after a
        /// restart only what was confirmed or skipped may go out again.
        #[test]
        fn no_entry_is_lost_and_none_returns_within_a_run(steps in prop::collection::vec(step(), 1..40)) {
            let dir = tempfile::tempdir().unwrap();
            let db = sled::Config::new().path(dir.path()).open().unwrap();
            let mut outbox = Outbox::open(&db).unwrap();
            let mut waiting_ids: BTreeSet<u64> = BTreeSet::new();
            let mut done_before: BTreeSet<u64> = BTreeSet::new();
            let mut parked_ids: BTreeSet<u64> = BTreeSet::new();
            let mut highest = 0;
            for step in steps {
                match step {
                    Step::Batch(sizes) => {
                        let bodies: Vec<Vec<u8>> = sizes.iter().map(|&n| vec![b'x'; n]).collect();
                        commit_batch(&outbox, &bodies);
                        for _ in &bodies {
                            highest += 1;
                            prop_assert!(waiting_ids.insert(highest));
                            prop_assert!(!parked_ids.contains(&highest), "id {} was parked before", highest);
                            // An id whose entry left the store may be given again after a restart.
                            done_before.remove(&highest);
                        }
                        prop_assert_eq!(outbox.staged_upto(), highest);
                    }
                    Step::Confirm(i) | Step::Skip(i) | Step::Park(i) if !waiting_ids.is_empty() => {
                        let id = *waiting_ids.iter().nth(i % waiting_ids.len()).unwrap();
                        waiting_ids.remove(&id);
                        match step {
                            Step::Confirm(_) => outbox.confirmed(id),
                            Step::Skip(_) => outbox.skipped(id),
                            _ => {
                                outbox.park(id, "refused");
                                parked_ids.insert(id);
                                continue;
                            }
                        }
                        done_before.insert(id);
                    }
                    Step::Confirm(_) | Step::Skip(_) | Step::Park(_) => {}
                    Step::Restart => {
                        drop(outbox);
                        outbox = Outbox::open(&db).unwrap();
                        // What was done may come back once; the model takes it as waiting again.
                        let back: BTreeSet<u64> = waiting(&outbox).into_iter().map(|(id, _)| id).collect();
                        prop_assert!(back.is_superset(&waiting_ids), "lost {:?}", waiting_ids.difference(&back).collect::<Vec<_>>());
                        let extra: BTreeSet<u64> = back.difference(&waiting_ids).copied().collect();
                        prop_assert!(extra.is_subset(&done_before), "came back: {:?}", extra.difference(&done_before).collect::<Vec<_>>());
                        prop_assert!(extra.is_disjoint(&parked_ids));
                        waiting_ids = back;
                        prop_assert!(outbox.staged_upto() <= highest);
                        // Ids go on from the highest on disk, which is at most the highest staged.
                        highest = outbox.staged_upto().max(waiting_ids.last().copied().unwrap_or(0));
                    }
                }
                let now: Vec<u64> = waiting(&outbox).into_iter().map(|(id, _)| id).collect();
                prop_assert_eq!(&now, &waiting_ids.iter().copied().collect::<Vec<_>>());
                prop_assert_eq!(outbox.depth(), waiting_ids.len());
                let parked: BTreeSet<u64> = outbox.parked(usize::MAX).into_iter().map(|(id, _)| id).collect();
                prop_assert_eq!(&parked, &parked_ids);
            }
        }
    }

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
