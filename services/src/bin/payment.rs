//! The `payment` service: charges and refunds.

use clap::Parser;
use sagaflow_services::config::ServiceArgs;
use sagaflow_services::payment::Payment;

/// Charges and refunds orders; declines by configurable rules.
#[derive(Parser)]
#[command(name = "payment", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// Decline orders whose amount is above this many cents.
    #[arg(long, env = "DECLINE_OVER_CENTS")]
    decline_over_cents: Option<u64>,
    /// Decline these users (comma-separated).
    #[arg(long, env = "DENY_USERS", value_delimiter = ',')]
    deny_users: Vec<String>,
    /// Decline this share of orders at random (0 to 1), seeded by --seed.
    #[arg(long, env = "DECLINE_RATE", default_value_t = 0.0)]
    decline_rate: f64,
}

// glibc's malloc took about 40 % of the orchestrator's writer thread under load (perf, in
// `_int_malloc`, `malloc_consolidate`, `unlink_chunk`): sled and serde allocate per key.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    sagaflow_runtime::telemetry::init(args.service.common.log_format);
    let domain = Payment {
        decline_over_cents: args.decline_over_cents,
        deny_users: args.deny_users,
        decline_rate: args.decline_rate,
        seed: args.service.seed,
    };
    let stop = sagaflow_runtime::shutdown::on_signal();
    sagaflow_runtime::process::exit("payment", sagaflow_services::run(domain, args.service, 8081, stop).await)
}
