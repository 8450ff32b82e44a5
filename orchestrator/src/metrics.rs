//! The orchestrator's metrics, rendered for `GET /metrics`.

use std::sync::Arc;

use sagaflow_runtime::bus::BusMetrics;
use sagaflow_runtime::commit::GroupCommit;
use sagaflow_runtime::metrics::{Counter, Histogram, Render};

use crate::store::Store;

#[derive(Debug)]
pub struct Metrics {
    pub orders_placed: Counter,
    pub inputs_applied: Counter,
    /// Inputs recorded but ignored: duplicates, stale replies, late timers.
    pub inputs_ignored: Counter,
    pub replies_for_unknown_sagas: Counter,
    pub dead_lettered: Counter,
    /// Finished sagas removed by retention.
    pub sagas_removed: Counter,
    /// From order placed to terminal state.
    pub saga_seconds: Histogram,
    /// From a command sent to its accepted reply.
    pub step_seconds: Histogram,
    pub bus: Arc<BusMetrics>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            orders_placed: Counter::default(),
            inputs_applied: Counter::default(),
            inputs_ignored: Counter::default(),
            replies_for_unknown_sagas: Counter::default(),
            dead_lettered: Counter::default(),
            sagas_removed: Counter::default(),
            saga_seconds: Histogram::latency(),
            step_seconds: Histogram::latency(),
            bus: Arc::default(),
        }
    }
}

impl Metrics {
    pub fn render(&self, store: &Store, commit: &GroupCommit) -> String {
        let counts: Vec<(String, i64)> =
            store.counts().unwrap_or_default().into_iter().map(|(s, n)| (s.to_string(), n)).collect();
        let mut r = Render::default();
        r.labeled("sagaflow_sagas", "Sagas by state.", "gauge", "state", &counts)
            .counter("sagaflow_orders_placed_total", "Sagas created.", &self.orders_placed)
            .counter("sagaflow_inputs_applied_total", "Inputs that moved a saga.", &self.inputs_applied)
            .counter(
                "sagaflow_inputs_ignored_total",
                "Inputs recorded but ignored (duplicates, stale replies, late timers).",
                &self.inputs_ignored,
            )
            .counter(
                "sagaflow_replies_unknown_saga_total",
                "Replies for sagas this store does not hold.",
                &self.replies_for_unknown_sagas,
            )
            .counter(
                "sagaflow_dead_lettered_total",
                "Messages sent to the dead-letter queue.",
                &self.dead_lettered,
            )
            .counter(
                "sagaflow_sagas_removed_total",
                "Finished sagas removed after the retention window.",
                &self.sagas_removed,
            )
            .counter("sagaflow_deliveries_total", "Messages received.", &self.bus.deliveries)
            .counter(
                "sagaflow_redeliveries_total",
                "Messages the broker delivered again.",
                &self.bus.redeliveries,
            )
            .counter("sagaflow_bus_connects_total", "Connections made to the broker.", &self.bus.connects)
            .counter(
                "sagaflow_published_total",
                "Messages published and confirmed.",
                &store.outbox().published,
            )
            .gauge("sagaflow_outbox_depth", "Messages waiting in the outbox.", store.outbox().depth() as i64)
            .gauge("sagaflow_timers_armed", "Timers armed.", store.armed_timers() as i64)
            .histogram(
                "sagaflow_saga_duration_seconds",
                "From order placed to terminal state.",
                &self.saga_seconds,
            )
            .histogram(
                "sagaflow_step_duration_seconds",
                "From command sent to accepted reply.",
                &self.step_seconds,
            )
            .histogram("sagaflow_commit_batch_size", "Inputs per group commit.", &commit.batch_sizes)
            .histogram(
                "sagaflow_commit_flush_seconds",
                "Time to flush one group commit.",
                &commit.flush_seconds,
            );
        r.finish()
    }
}
