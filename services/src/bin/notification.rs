//! The `notification` service: sends the order confirmation into a Maildir.

use clap::Parser;
use sagaflow_services::config::ServiceArgs;
use sagaflow_services::notification::Notification;

/// Writes one confirmation email per order into DATA_DIR/Maildir.
#[derive(Parser)]
#[command(name = "notification", version)]
struct Args {
    #[command(flatten)]
    service: ServiceArgs,
}

// glibc's malloc took about 40 % of the orchestrator's writer thread under load (perf, in
// `_int_malloc`, `malloc_consolidate`, `unlink_chunk`): sled and serde allocate per key.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    sagaflow_runtime::telemetry::init(args.service.common.log_format);
    let data_dir = args.service.data_dir.clone().unwrap_or_else(|| "data/notification".into());
    let domain = match Notification::new(&data_dir) {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(
                "notification cannot go on: cannot create the Maildir in {}: {e}",
                data_dir.display()
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    let stop = sagaflow_runtime::shutdown::on_signal();
    let mut service = args.service;
    service.data_dir = Some(data_dir);
    sagaflow_runtime::process::exit("notification", sagaflow_services::run(domain, service, 8083, stop).await)
}
