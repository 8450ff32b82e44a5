//! `sagactl`: run sagaflow on one machine and operate it.
//!
//! - `up`: the broker step, then the four programs as supervised child processes.
//! - `demo`: brings up what is missing, places a seeded mix of orders, shows progress and a
//!   summary, and stops everything it started.
//! - `chaos`: load, SIGKILLs of every program and a broker restart, then every invariant.
//! - `bench`: throughput, latency and cost against the broker's ceiling and the REST chain.
//! - `status`, `list`, `cancel`, `retry`: the orchestrator's HTTP API, readable.

mod bench;
mod chaos;
mod client;
mod demo;
mod supervisor;
mod system;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sagactl", version, about = "Run and operate sagaflow")]
struct Cli {
    /// The orchestrator's HTTP API.
    #[arg(long, global = true, env = "SAGAFLOW_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Find or start a broker, then run and supervise orchestrator, payment, inventory and
    /// notification until Ctrl-C.
    Up(supervisor::UpArgs),
    /// Place a seeded mix of orders against a running system, or one started for the demo.
    Demo(demo::DemoArgs),
    /// Load, SIGKILLs and a broker restart; then check every invariant. Exits 1 on a violation.
    Chaos(chaos::ChaosArgs),
    /// Measure throughput, latency and cost; write a table, report.json and latency.svg.
    Bench(bench::BenchArgs),
    /// One order: its steps and its timeline.
    Status { order_id: String },
    /// Orders, newest first.
    List {
        #[arg(long)]
        state: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Cancel an order: compensation starts unless it is past the point of no return.
    Cancel { order_id: String },
    /// Retry a stuck order.
    Retry { order_id: String },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let api = client::Api::new(&cli.api);
    let result = match cli.command {
        Command::Up(args) => supervisor::up(args).await,
        Command::Demo(args) => demo::run(args, &cli.api).await,
        Command::Chaos(args) => match chaos::run(args).await {
            Ok(true) => Ok(()),
            Ok(false) => return std::process::ExitCode::FAILURE,
            Err(e) => Err(e),
        },
        Command::Bench(args) => bench::run(args).await,
        Command::Status { order_id } => api.status(&order_id).await,
        Command::List { state, limit } => api.list(state.as_deref(), limit).await,
        Command::Cancel { order_id } => api.action(&order_id, "cancel").await,
        Command::Retry { order_id } => api.action(&order_id, "retry").await,
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sagactl: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
