//! `sagactl demo`: a seeded, realistic mix of orders with live progress and a summary.
//!
//! If an orchestrator already answers at `--api`, the demo uses that system. Otherwise it runs
//! the broker step, starts the four programs in a fresh namespace and data folder (logs go to
//! files there), and stops all of it, broker included, when done.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use sagaflow_api as api;
use serde_json::{json, Value};
use tokio::sync::Semaphore;

use crate::output::say;
use crate::system::BusChoice;
use crate::system::StartedSystem;

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// How many orders to place.
    #[arg(long, default_value_t = 300)]
    pub orders: usize,
    /// Same seed, same orders.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Orders placed at once.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Give up waiting for the orders to end after this many seconds.
    #[arg(long, default_value_t = 120)]
    pub timeout_secs: u64,
    /// Leave the system running afterwards, with the console's address, until Ctrl-C (or
    /// SIGTERM): something to explore.
    #[arg(long)]
    pub keep: bool,
    #[command(flatten)]
    pub bus: BusChoice,
}

/// The demo's catalog: the example's products, plus a rare print of which only a few exist,
/// so that an out-of-stock order is also cheap enough for payment to accept.
pub const CATALOG: &str = r#"{"products": [
  {"id": "abc", "name": "Alpine backpack", "priceCents": 4999, "stock": 1000000},
  {"id": "xyz", "name": "Xylophone", "priceCents": 12950, "stock": 1000000},
  {"id": "jkl", "name": "Juggling kit", "priceCents": 1875, "stock": 1000000},
  {"id": "rare", "name": "Rare print", "priceCents": 900, "stock": 3}
]}"#;
/// Payment declines orders above this; the demo's "declined" orders are.
pub const DECLINE_OVER_CENTS: &str = "150000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Confirmed,
    Declined,
    OutOfStock,
    Cancelled,
}

/// A tiny seeded generator (SplitMix64): the demo needs repeatable choices, not cryptography.
pub struct Seeded(pub u64);

impl Seeded {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn orders(args: &DemoArgs, run: &str) -> Vec<(String, Kind, Value)> {
    let mut rng = Seeded(args.seed);
    (0..args.orders)
        .map(|i| {
            let kind = match rng.below(100) {
                0..=69 => Kind::Confirmed,
                70..=79 => Kind::Declined,
                80..=89 => Kind::OutOfStock,
                _ => Kind::Cancelled,
            };
            let items = match kind {
                Kind::Declined => json!([{ "productId": "xyz", "quantity": 12 + rng.below(5) }]),
                Kind::OutOfStock => json!([{ "productId": "rare", "quantity": 4 + rng.below(3) }]),
                _ => {
                    let products = ["abc", "xyz", "jkl"];
                    let first = products[rng.below(3) as usize];
                    let mut items = vec![json!({ "productId": first, "quantity": 1 + rng.below(3) })];
                    if rng.below(2) == 0 {
                        let second = products.iter().find(|p| **p != first).expect("three products");
                        items.push(json!({ "productId": second, "quantity": 1 }));
                    }
                    Value::Array(items)
                }
            };
            let id = format!("{run}-{i:05}");
            let user = format!("customer{}", rng.below(50));
            (
                id.clone(),
                kind,
                json!({ "event": "OrderPlaced", "orderId": id, "userId": user, "items": items }),
            )
        })
        .collect()
}

pub async fn run(args: DemoArgs, api: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let running = http.get(format!("{api}/health")).send().await.is_ok_and(|r| r.status().is_success());
    let run_id = format!("demo{}-{}", sagaflow_runtime::now_millis() % 1_000_000, std::process::id());
    let mut started = None;
    let api = if running {
        eprintln!("Using the system already running at {api}.");
        api.to_owned()
    } else {
        let system = start_system(&run_id, &args.bus).await?;
        let api = system.api().to_owned();
        started = Some(system);
        api
    };
    let result = place_and_watch(&args, &api, &run_id, &http).await;
    if args.keep || started.is_none() {
        say!("\nThe console: {api}/   (the API: {api}/openapi.json)");
    }
    if args.keep && started.is_some() {
        say!("The system keeps running; Ctrl-C stops it.");
        crate::supervisor::until_stopped().await;
    }
    if let Some(system) = started {
        eprintln!("Stopping everything the demo started...");
        stop_system(system).await;
    }
    result
}

/// Starts the four programs for the demo on a broker found or started for it.
async fn start_system(run_id: &str, bus: &BusChoice) -> anyhow::Result<StartedSystem> {
    let dir = std::path::absolute(std::path::Path::new("target/demo").join(run_id))?;
    std::fs::create_dir_all(&dir)?;
    let broker = StartedSystem::broker(&dir, bus).await?;
    let catalog = dir.join("catalog.json");
    std::fs::write(&catalog, CATALOG)?;
    let catalog = catalog.display().to_string();
    let extra = [
        ("orchestrator", "CATALOG", catalog.as_str()),
        ("inventory", "CATALOG", catalog.as_str()),
        ("payment", "DECLINE_OVER_CENTS", DECLINE_OVER_CENTS),
        ("orchestrator", "ATTEMPT_TIMEOUT_MS", "3000"),
    ];
    eprintln!(
        "Starting orchestrator, payment, inventory and notification (on {}; logs in {})",
        broker.describe(),
        dir.display()
    );
    StartedSystem::start_on(broker, &dir, &format!("sagaflow-{run_id}"), &extra).await
}

async fn stop_system(system: StartedSystem) {
    for (name, restarts) in &system.supervisor.restarts {
        let n = restarts.load(std::sync::atomic::Ordering::Relaxed);
        if n > 0 {
            eprintln!("{name} was restarted {n} times (see its log)");
        }
    }
    let dir = system.dir.clone();
    system.stop().await;
    eprintln!("Stopped. Data and logs of this run: {}", dir.display());
}

async fn place_and_watch(
    args: &DemoArgs,
    api: &str,
    run_id: &str,
    http: &reqwest::Client,
) -> anyhow::Result<()> {
    let orders = orders(args, run_id);
    let n = orders.len() as u64;
    let bar = ProgressBar::new(n);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40.cyan/blue} {pos}/{len} finished  {msg}",
        )
        .expect("a valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(args.concurrency.max(1)));
    let mut placing = tokio::task::JoinSet::new();
    for (id, kind, body) in orders.clone() {
        let (http, api, gate) = (http.clone(), api.to_owned(), gate.clone());
        placing.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let placed = http.post(format!("{api}/orders")).json(&body).send().await;
            if kind == Kind::Cancelled {
                // The customer changes their mind right away; past the point of no return the
                // answer is 409 and the order completes.
                let _ = http.post(format!("{api}/orders/{id}/cancel")).send().await;
            }
            (id, placed.map(|r| r.status().as_u16()))
        });
    }
    // Only accepted orders are awaited: a refused one (say, a product the running system's
    // catalog lacks) will never finish.
    let mut refused = 0;
    let mut accepted = std::collections::HashSet::new();
    while let Some(result) = placing.join_next().await {
        match result {
            Ok((id, Ok(202))) => {
                accepted.insert(id);
            }
            _ => refused += 1,
        }
    }
    bar.set_length(accepted.len() as u64);

    // Watch until every order of this run is terminal.
    let deadline = Instant::now() + Duration::from_secs(args.timeout_secs);
    let mut finished: Vec<api::OrderDetail> = Vec::new();
    let mut pending: Vec<String> =
        orders.iter().map(|(id, _, _)| id.clone()).filter(|id| accepted.contains(id)).collect();
    while !pending.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for id in pending {
            let order = match http.get(format!("{api}/orders/{id}")).send().await {
                Ok(r) => r.json::<api::OrderDetail>().await.ok(),
                Err(_) => None,
            };
            match order {
                Some(order) if order.state.is_terminal() => {
                    finished.push(order);
                    bar.inc(1);
                }
                _ => still.push(id),
            }
        }
        pending = still;
        bar.set_message(counts(&finished));
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    summary(&orders, &finished, &pending, refused, elapsed);
    if !pending.is_empty() {
        anyhow::bail!("{} orders did not finish within {} s", pending.len(), args.timeout_secs);
    }
    Ok(())
}

fn counts(finished: &[api::OrderDetail]) -> String {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for o in finished {
        *by.entry(outcome(o)).or_default() += 1;
    }
    by.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(" · ")
}

/// How an order ended, as the summaries group it: `compensated (out_of_stock)`.
pub fn outcome(o: &api::OrderDetail) -> String {
    match &o.reason {
        Some(reason) => format!("{} ({reason})", o.state),
        None => o.state.to_string(),
    }
}

fn summary(
    orders: &[(String, Kind, Value)],
    finished: &[api::OrderDetail],
    pending: &[String],
    refused: usize,
    elapsed: Duration,
) {
    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for o in finished {
        *by.entry(outcome(o)).or_default() += 1;
    }
    let total = orders.len().max(1);
    say!("\n{:<36} {:>7} {:>7}", "OUTCOME", "ORDERS", "SHARE");
    for (k, v) in &by {
        say!("{k:<36} {v:>7} {:>6.1}%", 100.0 * *v as f64 / total as f64);
    }
    if !pending.is_empty() {
        say!("{:<36} {:>7}", "not finished", pending.len());
    }
    if refused > 0 {
        say!("{:<36} {:>7}", "refused at POST", refused);
    }
    let mut durations: Vec<u64> = finished.iter().filter_map(|o| o.duration_ms).collect();
    durations.sort_unstable();
    let pct = |p: f64| {
        durations
            .get(((durations.len() as f64 * p) as usize).min(durations.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    say!(
        "\n{} orders in {:.1} s: {:.0} orders/s end to end",
        finished.len(),
        elapsed.as_secs_f64(),
        finished.len() as f64 / elapsed.as_secs_f64().max(0.001)
    );
    say!(
        "saga latency (placed to terminal): p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        durations.last().copied().unwrap_or(0)
    );
    crate::output::emit(&json!({
        "outcomes": by,
        "finished": finished.len(),
        "notFinished": pending,
        "refused": refused,
        "seconds": elapsed.as_secs_f64(),
        "latencyMs": { "p50": pct(0.5), "p90": pct(0.9), "p99": pct(0.99), "max": durations.last().copied().unwrap_or(0) },
    }));
}
