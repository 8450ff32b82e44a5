//! Retry delays: exponential backoff with "equal jitter", drawn from a seeded source.
//!
//! The jitter is a pure function of (saga seed, step, phase, attempt), so replaying a saga's
//! history reproduces exactly the same timers, and no global random source is ever touched.

use crate::definition::RetryPolicy;
use crate::state::Phase;
use crate::time::Millis;

/// The delay to wait after attempt `attempt` (1-based) failed, before sending the next one.
pub fn delay(policy: &RetryPolicy, seed: u64, step: u32, phase: Phase, attempt: u32) -> Millis {
    let exponent = attempt.saturating_sub(1).min(32);
    let base = policy.backoff_initial.0.saturating_mul(1u64 << exponent).min(policy.backoff_max.0);
    if base == 0 {
        return Millis(0);
    }
    // Equal jitter: half the delay is fixed, the other half random. Unlike full jitter it never
    // collapses to zero, and it still spreads a thundering herd of retries after a broker restart.
    let half = base / 2;
    let draw = splitmix64(seed ^ mix(step, phase, attempt));
    Millis(half + draw % (base - half + 1))
}

fn mix(step: u32, phase: Phase, attempt: u32) -> u64 {
    let phase_bit = match phase {
        Phase::Action => 0u64,
        Phase::Compensation => 1u64,
    };
    (u64::from(step) << 40) ^ (phase_bit << 39) ^ u64::from(attempt)
}

/// SplitMix64: a tiny, well-distributed mixing function, good enough to spread retries.
fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(initial: u64, max: u64) -> RetryPolicy {
        RetryPolicy {
            attempt_timeout: Millis(1000),
            max_attempts: Some(5),
            backoff_initial: Millis(initial),
            backoff_max: Millis(max),
        }
    }

    #[test]
    fn delay_grows_and_is_capped() {
        let p = policy(100, 1_000);
        for attempt in 1..10 {
            let d = delay(&p, 7, 0, Phase::Action, attempt).0;
            let base = (100u64 << (attempt - 1)).min(1_000);
            assert!(d >= base / 2 && d <= base, "attempt {attempt}: {d} outside [{}, {base}]", base / 2);
        }
    }

    #[test]
    fn same_seed_same_delay_other_seed_other_delay() {
        let p = policy(1_000, 60_000);
        let a = delay(&p, 1, 2, Phase::Compensation, 3);
        assert_eq!(a, delay(&p, 1, 2, Phase::Compensation, 3));
        let differing = (2..50).filter(|s| delay(&p, *s, 2, Phase::Compensation, 3) != a).count();
        assert!(differing > 40, "jitter barely depends on the seed: {differing}/48 differ");
    }

    #[test]
    fn zero_backoff_means_retry_at_once() {
        assert_eq!(delay(&policy(0, 0), 3, 0, Phase::Action, 4), Millis(0));
    }
}
