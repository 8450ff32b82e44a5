//! The orchestrator's settings: flags, each with an environment variable.

use std::path::PathBuf;

use sagaflow_runtime::config::{CommonArgs, TuningArgs};
use sagaflow_runtime::http::HttpArgs;
use sagaflow_saga::Millis;

use crate::order_saga::{Overrides, StepOrder};

/// Runs order sagas: takes orders over HTTP and from the intake queue, sends commands to
/// payment, inventory and notification, and compensates when a step fails.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "orchestrator", version)]
pub struct Config {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where the saga store (sled) lives.
    #[arg(long, env = "DATA_DIR", default_value = "data/orchestrator")]
    pub data_dir: PathBuf,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Catalog file (JSON or TOML) with prices; the built-in catalog if not set.
    #[arg(long, env = "CATALOG")]
    pub catalog: Option<PathBuf>,
    /// A saga definition file (TOML), repeatable. One that names the saga `order` replaces the
    /// built-in order saga (sagas/order.toml); see the README, "The order saga is a file".
    #[arg(long = "saga-file", env = "SAGA_FILES", value_delimiter = ',')]
    pub saga_files: Vec<PathBuf>,
    /// The order of the order saga's steps; notification cannot be undone, so it comes last.
    /// [default: as the order saga's file says: payment,inventory,notification]
    #[arg(long, env = "SAGA_STEPS")]
    pub steps: Option<StepOrder>,
    /// How long to wait for one reply before sending the command again.
    /// [default: as the order saga's file says: 5000]
    #[arg(long, env = "ATTEMPT_TIMEOUT_MS")]
    pub attempt_timeout_ms: Option<u64>,
    /// Attempts of payment or inventory before the saga compensates with reason `timed_out`.
    /// [default: as the order saga's file says: 4]
    #[arg(long, env = "ACTION_ATTEMPTS")]
    pub action_attempts: Option<u32>,
    /// Attempts of a refund or release before the saga is `stuck`.
    /// [default: as the order saga's file says: 8]
    #[arg(long, env = "COMPENSATION_ATTEMPTS")]
    pub compensation_attempts: Option<u32>,
    /// First wait before a retry; doubles per attempt. [default: as the order saga's file says: 250]
    #[arg(long, env = "BACKOFF_INITIAL_MS")]
    pub backoff_initial_ms: Option<u64>,
    /// Longest wait between retries. [default: as the order saga's file says: 10000]
    #[arg(long, env = "BACKOFF_MAX_MS")]
    pub backoff_max_ms: Option<u64>,
    /// Remove finished sagas (completed or compensated) this many seconds after they finished,
    /// and let the participants forget them, which bounds every store's size; 0 keeps them for
    /// ever. Stuck sagas are never removed. Placing a removed order id again starts a new saga.
    #[arg(long, env = "RETAIN_FINISHED_SECS", default_value_t = 7 * 24 * 3600)]
    pub retain_finished_secs: u64,
    /// How many saga changes `GET /orders/stream` keeps to replay, and so how far back a
    /// client can resume with `Last-Event-ID`.
    #[arg(long, env = "CHANGE_FEED_KEEP", default_value_t = crate::feed::MAX_CHANGES)]
    pub change_feed_keep: u64,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

/// The orchestrator's HTTP port when `HTTP_ADDR` is not set.
pub const DEFAULT_PORT: u16 = 8080;

impl Config {
    /// What the flags say about the order saga, over what its file says.
    pub fn order_overrides(&self) -> Overrides {
        Overrides {
            steps: self.steps.clone(),
            attempt_timeout: self.attempt_timeout_ms.map(Millis),
            action_attempts: self.action_attempts,
            compensation_attempts: self.compensation_attempts,
            backoff_initial: self.backoff_initial_ms.map(Millis),
            backoff_max: self.backoff_max_ms.map(Millis),
        }
    }
}
