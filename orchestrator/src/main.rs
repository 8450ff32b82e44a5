//! The `orchestrator` binary: parse the configuration, set up logging, run until stopped.

use clap::Parser;
use sagaflow_orchestrator::config::Config;

// glibc's malloc took about 40 % of the orchestrator's writer thread under load (perf, in
// `_int_malloc`, `malloc_consolidate`, `unlink_chunk`): sled and serde allocate per key.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    sagaflow_runtime::telemetry::init(config.common.log_format);
    let stop = sagaflow_runtime::shutdown::on_signal();
    sagaflow_runtime::process::exit("orchestrator", sagaflow_orchestrator::app::run(config, stop).await)
}
