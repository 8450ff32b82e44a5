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

/// Step 4: acknowledges deliveries whose effects are durable. A failed ack means the channel
/// is gone; the broker will redeliver, and the receiver will recognise the duplicate.
pub async fn ack_all(ackers: impl IntoIterator<Item = Acker>) {
    for acker in ackers {
        if let Err(e) = acker.ack(BasicAckOptions::default()).await {
            tracing::debug!(error = %e, "ack failed; the message will be redelivered");
        }
    }
}
