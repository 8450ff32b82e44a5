//! The last line against a wedged store. sled 0.34 can hang instead of failing: on a full disk
//! a flush was seen waiting for ever, and so was the flush in its destructor while a process
//! shut down (`tests/tests/hostile.rs`, class 8). A process that hangs holds its messages
//! unacknowledged and answers nothing, for good; one that exits hands its messages back to the
//! broker and is restarted by its supervisor, which recovers from what is on disk.
//!
//! So the writer marks each call into the store, and a thread of its own ends the process
//! (exit code 1, one line) if a call is still running after [`STALL_LIMIT`], or if shutting
//! down takes longer than [`SHUTDOWN_LIMIT`]. A healthy flush takes milliseconds.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How long one call into the store may take before the process is taken for wedged.
pub const STALL_LIMIT: Duration = Duration::from_secs(30);
/// How long a shutdown may take.
pub const SHUTDOWN_LIMIT: Duration = Duration::from_secs(30);

/// Shared by the writer and the watching thread; cheap to clone.
#[derive(Clone, Default)]
pub struct Watchdog {
    /// When the running call into the store began (ms since the epoch); 0 when none runs.
    busy_since: Arc<AtomicU64>,
    /// When shutting down began; 0 while running.
    stopping_since: Arc<AtomicU64>,
}

impl Watchdog {
    /// Starts the watching thread.
    pub fn start(program: &'static str) -> Self {
        let dog = Self::default();
        let watched = dog.clone();
        let spawned = std::thread::Builder::new().name("watchdog".into()).spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            if let Some(why) = watched.overdue(crate::now_millis()) {
                tracing::error!("{program} cannot go on: {why}; exiting so that a restart recovers");
                std::process::exit(1);
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no watchdog thread");
        }
        dog
    }

    /// Runs `f`, a call into the store, under watch.
    pub fn watch<T>(&self, f: impl FnOnce() -> T) -> T {
        self.busy_since.store(crate::now_millis().max(1), Ordering::Release);
        let result = f();
        self.busy_since.store(0, Ordering::Release);
        result
    }

    /// Shutting down begins: it must end within [`SHUTDOWN_LIMIT`].
    pub fn stopping(&self) {
        let _ = self.stopping_since.compare_exchange(
            0,
            crate::now_millis().max(1),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Why the process is wedged at `now`, if it is.
    fn overdue(&self, now: u64) -> Option<String> {
        let since = |at: &AtomicU64| match at.load(Ordering::Acquire) {
            0 => None,
            t => Some(Duration::from_millis(now.saturating_sub(t))),
        };
        if let Some(busy) = since(&self.busy_since).filter(|d| *d > STALL_LIMIT) {
            return Some(format!("the store has not answered for {} s", busy.as_secs()));
        }
        if let Some(stopping) = since(&self.stopping_since).filter(|d| *d > SHUTDOWN_LIMIT) {
            return Some(format!("shutting down has taken {} s", stopping.as_secs()));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_or_a_shutdown_past_its_limit_is_overdue_and_a_quick_one_is_not() {
        let dog = Watchdog::default();
        let now = crate::now_millis();
        assert!(dog.overdue(now).is_none());
        dog.watch(|| assert!(dog.overdue(now + 1_000).is_none()));
        dog.watch(|| assert!(dog.overdue(now + STALL_LIMIT.as_millis() as u64 + 2_000).is_some()));
        assert!(dog.overdue(now + 3_600_000).is_none(), "nothing runs now");
        dog.stopping();
        assert!(dog.overdue(now + SHUTDOWN_LIMIT.as_millis() as u64 + 2_000).is_some());
    }
}
