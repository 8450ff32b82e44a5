//! What a load phase cost, per completed saga: each process's CPU time, bytes written and
//! context switches (from /proc, [`procstat`]), what the disk that holds the stores wrote, and
//! the messages the broker itself counted (from its Prometheus endpoint, on the bench's private
//! node). CPU per saga is steadier than throughput on a shared machine, so it is what a change
//! is judged by; the store keys each program's group commits wrote (its own
//! `sagaflow_commit_keys_total`) do not depend on the machine at all.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use super::procstat::{Device, HostCounters, HostUse, Sampler, Usage};

/// The load generator: measured, but not part of the system's cost.
pub const LOAD_GENERATOR: &str = "sagactl (load)";

/// One process's cost in a phase.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessCost {
    pub cpu_ms_per_saga: f64,
    pub bytes_written_per_saga: f64,
    pub context_switches_per_saga: f64,
    /// CPU time over wall time, in percent of one core.
    pub cpu_percent: f64,
    pub max_rss_mib: f64,
    /// Keys the program's group commits inserted or removed in its store, per saga: what sled
    /// charges for, counted exactly (none for the broker, the load generator and the REST chain).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store_keys_per_saga: Option<f64>,
}

/// Messages as the broker counted them, per completed saga.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BrokerMessages {
    /// Published to the broker by the system.
    pub published_per_saga: f64,
    /// Published, and routed to no queue: paid for and dropped.
    pub unroutable_per_saga: f64,
    /// Delivered to the system's consumers (quorum queues; the bench's own watcher, on a
    /// classic queue, is not counted).
    pub delivered_per_saga: f64,
}

/// The broker's counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct BrokerCounters {
    received: f64,
    unroutable: f64,
    delivered: f64,
}

async fn scrape(metrics_url: &str) -> Option<prometheus_parse::Scrape> {
    let text = reqwest::get(metrics_url).await.ok()?.error_for_status().ok()?.text().await.ok()?;
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).ok()
}

/// The samples of `name` whose `label` (if given) has the value asked, added up; `None` when
/// the scrape has no such sample.
fn sum(scrape: &prometheus_parse::Scrape, name: &str, label: Option<(&str, &str)>) -> Option<f64> {
    let values: Vec<f64> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .filter_map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => Some(v),
            _ => None,
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// A program's store keys written so far, all trees together; `None` if it does not answer or
/// counts none (before its first commit, or a program that does not count them).
async fn store_keys(metrics_url: &str) -> Option<f64> {
    sum(&scrape(metrics_url).await?, "sagaflow_commit_keys_total", None)
}

async fn broker_counters(metrics_url: &str) -> Option<BrokerCounters> {
    let scrape = scrape(metrics_url).await?;
    let total = |name: &str, queue_type: Option<&str>| -> f64 {
        sum(&scrape, name, queue_type.map(|q| ("queue_type", q))).unwrap_or(0.0)
    };
    Some(BrokerCounters {
        received: total("rabbitmq_global_messages_received_total", None),
        unroutable: total("rabbitmq_global_messages_unroutable_dropped_total", None)
            + total("rabbitmq_global_messages_unroutable_returned_total", None),
        delivered: total("rabbitmq_global_messages_delivered_total", Some("rabbit_quorum_queue")),
    })
}

/// Measures a phase: start it before the load, finish it after.
pub struct Meter {
    pub sampler: Sampler,
    broker_url: Option<String>,
    broker_start: Option<BrokerCounters>,
    /// The device that holds the stores, and what it had written when the phase began.
    disk_start: Option<(Device, u64)>,
    /// Each program's metrics address and the store keys it had written when the phase began
    /// (none yet counts as zero; a program that counts none by the end has no figure).
    keys_start: Vec<(String, String, f64)>,
    host_start: Option<HostCounters>,
}

/// A phase's cost.
#[derive(Debug, Clone, Default)]
pub struct Cost {
    pub processes: BTreeMap<String, ProcessCost>,
    /// All the system's processes together (the load generator not included).
    pub cpu_ms_per_saga: f64,
    pub broker: Option<BrokerMessages>,
    /// Bytes the disk that holds the stores wrote, per completed saga ([`Device`]).
    pub disk_bytes_per_saga: Option<f64>,
    /// What the machine as a whole went through; `None` where /proc/stat cannot say.
    pub host: Option<HostUse>,
    /// Raw use, for what is not per saga (memory of the stored-sagas runs).
    pub usage: BTreeMap<String, Usage>,
}

impl Meter {
    /// Starts measuring `pids`, the broker's counters (if it has some), the store keys of the
    /// programs in `programs` (name, metrics address) that count them, and the disk that holds
    /// `data_dir`.
    pub async fn start(
        pids: &[(String, u32)],
        broker_metrics: Option<&str>,
        programs: &[(String, String)],
        data_dir: &Path,
    ) -> Self {
        let broker_start = match broker_metrics {
            Some(url) => broker_counters(url).await,
            None => None,
        };
        let mut keys_start = Vec::new();
        for (name, url) in programs {
            keys_start.push((name.clone(), url.clone(), store_keys(url).await.unwrap_or(0.0)));
        }
        let disk_start = Device::of(data_dir).and_then(|d| Some((d, d.written_bytes()?)));
        Self {
            sampler: Sampler::start(pids),
            broker_url: broker_metrics.map(str::to_owned),
            broker_start,
            disk_start,
            keys_start,
            host_start: HostCounters::now(),
        }
    }

    pub async fn finish(self, completed: usize) -> Cost {
        let usage = self.sampler.finish();
        let per = |x: f64| round2(x / completed.max(1) as f64);
        let mut keys = BTreeMap::new();
        for (name, url, start) in &self.keys_start {
            if let Some(end) = store_keys(url).await {
                keys.insert(name.clone(), per(end - start));
            }
        }
        let processes: BTreeMap<String, ProcessCost> = usage
            .iter()
            .map(|(name, u)| {
                let cost = ProcessCost {
                    cpu_ms_per_saga: per(u.cpu_ms),
                    bytes_written_per_saga: per(u.written_bytes as f64).round(),
                    context_switches_per_saga: per(u.context_switches as f64),
                    cpu_percent: u.cpu_percent,
                    max_rss_mib: u.max_rss_mib,
                    store_keys_per_saga: keys.get(name).copied(),
                };
                (name.clone(), cost)
            })
            .collect();
        let system_cpu: f64 = usage.iter().filter(|(n, _)| *n != LOAD_GENERATOR).map(|(_, u)| u.cpu_ms).sum();
        let broker = match (&self.broker_url, self.broker_start) {
            (Some(url), Some(start)) => broker_counters(url).await.map(|end| BrokerMessages {
                published_per_saga: per(end.received - start.received),
                unroutable_per_saga: per(end.unroutable - start.unroutable),
                delivered_per_saga: per(end.delivered - start.delivered),
            }),
            _ => None,
        };
        let disk_bytes_per_saga = self.disk_start.and_then(|(device, start)| {
            Some(per(device.written_bytes()?.saturating_sub(start) as f64).round())
        });
        let host = self.host_start.and_then(|start| Some(HostCounters::now()?.since(&start)));
        Cost { processes, cpu_ms_per_saga: per(system_cpu), broker, disk_bytes_per_saga, host, usage }
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
