//! Retry budget: retries may add at most a ratio of recent requests, plus a floor per second.
//!
//! The window is [`WINDOW_SECS`] one-second buckets, ring-indexed by the
//! second number since the budget was made. Each bucket's count is packed
//! with the second it belongs to into one `AtomicU64`
//! (`second << 32 | count`), so an increment that finds a stale bucket
//! restarts it in the same compare-and-swap: no lock, no reset race, no
//! allocation. A bucket counts toward the window while its second is one of
//! the last [`WINDOW_SECS`] (the current one included), so the window spans
//! between 9 and 10 seconds of history.
//!
//! **Races:** [`RetryBudget::try_retry`] reads the window, then withdraws;
//! threads that check at the same moment may all pass, so the budget can be
//! over-spent by at most the number of concurrent callers. That is the
//! price of staying lock-free and is harmless for its purpose (stopping
//! retries from multiplying an outage).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

/// Seconds of history the budget looks at.
pub const WINDOW_SECS: u32 = 10;

/// A retry budget; see the [module docs](self). `Send + Sync`: one per
/// service (or route), shared by every worker.
///
/// ```
/// use std::time::Instant;
/// use sinew_proxy::resilience::RetryBudget;
/// let budget = RetryBudget::new(0.2, 0);
/// let now = Instant::now();
/// for _ in 0..10 {
///     budget.record_request(now);
/// }
/// assert!(budget.try_retry(now) && budget.try_retry(now));
/// assert!(!budget.try_retry(now), "20% of 10 requests is 2 retries");
/// ```
#[derive(Debug)]
pub struct RetryBudget {
    origin: Instant,
    ratio: f64,
    /// `min_per_second × WINDOW_SECS`: retries always allowed in a window.
    floor: f64,
    requests: [AtomicU64; WINDOW_SECS as usize],
    retries: [AtomicU64; WINDOW_SECS as usize],
    allowed: AtomicU64,
    denied: AtomicU64,
}

impl RetryBudget {
    /// A budget letting retries in the window reach `ratio` × requests in
    /// the window plus `min_per_second` × [`WINDOW_SECS`]. A negative or
    /// non-finite `ratio` counts as 0.
    #[must_use]
    pub fn new(ratio: f64, min_per_second: u32) -> RetryBudget {
        RetryBudget {
            origin: Instant::now(),
            ratio: if ratio.is_finite() {
                ratio.max(0.0)
            } else {
                0.0
            },
            floor: f64::from(min_per_second) * f64::from(WINDOW_SECS),
            requests: Default::default(),
            retries: Default::default(),
            allowed: AtomicU64::new(0),
            denied: AtomicU64::new(0),
        }
    }

    /// The budget a service's `retries.budget` asks for.
    #[must_use]
    pub fn from_model(budget: &sinew_model::RetryBudget) -> RetryBudget {
        RetryBudget::new(budget.ratio, budget.min_per_second)
    }

    /// Counts one original request (not a retry) made at `now`.
    pub fn record_request(&self, now: Instant) {
        increment(&self.requests, self.second(now));
    }

    /// Withdraws one retry at `now` if the window allows it: `true` when
    /// retries in the window are fewer than `ratio × requests + floor`.
    /// Counted in [`allowed`](Self::allowed) or [`denied`](Self::denied).
    pub fn try_retry(&self, now: Instant) -> bool {
        let second = self.second(now);
        let requests = sum(&self.requests, second) as f64;
        let retries = sum(&self.retries, second) as f64;
        if retries < self.ratio * requests + self.floor {
            increment(&self.retries, second);
            self.allowed.fetch_add(1, Relaxed);
            true
        } else {
            self.denied.fetch_add(1, Relaxed);
            false
        }
    }

    /// Original requests counted in the window ending at `now`.
    #[must_use]
    pub fn requests_in_window(&self, now: Instant) -> u64 {
        sum(&self.requests, self.second(now))
    }

    /// Retries withdrawn in the window ending at `now`.
    #[must_use]
    pub fn retries_in_window(&self, now: Instant) -> u64 {
        sum(&self.retries, self.second(now))
    }

    /// Retries allowed since the budget was made (a metric counter).
    #[must_use]
    pub fn allowed(&self) -> u64 {
        self.allowed.load(Relaxed)
    }

    /// Retries denied since the budget was made (a metric counter).
    #[must_use]
    pub fn denied(&self) -> u64 {
        self.denied.load(Relaxed)
    }

    /// Whole seconds from the budget's creation to `now` (wrapping after
    /// 136 years, which only costs a window's accuracy).
    fn second(&self, now: Instant) -> u32 {
        (super::nanos_since(self.origin, now) / 1_000_000_000) as u32
    }
}

const COUNT_MASK: u64 = u32::MAX as u64;

/// Adds one to `second`'s bucket, restarting it if it holds an older second.
fn increment(buckets: &[AtomicU64; WINDOW_SECS as usize], second: u32) {
    let bucket = &buckets[(second % WINDOW_SECS) as usize];
    let fresh = u64::from(second) << 32 | 1;
    // The closure always returns `Some`, so the update cannot fail.
    let _ = bucket.fetch_update(Relaxed, Relaxed, |packed| {
        let same_second = (packed >> 32) as u32 == second;
        Some(match (same_second, packed & COUNT_MASK) {
            (true, COUNT_MASK) => packed,
            (true, _) => packed + 1,
            (false, _) => fresh,
        })
    });
}

/// The counts of the buckets holding one of the last `WINDOW_SECS` seconds.
fn sum(buckets: &[AtomicU64; WINDOW_SECS as usize], second: u32) -> u64 {
    buckets
        .iter()
        .map(|bucket| bucket.load(Relaxed))
        .filter(|packed| second.wrapping_sub((packed >> 32) as u32) < WINDOW_SECS)
        .map(|packed| packed & COUNT_MASK)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A budget and an instant safely inside its first second (buckets are
    /// aligned to the budget's creation, a few microseconds earlier).
    fn budget(ratio: f64, min_per_second: u32) -> (RetryBudget, Instant) {
        let budget = RetryBudget::new(ratio, min_per_second);
        let t0 = budget.origin + Duration::from_millis(100);
        (budget, t0)
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn drain(budget: &RetryBudget, now: Instant) -> u64 {
        (0..100_000).take_while(|_| budget.try_retry(now)).count() as u64
    }

    #[test]
    fn floor_admits_min_per_second_times_window_without_traffic() {
        let (budget, t0) = budget(0.2, 10);
        assert_eq!(drain(&budget, t0), 100);
        assert!(!budget.try_retry(t0));
        assert_eq!((budget.allowed(), budget.denied()), (100, 2));
        assert_eq!(budget.retries_in_window(t0), 100);
    }

    #[test]
    fn ratio_of_requests_is_admitted_under_load() {
        let (budget, t0) = budget(0.2, 0);
        assert!(!budget.try_retry(t0), "no requests, no floor: nothing");
        for _ in 0..1000 {
            budget.record_request(t0);
        }
        assert_eq!(budget.requests_in_window(t0), 1000);
        assert_eq!(drain(&budget, t0), 200);
        for _ in 0..10 {
            budget.record_request(t0);
        }
        assert_eq!(drain(&budget, t0), 2, "each new request earns 0.2 retry");
    }

    #[test]
    fn ratio_and_floor_add_up() {
        let (budget, t0) = budget(0.5, 1);
        for _ in 0..100 {
            budget.record_request(t0);
        }
        assert_eq!(drain(&budget, t0), 50 + 10);
    }

    #[test]
    fn window_slides() {
        let (budget, t0) = budget(0.1, 0);
        for _ in 0..100 {
            budget.record_request(t0);
        }
        assert_eq!(drain(&budget, t0), 10);
        // Nine seconds later the first second is still in the window.
        assert!(!budget.try_retry(t0 + secs(9)));
        assert_eq!(budget.requests_in_window(t0 + secs(9)), 100);
        // At ten it has left: its requests and its retries are forgotten.
        assert_eq!(budget.requests_in_window(t0 + secs(10)), 0);
        assert_eq!(budget.retries_in_window(t0 + secs(10)), 0);
        assert!(
            !budget.try_retry(t0 + secs(10)),
            "no requests left in window"
        );
        for s in 10..20 {
            for _ in 0..10 {
                budget.record_request(t0 + secs(s));
            }
        }
        assert_eq!(budget.requests_in_window(t0 + secs(19)), 100);
        assert_eq!(drain(&budget, t0 + secs(19)), 10);
    }

    #[test]
    fn stale_bucket_restarts_on_reuse() {
        let (budget, t0) = budget(1.0, 0);
        budget.record_request(t0);
        budget.record_request(t0);
        // Same ring slot, one lap later.
        budget.record_request(t0 + secs(10));
        assert_eq!(budget.requests_in_window(t0 + secs(10)), 1);
        // A long idle gap: nothing remains.
        assert_eq!(budget.requests_in_window(t0 + secs(3600)), 0);
    }

    #[test]
    fn bad_ratio_counts_as_zero() {
        for ratio in [f64::NAN, -1.0, f64::INFINITY] {
            let (budget, t0) = budget(ratio, 0);
            budget.record_request(t0);
            assert!(!budget.try_retry(t0), "{ratio}");
        }
    }

    #[test]
    fn from_model_uses_ratio_and_floor() {
        let budget = RetryBudget::from_model(&sinew_model::RetryBudget::default());
        let t0 = budget.origin + Duration::from_millis(100);
        assert_eq!(drain(&budget, t0), 100, "default floor 10/s over 10 s");
    }

    #[test]
    fn shared_across_threads() {
        let (budget, t0) = budget(0.0, 5);
        let budget = std::sync::Arc::new(budget);
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let budget = std::sync::Arc::clone(&budget);
                std::thread::spawn(move || drain(&budget, t0))
            })
            .collect();
        let total: u64 = handles.into_iter().map(|h| h.join().expect("thread")).sum();
        // 50 allowed, plus at most one over-admission per racing thread.
        assert!((50..=54).contains(&total), "{total}");
        assert_eq!(budget.allowed(), total);
    }
}
