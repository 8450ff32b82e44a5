//! The last ten minutes in 10-second buckets: how many sagas ended, how, and how long they
//! took. The console's overview draws it; `/metrics` has the totals since start. Kept in memory
//! only: after a restart the chart starts empty, which is what a rate over the last minutes
//! should show.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use sagaflow_api as api;

const BUCKET_MS: u64 = 10_000;
const BUCKETS: usize = 60;
/// Reasons counted per bucket; more distinct ones (a flood of made-up reasons) count as `other`.
const MAX_REASONS: usize = 32;

struct Bucket {
    start: u64,
    completed: u64,
    compensated: u64,
    reasons: BTreeMap<String, u64>,
    /// Milliseconds from placed to ended, 2 significant digits: enough for a chart.
    durations: hdrhistogram::Histogram<u64>,
}

#[derive(Default)]
pub struct Recent {
    buckets: Mutex<VecDeque<Bucket>>,
}

impl std::fmt::Debug for Recent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Recent")
    }
}

impl Recent {
    /// A saga ended at `now`: `completed` or not, with the reason it gives.
    pub fn ended(&self, now: u64, completed: bool, reason: Option<&str>, duration_ms: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let start = now - now % BUCKET_MS;
        if buckets.back().is_none_or(|b| b.start < start) {
            let durations = hdrhistogram::Histogram::new_with_bounds(1, 3_600_000, 2).expect("valid bounds");
            buckets.push_back(Bucket {
                start,
                completed: 0,
                compensated: 0,
                reasons: BTreeMap::new(),
                durations,
            });
            while buckets.len() > BUCKETS {
                buckets.pop_front();
            }
        }
        let bucket = buckets.back_mut().expect("just ensured");
        if completed {
            bucket.completed += 1;
        } else {
            bucket.compensated += 1;
        }
        let reason = if completed { "completed" } else { reason.unwrap_or("unknown") };
        let known = bucket.reasons.len() < MAX_REASONS || bucket.reasons.contains_key(reason);
        *bucket.reasons.entry(if known { reason } else { "other" }.to_owned()).or_default() += 1;
        bucket.durations.saturating_record(duration_ms.max(1));
    }

    /// Every bucket of the last ten minutes up to `now`, oldest first (empty ones included, so
    /// a chart's x axis is time), and the reasons summed over them.
    pub fn snapshot(&self, now: u64) -> (Vec<api::Bucket>, Vec<api::Count>) {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let last = now - now % BUCKET_MS;
        let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
        let series = (0..BUCKETS as u64)
            .rev()
            .filter_map(|i| last.checked_sub(i * BUCKET_MS))
            .map(|start| match buckets.iter().find(|b| b.start == start) {
                Some(b) => {
                    for (reason, n) in &b.reasons {
                        *reasons.entry(reason).or_default() += n;
                    }
                    let quantile = |q| (!b.durations.is_empty()).then(|| b.durations.value_at_quantile(q));
                    api::Bucket {
                        start,
                        completed: b.completed,
                        compensated: b.compensated,
                        p50_ms: quantile(0.5),
                        p99_ms: quantile(0.99),
                    }
                }
                None => api::Bucket { start, completed: 0, compensated: 0, p50_ms: None, p99_ms: None },
            })
            .collect();
        let mut reasons: Vec<api::Count> =
            reasons.into_iter().map(|(name, count)| api::Count { name: name.to_owned(), count }).collect();
        reasons.sort_by_key(|r| std::cmp::Reverse(r.count));
        (series, reasons)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_ten_minutes_and_forget_older_ones() {
        const T: u64 = 1_800_000_000_000;
        let recent = Recent::default();
        recent.ended(T + 5_000, true, None, 40);
        recent.ended(T + 5_500, false, Some("payment_declined"), 90);
        recent.ended(T + 15_000, true, None, 20);
        let (series, reasons) = recent.snapshot(T + 15_000);
        assert_eq!(series.len(), BUCKETS);
        let last_two: Vec<_> =
            series[BUCKETS - 2..].iter().map(|b| (b.start, b.completed, b.compensated)).collect();
        assert_eq!(last_two, [(T, 1, 1), (T + 10_000, 1, 0)]);
        assert_eq!(series[BUCKETS - 2].p50_ms, Some(40));
        assert_eq!(reasons[0].name, "completed");
        assert_eq!(reasons[0].count, 2);
        // Eleven minutes later nothing is left.
        let (series, reasons) = recent.snapshot(T + 11 * 60_000);
        assert!(series.iter().all(|b| b.completed + b.compensated == 0));
        assert!(reasons.is_empty());
    }

    #[test]
    fn made_up_reasons_cannot_grow_a_bucket() {
        let recent = Recent::default();
        for i in 0..1_000 {
            recent.ended(1_800_000_000_000, false, Some(&format!("forged-{i}")), 5);
        }
        let (_, reasons) = recent.snapshot(1_800_000_000_000);
        assert!(reasons.len() <= MAX_REASONS + 1);
        assert_eq!(reasons.iter().map(|r| r.count).sum::<u64>(), 1_000);
    }
}
