//! Group commit: many inputs are applied, then one flush makes them all durable, and only then
//! are their messages acknowledged and their outgoing messages released to the relay.
//!
//! The order matters and is the same in every process:
//! 1. apply each input in its own sled transaction (state + outbox entries together);
//! 2. flush once for the whole batch;
//! 3. release the batch's outbox entries to the relay;
//! 4. acknowledge the batch's deliveries (and answer its HTTP callers).
//!
//! A crash before 2 loses the batch's effects, but nothing was acknowledged or published, so the
//! broker redelivers the inputs. A crash after 2 keeps everything; redelivered inputs are
//! recognised as duplicates.

use std::sync::Arc;
use std::time::Instant;

use lapin::options::BasicAckOptions;
use lapin::Acker;

use crate::metrics::{Counter, Histogram};
use crate::outbox::Outbox;

pub struct GroupCommit {
    db: sled::Db,
    outbox: Arc<Outbox>,
    /// Inputs per flush.
    pub batch_sizes: Histogram,
    /// Seconds per flush.
    pub flush_seconds: Histogram,
    pub flushes: Counter,
}

impl GroupCommit {
    pub fn new(db: sled::Db, outbox: Arc<Outbox>) -> Self {
        Self {
            db,
            outbox,
            batch_sizes: Histogram::sizes(),
            flush_seconds: Histogram::latency(),
            flushes: Counter::default(),
        }
    }

    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    pub fn outbox(&self) -> &Arc<Outbox> {
        &self.outbox
    }

    /// Steps 2 and 3: makes everything applied so far durable and releases it to the relay.
    pub async fn commit(&self, batch_size: usize) -> sled::Result<()> {
        let upto = self.outbox.staged_upto();
        let started = Instant::now();
        self.db.flush_async().await?;
        self.flush_seconds.observe(started.elapsed().as_secs_f64());
        self.outbox.mark_durable(upto);
        self.batch_sizes.observe(batch_size as f64);
        self.flushes.inc();
        Ok(())
    }
}

/// Step 4: the acknowledgements a batch owes, folded per consumer. One ack with `multiple`
/// covers every delivery of a channel up to its tag, so a batch costs the broker one ack per
/// consumer instead of one per message (for a quorum queue, one Raft command instead of many).
///
/// Why folding is safe: each consumer has its own channel; a channel numbers its deliveries
/// 1, 2, 3...; they reach the batch in that order; and every earlier delivery of the channel was
/// in this batch or an earlier one, whose acks went out before this batch began. A tag that is
/// not above the last one seen for the same consumer means a new channel after a reconnect
/// (tags start again at 1), so a new run starts there.
pub struct Acks<A = Acker> {
    /// (consumer, highest tag of the run, its acker), in the order the runs began.
    runs: Vec<(usize, u64, A)>,
}

impl<A> Default for Acks<A> {
    fn default() -> Self {
        Self { runs: Vec::new() }
    }
}

impl<A> Acks<A> {
    /// Owes an ack for delivery `tag` of consumer `consumer` (any small number naming it).
    pub fn push(&mut self, consumer: usize, tag: u64, acker: A) {
        let open = self.runs.iter_mut().rev().find(|(c, _, _)| *c == consumer);
        match open {
            Some(run) if run.1 < tag => *run = (consumer, tag, acker),
            _ => self.runs.push((consumer, tag, acker)),
        }
    }
}

impl Acks<Acker> {
    /// Sends the acks. A failed ack means the channel is gone; the broker will redeliver, and
    /// the receiver will recognise the duplicates.
    pub async fn send(self) {
        for (_, _, acker) in self.runs {
            if let Err(e) = acker.ack(BasicAckOptions { multiple: true }).await {
                tracing::debug!(error = %e, "ack failed; the messages will be redelivered");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Acks;

    #[test]
    fn one_ack_per_consumer_run_and_a_new_run_after_a_reconnect() {
        let mut acks = Acks::default();
        // Consumer 0 delivers 4, 5, 6; consumer 1 delivers 9, 10; then consumer 0 reconnects
        // and its tags start again at 1.
        for (consumer, tag) in [(0, 4), (1, 9), (0, 5), (1, 10), (0, 6), (0, 1), (0, 2)] {
            acks.push(consumer, tag, format!("{consumer}:{tag}"));
        }
        let sent: Vec<&str> = acks.runs.iter().map(|(_, _, a)| a.as_str()).collect();
        assert_eq!(sent, ["0:6", "1:10", "0:2"]);
    }
}
