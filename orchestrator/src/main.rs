//! The `orchestrator` binary: parse the configuration, set up logging, run until stopped.

use clap::Parser;
use sagaflow_orchestrator::config::Config;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = Config::parse();
    sagaflow_runtime::telemetry::init(config.common.log_format);
    let stop = sagaflow_runtime::shutdown::on_signal();
    match sagaflow_orchestrator::app::run(config, stop).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // One line that names the cause, for people and supervisors alike.
            tracing::error!("orchestrator cannot go on: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
