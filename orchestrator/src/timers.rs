//! The timer task: fires the timers sagas armed, through the same engine as replies.
//!
//! Timers live in the store, ordered by due time, so they survive a restart: after a crash the
//! first scan finds every overdue timer and fires it. There is no other recovery step.
//!
//! Timers wait while the bus is down. An attempt whose command is still in the outbox cannot
//! have been answered, so letting its timeout count would turn a broker restart into failed
//! orders. After (re)connecting they wait a short grace period more, so that replies queued
//! during the outage are read before the timeouts they would make moot.

use std::sync::Arc;
use std::time::Duration;

use sagaflow_runtime::now_millis;
use sagaflow_runtime::pipeline::Input;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::engine::{Job, TimersInFlight};
use crate::store::{DueTimer, Store};

/// The longest sleep between scans, so that a clock jump is noticed within a second.
const MAX_SLEEP: Duration = Duration::from_secs(1);
/// How long to wait when the only due timers are already with the engine.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(20);

pub async fn run(
    store: Arc<Store>,
    jobs: mpsc::Sender<Input<Job>>,
    in_flight: TimersInFlight,
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
        let handed_over = |key: &[u8]| in_flight.lock().unwrap_or_else(|p| p.into_inner()).contains(key);
        match store.due_timers(now, 4096, handed_over) {
            Ok(due) => {
                for DueTimer { key, order_id, timer } in due {
                    let fresh = in_flight.lock().unwrap_or_else(|p| p.into_inner()).insert(key.clone());
                    if fresh && jobs.send(Input::Job(Job::Timer { order_id, key, timer })).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot read timers"),
        }
        let (wait, woken_by_commits) = match store.next_due() {
            Ok(Some(due)) if due > now => (Duration::from_millis(due - now).min(MAX_SLEEP), true),
            // Due timers wait with the engine. A commit cannot arm one due earlier than those,
            // so it is no reason to look again: under overload, commits come hundreds of times a
            // second and each look would pass over every timer still waiting.
            Ok(Some(_)) => (IN_FLIGHT_POLL, false),
            _ => (MAX_SLEEP, true),
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified(), if woken_by_commits => {}
            _ = stop.cancelled() => return,
        }
    }
}
