//! The relay: publishes durable outbox entries with publisher confirms, and removes each once
//! the broker confirmed it. Entries for the same route that are ready together go as one
//! batch ([`batch`]); one that is alone goes alone.
//!
//! A sliding window keeps up to `window` publishes awaiting their confirms while newer durable
//! entries keep going out. (Waiting for a whole batch's confirms before publishing the next put
//! a quorum queue's confirm latency on every hop of every saga.)
//!
//! **No entry can wedge the relay.** When a session fails, the entries that were unconfirmed
//! are suspects: the next session publishes them one at a time, waiting for each confirm, before
//! anything else. An entry that is alone in flight when a session fails [`STRIKES`] times, or
//! that the broker nacks that often, is the cause whatever the refusal was (a frame too large,
//! a property the broker rejects, one we have not thought of): it is parked with the broker's
//! reason ([`Outbox::park`]) and everything behind it flows on.
//!
//! **Public events nobody listens to cost almost nothing** ([`Unbound`]): held back while the
//! broker says no queue is bound to their route, and dropped only once a later look proves
//! nobody was bound when they were made.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use lapin::options::BasicPublishOptions;
use lapin::{Channel, Confirmation, PublisherConfirm};

use super::properties as amqp;
use super::unbound::{Look, Unbound};
use crate::bus::batch;
use crate::bus::message::{Message, Route};
use crate::bus::strikes::{Strikes, STRIKES};
use crate::metrics::Counter;
use crate::outbox::Outbox;

/// What the relay remembers across sessions.
#[derive(Debug, Default)]
pub struct RelayState {
    /// Published and not yet confirmed.
    in_flight: BTreeSet<u64>,
    /// Unconfirmed when a session failed, or nacked: published alone before anything else.
    suspects: BTreeSet<u64>,
    /// The suspect being published alone now.
    probing: Option<u64>,
    /// Failures each suspect caused while alone in flight.
    strikes: Strikes,
}

/// A publish awaiting its confirm: the outbox entries it carries (several for a batch), and,
/// for a `mandatory` public event, its route and what it answers for.
struct Published {
    ids: Vec<u64>,
    mandatory: Option<(Route, Option<Look>)>,
    confirm: PublisherConfirm,
}

impl RelayState {
    /// A session ended with `error`: what was unconfirmed becomes suspect, and a suspect that
    /// was alone in flight gets a strike.
    pub fn session_failed(&mut self, outbox: &Outbox, error: &str) {
        let unconfirmed = std::mem::take(&mut self.in_flight);
        if let Some(id) = self.probing.take() {
            if unconfirmed.contains(&id) && self.strike(id) {
                outbox.park(id, &format!("the broker refused it {STRIKES} times: {error}"));
                return;
            }
        }
        self.suspects.extend(unconfirmed);
    }

    /// Counts a failure of `id`; true once it has caused [`STRIKES`]. A parked id is forgotten.
    fn strike(&mut self, id: u64) -> bool {
        let out = self.strikes.strike(id);
        if out {
            self.suspects.remove(&id);
        }
        out
    }

    fn cleared(&mut self, id: u64) {
        self.suspects.remove(&id);
        self.strikes.cleared(id);
        self.in_flight.remove(&id);
    }
}

/// Publishes `message`; `mandatory` asks the broker to return it if no queue takes it.
async fn publish(
    channel: &Channel,
    message: &Message,
    mandatory: bool,
) -> Result<PublisherConfirm, lapin::Error> {
    channel
        .basic_publish(
            message.route.exchange.as_str().into(),
            message.route.key.as_str().into(),
            BasicPublishOptions { mandatory, ..BasicPublishOptions::default() },
            &message.body,
            amqp::properties(message),
        )
        .await
}

/// Publishes `message`, which carries the outbox entries `ids`, and counts them in flight.
async fn send(
    channel: &Channel,
    state: &mut RelayState,
    ids: Vec<u64>,
    message: Message,
    mandatory: bool,
    look: Option<Look>,
) -> Result<Published, lapin::Error> {
    state.in_flight.extend(ids.iter().copied());
    let confirm = publish(channel, &message, mandatory).await?;
    Ok(Published { ids, mandatory: mandatory.then_some((message.route, look)), confirm })
}

/// Publishes until the channel fails (then returns the error, and the bus reconnects) or the
/// outbox is dropped.
pub async fn run(
    outbox: &Arc<Outbox>,
    channel: &Channel,
    window: usize,
    unbound: &mut Unbound,
    skipped: &Counter,
    state: &mut RelayState,
) -> Result<(), lapin::Error> {
    let window = window.max(1);
    let mut durable = outbox.watch_durable();
    let mut in_flight: VecDeque<Published> = VecDeque::with_capacity(window);
    let mut next: u64 = 0;
    // This session reads the outbox from the start, held entries included.
    unbound.clear();

    loop {
        // Suspects first, each alone, once nothing else is in flight.
        if in_flight.is_empty() {
            while let Some(&id) = state.suspects.iter().next() {
                let Some(message) = outbox.get(id) else {
                    state.cleared(id);
                    continue;
                };
                state.probing = Some(id);
                state.in_flight.insert(id);
                let confirmation = publish(channel, &message, false).await?.await?;
                state.probing = None;
                state.in_flight.remove(&id);
                match confirmation {
                    Confirmation::Ack(_) | Confirmation::NotRequested => {
                        outbox.confirmed(id);
                        state.cleared(id);
                    }
                    Confirmation::Nack(_) => {
                        if state.strike(id) {
                            outbox.park(id, &format!("the broker nacked it {STRIKES} times"));
                        }
                    }
                }
            }
        }
        let upto = *durable.borrow_and_update();
        let room = window.saturating_sub(state.in_flight.len());
        if room > 0 && state.suspects.is_empty() {
            if let Some((id, message, look)) = unbound.due_look(Instant::now()) {
                in_flight.push_back(send(channel, state, vec![id], message, true, Some(look)).await?);
                continue;
            }
        }
        if room > 0 && next <= upto && state.suspects.is_empty() {
            let entries = outbox.read(next, upto, room);
            if let Some(&(last, _)) = entries.last() {
                let (ids, messages): (Vec<u64>, Vec<Message>) =
                    entries.into_iter().filter_map(|(id, message)| unbound.hold(id, message)).unzip();
                for (carried, message) in batch::group(&messages) {
                    let carried: Vec<u64> = carried.into_iter().map(|i| ids[i]).collect();
                    let mandatory = unbound.mandatory(&message);
                    in_flight.push_back(send(channel, state, carried, message, mandatory, None).await?);
                }
                next = last + 1;
                continue;
            }
        }
        let next_look = unbound.next_look();
        // Nothing to publish now, the window is full, or a suspect waits for the window to
        // drain: wait for a confirm or new entries.
        tokio::select! {
            confirmation = async { (&mut in_flight.front_mut().expect("not empty").confirm).await }, if !in_flight.is_empty() => {
                let Published { ids, mandatory, .. } = in_flight.pop_front().expect("not empty");
                // A confirm that failed leaves its entries in flight: the session ends, and
                // they are suspects.
                let confirmation = confirmation?;
                for id in &ids {
                    state.in_flight.remove(id);
                }
                match confirmation {
                    Confirmation::Ack(returned) => match mandatory {
                        Some((route, look)) => {
                            let answer = unbound.answered(route, ids[0], look, returned.is_some(), Instant::now());
                            for id in answer.drop {
                                outbox.skipped(id);
                                skipped.inc();
                            }
                            if returned.is_none() {
                                outbox.confirmed(ids[0]);
                            }
                            // Released in order, before anything newer for their route.
                            for (id, message) in answer.release {
                                in_flight.push_back(send(channel, state, vec![id], message, true, None).await?);
                            }
                        }
                        None => {
                            for id in ids {
                                outbox.confirmed(id);
                            }
                        }
                    },
                    Confirmation::NotRequested => {
                        for id in ids {
                            outbox.confirmed(id);
                        }
                    }
                    // A batch that is nacked says nothing about which item is to blame: each
                    // goes again alone, and only a refusal of an entry alone is its strike.
                    Confirmation::Nack(_) if ids.len() > 1 => {
                        tracing::warn!(entries = ids.len(), "the broker nacked a batch; its messages will be published again on their own");
                        state.suspects.extend(ids);
                    }
                    Confirmation::Nack(_) => {
                        let id = ids[0];
                        tracing::warn!(id, "the broker nacked a message; it will be published again on its own");
                        if state.strike(id) {
                            outbox.park(id, &format!("the broker nacked it {STRIKES} times"));
                        } else {
                            state.suspects.insert(id);
                        }
                    }
                }
            }
            () = tokio::time::sleep_until(next_look.unwrap_or_else(Instant::now).into()), if next_look.is_some() && room > 0 && state.suspects.is_empty() => {}
            changed = durable.changed(), if room > 0 && state.suspects.is_empty() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::message::Route;

    fn outbox() -> (tempfile::TempDir, Arc<Outbox>) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let outbox = Outbox::open(&db).unwrap();
        for i in 0..3u8 {
            let route = Route { exchange: "x".into(), key: String::new() };
            outbox.stage_alone(&Message::json(route, "o", "k", vec![i])).unwrap();
        }
        (dir, outbox)
    }

    #[test]
    fn an_entry_alone_in_flight_when_sessions_fail_is_parked_after_its_strikes() {
        let (_dir, outbox) = outbox();
        let mut state = RelayState::default();
        // A session fails with three entries unconfirmed: all three become suspects.
        state.in_flight.extend([1, 2, 3]);
        state.session_failed(&outbox, "connection closed");
        assert_eq!(state.suspects.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        // Entry 1 goes alone and passes; entry 2 goes alone and the session fails, thrice.
        state.cleared(1);
        for round in 1..=STRIKES {
            state.probing = Some(2);
            state.in_flight.insert(2);
            state.session_failed(&outbox, "FRAME_ERROR - frame too large");
            assert_eq!(outbox.parked_count(), usize::from(round == STRIKES), "round {round}");
        }
        assert_eq!(state.suspects.iter().copied().collect::<Vec<_>>(), [3]);
        assert!(outbox.parked(1)[0].1.reason.contains("FRAME_ERROR"));
    }

    #[test]
    fn a_failure_with_nothing_alone_in_flight_strikes_nobody() {
        let (_dir, outbox) = outbox();
        let mut state = RelayState::default();
        for _ in 0..10 {
            state.in_flight.extend([1, 2]);
            state.session_failed(&outbox, "broker restart");
        }
        assert_eq!(outbox.parked_count(), 0);
        assert!(state.strikes.is_empty());
    }
}
