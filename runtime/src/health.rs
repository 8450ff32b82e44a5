//! What `/health` reports: the bus is connected and the store is working. The bus and the
//! pipeline set it; the HTTP layer reads it.

use std::sync::Arc;

use tokio::sync::watch;

/// Shared by every part of a process; cheap to clone.
#[derive(Clone)]
pub struct Health {
    bus: Arc<watch::Sender<bool>>,
    /// `None` while the store works; the last storage error while it does not.
    store: Arc<watch::Sender<Option<String>>>,
}

impl Default for Health {
    fn default() -> Self {
        Self { bus: Arc::new(watch::channel(false).0), store: Arc::new(watch::channel(None).0) }
    }
}

impl Health {
    pub fn set_bus(&self, connected: bool) {
        self.bus.send_replace(connected);
    }

    pub fn bus_connected(&self) -> bool {
        *self.bus.borrow()
    }

    /// Follows the bus state, for tasks that wait while it is down.
    pub fn watch_bus(&self) -> watch::Receiver<bool> {
        self.bus.subscribe()
    }

    pub fn store_failing(&self, error: &str) {
        self.store.send_replace(Some(error.to_owned()));
    }

    pub fn store_working(&self) {
        self.store.send_if_modified(|s| s.take().is_some());
    }

    /// The storage error that makes the process unhealthy, if any.
    pub fn store_error(&self) -> Option<String> {
        self.store.borrow().clone()
    }

    pub fn is_healthy(&self) -> bool {
        self.bus_connected() && self.store_error().is_none()
    }
}
