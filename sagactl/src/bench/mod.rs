//! `sagactl bench`: throughput, latency and cost of sagaflow on this machine, against the
//! broker's own ceiling and against the REST chain it replaces, all in one run.
//!
//! Phases, in order (each starts its own programs and stops them after):
//! 1. [`ceiling`]: raw publish-with-confirms and consume-with-acks on quorum queues.
//! 2. The saga system at peak (closed loop), then open-loop latency at 25/50/75 % of that peak,
//!    then Payment down for 10 s under load.
//! 3. The same for the REST chain (`rest-chain-hop`, from the devkit, for each service), then
//!    more closed-loop peaks of both designs in alternating rounds (`--rounds`), on which the
//!    peak targets are judged by their medians.
//! 4. Cost as work grows: recovery and throughput with 0, 100k and 1M finished sagas stored.
//! 5. Retention: a long run with a short window, to show the store stays bounded.
//!
//! The [`report`] goes to the terminal, to `report.json` and to `latency.svg` in `--out`.

mod ceiling;
mod cost;
mod load;
mod procstat;
mod report;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cost::{BrokerMessages, Cost, Meter, ProcessCost};
use load::{Endings, Latency, Placer, Sample, SlowestSecond, Target, Watcher};
use serde::Serialize;

use crate::system::StartedSystem;
use sagaflow_runtime::config::BusKind;

#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Where the table, report.json and latency.svg go.
    #[arg(long, default_value = "target/bench/results")]
    pub out: PathBuf,
    /// A small, quick version of every phase: proves the bench works, measures little.
    #[arg(long)]
    pub smoke: bool,
    /// Clients of the closed-loop peak runs (orders in flight).
    #[arg(long, default_value_t = 128)]
    pub concurrency: usize,
    /// Seconds measured per load phase.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Finished sagas stored before the cost-as-work-grows runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "0,100000,1000000")]
    pub stored: Vec<u64>,
    /// Messages of the broker-ceiling run.
    #[arg(long, default_value_t = 40_000)]
    pub ceiling_messages: usize,
    /// Length of the retention run, in seconds: long enough for sled's log to reach the size
    /// where freeing segments keeps up with writing them (about two minutes at peak load; longer
    /// on a busier machine), and then show a middle and a last third at that size.
    #[arg(long, default_value_t = 420)]
    pub retention_seconds: u64,
    /// The broker the saga design runs on (the broker-ceiling phase is RabbitMQ's only).
    #[command(flatten)]
    pub bus: crate::system::BusChoice,
    /// Orders per second during Payment's outage, in both designs. Unset: half the saga's peak,
    /// so that each bench run scales it to the machine it runs on.
    #[arg(long, value_parser = offered_rate)]
    pub outage_rate: Option<f64>,
    /// The rate, in orders per second, that the open-loop rows take their 25/50/75 % of, in both
    /// designs. Unset: each design's own peak in this run. Set it to compare two builds at the
    /// same offered loads: a peak moves with this machine's noise, and a latency is comparable
    /// only at one rate. The latency targets are then not judged, since the rows are not
    /// shares of the peak.
    #[arg(long, value_parser = offered_rate)]
    pub open_loop_base: Option<f64>,
    /// Closed-loop peaks of each design, in alternating order, that the peak targets take
    /// their medians of. The first round is the design phases' own peaks; each further round
    /// starts both designs' programs afresh and measures their peaks alone. One peak is a draw
    /// on a shared VM: the same build's moves 1.5x within minutes, for either design.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=20))]
    pub rounds: u16,
    /// Run only these phases (for profiling one of them); the report shows the others empty.
    #[arg(long, value_delimiter = ',', default_value = "ceiling,saga,chain,stored,retention")]
    pub phases: Vec<Phase>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Phase {
    Ceiling,
    Saga,
    Chain,
    Stored,
    Retention,
}

impl BenchArgs {
    fn effective(mut self) -> Self {
        if self.smoke {
            self.concurrency = self.concurrency.min(16);
            self.seconds = self.seconds.min(2);
            self.stored = vec![0, 2_000];
            self.ceiling_messages = self.ceiling_messages.min(2_000);
            self.retention_seconds = self.retention_seconds.min(6);
            // Two, so that the smoke run takes the path where the chain goes first.
            self.rounds = self.rounds.min(2);
        }
        self
    }

    fn warmup(&self) -> Duration {
        Duration::from_secs(if self.smoke { 1 } else { 3 })
    }

    fn measure(&self) -> Duration {
        Duration::from_secs(self.seconds.max(1))
    }

    /// The longest wait for the system to be quiet after a load row.
    fn settle_limit(&self) -> Duration {
        Duration::from_secs(if self.smoke { 3 } else { 30 })
    }
}

/// Queued messages per completed saga: three commands, three replies, and the `OrderCompleted`
/// that inventory follows. (Public events with no queue bound cost the broker a routing
/// lookup, not a queue write; the bench's own watcher queue is not counted.)
pub const MESSAGES_PER_SAGA: f64 = 7.0;

/// Below this share of one core, all the system's processes together count as quiet.
const QUIET_PERCENT: f64 = 10.0;

/// Keeps measuring a load row after its last order until the system is quiet (or `limit`), so
/// that work its sagas left behind (sled's segment cleaning, say) is counted as theirs and not
/// billed to the next row, which starts from a quiet system. How long that took is printed.
async fn settle(meter: &mut Meter, limit: Duration) {
    let took = meter.sampler.until_quiet(cost::LOAD_GENERATOR, QUIET_PERCENT, limit).await;
    eprintln!("      quiet again {:.1} s after the load", took.as_secs_f64());
}

/// Latency of an order that counts as delayed in the outage runs.
const DELAYED: Duration = Duration::from_secs(1);

/// One design under one load.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadResult {
    pub label: String,
    /// Orders due per second (open loop), or clients (closed loop).
    pub offered: f64,
    pub completed_per_sec: f64,
    pub latency_ms: Latency,
    pub endings: Endings,
    /// CPU time of all the system's processes (the broker included, the load generator not),
    /// per completed saga.
    pub cpu_ms_per_saga: f64,
    pub processes: BTreeMap<String, ProcessCost>,
    /// Counted by the broker; `None` on a broker whose counters the bench cannot read.
    pub broker_messages: Option<BrokerMessages>,
    /// Bytes the disk that holds the stores wrote, per completed saga, from every process on
    /// the machine (in bytes, as each process's `bytesWrittenPerSaga`); `None` where
    /// /proc/diskstats cannot say.
    pub disk_bytes_per_saga: Option<f64>,
    /// What the machine as a whole went through in the row.
    pub host: Option<procstat::HostUse>,
    /// Where the row's tail comes from.
    pub slowest_second: Option<SlowestSecond>,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outage {
    pub rate: f64,
    pub placed: usize,
    pub endings: Endings,
    /// Completed, but later than [`DELAYED`].
    pub delayed: usize,
    pub max_latency_ms: f64,
    /// From Payment answering again to the last order that failed or was delayed ending.
    pub recovery_secs: f64,
    pub payment_down_secs: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Design {
    pub peak: LoadResult,
    /// The rate the open-loop rows are shares of, when it was given (`--open-loop-base`)
    /// rather than the peak.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_loop_base: Option<f64>,
    pub open_loop: Vec<LoadResult>,
    pub payment_outage: Outage,
}

/// The two designs the bench compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DesignName {
    Saga,
    RestChain,
}

impl DesignName {
    fn dir_name(self) -> &'static str {
        match self {
            Self::Saga => "saga",
            Self::RestChain => "rest-chain",
        }
    }

    /// As the report's tables name it.
    pub fn label(self) -> &'static str {
        match self {
            Self::Saga => "saga",
            Self::RestChain => "REST chain",
        }
    }

    fn other(self) -> Self {
        match self {
            Self::Saga => Self::RestChain,
            Self::RestChain => Self::Saga,
        }
    }
}

/// One closed-loop peak of each design, measured one after the other. The peak targets are
/// judged on the medians over all rounds ([`report::targets`]).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeakRound {
    /// The design measured first. Rounds alternate, so that a machine that drifts over the run
    /// favours neither design.
    pub first: DesignName,
    /// `None` when the design's phase was not run.
    pub saga: Option<LoadResult>,
    pub rest_chain: Option<LoadResult>,
}

impl PeakRound {
    /// The saga's peak over the chain's, when both ran.
    pub fn ratio(&self) -> Option<f64> {
        let (saga, chain) = (self.saga.as_ref()?, self.rest_chain.as_ref()?);
        (chain.completed_per_sec > 0.0).then(|| saga.completed_per_sec / chain.completed_per_sec)
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stored {
    pub stored_sagas: u64,
    pub fill_secs: f64,
    /// From SIGKILL of the orchestrator to its `/health` answering 200 again.
    pub recovery_secs: f64,
    pub completed_per_sec: f64,
    pub orchestrator_rss_mib: f64,
    pub services_rss_mib: f64,
    pub store_bytes: u64,
    pub bytes_per_saga: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    pub retain_secs: u64,
    pub run_secs: u64,
    pub completed: usize,
    /// (seconds into the run, the orchestrator's store bytes on disk, sagas stored, the three
    /// services' stores together)
    pub samples: Vec<(f64, u64, i64, u64)>,
    pub max_bytes_first_half: u64,
    pub max_bytes_second_half: u64,
    /// The orchestrator's store, averaged over the middle and the last third of the run.
    pub orchestrator: Level,
    /// The services' stores together, likewise.
    pub services: Level,
    /// What the completed sagas would take without retention, at the bytes per saga measured
    /// with the largest store (0 when that phase did not run).
    pub without_retention_bytes: u64,
    pub bounded: bool,
}

/// Whether a store levels off: its mean size over the last third of the run against the
/// middle third's. The first third fills the window and is left out.
///
/// Means, not maxima: sled's file is its log, whose tip swings ±25 % as trailing segments free
/// and refill, so the largest sample of a half says where the tip happened to be. A store that
/// keeps what retention should remove grows linearly, and its last third's mean is then 1.67
/// times the middle third's; one that levels off stays near 1.
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Level {
    pub middle_third_mean_bytes: u64,
    pub last_third_mean_bytes: u64,
}

impl Level {
    /// The most the last third may grow over the middle one and still count as level.
    pub const TOLERANCE: f64 = 1.10;

    fn of(sizes: &[u64]) -> Self {
        let third = sizes.len() / 3;
        let mean = |s: &[u64]| if s.is_empty() { 0 } else { s.iter().sum::<u64>() / s.len() as u64 };
        Self {
            middle_third_mean_bytes: mean(&sizes[third..2 * third]),
            last_third_mean_bytes: mean(&sizes[2 * third..]),
        }
    }

    pub fn ratio(&self) -> f64 {
        self.last_third_mean_bytes as f64 / self.middle_third_mean_bytes.max(1) as f64
    }

    pub fn is_level(&self) -> bool {
        self.ratio() <= Self::TOLERANCE
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Machine {
    pub cores: usize,
    pub memory_gib: f64,
    pub cpu: String,
    pub kernel: String,
    pub broker: String,
    pub build: String,
    pub date: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub command: String,
    pub smoke: bool,
    pub machine: Machine,
    pub ceiling: ceiling::Ceiling,
    pub messages_per_saga: f64,
    pub saga: Design,
    pub rest_chain: Design,
    /// The first round holds the design phases' peaks; see [`BenchArgs::rounds`].
    pub peak_rounds: Vec<PeakRound>,
    pub stored: Vec<Stored>,
    pub retention: Retention,
    pub targets: Vec<report::Target>,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let args = args.effective();
    let run_id = format!("bench{}-{}", sagaflow_runtime::now_millis() % 1_000_000, std::process::id());
    let dir = std::path::absolute(Path::new("target/bench").join(&run_id))?;
    std::fs::create_dir_all(&dir)?;
    std::fs::create_dir_all(&args.out)?;
    let catalog = dir.join("catalog.json");
    std::fs::write(&catalog, BENCH_CATALOG)?;
    let bench =
        Bench { args: args.clone(), dir: dir.clone(), catalog: catalog.display().to_string(), run_id };
    eprintln!("sagactl bench: data and logs in {}", dir.display());

    let mut broker = bench_broker(&dir, &args.bus).await?;
    let broker_name = broker.describe();
    let on = |phase: Phase| args.phases.contains(&phase);
    let mut ceiling = ceiling::Ceiling::default();
    if on(Phase::Ceiling) && broker.kafka.is_some() {
        eprintln!("[1/5] broker ceiling: skipped (RabbitMQ only)");
    } else if on(Phase::Ceiling) {
        eprintln!("[1/5] broker ceiling ({} messages, {broker_name})", args.ceiling_messages);
        let namespace = format!("sagaflow-{}", bench.run_id);
        ceiling = ceiling::measure(&broker.url, &namespace, args.ceiling_messages, 512).await?;
        eprintln!("      {:.0} messages/s", ceiling.messages_per_sec);
    }
    let mut saga = Design::default();
    if on(Phase::Saga) {
        eprintln!("[2/5] saga design: peak, open loop, Payment outage");
        let (d, b) = bench.saga_design(broker).await?;
        (saga, broker) = (d, b);
    }
    let mut rest_chain = Design::default();
    if on(Phase::Chain) {
        eprintln!("[3/5] REST chain: peak, open loop, Payment outage");
        // Both designs face the outage at the same rate: half of the saga's peak.
        let outage_rate = args.outage_rate.unwrap_or((saga.peak.completed_per_sec * 0.5).max(50.0));
        let (d, b) = bench.rest_chain_design(broker, outage_rate).await?;
        (rest_chain, broker) = (d, b);
    }
    let mut peak_rounds = Vec::new();
    if on(Phase::Saga) || on(Phase::Chain) {
        let ran = |d: &Design| (d.peak.completed_per_sec > 0.0).then(|| d.peak.clone());
        peak_rounds.push(PeakRound {
            first: DesignName::Saga,
            saga: ran(&saga),
            rest_chain: ran(&rest_chain),
        });
        for round in 2..=usize::from(args.rounds) {
            let first = if round % 2 == 0 { DesignName::RestChain } else { DesignName::Saga };
            let mut peaks = PeakRound { first, saga: None, rest_chain: None };
            for design in [first, first.other()] {
                let phase = match design {
                    DesignName::Saga => Phase::Saga,
                    DesignName::RestChain => Phase::Chain,
                };
                if !on(phase) {
                    continue;
                }
                eprintln!("      peak round {round} of {}: {}", args.rounds, design.label());
                let (peak, b) = bench.peak_round(broker, design, round).await?;
                broker = b;
                match design {
                    DesignName::Saga => peaks.saga = Some(peak),
                    DesignName::RestChain => peaks.rest_chain = Some(peak),
                }
            }
            peak_rounds.push(peaks);
        }
    }
    let mut stored = Vec::new();
    if on(Phase::Stored) {
        eprintln!("[4/5] cost as work grows: {:?} finished sagas stored", args.stored);
        for &n in &args.stored {
            let (result, b) = bench.with_stored(broker, n).await?;
            broker = b;
            eprintln!(
                "      {n}: recovery {:.2} s, {:.0} sagas/s, {:.0} bytes/saga",
                result.recovery_secs, result.completed_per_sec, result.bytes_per_saga
            );
            stored.push(result);
        }
    }
    let mut retention = Retention::default();
    if on(Phase::Retention) {
        eprintln!("[5/5] retention: {} s of load with a 5 s window", args.retention_seconds);
        let (r, b) = bench.retention(broker).await?;
        (retention, broker) = (r, b);
        let per_saga = stored.iter().max_by_key(|s| s.stored_sagas).map(|s| s.bytes_per_saga).unwrap_or(0.0);
        retention.without_retention_bytes = (retention.completed as f64 * per_saga) as u64;
    }
    drop(broker);

    let machine = machine(&broker_name.replace("a private", "private"), args.bus.bus);
    let targets = report::targets(&saga, &peak_rounds, &stored, &retention, args.smoke);
    let report = Report {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        smoke: args.smoke,
        machine,
        ceiling,
        messages_per_saga: MESSAGES_PER_SAGA,
        saga,
        rest_chain,
        peak_rounds,
        stored,
        retention,
        targets,
    };
    let table = report::table(&report);
    crate::output::say!("{table}");
    crate::output::emit(&report);
    std::fs::write(args.out.join("report.txt"), &table)?;
    std::fs::write(args.out.join("report.json"), serde_json::to_string_pretty(&report)?)?;
    let plot = report::svg(&report).map_err(|e| anyhow::anyhow!("cannot draw the plot: {e}"))?;
    std::fs::write(args.out.join("latency.svg"), plot)?;
    eprintln!("Written: {0}/report.txt, {0}/report.json, {0}/latency.svg", args.out.display());
    let _ = std::fs::remove_dir_all(&dir);
    if args.smoke {
        smoke_check(&report, args.rounds)?;
        eprintln!("smoke check passed: every phase ran and the saga lost nothing");
    }
    Ok(())
}

/// What a smoke run must show, timings aside: every phase produced numbers, and the saga lost
/// and failed nothing while Payment was down (the REST chain is allowed to).
fn smoke_check(r: &Report, rounds: u16) -> anyhow::Result<()> {
    let mut wrong = Vec::new();
    if r.ceiling.messages_per_sec <= 0.0 {
        wrong.push("the broker ceiling is zero".to_owned());
    }
    for (name, d) in [("saga", &r.saga), ("REST chain", &r.rest_chain)] {
        if d.peak.completed_per_sec <= 0.0 || d.open_loop.iter().any(|l| l.endings.completed == 0) {
            wrong.push(format!("the {name} design completed no orders in a load phase"));
        }
    }
    let keys = |p: &str| r.saga.peak.processes.get(p).and_then(|c| c.store_keys_per_saga).unwrap_or(0.0);
    if ["orchestrator", "payment", "inventory", "notification"].iter().any(|p| keys(p) <= 0.0) {
        wrong.push("a program's store keys per saga were not measured at the saga's peak".to_owned());
    }
    if r.peak_rounds.len() != usize::from(rounds)
        || r.peak_rounds.iter().any(|round| round.ratio().is_none_or(|ratio| ratio <= 0.0))
    {
        wrong.push(format!(
            "{} of {rounds} peak rounds, or one without both designs' peaks",
            r.peak_rounds.len()
        ));
    }
    let o = &r.saga.payment_outage;
    if o.placed == 0 || o.endings.failed + o.endings.lost + o.endings.refused > 0 {
        wrong.push(format!("the saga did not complete every order through the outage: {:?}", o.endings));
    }
    if r.stored.iter().any(|s| s.completed_per_sec <= 0.0 || s.bytes_per_saga <= 0.0) || r.stored.is_empty() {
        wrong.push("a stored-sagas run measured nothing".to_owned());
    }
    if r.retention.samples.is_empty() || r.retention.completed == 0 {
        wrong.push("the retention run measured nothing".to_owned());
    }
    anyhow::ensure!(wrong.is_empty(), "bench smoke check failed: {}", wrong.join("; "));
    Ok(())
}

/// Plenty of one product: the bench measures the machinery, so every order should complete.
const BENCH_CATALOG: &str = r#"{"products": [
  {"id": "abc", "name": "Alpine backpack", "priceCents": 4999, "stock": 1000000000}
]}"#;

struct Bench {
    args: BenchArgs,
    dir: PathBuf,
    catalog: String,
    run_id: String,
}

impl Bench {
    async fn start_saga_system(
        &self,
        broker: sagaflow_devkit::broker::Broker,
        name: &str,
        more: &[(&str, &str, &str)],
    ) -> anyhow::Result<StartedSystem> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let mut extra = vec![
            ("orchestrator", "CATALOG", self.catalog.as_str()),
            ("inventory", "CATALOG", self.catalog.as_str()),
            ("*", "RUST_LOG", "warn"),
        ];
        extra.extend_from_slice(more);
        StartedSystem::start_on(broker, &dir, &format!("sagaflow-{}-{name}", self.run_id), &extra).await
    }

    async fn saga_design(
        &self,
        broker: sagaflow_devkit::broker::Broker,
    ) -> anyhow::Result<(Design, sagaflow_devkit::broker::Broker)> {
        let system = self.start_saga_system(broker, "saga", &[]).await?;
        let result =
            async { self.design(&system, saga_target(&system).await?, self.args.outage_rate).await }.await;
        let broker = system.stop_programs().await;
        Ok((result?, broker))
    }

    async fn rest_chain_design(
        &self,
        broker: sagaflow_devkit::broker::Broker,
        outage_rate: f64,
    ) -> anyhow::Result<(Design, sagaflow_devkit::broker::Broker)> {
        let system = self.start_rest_chain(broker, "rest-chain")?;
        let result =
            async { self.design(&system, chain_target(&system).await?, Some(outage_rate)).await }.await;
        let broker = system.stop_programs().await;
        Ok((result?, broker))
    }

    /// The REST chain's three hops (`rest-chain-hop`, one per service), each calling the next
    /// over HTTP; the broker is only held, so that it is handed back as the saga's phases get it.
    fn start_rest_chain(
        &self,
        broker: sagaflow_devkit::broker::Broker,
        name: &str,
    ) -> anyhow::Result<StartedSystem> {
        let dir = self.dir.join(name);
        std::fs::create_dir_all(&dir)?;
        let ports = [0; 4].map(|_| sagaflow_devkit::broker::free_port());
        let (inventory, notification) =
            (format!("http://127.0.0.1:{}", ports[2]), format!("http://127.0.0.1:{}", ports[3]));
        let extra = [
            ("*", "RUST_LOG", "warn"),
            ("inventory", "CATALOG", self.catalog.as_str()),
            ("payment", "CHAIN_NEXT", inventory.as_str()),
            ("inventory", "CHAIN_NEXT", notification.as_str()),
        ];
        let mut programs: Vec<_> =
            crate::supervisor::plan("unused", &broker, &dir, ports, &extra).into_iter().skip(1).collect();
        for hop in &mut programs {
            hop.binary = "rest-chain-hop";
            hop.env.push(("PARTICIPANT".to_owned(), hop.name.to_owned()));
        }
        let supervisor =
            crate::supervisor::Supervisor::start(&programs, crate::supervisor::Logs::Files(dir.clone()));
        Ok(StartedSystem {
            programs,
            supervisor,
            broker,
            namespace: format!("sagaflow-{}-{name}", self.run_id),
            dir,
        })
    }

    /// One more closed-loop peak of `design`, on programs started for it alone and stopped
    /// after, with fresh stores in a folder of their own: a round of [`PeakRound`]s.
    async fn peak_round(
        &self,
        broker: sagaflow_devkit::broker::Broker,
        design: DesignName,
        round: usize,
    ) -> anyhow::Result<(LoadResult, sagaflow_devkit::broker::Broker)> {
        let name = format!("{}-round-{round}", design.dir_name());
        let system = match design {
            DesignName::Saga => self.start_saga_system(broker, &name, &[]).await?,
            DesignName::RestChain => self.start_rest_chain(broker, &name)?,
        };
        let result = async {
            let target = match design {
                DesignName::Saga => saga_target(&system).await?,
                DesignName::RestChain => chain_target(&system).await?,
            };
            let placer = Placer::new(target, &format!("{}-{name}", self.run_id));
            Ok::<_, anyhow::Error>(self.peak(&system, &placer).await)
        }
        .await;
        // The round's folder stays until the run ends. Deleting its thousands of mails and its
        // stores here cost the next round's peak: for a while after a large deletion, writing
        // and syncing new files on that file system costs more (notification's CPU per saga
        // doubled; bench/runs/2026-11-29-stop-36).
        let broker = system.stop_programs().await;
        Ok((result?, broker))
    }

    /// The closed-loop peak: [`BenchArgs::concurrency`] orders in flight, measured until the
    /// system is quiet again.
    async fn peak(&self, system: &StartedSystem, placer: &Placer) -> LoadResult {
        let mut meter = Meter::start(
            &pids(system),
            broker_metrics(system).as_deref(),
            &program_metrics(system),
            &system.dir,
        )
        .await;
        let (rate, samples) = procstat::sampled(
            &mut meter.sampler,
            Duration::from_millis(250),
            load::closed_loop(placer, self.args.concurrency, self.args.warmup(), self.args.measure()),
        )
        .await;
        settle(&mut meter, self.args.settle_limit()).await;
        let peak = result(
            &format!("peak ({} in flight)", self.args.concurrency),
            self.args.concurrency as f64,
            rate,
            &samples,
            meter.finish(Endings::of(&samples).completed).await,
        );
        eprintln!(
            "      peak {:.0} completed/s, {:.2} CPU ms per order, p50 {} ms, p99 {} ms",
            peak.completed_per_sec, peak.cpu_ms_per_saga, peak.latency_ms.p50, peak.latency_ms.p99
        );
        peak
    }

    /// Peak, open loop at 25/50/75 % of it, and the outage, for one design.
    async fn design(
        &self,
        system: &StartedSystem,
        target: Target,
        outage_rate: Option<f64>,
    ) -> anyhow::Result<Design> {
        // Order ids name the run and the phase, as every phase's do.
        let name = system.dir.file_name().unwrap_or_default().to_string_lossy();
        let placer = Placer::new(target, &format!("{}-{name}", self.run_id));
        let peak = self.peak(system, &placer).await;
        let pids = pids(system);
        let metrics = broker_metrics(system);
        let programs = program_metrics(system);
        let mut open = Vec::new();
        // What the open-loop rows are shares of, and how their labels name it.
        let (base, of) = match self.args.open_loop_base {
            Some(rate) => (rate, format!("{rate:.0}/s")),
            None => (peak.completed_per_sec, "peak".to_owned()),
        };
        for share in [0.25, 0.5, 0.75] {
            let offered = (base * share).max(1.0);
            let mut meter = Meter::start(&pids, metrics.as_deref(), &programs, &system.dir).await;
            let samples = procstat::sampled(
                &mut meter.sampler,
                Duration::from_millis(250),
                load::open_loop(&placer, offered, self.args.measure()),
            )
            .await;
            settle(&mut meter, self.args.settle_limit()).await;
            let completed_per_sec =
                Endings::of(&samples).completed as f64 / self.args.measure().as_secs_f64();
            let r = result(
                &format!("{:.0} % of {of}", share * 100.0),
                offered,
                completed_per_sec,
                &samples,
                meter.finish(Endings::of(&samples).completed).await,
            );
            eprintln!(
                "      {:>5.0}/s: p50 {} ms, p99 {} ms, p99.9 {} ms",
                offered, r.latency_ms.p50, r.latency_ms.p99, r.latency_ms.p999
            );
            open.push(r);
        }
        let rate = outage_rate.unwrap_or(peak.completed_per_sec * 0.5).max(1.0);
        let payment_outage = self.outage(system, &placer, rate).await?;
        eprintln!(
            "      Payment down {:.1} s at {:.0}/s: {} completed, {} failed, {} lost, {} delayed, recovery {:.1} s",
            payment_outage.payment_down_secs, rate, payment_outage.endings.completed, payment_outage.endings.failed,
            payment_outage.endings.lost, payment_outage.delayed, payment_outage.recovery_secs
        );
        Ok(Design { peak, open_loop_base: self.args.open_loop_base, open_loop: open, payment_outage })
    }

    /// Open-loop load at `rate`; Payment is SIGKILLed a third of the way in and kept down for
    /// ten seconds (less in a smoke run).
    async fn outage(&self, system: &StartedSystem, placer: &Placer, rate: f64) -> anyhow::Result<Outage> {
        let (total, down) = if self.args.smoke {
            (Duration::from_secs(6), Duration::from_secs(2))
        } else {
            (Duration::from_secs(30), Duration::from_secs(10))
        };
        let kill_at = total / 3;
        let start = tokio::time::Instant::now();
        let payment = system.program("payment").http.clone();
        let killer = async {
            tokio::time::sleep(kill_at).await;
            let killed_at = start.elapsed();
            system.supervisor.kill("payment", down);
            let http = reqwest::Client::new();
            tokio::time::sleep(Duration::from_millis(200)).await;
            loop {
                let up = http
                    .get(format!("{payment}/health"))
                    .timeout(Duration::from_millis(200))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if up {
                    return (killed_at, start.elapsed());
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let (samples, (killed_at, back_at)) = tokio::join!(load::open_loop(placer, rate, total), killer);
        let delayed =
            samples.iter().filter(|s| s.ending == load::Ending::Completed && s.latency > DELAYED).count();
        let last_bad_end = samples
            .iter()
            .filter(|s| s.ending != load::Ending::Completed || s.latency > DELAYED)
            .map(|s| s.due + s.latency)
            .max()
            .unwrap_or_default();
        Ok(Outage {
            rate: rate.round(),
            placed: samples.len(),
            endings: Endings::of(&samples),
            delayed,
            max_latency_ms: samples
                .iter()
                .map(|s| s.latency.as_secs_f64() * 1000.0)
                .fold(0.0, f64::max)
                .round(),
            recovery_secs: round2(last_bad_end.saturating_sub(back_at).as_secs_f64()),
            payment_down_secs: round2((back_at - killed_at).as_secs_f64()),
        })
    }

    /// Recovery, throughput and memory with `n` finished sagas already stored.
    async fn with_stored(
        &self,
        broker: sagaflow_devkit::broker::Broker,
        n: u64,
    ) -> anyhow::Result<(Stored, sagaflow_devkit::broker::Broker)> {
        let name = format!("stored-{n}");
        let store_path = self.dir.join(&name).join("orchestrator").join("sagas.sled");
        std::fs::create_dir_all(&store_path)?;
        let filled = std::time::Instant::now();
        let path = store_path.clone();
        tokio::task::spawn_blocking(move || sagaflow_devkit::populate::fill(&path, n, "stored")).await??;
        let fill_secs = round2(filled.elapsed().as_secs_f64());
        let system = self.start_saga_system(broker, &name, &[]).await?;
        let result = async {
            let recovery_secs = recovery(&system).await?;
            let placer = Placer::new(saga_target(&system).await?, &format!("{}-{name}", self.run_id));
            let mut meter = Meter::start(&pids(&system), None, &program_metrics(&system), &system.dir).await;
            let (rate, samples) = procstat::sampled(
                &mut meter.sampler,
                Duration::from_millis(250),
                load::closed_loop(&placer, self.args.concurrency, self.args.warmup(), self.args.measure()),
            )
            .await;
            let usage = meter.finish(Endings::of(&samples).completed).await.usage;
            let rss = |p: &str| usage.get(p).map(|u| u.max_rss_mib).unwrap_or(0.0);
            let store_bytes = dir_size(&store_path);
            let count = stored_sagas(system.api()).await.max(1);
            Ok::<_, anyhow::Error>(Stored {
                stored_sagas: n,
                fill_secs,
                recovery_secs,
                completed_per_sec: rate.round(),
                orchestrator_rss_mib: rss("orchestrator"),
                services_rss_mib: round2(rss("payment") + rss("inventory") + rss("notification")),
                store_bytes,
                bytes_per_saga: (store_bytes as f64 / count as f64).round(),
            })
        }
        .await;
        let broker = system.stop_programs().await;
        let _ = std::fs::remove_dir_all(self.dir.join(&name));
        Ok((result?, broker))
    }

    /// A steady load with a 5 s retention window; the store's size is sampled as it runs.
    async fn retention(
        &self,
        broker: sagaflow_devkit::broker::Broker,
    ) -> anyhow::Result<(Retention, sagaflow_devkit::broker::Broker)> {
        const RETAIN: u64 = 5;
        let retain = RETAIN.to_string();
        let system = self
            .start_saga_system(
                broker,
                "retention",
                &[("orchestrator", "RETAIN_FINISHED_SECS", retain.as_str())],
            )
            .await?;
        let result = async {
            let placer = Placer::new(saga_target(&system).await?, &format!("{}-retention", self.run_id));
            let store = self.dir.join("retention").join("orchestrator").join("sagas.sled");
            let services = ["payment", "inventory", "notification"]
                .map(|s| self.dir.join("retention").join(s).join("store.sled"));
            let run = Duration::from_secs(self.args.retention_seconds);
            let start = tokio::time::Instant::now();
            let sampling = async {
                let mut samples = Vec::new();
                while start.elapsed() < run {
                    tokio::time::sleep(Duration::from_secs(if self.args.smoke { 1 } else { 3 })).await;
                    samples.push((
                        round2(start.elapsed().as_secs_f64()),
                        dir_size(&store),
                        stored_sagas(system.api()).await,
                        services.iter().map(|s| dir_size(s)).sum(),
                    ));
                }
                samples
            };
            // Half the load of the peak: a long, steady day rather than a storm.
            let (samples, (_, load_samples)) = tokio::join!(
                sampling,
                load::closed_loop(&placer, (self.args.concurrency / 2).max(1), Duration::ZERO, run)
            );
            let half = samples.len() / 2;
            let max = |s: &[(f64, u64, i64, u64)]| s.iter().map(|x| x.1).max().unwrap_or(0);
            let (first, second) = (max(&samples[..half]), max(&samples[half..]));
            let orchestrator = Level::of(&samples.iter().map(|s| s.1).collect::<Vec<_>>());
            let services = Level::of(&samples.iter().map(|s| s.3).collect::<Vec<_>>());
            Ok::<_, anyhow::Error>(Retention {
                retain_secs: RETAIN,
                run_secs: self.args.retention_seconds,
                completed: Endings::of(&load_samples).completed,
                bounded: orchestrator.is_level() && services.is_level(),
                max_bytes_first_half: first,
                max_bytes_second_half: second,
                orchestrator,
                services,
                without_retention_bytes: 0,
                samples,
            })
        }
        .await;
        let broker = system.stop_programs().await;
        Ok((result?, broker))
    }
}

fn result(label: &str, offered: f64, rate: f64, samples: &[Sample], cost: Cost) -> LoadResult {
    LoadResult {
        label: label.to_owned(),
        offered: offered.round(),
        completed_per_sec: rate.round(),
        latency_ms: Latency::of(samples),
        endings: Endings::of(samples),
        cpu_ms_per_saga: cost.cpu_ms_per_saga,
        processes: cost.processes,
        broker_messages: cost.broker,
        disk_bytes_per_saga: cost.disk_bytes_per_saga,
        host: cost.host,
        slowest_second: SlowestSecond::of(samples),
    }
}

/// The bench's broker: a private node of its own when RabbitMQ is installed, so that its CPU
/// is the system's alone and its counters count only the system's messages; else the broker
/// step's. On Kafka, a private tansu broker (or `KAFKA_BROKERS`).
async fn bench_broker(
    dir: &Path,
    bus: &crate::system::BusChoice,
) -> anyhow::Result<sagaflow_devkit::broker::Broker> {
    if bus.bus == BusKind::Kafka {
        return StartedSystem::broker(dir, bus).await;
    }
    let broker_dir = dir.join("broker");
    let private = tokio::task::spawn_blocking(move || {
        sagaflow_devkit::broker::PrivateBroker::start_with_metrics(broker_dir)
    })
    .await?;
    match private {
        Some(node) => Ok(sagaflow_devkit::broker::Broker::amqp(node.url(), Some(node))),
        None => StartedSystem::broker(dir, bus).await,
    }
}

fn broker_metrics(system: &StartedSystem) -> Option<String> {
    system.broker.private.as_ref().and_then(|b| b.metrics_url())
}

/// The saga design as a load target: orders go to the orchestrator's API and end with the
/// terminal event on the system's public topic exchange.
async fn saga_target(system: &StartedSystem) -> anyhow::Result<Target> {
    let topology = sagaflow_events::Topology::new(system.namespace.clone());
    let watcher = match &system.broker.kafka {
        Some(kafka) => Watcher::start_kafka(&kafka.brokers, &topology).await?,
        None => Watcher::start(&system.broker.url, &topology.events_exchange()).await?,
    };
    Ok(Target::Saga { api: system.api().to_owned(), watcher })
}

/// The REST chain as a load target, once its hops answer: an order is one POST to the first
/// hop, and ends with its answer.
async fn chain_target(system: &StartedSystem) -> anyhow::Result<Target> {
    crate::supervisor::wait_healthy(&system.programs, Duration::from_secs(60)).await?;
    Ok(Target::Chain { first_hop: system.program("payment").http.clone() })
}

/// Each program's metrics address, by its name.
fn program_metrics(system: &StartedSystem) -> Vec<(String, String)> {
    system.programs.iter().map(|p| (p.name.to_owned(), format!("{}/metrics", p.http))).collect()
}

fn pids(system: &StartedSystem) -> Vec<(String, u32)> {
    let mut pids: Vec<(String, u32)> = system
        .programs
        .iter()
        .filter_map(|p| system.supervisor.pid(p.name).map(|pid| (p.name.to_owned(), pid)))
        .collect();
    let broker = match (&system.broker.kafka, &system.broker.private) {
        (Some(kafka), _) => kafka.private.as_ref().and_then(|k| k.pid()).map(|pid| ("tansu", pid)),
        (None, Some(node)) => node.pid().map(|pid| ("rabbitmq", pid)),
        (None, None) => procstat::shared_broker_pid().map(|pid| ("rabbitmq", pid)),
    };
    if let Some((name, pid)) = broker {
        pids.push((name.to_owned(), pid));
    }
    pids.push((cost::LOAD_GENERATOR.to_owned(), std::process::id()));
    pids
}

/// SIGKILLs the orchestrator and times how long until it answers `/health` with 200 again.
async fn recovery(system: &StartedSystem) -> anyhow::Result<f64> {
    let health = format!("{}/health", system.api());
    let http = reqwest::Client::new();
    let killed = tokio::time::Instant::now();
    anyhow::ensure!(
        system.supervisor.kill("orchestrator", Duration::from_millis(1)),
        "could not kill the orchestrator"
    );
    // Until the old process is gone, /health may still answer: wait for the new pid.
    let old = system.supervisor.pid("orchestrator");
    loop {
        let current = system.supervisor.pid("orchestrator");
        if current.is_some() && current != old {
            break;
        }
        anyhow::ensure!(killed.elapsed() < Duration::from_secs(60), "the orchestrator did not restart");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    loop {
        let up = http.get(&health).send().await.is_ok_and(|r| r.status().is_success());
        if up {
            return Ok(round2(killed.elapsed().as_secs_f64()));
        }
        anyhow::ensure!(killed.elapsed() < Duration::from_secs(120), "the orchestrator did not recover");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Sagas the orchestrator holds, from its `/metrics`.
async fn stored_sagas(api: &str) -> i64 {
    let Ok(r) = reqwest::get(format!("{api}/metrics")).await else { return 0 };
    let text = r.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("sagaflow_sagas{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as i64
}

fn dir_size(path: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.metadata() {
            Ok(m) if m.is_dir() => dir_size(&e.path()),
            Ok(m) => m.len(),
            Err(_) => 0,
        })
        .sum()
}

/// The highest rate a load may be offered at, in orders per second: hundreds of times what two
/// cores take. An open loop places every order it is given the time for, so a higher rate
/// (or `inf`) would only fill memory with waiting orders.
const MAX_RATE: f64 = 1_000_000.0;

/// An orders-per-second rate that a load can be offered at: above zero and at most
/// [`MAX_RATE`].
fn offered_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if rate > 0.0 && rate <= MAX_RATE => Ok(rate),
        _ => Err(format!("{text:?} is not a rate above 0 and at most {MAX_RATE} orders per second")),
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn machine(broker: &str, bus: BusKind) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let memory_kib: f64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0.0);
    let tool = match bus {
        BusKind::Rabbitmq => "rabbitmqctl".into(),
        BusKind::Kafka => sagaflow_devkit::kafka::tansu().unwrap_or_default(),
    };
    let version = std::process::Command::new(tool)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    Machine {
        cores: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        memory_gib: round2(memory_kib / 1024.0 / 1024.0),
        cpu,
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        broker: format!("{broker} {version}").trim().to_owned(),
        build: if cfg!(debug_assertions) { "debug" } else { "release" }.to_owned(),
        date: sagaflow_runtime::rfc3339(sagaflow_runtime::now_millis()),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{report, BenchArgs, Design, DesignName, Level, LoadResult, PeakRound, Retention};

    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchArgs,
    }

    #[test]
    fn an_offered_rate_is_above_zero_and_bounded() {
        for flag in ["--outage-rate", "--open-loop-base"] {
            for good in ["1200", "0.5", "1000000"] {
                assert!(Bench::try_parse_from(["bench", flag, good]).is_ok(), "{flag} {good} was refused");
            }
            // `inf` or a huge rate made an open loop queue orders until memory ran out.
            for bad in ["0", "-5", "NaN", "inf", "1e12", "", "fast"] {
                assert!(Bench::try_parse_from(["bench", flag, bad]).is_err(), "{flag} {bad:?} was taken");
            }
        }
    }

    #[test]
    fn rows_at_shares_of_a_given_rate_are_not_judged_against_the_peaks_targets() {
        let row = |p50: f64| {
            let mut r = LoadResult { completed_per_sec: 100.0, ..LoadResult::default() };
            r.latency_ms.p50 = p50;
            r.latency_ms.p99 = p50;
            r
        };
        let mut saga = Design {
            peak: LoadResult { completed_per_sec: 400.0, ..LoadResult::default() },
            open_loop: vec![row(5.0), row(5.0), row(5.0)],
            ..Design::default()
        };
        let judged = |saga: &Design| {
            report::targets(saga, &[], &[], &Retention::default(), false)
                .into_iter()
                .filter(|t| t.name.starts_with("p50 at") || t.name.starts_with("p99 at"))
                .map(|t| t.met)
                .collect::<Vec<_>>()
        };
        assert_eq!(judged(&saga), [Some(true), Some(true)]);
        saga.open_loop_base = Some(1_000.0);
        assert_eq!(judged(&saga), [None, None], "shares of 1,000/s, not of the peak");
    }

    #[test]
    fn the_peak_targets_are_judged_on_the_medians_of_the_rounds_not_on_the_first() {
        let peak = |rate: f64, cpu: f64| {
            let mut l = LoadResult { completed_per_sec: rate, cpu_ms_per_saga: cpu, ..LoadResult::default() };
            l.processes.insert("rabbitmq".into(), Default::default());
            Some(l)
        };
        let round = |first, saga: (f64, f64), chain: f64| PeakRound {
            first,
            saga: peak(saga.0, saga.1),
            rest_chain: peak(chain, 1.0),
        };
        // The first round alone says "not met" three times; the medians say met.
        let rounds = [
            round(DesignName::Saga, (1_000.0, 1.7), 1_430.0),
            round(DesignName::RestChain, (1_600.0, 0.9), 1_250.0),
            round(DesignName::Saga, (1_550.0, 0.95), 990.0),
        ];
        let verdict = |rounds: &[PeakRound], name: &str| {
            let all = report::targets(&Design::default(), rounds, &[], &Retention::default(), false);
            let t = all.into_iter().find(|t| t.name.starts_with(name)).expect("a target of that name");
            (t.met, t.measured)
        };
        for name in ["saga peak / REST chain peak", "CPU per saga", "completed sagas/s"] {
            assert_eq!(verdict(&rounds[..1], name).0, Some(false), "{name} on the first round");
            let (met, measured) = verdict(&rounds, name);
            assert_eq!(met, Some(true), "{name} on the medians: {measured}");
            assert!(measured.contains("median of 3 rounds"), "{measured}");
        }
        // The ratio is the median of each round's own ratio (0.70, 1.28, 1.57), not of the
        // medians' ratio (1,550 / 1,250 = 1.24).
        assert!(verdict(&rounds, "saga peak").1.starts_with("1.28,"), "{}", verdict(&rounds, "saga peak").1);
        assert_eq!(verdict(&[], "saga peak").0, None, "no rounds, nothing judged");
    }

    #[test]
    fn a_median_is_the_middle_value_or_the_mean_of_the_middle_two() {
        assert_eq!(report::median(vec![]), None);
        assert_eq!(report::median(vec![3.0]), Some(3.0));
        assert_eq!(report::median(vec![9.0, 1.0, 5.0]), Some(5.0));
        assert_eq!(report::median(vec![4.0, 1.0, 2.0, 8.0]), Some(3.0));
    }

    #[test]
    fn a_store_that_keeps_growing_is_not_level() {
        let linear: Vec<u64> = (1..=60).map(|i| i * 1_000_000).collect();
        assert!(Level::of(&linear).ratio() > 1.5, "{}", Level::of(&linear).ratio());
        assert!(!Level::of(&linear).is_level());
    }

    #[test]
    fn a_band_with_a_spike_is_level() {
        // The shape sled's file takes under retention: a fill, then a band with a spike.
        let mut band: Vec<u64> = (1..=20).map(|i| i * 8_000_000).collect();
        band.extend(
            (0..40).map(|i| if i % 7 == 0 { 210_000_000 } else { 160_000_000 + (i % 5) * 5_000_000 }),
        );
        band[50] = 260_000_000;
        let level = Level::of(&band);
        assert!(level.is_level(), "{}", level.ratio());
    }
}
