//! `sagactl`: run sagaflow on one machine and operate it.
//!
//! - `up`: the broker step, then the four programs as supervised child processes.
//! - `demo`: brings up what is missing, places a seeded mix of orders, shows progress and a
//!   summary, and stops everything it started.
//! - `chaos`: load, SIGKILLs of every program and a broker restart, then every invariant.
//! - `check`: every invariant of a running system, read through its HTTP endpoints.
//! - `bench`: throughput, latency and cost against the broker's ceiling and the REST chain.
//! - `status`, `list`, `cancel`, `retry`: the orchestrator's HTTP API, readable.
//! - `purge`: deletes a namespace's queues and exchanges.
//! - `completions`: a shell completion script.
//!
//! Exit codes: 0 done (or every invariant held), 1 failed (or a violation), 2 a usage error,
//! 3 `chaos` or `check` could not judge the system (a program did not come back, or its books
//! could not be read).

mod bench;
mod chaos;
mod client;
mod demo;
mod output;
mod purge;
mod supervisor;
mod system;
mod verdict;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use output::say;
use sagaflow_runtime::config::{AmqpUrl, Broker, KafkaBrokers, KafkaSettings};

#[derive(Parser)]
#[command(name = "sagactl", version, about = "Run and operate sagaflow")]
struct Cli {
    /// The orchestrator's HTTP API.
    #[arg(long, global = true, env = "SAGAFLOW_API", default_value = "http://127.0.0.1:8080")]
    api: String,
    /// The system's API_TOKEN, sent as `Authorization: Bearer`.
    #[arg(long, global = true, env = "API_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// How results print: tables and text for people, or JSON on stdout for scripts (the text
    /// then goes to stderr).
    #[arg(short, long, global = true, value_enum, default_value_t = client::Output::Table)]
    output: client::Output,
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
    /// Load, SIGKILLs and a broker restart; then check every invariant. Exits 1 on a violation,
    /// 3 if the run could not be judged.
    Chaos(chaos::ChaosArgs),
    /// Check every invariant of a running system (money, stock, mail, nothing stuck). Exits 1
    /// on a violation, 3 if its books could not be read.
    Check(CheckArgs),
    /// Measure throughput, latency and cost; write a table, report.json and latency.svg.
    Bench(bench::BenchArgs),
    /// One saga: its steps and its timeline. An order id, or a defined saga's `{saga}/{id}`.
    Status { order_id: String },
    /// Sagas, orders and defined ones, newest first.
    List(client::ListArgs),
    /// Follow saga changes as they happen (all orders, or one), until Ctrl-C.
    Watch {
        order_id: Option<String>,
        /// Only changes into this state.
        #[arg(long)]
        state: Option<String>,
        /// Start after this change id (0: everything the feed still keeps), not from now.
        #[arg(long)]
        after: Option<String>,
    },
    /// Cancel a saga (an order id, or `{saga}/{id}`): compensation starts unless it is past
    /// the point of no return.
    Cancel { order_id: String },
    /// Retry a stuck saga (an order id, or `{saga}/{id}`), or every stuck saga.
    Retry {
        #[arg(required_unless_present = "all_stuck")]
        order_id: Option<String>,
        /// Retry every saga that is stuck now.
        #[arg(long, conflicts_with = "order_id")]
        all_stuck: bool,
    },
    /// Delete a namespace's queues and exchanges (lists them unless given --yes).
    Purge(purge::PurgeArgs),
    /// Print a completion script for a shell (for example `sagactl completions bash >
    /// /etc/bash_completion.d/sagactl`).
    Completions { shell: clap_complete::Shell },
}

#[derive(Debug, Clone, clap::Args)]
struct CheckArgs {
    /// Payment's HTTP API.
    #[arg(long, env = "SAGAFLOW_PAYMENT", default_value = "http://127.0.0.1:8081")]
    payment: String,
    /// Inventory's HTTP API.
    #[arg(long, env = "SAGAFLOW_INVENTORY", default_value = "http://127.0.0.1:8082")]
    inventory: String,
    /// Notification's HTTP API.
    #[arg(long, env = "SAGAFLOW_NOTIFICATION", default_value = "http://127.0.0.1:8083")]
    notification: String,
    /// The RabbitMQ broker, to look at the dead-letter queue (with --namespace); skipped if
    /// neither this nor --kafka-brokers is given.
    #[arg(long, conflicts_with = "kafka_brokers")]
    amqp_url: Option<AmqpUrl>,
    /// The Kafka brokers, to look at the dead-letter topic (with --namespace).
    #[arg(long)]
    kafka_brokers: Option<KafkaBrokers>,
    /// The namespace whose dead-letter queue to look at.
    #[arg(long, env = "SAGA_NAMESPACE", default_value = "sagaflow")]
    namespace: String,
    /// How long the programs may take to be healthy and their books to be read.
    #[arg(long, default_value_t = 30)]
    timeout_secs: u64,
}

/// `chaos` or `check` could not give a verdict.
const NOT_JUDGED: u8 = 3;
/// SIGTERM or Ctrl-C stopped the command (128 + SIGINT, as shells report an interrupt).
const STOPPED: u8 = 130;

#[tokio::main]
async fn main() -> ExitCode {
    // `sagactl list | head` must end quietly when the reader goes away, as other Unix tools
    // do, instead of panicking in `println!` on the closed pipe (Rust ignores SIGPIPE).
    // SAFETY: called before any thread exists; restores the default disposition only.
    #[cfg(unix)]
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    output::set_json(cli.output == client::Output::Json);
    let api = client::Api::new(&cli.api, cli.token.clone(), cli.output);
    let result = match cli.command {
        Command::Up(args) => supervisor::up(args).await,
        // A demo that keeps the system running stops it gracefully at the signal itself.
        Command::Demo(args) if args.keep => demo::run(args, &cli.api).await,
        Command::Demo(args) => match stop_on_signal(demo::run(args, &cli.api)).await {
            Some(result) => result,
            None => return stopped(),
        },
        Command::Chaos(args) => {
            return match stop_on_signal(chaos::run_seeds(args)).await {
                Some(Ok(chaos::Ending::Passed)) => ExitCode::SUCCESS,
                Some(Ok(chaos::Ending::Violations)) => ExitCode::FAILURE,
                Some(Err(e)) => {
                    eprintln!("sagactl: the chaos run could not be judged: {e:#}");
                    ExitCode::from(NOT_JUDGED)
                }
                None => stopped(),
            }
        }
        Command::Check(args) => return check(&cli.api, cli.token, args).await,
        Command::Bench(args) => match stop_on_signal(bench::run(args)).await {
            Some(result) => result,
            None => return stopped(),
        },
        Command::Status { order_id } => api.status(&order_id).await,
        Command::List(args) => api.list(&args).await,
        Command::Watch { order_id, state, after } => {
            api.watch(order_id.as_deref(), state.as_deref(), after.as_deref()).await
        }
        Command::Cancel { order_id } => api.action(&order_id, "cancel").await,
        Command::Retry { order_id: Some(order_id), .. } => api.action(&order_id, "retry").await,
        Command::Retry { order_id: None, .. } => api.retry_all_stuck().await,
        Command::Purge(args) => purge::run(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "sagactl", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sagactl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command that starts things of its own (private brokers, the programs it supervises)
/// until it ends or SIGTERM or Ctrl-C comes; `None` for the signal. Why: the signal's default
/// action ended sagactl on the spot, and a private RabbitMQ node, started detached, outlived it.
/// Dropping the command instead runs the `Drop`s of what it started: a private node is stopped,
/// a supervised program killed (`kill_on_drop`).
async fn stop_on_signal<T>(command: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::select! {
        out = command => Some(out),
        () = supervisor::until_stopped() => None,
    }
}

/// The exit of a command stopped by a signal, once what it started is stopped.
fn stopped() -> ExitCode {
    eprintln!("sagactl: stopped by a signal; what it started is stopped");
    ExitCode::from(STOPPED)
}

async fn check(api: &str, token: Option<String>, args: CheckArgs) -> ExitCode {
    let endpoints = verdict::Endpoints {
        orchestrator: api.trim_end_matches('/').to_owned(),
        payment: args.payment,
        inventory: args.inventory,
        notification: args.notification,
        token,
        broker: match (args.amqp_url, args.kafka_brokers) {
            (Some(url), _) => {
                Some(verdict::DeadLettersAt { broker: Broker::RabbitMq(url), namespace: args.namespace })
            }
            (None, Some(brokers)) => Some(verdict::DeadLettersAt {
                broker: Broker::Kafka(KafkaSettings::at(brokers)),
                namespace: args.namespace,
            }),
            (None, None) => None,
        },
    };
    let books =
        match verdict::Books::read(&endpoints, None, std::time::Duration::from_secs(args.timeout_secs)).await
        {
            Ok(books) => books,
            Err(e) => {
                eprintln!("sagactl: cannot judge the system: {e}");
                return ExitCode::from(NOT_JUDGED);
            }
        };
    let verdict = books.judge();
    say!("{} orders checked\n", books.orders.len());
    verdict.print();
    output::emit(&serde_json::json!({
        "orders": books.orders.len(),
        "invariants": verdict.to_json(),
        "passed": verdict.passed(),
    }));
    if verdict.passed() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
