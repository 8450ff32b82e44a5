//! The timer task: fires the timers sagas armed, through the same engine as replies.
//!
//! Timers live in the store, ordered by due time, so they survive a restart: after a crash the
//! first scan finds every overdue timer and fires it. There is no other recovery step.
//!
//! A timer that its saga cannot take (its record cannot be read, say) is held here, in memory,
//! for [`RETRY_AFTER_MS`] before it is handed over again: handed straight back, it would fail
//! again at once, a commit each time. Its index entry stays as the saga's record names it, so if
//! the saga moves on meanwhile nothing is left behind; a restart tries it again at once.
//!
//! Timers wait while the bus is down. An attempt whose command is still in the outbox cannot
//! have been answered, so letting its timeout count would turn a broker restart into failed
//! orders. After (re)connecting they wait a short grace period more, so that replies queued
//! during the outage are read before the timeouts they would make moot.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sagaflow_runtime::now_millis;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::engine::Job;
use crate::store::{DueTimer, Store};

/// How long a timer that its saga could not take waits before it is handed over again.
pub const RETRY_AFTER_MS: u64 = 30_000;

/// Timer index entries the timer task does not hand over now, shared with the engine.
pub type HeldTimers = Arc<Mutex<Held>>;

/// Timer index keys that wait: with the engine (handed over, not yet applied and committed, so
/// still read as due), or, after the engine could not apply them, until they may be tried again.
#[derive(Debug, Default)]
pub struct Held {
    with_engine: HashSet<Vec<u8>>,
    until: HashMap<Vec<u8>, u64>,
}

impl Held {
    /// Whether `key` waits at `now`.
    fn holds(&self, key: &[u8], now: u64) -> bool {
        self.with_engine.contains(key) || self.until.get(key).is_some_and(|&at| now < at)
    }

    /// Takes `key` to hand it to the engine; false if the engine has it already.
    fn hand_over(&mut self, key: Vec<u8>) -> bool {
        self.until.remove(&key);
        self.with_engine.insert(key)
    }

    /// Forgets the keys whose wait is over: handed over again if still due, and gone for good if
    /// their saga moved on and removed them.
    fn expire(&mut self, now: u64) {
        self.until.retain(|_, at| now < *at);
    }

    /// When the first timer that waits to be tried again may be, if none is with the engine:
    /// then every due timer the store holds waits on that.
    fn next_retry(&self) -> Option<u64> {
        if self.with_engine.is_empty() {
            self.until.values().min().copied()
        } else {
            None
        }
    }

    /// The engine applied `key`, and the batch that did it is committed.
    pub fn applied(&mut self, key: &[u8]) {
        self.with_engine.remove(key);
    }

    /// The engine could not apply `key`: it waits until `retry_at`.
    pub fn failed(&mut self, key: Vec<u8>, retry_at: u64) {
        self.with_engine.remove(&key);
        self.until.insert(key, retry_at);
    }
}

/// The longest sleep between scans, so that a clock jump is noticed within a second.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How long to wait when the only due timers are already with the engine.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(20);

pub async fn run(
    store: Arc<Store>,
    jobs: mpsc::Sender<Job>,
    held: HeldTimers,
    wake: Arc<Notify>,
    mut connected: watch::Receiver<bool>,
    grace: Duration,
    stop: CancellationToken,
) {
    loop {
        if !*connected.borrow_and_update() {
            tokio::select! {
                _ = connected.changed() => {}
                _ = stop.cancelled() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(grace) => {}
                _ = stop.cancelled() => return,
            }
            continue;
        }
        let now = now_millis();
        let lock = || held.lock().unwrap_or_else(|p| p.into_inner());
        lock().expire(now);
        match store.due_timers(now, 4096, |key| lock().holds(key, now)) {
            Ok(due) => {
                for DueTimer { key, order_id, timer } in due {
                    let fresh = lock().hand_over(key.clone());
                    if fresh && jobs.send(Job::Timer { order_id, key, timer }).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read timers"),
        }
        let next_retry = lock().next_retry();
        let (wait, woken_by_commits) = match (store.next_due(), next_retry) {
            (Ok(Some(due)), _) if due > now => (Duration::from_millis(due - now).min(MAX_SLEEP), true),
            // Every due timer waits to be tried again: nothing to do before the first may be,
            // unless a commit arms a new one.
            (Ok(Some(_)), Some(at)) => (Duration::from_millis(at.saturating_sub(now)).min(MAX_SLEEP), true),
            // Due timers wait with the engine. A commit cannot arm one due earlier than those,
            // so it is no reason to look again: under overload, commits come hundreds of times a
            // second and each look would pass over every timer still waiting.
            (Ok(Some(_)), None) => (IN_FLIGHT_POLL, false),
            _ => (MAX_SLEEP, true),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified(), if woken_by_commits => {}
            _ = stop.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timer_the_engine_could_not_apply_waits_its_turn_then_goes_again() {
        let mut held = Held::default();
        let key = b"key".to_vec();
        assert!(held.hand_over(key.clone()));
        assert!(!held.hand_over(key.clone()), "the engine has it");
        assert!(held.holds(&key, 0));
        assert_eq!(held.next_retry(), None, "the engine has it");
        held.failed(key.clone(), 100);
        assert_eq!(held.next_retry(), Some(100));
        assert!(held.holds(&key, 99));
        assert!(!held.holds(&key, 100));
        held.expire(100);
        assert!(held.until.is_empty(), "a wait that is over is forgotten");
        assert!(held.hand_over(key.clone()));
        held.applied(&key);
        assert!(!held.holds(&key, 0));
    }
}
