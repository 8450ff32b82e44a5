//! A small Prometheus registry: counters, gauges and histograms, rendered in the text format.
//!
//! Hand-rolled on purpose: a few atomics cover what sagaflow measures, and it keeps the
//! dependency tree (and the build on a 2-core machine) small.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A histogram with fixed upper bounds.
#[derive(Debug)]
pub struct Histogram {
    bounds: Vec<f64>,
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// The sum, in millionths of the unit, so it fits an atomic integer.
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Self {
        Self {
            bounds: bounds.to_vec(),
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Seconds from 0.5 ms to 60 s, for latencies.
    pub fn latency() -> Self {
        Self::new(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ])
    }

    /// Powers of two up to 4096, for batch sizes.
    pub fn sizes() -> Self {
        Self::new(&[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0, 4096.0])
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add((v.max(0.0) * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn sum(&self) -> f64 {
        self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

/// A family of latency histograms told apart by labels, such as `step`, `phase` and
/// `outcome`. The caller keeps the label values to a small known set (step names from the
/// definition, fixed outcome words): nothing taken from a message becomes a label.
#[derive(Debug, Default)]
pub struct HistogramVec(Mutex<BTreeMap<Labels, Arc<Histogram>>>);

/// A series' labels: (name, value) pairs in a fixed order.
type Labels = Vec<(&'static str, String)>;

impl HistogramVec {
    pub fn with(&self, labels: &[(&'static str, &str)]) -> Arc<Histogram> {
        let key: Labels = labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(key).or_insert_with(|| Arc::new(Histogram::latency())).clone()
    }

    fn snapshot(&self) -> Vec<(Labels, Arc<Histogram>)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

/// A family of counters told apart by one label.
#[derive(Debug, Default)]
pub struct CounterVec(Mutex<BTreeMap<String, Arc<Counter>>>);

impl CounterVec {
    pub fn with(&self, label: &str) -> Arc<Counter> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(label.to_owned()).or_default().clone()
    }

    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter().map(|(k, v)| (k.clone(), v.get())).collect()
    }
}

/// Renders metrics in the Prometheus text format.
#[derive(Default)]
pub struct Render(String);

impl Render {
    pub fn counter(&mut self, name: &str, help: &str, c: &Counter) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", c.get());
        self
    }

    pub fn gauge(&mut self, name: &str, help: &str, v: i64) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        self
    }

    /// A family with one label, `label`, as counters or gauges (`kind`).
    pub fn labeled(
        &mut self,
        name: &str,
        help: &str,
        kind: &str,
        label: &str,
        values: &[(String, i64)],
    ) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (value, v) in values {
            let _ = writeln!(self.0, "{name}{{{label}=\"{value}\"}} {v}");
        }
        self
    }

    pub fn histogram(&mut self, name: &str, help: &str, h: &Histogram) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(self.0, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(self.0, "{name}_bucket{{le=\"+Inf\"}} {}", h.count());
        let _ = writeln!(self.0, "{name}_sum {}\n{name}_count {}", h.sum(), h.count());
        self
    }

    /// A histogram family: one series per label set.
    pub fn histograms(&mut self, name: &str, help: &str, family: &HistogramVec) -> &mut Self {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (labels, h) in family.snapshot() {
            let labels: String = labels.iter().map(|(k, v)| format!("{k}=\"{v}\",")).collect();
            let mut cumulative = 0;
            for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
                cumulative += bucket.load(Ordering::Relaxed);
                let _ = writeln!(self.0, "{name}_bucket{{{labels}le=\"{bound}\"}} {cumulative}");
            }
            let labels = labels.trim_end_matches(',');
            let _ = writeln!(self.0, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", h.count());
            let _ = writeln!(
                self.0,
                "{name}_sum{{{labels}}} {}\n{name}_count{{{labels}}} {}",
                h.sum(),
                h.count()
            );
        }
        self
    }

    /// What every process's bus and outbox report, under the same names everywhere.
    pub fn transport(&mut self, bus: &crate::bus::BusMetrics, outbox: &crate::outbox::Outbox) -> &mut Self {
        self.counter("sagaflow_deliveries_total", "Messages received.", &bus.deliveries)
            .counter("sagaflow_redeliveries_total", "Messages the broker delivered again.", &bus.redeliveries)
            .counter(
                "sagaflow_events_skipped_total",
                "Public events not sent because no queue was bound to their route.",
                &bus.events_skipped,
            )
            .counter("sagaflow_bus_connects_total", "Connections made to the broker.", &bus.connects)
            .gauge(
                "sagaflow_bus_blocked",
                "1 while the broker blocks this process's publishing (a disk or memory alarm); messages wait in the outbox.",
                bus.blocked.get(),
            )
            .counter(
                "sagaflow_published_total",
                "Messages published and confirmed.",
                &outbox.metrics.published,
            )
            .gauge("sagaflow_outbox_depth", "Messages waiting in the outbox.", outbox.depth() as i64)
            .counter(
                "sagaflow_outbox_parked_total",
                "Messages the broker kept refusing, set aside (see /outbox/parked).",
                &outbox.metrics.parked,
            )
            .gauge("sagaflow_outbox_parked", "Messages set aside now.", outbox.parked_count() as i64)
    }

    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let h = Histogram::new(&[1.0, 10.0]);
        for v in [0.5, 2.0, 3.0, 100.0] {
            h.observe(v);
        }
        let text = Render::default().histogram("x", "test", &h).finish();
        assert!(text.contains("x_bucket{le=\"1\"} 1"), "{text}");
        assert!(text.contains("x_bucket{le=\"10\"} 3"), "{text}");
        assert!(text.contains("x_bucket{le=\"+Inf\"} 4"), "{text}");
        assert!(text.contains("x_count 4"));
    }
}
