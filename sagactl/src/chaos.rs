//! `sagactl chaos`: steady order load while programs are SIGKILLed at seeded random moments
//! (and restarted after a seeded random pause) and the broker is restarted; then, once
//! everything is quiet and healthy, every invariant is checked through the HTTP endpoints
//! ([`crate::verdict`]). Same seed, same schedule.
//!
//! Exit codes: 0 every invariant held, 1 a violation, 3 the run could not be judged (a
//! program did not come back, or its books could not be read): never a pass by default.
//! `--seeds N` runs N seeds back to back and prints one line per seed; a seed that fails
//! becomes a regression test in `tests/tests/chaos.rs`.

use crate::output::say;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::demo::{self, DemoArgs, Kind, Seeded};
use crate::supervisor::{self, Logs, Supervisor, PROGRAMS};
use crate::verdict::{Books, DeadLettersAt, Endpoints};
use sagaflow_runtime::config::BusKind;

#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Orders to place.
    #[arg(long, default_value_t = 600)]
    pub orders: usize,
    /// Seconds over which the orders are placed.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Same seed, same orders, same kills.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Mean time between two kills, in milliseconds.
    #[arg(long, default_value_t = 1500)]
    pub kill_interval: u64,
    /// Where to write the report as JSON.
    #[arg(long, default_value = "target/chaos-report.json")]
    pub report: std::path::PathBuf,
    /// Give up waiting for quiescence after this many seconds.
    #[arg(long, default_value_t = 180)]
    pub quiesce_timeout: u64,
    /// Run this many seeds back to back (the seed, then the seed + 1, ...), one line each.
    #[arg(long, default_value_t = 1)]
    pub seeds: u64,
    /// The broker to run on: `rabbitmq`, or `kafka` (a private tansu broker, which
    /// `scripts/kafka.sh` installs). Either way the run owns it, so that it may restart it.
    #[arg(long, value_enum, default_value_t = BusKind::Rabbitmq)]
    pub bus: BusKind,
}

/// A broker the run started, and so may restart.
enum OwnedBroker {
    Rabbit(sagaflow_devkit::broker::PrivateBroker),
    Kafka(sagaflow_devkit::kafka::PrivateKafka),
}

impl OwnedBroker {
    fn restart(&self) {
        match self {
            Self::Rabbit(node) => node.restart(),
            Self::Kafka(node) => node.restart(),
        }
    }
}

/// How a chaos run ended.
pub enum Ending {
    Passed,
    Violations,
}

/// Why a run could not be judged.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Check(#[from] crate::verdict::CheckError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What one seed's run gave, for the table of `--seeds`.
pub struct SeedLine {
    /// The run's full report (also written to `--report`).
    pub report: Value,
    pub seed: u64,
    pub orders: usize,
    pub kills: u32,
    pub broker_restarts: u32,
    pub outcome: Result<bool, String>,
}

/// Runs `--seeds` seeds and reports. The worst ending wins: a run error over a violation over a
/// pass.
pub async fn run_seeds(args: ChaosArgs) -> Result<Ending, RunError> {
    if args.seeds <= 1 {
        return run(args).await.map(|(ending, line)| {
            crate::output::emit(&line.report);
            ending
        });
    }
    let mut lines = Vec::new();
    for seed in args.seed..args.seed + args.seeds {
        let one = ChaosArgs {
            seed,
            seeds: 1,
            report: args.report.with_extension(format!("seed{seed}.json")),
            ..args.clone()
        };
        let line = match run(one).await {
            Ok((ending, line)) => SeedLine { outcome: Ok(matches!(ending, Ending::Passed)), ..line },
            Err(e) => SeedLine {
                report: Value::Null,
                seed,
                orders: args.orders,
                kills: 0,
                broker_restarts: 0,
                outcome: Err(e.to_string()),
            },
        };
        say!("{}", seed_line(&line));
        lines.push(line);
    }
    say!("\n{:<8} {:>7} {:>6} {:>7}  VERDICT", "SEED", "ORDERS", "KILLS", "BROKER");
    for line in &lines {
        say!("{}", seed_line(line));
    }
    if let Some(error) = lines.iter().find_map(|l| l.outcome.as_ref().err()) {
        return Err(RunError::Other(anyhow::anyhow!("a run could not be judged: {error}")));
    }
    let failed: Vec<u64> = lines.iter().filter(|l| l.outcome == Ok(false)).map(|l| l.seed).collect();
    crate::output::emit(&json!({
        "seeds": lines.iter().map(|l| json!({
            "seed": l.seed,
            "orders": l.orders,
            "kills": l.kills,
            "brokerRestarts": l.broker_restarts,
            "verdict": match &l.outcome { Ok(true) => "pass".to_owned(), Ok(false) => "violations".to_owned(), Err(e) => format!("not judged: {e}") },
        })).collect::<Vec<_>>(),
        "failed": failed,
    }));
    if !failed.is_empty() {
        say!("\nFailing seeds {failed:?}: each becomes a regression test in tests/tests/chaos.rs.");
        return Ok(Ending::Violations);
    }
    Ok(Ending::Passed)
}

fn seed_line(l: &SeedLine) -> String {
    let verdict = match &l.outcome {
        Ok(true) => "pass".to_owned(),
        Ok(false) => "VIOLATIONS".to_owned(),
        Err(e) => format!("NOT JUDGED: {e}"),
    };
    format!("{:<8} {:>7} {:>6} {:>7}  {verdict}", l.seed, l.orders, l.kills, l.broker_restarts)
}

/// One chaos run.
pub async fn run(args: ChaosArgs) -> Result<(Ending, SeedLine), RunError> {
    // With the pid: two runs started in the same millisecond (two tests) must not share a folder.
    let run_id = format!("chaos{}-{}", sagaflow_runtime::now_millis() % 1_000_000, std::process::id());
    let dir = std::path::absolute(std::path::Path::new("target/chaos").join(&run_id))?;
    std::fs::create_dir_all(&dir)?;

    // Own the broker when we can, so that we may restart it.
    let namespace = format!("sagaflow-{run_id}");
    let broker_dir = dir.join("broker");
    let bus = args.bus;
    let (broker, node) = tokio::task::spawn_blocking(
        move || -> Result<(sagaflow_devkit::broker::Broker, Option<OwnedBroker>), String> {
            use sagaflow_devkit::broker::{find_or_start, Broker, Kafka, PrivateBroker};
            match bus {
                BusKind::Rabbitmq => match PrivateBroker::start_in(broker_dir.clone(), false) {
                    Some(node) => Ok((Broker::amqp(node.url(), None), Some(OwnedBroker::Rabbit(node)))),
                    None => Ok((find_or_start(&broker_dir)?, None)),
                },
                BusKind::Kafka => {
                    let node = sagaflow_devkit::kafka::PrivateKafka::start_in(broker_dir, false)
                        .ok_or("tansu is not installed; scripts/kafka.sh installs it")?;
                    let kafka = Kafka { brokers: node.brokers(), private: None };
                    Ok((Broker::kafka(kafka), Some(OwnedBroker::Kafka(node))))
                }
            }
        },
    )
    .await?
    .map_err(anyhow::Error::msg)?;
    let dead_letters = DeadLettersAt {
        broker: broker.runtime_broker().map_err(anyhow::Error::msg)?,
        namespace: namespace.clone(),
    };
    // Shared with the blocking task that restarts it; stopped when the last handle drops.
    let node = node.map(Arc::new);
    let owns_broker = node.is_some();

    let catalog = dir.join("catalog.json");
    std::fs::write(&catalog, demo::CATALOG)?;
    let catalog = catalog.display().to_string();
    let ports = [0; 4].map(|_| sagaflow_devkit::broker::free_port());
    // Generous budgets: a killed participant comes back within seconds, and a saga should not
    // give up (or get stuck) because of that.
    let extra = [
        ("orchestrator", "CATALOG", catalog.as_str()),
        ("inventory", "CATALOG", catalog.as_str()),
        ("payment", "DECLINE_OVER_CENTS", demo::DECLINE_OVER_CENTS),
        ("orchestrator", "ATTEMPT_TIMEOUT_MS", "2000"),
        ("orchestrator", "ACTION_ATTEMPTS", "10"),
        ("orchestrator", "COMPENSATION_ATTEMPTS", "50"),
        ("orchestrator", "BACKOFF_MAX_MS", "2000"),
    ];
    let programs = supervisor::plan(&namespace, &broker, &dir, ports, &extra);
    let supervisor = Arc::new(Supervisor::start(&programs, Logs::Files(dir.clone())));
    supervisor::wait_healthy(&programs, Duration::from_secs(60)).await?;
    let api = programs[0].http.clone();
    eprintln!(
        "chaos: {} orders over {} s, a kill every ~{} ms, seed {}; logs in {}",
        args.orders,
        args.duration,
        args.kill_interval,
        args.seed,
        dir.display()
    );

    // The load: every order is placed, retrying through outages (the order id makes it safe).
    let demo_args = DemoArgs {
        orders: args.orders,
        seed: args.seed,
        concurrency: 8,
        timeout_secs: args.quiesce_timeout,
        keep: false,
        bus: crate::system::BusChoice { bus: args.bus, kafka_brokers: None },
    };
    let orders = demo::orders(&demo_args, &run_id);
    let pace = Duration::from_millis(args.duration * 1000 / (args.orders.max(1) as u64));
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).build().map_err(anyhow::Error::from)?;
    let load = {
        let (http, api, orders) = (http.clone(), api.clone(), orders.clone());
        tokio::spawn(async move {
            for (id, kind, body) in orders {
                loop {
                    let r = http.post(format!("{api}/orders")).json(&body).send().await;
                    if r.is_ok_and(|r| r.status().as_u16() == 202) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                if kind == Kind::Cancelled {
                    let _ = http.post(format!("{api}/orders/{id}/cancel")).send().await;
                }
                tokio::time::sleep(pace).await;
            }
        })
    };

    // The chaos: seeded kills, every program at least once, and one broker restart.
    let mut rng = Seeded(args.seed ^ 0xC4A0);
    let mut order: Vec<&str> = PROGRAMS.to_vec();
    for i in (1..order.len()).rev() {
        order.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let kills: Arc<Mutex<BTreeMap<&'static str, u32>>> = Arc::default();
    let recoveries: Arc<Mutex<Vec<(String, u128)>>> = Arc::default();
    let mut broker_restarts = 0;
    let started = Instant::now();
    let mut n = 0usize;
    while !load.is_finished() || n < PROGRAMS.len() {
        let wait = args.kill_interval / 2 + rng.below(args.kill_interval.max(1));
        tokio::time::sleep(Duration::from_millis(wait)).await;
        if owns_broker
            && broker_restarts == 0
            && started.elapsed() > Duration::from_secs(args.duration * 2 / 5)
        {
            eprintln!("chaos: restarting the broker");
            let t = Instant::now();
            if let Some(node) = node.clone() {
                tokio::task::spawn_blocking(move || node.restart()).await?;
            }
            broker_restarts += 1;
            measure_recovery("broker", &programs[0].http, t, &recoveries).await;
            continue;
        }
        let name = if n < order.len() { order[n] } else { PROGRAMS[rng.below(4) as usize] };
        n += 1;
        // Down for a seeded random pause, then restarted.
        let pause = Duration::from_millis(100 + rng.below(args.kill_interval.max(1)));
        if supervisor.kill(name, pause) {
            let t = Instant::now();
            *kills.lock().unwrap().entry(name).or_default() += 1;
            let http_of =
                programs.iter().find(|p| p.name == name).map(|p| p.http.clone()).unwrap_or_default();
            let recoveries = recoveries.clone();
            tokio::spawn(async move { measure_recovery(name, &http_of, t, &recoveries).await });
        }
    }
    load.await?;
    let load_done = Instant::now();

    // Quiescence: every order terminal (or the deadline passes and the check reports it).
    let deadline = Instant::now() + Duration::from_secs(args.quiesce_timeout);
    let mut finished: HashMap<String, sagaflow_api::OrderDetail> = HashMap::new();
    loop {
        for (id, _, _) in &orders {
            if finished.contains_key(id) {
                continue;
            }
            if let Ok(r) = http.get(format!("{api}/orders/{id}")).send().await {
                if let Ok(o) = r.json::<sagaflow_api::OrderDetail>().await {
                    if o.state.is_terminal() {
                        finished.insert(id.clone(), o);
                    }
                }
            }
        }
        if finished.len() == orders.len() || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Let the last replies, publications and completions settle before reading the books:
    // wait (bounded) until inventory holds no reservation.
    let settle = Instant::now() + Duration::from_secs(30);
    let inventory =
        programs.iter().find(|p| p.name == "inventory").map(|p| p.http.clone()).unwrap_or_default();
    while Instant::now() < settle {
        let stock: Value = match http.get(format!("{inventory}/stock")).send().await {
            Ok(r) => r.json().await.unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if stock["stock"].as_object().is_some_and(|s| s.values().all(|p| p["reserved"] == 0)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let quiesce = load_done.elapsed();
    let restarts: BTreeMap<&str, u32> =
        supervisor.restarts.iter().map(|(n, c)| (*n, c.load(std::sync::atomic::Ordering::Relaxed))).collect();

    let http_of =
        |name: &str| programs.iter().find(|p| p.name == name).map(|p| p.http.clone()).unwrap_or_default();
    let endpoints = Endpoints {
        orchestrator: api.clone(),
        payment: http_of("payment"),
        inventory: http_of("inventory"),
        notification: http_of("notification"),
        token: None,
        broker: Some(dead_letters),
    };
    let ids: Vec<String> = orders.iter().map(|(id, _, _)| id.clone()).collect();
    let books = Books::read(&endpoints, Some(&ids), Duration::from_secs(60)).await;
    let metrics = scrape(&http, &programs).await;
    match Arc::try_unwrap(supervisor) {
        Ok(s) => s.stop().await,
        Err(_) => tracing_free_warning("the supervisor is still shared; programs may outlive the run"),
    }
    drop(node);
    drop(broker);
    let books = books?;
    let verdict = books.judge();
    let kills = kills.lock().unwrap().clone();
    let recoveries = recoveries.lock().unwrap().clone();
    let longest = recoveries.iter().max_by_key(|(_, ms)| *ms).cloned();
    let passed = verdict.passed();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for o in books.orders.iter().filter_map(|(_, o)| o.as_ref()) {
        *outcomes.entry(demo::outcome(o)).or_default() += 1;
    }

    say!("\nCHAOS REPORT (seed {}, {} orders)", args.seed, orders.len());
    say!("\n{:<36} {:>7}", "OUTCOME", "ORDERS");
    for (k, v) in &outcomes {
        say!("{k:<36} {v:>7}");
    }
    say!("\n{:<14} {:>6} {:>9}", "PROGRAM", "KILLS", "RESTARTS");
    for p in PROGRAMS {
        say!("{p:<14} {:>6} {:>9}", kills.get(p).unwrap_or(&0), restarts.get(p).unwrap_or(&0));
    }
    say!("{:<14} {:>6}", "broker", broker_restarts);
    say!(
        "\nredeliveries seen (since each process's last start): {}",
        metrics.get("sagaflow_redeliveries_total").unwrap_or(&0)
    );
    say!("duplicates absorbed by the barriers: {}", metrics.get("sagaflow_duplicates_total").unwrap_or(&0));
    say!(
        "inputs ignored by sagas (duplicate or stale): {}",
        metrics.get("sagaflow_inputs_ignored_total").unwrap_or(&0)
    );
    if let Some((what, ms)) = &longest {
        say!("longest recovery: {what}, {ms} ms from kill to healthy");
    }
    say!("time to quiesce after the load: {:.1} s", quiesce.as_secs_f64());
    say!("");
    verdict.print();
    let json = json!({
        "seed": args.seed,
        "orders": orders.len(),
        "outcomes": outcomes,
        "kills": kills,
        "restarts": restarts,
        "brokerRestarts": broker_restarts,
        "ownsBroker": owns_broker,
        "recoveriesMs": recoveries.iter().map(|(w, ms)| json!({ "what": w, "ms": ms })).collect::<Vec<_>>(),
        "quiesceSeconds": quiesce.as_secs_f64(),
        "metrics": metrics,
        "invariants": verdict.to_json(),
        "passed": passed,
    });
    if let Some(parent) = args.report.parent() {
        std::fs::create_dir_all(parent).map_err(anyhow::Error::from)?;
    }
    std::fs::write(&args.report, serde_json::to_string_pretty(&json).map_err(anyhow::Error::from)?)
        .map_err(anyhow::Error::from)?;
    say!(
        "\n{} (report: {})",
        if passed { "ALL INVARIANTS HOLD" } else { "VIOLATIONS FOUND" },
        args.report.display()
    );
    let line = SeedLine {
        report: json,
        seed: args.seed,
        orders: orders.len(),
        kills: kills.values().sum(),
        broker_restarts,
        outcome: Ok(passed),
    };
    Ok((if passed { Ending::Passed } else { Ending::Violations }, line))
}

fn tracing_free_warning(message: &str) {
    eprintln!("chaos: {message}");
}

async fn measure_recovery(what: &str, http: &str, since: Instant, out: &Arc<Mutex<Vec<(String, u128)>>>) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(1)).build().expect("client");
    tokio::time::sleep(Duration::from_millis(50)).await;
    for _ in 0..1200 {
        if client.get(format!("{http}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
            out.lock().unwrap().push((what.to_owned(), since.elapsed().as_millis()));
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sums a few counters over every program's /metrics.
async fn scrape(http: &reqwest::Client, programs: &[supervisor::Program]) -> BTreeMap<String, u64> {
    let mut sums = BTreeMap::new();
    for p in programs {
        let Ok(r) = http.get(format!("{}/metrics", p.http)).send().await else { continue };
        let text = r.text().await.unwrap_or_default();
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let mut parts = line.split_whitespace();
            if let (Some(name), Some(value)) = (parts.next(), parts.next()) {
                if [
                    "sagaflow_redeliveries_total",
                    "sagaflow_duplicates_total",
                    "sagaflow_inputs_ignored_total",
                ]
                .contains(&name)
                {
                    *sums.entry(name.to_owned()).or_default() += value.parse::<f64>().unwrap_or(0.0) as u64;
                }
            }
        }
    }
    sums
}
