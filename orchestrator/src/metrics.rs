//! The orchestrator's metrics, rendered for `GET /metrics`.

use std::sync::Arc;

use sagaflow_runtime::bus::BusMetrics;
use sagaflow_runtime::metrics::{Counter, HistogramVec, Render};
use sagaflow_runtime::pipeline::PipelineMetrics;

use crate::store::Store;

#[derive(Debug, Default)]
pub struct Metrics {
    pub orders_placed: Counter,
    pub inputs_applied: Counter,
    /// Inputs that moved nothing: duplicates, stale replies, late timers, forged replies.
    pub inputs_ignored: Counter,
    pub replies_for_unknown_sagas: Counter,
    /// Finished sagas removed by retention.
    pub sagas_removed: Counter,
    /// From order placed to terminal state, by `outcome` (completed, compensated).
    pub saga_seconds: HistogramVec,
    /// From a command sent to its accepted reply, by `step`, `phase` and `outcome` (success,
    /// failure, transient).
    pub step_seconds: HistogramVec,
    pub bus: Arc<BusMetrics>,
    /// The last ten minutes of ended sagas, for the console.
    pub recent: crate::recent::Recent,
}

impl Metrics {
    pub fn render(&self, store: &Store, pipeline: &PipelineMetrics) -> String {
        let counts: Vec<(String, i64)> =
            store.counts().unwrap_or_default().into_iter().map(|(s, n)| (s.to_string(), n)).collect();
        let mut r = Render::default();
        r.labeled("sagaflow_sagas", "Sagas by state.", "gauge", "state", &counts)
            .counter("sagaflow_orders_placed_total", "Sagas created.", &self.orders_placed)
            .counter("sagaflow_inputs_applied_total", "Inputs that moved a saga.", &self.inputs_applied)
            .counter(
                "sagaflow_inputs_ignored_total",
                "Inputs that moved nothing (duplicates, stale or forged replies, late timers).",
                &self.inputs_ignored,
            )
            .counter(
                "sagaflow_replies_unknown_saga_total",
                "Replies for sagas this store does not hold.",
                &self.replies_for_unknown_sagas,
            )
            .counter(
                "sagaflow_sagas_removed_total",
                "Finished sagas removed after the retention window.",
                &self.sagas_removed,
            )
            .gauge(
                "sagaflow_saga_record_bytes_max",
                "The largest saga record written since start, in bytes.",
                store.largest_record() as i64,
            )
            .gauge("sagaflow_timers_armed", "Timers armed.", store.armed_timers() as i64)
            .transport(&self.bus, store.outbox())
            .histograms(
                "sagaflow_saga_duration_seconds",
                "From order placed to terminal state, by outcome.",
                &self.saga_seconds,
            )
            .histograms(
                "sagaflow_step_duration_seconds",
                "From command sent to accepted reply, by step, phase and outcome.",
                &self.step_seconds,
            );
        pipeline.render(&mut r);
        r.finish()
    }
}
