//! Load generators and the end-to-end clock.
//!
//! A saga's latency runs from the moment its order was due to be placed to the moment its
//! terminal event (`OrderCompleted`, `OrderCompensated`, `OrderStuck`) is seen on the public
//! topic exchange, by a consumer of the bench's own. For the REST chain it runs to the chain's
//! answer. Open-loop runs measure from the *scheduled* send time, so that a slow system cannot
//! hide its queueing by delaying the next request (coordinated omission).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_lite::StreamExt;
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

/// How long one order may take before the bench counts it as lost.
pub const GIVE_UP: Duration = Duration::from_secs(60);

/// The terminal events the watcher listens for.
const TERMINAL_KEYS: [&str; 3] = ["order.completed", "order.compensated", "order.stuck"];

/// Who waits for which order's terminal event: told when it was seen and which event it was.
type Waiting = Arc<Mutex<HashMap<String, oneshot::Sender<(Instant, String)>>>>;

/// Sees terminal events and wakes whoever waits for that order.
#[derive(Clone)]
pub struct Watcher {
    waiting: Waiting,
    /// What must live as long as the watcher: its connection or consumer.
    _keep: Arc<dyn std::any::Any + Send + Sync>,
}

impl Watcher {
    /// Watches the terminal events of a system on Kafka: the topics of their routing keys,
    /// read from their beginning in a consumer group of its own.
    pub async fn start_kafka(brokers: &str, topology: &sagaflow_events::Topology) -> anyhow::Result<Self> {
        use rdkafka::consumer::{Consumer, StreamConsumer};
        use rdkafka::Message as _;
        let consumer: StreamConsumer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("group.id", format!("{}.bench-watcher", topology.namespace()))
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("log_level", "3")
            .create()?;
        let topics: Vec<String> = TERMINAL_KEYS.iter().map(|k| topology.event_topic(k)).collect();
        consumer.subscribe(&topics.iter().map(String::as_str).collect::<Vec<_>>())?;
        let consumer = Arc::new(consumer);
        let waiting: Waiting = Arc::default();
        let (map, reader) = (waiting.clone(), consumer.clone());
        tokio::spawn(async move {
            let mut stream = reader.stream();
            while let Some(Ok(record)) = stream.next().await {
                let seen = Instant::now();
                let Ok(event) = serde_json::from_slice::<Value>(record.payload().unwrap_or_default()) else {
                    continue;
                };
                let (Some(id), Some(name)) = (event["orderId"].as_str(), event["event"].as_str()) else {
                    continue;
                };
                if let Some(tx) = map.lock().expect("not poisoned").remove(id) {
                    let _ = tx.send((seen, name.to_owned()));
                }
            }
        });
        Ok(Self { waiting, _keep: consumer })
    }

    pub async fn start(url: &str, events_exchange: &str) -> anyhow::Result<Self> {
        let connection = Connection::connect(url, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        let options = QueueDeclareOptions { exclusive: true, auto_delete: true, ..Default::default() };
        let queue = channel.queue_declare("".into(), options, FieldTable::default()).await?;
        for key in TERMINAL_KEYS {
            channel
                .queue_bind(
                    queue.name().clone(),
                    events_exchange.into(),
                    key.into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await?;
        }
        let mut consumer = channel
            .basic_consume(
                queue.name().clone(),
                "bench-watcher".into(),
                BasicConsumeOptions { no_ack: true, ..Default::default() },
                FieldTable::default(),
            )
            .await?;
        let waiting: Waiting = Arc::default();
        let map = waiting.clone();
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let seen = Instant::now();
                let Ok(event) = serde_json::from_slice::<Value>(&delivery.data) else { continue };
                let (Some(id), Some(name)) = (event["orderId"].as_str(), event["event"].as_str()) else {
                    continue;
                };
                if let Some(tx) = map.lock().expect("not poisoned").remove(id) {
                    let _ = tx.send((seen, name.to_owned()));
                }
            }
        });
        Ok(Self { waiting, _keep: Arc::new(connection) })
    }

    fn expect(&self, order_id: &str) -> oneshot::Receiver<(Instant, String)> {
        let (tx, rx) = oneshot::channel();
        self.waiting.lock().expect("not poisoned").insert(order_id.to_owned(), tx);
        rx
    }

    fn forget(&self, order_id: &str) {
        self.waiting.lock().expect("not poisoned").remove(order_id);
    }
}

/// Which design takes the orders.
#[derive(Clone)]
pub enum Target {
    /// `POST /orders` on the orchestrator; the end is the terminal event.
    Saga { api: String, watcher: Watcher },
    /// `POST /chain/orders` on the first hop (payment); the end is its answer.
    Chain { first_hop: String },
}

/// How one order ended, as the bench saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Completed,
    /// Refused or compensated: the business said no (the bench's orders should not be).
    Refused,
    /// The system failed the order: an error answer, or no answer at all.
    Failed,
    /// No terminal event within [`GIVE_UP`].
    Lost,
}

#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When the order was due to be placed, from the start of the run.
    pub due: Duration,
    pub latency: Duration,
    pub ending: Ending,
}

/// Places orders and tells how each ended.
#[derive(Clone)]
pub struct Placer {
    target: Target,
    http: reqwest::Client,
    run: String,
    next: Arc<AtomicU64>,
}

impl Placer {
    pub fn new(target: Target, run: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1024)
            .timeout(GIVE_UP)
            .build()
            .expect("an HTTP client");
        Self { target, http, run: run.to_owned(), next: Arc::default() }
    }

    /// One order, a happy-path one: every step succeeds unless the system fails it.
    pub async fn place(&self, due: Instant) -> (Instant, Ending) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}-{n:08}", self.run);
        let user = format!("customer{}", n % 50);
        match &self.target {
            Target::Saga { api, watcher } => {
                let ended = watcher.expect(&id);
                let body = json!({ "orderId": id, "userId": user, "items": [{ "productId": "abc", "quantity": 1 }] });
                let placed = self.http.post(format!("{api}/orders")).json(&body).send().await;
                if !placed.is_ok_and(|r| r.status().as_u16() == 202) {
                    watcher.forget(&id);
                    return (Instant::now(), Ending::Failed);
                }
                let wait = (due + GIVE_UP).saturating_duration_since(Instant::now());
                match tokio::time::timeout(wait, ended).await {
                    Ok(Ok((seen, event))) if event == "OrderCompleted" => (seen, Ending::Completed),
                    Ok(Ok((seen, event))) if event == "OrderCompensated" => (seen, Ending::Refused),
                    Ok(Ok((seen, _))) => (seen, Ending::Failed),
                    _ => {
                        watcher.forget(&id);
                        (Instant::now(), Ending::Lost)
                    }
                }
            }
            Target::Chain { first_hop } => {
                let body = json!({
                    "orderId": id, "userId": user, "amountCents": ABC_PRICE_CENTS,
                    "items": [{ "productId": "abc", "quantity": 1, "unitPriceCents": ABC_PRICE_CENTS }]
                });
                let answer = self.http.post(format!("{first_hop}/chain/orders")).json(&body).send().await;
                let ending = match answer.map(|r| r.status().as_u16()) {
                    Ok(200) => Ending::Completed,
                    Ok(409) => Ending::Refused,
                    Ok(_) => Ending::Failed,
                    Err(e) if e.is_timeout() => Ending::Lost,
                    Err(_) => Ending::Failed,
                };
                (Instant::now(), ending)
            }
        }
    }
}

/// The price of product `abc` in the bench's catalog.
pub const ABC_PRICE_CENTS: u64 = 4999;

/// Closed loop: `concurrency` clients, each placing its next order when the last one ends.
/// Returns completions per second over the run after `warmup`, and the samples.
pub async fn closed_loop(
    placer: &Placer,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
) -> (f64, Vec<Sample>) {
    let start = Instant::now();
    let (window_start, window_end) = (start + warmup, start + warmup + measure);
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let placer = placer.clone();
        clients.spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < window_end {
                let due = Instant::now();
                let (ended, ending) = placer.place(due).await;
                samples.push((due, ended, ending));
            }
            samples
        });
    }
    let mut samples = Vec::new();
    let mut completed_in_window = 0usize;
    while let Some(Ok(client)) = clients.join_next().await {
        for (due, ended, ending) in client {
            if ending == Ending::Completed && ended >= window_start && ended <= window_end {
                completed_in_window += 1;
            }
            samples.push(Sample { due: due - start, latency: ended - due, ending });
        }
    }
    (completed_in_window as f64 / measure.as_secs_f64(), samples)
}

/// Open loop: orders due at a fixed rate for `duration`, each placed at its time whatever the
/// others are doing.
pub async fn open_loop(placer: &Placer, rate: f64, duration: Duration) -> Vec<Sample> {
    let start = Instant::now();
    let count = (rate * duration.as_secs_f64()).round() as u64;
    let mut orders = tokio::task::JoinSet::new();
    for i in 0..count {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(due).await;
        let placer = placer.clone();
        orders.spawn(async move {
            let (ended, ending) = placer.place(due).await;
            Sample { due: due - start, latency: ended.saturating_duration_since(due), ending }
        });
    }
    let mut samples = Vec::with_capacity(count as usize);
    while let Some(Ok(sample)) = orders.join_next().await {
        samples.push(sample);
    }
    samples.sort_by_key(|s| s.due);
    samples
}

/// Latency percentiles of completed orders, in milliseconds.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
}

impl Latency {
    /// Percentiles of the completed orders' latencies, from an HDR histogram (microseconds,
    /// three significant digits: a reported value is within 0.1 % of the true one).
    pub fn of(samples: &[Sample]) -> Self {
        // One microsecond to an hour; a longer latency is counted as an hour.
        let mut histogram =
            hdrhistogram::Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds");
        for s in samples.iter().filter(|s| s.ending == Ending::Completed) {
            histogram.saturating_record(s.latency.as_micros().try_into().unwrap_or(u64::MAX).max(1));
        }
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| (us as f64 / 100.0).round() / 10.0;
        let at = |q: f64| ms(histogram.value_at_quantile(q));
        Self { p50: at(0.5), p90: at(0.9), p99: at(0.99), p999: at(0.999), max: ms(histogram.max()) }
    }
}

/// The second of due time whose completed orders waited longest, by their median: where a
/// row's tail comes from when it is one stall (every order of that second late) rather than
/// spread over the row.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SlowestSecond {
    /// Seconds from the start of the row's load.
    pub at_s: u64,
    pub orders: usize,
    pub p50_ms: f64,
}

impl SlowestSecond {
    pub fn of(samples: &[Sample]) -> Option<Self> {
        let mut by_second: std::collections::BTreeMap<u64, Vec<Sample>> = Default::default();
        for s in samples.iter().filter(|s| s.ending == Ending::Completed) {
            by_second.entry(s.due.as_secs()).or_default().push(*s);
        }
        by_second
            .into_iter()
            .map(|(at_s, second)| Self { at_s, orders: second.len(), p50_ms: Latency::of(&second).p50 })
            .max_by(|a, b| a.p50_ms.total_cmp(&b.p50_ms))
    }
}

/// How many samples ended each way.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Endings {
    pub completed: usize,
    pub refused: usize,
    pub failed: usize,
    pub lost: usize,
}

impl Endings {
    pub fn of(samples: &[Sample]) -> Self {
        let mut e = Self::default();
        for s in samples {
            match s.ending {
                Ending::Completed => e.completed += 1,
                Ending::Refused => e.refused += 1,
                Ending::Failed => e.failed += 1,
                Ending::Lost => e.lost += 1,
            }
        }
        e
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(ms: u64) -> Sample {
        Sample { due: Duration::ZERO, latency: Duration::from_millis(ms), ending: Ending::Completed }
    }

    #[test]
    fn percentiles_are_over_completed_orders_within_the_histogram_precision() {
        let mut samples: Vec<Sample> = (1..=1000).map(sample).collect();
        samples.push(Sample { ending: Ending::Failed, ..sample(99_999) });
        let l = Latency::of(&samples);
        for (got, want) in [(l.p50, 500.0), (l.p90, 900.0), (l.p99, 990.0), (l.p999, 999.0), (l.max, 1000.0)]
        {
            assert!((got - want).abs() <= want * 0.001 + 0.1, "{got} is not {want}");
        }
        assert_eq!(Endings::of(&samples).failed, 1);
    }

    #[test]
    fn the_slowest_second_is_the_one_whose_orders_all_waited() {
        // Ten seconds of 40 ms orders; in second 6 every order waited a second, and in second
        // 3 a single order waited longer still, which is a tail, not a stall.
        let mut samples = Vec::new();
        for second in 0..10u64 {
            for i in 0..20u64 {
                let waited = if second == 6 { 1_000 + i } else { 40 };
                samples.push(Sample { due: Duration::from_millis(second * 1000 + i * 50), ..sample(waited) });
            }
        }
        samples.push(Sample { due: Duration::from_millis(3_500), ..sample(5_000) });
        samples.push(Sample { due: Duration::from_millis(8_500), ending: Ending::Lost, ..sample(60_000) });
        let slowest = SlowestSecond::of(&samples).expect("some completed");
        assert_eq!((slowest.at_s, slowest.orders), (6, 20));
        assert!((slowest.p50_ms - 1_010.0).abs() <= 1.5, "{slowest:?}");
        assert!(SlowestSecond::of(&[]).is_none());
    }
}
