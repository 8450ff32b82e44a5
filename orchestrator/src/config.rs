//! The orchestrator's settings: flags, each with an environment variable.

use std::path::PathBuf;

use sagaflow_runtime::config::{CommonArgs, TuningArgs};
use sagaflow_runtime::http::HttpArgs;
use sagaflow_saga::Millis;

use crate::order_saga::{RetrySettings, StepOrder};

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
    /// The order of the steps. Notification cannot be undone, so it must come last.
    #[arg(long, env = "SAGA_STEPS", default_value = "payment,inventory,notification")]
    pub steps: StepOrder,
    /// How long to wait for one reply before sending the command again.
    #[arg(long, env = "ATTEMPT_TIMEOUT_MS", default_value_t = 5_000)]
    pub attempt_timeout_ms: u64,
    /// Attempts of payment or inventory before the saga compensates with reason `timed_out`.
    #[arg(long, env = "ACTION_ATTEMPTS", default_value_t = 4)]
    pub action_attempts: u32,
    /// Attempts of a refund or release before the saga is `stuck`.
    #[arg(long, env = "COMPENSATION_ATTEMPTS", default_value_t = 8)]
    pub compensation_attempts: u32,
    /// First wait before a retry; doubles per attempt.
    #[arg(long, env = "BACKOFF_INITIAL_MS", default_value_t = 250)]
    pub backoff_initial_ms: u64,
    /// Longest wait between retries.
    #[arg(long, env = "BACKOFF_MAX_MS", default_value_t = 10_000)]
    pub backoff_max_ms: u64,
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
    pub fn retry(&self) -> RetrySettings {
        RetrySettings {
            attempt_timeout: Millis(self.attempt_timeout_ms),
            action_attempts: self.action_attempts.max(1),
            compensation_attempts: self.compensation_attempts.max(1),
            backoff_initial: Millis(self.backoff_initial_ms),
            backoff_max: Millis(self.backoff_max_ms.max(self.backoff_initial_ms)),
        }
    }
}
