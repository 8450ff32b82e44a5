//! Shared by the saga tests: generators for definitions and schedules, a simulated world of
//! participants and messages around one saga, and a runner that prints how many cases ran.
#![allow(dead_code)] // Each test file uses a different part of this module.

pub mod world;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
use sagaflow_saga::{Compensation, Millis, RetryPolicy, SagaDefinition, StepDefinition};

/// Runs a property over `PROPTEST_CASES` (default 1,000) generated cases and prints the count,
/// so that `make test` shows how much was checked. The seed is random unless `PROPTEST_SEED`
/// fixes it; it is printed on failure so the case can be reproduced.
pub fn check<S: Strategy>(name: &str, strategy: S, test: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let cases: u32 = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(1_000);
    let seed: u64 = std::env::var("PROPTEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
    });
    let mut seed_bytes = [0u8; 32];
    for chunk in seed_bytes.chunks_mut(8) {
        chunk.copy_from_slice(&seed.to_le_bytes());
    }
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let started = std::time::Instant::now();
    match runner.run(&strategy, test) {
        Ok(()) => println!(
            "property {name}: {cases} cases passed in {:.1?} (PROPTEST_SEED={seed})",
            started.elapsed()
        ),
        Err(e) => panic!("property {name} failed (reproduce with PROPTEST_SEED={seed}): {e}"),
    }
}

pub fn retry_policy() -> impl Strategy<Value = RetryPolicy> {
    (1u64..=50, prop_oneof![4 => (1u32..=4).prop_map(Some), 1 => Just(None)], 0u64..=20, 0u64..=100).prop_map(
        |(timeout, max_attempts, initial, max)| RetryPolicy {
            attempt_timeout: Millis(timeout),
            max_attempts,
            backoff_initial: Millis(initial),
            backoff_max: Millis(max.max(initial)),
        },
    )
}

/// Definitions of 1 to 6 steps: a prefix with compensations, then steps without.
pub fn definition() -> impl Strategy<Value = SagaDefinition> {
    (1usize..=6)
        .prop_flat_map(|n| (Just(n), 0..=n, prop::collection::vec((retry_policy(), retry_policy()), n)))
        .prop_map(|(n, compensable, policies)| {
            let steps = (0..n)
                .zip(policies)
                .map(|(i, (action, undo))| StepDefinition {
                    name: format!("s{i}"),
                    action: format!("do_s{i}"),
                    retry: action,
                    compensation: (i < compensable)
                        .then(|| Compensation { command: format!("undo_s{i}"), retry: undo }),
                })
                .collect();
            SagaDefinition::new(steps).expect("generated definitions are valid")
        })
}
