//! Public events that nobody listens to, held back instead of paid for one by one.
//!
//! Why: most public events of a saga have no queue bound to their routing key, and the broker
//! charges nearly as much to take, confirm and drop such a message as to deliver it.
//!
//! How, without losing an event for anyone who listens: each event goes out `mandatory`. When
//! the broker returns one (no queue bound), its route is marked unbound, and the next events for
//! it are held in the outbox instead of sent. Every `recheck`, the oldest held event goes out
//! as a look:
//! - returned: nobody was bound when it was routed, so nobody was bound when any event held
//!   before it was made either; those are dropped;
//! - routed: someone is bound now; every held event goes out, in order, and the route is
//!   treated as bound again.
//!
//! So a queue gets every event made after it was bound (some made a little before it, too, which
//! at-least-once consumers take in their stride); a newly bound queue may get its first ones up
//! to `recheck` late. Nothing here is durable: after a reconnect the relay reads the outbox
//! again and learns afresh.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::bus::message::{Message, Route};

/// How many held events a look answers for: those held when it was sent.
pub type Look = usize;

/// What the relay knows about the routes of public events that nobody was bound to.
#[derive(Debug)]
pub struct Unbound {
    recheck: Duration,
    routes: HashMap<Route, Held>,
}

#[derive(Debug)]
struct Held {
    /// Outbox entries held back, oldest first.
    entries: VecDeque<(u64, Message)>,
    /// When the oldest may go out as the next look.
    look_at: Instant,
    /// A look is in flight.
    looking: bool,
}

/// What to do after the broker answered a mandatory publish.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    /// Outbox entries that nobody was bound to: remove them unsent.
    pub drop: Vec<u64>,
    /// Held entries to publish now, in order.
    pub release: Vec<(u64, Message)>,
}

impl Unbound {
    /// `recheck` zero turns holding off: every event is sent.
    pub fn new(recheck: Duration) -> Self {
        Self { recheck, routes: HashMap::new() }
    }

    /// Whether `message` goes out `mandatory` (so that the broker tells whether it was routed).
    pub fn mandatory(&self, message: &Message) -> bool {
        message.skip_while_unbound && !self.recheck.is_zero()
    }

    /// Holds `message` back if its route is known to be unbound; gives it back otherwise.
    pub fn hold(&mut self, id: u64, message: Message) -> Option<(u64, Message)> {
        if !self.mandatory(&message) {
            return Some((id, message));
        }
        match self.routes.get_mut(&message.route) {
            Some(held) => {
                held.entries.push_back((id, message));
                None
            }
            None => Some((id, message)),
        }
    }

    /// A look that is due at `now`: the oldest held entry of a route, to publish `mandatory`.
    pub fn due_look(&mut self, now: Instant) -> Option<(u64, Message, Look)> {
        let held =
            self.routes.values_mut().find(|h| !h.looking && !h.entries.is_empty() && h.look_at <= now)?;
        let (id, message) = held.entries.pop_front().expect("not empty");
        held.looking = true;
        Some((id, message, held.entries.len()))
    }

    /// When the next look is due, if one waits.
    pub fn next_look(&self) -> Option<Instant> {
        self.routes.values().filter(|h| !h.looking && !h.entries.is_empty()).map(|h| h.look_at).min()
    }

    /// The broker answered a `mandatory` publish of `id` on `route` (a look answering for
    /// `look` held entries, or an event sent normally): `returned` when no queue took it.
    pub fn answered(
        &mut self,
        route: Route,
        id: u64,
        look: Option<Look>,
        returned: bool,
        now: Instant,
    ) -> Answer {
        let mut answer = Answer::default();
        if returned {
            answer.drop.push(id);
            let held = self.routes.entry(route).or_insert_with(|| Held {
                entries: VecDeque::new(),
                look_at: now + self.recheck,
                looking: false,
            });
            if let Some(n) = look {
                answer.drop.extend(held.entries.drain(..n.min(held.entries.len())).map(|(id, _)| id));
                held.looking = false;
                held.look_at = now + self.recheck;
            }
        } else if let Some(held) = self.routes.remove(&route) {
            answer.release.extend(held.entries);
        }
        answer
    }

    /// Forgets everything: a new session reads the outbox again from the start.
    pub fn clear(&mut self) {
        self.routes.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(key: &str) -> Message {
        let route = Route { exchange: "events".into(), key: key.into() };
        Message::json(route, "o", key, b"{}".to_vec()).skip_while_unbound()
    }

    #[test]
    fn events_of_an_unbound_route_are_held_and_dropped_only_by_a_later_look() {
        let t0 = Instant::now();
        let recheck = Duration::from_secs(1);
        let mut unbound = Unbound::new(recheck);
        // Unknown route: sent. Returned: dropped, and the route is unbound.
        assert!(unbound.hold(1, event("A")).is_some());
        let answer = unbound.answered(event("A").route, 1, None, true, t0);
        assert_eq!(answer.drop, [1]);
        // Held, not sent; other routes and commands are not.
        for id in 2..=4 {
            assert!(unbound.hold(id, event("A")).is_none());
        }
        assert!(unbound.hold(5, event("B")).is_some());
        assert!(unbound.hold(6, Message::json(event("A").route, "o", "k", vec![])).is_some());
        // No look before the recheck; then the oldest goes, answering for the two behind it.
        assert!(unbound.due_look(t0).is_none());
        assert_eq!(unbound.next_look(), Some(t0 + recheck));
        let (id, _, look) = unbound.due_look(t0 + recheck).unwrap();
        assert_eq!((id, look), (2, 2));
        assert!(unbound.hold(7, event("A")).is_none(), "held while the look is out");
        assert!(unbound.due_look(t0 + recheck * 5).is_none(), "one look at a time");
        // Returned: 2, 3 and 4 were made before it went out, and go; 7 came after, and waits.
        let answer = unbound.answered(event("A").route, 2, Some(look), true, t0 + recheck);
        assert_eq!(answer.drop, [2, 3, 4]);
        let (id, _, look) = unbound.due_look(t0 + recheck * 2).unwrap();
        assert_eq!((id, look), (7, 0));
        assert!(unbound.hold(8, event("A")).is_none());
        // Routed: someone bound meanwhile; what is held goes out, and the route is bound again.
        let answer = unbound.answered(event("A").route, 7, Some(look), false, t0 + recheck * 2);
        assert!(answer.drop.is_empty());
        assert_eq!(answer.release.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [8]);
        assert!(unbound.hold(9, event("A")).is_some());
    }

    #[test]
    fn a_zero_recheck_sends_every_event() {
        let mut unbound = Unbound::new(Duration::ZERO);
        assert!(!unbound.mandatory(&event("A")));
        assert!(unbound.hold(1, event("A")).is_some());
    }
}
