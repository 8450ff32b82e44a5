//! The acknowledgements owed for durable batches, folded.
//!
//! On Kafka, acknowledging is committing offsets: one commit per consumer each time, of the
//! offset after the highest one taken from each partition ([`super::kafka::Offsets`]).
//!
//! On AMQP, folded per consumer. One ack with `multiple` covers every
//! delivery of a channel up to its tag, so the batches whose acks go out together cost the
//! broker one ack per consumer instead of one per message (for a quorum queue, one Raft command
//! instead of many).
//!
//! Why folding is safe: each consumer has its own channel; a channel numbers its deliveries
//! 1, 2, 3...; they reach the batch in that order; and every earlier delivery of the channel was
//! in this batch or an earlier one, whose acks went out before this batch's or are folded into
//! the same `Acks` (the pipeline owes the acks of several batches together), and a delivery the
//! pipeline holds back is never followed by an acked one of the same channel. A tag that is
//! not above the last one seen for the same consumer means a new channel after a reconnect
//! (tags start again at 1), so a new run starts there.

use lapin::options::BasicAckOptions;
use lapin::Acker;

use super::{kafka, Receipt, ReceiptOf};

/// What a batch owes, whichever broker its messages came from.
#[derive(Default)]
pub struct Acks {
    amqp: Runs<Acker>,
    kafka: kafka::Offsets,
}

impl Acks {
    pub fn push(&mut self, receipt: Receipt) {
        match receipt.0 {
            ReceiptOf::Amqp { consumer, tag, acker } => self.amqp.owe(consumer, tag, acker),
            ReceiptOf::Kafka { partition, offset, consumer } => self.kafka.owe(consumer, partition, offset),
        }
    }

    /// Sends the acks (commits the offsets). A failed ack means the channel is gone; the
    /// broker will redeliver, and the receiver will recognise the duplicates.
    pub async fn send(self) {
        for (_, _, acker) in self.amqp.runs {
            if let Err(e) = acker.ack(BasicAckOptions { multiple: true }).await {
                tracing::debug!(error = %e, "ack failed; the messages will be redelivered");
            }
        }
        self.kafka.commit();
    }
}

/// AMQP acks folded into runs of one consumer's deliveries.
struct Runs<A> {
    /// (consumer, highest tag of the run, its acker), in the order the runs began.
    runs: Vec<(usize, u64, A)>,
}

impl<A> Default for Runs<A> {
    fn default() -> Self {
        Self { runs: Vec::new() }
    }
}

impl<A> Runs<A> {
    /// Owes an ack for delivery `tag` of consumer `consumer` (any small number naming it).
    fn owe(&mut self, consumer: usize, tag: u64, acker: A) {
        let open = self.runs.iter_mut().rev().find(|(c, _, _)| *c == consumer);
        match open {
            Some(run) if run.1 < tag => *run = (consumer, tag, acker),
            _ => self.runs.push((consumer, tag, acker)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Runs;

    #[test]
    fn one_ack_per_consumer_run_and_a_new_run_after_a_reconnect() {
        let mut acks = Runs::default();
        // Consumer 0 delivers 4, 5, 6; consumer 1 delivers 9, 10; then consumer 0 reconnects
        // and its tags start again at 1.
        for (consumer, tag) in [(0, 4), (1, 9), (0, 5), (1, 10), (0, 6), (0, 1), (0, 2)] {
            acks.owe(consumer, tag, format!("{consumer}:{tag}"));
        }
        let sent: Vec<&str> = acks.runs.iter().map(|(_, _, a)| a.as_str()).collect();
        assert_eq!(sent, ["0:6", "1:10", "0:2"]);
    }
}
