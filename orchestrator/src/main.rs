//! The `orchestrator` binary: parse the configuration, set up logging, run until stopped.

use clap::Parser;
use sagaflow_orchestrator::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    sagaflow_runtime::telemetry::init(config.common.log_format);
    let stop = sagaflow_runtime::shutdown::on_signal();
    sagaflow_runtime::process::exit("orchestrator", sagaflow_orchestrator::app::run(config, stop).await)
}
