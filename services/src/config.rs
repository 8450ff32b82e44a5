//! The flags every service takes, each with an environment variable.

use std::path::PathBuf;

use sagaflow_runtime::config::{CommonArgs, TuningArgs};
use sagaflow_runtime::http::HttpArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Where the service keeps its sled store (default `data/<service>`).
    #[arg(long, env = "DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub http: HttpArgs,
    /// Simulate a slow dependency: wait this long before each batch of commands is committed.
    #[arg(long, env = "LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Simulate a flaky dependency: answer this share of commands (0 to 1) with a transient
    /// failure, which the orchestrator retries.
    #[arg(long, env = "FAIL_RATE", default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Seed of every simulated random choice, so a run can be repeated exactly.
    #[arg(long, env = "SEED", default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub tuning: TuningArgs,
}

impl ServiceArgs {
    /// `DATA_DIR`, or `data/<participant>`.
    pub fn data_dir(&self, participant: sagaflow_events::Participant) -> PathBuf {
        self.data_dir.clone().unwrap_or_else(|| format!("data/{participant}").into())
    }
}

/// A deterministic draw in [0, 1) from a seed and a key: the same inputs, the same draw.
pub fn draw(seed: u64, key: &str, salt: u64) -> f64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.rotate_left(17) ^ salt;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    // Finalise (SplitMix64) so that similar keys give unrelated draws.
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    hash ^= hash >> 31;
    (hash >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    #[test]
    fn draws_are_repeatable_and_spread() {
        assert_eq!(super::draw(7, "a", 1), super::draw(7, "a", 1));
        let below: usize = (0..10_000).filter(|i| super::draw(3, &format!("k{i}"), 0) < 0.25).count();
        assert!((2_000..3_000).contains(&below), "{below} of 10000 below 0.25");
    }
}
