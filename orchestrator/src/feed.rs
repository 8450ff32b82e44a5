//! The change feed: one entry per saga state or step change, kept in the store's `changes` tree
//! (feed sequence, 8 bytes big-endian -> [`Change`] JSON), written in the same transaction as the
//! change itself. `GET /orders/stream` serves it.
//!
//! Why a durable feed rather than a broadcast channel: a client that reconnects with
//! `Last-Event-ID` gets exactly what it missed, across an orchestrator restart too; and a slow
//! client costs the engine nothing: it reads the tree at its own pace, and only falls off the
//! end when it lags by more than the feed keeps.
//!
//! A batch's changes are stored together, in records of several ([`records`], as the outbox
//! does), so that a change costs a fraction of a sled key to write and to remove. The feed
//! keeps at least the last `keep` changes ([`MAX_CHANGES`] by default): each batch removes the
//! records whose changes are all older than that, so the tree never grows past it by more than a
//! record, and a write costs the same whatever the feed's age. Only what is durable is served
//! ([`Feed::mark_durable`] after each commit).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use sagaflow_runtime::records::{self, key_id};
use sagaflow_runtime::writes::Writes;
use tokio::sync::watch;

/// How many changes the feed keeps by default, and so how far back a client can resume
/// (`CHANGE_FEED_KEEP`). Measured in the bench's retention run: keeping 100,000 made the store
/// three times larger (300-400 MB instead of 100-130 MB); sled keeps several times a
/// queue-shaped tree's live size in log garbage.
pub const MAX_CHANGES: u64 = 10_000;

/// How far past an unreadable last record the sequence goes on when the feed opens: further
/// than any batch draws sequences (at most `MAX_BATCH` items and one more delivery's, of a few
/// changes each), so that no new change takes a sequence the record may hold.
const PAST_UNREADABLE: u64 = 1 << 24;

/// One saga state or step change, as the stream sends it.
pub use sagaflow_api::Change;

pub struct Feed {
    tree: sled::Tree,
    /// How many changes it keeps.
    keep: u64,
    /// The sequence the next change gets. Only the engine's writer appends, so an atomic is
    /// enough; a batch that is dropped leaves a gap, which readers step over.
    next: AtomicU64,
    /// The last sequence that is durable.
    durable: watch::Sender<u64>,
    /// The keys of the records the tree holds, oldest first: what trimming removes.
    records: Mutex<VecDeque<u64>>,
}

/// Only the store failing is an error: an unreadable record or change is stepped over.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    #[error("store: {0}")]
    Sled(#[from] sled::Error),
}

impl Feed {
    pub fn open(sled: &sled::Db) -> Result<Self, FeedError> {
        let tree = sled.open_tree("changes")?;
        let last = match tree.last()? {
            Some((key, record)) => {
                let seq = key_id(&key);
                match records::entries(seq, &record) {
                    Ok(entries) => entries.last().map_or(seq, |&(last, _)| last),
                    // Which sequences it holds cannot be known. Refusing to start would stop
                    // every saga for the sake of a view of them: go on past them instead.
                    Err(reason) => {
                        tracing::error!(
                            seq,
                            reason,
                            "the change feed's last record is unreadable; going on past it"
                        );
                        seq.saturating_add(PAST_UNREADABLE)
                    }
                }
            }
            None => 0,
        };
        let keys = tree.iter().keys().map(|key| key.map(|k| key_id(&k))).collect::<Result<_, _>>()?;
        Ok(Self {
            tree,
            keep: MAX_CHANGES,
            next: AtomicU64::new(last + 1),
            durable: watch::Sender::new(last),
            records: Mutex::new(keys),
        })
    }

    /// Keeps the last `keep` changes (at least one) instead of [`MAX_CHANGES`]. A feed that
    /// held more sheds the excess as new changes come.
    pub fn keeping(mut self, keep: u64) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// How many changes it keeps.
    pub fn keeps(&self) -> u64 {
        self.keep
    }

    /// Appends `change` to the batch's writes ([`seal`](Self::seal) stores it).
    pub fn append(&self, writes: &Writes<'_>, change: &Change) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        writes.insert(
            &self.tree,
            seq.to_be_bytes().to_vec(),
            serde_json::to_vec(change).expect("serialises"),
        );
    }

    /// Gathers the batch's changes into records, just before it is committed, and removes the
    /// records whose changes are all older than the last `keep`.
    pub fn seal(&self, writes: &Writes<'static>) {
        let sealed = records::seal(writes, &self.tree);
        let mut held = self.records.lock().expect("no thread panics holding the feed's records");
        held.extend(sealed);
        let oldest_kept = self.next.load(Ordering::Relaxed).saturating_sub(self.keep);
        // Everything in a record is older than the record after it.
        while held.len() > 1 && held[1] <= oldest_kept {
            let old = held.pop_front().expect("more than one");
            writes.remove(&self.tree, old.to_be_bytes().to_vec());
        }
    }

    /// Everything appended so far is durable: readers may see it.
    pub fn mark_durable(&self) {
        let upto = self.next.load(Ordering::Relaxed) - 1;
        self.durable.send_if_modified(|durable| std::mem::replace(durable, upto) != upto);
    }

    /// The last durable sequence, and a way to wait for the next.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.durable.subscribe()
    }

    /// The last durable sequence.
    pub fn last_durable(&self) -> u64 {
        *self.durable.borrow()
    }

    /// The oldest sequence the feed still holds (the next one when it is empty).
    pub fn oldest(&self) -> Result<u64, FeedError> {
        Ok(self.tree.first()?.map_or_else(|| *self.durable.borrow() + 1, |(key, _)| key_id(&key)))
    }

    /// Up to `limit` durable changes after `after`, oldest first. An unreadable record or
    /// change is stepped over, as a gap is: a reader that ended at it would end there again at
    /// every reconnect, until the feed dropped it.
    pub fn after(&self, after: u64, limit: usize) -> Result<Vec<(u64, Change)>, FeedError> {
        let durable = *self.durable.borrow();
        let from = after.saturating_add(1);
        if from > durable {
            return Ok(Vec::new());
        }
        let start = records::holding(&self.tree, from).unwrap_or(from);
        let mut out = Vec::new();
        for record in self.tree.range(start.to_be_bytes()..=durable.to_be_bytes()) {
            let (key, record) = record?;
            let key = key_id(&key);
            let entries = match records::entries(key, &record) {
                Ok(entries) => entries,
                Err(reason) => {
                    tracing::warn!(seq = key, reason, "an unreadable record of the change feed stepped over");
                    continue;
                }
            };
            for (seq, bytes) in entries.into_iter().filter(|&(seq, _)| (from..=durable).contains(&seq)) {
                if out.len() == limit {
                    return Ok(out);
                }
                match serde_json::from_slice(bytes) {
                    Ok(change) => out.push((seq, change)),
                    Err(error) => {
                        tracing::warn!(seq, %error, "an unreadable change of the change feed stepped over")
                    }
                }
            }
        }
        Ok(out)
    }
}

/// What a reader gets next from the feed.
#[derive(Debug, Clone, PartialEq)]
pub enum Read {
    /// A change the reader asked for, with its sequence.
    Change(u64, Change),
    /// The reader is more than half the feed behind; said once.
    Lagging { behind: u64 },
    /// The feed dropped changes the reader had not read: it must start again from
    /// `resume_after` (or from now). Nothing follows.
    Lagged { resume_after: u64, keeps: u64 },
}

/// One reader's place in the feed and what it wants (one order, one state, or everything).
/// A reader costs the writer nothing: it reads the durable tree at its own pace.
#[derive(Debug)]
pub struct Cursor {
    /// The last change looked at (read, or filtered out).
    position: u64,
    order: Option<String>,
    state: Option<sagaflow_api::SagaState>,
    warned: bool,
    ended: bool,
}

impl Cursor {
    pub fn new(after: u64, order: Option<String>, state: Option<sagaflow_api::SagaState>) -> Self {
        Self { position: after, order, state, warned: false, ended: false }
    }

    /// After `Lagged` (or [`Cursor::end`]), nothing more comes.
    pub fn ended(&self) -> bool {
        self.ended
    }

    /// Reads nothing more (the feed could not be read).
    pub fn end(&mut self) {
        self.ended = true;
    }

    /// What there is to read now, oldest first; empty when the reader is up to date (wait on
    /// [`Feed::subscribe`], then read again).
    pub fn read(&mut self, feed: &Feed) -> Result<Vec<Read>, FeedError> {
        let mut out = Vec::new();
        while out.is_empty() && !self.ended {
            let oldest = feed.oldest()?;
            if self.position.saturating_add(1) < oldest {
                self.ended = true;
                out.push(Read::Lagged { resume_after: oldest - 1, keeps: feed.keeps() });
                break;
            }
            let behind = feed.last_durable().saturating_sub(self.position);
            if !self.warned && behind > feed.keeps() / 2 {
                self.warned = true;
                out.push(Read::Lagging { behind });
            }
            let changes = feed.after(self.position, 256)?;
            if changes.is_empty() {
                break;
            }
            for (seq, change) in changes {
                self.position = seq;
                let wanted = self.order.as_ref().is_none_or(|o| *o == change.order_id)
                    && self.state.is_none_or(|s| s == change.state);
                if wanted {
                    out.push(Read::Change(seq, change));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(n: u64) -> Change {
        Change {
            order_id: format!("o{n}"),
            saga_id: "s".into(),
            state: sagaflow_api::SagaState::Running,
            reason: None,
            step: None,
            phase: None,
            at: n,
        }
    }

    fn append(feed: &Feed, range: std::ops::Range<u64>) {
        let writes = Writes::new();
        for n in range {
            feed.append(&writes, &change(n));
        }
        feed.seal(&writes);
        writes.commit().unwrap();
        feed.mark_durable();
    }

    #[test]
    fn a_reader_is_told_once_it_lags_and_ends_once_the_feed_dropped_what_it_had_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let feed = Feed::open(&db).unwrap().keeping(10);
        let mut slow = Cursor::new(0, None, None);
        append(&feed, 0..8);
        // 8 behind a feed of 10: lagging, said once, then the changes.
        let read = slow.read(&feed).unwrap();
        assert_eq!(read[0], Read::Lagging { behind: 8 });
        assert_eq!(read.len(), 9);
        append(&feed, 8..16);
        let read = slow.read(&feed).unwrap();
        assert!(read.iter().all(|r| matches!(r, Read::Change(..))), "warned once: {read:?}");
        // It stops reading; the feed moves on past what it had not read (one change per batch,
        // so that the feed keeps exactly ten).
        for n in 16..40 {
            append(&feed, n..n + 1);
        }
        assert_eq!(slow.read(&feed).unwrap(), [Read::Lagged { resume_after: 30, keeps: 10 }]);
        assert!(slow.ended());
        assert!(slow.read(&feed).unwrap().is_empty());
        // A reader that keeps up is never told.
        let mut quick = Cursor::new(40, Some("o41".into()), None);
        append(&feed, 40..45);
        let read = quick.read(&feed).unwrap();
        assert_eq!(read, [Read::Change(42, change(41))], "only the order it asked for");
        assert!(quick.read(&feed).unwrap().is_empty(), "up to date: nothing to read");
    }

    #[test]
    fn only_what_is_durable_is_read_and_the_feed_keeps_a_bounded_tail() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let feed = Feed::open(&db).unwrap();
        let writes = Writes::new();
        for n in 0..3 {
            feed.append(&writes, &change(n));
        }
        writes.commit().unwrap();
        assert!(feed.after(0, 10).unwrap().is_empty(), "nothing before it is durable");
        feed.mark_durable();
        let read: Vec<u64> = feed.after(0, 10).unwrap().into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(read, [1, 2, 3]);
        assert_eq!(feed.after(1, 1).unwrap()[0].1, change(1));
        // Reopened, it goes on from where it was.
        drop(feed);
        let feed = Feed::open(&db).unwrap();
        assert_eq!((feed.oldest().unwrap(), *feed.subscribe().borrow()), (1, 3));
        // The tail is bounded: appending MAX_CHANGES more removes the first ones, and the batch
        // is stored as records of many changes.
        append(&feed, 0..MAX_CHANGES);
        assert_eq!(feed.oldest().unwrap(), 4);
        assert_eq!(feed.after(0, usize::MAX).unwrap().len() as u64, MAX_CHANGES);
        assert!(db.open_tree("changes").unwrap().len() as u64 <= MAX_CHANGES / 10);
    }

    #[test]
    fn an_unreadable_change_is_stepped_over_and_an_unreadable_record_does_not_keep_the_feed_shut() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let tree = db.open_tree("changes").unwrap();
        let feed = Feed::open(&db).unwrap();
        append(&feed, 0..3);
        drop(feed);
        // A change that is not one: readers step over it.
        tree.insert(4u64.to_be_bytes(), records::encode([(4, &b"{not a change"[..])])).unwrap();
        let feed = Feed::open(&db).unwrap();
        append(&feed, 10..12);
        let read: Vec<u64> = feed.after(0, usize::MAX).unwrap().into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(read, [1, 2, 3, 5, 6]);
        drop(feed);

        // A record cut short, last: which sequences it held cannot be known, so the feed opens
        // past them, and the tail before it is dropped as too old; a reader there is told so.
        tree.insert(7u64.to_be_bytes(), vec![records::TAG, 0, 0]).unwrap();
        let feed = Feed::open(&db).expect("opens past the unreadable record");
        append(&feed, 20..22);
        let next = 7 + PAST_UNREADABLE;
        let read: Vec<u64> = feed.after(0, usize::MAX).unwrap().into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(read, [next + 1, next + 2]);
        let mut behind = Cursor::new(3, None, None);
        assert_eq!(behind.read(&feed).unwrap(), [Read::Lagged { resume_after: 6, keeps: MAX_CHANGES }]);
    }

    #[test]
    fn batch_after_batch_the_feed_keeps_its_last_changes_and_a_record_more_at_most() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let mut feed = Feed::open(&db).unwrap().keeping(100);
        let mut appended = 0;
        for batch in 0..60u64 {
            let size = 1 + batch % 13;
            append(&feed, appended..appended + size);
            appended += size;
            let held: Vec<u64> = feed.after(0, usize::MAX).unwrap().into_iter().map(|(seq, _)| seq).collect();
            // What it holds is the tail, without a gap, ending with the last change.
            assert_eq!(held, (feed.oldest().unwrap()..=appended).collect::<Vec<_>>(), "after batch {batch}");
            let kept = appended.min(100);
            assert!(held.len() as u64 >= kept && held.len() as u64 <= kept + 12, "{} held", held.len());
            if batch == 30 {
                // Reopened, it goes on trimming what it held before.
                drop(feed);
                feed = Feed::open(&db).unwrap().keeping(100);
            }
        }
        // A reader resumes from anywhere in the tail, the middle of a record included.
        let oldest = feed.oldest().unwrap();
        let read: Vec<u64> = feed.after(oldest + 5, 3).unwrap().into_iter().map(|(seq, _)| seq).collect();
        assert_eq!(read, [oldest + 6, oldest + 7, oldest + 8]);
    }
}
