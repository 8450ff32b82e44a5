//! Retention: finished sagas older than `RETAIN_FINISHED_SECS` leave the store, so that the disk
//! holds the work in flight plus a window of history, not every order ever placed.
//!
//! Removal goes through the engine as a job like any other, so the engine stays the store's
//! only writer, and in the same transaction the engine tells each participant which sagas it may
//! forget, so the participants' stores follow the same window. An order id whose saga was
//! removed is free again: placing it afterwards starts a new saga, with a new saga id, whose
//! effects happen anew. The window is therefore also how long `POST /orders` stays idempotent.

use std::time::Duration;

use sagaflow_runtime::now_millis;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::engine::Job;

/// Most sagas removed per engine job: keeps one sweep from holding up the engine for long.
pub const SWEEP_LIMIT: usize = 2_000;

/// Sends a sweep to the engine every so often until `stop`. `retain` of zero keeps everything.
pub async fn run(retain: Duration, jobs: mpsc::Sender<Job>, stop: CancellationToken) {
    if retain.is_zero() {
        return;
    }
    let every = (retain / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
    let mut wait = every;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => return,
        }
        let cutoff = now_millis().saturating_sub(retain.as_millis() as u64);
        let (answer, removed) = oneshot::channel();
        if jobs.send(Job::Sweep { cutoff, limit: SWEEP_LIMIT, answer }).await.is_err() {
            return;
        }
        // A full sweep means more are due: go again soon rather than fall behind.
        wait = match removed.await {
            Ok(n) if n >= SWEEP_LIMIT => Duration::from_millis(50),
            _ => every,
        };
    }
}
