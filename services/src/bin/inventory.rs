//! The `inventory` service: reserves and releases stock.

use clap::Parser;
use sagaflow_events::Catalog;
use sagaflow_services::config::ServiceArgs;
use sagaflow_services::inventory::Inventory;

/// Reserves stock for orders (all or nothing) and releases it when an order is undone.
#[derive(Parser)]
#[command(name = "inventory", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
    /// Catalog file (JSON or TOML) with the initial stock; the built-in catalog if not set.
    #[arg(long, env = "CATALOG")]
    catalog: Option<std::path::PathBuf>,
}

// glibc's malloc took about 40 % of the orchestrator's writer thread under load (perf, in
// `_int_malloc`, `malloc_consolidate`, `unlink_chunk`): sled and serde allocate per key.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    sagaflow_runtime::telemetry::init(args.service.common.log_format);
    let catalog = match Catalog::load_or_builtin(args.catalog.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("inventory cannot go on: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let stop = sagaflow_runtime::shutdown::on_signal();
    sagaflow_runtime::process::exit(
        "inventory",
        sagaflow_services::run(Inventory { catalog }, args.service, 8082, stop).await,
    )
}
